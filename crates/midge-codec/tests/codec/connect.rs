//! CONNECT and CONNACK.

use bytes::Bytes;
use midge_codec::{
    connack_return_code, ConnAck, Connect, DecodeError, InvalidValue, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode, Will,
};

use crate::support::{
    assert_malformed, assert_protocol, assert_wire, bytes, decode, decode_err, encode, frame, s, str16, topic, ALL, V3,
};

/// The protocol name and level `version` announces.
fn name_and_level(version: ProtocolVersion) -> (&'static [u8], u8) {
    match version {
        ProtocolVersion::V31 => (b"MQIsdp", 3),
        ProtocolVersion::V311 => (b"MQTT", 4),
        ProtocolVersion::V5 => (b"MQTT", 5),
    }
}

/// An empty property section for v5, nothing for 3.x.
fn no_properties(version: ProtocolVersion) -> Vec<u8> {
    if version.is_v5() {
        vec![0x00]
    } else {
        Vec::new()
    }
}

/// A CONNECT for `version` with connect `flags`, keep alive 10, and `payload` after the
/// (empty, for v5) CONNECT properties.
fn connect_with(version: ProtocolVersion, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (name, level) = name_and_level(version);
    let body = [str16(name), vec![level, flags, 0x00, 0x0A], no_properties(version), payload.to_vec()];
    frame(0x10, &body.concat())
}

/// The CONNECT of the 3.1.1 example (figure 3.6: flags CE, keep alive 10) with a payload.
fn spec_connect(version: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 10,
        client_id: s("cid"),
        will: Some(Will {
            topic: topic("w/t"),
            payload: bytes(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some(s("user")),
        password: Some(bytes(b"pw")),
        properties: Properties::default(),
        bridge: false,
    }))
}

const SPEC_PAYLOAD: [u8; 25] = [
    0x00, 0x03, b'c', b'i', b'd', // client identifier
    0x00, 0x03, b'w', b'/', b't', // will topic
    0x00, 0x03, b'b', b'y', b'e', // will payload
    0x00, 0x04, b'u', b's', b'e', b'r', // user name
    0x00, 0x02, b'p', b'w', // password
];

#[test]
fn connect_v311_spec_example() {
    let mut bytes = vec![
        0x10, 0x23, // CONNECT, remaining length 35
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // protocol name and level
        0xCE, // user name, password, will QoS 1, will, clean session
        0x00, 0x0A, // keep alive 10
    ];
    bytes.extend_from_slice(&SPEC_PAYLOAD);
    assert_wire(&bytes, &spec_connect(ProtocolVersion::V311), ProtocolVersion::V311);
}

#[test]
fn connect_v31_spec_example() {
    let mut bytes = vec![
        0x10, 0x25, // CONNECT, remaining length 37
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, // protocol name and level
        0xCE, 0x00, 0x0A,
    ];
    bytes.extend_from_slice(&SPEC_PAYLOAD);
    assert_wire(&bytes, &spec_connect(ProtocolVersion::V31), ProtocolVersion::V31);
}

/// The 5.0 example of section 3.1.2.11 (session expiry interval 10), with a will delay.
#[test]
fn connect_v5_spec_example() {
    let bytes = [
        0x10, 0x2F, // CONNECT, remaining length 47
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A, //
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties: session expiry interval 10
        0x00, 0x03, b'c', b'i', b'd', //
        0x05, 0x18, 0x00, 0x00, 0x00, 0x1E, // will properties: will delay interval 30
        0x00, 0x03, b'w', b'/', b't', //
        0x00, 0x03, b'b', b'y', b'e', //
        0x00, 0x04, b'u', b's', b'e', b'r', //
        0x00, 0x02, b'p', b'w',
    ];
    let Packet::Connect(mut connect) = spec_connect(ProtocolVersion::V5) else { unreachable!() };
    connect.properties.session_expiry_interval = Some(10);
    if let Some(will) = &mut connect.will {
        will.properties.will_delay_interval = Some(30);
    }
    assert_wire(&bytes, &Packet::Connect(connect), ProtocolVersion::V5);
}

#[test]
fn connect_minimal() {
    // Clean session, keep alive 60, empty client identifier.
    let bytes = [0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00];
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: s(""),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    };
    assert_wire(&bytes, &Packet::Connect(Box::new(connect)), ProtocolVersion::V311);
}

#[test]
fn connect_decodes_the_version_it_announces() {
    for announced in ALL {
        let bytes = encode(&spec_connect(announced), announced);
        for connection in ALL {
            assert_eq!(decode(&bytes, connection), Ok(spec_connect(announced)));
        }
    }
}

