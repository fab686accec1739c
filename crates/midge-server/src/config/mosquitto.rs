//! mosquitto.conf as a drop-in config: its directives read and mapped onto the same
//! [`ServerConfig`] the TOML loader produces, so nothing downstream knows which format it came
//! from. docs/migrating-from-mosquitto.md is the table of every directive.
//!
//! The rules are mosquitto.conf(5)'s, for mosquitto 2:
//! - A line is `directive value...`; `#` starts a comment only as the line's first character,
//!   blank lines are skipped. String values (paths) are the rest of the line.
//! - `listener PORT [ADDRESS]` starts a listener; the directives of a listener (`protocol`,
//!   `cafile`, `max_connections`, ...) after it are its own. Given before any `listener`, they
//!   belong to the default listener, which `port` and `bind_address` also set. A file without
//!   any listener gets the local one (127.0.0.1:1883, anonymous clients allowed), as mosquitto
//!   2's local-only mode.
//! - `allow_anonymous`, `use_username_as_clientid`, `password_file` and `acl_file` apply to every listener, unless
//!   `per_listener_settings true`, when they belong to the listener they follow.
//!   `allow_anonymous` defaults to false, as in mosquitto 2.
//! - A string directive given twice in one scope is an error, as mosquitto's "Duplicate"; a
//!   number or boolean given twice takes the last value; `log_type` and `log_dest` add up.
//! - `include_dir DIR` reads `DIR/*.conf` in alphabetical order, at that point.
//! - `connection NAME` starts a bridge (`[[bridge]]`); the bridge directives after it are its
//!   own until the next `connection` line or the end of the file (`mosquitto/bridge.rs`). Other
//!   directives there keep their meaning: a listener's go to the last listener, the others
//!   are global.
//!
//! Directives whose meaning differs in Midge, or that Midge has not built yet, are accepted and
//! returned as [`Note`]s, which `midge serve` logs once at start. An unknown directive or a
//! value that cannot be used is a [`ConfigError::Mosquitto`]: `FILE:LINE: directive NAME: why`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{
    default_listener, BridgeConfig, BridgeProtocol, BridgeTls, BridgeTopic, ConfigError, Direction, ListenerConfig,
    ListenerProtocol, LogDestination, MaxConnections, ServerConfig, StartType, TlsVersion,
};
use crate::bind::BindAddr;
use crate::proxy_header::ProxyVersion;

mod bridge;

use bridge::BridgeDraft;

/// Which syntax a config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// Midge's own TOML (docs/configuration.md).
    Toml,
    /// mosquitto.conf (docs/migrating-from-mosquitto.md).
    Mosquitto,
}

impl ConfigFormat {
    /// The format of `text`, from its first line that is neither blank nor a comment: a TOML
    /// table (`[store]`, `[[listener]]`) or assignment (`key = value`, `"quoted key" = 1`) is
    /// TOML; anything else
    /// (`directive value`) is mosquitto.conf. A file of nothing but comments is TOML (it gives
    /// the defaults either way).
    pub fn detect(text: &str) -> Self {
        let Some(line) = meaningful_lines(text).next().map(|(_, line)| line) else {
            return Self::Toml;
        };
        if line.starts_with(['[', '"', '\'']) {
            return Self::Toml;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('=') || words.next().is_some_and(|second| second.starts_with('=')) {
            Self::Toml
        } else {
            Self::Mosquitto
        }
    }
}

/// A config file read and checked, with what `midge serve` should say about it at start.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: ServerConfig,
    /// The format it was read as.
    pub format: ConfigFormat,
    /// mosquitto.conf directives accepted with another meaning, or not applied (none for TOML).
    pub notes: Vec<Note>,
}

impl LoadedConfig {
    /// Reads `path` as `format`, or as the format [`ConfigFormat::detect`] sees in it.
    pub fn load(path: &Path, format: Option<ConfigFormat>) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path, format)
    }

    /// Parses config `text` as `format`, or as the format [`ConfigFormat::detect`] sees in it;
    /// `path` names it in errors (a mosquitto.conf's `include_dir` reads files, relative to the
    /// working directory).
    pub fn parse(text: &str, path: &Path, format: Option<ConfigFormat>) -> Result<Self, ConfigError> {
        match format.unwrap_or_else(|| ConfigFormat::detect(text)) {
            ConfigFormat::Toml => {
                Ok(Self { config: ServerConfig::parse(text, path)?, format: ConfigFormat::Toml, notes: Vec::new() })
            }
            ConfigFormat::Mosquitto => {
                let (config, notes) = parse(text, path)?;
                Ok(Self { config, format: ConfigFormat::Mosquitto, notes })
            }
        }
    }
}

/// A directive accepted whose effect in Midge is not mosquitto's: logged once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where the directive is.
    pub at: Location,
    /// The directive.
    pub directive: String,
    /// Whether Midge does something else ([`NoteKind::Differs`]) or nothing yet.
    pub kind: NoteKind,
    /// What Midge does instead.
    pub message: String,
}

/// What a [`Note`] says about its directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Accepted; Midge does what the message says, which is not quite mosquitto's meaning.
    Differs,
    /// Accepted and not applied: Midge has not built it yet (a unix socket listener, a bridge's
    /// bind address), or has no such setting.
    NotApplied,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: directive {}: {}", self.at, self.directive, self.message)
    }
}

/// A line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (the one given, or one `include_dir` read).
    pub path: PathBuf,
    /// The line, from 1.
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Parses mosquitto.conf `text` (read from `path`, which also names it in errors, and against
/// whose directory nothing is resolved: relative paths are relative to the working directory,
/// as in mosquitto) into a checked config and its notes.
pub fn parse(text: &str, path: &Path) -> Result<(ServerConfig, Vec<Note>), ConfigError> {
    let mut reader = Reader::new(prescan_per_listener(text));
    reader.read(text, path)?;
    reader.finish(path)
}

/// Room above `message_size_limit` (a payload size) for the rest of a PUBLISH packet when it
/// becomes `max_packet_size` (a whole packet's): the fixed header (5 bytes), the packet id (2),
/// a topic of up to about 900 bytes with its length, and v5 properties. A payload within the
/// limit is refused only with a longer topic or more properties than that.
pub const MESSAGE_SIZE_HEADROOM: u32 = 1024;

/// What `max_queued_messages 0` ("no maximum") becomes: no bound a broker reaches, and small
/// enough that the bounds derived from it (twice it, plus 1,024) do not overflow.
const UNBOUNDED_QUEUE: usize = usize::MAX / 4;

/// The directives of a bridge (`connection NAME` section): after a `connection` line they belong
/// to its bridge (`[[bridge]]`), until the next `connection` line or the end of the file;
/// elsewhere they are an error, as in mosquitto.
const BRIDGE_DIRECTIVES: &[&str] = &[
    "address",
    "addresses",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_ciphers",
    "bridge_ciphers_tls1.3",
    "bridge_identity",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_max_topic_alias",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_psk",
    "bridge_receive_maximum",
    "bridge_reload_type",
    "bridge_require_ocsp",
    "bridge_session_expiry_interval",
    "bridge_tcp_keepalive",
    "bridge_tcp_user_timeout",
    "bridge_tls_version",
    "cleansession",
    "clientid",
    "idle_timeout",
    "keepalive_interval",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "username",
];

/// mosquitto directives Midge refuses rather than ignore, since ignoring them would change who
/// may connect or which topics clients see; with what to use instead.
const REFUSED: &[(&str, &str)] = &[
    ("mount_point", "not supported yet: Midge does not prefix topics per listener"),
    ("psk_hint", "not supported: TLS-PSK listeners are not built (use certificates)"),
    ("psk_file", "not supported: TLS-PSK listeners are not built (use certificates)"),
    ("auth_plugin", "plugins are not supported: use password_file, or Midge's JWT or HTTP authentication (TOML)"),
    ("plugin", "plugins are not supported: use password_file, or Midge's JWT or HTTP authentication (TOML)"),
    ("global_plugin", "plugins are not supported: use password_file, or Midge's JWT or HTTP authentication (TOML)"),
];

/// The value of the last `per_listener_settings` line, which decides where the security
/// directives go wherever they are in the file (mosquitto recommends it first). A malformed
/// line is reported by the main pass. Only the main file is looked at: one given in a file of
/// `include_dir` applies from there on.
fn prescan_per_listener(text: &str) -> bool {
    let mut per_listener = false;
    for (_, line) in meaningful_lines(text) {
        let mut words = line.split_whitespace();
        if words.next() == Some("per_listener_settings") {
            per_listener = words.next() == Some("true");
        }
    }
    per_listener
}

/// The lines that are neither blank nor comments, numbered from 1 and trimmed.
fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// A listener as the file builds it.
struct Draft {
    /// Its `listener` line (for the default listener, its last `port` or `bind_address` line, or
    /// the file's first line).
    at: Location,
    port: Option<u16>,
    /// `listener PORT ADDRESS`'s address, or the default listener's `bind_address`.
    address: Option<String>,
    /// `socket_domain`: which family "every address" means.
    ipv4_only: Option<bool>,
    /// Why Midge cannot open it yet (a unix socket, `bind_interface`, ...); such a listener is
    /// reported and left out.
    not_built: Option<String>,
    /// The settings that map one to one.
    listener: ListenerConfig,
    /// `allow_anonymous` given for it (with `per_listener_settings true`).
    allow_anonymous: Option<bool>,
    /// The string directives already given for it (mosquitto refuses them twice).
    strings: HashSet<&'static str>,
}

impl Draft {
    fn new(at: Location) -> Self {
        let mut listener = default_listener(0);
        listener.allow_anonymous = false;
        Self {
            at,
            port: None,
            address: None,
            ipv4_only: None,
            not_built: None,
            listener,
            allow_anonymous: None,
            strings: HashSet::new(),
        }
    }

    /// What the listener is called in notes: `listener PORT [ADDRESS]`.
    fn name(&self) -> String {
        let port = self.port.unwrap_or(crate::bind::DEFAULT_PORT);
        match &self.address {
            Some(address) => format!("listener {port} {address}"),
            None => format!("listener {port}"),
        }
    }

    fn bind(&self) -> Result<BindAddr, String> {
        let port = self.port.unwrap_or(crate::bind::DEFAULT_PORT);
        let text = match self.address.as_deref() {
            Some(address) => match address.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                Ok(IpAddr::V4(ip)) => format!("{ip}:{port}"),
                Err(_) => format!("{address}:{port}"),
            },
            // Every address, as mosquitto: `[::]` takes IPv4 too on a dual-stack host (Linux's
            // default, net.ipv6.bindv6only = 0).
            None if self.ipv4_only == Some(true) => format!("0.0.0.0:{port}"),
            None => format!("[::]:{port}"),
        };
        BindAddr::parse(&text).map_err(|e| e.to_string())
    }
}

/// A global security setting with where it was given.
#[derive(Default)]
struct Security {
    allow_anonymous: Option<(bool, Location)>,
    use_username_as_clientid: Option<bool>,
    password_file: Option<(PathBuf, Location)>,
    acl_file: Option<(PathBuf, Location)>,
}

