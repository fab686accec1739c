//! Decoding one datagram into one message.
//!
//! # Layout
//! [`decode`] tells an Encapsulated message (5.5) from a plain one, `message` reads the header
//! (5.2) and checks that it covers exactly the datagram, and `body` reads the variable part of
//! each message type in the order of 5.4, with the helpers below it for the fields several
//! messages share (flags, topics, strings).
//!
//! Every rule of a single message that the specification states is enforced here, so a gateway
//! sees only well-formed values. Rules that depend on the sender or on state (a client must not
//! send GWINFO without GwAdd; a topic id must be registered; QoS -1 only to predefined ids or
//! short names) are the gateway's.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::flags::Flags;
use crate::header::{self, LONG_FORM};
use crate::message::{
    Connect, Encapsulated, Message, PubAck, Publish, PublishTopic, RegAck, Register, SubAck, Subscribe, SubscribeTopic,
    Unsubscribe, WillTopic,
};
use crate::reader::Reader;
use crate::types::{ClientId, MsgId, MsgType, ReturnCode, ShortTopicName, TopicId, TopicIdType, TopicName};

/// The MsgType of an Encapsulated message.
const ENCAPSULATED: u8 = MsgType::Encapsulated as u8;

/// The only ProtocolId 1.2 defines (5.3.8).
pub(crate) const PROTOCOL_ID: u8 = 0x01;

/// Length, MsgType and Ctrl: the shortest Encapsulated header (5.5).
pub(crate) const ENCAPSULATION_HEADER: usize = 3;

/// Decodes `datagram`, which must hold exactly one message: its Length field must give the
/// datagram's length, so missing or trailing octets are an error (for an Encapsulated message,
/// the inner message's Length must reach exactly to the datagram's end).
///
/// Never panics, whatever the input.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    match datagram {
        // 5.5: the Encapsulated header has a one-octet Length that counts the header alone.
        [first, ENCAPSULATED, ..] if *first != LONG_FORM => encapsulated(datagram),
        _ => message(datagram, Nesting::Outer),
    }
}

/// Whether a message stands alone in its datagram or is inside an Encapsulated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Outer,
    Inner,
}

/// 5.5 Forwarder Encapsulation: Length, MsgType, Ctrl, Wireless Node Id, then the message.
///
/// `decode` calls it with at least the Length and MsgType octets.
fn encapsulated(datagram: &[u8]) -> Result<Message, DecodeError> {
    let declared = usize::from(datagram[0]);
    if declared < ENCAPSULATION_HEADER || declared > datagram.len() {
        return Err(DecodeError::BadEncapsulationLength { declared, actual: datagram.len() });
    }
    // In bounds: the datagram holds the `declared` octets, at least three.
    let ctrl = datagram[2];
    let wireless_node_id = Bytes::copy_from_slice(&datagram[ENCAPSULATION_HEADER..declared]);
    let inner = &datagram[declared..];
    if let [first, ENCAPSULATED, ..] = inner {
        if *first != LONG_FORM {
            return Err(DecodeError::NestedEncapsulation);
        }
    }
    let message = message(inner, Nesting::Inner)?;
    // Bits 0 and 1 are the radius; the others are reserved and ignored.
    Ok(Message::Encapsulated(Encapsulated { radius: ctrl & 0b11, wireless_node_id, message: Box::new(message) }))
}

/// A message that is not Encapsulated: the header (5.2), then the variable part.
fn message(datagram: &[u8], nesting: Nesting) -> Result<Message, DecodeError> {
    let (declared, header_len) = header::read(datagram)?;
    if declared != datagram.len() {
        return Err(DecodeError::LengthMismatch { declared, actual: datagram.len() });
    }
    let Some(&type_octet) = datagram.get(header_len) else {
        return Err(DecodeError::TooShort { len: datagram.len() });
    };
    let msg_type = MsgType::from_u8(type_octet).ok_or(DecodeError::UnknownMsgType(type_octet))?;
    if msg_type == MsgType::Encapsulated {
        // Reached only through the 3-octet Length form, which 5.5 does not give the
        // Encapsulated header, or inside another Encapsulated message.
        return Err(match nesting {
            Nesting::Outer => DecodeError::BadEncapsulationLength { declared, actual: datagram.len() },
            Nesting::Inner => DecodeError::NestedEncapsulation,
        });
    }
    body(Reader::new(&datagram[header_len + 1..], msg_type))
}

