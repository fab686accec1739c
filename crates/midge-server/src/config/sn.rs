//! The keys of an MQTT-SN listener (`protocol = "mqtt-sn"`, docs/configuration.md): checked
//! when the file is read, refused on any other listener, and turned into [`SnSettings`] for
//! the gateway (`crate::sn`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ListenerConfig, ListenerProtocol};

/// The UDP port an MQTT-SN listener's `bind` without a port listens on: the one RSMB (the
/// MQTT-SN gateway mosquitto's authors wrote first) and EMQX's gateway use.
pub const DEFAULT_SN_PORT: u16 = 1884;

/// Tretry, MQTT-SN 1.2 section 6.13: how long a message that needs an answer waits for it
/// before it is sent again. 10 s is the middle of the spec's suggested "10 to 15 seconds".
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 10_000;

/// Nretry, section 6.13: how many times it is sent again before the client is taken as lost.
/// 3 is the low end of the spec's suggested "3-5": a gateway holds a lost client's session
/// (and its will) for Tretry × (Nretry + 1).
pub const DEFAULT_RETRY_COUNT: u32 = 3;

/// The GwId (5.3.6) a gateway gives in GWINFO when none is configured.
pub const DEFAULT_GATEWAY_ID: u8 = 1;

/// T_ADV, MQTT-SN 1.2 section 6.1: seconds between a gateway's ADVERTISEs. The spec recommends
/// "greater than 15 minutes" (an ADVERTISE is broadcast, and wakes every listening node); 900
/// is that bound. A client that misses them still finds the gateway with SEARCHGW.
pub const DEFAULT_ADVERTISE_INTERVAL_S: u16 = 900;

/// What the gateway of an MQTT-SN listener runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnSettings {
    /// Its GwId in GWINFO (`sn_gateway_id`).
    pub gateway_id: u8,
    /// Tretry (`sn_retry_interval_ms`).
    pub retry_interval: Duration,
    /// Nretry (`sn_retry_count`).
    pub retry_count: u32,
    /// Predefined topic ids and their topic names (`[listener.sn_predefined_topics]`), ids
    /// ascending; no id or name twice.
    pub predefined_topics: Vec<(u16, String)>,
    /// Where and how often ADVERTISE goes; `None`: it does not.
    pub advertise: Option<Advertise>,
}

/// The gateway's ADVERTISE (MQTT-SN 1.2 sections 5.4.1, 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertise {
    /// Where it is sent (`sn_advertise_address`): the wireless network's broadcast address, or
    /// any UDP address.
    pub address: std::net::SocketAddr,
    /// Seconds between two, and its Duration field (`sn_advertise_interval_s`), at least 1.
    pub interval_s: u16,
}

impl SnSettings {
    /// The settings of `listener`, an MQTT-SN one; why they cannot be used otherwise.
    pub fn from_listener(listener: &ListenerConfig) -> Result<Self, String> {
        let retry_interval_ms = listener.sn_retry_interval_ms.unwrap_or(DEFAULT_RETRY_INTERVAL_MS);
        if retry_interval_ms == 0 {
            return Err("sn_retry_interval_ms = 0: use at least 1 (milliseconds)".to_owned());
        }
        let predefined_topics = predefined(listener.sn_predefined_topics.as_ref())?;
        Ok(Self {
            gateway_id: listener.sn_gateway_id.unwrap_or(DEFAULT_GATEWAY_ID),
            retry_interval: Duration::from_millis(retry_interval_ms),
            retry_count: listener.sn_retry_count.unwrap_or(DEFAULT_RETRY_COUNT),
            predefined_topics,
            advertise: advertise(listener)?,
        })
    }
}

