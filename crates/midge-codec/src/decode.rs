//! Decoding: a cheap frame check that learns a packet's length from its fixed header, then a
//! full decode that splits the frame off the buffer and slices topic and payload from it.
//!
//! # Layout
//! This file reads the fixed header, enforces its rules (size limit, packet type, flag bits)
//! and dispatches on the packet type; one submodule per family of packets decodes the rest:
//! `connect` (CONNECT, CONNACK), `publish` (PUBLISH and its acknowledgements),
//! `subscribe` (SUBSCRIBE, UNSUBSCRIBE and their acknowledgements), `control` (PINGREQ,
//! PINGRESP, DISCONNECT, AUTH).
//!
//! Every rule a receiver must enforce on a single packet is enforced here, so the broker sees
//! only well-formed values. Rules that depend on who sent the packet (a client must not send
//! CONNACK) or on session state (topic alias ranges) are the broker's.

use bytes::{Buf, BytesMut};

use crate::error::DecodeError;
use crate::packet::Packet;
use crate::reader::Reader;
use crate::types::{PacketId, ProtocolVersion};
use crate::varint;

mod connect;
mod control;
mod publish;
mod subscribe;

/// The fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Packet type, the high nibble of the first byte (1..=15).
    pub packet_type: u8,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Length of the fixed header: 1 byte plus 1..=4 remaining-length bytes.
    pub header_len: usize,
    /// Remaining length.
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Total frame length: fixed header plus remaining length.
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the start of `buf`. `Ok(None)` means more bytes are needed.
///
/// Only the framing is checked (the remaining length is at most four bytes, section 1.5.5), so
/// a caller can learn a frame's length without knowing the connection's version; packet type
/// and flag bits are checked by [`decode_packet`].
pub fn check_frame(buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((remaining_len, len)) = varint::decode(rest)? else {
        return Ok(None);
    };
    Ok(Some(FrameHeader {
        packet_type: first >> 4,
        flags: first & 0x0F,
        header_len: 1 + len,
        remaining_len: remaining_len as usize,
    }))
}

/// Decodes one packet from the front of `buf` and removes its bytes. `Ok(None)`: incomplete,
/// nothing removed. A frame whose total length exceeds `max_packet_size` fails with
/// `PacketTooLarge` as soon as its fixed header is complete. `version` is the connection's
/// version (CONNECT decodes whatever it announces).
///
/// The frame is split off and frozen, so topics, payloads, strings and binary data in the
/// packet share its storage instead of being copied. After an error the connection must be
/// closed: what is left in `buf` is unspecified.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = check_frame(buf)? else {
        return Ok(None);
    };
    let total = header.total_len();
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size: total, max: max_packet_size });
    }
    // A bad first byte is reported without waiting for a body that cannot make it valid.
    check_type_and_flags(&header, version)?;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    // Advancing (rather than slicing) keeps one reference to the frame's storage, not two.
    frame.advance(header.header_len);
    let body = Reader::new(frame);
    decode_body(&header, body, version).map(Some)
}

/// Enforces the fixed header's rules: a defined packet type, and the flag bits the
/// specification fixes for it.
fn check_type_and_flags(header: &FrameHeader, version: ProtocolVersion) -> Result<(), DecodeError> {
    let flags = header.flags;
    match header.packet_type {
        0 => Err(DecodeError::Malformed("packet type 0 is reserved")),
        15 if !version.is_v5() => Err(DecodeError::Malformed("packet type 15 is reserved before MQTT 5")),
        PUBLISH => {
            // MQTT-3.3.1-4: QoS 3 is malformed.
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            // MQTT-3.3.1-2: a QoS 0 message is never a redelivery.
            if flags & 0b1110 == 0b1000 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 0 and DUP set"));
            }
            Ok(())
        }
        // MQTT-2.2.2-1/2 (3.1.1), MQTT-2.1.3-1 (5.0): these three carry 0b0010. MQTT 3.1 gave
        // them a QoS of 1 and let a retransmission set DUP (3.1 section 2.1), so 0b1010 is
        // accepted from 3.1 clients, which may send it.
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => {
            if flags == 0b0010 || (version == ProtocolVersion::V31 && flags == 0b1010) {
                Ok(())
            } else {
                Err(DecodeError::Malformed("reserved fixed header flags must be 0010"))
            }
        }
        _ if flags != 0 => Err(DecodeError::Malformed("reserved fixed header flags must be 0")),
        _ => Ok(()),
    }
}

const PUBLISH: u8 = 3;
const PUBREL: u8 = 6;
const SUBSCRIBE: u8 = 8;
const UNSUBSCRIBE: u8 = 10;

fn decode_body(header: &FrameHeader, body: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    Ok(match header.packet_type {
        1 => Packet::Connect(Box::new(connect::connect(body)?)),
        2 => Packet::ConnAck(connect::connack(body, version)?),
        3 => Packet::Publish(publish::publish(body, header.flags, version)?),
        4 => Packet::PubAck(publish::response(body, version)?),
        5 => Packet::PubRec(publish::response(body, version)?),
        6 => Packet::PubRel(publish::response(body, version)?),
        7 => Packet::PubComp(publish::response(body, version)?),
        8 => Packet::Subscribe(subscribe::subscribe(body, version)?),
        9 => Packet::SubAck(subscribe::suback(body, version)?),
        10 => Packet::Unsubscribe(subscribe::unsubscribe(body, version)?),
        11 => Packet::UnsubAck(subscribe::unsuback(body, version)?),
        12 => control::empty(body, Packet::PingReq)?,
        13 => control::empty(body, Packet::PingResp)?,
        14 => Packet::Disconnect(control::disconnect(body, version)?),
        15 => Packet::Auth(control::auth(body)?),
        // `check_type_and_flags` rejected 0, and the type is a nibble.
        _ => return Err(DecodeError::Malformed("packet type 0 is reserved")),
    })
}

/// A Packet Identifier: never 0 in a packet that carries one (MQTT-2.3.1-1).
fn packet_id(reader: &mut Reader) -> Result<PacketId, DecodeError> {
    let value = reader.u16("missing packet identifier")?;
    PacketId::new(value).ok_or(DecodeError::Protocol("packet identifier 0"))
}
