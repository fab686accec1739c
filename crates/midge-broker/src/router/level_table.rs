//! The hash table behind a node with many literal children: level to child, one cache miss a
//! lookup.
//!
//! A `std` `HashMap` (hashbrown) keeps its control bytes and its entries in two arrays, so a
//! lookup in a table too large to stay cached costs two misses: the control group, then the
//! entry. With a million subscriptions the tables of `site/{n}/dev/` are such tables, on every
//! publish. This one is plain linear probing over the entries themselves, two to a cache line and
//! at most three quarters full: the first line probed almost always holds the entry or the empty
//! slot that ends the search, so a lookup costs one miss.
//!
//! Levels come from clients, so the hash is keyed with a secret drawn once per process (as for
//! the maps it replaces): without the key a client cannot pick levels that collide, which is
//! what linear probing would otherwise make expensive.

use std::sync::OnceLock;

use ahash::RandomState;

use super::arena::NodeId;
use super::level_key::LevelKey;

/// Slots in the smallest table: the map promotes at a few children, so it never starts below
/// this many entries, and a power of two lets a hash be reduced to a slot with a mask.
const MIN_SLOTS: usize = 16;

/// Level to child, open addressing with linear probing.
pub(crate) struct LevelTable {
    /// `slots.len()` is a power of two, at least [`MIN_SLOTS`]. An entry sits at its hash's slot
    /// or after it, with no empty slot in between.
    slots: Box<[Slot]>,
    /// Entries held.
    len: usize,
}

impl LevelTable {
    /// A table with room for `capacity` entries before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        LevelTable { slots: empty_slots(slots_for(capacity)), len: 0 }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The child reached through `level`. Kept out of line: `LevelMap::get` is inlined into the
    /// walk, and hashing is too long to copy at each of its call sites.
    #[inline(never)]
    pub(crate) fn get(&self, level: &[u8]) -> Option<NodeId> {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(level, mask);
        loop {
            match &self.slots[at].0 {
                None => return None,
                Some((key, id)) if key.matches(level) => return Some(*id),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Adds an entry. Assumes `key` is absent.
    pub(crate) fn insert(&mut self, key: LevelKey, id: NodeId) {
        debug_assert!(self.get(key.as_bytes()).is_none(), "level inserted twice");
        if slots_for(self.len + 1) > self.slots.len() {
            self.grow();
        }
        self.place(key, id);
        self.len += 1;
    }

    /// Removes the entry for `level`, if any, and returns its child.
    pub(crate) fn remove(&mut self, level: &[u8]) -> Option<NodeId> {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(level, mask);
        loop {
            match &self.slots[at].0 {
                None => return None,
                Some((key, _)) if key.matches(level) => break,
                Some(_) => at = (at + 1) & mask,
            }
        }
        let (_, id) = self.slots[at].0.take()?;
        self.len -= 1;
        // Backward shift: move later entries of the run into the hole when their own slot is at
        // or before it, so that every entry stays reachable without tombstones.
        let mut hole = at;
        let mut next = (hole + 1) & mask;
        while let Some((key, _)) = &self.slots[next].0 {
            let home = slot_of(key.as_bytes(), mask);
            // Whether `home` is cyclically outside (hole, next]: then the entry may move back.
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole].0 = self.slots[next].0.take();
                hole = next;
            }
            next = (next + 1) & mask;
        }
        Some(id)
    }

    /// Every entry, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(LevelKey, NodeId)> {
        self.slots.iter().filter_map(|slot| slot.0.as_ref())
    }

    /// Takes every entry out, leaving the table empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (LevelKey, NodeId)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(|slot| slot.0.take())
    }

    /// Puts an entry in the first empty slot from its hash's. Assumes there is one.
    fn place(&mut self, key: LevelKey, id: NodeId) {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(key.as_bytes(), mask);
        while self.slots[at].0.is_some() {
            at = (at + 1) & mask;
        }
        self.slots[at].0 = Some((key, id));
    }

    /// Doubles the slots and places every entry again.
    fn grow(&mut self) {
        let doubled = empty_slots(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, doubled);
        for (key, id) in old.into_vec().into_iter().filter_map(|slot| slot.0) {
            self.place(key, id);
        }
    }
}

