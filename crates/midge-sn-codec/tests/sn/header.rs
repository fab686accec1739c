//! 5.2.1 Length: one octet up to 255 octets, `0x01` and two octets from 256 on; the length
//! counts the whole message, the Length field included.

use bytes::{Bytes, BytesMut};
use midge_sn_codec::{
    decode, encode, DecodeError, EncodeError, Message, MsgId, Publish, PublishTopic, QoS, TopicId, MAX_MESSAGE_LEN,
};

use crate::support::{assert_wire, encode_vec};

/// A QoS 0 PUBLISH to a predefined topic id: 7 octets of header and fields (short form) plus
/// its data.
fn publish(data_len: usize) -> Message {
    Message::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Predefined(TopicId(1)),
        msg_id: MsgId(0),
        data: Bytes::from(vec![0xA5; data_len]),
    })
}

/// MsgType, Flags, TopicId and MsgId of [`publish`], without the Length field.
const PUBLISH_FIELDS: [u8; 6] = [0x0C, 0x01, 0x00, 0x01, 0x00, 0x00];

fn publish_bytes(length_field: &[u8], data_len: usize) -> Vec<u8> {
    let mut bytes = length_field.to_vec();
    bytes.extend_from_slice(&PUBLISH_FIELDS);
    bytes.resize(bytes.len() + data_len, 0xA5);
    bytes
}

#[test]
fn sec_5_2_1_a_message_of_255_octets_takes_the_1_octet_form() {
    assert_wire(&publish_bytes(&[0xFF], 248), &publish(248));
}

#[test]
fn sec_5_2_1_a_message_of_256_octets_or_more_takes_the_3_octet_form() {
    // 249 octets of data make a body of 255, 256 octets with one Length octet: too long for
    // it, so 258 with three.
    assert_wire(&publish_bytes(&[0x01, 0x01, 0x02], 249), &publish(249));
    assert_wire(&publish_bytes(&[0x01, 0x01, 0x03], 250), &publish(250));
    assert_wire(&publish_bytes(&[0x01, 0x10, 0x09], 4096), &publish(4096));
}

#[test]
fn sec_5_2_1_the_3_octet_form_reaches_65535_octets() {
    let data_len = MAX_MESSAGE_LEN - 3 - PUBLISH_FIELDS.len();
    let bytes = encode_vec(&publish(data_len));
    assert_eq!(bytes.len(), MAX_MESSAGE_LEN);
    assert_eq!(&bytes[..3], &[0x01, 0xFF, 0xFF]);
    assert_eq!(decode(&bytes), Ok(publish(data_len)));

    let too_long = publish(data_len + 1);
    let mut out = BytesMut::from(&b"kept"[..]);
    assert_eq!(encode(&too_long, &mut out), Err(EncodeError::TooLarge { len: MAX_MESSAGE_LEN + 1 }));
    assert_eq!(&out[..], b"kept", "nothing is written when encoding fails");
}

#[test]
fn sec_5_2_1_the_3_octet_form_is_accepted_for_a_short_message_and_encoded_short() {
    // "Messages with lengths smaller than 256 octets may use the shorter 1-octet format": may,
    // so a sender can use the long form too.
    let message = decode(&[0x01, 0x00, 0x04, 0x16]).unwrap();
    assert_eq!(message, Message::PingReq { client_id: None });
    assert_eq!(encode_vec(&message), [0x02, 0x16]);
    assert_eq!(decode(&publish_bytes(&[0x01, 0x00, 0x0B], 2)), Ok(publish(2)));
}

#[test]
fn sec_5_2_1_the_length_counts_the_length_field_itself() {
    assert_eq!(decode(&[0x02, 0x17]), Ok(Message::PingResp));
    assert_eq!(decode(&[0x01, 0x00, 0x04, 0x17]), Ok(Message::PingResp));
    assert_eq!(decode(&[0x01, 0x00, 0x02, 0x17]), Err(DecodeError::LengthMismatch { declared: 2, actual: 4 }));
}

#[test]
fn sec_5_2_1_encoded_len_matches_both_forms() {
    for data_len in [0, 1, 247, 248, 249, 250, 1000] {
        let message = publish(data_len);
        let expected = if data_len <= 248 { 7 + data_len } else { 9 + data_len };
        assert_eq!(message.encoded_len(), expected, "data of {data_len} octets");
        assert_eq!(encode_vec(&message).len(), expected);
    }
}
