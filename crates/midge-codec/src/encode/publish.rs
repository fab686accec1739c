//! PUBLISH, whole or from parts, and PUBACK, PUBREC, PUBREL, PUBCOMP.

use crate::encode::{reason_and_properties, PublishHeader};
use crate::packet::{PubResponse, Publish};
use crate::properties::{self, id};
use crate::sink::{Counter, Sink};
use crate::types::{PacketId, ProtocolVersion, QoS};

/// The first byte of a PUBLISH: type 3, DUP, QoS, RETAIN (section 3.3.1).
pub(super) fn first_byte(dup: bool, qos: QoS, retain: bool) -> u8 {
    0x30 | u8::from(dup) << 3 | qos.as_u8() << 1 | u8::from(retain)
}

/// A whole PUBLISH after its fixed header.
pub(super) fn publish<S: Sink>(publish: &Publish, version: ProtocolVersion, sink: &mut S) {
    let has_alias = publish.properties.topic_alias.is_some();
    topic_and_packet_id(
        publish.topic.as_bytes(),
        publish.dup,
        publish.qos,
        publish.packet_id,
        has_alias,
        version,
        sink,
    );
    if version.is_v5() {
        properties::section(&publish.properties, sink);
    }
    sink.bytes(&publish.payload);
}

/// A PUBLISH from parts, after its fixed header and without its payload.
pub(super) fn head<S: Sink>(header: &PublishHeader<'_>, version: ProtocolVersion, sink: &mut S) {
    let has_alias = header.topic_alias.is_some();
    topic_and_packet_id(header.topic.as_bytes(), header.dup, header.qos, header.packet_id, has_alias, version, sink);
    if version.is_v5() {
        sink.varint(Counter::measure(|counter| header_properties(header, counter)).len);
        header_properties(header, sink);
    }
}

/// The per-receiver properties of a PUBLISH from parts, then the shared ones verbatim.
fn header_properties<S: Sink>(header: &PublishHeader<'_>, sink: &mut S) {
    if let Some(interval) = header.message_expiry_interval {
        properties::four(sink, id::MESSAGE_EXPIRY_INTERVAL, interval);
    }
    if let Some(alias) = header.topic_alias {
        // MQTT-3.3.2-8: a Topic Alias of 0 is not permitted.
        if alias == 0 {
            sink.reject("topic alias 0");
        }
        properties::two(sink, id::TOPIC_ALIAS, alias);
    }
    for &identifier in header.subscription_identifiers {
        properties::subscription_identifier(sink, identifier);
    }
    sink.bytes(header.shared_properties);
}

/// Topic name and packet identifier, refusing what the peer would have to reject.
fn topic_and_packet_id<S: Sink>(
    topic: &[u8],
    dup: bool,
    qos: QoS,
    packet_id: Option<PacketId>,
    has_alias: bool,
    version: ProtocolVersion,
    sink: &mut S,
) {
    // Section 3.3.2.3.4: only a v5 Topic Alias can stand in for the topic name.
    if topic.is_empty() && !(has_alias && version.is_v5()) {
        sink.reject("empty topic name without a topic alias");
    }
    sink.binary(topic);
    match (qos, packet_id) {
        // MQTT-3.3.1-2.
        (QoS::AtMostOnce, _) if dup => sink.reject("DUP set on a QoS 0 PUBLISH"),
        // MQTT-2.3.1-5: no packet identifier at QoS 0; one is ignored.
        (QoS::AtMostOnce, _) => {}
        (_, Some(packet_id)) => sink.u16(packet_id.get()),
        (_, None) => sink.reject("a QoS 1 or 2 PUBLISH needs a packet identifier"),
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: in v5 shortened to 2 bytes for Success without
/// properties and to 3 for a reason without properties (section 3.4.2.1).
pub(super) fn response<S: Sink>(response: &PubResponse, version: ProtocolVersion, sink: &mut S) {
    sink.u16(response.packet_id.get());
    if version.is_v5() {
        reason_and_properties(response.reason, &response.properties, true, sink);
    }
}
