//! Every decode error and every encode error, each from the smallest datagram or message that
//! shows it.

use bytes::{Bytes, BytesMut};
use midge_sn_codec::{
    decode, encode, DecodeError, Encapsulated, EncodeError, Message, MsgId, MsgType, Publish, PublishTopic, QoS,
    TopicId,
};

use crate::support::datagram;

fn missing(msg_type: MsgType, field: &'static str) -> Result<Message, DecodeError> {
    Err(DecodeError::MissingField { msg_type, field })
}

#[test]
fn sec_5_2_too_short_for_a_header() {
    for bytes in [&[][..], &[0x01], &[0x01, 0x00], &[0x01, 0x00, 0x03]] {
        assert_eq!(decode(bytes), Err(DecodeError::TooShort { len: bytes.len() }), "{bytes:02x?}");
    }
}

#[test]
fn sec_5_2_1_missing_or_trailing_octets_are_a_length_mismatch() {
    // One datagram, one message: the Length field must give the datagram's length.
    assert_eq!(decode(&[0x03, 0x16]), Err(DecodeError::LengthMismatch { declared: 3, actual: 2 }));
    assert_eq!(decode(&[0x02, 0x16, 0x00]), Err(DecodeError::LengthMismatch { declared: 2, actual: 3 }));
    assert_eq!(decode(&[0x02]), Err(DecodeError::LengthMismatch { declared: 2, actual: 1 }));
    assert_eq!(decode(&[0x00, 0x16]), Err(DecodeError::LengthMismatch { declared: 0, actual: 2 }));
    assert_eq!(decode(&[0x01, 0x01, 0x00, 0x16]), Err(DecodeError::LengthMismatch { declared: 256, actual: 4 }));
    // Two messages in one datagram.
    assert_eq!(decode(&[0x02, 0x16, 0x02, 0x16]), Err(DecodeError::LengthMismatch { declared: 2, actual: 4 }));
}

#[test]
fn sec_5_2_2_reserved_msg_types_are_unknown() {
    for value in (0x00..=0xFF).filter(|value| MsgType::from_u8(*value).is_none()) {
        assert_eq!(decode(&[0x02, value]), Err(DecodeError::UnknownMsgType(value)), "{value:#04x}");
    }
    for value in [0x03, 0x11, 0x19, 0x1E, 0xFD, 0xFF] {
        assert_eq!(MsgType::from_u8(value), None);
    }
}

#[test]
fn sec_5_4_a_missing_field_is_named() {
    let cases: [(&[u8], MsgType, &str); 20] = [
        (&[0x02, 0x00], MsgType::Advertise, "GwId"),
        (&[0x04, 0x00, 0x07, 0x03], MsgType::Advertise, "Duration"),
        (&[0x02, 0x01], MsgType::SearchGw, "Radius"),
        (&[0x02, 0x02], MsgType::GwInfo, "GwId"),
        (&[0x02, 0x04], MsgType::Connect, "Flags"),
        (&[0x03, 0x04, 0x04], MsgType::Connect, "ProtocolId"),
        (&[0x05, 0x04, 0x04, 0x01, 0x00], MsgType::Connect, "Duration"),
        (&[0x02, 0x05], MsgType::ConnAck, "ReturnCode"),
        (&[0x03, 0x0A, 0x00], MsgType::Register, "TopicId"),
        (&[0x05, 0x0A, 0x00, 0x00, 0x00], MsgType::Register, "MsgId"),
        (&[0x06, 0x0B, 0x00, 0x05, 0x00, 0x01], MsgType::RegAck, "ReturnCode"),
        (&[0x02, 0x0C], MsgType::Publish, "Flags"),
        (&[0x04, 0x0C, 0x02, b'a'], MsgType::Publish, "TopicId"),
        (&[0x06, 0x0C, 0x00, 0x00, 0x01, 0x00], MsgType::Publish, "MsgId"),
        (&[0x03, 0x0F, 0x00], MsgType::PubRec, "MsgId"),
        (&[0x04, 0x12, 0x00, 0x00], MsgType::Subscribe, "MsgId"),
        (&[0x06, 0x12, 0x01, 0x00, 0x01, 0x00], MsgType::Subscribe, "TopicId"),
        (&[0x06, 0x14, 0x02, 0x00, 0x01, b'a'], MsgType::Unsubscribe, "TopicName"),
        (&[0x07, 0x13, 0x00, 0x00, 0x05, 0x00, 0x01], MsgType::SubAck, "ReturnCode"),
        (&[0x03, 0x18, 0x0E], MsgType::Disconnect, "Duration"),
    ];
    for (bytes, msg_type, field) in cases {
        assert_eq!(decode(bytes), missing(msg_type, field), "{bytes:02x?}");
    }
}

