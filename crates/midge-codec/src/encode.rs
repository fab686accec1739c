//! Encoding of packets, and of a PUBLISH from parts for fan-out, where the properties every
//! subscriber shares are encoded once and only per-subscriber fields differ.
//!
//! # Layout
//! This file holds the public entry points, the fixed header and the size checks; one
//! submodule per family of packets writes the rest: `connect`, `publish`, `subscribe`,
//! `control`. Each body is one function generic over `Sink`: it runs once against a
//! `Counter` to learn the remaining length (and whether the packet can be encoded at all),
//! then once against the output, which is reserved beforehand so encoding allocates at most
//! once. Nothing is written when encoding fails.
//!
//! For 3.x, properties and reason codes are left out, CONNACK and SUBACK codes are mapped to
//! their 3.x return codes, and DISCONNECT is the two bytes `e0 00`.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::Packet;
use crate::properties::{self, Properties};
use crate::reason::ReasonCode;
use crate::sink::{Counter, Sink};
use crate::types::{PacketId, ProtocolVersion, QoS};
use crate::varint;

mod connect;
mod control;
mod publish;
mod subscribe;

/// The parts of an outgoing PUBLISH other than its payload.
#[derive(Debug, Clone, Copy)]
pub struct PublishHeader<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty when `topic_alias` alone names it.
    pub topic: &'a str,
    /// Packet id, present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// v5: properties shared by every receiver, already encoded by [`encode_properties`]
    /// (without the length prefix). Ignored for 3.x.
    pub shared_properties: &'a [u8],
    /// v5: Message Expiry Interval to send (the remaining lifetime).
    pub message_expiry_interval: Option<u32>,
    /// v5: Topic Alias to send.
    pub topic_alias: Option<u16>,
    /// v5: Subscription Identifiers of the receiver's matching subscriptions.
    pub subscription_identifiers: &'a [u32],
}

/// Encodes `packet` for a connection speaking `version`.
///
/// Fails, writing nothing, if the remaining length would exceed 268,435,455
/// ([`EncodeError::TooLarge`]) or a value cannot be expressed for `version`
/// ([`EncodeError::Unencodable`]: e.g. AUTH for 3.x, Binary Data over 65,535 bytes, a
/// SUBSCRIBE without filters, a QoS 1 PUBLISH without packet id).
pub fn encode_packet(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = checked(Counter::measure(|counter| body(packet, version, counter)), 0)?;
    out.reserve(frame_len(remaining));
    out.put_u8(first_byte(packet));
    varint::put(out, remaining);
    body(packet, version, out);
    Ok(())
}

/// The number of bytes [`encode_packet`] writes: 0 when it would fail.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    checked(Counter::measure(|counter| body(packet, version, counter)), 0).map_or(0, frame_len)
}

/// Appends the encoded properties (identifier/value pairs, no length prefix).
///
/// Meant for the properties a fan-out PUBLISH shares (see [`PublishHeader`]). A value the wire
/// cannot carry (Binary Data over 65,535 bytes, a Subscription Identifier of 0 or above
/// 268,435,455) is skipped so the section stays well-formed; decoded properties never have one.
pub fn encode_properties(properties: &Properties, out: &mut BytesMut) {
    out.reserve(Counter::measure(|counter| properties::pairs(properties, counter)).len);
    properties::pairs(properties, out);
}

/// The total frame length [`encode_publish`] writes: 0 when it would fail.
pub fn publish_len(header: &PublishHeader<'_>, payload_len: usize, version: ProtocolVersion) -> usize {
    let head = Counter::measure(|counter| publish::head(header, version, counter));
    checked(head, payload_len).map_or(0, frame_len)
}

/// Appends a PUBLISH frame built from parts.
///
/// For v5 the property section is the Message Expiry Interval, the Topic Alias, each
/// Subscription Identifier, then `shared_properties` verbatim. Fails, writing nothing, like
/// [`encode_packet`].
pub fn encode_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    header: &PublishHeader<'_>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let head = Counter::measure(|counter| publish::head(header, version, counter));
    let remaining = checked(head, payload.len())?;
    out.reserve(frame_len(remaining));
    out.put_u8(publish::first_byte(header.dup, header.qos, header.retain));
    varint::put(out, remaining);
    publish::head(header, version, out);
    out.put_slice(payload);
    Ok(())
}

/// The 3.x CONNACK return code for a v5 reason code (3.1.1 table 3.1). Success codes become 0;
/// a failure without a 3.x equivalent becomes 3, Server unavailable.
pub fn connack_return_code(reason: ReasonCode) -> u8 {
    match reason {
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => 4,
        ReasonCode::NOT_AUTHORIZED => 5,
        reason if reason.is_error() => 3,
        _ => 0,
    }
}

/// The remaining length of a measured body plus `extra` bytes (a payload written apart), or
/// why it cannot be encoded.
fn checked(counter: Counter, extra: usize) -> Result<usize, EncodeError> {
    if let Some(why) = counter.rejected {
        return Err(EncodeError::Unencodable(why));
    }
    let remaining = counter.len.saturating_add(extra);
    if remaining > varint::MAX {
        return Err(EncodeError::TooLarge(remaining));
    }
    Ok(remaining)
}

/// The whole frame's length for a remaining length of at most `varint::MAX`.
fn frame_len(remaining: usize) -> usize {
    1 + varint::len(remaining) + remaining
}

/// The first byte: packet type and flags (section 2.1.2, 2.1.3).
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(publish) => publish::first_byte(publish.dup, publish.qos, publish.retain),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Everything after the fixed header.
fn body<S: Sink>(packet: &Packet, version: ProtocolVersion, sink: &mut S) {
    match packet {
        Packet::Connect(connect) => connect::connect(connect, version, sink),
        Packet::ConnAck(connack) => connect::connack(connack, version, sink),
        Packet::Publish(publish) => publish::publish(publish, version, sink),
        Packet::PubAck(response) | Packet::PubRec(response) | Packet::PubRel(response) | Packet::PubComp(response) => {
            publish::response(response, version, sink)
        }
        Packet::Subscribe(subscribe) => subscribe::subscribe(subscribe, version, sink),
        Packet::SubAck(suback) => subscribe::suback(suback, version, sink),
        Packet::Unsubscribe(unsubscribe) => subscribe::unsubscribe(unsubscribe, version, sink),
        Packet::UnsubAck(unsuback) => subscribe::unsuback(unsuback, version, sink),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => control::disconnect(disconnect, version, sink),
        Packet::Auth(auth) => control::auth(auth, version, sink),
    }
}

/// A v5 reason code followed by properties, in the shortest form the specification allows:
/// nothing when the reason is Success without properties (PUBACK & co., DISCONNECT, AUTH);
/// the reason alone when there are no properties and `omit_properties` (acknowledgements and
/// DISCONNECT; AUTH may omit both or neither).
fn reason_and_properties<S: Sink>(reason: ReasonCode, properties: &Properties, omit_properties: bool, sink: &mut S) {
    let no_properties = properties.is_empty();
    if no_properties && reason == ReasonCode::SUCCESS {
        return;
    }
    sink.u8(reason.0);
    if !(no_properties && omit_properties) {
        properties::section(properties, sink);
    }
}
