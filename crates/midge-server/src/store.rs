//! The embedded store (midge-store) behind the core's durability port: opening it, turning what
//! it holds into what the core restores, and the core's changes into the store's batches.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use midge_broker::ports::durability::{
    Change, Changes, DeliveryStage, Durability, QueueReadError, QueueSource, QueuedRecord, Recovered, RecoveredSession,
    StoredDelivery, StoredMessage, StoredSession, StoredSubscription, StoredWill, Ticket,
};
use midge_broker::{Broker, Limits, Restored};
use midge_store::{
    Batch, DeliveryRecord, DeliveryState, DiskStore, MessageId, MessageRecord, Op, Reader, SessionRecord, Snapshot,
    Store, StoreError, SubmitError, SubscriptionRecord, SyncPolicy, WillRecord, Writer, WriterConfig, WriterHandle,
};

/// The store's group-commit writer as the core's [`Durability`].
#[derive(Debug, Clone)]
pub struct StoreDurability {
    writer: WriterHandle,
}

impl StoreDurability {
    /// The port over `writer`.
    pub fn new(writer: WriterHandle) -> Self {
        Self { writer }
    }

    /// The writer, for waiting until a ticket is durable.
    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }
}

impl Durability for StoreDurability {
    /// Never blocks, however far behind the writer is: the caller is a runtime worker that may
    /// hold broker locks, and blocking it would stall every connection on its thread. The
    /// back-pressure a slow disk puts on publishers is applied by their connections instead:
    /// one whose acknowledgements wait on the store is not read while the writer is behind
    /// (`conn/driver.rs`). A failed writer gives [`Ticket::NEVER`].
    fn submit(&self, changes: Changes) -> Ticket {
        let batch = Batch::from(changes.into_iter().map(op).collect::<Vec<Op>>());
        let submitted = match self.writer.submit(batch) {
            Err(SubmitError::Full(batch)) => self.writer.submit_over_bound(batch),
            other => other,
        };
        match submitted {
            Ok(ticket) => Ticket(ticket.0),
            Err(error) => {
                tracing::error!(%error, "store writer refused a batch; acknowledgements stop");
                Ticket::NEVER
            }
        }
    }
    fn begin_group(&self) {
        self.writer.begin_group();
    }

    fn end_group(&self) {
        self.writer.end_group();
    }
}

/// The store's [`Reader`] as the core's [`QueueSource`]: a session's committed deliveries, each
/// with its message (read once per batch however many deliveries share it).
#[derive(Debug, Clone)]
pub struct StoreQueueSource {
    reader: Reader,
}

impl StoreQueueSource {
    /// The port over `reader` (`DiskStore::reader`, taken before the writer takes the store).
    pub fn new(reader: Reader) -> Self {
        Self { reader }
    }
}

impl QueueSource for StoreQueueSource {
    fn read_queue(&self, client_id: &str, from_seq: u64, limit: usize) -> Result<Vec<QueuedRecord>, QueueReadError> {
        let failed = |error: StoreError| QueueReadError { client_id: client_id.to_owned(), detail: error.to_string() };
        let rows = self.reader.deliveries(client_id, from_seq, limit).map_err(failed)?;
        let mut messages: HashMap<u64, Option<StoredMessage>> = HashMap::new();
        let mut records = Vec::with_capacity(rows.len());
        for (seq, record) in rows {
            let id = record.message.0;
            let message = match messages.get(&id) {
                Some(message) => message.clone(),
                None => {
                    let message = self.reader.message(MessageId(id)).map_err(failed)?.map(message);
                    messages.insert(id, message.clone());
                    message
                }
            };
            records.push(QueuedRecord { seq, delivery: delivery(record), message });
        }
        Ok(records)
    }
}

/// A broker on the store in `dir`: opens it, repairs what a crash left half done, starts the
/// writer and restores the stored state. Offline persistent sessions' queues are kept in the
/// store and read back through a [`StoreQueueSource`] (decision 0006).
pub fn open(
    dir: &Path,
    limits: Limits,
    policy: SyncPolicy,
) -> Result<(Arc<Broker>, Writer<DiskStore>, Restored), StoreError> {
    let store = DiskStore::open(dir)?;
    let queues = Arc::new(StoreQueueSource::new(store.reader()));
    let mut snapshot = store.load()?;
    let cleanup = snapshot.repair();
    let writer = Writer::start(store, WriterConfig { policy, ..WriterConfig::default() })?;
    if !cleanup.is_empty() {
        tracing::info!(operations = cleanup.len(), "store: removing what an interrupted run left half written");
        let handle = writer.handle();
        if let Ok(ticket) = handle.submit_blocking(cleanup) {
            let _ = handle.wait_durable(ticket);
        }
    }
    let durability = Arc::new(StoreDurability::new(writer.handle()));
    let broker = Broker::with_store_and_queues(limits, durability, queues);
    let restored = broker.restore(recovered(snapshot), std::time::Instant::now());
    Ok((broker, writer, restored))
}