#[test]
fn sec_5_4_trailing_octets_after_fixed_fields() {
    let cases: [(&[u8], MsgType); 16] = [
        (&[0x06, 0x00, 0x07, 0x03, 0x84, 0x00], MsgType::Advertise),
        (&[0x04, 0x01, 0x02, 0x00], MsgType::SearchGw),
        (&[0x04, 0x05, 0x00, 0x00], MsgType::ConnAck),
        (&[0x03, 0x06, 0x00], MsgType::WillTopicReq),
        (&[0x03, 0x08, 0x00], MsgType::WillMsgReq),
        (&[0x08, 0x0B, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00], MsgType::RegAck),
        (&[0x08, 0x0D, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00], MsgType::PubAck),
        (&[0x05, 0x0E, 0x00, 0x03, 0x00], MsgType::PubComp),
        (&[0x05, 0x10, 0x00, 0x03, 0x00], MsgType::PubRel),
        (&[0x08, 0x12, 0x01, 0x00, 0x04, 0x00, 0x10, 0x00], MsgType::Subscribe),
        (&[0x09, 0x13, 0x00, 0x00, 0x05, 0x00, 0x04, 0x00, 0x00], MsgType::SubAck),
        (&[0x08, 0x14, 0x02, 0x00, 0x06, b'a', b'b', b'c'], MsgType::Unsubscribe),
        (&[0x05, 0x15, 0x00, 0x06, 0x00], MsgType::UnsubAck),
        (&[0x03, 0x17, 0x00], MsgType::PingResp),
        (&[0x05, 0x18, 0x0E, 0x10, 0x00], MsgType::Disconnect),
        (&[0x04, 0x1D, 0x00, 0x00], MsgType::WillMsgResp),
    ];
    for (bytes, msg_type) in cases {
        assert_eq!(decode(bytes), Err(DecodeError::TrailingBytes { msg_type, extra: 1 }), "{bytes:02x?}");
    }
    assert_eq!(
        decode(&[0x05, 0x1B, 0x00, 0x00, 0x00]),
        Err(DecodeError::TrailingBytes { msg_type: MsgType::WillTopicResp, extra: 2 })
    );
}

#[test]
fn sec_5_3_4_reserved_topic_id_type_is_refused() {
    let cases = [
        (datagram(0x0C, &[0x03, 0x00, 0x01, 0x00, 0x00]), MsgType::Publish),
        (datagram(0x12, &[0x03, 0x00, 0x01, b'a', b'b']), MsgType::Subscribe),
        (datagram(0x14, &[0x03, 0x00, 0x01, b'a', b'b']), MsgType::Unsubscribe),
    ];
    for (bytes, msg_type) in cases {
        assert_eq!(decode(&bytes), Err(DecodeError::ReservedTopicIdType { msg_type }));
    }
}

#[test]
fn sec_5_3_invalid_utf8_in_a_client_id_or_topic_name() {
    let bad = [0xC3, 0x28];
    let cases = [
        (datagram(0x04, &[0x04, 0x01, 0x00, 0x3C, bad[0], bad[1]]), MsgType::Connect, "ClientId"),
        (datagram(0x16, &bad), MsgType::PingReq, "ClientId"),
        (datagram(0x0A, &[0x00, 0x00, 0x00, 0x01, bad[0], bad[1]]), MsgType::Register, "TopicName"),
        (datagram(0x12, &[0x00, 0x00, 0x01, bad[0], bad[1]]), MsgType::Subscribe, "TopicName"),
        (datagram(0x14, &[0x00, 0x00, 0x01, 0xFF]), MsgType::Unsubscribe, "TopicName"),
        (datagram(0x07, &[0x00, bad[0], bad[1]]), MsgType::WillTopic, "WillTopic"),
        (datagram(0x1A, &[0x00, 0x80]), MsgType::WillTopicUpd, "WillTopic"),
    ];
    for (bytes, msg_type, field) in cases {
        assert_eq!(decode(&bytes), Err(DecodeError::InvalidUtf8 { msg_type, field }), "{bytes:02x?}");
    }
}

#[test]
fn sec_5_3_empty_client_id_or_topic_name() {
    let cases = [
        // 5.3.1: a ClientId has 1-23 characters.
        (datagram(0x04, &[0x04, 0x01, 0x00, 0x3C]), MsgType::Connect, "ClientId"),
        (datagram(0x0A, &[0x00, 0x00, 0x00, 0x01]), MsgType::Register, "TopicName"),
        (datagram(0x12, &[0x00, 0x00, 0x01]), MsgType::Subscribe, "TopicName"),
        (datagram(0x14, &[0x00, 0x00, 0x01]), MsgType::Unsubscribe, "TopicName"),
        // Flags without a WillTopic: neither a will nor the two-octet empty WILLTOPIC.
        (datagram(0x07, &[0x20]), MsgType::WillTopic, "WillTopic"),
        (datagram(0x1A, &[0x20]), MsgType::WillTopicUpd, "WillTopic"),
    ];
    for (bytes, msg_type, field) in cases {
        assert_eq!(decode(&bytes), Err(DecodeError::EmptyField { msg_type, field }), "{bytes:02x?}");
    }
}

