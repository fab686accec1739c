//! Encoding of packets, and of a PUBLISH from parts for fan-out, where the properties every
//! subscriber shares are encoded once and only per-subscriber fields differ.

use bytes::BytesMut;

use crate::error::EncodeError;
use crate::packet::Packet;
use crate::properties::Properties;
use crate::types::{PacketId, ProtocolVersion, QoS};

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
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let _ = (packet, version, out);
    todo!("codec helper implements")
}

/// The number of bytes [`encode_packet`] writes.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let _ = (packet, version);
    todo!("codec helper implements")
}

/// Appends the encoded properties (identifier/value pairs, no length prefix).
pub fn encode_properties(properties: &Properties, out: &mut BytesMut) {
    let _ = (properties, out);
    todo!("codec helper implements")
}

/// The total frame length [`encode_publish`] writes.
pub fn publish_len(
    header: &PublishHeader<'_>,
    payload_len: usize,
    version: ProtocolVersion,
) -> usize {
    let _ = (header, payload_len, version);
    todo!("codec helper implements")
}

/// Appends a PUBLISH frame built from parts.
pub fn encode_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    header: &PublishHeader<'_>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let _ = (out, version, header, payload);
    todo!("codec helper implements")
}