/// The parser's state across the file and the ones it includes.
struct Reader {
    per_listener: bool,
    config: ServerConfig,
    /// The default listener (index 0, used when a directive touched it) and the `listener`s.
    drafts: Vec<Draft>,
    default_used: bool,
    /// Global security (`per_listener_settings false`).
    security: Security,
    /// The bridges, one per `connection` line, in the file's order.
    bridges: Vec<BridgeDraft>,
    /// The index in `bridges` of the one whose section we are in. Each file has its own: a
    /// section ends with the file it is in, as in mosquitto (whose `include_dir` files start
    /// outside any bridge, and after which the including file's section goes on).
    bridge: Option<usize>,
    /// The most verbose level `log_type` asked for, and where.
    log_level: Option<(u8, Location)>,
    /// A `log_dest` was read: the first one replaces the default destination.
    log_dest_given: bool,
    max_packet_size_given: bool,
    message_size_limit: Option<(u32, Location)>,
    /// Where each `[mqtt]` key was set, to name the directive if the whole config is refused.
    set_at: HashMap<&'static str, (Location, String)>,
    /// Global string directives already given.
    strings: HashSet<&'static str>,
    notes: Vec<Note>,
    /// Includes being read, against loops.
    depth: usize,
}

/// One directive line.
struct Line<'a> {
    at: Location,
    directive: &'a str,
    /// The rest of the line, trimmed.
    rest: &'a str,
}

impl Line<'_> {
    fn error(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Mosquitto {
            path: self.at.path.clone(),
            line: self.at.line,
            directive: self.directive.to_owned(),
            problem: problem.into(),
        }
    }

    /// The value of a directive that takes exactly one word.
    fn word(&self) -> Result<&str, ConfigError> {
        let mut words = self.rest.split_whitespace();
        match (words.next(), words.next()) {
            (Some(word), None) => Ok(word),
            (None, _) => Err(self.error("a value is missing")),
            (Some(_), Some(_)) => Err(self.error(format!("expected one value, found {:?}", self.rest))),
        }
    }

    /// The value of a directive that takes a string: the rest of the line.
    fn string(&self) -> Result<&str, ConfigError> {
        if self.rest.is_empty() {
            return Err(self.error("a value is missing"));
        }
        Ok(self.rest)
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.word()? {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(self.error(format!("expected true or false, found {other:?}"))),
        }
    }

    fn number<T: std::str::FromStr>(&self, range: &str) -> Result<T, ConfigError> {
        let word = self.word()?;
        word.parse().map_err(|_| self.error(format!("expected {range}, found {word:?}")))
    }
}

impl Reader {
    fn new(per_listener: bool) -> Self {
        Self {
            per_listener,
            config: ServerConfig::default(),
            drafts: Vec::new(),
            default_used: false,
            security: Security::default(),
            bridges: Vec::new(),
            bridge: None,
            log_level: None,
            log_dest_given: false,
            max_packet_size_given: false,
            message_size_limit: None,
            set_at: HashMap::new(),
            strings: HashSet::new(),
            notes: Vec::new(),
            depth: 0,
        }
    }

