//! The subscription index: which subscriptions a published topic reaches.
//!
//! # Matching rules (MQTT 3.1.1 and 5.0, section 4.7)
//!
//! Topic names and filters are split into levels on `/`. A level may be empty: `a//b` has three
//! levels, `/a` has two (the first empty), `/` has two empty levels. Matching is exact, byte for
//! byte, with no normalisation [MQTT-4.7.3-4]: `ACCOUNTS` and `Accounts` are different topics, and
//! so are `/finance` and `finance`.
//!
//! - `+` occupies a whole level [MQTT-4.7.1-3] and matches exactly one level, empty ones included.
//! - `#` is the whole last level [MQTT-4.7.1-2] and matches its parent level and any number of
//!   child levels: `sport/#` matches `sport`, `sport/` and `sport/tennis/player1`.
//! - Filters starting with `+` or `#` do not match topics whose first level starts with `$`
//!   [MQTT-4.7.2-1]; a filter whose first level is the same literal `$...` level does.
//! - `$share/{group}/{filter}` is a shared subscription [MQTT-4.8.2]: member of `{group}` under
//!   `{filter}`; each matching message goes to one member of the group.
//!
//! ```text
//! Valid filters:
//!     sport/tennis/player1     #                  sport/#          +
//!     sport/tennis/+           +/tennis/#         sport/+/player1  +/+
//!     /+                       a//b               $SYS/#           $share/g/sport/#
//! Invalid filters (refused by the caller before they get here) [MQTT-4.7.1-2, MQTT-4.7.1-3]:
//!     sport/tennis#            sport/tennis/#/ranking              sport+
//!     a/#/c                    a+/b                                (empty)
//! Matching (filter -> topic):
//!     sport/tennis/player1/#   -> sport/tennis/player1, sport/tennis/player1/ranking,
//!                                 sport/tennis/player1/score/wimbledon
//!     sport/#                  -> sport, sport/, sport/tennis
//!     sport/tennis/+           -> sport/tennis/player1, sport/tennis/
//!     sport/+                  -> sport/
//!     +/+                      -> /finance, /
//!     /+                       -> /finance, /
//!     +                        -> finance, (the empty topic level)
//!     a//b                     -> a//b
//!     $SYS/#                   -> $SYS, $SYS/monitor/Clients
//!     $SYS/monitor/+           -> $SYS/monitor/Clients
//! Valid but not matching (filter -/-> topic):
//!     sport/tennis/+           -/-> sport/tennis/player1/ranking, sport/tennis
//!     sport/+                  -/-> sport
//!     +                        -/-> /finance, finance/
//!     a/b                      -/-> a/b/, a//b, A/b, a/b/c
//!     #                        -/-> $SYS, $SYS/monitor/Clients        [MQTT-4.7.2-1]
//!     +/monitor/Clients        -/-> $SYS/monitor/Clients              [MQTT-4.7.2-1]
//!     $SYS/#                   -/-> $SYSTEM/x, SYS/x
//! ```
//!
//! # Structure
//!
//! Filters without wildcards (no `+`, no final `#`) match one topic each, themselves: they are
//! kept in a hash index by that topic (`exact_index.rs`), and a match looks the whole topic up
//! once. The other filters are in a trie over filter levels, nodes in an arena (`arena.rs`)
//! addressed by 32-bit ids. Each node has its literal children in a `LevelMap` (keyed hash table
//! once large), one slot for the `+` child, the subscriptions whose filter ends at the node, and
//! those whose filter is the node's path followed by `#` (kept in the node itself: `#` is always
//! last, so it needs no child node). `$`-topics need no separate root: skipping the root's `+`
//! child and `#` subscriptions when the topic's first level starts with `$` has the same effect.
//! Shared subscriptions are groups kept beside the ordinary subscribers of their filter.
//!
//! Matching walks the trie depth-first, taking levels from the topic as it goes, following each
//! literal child directly and keeping `+` branches on a small inline stack: no allocation unless
//! a topic has more than [`INLINE_STACK`] branches pending at once.
//! Empty nodes are pruned on unsubscribe and their slots reused, so memory follows the live
//! subscriptions, not the history of churn.

pub(crate) mod arena;
pub(crate) mod exact_index;
pub(crate) mod keyed_vec;
pub(crate) mod level_key;
pub(crate) mod level_map;
pub(crate) mod level_table;
pub(crate) mod one_or_vec;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::AtomicUsize;