#[test]
fn encoder_writes_name_and_level_of_the_version() {
    for version in ALL {
        let bytes = encode(&spec_connect(version), version);
        let (name, level) = name_and_level(version);
        assert_eq!(&bytes[2..2 + 2 + name.len()], &str16(name)[..]);
        assert_eq!(bytes[4 + name.len()], level);
    }
}

/// MQTT-3.1.2-1 (3.1.1): another protocol name; the server closes without CONNACK.
#[test]
fn unknown_protocol_name_mqtt_3_1_2_1() {
    let bytes = frame(0x10, &[str16(b"MQTX"), vec![0x04, 0x02, 0x00, 0x0A], str16(b"")].concat());
    assert_eq!(
        decode_err(&bytes, ProtocolVersion::V311),
        DecodeError::UnsupportedProtocol { name: "MQTX".into(), level: 4, known_name: false }
    );
    let bytes = frame(0x10, &[str16(b"\xFF"), vec![0x04, 0x02, 0x00, 0x0A]].concat());
    assert!(matches!(
        decode_err(&bytes, ProtocolVersion::V311),
        DecodeError::UnsupportedProtocol { known_name: false, .. }
    ));
}

/// MQTT-3.1.2-2 (3.1.1): a known name with an unsupported level is answered with CONNACK
/// "unacceptable protocol version"; MQTT and MQIsdp each go with their own levels only.
#[test]
fn unsupported_level_mqtt_3_1_2_2() {
    // 0x84 (3.1.1 with the top bit, mosquitto's bridges) is a bridge's level, accepted:
    // `bridge_protocol_levels_of_mosquitto`; the top bit on another level is not.
    for (name, level) in
        [(&b"MQTT"[..], 3), (b"MQTT", 6), (b"MQTT", 0x86), (b"MQIsdp", 4), (b"MQIsdp", 0x84), (b"MQIsdp", 5)]
    {
        let bytes = frame(0x10, &[str16(name), vec![level, 0x02, 0x00, 0x0A, 0x00, 0x00]].concat());
        assert_eq!(
            decode_err(&bytes, ProtocolVersion::V311),
            DecodeError::UnsupportedProtocol {
                name: String::from_utf8_lossy(name).into_owned(),
                level,
                known_name: true,
            }
        );
    }
}

/// MQTT-3.1.2-3: the reserved connect flag is 0.
#[test]
fn reserved_connect_flag_mqtt_3_1_2_3() {
    for version in ALL {
        assert!(decode(&connect_with(version, 0x02, &str16(b"c")), version).is_ok());
        assert_malformed(&connect_with(version, 0x03, &str16(b"c")), version);
    }
}

/// MQTT-3.1.2-14 (3.1.1), MQTT-3.1.2-12 (5.0): Will QoS 3 is malformed.
#[test]
fn will_qos_3_mqtt_3_1_2_14() {
    for version in ALL {
        let mut payload = str16(b"c");
        if version.is_v5() {
            payload.push(0x00);
        }
        payload.extend([str16(b"w"), str16(b"m")].concat());
        assert!(decode(&connect_with(version, 0x16, &payload), version).is_ok(), "will QoS 2");
        assert_malformed(&connect_with(version, 0x1E, &payload), version);
    }
}

/// MQTT-3.1.2-13 (3.1.1), MQTT-3.1.2-11 (5.0): without the will flag, Will QoS is 0.
#[test]
fn will_qos_without_will_mqtt_3_1_2_13() {
    for version in ALL {
        assert_malformed(&connect_with(version, 0x0A, &str16(b"c")), version);
        assert_malformed(&connect_with(version, 0x12, &str16(b"c")), version);
    }
}

/// MQTT-3.1.2-15 (3.1.1), MQTT-3.1.2-13 (5.0): without the will flag, Will Retain is 0.
#[test]
fn will_retain_without_will_mqtt_3_1_2_15() {
    for version in ALL {
        assert_malformed(&connect_with(version, 0x22, &str16(b"c")), version);
    }
}

/// MQTT-3.1.2-22 (3.1.1): no password without a user name; 3.1 has the same rule, 5.0
/// allows it (section 3.1.2.9).
#[test]
fn password_without_user_name_mqtt_3_1_2_22() {
    for version in ALL {
        let bytes = connect_with(version, 0x42, &[str16(b"c"), str16(b"pw")].concat());
        if version.is_v5() {
            let Ok(Packet::Connect(connect)) = decode(&bytes, version) else { panic!() };
            assert_eq!((&connect.username, &connect.password), (&None, &Some(Bytes::from_static(b"pw"))));
            assert_eq!(encode(&Packet::Connect(connect), version), bytes);
        } else {
            assert_malformed(&bytes, version);
        }
    }
}