    fn read(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        if self.drafts.is_empty() {
            self.drafts.push(Draft::new(Location { path: path.to_owned(), line: 1 }));
        }
        for (number, line) in meaningful_lines(text) {
            let (directive, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let line = Line { at: Location { path: path.to_owned(), line: number }, directive, rest: rest.trim() };
            self.directive(&line)?;
        }
        Ok(())
    }

    fn note(&mut self, line: &Line<'_>, kind: NoteKind, message: impl Into<String>) {
        let message = message.into();
        // Once per directive and message: a note repeated for every listener says nothing more.
        if !self.notes.iter().any(|note| note.directive == line.directive && note.message == message) {
            self.notes.push(Note { at: line.at.clone(), directive: line.directive.to_owned(), kind, message });
        }
    }

    /// The listener directives go to: the last `listener`'s, or the default one.
    fn current(&mut self) -> &mut Draft {
        if self.drafts.len() == 1 {
            self.default_used = true;
        }
        self.drafts.last_mut().expect("the default listener's draft is made first")
    }

    /// Records a string directive of the current listener, refusing it twice.
    fn listener_string(&mut self, line: &Line<'_>, key: &'static str) -> Result<PathBuf, ConfigError> {
        let value = PathBuf::from(line.string()?);
        if !self.current().strings.insert(key) {
            return Err(line.error("given twice for this listener"));
        }
        Ok(value)
    }

    /// Records a global string directive, refusing it twice.
    fn global_string(&mut self, line: &Line<'_>, key: &'static str) -> Result<String, ConfigError> {
        let value = line.string()?.to_owned();
        if !self.strings.insert(key) {
            return Err(line.error("given twice"));
        }
        Ok(value)
    }

    fn mqtt_set(&mut self, line: &Line<'_>, key: &'static str) {
        self.set_at.insert(key, (line.at.clone(), line.directive.to_owned()));
    }

    #[allow(clippy::too_many_lines)] // one arm per directive reads better than a table of closures
    fn directive(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        if let Some(index) = self.bridge {
            if BRIDGE_DIRECTIVES.contains(&line.directive) {
                return self.bridge_directive(index, line);
            }
        }
        match line.directive {
            // Listeners.
            "listener" => {
                let mut words = line.rest.split_whitespace();
                let port = words.next().ok_or_else(|| line.error("a port is missing: listener PORT [ADDRESS]"))?;
                let port: u16 = port.parse().map_err(|_| line.error(format!("port {port:?}: expected 0 to 65535")))?;
                let address = words.next().map(str::to_owned);
                if words.next().is_some() {
                    return Err(line.error("expected listener PORT [ADDRESS]"));
                }
                let mut draft = Draft::new(line.at.clone());
                if address.as_deref().is_some_and(|a| a.starts_with('/')) {
                    draft.not_built = Some("unix socket listeners are not built yet".to_owned());
                }
                draft.port = Some(port);
                draft.address = address;
                self.drafts.push(draft);
            }
            "port" => {
                self.drafts[0].port = Some(line.number("a port from 0 to 65535")?);
                self.drafts[0].at = line.at.clone();
                self.default_used = true;
                self.note(line, NoteKind::Differs, "deprecated in mosquitto: sets the default listener's port");
            }
            "bind_address" => {
                let address = self.global_string(line, "bind_address")?;
                self.drafts[0].address = Some(address);
                self.drafts[0].at = line.at.clone();
                self.default_used = true;
            }
            "bind_interface" => {
                let interface = line.word()?.to_owned();
                // The interface's addresses when the listener starts (all of them, or the IPv4
                // ones with `socket_domain ipv4`, or the listener's address if it gives one,
                // which must be the interface's), as mosquitto binds them.
                self.current().listener.bind_interface = Some(interface);
            }
            "protocol" => match line.word()? {
                "mqtt" => self.current().listener.protocol = ListenerProtocol::Mqtt,
                "websockets" => self.current().listener.protocol = ListenerProtocol::Websockets,
                "http_api" => {
                    self.current().listener.protocol = ListenerProtocol::Http;
                    self.note(
                        line,
                        NoteKind::Differs,
                        "an HTTP listener with Midge's HTTP API, /metrics and console (docs/http-api.md), \
                         not mosquitto 2.1's endpoints; callers are judged as the listener's MQTT \
                         clients are (Basic credentials), or by bearer tokens ([listener.http_tokens], TOML)",
                    );
                }
                other => return Err(line.error(format!("expected mqtt, websockets or http_api, found {other:?}"))),
            },
            "socket_domain" => match line.word()? {
                "ipv4" => self.current().ipv4_only = Some(true),
                "ipv6" => {
                    self.current().ipv4_only = Some(false);
                    self.note(
                        line,
                        NoteKind::Differs,
                        "ipv6 listens on [::], which also takes IPv4 clients where the system is dual-stack \
                         (Linux's default); give an address to listen on one family only",
                    );
                }
                "unix" => self.current().not_built = Some("unix socket listeners are not built yet".to_owned()),
                other => return Err(line.error(format!("expected ipv4, ipv6 or unix, found {other:?}"))),
            },
            "max_connections" => {
                let value: i64 = line.number("-1 (no limit) or a number of connections")?;
                self.current().listener.max_connections =
                    MaxConnections::try_from(value).map_err(|problem| line.error(problem))?;
            }
            "enable_proxy_protocol" => {
                let value: i64 = line.number("1 or 2")?;
                self.current().listener.enable_proxy_protocol =
                    Some(ProxyVersion::try_from(value).map_err(|problem| line.error(problem))?);
            }
            "http_dir" => {
                line.string()?;
                self.note(line, NoteKind::NotApplied, "not applied: Midge's websockets listeners serve no files");
            }
            "websockets_log_level" | "websockets_headers_size" => {
                line.word()?;
                self.note(line, NoteKind::NotApplied, "not applied: libwebsockets' setting; Midge has its own");
            }

            // Security: global, or the listener's with per_listener_settings true.
            "per_listener_settings" => {
                line.boolean()?;
            }
            "allow_anonymous" => {
                let value = line.boolean()?;
                if self.per_listener {
                    self.current().allow_anonymous = Some(value);
                } else {
                    self.security.allow_anonymous = Some((value, line.at.clone()));
                }
            }
            "use_username_as_clientid" => {
                let value = line.boolean()?;
                if self.per_listener {
                    self.current().listener.use_username_as_clientid = value;
                } else {
                    self.security.use_username_as_clientid = Some(value);
                }
            }
            "password_file" | "acl_file" => {
                let key = if line.directive == "password_file" { "password_file" } else { "acl_file" };
                if self.per_listener {
                    let path = self.listener_string(line, key)?;
                    let listener = &mut self.current().listener;
                    *if key == "password_file" { &mut listener.password_file } else { &mut listener.acl_file } =
                        Some(path);
                } else {
                    let path = PathBuf::from(self.global_string(line, key)?);
                    let slot = if key == "password_file" {
                        &mut self.security.password_file
                    } else {
                        &mut self.security.acl_file
                    };
                    *slot = Some((path, line.at.clone()));
                }
            }

            // TLS, per listener.
            "cafile" => self.current_path(line, "cafile", |l, p| l.cafile = Some(p))?,
            "capath" => self.current_path(line, "capath", |l, p| l.capath = Some(p))?,
            "certfile" => self.current_path(line, "certfile", |l, p| l.certfile = Some(p))?,
            "keyfile" => self.current_path(line, "keyfile", |l, p| l.keyfile = Some(p))?,
            "crlfile" => self.current_path(line, "crlfile", |l, p| l.crlfile = Some(p))?,
            "require_certificate" => self.current().listener.require_certificate = line.boolean()?,
            "use_identity_as_username" => self.current().listener.use_identity_as_username = line.boolean()?,
            "use_subject_as_username" => self.current().listener.use_subject_as_username = line.boolean()?,
            "tls_version" => {
                let version = match line.word()? {
                    "tlsv1.3" => TlsVersion::Tls13,
                    "tlsv1.2" => TlsVersion::Tls12,
                    "tlsv1.1" => {
                        self.note(
                            line,
                            NoteKind::Differs,
                            "tlsv1.1 is taken as tlsv1.2: TLS 1.1 clients are refused (rustls speaks 1.2 and 1.3)",
                        );
                        TlsVersion::Tls12
                    }
                    other => return Err(line.error(format!("expected tlsv1.3, tlsv1.2 or tlsv1.1, found {other:?}"))),
                };
                self.current().listener.tls_version = Some(version);
            }
            "ciphers" | "ciphers_tls1.3" | "dhparamfile" => {
                line.string()?;
                self.note(line, NoteKind::Differs, "not applied: Midge uses rustls's default cipher suites");
            }

            // Persistence.
            "persistence" => self.config.store.persistence = line.boolean()?,
            "persistence_location" => {
                let dir = PathBuf::from(self.global_string(line, "persistence_location")?);
                self.config.store.data_dir = dir.join("midge");
                self.note(
                    line,
                    NoteKind::Differs,
                    format!(
                        "Midge's store is the directory {} (mosquitto.db is not read)",
                        self.config.store.data_dir.display()
                    ),
                );
            }
            "persistence_file" => {
                self.global_string(line, "persistence_file")?;
                self.note(line, NoteKind::Differs, "not used: Midge's store is a directory, not one file");
            }
            "autosave_interval" => {
                let _: u64 = line.number("a number of seconds")?;
                self.note(
                    line,
                    NoteKind::Differs,
                    "not needed: Midge stores every QoS 1/2 message and retained message before acknowledging it",
                );
            }
            "autosave_on_changes" => {
                line.boolean()?;
                self.note(
                    line,
                    NoteKind::Differs,
                    "not needed: Midge stores every QoS 1/2 message and retained message before acknowledging it",
                );
            }
            "persistent_client_expiration" => {
                let word = line.word()?;
                let seconds = expiration_seconds(word).ok_or_else(|| {
                    line.error(format!("{word:?}: expected a number followed by h, d, w, m or y (e.g. 14d)"))
                })?;
                // 0 (`0d`) means never, as leaving the directive out; the most is 136 years.
                self.config.mqtt.persistent_client_expiration = u32::try_from(seconds)
                    .ok()
                    .filter(|seconds| *seconds < u32::MAX)
                    .ok_or_else(|| line.error(format!("{word:?}: at most 4294967294 seconds (136 years)")))?;
                self.mqtt_set(line, "persistent_client_expiration");
            }

            // Limits: [mqtt].
            "max_queued_messages" => {
                let value: usize = line.number("a number of messages (0: no maximum)")?;
                self.config.mqtt.max_queued_messages = Some(if value == 0 { UNBOUNDED_QUEUE } else { value });
                self.mqtt_set(line, "max_queued_messages");
            }
            "max_queued_bytes" => {
                self.config.mqtt.max_queued_bytes = Some(line.number("a number of bytes (0: no maximum)")?);
                self.mqtt_set(line, "max_queued_bytes");
            }
            "queue_qos0_messages" => {
                self.config.mqtt.queue_qos0_messages = line.boolean()?;
                self.mqtt_set(line, "queue_qos0_messages");
            }
            "max_inflight_messages" => {
                let value: u32 = line.number("a number of messages (0: no maximum)")?;
                // Beyond 65,535 the client's Receive Maximum bounds the window anyway.
                self.config.mqtt.max_inflight_messages =
                    u16::try_from(value).ok().filter(|v| *v > 0).unwrap_or(u16::MAX);
                self.mqtt_set(line, "max_inflight_messages");
            }
            "max_inflight_bytes" => {
                if line.number::<u64>("a number of bytes (0: no maximum)")? > 0 {
                    self.note(
                        line,
                        NoteKind::NotApplied,
                        "not applied: Midge bounds messages in flight by count (max_inflight_messages)",
                    );
                }
            }
            "max_packet_size" => {
                let value: u32 = line.number("a number of bytes (0: no limit)")?;
                if value > 0 {
                    self.config.mqtt.max_packet_size = value;
                    self.max_packet_size_given = true;
                    self.mqtt_set(line, "max_packet_size");
                }
            }
            "message_size_limit" => {
                let value: u32 = line.number("a number of bytes (0: no limit)")?;
                self.message_size_limit = (value > 0).then(|| (value, line.at.clone()));
            }
            "max_keepalive" => {
                self.config.mqtt.max_keepalive = line.number("a number of seconds up to 65535")?;
                self.mqtt_set(line, "max_keepalive");
            }
            "max_topic_alias" => {
                self.config.mqtt.topic_alias_maximum = line.number("a number up to 65535")?;
                self.mqtt_set(line, "topic_alias_maximum");
            }
            "max_qos" => {
                self.config.mqtt.max_qos = line.number("0, 1 or 2")?;
                self.mqtt_set(line, "max_qos");
            }
            "retain_available" => {
                self.config.mqtt.retain_available = line.boolean()?;
                self.mqtt_set(line, "retain_available");
            }
            "allow_zero_length_clientid" => {
                self.config.mqtt.allow_zero_length_clientid = line.boolean()?;
                self.mqtt_set(line, "allow_zero_length_clientid");
                if self.per_listener {
                    self.note(
                        line,
                        NoteKind::Differs,
                        "applies to every listener: it is a broker-wide setting in Midge",
                    );
                }
            }
            "upgrade_outgoing_qos" => {
                if line.boolean()? {
                    self.note(
                        line,
                        NoteKind::NotApplied,
                        "not applied: messages are delivered at the lower of the published and the subscribed \
                         QoS, as the MQTT specification requires",
                    );
                }
            }
            "auto_id_prefix" => {
                self.global_string(line, "auto_id_prefix")?;
                self.note(
                    line,
                    NoteKind::Differs,
                    "not applied: Midge assigns client ids of the form midge-<16 hex digits>",
                );
            }
            "clientid_prefixes" => {
                self.global_string(line, "clientid_prefixes")?;
                self.note(
                    line,
                    NoteKind::NotApplied,
                    "not applied: every client id is accepted; restrict clients with password_file and acl_file",
                );
            }
            "check_retain_source" => {
                line.boolean()?;
                self.note(
                    line,
                    NoteKind::Differs,
                    "not applied: retained messages are checked against the subscriber's read access, not \
                     their publisher's current rights",
                );
            }
            "memory_limit" => {
                if line.number::<u64>("a number of bytes (0: no limit)")? > 0 {
                    self.note(
                        line,
                        NoteKind::NotApplied,
                        "not applied: Midge bounds queues, sessions and retained messages instead (docs/limits.md)",
                    );
                }
            }
            "sys_interval" => self.config.sys.interval = u64::from(line.number::<u32>("a number of seconds")?),
            "set_tcp_nodelay" => {
                line.boolean()?;
                self.note(line, NoteKind::Differs, "Midge always sets TCP_NODELAY on client sockets");
            }

            // Logging.
            "log_dest" => {
                // The first log_dest replaces the default (stderr); the next ones add to it, and
                // `none` empties the list, as in mosquitto.
                if !std::mem::replace(&mut self.log_dest_given, true) {
                    self.config.log.destinations.clear();
                }
                let (kind, rest) = line.rest.split_once(char::is_whitespace).unwrap_or((line.rest, ""));
                let destination = match kind {
                    "stderr" => LogDestination::Stderr,
                    "stdout" => LogDestination::Stdout,
                    "syslog" => LogDestination::Syslog,
                    "file" if !rest.trim().is_empty() => {
                        // mosquitto keeps one log file: the last one named.
                        self.config.log.file = Some(PathBuf::from(rest.trim()));
                        LogDestination::File
                    }
                    "file" => return Err(line.error("log_dest file needs a path")),
                    "none" => {
                        self.config.log.destinations.clear();
                        return Ok(());
                    }
                    "dlt" => {
                        self.note(line, NoteKind::NotApplied, "not applied: Midge has no DLT destination");
                        return Ok(());
                    }
                    "topic" => LogDestination::Topic,
                    "" => return Err(line.error("a value is missing")),
                    other => {
                        return Err(line.error(format!(
                            "expected stderr, stdout, file PATH, syslog, topic, dlt or none, found {other:?}"
                        )))
                    }
                };
                if !self.config.log.destinations.contains(&destination) {
                    self.config.log.destinations.push(destination);
                }
            }
            "log_type" => {
                // 0 off, 1 error, 2 warn, 3 info, 4 debug.
                let level = match line.word()? {
                    "none" => 0,
                    "error" => 1,
                    "warning" => 2,
                    "notice" | "information" => 3,
                    "debug" | "all" => 4,
                    "subscribe" | "unsubscribe" | "websockets" => {
                        self.note(line, NoteKind::Differs, "Midge logs these events at debug level");
                        3
                    }
                    other => {
                        return Err(line.error(format!(
                            "expected debug, error, warning, notice, information, subscribe, unsubscribe, \
                             websockets, none or all, found {other:?}"
                        )))
                    }
                };
                if self.log_level.as_ref().is_none_or(|(current, _)| level > *current) {
                    self.log_level = Some((level, line.at.clone()));
                }
            }
            "log_timestamp" => self.config.log.timestamps = line.boolean()?,
            "log_timestamp_format" => {
                self.config.log.timestamp_format = Some(line.string()?.to_owned());
            }
            "connection_messages" => self.config.log.connection_messages = line.boolean()?,

            // Removed in mosquitto 2.0, still in older files.
            "retry_interval" | "store_clean_interval" => {
                line.string()?;
                self.note(
                    line,
                    NoteKind::Differs,
                    "not applied: removed in mosquitto 2.0, and Midge has no such setting",
                );
            }

            // Process.
            "include_dir" => self.include(line)?,
            "pid_file" => {
                self.global_string(line, "pid_file")?;
                self.note(
                    line,
                    NoteKind::NotApplied,
                    "not applied: Midge writes no pid file (a service manager tracks it)",
                );
            }
            "user" => {
                self.global_string(line, "user")?;
                self.note(
                    line,
                    NoteKind::NotApplied,
                    "not applied: Midge does not change user; start it as the user it should run as",
                );
            }

            // Bridges.
            "connection" => self.connection(line)?,
            directive if BRIDGE_DIRECTIVES.contains(&directive) => {
                return Err(line.error("a bridge directive outside a bridge: put it after a `connection NAME` line"))
            }
            directive => {
                if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == directive) {
                    return Err(line.error(*why));
                }
                if directive.starts_with("auth_opt_") || directive.starts_with("plugin_opt_") {
                    return Err(line.error("plugins are not supported"));
                }
                return Err(line.error("unknown directive"));
            }
        }
        Ok(())
    }

    /// A path directive of the current listener.
    fn current_path(
        &mut self,
        line: &Line<'_>,
        key: &'static str,
        set: impl FnOnce(&mut ListenerConfig, PathBuf),
    ) -> Result<(), ConfigError> {
        let path = self.listener_string(line, key)?;
        set(&mut self.current().listener, path);
        Ok(())
    }

