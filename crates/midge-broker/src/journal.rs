//! The broker's side of durable storage: it turns broker state into records and submits them
//! through the [`Durability`] port, which hands back tickets that acknowledgements wait for
//! (DESIGN.md, "Durability").
//!
//! What is written, and what waits for it:
//! - a message delivered to a persistent session: the message (once) and a delivery record, put
//!   under the session's lock so that its deletion can never be submitted before it; the
//!   publisher's PUBACK / PUBREC waits for it;
//! - retained messages, before the publisher's acknowledgement;
//! - inbound QoS 2 packet ids (PUBREC and PUBCOMP wait), and the PUBREC state of an outbound
//!   QoS 2 message (its PUBREL waits, so a restart resends PUBREL rather than the message);
//! - sessions and subscriptions (SUBACK / UNSUBACK wait).
//!
//! Deletions (acknowledged deliveries, expired messages) are submitted without waiting. Sending
//! a queued message is not written at all: packet ids follow the delivery order
//! (`session::packet_id_for`), so a restored session resends with the original ids anyway.
//!
//! A stored message's durable references are counted here, by message id, not in the message:
//! a delivery that lives only in the store (an offline session's queue, decision 0006) keeps
//! its message's record alive without the broker holding the message in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::hash::ProcessSeeded;
use crate::message::Message;
use crate::ports::durability::{Change, Changes, Durability, QueueSource, StoredMessage, Ticket};

/// Submits records through the durability port, counts the durable references of stored
/// messages, and converts between the monotonic clock the broker runs on and the wall clock
/// records are stored in.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    store: Arc<dyn Durability>,
    /// Reads offline queues back; with it, a persistent session's queue moves to the store
    /// while its client is away (decision 0006). Without it, queues stay in memory.
    queues: Option<Arc<dyn QueueSource>>,
    clock: WallClock,
    references: Arc<References>,
}

/// Locks over the reference counts: a message's count is changed, and its store operations
/// submitted, under the lock of its shard, so a reference and a concurrent last release are
/// submitted in the order they happened. Sharded so that publishers on different cores rarely
/// meet on one lock.
const REFERENCE_SHARDS: usize = 64;

/// How many durable records (retained topics, deliveries of persistent sessions) refer to each
/// stored message; a message is stored while its count is above 0.
#[derive(Debug)]
struct References {
    shards: [Shard; REFERENCE_SHARDS],
}

impl Default for References {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Shard::default()) }
    }
}

/// One shard, on a cache line of its own: neighbouring shards are taken by different threads.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<HashMap<u64, u32, ProcessSeeded>>);

impl References {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, u32, ProcessSeeded>> {
        &self.shards[(id % REFERENCE_SHARDS as u64) as usize].0
    }
}

impl Journal {
    /// A journal writing to `store`.
    pub(crate) fn new(store: Arc<dyn Durability>) -> Self {
        Self { store, queues: None, clock: WallClock::now(), references: Arc::default() }
    }

    /// A journal writing to `store` that keeps offline queues there, read back through
    /// `queues`.
    pub(crate) fn with_queues(store: Arc<dyn Durability>, queues: Arc<dyn QueueSource>) -> Self {
        Self { queues: Some(queues), ..Self::new(store) }
    }

    /// Where offline queues are read back from, when they are kept in the store.
    pub(crate) fn queues(&self) -> Option<&Arc<dyn QueueSource>> {
        self.queues.as_ref()
    }

    /// A ticket at or after every change submitted so far: a reader that waits for it sees
    /// them all.
    pub(crate) fn barrier(&self) -> Ticket {
        self.store.submit(Changes::new())
    }

    /// Sets the reference counts recovery found (one per retained topic and delivery record).
    pub(crate) fn restore_references(&self, counts: impl IntoIterator<Item = (u64, u32)>) {
        for (id, count) in counts {
            if count > 0 {
                self.references.shard(id).lock().insert(id, count);
            }
        }
    }

    /// The durable references to message `id` (0: not stored). For tests.
    #[cfg(test)]
    pub(crate) fn references(&self, id: u64) -> u32 {
        self.references.shard(id).lock().get(&id).copied().unwrap_or(0)
    }

    /// Submits `changes` (see [`Durability::submit`]).
    pub(crate) fn submit(&self, changes: Changes) -> Ticket {
        self.store.submit(changes)
    }

    /// The record of `message`.
    pub(crate) fn message_record(&self, message: &Message) -> StoredMessage {
        StoredMessage {
            topic: message.topic.to_string(),
            payload: message.payload.clone(),
            qos: message.qos.as_u8(),
            retain: message.retain,
            shared_properties: message.shared_properties.clone(),
            expires_at_unix_ms: message.expires_at.map(|at| self.clock.unix_ms(at)),
            publisher_session: message.publisher,
        }
    }

    /// Wall-clock milliseconds for a monotonic instant.
    pub(crate) fn unix_ms(&self, at: Instant) -> u64 {
        self.clock.unix_ms(at)
    }

    /// The monotonic instant for wall-clock milliseconds.
    pub(crate) fn instant(&self, unix_ms: u64) -> Instant {
        self.clock.instant(unix_ms)
    }

