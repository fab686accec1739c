//! Retained messages by topic name, searched by topic filter.
//!
//! The reverse of [`crate::router`]: there filters are stored and a topic is looked up; here
//! topics are stored and a filter is looked up, once per new subscription, to send the retained
//! messages it matches [MQTT-3.3.1-6]. The matching rules are the router's (see its module doc):
//! `+` is one level, `#` its parent level and everything below, and a filter starting with a
//! wildcard does not reach topics starting with `$` [MQTT-4.7.2-1].
//!
//! A trie over topic levels, nodes in the router's arena; each node holds the retained entry
//! whose topic ends there, with the full topic so a visitor gets it without rebuilding it from the
//! path. Removal prunes nodes left empty, so memory follows the retained set.

use smallvec::SmallVec;

use crate::router::arena::{Arena, NodeId};
use crate::router::level_map::LevelMap;
use crate::router::{split_level, INLINE_STACK};

/// Retained messages (`V`) by topic name.
///
/// Topics are assumed to be valid topic names (no `+` or `#` [MQTT-4.7.1-1]); they are stored
/// as given, matched byte for byte.
pub struct RetainedTree<V> {
    /// The trie. The root stands for the empty path before the first level.
    nodes: Arena<RetainedNode<V>>,
    /// Entries held.
    len: usize,
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        RetainedTree { nodes: Arena::new(), len: 0 }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trie nodes in use, the root included: 1 when empty.
    #[cfg(test)]
    pub fn node_count(&self) -> usize {
        self.nodes.live()
    }

    /// Stores `value` as `topic`'s retained message; returns the one it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut id = NodeId::ROOT;
        for level in topic.split('/') {
            id = match self.nodes[id].children.get(level) {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc();
                    self.nodes[id].children.insert(level, child);
                    child
                }
            };
        }
        let entry = &mut self.nodes[id].entry;
        match entry {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                *entry = Some((topic.into(), value));
                self.len += 1;
                None
            }
        }
    }

    /// The retained message of `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut id = NodeId::ROOT;
        for level in topic.split('/') {
            id = self.nodes[id].children.get(level)?;
        }
        self.nodes[id].entry.as_ref().map(|(_, value)| value)
    }

    /// Removes `topic`'s retained message and returns it; prunes the nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let mut id = NodeId::ROOT;
        for level in topic.split('/') {
            id = self.nodes[id].children.get(level)?;
        }
        let (_, value) = self.nodes[id].entry.take()?;
        self.len -= 1;
        self.prune(topic);
        Some(value)
    }

    /// Keeps only the entries for which `keep(topic, value)` is true (to drop expired messages),
    /// pruning the nodes left empty. Expiry uses the store's index instead (`retained`).
    #[cfg(test)]
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        // Walk the slots directly (free ones hold no entry), collecting the dropped topics to
        // prune afterwards: pruning needs each node's path, which only the topic gives.
        let mut dropped: Vec<Box<str>> = Vec::new();
        for node in self.nodes.slots_mut() {
            if let Some((topic, value)) = &node.entry {
                if !keep(topic, value) {
                    if let Some((topic, _)) = node.entry.take() {
                        dropped.push(topic);
                    }
                }
            }
        }
        self.len -= dropped.len();
        for topic in &dropped {
            self.prune(topic);
        }
    }

    /// Calls `visit(topic, value)` for every retained message whose topic `filter` matches.
    ///
    /// `filter` is a plain topic filter (a shared subscription's without `$share/{group}/`),
    /// assumed valid; a `#` level that is not last is matched literally. Entries come in no
    /// particular order.
    pub fn for_each_match<'a>(&'a self, filter: &str, mut visit: impl FnMut(&'a str, &'a V)) {
        let mut stack: SmallVec<[Task<'_>; INLINE_STACK]> = SmallVec::new();

        let root = &self.nodes[NodeId::ROOT];
        let (first, rest) = split_level(filter);
        if first == "#" && rest.is_none() {
            // [MQTT-4.7.2-1]: everything but `$` topics.
            stack.extend(
                root.children.iter().filter(|(level, _)| !level.starts_with(b"$")).map(|(_, child)| Task::All(child)),
            );
        } else if first == "+" {
            stack.extend(
                root.children
                    .iter()
                    .filter(|(level, _)| !level.starts_with(b"$"))
                    .map(|(_, child)| Task::Match(child, rest)),
            );
        } else if let Some(child) = root.children.get(first) {
            stack.push(Task::Match(child, rest));
        }

        while let Some(task) = stack.pop() {
            match task {
                Task::All(id) => {
                    let node = &self.nodes[id];
                    node.visit(&mut visit);
                    stack.extend(node.children.iter().map(|(_, child)| Task::All(child)));
                }
                Task::Match(id, None) => self.nodes[id].visit(&mut visit),
                Task::Match(id, Some(rest)) => {
                    let node = &self.nodes[id];
                    let (level, rest) = split_level(rest);
                    if level == "#" && rest.is_none() {
                        // `#` matches its parent level too: `sport/#` matches `sport`.
                        stack.push(Task::All(id));
                    } else if level == "+" {
                        stack.extend(node.children.iter().map(|(_, child)| Task::Match(child, rest)));
                    } else if let Some(child) = node.children.get(level) {
                        stack.push(Task::Match(child, rest));
                    }
                }
            }
        }
    }

    /// Unlinks and releases, bottom up, the nodes on `topic`'s path left with no entry and no
    /// child. The root stays.
    fn prune(&mut self, topic: &str) {
        let mut path: SmallVec<[(NodeId, &str); INLINE_STACK]> = SmallVec::new();
        let mut id = NodeId::ROOT;
        for level in topic.split('/') {
            let Some(child) = self.nodes[id].children.get(level) else {
                return;
            };
            path.push((id, level));
            id = child;
        }
        while let Some((parent, level)) = path.pop() {
            let node = &self.nodes[id];
            if node.entry.is_some() || !node.children.is_empty() {
                break;
            }
            self.nodes[parent].children.remove(level);
            self.nodes.release(id);
            id = parent;
        }
    }
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        RetainedTree::new()
    }
}