#[test]
fn encoder_refuses_a_3x_password_without_user_name() {
    let Packet::Connect(mut connect) = spec_connect(ProtocolVersion::V311) else { unreachable!() };
    connect.username = None;
    let packet = Packet::Connect(connect);
    for version in V3 {
        let mut out = bytes::BytesMut::new();
        assert!(midge_codec::encode_packet(&packet, version, &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(midge_codec::encoded_len(&packet, version), 0);
    }
}

/// MQTT-1.5.4-1, MQTT-1.5.4-2: the client identifier is valid UTF-8 without U+0000.
#[test]
fn client_identifier_is_an_mqtt_string_mqtt_1_5_4_1_and_2() {
    for version in ALL {
        let bytes = connect_with(version, 0x02, &str16(b"\xC3\x28"));
        assert_eq!(decode_err(&bytes, version), DecodeError::String(InvalidValue::InvalidUtf8));
        let bytes = connect_with(version, 0x02, &str16(b"a\0b"));
        assert_eq!(decode_err(&bytes, version), DecodeError::String(InvalidValue::NullCharacter));
    }
}

/// MQTT-3.1.3-11 (3.1.1), MQTT-3.3.2-2: the will topic is a topic name without wildcards.
#[test]
fn will_topic_is_a_topic_name() {
    for version in ALL {
        let mut payload = str16(b"c");
        if version.is_v5() {
            payload.push(0x00);
        }
        payload.extend([str16(b"w/#"), str16(b"m")].concat());
        assert_eq!(
            decode_err(&connect_with(version, 0x06, &payload), version),
            DecodeError::TopicName(InvalidValue::WildcardInTopicName)
        );
    }
}

#[test]
fn connect_lengths_that_overrun_or_leave_bytes_are_malformed() {
    for version in ALL {
        // Client identifier announces 5 bytes, 3 follow.
        assert_malformed(&connect_with(version, 0x02, &[0x00, 0x05, b'a', b'b', b'c']), version);
        // User name flag set, user name missing.
        assert_malformed(&connect_with(version, 0x82, &str16(b"c")), version);
        // A byte after the payload.
        assert_malformed(&connect_with(version, 0x02, &[str16(b"c"), vec![0x00]].concat()), version);
        // Truncated variable header.
        let (name, level) = name_and_level(version);
        assert_malformed(&frame(0x10, &[str16(name), vec![level, 0x02, 0x00]].concat()), version);
    }
}

#[test]
fn connack_spec_bytes() {
    let accepted = |session_present| Packet::ConnAck(ConnAck { session_present, ..ConnAck::default() });
    assert_wire(&[0x20, 0x02, 0x00, 0x00], &accepted(false), ProtocolVersion::V31);
    assert_wire(&[0x20, 0x02, 0x00, 0x00], &accepted(false), ProtocolVersion::V311);
    assert_wire(&[0x20, 0x02, 0x01, 0x00], &accepted(true), ProtocolVersion::V311);
    assert_wire(&[0x20, 0x03, 0x01, 0x00, 0x00], &accepted(true), ProtocolVersion::V5);
    let with_properties = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: Properties {
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            ..Properties::default()
        },
    });
    let bytes = [
        0x20, 0x0A, 0x00, 0x00, 0x07, // flags, reason, property length 7
        0x21, 0x00, 0x0A, // receive maximum 10
        0x24, 0x01, // maximum QoS 1
        0x25, 0x00, // retain not available
    ];
    assert_wire(&bytes, &with_properties, ProtocolVersion::V5);
    let refused = Packet::ConnAck(ConnAck { reason: ReasonCode::BANNED, ..ConnAck::default() });
    assert_wire(&[0x20, 0x03, 0x00, 0x8A, 0x00], &refused, ProtocolVersion::V5);
}

