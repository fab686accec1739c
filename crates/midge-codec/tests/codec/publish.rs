//! PUBLISH and PUBACK, PUBREC, PUBREL, PUBCOMP.

use midge_codec::{
    DecodeError, InvalidValue, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, TopicName,
};

use crate::support::{
    assert_malformed, assert_protocol, assert_wire, bytes, decode, decode_err, encode, frame, pid, s, str16, topic,
    ALL, V3,
};

fn publish(qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic("a/b"),
        packet_id: packet_id.map(pid),
        properties: Properties::default(),
        payload: bytes(payload),
    }
}

/// The 3.1.1 example of section 3.3.2.3: topic "a/b", packet identifier 10.
#[test]
fn publish_spec_example() {
    let packet = Packet::Publish(publish(QoS::AtLeastOnce, Some(10), b"hi"));
    let v3 = [0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i'];
    for version in V3 {
        assert_wire(&v3, &packet, version);
    }
    let v5 = [0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00, b'h', b'i'];
    assert_wire(&v5, &packet, ProtocolVersion::V5);
}

#[test]
fn publish_qos_0_has_no_packet_identifier() {
    let packet = Packet::Publish(publish(QoS::AtMostOnce, None, b"hi"));
    for version in V3 {
        assert_wire(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'], &packet, version);
    }
    assert_wire(&[0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'], &packet, ProtocolVersion::V5);
}

#[test]
fn publish_flags_and_empty_payload() {
    let packet = Packet::Publish(Publish { dup: true, retain: true, ..publish(QoS::ExactlyOnce, Some(0x1234), b"") });
    for version in V3 {
        assert_wire(&[0x3D, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x12, 0x34], &packet, version);
    }
}

#[test]
fn publish_v5_properties() {
    let bytes = [
        0x34, 0x1E, // PUBLISH QoS 2, remaining length 30
        0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, // topic, packet identifier
        0x14, // property length 20
        0x01, 0x01, // payload format indicator: UTF-8
        0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval 60
        0x0B, 0x80, 0x01, // subscription identifier 128
        0x23, 0x00, 0x05, // topic alias 5
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        b'h', b'i',
    ];
    let packet = Packet::Publish(Publish {
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            subscription_identifiers: vec![128],
            topic_alias: Some(5),
            user_properties: vec![(s("k"), s("v"))],
            ..Properties::default()
        },
        ..publish(QoS::ExactlyOnce, Some(10), b"hi")
    });
    assert_wire(&bytes, &packet, ProtocolVersion::V5);
}

/// MQTT-3.3.2-2: the topic name of a PUBLISH has no wildcard.
#[test]
fn publish_topic_wildcard_mqtt_3_3_2_2() {
    for version in ALL {
        for name in [&b"a/+"[..], b"#", b"a+b"] {
            let mut body = str16(name);
            if version.is_v5() {
                body.push(0x00);
            }
            assert_eq!(
                decode_err(&frame(0x30, &body), version),
                DecodeError::TopicName(InvalidValue::WildcardInTopicName)
            );
        }
    }
}

/// MQTT-4.7.3-1: a topic name is at least one character long. Only a v5 PUBLISH with a Topic
/// Alias may leave it empty (section 3.3.2.3.4).
#[test]
fn publish_empty_topic_mqtt_4_7_3_1() {
    for version in V3 {
        assert_eq!(decode_err(&frame(0x30, &str16(b"")), version), DecodeError::TopicName(InvalidValue::EmptyTopic));
    }
    assert_eq!(
        decode_err(&frame(0x30, &[0x00, 0x00, 0x00]), ProtocolVersion::V5),
        DecodeError::TopicName(InvalidValue::EmptyTopic)
    );
    let by_alias = [0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07, b'x'];
    let packet = Packet::Publish(Publish {
        topic: TopicName::empty_for_alias(),
        properties: Properties { topic_alias: Some(7), ..Properties::default() },
        ..publish(QoS::AtMostOnce, None, b"x")
    });
    assert_wire(&by_alias, &packet, ProtocolVersion::V5);
}

/// MQTT-1.5.4-1, MQTT-1.5.4-2: the topic is valid UTF-8 without U+0000.
#[test]
fn publish_topic_is_an_mqtt_string() {
    for version in V3 {
        assert_eq!(
            decode_err(&frame(0x30, &str16(b"a/\xFF")), version),
            DecodeError::String(InvalidValue::InvalidUtf8)
        );
        assert_eq!(
            decode_err(&frame(0x30, &str16(b"a/\0")), version),
            DecodeError::String(InvalidValue::NullCharacter)
        );
    }
}

/// MQTT-2.3.1-1: a packet identifier is non-zero.
#[test]
fn publish_packet_identifier_0_mqtt_2_3_1_1() {
    for version in ALL {
        for first in [0x32, 0x34] {
            let mut body = [str16(b"a"), vec![0x00, 0x00]].concat();
            if version.is_v5() {
                body.push(0x00);
            }
            assert_protocol(&frame(first, &body), version);
        }
    }
}

#[test]
fn publish_lengths_that_overrun_are_malformed() {
    for version in ALL {
        // Topic length beyond the frame.
        assert_malformed(&frame(0x30, &[0x00, 0x05, b'a']), version);
        // QoS 1 without a packet identifier.
        assert_malformed(&frame(0x32, &str16(b"a")), version);
    }
    // Property length beyond the frame.
    assert_malformed(&frame(0x30, &[str16(b"a"), vec![0x05, 0x01]].concat()), ProtocolVersion::V5);
    // No property length at all.
    assert_malformed(&frame(0x30, &str16(b"a")), ProtocolVersion::V5);
}

fn response(kind: u8, reason: ReasonCode, properties: Properties) -> Packet {
    let response = PubResponse { packet_id: pid(10), reason, properties };
    match kind {
        0x40 => Packet::PubAck(response),
        0x50 => Packet::PubRec(response),
        0x62 => Packet::PubRel(response),
        _ => Packet::PubComp(response),
    }
}

const RESPONSE_KINDS: [u8; 4] = [0x40, 0x50, 0x62, 0x70];

#[test]
fn pub_responses_3x() {
    for version in V3 {
        for first in RESPONSE_KINDS {
            let packet = response(first, ReasonCode::SUCCESS, Properties::default());
            assert_wire(&[first, 0x02, 0x00, 0x0A], &packet, version);
            // 3.x has no reason codes: they are not written.
            let failed = response(first, ReasonCode::UNSPECIFIED_ERROR, Properties::default());
            assert_eq!(encode(&failed, version), [first, 0x02, 0x00, 0x0A]);
            // Anything after the packet identifier is malformed.
            assert_malformed(&[first, 0x03, 0x00, 0x0A, 0x00], version);
        }
    }
}

/// Section 3.4.2.1 (5.0): remaining length 2 means Success without properties, 3 a reason code
/// without properties; the encoder uses the shortest form.
#[test]
fn pub_responses_v5_short_forms() {
    let v5 = ProtocolVersion::V5;
    for first in RESPONSE_KINDS {
        assert_wire(&[first, 0x02, 0x00, 0x0A], &response(first, ReasonCode::SUCCESS, Properties::default()), v5);
        let no_subscribers = response(first, ReasonCode::NO_MATCHING_SUBSCRIBERS, Properties::default());
        assert_wire(&[first, 0x03, 0x00, 0x0A, 0x10], &no_subscribers, v5);
        // An explicit empty property section decodes the same.
        assert_eq!(decode(&[first, 0x04, 0x00, 0x0A, 0x10, 0x00], v5), Ok(no_subscribers));
        let with_reason_string = response(
            first,
            ReasonCode::UNSPECIFIED_ERROR,
            Properties { reason_string: Some(s("x")), ..Properties::default() },
        );
        let bytes = [first, 0x08, 0x00, 0x0A, 0x80, 0x04, 0x1F, 0x00, 0x01, b'x'];
        assert_wire(&bytes, &with_reason_string, v5);
        // Success with properties keeps its reason code.
        let success_with_properties =
            response(first, ReasonCode::SUCCESS, Properties { reason_string: Some(s("x")), ..Properties::default() });
        let bytes = [first, 0x08, 0x00, 0x0A, 0x00, 0x04, 0x1F, 0x00, 0x01, b'x'];
        assert_wire(&bytes, &success_with_properties, v5);
        // Bytes after the properties.
        assert_malformed(&[first, 0x05, 0x00, 0x0A, 0x10, 0x00, 0x00], v5);
        // Property length overruns.
        assert_malformed(&[first, 0x04, 0x00, 0x0A, 0x10, 0x02], v5);
    }
}

/// MQTT-2.3.1-1: a packet identifier is non-zero.
#[test]
fn pub_response_packet_identifier_0_mqtt_2_3_1_1() {
    for version in ALL {
        for first in RESPONSE_KINDS {
            assert_protocol(&[first, 0x02, 0x00, 0x00], version);
        }
    }
}

#[test]
fn pub_response_missing_packet_identifier_is_malformed() {
    for version in ALL {
        for first in RESPONSE_KINDS {
            assert_malformed(&[first, 0x01, 0x00], version);
            assert_malformed(&[first, 0x00], version);
        }
    }
}

#[test]
fn encoder_refuses_publish_it_could_not_send() {
    let cases = [
        (ProtocolVersion::V311, publish(QoS::AtLeastOnce, None, b"")),
        (ProtocolVersion::V311, Publish { topic: TopicName::empty_for_alias(), ..publish(QoS::AtMostOnce, None, b"") }),
        (ProtocolVersion::V5, Publish { topic: TopicName::empty_for_alias(), ..publish(QoS::AtMostOnce, None, b"") }),
        (ProtocolVersion::V5, Publish { dup: true, ..publish(QoS::AtMostOnce, None, b"") }),
    ];
    for (version, publish) in cases {
        let packet = Packet::Publish(publish);
        let mut out = bytes::BytesMut::new();
        assert!(
            matches!(
                midge_codec::encode_packet(&packet, version, &mut out),
                Err(midge_codec::EncodeError::Unencodable(_))
            ),
            "{packet:?}"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn publish_larger_than_the_remaining_length_allows_is_too_large() {
    // 268,435,455 bytes of remaining length at most; zeroed memory is not touched.
    let payload = bytes::Bytes::from(vec![0u8; 268_435_455]);
    let packet = Packet::Publish(Publish { payload, ..publish(QoS::AtMostOnce, None, b"") });
    let mut out = bytes::BytesMut::new();
    assert_eq!(
        midge_codec::encode_packet(&packet, ProtocolVersion::V311, &mut out),
        Err(midge_codec::EncodeError::TooLarge(268_435_455 + 5))
    );
    assert_eq!(midge_codec::encoded_len(&packet, ProtocolVersion::V311), 0);
    assert!(out.is_empty());
}