/// Checks the keys of one listener: the `sn_*` keys on an MQTT-SN listener only, and no TLS
/// keys on one (MQTT-SN runs over plain UDP: there is no DTLS). Returns what is wrong.
pub(super) fn check(listener: &ListenerConfig) -> Result<(), String> {
    if listener.protocol == ListenerProtocol::MqttSn {
        if listener.certfile.is_some() || listener.keyfile.is_some() || listener.cafile.is_some() {
            return Err("an mqtt-sn listener takes no TLS keys (certfile, keyfile, cafile): MQTT-SN runs \
                        over plain UDP"
                .to_owned());
        }
        return SnSettings::from_listener(listener).map(drop);
    }
    let given = [
        ("sn_gateway_id", listener.sn_gateway_id.is_some()),
        ("sn_retry_interval_ms", listener.sn_retry_interval_ms.is_some()),
        ("sn_retry_count", listener.sn_retry_count.is_some()),
        ("sn_predefined_topics", listener.sn_predefined_topics.is_some()),
        ("sn_advertise_address", listener.sn_advertise_address.is_some()),
        ("sn_advertise_interval_s", listener.sn_advertise_interval_s.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!(
            "{key} is a key of MQTT-SN listeners: set protocol = \"mqtt-sn\" on this listener, or remove it"
        )),
        None => Ok(()),
    }
}

/// `sn_advertise_address` and `sn_advertise_interval_s`: ADVERTISE is on when the address is
/// set; an interval without an address, or of 0, is refused.
fn advertise(listener: &ListenerConfig) -> Result<Option<Advertise>, String> {
    let interval_s = listener.sn_advertise_interval_s.unwrap_or(DEFAULT_ADVERTISE_INTERVAL_S);
    if interval_s == 0 {
        return Err("sn_advertise_interval_s = 0: use at least 1 (seconds), or leave sn_advertise_address unset \
                    to send no ADVERTISE"
            .to_owned());
    }
    let Some(address) = &listener.sn_advertise_address else {
        return match listener.sn_advertise_interval_s {
            Some(_) => Err("sn_advertise_interval_s needs sn_advertise_address (where ADVERTISE goes)".to_owned()),
            None => Ok(None),
        };
    };
    let address = address.parse().map_err(|_| {
        format!("sn_advertise_address = {address:?} is not IP:PORT (e.g. \"192.168.1.255:1884\", a broadcast address)")
    })?;
    Ok(Some(Advertise { address, interval_s }))
}