/// 3.1.1 table 3.1: return codes 0-5 decode to their v5 equivalents and encode back.
#[test]
fn connack_3x_return_codes_map_to_v5() {
    let table = [
        (0, ReasonCode::SUCCESS),
        (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        (3, ReasonCode::SERVER_UNAVAILABLE),
        (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (5, ReasonCode::NOT_AUTHORIZED),
    ];
    for version in V3 {
        for (code, reason) in table {
            let packet = Packet::ConnAck(ConnAck { reason, ..ConnAck::default() });
            assert_wire(&[0x20, 0x02, 0x00, code], &packet, version);
        }
        for code in 6..=255 {
            assert_protocol(&[0x20, 0x02, 0x00, code], version);
        }
    }
}

#[test]
fn connack_v5_failures_without_3x_code_become_server_unavailable() {
    for reason in [
        ReasonCode::UNSPECIFIED_ERROR,
        ReasonCode::MALFORMED_PACKET,
        ReasonCode::SERVER_BUSY,
        ReasonCode::BANNED,
        ReasonCode::QUOTA_EXCEEDED,
        ReasonCode::SERVER_UNAVAILABLE,
    ] {
        assert_eq!(connack_return_code(reason), 3, "{reason}");
        let packet = Packet::ConnAck(ConnAck { reason, ..ConnAck::default() });
        assert_eq!(encode(&packet, ProtocolVersion::V311), [0x20, 0x02, 0x00, 0x03]);
    }
    assert_eq!(connack_return_code(ReasonCode::SUCCESS), 0);
}

/// MQTT-3.2.2-1 (3.1.1 and 5.0): bits 7-1 of the acknowledge flags are reserved. 3.1 reserves
/// the whole byte and has no Session Present.
#[test]
fn connack_reserved_flags_mqtt_3_2_2_1() {
    assert_malformed(&[0x20, 0x02, 0x02, 0x00], ProtocolVersion::V311);
    assert_malformed(&[0x20, 0x03, 0x80, 0x00, 0x00], ProtocolVersion::V5);
    let v31 = decode(&[0x20, 0x02, 0x01, 0x00], ProtocolVersion::V31).unwrap();
    assert_eq!(v31, Packet::ConnAck(ConnAck::default()));
    let present = Packet::ConnAck(ConnAck { session_present: true, ..ConnAck::default() });
    assert_eq!(encode(&present, ProtocolVersion::V31), [0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn connack_lengths_are_exact() {
    for version in V3 {
        assert_malformed(&[0x20, 0x01, 0x00], version);
        assert_malformed(&[0x20, 0x03, 0x00, 0x00, 0x00], version);
    }
    // v5 always has a property length.
    assert_malformed(&[0x20, 0x02, 0x00, 0x00], ProtocolVersion::V5);
    assert_malformed(&[0x20, 0x04, 0x00, 0x00, 0x00, 0x00], ProtocolVersion::V5);
}

#[test]
fn connect_binary_over_65535_bytes_is_unencodable() {
    let Packet::Connect(mut connect) = spec_connect(ProtocolVersion::V5) else { unreachable!() };
    connect.password = Some(Bytes::from(vec![0u8; 65_536]));
    let packet = Packet::Connect(connect);
    let mut out = bytes::BytesMut::new();
    assert!(matches!(
        midge_codec::encode_packet(&packet, ProtocolVersion::V5, &mut out),
        Err(midge_codec::EncodeError::Unencodable(_))
    ));
    assert!(out.is_empty());
}

/// mosquitto's bridges (`try_private`) send the protocol level with its top bit set: 0x83 for
/// 3.1, 0x84 for 3.1.1. Decoded as the version with `bridge`, and encoded back the same way;
/// v5 has no such level (0x85 is refused).
#[test]
fn bridge_protocol_levels_of_mosquitto() {
    for (version, level) in [(ProtocolVersion::V31, 0x83u8), (ProtocolVersion::V311, 0x84)] {
        let (name, _) = name_and_level(version);
        let wire = frame(0x10, &[str16(name), vec![level, 0x02, 0x00, 0x0A], str16(b"b")].concat());
        let Packet::Connect(connect) = decode(&wire, version).unwrap() else { panic!("not CONNECT") };
        assert!(connect.bridge && connect.protocol == version);
        assert_eq!(encode(&Packet::Connect(connect.clone()), version), wire);
        let mut plain = connect;
        plain.bridge = false;
        assert_eq!(encode(&Packet::Connect(plain), version)[2 + 2 + name.len()], level & 0x7f);
    }
    let wire = frame(0x10, &[str16(b"MQTT"), vec![0x85, 0x02, 0x00, 0x0A, 0x00], str16(b"b")].concat());
    assert!(matches!(decode_err(&wire, ProtocolVersion::V5), DecodeError::UnsupportedProtocol { level: 0x85, .. }));
}