use smallvec::SmallVec;

use self::arena::{Arena, NodeId};
use self::exact_index::{ExactIndex, Keyed};
use self::keyed_vec::KeyedVec;
use self::level_map::LevelMap;

/// Pending branches a match keeps on its stack before spilling to the heap. The walk follows a
/// node's literal child directly and stacks only its `+` child, one level deeper; entries are
/// popped deepest first, so the stack holds at most one per topic level: 16 covers any topic of
/// up to 16 levels whatever the filters. A deeper topic still matches, at the cost of one
/// allocation.
pub const INLINE_STACK: usize = 16;

/// The subscription index: topic filters to subscribers, searched by topic name.
///
/// `K` identifies a subscriber (a session), `V` is what the subscription carries (its options).
/// A subscriber has at most one subscription per filter (per group for shared subscriptions);
/// subscribing again replaces it, as MQTT requires [MQTT-3.8.4-3].
///
/// Matching borrows the index shared, so the broker keeps it behind a read-write lock: publishes
/// match under the read lock, subscribe and unsubscribe take the write lock.
pub struct Router<K, V> {
    /// Filters without `+` or a final `#`, by the topic they match.
    exact: ExactIndex<Subscriptions<K, V>>,
    /// The trie of the other filters. The root stands for the empty path before the first level.
    nodes: Arena<Node<K, V>>,
    /// Subscriptions held, shared group members included.
    len: usize,
    /// Bumped on every change, so a cache of match results can tell it is stale.
    generation: u64,
}

/// One subscription reached by a topic, handed to the visitor of [`Router::match_topic`].
pub enum Match<'a, K, V> {
    /// An ordinary subscription.
    Direct {
        /// The filter as subscribed.
        filter: &'a str,
        /// The subscriber.
        key: &'a K,
        /// What the subscription carries.
        value: &'a V,
    },
    /// A shared subscription group: the message goes to one of `members` [MQTT-4.8.2].
    Shared {
        /// The group name (`{group}` in `$share/{group}/{filter}`).
        group: &'a str,
        /// The filter without its `$share/{group}/` prefix.
        filter: &'a str,
        /// The group's members, never empty.
        members: &'a [(K, V)],
        /// The group's round-robin position, advanced through a shared borrow so that matching
        /// needs only the read lock. See `route::shared::pick_member`.
        cursor: &'a AtomicUsize,
    },
}

/// The next member of a shared group, in turn: `None` only if `members` is empty. The broker
/// prefers connected members (`route::shared::pick_member`); this plain rotation is what the
/// router's tests check the cursor with.
#[cfg(test)]
///
/// Concurrent publishes each advance the cursor once, so members still alternate under load. A
/// caller wanting another policy (skip offline members, least loaded) reads `cursor` itself.
pub fn pick_round_robin<'a, T>(members: &'a [T], cursor: &AtomicUsize) -> Option<&'a T> {
    if members.is_empty() {
        return None;
    }
    // Relaxed: the cursor only spreads load; no other memory is published through it.
    let turn = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    members.get(turn % members.len())
}

impl<K, V> Router<K, V> {
    /// An empty index.
    pub fn new() -> Self {
        Router { exact: ExactIndex::default(), nodes: Arena::new(), len: 0, generation: 0 }
    }

    /// Subscriptions held, shared group members included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no subscription is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A counter bumped by every subscribe, replace and effective unsubscribe: a match result
    /// computed at one generation is valid as long as the generation has not moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Trie nodes in use, the root included: 1 when empty. Only filters with a wildcard use
    /// nodes; exact filters are indexed apart. For memory metrics and tests.
    pub fn node_count(&self) -> usize {
        self.nodes.live()
    }

