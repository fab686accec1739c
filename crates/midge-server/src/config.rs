//! The configuration file (TOML, or a mosquitto.conf: `mosquitto.rs`) and the defaults
//! `midge serve` runs with when given none. Every key is documented in docs/configuration.md.

mod bridge;
mod cluster;
mod http;
mod log;
mod mosquitto;
mod mqtt;
mod proxy;
mod sn;
mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

pub use bridge::{split_address, BridgeConfig, BridgeProtocol, BridgeTls, BridgeTopic, Direction, StartType};
pub use cluster::ClusterConfig;
pub use log::{LogConfig, LogDestination, LogFormat, CONNECTION_MESSAGES_TARGET, DEFAULT_SYSLOG_SOCKET};
pub use mosquitto::{ConfigFormat, LoadedConfig, Location, Note, NoteKind, MESSAGE_SIZE_HEADROOM};
pub use mqtt::{MqttConfig, SlowConsumerSetting};
use serde::Deserialize;
pub use sn::{Advertise, SnSettings, DEFAULT_SN_PORT};
pub use source::ConfigSource;

use crate::bind::BindAddr;
pub use crate::bind::DEFAULT_PORT;
use crate::proxy_header::ProxyVersion;
use crate::transport::websocket::forwarded::{ForwardedHeader, IpNet};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listeners (`[[listener]]`). None given: one on 127.0.0.1:1883 that allows anonymous
    /// clients, as mosquitto 2 does when started without a config.
    pub listener: Vec<ListenerConfig>,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// Broker behaviour (`[mqtt]`).
    pub mqtt: MqttConfig,
    /// Durable storage (`[store]`).
    pub store: StoreConfig,
    /// Connections across every listener (`[connections]`).
    pub connections: ConnectionsConfig,
    /// The `$SYS` topics (`[sys]`).
    pub sys: SysConfig,
    /// Bridges to other brokers (`[[bridge]]`).
    #[serde(deserialize_with = "bridge::named_bridges")]
    pub bridge: Vec<BridgeConfig>,
    /// This node's place in a cluster (`[cluster]`); none: a single node.
    pub cluster: Option<ClusterConfig>,
}

/// The `$SYS` topics (`[sys]`): the broker's counters, published retained as mosquitto 2
/// names them, for any subscriber the ACL lets read `$SYS/#`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SysConfig {
    /// Seconds between updates (mosquitto's `sys_interval`); 0 publishes nothing. Default 10,
    /// mosquitto's: a monitor sees a change within seconds, and the broker publishes a few
    /// dozen small messages per interval.
    pub interval: u64,
    /// Whether each client's connect and disconnect is also published, on
    /// `$SYS/broker/clients/connected` and `.../disconnected` (payload: the client id; not
    /// retained). Default false: one message per connection event is a cost a broker with
    /// many short connections should opt into.
    pub events: bool,
}

impl Default for SysConfig {
    fn default() -> Self {
        Self { interval: 10, events: false }
    }
}

/// Limits on connections across every listener (`[connections]`; docs/limits.md). Each is
/// checked as a connection is accepted, before any buffer, task or session exists for it: over
/// one, the socket is closed at once, counted and logged at a bounded rate.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Most connections open at once through all listeners; -1: no limit. Left out: the
    /// process's open-file limit (raised to its hard limit at start) less
    /// [`FILE_RESERVE`](crate::limits::FILE_RESERVE) for the store, the logs and the listeners,
    /// so the broker closes the connection it cannot serve instead of running out of file
    /// descriptors, when accept fails and the store can no longer open a file.
    pub max_connections: Option<MaxConnections>,
    /// New connections a second one source address may open (an IPv6 address counts with its
    /// whole /64), with bursts of as many; beyond it they are closed at once. 0 (the default):
    /// no limit, since clients behind one NAT or load balancer share an address; set it where
    /// clients come from their own addresses, to keep a reconnect loop or a connect flood
    /// from one host from taking the accept loop and the authenticator from everyone else.
    pub max_connection_rate: u32,
}

