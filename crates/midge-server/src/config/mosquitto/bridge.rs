//! A mosquitto.conf's bridges: each `connection NAME` section read into a [`BridgeConfig`]
//! (`[[bridge]]`) with mosquitto's rules (its src/conf.c and mosquitto.conf(5)), and the
//! directives Midge's bridges do not have accepted with a [`Note`] saying what Midge does.
//!
//! mosquitto's rules kept here:
//! - One `address` or `addresses` line per bridge, every address on it (space-separated,
//!   `host[:port]`, port 1883 when left out, TLS or not; an IPv6 address needs its port, the
//!   part after the last colon). A second line is an error.
//! - `topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]]`: direction `out` (the
//!   default), `in` or `both`, any case; QoS 0 (the default) to 2; `""` stands for an empty
//!   pattern or prefix; an empty pattern needs both prefixes; a prefix has no wildcard. After
//!   the pattern, a word starting with `#` starts a comment. A line given twice is kept once.
//! - A string directive (client ids, user name, password, notification topic, TLS files) given
//!   twice in one bridge is an error; a number or boolean takes the last value.
//! - `keepalive_interval` below 5 is 5, `idle_timeout`, `threshold` and `restart_timeout`'s base
//!   below 1 are 1; `restart_timeout BASE CAP` needs `CAP >= BASE`.
//! - The link is TLS only when `bridge_cafile` or `bridge_capath` is given.
//! - `max_queued_messages` and `max_queued_bytes` are global in mosquitto, inside a bridge's
//!   section too: the reader applies them to `[mqtt]`.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{
    BridgeConfig, BridgeProtocol, BridgeTls, BridgeTopic, ConfigError, Direction, Line, Location, Note, NoteKind,
    Reader, StartType,
};

/// A bridge as its `connection` section builds it.
pub(super) struct BridgeDraft {
    /// Its `connection` line, which an error about the whole bridge names.
    at: Location,
    config: BridgeConfig,
    /// The string directives already given (mosquitto refuses them twice).
    strings: HashSet<&'static str>,
    /// The first TLS directive's line, for the note when no CA makes the link TLS.
    tls_at: Option<Location>,
}

/// What a bridge directive asks noted, if anything.
type Noted = Option<(NoteKind, String)>;

impl Reader {
    /// `connection NAME`: a new bridge, whose section the following bridge directives fill.
    pub(super) fn connection(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let name = line.word()?;
        if self.bridges.iter().any(|draft| draft.config.name == name) {
            return Err(line.error(format!("another bridge is named {name:?}")));
        }
        self.bridges.push(BridgeDraft {
            at: line.at.clone(),
            config: BridgeConfig::new(name),
            strings: HashSet::new(),
            tls_at: None,
        });
        self.bridge = Some(self.bridges.len() - 1);
        Ok(())
    }

    /// A bridge directive of the bridge at `index`.
    pub(super) fn bridge_directive(&mut self, index: usize, line: &Line<'_>) -> Result<(), ConfigError> {
        let draft = &mut self.bridges[index];
        if let Some((kind, message)) = draft.apply(line)? {
            let message = format!("bridge {:?}: {message}", draft.config.name);
            self.note(line, kind, message);
        }
        Ok(())
    }

