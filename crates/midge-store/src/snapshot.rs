//! Everything the store holds, read at startup for recovery.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::batch::Batch;
use crate::error::StoreError;
use crate::layout::{self, Read, Table};
use crate::records::{DeliveryRecord, MessageId, MessageRecord, SessionRecord, SubscriptionRecord};

/// The store's whole content, as recovery needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Persistent sessions by client id.
    pub sessions: BTreeMap<String, SessionSnapshot>,
    /// Retained messages by topic.
    pub retained: BTreeMap<String, MessageId>,
    /// Every stored message.
    pub messages: BTreeMap<MessageId, MessageRecord>,
    /// Clients with subscriptions, deliveries or inbound ids but no session record. The broker
    /// never writes these (a session is put before its rows and deleted with them); they are
    /// reported so [`Snapshot::repair`] can delete them rather than load half a session.
    pub stray_clients: BTreeSet<String>,
}

/// One persistent session with its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The session.
    pub record: SessionRecord,
    /// Its subscriptions by topic filter.
    pub subscriptions: BTreeMap<String, SubscriptionRecord>,
    /// Its queue and in-flight messages, in `seq` order.
    pub deliveries: Vec<(u64, DeliveryRecord)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, ascending.
    pub inbound_qos2: Vec<u16>,
    /// Its topic ids (see [`Op::PutTopicId`](crate::Op::PutTopicId)) and their topic names,
    /// ascending by id.
    pub topic_ids: Vec<(u16, String)>,
}

impl SessionSnapshot {
    /// The `seq` to give the session's next delivery entry.
    pub fn next_seq(&self) -> u64 {
        self.deliveries.last().map_or(0, |(seq, _)| seq + 1)
    }
}