    /// `include_dir DIR`: every `*.conf` in it, in alphabetical order, read now.
    fn include(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let dir = PathBuf::from(line.string()?);
        if self.depth >= 8 {
            return Err(line.error("include_dir nested more than 8 deep (a loop?)"));
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| line.error(format!("cannot read {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "conf") && path.is_file())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| line.error(format!("cannot read {}: {e}", file.display())))?;
            self.depth += 1;
            let outer_bridge = self.bridge.take();
            let read = self.read(&text, &file);
            self.bridge = outer_bridge;
            self.depth -= 1;
            read?;
        }
        Ok(())
    }

    /// The config: listeners built, global settings applied, the same checks as a TOML file's.
    fn finish(mut self, path: &Path) -> Result<(ServerConfig, Vec<Note>), ConfigError> {
        if let Some((limit, at)) = self.message_size_limit.take() {
            let line = Line { at, directive: "message_size_limit", rest: "" };
            if self.max_packet_size_given {
                self.note(&line, NoteKind::Differs, "not applied: max_packet_size, given too, bounds whole packets");
            } else {
                let size = limit.saturating_add(MESSAGE_SIZE_HEADROOM).min(midge_broker::PROTOCOL_MAX_PACKET_SIZE);
                self.config.mqtt.max_packet_size = size;
                self.mqtt_set(&line, "max_packet_size");
                self.note(
                    &line,
                    NoteKind::Differs,
                    format!("Midge bounds whole packets: max_packet_size = {size} (the limit and {MESSAGE_SIZE_HEADROOM} bytes for the topic and headers)"),
                );
            }
        }
        if let Some((level, _)) = &self.log_level {
            self.config.log.level = ["off", "error", "warn", "info", "debug"][usize::from(*level)].to_owned();
        }

        let mut drafts = std::mem::take(&mut self.drafts);
        if !self.default_used {
            drafts.remove(0);
        }
        let any_configured = !drafts.is_empty();
        let mut listeners = Vec::new();
        let mut not_opened = Vec::new();
        for draft in drafts {
            if let Some(why) = &draft.not_built {
                let name = draft.name();
                not_opened.push(format!("{name} (line {}): {why}", draft.at.line));
                self.notes.push(Note {
                    at: draft.at.clone(),
                    directive: "listener".to_owned(),
                    kind: NoteKind::NotApplied,
                    message: format!("{name} not opened: {why}"),
                });
                continue;
            }
            let mut listener = draft.listener.clone();
            listener.bind = draft.bind().map_err(|problem| listener_error(&draft.at, problem))?;
            listener.allow_anonymous = draft.allow_anonymous.unwrap_or(false);
            listeners.push((draft.at, listener));
        }
        if any_configured && listeners.is_empty() {
            let at = Location { path: path.to_owned(), line: 1 };
            let problem = format!("Midge can open none of this file's listeners yet: {}", not_opened.join("; "));
            return Err(listener_error(&at, problem));
        }
        let security_given = self.security.allow_anonymous.is_some()
            || self.security.use_username_as_clientid.is_some()
            || self.security.password_file.is_some()
            || self.security.acl_file.is_some();
        if !any_configured && security_given {
            // mosquitto 2's local-only mode, with the file's security: anonymous clients
            // allowed unless the file says not. Without security settings the listener list
            // stays empty, which means the same local listener (and lets `-p` move it).
            let mut local = default_listener(crate::bind::DEFAULT_PORT);
            local.allow_anonymous = self.security.allow_anonymous.as_ref().is_none_or(|(allow, _)| *allow);
            listeners.push((Location { path: path.to_owned(), line: 1 }, local));
        }
        for (_, listener) in &mut listeners {
            if !self.per_listener {
                if let Some((allow, _)) = &self.security.allow_anonymous {
                    listener.allow_anonymous = *allow;
                }
                listener.use_username_as_clientid = self.security.use_username_as_clientid.unwrap_or(false);
                listener.password_file = self.security.password_file.as_ref().map(|(path, _)| path.clone());
                listener.acl_file = self.security.acl_file.as_ref().map(|(path, _)| path.clone());
            }
        }

        let at: Vec<Location> = listeners.iter().map(|(at, _)| at.clone()).collect();
        self.config.listener = listeners.into_iter().map(|(_, listener)| listener).collect();
        self.finish_bridges()?;
        let config = self.config;
        let config = match config.check(path) {
            Ok(config) => config,
            Err(ConfigError::Listener { listener, problem, .. }) => {
                return Err(listener_error(&at[listener - 1], problem))
            }
            Err(ConfigError::Invalid { limit, .. }) => {
                let (location, directive) = self
                    .set_at
                    .get(limit.key)
                    .cloned()
                    .unwrap_or((Location { path: path.to_owned(), line: 1 }, limit.key.to_owned()));
                return Err(ConfigError::Mosquitto {
                    path: location.path,
                    line: location.line,
                    directive,
                    problem: limit.problem.to_owned(),
                });
            }
            Err(other) => return Err(other),
        };
        Ok((config, self.notes))
    }
}

fn listener_error(at: &Location, problem: String) -> ConfigError {
    ConfigError::Mosquitto { path: at.path.clone(), line: at.line, directive: "listener".to_owned(), problem }
}

/// `persistent_client_expiration`'s value (`14d`, `1y`, ...) in seconds, as mosquitto counts
/// them (a month is 30 days, a year 365).
fn expiration_seconds(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let count: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let seconds = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return None,
    };
    count.checked_mul(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncSetting;

    fn parse_ok(text: &str) -> (ServerConfig, Vec<Note>) {
        parse(text, Path::new("m.conf")).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn config(text: &str) -> ServerConfig {
        parse_ok(text).0
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("m.conf")).expect_err(text).to_string()
    }

    /// The note about `directive`, which must exist.
    fn note(text: &str, directive: &str) -> Note {
        let (_, notes) = parse_ok(text);
        notes.into_iter().find(|n| n.directive == directive).unwrap_or_else(|| panic!("no note on {directive}"))
    }

    fn binds(config: &ServerConfig) -> Vec<String> {
        config.listener.iter().map(|l| l.bind.to_string()).collect()
    }

    #[test]
    fn the_format_is_told_from_the_first_meaningful_line() {
        for toml in [
            "",
            "# only a comment\n",
            "[[listener]]\n",
            "\n# c\n[store]\n",
            "key = 1\n",
            "key=1\n",
            "a.b = 2",
            "\"a b\" = 1",
        ] {
            assert_eq!(ConfigFormat::detect(toml), ConfigFormat::Toml, "{toml:?}");
        }
        for conf in ["listener 1883\n", "# mosquitto\n\nper_listener_settings true\n", "  port 1883", "persistence"] {
            assert_eq!(ConfigFormat::detect(conf), ConfigFormat::Mosquitto, "{conf:?}");
        }
        assert_eq!(ConfigFormat::detect("log_timestamp_format %Y-%m-%dT%H:%M:%S\n"), ConfigFormat::Mosquitto);
    }

    #[test]
    fn comments_blank_lines_and_no_listener_give_the_local_listener() {
        let config = config("# a comment\n\n   \n  # indented comment\nmax_keepalive 60\n");
        assert!(config.listener.is_empty(), "the same as a TOML file without listeners");
        assert_eq!(config.effective_listeners(), vec![default_listener(1883)], "local-only: anonymous, 127.0.0.1");
        let config = self::config("allow_anonymous false\n");
        assert_eq!(binds(&config), ["127.0.0.1:1883"]);
        assert!(!config.listener[0].allow_anonymous);
        let config = self::config("password_file /etc/pw\n");
        assert!(config.listener[0].allow_anonymous && config.listener[0].password_file.is_some());
    }

    #[test]
    fn listener_port_and_address() {
        let config = config("listener 1883\nlistener 1884 127.0.0.1\nlistener 1885 ::1\nlistener 1886 localhost\n");
        assert_eq!(binds(&config), ["[::]:1883", "127.0.0.1:1884", "[::1]:1885", "localhost:1886"]);
        assert!(config.listener.iter().all(|l| !l.allow_anonymous), "mosquitto 2: false when listeners are configured");
        assert!(error("listener\n").starts_with("m.conf:1: directive listener: a port is missing"));
        assert!(error("listener 70000\n").contains("port \"70000\": expected 0 to 65535"));
        assert!(error("listener 1 a b\n").contains("expected listener PORT [ADDRESS]"));
    }

    #[test]
    fn port_and_bind_address_make_the_default_listener() {
        let (config, notes) = parse_ok("port 1884\n");
        assert_eq!(binds(&config), ["[::]:1884"]);
        assert!(notes[0].message.contains("deprecated in mosquitto"), "{notes:?}");
        assert_eq!(binds(&self::config("bind_address 127.0.0.1\nport 1884\n")), ["127.0.0.1:1884"]);
        assert_eq!(binds(&self::config("bind_address 127.0.0.1\n")), ["127.0.0.1:1883"]);
        assert_eq!(binds(&self::config("port 1884\nlistener 9001\nprotocol websockets\n")), ["[::]:1884", "[::]:9001"]);
        assert!(error("port x\n").contains("directive port: expected a port"));
        assert!(error("bind_address 127.0.0.1\nbind_address ::1\n")
            .contains("m.conf:2: directive bind_address: given twice"));
    }

    #[test]
    fn bind_interface_and_unix_sockets() {
        let (config, notes) = parse_ok("listener 1883 127.0.0.1\nlistener 1884\nbind_interface eth0\n");
        assert_eq!(binds(&config), ["127.0.0.1:1883", "[::]:1884"]);
        assert_eq!(config.listener[1].bind_interface.as_deref(), Some("eth0"));
        assert!(notes.iter().all(|note| note.directive != "bind_interface"), "{notes:?}");
        let (_, notes) = parse_ok("listener 1883 127.0.0.1\nlistener 0 /run/mosquitto.sock\n");
        assert!(notes[0].message.contains("unix socket listeners are not built yet"), "{notes:?}");
        // With an address, the address (one of the interface's) is bound.
        let config = self::config("listener 1884 192.0.2.1\nbind_interface eth0\n");
        assert_eq!(binds(&config), ["192.0.2.1:1884"]);
        assert_eq!(config.listener[0].bind_interface.as_deref(), Some("eth0"));
    }

    #[test]
    fn protocol() {
        let config = config("listener 1883\nprotocol mqtt\nlistener 9001\nprotocol websockets\n");
        let protocols: Vec<_> = config.listener.iter().map(|l| l.protocol).collect();
        assert_eq!(protocols, [ListenerProtocol::Mqtt, ListenerProtocol::Websockets]);
        assert!(error("listener 1883\nprotocol smtp\n")
            .contains("m.conf:2: directive protocol: expected mqtt, websockets or http_api"));
        let (config, notes) = parse_ok("listener 1883\nlistener 8080\nprotocol http_api\n");
        assert_eq!(config.listener[1].protocol, ListenerProtocol::Http);
        assert!(notes[0].message.contains("Midge's HTTP API"), "{notes:?}");
    }

    #[test]
    fn socket_domain() {
        assert_eq!(binds(&config("listener 1883\nsocket_domain ipv4\n")), ["0.0.0.0:1883"]);
        let text = "listener 1883\nsocket_domain ipv6\n";
        assert_eq!(binds(&config(text)), ["[::]:1883"]);
        assert_eq!(note(text, "socket_domain").kind, NoteKind::Differs);
        assert!(error("listener 1883\nsocket_domain ipx\n").contains("expected ipv4, ipv6 or unix"));
    }

    #[test]
    fn security_is_global_without_per_listener_settings() {
        let config =
            config("listener 1883\nlistener 1884\nallow_anonymous true\npassword_file /etc/pw\nacl_file /etc/acl\n");
        for listener in &config.listener {
            assert!(listener.allow_anonymous);
            assert_eq!(listener.password_file.as_deref(), Some(Path::new("/etc/pw")));
            assert_eq!(listener.acl_file.as_deref(), Some(Path::new("/etc/acl")));
        }
        assert!(
            error("password_file /a\npassword_file /b\n").contains("m.conf:2: directive password_file: given twice")
        );
        assert!(
            error("allow_anonymous yes\n").contains("directive allow_anonymous: expected true or false, found \"yes\"")
        );
        let config = self::config("listener 1883\nlistener 1884\nuse_username_as_clientid true\n");
        assert!(config.listener.iter().all(|listener| listener.use_username_as_clientid));
        assert!(!self::config("listener 1883\n").listener[0].use_username_as_clientid);
        assert!(error("use_username_as_clientid yes\n").contains("expected true or false"));
    }

    #[test]
    fn per_listener_settings_gives_security_to_the_listener_before() {
        let config = config(
            "per_listener_settings true\nlistener 1883\nallow_anonymous true\n\
             listener 1884\npassword_file /etc/pw\nacl_file /etc/acl\n",
        );
        let [first, second] = &config.listener[..] else { panic!("{config:?}") };
        assert!(first.allow_anonymous && first.password_file.is_none() && first.acl_file.is_none());
        assert!(!second.allow_anonymous);
        assert_eq!(second.password_file.as_deref(), Some(Path::new("/etc/pw")));
        assert_eq!(second.acl_file.as_deref(), Some(Path::new("/etc/acl")));
        // Given anywhere in the file, as mosquitto (which recommends it first).
        let config = self::config("listener 1883\nallow_anonymous true\nlistener 1884\nper_listener_settings true\n");
        assert!(config.listener[0].allow_anonymous && !config.listener[1].allow_anonymous);
        let config =
            self::config("per_listener_settings true\nlistener 1883\nlistener 1884\nuse_username_as_clientid true\n");
        assert!(!config.listener[0].use_username_as_clientid && config.listener[1].use_username_as_clientid);
        assert!(error("per_listener_settings maybe\n").contains("expected true or false"));
        assert!(error("per_listener_settings true\nlistener 1\npassword_file /a\npassword_file /b\n")
            .contains("m.conf:4: directive password_file: given twice for this listener"));
    }

    #[test]
    fn tls_directives_go_to_their_listener() {
        let config = config(
            "listener 1883\nlistener 8883\ncafile /c/ca.pem\ncapath /c/cas\ncertfile /c/s.pem\nkeyfile /c/s.key\n\
             crlfile /c/crl.pem\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\n\
             listener 8884\ncertfile /c/s.pem\nkeyfile /c/s.key\nuse_subject_as_username true\ntls_version tlsv1.2\n",
        );
        let [plain, tls, other] = &config.listener[..] else { panic!("{config:?}") };
        assert_eq!((plain.certfile.as_ref(), plain.cafile.as_ref()), (None, None));
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/c/ca.pem")));
        assert_eq!(tls.capath.as_deref(), Some(Path::new("/c/cas")));
        assert_eq!(tls.certfile.as_deref(), Some(Path::new("/c/s.pem")));
        assert_eq!(tls.keyfile.as_deref(), Some(Path::new("/c/s.key")));
        assert_eq!(tls.crlfile.as_deref(), Some(Path::new("/c/crl.pem")));
        assert!(tls.require_certificate && tls.use_identity_as_username && !tls.use_subject_as_username);
        assert_eq!(tls.tls_version, Some(TlsVersion::Tls13));
        assert!(other.use_subject_as_username && !other.require_certificate);
        assert_eq!(other.tls_version, Some(TlsVersion::Tls12));
        let text = "listener 8883\ntls_version tlsv1.1\n";
        assert_eq!(self::config(text).listener[0].tls_version, Some(TlsVersion::Tls12));
        assert!(note(text, "tls_version").message.contains("TLS 1.1 clients are refused"));
        assert!(error("listener 1\ntls_version sslv3\n").contains("expected tlsv1.3, tlsv1.2 or tlsv1.1"));
        assert!(error("listener 1\ncertfile /a\ncertfile /b\n").contains("m.conf:3: directive certfile: given twice"));
        assert!(error("listener 1\nrequire_certificate 1\n")
            .contains("directive require_certificate: expected true or false"));
        assert!(error("listener 1\nuse_identity_as_username\n")
            .contains("directive use_identity_as_username: a value is missing"));
        assert!(error("listener 1\nuse_subject_as_username x\n").contains("expected true or false"));
        assert!(error("listener 1\ncafile\n").contains("directive cafile: a value is missing"));
        assert!(error("listener 1\ncapath\n").contains("directive capath: a value is missing"));
        assert!(error("listener 1\nkeyfile\n").contains("directive keyfile: a value is missing"));
        // A path keeps its spaces: the rest of the line.
        assert_eq!(
            self::config("listener 1\ncafile /my certs/ca.pem\n").listener[0].cafile.as_deref(),
            Some(Path::new("/my certs/ca.pem"))
        );
    }

    #[test]
    fn max_connections_is_the_listeners() {
        let config =
            config("max_connections 10\nlistener 1884\nmax_connections -1\nlistener 1885\nmax_connections 5\n");
        let limits: Vec<_> = config.listener.iter().map(|l| l.max_connections.get()).collect();
        assert_eq!(limits, [Some(10), None, Some(5)], "the first is the default listener's (port 1883)");
        assert!(error("listener 1\nmax_connections 0\n")
            .contains("m.conf:2: directive max_connections: max_connections = 0 would refuse"));
    }

    #[test]
    fn persistence() {
        assert!(!config("persistence false\n").store.persistence);
        assert!(config("persistence true\n").store.persistence);
        let text = "persistence_location /var/lib/mosquitto/\n";
        assert_eq!(config(text).store.data_dir, PathBuf::from("/var/lib/mosquitto/midge"));
        assert!(note(text, "persistence_location").message.contains("mosquitto.db is not read"));
        assert_eq!(config("persistence true\n").store.sync, SyncSetting::Always);
        assert!(note("persistence_file mosquitto.db\n", "persistence_file")
            .message
            .contains("a directory, not one file"));
        let autosave = note("autosave_interval 1800\n", "autosave_interval");
        assert_eq!(autosave.kind, NoteKind::Differs);
        assert!(autosave.message.contains("before acknowledging it"));
        assert!(note("autosave_on_changes true\n", "autosave_on_changes").message.contains("before acknowledging it"));
        let (expiration, notes) = parse_ok("persistent_client_expiration 2d\n");
        assert_eq!(expiration.mqtt.persistent_client_expiration, 2 * 86_400);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(config("persistent_client_expiration 1w\n").mqtt.persistent_client_expiration, 604_800);
        assert_eq!(config("").mqtt.persistent_client_expiration, 0, "never, without the directive");
        assert!(error("persistent_client_expiration 200y\n").contains("at most 4294967294 seconds"));
        assert_eq!(expiration_seconds("2h"), Some(7200));
        assert_eq!(expiration_seconds("1y"), Some(365 * 86_400));
        assert!(error("persistent_client_expiration 14x\n").contains("expected a number followed by h, d, w, m or y"));
        assert!(error("autosave_interval soon\n").contains("directive autosave_interval: expected a number of seconds"));
        assert!(error("persistence yes\n").contains("directive persistence: expected true or false"));
    }

    #[test]
    fn queue_and_inflight_limits() {
        let mqtt = config("max_queued_messages 50\nmax_queued_bytes 4096\nmax_inflight_messages 5\n").mqtt;
        assert_eq!(
            (mqtt.max_queued_messages, mqtt.max_queued_bytes, mqtt.max_inflight_messages),
            (Some(50), Some(4096), 5)
        );
        let mqtt = config("max_queued_messages 0\nmax_inflight_messages 0\n").mqtt;
        assert_eq!(mqtt.max_queued_messages, Some(UNBOUNDED_QUEUE), "0: no maximum");
        assert_eq!(mqtt.max_inflight_messages, u16::MAX, "0: no maximum");
        assert!(mqtt.limits().is_ok());
        assert!(parse_ok("max_inflight_bytes 0\n").1.is_empty());
        assert_eq!(note("max_inflight_bytes 1000\n", "max_inflight_bytes").kind, NoteKind::NotApplied);
        assert!(config("queue_qos0_messages true\n").mqtt.queue_qos0_messages);
        assert!(
            error("max_queued_messages -1\n").contains("directive max_queued_messages: expected a number of messages")
        );
    }

    #[test]
    fn packet_and_message_sizes() {
        assert_eq!(config("max_packet_size 2048\n").mqtt.max_packet_size, 2048);
        assert_eq!(config("max_packet_size 0\n").mqtt.max_packet_size, midge_broker::PROTOCOL_MAX_PACKET_SIZE);
        let text = "message_size_limit 1000\n";
        assert_eq!(config(text).mqtt.max_packet_size, 1000 + MESSAGE_SIZE_HEADROOM);
        assert!(note(text, "message_size_limit").message.contains("Midge bounds whole packets"));
        let (config, notes) = parse_ok("message_size_limit 1000\nmax_packet_size 4000\n");
        assert_eq!(config.mqtt.max_packet_size, 4000);
        assert!(notes[0].message.contains("max_packet_size, given too"), "{notes:?}");
        assert_eq!(self::config("message_size_limit 0\n").mqtt.max_packet_size, midge_broker::PROTOCOL_MAX_PACKET_SIZE);
        // A value the broker refuses names the directive and its line.
        assert_eq!(
            error("# small\nmax_packet_size 10\n"),
            "m.conf:2: directive max_packet_size: must be between 16 and 268435460"
        );
    }

    #[test]
    fn broker_wide_capabilities() {
        let mqtt = config(
            "max_keepalive 120\nmax_topic_alias 0\nretain_available false\nallow_zero_length_clientid false\nmax_qos 1\n",
        )
        .mqtt;
        assert_eq!((mqtt.max_keepalive, mqtt.topic_alias_maximum, mqtt.max_qos), (120, 0, 1));
        assert!(!mqtt.retain_available && !mqtt.allow_zero_length_clientid);
        assert!(error("max_keepalive 70000\n")
            .contains("directive max_keepalive: expected a number of seconds up to 65535"));
        assert!(error("max_topic_alias x\n").contains("directive max_topic_alias"));
        assert_eq!(error("max_qos 3\n"), "m.conf:1: directive max_qos: must be 0, 1 or 2");
        assert!(error("retain_available no\n").contains("directive retain_available: expected true or false"));
        let zero = note("per_listener_settings true\nallow_zero_length_clientid true\n", "allow_zero_length_clientid");
        assert!(zero.message.contains("broker-wide"));
    }

    #[test]
    fn client_id_and_delivery_directives_that_differ() {
        assert!(parse_ok("upgrade_outgoing_qos false\n").1.is_empty());
        assert_eq!(note("upgrade_outgoing_qos true\n", "upgrade_outgoing_qos").kind, NoteKind::NotApplied);
        assert!(note("auto_id_prefix auto-\n", "auto_id_prefix").message.contains("midge-<16 hex digits>"));
        assert_eq!(note("clientid_prefixes sensor-\n", "clientid_prefixes").kind, NoteKind::NotApplied);
        assert!(note("check_retain_source true\n", "check_retain_source").message.contains("read access"));
        assert_eq!(note("memory_limit 1000000\n", "memory_limit").kind, NoteKind::NotApplied);
    }

    #[test]
    fn sys_interval_and_tcp_nodelay() {
        assert_eq!(config("sys_interval 3\n").sys.interval, 3);
        assert_eq!(config("sys_interval 0\n").sys.interval, 0);
        assert!(error("sys_interval ten\n").contains("directive sys_interval"));
        assert!(note("set_tcp_nodelay false\n", "set_tcp_nodelay").message.contains("always sets TCP_NODELAY"));
    }

    #[test]
    fn logging() {
        assert_eq!(config("log_type error\nlog_type warning\n").log.level, "warn");
        assert_eq!(config("log_type all\n").log.level, "debug");
        assert_eq!(config("log_type information\nlog_type notice\n").log.level, "info");
        assert_eq!(config("log_type none\n").log.level, "off");
        assert_eq!(config("log_type subscribe\n").log.level, "info");
        assert_eq!(config("").log.level, "info");
        assert!(error("log_type loud\n").contains("directive log_type: expected debug, error"));
    }

    #[test]
    fn log_dest_lines_add_up_to_the_destinations() {
        use LogDestination::{File, Stderr, Stdout, Syslog, Topic};
        assert_eq!(config("").log.destinations, [Stderr]);
        assert!(parse_ok("log_dest stderr\n").1.is_empty());
        assert_eq!(config("log_dest stdout\n").log.destinations, [Stdout]);
        assert_eq!(config("log_dest syslog\nlog_dest stderr\nlog_dest syslog\n").log.destinations, [Syslog, Stderr]);
        let log = config("log_dest file /var/log/mosquitto/my log.txt\nlog_dest stderr\n").log;
        assert_eq!(log.destinations, [File, Stderr]);
        assert_eq!(log.file.as_deref(), Some(Path::new("/var/log/mosquitto/my log.txt")));
        assert!(config("log_dest none\n").log.destinations.is_empty());
        assert_eq!(config("log_dest stdout\nlog_dest none\nlog_dest syslog\n").log.destinations, [Syslog]);
        assert_eq!(note("log_dest dlt\n", "log_dest").kind, NoteKind::NotApplied);
        assert!(config("log_dest dlt\n").log.destinations.is_empty());
        assert!(parse_ok("log_dest topic\n").1.is_empty());
        assert_eq!(config("log_dest stderr\nlog_dest topic\n").log.destinations, [Stderr, Topic]);
        assert!(error("log_dest file\n").contains("log_dest file needs a path"));
        assert!(error("log_dest carrier-pigeon\n").contains("expected stderr, stdout"));
        assert!(error("log_dest\n").contains("a value is missing"));
    }

    #[test]
    fn log_timestamps_and_connection_messages_map_to_log_keys() {
        let log =
            config("log_timestamp false\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\nconnection_messages false\n").log;
        assert!(!log.timestamps && !log.connection_messages);
        assert_eq!(log.timestamp_format.as_deref(), Some("%Y-%m-%dT%H:%M:%S"));
        let (log, notes) = parse_ok("log_timestamp true\nconnection_messages true\n");
        assert!(log.log.timestamps && log.log.connection_messages && notes.is_empty(), "{notes:?}");
        assert!(error("log_timestamp maybe\n").contains("expected true or false"));
    }

    #[test]
    fn options_mosquitto_2_removed_are_accepted() {
        for directive in ["retry_interval 20", "store_clean_interval 10"] {
            let (_, notes) = parse_ok(&format!("{directive}\n"));
            assert!(notes[0].message.contains("removed in mosquitto 2.0"), "{notes:?}");
        }
    }

    #[test]
    fn pid_file_and_user_are_not_applied() {
        assert_eq!(note("pid_file /run/mosquitto.pid\n", "pid_file").kind, NoteKind::NotApplied);
        assert!(note("user mosquitto\n", "user").message.contains("does not change user"));
    }

    #[test]
    fn include_dir_reads_conf_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.conf"), "listener 1885\n").unwrap();
        std::fs::write(dir.path().join("a.conf"), "listener 1884\nallow_anonymous true\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "nonsense\n").unwrap();
        let text = format!("listener 1883\ninclude_dir {}\nlistener 1886\n", dir.path().display());
        let config = config(&text);
        assert_eq!(binds(&config), ["[::]:1883", "[::]:1884", "[::]:1885", "[::]:1886"]);
        assert!(config.listener.iter().all(|l| l.allow_anonymous));
        std::fs::write(dir.path().join("d.conf"), "\nbogus 1\n").unwrap();
        let err = error(&text);
        assert_eq!(err, format!("{}:2: directive bogus: unknown directive", dir.path().join("d.conf").display()));
        assert!(error("include_dir /nonexistent/dir\n")
            .contains("m.conf:1: directive include_dir: cannot read /nonexistent/dir"));
    }

    /// The one bridge of `text`, which must be read.
    fn bridge(text: &str) -> BridgeConfig {
        let config = config(text);
        assert_eq!(config.bridge.len(), 1, "{config:?}");
        config.bridge.into_iter().next().unwrap()
    }

    /// A bridge section that works, to which a test adds its directives.
    const BRIDGE: &str = "connection cloud\naddress broker.example\ntopic a/# out 1\n";

    #[test]
    fn bridges_are_read_into_bridge_sections() {
        let text = "connection cloud\naddress broker.example:1884\ntopic sensors/# out 1\nremote_username u\n\
                    bridge_protocol_version mqttv311\ncleansession false\nstart_type automatic\n\
                    listener 1883\nallow_anonymous true\n";
        let (config, notes) = parse_ok(text);
        assert_eq!(binds(&config), ["[::]:1883"], "general directives after a bridge still apply");
        assert!(config.listener[0].allow_anonymous);
        assert!(notes.is_empty(), "{notes:?}");
        let mut expected = BridgeConfig::new("cloud");
        expected.addresses = vec!["broker.example:1884".into()];
        expected.topic = vec![BridgeTopic {
            pattern: "sensors/#".into(),
            direction: Direction::Out,
            qos: 1,
            local_prefix: String::new(),
            remote_prefix: String::new(),
        }];
        expected.remote_username = Some("u".into());
        assert_eq!(config.bridge, [expected]);
        assert!(error("topic a/# out 1\n").contains("m.conf:1: directive topic: a bridge directive outside a bridge"));
        assert!(error("connection\n").contains("directive connection: a value is missing"));
    }

    #[test]
    fn a_section_ends_at_the_next_connection_and_global_directives_inside_stay_global() {
        let config = config(
            "connection a\naddress a.example\ntopic x/#\nmax_queued_messages 50\nmax_queued_bytes 4096\n\
             listener 1883\nconnection b\naddress b.example\ntopic y/# in\nkeepalive_interval 30\n",
        );
        let [a, b] = &config.bridge[..] else { panic!("{config:?}") };
        assert_eq!((a.name.as_str(), a.keepalive_interval), ("a", 60));
        assert_eq!((b.name.as_str(), b.keepalive_interval), ("b", 30));
        assert_eq!(b.addresses, ["b.example:1883"]);
        assert_eq!(config.mqtt.max_queued_messages, Some(50), "global in mosquitto, inside a section too");
        assert_eq!(config.mqtt.max_queued_bytes, Some(4096));
        assert_eq!(binds(&config), ["[::]:1883"]);
        assert!(error("connection a\naddress r\ntopic t\nconnection a\n")
            .contains("m.conf:4: directive connection: another bridge is named \"a\""));
    }

    #[test]
    fn a_bridge_that_cannot_work_names_its_connection_line() {
        assert_eq!(
            error("listener 1883\nconnection cloud\ntopic a/#\n"),
            "m.conf:2: directive connection: bridge \"cloud\": addresses: at least one remote address is needed"
        );
        assert!(
            error("connection cloud\naddress r\n").contains("m.conf:1: directive connection: bridge \"cloud\": topic")
        );
        assert!(error("connection a.b/c\naddress r\ntopic t\n").contains("bridge \"a.b/c\": name"));
        let err = error(&format!("{BRIDGE}remote_password secret\n"));
        assert!(err.contains("m.conf:1: directive connection: bridge \"cloud\": remote_password needs remote_username"));
        // mosquitto's check: two bridges with one local client id.
        let err =
            error(&format!("{BRIDGE}local_clientid here\nconnection other\naddress r\ntopic t\nlocal_clientid here\n"));
        assert!(err.starts_with("m.conf:5: directive connection: bridge \"other\": local_clientid \"here\""), "{err}");
        let err = error(&format!(
            "{BRIDGE}remote_clientid id\nconnection other\naddress r\ntopic t\nlocal_clientid local.id\n"
        ));
        assert!(err.contains("local_clientid \"local.id\" is another bridge's too"), "{err}");
    }

    #[test]
    fn include_dir_files_have_their_own_bridge_sections() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "connection inner\naddress i.example\ntopic i/#\n").unwrap();
        let text = format!("connection outer\naddress o.example\ninclude_dir {}\ntopic o/#\n", dir.path().display());
        let config = config(&text);
        let names: Vec<_> = config.bridge.iter().map(|b| (b.name.as_str(), b.topic[0].pattern.as_str())).collect();
        assert_eq!(names, [("outer", "o/#"), ("inner", "i/#")], "the including file's section goes on after");
        std::fs::write(dir.path().join("a.conf"), "topic i/#\n").unwrap();
        let err = error(&text);
        assert!(err.contains("a.conf:1: directive topic: a bridge directive outside a bridge"), "{err}");
    }

