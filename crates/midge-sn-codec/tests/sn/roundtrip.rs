//! Property tests: any message survives encoding and decoding with the shortest Length field;
//! any octets, and valid datagrams with a few octets changed, decode to a message or an error
//! without a panic, and what decodes encodes back to the canonical form of its input.

use midge_sn_codec::{decode, DecodeError};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::samples;
use crate::strategies::message;
use crate::support::{canonical, encode_vec};

/// If `bytes` decode, the message encodes back to their canonical form and decodes to itself.
fn check_decoded(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = decode(bytes) {
        let encoded = encode_vec(&message);
        prop_assert_eq!(&encoded, &canonical(bytes, &message), "input {:02x?}", bytes);
        prop_assert_eq!(decode(&encoded), Ok(message));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn messages_roundtrip(message in message()) {
        let bytes = encode_vec(&message);
        prop_assert_eq!(decode(&bytes), Ok(message.clone()));
        // 5.2.1: the encoder takes the 1-octet form whenever the message fits it.
        let inner = match &message {
            midge_sn_codec::Message::Encapsulated(_) => &bytes[usize::from(bytes[0])..],
            _ => &bytes[..],
        };
        prop_assert_eq!(inner[0] == 0x01, inner.len() > 255, "header of {:02x?}", &inner[..3]);
    }

    #[test]
    fn a_missing_or_extra_octet_is_refused(message in message(), extra in any::<u8>()) {
        let bytes = encode_vec(&message);
        prop_assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(matches!(
            decode(&longer),
            Err(DecodeError::LengthMismatch { .. } | DecodeError::NestedEncapsulation)
                | Err(DecodeError::BadEncapsulationLength { .. })
        ), "{:02x?} decodes to {:?}", longer, decode(&longer));
    }

    #[test]
    fn arbitrary_octets_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        check_decoded(&bytes)?;
    }

    /// Valid datagrams with a few octets changed reach deeper into the decoder than random ones.
    #[test]
    fn corrupted_datagrams_never_panic(
        index in any::<prop::sample::Index>(),
        changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let samples = samples::messages();
        let mut bytes = encode_vec(index.get(&samples));
        for (at, value) in changes {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        check_decoded(&bytes)?;
    }
}