#[test]
fn sec_5_3_8_protocol_id_other_than_0x01() {
    for protocol_id in [0x00, 0x02, 0x03, 0x04, 0x05, 0xFF] {
        let bytes = datagram(0x04, &[0x04, protocol_id, 0x00, 0x3C, b'c']);
        assert_eq!(decode(&bytes), Err(DecodeError::UnsupportedProtocolId(protocol_id)));
    }
}

#[test]
fn sec_5_5_bad_encapsulation_length() {
    let cases: [(&[u8], usize); 5] = [
        // Below Length, MsgType and Ctrl.
        (&[0x00, 0xFE], 0),
        (&[0x02, 0xFE], 2),
        // Past the datagram.
        (&[0x03, 0xFE], 3),
        (&[0x06, 0xFE, 0x00, 0x01, 0x02], 6),
        // The 3-octet form, which 5.5 does not give the Encapsulated header.
        (&[0x01, 0x00, 0x06, 0xFE, 0x00, 0x01], 6),
    ];
    for (bytes, declared) in cases {
        assert_eq!(
            decode(bytes),
            Err(DecodeError::BadEncapsulationLength { declared, actual: bytes.len() }),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn sec_5_5_nested_encapsulation() {
    let nested = [0x03, 0xFE, 0x00, 0x03, 0xFE, 0x00, 0x02, 0x16];
    assert_eq!(decode(&nested), Err(DecodeError::NestedEncapsulation));
    let nested_long_form = [0x03, 0xFE, 0x00, 0x01, 0x00, 0x07, 0xFE, 0x00, 0x02, 0x16];
    assert_eq!(decode(&nested_long_form), Err(DecodeError::NestedEncapsulation));
}

#[test]
fn sec_5_5_errors_of_the_encapsulated_message_are_its_own() {
    assert_eq!(decode(&[0x03, 0xFE, 0x00]), Err(DecodeError::TooShort { len: 0 }));
    assert_eq!(decode(&[0x03, 0xFE, 0x00, 0x03, 0x16]), Err(DecodeError::LengthMismatch { declared: 3, actual: 2 }));
    assert_eq!(decode(&[0x03, 0xFE, 0x00, 0x02, 0x03]), Err(DecodeError::UnknownMsgType(0x03)));
    assert_eq!(decode(&[0x03, 0xFE, 0x00, 0x02, 0x05]), missing(MsgType::ConnAck, "ReturnCode"));
}

#[test]
fn decode_errors_name_their_message_type_once_read() {
    assert_eq!(DecodeError::TooShort { len: 0 }.msg_type(), None);
    assert_eq!(DecodeError::UnknownMsgType(3).msg_type(), None);
    assert_eq!(decode(&[0x02, 0x0C]).unwrap_err().msg_type(), Some(MsgType::Publish));
    assert_eq!(DecodeError::UnsupportedProtocolId(2).msg_type(), Some(MsgType::Connect));
    assert_eq!(DecodeError::NestedEncapsulation.msg_type(), Some(MsgType::Encapsulated));
}

#[test]
fn decode_errors_say_what_was_wrong() {
    assert_eq!(decode(&[0x02, 0x0C]).unwrap_err().to_string(), "PUBLISH ends before its Flags field");
    assert_eq!(
        DecodeError::LengthMismatch { declared: 3, actual: 2 }.to_string(),
        "Length field says 3 octets, the datagram has 2"
    );
    assert_eq!(DecodeError::UnknownMsgType(0x19).to_string(), "unknown or reserved MsgType 0x19");
}

fn encapsulated(radius: u8, id_len: usize, message: Message) -> Message {
    Message::Encapsulated(Encapsulated {
        radius,
        wireless_node_id: Bytes::from(vec![0x42; id_len]),
        message: Box::new(message),
    })
}

/// Encodes `message` into a buffer that already holds octets, and checks that a failure left
/// them alone.
fn encode_err(message: &Message) -> EncodeError {
    let mut out = BytesMut::from(&b"before"[..]);
    let err = encode(message, &mut out).expect_err("the message cannot be encoded");
    assert_eq!(&out[..], b"before", "nothing is written when encoding fails");
    err
}

#[test]
fn encode_errors() {
    let ping = Message::PingResp;
    assert_eq!(encode_err(&encapsulated(4, 1, ping.clone())), EncodeError::RadiusOutOfRange(4));
    assert_eq!(encode_err(&encapsulated(0, 253, ping.clone())), EncodeError::WirelessNodeIdTooLong { len: 253 });
    assert_eq!(encode_err(&encapsulated(0, 1, encapsulated(0, 1, ping.clone()))), EncodeError::NestedEncapsulation);
    let huge = Message::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Normal(TopicId(1)),
        msg_id: MsgId(0),
        data: Bytes::from(vec![0; 70_000]),
    });
    assert_eq!(encode_err(&huge), EncodeError::TooLarge { len: 70_009 });
    assert_eq!(encode_err(&encapsulated(0, 1, huge)), EncodeError::TooLarge { len: 70_009 });

    // The limits themselves encode.
    let mut out = BytesMut::new();
    assert_eq!(encode(&encapsulated(3, 252, ping), &mut out), Ok(()));
    assert_eq!(out[0], 0xFF);
}
