//! PLACEHOLDER (replaced by branch `router`): retained messages by topic.

use std::collections::BTreeMap;

/// Retained store.
pub struct RetainedTree<V> {
    map: BTreeMap<String, V>,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self { map: BTreeMap::new() }
    }
}

impl<V> RetainedTree<V> {
    /// Insert.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        self.map.insert(topic.to_owned(), value)
    }
    /// Remove.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        self.map.remove(topic)
    }
    /// Count.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Visit matches.
    pub fn for_each_match(&self, filter: &str, mut visit: impl FnMut(&str, &V)) {
        for (t, v) in &self.map {
            if crate::router::matches(filter, t) {
                visit(t, v);
            }
        }
    }
    /// Keep some.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.map.retain(|t, v| keep(t, v));
    }
}
