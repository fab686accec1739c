//! Property tests: arbitrary valid packets survive encoding and decoding for each version;
//! arbitrary and corrupted bytes never make the decoder panic.

use bytes::BytesMut;
use midge_codec::{decode_packet, encode_packet, encoded_len, ProtocolVersion};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::strategies::{packet, version};

/// Decodes everything in `bytes`, stopping at the first incomplete packet or error.
fn decode_stream(bytes: &[u8], version: ProtocolVersion, max_packet_size: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decode_packet(&mut buf, version, max_packet_size) {}
}

fn roundtrip(packet: &midge_codec::Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    encode_packet(packet, version, &mut out).map_err(|err| TestCaseError::fail(format!("{err}")))?;
    prop_assert_eq!(out.len(), encoded_len(packet, version));
    let bytes = out.to_vec();
    let decoded = decode_packet(&mut out, version, usize::MAX);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())), "bytes {:02x?}", bytes);
    prop_assert!(out.is_empty());
    // Every strict prefix is incomplete and left untouched.
    for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        let mut prefix = BytesMut::from(&bytes[..len]);
        prop_assert_eq!(decode_packet(&mut prefix, version, usize::MAX), Ok(None));
        prop_assert_eq!(&prefix[..], &bytes[..len]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v31_packets_roundtrip(packet in packet(ProtocolVersion::V31)) {
        roundtrip(&packet, ProtocolVersion::V31)?;
    }

    #[test]
    fn v311_packets_roundtrip(packet in packet(ProtocolVersion::V311)) {
        roundtrip(&packet, ProtocolVersion::V311)?;
    }

    #[test]
    fn v5_packets_roundtrip(packet in packet(ProtocolVersion::V5)) {
        roundtrip(&packet, ProtocolVersion::V5)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..256),
        version in version(),
        max in prop_oneof![Just(16usize), Just(1024), Just(usize::MAX)],
    ) {
        decode_stream(&bytes, version, max);
    }

    /// Valid packets with a few bytes changed reach deeper into the decoder than random bytes.
    #[test]
    fn corrupted_packets_never_panic(
        packet in packet(ProtocolVersion::V5),
        version in version(),
        changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut out = BytesMut::new();
        if encode_packet(&packet, ProtocolVersion::V5, &mut out).is_ok() {
            let mut bytes = out.to_vec();
            for (index, value) in changes {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            decode_stream(&bytes, version, usize::MAX);
        }
    }
}