    /// Calls `visit` once for every subscription whose filter matches `topic`.
    ///
    /// A subscriber with several matching filters is visited once per filter; the caller decides
    /// how to deliver to overlapping subscriptions (MQTT 3.1.1 section 3.3.5, 5.0 section 3.3.4:
    /// one copy at the highest QoS, or in 5.0 one per subscription). A shared group is visited
    /// once per matching filter, with all its members. `topic` is assumed to be a valid topic
    /// name (no wildcard characters [MQTT-4.7.1-1]); anything else is matched literally. Does
    /// not allocate unless the walk needs more than [`INLINE_STACK`] pending branches.
    pub fn match_topic<'a>(&'a self, topic: &str, mut visit: impl FnMut(Match<'a, K, V>)) {
        // Each entry: a node reached through `+`, and the topic left to match below it (`None`:
        // all levels consumed, the node stands for the whole topic). The literal child is not
        // stacked: the walk goes straight down to it, so only `+` branches wait here.
        let mut stack: SmallVec<[(NodeId, Option<&str>); INLINE_STACK]> = SmallVec::new();

        if let Some(subs) = self.exact.get(topic) {
            subs.visit(&mut visit);
        }

        let root = &self.nodes[NodeId::ROOT];
        let (first, rest) = split_level(topic);
        // [MQTT-4.7.2-1]: `#` and `+` at the first level do not reach `$` topics.
        if !first.starts_with('$') {
            if let Some(subs) = &root.multi_level {
                subs.visit(&mut visit);
            }
            if let Some(plus) = root.single_level {
                stack.push((plus, rest));
            }
        }
        let mut next = root.children.get(first).map(|child| (child, rest));

        while let Some((id, rest)) = next.or_else(|| stack.pop()) {
            let node = &self.nodes[id];
            // `#` below this node matches whether levels remain or not: with none left it
            // matches the parent level (`sport/#` matches `sport`).
            if let Some(subs) = &node.multi_level {
                subs.visit(&mut visit);
            }
            let Some(rest) = rest else {
                if let Some(subs) = &node.exact {
                    subs.visit(&mut visit);
                }
                next = None;
                continue;
            };
            let (level, rest) = split_level(rest);
            if let Some(plus) = node.single_level {
                stack.push((plus, rest));
            }
            next = node.children.get(level).map(|child| (child, rest));
        }
    }
}

impl<K: Clone + Eq + Hash, V> Router<K, V> {
    /// Adds `key`'s subscription to `filter`, or replaces it; returns the replaced value.
    ///
    /// `filter` is assumed valid (checked by the caller when decoding SUBSCRIBE). A filter of
    /// the form `$share/{group}/{rest}` makes `key` a member of `{group}` under `{rest}`.
    /// Anything else is stored literally and never panics: a `#` level that is not last is an
    /// ordinary level, and `$share/{group}` with no `/{rest}` is an ordinary filter.
    pub fn subscribe(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (group, filter) = split_shared(filter);
        let subs = if is_exact(filter) {
            if self.exact.get_mut(filter).is_none() {
                self.exact.insert(Box::new(Subscriptions::new(filter)));
            }
            match self.exact.get_mut(filter) {
                Some(subs) => subs,
                None => unreachable!("inserted just above"),
            }
        } else {
            let (id, slot) = self.make_path(filter);
            let node = &mut self.nodes[id];
            let subs = match slot {
                Slot::Exact => &mut node.exact,
                Slot::MultiLevel => &mut node.multi_level,
            };
            subs.get_or_insert_with(|| Box::new(Subscriptions::new(filter)))
        };
        let replaced = subs.insert(group, key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        self.generation += 1;
        replaced
    }

    /// Removes `key`'s subscription to `filter` (a `$share/{group}/...` filter removes it from
    /// the group); returns its value, or `None` if there was none, in which case nothing
    /// changes. Nodes left empty are pruned and their slots reused.
    pub fn unsubscribe(&mut self, filter: &str, key: &K) -> Option<V> {
        let (group, filter) = split_shared(filter);
        if is_exact(filter) {
            let subs = self.exact.get_mut(filter)?;
            let removed = subs.remove(group, key)?;
            if subs.is_empty() {
                self.exact.remove(filter);
            }
            self.len -= 1;
            self.generation += 1;
            return Some(removed);
        }

        // Walk down, remembering each step so empty nodes can be unlinked on the way back.
        let mut path: SmallVec<[(NodeId, Edge<'_>); INLINE_STACK]> = SmallVec::new();
        let mut id = NodeId::ROOT;
        let mut slot = Slot::Exact;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                slot = Slot::MultiLevel;
                break;
            }
            let node = &self.nodes[id];
            let (child, edge) = if level == "+" {
                (node.single_level?, Edge::SingleLevel)
            } else {
                (node.children.get(level)?, Edge::Literal(level))
            };
            path.push((id, edge));
            id = child;
        }

        let node = &mut self.nodes[id];
        let subs_slot = match slot {
            Slot::Exact => &mut node.exact,
            Slot::MultiLevel => &mut node.multi_level,
        };
        let subs = subs_slot.as_mut()?;
        let removed = subs.remove(group, key)?;
        if subs.is_empty() {
            *subs_slot = None;
        }
        self.len -= 1;
        self.generation += 1;

        // Prune: unlink and release every node left with nothing, bottom up. The root stays.
        while let Some((parent, edge)) = path.pop() {
            if !self.nodes[id].is_empty() {
                break;
            }
            let parent_node = &mut self.nodes[parent];
            match edge {
                Edge::Literal(level) => {
                    parent_node.children.remove(level);
                }
                Edge::SingleLevel => parent_node.single_level = None,
            }
            self.nodes.release(id);
            id = parent;
        }
        Some(removed)
    }

    /// The node standing for `filter`'s path, created as needed, and which of its subscription
    /// slots the filter uses.
    fn make_path(&mut self, filter: &str) -> (NodeId, Slot) {
        let mut id = NodeId::ROOT;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return (id, Slot::MultiLevel);
            }
            let existing = if level == "+" { self.nodes[id].single_level } else { self.nodes[id].children.get(level) };
            id = match existing {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc();
                    let node = &mut self.nodes[id];
                    if level == "+" {
                        node.single_level = Some(child);
                    } else {
                        node.children.insert(level, child);
                    }
                    child
                }
            };
        }
        (id, Slot::Exact)
    }
}

