//! v5 properties (section 2.2.2): which packets allow which, repeats, values, lengths.

use midge_codec::{DecodeError, InvalidValue, Packet, Properties, ProtocolVersion, Publish, QoS};

use crate::support::{assert_malformed, assert_protocol, bytes, decode, decode_err, frame, s, str16, topic};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A v5 CONNECT with `properties` (identifier/value bytes) and client identifier "c".
fn connect(properties: &[u8]) -> Vec<u8> {
    let header = [str16(b"MQTT"), vec![0x05, 0x02, 0x00, 0x0A, properties.len() as u8]].concat();
    frame(0x10, &[header, properties.to_vec(), str16(b"c")].concat())
}

/// A v5 QoS 0 PUBLISH to "t" with `properties` and payload "p".
fn publish(properties: &[u8]) -> Vec<u8> {
    let body = [str16(b"t"), vec![properties.len() as u8], properties.to_vec(), b"p".to_vec()];
    frame(0x30, &body.concat())
}

/// A v5 PUBACK with reason Success and `properties`.
fn puback(properties: &[u8]) -> Vec<u8> {
    frame(0x40, &[vec![0x00, 0x01, 0x00, properties.len() as u8], properties.to_vec()].concat())
}

/// A v5 SUBSCRIBE with `properties` and one filter "t".
fn subscribe(properties: &[u8]) -> Vec<u8> {
    let body = [vec![0x00, 0x01, properties.len() as u8], properties.to_vec(), str16(b"t"), vec![0x01]];
    frame(0x82, &body.concat())
}

#[test]
fn every_property_type_decodes() {
    let properties = [
        &[0x11, 0x00, 0x00, 0x00, 0x3C][..],         // session expiry interval 60
        &[0x15, 0x00, 0x01, b'm'],                   // authentication method
        &[0x16, 0x00, 0x01, 0x07],                   // authentication data
        &[0x17, 0x00],                               // request problem information 0
        &[0x19, 0x01],                               // request response information 1
        &[0x21, 0x00, 0x05],                         // receive maximum 5
        &[0x22, 0x00, 0x00],                         // topic alias maximum 0
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1'], // user property a=1
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2'], // user property a=2, repeated
        &[0x27, 0x00, 0x00, 0x10, 0x00],             // maximum packet size 4096
    ]
    .concat();
    let Ok(Packet::Connect(connect)) = decode(&connect(&properties), V5) else { panic!() };
    assert_eq!(
        connect.properties,
        Properties {
            session_expiry_interval: Some(60),
            authentication_method: Some(s("m")),
            authentication_data: Some(bytes(&[0x07])),
            request_problem_information: Some(0),
            request_response_information: Some(1),
            receive_maximum: Some(5),
            topic_alias_maximum: Some(0),
            user_properties: vec![(s("a"), s("1")), (s("a"), s("2"))],
            maximum_packet_size: Some(4096),
            ..Properties::default()
        }
    );
}

#[test]
fn publish_properties_decode_with_repeated_subscription_identifiers() {
    let properties = [
        &[0x01, 0x00][..],                     // payload format indicator 0
        &[0x03, 0x00, 0x01, b'j'],             // content type
        &[0x08, 0x00, 0x03, b'r', b'/', b't'], // response topic
        &[0x09, 0x00, 0x02, 0xAB, 0xCD],       // correlation data
        &[0x0B, 0x01],                         // subscription identifier 1
        &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F],       // subscription identifier 268,435,455
    ]
    .concat();
    let Ok(Packet::Publish(publish)) = decode(&publish(&properties), V5) else { panic!() };
    assert_eq!(
        publish,
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic("t"),
            packet_id: None,
            properties: Properties {
                payload_format_indicator: Some(0),
                content_type: Some(s("j")),
                response_topic: Some(topic("r/t")),
                correlation_data: Some(bytes(&[0xAB, 0xCD])),
                subscription_identifiers: vec![1, 268_435_455],
                ..Properties::default()
            },
            payload: bytes(b"p"),
        }
    );
}

/// Section 2.2.2.2: including a property other than User Property twice is a Protocol Error;
/// Subscription Identifier may repeat only in PUBLISH.
#[test]
fn duplicate_property_is_a_protocol_error() {
    assert_protocol(&connect(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), V5);
    assert_protocol(&connect(&[0x21, 0, 1, 0x21, 0, 1]), V5);
    assert_protocol(&publish(&[0x23, 0, 1, 0x23, 0, 2]), V5);
    assert_protocol(&puback(&[0x1F, 0, 0, 0x1F, 0, 0]), V5);
    assert_protocol(&subscribe(&[0x0B, 0x01, 0x0B, 0x02]), V5);
    assert!(decode(&subscribe(&[0x0B, 0x01]), V5).is_ok());
}