impl<V> std::fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetainedTree").field("len", &self.len).field("nodes", &self.nodes.live()).finish()
    }
}

/// One trie node: the path from the root to it is a sequence of topic levels.
struct RetainedNode<V> {
    /// Children by level.
    children: LevelMap,
    /// The retained message whose topic ends here, with that topic.
    entry: Option<(Box<str>, V)>,
}

impl<V> Default for RetainedNode<V> {
    fn default() -> Self {
        RetainedNode { children: LevelMap::default(), entry: None }
    }
}

impl<V> RetainedNode<V> {
    fn visit<'a>(&'a self, visit: &mut impl FnMut(&'a str, &'a V)) {
        if let Some((topic, value)) = &self.entry {
            visit(topic, value);
        }
    }
}

/// Work pending in [`RetainedTree::for_each_match`].
#[derive(Clone, Copy)]
enum Task<'f> {
    /// The node was reached with this much of the filter left (`None`: all of it matched).
    Match(NodeId, Option<&'f str>),
    /// The node and everything below it match (under a `#`).
    All(NodeId),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::router::tests::{filter, reference_matches, topic};

    const TOPICS: &[&str] = &[
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "/finance",
        "finance",
        "/",
        "a//b",
        "$SYS",
        "$SYS/x",
        "$SYS/monitor/Clients",
        "x/$SYS",
    ];

    fn tree() -> RetainedTree<usize> {
        let mut tree = RetainedTree::new();
        for (i, topic) in TOPICS.iter().enumerate() {
            assert_eq!(tree.insert(topic, i), None);
        }
        tree
    }

    fn matching(tree: &RetainedTree<usize>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(filter, |topic, value| {
            assert_eq!(TOPICS[*value], topic, "the visitor gets the entry's own topic");
            out.push(topic.to_owned());
        });
        out.sort();
        out
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut tree = tree();
        assert_eq!(tree.len(), TOPICS.len());
        assert_eq!(tree.get("sport/tennis"), Some(&2));
        assert_eq!(tree.get("sport/tennis/"), None);
        assert_eq!(tree.get("sport/tennis/player3"), None);
        assert_eq!(tree.insert("sport/tennis", 99), Some(2));
        assert_eq!(tree.len(), TOPICS.len());
        assert_eq!(tree.remove("sport/tennis"), Some(99));
        assert_eq!(tree.remove("sport/tennis"), None);
        assert_eq!(tree.get("sport/tennis"), None);
        assert_eq!(tree.get("sport/tennis/player1"), Some(&3), "children outlive their parent");
        assert_eq!(tree.len(), TOPICS.len() - 1);
    }

    #[test]
    fn filters_follow_the_matching_rules() {
        let tree = tree();
        // [MQTT-4.7.1-2]: `#` matches the parent level and every level below.
        assert_eq!(
            matching(&tree, "sport/tennis/player1/#"),
            ["sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"]
        );
        assert_eq!(matching(&tree, "sport/#").len(), 7, "sport itself included");
        // [MQTT-4.7.1-3]: `+` is exactly one level, the empty one included.
        assert_eq!(matching(&tree, "sport/tennis/+"), ["sport/tennis/player1", "sport/tennis/player2"]);
        assert_eq!(matching(&tree, "sport/+"), ["sport/", "sport/tennis"]);
        assert_eq!(matching(&tree, "+/+"), ["/", "/finance", "sport/", "sport/tennis", "x/$SYS"]);
        assert_eq!(matching(&tree, "/+"), ["/", "/finance"]);
        assert_eq!(matching(&tree, "+"), ["finance", "sport"]);
        assert_eq!(matching(&tree, "a/+/b"), ["a//b"]);
        assert_eq!(matching(&tree, "a/b"), Vec::<String>::new());
        assert_eq!(matching(&tree, "sport/tennis/player1"), ["sport/tennis/player1"]);
    }

    #[test]
    fn leading_wildcards_do_not_return_dollar_topics() {
        // [MQTT-4.7.2-1]
        let tree = tree();
        let all = matching(&tree, "#");
        assert_eq!(all.len(), TOPICS.len() - 3);
        assert!(all.iter().all(|t| !t.starts_with('$')));
        assert!(all.contains(&"x/$SYS".to_owned()), "only the first level counts");
        assert_eq!(matching(&tree, "+/x"), Vec::<String>::new());
        assert_eq!(matching(&tree, "+/monitor/Clients"), Vec::<String>::new());
        assert_eq!(matching(&tree, "$SYS/#"), ["$SYS", "$SYS/monitor/Clients", "$SYS/x"]);
        assert_eq!(matching(&tree, "$SYS/monitor/+"), ["$SYS/monitor/Clients"]);
        assert_eq!(matching(&tree, "+/$SYS"), ["x/$SYS"]);
    }

    #[test]
    fn invalid_filters_do_not_panic() {
        let tree = tree();
        for filter in ["", "#/#", "a/#/b", "sport+", "/#/", "$share/g/#"] {
            tree.for_each_match(filter, |_, _| {});
        }
        assert_eq!(matching(&tree, "sport/#/x"), Vec::<String>::new(), "a `#` not last is literal");
    }

    #[test]
    fn removal_prunes_back_to_the_root() {
        let mut tree = tree();
        for topic in TOPICS.iter().rev() {
            assert!(tree.remove(topic).is_some(), "{topic}");
        }
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn retain_drops_and_prunes() {
        let mut tree = tree();
        let before = tree.node_count();
        tree.retain(|topic, _| !topic.starts_with("sport"));
        assert_eq!(tree.len(), TOPICS.len() - 7);
        assert_eq!(matching(&tree, "sport/#"), Vec::<String>::new());
        assert_eq!(tree.get("sport"), None);
        assert_eq!(tree.get("/finance"), Some(&7));
        // sport, sport/"", tennis, player1, ranking, score, wimbledon, player2.
        assert_eq!(tree.node_count(), before - 8);
        tree.retain(|_, _| false);
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn churn_reuses_node_slots() {
        let mut tree = RetainedTree::new();
        for round in 0..20 {
            for i in 0..50 {
                tree.insert(&format!("dev/{i}/state/{round}"), i);
            }
            tree.retain(|_, v| v % 2 == 0);
            for i in (0..50).step_by(2) {
                assert_eq!(tree.remove(&format!("dev/{i}/state/{round}")), Some(i));
            }
            assert_eq!(tree.node_count(), 1);
        }
        assert_eq!(tree.nodes.slots(), 1 + 1 + 50 * 3);
    }

    proptest! {
        #[test]
        fn for_each_match_agrees_with_the_reference(
            topics in prop::collection::vec(topic(), 0..40),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            filters in prop::collection::vec(filter(), 1..20),
        ) {
            let mut tree = RetainedTree::new();
            let mut model = BTreeMap::new();
            for (i, topic) in topics.iter().enumerate() {
                prop_assert_eq!(tree.insert(topic, i), model.insert(topic.clone(), i));
            }
            if !topics.is_empty() {
                for index in &removals {
                    let topic = index.get(&topics);
                    prop_assert_eq!(tree.remove(topic), model.remove(topic));
                }
            }
            prop_assert_eq!(tree.len(), model.len());
            for filter in &filters {
                let mut got = Vec::new();
                tree.for_each_match(filter, |topic, value| got.push((topic.to_owned(), *value)));
                got.sort();
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(topic, _)| reference_matches(filter, topic))
                    .map(|(topic, value)| (topic.clone(), *value))
                    .collect();
                prop_assert_eq!(got, expected, "filter {:?}", filter);
            }
            tree.retain(|_, _| false);
            prop_assert_eq!(tree.node_count(), 1);
        }
    }
}