    #[test]
    fn bridge_addresses() {
        let bridge =
            bridge("connection c\naddresses one.example two.example:1884 ::1:1885 [::2]:1886 # backup\ntopic t\n");
        assert_eq!(bridge.addresses, ["one.example:1883", "two.example:1884", "[::1]:1885", "[::2]:1886"]);
        // 1883 with TLS too, as in mosquitto (Midge's own default there is 8883).
        let bridge = self::bridge("connection c\naddress r\ntopic t\nbridge_cafile /ca.pem\n");
        assert_eq!(bridge.addresses, ["r:1883"]);
        assert!(error("connection c\naddress a\naddress b\ntopic t\n")
            .contains("m.conf:3: directive address: the bridge's addresses are given already"));
        assert!(error("connection c\naddress r:0\n").contains("directive address: address \"r:0\": port \"0\""));
        assert!(error("connection c\naddress r:x\n").contains("port \"x\": expected 1 to 65535"));
        assert!(error("connection c\naddress :1883\n").contains("the host is missing"));
        assert!(error("connection c\naddresses\n").contains("directive addresses: a value is missing"));
        assert!(error("connection c\naddress # none\n").contains("a value is missing"));
    }

    #[test]
    fn bridge_topic_lines() {
        let topics = bridge(
            "connection c\naddress r\ntopic a/#\ntopic b/+ IN 2\ntopic c both 1 here/ there/\n\
             topic d out 0 \"\" remote/\ntopic \"\" in 0 local/x remote/y\ntopic e # out 2\ntopic a/#\n\
             topic f out 1 l/ #/ is a comment too\n",
        )
        .topic;
        let summary: Vec<_> = topics
            .iter()
            .map(|t| (t.pattern.as_str(), t.direction, t.qos, t.local_prefix.as_str(), t.remote_prefix.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a/#", Direction::Out, 0, "", ""),
                ("b/+", Direction::In, 2, "", ""),
                ("c", Direction::Both, 1, "here/", "there/"),
                ("d", Direction::Out, 0, "", "remote/"),
                ("", Direction::In, 0, "local/x", "remote/y"),
                ("e", Direction::Out, 0, "", ""),
                ("f", Direction::Out, 1, "l/", ""),
            ],
            "a line given twice is kept once; `#` after the pattern starts a comment"
        );
        assert_eq!(bridge("connection c\naddress r\ntopic # both\n").topic[0].pattern, "#");
        for (line, problem) in [
            ("topic", "directive topic: a value is missing"),
            ("topic a sideways", "direction \"sideways\": expected in, out or both"),
            ("topic a out 3", "qos \"3\": expected 0, 1 or 2"),
            ("topic a out x", "qos \"x\""),
            ("topic \"\" out 0 local/", "an empty pattern (\"\") needs both a local and a remote prefix"),
            ("topic \"\" out 0 \"\" remote/", "needs both"),
            ("topic a out 0 +/ r/", "local_prefix \"+/\" has a wildcard"),
            ("topic a out 0 l/ r/+", "remote_prefix \"r/+\" has a wildcard"),
            ("topic a/#/b", "topic \"a/#/b\""),
            ("topic a out 0 l r extra", "expected topic PATTERN"),
        ] {
            let err = error(&format!("connection c\naddress r\n{line}\n"));
            assert!(err.starts_with("m.conf:3: directive topic: "), "{line}: {err}");
            assert!(err.contains(problem), "{line}: {err}");
        }
    }

