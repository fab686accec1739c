//! The malformed-packet table: one case (or a few) per class of `midge_codec::DecodeError`
//! (`Malformed`, `Protocol`, `PacketTooLarge`, `UnsupportedProtocol`, `TopicName`,
//! `TopicFilter`, `String`), as the first packet (the CONNECT phase, `conn/connect.rs`) and
//! after a successful CONNECT (the connected phase, `conn/driver.rs`), each with what the
//! attacker must see in each protocol version.
//!
//! The rules: after CONNECT, a 5.0 client is sent DISCONNECT with the error's reason code and
//! the connection is closed (MQTT-4.13.1-1; the DISCONNECT is a SHOULD in section 4.13, and
//! Midge sends it); a 3.x client's connection is closed with nothing sent (MQTT-4.8.0-1 in
//! 3.1.1, which has no DISCONNECT from the server). A CONNECT that does not match the format is
//! answered with a close (MQTT-3.1.4-1): without a CONNACK in 3.x, and in 5.0 optionally after
//! a CONNACK with the reason code, which, if sent, must be the one named. An unsupported
//! protocol level is refused with a CONNACK (MQTT-3.1.2-2).
//!
//! Topics the attacks name all lie under `hostile/`, so a watcher subscribed to `hostile/#`
//! can show that no part of a rejected packet was routed.

use crate::conformance_wire::build::{self, frame, put_bin, put_str, put_var};
use crate::conformance_wire::{prop, Client, Connect, Props, Publish, Subscribe, Version, Will};
use crate::harness::{unique, PATIENCE};
use crate::support::TestBroker;

/// When the bad packet is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// As the first packet, in place of a valid CONNECT.
    Connect,
    /// After a successful CONNECT and CONNACK.
    Connected,
}

/// What the attacker must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A 5.0 DISCONNECT with this reason code, then the close.
    Disconnect(u8),
    /// A CONNACK with this return or reason code, then the close.
    Connack(u8),
    /// The close, with a CONNACK first that, if sent, carries this reason code (5.0, MQTT-3.1.4-1:
    /// the CONNACK is a MAY).
    CloseOrConnack(u8),
    /// The close, nothing sent first.
    Close,
}

/// One attack of the table.
pub struct Case {
    /// Names the case in failures.
    pub name: &'static str,
    /// The `DecodeError` variant it provokes (or the rule, for a case the decoder passes).
    pub class: &'static str,
    /// The normative statement (or section) it holds the broker to.
    pub spec: &'static str,
    /// When the attacker sends it.
    pub phase: Phase,
    /// The versions it applies to.
    pub versions: &'static [Version],
    /// The bytes the attacker sends (a CONNECT first, for [`Phase::Connected`], is not part
    /// of them).
    pub packet: fn(Version) -> Vec<u8>,
    /// What the attacker must see, by version.
    pub expect: fn(Version) -> Expect,
}

const ALL: &[Version] = &[Version::V3_1, Version::V3_1_1, Version::V5];
const V5_ONLY: &[Version] = &[Version::V5];

/// After CONNECT: DISCONNECT `code` for 5.0, a bare close for 3.x.
fn disconnect_or_close(v: Version, code: u8) -> Expect {
    if v == Version::V5 {
        Expect::Disconnect(code)
    } else {
        Expect::Close
    }
}

/// A bad CONNECT: for 5.0 a close, optionally after CONNACK `code`; for 3.x a bare close
/// (MQTT-3.1.4-1 in 3.1.1: "without sending a CONNACK").
fn refused_connect(v: Version, code: u8) -> Expect {
    if v == Version::V5 {
        Expect::CloseOrConnack(code)
    } else {
        Expect::Close
    }
}

/// The protocol name and level of a version's CONNECT.
fn protocol(v: Version) -> (&'static str, u8) {
    match v {
        Version::V3_1 => ("MQIsdp", 3),
        Version::V3_1_1 => ("MQTT", 4),
        Version::V5 => ("MQTT", 5),
    }
}

/// A CONNECT with a clean session, keep alive 60 s and this client id given as raw bytes.
fn connect_with_raw_id(v: Version, client_id: &[u8]) -> Vec<u8> {
    let (name, level) = protocol(v);
    let mut body = Vec::new();
    put_str(&mut body, name);
    body.extend_from_slice(&[level, 0x02, 0, 60]);
    if v == Version::V5 {
        Props::new().encode(&mut body);
    }
    put_bin(&mut body, client_id);
    frame(0x10, &body)
}

/// A QoS 0 PUBLISH whose topic is these raw bytes.
fn publish_with_raw_topic(v: Version, topic: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_bin(&mut body, topic);
    if v == Version::V5 {
        Props::new().encode(&mut body);
    }
    body.extend_from_slice(b"payload");
    frame(0x30, &body)
}

