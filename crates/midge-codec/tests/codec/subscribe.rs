//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.

use midge_codec::{
    DecodeError, EncodeError, InvalidValue, Packet, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use crate::support::{
    assert_malformed, assert_protocol, assert_wire, decode, decode_err, encode, filter, frame, pid, str16, ALL, V3,
};

fn subscription(text: &str, qos: QoS) -> Subscription {
    Subscription { filter: filter(text), options: SubscriptionOptions { qos, ..Default::default() } }
}

/// A SUBSCRIBE body: packet identifier 10, properties for v5, then `payload`.
fn subscribe_body(version: ProtocolVersion, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x0A];
    if version.is_v5() {
        body.push(0x00);
    }
    body.extend_from_slice(payload);
    body
}

/// The 3.1.1 example of section 3.8.3: "a/b" at QoS 1, "c/d" at QoS 2.
#[test]
fn subscribe_spec_example() {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        subscriptions: vec![subscription("a/b", QoS::AtLeastOnce), subscription("c/d", QoS::ExactlyOnce)],
        properties: Properties::default(),
    });
    let payload = [0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x02];
    for version in V3 {
        let mut bytes = vec![0x82, 0x0E, 0x00, 0x0A];
        bytes.extend_from_slice(&payload);
        assert_wire(&bytes, &packet, version);
    }
    let mut bytes = vec![0x82, 0x0F, 0x00, 0x0A, 0x00];
    bytes.extend_from_slice(&payload);
    assert_wire(&bytes, &packet, ProtocolVersion::V5);
}

/// Section 3.8.3.1 (5.0): QoS in bits 0-1, No Local bit 2, Retain As Published bit 3, Retain
/// Handling bits 4-5.
#[test]
fn subscribe_v5_options_and_subscription_identifier() {
    let bytes = [
        0x82, 0x0B, 0x00, 0x0A, //
        0x02, 0x0B, 0x2A, // subscription identifier 42
        0x00, 0x03, b'a', b'/', b'b', 0x2D, // retain handling 2, RAP, NL, QoS 1
    ];
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        subscriptions: vec![Subscription {
            filter: filter("a/b"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        }],
        properties: Properties { subscription_identifiers: vec![42], ..Properties::default() },
    });
    assert_wire(&bytes, &packet, ProtocolVersion::V5);
    // 3.x has only the QoS: the other options are not written.
    let Packet::Subscribe(mut v3) = packet.clone() else { unreachable!() };
    v3.properties = Properties::default();
    let bytes = encode(&Packet::Subscribe(v3), ProtocolVersion::V311);
    assert_eq!(bytes, [0x82, 0x08, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01]);
}

/// MQTT-3.8.3-3 (3.1.1), MQTT-3.8.3-2 (5.0): at least one topic filter.
#[test]
fn subscribe_without_filters_mqtt_3_8_3_3() {
    for version in ALL {
        assert_protocol(&frame(0x82, &subscribe_body(version, &[])), version);
    }
    let empty = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        subscriptions: Vec::new(),
        properties: Properties::default(),
    });
    let mut out = bytes::BytesMut::new();
    assert!(matches!(
        midge_codec::encode_packet(&empty, ProtocolVersion::V311, &mut out),
        Err(EncodeError::Unencodable(_))
    ));
}

/// MQTT-3-8.3-4 (3.1.1): the upper six bits of the requested QoS byte are reserved, and QoS 3
/// is malformed.
#[test]
fn subscribe_3x_requested_qos_byte_mqtt_3_8_3_4() {
    for version in V3 {
        for options in [0x03, 0x04, 0x10, 0x40, 0x80, 0xFE] {
            let payload = [str16(b"a"), vec![options]].concat();
            assert_malformed(&frame(0x82, &subscribe_body(version, &payload)), version);
        }
    }
}

/// MQTT-3.8.3-5 (5.0): bits 6-7 of the subscription options are reserved.
#[test]
fn subscribe_v5_reserved_option_bits_mqtt_3_8_3_5() {
    let v5 = ProtocolVersion::V5;
    for options in [0x40, 0x80, 0xC1] {
        let payload = [str16(b"a"), vec![options]].concat();
        assert_malformed(&frame(0x82, &subscribe_body(v5, &payload)), v5);
    }
}

/// Section 3.8.3.1 (5.0): "It is a Protocol Error to send a Retain Handling value of 3" and
/// "It is a Protocol Error if the Maximum QoS field has the value 3".
#[test]
fn subscribe_v5_retain_handling_3_and_qos_3_are_protocol_errors() {
    let v5 = ProtocolVersion::V5;
    for options in [0x30, 0x03] {
        let payload = [str16(b"a"), vec![options]].concat();
        assert_protocol(&frame(0x82, &subscribe_body(v5, &payload)), v5);
    }
}

/// MQTT-2.3.1-1: packet identifier 0.
#[test]
fn subscribe_and_unsubscribe_packet_identifier_0_mqtt_2_3_1_1() {
    for version in ALL {
        let mut body = subscribe_body(version, &[str16(b"a"), vec![0x00]].concat());
        body[1] = 0x00;
        assert_protocol(&frame(0x82, &body), version);
        let mut body = subscribe_body(version, &str16(b"a"));
        body[1] = 0x00;
        assert_protocol(&frame(0xA2, &body), version);
        assert_protocol(&[0x90, 0x03, 0x00, 0x00, 0x00], version);
    }
    assert_protocol(&[0xB0, 0x02, 0x00, 0x00], ProtocolVersion::V311);
}