    #[test]
    fn bridge_protocol_version() {
        assert_eq!(bridge(&format!("{BRIDGE}bridge_protocol_version mqttv50\n")).protocol_version, BridgeProtocol::V5);
        let text = format!("{BRIDGE}bridge_protocol_version mqttv50\nbridge_protocol_version mqttv311\n");
        assert_eq!(bridge(&text).protocol_version, BridgeProtocol::V311);
        let text = format!("{BRIDGE}bridge_protocol_version mqttv31\n");
        assert_eq!(bridge(&text).protocol_version, BridgeProtocol::V311);
        let note = note(&text, "bridge_protocol_version");
        assert_eq!(note.kind, NoteKind::Differs);
        assert!(
            note.to_string().starts_with(
                "m.conf:4: directive bridge_protocol_version: bridge \"cloud\": mqttv31 is taken as mqttv311"
            ),
            "{note}"
        );
        assert!(
            error(&format!("{BRIDGE}bridge_protocol_version 5\n")).contains("expected mqttv311, mqttv50 or mqttv31")
        );
    }

    #[test]
    fn bridge_client_ids_and_credentials_with_their_old_names() {
        let bridge = bridge(&format!(
            "{BRIDGE}remote_clientid r-id\nlocal_clientid l-id\nremote_username user name\nremote_password p w\n"
        ));
        assert_eq!(bridge.remote_clientid.as_deref(), Some("r-id"));
        assert_eq!(bridge.local_clientid.as_deref(), Some("l-id"));
        assert_eq!(bridge.remote_username.as_deref(), Some("user name"), "the rest of the line");
        assert_eq!(bridge.remote_password.as_deref(), Some("p w"));
        let old = self::bridge(&format!("{BRIDGE}clientid r-id\nusername u\npassword p\n"));
        assert_eq!(
            (old.remote_clientid.as_deref(), old.remote_username.as_deref(), old.remote_password.as_deref()),
            (Some("r-id"), Some("u"), Some("p"))
        );
        for (first, second) in [
            ("clientid a", "remote_clientid b"),
            ("local_clientid a", "local_clientid b"),
            ("username a", "remote_username b"),
            ("password a", "remote_password b"),
            ("notification_topic a", "notification_topic b"),
        ] {
            let err = error(&format!("{BRIDGE}{first}\n{second}\n"));
            assert!(err.starts_with("m.conf:5: directive ") && err.ends_with("given twice for this bridge"), "{err}");
        }
        assert!(error(&format!("{BRIDGE}remote_clientid\n")).contains("directive remote_clientid: a value is missing"));
    }

