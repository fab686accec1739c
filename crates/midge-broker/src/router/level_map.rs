//! A trie node's literal children, keyed by topic level.
//!
//! With a million subscriptions the trie is far larger than the CPU caches, so a match costs
//! roughly one cache miss per pointer it follows; this map is laid out to follow few. Most nodes
//! have exactly one child (`site/42/dev` has just `dev`): it is kept inline in the node. A few
//! children sit in a short vector scanned linearly, with no hashing. Past [`PROMOTE_AT`] children
//! (`site/` with one child per site) they move to a hash map, also inline in the node. The map's
//! hasher is seeded at random once per process, because levels come from clients and an unseeded
//! hash would let them pick colliding names. Short levels are stored in
//! the entry itself ([`LevelKey`]), so comparing one does not follow a pointer either.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use ahash::{AHasher, RandomState};

use super::arena::NodeId;
use super::level_key::LevelKey;

/// Children beyond which lookups hash instead of comparing levels one by one. Scanning 8 entries
/// (8 length comparisons, the odd short `memcmp`, all in 4 cache lines) costs about what hashing
/// one short level and probing the table does.
const PROMOTE_AT: usize = 8;

/// Children at or below which a hash map goes back to a vector, freeing the map's table. Lower
/// than [`PROMOTE_AT`] so a node hovering around the threshold does not convert on every change.
const DEMOTE_AT: usize = PROMOTE_AT / 2;

/// Literal children of one node: level string to child node.
#[derive(Default)]
pub(crate) enum LevelMap {
    /// No child.
    #[default]
    Empty,
    /// One child, the common case, inline.
    One(LevelKey, NodeId),
    /// Two to [`PROMOTE_AT`] children, scanned in insertion order.
    Few(Vec<(LevelKey, NodeId)>),
    /// More children, hashed.
    Many(HashMap<LevelKey, NodeId, LevelHasher>),
}

impl LevelMap {
    /// The child reached through `level`.
    #[inline]
    pub(crate) fn get(&self, level: &str) -> Option<NodeId> {
        let level = level.as_bytes();
        match self {
            LevelMap::Empty => None,
            LevelMap::One(key, id) => key.matches(level).then_some(*id),
            LevelMap::Few(few) => few.iter().find(|(key, _)| key.matches(level)).map(|&(_, id)| id),
            LevelMap::Many(many) => many.get(level).copied(),
        }
    }

    /// Adds a child. Assumes `level` has no child yet.
    pub(crate) fn insert(&mut self, level: &str, id: NodeId) {
        debug_assert!(self.get(level).is_none(), "level {level:?} inserted twice");
        let key = LevelKey::new(level);
        match std::mem::take(self) {
            LevelMap::Empty => *self = LevelMap::One(key, id),
            LevelMap::One(first, first_id) => {
                let mut few = Vec::with_capacity(2);
                few.extend([(first, first_id), (key, id)]);
                *self = LevelMap::Few(few);
            }
            LevelMap::Few(mut few) if few.len() < PROMOTE_AT => {
                // Grow one entry at a time: a node with a few children usually keeps them for
                // life, and the default growth would double the allocation.
                few.reserve_exact(1);
                few.push((key, id));
                *self = LevelMap::Few(few);
            }
            LevelMap::Few(few) => {
                let mut many = HashMap::with_capacity_and_hasher(few.len() * 2, LevelHasher);
                many.extend(few);
                many.insert(key, id);
                *self = LevelMap::Many(many);
            }
            LevelMap::Many(mut many) => {
                many.insert(key, id);
                *self = LevelMap::Many(many);
            }
        }
    }

    /// Removes the child reached through `level`, if any.
    pub(crate) fn remove(&mut self, level: &str) -> Option<NodeId> {
        let level = level.as_bytes();
        match self {
            LevelMap::Empty => None,
            LevelMap::One(key, id) => {
                let id = *id;
                if !key.matches(level) {
                    return None;
                }
                *self = LevelMap::Empty;
                Some(id)
            }
            LevelMap::Few(few) => {
                let at = few.iter().position(|(key, _)| key.matches(level))?;
                let (_, id) = few.swap_remove(at);
                if few.len() == 1 {
                    if let Some((key, last)) = few.pop() {
                        *self = LevelMap::One(key, last);
                    }
                }
                Some(id)
            }
            LevelMap::Many(many) => {
                let id = many.remove(level)?;
                if many.len() <= DEMOTE_AT {
                    // Free the table: it does not shrink by itself.
                    let few: Vec<_> = many.drain().collect();
                    *self = LevelMap::Few(few);
                }
                Some(id)
            }
        }
    }

    /// Whether the node has no literal child.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, LevelMap::Empty)
    }

    /// Every child with its level's bytes, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], NodeId)> {
        let (one, few, many) = match self {
            LevelMap::Empty => (None, None, None),
            LevelMap::One(key, id) => (Some((key.as_bytes(), *id)), None, None),
            LevelMap::Few(few) => (None, Some(few.iter()), None),
            LevelMap::Many(many) => (None, None, Some(many.iter())),
        };
        let few = few.into_iter().flatten().map(|(key, id)| (key.as_bytes(), *id));
        let many = many.into_iter().flatten().map(|(key, id)| (key.as_bytes(), *id));
        one.into_iter().chain(few).chain(many)
    }
}

/// The hasher of every [`LevelMap`]: ahash with keys drawn at random once per process.
///
/// A zero-sized builder keeps the map inline in the node at 32 bytes, where a per-map
/// `ahash::RandomState` would add 32 more to every node, child or not. One secret seed per
/// process protects against chosen collisions as well as one per map: an attacker learns neither.
#[derive(Clone, Copy, Default)]
pub(crate) struct LevelHasher;

impl BuildHasher for LevelHasher {
    type Hasher = AHasher;

    #[inline]
    fn build_hasher(&self) -> AHasher {
        static SEEDED: OnceLock<RandomState> = OnceLock::new();
        SEEDED.get_or_init(RandomState::new).build_hasher()
    }
}
