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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set while the store is over its size bound (the server measures it): offline queues
    /// take nothing more until it is not.
    full: Arc<AtomicBool>,
    clock: WallClock,
    references: Arc<References>,
}

/// Locks over the reference counts: a message's count is changed, and its store operations
/// submitted, under the lock of its shard, so a reference and a concurrent last release are
/// submitted in the order they happened. Sharded so that publishers on different cores rarely
/// meet on one lock.
const REFERENCE_SHARDS: usize = 64;

/// How many durable records (retained topics, deliveries of persistent sessions) refer to each
/// stored message; a message is stored while its count is above 0. Stored messages that expire
/// are also indexed by when, so that [`Journal::expire_messages`] deletes their records when
/// due without any queue being read (decision 0006): an offline session's queue may hold them
/// on disk only.
#[derive(Debug)]
struct References {
    shards: [Shard; REFERENCE_SHARDS],
    /// (due, id) of every stored message with an expiry; the lock is taken only for those.
    expiring: Mutex<BTreeSet<(u32, u64)>>,
}

impl Default for References {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Shard::default()), expiring: Mutex::default() }
    }
}

/// A stored message's count, and when it expires (seconds after the journal's clock started,
/// rounded up; 0: never). The two fit in the 16 bytes a map entry of a `u64` key takes anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    references: u32,
    expires: u32,
}

/// One shard, on a cache line of its own: neighbouring shards are taken by different threads.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<HashMap<u64, Count, ProcessSeeded>>);

impl References {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Count, ProcessSeeded>> {
        &self.shards[(id % REFERENCE_SHARDS as u64) as usize].0
    }

    /// Drops one reference to message `id`, with its shard's lock held (`counts`); returns
    /// whether it was the last, so that the caller deletes the message's record. The last one
    /// also takes the message out of the expiry index.
    fn drop_one(&self, counts: &mut HashMap<u64, Count, ProcessSeeded>, id: u64) -> bool {
        let Some(count) = counts.get_mut(&id) else { return false };
        count.references -= 1;
        if count.references > 0 {
            return false;
        }
        let count = counts.remove(&id).expect("present");
        if count.expires != 0 {
            self.expiring.lock().remove(&(count.expires, id));
        }
        true
    }
}

impl Journal {
    /// A journal writing to `store`.
    pub(crate) fn new(store: Arc<dyn Durability>) -> Self {
        Self { store, queues: None, full: Arc::default(), clock: WallClock::now(), references: Arc::default() }
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

    /// Whether the store is over its size bound.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Records whether the store is over its size bound; returns what it was.
    pub(crate) fn set_full(&self, full: bool) -> bool {
        self.full.swap(full, Ordering::Relaxed)
    }

    /// A ticket at or after every change submitted so far: a reader that waits for it sees
    /// them all.
    pub(crate) fn barrier(&self) -> Ticket {
        self.store.submit(Changes::new())
    }

    /// Sets the reference counts recovery found (one per retained topic and delivery record),
    /// with each message's expiry.
    pub(crate) fn restore_references(&self, counts: impl IntoIterator<Item = (u64, u32, Option<Instant>)>) {
        for (id, references, expires_at) in counts {
            if references > 0 {
                let count = Count { references, expires: self.expiry_secs(expires_at) };
                self.references.shard(id).lock().insert(id, count);
                if count.expires != 0 {
                    self.references.expiring.lock().insert((count.expires, id));
                }
            }
        }
    }

    /// The durable references to message `id` (0: not stored). For tests.
    #[cfg(test)]
    pub(crate) fn references(&self, id: u64) -> u32 {
        self.references.shard(id).lock().get(&id).map_or(0, |c| c.references)
    }

    /// An expiry as whole seconds after the clock started, rounded up (0: none).
    fn expiry_secs(&self, at: Option<Instant>) -> u32 {
        at.map_or(0, |at| {
            let after = at.saturating_duration_since(self.clock.instant);
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
        })
    }

    /// Deletes the records of stored messages whose expiry has passed (MQTT-3.3.2-5: they are
    /// never sent; here their payloads also leave the disk). Deliveries that still name one
    /// are dropped when they are read back or taken, or go with their session. Returns how
    /// many were deleted.
    pub(crate) fn expire_messages(&self, now: Instant) -> usize {
        let now_secs = now.saturating_duration_since(self.clock.instant).as_secs();
        let due: Vec<(u32, u64)> = {
            let mut expiring = self.references.expiring.lock();
            let mut due = Vec::new();
            while let Some(&first) = expiring.first().filter(|(secs, _)| u64::from(*secs) <= now_secs) {
                expiring.remove(&first);
                due.push(first);
            }
            due
        };
        let mut deleted = 0;
        for (expires, id) in due {
            let mut counts = self.references.shard(id).lock();
            if counts.get(&id).is_some_and(|c| c.expires == expires) {
                counts.remove(&id);
                let mut changes = Changes::new();
                changes.push(Change::DeleteMessage(id));
                self.submit(changes);
                deleted += 1;
            }
        }
        deleted
    }

    /// Opens a group of submissions made durable together ([`Durability::begin_group`]),
    /// closed when the guard is dropped.
    pub(crate) fn group(&self) -> Group<'_> {
        self.store.begin_group();
        Group { journal: self }
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
        let count = counts.entry(message.id).or_insert(Count { references: 0, expires: 0 });
        if count.references == 0 {
            let mut first = Changes::new();
            first.push(Change::PutMessage { id: message.id, record: self.message_record(message) });
            first.append(&mut batch);
            batch = first;
            count.expires = self.expiry_secs(message.expires_at);
            if count.expires != 0 {
                self.references.expiring.lock().insert((count.expires, message.id));
            }
        }
        count.references += 1;
        self.submit(batch)
    }

