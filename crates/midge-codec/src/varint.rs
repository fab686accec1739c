//! Variable Byte Integers (section 1.5.5): the remaining length, property lengths, property
//! identifiers and Subscription Identifiers.
//!
//! Seven bits per byte, least significant group first, the high bit saying "more follows"; at
//! most four bytes, so the largest value is 268,435,455.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;

/// The largest value four bytes can carry; also the largest remaining length.
pub(crate) const MAX: usize = 268_435_455;

/// Decodes a variable byte integer at the start of `buf`: its value and encoded length, or
/// `None` when `buf` ends before the last byte. A fourth byte that still has its continuation
/// bit set would announce a fifth, which the encoding forbids (section 1.5.5).
///
/// Non-minimal encodings (e.g. `80 00` for 0) are accepted: the rule that the minimum number of
/// bytes be used (MQTT-1.5.5-1) binds the sender, and accepting them is harmless.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (index, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"));
    }
    Ok(None)
}

/// The number of bytes [`put`] writes for `value`. Assumes `value <= MAX`.
pub(crate) fn len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value`. Assumes `value <= MAX`: callers check it first, because a larger value has
/// no encoding and would silently lose its high bits.
pub(crate) fn put(out: &mut BytesMut, value: usize) {
    let mut rest = value;
    loop {
        // The mask keeps the cast lossless.
        let mut byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of section 1.5.5 (table 1-1): each boundary value and its encoding.
    const SPEC_EXAMPLES: &[(u32, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];

    #[test]
    fn decodes_spec_examples() {
        for &(value, bytes) in SPEC_EXAMPLES {
            assert_eq!(decode(bytes), Ok(Some((value, bytes.len()))), "{value}");
        }
    }

    #[test]
    fn encodes_spec_examples() {
        for &(value, bytes) in SPEC_EXAMPLES {
            let mut out = BytesMut::new();
            put(&mut out, value as usize);
            assert_eq!(&out[..], bytes, "{value}");
            assert_eq!(len(value as usize), bytes.len(), "{value}");
        }
    }

    #[test]
    fn incomplete_is_none() {
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0x80]), Ok(None));
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF]), Ok(None));
    }

    #[test]
    fn fifth_byte_is_malformed() {
        assert!(matches!(decode(&[0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode(&[0x80, 0x80, 0x80, 0x80, 0x01]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn non_minimal_encoding_is_accepted() {
        assert_eq!(decode(&[0x80, 0x00]), Ok(Some((0, 2))));
    }
}
