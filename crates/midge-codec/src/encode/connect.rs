//! CONNECT and CONNACK.

use crate::encode::connack_return_code;
use crate::packet::{ConnAck, Connect};
use crate::properties;
use crate::sink::Sink;
use crate::types::ProtocolVersion;

/// CONNECT for `version`, which decides protocol name and level (not `connect.protocol`).
pub(super) fn connect<S: Sink>(connect: &Connect, version: ProtocolVersion, sink: &mut S) {
    let name: &[u8] = match version {
        ProtocolVersion::V31 => b"MQIsdp",
        ProtocolVersion::V311 | ProtocolVersion::V5 => b"MQTT",
    };
    sink.binary(name);
    let bridge = if connect.bridge && !version.is_v5() { 0x80 } else { 0 };
    sink.u8(version.level() | bridge);

    let mut flags = 0u8;
    if connect.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &connect.will {
        flags |= 0x04 | will.qos.as_u8() << 3;
        if will.retain {
            flags |= 0x20;
        }
    }
    if connect.password.is_some() {
        flags |= 0x40;
        // MQTT-3.1.2-22 (3.1.1): the peer would reject it.
        if connect.username.is_none() && !version.is_v5() {
            sink.reject("a 3.x CONNECT with a password needs a user name");
        }
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    sink.u8(flags);
    sink.u16(connect.keep_alive);
    if version.is_v5() {
        properties::section(&connect.properties, sink);
    }

    sink.binary(connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if version.is_v5() {
            properties::section(&will.properties, sink);
        }
        sink.binary(will.topic.as_bytes());
        sink.binary(&will.payload);
    }
    if let Some(username) = &connect.username {
        sink.binary(username.as_bytes());
    }
    if let Some(password) = &connect.password {
        sink.binary(password);
    }
}

/// CONNACK. 3.1 has no Session Present (the byte is reserved), so it is written as 0.
pub(super) fn connack<S: Sink>(connack: &ConnAck, version: ProtocolVersion, sink: &mut S) {
    let session_present = version != ProtocolVersion::V31 && connack.session_present;
    sink.u8(u8::from(session_present));
    if version.is_v5() {
        sink.u8(connack.reason.0);
        properties::section(&connack.properties, sink);
    } else {
        sink.u8(connack_return_code(connack.reason));
    }
}
