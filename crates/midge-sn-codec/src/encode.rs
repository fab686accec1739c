//! Encoding one message into the octets of one datagram.
//!
//! # Layout
//! [`encode`] checks what the wire cannot carry (`check`), reserves the output once and writes
//! the header and the variable part (`write_body`, in the order of 5.4). [`encoded_len`]
//! computes the length from the same fields (`body_len`); the tests check that the two agree
//! for every message. Flags that a message does not use are written as 0.

use bytes::{BufMut, BytesMut};

use crate::decode::{ENCAPSULATION_HEADER, PROTOCOL_ID};
use crate::error::EncodeError;
use crate::flags::Flags;
use crate::header::{self, MAX_MESSAGE_LEN, MAX_SHORT_LEN};
use crate::message::{Encapsulated, Message, PublishTopic, SubscribeTopic, WillTopic};
use crate::types::{MsgId, MsgType, ReturnCode, TopicId};

/// The longest Wireless Node Id the Encapsulated header's one-octet Length can count.
const MAX_WIRELESS_NODE_ID_LEN: usize = MAX_SHORT_LEN - ENCAPSULATION_HEADER;

/// The largest radius the two Radius bits of Ctrl can hold (5.5).
const MAX_RADIUS: u8 = 0b11;

/// Appends `message` to `out`, with the Length field in the shortest form that holds it
/// (5.2.1). Nothing is written when it fails.
pub fn encode(message: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    check(message)?;
    out.reserve(encoded_len(message));
    write(message, out);
    Ok(())
}

/// The number of octets [`encode`] writes for `message` (what it would write for a message it
/// refuses).
pub fn encoded_len(message: &Message) -> usize {
    match message {
        Message::Encapsulated(encapsulated) => {
            ENCAPSULATION_HEADER + encapsulated.wireless_node_id.len() + encoded_len(&encapsulated.message)
        }
        _ => header::total_len(body_len(message)),
    }
}

/// Refuses what the wire cannot carry.
fn check(message: &Message) -> Result<(), EncodeError> {
    match message {
        Message::Encapsulated(Encapsulated { radius, wireless_node_id, message }) => {
            if *radius > MAX_RADIUS {
                return Err(EncodeError::RadiusOutOfRange(*radius));
            }
            if wireless_node_id.len() > MAX_WIRELESS_NODE_ID_LEN {
                return Err(EncodeError::WirelessNodeIdTooLong { len: wireless_node_id.len() });
            }
            if let Message::Encapsulated(_) = **message {
                return Err(EncodeError::NestedEncapsulation);
            }
            check(message)
        }
        _ => {
            let len = encoded_len(message);
            if len > MAX_MESSAGE_LEN {
                return Err(EncodeError::TooLarge { len });
            }
            Ok(())
        }
    }
}

fn write(message: &Message, out: &mut BytesMut) {
    match message {
        Message::Encapsulated(Encapsulated { radius, wireless_node_id, message }) => {
            // Fits in an octet: `check` bounded the id's length.
            out.put_u8((ENCAPSULATION_HEADER + wireless_node_id.len()) as u8);
            out.put_u8(MsgType::Encapsulated.as_u8());
            out.put_u8(*radius);
            out.put_slice(wireless_node_id);
            write(message, out);
        }
        _ => {
            header::write(header::total_len(body_len(message)), out);
            out.put_u8(message.msg_type().as_u8());
            write_body(message, out);
        }
    }
}

/// The length of the MsgType octet and the variable part.
fn body_len(message: &Message) -> usize {
    1 + match message {
        Message::Advertise { .. } => 1 + 2,
        Message::SearchGw { .. } => 1,
        Message::GwInfo { gw_add, .. } => 1 + gw_add.len(),
        Message::Connect(connect) => 1 + 1 + 2 + connect.client_id.as_str().len(),
        Message::ConnAck { .. } | Message::WillTopicResp { .. } | Message::WillMsgResp { .. } => 1,
        Message::WillTopicReq | Message::WillMsgReq | Message::PingResp => 0,
        Message::WillTopic { will } | Message::WillTopicUpd { will } => {
            will.as_ref().map_or(0, |will| 1 + will.topic.as_str().len())
        }
        Message::WillMsg { will_msg } | Message::WillMsgUpd { will_msg } => will_msg.len(),
        Message::Register(register) => 2 + 2 + register.topic_name.as_str().len(),
        Message::RegAck(_) | Message::PubAck(_) => 2 + 2 + 1,
        Message::Publish(publish) => 1 + 2 + 2 + publish.data.len(),
        Message::PubComp { .. } | Message::PubRec { .. } | Message::PubRel { .. } | Message::UnsubAck { .. } => 2,
        Message::Subscribe(subscribe) => 1 + 2 + subscribe_topic_len(&subscribe.topic),
        Message::SubAck(_) => 1 + 2 + 2 + 1,
        Message::Unsubscribe(unsubscribe) => 1 + 2 + subscribe_topic_len(&unsubscribe.topic),
        Message::PingReq { client_id } => client_id.as_ref().map_or(0, |id| id.as_str().len()),
        Message::Disconnect { duration } => duration.map_or(0, |_| 2),
        // `encoded_len` and `write` handle it without asking for a body.
        Message::Encapsulated(_) => 0,
    }
}