impl<K, V> Default for Router<K, V> {
    fn default() -> Self {
        Router::new()
    }
}

impl<K, V> fmt::Debug for Router<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("len", &self.len)
            .field("generation", &self.generation)
            .field("nodes", &self.nodes.live())
            .finish()
    }
}

impl<'a, K, V> Match<'a, K, V> {
    /// The filter matched, without any `$share/{group}/` prefix.
    pub fn filter(&self) -> &'a str {
        match self {
            Match::Direct { filter, .. } | Match::Shared { filter, .. } => filter,
        }
    }
}

// Every field is a shared reference: copying a match is free whatever `K` and `V` are, which a
// derive (bounding `K: Copy, V: Copy`) would not allow.
impl<K, V> Clone for Match<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Match<'_, K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Match<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Direct { filter, key, value } => {
                f.debug_struct("Direct").field("filter", filter).field("key", key).field("value", value).finish()
            }
            Match::Shared { group, filter, members, cursor } => f
                .debug_struct("Shared")
                .field("group", group)
                .field("filter", filter)
                .field("members", members)
                .field("cursor", cursor)
                .finish(),
        }
    }
}

/// One trie node: the path from the root to it is a sequence of filter levels.
///
/// Aligned to a cache line (it is at most 64 bytes, a test checks), so that reaching a node costs
/// one miss, not two when it straddles lines.
#[repr(align(64))]
struct Node<K, V> {
    /// Children through a literal level.
    children: LevelMap,
    /// Child through `+`.
    single_level: Option<NodeId>,
    /// Subscriptions whose filter is exactly this node's path.
    exact: Option<Box<Subscriptions<K, V>>>,
    /// Subscriptions whose filter is this node's path followed by `#` (`#` alone at the root).
    /// `#` is always the last level, so it gets a slot here rather than a child node.
    multi_level: Option<Box<Subscriptions<K, V>>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node { children: LevelMap::default(), single_level: None, exact: None, multi_level: None }
    }
}

impl<K, V> Node<K, V> {
    /// Whether the node holds nothing and can be pruned.
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.single_level.is_none() && self.exact.is_none() && self.multi_level.is_none()
    }
}

/// The subscriptions to one filter. Boxed in the node: most nodes are inner nodes with none.
///
/// 56 bytes, one 64-byte allocator block (a test checks): every matching publish reads all of it,
/// and there is one per filter, so both the lines a match touches and the memory a million
/// filters take follow its size.
struct Subscriptions<K, V> {
    /// Ordinary subscribers.
    direct: KeyedVec<K, V>,
    /// The filter (without `$share/{group}/`), kept so a match can name it without rebuilding it
    /// from the path.
    filter: Box<str>,
    /// Shared subscription groups by name, none empty; `None` rather than an empty list, as
    /// most filters have no group and the list inline would cost them 32 bytes each.
    groups: Option<Box<Groups<K, V>>>,
}

