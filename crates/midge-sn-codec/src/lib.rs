//! MQTT-SN 1.2 messages: types, decoding and encoding of datagrams. No I/O.
//!
//! The codec of the MQTT-SN protocol (MQTT For Sensor Networks, Protocol Specification Version
//! 1.2, Andy Stanford-Clark and Hong Linh Truong, IBM, 2013): every message of its section 5.4
//! and the forwarder's Encapsulated message of 5.5, as typed values, one message per datagram.
//! Section numbers in these docs are that specification's.
//!
//! What it is not: a gateway. It opens no socket, keeps no timer and holds no state: topic id
//! registries, sessions, sleeping clients, retransmission, the translation to MQTT and every
//! rule that depends on who sent a message or when are the gateway's. Nor is it MQTT-SN 2.0,
//! whose messages differ.
//!
//! ```
//! use bytes::BytesMut;
//! use midge_sn_codec::{decode, encode, Message, MsgId, Publish, PublishTopic, QoS, TopicId};
//!
//! // 5.4.12 PUBLISH, QoS 1, to the registered topic id 1, MsgId 2, data "on".
//! let datagram = [0x09, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, b'o', b'n'];
//! let message = decode(&datagram)?;
//! let Message::Publish(Publish { qos, topic, msg_id, data, .. }) = &message else { panic!() };
//! assert_eq!((*qos, *topic, *msg_id), (QoS::AtLeastOnce, PublishTopic::Normal(TopicId(1)), MsgId(2)));
//! assert_eq!(&data[..], b"on");
//!
//! let mut out = BytesMut::new();
//! encode(&message, &mut out)?;
//! assert_eq!(&out[..], &datagram[..]);
//! assert_eq!(message.encoded_len(), datagram.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`types`]: the values messages carry: message types, QoS, topic id types, return codes,
//!   ids, and the checked strings (client id, topic name).
//! - [`message`]: [`Message`], one variant per message type, and the structs of the larger ones.
//! - [`decode`](mod@decode): [`decode`](fn@decode), one datagram to one message.
//! - [`encode`](mod@encode): [`encode`](fn@encode) and [`encoded_len`].
//! - [`error`]: [`DecodeError`] and [`EncodeError`].
//!
//! Private helpers: `header` (the 1- or 3-octet Length field of 5.2.1), `flags` (the Flags
//! octet of 5.3.4), `reader` (a cursor over a message's fields with typed "missing field"
//! errors).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod decode;
pub mod encode;
pub mod error;
pub mod message;
pub mod types;

mod flags;
mod header;
mod reader;

pub use decode::decode;
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use header::MAX_MESSAGE_LEN;
pub use message::{
    Connect, Encapsulated, Message, PubAck, Publish, PublishTopic, RegAck, Register, SubAck, Subscribe, SubscribeTopic,
    Unsubscribe, WillTopic,
};
pub use types::{ClientId, MsgId, MsgType, QoS, ReturnCode, ShortTopicName, TopicId, TopicIdType, TopicName};