/// The variable part of each message of 5.4.
fn body(mut r: Reader<'_>) -> Result<Message, DecodeError> {
    let message = match r.msg_type() {
        MsgType::Advertise => Message::Advertise { gw_id: r.u8("GwId")?, duration: r.u16("Duration")? },
        MsgType::SearchGw => Message::SearchGw { radius: r.u8("Radius")? },
        MsgType::GwInfo => Message::GwInfo { gw_id: r.u8("GwId")?, gw_add: Bytes::copy_from_slice(r.rest()) },
        MsgType::Connect => Message::Connect(connect(&mut r)?),
        MsgType::ConnAck => Message::ConnAck { return_code: return_code(&mut r)? },
        MsgType::WillTopicReq => Message::WillTopicReq,
        MsgType::WillTopic => Message::WillTopic { will: will_topic(&mut r)? },
        MsgType::WillMsgReq => Message::WillMsgReq,
        MsgType::WillMsg => Message::WillMsg { will_msg: Bytes::copy_from_slice(r.rest()) },
        MsgType::Register => Message::Register(Register {
            topic_id: topic_id(&mut r)?,
            msg_id: msg_id(&mut r)?,
            topic_name: topic_name(r.rest(), r.msg_type(), "TopicName")?,
        }),
        MsgType::RegAck => Message::RegAck(RegAck {
            topic_id: topic_id(&mut r)?,
            msg_id: msg_id(&mut r)?,
            return_code: return_code(&mut r)?,
        }),
        MsgType::Publish => Message::Publish(publish(&mut r)?),
        MsgType::PubAck => Message::PubAck(PubAck {
            topic_id: topic_id(&mut r)?,
            msg_id: msg_id(&mut r)?,
            return_code: return_code(&mut r)?,
        }),
        MsgType::PubComp => Message::PubComp { msg_id: msg_id(&mut r)? },
        MsgType::PubRec => Message::PubRec { msg_id: msg_id(&mut r)? },
        MsgType::PubRel => Message::PubRel { msg_id: msg_id(&mut r)? },
        MsgType::Subscribe => {
            let flags = flags(&mut r)?;
            let kind = flags.topic_id_type(r.msg_type())?;
            let msg_id = msg_id(&mut r)?;
            Message::Subscribe(Subscribe {
                dup: flags.dup(),
                qos: flags.qos(),
                msg_id,
                topic: subscribe_topic(&mut r, kind)?,
            })
        }
        MsgType::SubAck => {
            let flags = flags(&mut r)?;
            Message::SubAck(SubAck {
                qos: flags.qos(),
                topic_id: topic_id(&mut r)?,
                msg_id: msg_id(&mut r)?,
                return_code: return_code(&mut r)?,
            })
        }
        MsgType::Unsubscribe => {
            let kind = flags(&mut r)?.topic_id_type(r.msg_type())?;
            let msg_id = msg_id(&mut r)?;
            Message::Unsubscribe(Unsubscribe { msg_id, topic: subscribe_topic(&mut r, kind)? })
        }
        MsgType::UnsubAck => Message::UnsubAck { msg_id: msg_id(&mut r)? },
        MsgType::PingReq => {
            let client_id = if r.is_empty() { None } else { Some(client_id(r.rest(), r.msg_type())?) };
            Message::PingReq { client_id }
        }
        MsgType::PingResp => Message::PingResp,
        MsgType::Disconnect => {
            let duration = if r.is_empty() { None } else { Some(r.u16("Duration")?) };
            Message::Disconnect { duration }
        }
        MsgType::WillTopicUpd => Message::WillTopicUpd { will: will_topic(&mut r)? },
        MsgType::WillTopicResp => Message::WillTopicResp { return_code: return_code(&mut r)? },
        MsgType::WillMsgUpd => Message::WillMsgUpd { will_msg: Bytes::copy_from_slice(r.rest()) },
        MsgType::WillMsgResp => Message::WillMsgResp { return_code: return_code(&mut r)? },
        // `message` handled it before reading the variable part.
        MsgType::Encapsulated => return Err(DecodeError::NestedEncapsulation),
    };
    r.finish()?;
    Ok(message)
}