/// Shared subscription groups of one filter, by name.
type Groups<K, V> = KeyedVec<Box<str>, Group<K, V>>;

impl<K, V> Subscriptions<K, V> {
    fn new(filter: &str) -> Self {
        Subscriptions { direct: KeyedVec::default(), filter: filter.into(), groups: None }
    }

    /// Hands every subscription to `visit`.
    #[inline]
    fn visit<'a>(&'a self, visit: &mut impl FnMut(Match<'a, K, V>)) {
        let filter = &*self.filter;
        for (key, value) in self.direct.as_slice() {
            visit(Match::Direct { filter, key, value });
        }
        if let Some(groups) = &self.groups {
            for (group, Group { members, cursor }) in groups.as_slice() {
                visit(Match::Shared { group, filter, members: members.as_slice(), cursor });
            }
        }
    }

    /// Adds `key`'s subscription, to `group` if given, or replaces it; returns the replaced value.
    fn insert(&mut self, group: Option<&str>, key: K, value: V) -> Option<V>
    where
        K: Clone + Eq + Hash,
    {
        match group {
            None => self.direct.insert(key, value),
            Some(group) => {
                let groups = self.groups.get_or_insert_with(Box::default);
                let at = match groups.position(group) {
                    Some(at) => at,
                    None => groups.push(group.into(), Group::default()),
                };
                groups.value_mut(at).members.insert(key, value)
            }
        }
    }

    /// Removes `key`'s subscription, from `group` if given; returns its value. A group left
    /// empty is dropped, and the group list with the last group.
    fn remove(&mut self, group: Option<&str>, key: &K) -> Option<V>
    where
        K: Clone + Eq + Hash,
    {
        match group {
            None => self.direct.remove(key),
            Some(group) => {
                let groups = self.groups.as_mut()?;
                let at = groups.position(group)?;
                let members = &mut groups.value_mut(at).members;
                let removed = members.remove(key)?;
                if members.is_empty() {
                    groups.remove(group);
                    if groups.is_empty() {
                        self.groups = None;
                    }
                }
                Some(removed)
            }
        }
    }

    /// Whether no subscriber and no group is left.
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.groups.is_none()
    }
}

/// A shared subscription group under one filter.
struct Group<K, V> {
    /// The members, never empty while the group is stored.
    members: KeyedVec<K, V>,
    /// Round-robin position, see `route::shared::pick_member`.
    cursor: AtomicUsize,
}

impl<K, V> Default for Group<K, V> {
    fn default() -> Self {
        Group { members: KeyedVec::default(), cursor: AtomicUsize::new(0) }
    }
}

/// Which of a node's subscription slots a filter uses.
#[derive(Clone, Copy)]
enum Slot {
    /// The filter ends at the node.
    Exact,
    /// The filter is the node's path followed by `#`.
    MultiLevel,
}

/// How a node was reached from its parent, for unlinking it.
#[derive(Clone, Copy)]
enum Edge<'f> {
    /// Through a literal level.
    Literal(&'f str),
    /// Through `+`.
    SingleLevel,
}

/// The first level of `s` and what follows its `/`, or `None` if it was the last level.
#[inline]
pub(crate) fn split_level(s: &str) -> (&str, Option<&str>) {
    // A plain byte loop: levels are a few bytes long, where `str::find`'s memchr costs more in
    // setup than it saves (measured: a fifth of the instructions of a match). Slicing at the
    // position of an ASCII `/` is always on a char boundary.
    match s.as_bytes().iter().position(|&b| b == b'/') {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    }
}

/// Whether `filter` has no wildcard: no `+` level and no final `#` level. Such a filter matches
/// exactly one topic, itself (a `#` that is not last is an ordinary level, as in the trie).
fn is_exact(filter: &str) -> bool {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level == "+" || (level == "#" && levels.peek().is_none()) {
            return false;
        }
    }
    true
}

impl<K, V> Keyed for Subscriptions<K, V> {
    fn key(&self) -> &str {
        &self.filter
    }
}

/// Splits `$share/{group}/{filter}` into the group and the filter; other filters have no group.
fn split_shared(filter: &str) -> (Option<&str>, &str) {
    if let Some(shared) = filter.strip_prefix("$share/") {
        if let Some((group, filter)) = shared.split_once('/') {
            return (Some(group), filter);
        }
    }
    (None, filter)
}