    #[test]
    fn bridge_timings_with_mosquittos_floors() {
        let bridge = bridge(&format!(
            "{BRIDGE}keepalive_interval 120\nrestart_timeout 10 60\nidle_timeout 30\nthreshold 5\nstart_type lazy\n"
        ));
        assert_eq!(bridge.keepalive_interval, 120);
        assert_eq!(bridge.restart_timeout, [10, 60]);
        assert_eq!((bridge.idle_timeout, bridge.threshold, bridge.start_type), (30, 5, StartType::Lazy));
        let floors =
            self::bridge(&format!("{BRIDGE}keepalive_interval 0\nrestart_timeout 0\nidle_timeout -3\nthreshold 0\n"));
        assert_eq!(floors.keepalive_interval, 5, "mosquitto: too low, 5 seconds");
        assert_eq!(floors.restart_timeout, [1]);
        assert_eq!((floors.idle_timeout, floors.threshold), (1, 1));
        assert_eq!(self::bridge(&format!("{BRIDGE}restart_timeout 20\n")).restart_timeout, [20]);
        assert_eq!(self::bridge(&format!("{BRIDGE}start_type once\n")).start_type, StartType::Once);
        assert_eq!(self::bridge(&format!("{BRIDGE}start_type automatic\n")).start_type, StartType::Automatic);
        for (line, problem) in [
            ("keepalive_interval 70000", "70000 seconds: at most 65535"),
            ("keepalive_interval x", "expected a number of seconds up to 65535"),
            ("restart_timeout 60 10", "the cap (10) is below the base (60)"),
            ("restart_timeout 1 2 3", "expected restart_timeout SECONDS or restart_timeout BASE CAP"),
            ("restart_timeout soon", "expected a number of seconds, found \"soon\""),
            ("restart_timeout", "a value is missing"),
            ("idle_timeout x", "directive idle_timeout"),
            ("threshold 99999999999", "at most 4294967295"),
            ("start_type manual", "manual is not supported"),
            ("start_type eager", "expected automatic, lazy or once"),
        ] {
            let err = error(&format!("{BRIDGE}{line}\n"));
            assert!(err.starts_with("m.conf:4: directive "), "{line}: {err}");
            assert!(err.contains(problem), "{line}: {err}");
        }
    }

    #[test]
    fn bridge_switches_and_notification_topic() {
        let bridge = bridge(&format!(
            "{BRIDGE}round_robin true\ncleansession true\ntry_private false\nnotifications false\n\
             notification_topic bridges/cloud/state\n"
        ));
        assert!(bridge.round_robin && bridge.cleansession && !bridge.try_private && !bridge.notifications);
        assert_eq!(bridge.notification_topic.as_deref(), Some("bridges/cloud/state"));
        for directive in ["round_robin", "cleansession", "try_private", "notifications"] {
            assert!(error(&format!("{BRIDGE}{directive} yes\n")).contains("expected true or false"), "{directive}");
        }
        assert!(error(&format!("{BRIDGE}notification_topic a/+\n")).contains("bridge \"cloud\": notification_topic"));
    }

    #[test]
    fn bridge_tls() {
        let bridge = bridge(&format!(
            "{BRIDGE}bridge_cafile /c/ca.pem\nbridge_capath /c/cas\nbridge_certfile /c/me.pem\n\
             bridge_keyfile /c/me.key\nbridge_insecure true\nbridge_tls_version tlsv1.3\nbridge_alpn mqtt\n"
        ));
        let expected = BridgeTls {
            cafile: Some("/c/ca.pem".into()),
            capath: Some("/c/cas".into()),
            certfile: Some("/c/me.pem".into()),
            keyfile: Some("/c/me.key".into()),
            insecure: true,
            tls_version: Some("tlsv1.3".into()),
            alpn: Some("mqtt".into()),
        };
        assert_eq!(bridge.tls, Some(expected));
        // Without a CA, mosquitto's link is plain TCP.
        let text = format!("{BRIDGE}bridge_insecure true\nbridge_certfile /c/me.pem\nbridge_keyfile /c/me.key\n");
        assert_eq!(self::bridge(&text).tls, None);
        let plain = note(&text, "connection");
        assert_eq!(plain.kind, NoteKind::NotApplied);
        assert!(
            plain.to_string().starts_with("m.conf:4: directive connection: bridge \"cloud\": plain TCP"),
            "{plain}"
        );
        let text = format!("{BRIDGE}bridge_capath /c/cas\nbridge_tls_version tlsv1.1\n");
        assert_eq!(self::bridge(&text).tls.unwrap().tls_version.as_deref(), Some("tlsv1.2"));
        assert_eq!(note(&text, "bridge_tls_version").kind, NoteKind::Differs);
        assert!(error(&format!("{BRIDGE}bridge_cafile /a\nbridge_tls_version sslv3\n"))
            .contains("m.conf:5: directive bridge_tls_version: expected tlsv1.3, tlsv1.2 or tlsv1.1"));
        assert!(error(&format!("{BRIDGE}bridge_cafile /a\nbridge_cafile /b\n")).contains("given twice for this bridge"));
        assert!(error(&format!("{BRIDGE}bridge_cafile /a\nbridge_certfile /c\n"))
            .contains("bridge \"cloud\": tls: certfile and keyfile go together"));
        assert!(error(&format!("{BRIDGE}bridge_insecure maybe\n")).contains("expected true or false"));
        for directive in ["bridge_identity id", "bridge_psk 0123abcd"] {
            assert!(error(&format!("{BRIDGE}{directive}\n")).contains("not supported: TLS-PSK bridges are not built"));
        }
        for directive in ["bridge_ciphers DEFAULT", "bridge_ciphers_tls1.3 TLS_AES_256_GCM_SHA384"] {
            let name = directive.split(' ').next().unwrap();
            assert!(note(&format!("{BRIDGE}{directive}\n"), name).message.contains("rustls's default cipher suites"));
        }
    }

