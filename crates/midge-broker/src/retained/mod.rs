//! The retained messages: a [`RetainedTree`] searched by filter on subscribe, and an index of
//! the ones that expire, so the periodic sweep costs what expires rather than what is kept.

mod tree;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use self::tree::RetainedTree;
use crate::message::{is_sys_topic, Message};

/// Retained messages by topic, with their expiry index.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    tree: RetainedTree<Arc<Message>>,
    /// `(expires_at, topic)` of exactly the stored messages that expire: entries are removed
    /// when their message is replaced or cleared, so the index never outgrows the store.
    expiring: BTreeSet<(Instant, Arc<str>)>,
    /// Bytes of topics and payloads held, for `max_retained_bytes`.
    bytes: usize,
    /// Of those, the broker's own (`$SYS`): messages and bytes. The retained bounds are for
    /// what clients make the broker hold; the broker's own tree is a few dozen small values,
    /// and takes no client's place.
    own: (usize, usize),
}

/// What a retained message counts against `max_retained_bytes`: its topic and its payload.
fn size(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

impl RetainedStore {
    /// Whether storing `message` keeps the store within `max_messages` and `max_bytes` (0: no
    /// byte bound). Clearing a topic always does; replacing a message counts only what it adds.
    /// The broker's own (`$SYS`) are always admitted, and not counted for the others.
    pub fn admits(&self, message: &Message, max_messages: usize, max_bytes: usize) -> bool {
        if message.payload.is_empty() || is_sys_topic(&message.topic) {
            return true;
        }
        let replaced = self.tree.get(message.topic.as_str());
        if replaced.is_none() && self.tree.len() - self.own.0 >= max_messages {
            return false;
        }
        let bytes = self.bytes - self.own.1 - replaced.map_or(0, |old| size(old)) + size(message);
        max_bytes == 0 || bytes <= max_bytes
    }

    /// Stores `message` as the retained message of its topic (MQTT-3.3.1-5), or clears the topic
    /// when its payload is empty (MQTT-3.3.1-10, MQTT-3.3.1-11). Returns the message replaced.
    pub fn set(&mut self, message: &Arc<Message>) -> Option<Arc<Message>> {
        let topic = message.topic.as_str();
        let previous = if message.payload.is_empty() {
            self.tree.remove(topic)
        } else {
            if let Some(at) = message.expires_at {
                self.expiring.insert((at, Arc::from(topic)));
            }
            self.count(message, true);
            self.tree.insert(topic, Arc::clone(message))
        };
        if let Some(old) = &previous {
            self.count(old, false);
        }
        if let Some(at) = previous.as_ref().and_then(|old| old.expires_at) {
            // The replaced message's entry, unless the new one has the very same deadline.
            if message.payload.is_empty() || message.expires_at != Some(at) {
                self.expiring.remove(&(at, Arc::from(topic)));
            }
        }
        previous
    }

    /// Visits the live retained messages matching `filter`.
    pub fn for_each_match(&self, filter: &str, now: Instant, mut visit: impl FnMut(&Arc<Message>)) {
        self.tree.for_each_match(filter, |_, message| {
            if !message.is_expired(now) {
                visit(message);
            }
        });
    }

    /// Removes the messages that have expired by `now` (MQTT-3.3.2-5); returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<Arc<Message>> {
        let mut expired = Vec::new();
        while let Some((at, topic)) = self.expiring.first().cloned() {
            if at > now {
                break;
            }
            self.expiring.pop_first();
            if self.tree.get(&topic).is_some_and(|m| m.expires_at == Some(at)) {
                if let Some(message) = self.tree.remove(&topic) {
                    self.count(&message, false);
                    expired.push(message);
                }
            }
        }
        expired
    }

    /// Counts `message` in (`added`) or out of the bytes held, and of the broker's own.
    fn count(&mut self, message: &Message, added: bool) {
        let own = is_sys_topic(&message.topic);
        let size = size(message);
        if added {
            self.bytes += size;
            if own {
                self.own = (self.own.0 + 1, self.own.1 + size);
            }
        } else {
            self.bytes -= size;
            if own {
                self.own = (self.own.0 - 1, self.own.1 - size);
            }
        }
    }

    /// How many messages are retained (the broker's own included).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Bytes of their topics and payloads.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether none is.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Entries in the expiry index.
    #[cfg(test)]
    pub fn expiring_len(&self) -> usize {
        self.expiring.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use midge_codec::{Properties, Publish, QoS, TopicName};

    use super::*;

    fn retained(topic: &str, payload: &str, expiry: Option<u32>, now: Instant) -> Arc<Message> {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: TopicName::new(topic).unwrap(),
            packet_id: None,
            properties: Properties { message_expiry_interval: expiry, ..Properties::default() },
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        };
        Arc::new(Message::new(1, &publish, None, now))
    }

    #[test]
    fn expired_messages_are_removed_and_the_index_tracks_only_live_ones() {
        let now = Instant::now();
        let mut store = RetainedStore::default();
        store.set(&retained("a", "short", Some(5), now));
        store.set(&retained("b", "long", Some(50), now));
        store.set(&retained("c", "forever", None, now));
        // Replacing and clearing remove the old entries: the index never outgrows the store.
        for i in 0..100 {
            store.set(&retained("b", "again", Some(50 + i), now));
        }
        store.set(&retained("c", "", None, now));
        assert_eq!(store.len(), 2);
        assert_eq!(store.expiring_len(), 2);

        let gone = store.expire(now + Duration::from_secs(6));
        assert_eq!(gone.len(), 1);
        assert_eq!(&gone[0].payload[..], b"short");
        let mut live = Vec::new();
        store.for_each_match("#", now + Duration::from_secs(6), |m| live.push(m.topic.to_string()));
        assert_eq!(live, ["b"]);
        assert_eq!(store.expire(now + Duration::from_secs(500)).len(), 1);
        assert!(store.is_empty());
        assert_eq!(store.expiring_len(), 0);
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn the_bounds_refuse_new_topics_but_never_a_replacement_that_fits_or_a_clear() {
        let now = Instant::now();
        let mut store = RetainedStore::default();
        // Two messages of 1 + 4 bytes each, bounds of 2 messages and 12 bytes.
        for topic in ["a", "b"] {
            let message = retained(topic, "1234", None, now);
            assert!(store.admits(&message, 2, 12));
            store.set(&message);
        }
        assert_eq!(store.bytes(), 10);
        assert!(!store.admits(&retained("c", "1", None, now), 2, 0), "a third topic");
        assert!(store.admits(&retained("a", "123456", None, now), 2, 12), "a replacement within the bytes");
        assert!(!store.admits(&retained("a", "1234567", None, now), 2, 12), "one beyond the bytes");
        assert!(store.admits(&retained("a", "", None, now), 2, 12), "a clear");
        store.set(&retained("a", "", None, now));
        assert_eq!(store.bytes(), 5);
        assert!(store.admits(&retained("c", "123456", None, now), 2, 12));
        assert!(!store.admits(&retained("c", "1234567", None, now), 2, 12));
    }

    #[test]
    fn the_brokers_own_take_no_clients_place_under_the_bounds() {
        let now = Instant::now();
        let mut store = RetainedStore::default();
        for topic in ["$SYS/broker/uptime", "$SYS/broker/version"] {
            let own = retained(topic, "a value of some length", None, now);
            assert!(store.admits(&own, 1, 5), "always admitted");
            store.set(&own);
        }
        let client = retained("a", "1234", None, now);
        assert!(store.admits(&client, 1, 5), "the bounds count what clients retain");
        store.set(&client);
        assert!(!store.admits(&retained("b", "1", None, now), 1, 0));
        assert_eq!(store.len(), 3, "all are retained, the broker's own included");
        store.set(&retained("$SYS/broker/uptime", "", None, now));
        store.set(&retained("$SYS/broker/version", "", None, now));
        store.set(&retained("a", "", None, now));
        assert_eq!((store.bytes(), store.own), (0, (0, 0)));
    }
}
