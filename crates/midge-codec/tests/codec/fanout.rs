//! The fan-out path: `encode_publish` writes a PUBLISH from parts, `publish_len` predicts it.

use bytes::BytesMut;
use midge_codec::{
    decode_packet, encode_properties, encode_publish, publish_len, EncodeError, Packet, Properties, ProtocolVersion,
    Publish, PublishHeader, QoS, TopicName,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::strategies::{packet_id, properties, qos, topic_name, version, Place};
use crate::support::{bytes, decode, pid, s, topic, V3};

fn header<'a>(shared: &'a [u8], subscription_identifiers: &'a [u32]) -> PublishHeader<'a> {
    PublishHeader {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a/b",
        packet_id: Some(pid(10)),
        shared_properties: shared,
        message_expiry_interval: Some(30),
        topic_alias: Some(2),
        subscription_identifiers,
    }
}

fn encode(header: &PublishHeader<'_>, payload: &[u8], version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_publish(&mut out, version, header, payload).unwrap();
    assert_eq!(out.len(), publish_len(header, payload.len(), version));
    out.to_vec()
}

#[test]
fn v5_per_receiver_properties_come_before_the_shared_ones() {
    let mut shared = BytesMut::new();
    encode_properties(&Properties { content_type: Some(s("j")), ..Properties::default() }, &mut shared);
    assert_eq!(&shared[..], [0x03, 0x00, 0x01, b'j']);
    let bytes = encode(&header(&shared, &[1, 300]), b"hi", ProtocolVersion::V5);
    let expected = [
        0x32, 0x1B, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, //
        0x11, // property length 17
        0x02, 0x00, 0x00, 0x00, 0x1E, // message expiry interval 30
        0x23, 0x00, 0x02, // topic alias 2
        0x0B, 0x01, // subscription identifier 1
        0x0B, 0xAC, 0x02, // subscription identifier 300
        0x03, 0x00, 0x01, b'j', // shared: content type
        b'h', b'i',
    ];
    assert_eq!(bytes, expected);
    let Ok(Packet::Publish(publish)) = decode(&bytes, ProtocolVersion::V5) else { panic!() };
    assert_eq!(
        publish.properties,
        Properties {
            message_expiry_interval: Some(30),
            topic_alias: Some(2),
            subscription_identifiers: vec![1, 300],
            content_type: Some(s("j")),
            ..Properties::default()
        }
    );
}

#[test]
fn v3_leaves_properties_out() {
    let shared = [0x03, 0x00, 0x01, b'j'];
    for version in V3 {
        let bytes = encode(&header(&shared, &[1]), b"hi", version);
        assert_eq!(bytes, [0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i']);
    }
}

#[test]
fn encoding_reserves_once() {
    let header = header(&[], &[7]);
    let len = publish_len(&header, 3, ProtocolVersion::V5);
    let mut out = BytesMut::with_capacity(len);
    let storage = out.as_ptr();
    encode_publish(&mut out, ProtocolVersion::V5, &header, b"abc").unwrap();
    assert_eq!((out.len(), out.as_ptr()), (len, storage));
}

#[test]
fn unencodable_headers_write_nothing() {
    let cases = [
        PublishHeader { packet_id: None, ..header(&[], &[]) },
        PublishHeader { topic_alias: Some(0), ..header(&[], &[]) },
        PublishHeader { topic: "", topic_alias: None, ..header(&[], &[]) },
    ];
    let zero = [0];
    let too_big = [268_435_456];
    let identifiers = [header(&[], &zero), header(&[], &too_big)];
    for header in cases.iter().chain(&identifiers) {
        let mut out = BytesMut::new();
        assert!(matches!(
            encode_publish(&mut out, ProtocolVersion::V5, header, b"x"),
            Err(EncodeError::Unencodable(_))
        ));
        assert!(out.is_empty());
        assert_eq!(publish_len(header, 1, ProtocolVersion::V5), 0);
    }
    // An empty topic needs a v5 topic alias.
    let by_alias = PublishHeader { topic: "", ..header(&[], &[]) };
    assert!(encode_publish(&mut BytesMut::new(), ProtocolVersion::V5, &by_alias, b"").is_ok());
    assert!(encode_publish(&mut BytesMut::new(), ProtocolVersion::V311, &by_alias, b"").is_err());
}

#[test]
fn payload_beyond_the_largest_remaining_length_is_too_large() {
    let header = PublishHeader { message_expiry_interval: None, topic_alias: None, ..header(&[], &[]) };
    // Topic 5 + packet id 2 + property length 1.
    assert_eq!(publish_len(&header, 268_435_455 - 8, ProtocolVersion::V5), 268_435_455 + 5);
    assert_eq!(publish_len(&header, 268_435_455 - 7, ProtocolVersion::V5), 0);
    let payload = vec![0u8; 268_435_455 - 7];
    assert_eq!(
        encode_publish(&mut BytesMut::new(), ProtocolVersion::V5, &header, &payload),
        Err(EncodeError::TooLarge(268_435_456))
    );
}

proptest! {
    /// `publish_len` equals what `encode_publish` writes, and the frame decodes to the PUBLISH
    /// the parts describe.
    #[test]
    fn publish_from_parts_decodes_to_its_parts(
        version in version(),
        dup in any::<bool>(),
        qos in qos(),
        retain in any::<bool>(),
        topic in topic_name(),
        packet_id in packet_id(),
        shared in properties(Place::Publish, ProtocolVersion::V5),
        message_expiry_interval in option::of(any::<u32>()),
        topic_alias in option::of(1..=u16::MAX),
        subscription_identifiers in vec(1u32..=268_435_455, 0..4),
        payload in vec(any::<u8>(), 0..64),
    ) {
        // The per-receiver fields come from the header, not the shared properties.
        let shared = Properties {
            message_expiry_interval: None,
            topic_alias: None,
            subscription_identifiers: Vec::new(),
            ..shared
        };
        let mut shared_bytes = BytesMut::new();
        encode_properties(&shared, &mut shared_bytes);
        let header = PublishHeader {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: topic.as_str(),
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            shared_properties: &shared_bytes,
            message_expiry_interval,
            topic_alias,
            subscription_identifiers: &subscription_identifiers,
        };
        let mut out = BytesMut::new();
        encode_publish(&mut out, version, &header, &payload).unwrap();
        prop_assert_eq!(out.len(), publish_len(&header, payload.len(), version));
        let expected_properties = if version.is_v5() {
            Properties {
                message_expiry_interval,
                topic_alias,
                subscription_identifiers: subscription_identifiers.clone(),
                ..shared
            }
        } else {
            Properties::default()
        };
        let expected = Publish {
            dup: header.dup,
            qos,
            retain,
            topic: TopicName::new(header.topic).unwrap(),
            packet_id: header.packet_id,
            properties: expected_properties,
            payload: bytes::Bytes::from(payload),
        };
        let decoded = decode_packet(&mut out, version, usize::MAX);
        prop_assert_eq!(decoded, Ok(Some(Packet::Publish(expected))));
    }
}

#[test]
fn shared_properties_are_written_in_identifier_order() {
    let properties = Properties {
        user_properties: vec![(s("b"), s("2")), (s("a"), s("1"))],
        response_topic: Some(topic("r")),
        payload_format_indicator: Some(1),
        correlation_data: Some(bytes(b"c")),
        ..Properties::default()
    };
    let mut out = BytesMut::new();
    encode_properties(&properties, &mut out);
    let expected = [
        0x01, 0x01, // payload format indicator
        0x08, 0x00, 0x01, b'r', // response topic
        0x09, 0x00, 0x01, b'c', // correlation data
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2', // user properties in their order
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1',
    ];
    assert_eq!(&out[..], expected);
}