/// Durable storage settings (`[store]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Whether retained messages, persistent sessions and their messages are kept on disk.
    /// Default true: an acknowledged message must survive a restart or a crash.
    pub persistence: bool,
    /// The store's directory (`--data-dir` overrides it). Relative paths are relative to the
    /// working directory.
    pub data_dir: PathBuf,
    /// When commits are fsynced: `"always"` (default; survives a power cut), `"never"` (survives
    /// `kill -9`, not a power cut), or `{ interval_ms = N }` (fsync at most every N ms).
    pub sync: SyncSetting,
    /// A bound on the store's size on disk, in MiB (0, the default: none). While the store is
    /// over it, offline queues take no new message: each is dropped and counted, as at a
    /// session's own `max_offline_messages`; connected clients are served as before, and the
    /// store shrinks again as queues are read and acknowledged. Measured every
    /// [`STORE_SIZE_CHECK`](crate::limits::STORE_SIZE_CHECK), so it may be passed by what that
    /// long brings.
    pub max_size_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { persistence: true, data_dir: PathBuf::from("./midge-data"), sync: SyncSetting::Always, max_size_mb: 0 }
    }
}

/// The `sync` setting of `[store]`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SyncSetting {
    /// fsync every commit.
    #[default]
    Always,
    /// Never fsync except at shutdown.
    Never,
    /// fsync at most every `interval_ms` milliseconds.
    IntervalMs(u64),
}

impl SyncSetting {
    /// The writer's policy.
    pub fn policy(self) -> midge_store::SyncPolicy {
        match self {
            Self::Always => midge_store::SyncPolicy::Always,
            Self::Never => midge_store::SyncPolicy::Never,
            Self::IntervalMs(ms) => midge_store::SyncPolicy::IntervalMs(ms),
        }
    }
}

