//! The topic ids a gateway gave a session's client: MQTT-SN's normal topic ids (MQTT-SN 1.2
//! section 6.5), each a number that stands for a topic name between the client and the gateway.
//!
//! The core does not use them; it keeps them with the session so that they live as long as the
//! session does: a client that resumes its session (after a sleep, a lost connection or a
//! restart of the broker) finds the ids it was given, and a topic keeps its id. A persistent
//! session keeps them in the store (one row per id, deleted with the session); a new session
//! starts without any. Ids are only ever added: a gateway never renames a topic under a client.

use std::sync::Arc;

use super::state::{Session, TopicIds};
use crate::journal::Journal;
use crate::ports::durability::{Change, Changes, Ticket};

impl Session {
    /// Its topic ids, ascending.
    pub(crate) fn topic_ids(&self) -> TopicIds {
        self.state.lock().topic_ids.as_deref().cloned().unwrap_or_default()
    }

    /// Records that `topic_id` stands for `topic`, if connection `conn_id` still holds the
    /// session (a connection taken over, or a session ended, records nothing: its successor
    /// has the session now). For a persistent session the row is submitted under the session
    /// lock, so it is ordered with the session's deletion; its ticket is returned.
    pub(crate) fn record_topic_id(
        &self,
        conn_id: u64,
        topic_id: u16,
        topic: Arc<str>,
        journal: Option<&Journal>,
    ) -> Option<Ticket> {
        let mut state = self.state.lock();
        if state.ended || state.attached.as_ref().is_none_or(|attached| attached.conn_id != conn_id) {
            return None;
        }
        let ids = state.topic_ids.get_or_insert_with(Box::default);
        match ids.binary_search_by_key(&topic_id, |(id, _)| *id) {
            Ok(at) if ids[at].1 == topic => return None,
            Ok(at) => ids[at].1 = Arc::clone(&topic),
            Err(at) => ids.insert(at, (topic_id, Arc::clone(&topic))),
        }
        let journal = journal.filter(|_| state.persistent())?;
        let mut changes = Changes::new();
        changes.push(Change::PutTopicId { client_id: self.client_id.to_string(), topic_id, topic: topic.to_string() });
        Some(journal.submit(changes))
    }

    /// Restores the topic ids read from the store (recovery only, before any connection).
    pub(crate) fn restore_topic_ids(&self, mut ids: Vec<(u16, String)>) {
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable_by_key(|(id, _)| *id);
        ids.dedup_by_key(|(id, _)| *id);
        let ids = ids.into_iter().map(|(id, topic)| (id, Arc::from(topic))).collect();
        self.state.lock().topic_ids = Some(Box::new(ids));
    }
}
