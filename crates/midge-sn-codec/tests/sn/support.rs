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

/// The datagram the encoder writes for a `datagram` that decoded to `message`: the same octets,
/// except that the Length field takes its shortest form (5.2.1 lets a sender use the 3-octet
/// form for a short message), the flags the message does not use are cleared (5.3.4 lists them
/// as "not used"), and so are the reserved bits of an Encapsulated message's Ctrl (5.5).
///
/// Written from the specification apart from the codec, so the two check each other.
pub fn canonical(datagram: &[u8], message: &Message) -> Vec<u8> {
    if let Message::Encapsulated(encapsulated) = message {
        let header_len = usize::from(datagram[0]);
        let mut out = vec![datagram[0], datagram[1], datagram[2] & 0b11];
        out.extend_from_slice(&datagram[3..header_len]);
        out.extend(canonical(&datagram[header_len..], &encapsulated.message));
        return out;
    }
    let mut body = if datagram[0] == 0x01 { datagram[3..].to_vec() } else { datagram[1..].to_vec() };
    if let Some(used) = used_flags(message) {
        body[1] &= used;
    }
    with_length(body)
}

/// The bits of the Flags octet that `message` uses, if it has a Flags octet (5.3.4 and each
/// message's section).
pub fn used_flags(message: &Message) -> Option<u8> {
    const DUP: u8 = 0x80;
    const QOS: u8 = 0x60;
    const RETAIN: u8 = 0x10;
    const WILL: u8 = 0x08;
    const CLEAN_SESSION: u8 = 0x04;
    const TOPIC_ID_TYPE: u8 = 0x03;
    match message {
        Message::Connect(_) => Some(WILL | CLEAN_SESSION),
        Message::WillTopic { will: Some(_) } | Message::WillTopicUpd { will: Some(_) } => Some(QOS | RETAIN),
        Message::Publish(_) => Some(DUP | QOS | RETAIN | TOPIC_ID_TYPE),
        Message::Subscribe(_) => Some(DUP | QOS | TOPIC_ID_TYPE),
        Message::SubAck(_) => Some(QOS),
        Message::Unsubscribe(_) => Some(TOPIC_ID_TYPE),
        _ => None,
    }
}