    /// Counts a durable reference to `message` (a retained topic or a delivery record): the
    /// first one adds the message's own record to `batch`. `batch` is submitted before the
    /// count's lock is released, so a reference and the message's deletion by a concurrent
    /// last release are always submitted in the order they happened.
    pub(crate) fn add_reference(&self, message: &Message, mut batch: Changes) -> Ticket {
        let mut counts = self.references.shard(message.id).lock();
        let count = counts.entry(message.id).or_insert(0);
        if *count == 0 {
            let mut first = Changes::new();
            first.push(Change::PutMessage { id: message.id, record: self.message_record(message) });
            first.append(&mut batch);
            batch = first;
        }
        *count += 1;
        self.submit(batch)
    }

    /// Drops one durable reference to each of `ids` whose records are deleted otherwise (a
    /// session's prefix delete); a last one deletes its message's record. Submits only those.
    pub(crate) fn release_references(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let mut counts = self.references.shard(id).lock();
            if let Some(count) = counts.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&id);
                    let mut changes = Changes::new();
                    changes.push(Change::DeleteMessage(id));
                    self.submit(changes);
                }
            }
        }
    }

    /// The message a stored record describes, with id `id` (`None` if the record is invalid:
    /// a topic or QoS no message can have).
    pub(crate) fn message_from_record(&self, id: u64, record: StoredMessage) -> Option<Message> {
        let topic = midge_codec::TopicName::new(&record.topic).ok()?;
        let qos = midge_codec::QoS::from_u8(record.qos)?;
        Some(Message::restored(
            id,
            topic,
            record.payload,
            qos,
            record.retain,
            record.shared_properties,
            record.expires_at_unix_ms.map(|ms| self.clock.instant(ms)),
            record.publisher_session,
        ))
    }

    /// Drops a durable reference to message `id`; the last one deletes the message's record.
    pub(crate) fn release_reference(&self, id: u64, mut batch: Changes) -> Ticket {
        let mut counts = self.references.shard(id).lock();
        if let Some(count) = counts.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&id);
                batch.push(Change::DeleteMessage(id));
            }
        }
        self.submit(batch)
    }
}

/// Pairs a monotonic instant with the wall-clock time at the same moment.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    instant: Instant,
    unix_ms: u64,
}

impl WallClock {
    fn now() -> Self {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { instant: Instant::now(), unix_ms }
    }

    fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.unix_ms.saturating_add(after.as_millis() as u64),
            None => self.unix_ms.saturating_sub(self.instant.duration_since(at).as_millis() as u64),
        }
    }

    fn instant(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.instant + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            let before = Duration::from_millis(self.unix_ms - unix_ms);
            self.instant.checked_sub(before).unwrap_or(self.instant)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use midge_codec::{Properties, Publish, QoS, TopicName};

    use super::*;

    /// A durability port that keeps what it was given.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl Durability for Recorder {
        fn submit(&self, changes: Changes) -> Ticket {
            let mut seen = self.0.lock();
            seen.extend(changes);
            Ticket(seen.len() as u64)
        }
    }

    fn message(id: u64) -> Message {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("t").expect("valid"),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        };
        Message::new(id, &publish, None, Instant::now())
    }

    fn kinds(recorder: &Recorder) -> Vec<&'static str> {
        recorder
            .0
            .lock()
            .iter()
            .map(|change| match change {
                Change::PutMessage { .. } => "put message",
                Change::DeleteMessage(_) => "delete message",
                _ => "other",
            })
            .collect()
    }

    /// The first reference stores the message, the last release deletes it, whatever holds
    /// the message in memory meanwhile: counts are kept by id, in the journal.
    #[test]
    fn a_message_is_stored_while_any_record_refers_to_it() {
        let recorder = Arc::new(Recorder::default());
        let journal = Journal::new(recorder.clone());
        let first = message(7);
        journal.add_reference(&first, Changes::new());
        drop(first);
        journal.add_reference(&message(7), Changes::new());
        assert_eq!(journal.references(7), 2);
        journal.release_reference(7, Changes::new());
        assert_eq!(kinds(&recorder), ["put message"], "still referred to");
        journal.release_reference(7, Changes::new());
        assert_eq!(kinds(&recorder), ["put message", "delete message"]);
        assert_eq!(journal.references(7), 0);
        journal.release_reference(7, Changes::new());
        assert_eq!(kinds(&recorder), ["put message", "delete message"], "nothing more to release");
    }

    /// Counts recovery found continue: the message is stored, so a new reference adds none.
    #[test]
    fn restored_counts_continue() {
        let recorder = Arc::new(Recorder::default());
        let journal = Journal::new(recorder.clone());
        journal.restore_references([(3, 1), (4, 0)]);
        journal.add_reference(&message(3), Changes::new());
        assert!(kinds(&recorder).is_empty(), "already stored");
        journal.release_reference(3, Changes::new());
        journal.release_reference(3, Changes::new());
        assert_eq!(kinds(&recorder), ["delete message"]);
        assert_eq!(journal.references(4), 0);
    }
}
