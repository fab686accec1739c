//! Helpers shared by the wire tests.

use bytes::BytesMut;
use midge_sn_codec::{decode, encode, ClientId, Message, TopicName};

/// A datagram: the Length field in its shortest form, the MsgType octet, the variable part.
pub fn datagram(msg_type: u8, variable: &[u8]) -> Vec<u8> {
    let mut body = vec![msg_type];
    body.extend_from_slice(variable);
    with_length(body)
}

/// `body` (MsgType and variable part) behind a Length field in its shortest form (5.2.1).
pub fn with_length(body: Vec<u8>) -> Vec<u8> {
    let mut out = if body.len() < 255 {
        vec![body.len() as u8 + 1]
    } else {
        let total = u16::try_from(body.len() + 3).expect("test datagrams fit the 3-octet form");
        let [high, low] = total.to_be_bytes();
        vec![0x01, high, low]
    };
    out.extend(body);
    out
}

/// Encodes `message`, checking that `encoded_len` predicted the length.
pub fn encode_vec(message: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(message, &mut out).unwrap_or_else(|err| panic!("cannot encode {message:?}: {err}"));
    assert_eq!(out.len(), message.encoded_len(), "encoded_len of {message:?}");
    out.to_vec()
}

/// `bytes` decode to `message`, and `message` encodes to `bytes`.
pub fn assert_wire(bytes: &[u8], message: &Message) {
    assert_eq!(decode(bytes).as_ref(), Ok(message), "decoding {bytes:02x?}");
    assert_eq!(encode_vec(message), bytes, "encoding {message:?}");
}

pub fn topic(text: &str) -> TopicName {
    TopicName::new(text).expect("test topics are not empty")
}

pub fn client(text: &str) -> ClientId {
    ClientId::new(text).expect("test client ids are not empty")
}
