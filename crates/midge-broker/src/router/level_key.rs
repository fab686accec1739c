//! A stored topic level, inline when short, and its comparison with a level of a topic.
//!
//! Matching compares a topic's levels with the trie's several times per topic, nearly always
//! with short levels (names, numbers, short ids). Comparing slices of unknown length calls
//! `memcmp` (a fifth of a match's instructions, measured), so [`LevelKey::matches`] compares the
//! lengths and then the bytes in a few word-sized loads, with no call.

/// Bytes of a level kept inline. 22 makes [`LevelKey`] 24 bytes, the size of the boxed form plus
/// its tag, and covers the levels real topics are made of (names, ids, short hashes).
pub(crate) const INLINE_LEVEL: usize = 22;

/// A level string, inline when short.
#[derive(Clone)]
pub(crate) enum LevelKey {
    /// Up to [`INLINE_LEVEL`] bytes.
    Inline {
        /// How many bytes of `bytes` are used.
        len: u8,
        /// The level, then zeros.
        bytes: [u8; INLINE_LEVEL],
    },
    /// A longer level.
    Heap(Box<[u8]>),
}

impl LevelKey {
    /// The stored form of `level`.
    pub(crate) fn new(level: &str) -> Self {
        let level = level.as_bytes();
        if level.len() <= INLINE_LEVEL {
            let mut bytes = [0; INLINE_LEVEL];
            bytes[..level.len()].copy_from_slice(level);
            // Lossless: at most INLINE_LEVEL, checked just above.
            LevelKey::Inline { len: level.len() as u8, bytes }
        } else {
            LevelKey::Heap(level.into())
        }
    }

    /// The level's bytes (UTF-8, but only ever compared).
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            LevelKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            LevelKey::Heap(bytes) => bytes,
        }
    }

    /// Whether this is `level`.
    #[inline(always)]
    pub(crate) fn matches(&self, level: &[u8]) -> bool {
        match self {
            LevelKey::Inline { len, bytes } => {
                usize::from(*len) == level.len() && short_eq(&bytes[..level.len()], level)
            }
            LevelKey::Heap(bytes) => **bytes == *level,
        }
    }
}

/// `a == b` for two slices of the same length, at most [`INLINE_LEVEL`] bytes, without a call:
/// two possibly overlapping loads per side cover any length within a power-of-two bracket.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if n >= 8 {
        // 8..=22: the first 8, the middle 8 (when longer than 16) and the last 8 bytes.
        let mid = if n > 16 { word8(a, 8) == word8(b, 8) } else { true };
        word8(a, 0) == word8(b, 0) && mid && word8(a, n - 8) == word8(b, n - 8)
    } else if n >= 4 {
        word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4)
    } else if n >= 1 {
        // 1..=3: first, middle and last byte (some the same byte).
        a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]
    } else {
        true
    }
}

#[inline]
fn word8(s: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(word)
}

#[inline]
fn word4(s: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_agrees_with_slice_equality_at_every_length() {
        // Every length up to past the inline limit, and a difference at every position.
        for n in 0..=INLINE_LEVEL + 3 {
            let level: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let key = LevelKey::new(&level);
            assert!(key.matches(level.as_bytes()), "{level:?}");
            assert_eq!(key.as_bytes(), level.as_bytes());
            for at in 0..n {
                let mut other = level.clone().into_bytes();
                other[at] = b'#';
                assert!(!key.matches(&other), "{level:?} vs difference at {at}");
            }
            assert!(!key.matches(format!("{level}x").as_bytes()));
            if n > 0 {
                assert!(!key.matches(&level.as_bytes()[..n - 1]));
            }
        }
    }
}