/// What the core restores from a repaired snapshot.
pub fn recovered(snapshot: Snapshot) -> Recovered {
    Recovered {
        messages: snapshot.messages.into_iter().map(|(id, record)| (id.0, message(record))).collect(),
        retained: snapshot.retained.into_iter().map(|(topic, id)| (topic, id.0)).collect(),
        sessions: snapshot
            .sessions
            .into_iter()
            .map(|(client_id, stored)| RecoveredSession {
                client_id,
                record: session(stored.record),
                subscriptions: stored
                    .subscriptions
                    .into_iter()
                    .map(|(filter, s)| (filter, StoredSubscription { options: s.options, identifier: s.identifier }))
                    .collect(),
                deliveries: stored.deliveries.into_iter().map(|(seq, d)| (seq, delivery(d))).collect(),
                inbound_qos2: stored.inbound_qos2,
                topic_ids: stored.topic_ids,
            })
            .collect(),
    }
}

fn message(record: MessageRecord) -> StoredMessage {
    StoredMessage {
        topic: record.topic,
        payload: record.payload,
        qos: record.qos,
        retain: record.retain,
        shared_properties: record.shared_properties,
        expires_at_unix_ms: record.expires_at_unix_ms,
        publisher_session: record.publisher_session,
    }
}

fn session(record: SessionRecord) -> StoredSession {
    StoredSession {
        session_id: record.session_id,
        protocol_level: record.protocol_level,
        expiry_interval: record.expiry_interval,
        expires_at_unix_ms: record.expires_at_unix_ms,
        delayed_will: record.delayed_will.map(|will| StoredWill {
            due_unix_ms: will.due_unix_ms,
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: will.properties,
            message_expiry_interval: will.message_expiry_interval,
        }),
    }
}

fn delivery(record: DeliveryRecord) -> StoredDelivery {
    StoredDelivery {
        message: record.message.0,
        qos: record.qos,
        retain: record.retain,
        subscription_ids: record.subscription_ids,
        shared: record.shared,
        stage: match record.state {
            DeliveryState::Queued => DeliveryStage::Queued,
            DeliveryState::Inflight { packet_id, awaiting_pubcomp } => {
                DeliveryStage::Inflight { packet_id, awaiting_pubcomp }
            }
        },
    }
}

// The store's records from the core's: the converse of `message`, `session` and `delivery`
// above, field by field, so that a field added to one side fails to compile here.

fn message_record(message: StoredMessage) -> MessageRecord {
    MessageRecord {
        topic: message.topic,
        payload: message.payload,
        qos: message.qos,
        retain: message.retain,
        shared_properties: message.shared_properties,
        expires_at_unix_ms: message.expires_at_unix_ms,
        publisher_session: message.publisher_session,
    }
}

fn session_record(session: StoredSession) -> SessionRecord {
    SessionRecord {
        session_id: session.session_id,
        protocol_level: session.protocol_level,
        expiry_interval: session.expiry_interval,
        expires_at_unix_ms: session.expires_at_unix_ms,
        delayed_will: session.delayed_will.map(|will| WillRecord {
            due_unix_ms: will.due_unix_ms,
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: will.properties,
            message_expiry_interval: will.message_expiry_interval,
        }),
    }
}

fn delivery_record(delivery: StoredDelivery) -> DeliveryRecord {
    DeliveryRecord {
        message: MessageId(delivery.message),
        qos: delivery.qos,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids,
        shared: delivery.shared,
        state: match delivery.stage {
            DeliveryStage::Queued => DeliveryState::Queued,
            DeliveryStage::Inflight { packet_id, awaiting_pubcomp } => {
                DeliveryState::Inflight { packet_id, awaiting_pubcomp }
            }
        },
    }
}

