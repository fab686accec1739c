//! The values that MQTT-SN 1.2 messages carry (sections 5.2.2 and 5.3): message types, QoS,
//! topic id types, return codes, ids, and the checked strings (client id, topic name).
//!
//! Each string type is built only by the decoder or a checked constructor, so a value in hand is
//! one the wire can carry and the decoder accepts.

use std::fmt;

/// The MsgType octet (5.2.2). Values the table marks reserved (0x03, 0x11, 0x19,
/// 0x1E-0xFD, 0xFF) have no variant: the decoder refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MsgType {
    /// ADVERTISE, 0x00 (5.4.1).
    Advertise = 0x00,
    /// SEARCHGW, 0x01 (5.4.2).
    SearchGw = 0x01,
    /// GWINFO, 0x02 (5.4.3).
    GwInfo = 0x02,
    /// CONNECT, 0x04 (5.4.4).
    Connect = 0x04,
    /// CONNACK, 0x05 (5.4.5).
    ConnAck = 0x05,
    /// WILLTOPICREQ, 0x06 (5.4.6).
    WillTopicReq = 0x06,
    /// WILLTOPIC, 0x07 (5.4.7).
    WillTopic = 0x07,
    /// WILLMSGREQ, 0x08 (5.4.8).
    WillMsgReq = 0x08,
    /// WILLMSG, 0x09 (5.4.9).
    WillMsg = 0x09,
    /// REGISTER, 0x0A (5.4.10).
    Register = 0x0A,
    /// REGACK, 0x0B (5.4.11).
    RegAck = 0x0B,
    /// PUBLISH, 0x0C (5.4.12).
    Publish = 0x0C,
    /// PUBACK, 0x0D (5.4.13).
    PubAck = 0x0D,
    /// PUBCOMP, 0x0E (5.4.14).
    PubComp = 0x0E,
    /// PUBREC, 0x0F (5.4.14).
    PubRec = 0x0F,
    /// PUBREL, 0x10 (5.4.14).
    PubRel = 0x10,
    /// SUBSCRIBE, 0x12 (5.4.15).
    Subscribe = 0x12,
    /// SUBACK, 0x13 (5.4.16).
    SubAck = 0x13,
    /// UNSUBSCRIBE, 0x14 (5.4.17).
    Unsubscribe = 0x14,
    /// UNSUBACK, 0x15 (5.4.18).
    UnsubAck = 0x15,
    /// PINGREQ, 0x16 (5.4.19).
    PingReq = 0x16,
    /// PINGRESP, 0x17 (5.4.20).
    PingResp = 0x17,
    /// DISCONNECT, 0x18 (5.4.21).
    Disconnect = 0x18,
    /// WILLTOPICUPD, 0x1A (5.4.22).
    WillTopicUpd = 0x1A,
    /// WILLTOPICRESP, 0x1B (5.4.24).
    WillTopicResp = 0x1B,
    /// WILLMSGUPD, 0x1C (5.4.23).
    WillMsgUpd = 0x1C,
    /// WILLMSGRESP, 0x1D (5.4.25).
    WillMsgResp = 0x1D,
    /// Encapsulated message, 0xFE (5.5, forwarder encapsulation).
    Encapsulated = 0xFE,
}

impl MsgType {
    /// Every message type, in wire order.
    pub const ALL: [MsgType; 28] = [
        Self::Advertise,
        Self::SearchGw,
        Self::GwInfo,
        Self::Connect,
        Self::ConnAck,
        Self::WillTopicReq,
        Self::WillTopic,
        Self::WillMsgReq,
        Self::WillMsg,
        Self::Register,
        Self::RegAck,
        Self::Publish,
        Self::PubAck,
        Self::PubComp,
        Self::PubRec,
        Self::PubRel,
        Self::Subscribe,
        Self::SubAck,
        Self::Unsubscribe,
        Self::UnsubAck,
        Self::PingReq,
        Self::PingResp,
        Self::Disconnect,
        Self::WillTopicUpd,
        Self::WillTopicResp,
        Self::WillMsgUpd,
        Self::WillMsgResp,
        Self::Encapsulated,
    ];