/// One listener (`[[listener]]`), as mosquitto's `listener` with its per-listener options.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// What it speaks (mosquitto's `protocol`): `"mqtt"`, MQTT over TCP (or TLS), or
    /// `"websockets"`, MQTT over WebSocket (or WebSocket over TLS).
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Address or host name, with or without a port: "0.0.0.0:1883", "[::1]:1884", "0.0.0.0",
    /// "localhost" (the forms are in [`crate::bind`]). No port means 1883; port 0 picks a free
    /// port (logged as local_addr).
    pub bind: BindAddr,
    /// Listen on the addresses this network interface has when the listener starts (mosquitto's
    /// `bind_interface`), with `bind`'s port: all of them when `bind`'s address is `::`, the
    /// IPv4 ones for `0.0.0.0`, or `bind`'s address alone, which must be one of them.
    pub bind_interface: Option<String>,
    /// Whether clients without a user name may connect. Default false for configured
    /// listeners, as in mosquitto 2: opening a port to a network is a decision to make twice.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Most connections open at once through this listener (mosquitto's `max_connections`);
    /// one more is closed as soon as it is accepted. Default: no limit.
    #[serde(default)]
    pub max_connections: MaxConnections,
    /// An ACL file in mosquitto's format (mosquitto's `acl_file`): what this listener's clients
    /// may publish, subscribe to and receive (docs/security.md). None: everything.
    #[serde(default)]
    pub acl_file: Option<PathBuf>,
    /// JSON Web Tokens in the password field (`[listener.jwt]`, docs/security.md).
    #[serde(default)]
    pub jwt: Option<crate::auth::jwt::JwtConfig>,
    /// An HTTP service that decides who may connect (`[listener.http_auth]`, docs/security.md).
    #[serde(default)]
    pub http_auth: Option<crate::auth::http::HttpAuthConfig>,
    /// mosquitto's `password_file`: users and their password hashes (`$7$` or `$6$`, as
    /// `mosquitto_passwd` and `midge passwd` write them). Clients that give a user name must
    /// give its password; clients without one follow `allow_anonymous`. Read when the listener
    /// is bound: a missing or malformed file stops the start. Default: none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// mosquitto's `use_username_as_clientid`: a client's id is its authenticated user name,
    /// whatever id it sent, so a second connection with the same user name takes the first's
    /// session over; a client without a user name is refused (Not authorized). MQTT and
    /// websockets listeners only. Default false.
    #[serde(default)]
    pub use_username_as_clientid: bool,

    // TLS (crate::tls): the listener is TLS when `certfile` and `keyfile` are set.
    /// The server's certificate chain, PEM: its own certificate first, then any intermediate
    /// CAs (mosquitto's `certfile`).
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// The server's private key, PEM: PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA or Ed25519
    /// (mosquitto's `keyfile`).
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// The lowest TLS version accepted: `"tlsv1.2"` or `"tlsv1.3"`. Default: both.
    #[serde(default)]
    pub tls_version: Option<TlsVersion>,
    /// CAs (PEM) whose client certificates are trusted.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// A directory of PEM files of trusted client CAs.
    #[serde(default)]
    pub capath: Option<PathBuf>,
    /// Certificate revocation lists (PEM) checked against client certificates.
    #[serde(default)]
    pub crlfile: Option<PathBuf>,
    /// Whether a client must present a certificate signed by a trusted CA. Default false: a
    /// certificate offered is verified, none is needed.
    #[serde(default)]
    pub require_certificate: bool,
    /// The client certificate's subject CN is the client's user name; its CONNECT user name and
    /// password are ignored, and the password check is not made (as mosquitto).
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// The client certificate's whole subject (RFC 2253, as OpenSSL prints it) is its user name.
    #[serde(default)]
    pub use_subject_as_username: bool,

    // WebSocket (crate::transport::websocket): keys of `protocol = "websockets"` listeners only.
    /// The only request path a WebSocket upgrade is accepted on (another gets 404); `None`:
    /// any path.
    #[serde(default)]
    pub websocket_path: Option<String>,
    /// The `Origin` values a WebSocket upgrade is accepted from: a request with another Origin,
    /// or none, gets 403. `None`: any, or none (clients that are not browsers send none).
    #[serde(default)]
    pub websocket_origins: Option<Vec<String>>,
    /// The largest WebSocket frame, and data message, a client may send, in payload bytes:
    /// over it the connection is closed with code 1009. `None`: `[mqtt] max_packet_size`
    /// ([`ListenerConfig::max_frame_size`]).
    #[serde(default)]
    pub websocket_max_frame_size: Option<u32>,

    // Behind a proxy (config/proxy.rs; docs/security.md, "Behind a proxy").
    /// mosquitto's `enable_proxy_protocol`: 1 or 2, the PROXY protocol version every connection
    /// must start with (before the TLS handshake or the HTTP upgrade); its address is the
    /// client's from then on. A connection without a valid header is refused. `None`: the
    /// socket's peer is the client.
    #[serde(default)]
    pub enable_proxy_protocol: Option<ProxyVersion>,
    /// The proxies (addresses or CIDR ranges) whose `websocket_forwarded_header` a WebSocket
    /// upgrade's client address is taken from; from anyone else the header is ignored. `None`:
    /// never taken.
    #[serde(default)]
    pub websocket_trusted_proxies: Option<Vec<IpNet>>,
    /// Which header those proxies write: `"X-Forwarded-For"` (the default) or `"Forwarded"`
    /// (RFC 7239).
    #[serde(default)]
    pub websocket_forwarded_header: Option<ForwardedHeader>,

    // MQTT-SN (crate::sn, config/sn.rs): only on a listener with protocol = "mqtt-sn".
    /// The gateway's GwId in GWINFO. Default 1.
    #[serde(default)]
    pub sn_gateway_id: Option<u8>,
    /// Tretry: milliseconds a message to a client waits for its answer before it is sent again.
    /// Default 10,000.
    #[serde(default)]
    pub sn_retry_interval_ms: Option<u64>,
    /// Nretry: times a message is sent again before the client is taken as lost. Default 3.
    #[serde(default)]
    pub sn_retry_count: Option<u32>,
    /// Predefined topic ids (`[listener.sn_predefined_topics]`, `ID = "topic/name"`).
    #[serde(default)]
    pub sn_predefined_topics: Option<BTreeMap<String, String>>,
    /// Where the gateway sends ADVERTISE (`IP:PORT`, a broadcast address in production). Unset:
    /// no ADVERTISE.
    #[serde(default)]
    pub sn_advertise_address: Option<String>,
    /// Seconds between ADVERTISEs, also their Duration field. Default 900.
    #[serde(default)]
    pub sn_advertise_interval_s: Option<u16>,

    // HTTP API (crate::http, config/http.rs): only on a listener with protocol = "http".
    /// Bearer tokens the API takes, by the user name each stands for
    /// (`[listener.http_tokens]`, `NAME = "TOKEN"`): a request with `Authorization: Bearer
    /// TOKEN` is that user, for the ACL as for an MQTT client that logged in as it.
    #[serde(default)]
    pub http_tokens: Option<BTreeMap<String, String>>,
    /// Whether `GET /metrics` answers a request without an `Authorization` header (a scraper
    /// without credentials); otherwise it takes a bearer token of `http_tokens`, as the
    /// operator's endpoints do. Default false.
    #[serde(default)]
    pub metrics_anonymous: bool,
}

