//! Encoding properties: identifier/value pairs in identifier order, and the length-prefixed
//! section that packets carry.

use crate::properties::table::id;
use crate::properties::Properties;
use crate::sink::{Counter, Sink};
use crate::varint;

/// Writes the length prefix and then the properties: the section every v5 packet carries.
pub(crate) fn section<S: Sink>(properties: &Properties, sink: &mut S) {
    let len = Counter::measure(|counter| pairs(properties, counter)).len;
    sink.varint(len);
    pairs(properties, sink);
}

/// Writes each property that is set, in identifier order, without a length prefix.
///
/// A value the wire cannot carry (Binary Data over 65,535 bytes, a Subscription Identifier of
/// 0 or above 268,435,455) is rejected through the sink and not written, so the bytes stay a
/// well-formed section either way.
pub(crate) fn pairs<S: Sink>(p: &Properties, sink: &mut S) {
    if let Some(value) = p.payload_format_indicator {
        byte(sink, id::PAYLOAD_FORMAT_INDICATOR, value);
    }
    if let Some(value) = p.message_expiry_interval {
        four(sink, id::MESSAGE_EXPIRY_INTERVAL, value);
    }
    if let Some(value) = &p.content_type {
        binary(sink, id::CONTENT_TYPE, value.as_bytes());
    }
    if let Some(value) = &p.response_topic {
        binary(sink, id::RESPONSE_TOPIC, value.as_mqtt_string().as_bytes());
    }
    if let Some(value) = &p.correlation_data {
        binary(sink, id::CORRELATION_DATA, value);
    }
    for &value in &p.subscription_identifiers {
        subscription_identifier(sink, value);
    }
    if let Some(value) = p.session_expiry_interval {
        four(sink, id::SESSION_EXPIRY_INTERVAL, value);
    }
    if let Some(value) = &p.assigned_client_identifier {
        binary(sink, id::ASSIGNED_CLIENT_IDENTIFIER, value.as_bytes());
    }
    if let Some(value) = p.server_keep_alive {
        two(sink, id::SERVER_KEEP_ALIVE, value);
    }
    if let Some(value) = &p.authentication_method {
        binary(sink, id::AUTHENTICATION_METHOD, value.as_bytes());
    }
    if let Some(value) = &p.authentication_data {
        binary(sink, id::AUTHENTICATION_DATA, value);
    }
    if let Some(value) = p.request_problem_information {
        byte(sink, id::REQUEST_PROBLEM_INFORMATION, value);
    }
    if let Some(value) = p.will_delay_interval {
        four(sink, id::WILL_DELAY_INTERVAL, value);
    }
    if let Some(value) = p.request_response_information {
        byte(sink, id::REQUEST_RESPONSE_INFORMATION, value);
    }
    if let Some(value) = &p.response_information {
        binary(sink, id::RESPONSE_INFORMATION, value.as_bytes());
    }
    if let Some(value) = &p.server_reference {
        binary(sink, id::SERVER_REFERENCE, value.as_bytes());
    }
    if let Some(value) = &p.reason_string {
        binary(sink, id::REASON_STRING, value.as_bytes());
    }
    if let Some(value) = p.receive_maximum {
        two(sink, id::RECEIVE_MAXIMUM, value);
    }
    if let Some(value) = p.topic_alias_maximum {
        two(sink, id::TOPIC_ALIAS_MAXIMUM, value);
    }
    if let Some(value) = p.topic_alias {
        two(sink, id::TOPIC_ALIAS, value);
    }
    if let Some(value) = p.maximum_qos {
        byte(sink, id::MAXIMUM_QOS, value.as_u8());
    }
    if let Some(value) = p.retain_available {
        byte(sink, id::RETAIN_AVAILABLE, u8::from(value));
    }
    for (name, value) in &p.user_properties {
        sink.varint(id::USER_PROPERTY as usize);
        sink.binary(name.as_bytes());
        sink.binary(value.as_bytes());
    }
    if let Some(value) = p.maximum_packet_size {
        four(sink, id::MAXIMUM_PACKET_SIZE, value);
    }
    if let Some(value) = p.wildcard_subscription_available {
        byte(sink, id::WILDCARD_SUBSCRIPTION_AVAILABLE, u8::from(value));
    }
    if let Some(value) = p.subscription_identifier_available {
        byte(sink, id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, u8::from(value));
    }
    if let Some(value) = p.shared_subscription_available {
        byte(sink, id::SHARED_SUBSCRIPTION_AVAILABLE, u8::from(value));
    }
}

/// One Subscription Identifier property (0x0B, a Variable Byte Integer). Also used by the
/// fan-out PUBLISH encoder, which adds each receiver's identifiers to shared properties.
pub(crate) fn subscription_identifier<S: Sink>(sink: &mut S, value: u32) {
    if value == 0 || value as usize > varint::MAX {
        sink.reject("subscription identifier outside 1..=268,435,455");
        return;
    }
    sink.varint(id::SUBSCRIPTION_IDENTIFIER as usize);
    sink.varint(value as usize);
}

// Every identifier is below 128, so its Variable Byte Integer is the single byte written here.

pub(crate) fn byte<S: Sink>(sink: &mut S, identifier: u32, value: u8) {
    sink.varint(identifier as usize);
    sink.u8(value);
}

pub(crate) fn two<S: Sink>(sink: &mut S, identifier: u32, value: u16) {
    sink.varint(identifier as usize);
    sink.u16(value);
}

pub(crate) fn four<S: Sink>(sink: &mut S, identifier: u32, value: u32) {
    sink.varint(identifier as usize);
    sink.u32(value);
}

fn binary<S: Sink>(sink: &mut S, identifier: u32, value: &[u8]) {
    if value.len() > usize::from(u16::MAX) {
        sink.reject("property value longer than 65,535 bytes");
        return;
    }
    sink.varint(identifier as usize);
    sink.binary(value);
}
