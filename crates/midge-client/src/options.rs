//! What a client connects to and how: every setting in one struct with its default.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use midge_codec::{Properties, ProtocolVersion, Will};

use crate::transport::Transport;

/// The default MQTT port over plain TCP.
pub const DEFAULT_PORT: u16 = 1883;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How bytes travel.
    pub transport: Transport,
}

impl ServerAddress {
    /// Plain TCP to `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port, transport: Transport::Tcp }
    }
}

/// Exponential backoff between reconnection attempts: `initial`, doubled after each failed
/// attempt up to `max`, back to `initial` after a successful connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first attempt.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 30 s: quick after a blip, gentle on a broker that is down.
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

/// Everything CONNECT carries, and the client's own limits.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The broker.
    pub server: ServerAddress,
    /// Protocol version spoken.
    pub version: ProtocolVersion,
    /// Client Identifier; empty lets a 3.1.1 or 5.0 broker assign one (with a clean session).
    pub client_id: String,
    /// Clean Session (3.x) / Clean Start (5.0). Default true.
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns keep alive off. Default 60, as most clients.
    pub keep_alive: u16,
    /// User Name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<Will>,
    /// CONNECT properties (v5): session expiry, receive maximum, user properties...
    pub properties: Properties,
    /// How long the TCP connect plus CONNECT/CONNACK exchange may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Outbound QoS 1/2 messages in flight at once, further bounded by the broker's Receive
    /// Maximum (v5). More are queued in the client. Default 65535 (the protocol's limit).
    pub max_inflight: u16,
    /// Largest packet accepted from the broker, in bytes. Default: the protocol's largest.
    pub max_packet_size: usize,
    /// Reconnect automatically after the connection is lost. Default off.
    pub reconnect: Option<Backoff>,
    /// Disable Nagle's algorithm. Default true: the client batches its own writes, so waiting
    /// for more data only adds latency.
    pub nodelay: bool,
    /// Local address the socket is bound to before connecting; the OS picks the port. Default
    /// none: the OS picks both. A load generator spreads many connections over 127.0.0.x with
    /// it, so the ephemeral ports of one source address do not run out.
    pub local_address: Option<IpAddr>,
    /// Relay mode, for a bridge that passes packets between this broker and another session
    /// with their packet identifiers unchanged (so that both sessions' state, stored on each
    /// side, lines up across reconnects and restarts). The client then acknowledges nothing by
    /// itself: an inbound PUBLISH comes as [`crate::Event::Message`] unanswered, and PUBACK,
    /// PUBREC, PUBREL and PUBCOMP from the broker come as [`crate::Event::Relayed`]; the
    /// application sends acknowledgements and its QoS 1/2 PUBLISHes with its own identifiers
    /// through [`crate::Client::send`] and [`crate::Client::send_publish`]. Default off.
    pub relay: bool,
    /// MQTT 3.1/3.1.1 only: set the top bit of the protocol level in CONNECT, as mosquitto's
    /// bridges do (`try_private`), to tell a broker that understands it that this client is a
    /// bridge: its own messages are not sent back to it, and retained flags are kept. A broker
    /// that does not understand it refuses the connection. Default off.
    pub bridge: bool,
}

impl ConnectOptions {
    /// MQTT 3.1.1 to `host:port` over TCP with the defaults above.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            server: ServerAddress::tcp(host, port),
            version: ProtocolVersion::V311,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
            connect_timeout: Duration::from_secs(10),
            max_inflight: u16::MAX,
            max_packet_size: MAX_PACKET_SIZE,
            reconnect: None,
            nodelay: true,
            local_address: None,
            relay: false,
            bridge: false,
        }
    }
}

/// The largest packet MQTT can express: 1 type byte, 4 length bytes, 268,435,455 bytes.
pub const MAX_PACKET_SIZE: usize = 268_435_460;
