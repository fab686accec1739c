//! The input of the `store_recovery` target: the damages done to a store's files before it is
//! recovered, built by `arbitrary` from the fuzzer's bytes and written back by [`Encode`] for
//! the seed corpus (`tests/seeds.rs`).

use arbitrary::Arbitrary;

use crate::encode::{variant, Encode};

/// What to do to the store's files, in order (the target applies at most four).
#[derive(Arbitrary, Debug, PartialEq, Eq)]
pub struct Input {
    pub damages: Vec<Damage>,
}

/// One damage. `file` indexes the pristine store's files (sorted by path, directories left
/// out) modulo their number; offsets are taken modulo the part of the file that holds data
/// (journals are preallocated with zeros).
#[derive(Arbitrary, Debug, PartialEq, Eq)]
pub enum Damage {
    Truncate {
        file: u8,
        at: u32,
    },
    /// XOR of one byte with `mask` (0 is taken as 1).
    Flip {
        file: u8,
        at: u32,
        mask: u8,
    },
    /// Up to 64 bytes written from `at` on, the file growing if they pass its end.
    Overwrite {
        file: u8,
        at: u32,
        bytes: Vec<u8>,
    },
    Zero {
        file: u8,
        at: u32,
        len: u16,
    },
    Delete {
        file: u8,
    },
}

impl Encode for Input {
    fn encode(&self, out: &mut Vec<u8>) {
        self.damages.encode(out);
    }
}

impl Encode for Damage {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Damage::Truncate { file, at } => {
                variant(out, 0, 5);
                (file, at).encode(out);
            }
            Damage::Flip { file, at, mask } => {
                variant(out, 1, 5);
                (file, at, mask).encode(out);
            }
            Damage::Overwrite { file, at, bytes } => {
                variant(out, 2, 5);
                (file, at, bytes).encode(out);
            }
            Damage::Zero { file, at, len } => {
                variant(out, 3, 5);
                (file, at, len).encode(out);
            }
            Damage::Delete { file } => {
                variant(out, 4, 5);
                file.encode(out);
            }
        }
    }
}