    /// Every bridge checked (as a `[[bridge]]` is) and put in the config; an error names the
    /// bridge's `connection` line.
    pub(super) fn finish_bridges(&mut self) -> Result<(), ConfigError> {
        let mut local_ids: Vec<String> = Vec::new();
        for mut draft in std::mem::take(&mut self.bridges) {
            let name = draft.config.name.clone();
            let error = |problem: String| ConfigError::Mosquitto {
                path: draft.at.path.clone(),
                line: draft.at.line,
                directive: "connection".to_owned(),
                problem: format!("bridge {name:?}: {problem}"),
            };
            if draft.config.tls.as_ref().is_some_and(|tls| tls.cafile.is_none() && tls.capath.is_none()) {
                draft.config.tls = None;
                self.notes.push(Note {
                    at: draft.tls_at.clone().unwrap_or_else(|| draft.at.clone()),
                    directive: "connection".to_owned(),
                    kind: NoteKind::NotApplied,
                    message: format!(
                        "bridge {name:?}: plain TCP, as in mosquitto, which makes a bridge's link TLS only \
                         with bridge_cafile or bridge_capath: its other bridge_* TLS directives are not applied"
                    ),
                });
            }
            draft.config.check().map_err(error)?;
            // mosquitto refuses two bridges with one local client id (the defaults, from the
            // host's name and the bridge's, differ when the names do).
            let local_id = match (&draft.config.local_clientid, &draft.config.remote_clientid) {
                (Some(local), _) => local.clone(),
                (None, Some(remote)) => format!("local.{remote}"),
                (None, None) => format!("local.\0host.{name}"),
            };
            if local_ids.contains(&local_id) {
                return Err(error(format!(
                    "local_clientid {local_id:?} is another bridge's too: give one of them its own local_clientid"
                )));
            }
            local_ids.push(local_id);
            self.config.bridge.push(draft.config);
        }
        Ok(())
    }
}