impl ListenerConfig {
    /// The largest WebSocket frame payload the listener accepts, given the broker's
    /// `max_packet_size`: `websocket_max_frame_size`, or by default the packet size. Clients
    /// (paho, MQTT.js, rumqttc) send each packet in a frame of its own, so that default never
    /// refuses a packet the broker would take over TCP; frames are decoded as they arrive and
    /// never held whole, so a larger limit costs no memory.
    pub fn max_frame_size(&self, max_packet_size: u32) -> u32 {
        self.websocket_max_frame_size.unwrap_or(max_packet_size)
    }

    /// Checks what the types cannot: settings that belong to another protocol, and the
    /// WebSocket settings' values.
    pub fn check(&self) -> Result<(), String> {
        let websocket_keys = [
            ("websocket_path", self.websocket_path.is_some()),
            ("websocket_origins", self.websocket_origins.is_some()),
            ("websocket_max_frame_size", self.websocket_max_frame_size.is_some()),
            ("websocket_trusted_proxies", self.websocket_trusted_proxies.is_some()),
            ("websocket_forwarded_header", self.websocket_forwarded_header.is_some()),
        ];
        if self.use_username_as_clientid && matches!(self.protocol, ListenerProtocol::MqttSn | ListenerProtocol::Http) {
            return Err(format!(
                "use_username_as_clientid is a setting of mqtt and websockets listeners, and this one is \"{}\"",
                self.protocol
            ));
        }
        if self.protocol != ListenerProtocol::Websockets {
            if let Some((key, _)) = websocket_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{key} is a setting of protocol = \"websockets\" listeners, and this one is \"{}\"",
                    self.protocol
                ));
            }
            return Ok(());
        }
        if !self.bind.port_given() {
            return Err(format!(
                "bind = \"{}\" has no port: a websockets listener has no default one (mosquitto's \
                 examples use 9001)",
                self.bind
            ));
        }
        if let Some(path) = &self.websocket_path {
            if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
                return Err(format!(
                    "websocket_path = {path:?}: a path starts with / and has no query, fragment or spaces"
                ));
            }
        }
        if let Some(origins) = &self.websocket_origins {
            if origins.is_empty() {
                return Err("websocket_origins = []: that would refuse every browser; leave the key out to \
                            accept any Origin"
                    .to_owned());
            }
            if let Some(origin) = origins.iter().find(|origin| origin.trim().is_empty() || origin.ends_with('/')) {
                return Err(format!(
                    "websocket_origins: {origin:?} is not an origin as browsers send it (e.g. \
                     \"https://app.example.com\", no path or trailing /)"
                ));
            }
        }
        if self.websocket_max_frame_size == Some(0) {
            return Err("websocket_max_frame_size = 0 would refuse every frame".to_owned());
        }
        Ok(())
    }
}

/// A TLS listener's lowest TLS version (`tls_version`), spelt as mosquitto spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "tlsv1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "tlsv1.3")]
    Tls13,
}

/// What a listener speaks (`protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
#[non_exhaustive]
pub enum ListenerProtocol {
    /// MQTT over TCP (mosquitto's `protocol mqtt`, its default).
    #[default]
    Mqtt,
    /// MQTT over WebSocket (mosquitto's `protocol websockets`).
    Websockets,
    /// MQTT-SN 1.2 over UDP: a gateway whose clients are sessions of the broker (`crate::sn`).
    MqttSn,
    /// The HTTP API (`crate::http`): publish, subscribe as server-sent events, health; HTTPS
    /// with the TLS keys.
    Http,
}

impl TryFrom<String> for ListenerProtocol {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "mqtt" => Ok(Self::Mqtt),
            "websockets" => Ok(Self::Websockets),
            "mqtt-sn" => Ok(Self::MqttSn),
            "http" => Ok(Self::Http),
            other => {
                Err(format!("unknown protocol {other:?}: expected \"mqtt\", \"websockets\", \"mqtt-sn\" or \"http\""))
            }
        }
    }
}

impl std::fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mqtt => f.write_str("mqtt"),
            Self::Websockets => f.write_str("websockets"),
            Self::MqttSn => f.write_str("mqtt-sn"),
            Self::Http => f.write_str("http"),
        }
    }
}

/// A listener's `max_connections`: no limit (the key left out, or -1 as in mosquitto), or at
/// least 1. 0 is refused: a listener that takes no client is one to remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct MaxConnections(Option<NonZeroUsize>);

impl MaxConnections {
    /// No limit.
    pub const UNLIMITED: Self = Self(None);

    /// At most `max` connections open at once.
    pub fn at_most(max: NonZeroUsize) -> Self {
        Self(Some(max))
    }

    /// The limit; `None` for none.
    pub fn get(self) -> Option<usize> {
        self.0.map(NonZeroUsize::get)
    }
}

