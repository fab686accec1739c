//! Recovery: rebuilding retained messages and persistent sessions from what the store held.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ProtocolVersion, QoS, TopicName};

use super::state::Broker;
use crate::message::Message;
use crate::ports::durability::{Change, Changes, DeliveryStage, Recovered, StoredWill};
use crate::route::subscriber::Subscriber;
use crate::session::{options_from_byte, queued_from_record, Session, StoredSubscription};

/// What [`Broker::restore`] brought back, for the startup log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Persistent sessions.
    pub sessions: usize,
    /// Their subscriptions.
    pub subscriptions: usize,
    /// Their queued and in-flight messages.
    pub deliveries: usize,
    /// Retained messages.
    pub retained: usize,
}

impl Broker {
    /// Restores what the store held: retained messages, and persistent sessions with their
    /// subscriptions, queued and in-flight deliveries, inbound QoS 2 ids, topic ids and delayed
    /// wills.
    /// Detached sessions resume their expiry countdown from the stored deadline, or from `now`
    /// when the broker stopped while their client was connected. Call before accepting
    /// connections; a broker without a store restores nothing.
    pub fn restore(&self, recovered: Recovered, now: Instant) -> Restored {
        let Some(journal) = &self.journal else { return Restored::default() };
        let mut restored = Restored::default();

        // Durable references: one per retained topic and per delivery record. A message with
        // a delivery in flight no longer expires from the store (`Journal::keep_past_expiry`).
        let in_flight: HashSet<u64> = recovered
            .sessions
            .iter()
            .flat_map(|s| s.deliveries.iter().filter(|(_, d)| d.stage != DeliveryStage::Queued).map(|(_, d)| d.message))
            .collect();
        let mut references: HashMap<u64, u32> = HashMap::new();
        let deliveries = recovered.sessions.iter().flat_map(|s| s.deliveries.iter().map(|(_, d)| d.message));
        for id in recovered.retained.iter().map(|(_, id)| *id).chain(deliveries) {
            *references.entry(id).or_default() += 1;
        }
        let next_message_id = recovered.messages.iter().map(|(id, _)| id + 1).max().unwrap_or(1);
        let next_session_id = recovered.sessions.iter().map(|s| s.record.session_id + 1).max().unwrap_or(1);
        self.next_message_id.fetch_max(next_message_id, Ordering::Relaxed);
        self.next_id.fetch_max(next_session_id, Ordering::Relaxed);

        let mut messages: HashMap<u64, Arc<Message>> = HashMap::with_capacity(recovered.messages.len());
        for (id, record) in recovered.messages {
            let topic = record.topic.clone();
            let Some(message) = journal.message_from_record(id, record) else {
                tracing::warn!(id, %topic, "stored message with an invalid topic or QoS, skipped");
                continue;
            };
            messages.insert(id, Arc::new(message));
        }
        // Counted for the messages restored: a skipped one is not stored for the broker.
        journal.restore_references(references.into_iter().filter_map(|(id, count)| {
            let expires_at = messages.get(&id)?.expires_at.filter(|_| !in_flight.contains(&id));
            Some((id, count, expires_at))
        }));
        {
            let mut retained = self.retained.write();
            for (topic, id) in recovered.retained {
                if super::is_sys_topic(&topic) {
                    // A value a client stored in `$SYS` before only the broker published there
                    // (the broker's own are kept in memory): it leaves the store.
                    let mut changes = Changes::new();
                    changes.push(Change::DeleteRetained(topic));
                    journal.release_reference(id, changes);
                    continue;
                }
                if let Some(message) = messages.get(&id) {
                    retained.set(message);
                    restored.retained += 1;
                }
            }
        }

        for stored in recovered.sessions {
            let record = stored.record;
            let protocol = match record.protocol_level {
                3 => ProtocolVersion::V31,
                4 => ProtocolVersion::V311,
                _ => ProtocolVersion::V5,
            };
            let client_id: Arc<str> = Arc::from(stored.client_id.as_str());
            let session =
                Arc::new(Session::new(record.session_id, client_id.clone(), protocol, record.expiry_interval));
            session.restore_expiry(record.expires_at_unix_ms.map(|ms| journal.instant(ms)), now);
            session.lock().delayed_will = record.delayed_will.and_then(|will| self.restored_will(will)).map(Box::new);
            let (expires_at, will_due) = {
                let state = session.lock();
                (state.expires_at, state.delayed_will.as_ref().map(|will| will.0))
            };
            for at in expires_at.into_iter().chain(will_due) {
                self.deadlines.schedule(at, &session);
            }
            {
                let mut router = self.router.write();
                for (filter, subscription) in stored.subscriptions {
                    let options = options_from_byte(subscription.options);
                    let shared = filter.starts_with("$share/").then(|| Arc::from(filter.as_str()));
                    let subscriber = Subscriber::local(Arc::clone(&session), options, subscription.identifier, shared);
                    router.subscribe(&filter, session.id(), subscriber);
                    let remembered = StoredSubscription { options, id: subscription.identifier };
                    session.lock().subscriptions.insert(&filter, remembered);
                    restored.subscriptions += 1;
                }
            }
            // With offline queues in the store, what follows the last delivery in flight stays
            // there until the client returns (decision 0006); what is in flight, and anything
            // queued before it, is resent first from memory (MQTT-4.4.0-1).
            let spill_from = if journal.queues().is_some() {
                stored.deliveries.iter().rposition(|(_, d)| d.stage != DeliveryStage::Queued).map_or(0, |i| i + 1)
            } else {
                usize::MAX
            };
            for (index, (seq, delivery)) in stored.deliveries.into_iter().enumerate() {
                let Some(message) = messages.get(&delivery.message) else { continue };
                if index >= spill_from {
                    session.restore_spilled(seq, delivery.message, message.payload.len());
                    restored.deliveries += 1;
                    continue;
                }
                let stage = delivery.stage;
                let Some(item) = queued_from_record(delivery, Arc::clone(message)) else { continue };
                session.restore_delivery(seq, item, stage);
                restored.deliveries += 1;
            }
            for packet_id in stored.inbound_qos2 {
                session.restore_inbound_qos2(packet_id);
            }
            session.restore_topic_ids(stored.topic_ids);
            self.sessions.lock().insert(client_id, session);
            restored.sessions += 1;
        }
        restored
    }

    /// The message a stored delayed will becomes, with its due time.
    fn restored_will(&self, will: StoredWill) -> Option<(Instant, Arc<Message>)> {
        let journal = self.journal.as_ref()?;
        let topic = TopicName::new(&will.topic).ok()?;
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let qos = QoS::from_u8(will.qos)?;
        let due = journal.instant(will.due_unix_ms);
        // MQTT-3.1.3-10 / 3.3.2.3.3: the will's Message Expiry Interval runs from its publication.
        let expires_at = will.message_expiry_interval.map(|secs| due + std::time::Duration::from_secs(u64::from(secs)));
        let message = Message::restored(id, topic, will.payload, qos, will.retain, will.properties, expires_at, None);
        Some((due, Arc::new(message)))
    }
}
