//! A store in memory behind the broker core's durability port and queue source, as the core's
//! own tests have it (`crates/midge-broker/tests/harness`): every submission is applied at once,
//! so every ticket is durable when it is returned, and what it holds is given back as a restart
//! would read it, repaired as midge-store repairs (rows naming a missing message are dropped).
//! It also answers what the `core` target checks: how many deliveries a session has stored, and
//! whether every stored message is referred to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use midge_broker::ports::durability::{
    Change, Changes, Durability, QueueReadError, QueueSource, QueuedRecord, Recovered, RecoveredSession,
    StoredDelivery, StoredMessage, StoredSession, StoredSubscription, Ticket,
};

/// The store.
#[derive(Debug, Default)]
pub struct MemoryDurability {
    state: Mutex<Model>,
}

#[derive(Debug, Default)]
struct Model {
    submissions: u64,
    messages: BTreeMap<u64, StoredMessage>,
    retained: BTreeMap<String, u64>,
    sessions: BTreeMap<String, SessionModel>,
}

#[derive(Debug, Default)]
struct SessionModel {
    record: Option<StoredSession>,
    subscriptions: BTreeMap<String, StoredSubscription>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    inbound_qos2: BTreeSet<u16>,
    topic_ids: BTreeMap<u16, String>,
}

impl Durability for MemoryDurability {
    fn submit(&self, changes: Changes) -> Ticket {
        let mut model = self.state.lock().expect("not poisoned");
        for change in changes {
            model.apply(change);
        }
        model.submissions += 1;
        Ticket(model.submissions)
    }
}

impl QueueSource for MemoryDurability {
    fn read_queue(&self, client_id: &str, from_seq: u64, limit: usize) -> Result<Vec<QueuedRecord>, QueueReadError> {
        let model = self.state.lock().expect("not poisoned");
        let Some(session) = model.sessions.get(client_id) else { return Ok(Vec::new()) };
        Ok(session
            .deliveries
            .range(from_seq..)
            .take(limit)
            .map(|(seq, delivery)| QueuedRecord {
                seq: *seq,
                delivery: delivery.clone(),
                message: model.messages.get(&delivery.message).cloned(),
            })
            .collect())
    }
}

impl Model {
    fn apply(&mut self, change: Change) {
        match change {
            Change::PutMessage { id, record } => {
                self.messages.insert(id, record);
            }
            Change::DeleteMessage(id) => {
                self.messages.remove(&id);
            }
            Change::PutRetained { topic, message } => {
                self.retained.insert(topic, message);
            }
            Change::DeleteRetained(topic) => {
                self.retained.remove(&topic);
            }
            Change::PutSession { client_id, record } => {
                self.sessions.entry(client_id).or_default().record = Some(record);
            }
            Change::DeleteSession(client_id) => {
                self.sessions.remove(&client_id);
            }
            Change::PutSubscription { client_id, filter, record } => {
                self.sessions.entry(client_id).or_default().subscriptions.insert(filter, record);
            }
            Change::DeleteSubscription { client_id, filter } => {
                self.sessions.entry(client_id).or_default().subscriptions.remove(&filter);
            }
            Change::PutDelivery { client_id, seq, record } => {
                self.sessions.entry(client_id).or_default().deliveries.insert(seq, record);
            }
            Change::DeleteDelivery { client_id, seq } => {
                self.sessions.entry(client_id).or_default().deliveries.remove(&seq);
            }
            Change::PutInboundQos2 { client_id, packet_id } => {
                self.sessions.entry(client_id).or_default().inbound_qos2.insert(packet_id);
            }
            Change::DeleteInboundQos2 { client_id, packet_id } => {
                self.sessions.entry(client_id).or_default().inbound_qos2.remove(&packet_id);
            }
            Change::PutTopicId { client_id, topic_id, topic } => {
                self.sessions.entry(client_id).or_default().topic_ids.insert(topic_id, topic);
            }
        }
    }
}

impl Model {
    /// What `Snapshot::repair` deletes.
    fn repair(&mut self) {
        self.sessions.retain(|_, s| s.record.is_some());
        let messages = &self.messages;
        self.retained.retain(|_, id| messages.contains_key(id));
        for session in self.sessions.values_mut() {
            session.deliveries.retain(|_, d| messages.contains_key(&d.message));
        }
        let mut referenced: BTreeSet<u64> = self.retained.values().copied().collect();
        for session in self.sessions.values() {
            referenced.extend(session.deliveries.values().map(|d| d.message));
        }
        self.messages.retain(|id, _| referenced.contains(id));
    }
}

impl MemoryDurability {
    /// Deliveries stored for `client_id`: its queue as far as it is in the store.
    pub fn delivery_count(&self, client_id: &str) -> usize {
        self.state.lock().expect("not poisoned").sessions.get(client_id).map_or(0, |s| s.deliveries.len())
    }

    /// Every stored message that no delivery and no retained topic refers to: the journal
    /// deletes a message with its last reference, so there should be none.
    pub fn unreferenced_messages(&self) -> Vec<u64> {
        let model = self.state.lock().expect("not poisoned");
        let mut referenced: BTreeSet<u64> = model.retained.values().copied().collect();
        for session in model.sessions.values() {
            referenced.extend(session.deliveries.values().map(|d| d.message));
        }
        model.messages.keys().copied().filter(|id| !referenced.contains(id)).collect()
    }

    /// Retained topics whose message is not stored.
    pub fn dangling_retained(&self) -> Vec<String> {
        let model = self.state.lock().expect("not poisoned");
        model.retained.iter().filter(|(_, id)| !model.messages.contains_key(id)).map(|(t, _)| t.clone()).collect()
    }

    /// What a restart reads, after the repair the server makes before it restores (midge-store's
    /// `Snapshot::repair`, whose batch it commits): rows of a client without a session record,
    /// deliveries and retained topics whose message is gone, and messages nothing refers to are
    /// deleted from the store.
    pub fn recovered(&self) -> Recovered {
        let mut model = self.state.lock().expect("not poisoned");
        model.repair();
        Recovered {
            messages: model.messages.iter().map(|(id, m)| (*id, m.clone())).collect(),
            retained: model.retained.iter().map(|(t, id)| (t.clone(), *id)).collect(),
            sessions: model
                .sessions
                .iter()
                .map(|(client_id, s)| RecoveredSession {
                    client_id: client_id.clone(),
                    record: s.record.clone().expect("repaired"),
                    subscriptions: s.subscriptions.iter().map(|(f, r)| (f.clone(), *r)).collect(),
                    deliveries: s.deliveries.iter().map(|(seq, d)| (*seq, d.clone())).collect(),
                    inbound_qos2: s.inbound_qos2.iter().copied().collect(),
                    topic_ids: s.topic_ids.iter().map(|(id, topic)| (*id, topic.clone())).collect(),
                })
                .collect(),
        }
    }
}
