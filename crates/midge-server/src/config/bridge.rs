//! A bridge's settings (`[[bridge]]` in the TOML file, a `connection NAME` section in a
//! mosquitto.conf): the remote broker, the topics carried each way and how, the link's
//! timings and its durable queue's bound. Checked when the file is read, so that a bridge that
//! cannot work is refused with the file, not found out at run time.

use std::path::PathBuf;

use serde::Deserialize;

/// The longest bridge name: it is part of client ids and of a `$SYS` topic.
const MAX_NAME_LEN: usize = 64;

/// One bridge (`[[bridge]]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Its name (mosquitto's `connection NAME`): in logs, in the default client ids and in the
    /// notification topic. Letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// The remote broker's addresses, `host:port` (port 1883, or 8883 with TLS, when left out),
    /// tried in order (mosquitto's `address` / `addresses`).
    pub addresses: Vec<String>,
    /// After a failover, go back to the first address once it answers again (mosquitto's
    /// `round_robin false`, the default); with `true` the bridge stays on the address it
    /// reached and moves on to the next one when that fails.
    #[serde(default)]
    pub round_robin: bool,
    /// The MQTT version spoken to the remote: `"3.1.1"` (mosquitto's `mqttv311`, the default)
    /// or `"5"` (`mqttv50`).
    #[serde(default)]
    pub protocol_version: BridgeProtocol,
    /// The topics carried (mosquitto's `topic` lines); at least one.
    pub topic: Vec<BridgeTopic>,
    /// The client id at the remote broker (`remote_clientid`); default: this host's name, `.`
    /// and the bridge's name, as mosquitto's.
    #[serde(default)]
    pub remote_clientid: Option<String>,
    /// The client id of the bridge's session in this broker (`local_clientid`); default
    /// `local.` and the remote client id, as mosquitto's.
    #[serde(default)]
    pub local_clientid: Option<String>,
    /// User name at the remote broker (`remote_username`).
    #[serde(default)]
    pub remote_username: Option<String>,
    /// Password at the remote broker (`remote_password`).
    #[serde(default)]
    pub remote_password: Option<String>,
    /// Start afresh at the remote at each connection (`cleansession`). Default false: the
    /// remote keeps the bridge's subscriptions and queues what is published there while the
    /// link is down, and a QoS 2 exchange cut by an outage completes exactly once.
    #[serde(default)]
    pub cleansession: bool,
    /// Seconds of keep alive at the remote (`keepalive_interval`); default 60, mosquitto's.
    #[serde(default = "default_keepalive")]
    pub keepalive_interval: u16,
    /// Seconds before reconnecting after the link drops (`restart_timeout`): `[base, cap]`
    /// backs off from `base` doubling up to `cap`, with jitter; a single number (or a list of
    /// one) waits that long every time. Default `[5, 30]`, mosquitto's.
    #[serde(default = "default_restart_timeout", deserialize_with = "seconds_or_list")]
    pub restart_timeout: Vec<u64>,
    /// Announce the bridge to the remote as a bridge (`try_private`, default true): MQTT 3.1.1
    /// with the protocol level's top bit set, which mosquitto and Midge take to mean "do not
    /// send my own messages back to me"; a remote that refuses it is tried again without.
    #[serde(default = "yes")]
    pub try_private: bool,
    /// Publish the link's state, retained `1` (up) or `0` (down), on
    /// [`BridgeConfig::notification_topic`] here and at the remote (`notifications`, default
    /// true); at the remote `0` is the bridge's will.
    #[serde(default = "yes")]
    pub notifications: bool,
    /// Where the state goes (`notification_topic`); default `$SYS/broker/connection/NAME/state`.
    #[serde(default)]
    pub notification_topic: Option<String>,
    /// When the link is made (`start_type`).
    #[serde(default)]
    pub start_type: StartType,
    /// A lazy bridge's link is closed after this many seconds without a message either way
    /// (`idle_timeout`); default 60, mosquitto's.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// A lazy bridge connects once this many messages wait for the remote (`threshold`);
    /// default 10, mosquitto's.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// TLS to the remote (mosquitto's `bridge_cafile`, `bridge_capath`, `bridge_certfile`,
    /// `bridge_keyfile`, `bridge_insecure`, `bridge_tls_version`, `bridge_alpn`); none: plain TCP.
    #[serde(default)]
    pub tls: Option<BridgeTls>,
}

