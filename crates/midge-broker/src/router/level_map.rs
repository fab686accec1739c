//! A trie node's literal children, keyed by topic level.
//!
//! Most nodes have one or a few children (`site/42/dev` has just `dev`), some have very many
//! (`site/` with one child per site). A short vector scanned linearly serves the first kind with
//! no hashing and one small allocation; past [`PROMOTE_AT`] children the vector becomes a hash map
//! with a randomly seeded hasher, because level strings come from clients and an unseeded hash
//! would let them pick colliding names.

use std::collections::HashMap;

use ahash::RandomState;

use super::arena::NodeId;

/// Children beyond which lookups hash instead of comparing strings one by one. At 8 a miss costs
/// at most 8 length comparisons plus the odd short `memcmp`, about what hashing a short level
/// costs, and a small node stays one 8-entry allocation.
const PROMOTE_AT: usize = 8;

/// Children at or below which a hash map goes back to a vector, freeing the map's table. Lower
/// than [`PROMOTE_AT`] so a node hovering around the threshold does not convert on every change.
const DEMOTE_AT: usize = PROMOTE_AT / 2;

/// Literal children of one node: level string to child node.
pub(crate) enum LevelMap {
    /// Up to [`PROMOTE_AT`] children, scanned in insertion order.
    Few(Vec<(Box<str>, NodeId)>),
    /// More children, hashed with a per-map random seed. Boxed so that every node pays for a
    /// vector (24 bytes), not for an inline map and its hasher (80).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, NodeId, RandomState>>),
}

impl Default for LevelMap {
    fn default() -> Self {
        LevelMap::Few(Vec::new())
    }
}

impl LevelMap {
    /// The child reached through `level`.
    #[inline]
    pub(crate) fn get(&self, level: &str) -> Option<NodeId> {
        match self {
            LevelMap::Few(few) => few.iter().find(|(k, _)| **k == *level).map(|&(_, id)| id),
            LevelMap::Many(many) => many.get(level).copied(),
        }
    }

    /// Adds a child. Assumes `level` has no child yet.
    pub(crate) fn insert(&mut self, level: &str, id: NodeId) {
        debug_assert!(self.get(level).is_none(), "level {level:?} inserted twice");
        match self {
            LevelMap::Few(few) if few.len() < PROMOTE_AT => {
                // Grow one entry at a time: most nodes keep one or two children for life, and the
                // default growth would reserve four.
                few.reserve_exact(1);
                few.push((level.into(), id));
            }
            LevelMap::Few(few) => {
                let mut many = HashMap::with_capacity_and_hasher(few.len() * 2, RandomState::new());
                many.extend(few.drain(..));
                many.insert(level.into(), id);
                *self = LevelMap::Many(Box::new(many));
            }
            LevelMap::Many(many) => {
                many.insert(level.into(), id);
            }
        }
    }

    /// Removes the child reached through `level`, if any.
    pub(crate) fn remove(&mut self, level: &str) -> Option<NodeId> {
        match self {
            LevelMap::Few(few) => {
                let at = few.iter().position(|(k, _)| **k == *level)?;
                let (_, id) = few.swap_remove(at);
                if few.is_empty() {
                    // Release the allocation: an empty node may live on as an inner node.
                    *few = Vec::new();
                }
                Some(id)
            }
            LevelMap::Many(many) => {
                let id = many.remove(level)?;
                if many.len() <= DEMOTE_AT {
                    let mut few = Vec::with_capacity(many.len());
                    few.extend(many.drain());
                    *self = LevelMap::Few(few);
                }
                Some(id)
            }
        }
    }

    /// Whether the node has no literal child.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            LevelMap::Few(few) => few.is_empty(),
            LevelMap::Many(many) => many.is_empty(),
        }
    }

    /// Every child with its level, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, NodeId)> {
        let (few, many) = match self {
            LevelMap::Few(few) => (Some(few.iter()), None),
            LevelMap::Many(many) => (None, Some(many.iter())),
        };
        let few = few.into_iter().flatten().map(|(k, id)| (&**k, *id));
        let many = many.into_iter().flatten().map(|(k, id)| (&**k, *id));
        few.chain(many)
    }
}
