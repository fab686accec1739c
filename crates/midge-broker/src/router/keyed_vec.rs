//! A vector of `(key, value)` pairs with unique keys, plus a hash index once it is long.
//!
//! Subscribers of one filter are read far more often (every matching publish walks them all) than
//! written, so they live in one dense slice: cheap to walk, and a shared group can hand its members
//! out as `&[(K, V)]`. Finding one key (subscribe, unsubscribe) scans the slice while it is short;
//! a popular filter with many thousands of subscribers gets an index so that subscribing each of
//! them is not quadratic.
//!
//! The first pair is kept inline ([`OneOrVec`]): most filters have one subscriber, which then
//! needs no allocation of its own and no cache line of its own when matched.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use ahash::RandomState;

use super::one_or_vec::OneOrVec;

/// Length beyond which a key index is kept. Scanning 16 small keys is about as fast as hashing
/// one, and the index costs a copy of every key, so short lists go without.
const INDEX_AT: usize = 16;

/// `(key, value)` pairs with unique keys, in no particular order (removal swaps the last pair in).
pub(crate) struct KeyedVec<Q, T> {
    /// The pairs, densely packed.
    items: OneOrVec<(Q, T)>,
    /// Key to position in `items`, present while `items` is longer than [`INDEX_AT`] / 2 after
    /// having grown past [`INDEX_AT`]. Seeded: keys may derive from client input. Boxed so that
    /// the common short list pays 8 bytes for it, not the 80 of an inline map and its hasher.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<Q, usize, RandomState>>>,
}

impl<Q, T> Default for KeyedVec<Q, T> {
    fn default() -> Self {
        KeyedVec { items: OneOrVec::default(), index: None }
    }
}

impl<Q, T> KeyedVec<Q, T> {
    /// The pairs, for walking.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[(Q, T)] {
        self.items.as_slice()
    }

    /// Whether there is no pair.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<Q: Clone + Eq + Hash, T> KeyedVec<Q, T> {
    /// Where `key` sits in [`KeyedVec::as_slice`].
    pub(crate) fn position<B>(&self, key: &B) -> Option<usize>
    where
        Q: Borrow<B>,
        B: Hash + Eq + ?Sized,
    {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.items.as_slice().iter().position(|(k, _)| k.borrow() == key),
        }
    }

    /// The value at `position`. Panics if out of bounds, like slice indexing.
    pub(crate) fn value_mut(&mut self, position: usize) -> &mut T {
        &mut self.items.as_mut_slice()[position].1
    }

    /// Inserts or replaces; returns the replaced value.
    pub(crate) fn insert(&mut self, key: Q, value: T) -> Option<T> {
        if let Some(at) = self.position(&key) {
            return Some(std::mem::replace(self.value_mut(at), value));
        }
        self.push(key, value);
        None
    }

    /// Appends a pair and returns its position. Assumes `key` is absent.
    pub(crate) fn push(&mut self, key: Q, value: T) -> usize {
        debug_assert!(self.position(&key).is_none(), "key pushed twice");
        let at = self.items.len();
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), at);
        }
        self.items.push((key, value));
        if self.index.is_none() && self.items.len() > INDEX_AT {
            let mut index = HashMap::with_capacity_and_hasher(self.items.len(), RandomState::new());
            index.extend(self.items.as_slice().iter().enumerate().map(|(i, (k, _))| (k.clone(), i)));
            self.index = Some(Box::new(index));
        }
        at
    }

    /// Removes the pair with `key`, moving the last pair into its place; returns its value.
    pub(crate) fn remove<B>(&mut self, key: &B) -> Option<T>
    where
        Q: Borrow<B>,
        B: Hash + Eq + ?Sized,
    {
        let at = self.position(key)?;
        let (_, value) = self.items.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(key);
            if let Some((moved, _)) = self.items.as_slice().get(at) {
                let slot = index.get_mut::<Q>(moved);
                debug_assert!(slot.is_some(), "every pair is indexed");
                if let Some(slot) = slot {
                    *slot = at;
                }
            }
            if self.items.len() <= INDEX_AT / 2 {
                self.index = None;
            }
        }
        Some(value)
    }
}