/// The MQTT version a bridge speaks to its remote.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum BridgeProtocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[serde(rename = "5")]
    V5,
}

/// Which way a topic's messages cross.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From this broker to the remote (the default, as mosquitto's).
    #[default]
    Out,
    /// From the remote to this broker.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether messages go out to the remote.
    pub fn outbound(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }

    /// Whether messages come in from the remote.
    pub fn inbound(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// One `topic PATTERN [in|out|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX]` of a bridge.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeTopic {
    /// The topic filter, without the prefixes; may be empty when a prefix is given, as in
    /// mosquitto (the prefix alone is then the topic).
    pub pattern: String,
    /// Which way (default `out`).
    #[serde(default)]
    pub direction: Direction,
    /// The subscription's QoS on the side messages are taken from (default 0, mosquitto's).
    #[serde(default)]
    pub qos: u8,
    /// Prepended to the pattern here.
    #[serde(default)]
    pub local_prefix: String,
    /// Prepended to the pattern at the remote.
    #[serde(default)]
    pub remote_prefix: String,
}

/// When a bridge connects.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartType {
    /// At start, and again after every outage (the default).
    #[default]
    Automatic,
    /// When [`BridgeConfig::threshold`] messages wait, and closed again after
    /// [`BridgeConfig::idle_timeout`] idle seconds.
    Lazy,
    /// At start; not again after the link drops.
    Once,
}

/// A bridge's TLS settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeTls {
    /// CA certificates (PEM) the remote's certificate must chain to (`bridge_cafile`).
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificates (`bridge_capath`).
    pub capath: Option<PathBuf>,
    /// The bridge's own certificate chain (`bridge_certfile`), for a remote that asks for one.
    pub certfile: Option<PathBuf>,
    /// Its private key (`bridge_keyfile`).
    pub keyfile: Option<PathBuf>,
    /// Skip checking that the remote's certificate names the host (`bridge_insecure`); the
    /// chain is still verified.
    pub insecure: bool,
    /// The oldest TLS version accepted: `"tlsv1.2"` or `"tlsv1.3"` (`bridge_tls_version`).
    pub tls_version: Option<String>,
    /// ALPN protocol offered (`bridge_alpn`).
    pub alpn: Option<String>,
}

fn default_keepalive() -> u16 {
    60
}

fn default_restart_timeout() -> Vec<u64> {
    vec![5, 30]
}

/// The `[[bridge]]` tables, each read on its own so that a key it cannot have (unknown, or of
/// the wrong type) is reported with the bridge's name, as `BridgeConfig::check`'s problems are.
pub(super) fn named_bridges<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<BridgeConfig>, D::Error> {
    use serde::de::Error as _;
    let tables = Vec::<toml::Table>::deserialize(deserializer)?;
    tables
        .into_iter()
        .map(|table| {
            let name = table.get("name").and_then(|name| name.as_str()).unwrap_or("(unnamed)").to_owned();
            BridgeConfig::deserialize(toml::Value::Table(table))
                .map_err(|error| D::Error::custom(format!("bridge {name:?}: {}", error.message())))
        })
        .collect()
}

/// `restart_timeout` as a number (mosquitto's `restart_timeout 5`) or a list (`[5, 30]`).
fn seconds_or_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum SecondsOrList {
        Seconds(u64),
        List(Vec<u64>),
    }
    Ok(match SecondsOrList::deserialize(deserializer)? {
        SecondsOrList::Seconds(seconds) => vec![seconds],
        SecondsOrList::List(list) => list,
    })
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_threshold() -> u32 {
    10
}