    /// Drops one durable reference to each of `ids` whose records are deleted otherwise (a
    /// session's prefix delete); a last one deletes its message's record. Submits only those.
    pub(crate) fn release_references(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let mut counts = self.references.shard(id).lock();
            if self.references.drop_one(&mut counts, id) {
                let mut changes = Changes::new();
                changes.push(Change::DeleteMessage(id));
                self.submit(changes);
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

    /// Takes message `id` out of the expiry index for good: a delivery of it has been sent
    /// (its record names the packet id), and MQTT-4.4.0-1 has it resent until acknowledged,
    /// past its expiry too (MQTT-3.3.2-5 only forbids starting delivery after it). Its record
    /// then stays while any reference does; queued deliveries of it still expire when taken.
    pub(crate) fn keep_past_expiry(&self, id: u64) {
        let mut counts = self.references.shard(id).lock();
        if let Some(count) = counts.get_mut(&id).filter(|count| count.expires != 0) {
            self.references.expiring.lock().remove(&(count.expires, id));
            count.expires = 0;
        }
    }

    /// Drops a durable reference to message `id`; the last one deletes the message's record.
    pub(crate) fn release_reference(&self, id: u64, mut batch: Changes) -> Ticket {
        let mut counts = self.references.shard(id).lock();
        if self.references.drop_one(&mut counts, id) {
            batch.push(Change::DeleteMessage(id));
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

/// An open group of submissions ([`Journal::group`]); dropping it closes the group.
pub(crate) struct Group<'a> {
    journal: &'a Journal,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        self.journal.store.end_group();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

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
        Message::for_test(id, b"x")
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
        journal.restore_references([(3, 1, None), (4, 0, None)]);
        journal.add_reference(&message(3), Changes::new());
        assert!(kinds(&recorder).is_empty(), "already stored");
        journal.release_reference(3, Changes::new());
        journal.release_reference(3, Changes::new());
        assert_eq!(kinds(&recorder), ["delete message"]);
        assert_eq!(journal.references(4), 0);
    }

    /// A stored message with an expiry is deleted when it expires, whatever still refers to
    /// it; one released before then leaves no trace in the index.
    #[test]
    fn expired_messages_leave_the_store_when_due() {
        let recorder = Arc::new(Recorder::default());
        let journal = Journal::new(recorder.clone());
        let start = Instant::now();
        let expiring = |id| {
            let mut m = message(id);
            m.expires_at = Some(start + Duration::from_secs(5));
            m
        };
        journal.add_reference(&expiring(1), Changes::new());
        journal.add_reference(&expiring(1), Changes::new());
        journal.add_reference(&expiring(2), Changes::new());
        journal.release_reference(2, Changes::new());
        assert_eq!(journal.references.expiring.lock().len(), 1, "released: out of the index");
        assert_eq!(journal.expire_messages(start + Duration::from_secs(4)), 0);
        assert_eq!(journal.expire_messages(start + Duration::from_secs(6)), 1);
        assert_eq!(kinds(&recorder), ["put message", "put message", "delete message", "delete message"]);
        assert_eq!(journal.references(1), 0);
        journal.release_reference(1, Changes::new());
        assert_eq!(kinds(&recorder).len(), 4, "a later release deletes nothing more");
    }
}
