//! A trie node's literal children, keyed by topic level.
//!
//! With a million subscriptions the trie is far larger than the CPU caches, so a match costs
//! roughly one cache miss per pointer it follows; this map is laid out to follow few. Most nodes
//! have exactly one child (`site/42/dev` has just `dev`): it is kept inline in the node. A few
//! children sit in a short vector scanned linearly, with no hashing. Past [`PROMOTE_AT`] children
//! (`site/` with one child per site) they move to a hash table ([`LevelTable`]), also inline in
//! the node, keyed with a secret seed because levels come from clients. Short levels are stored in
//! the entry itself ([`LevelKey`]), so comparing one does not follow a pointer either.

use super::arena::NodeId;
use super::level_key::LevelKey;
use super::level_table::LevelTable;

/// Children beyond which lookups hash instead of comparing levels one by one. Scanning 8 entries
/// (8 length comparisons, the odd short compare, all in 4 cache lines) costs about what hashing
/// one short level and probing the table does.
const PROMOTE_AT: usize = 8;

/// Children at or below which a hash table goes back to a vector, freeing the table. Lower than
/// [`PROMOTE_AT`] so a node hovering around the threshold does not convert on every change.
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
    Many(LevelTable),
}

impl LevelMap {
    /// The child reached through `level`.
    ///
    /// Inlined into the walk: the common shapes (none, one child) are a few instructions, less
    /// than the call's register saves and restores cost (measured: a quarter of a lookup). The
    /// hash table's probe stays a call.
    #[inline(always)]
    pub(crate) fn get(&self, level: &str) -> Option<NodeId> {
        let level = level.as_bytes();
        match self {
            LevelMap::Empty => None,
            LevelMap::One(key, id) => key.matches(level).then_some(*id),
            LevelMap::Few(few) => few.iter().find(|(key, _)| key.matches(level)).map(|&(_, id)| id),
            LevelMap::Many(many) => many.get(level),
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
                let mut many = LevelTable::with_capacity(few.len() * 2);
                for (key, id) in few {
                    many.insert(key, id);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> NodeId {
        NodeId::from_index(n)
    }

    fn shape(map: &LevelMap) -> &'static str {
        match map {
            LevelMap::Empty => "empty",
            LevelMap::One(..) => "one",
            LevelMap::Few(_) => "few",
            LevelMap::Many(_) => "many",
        }
    }

    #[test]
    fn grows_through_every_shape_and_back() {
        let mut map = LevelMap::default();
        let levels: Vec<String> = (0..3 * PROMOTE_AT).map(|n| format!("level{n}")).collect();
        for (n, level) in levels.iter().enumerate() {
            map.insert(level, id(n));
            let expected = match n + 1 {
                1 => "one",
                len if len <= PROMOTE_AT => "few",
                _ => "many",
            };
            assert_eq!(shape(&map), expected, "after {} inserts", n + 1);
            for (m, level) in levels.iter().enumerate().take(n + 1) {
                assert_eq!(map.get(level), Some(id(m)));
            }
            assert_eq!(map.get("absent"), None);
        }
        let mut left = levels.len();
        for (n, level) in levels.iter().enumerate() {
            assert_eq!(map.remove(level), Some(id(n)));
            assert_eq!(map.remove(level), None);
            left -= 1;
            assert_eq!(map.iter().count(), left);
            for (m, level) in levels.iter().enumerate().skip(n + 1) {
                assert_eq!(map.get(level), Some(id(m)));
            }
        }
        assert!(map.is_empty());
    }

    #[test]
    fn demotes_only_well_below_the_promotion_threshold() {
        let mut map = LevelMap::default();
        for n in 0..=PROMOTE_AT {
            map.insert(&n.to_string(), id(n));
        }
        assert_eq!(shape(&map), "many");
        // Hovering around the threshold does not convert back and forth.
        map.remove("0");
        assert_eq!(shape(&map), "many");
        for n in 1..=PROMOTE_AT - DEMOTE_AT {
            map.remove(&n.to_string());
        }
        assert_eq!(shape(&map), "few");
        assert_eq!(map.iter().count(), DEMOTE_AT);
    }
}