    /// The type for a MsgType octet; `None` for the reserved values.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x00 => Self::Advertise,
            0x01 => Self::SearchGw,
            0x02 => Self::GwInfo,
            0x04 => Self::Connect,
            0x05 => Self::ConnAck,
            0x06 => Self::WillTopicReq,
            0x07 => Self::WillTopic,
            0x08 => Self::WillMsgReq,
            0x09 => Self::WillMsg,
            0x0A => Self::Register,
            0x0B => Self::RegAck,
            0x0C => Self::Publish,
            0x0D => Self::PubAck,
            0x0E => Self::PubComp,
            0x0F => Self::PubRec,
            0x10 => Self::PubRel,
            0x12 => Self::Subscribe,
            0x13 => Self::SubAck,
            0x14 => Self::Unsubscribe,
            0x15 => Self::UnsubAck,
            0x16 => Self::PingReq,
            0x17 => Self::PingResp,
            0x18 => Self::Disconnect,
            0x1A => Self::WillTopicUpd,
            0x1B => Self::WillTopicResp,
            0x1C => Self::WillMsgUpd,
            0x1D => Self::WillMsgResp,
            0xFE => Self::Encapsulated,
            _ => return None,
        })
    }

    /// The MsgType octet.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name the specification gives the message, e.g. `"WILLTOPICREQ"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Advertise => "ADVERTISE",
            Self::SearchGw => "SEARCHGW",
            Self::GwInfo => "GWINFO",
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::WillTopicReq => "WILLTOPICREQ",
            Self::WillTopic => "WILLTOPIC",
            Self::WillMsgReq => "WILLMSGREQ",
            Self::WillMsg => "WILLMSG",
            Self::Register => "REGISTER",
            Self::RegAck => "REGACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubComp => "PUBCOMP",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::WillTopicUpd => "WILLTOPICUPD",
            Self::WillTopicResp => "WILLTOPICRESP",
            Self::WillMsgUpd => "WILLMSGUPD",
            Self::WillMsgResp => "WILLMSGRESP",
            Self::Encapsulated => "Encapsulated message",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The QoS bits of the Flags octet (5.3.4, bits 6 and 5).
///
/// All four values decode in every message: the codec does not judge which QoS a message may
/// carry (level -1 makes sense only in a PUBLISH to a predefined id or short name, 6.8; a
/// SUBSCRIBE asking for it is the gateway's to refuse with a SUBACK, which it could not send if
/// the decoder had dropped the datagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS level 0, bits `0b00`.
    #[default]
    AtMostOnce,
    /// QoS level 1, bits `0b01`.
    AtLeastOnce,
    /// QoS level 2, bits `0b10`.
    ExactlyOnce,
    /// QoS level -1, bits `0b11`: a PUBLISH sent without a connection (6.8).
    MinusOne,
}

impl QoS {
    /// The QoS for the two bits' value (only the low two bits of `bits` are read).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::AtMostOnce,
            0b01 => Self::AtLeastOnce,
            0b10 => Self::ExactlyOnce,
            _ => Self::MinusOne,
        }
    }

    /// The two bits' value, 0..=3.
    pub fn bits(self) -> u8 {
        match self {
            Self::AtMostOnce => 0b00,
            Self::AtLeastOnce => 0b01,
            Self::ExactlyOnce => 0b10,
            Self::MinusOne => 0b11,
        }
    }
}

/// The TopicIdType bits of the Flags octet (5.3.4, bits 1 and 0). The fourth value, `0b11`, is
/// reserved and refused by the decoder in the messages whose topic it describes (PUBLISH,
/// SUBSCRIBE, UNSUBSCRIBE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicIdType {
    /// `0b00`: a normal topic id, registered with REGISTER (or, in SUBSCRIBE and UNSUBSCRIBE, a
    /// topic name).
    Normal,
    /// `0b01`: a predefined topic id, known to client and gateway beforehand.
    Predefined,
    /// `0b10`: a short topic name of two octets.
    Short,
}

impl TopicIdType {
    /// The type for the two bits' value (low two bits of `bits`); `None` for the reserved `0b11`.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0b11 {
            0b00 => Some(Self::Normal),
            0b01 => Some(Self::Predefined),
            0b10 => Some(Self::Short),
            _ => None,
        }
    }

    /// The two bits' value, 0..=2.
    pub fn bits(self) -> u8 {
        match self {
            Self::Normal => 0b00,
            Self::Predefined => 0b01,
            Self::Short => 0b10,
        }
    }
}

/// The ReturnCode octet (5.3.10).
///
/// 1.2 defines 0x00-0x03 and reserves 0x04-0xFF. A reserved value is kept as it is, not refused:
/// an acknowledgement that the decoder dropped would leave its sender retrying until it gives
/// up, while one kept lets the gateway see its message id and treat the code as a rejection
/// (everything but [`ReturnCode::ACCEPTED`] is one). Keeping the raw octet also makes every
/// decoded value encode back to the same byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReturnCode(pub u8);

impl ReturnCode {
    /// 0x00, Accepted.
    pub const ACCEPTED: Self = Self(0x00);
    /// 0x01, Rejected: congestion.
    pub const REJECTED_CONGESTION: Self = Self(0x01);
    /// 0x02, Rejected: invalid topic ID.
    pub const REJECTED_INVALID_TOPIC_ID: Self = Self(0x02);
    /// 0x03, Rejected: not supported.
    pub const REJECTED_NOT_SUPPORTED: Self = Self(0x03);

