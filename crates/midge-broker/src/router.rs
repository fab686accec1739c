//! PLACEHOLDER (replaced by the trie from branch `router` before landing): the same API over a
//! linear scan, so the broker compiles while the index is written.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::AtomicUsize;

/// One matching subscription.
pub enum Match<'a, K, V> {
    /// An ordinary subscription.
    Direct {
        /// Subscriber.
        key: &'a K,
        /// Its data.
        value: &'a V,
        /// The filter.
        filter: &'a str,
    },
    /// A shared subscription group.
    Shared {
        /// Group name.
        group: &'a str,
        /// The filter without the `$share/{group}/` prefix.
        filter: &'a str,
        /// Members.
        members: &'a [(K, V)],
        /// Round-robin cursor.
        cursor: &'a AtomicUsize,
    },
}

/// Subscription index.
pub struct Router<K, V> {
    direct: Vec<(String, K, V)>,
    shared: HashMap<(String, String), (Vec<(K, V)>, AtomicUsize)>,
    generation: u64,
}

impl<K, V> Default for Router<K, V> {
    fn default() -> Self {
        Self { direct: Vec::new(), shared: HashMap::new(), generation: 0 }
    }
}

impl<K: Clone + Eq + Hash, V> Router<K, V> {
    /// Inserts or replaces.
    pub fn subscribe(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        self.generation += 1;
        if let Some((group, rest)) = split_shared(filter) {
            let entry = self
                .shared
                .entry((group.to_owned(), rest.to_owned()))
                .or_insert_with(|| (Vec::new(), AtomicUsize::new(0)));
            if let Some(slot) = entry.0.iter_mut().find(|(k, _)| *k == key) {
                return Some(std::mem::replace(&mut slot.1, value));
            }
            entry.0.push((key, value));
            return None;
        }
        if let Some(slot) = self.direct.iter_mut().find(|(f, k, _)| f == filter && *k == key) {
            return Some(std::mem::replace(&mut slot.2, value));
        }
        self.direct.push((filter.to_owned(), key, value));
        None
    }

    /// Removes.
    pub fn unsubscribe(&mut self, filter: &str, key: &K) -> Option<V> {
        self.generation += 1;
        if let Some((group, rest)) = split_shared(filter) {
            let k = (group.to_owned(), rest.to_owned());
            let entry = self.shared.get_mut(&k)?;
            let pos = entry.0.iter().position(|(k2, _)| k2 == key)?;
            let (_, v) = entry.0.remove(pos);
            if entry.0.is_empty() {
                self.shared.remove(&k);
            }
            return Some(v);
        }
        let pos = self.direct.iter().position(|(f, k, _)| f == filter && k == key)?;
        Some(self.direct.remove(pos).2)
    }

    /// Visits matches.
    pub fn match_topic(&self, topic: &str, mut visit: impl FnMut(Match<'_, K, V>)) {
        for (filter, key, value) in &self.direct {
            if matches(filter, topic) {
                visit(Match::Direct { key, value, filter });
            }
        }
        for ((group, filter), (members, cursor)) in &self.shared {
            if matches(filter, topic) {
                visit(Match::Shared { group, filter, members, cursor });
            }
        }
    }

    /// Generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn split_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// Reference matcher.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