/// One entry or none. Aligned to its 32 bytes so that no slot straddles two cache lines (the
/// allocator's 16-byte alignment would let every other one do so in half the tables).
#[repr(align(32))]
struct Slot(Option<(LevelKey, NodeId)>);

/// Slots needed for `entries` at no more than three quarters full.
fn slots_for(entries: usize) -> usize {
    (entries + entries / 3 + 1).next_power_of_two().max(MIN_SLOTS)
}

fn empty_slots(count: usize) -> Box<[Slot]> {
    std::iter::repeat_with(|| Slot(None)).take(count).collect()
}

/// The slot where the search for `level` starts.
#[inline]
fn slot_of(level: &[u8], mask: usize) -> usize {
    static SEEDED: OnceLock<RandomState> = OnceLock::new();
    let hash = SEEDED.get_or_init(RandomState::new).hash_one(level);
    // Truncation intended: the mask keeps low bits only. ahash mixes every bit into them.
    (hash as usize) & mask
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn id(n: usize) -> NodeId {
        NodeId::from_index(n)
    }

    #[test]
    fn grows_and_keeps_every_entry() {
        let mut table = LevelTable::with_capacity(0);
        assert_eq!(table.slots.len(), MIN_SLOTS);
        assert_eq!(std::mem::size_of::<Slot>(), 32, "two slots to a cache line");
        for n in 0..1000 {
            table.insert(LevelKey::new(&n.to_string()), id(n));
            assert!(table.len * 4 <= table.slots.len() * 3, "at most three quarters full");
        }
        assert_eq!(table.len(), 1000);
        for n in 0..1000 {
            assert_eq!(table.get(n.to_string().as_bytes()), Some(id(n)));
        }
        assert_eq!(table.get(b"1000"), None);
        assert_eq!(table.iter().count(), 1000);
    }

    #[test]
    fn long_levels_are_found_too() {
        let mut table = LevelTable::with_capacity(4);
        let long = "a-level-longer-than-the-inline-limit-of-a-key";
        table.insert(LevelKey::new(long), id(1));
        table.insert(LevelKey::new(""), id(2));
        assert_eq!(table.get(long.as_bytes()), Some(id(1)));
        assert_eq!(table.get(b""), Some(id(2)));
        assert_eq!(table.remove(long.as_bytes()), Some(id(1)));
        assert_eq!(table.get(long.as_bytes()), None);
    }

    #[test]
    fn drain_empties() {
        let mut table = LevelTable::with_capacity(4);
        for n in 0..20 {
            table.insert(LevelKey::new(&n.to_string()), id(n));
        }
        assert_eq!(table.drain().count(), 20);
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(b"3"), None);
    }

    proptest! {
        /// Any sequence of inserts and removes, in a table small enough that runs of collisions
        /// wrap around its end, agrees with a `HashMap`: removal's backward shift keeps every
        /// remaining entry reachable.
        #[test]
        fn agrees_with_a_hash_map(ops in prop::collection::vec((any::<bool>(), 0..40usize), 0..300)) {
            let mut table = LevelTable::with_capacity(0);
            let mut model = HashMap::new();
            for (insert, n) in ops {
                let level = n.to_string();
                if insert && !model.contains_key(&level) {
                    table.insert(LevelKey::new(&level), id(n));
                    model.insert(level, id(n));
                } else {
                    prop_assert_eq!(table.remove(level.as_bytes()), model.remove(&level));
                }
                prop_assert_eq!(table.len(), model.len());
                for m in 0..40usize {
                    prop_assert_eq!(table.get(m.to_string().as_bytes()), model.get(&m.to_string()).copied());
                }
            }
        }
    }
}
