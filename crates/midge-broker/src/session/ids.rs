//! The message ids of a spilled session's deliveries, in delivery order, in about one byte
//! each (decision 0006): what an offline session keeps in memory per queued message.
//!
//! Message ids are handed out in publish order, so a session's queue holds ids that mostly
//! rise by small steps (by one in a fan-out, by the number of other topics' messages between
//! two of its own otherwise). Each id is stored as the zig-zag varint of its difference from
//! the one before: one byte for a step under 64 either way, ten at worst.

use std::collections::VecDeque;

/// A queue of message ids, delta-encoded. Pops from the front, pushes at both ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct IdQueue {
    /// The varints of every id after the first, each the difference from the one before.
    deltas: VecDeque<u8>,
    /// The first id (meaningless when empty).
    front: u64,
    /// The last id (meaningless when empty).
    back: u64,
    len: usize,
}

impl IdQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `id` after the last.
    pub(crate) fn push_back(&mut self, id: u64) {
        if self.len == 0 {
            self.front = id;
        } else {
            let mut encoded = [0u8; 10];
            let n = encode(zigzag(id.wrapping_sub(self.back)), &mut encoded);
            self.deltas.extend(&encoded[..n]);
        }
        self.back = id;
        self.len += 1;
    }

    /// Puts `id` before the first.
    pub(crate) fn push_front(&mut self, id: u64) {
        if self.len == 0 {
            self.back = id;
        } else {
            let mut encoded = [0u8; 10];
            let n = encode(zigzag(self.front.wrapping_sub(id)), &mut encoded);
            for &byte in encoded[..n].iter().rev() {
                self.deltas.push_front(byte);
            }
        }
        self.front = id;
        self.len += 1;
    }

    /// Takes the first id.
    pub(crate) fn pop_front(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let first = self.front;
        self.len -= 1;
        if self.len > 0 {
            let delta = decode(&mut self.deltas);
            self.front = first.wrapping_add(unzigzag(delta));
        } else {
            self.deltas.clear();
        }
        Some(first)
    }

    /// Takes every id, in order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = u64> + '_ {
        std::iter::from_fn(move || self.pop_front())
    }

    /// Bytes of memory the encoded ids take beyond the queue itself. For tests.
    #[cfg(test)]
    pub(crate) fn encoded_len(&self) -> usize {
        self.deltas.len()
    }
}

fn zigzag(delta: u64) -> u64 {
    let signed = delta as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as u64
}

/// LEB128: seven bits a byte, low first, the high bit set on all but the last.
fn encode(mut value: u64, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[n] = byte;
            return n + 1;
        }
        out[n] = byte | 0x80;
        n += 1;
    }
}

fn decode(bytes: &mut VecDeque<u8>) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(byte) = bytes.pop_front() {
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    value
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::IdQueue;

    /// A fan-out's ids, one apart, take a byte each.
    #[test]
    fn consecutive_ids_take_a_byte_each() {
        let mut ids = IdQueue::default();
        for id in 1_000..2_000 {
            ids.push_back(id);
        }
        assert_eq!((ids.len(), ids.encoded_len()), (1_000, 999));
        assert!(ids.drain().eq(1_000..2_000));
        assert!(ids.is_empty());
    }

    proptest! {
        /// Whatever is pushed at either end comes out in order: front pushes reversed, then
        /// back pushes, with pops anywhere between.
        #[test]
        fn the_queue_keeps_any_ids_in_order(
            steps in proptest::collection::vec((any::<u8>(), any::<u64>()), 0..200),
        ) {
            let mut ids = IdQueue::default();
            let mut model = std::collections::VecDeque::new();
            for (action, id) in steps {
                match action % 3 {
                    0 => { ids.push_back(id); model.push_back(id); }
                    1 => { ids.push_front(id); model.push_front(id); }
                    _ => prop_assert_eq!(ids.pop_front(), model.pop_front()),
                }
                prop_assert_eq!(ids.len(), model.len());
            }
            prop_assert!(ids.drain().eq(model.into_iter()));
        }
    }
}
