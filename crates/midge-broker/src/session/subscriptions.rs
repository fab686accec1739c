//! A session's own list of its subscriptions (filter → options), kept to unsubscribe, to
//! count against `max_subscriptions_per_client` and to end the session.
//!
//! Most clients hold a handful of subscriptions, and an idle device often one. A hash map
//! allocates at least four buckets (about 180 bytes here) for one entry; a short vector scanned
//! linearly holds one entry in 32 bytes and is as fast at this size. Past
//! [`SMALL_LIMIT`] entries the set becomes a hash map, so a client with thousands of
//! subscriptions keeps constant-time lookups.

use std::collections::HashMap;

use midge_codec::SubscriptionOptions;

use crate::hash::ProcessSeeded;

/// A subscription as the session remembers it, to restore and to unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredSubscription {
    /// Its options.
    pub(crate) options: SubscriptionOptions,
    /// Its v5 subscription identifier.
    pub(crate) id: Option<u32>,
}

/// Entries kept in the vector before switching to a hash map.
pub(crate) const SMALL_LIMIT: usize = 8;

/// A session's subscriptions by filter.
#[derive(Debug)]
pub(crate) enum SubscriptionSet {
    /// Up to [`SMALL_LIMIT`] entries, scanned.
    Small(Vec<(Box<str>, StoredSubscription)>),
    /// More, hashed.
    Large(HashMap<Box<str>, StoredSubscription, ProcessSeeded>),
}

impl Default for SubscriptionSet {
    fn default() -> Self {
        SubscriptionSet::Small(Vec::new())
    }
}

impl SubscriptionSet {
    /// Subscriptions held.
    pub(crate) fn len(&self) -> usize {
        match self {
            SubscriptionSet::Small(entries) => entries.len(),
            SubscriptionSet::Large(map) => map.len(),
        }
    }

    /// Whether none is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `filter` is held.
    pub(crate) fn contains(&self, filter: &str) -> bool {
        match self {
            SubscriptionSet::Small(entries) => entries.iter().any(|(f, _)| &**f == filter),
            SubscriptionSet::Large(map) => map.contains_key(filter),
        }
    }

    /// Adds `filter`, or replaces its options (MQTT-3.8.4-3).
    pub(crate) fn insert(&mut self, filter: &str, subscription: StoredSubscription) {
        match self {
            SubscriptionSet::Small(entries) => {
                if let Some(entry) = entries.iter_mut().find(|(f, _)| &**f == filter) {
                    entry.1 = subscription;
                } else if entries.len() < SMALL_LIMIT {
                    // Grow by one: most sets never reach a second entry.
                    entries.reserve_exact(1);
                    entries.push((filter.into(), subscription));
                } else {
                    let mut map: HashMap<Box<str>, StoredSubscription, ProcessSeeded> = entries.drain(..).collect();
                    map.insert(filter.into(), subscription);
                    *self = SubscriptionSet::Large(map);
                }
            }
            SubscriptionSet::Large(map) => {
                map.insert(filter.into(), subscription);
            }
        }
    }

    /// Every filter held, with its subscription.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&str, &StoredSubscription)> + '_> {
        match self {
            SubscriptionSet::Small(entries) => Box::new(entries.iter().map(|(f, s)| (&**f, s))),
            SubscriptionSet::Large(map) => Box::new(map.iter().map(|(f, s)| (&**f, s))),
        }
    }

    /// Removes `filter`; returns whether it was held.
    pub(crate) fn remove(&mut self, filter: &str) -> bool {
        match self {
            SubscriptionSet::Small(entries) => match entries.iter().position(|(f, _)| &**f == filter) {
                Some(at) => {
                    entries.swap_remove(at);
                    if entries.is_empty() {
                        *entries = Vec::new(); // an emptied set holds nothing
                    }
                    true
                }
                None => false,
            },
            SubscriptionSet::Large(map) => map.remove(filter).is_some(),
        }
    }

    /// Empties the set, returning the filters it held.
    pub(crate) fn take_filters(&mut self) -> Vec<Box<str>> {
        match std::mem::take(self) {
            SubscriptionSet::Small(entries) => entries.into_iter().map(|(filter, _)| filter).collect(),
            SubscriptionSet::Large(map) => map.into_keys().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(id: u32) -> StoredSubscription {
        StoredSubscription { options: SubscriptionOptions::default(), id: Some(id) }
    }

    #[test]
    fn one_subscription_costs_one_small_entry() {
        let mut set = SubscriptionSet::default();
        set.insert("devices/1/cmd", subscription(1));
        match &set {
            SubscriptionSet::Small(entries) => assert_eq!(entries.capacity(), 1),
            SubscriptionSet::Large(_) => panic!("one entry went to the hash map"),
        }
        assert!(set.contains("devices/1/cmd"));
        assert!(!set.contains("devices/1"));
    }

    #[test]
    fn resubscribing_replaces_the_options_mqtt_3_8_4_3() {
        let mut set = SubscriptionSet::default();
        set.insert("a/b", subscription(1));
        set.insert("a/b", subscription(2));
        assert_eq!(set.len(), 1);
        assert!(set.remove("a/b"));
        assert!(!set.remove("a/b"));
        assert!(set.is_empty());
    }

    #[test]
    fn behaves_the_same_past_the_small_limit() {
        let mut set = SubscriptionSet::default();
        let filters: Vec<String> = (0..3 * SMALL_LIMIT).map(|i| format!("t/{i}")).collect();
        for (i, filter) in filters.iter().enumerate() {
            set.insert(filter, subscription(i as u32));
            set.insert(filter, subscription(i as u32)); // a replacement never grows the set
            assert_eq!(set.len(), i + 1);
        }
        assert!(matches!(set, SubscriptionSet::Large(_)));
        assert!(filters.iter().all(|f| set.contains(f)));
        assert!(set.remove("t/0"));
        assert!(!set.contains("t/0"));
        let mut taken: Vec<String> = set.take_filters().into_iter().map(String::from).collect();
        taken.sort();
        let mut expected = filters[1..].to_vec();
        expected.sort();
        assert_eq!(taken, expected);
        assert!(set.is_empty());
    }
}