/// The fixed header of a packet of type `first_byte` announcing 2,000 bytes, more than the
/// table's `max_packet_size` of 1,024, and the first few bytes of its body, but not the rest:
/// the broker must judge the size from the header (`DecodeError::PacketTooLarge` is detected
/// before the body is read), and the attacker leaves no unread bytes behind that would turn the
/// close into a reset.
fn oversized_header(first_byte: u8) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_var(&mut out, 2000);
    out.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T']);
    out
}

/// The table. The broker it runs against has `max_packet_size = 1024`.
pub const CASES: &[Case] = &[
    // ---- the CONNECT phase: the first packet ----
    Case {
        name: "connect_reserved_flag",
        class: "Malformed",
        spec: "MQTT-3.1.2-3",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| {
            let mut connect = Connect::new(v, "hostile-reserved");
            connect.extra_flags = 0x01;
            connect.encode()
        },
        expect: |v| refused_connect(v, 0x81),
    },
    Case {
        name: "connect_truncated_after_level",
        class: "Malformed",
        spec: "MQTT-3.1.4-1",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| {
            let (name, level) = protocol(v);
            let mut body = Vec::new();
            put_str(&mut body, name);
            body.push(level);
            frame(0x10, &body)
        },
        expect: |v| refused_connect(v, 0x81),
    },
    Case {
        name: "connect_property_not_allowed",
        class: "Protocol",
        spec: "MQTT-3.1.4-1, section 2.2.2.2 (Topic Alias is not a CONNECT property)",
        phase: Phase::Connect,
        versions: V5_ONLY,
        packet: |v| Connect::new(v, "hostile-alias").props(Props::new().two(prop::TOPIC_ALIAS, 1)).encode(),
        expect: |v| refused_connect(v, 0x82),
    },
    Case {
        name: "connect_too_large",
        class: "PacketTooLarge",
        spec: "MQTT-3.1.4-1, section 3.2.2.3.6",
        phase: Phase::Connect,
        versions: ALL,
        packet: |_| oversized_header(0x10),
        expect: |v| refused_connect(v, 0x95),
    },
    Case {
        name: "connect_unsupported_level",
        class: "UnsupportedProtocol (known name)",
        spec: "MQTT-3.1.2-2",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| {
            let mut connect = Connect::new(v, "hostile-level");
            // A level next to the version's own, under its own protocol name: "MQIsdp" 4,
            // "MQTT" 3 and "MQTT" 6 are no protocol.
            connect.level = match v {
                Version::V3_1 => 4,
                Version::V3_1_1 => 3,
                Version::V5 => 6,
            };
            connect.encode()
        },
        // 3.1.1: return code 0x01 (MQTT-3.1.2-2); 5.0: 0x84, which MQTT-3.1.2-2 allows; 3.1's
        // return code 1 means the same.
        expect: |v| Expect::Connack(if v == Version::V5 { 0x84 } else { 0x01 }),
    },
    Case {
        name: "connect_unknown_protocol_name",
        class: "UnsupportedProtocol (unknown name)",
        spec: "MQTT-3.1.2-1",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| {
            let mut connect = Connect::new(v, "hostile-name");
            connect.protocol_name = "MQTX".into();
            connect.encode()
        },
        expect: |v| refused_connect(v, 0x84),
    },
    Case {
        name: "connect_will_topic_wildcard",
        class: "TopicName",
        spec: "MQTT-3.1.4-1; MQTT-4.7.0-1 (5.0), MQTT-4.7.1-1 (3.1.1): no wildcard in a topic name",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| Connect::new(v, "hostile-will").will(Will::new("hostile/will/#", b"x")).encode(),
        expect: |v| refused_connect(v, 0x90),
    },
    Case {
        name: "connect_client_id_invalid_utf8",
        class: "String",
        spec: "MQTT-1.5.4-1 and MQTT-3.1.3-4 (5.0), MQTT-1.5.3-1 (3.1.1)",
        phase: Phase::Connect,
        versions: ALL,
        packet: |v| connect_with_raw_id(v, &[b'h', 0xC3, 0x28]),
        expect: |v| refused_connect(v, 0x81),
    },
    Case {
        name: "first_packet_not_connect",
        class: "(not CONNECT)",
        spec: "MQTT-3.1.0-1",
        phase: Phase::Connect,
        versions: ALL,
        packet: |_| build::pingreq(),
        expect: |_| Expect::Close,
    },
    // ---- the connected phase ----
    Case {
        name: "remaining_length_five_bytes",
        class: "Malformed",
        spec: "section 1.5.5 (5.0), 2.2.3 (3.1.1): at most four bytes; MQTT-4.13.1-1, MQTT-4.8.0-1",
        phase: Phase::Connected,
        versions: ALL,
        packet: |_| vec![0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        expect: |v| disconnect_or_close(v, 0x81),
    },
    Case {
        name: "pingreq_reserved_flags",
        class: "Malformed",
        spec: "MQTT-2.1.3-1 (5.0), MQTT-2.2.2-2 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |_| vec![0xC1, 0x00],
        expect: |v| disconnect_or_close(v, 0x81),
    },
    Case {
        name: "publish_qos_3",
        class: "Malformed",
        spec: "MQTT-3.3.1-4",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| Publish::new("hostile/qos3", b"x", 3).id(1).encode(v),
        expect: |v| disconnect_or_close(v, 0x81),
    },
    Case {
        name: "subscribe_filter_overruns_packet",
        class: "Malformed",
        spec: "section 1.5.4 (5.0), 1.5.3 (3.1.1): a length-prefixed string; MQTT-4.13.1-1, MQTT-4.8.0-1",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| {
            let mut body = 1u16.to_be_bytes().to_vec();
            if v == Version::V5 {
                Props::new().encode(&mut body);
            }
            // A filter announced as 100 bytes, with 9 left in the packet.
            body.extend_from_slice(&[0, 100]);
            body.extend_from_slice(b"hostile/o");
            frame(0x82, &body)
        },
        expect: |v| disconnect_or_close(v, 0x81),
    },
    Case {
        name: "publish_packet_id_0",
        class: "Protocol",
        spec: "MQTT-2.2.1-3 (5.0), MQTT-2.3.1-1 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| Publish::new("hostile/id0", b"x", 1).id(0).encode(v),
        expect: |v| disconnect_or_close(v, 0x82),
    },
    Case {
        name: "subscribe_without_filter",
        class: "Protocol",
        spec: "MQTT-3.8.3-2 (5.0), MQTT-3.8.3-3 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| Subscribe::new(1, &[]).encode(v),
        expect: |v| disconnect_or_close(v, 0x82),
    },
    Case {
        name: "publish_property_twice",
        class: "Protocol",
        spec: "section 3.3.2.3.2: a Payload Format Indicator more than once is a Protocol Error",
        phase: Phase::Connected,
        versions: V5_ONLY,
        packet: |v| {
            let props = Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 0).byte(prop::PAYLOAD_FORMAT_INDICATOR, 0);
            Publish::new("hostile/twice", b"x", 0).props(props).encode(v)
        },
        expect: |v| disconnect_or_close(v, 0x82),
    },
    Case {
        name: "publish_over_max_packet_size",
        class: "PacketTooLarge",
        spec: "MQTT-3.2.2-15 and section 3.2.2.3.6 (5.0: DISCONNECT 0x95)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |_| oversized_header(0x30),
        expect: |v| disconnect_or_close(v, 0x95),
    },
    Case {
        name: "publish_topic_wildcard",
        class: "TopicName",
        spec: "MQTT-3.3.2-2",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| Publish::new("hostile/+", b"x", 0).encode(v),
        expect: |v| disconnect_or_close(v, 0x90),
    },
    Case {
        name: "subscribe_hash_not_last",
        class: "TopicFilter",
        spec: "MQTT-4.7.1-1 (5.0), MQTT-4.7.1-2 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| Subscribe::new(1, &[("hostile/#/x", 0)]).encode(v),
        expect: |v| disconnect_or_close(v, 0x8F),
    },
    Case {
        name: "publish_topic_invalid_utf8",
        class: "String",
        spec: "MQTT-1.5.4-1 (5.0), MQTT-1.5.3-1 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| publish_with_raw_topic(v, b"hostile/\xC3\x28"),
        expect: |v| disconnect_or_close(v, 0x81),
    },
    Case {
        name: "publish_topic_null_character",
        class: "String",
        spec: "MQTT-1.5.4-2 (5.0), MQTT-1.5.3-2 (3.1.1)",
        phase: Phase::Connected,
        versions: ALL,
        packet: |v| publish_with_raw_topic(v, b"hostile/\x00"),
        expect: |v| disconnect_or_close(v, 0x81),
    },
];

