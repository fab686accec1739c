//! Feeds arbitrary bytes to the MQTT-SN datagram decoder, as one datagram. Each datagram that
//! decodes must encode, decode back to the same message, and encode to the input's canonical
//! form: the same octets, except that the Length field takes its shortest form (5.2.1 lets a
//! sender use the 3-octet form for a message under 256 octets; the encoder never does), and the
//! Flags bits that the message does not use, and the reserved bits of an Encapsulated message's
//! Ctrl, are cleared (the decoder ignores them, the encoder writes 0).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use midge_sn_codec::{decode, encode, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode(data) else {
        return;
    };
    let mut out = BytesMut::new();
    if let Err(err) = encode(&message, &mut out) {
        panic!("decoded {message:?} but cannot encode it: {err}");
    }
    assert_eq!(out.len(), message.encoded_len(), "encoded_len of {message:?}");
    assert_eq!(decode(&out).as_ref(), Ok(&message), "the re-encoded datagram decodes differently");
    assert_eq!(&out[..], &canonical(data, &message)[..], "not the canonical form of the input");
});

/// `datagram`, which decoded to `message`, with its Length field in the shortest form and the
/// flags its message does not use cleared. Written from the specification apart from the codec
/// (as in midge-sn-codec's `tests/sn/support.rs`), so the two check each other.
fn canonical(datagram: &[u8], message: &Message) -> Vec<u8> {
    if let Message::Encapsulated(encapsulated) = message {
        // 5.5: a one-octet Length that counts Length, MsgType, Ctrl and the Wireless Node Id.
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
    let mut out = if body.len() < 255 {
        vec![body.len() as u8 + 1]
    } else {
        let [high, low] = ((body.len() + 3) as u16).to_be_bytes();
        vec![0x01, high, low]
    };
    out.extend(body);
    out
}

/// The bits of the Flags octet (5.3.4) that `message` uses, if it has a Flags octet.
fn used_flags(message: &Message) -> Option<u8> {
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