    /// The directives Midge's bridges do not have: accepted with a note when their value asks
    /// for something Midge does not do, refused when the value is malformed.
    #[test]
    fn bridge_directives_midge_does_not_apply() {
        for (line, kind, says) in [
            ("bridge_attempt_unsubscribe false", NoteKind::Differs, "topic lines no longer configured"),
            ("bridge_bind_address 192.0.2.1", NoteKind::NotApplied, "the address the system picks"),
            ("bridge_require_ocsp true", NoteKind::NotApplied, "without OCSP"),
            ("bridge_max_packet_size 1000", NoteKind::NotApplied, "no Maximum Packet Size"),
            ("bridge_max_topic_alias 10", NoteKind::NotApplied, "no topic aliases"),
            ("bridge_outgoing_retain false", NoteKind::NotApplied, "Retain As Published"),
            ("bridge_receive_maximum 100", NoteKind::NotApplied, "Receive Maximum of 1024"),
            ("bridge_session_expiry_interval 60", NoteKind::NotApplied, "never expires with cleansession false"),
            ("bridge_reload_type immediate", NoteKind::NotApplied, "no reload type"),
            ("bridge_tcp_keepalive 60 10 3", NoteKind::NotApplied, "TCP keepalive"),
            ("bridge_tcp_user_timeout 5000", NoteKind::NotApplied, "TCP user timeout"),
            ("local_username me", NoteKind::NotApplied, "neither password_file nor acl_file"),
            ("local_password secret", NoteKind::NotApplied, "neither password_file nor acl_file"),
            ("local_cleansession true", NoteKind::NotApplied, "always kept"),
            ("notifications_local_only true", NoteKind::NotApplied, "here and at the remote"),
        ] {
            let directive = line.split(' ').next().unwrap();
            let note = note(&format!("{BRIDGE}{line}\n"), directive);
            assert_eq!(note.kind, kind, "{line}");
            assert!(note.message.starts_with("bridge \"cloud\": "), "{line}: {note}");
            assert!(note.message.contains(says), "{line}: {note}");
        }
        // Values that ask for what Midge does anyway say nothing.
        for line in [
            "bridge_require_ocsp false",
            "bridge_max_packet_size 0",
            "bridge_outgoing_retain true",
            "notifications_local_only false",
        ] {
            assert!(parse_ok(&format!("{BRIDGE}{line}\n")).1.is_empty(), "{line}");
        }
        for (line, problem) in [
            ("bridge_attempt_unsubscribe 2", "expected true or false"),
            ("bridge_require_ocsp x", "expected true or false"),
            ("bridge_max_packet_size big", "expected a number of bytes"),
            ("bridge_max_topic_alias 70000", "70000: expected 0 to 65535"),
            ("bridge_receive_maximum 0", "0: expected 1 to 65535"),
            ("bridge_session_expiry_interval -1", "-1: expected 0 to 4294967295"),
            ("bridge_reload_type never", "expected lazy or immediate"),
            ("bridge_tcp_keepalive 60 10", "expected three positive numbers"),
            ("bridge_tcp_user_timeout x", "milliseconds"),
            ("bridge_bind_address", "a value is missing"),
            ("local_cleansession x", "expected true or false"),
            ("notifications_local_only x", "expected true or false"),
        ] {
            let directive = line.split(' ').next().unwrap();
            let err = error(&format!("{BRIDGE}{line}\n"));
            assert!(err.starts_with(&format!("m.conf:4: directive {directive}: ")), "{line}: {err}");
            assert!(err.contains(problem), "{line}: {err}");
        }
        assert!(error(&format!("{BRIDGE}local_username a\nlocal_username b\n")).contains("given twice"));
    }

    #[test]
    fn every_bridge_directive_is_read_in_a_bridge() {
        for directive in BRIDGE_DIRECTIVES {
            for value in ["", "1", "true", "a b c"] {
                let text = format!("{BRIDGE}{directive} {value}\n");
                if let Err(err) = parse(&text, Path::new("m.conf")) {
                    assert!(!err.to_string().contains("unknown directive"), "{text}: {err}");
                }
            }
        }
    }

    #[test]
    fn unknown_and_refused_directives_name_file_line_and_directive() {
        assert_eq!(
            error("listener 1883\n\nallow_anonymus true\n"),
            "m.conf:3: directive allow_anonymus: unknown directive"
        );
        assert!(error("mount_point site/\n").contains("directive mount_point: not supported yet"));
        assert!(error("plugin /usr/lib/x.so\n").contains("plugins are not supported"));
        assert!(error("auth_opt_host localhost\n").contains("plugins are not supported"));
        assert!(error("psk_hint hint\n").contains("TLS-PSK"));
    }

    #[test]
    fn enable_proxy_protocol() {
        let err = error("listener 1883\nlistener 1884\nprotocol mqtt\nenable_proxy_protocol 3\n");
        assert!(err.starts_with("m.conf:4: directive enable_proxy_protocol"), "{err}");
        assert_eq!(
            config("listener 1883\nenable_proxy_protocol 2\n").listener[0].enable_proxy_protocol,
            Some(ProxyVersion::V2)
        );
    }

    #[test]
    fn a_bad_default_listener_address_names_its_line() {
        let err = error("# default listener\nbind_address not/an/address\n");
        assert!(err.starts_with("m.conf:2: directive listener: bind = \"not/an/address:1883\""), "{err}");
    }

    /// Every directive with values of every kind, in a listener, in a bridge and on its own:
    /// accepted or refused with an error naming the file and line, never a panic.
    #[test]
    fn no_directive_and_value_panics() {
        let directives = [
            "listener",
            "port",
            "bind_address",
            "bind_interface",
            "protocol",
            "socket_domain",
            "per_listener_settings",
            "allow_anonymous",
            "password_file",
            "acl_file",
            "cafile",
            "capath",
            "certfile",
            "keyfile",
            "crlfile",
            "require_certificate",
            "use_identity_as_username",
            "use_subject_as_username",
            "tls_version",
            "persistence",
            "persistence_location",
            "persistence_file",
            "autosave_interval",
            "autosave_on_changes",
            "persistent_client_expiration",
            "max_queued_messages",
            "max_queued_bytes",
            "max_inflight_messages",
            "max_inflight_bytes",
            "message_size_limit",
            "max_packet_size",
            "max_keepalive",
            "max_connections",
            "max_topic_alias",
            "retain_available",
            "upgrade_outgoing_qos",
            "allow_zero_length_clientid",
            "auto_id_prefix",
            "clientid_prefixes",
            "sys_interval",
            "set_tcp_nodelay",
            "log_dest",
            "log_type",
            "log_timestamp",
            "log_timestamp_format",
            "connection_messages",
            "pid_file",
            "user",
            "connection",
            "enable_proxy_protocol",
            "max_qos",
            "queue_qos0_messages",
            "memory_limit",
            "topic",
            "address",
        ];
        let values =
            ["", "x", "-1", "0", "1", "65536", "99999999999999999999", "true", "false", "1 2", "é", "0 /s", "1y"];
        for directive in directives {
            for value in values {
                for scope in ["", "listener 1883\n", "connection b\n"] {
                    let text = format!("{scope}{directive} {value}\n");
                    if let Err(error) = parse(&text, Path::new("m.conf")) {
                        assert!(error.to_string().starts_with("m.conf:"), "{text}: {error}");
                    }
                }
            }
        }
    }

    #[test]
    fn repeated_numbers_and_booleans_take_the_last_value() {
        let config = config("max_keepalive 60\nmax_keepalive 120\npersistence false\npersistence true\n");
        assert_eq!(config.mqtt.max_keepalive, 120);
        assert!(config.store.persistence);
    }

    /// The examples of mosquitto's own documentation: the commented example file as Debian ships
    /// it (every directive commented out) and the configurations of mosquitto.conf(5) and the
    /// mosquitto website's "Authentication methods" and "TLS" pages.
    #[test]
    fn mosquittos_documented_examples() {
        let example = Path::new("/usr/share/doc/mosquitto/examples/mosquitto.conf");
        if let Ok(text) = std::fs::read_to_string(example) {
            // Every line commented out: the local-only listener, as mosquitto starts with it.
            assert_eq!(parse(&text, example).unwrap().0.effective_listeners(), vec![default_listener(1883)]);
            // Each example value, uncommented (in a listener, or a bridge for bridge directives),
            // is accepted. Placeholders (`<host>`) and directives shown without a value are left.
            let examples: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix('#'))
                .filter(|line| {
                    let mut words = line.split_whitespace();
                    let word = words.next().unwrap_or_default();
                    line.starts_with(|c: char| c.is_ascii_lowercase())
                        && word.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                        && words.next().is_some()
                        && !line.contains('<')
                })
                .collect();
            assert!(examples.len() > 40, "{examples:?}");
            for line in examples {
                let directive = line.split_whitespace().next().unwrap();
                let text = if BRIDGE_DIRECTIVES.contains(&directive) {
                    // A bridge that works, with the line (its address or topic, or its own).
                    let address = if directive.starts_with("address") { "" } else { "address r\n" };
                    let topic = if directive == "topic" { "" } else { "topic t\n" };
                    format!("connection b\n{line}\n{address}{topic}")
                } else {
                    format!("listener 1883\n{line}\n")
                };
                parse(&text, example).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
        for text in [
            // mosquitto.conf(5): a default listener and a websockets one.
            "listener 1883\nlistener 8080\nprotocol websockets\n",
            // "Authentication methods": a password file, anonymous clients refused.
            "per_listener_settings false\nlistener 1883\nallow_anonymous false\npassword_file /etc/mosquitto/passwd\n",
            // "TLS": server certificates on 8883, clients asked for theirs.
            "listener 8883\ncafile /etc/mosquitto/ca_certificates/ca.crt\ncertfile /etc/mosquitto/certs/server.crt\n\
             keyfile /etc/mosquitto/certs/server.key\nrequire_certificate true\nuse_identity_as_username true\n",
            // A docker-compose style file: two listeners, file logging, persistence, limits.
            "listener 1883\nprotocol mqtt\nlistener 9001\nprotocol websockets\nallow_anonymous true\n\
             log_dest file /mosquitto/log/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\npersistence true\npersistence_location /mosquitto/data/\n\
             max_inflight_messages 20\nmax_queued_messages 1000\nallow_zero_length_clientid true\n\
             connection_messages true\nlog_timestamp true\n",
            // Per-listener security given to the default listener, set by bind_address.
            "per_listener_settings true\npid_file /run/mosquitto/mosquitto.pid\nbind_address 0.0.0.0\n\
             password_file /etc/mosquitto/passwd\n",
            // A mosquitto 1.x file.
            "retry_interval 20\nstore_clean_interval 10\nport 1883\nallow_anonymous true\n",
            // Debian's /etc/mosquitto/mosquitto.conf.
            "pid_file /run/mosquitto/mosquitto.pid\npersistence true\npersistence_location /var/lib/mosquitto/\n\
             log_dest file /var/log/mosquitto/mosquitto.log\ninclude_dir /nonexistent-is-not-here\n",
        ] {
            let result = parse(text, Path::new("doc.conf"));
            if text.contains("nonexistent-is-not-here") {
                assert!(result.unwrap_err().to_string().contains("doc.conf:5: directive include_dir: cannot read"));
            } else {
                result.unwrap_or_else(|e| panic!("{text}: {e}"));
            }
        }
    }
}