/// `[listener.sn_predefined_topics]`: `ID = "topic/name"`, ids 1 to 65534 (5.3.11 reserves
/// 0x0000 and 0xFFFF), names without wildcards, each id and each name once.
fn predefined(table: Option<&BTreeMap<String, String>>) -> Result<Vec<(u16, String)>, String> {
    let mut topics: Vec<(u16, String)> = Vec::new();
    for (key, name) in table.into_iter().flatten() {
        let id = match key.parse::<u16>() {
            Ok(id) if id != 0 && id != u16::MAX => id,
            _ => return Err(format!("sn_predefined_topics: {key:?} is not a topic id: use a number from 1 to 65534")),
        };
        if midge_codec::TopicName::new(name).is_err() {
            return Err(format!("sn_predefined_topics: {id} = {name:?} is not a topic name (non-empty, no + or #)"));
        }
        if let Some((other, _)) = topics.iter().find(|(other, existing)| existing == name || *other == id) {
            return Err(format!("sn_predefined_topics: {other} and {key} give the same id or name twice"));
        }
        topics.push((id, name.clone()));
    }
    topics.sort_unstable_by_key(|(id, _)| *id);
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ListenerProtocol, ServerConfig};

    use super::*;

    fn parse(listener: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(&format!("[[listener]]\nbind = \"127.0.0.1\"\n{listener}\n"), Path::new("s.toml"))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn an_mqtt_sn_listener_takes_its_keys_and_port_1884_by_default() {
        let config = parse(
            "protocol = \"mqtt-sn\"\nsn_gateway_id = 7\nsn_retry_interval_ms = 250\nsn_retry_count = 5\n\
             [listener.sn_predefined_topics]\n1 = \"sensors/temperature\"\n20 = \"x\"\n",
        )
        .unwrap();
        let listener = &config.listener[0];
        assert_eq!(listener.protocol, ListenerProtocol::MqttSn);
        assert_eq!(listener.bind.port(), DEFAULT_SN_PORT);
        let settings = SnSettings::from_listener(listener).unwrap();
        assert_eq!(settings.gateway_id, 7);
        assert_eq!(settings.retry_interval, Duration::from_millis(250));
        assert_eq!(settings.retry_count, 5);
        assert_eq!(settings.predefined_topics, [(1, "sensors/temperature".to_owned()), (20, "x".to_owned())]);
        let defaults = SnSettings::from_listener(&parse("protocol = \"mqtt-sn\"").unwrap().listener[0]).unwrap();
        assert_eq!(
            (defaults.gateway_id, defaults.retry_interval, defaults.retry_count, defaults.advertise),
            (1, Duration::from_secs(10), 3, None)
        );
        let listener = "protocol = \"mqtt-sn\"\nsn_advertise_address = \"10.0.0.255:1884\"";
        let advertising = SnSettings::from_listener(&parse(listener).unwrap().listener[0]).unwrap();
        let expected = Advertise { address: "10.0.0.255:1884".parse().unwrap(), interval_s: 900 };
        assert_eq!(advertising.advertise, Some(expected));
        let listener =
            "protocol = \"mqtt-sn\"\nsn_advertise_address = \"[ff02::1]:1884\"\nsn_advertise_interval_s = 60";
        let advertising = SnSettings::from_listener(&parse(listener).unwrap().listener[0]).unwrap();
        assert_eq!(advertising.advertise.map(|advertise| advertise.interval_s), Some(60));
        let text = "[[listener]]\nprotocol = \"mqtt-sn\"\nbind = \"127.0.0.1:1883\"\n";
        let written = ServerConfig::parse(text, Path::new("s.toml")).unwrap();
        assert_eq!(written.listener[0].bind.port(), 1883, "a port written is kept");
    }

    #[test]
    fn sn_keys_elsewhere_and_bad_values_are_refused_naming_the_key() {
        for (listener, expected) in [
            ("sn_retry_count = 3", "sn_retry_count is a key of MQTT-SN listeners"),
            ("protocol = \"mqtt\"\nsn_gateway_id = 3", "sn_gateway_id is a key of MQTT-SN listeners"),
            ("[listener.sn_predefined_topics]\n1 = \"a\"", "sn_predefined_topics is a key of MQTT-SN"),
            ("protocol = \"mqtt-sn\"\nsn_retry_interval_ms = 0", "sn_retry_interval_ms = 0"),
            ("protocol = \"mqtt-sn\"\nsn_gateway_id = 256", "sn_gateway_id"),
            ("protocol = \"mqtt-sn\"\ncertfile = \"c.pem\"", "takes no TLS keys"),
            ("protocol = \"mqtt-sn\"\n[listener.sn_predefined_topics]\n0 = \"a\"", "\"0\" is not a topic id"),
            ("protocol = \"mqtt-sn\"\n[listener.sn_predefined_topics]\n65535 = \"a\"", "not a topic id"),
            ("protocol = \"mqtt-sn\"\n[listener.sn_predefined_topics]\nx = \"a\"", "\"x\" is not a topic id"),
            ("protocol = \"mqtt-sn\"\n[listener.sn_predefined_topics]\n1 = \"a/#\"", "not a topic name"),
            ("protocol = \"mqtt-sn\"\n[listener.sn_predefined_topics]\n1 = \"a\"\n2 = \"a\"", "same id or name twice"),
            ("sn_advertise_address = \"127.0.0.1:9\"", "sn_advertise_address is a key of MQTT-SN listeners"),
            ("protocol = \"mqtt-sn\"\nsn_advertise_interval_s = 60", "needs sn_advertise_address"),
            ("protocol = \"mqtt-sn\"\nsn_advertise_address = \"a:1\"\n", "is not IP:PORT"),
            ("protocol = \"mqtt-sn\"\nsn_advertise_address = \"127.0.0.1:9\"\nsn_advertise_interval_s = 0", "= 0"),
        ] {
            let error = parse(listener).unwrap_err();
            assert!(error.contains("s.toml") && error.contains(expected), "{listener}: {error}");
        }
    }
}
