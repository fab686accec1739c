//! Errors of decoding and encoding, and the one place that maps each to the reason code the
//! peer is told (for v5) before the connection is closed.

use crate::reason::ReasonCode;

/// Why a value is not a valid MQTT string, topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// Not valid UTF-8 (MQTT-1.5.4-1).
    #[error("not valid UTF-8")]
    InvalidUtf8,
    /// Contains U+0000 (MQTT-1.5.4-2).
    #[error("contains the null character U+0000")]
    NullCharacter,
    /// Longer than 65,535 bytes.
    #[error("longer than 65535 bytes")]
    StringTooLong,
    /// An empty topic name or filter (MQTT-4.7.3-1).
    #[error("empty topic")]
    EmptyTopic,
    /// `+` or `#` in a topic name (MQTT-3.3.2-2).
    #[error("wildcard in a topic name")]
    WildcardInTopicName,
    /// A wildcard that is not a whole level, or `#` not last (MQTT-4.7.1-2, MQTT-4.7.1-3).
    #[error("malformed topic filter")]
    MalformedFilter,
}

/// Why bytes from the network are not an acceptable packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not follow the packet layout (bad remaining length, reserved bits, lengths
    /// that overrun, trailing bytes, an invalid string).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The layout is right but the content breaks a rule (duplicate property, property not
    /// allowed in this packet, packet id 0, QoS 3, ...).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The frame's announced size is larger than the receiver accepts; detected from the fixed
    /// header, before the body is read.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge {
        /// Total frame size announced by the fixed header.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// CONNECT names a protocol this server does not speak.
    #[error("unsupported protocol: name {name:?}, level {level}")]
    UnsupportedProtocol {
        /// The protocol name as sent (lossy UTF-8).
        name: String,
        /// The protocol level byte.
        level: u8,
        /// Whether the name was `MQTT` or `MQIsdp`: only then is a CONNACK with an
        /// unsupported-version code sent before closing (MQTT-3.1.2-2); otherwise the
        /// connection is closed at once (MQTT-3.1.2-1).
        known_name: bool,
    },
    /// A topic name that is not valid (e.g. has a wildcard).
    #[error("invalid topic name: {0}")]
    TopicName(InvalidValue),
    /// A topic filter that is not valid.
    #[error("invalid topic filter: {0}")]
    TopicFilter(InvalidValue),
    /// A string field that is not a valid MQTT string.
    #[error("invalid string: {0}")]
    String(InvalidValue),
}

impl DecodeError {
    /// The v5 reason code a DISCONNECT (or CONNACK, before a session exists) carries for this
    /// error. 3.x peers are simply disconnected.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Malformed(_) | Self::String(_) => ReasonCode::MALFORMED_PACKET,
            Self::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::TopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            Self::TopicFilter(_) => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed the largest remaining length MQTT can express (268,435,455).
    #[error("packet too large to encode: remaining length {0}")]
    TooLarge(usize),
    /// A value the wire format cannot carry for this version, e.g. AUTH for a 3.x peer, Binary
    /// Data longer than 65,535 bytes, or a QoS 1 PUBLISH without a packet id. Writing it would
    /// corrupt the stream or send a packet the peer must reject.
    #[error("packet cannot be encoded: {0}")]
    Unencodable(&'static str),
}