impl TryFrom<i64> for MaxConnections {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, String> {
        match value {
            -1 => Ok(Self::UNLIMITED),
            0 => Err("max_connections = 0 would refuse every client: use at least 1, or -1 (or leave \
                      the key out) for no limit"
                .to_owned()),
            _ => match usize::try_from(value).ok().and_then(NonZeroUsize::new) {
                Some(max) => Ok(Self::at_most(max)),
                None => Err(format!("max_connections = {value}: use at least 1, or -1 for no limit")),
            },
        }
    }
}

impl std::fmt::Display for MaxConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(max) => max.fmt(f),
            None => f.write_str("unlimited"),
        }
    }
}

/// The level names a log filter may use, as `tracing` spells them (case does not matter).
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `[log] level` filter: comma-separated directives, each a level (`info`) or
/// `TARGET=LEVEL` (`midge_server=debug`, also with `tracing`'s span syntax before the `=`).
///
/// A check of its own rather than `tracing_subscriber::EnvFilter::try_new`, for two reasons.
/// `EnvFilter` takes a bare word that is not a level as a target name enabled at every level, so
/// `level = "loud"` parses, enables only a target called `loud`, and the broker logs nothing at
/// all: exactly the mistake to catch. And which subscriber formats the logs is the binary's
/// choice, so the server library does not depend on `tracing-subscriber`. The price is that a
/// bare target (`midge_server`, meaning every level) must be written `midge_server=trace`.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let is_level = |word: &str| LOG_LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word.trim()));
    if filter.trim().is_empty() {
        return Err("empty: write a level such as \"info\"".to_owned());
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
            None => is_level(directive),
        };
        if !ok {
            return Err(format!("{directive:?} is neither a level ({}) nor TARGET=LEVEL", LOG_LEVELS.join(", ")));
        }
    }
    Ok(())
}

/// Why a configuration cannot be used. A cause is the error's `source()`, not part of its
/// message, so that `midge serve`'s report of the whole chain prints it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser says, with line and column.
        message: String,
    },
    /// `[log] level` is not a filter Midge accepts.
    #[error("invalid config file {path}: [log] level = {level:?}: {problem}")]
    LogLevel {
        /// The file.
        path: PathBuf,
        /// The filter as written.
        level: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `[log]`'s keys do not go together (a `"file"` destination without `file`, say).
    #[error("invalid config file {path}: [log] {problem}")]
    Log {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// A listener's keys do not go together (a `websocket_*` or `sn_*` key on a listener of
    /// another protocol, say), or one's value cannot be used.
    #[error("invalid config file {path}: listener {listener}: {problem}")]
    Listener {
        /// The file.
        path: PathBuf,
        /// The listener's place in the file, from 1.
        listener: usize,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// A value of `[mqtt]` is out of range. The setting and the problem are this error's own
    /// message (not a source), so they are printed once.
    #[error("invalid config file {path}: [mqtt] {limit}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which setting and why.
        limit: midge_broker::LimitError,
    },
    /// A bridge's keys cannot be used, or two bridges share a name.
    #[error("invalid config file {path}: bridge {bridge:?}: {problem}")]
    Bridge {
        /// The file.
        path: PathBuf,
        /// The bridge's name.
        bridge: String,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// `[cluster]`'s keys cannot be used.
    #[error("invalid config file {path}: [cluster] {problem}")]
    Cluster {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// `-p` (the default listener's port) with a config file that defines listeners.
    #[error(
        "-p/--port sets the default listener's port, but the config file {} defines listeners; set `bind` there",
        path.display()
    )]
    PortWithListeners {
        /// The file.
        path: PathBuf,
    },
    /// A mosquitto.conf directive is unknown or its value cannot be used.
    #[error("{}:{line}: directive {directive}: {problem}", path.display())]
    Mosquitto {
        /// The file (the config, or one its `include_dir` read).
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The directive as written.
        directive: String,
        /// What is wrong.
        problem: String,
    },
}

impl ServerConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.check(path)
    }

    /// Checks what the types cannot (a config of either format): listeners' keys together, the
    /// `[mqtt]` ranges, the log filter. MQTT-SN listeners without a port get theirs.
    fn check(self, path: &Path) -> Result<Self, ConfigError> {
        let mut config = self;
        for (index, listener) in config.listener.iter_mut().enumerate() {
            sn::check(listener).map_err(|problem| ConfigError::Listener {
                path: path.to_owned(),
                listener: index + 1,
                problem,
            })?;
            if listener.protocol == ListenerProtocol::MqttSn {
                listener.bind = listener.bind.clone().with_default_port(DEFAULT_SN_PORT);
            }
        }
        config.mqtt.limits().map_err(|limit| ConfigError::Invalid { path: path.to_owned(), limit })?;
        check_log_filter(&config.log.level).map_err(|problem| ConfigError::LogLevel {
            path: path.to_owned(),
            level: config.log.level.clone(),
            problem,
        })?;
        config.log.check().map_err(|problem| ConfigError::Log { path: path.to_owned(), problem })?;
        for (index, listener) in config.listener.iter().enumerate() {
            listener
                .check()
                .and_then(|()| proxy::check(listener))
                .and_then(|()| http::check(listener))
                .map_err(|problem| ConfigError::Listener { path: path.to_owned(), listener: index + 1, problem })?;
        }
        if let Some(cluster) = &config.cluster {
            cluster.check().map_err(|problem| ConfigError::Cluster { path: path.to_owned(), problem })?;
        }
        for (index, bridge) in config.bridge.iter().enumerate() {
            let error = |problem| ConfigError::Bridge { path: path.to_owned(), bridge: bridge.name.clone(), problem };
            bridge.check().map_err(error)?;
            if config.bridge[..index].iter().any(|other| other.name == bridge.name) {
                return Err(error("another bridge has this name".into()));
            }
        }
        Ok(config)
    }

    /// The listeners to open: the configured ones, or the default local one.
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if self.listener.is_empty() {
            vec![default_listener(DEFAULT_PORT)]
        } else {
            self.listener.clone()
        }
    }
}