fn yes() -> bool {
    true
}

impl BridgeConfig {
    /// A bridge to `addresses` named `name` with mosquitto's defaults and no topics yet (the
    /// mosquitto.conf reader starts each `connection` section from this).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            addresses: Vec::new(),
            round_robin: false,
            protocol_version: BridgeProtocol::V311,
            topic: Vec::new(),
            remote_clientid: None,
            local_clientid: None,
            remote_username: None,
            remote_password: None,
            cleansession: false,
            keepalive_interval: default_keepalive(),
            restart_timeout: default_restart_timeout(),
            try_private: true,
            notifications: true,
            notification_topic: None,
            start_type: StartType::Automatic,
            idle_timeout: default_idle_timeout(),
            threshold: default_threshold(),
            tls: None,
        }
    }

    /// Why the bridge cannot work as configured, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!("name {:?}: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'", self.name));
        }
        if self.addresses.is_empty() {
            return Err("addresses: at least one remote address is needed".into());
        }
        for address in &self.addresses {
            split_address(address, 1883)?;
        }
        if self.topic.is_empty() {
            return Err("topic: at least one topic is needed".into());
        }
        for topic in &self.topic {
            topic.check()?;
        }
        match self.restart_timeout.as_slice() {
            [seconds] if *seconds > 0 => {}
            [base, cap] if *base > 0 && cap >= base => {}
            _ => return Err("restart_timeout: one number of seconds, or [base, cap] with 0 < base <= cap".into()),
        }
        if self.keepalive_interval != 0 && self.keepalive_interval < 5 {
            return Err("keepalive_interval: 0 (none) or at least 5 seconds".into());
        }
        if self.start_type == StartType::Lazy && self.threshold == 0 {
            return Err("threshold: at least 1 message for a lazy bridge".into());
        }
        if let Some(topic) = &self.notification_topic {
            midge_codec::TopicName::new(topic).map_err(|error| format!("notification_topic {topic:?}: {error}"))?;
        }
        for (key, id) in [("remote_clientid", &self.remote_clientid), ("local_clientid", &self.local_clientid)] {
            if let Some(id) = id {
                if id.is_empty() || id.len() > 65535 {
                    return Err(format!("{key}: 1 to 65535 bytes"));
                }
            }
        }
        if self.remote_password.is_some() && self.remote_username.is_none() {
            return Err("remote_password needs remote_username".into());
        }
        if let Some(tls) = &self.tls {
            if tls.certfile.is_some() != tls.keyfile.is_some() {
                return Err("tls: certfile and keyfile go together".into());
            }
            if let Some(version) = &tls.tls_version {
                if !matches!(version.as_str(), "tlsv1.2" | "tlsv1.3") {
                    return Err(format!("tls.tls_version {version:?}: \"tlsv1.2\" or \"tlsv1.3\""));
                }
            }
        }
        Ok(())
    }
}

impl BridgeTopic {
    /// Why the topic line cannot be used.
    pub fn check(&self) -> Result<(), String> {
        if self.qos > 2 {
            return Err(format!("topic {:?}: qos {} (0, 1 or 2)", self.pattern, self.qos));
        }
        if self.pattern.is_empty() && self.local_prefix.is_empty() && self.remote_prefix.is_empty() {
            return Err("topic: an empty pattern needs a prefix".into());
        }
        for (side, prefix) in [("local_prefix", &self.local_prefix), ("remote_prefix", &self.remote_prefix)] {
            if prefix.contains(['#', '+']) {
                return Err(format!("topic {:?}: {side} {prefix:?} has a wildcard", self.pattern));
            }
        }
        for prefix in [&self.local_prefix, &self.remote_prefix] {
            let filter = format!("{prefix}{}", self.pattern);
            midge_codec::TopicFilter::new(&filter).map_err(|error| format!("topic {filter:?}: {error}"))?;
        }
        Ok(())
    }
}