impl Snapshot {
    /// The first message id not in use: the broker allocates new ids from here.
    pub fn next_message_id(&self) -> MessageId {
        MessageId(self.messages.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    /// The first session id above every stored one.
    pub fn next_session_id(&self) -> u64 {
        self.sessions.values().map(|s| s.record.session_id + 1).max().unwrap_or(1)
    }

    /// How many retained topics and delivery entries refer to each message: the broker's
    /// in-memory reference counts, rebuilt. Messages nothing refers to are absent.
    pub fn reference_counts(&self) -> HashMap<MessageId, u32> {
        let mut counts: HashMap<MessageId, u32> = HashMap::new();
        let deliveries = self.sessions.values().flat_map(|s| s.deliveries.iter().map(|(_, d)| d.message));
        for id in self.retained.values().copied().chain(deliveries) {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Messages no retained topic and no delivery entry refers to, e.g. left by a crash between
    /// the last reference going and the message's deletion being submitted.
    pub fn orphaned_messages(&self) -> Vec<MessageId> {
        let counts = self.reference_counts();
        self.messages.keys().filter(|id| !counts.contains_key(id)).copied().collect()
    }

    /// Removes from this snapshot what recovery must not load and returns the batch that
    /// removes it from the store too: orphaned messages, stray clients' rows, and retained or
    /// delivery entries whose message is missing. An empty batch means the store was clean.
    pub fn repair(&mut self) -> Batch {
        let mut batch = Batch::new();
        for client in std::mem::take(&mut self.stray_clients) {
            batch.delete_session(client);
        }
        let messages = &self.messages;
        self.retained.retain(|topic, id| {
            let keep = messages.contains_key(id);
            if !keep {
                batch.delete_retained(topic.clone());
            }
            keep
        });
        for (client, session) in &mut self.sessions {
            session.deliveries.retain(|(seq, d)| {
                let keep = messages.contains_key(&d.message);
                if !keep {
                    batch.delete_delivery(client.clone(), *seq);
                }
                keep
            });
        }
        for id in self.orphaned_messages() {
            self.messages.remove(&id);
            batch.delete_message(id);
        }
        batch
    }

    /// Reads every table. `path` names the store in errors.
    pub(crate) fn read(read: &dyn Read, path: &Path) -> Result<Snapshot, StoreError> {
        let corrupt = |table: Table, detail: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("table {}: {detail}", table.name()),
        };
        let mut snapshot = Snapshot::default();

        read.for_each(Table::Messages, &mut |key, value| {
            let id = layout::be_u64(key).map_err(|e| corrupt(Table::Messages, e))?;
            let record =
                layout::decode_value(value).map_err(|e| corrupt(Table::Messages, format!("message {id}: {e}")))?;
            snapshot.messages.insert(MessageId(id), record);
            Ok(())
        })?;

        read.for_each(Table::Retained, &mut |key, value| {
            let topic =
                String::from_utf8(key.to_vec()).map_err(|_| corrupt(Table::Retained, "topic is not UTF-8".into()))?;
            let id = layout::decode_value(value).map_err(|e| corrupt(Table::Retained, format!("{topic:?}: {e}")))?;
            snapshot.retained.insert(topic, id);
            Ok(())
        })?;

        read.for_each(Table::Sessions, &mut |key, value| {
            let client = String::from_utf8(key.to_vec())
                .map_err(|_| corrupt(Table::Sessions, "client id is not UTF-8".into()))?;
            let record =
                layout::decode_session(value).map_err(|e| corrupt(Table::Sessions, format!("{client:?}: {e}")))?;
            let session = SessionSnapshot {
                record,
                subscriptions: BTreeMap::new(),
                deliveries: Vec::new(),
                inbound_qos2: Vec::new(),
                topic_ids: Vec::new(),
            };
            snapshot.sessions.insert(client, session);
            Ok(())
        })?;

        let Snapshot { sessions, stray_clients, .. } = &mut snapshot;
        read.for_each(Table::Subscriptions, &mut |key, value| {
            let (client, filter) = layout::split_client_key(key).map_err(|e| corrupt(Table::Subscriptions, e))?;
            let filter = String::from_utf8(filter.to_vec())
                .map_err(|_| corrupt(Table::Subscriptions, format!("{client:?}: filter is not UTF-8")))?;
            let record = layout::decode_value(value)
                .map_err(|e| corrupt(Table::Subscriptions, format!("{client:?} {filter:?}: {e}")))?;
            match sessions.get_mut(&client) {
                Some(s) => {
                    s.subscriptions.insert(filter, record);
                }
                None => {
                    stray_clients.insert(client);
                }
            }
            Ok(())
        })?;

        read.for_each(Table::Deliveries, &mut |key, value| {
            let (client, seq) = layout::split_client_key(key).map_err(|e| corrupt(Table::Deliveries, e))?;
            let seq = layout::be_u64(seq).map_err(|e| corrupt(Table::Deliveries, format!("{client:?}: {e}")))?;
            let record = layout::decode_value(value)
                .map_err(|e| corrupt(Table::Deliveries, format!("{client:?} {seq}: {e}")))?;
            match sessions.get_mut(&client) {
                // Keys sort by seq within a client, so pushing keeps the queue in order.
                Some(s) => s.deliveries.push((seq, record)),
                None => {
                    stray_clients.insert(client);
                }
            }
            Ok(())
        })?;

        read.for_each(Table::InboundQos2, &mut |key, value| {
            let (client, packet_id) = layout::split_client_key(key).map_err(|e| corrupt(Table::InboundQos2, e))?;
            let packet_id =
                layout::be_u16(packet_id).map_err(|e| corrupt(Table::InboundQos2, format!("{client:?}: {e}")))?;
            layout::decode_value::<()>(value)
                .map_err(|e| corrupt(Table::InboundQos2, format!("{client:?} {packet_id}: {e}")))?;
            match sessions.get_mut(&client) {
                Some(s) => s.inbound_qos2.push(packet_id),
                None => {
                    stray_clients.insert(client);
                }
            }
            Ok(())
        })?;

        read.for_each(Table::TopicIds, &mut |key, value| {
            let (client, topic_id) = layout::split_client_key(key).map_err(|e| corrupt(Table::TopicIds, e))?;
            let topic_id =
                layout::be_u16(topic_id).map_err(|e| corrupt(Table::TopicIds, format!("{client:?}: {e}")))?;
            let topic = layout::decode_value::<String>(value)
                .map_err(|e| corrupt(Table::TopicIds, format!("{client:?} {topic_id}: {e}")))?;
            match sessions.get_mut(&client) {
                // Keys sort by id within a client.
                Some(s) => s.topic_ids.push((topic_id, topic)),
                None => {
                    stray_clients.insert(client);
                }
            }
            Ok(())
        })?;

        Ok(snapshot)
    }
}
