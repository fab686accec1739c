//! MQTT 3.1, 3.1.1 and 5.0 packets: types, decoding and encoding. No I/O.
//!
//! # Layout
//! - [`types`]: checked values (strings, topic names and filters, QoS, packet ids, versions).
//! - [`reason`]: v5 reason codes, the broker's single vocabulary of outcomes.
//! - [`properties`]: v5 properties.
//! - [`packet`]: one struct per packet kind, and [`Packet`].
//! - [`decode`]: frame check and packet decoding from a `BytesMut`, zero-copy.
//! - [`encode`]: packet encoding, and the fan-out path that writes a PUBLISH from parts.
//! - [`error`]: decode and encode errors, and their mapping to reason codes.
//!
//! Private helpers: `reader` (a cursor over a frame with typed "missing X" errors), `varint`
//! (Variable Byte Integers), `sink` (lets one function both measure and write a packet).
#![deny(missing_docs)]
// One measured exception, `MqttString::as_str` (see its comment), allows itself; nothing else
// may use `unsafe`.
#![deny(unsafe_code)]

pub mod decode;
pub mod encode;
pub mod error;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod types;

mod reader;
mod sink;
mod varint;

pub use decode::{check_frame, decode_packet, FrameHeader};
pub use encode::{
    connack_return_code, encode_packet, encode_properties, encode_publish, encoded_len, publish_len, PublishHeader,
};
pub use error::{DecodeError, EncodeError, InvalidValue};
pub use packet::*;
pub use properties::Properties;
pub use reason::ReasonCode;
pub use types::{MqttString, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};