impl BridgeDraft {
    /// Applies one directive of the section; what to note about it.
    #[allow(clippy::too_many_lines)] // one arm per directive, as the reader's own match
    fn apply(&mut self, line: &Line<'_>) -> Result<Noted, ConfigError> {
        let config = &mut self.config;
        match line.directive {
            "address" | "addresses" => {
                if !config.addresses.is_empty() {
                    return Err(line.error(
                        "the bridge's addresses are given already: one address (or addresses) line takes them all, \
                         as in mosquitto",
                    ));
                }
                for word in line.rest.split_whitespace().take_while(|word| !word.starts_with('#')) {
                    config.addresses.push(address(line, word)?);
                }
                if config.addresses.is_empty() {
                    return Err(line.error("a value is missing"));
                }
            }
            "round_robin" => config.round_robin = line.boolean()?,
            "bridge_protocol_version" => match line.word()? {
                "mqttv311" => config.protocol_version = BridgeProtocol::V311,
                "mqttv50" => config.protocol_version = BridgeProtocol::V5,
                "mqttv31" => {
                    config.protocol_version = BridgeProtocol::V311;
                    return Ok(Some((
                        NoteKind::Differs,
                        "mqttv31 is taken as mqttv311: Midge's bridges speak MQTT 3.1.1 or 5, and a remote that \
                         speaks only 3.1 refuses the connection"
                            .to_owned(),
                    )));
                }
                other => return Err(line.error(format!("expected mqttv311, mqttv50 or mqttv31, found {other:?}"))),
            },
            "topic" => {
                let topic = topic(line)?;
                if !config.topic.contains(&topic) {
                    config.topic.push(topic);
                }
            }
            "remote_clientid" | "clientid" => {
                self.config.remote_clientid = Some(self.string(line, "remote_clientid")?);
            }
            "local_clientid" => self.config.local_clientid = Some(self.string(line, "local_clientid")?),
            "remote_username" | "username" => {
                self.config.remote_username = Some(self.string(line, "remote_username")?);
            }
            "remote_password" | "password" => {
                self.config.remote_password = Some(self.string(line, "remote_password")?);
            }
            "notification_topic" => {
                self.config.notification_topic = Some(self.string(line, "notification_topic")?);
            }
            "cleansession" => config.cleansession = line.boolean()?,
            "keepalive_interval" => {
                let seconds: i64 = line.number("a number of seconds up to 65535")?;
                config.keepalive_interval = u16::try_from(seconds.max(5))
                    .map_err(|_| line.error(format!("{seconds} seconds: at most 65535")))?;
            }
            "restart_timeout" => config.restart_timeout = restart_timeout(line)?,
            "try_private" => config.try_private = line.boolean()?,
            "notifications" => config.notifications = line.boolean()?,
            "start_type" => {
                config.start_type = match line.word()? {
                    "automatic" => StartType::Automatic,
                    "lazy" => StartType::Lazy,
                    "once" => StartType::Once,
                    "manual" => return Err(line.error("manual is not supported (nor by mosquitto)")),
                    other => return Err(line.error(format!("expected automatic, lazy or once, found {other:?}"))),
                };
            }
            "idle_timeout" => config.idle_timeout = line.number::<i64>("a number of seconds")?.max(1).unsigned_abs(),
            "threshold" => {
                let count: i64 = line.number("a number of messages")?;
                config.threshold = u32::try_from(count.max(1))
                    .map_err(|_| line.error(format!("{count} messages: at most {}", u32::MAX)))?;
            }
            "bridge_cafile" => {
                let path = PathBuf::from(self.string(line, "bridge_cafile")?);
                self.tls(line).cafile = Some(path);
            }
            "bridge_capath" => {
                let path = PathBuf::from(self.string(line, "bridge_capath")?);
                self.tls(line).capath = Some(path);
            }
            "bridge_certfile" => {
                let path = PathBuf::from(self.string(line, "bridge_certfile")?);
                self.tls(line).certfile = Some(path);
            }
            "bridge_keyfile" => {
                let path = PathBuf::from(self.string(line, "bridge_keyfile")?);
                self.tls(line).keyfile = Some(path);
            }
            "bridge_insecure" => {
                let insecure = line.boolean()?;
                self.tls(line).insecure = insecure;
            }
            "bridge_alpn" => {
                let alpn = self.string(line, "bridge_alpn")?;
                self.tls(line).alpn = Some(alpn);
            }
            "bridge_tls_version" => {
                let version = self.string(line, "bridge_tls_version")?;
                let (version, noted) = match version.as_str() {
                    "tlsv1.3" | "tlsv1.2" => (version, None),
                    "tlsv1.1" => (
                        "tlsv1.2".to_owned(),
                        Some((
                            NoteKind::Differs,
                            "tlsv1.1 is taken as tlsv1.2: a remote that speaks only TLS 1.1 is refused (rustls \
                             speaks 1.2 and 1.3)"
                                .to_owned(),
                        )),
                    ),
                    other => return Err(line.error(format!("expected tlsv1.3, tlsv1.2 or tlsv1.1, found {other:?}"))),
                };
                self.tls(line).tls_version = Some(version);
                return Ok(noted);
            }
            "bridge_ciphers" | "bridge_ciphers_tls1.3" => {
                line.string()?;
                return noted(NoteKind::Differs, "not applied: Midge uses rustls's default cipher suites");
            }
            "bridge_identity" | "bridge_psk" => {
                // Ignored, the link would carry in the clear what the file meant to encrypt.
                return Err(line.error(
                    "not supported: TLS-PSK bridges are not built; use certificates (bridge_cafile, and \
                     bridge_certfile and bridge_keyfile if the remote asks for one)",
                ));
            }
            "bridge_attempt_unsubscribe" => {
                line.boolean()?;
                return noted(
                    NoteKind::Differs,
                    "not applied: at each connection the bridge unsubscribes, in the sessions it keeps, from the \
                     filters of topic lines no longer configured, and from nothing else",
                );
            }
            "bridge_bind_address" => {
                self.string(line, "bridge_bind_address")?;
                return noted(
                    NoteKind::NotApplied,
                    "not applied: the bridge connects from the address the system picks",
                );
            }
            "bridge_require_ocsp" => {
                if line.boolean()? {
                    return noted(
                        NoteKind::NotApplied,
                        "not applied: the remote's certificate is verified without OCSP (no revocation check)",
                    );
                }
            }
            "bridge_max_packet_size" => {
                if line.number::<i64>("a number of bytes (0: no limit)")? > 0 {
                    return noted(
                        NoteKind::NotApplied,
                        "not applied: the bridge announces no Maximum Packet Size to the remote; [mqtt] \
                         max_packet_size bounds what this broker takes",
                    );
                }
            }
            "bridge_max_topic_alias" => {
                let count: i64 = line.number("a number up to 65535")?;
                if !(0..=65535).contains(&count) {
                    return Err(line.error(format!("{count}: expected 0 to 65535")));
                }
                return noted(NoteKind::NotApplied, "not applied: the bridge uses no topic aliases with the remote");
            }
            "bridge_outgoing_retain" => {
                if !line.boolean()? {
                    return noted(
                        NoteKind::NotApplied,
                        "not applied: messages keep their retain flag on their way to the remote (Retain As \
                         Published)",
                    );
                }
            }
            "bridge_receive_maximum" => {
                let count: i64 = line.number("a number from 1 to 65535")?;
                if !(1..=65535).contains(&count) {
                    return Err(line.error(format!("{count}: expected 1 to 65535")));
                }
                return noted(
                    NoteKind::NotApplied,
                    "not applied: over MQTT 5 the bridge announces a Receive Maximum of 1024",
                );
            }
            "bridge_session_expiry_interval" => {
                let seconds: i64 = line.number("a number of seconds")?;
                if !(0..=i64::from(u32::MAX)).contains(&seconds) {
                    return Err(line.error(format!("{seconds}: expected 0 to {}", u32::MAX)));
                }
                return noted(
                    NoteKind::NotApplied,
                    "not applied: over MQTT 5 the bridge's session at the remote never expires with cleansession \
                     false, and ends with the connection with cleansession true",
                );
            }
            "bridge_reload_type" => {
                match line.word()? {
                    "lazy" | "immediate" => {}
                    other => return Err(line.error(format!("expected lazy or immediate, found {other:?}"))),
                }
                return noted(NoteKind::NotApplied, "not applied: Midge has no reload type for bridges");
            }
            "bridge_tcp_keepalive" => {
                let words: Vec<&str> = line.rest.split_whitespace().collect();
                let valid = words.len() == 3 && words.iter().all(|word| word.parse::<u32>().is_ok_and(|n| n > 0));
                if !valid {
                    return Err(line.error("expected three positive numbers: IDLE INTERVAL COUNTER"));
                }
                return noted(NoteKind::NotApplied, "not applied: the link uses the system's TCP keepalive settings");
            }
            "bridge_tcp_user_timeout" => {
                line.number::<i64>("a number of milliseconds")?;
                return noted(NoteKind::NotApplied, "not applied: the link uses the system's TCP user timeout");
            }
            "local_username" | "local_password" => {
                let key = if line.directive == "local_username" { "local_username" } else { "local_password" };
                self.string(line, key)?;
                return noted(
                    NoteKind::NotApplied,
                    "not applied: the bridge's session in this broker is the operator's own configuration, \
                     checked by neither password_file nor acl_file",
                );
            }
            "local_cleansession" => {
                line.boolean()?;
                return noted(
                    NoteKind::NotApplied,
                    "not applied: the bridge's session in this broker is always kept (it holds what waits for the \
                     remote)",
                );
            }
            "notifications_local_only" => {
                if line.boolean()? {
                    return noted(
                        NoteKind::NotApplied,
                        "not applied: with notifications true, the state is published here and at the remote",
                    );
                }
            }
            // Every name of BRIDGE_DIRECTIVES has its arm (a test sees to it).
            _ => return Err(line.error("unknown directive")),
        }
        Ok(None)
    }