/// Table 2-4: a property used in a packet it is not defined for is a Protocol Error.
#[test]
fn property_not_allowed_in_the_packet_is_a_protocol_error() {
    assert_protocol(&connect(&[0x23, 0x00, 0x01]), V5); // topic alias
    assert_protocol(&connect(&[0x18, 0, 0, 0, 1]), V5); // will delay interval outside a will
    assert_protocol(&connect(&[0x24, 0x01]), V5); // maximum QoS
    assert_protocol(&publish(&[0x11, 0, 0, 0, 1]), V5); // session expiry interval
    assert_protocol(&publish(&[0x1F, 0x00, 0x00]), V5); // reason string
    assert_protocol(&puback(&[0x02, 0, 0, 0, 1]), V5); // message expiry interval
    assert_protocol(&subscribe(&[0x1F, 0x00, 0x00]), V5); // reason string

    // Will properties: will delay yes, topic alias and subscription identifier no.
    let will = |properties: &[u8]| {
        let header = [str16(b"MQTT"), vec![0x05, 0x06, 0x00, 0x0A, 0x00]].concat();
        let payload = [str16(b"c"), vec![properties.len() as u8], properties.to_vec(), str16(b"w"), str16(b"m")];
        frame(0x10, &[header, payload.concat()].concat())
    };
    assert!(decode(&will(&[0x18, 0, 0, 0, 1]), V5).is_ok());
    assert_protocol(&will(&[0x23, 0x00, 0x01]), V5);
    assert_protocol(&will(&[0x0B, 0x01]), V5);
    // UNSUBSCRIBE takes only User Property.
    let unsubscribe = frame(0xA2, &[vec![0x00, 0x01, 0x02, 0x0B, 0x01], str16(b"t")].concat());
    assert_protocol(&unsubscribe, V5);
    // DISCONNECT takes session expiry interval and server reference, not authentication data.
    assert!(decode(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 0], V5).is_ok());
    assert_protocol(&[0xE0, 0x06, 0x00, 0x04, 0x16, 0x00, 0x01, 0x00], V5);
}

/// An identifier the specification does not define leaves the value's length unknown: the
/// packet is malformed.
#[test]
fn unknown_property_identifier_is_malformed() {
    for identifier in [0x00, 0x04, 0x0A, 0x14, 0x2B, 0x7F] {
        assert_malformed(&connect(&[identifier, 0x00]), V5);
    }
    // A two-byte identifier (Variable Byte Integer) 0x80 0x01 = 128.
    assert_malformed(&connect(&[0x80, 0x01, 0x00]), V5);
}

/// Values the specification excludes are Protocol Errors.
#[test]
fn property_values_out_of_range_are_protocol_errors() {
    assert_protocol(&connect(&[0x21, 0x00, 0x00]), V5); // receive maximum 0
    assert_protocol(&connect(&[0x27, 0, 0, 0, 0]), V5); // maximum packet size 0
    assert_protocol(&connect(&[0x17, 0x02]), V5); // request problem information 2
    assert_protocol(&connect(&[0x19, 0x02]), V5); // request response information 2
    assert_protocol(&publish(&[0x23, 0x00, 0x00]), V5); // topic alias 0
    assert_protocol(&publish(&[0x01, 0x02]), V5); // payload format indicator 2
    assert_protocol(&publish(&[0x0B, 0x00]), V5); // subscription identifier 0
    assert_protocol(&subscribe(&[0x0B, 0x00]), V5);
    let connack =
        |properties: &[u8]| frame(0x20, &[vec![0x00, 0x00, properties.len() as u8], properties.to_vec()].concat());
    assert!(decode(&connack(&[0x24, 0x00, 0x25, 0x01, 0x28, 0x00, 0x29, 0x01, 0x2A, 0x00]), V5).is_ok());
    assert_protocol(&connack(&[0x24, 0x02]), V5); // maximum QoS 2
    for boolean in [0x25, 0x28, 0x29, 0x2A] {
        assert_protocol(&connack(&[boolean, 0x02]), V5);
    }
}

/// MQTT-3.3.2-14 (5.0): the Response Topic is a topic name, without wildcards.
#[test]
fn response_topic_is_a_topic_name() {
    assert_eq!(
        decode_err(&publish(&[0x08, 0x00, 0x03, b'r', b'/', b'#']), V5),
        DecodeError::TopicName(InvalidValue::WildcardInTopicName)
    );
    assert_eq!(decode_err(&publish(&[0x08, 0x00, 0x00]), V5), DecodeError::TopicName(InvalidValue::EmptyTopic));
}

#[test]
fn property_strings_are_mqtt_strings() {
    assert_eq!(decode_err(&puback(&[0x1F, 0x00, 0x01, 0xFF]), V5), DecodeError::String(InvalidValue::InvalidUtf8));
    assert_eq!(
        decode_err(&puback(&[0x26, 0x00, 0x01, b'a', 0x00, 0x01, 0x00]), V5),
        DecodeError::String(InvalidValue::NullCharacter)
    );
}

#[test]
fn property_values_that_overrun_are_malformed() {
    // Session expiry interval needs four bytes; the section has two.
    assert_malformed(&connect(&[0x11, 0x00]), V5);
    // A string longer than the section, even though the frame has more bytes.
    assert_malformed(&connect(&[0x15, 0x00]), V5);
    assert_malformed(&publish(&[0x03, 0x00, 0x05, b'a']), V5);
    // A subscription identifier with a fifth byte.
    assert_malformed(&publish(&[0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), V5);
    // Property length with a fifth byte.
    assert_malformed(&frame(0x30, &[str16(b"t"), vec![0xFF, 0xFF, 0xFF, 0xFF, 0x01]].concat()), V5);
}