/// MQTT-4.7.1-2, MQTT-4.7.1-3: wildcards occupy whole levels, `#` only last; MQTT-4.7.3-1: a
/// filter is not empty.
#[test]
fn subscribe_and_unsubscribe_filters_are_checked() {
    for version in ALL {
        for (text, invalid) in [
            (&b"a/b#"[..], InvalidValue::MalformedFilter),
            (b"a/#/b", InvalidValue::MalformedFilter),
            (b"a+/b", InvalidValue::MalformedFilter),
            (b"", InvalidValue::EmptyTopic),
        ] {
            let payload = [str16(text), vec![0x00]].concat();
            let bytes = frame(0x82, &subscribe_body(version, &payload));
            assert_eq!(decode_err(&bytes, version), DecodeError::TopicFilter(invalid));
            let bytes = frame(0xA2, &subscribe_body(version, &str16(text)));
            assert_eq!(decode_err(&bytes, version), DecodeError::TopicFilter(invalid));
        }
        let payload = [str16(b"a/\xFF"), vec![0x00]].concat();
        let bytes = frame(0x82, &subscribe_body(version, &payload));
        assert_eq!(decode_err(&bytes, version), DecodeError::String(InvalidValue::InvalidUtf8));
    }
}

#[test]
fn subscribe_filter_without_options_is_malformed() {
    for version in ALL {
        let payload = [str16(b"a"), vec![0x00], str16(b"b")].concat();
        assert_malformed(&frame(0x82, &subscribe_body(version, &payload)), version);
    }
}

/// The 3.1.1 example of section 3.9.3: granted QoS 0, granted QoS 2, failure.
#[test]
fn suback_spec_example() {
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(10),
        reasons: vec![ReasonCode::SUCCESS, ReasonCode::GRANTED_QOS_2, ReasonCode::UNSPECIFIED_ERROR],
        properties: Properties::default(),
    });
    for version in V3 {
        assert_wire(&[0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80], &packet, version);
    }
    assert_wire(&[0x90, 0x06, 0x00, 0x0A, 0x00, 0x00, 0x02, 0x80], &packet, ProtocolVersion::V5);
}

/// 3.x has one failure code, 0x80: every v5 failure is sent as it.
#[test]
fn suback_3x_maps_failures_to_0x80() {
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(10),
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED, ReasonCode::TOPIC_FILTER_INVALID],
        properties: Properties::default(),
    });
    for version in V3 {
        assert_eq!(encode(&packet, version), [0x90, 0x05, 0x00, 0x0A, 0x01, 0x80, 0x80]);
    }
    assert_wire(&[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x87, 0x8F], &packet, ProtocolVersion::V5);
}

/// MQTT-3.9.3-2 (3.1.1): return codes other than 0x00, 0x01, 0x02 and 0x80 are reserved.
#[test]
fn suback_3x_reserved_return_code_mqtt_3_9_3_2() {
    for version in V3 {
        for code in [0x03, 0x10, 0x7F, 0x81, 0x87, 0xFF] {
            assert_protocol(&[0x90, 0x03, 0x00, 0x0A, code], version);
        }
    }
}

#[test]
fn suback_and_unsuback_without_codes_are_protocol_errors() {
    for version in V3 {
        assert_protocol(&[0x90, 0x02, 0x00, 0x0A], version);
    }
    assert_protocol(&[0x90, 0x03, 0x00, 0x0A, 0x00], ProtocolVersion::V5);
    assert_protocol(&[0xB0, 0x03, 0x00, 0x0A, 0x00], ProtocolVersion::V5);
}

/// The 3.1.1 example of section 3.10.3: "a/b" and "c/d".
#[test]
fn unsubscribe_spec_example() {
    let packet = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: Properties::default(),
    });
    let payload = [0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd'];
    for version in V3 {
        assert_wire(&[&[0xA2, 0x0C, 0x00, 0x0A][..], &payload].concat(), &packet, version);
    }
    assert_wire(&[&[0xA2, 0x0D, 0x00, 0x0A, 0x00][..], &payload].concat(), &packet, ProtocolVersion::V5);
}

/// MQTT-3.10.3-2: at least one topic filter.
#[test]
fn unsubscribe_without_filters_mqtt_3_10_3_2() {
    for version in ALL {
        assert_protocol(&frame(0xA2, &subscribe_body(version, &[])), version);
    }
}

#[test]
fn unsuback_3x_has_no_reason_codes() {
    let packet =
        Packet::UnsubAck(UnsubAck { packet_id: pid(10), reasons: Vec::new(), properties: Properties::default() });
    for version in V3 {
        assert_wire(&[0xB0, 0x02, 0x00, 0x0A], &packet, version);
        assert_malformed(&[0xB0, 0x03, 0x00, 0x0A, 0x00], version);
    }
}

#[test]
fn unsuback_v5_has_a_reason_per_filter() {
    let packet = Packet::UnsubAck(UnsubAck {
        packet_id: pid(10),
        reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Properties::default(),
    });
    assert_wire(&[0xB0, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x11], &packet, ProtocolVersion::V5);
    // The reason codes are dropped for 3.x.
    assert_eq!(encode(&packet, ProtocolVersion::V311), [0xB0, 0x02, 0x00, 0x0A]);
    assert!(decode(&[0xB0, 0x02, 0x00, 0x0A], ProtocolVersion::V5).is_err());
}
