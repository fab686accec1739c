//! Feeds arbitrary bytes to the packet decoder as every protocol version and with a few packet
//! size limits, decoding packet after packet until one is incomplete or an error. Each packet
//! that decodes must also encode, and decode back to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use midge_codec::{decode_packet, encode_packet, Packet, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] =
    [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5];

/// Below most packets, a typical configured limit, and none.
const MAX_PACKET_SIZES: [usize; 3] = [16, 1024, usize::MAX];

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        for max_packet_size in MAX_PACKET_SIZES {
            let mut buf = BytesMut::from(data);
            while let Ok(Some(packet)) = decode_packet(&mut buf, version, max_packet_size) {
                check_roundtrip(&packet, version);
            }
        }
    }
});

/// A decoded packet re-encodes, and the bytes decode to an equal packet. CONNECT is encoded
/// with the version it announced.
fn check_roundtrip(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let mut out = BytesMut::new();
    if let Err(err) = encode_packet(packet, version, &mut out) {
        panic!("decoded {packet:?} but cannot encode it: {err}");
    }
    let again = decode_packet(&mut out, version, usize::MAX);
    assert_eq!(again, Ok(Some(packet.clone())), "re-encoded packet decodes differently");
    assert!(out.is_empty());
}
