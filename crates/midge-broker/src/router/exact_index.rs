//! Filters without wildcards, found by the whole topic in one hash lookup.
//!
//! An exact filter matches one topic only, byte for byte, so it needs no trie: kept in the trie,
//! `site/{n}/dev/{m}/temp` costs a node per level and, on every publish to it, a chain of
//! dependent cache misses down to its subscribers (the level table of `site/{n}/dev/`, the node
//! for `{m}`, the node for `temp`, then its subscriptions). Here it costs one slot, and a publish
//! reads the slot and then the subscriptions. The trie keeps the filters with `+` or a final `#`,
//! far fewer, so its tables and nodes stay small enough to remain cached.
//!
//! Open addressing with linear probing, as [`LevelTable`](super::level_table::LevelTable), with
//! each slot holding the key's full hash beside the boxed value (16 bytes, four slots to a cache
//! line): a probe compares hashes, and reads a key only when they are equal. The hash is keyed
//! with a secret drawn once per process, because topics come from clients.

use std::sync::OnceLock;

use ahash::RandomState;

/// Something stored under a string key it holds itself.
pub(crate) trait Keyed {
    /// The key.
    fn key(&self) -> &str;
}

/// Slots in the smallest non-empty table.
const MIN_SLOTS: usize = 16;

/// A key's full hash and its boxed value, or nothing. 16 bytes: `Box` gives `Option` its tag.
type Slot<T> = Option<(u64, Box<T>)>;

/// Boxed values by their key.
pub(crate) struct ExactIndex<T> {
    /// Empty (no allocation) or a power of two long. An entry sits at its hash's slot or after
    /// it, with no empty slot in between.
    slots: Box<[Slot<T>]>,
    /// Entries held.
    len: usize,
}

impl<T> Default for ExactIndex<T> {
    fn default() -> Self {
        ExactIndex { slots: Box::default(), len: 0 }
    }
}

impl<T: Keyed> ExactIndex<T> {
    /// The value stored under `key`.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        let at = self.find(key)?;
        self.slots[at].as_ref().map(|(_, value)| &**value)
    }

    /// The value stored under `key`, mutably.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        let at = self.find(key)?;
        self.slots[at].as_mut().map(|(_, value)| &mut **value)
    }

    /// Stores `value` under its key. Assumes the key is absent.
    pub(crate) fn insert(&mut self, value: Box<T>) {
        debug_assert!(self.find(value.key()).is_none(), "key inserted twice");
        if slots_for(self.len + 1) > self.slots.len() {
            self.grow();
        }
        let hash = hash_of(value.key());
        self.place(hash, value);
        self.len += 1;
    }

    /// Removes and returns the value stored under `key`, if any.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Box<T>> {
        let at = self.find(key)?;
        let (_, value) = self.slots[at].take()?;
        self.len -= 1;
        // Backward shift, as in LevelTable: move later entries of the run into the hole when
        // their own slot is cyclically outside (hole, next], so all stay reachable.
        let mask = self.slots.len() - 1;
        let mut hole = at;
        let mut next = (hole + 1) & mask;
        while let Some((hash, _)) = &self.slots[next] {
            let home = slot_of(*hash, mask);
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[next].take();
                hole = next;
            }
            next = (next + 1) & mask;
        }
        if self.len == 0 {
            // Free the table: an index emptied by churn should not hold its peak size.
            self.slots = Box::default();
        }
        Some(value)
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where `key`'s entry is.
    #[inline]
    fn find(&self, key: &str) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = hash_of(key);
        let mask = self.slots.len() - 1;
        let mut at = slot_of(hash, mask);
        loop {
            match &self.slots[at] {
                None => return None,
                Some((stored, value)) if *stored == hash && value.key() == key => return Some(at),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Puts an entry in the first empty slot from its hash's. Assumes there is one.
    fn place(&mut self, hash: u64, value: Box<T>) {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(hash, mask);
        while self.slots[at].is_some() {
            at = (at + 1) & mask;
        }
        self.slots[at] = Some((hash, value));
    }

    /// Doubles the slots (or makes the first ones) and places every entry again.
    fn grow(&mut self) {
        let count = (self.slots.len() * 2).max(MIN_SLOTS);
        let larger = std::iter::repeat_with(|| None).take(count).collect();
        let old = std::mem::replace(&mut self.slots, larger);
        for (hash, value) in old.into_vec().into_iter().flatten() {
            self.place(hash, value);
        }
    }
}

/// Slots needed for `entries` at no more than three quarters full.
fn slots_for(entries: usize) -> usize {
    (entries + entries / 3 + 1).next_power_of_two().max(MIN_SLOTS)
}

/// The keyed hash of `key`.
#[inline]
fn hash_of(key: &str) -> u64 {
    static SEEDED: OnceLock<RandomState> = OnceLock::new();
    SEEDED.get_or_init(RandomState::new).hash_one(key.as_bytes())
}

/// The slot where the search for `hash` starts.
#[inline]
fn slot_of(hash: u64, mask: usize) -> usize {
    // Truncation intended: the mask keeps low bits only. ahash mixes every bit into them.
    (hash as usize) & mask
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    struct Entry(String, u32);

    impl Keyed for Entry {
        fn key(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn grows_keeps_entries_and_frees_when_empty() {
        let mut index = ExactIndex::default();
        assert_eq!(index.slots.len(), 0, "no allocation while empty");
        assert!(index.get("a").is_none());
        for n in 0..1000 {
            index.insert(Box::new(Entry(format!("a/{n}"), n)));
            assert!(index.len * 4 <= index.slots.len() * 3, "at most three quarters full");
        }
        assert_eq!(index.len(), 1000);
        for n in 0..1000 {
            assert_eq!(index.get(&format!("a/{n}")).map(|e| e.1), Some(n));
        }
        assert!(index.get("a/1000").is_none());
        if let Some(entry) = index.get_mut("a/7") {
            entry.1 = 70;
        }
        assert_eq!(index.get("a/7").map(|e| e.1), Some(70));
        for n in 0..1000 {
            assert!(index.remove(&format!("a/{n}")).is_some());
        }
        assert_eq!(index.slots.len(), 0, "freed once empty");
    }

    proptest! {
        /// Any sequence of inserts and removes, in a table small enough that runs wrap around
        /// its end, agrees with a `HashMap`.
        #[test]
        fn agrees_with_a_hash_map(ops in prop::collection::vec((any::<bool>(), 0..40u32), 0..300)) {
            let mut index = ExactIndex::default();
            let mut model = HashMap::new();
            for (insert, n) in ops {
                let key = n.to_string();
                if insert && !model.contains_key(&key) {
                    index.insert(Box::new(Entry(key.clone(), n)));
                    model.insert(key, n);
                } else {
                    prop_assert_eq!(index.remove(&key).map(|e| e.1), model.remove(&key));
                }
                prop_assert_eq!(index.len(), model.len());
                for m in 0..40u32 {
                    let key = m.to_string();
                    prop_assert_eq!(index.get(&key).map(|e| e.1), model.get(&key).copied());
                }
            }
        }
    }
}