    /// A string directive's value, refused twice in one bridge.
    fn string(&mut self, line: &Line<'_>, key: &'static str) -> Result<String, ConfigError> {
        let value = line.string()?.to_owned();
        if !self.strings.insert(key) {
            return Err(line.error("given twice for this bridge"));
        }
        Ok(value)
    }

    /// The bridge's TLS settings, made by its first TLS directive.
    fn tls(&mut self, line: &Line<'_>) -> &mut BridgeTls {
        if self.tls_at.is_none() {
            self.tls_at = Some(line.at.clone());
        }
        self.config.tls.get_or_insert_with(BridgeTls::default)
    }
}

/// A note for a directive accepted and not applied, or applied otherwise.
fn noted(kind: NoteKind, message: &str) -> Result<Noted, ConfigError> {
    Ok(Some((kind, message.to_owned())))
}

/// One address of an `address` line, `host[:port]`, as `host:port` (`[v6]:port`): the port
/// is the number after the last colon, 1883 when there is none, as in mosquitto.
fn address(line: &Line<'_>, word: &str) -> Result<String, ConfigError> {
    let bad = |why: String| line.error(format!("address {word:?}: {why}"));
    let (host, port) = match word.rsplit_once(':') {
        Some((host, port)) => {
            let number = port.parse::<u16>().ok().filter(|port| *port > 0);
            (host, number.ok_or_else(|| bad(format!("port {port:?}: expected 1 to 65535")))?)
        }
        None => (word, 1883),
    };
    let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad("the host is missing".to_owned()));
    }
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// `topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]]`, with mosquitto's rules.
fn topic(line: &Line<'_>) -> Result<BridgeTopic, ConfigError> {
    let mut words = line.rest.split_whitespace();
    let pattern = words.next().ok_or_else(|| line.error("a value is missing"))?;
    let rest: Vec<&str> = words.take_while(|word| !word.starts_with('#')).collect();
    if rest.len() > 4 {
        return Err(line.error("expected topic PATTERN [in|out|both [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]]"));
    }
    let text = |word: &str| if word == "\"\"" { String::new() } else { word.to_owned() };
    let direction = match rest.first().map(|word| word.to_ascii_lowercase()) {
        None => Direction::Out,
        Some(word) => match word.as_str() {
            "out" => Direction::Out,
            "in" => Direction::In,
            "both" => Direction::Both,
            _ => return Err(line.error(format!("direction {:?}: expected in, out or both", rest[0]))),
        },
    };
    let qos = match rest.get(1) {
        None => 0,
        Some(word) => word
            .parse::<u8>()
            .ok()
            .filter(|qos| *qos <= 2)
            .ok_or_else(|| line.error(format!("qos {word:?}: expected 0, 1 or 2")))?,
    };
    let topic = BridgeTopic {
        pattern: text(pattern),
        direction,
        qos,
        local_prefix: rest.get(2).map_or_else(String::new, |word| text(word)),
        remote_prefix: rest.get(3).map_or_else(String::new, |word| text(word)),
    };
    if topic.pattern.is_empty() && (topic.local_prefix.is_empty() || topic.remote_prefix.is_empty()) {
        return Err(line.error("an empty pattern (\"\") needs both a local and a remote prefix"));
    }
    topic.check().map_err(|problem| line.error(problem))?;
    Ok(topic)
}

/// `restart_timeout SECONDS` (a constant wait) or `restart_timeout BASE CAP` (backing off).
fn restart_timeout(line: &Line<'_>) -> Result<Vec<u64>, ConfigError> {
    let seconds = |word: &str| {
        word.parse::<i64>().map_err(|_| line.error(format!("expected a number of seconds, found {word:?}")))
    };
    match line.rest.split_whitespace().collect::<Vec<_>>()[..] {
        [] => Err(line.error("a value is missing")),
        [constant] => Ok(vec![seconds(constant)?.max(1).unsigned_abs()]),
        [base, cap] => {
            let (base, cap) = (seconds(base)?.max(1), seconds(cap)?);
            if cap < base {
                return Err(line.error(format!("the cap ({cap}) is below the base ({base})")));
            }
            Ok(vec![base.unsigned_abs(), cap.unsigned_abs()])
        }
        _ => Err(line.error("expected restart_timeout SECONDS or restart_timeout BASE CAP")),
    }
}