/// Runs one case on a new connection and checks what the attacker sees. `strict` turns an
/// optional CONNACK ([`Expect::CloseOrConnack`]) into a required one.
pub fn run_case(broker: &TestBroker, version: Version, case: &Case, strict: bool) {
    let mut client = match case.phase {
        Phase::Connect => Client::open(broker, version),
        Phase::Connected => Client::new(broker, version, &unique(&format!("hostile-{}", case.name))),
    };
    // Lenient: a broker that closes at once may have closed before the last byte.
    client.send_lenient(&(case.packet)(version));
    let expect = match (case.expect)(version) {
        Expect::CloseOrConnack(code) if strict => Expect::Connack(code),
        expect => expect,
    };
    match expect {
        Expect::Disconnect(code) => match client.expect_closed(PATIENCE) {
            Some(disconnect) => assert_eq!(disconnect.reason, code, "DISCONNECT reason code: {disconnect:?}"),
            None => panic!("closed without the DISCONNECT {code:#04x}"),
        },
        // A 3.x client parses a DISCONNECT from the server as an error, so this also checks
        // that none is sent.
        Expect::Close => assert_eq!(client.expect_closed(PATIENCE), None, "closed after a DISCONNECT"),
        Expect::Connack(code) => assert_eq!(client.expect_refused(|c| c == code), Some(code)),
        Expect::CloseOrConnack(code) => {
            client.expect_refused(|c| c == code);
        }
    }
}
