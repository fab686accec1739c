//! Helpers shared by the wire tests.

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode_packet, encode_packet, encoded_len, DecodeError, MqttString, Packet, PacketId, ProtocolVersion, TopicFilter,
    TopicName,
};

/// Every version, for tests that hold for all of them.
pub const ALL: [ProtocolVersion; 3] = [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5];

/// The 3.x versions.
pub const V3: [ProtocolVersion; 2] = [ProtocolVersion::V31, ProtocolVersion::V311];

/// A frame: `first` byte, remaining length, `body`.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut rest = body.len();
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A two byte length and the bytes: a UTF-8 string or Binary Data on the wire.
pub fn str16(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// Decodes `bytes` as one whole packet, checking that all of it was consumed.
pub fn decode(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode_packet(&mut buf, version, usize::MAX)?;
    let packet = packet.unwrap_or_else(|| panic!("incomplete: {bytes:02x?}"));
    assert!(buf.is_empty(), "{} bytes left after {}", buf.len(), packet.kind());
    Ok(packet)
}

/// Encodes `packet`, checking that `encoded_len` predicted the length.
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(packet, version, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(packet, version), "encoded_len of {}", packet.kind());
    out.to_vec()
}

/// `bytes` decode to `packet`, and `packet` encodes to `bytes`.
pub fn assert_wire(bytes: &[u8], packet: &Packet, version: ProtocolVersion) {
    assert_eq!(&decode(bytes, version).unwrap(), packet, "decoding {bytes:02x?} as {version:?}");
    assert_eq!(encode(packet, version), bytes, "encoding {packet:?} as {version:?}");
}

/// The error decoding `bytes` gives.
pub fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    match decode(bytes, version) {
        Ok(packet) => panic!("decoded {packet:?} from {bytes:02x?} as {version:?}"),
        Err(err) => err,
    }
}

pub fn assert_malformed(bytes: &[u8], version: ProtocolVersion) {
    let err = decode_err(bytes, version);
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?} for {bytes:02x?} as {version:?}");
}

pub fn assert_protocol(bytes: &[u8], version: ProtocolVersion) {
    let err = decode_err(bytes, version);
    assert!(matches!(err, DecodeError::Protocol(_)), "{err:?} for {bytes:02x?} as {version:?}");
}

pub fn s(text: &str) -> MqttString {
    MqttString::new(text).unwrap()
}

pub fn topic(text: &str) -> TopicName {
    TopicName::new(text).unwrap()
}

pub fn filter(text: &str) -> TopicFilter {
    TopicFilter::new(text).unwrap()
}

pub fn pid(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

pub fn bytes(value: &'static [u8]) -> Bytes {
    Bytes::from_static(value)
}