/// The store's operation for one of the core's changes.
fn op(change: Change) -> Op {
    match change {
        Change::PutMessage { id, record } => Op::PutMessage(MessageId(id), message_record(record)),
        Change::DeleteMessage(id) => Op::DeleteMessage(MessageId(id)),
        Change::PutRetained { topic, message } => Op::PutRetained { topic, message: MessageId(message) },
        Change::DeleteRetained(topic) => Op::DeleteRetained(topic),
        Change::PutSession { client_id, record } => Op::PutSession { client_id, record: session_record(record) },
        Change::DeleteSession(client_id) => Op::DeleteSession(client_id),
        Change::PutSubscription { client_id, filter, record } => Op::PutSubscription {
            client_id,
            filter,
            record: SubscriptionRecord { options: record.options, identifier: record.identifier },
        },
        Change::DeleteSubscription { client_id, filter } => Op::DeleteSubscription { client_id, filter },
        Change::PutDelivery { client_id, seq, record } => {
            Op::PutDelivery { client_id, seq, record: delivery_record(record) }
        }
        Change::DeleteDelivery { client_id, seq } => Op::DeleteDelivery { client_id, seq },
        Change::PutInboundQos2 { client_id, packet_id } => Op::PutInboundQos2 { client_id, packet_id },
        Change::DeleteInboundQos2 { client_id, packet_id } => Op::DeleteInboundQos2 { client_id, packet_id },
        Change::PutTopicId { client_id, topic_id, topic } => Op::PutTopicId { client_id, topic_id, topic },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use midge_store::MemoryStore;

    use super::*;

    /// Every change the core makes comes back from the store as the core wrote it.
    #[test]
    fn changes_written_through_the_port_come_back_as_written() {
        let writer = Writer::start(MemoryStore::new(), WriterConfig::default()).expect("writer");
        let port = StoreDurability::new(writer.handle());
        let stored = StoredMessage {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"x"),
            qos: 1,
            retain: true,
            shared_properties: Bytes::from_static(b"\x01\x01"),
            expires_at_unix_ms: Some(7),
            publisher_session: Some(3),
        };
        let will = StoredWill {
            due_unix_ms: 9,
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: 2,
            retain: false,
            properties: Bytes::new(),
            message_expiry_interval: Some(30),
        };
        let record = StoredSession {
            session_id: 4,
            protocol_level: 5,
            expiry_interval: 60,
            expires_at_unix_ms: Some(11),
            delayed_will: Some(will),
        };
        let subscription = StoredSubscription { options: 0x21, identifier: Some(8) };
        let stage = DeliveryStage::Inflight { packet_id: 12, awaiting_pubcomp: true };
        let delivery =
            StoredDelivery { message: 1, qos: 2, retain: false, subscription_ids: vec![8], shared: None, stage };
        let mut changes = Changes::new();
        changes
            .push(Change::PutMessage { id: 1, record: stored.clone() })
            .push(Change::PutRetained { topic: "a/b".into(), message: 1 })
            .push(Change::PutSession { client_id: "c".into(), record: record.clone() })
            .push(Change::PutSubscription { client_id: "c".into(), filter: "a/+".into(), record: subscription })
            .push(Change::PutDelivery { client_id: "c".into(), seq: 5, record: delivery.clone() })
            .push(Change::PutInboundQos2 { client_id: "c".into(), packet_id: 6 })
            .push(Change::PutTopicId { client_id: "c".into(), topic_id: 3, topic: "a/b".into() });
        let ticket = port.submit(changes);
        writer.handle().wait_durable(midge_store::Ticket(ticket.0)).expect("durable");
        let snapshot = writer.shutdown().expect("shut down").load().expect("load");
        let back = recovered(snapshot);
        assert_eq!(back.messages, vec![(1, stored)]);
        assert_eq!(back.retained, vec![("a/b".to_owned(), 1)]);
        let expected = RecoveredSession {
            client_id: "c".into(),
            record,
            subscriptions: vec![("a/+".into(), subscription)],
            deliveries: vec![(5, delivery)],
            inbound_qos2: vec![6],
            topic_ids: vec![(3, "a/b".into())],
        };
        assert_eq!(back.sessions, vec![expected]);
    }

    /// A session's queue written through the durability port reads back through the queue
    /// source in seq order from any seq, each delivery with its message, and a delivery whose
    /// message is gone with none.
    #[test]
    fn a_queue_written_through_the_port_reads_back_through_the_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DiskStore::open(dir.path()).expect("open");
        let source = StoreQueueSource::new(store.reader());
        let writer = Writer::start(store, WriterConfig::default()).expect("writer");
        let port = StoreDurability::new(writer.handle());
        let message = |n: u8| StoredMessage {
            topic: format!("sensor/{n}"),
            payload: Bytes::from(vec![n; 3]),
            qos: 1,
            retain: false,
            shared_properties: Bytes::new(),
            expires_at_unix_ms: None,
            publisher_session: Some(2),
        };
        let delivery = |message: u64| StoredDelivery {
            message,
            qos: 1,
            retain: false,
            subscription_ids: vec![],
            shared: None,
            stage: DeliveryStage::Queued,
        };
        let mut changes = Changes::new();
        changes.push(Change::PutMessage { id: 1, record: message(1) });
        changes.push(Change::PutMessage { id: 2, record: message(2) });
        for seq in 1..=5 {
            changes.push(Change::PutDelivery { client_id: "dev".into(), seq, record: delivery(1 + seq % 2) });
        }
        changes.push(Change::PutDelivery { client_id: "dev2".into(), seq: 1, record: delivery(1) });
        changes.push(Change::PutDelivery { client_id: "dev".into(), seq: 9, record: delivery(3) });
        let ticket = port.submit(changes);
        writer.handle().wait_durable(midge_store::Ticket(ticket.0)).expect("durable");

        let read = source.read_queue("dev", 2, 3).expect("read");
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(read[0], QueuedRecord { seq: 2, delivery: delivery(1), message: Some(message(1)) });
        assert_eq!(read[1], QueuedRecord { seq: 3, delivery: delivery(2), message: Some(message(2)) });
        let tail = source.read_queue("dev", 5, 10).expect("read");
        assert_eq!(tail.iter().map(|r| (r.seq, r.message.is_some())).collect::<Vec<_>>(), [(5, true), (9, false)]);
        assert_eq!(source.read_queue("dev2", 0, 10).expect("read").len(), 1);
    }
}