/// `host:port` (or `[v6]:port`, or `host` alone: `default_port`) split; why not.
pub fn split_address(address: &str, default_port: u16) -> Result<(String, u16), String> {
    let address = address.trim();
    let bad = || format!("address {address:?}: expected host or host:port");
    if address.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse::<u16>().map_err(|_| bad())?;
            if host.is_empty() || port == 0 {
                return Err(bad());
            }
            Ok((host.to_owned(), port))
        }
        // More than one colon without brackets: an IPv6 address alone.
        Some(_) => Ok((address.to_owned(), default_port)),
        None => Ok((address.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(toml_text: &str) -> Result<BridgeConfig, String> {
        let config: BridgeConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn a_minimal_bridge_gets_mosquittos_defaults() {
        let config = bridge("name = \"cloud\"\naddresses = [\"remote:1884\"]\n[[topic]]\npattern = \"a/#\"\n").unwrap();
        assert_eq!(config.keepalive_interval, 60);
        assert_eq!(config.restart_timeout, vec![5, 30]);
        assert!(config.try_private && config.notifications && !config.cleansession);
        assert_eq!(config.topic[0].direction, Direction::Out);
        assert_eq!(config.topic[0].qos, 0);
        assert_eq!(config.start_type, StartType::Automatic);
        assert_eq!(config.protocol_version, BridgeProtocol::V311);
    }

    #[test]
    fn restart_timeout_is_a_number_or_a_list() {
        let with = |value: &str| {
            bridge(&format!(
                "name = \"a\"\naddresses = [\"r\"]\nrestart_timeout = {value}\n[[topic]]\npattern = \"a\"\n"
            ))
        };
        assert_eq!(with("3").unwrap().restart_timeout, vec![3]);
        assert_eq!(with("[2, 20]").unwrap().restart_timeout, vec![2, 20]);
        assert!(with("0").unwrap_err().contains("restart_timeout"));
    }

    #[test]
    fn bad_bridges_name_the_key() {
        let cases = [
            ("name = \"a b\"\naddresses = [\"r\"]\n[[topic]]\npattern = \"a\"\n", "name"),
            ("name = \"a\"\naddresses = []\n[[topic]]\npattern = \"a\"\n", "addresses"),
            ("name = \"a\"\naddresses = [\"r:x\"]\n[[topic]]\npattern = \"a\"\n", "address"),
            ("name = \"a\"\naddresses = [\"r\"]\ntopic = []\n", "topic"),
            ("name = \"a\"\naddresses = [\"r\"]\n[[topic]]\npattern = \"a\"\nqos = 3\n", "qos"),
            ("name = \"a\"\naddresses = [\"r\"]\n[[topic]]\npattern = \"a/#/b\"\n", "topic"),
            ("name = \"a\"\naddresses = [\"r\"]\n[[topic]]\npattern = \"a\"\nlocal_prefix = \"+/\"\n", "local_prefix"),
            (
                "name = \"a\"\naddresses = [\"r\"]\nrestart_timeout = [10, 5]\n[[topic]]\npattern = \"a\"\n",
                "restart_timeout",
            ),
            (
                "name = \"a\"\naddresses = [\"r\"]\nremote_password = \"p\"\n[[topic]]\npattern = \"a\"\n",
                "remote_username",
            ),
        ];
        for (text, key) in cases {
            let error = bridge(text).unwrap_err();
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    #[test]
    fn addresses_split_with_default_ports() {
        assert_eq!(split_address("example.com", 1883).unwrap(), ("example.com".into(), 1883));
        assert_eq!(split_address("example.com:8883", 1883).unwrap(), ("example.com".into(), 8883));
        assert_eq!(split_address("[::1]:1884", 1883).unwrap(), ("::1".into(), 1884));
        assert_eq!(split_address("::1", 1883).unwrap(), ("::1".into(), 1883));
        assert!(split_address("host:0", 1883).is_err());
        assert!(split_address("", 1883).is_err());
    }
}
