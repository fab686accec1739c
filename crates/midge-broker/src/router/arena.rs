//! Trie nodes in one vector, addressed by 32-bit ids, with a free list.
//!
//! Why an arena rather than boxed nodes: a child reference is 4 bytes instead of 8 and
//! `Option<NodeId>` stays 4 bytes (the id is non-zero), nodes sit side by side instead of in one
//! heap block each, and a pruned node's slot is handed to the next insert, so subscribe and
//! unsubscribe churn does not grow memory: it stays at the high-water mark of live nodes.

use std::num::NonZeroU32;
use std::ops::{Index, IndexMut};

/// Where a node lives in its [`Arena`]: its index plus one, so that `Option<NodeId>` needs no
/// extra tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NodeId(NonZeroU32);

impl NodeId {
    /// The root, created with the arena and never released.
    pub(crate) const ROOT: NodeId = NodeId(NonZeroU32::MIN);

    fn index(self) -> usize {
        // Lossless: `usize` is at least 32 bits on every target the broker builds for.
        (self.0.get() - 1) as usize
    }

    pub(crate) fn from_index(index: usize) -> NodeId {
        let id = u32::try_from(index + 1)
            .ok()
            .and_then(NonZeroU32::new)
            // Unreachable in practice: 2^32 nodes of at least 40 bytes each is more than 160 GiB,
            // so the allocator gives up long before the id space does.
            .expect("trie arena holds more than u32::MAX nodes");
        NodeId(id)
    }
}

/// Nodes of one trie. Slot 0 is the root. A released slot is reset to `N::default()` (which must
/// not allocate) and reused by the next [`Arena::alloc`].
pub(crate) struct Arena<N> {
    /// Every slot ever used, live or free.
    nodes: Vec<N>,
    /// Released slots, reused last-in first-out so the most recently touched memory is reused.
    free: Vec<NodeId>,
}

impl<N: Default> Arena<N> {
    /// An arena holding only the root.
    pub(crate) fn new() -> Self {
        Arena { nodes: vec![N::default()], free: Vec::new() }
    }

    /// A fresh, default node.
    pub(crate) fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free.pop() {
            return id;
        }
        let id = NodeId::from_index(self.nodes.len());
        self.nodes.push(N::default());
        id
    }

    /// Gives a node's slot back. Assumes no other node refers to `id` any more.
    pub(crate) fn release(&mut self, id: NodeId) {
        debug_assert_ne!(id, NodeId::ROOT, "the root is never released");
        self.nodes[id.index()] = N::default();
        self.free.push(id);
    }

    /// Nodes in use, the root included.
    pub(crate) fn live(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Slots ever allocated, live or free: the arena's memory high-water mark in nodes.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// Every slot, live or free (free slots hold `N::default()`).
    #[cfg(test)]
    pub(crate) fn slots_mut(&mut self) -> impl Iterator<Item = &mut N> {
        self.nodes.iter_mut()
    }
}

impl<N> Index<NodeId> for Arena<N> {
    type Output = N;

    fn index(&self, id: NodeId) -> &N {
        &self.nodes[id.index()]
    }
}

impl<N> IndexMut<NodeId> for Arena<N> {
    fn index_mut(&mut self, id: NodeId) -> &mut N {
        &mut self.nodes[id.index()]
    }
}
