//! Errors of decoding a datagram and of encoding a message.
//!
//! MQTT-SN has no message that reports a malformed datagram, so there is no mapping to a return
//! code here: a gateway drops what does not decode (and may log the error). Each variant says
//! what was wrong and, once the MsgType octet was read, in which message; field names are the
//! specification's (`"ClientId"`, `"TopicId"`, ...).

use crate::types::MsgType;

/// Why a datagram is not one MQTT-SN 1.2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram ends inside the header (5.2): it is empty, has `0x01` and fewer than two
    /// more octets, or has a Length field and no MsgType.
    #[error("datagram of {len} octets is shorter than a message header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The Length field (5.2.1) does not give the datagram's length: a datagram holds exactly
    /// one message, so missing or trailing octets are an error.
    #[error("Length field says {declared} octets, the datagram has {actual}")]
    LengthMismatch {
        /// The value of the Length field.
        declared: usize,
        /// The datagram's length.
        actual: usize,
    },
    /// A MsgType (5.2.2) that 1.2 reserves.
    #[error("unknown or reserved MsgType {0:#04x}")]
    UnknownMsgType(u8),
    /// The message ends before one of its fields.
    #[error("{msg_type} ends before its {field} field")]
    MissingField {
        /// The message.
        msg_type: MsgType,
        /// The field's name in the specification.
        field: &'static str,
    },
    /// Octets after the last field of a message whose fields have fixed lengths.
    #[error("{msg_type} has {extra} octets after its last field")]
    TrailingBytes {
        /// The message.
        msg_type: MsgType,
        /// How many octets are left over.
        extra: usize,
    },
    /// TopicIdType `0b11`, which 5.3.4 reserves, in a message whose topic it describes.
    #[error("{msg_type} has the reserved TopicIdType 0b11")]
    ReservedTopicIdType {
        /// The message (PUBLISH, SUBSCRIBE or UNSUBSCRIBE).
        msg_type: MsgType,
    },
    /// A ClientId, TopicName or WillTopic that is not valid UTF-8.
    #[error("{field} of {msg_type} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message.
        msg_type: MsgType,
        /// The field's name in the specification.
        field: &'static str,
    },
    /// An empty ClientId (5.3.1 gives it 1-23 characters) or TopicName or WillTopic.
    #[error("{field} of {msg_type} is empty")]
    EmptyField {
        /// The message.
        msg_type: MsgType,
        /// The field's name in the specification.
        field: &'static str,
    },
    /// A CONNECT whose ProtocolId (5.3.8) is not 0x01, the only value 1.2 defines.
    #[error("CONNECT with ProtocolId {0:#04x}, not 0x01")]
    UnsupportedProtocolId(u8),
    /// An Encapsulated message whose Length (5.5) is below 3 (Length, MsgType and Ctrl), runs
    /// past the datagram, or is in the 3-octet form, which 5.5 does not allow.
    #[error("Encapsulated message with Length {declared} in a datagram of {actual} octets")]
    BadEncapsulationLength {
        /// The value of the Length field.
        declared: usize,
        /// The datagram's length.
        actual: usize,
    },
    /// An Encapsulated message inside an Encapsulated message: 5.5 wraps a client's message
    /// once, between one forwarder and the gateway.
    #[error("Encapsulated message inside an Encapsulated message")]
    NestedEncapsulation,
}

impl DecodeError {
    /// The type of the message the error was found in, once its MsgType octet was read.
    pub fn msg_type(&self) -> Option<MsgType> {
        match self {
            Self::MissingField { msg_type, .. }
            | Self::TrailingBytes { msg_type, .. }
            | Self::ReservedTopicIdType { msg_type }
            | Self::InvalidUtf8 { msg_type, .. }
            | Self::EmptyField { msg_type, .. } => Some(*msg_type),
            Self::UnsupportedProtocolId(_) => Some(MsgType::Connect),
            Self::BadEncapsulationLength { .. } | Self::NestedEncapsulation => Some(MsgType::Encapsulated),
            Self::TooShort { .. } | Self::LengthMismatch { .. } | Self::UnknownMsgType(_) => None,
        }
    }
}

/// Why a message cannot be encoded. Nothing is written when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message would be longer than the 3-octet Length field can say (5.2.1: 65,535
    /// octets, the Length field included).
    #[error("message of {len} octets is longer than 65535")]
    TooLarge {
        /// The length the message would have.
        len: usize,
    },
    /// An Encapsulated message whose Wireless Node Id is longer than its one-octet Length can
    /// count (252 octets, 5.5).
    #[error("Wireless Node Id of {len} octets is longer than 252")]
    WirelessNodeIdTooLong {
        /// The id's length.
        len: usize,
    },
    /// An Encapsulated message whose radius does not fit the two bits of Ctrl (5.5).
    #[error("Encapsulated message with radius {0}, not 0..=3")]
    RadiusOutOfRange(u8),
    /// An Encapsulated message inside an Encapsulated message, which the decoder refuses.
    #[error("Encapsulated message inside an Encapsulated message")]
    NestedEncapsulation,
}