fn subscribe_topic_len(topic: &SubscribeTopic) -> usize {
    match topic {
        SubscribeTopic::Name(name) => name.as_str().len(),
        SubscribeTopic::Predefined(_) | SubscribeTopic::Short(_) => 2,
    }
}

/// The variable part of each message of 5.4.
fn write_body(message: &Message, out: &mut BytesMut) {
    match message {
        Message::Advertise { gw_id, duration } => {
            out.put_u8(*gw_id);
            out.put_u16(*duration);
        }
        Message::SearchGw { radius } => out.put_u8(*radius),
        Message::GwInfo { gw_id, gw_add } => {
            out.put_u8(*gw_id);
            out.put_slice(gw_add);
        }
        Message::Connect(connect) => {
            let flags = Flags::default().with_will(connect.will).with_clean_session(connect.clean_session);
            out.put_u8(flags.0);
            out.put_u8(PROTOCOL_ID);
            out.put_u16(connect.duration);
            out.put_slice(connect.client_id.as_str().as_bytes());
        }
        Message::ConnAck { return_code }
        | Message::WillTopicResp { return_code }
        | Message::WillMsgResp { return_code } => put_return_code(out, *return_code),
        Message::WillTopicReq | Message::WillMsgReq | Message::PingResp => {}
        Message::WillTopic { will } | Message::WillTopicUpd { will } => {
            if let Some(WillTopic { qos, retain, topic }) = will {
                out.put_u8(Flags::default().with_qos(*qos).with_retain(*retain).0);
                out.put_slice(topic.as_str().as_bytes());
            }
        }
        Message::WillMsg { will_msg } | Message::WillMsgUpd { will_msg } => out.put_slice(will_msg),
        Message::Register(register) => {
            put_topic_id(out, register.topic_id);
            put_msg_id(out, register.msg_id);
            out.put_slice(register.topic_name.as_str().as_bytes());
        }
        Message::RegAck(ack) => {
            put_topic_id(out, ack.topic_id);
            put_msg_id(out, ack.msg_id);
            put_return_code(out, ack.return_code);
        }
        Message::Publish(publish) => {
            let flags = Flags::default()
                .with_dup(publish.dup)
                .with_qos(publish.qos)
                .with_retain(publish.retain)
                .with_topic_id_type(publish.topic.id_type());
            out.put_u8(flags.0);
            match publish.topic {
                PublishTopic::Normal(id) | PublishTopic::Predefined(id) => put_topic_id(out, id),
                PublishTopic::Short(name) => out.put_slice(&name.0),
            }
            put_msg_id(out, publish.msg_id);
            out.put_slice(&publish.data);
        }
        Message::PubAck(ack) => {
            put_topic_id(out, ack.topic_id);
            put_msg_id(out, ack.msg_id);
            put_return_code(out, ack.return_code);
        }
        Message::PubComp { msg_id } | Message::PubRec { msg_id } | Message::PubRel { msg_id } => {
            put_msg_id(out, *msg_id)
        }
        Message::Subscribe(subscribe) => {
            let flags = Flags::default()
                .with_dup(subscribe.dup)
                .with_qos(subscribe.qos)
                .with_topic_id_type(subscribe.topic.id_type());
            out.put_u8(flags.0);
            put_msg_id(out, subscribe.msg_id);
            put_subscribe_topic(out, &subscribe.topic);
        }
        Message::SubAck(ack) => {
            out.put_u8(Flags::default().with_qos(ack.qos).0);
            put_topic_id(out, ack.topic_id);
            put_msg_id(out, ack.msg_id);
            put_return_code(out, ack.return_code);
        }
        Message::Unsubscribe(unsubscribe) => {
            out.put_u8(Flags::default().with_topic_id_type(unsubscribe.topic.id_type()).0);
            put_msg_id(out, unsubscribe.msg_id);
            put_subscribe_topic(out, &unsubscribe.topic);
        }
        Message::UnsubAck { msg_id } => put_msg_id(out, *msg_id),
        Message::PingReq { client_id } => {
            if let Some(id) = client_id {
                out.put_slice(id.as_str().as_bytes());
            }
        }
        Message::Disconnect { duration } => {
            if let Some(duration) = duration {
                out.put_u16(*duration);
            }
        }
        // `write` handles it.
        Message::Encapsulated(_) => {}
    }
}

fn put_subscribe_topic(out: &mut BytesMut, topic: &SubscribeTopic) {
    match topic {
        SubscribeTopic::Name(name) => out.put_slice(name.as_str().as_bytes()),
        SubscribeTopic::Predefined(id) => put_topic_id(out, *id),
        SubscribeTopic::Short(name) => out.put_slice(&name.0),
    }
}

fn put_topic_id(out: &mut BytesMut, id: TopicId) {
    out.put_u16(id.0);
}

fn put_msg_id(out: &mut BytesMut, id: MsgId) {
    out.put_u16(id.0);
}

fn put_return_code(out: &mut BytesMut, code: ReturnCode) {
    out.put_u8(code.0);
}