    /// Whether this is Accepted.
    pub fn is_accepted(self) -> bool {
        self == Self::ACCEPTED
    }

    /// The name the specification gives the code; `None` for a reserved value.
    pub fn name(self) -> Option<&'static str> {
        match self.0 {
            0x00 => Some("Accepted"),
            0x01 => Some("Rejected: congestion"),
            0x02 => Some("Rejected: invalid topic ID"),
            0x03 => Some("Rejected: not supported"),
            _ => None,
        }
    }
}

impl fmt::Debug for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "ReturnCode({:#04x}, {name})", self.0),
            None => write!(f, "ReturnCode({:#04x}, reserved)", self.0),
        }
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "reserved return code {:#04x}", self.0),
        }
    }
}

/// The MsgId field (5.3.7): matches a message with its acknowledgement.
///
/// Any value, 0 included: a PUBLISH at QoS 0 or -1 carries 0x0000 (5.4.12), and so does the
/// PUBACK that rejects one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MsgId(pub u16);

/// The TopicId field (5.3.11): a normal (registered) or predefined topic id. 0x0000 is what a
/// client puts in its REGISTER (5.4.10); the codec gives no value a meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicId(pub u16);

/// A short topic name (3, 5.3.4): two octets carried where a topic id would be.
///
/// The octets are kept as they are; whether they name a topic the gateway accepts (two ASCII
/// characters, no wildcard in a PUBLISH) is the gateway's to decide, as for a topic name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortTopicName(pub [u8; 2]);

impl ShortTopicName {
    /// The two octets as text, if they are valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for ShortTopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "ShortTopicName({text:?})"),
            None => write!(f, "ShortTopicName({:02x?})", self.0),
        }
    }
}

/// The ClientId field (5.3.1): non-empty UTF-8.
///
/// 5.3.1 says 1-23 characters. The codec enforces the lower bound (a PINGREQ's client id is
/// present exactly when the message is longer than two octets, 5.4.19, so an empty one could not
/// be told apart from none) but not the upper one: as with MQTT 3.1.1 (MQTT-3.1.3-5), a server
/// may accept longer ids, and the limit belongs to the gateway's configuration.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// A client id from `text`; `None` if it is empty.
    pub fn new(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        (!text.is_empty()).then_some(Self(text))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A topic name (5.3.12 TopicName, and the WillTopic of 5.3.14): non-empty UTF-8.
///
/// The codec reads no meaning into it: a SUBSCRIBE's name may hold the wildcards `+` and `#`, a
/// REGISTER's or a will's should not, and the gateway checks which, answering with a return
/// code. U+0000 is not refused here either (MQTT-SN does not forbid it; the gateway's mapping to
/// an MQTT topic does).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    /// A topic name from `text`; `None` if it is empty.
    pub fn new(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        (!text.is_empty()).then_some(Self(text))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! string_traits {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}

string_traits!(ClientId, TopicName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_types_round_trip_and_reserved_values_have_none() {
        for msg_type in MsgType::ALL {
            assert_eq!(MsgType::from_u8(msg_type.as_u8()), Some(msg_type));
        }
        for value in 0..=u8::MAX {
            match MsgType::from_u8(value) {
                Some(msg_type) => assert_eq!(msg_type.as_u8(), value),
                None => assert!(matches!(value, 0x03 | 0x11 | 0x19 | 0x1E..=0xFD | 0xFF), "{value:#04x}"),
            }
        }
    }

    #[test]
    fn qos_and_topic_id_type_bits_round_trip() {
        for bits in 0..4 {
            assert_eq!(QoS::from_bits(bits).bits(), bits);
            match TopicIdType::from_bits(bits) {
                Some(kind) => assert_eq!(kind.bits(), bits),
                None => assert_eq!(bits, 0b11),
            }
        }
    }

    #[test]
    fn strings_must_not_be_empty() {
        assert_eq!(ClientId::new(""), None);
        assert_eq!(TopicName::new(String::new()), None);
        assert_eq!(ClientId::new("c").map(ClientId::into_string), Some("c".to_owned()));
        assert_eq!(TopicName::new("a/b").as_ref().map(TopicName::as_str), Some("a/b"));
    }

    #[test]
    fn return_codes_have_names_or_say_reserved() {
        assert_eq!(ReturnCode::REJECTED_INVALID_TOPIC_ID.to_string(), "Rejected: invalid topic ID");
        assert_eq!(ReturnCode(0x04).to_string(), "reserved return code 0x04");
        assert!(!ReturnCode(0x80).is_accepted());
    }
}