/// 5.4.4 CONNECT: Flags, ProtocolId, Duration, ClientId.
fn connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let flags = flags(r)?;
    let protocol_id = r.u8("ProtocolId")?;
    if protocol_id != PROTOCOL_ID {
        return Err(DecodeError::UnsupportedProtocolId(protocol_id));
    }
    Ok(Connect {
        will: flags.will(),
        clean_session: flags.clean_session(),
        duration: r.u16("Duration")?,
        client_id: client_id(r.rest(), r.msg_type())?,
    })
}

/// 5.4.7 WILLTOPIC and 5.4.22 WILLTOPICUPD: Flags and WillTopic, or nothing at all for the
/// empty message that deletes the will.
fn will_topic(r: &mut Reader<'_>) -> Result<Option<WillTopic>, DecodeError> {
    if r.is_empty() {
        return Ok(None);
    }
    let flags = flags(r)?;
    let topic = topic_name(r.rest(), r.msg_type(), "WillTopic")?;
    Ok(Some(WillTopic { qos: flags.qos(), retain: flags.retain(), topic }))
}

/// 5.4.12 PUBLISH: Flags, TopicId, MsgId, Data.
fn publish(r: &mut Reader<'_>) -> Result<Publish, DecodeError> {
    let flags = flags(r)?;
    let kind = flags.topic_id_type(r.msg_type())?;
    let topic = match kind {
        TopicIdType::Normal => PublishTopic::Normal(topic_id(r)?),
        TopicIdType::Predefined => PublishTopic::Predefined(topic_id(r)?),
        TopicIdType::Short => PublishTopic::Short(ShortTopicName(r.array("TopicId")?)),
    };
    Ok(Publish {
        dup: flags.dup(),
        qos: flags.qos(),
        retain: flags.retain(),
        topic,
        msg_id: msg_id(r)?,
        data: Bytes::copy_from_slice(r.rest()),
    })
}

/// The last field of SUBSCRIBE (5.4.15) and UNSUBSCRIBE (5.4.17): a TopicName to the end of the
/// message, or a TopicId of two octets, as TopicIdType says.
fn subscribe_topic(r: &mut Reader<'_>, kind: TopicIdType) -> Result<SubscribeTopic, DecodeError> {
    Ok(match kind {
        TopicIdType::Normal => SubscribeTopic::Name(topic_name(r.rest(), r.msg_type(), "TopicName")?),
        TopicIdType::Predefined => SubscribeTopic::Predefined(topic_id(r)?),
        TopicIdType::Short => SubscribeTopic::Short(ShortTopicName(r.array("TopicName")?)),
    })
}

fn flags(r: &mut Reader<'_>) -> Result<Flags, DecodeError> {
    r.u8("Flags").map(Flags)
}

fn msg_id(r: &mut Reader<'_>) -> Result<MsgId, DecodeError> {
    r.u16("MsgId").map(MsgId)
}

fn topic_id(r: &mut Reader<'_>) -> Result<TopicId, DecodeError> {
    r.u16("TopicId").map(TopicId)
}

fn return_code(r: &mut Reader<'_>) -> Result<ReturnCode, DecodeError> {
    r.u8("ReturnCode").map(ReturnCode)
}

/// A ClientId (5.3.1) that runs to the end of the message.
fn client_id(bytes: &[u8], msg_type: MsgType) -> Result<ClientId, DecodeError> {
    ClientId::new(text(bytes, msg_type, "ClientId")?).ok_or(DecodeError::EmptyField { msg_type, field: "ClientId" })
}

/// A TopicName (5.3.12) or WillTopic (5.3.14) that runs to the end of the message.
fn topic_name(bytes: &[u8], msg_type: MsgType, field: &'static str) -> Result<TopicName, DecodeError> {
    TopicName::new(text(bytes, msg_type, field)?).ok_or(DecodeError::EmptyField { msg_type, field })
}

fn text(bytes: &[u8], msg_type: MsgType, field: &'static str) -> Result<String, DecodeError> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::InvalidUtf8 { msg_type, field })
}
