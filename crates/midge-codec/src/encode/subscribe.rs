//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.

use crate::packet::{SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe};
use crate::properties;
use crate::sink::Sink;
use crate::types::ProtocolVersion;

/// SUBSCRIBE. For 3.x each options byte is the requested QoS alone.
pub(super) fn subscribe<S: Sink>(subscribe: &Subscribe, version: ProtocolVersion, sink: &mut S) {
    sink.u16(subscribe.packet_id.get());
    if version.is_v5() {
        properties::section(&subscribe.properties, sink);
    }
    // MQTT-3.8.3-3 (3.1.1), MQTT-3.8.3-2 (5.0).
    if subscribe.subscriptions.is_empty() {
        sink.reject("SUBSCRIBE without a topic filter");
    }
    for subscription in &subscribe.subscriptions {
        sink.binary(subscription.filter.as_bytes());
        sink.u8(options_byte(&subscription.options, version));
    }
}

/// SUBACK. For 3.x every failure is 0x80, the only failure code 3.x has.
pub(super) fn suback<S: Sink>(suback: &SubAck, version: ProtocolVersion, sink: &mut S) {
    sink.u16(suback.packet_id.get());
    if version.is_v5() {
        properties::section(&suback.properties, sink);
    }
    if suback.reasons.is_empty() {
        sink.reject("SUBACK without a return code");
    }
    for reason in &suback.reasons {
        let code = if !version.is_v5() && reason.is_error() { 0x80 } else { reason.0 };
        sink.u8(code);
    }
}

/// UNSUBSCRIBE.
pub(super) fn unsubscribe<S: Sink>(unsubscribe: &Unsubscribe, version: ProtocolVersion, sink: &mut S) {
    sink.u16(unsubscribe.packet_id.get());
    if version.is_v5() {
        properties::section(&unsubscribe.properties, sink);
    }
    // MQTT-3.10.3-2.
    if unsubscribe.filters.is_empty() {
        sink.reject("UNSUBSCRIBE without a topic filter");
    }
    for filter in &unsubscribe.filters {
        sink.binary(filter.as_bytes());
    }
}

/// UNSUBACK: the packet id alone in 3.x, which has no reason codes.
pub(super) fn unsuback<S: Sink>(unsuback: &UnsubAck, version: ProtocolVersion, sink: &mut S) {
    sink.u16(unsuback.packet_id.get());
    if !version.is_v5() {
        return;
    }
    properties::section(&unsuback.properties, sink);
    if unsuback.reasons.is_empty() {
        sink.reject("UNSUBACK without a reason code");
    }
    for reason in &unsuback.reasons {
        sink.u8(reason.0);
    }
}

/// The subscription options byte (section 3.8.3.1); the requested QoS alone for 3.x.
fn options_byte(options: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let qos = options.qos.as_u8();
    if !version.is_v5() {
        return qos;
    }
    qos | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}