/// This host's name (for a bridge's default client id, mosquitto's `hostname.NAME`, and a
/// cluster node's default name).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "midge".to_owned())
}

/// The listener `midge serve` opens with no config: loopback only, anonymous allowed.
pub fn default_listener(port: u16) -> ListenerConfig {
    ListenerConfig {
        protocol: ListenerProtocol::Mqtt,
        bind: BindAddr::from(SocketAddr::from(([127, 0, 0, 1], port))),
        bind_interface: None,
        allow_anonymous: true,
        max_connections: MaxConnections::UNLIMITED,
        acl_file: None,
        jwt: None,
        http_auth: None,
        certfile: None,
        keyfile: None,
        tls_version: None,
        cafile: None,
        capath: None,
        crlfile: None,
        require_certificate: false,
        use_identity_as_username: false,
        use_subject_as_username: false,
        password_file: None,
        use_username_as_clientid: false,
        websocket_path: None,
        websocket_origins: None,
        websocket_max_frame_size: None,
        enable_proxy_protocol: None,
        websocket_trusted_proxies: None,
        websocket_forwarded_header: None,
        sn_gateway_id: None,
        sn_retry_interval_ms: None,
        sn_retry_count: None,
        sn_predefined_topics: None,
        sn_advertise_address: None,
        sn_advertise_interval_s: None,
        http_tokens: None,
        metrics_anonymous: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::report;

    #[test]
    fn sys_updates_every_10_seconds_unless_set() {
        assert_eq!(ServerConfig::default().sys, SysConfig { interval: 10, events: false });
        let config = ServerConfig::parse("[sys]\ninterval = 0\nevents = true\n", Path::new("x.toml")).unwrap();
        assert_eq!(config.sys, SysConfig { interval: 0, events: true });
        assert!(ServerConfig::parse("[sys]\nsys_interval = 1\n", Path::new("x.toml")).is_err());
    }

    #[test]
    fn empty_file_gives_defaults_and_the_local_listener() {
        let config = ServerConfig::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(config, ServerConfig::default());
        assert_eq!(config.effective_listeners(), vec![default_listener(1883)]);
    }

    #[test]
    fn documented_example_parses() {
        let text = r#"
            [[listener]]
            bind = "0.0.0.0:1883"
            allow_anonymous = true

            [log]
            level = "debug"

            [mqtt]
            max_qos = 1
            retain_available = false
            max_keepalive = 120
        "#;
        let config = ServerConfig::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.listener.len(), 1);
        assert_eq!(config.mqtt.max_qos, 1);
        assert!(!config.mqtt.retain_available);
        assert_eq!(config.mqtt.max_keepalive, 120);
    }

    #[test]
    fn store_settings_parse() {
        let config = ServerConfig::parse("[store]\npersistence = false\n", Path::new("x.toml")).unwrap();
        assert!(!config.store.persistence);
        let config =
            ServerConfig::parse("[store]\nsync = \"never\"\ndata_dir = \"/var/lib/midge\"\n", Path::new("x.toml"))
                .unwrap();
        assert_eq!(config.store.sync, SyncSetting::Never);
        assert_eq!(config.store.data_dir, PathBuf::from("/var/lib/midge"));
        let config = ServerConfig::parse("[store]\nsync = { interval_ms = 1000 }\n", Path::new("x.toml")).unwrap();
        assert_eq!(config.store.sync, SyncSetting::IntervalMs(1000));
        assert!(ServerConfig::parse("[store]\nsync = \"sometimes\"\n", Path::new("x.toml")).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_problem() {
        let err = ServerConfig::parse("[mqtt]\nmax_qoss = 1\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("max_qoss"), "{err}");
        let err = ServerConfig::parse("[mqtt]\nmax_qos = 3\n", Path::new("m.toml")).unwrap_err();
        assert_eq!(report(&err), "invalid config file m.toml: [mqtt] max_qos: must be 0, 1 or 2");
        let err = ServerConfig::parse("[[listener]]\nbind = \"nonsense here\"\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("m.toml") && err.to_string().contains("bind"), "{err}");
    }

    #[test]
    fn listener_protocol_and_max_connections() {
        let parse = |extra: &str| {
            ServerConfig::parse(&format!("[[listener]]\nbind = \"0.0.0.0\"\n{extra}\n"), Path::new("p.toml"))
        };
        let listener = parse("").unwrap().listener.remove(0);
        assert_eq!((listener.protocol, listener.max_connections), (ListenerProtocol::Mqtt, MaxConnections::UNLIMITED));
        assert_eq!(listener.max_connections.get(), None);
        assert_eq!(parse("protocol = \"mqtt\"").unwrap().listener[0].protocol, ListenerProtocol::Mqtt);
        assert_eq!(parse("protocol = \"mqtt-sn\"").unwrap().listener[0].protocol, ListenerProtocol::MqttSn);
        assert_eq!(parse("max_connections = 2").unwrap().listener[0].max_connections.get(), Some(2));
        assert_eq!(parse("max_connections = -1").unwrap().listener[0].max_connections, MaxConnections::UNLIMITED);
        for (extra, expected) in [
            (
                "protocol = \"gopher\"",
                "unknown protocol \"gopher\": expected \"mqtt\", \"websockets\", \"mqtt-sn\" or \"http\"",
            ),
            ("max_connections = 0", "max_connections = 0 would refuse every client"),
            ("max_connections = -2", "max_connections = -2: use at least 1"),
            ("max_connections = \"many\"", "max_connections"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains("p.toml") && err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn websockets_listeners_and_their_keys() {
        let parse = |bind: &str, extra: &str| {
            ServerConfig::parse(&format!("[[listener]]\nbind = {bind:?}\n{extra}\n"), Path::new("w.toml"))
        };
        let listener = parse("0.0.0.0:9001", "protocol = \"websockets\"").unwrap().listener.remove(0);
        assert_eq!(listener.protocol, ListenerProtocol::Websockets);
        assert_eq!(listener.protocol.to_string(), "websockets");
        assert_eq!((&listener.websocket_path, &listener.websocket_origins), (&None, &None));
        assert_eq!(listener.max_frame_size(1000), 1000, "the packet size by default");
        let listener = parse(
            "0.0.0.0:9001",
            "protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\n\
             websocket_origins = [\"https://app.example\"]\nwebsocket_max_frame_size = 65536",
        )
        .unwrap()
        .listener
        .remove(0);
        assert_eq!(listener.websocket_path.as_deref(), Some("/mqtt"));
        assert_eq!(listener.websocket_origins, Some(vec!["https://app.example".to_owned()]));
        assert_eq!(listener.max_frame_size(1000), 65536);
        for (bind, extra, expected) in [
            ("0.0.0.0:1883", "websocket_path = \"/mqtt\"", "listener 1: websocket_path is a setting of protocol = \"websockets\" listeners, and this one is \"mqtt\""),
            ("0.0.0.0:1883", "websocket_origins = [\"https://a\"]", "listener 1: websocket_origins is a setting of"),
            ("0.0.0.0:1883", "protocol = \"mqtt\"\nwebsocket_max_frame_size = 10", "websocket_max_frame_size is a setting of"),
            ("0.0.0.0", "protocol = \"websockets\"", "bind = \"0.0.0.0\" has no port: a websockets listener has no default one"),
            ("localhost", "protocol = \"websockets\"", "has no port"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_path = \"mqtt\"", "websocket_path = \"mqtt\": a path starts with /"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_path = \"/mqtt?x=1\"", "no query"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_origins = []", "websocket_origins = []: that would refuse every browser"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_origins = [\"https://a.example/\"]", "is not an origin as browsers send it"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_max_frame_size = 0", "websocket_max_frame_size = 0 would refuse every frame"),
            ("0.0.0.0:9001", "protocol = \"websockets\"\nwebsocket_max_frame_size = -1", "websocket_max_frame_size"),
        ] {
            let err = parse(bind, extra).unwrap_err().to_string();
            assert!(err.starts_with("invalid config file w.toml") && err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn listener_password_file() {
        let parse = |extra: &str| {
            ServerConfig::parse(&format!("[[listener]]\nbind = \"0.0.0.0\"\n{extra}\n"), Path::new("p.toml"))
        };
        assert_eq!(parse("").unwrap().listener[0].password_file, None);
        let config = parse("password_file = \"/etc/midge/passwords\"").unwrap();
        assert_eq!(config.listener[0].password_file.as_deref(), Some(Path::new("/etc/midge/passwords")));
        assert!(parse("password_file = 1").unwrap_err().to_string().contains("password_file"));
    }

    #[test]
    fn use_username_as_clientid_is_a_key_of_mqtt_and_websockets_listeners() {
        let parse = |extra: &str| {
            ServerConfig::parse(&format!("[[listener]]\nbind = \"0.0.0.0:9001\"\n{extra}\n"), Path::new("u.toml"))
        };
        assert!(!parse("").unwrap().listener[0].use_username_as_clientid, "off by default");
        assert!(parse("use_username_as_clientid = true").unwrap().listener[0].use_username_as_clientid);
        let websockets = parse("protocol = \"websockets\"\nuse_username_as_clientid = true").unwrap();
        assert!(websockets.listener[0].use_username_as_clientid);
        for protocol in ["mqtt-sn", "http"] {
            let err =
                parse(&format!("protocol = {protocol:?}\nuse_username_as_clientid = true")).unwrap_err().to_string();
            assert!(err.contains("use_username_as_clientid is a setting of mqtt and websockets listeners"), "{err}");
        }
    }

    #[test]
    fn bind_takes_names_and_addresses_without_a_port() {
        for (bind, port) in
            [("localhost:1884", 1884), ("localhost", 1883), ("0.0.0.0", 1883), ("::1", 1883), ("[::1]:1884", 1884)]
        {
            let text = format!("[[listener]]\nbind = {bind:?}\n");
            let config = ServerConfig::parse(&text, Path::new("x.toml")).unwrap_or_else(|e| panic!("{bind}: {e}"));
            assert_eq!(config.listener[0].bind.to_string(), bind);
            assert_eq!(config.listener[0].bind.port(), port, "{bind}");
        }
    }

    #[test]
    fn log_levels_and_per_target_filters_are_accepted() {
        for level in ["info", "DEBUG", " warn ", "off", "trace", "midge_server=debug,info", "info,fjall=warn,"] {
            let text = format!("[log]\nlevel = {level:?}\n");
            assert!(ServerConfig::parse(&text, Path::new("x.toml")).is_ok(), "{level:?}");
        }
        assert!(check_log_filter("midge_server::connection=trace").is_ok());
        assert!(check_log_filter("midge_server[connect{client_id=a}]=debug").is_ok());
    }

    #[test]
    fn an_unknown_log_level_is_a_config_error_naming_the_file_and_the_key() {
        for level in ["loud", "", "info,verbose", "midge_server=loud", "=debug", "midge_server"] {
            let text = format!("[log]\nlevel = {level:?}\n");
            let err = ServerConfig::parse(&text, Path::new("l.toml")).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("l.toml") && message.contains("[log] level"), "{level:?}: {message}");
        }
        let err = ServerConfig::parse("[log]\nlevel = \"loud\"\n", Path::new("l.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config file l.toml: [log] level = \"loud\": \"loud\" is neither a level \
             (off, error, warn, info, debug, trace) nor TARGET=LEVEL"
        );
    }

    #[test]
    fn an_unreadable_file_is_reported_with_the_os_error_once() {
        let err = ServerConfig::load(Path::new("/nonexistent/midge.toml")).unwrap_err();
        let report = report(&err);
        assert!(report.starts_with("cannot read config file /nonexistent/midge.toml: "), "{report}");
        assert_eq!(report.matches("No such file or directory").count(), 1, "{report}");
    }
}
