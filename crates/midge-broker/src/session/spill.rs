//! A persistent session's queue continued in the store (decision 0006): while its client is
//! away the queue lives on disk, and the session keeps only the ids of the messages there
//! (delta-encoded, about a byte a delivery: `ids.rs`), so that ending the session can release
//! them without reading the disk;
//! when the client returns, its connection reads the queue back in batches
//! ([`READ_BACK_BATCH`]), off the async workers, and the session is in memory again once it
//! has caught up.
//!
//! Every delivery of a spilled session goes to the store, connected or not, so the order holds:
//! what is on disk always comes after what is in memory, and before anything newer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use midge_codec::QoS;

use super::ids::IdQueue;
use super::records::{delivery_record, queued_from_record};
use super::state::{EnqueueOutcome, Entry, Session, SessionState, Spill};
use crate::journal::Journal;
use crate::kick::Kick;
use crate::limits::{Limits, READ_BACK_BATCH};
use crate::message::Message;
use crate::ports::durability::{Change, Changes, DeliveryStage, QueuedRecord, Ticket};

impl Spill {
    fn new(first_seq: u64) -> Self {
        Self {
            ids: IdQueue::default(),
            first_seq,
            bytes: 0,
            ticket: Ticket(0),
            sent_below: 0,
            reading: None,
            dropped: 0,
        }
    }
}

/// One batch a connection asked for: read `limit` deliveries from `from_seq` once the store has
/// committed `ticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadRequest {
    pub(crate) from_seq: u64,
    pub(crate) limit: usize,
    pub(crate) ticket: Ticket,
}

/// What appending a batch read back did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadBackOutcome {
    /// Deliveries now queued in memory.
    pub(crate) loaded: usize,
    /// Deliveries dropped: their message expired and was reclaimed, or the store lacked them.
    pub(crate) dropped: usize,
}

impl Session {
    /// Whether part of the queue is in the store. Lock-free.
    pub(crate) fn is_spilled(&self) -> bool {
        self.spilled.load(Ordering::Relaxed)
    }

    /// The spill, begun if there is none: the next delivery (seq `next_seq`) is its first.
    fn spill_mut<'a>(&self, state: &'a mut SessionState) -> &'a mut Spill {
        if state.spill.is_none() {
            self.spilled.store(true, Ordering::Relaxed);
        }
        let first_seq = state.next_seq;
        state.spill.get_or_insert_with(|| Box::new(Spill::new(first_seq)))
    }

    /// Ends the spill: the queue is whole in memory again.
    fn end_spill(&self, state: &mut SessionState) {
        if let Some(spill) = state.spill.take() {
            self.spilled.store(false, Ordering::Relaxed);
            if spill.dropped > 0 {
                tracing::info!(client_id = %self.client_id, dropped = spill.dropped,
                    "offline queue read back; messages beyond its bound were dropped meanwhile");
            }
        }
    }

    /// Moves the in-memory queue of a persistent session whose client has gone to the store
    /// (its QoS 1/2 deliveries are there already; QoS 0 ones are written now if
    /// `queue_qos0_messages`, dropped otherwise). Called under the lock, at detach. Messages in
    /// flight stay in memory, to be resent first when the client returns (MQTT-4.4.0-1).
    pub(super) fn spill_queue(&self, state: &mut SessionState, limits: &Limits, journal: &Journal) {
        let queue = std::mem::take(&mut state.queue);
        state.queued_bytes = 0;
        let mut ids = Vec::with_capacity(queue.len());
        let (mut first_seq, mut bytes, mut sent_below) = (None, 0u64, 0u64);
        for entry in queue {
            if !entry.durable {
                if entry.item.qos != QoS::AtMostOnce || !limits.queue_qos0_messages {
                    state.dropped = state.dropped.wrapping_add(1);
                    continue;
                }
                let mut changes = Changes::new();
                let record = delivery_record(&entry.item, DeliveryStage::Queued);
                changes.push(Change::PutDelivery { client_id: self.client_id.to_string(), seq: entry.seq, record });
                journal.add_reference(&entry.item.message, changes);
            }
            first_seq.get_or_insert(entry.seq);
            if entry.maybe_sent {
                sent_below = entry.seq + 1;
            }
            bytes += entry.item.message.payload.len() as u64;
            ids.push(entry.item.message.id);
        }
        let Some(first_seq) = first_seq else {
            if let Some(spill) = state.spill.as_mut() {
                spill.reading = None; // a read for the connection that left is void
            }
            return;
        };
        let spill = self.spill_mut(state);
        for id in ids.into_iter().rev() {
            spill.ids.push_front(id);
        }
        spill.first_seq = first_seq;
        spill.bytes += bytes;
        spill.sent_below = spill.sent_below.max(sent_below);
        spill.reading = None;
        spill.ticket = journal.barrier();
    }

    /// [`Session::enqueue`] for a spilled session, or an offline persistent one: the delivery
    /// is written to the store only, within the offline bounds (`max_offline_messages`,
    /// `max_offline_bytes`, and the store's own size bound; beyond them the new message is
    /// dropped and counted).
    pub(super) fn enqueue_to_store(
        &self,
        state: &mut SessionState,
        item: crate::delivery::Queued,
        limits: &Limits,
        journal: &Journal,
    ) -> (EnqueueOutcome, Option<Arc<Kick>>) {
        let len = item.message.payload.len() as u64;
        let in_memory = (state.queue.len(), state.queued_bytes as u64);
        let seq = state.next_seq;
        let spill = self.spill_mut(state);
        let count = in_memory.0 + spill.ids.len();
        let bytes = in_memory.1 + spill.bytes + len;
        let over = count >= limits.max_offline_messages
            || (limits.max_offline_bytes != 0 && bytes > limits.max_offline_bytes as u64)
            || journal.is_full();
        if over {
            spill.dropped += 1;
            // A full store is logged once by whoever measures it, not once per session.
            if spill.dropped == 1 && !journal.is_full() {
                tracing::warn!(client_id = %self.client_id, queued = count, queued_bytes = bytes - len,
                    max_offline_messages = limits.max_offline_messages,
                    max_offline_bytes = limits.max_offline_bytes,
                    "offline queue full: new messages for this session are dropped until its client reads it");
            }
            let empty = spill.ids.is_empty();
            if empty {
                self.end_spill(state);
            }
            state.dropped = state.dropped.wrapping_add(1);
            return (EnqueueOutcome::DroppedQueueFull, None);
        }
        let mut changes = Changes::new();
        let record = delivery_record(&item, DeliveryStage::Queued);
        changes.push(Change::PutDelivery { client_id: self.client_id.to_string(), seq, record });
        let ticket = journal.add_reference(&item.message, changes);
        spill.ids.push_back(item.message.id);
        spill.bytes += len;
        spill.ticket = ticket;
        let idle = spill.reading.is_none();
        state.next_seq += 1;
        // A connected client reading its backlog asks for the next batch when it wakes.
        let wake = if idle && state.queue.is_empty() { state.attached_kick() } else { None };
        (EnqueueOutcome::Queued(Some(ticket)), wake)
    }

    /// The next batch connection `conn_id` is to read back, if its session is spilled, no read
    /// is under way, and fewer than half a batch wait in memory.
    pub(crate) fn read_back_request(&self, conn_id: u64) -> Option<ReadRequest> {
        let mut state = self.state.lock();
        if state.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) || state.queue.len() >= READ_BACK_BATCH / 2 {
            return None;
        }
        let spill = state.spill.as_mut()?;
        if spill.reading == Some(conn_id) {
            return None;
        }
        // A read for another connection (one this connection took the session over from) is
        // void: its batch will not be appended, and this one reads it again.
        if spill.ids.is_empty() {
            self.end_spill(&mut state);
            return None;
        }
        spill.reading = Some(conn_id);
        Some(ReadRequest {
            from_seq: spill.first_seq,
            limit: spill.ids.len().min(READ_BACK_BATCH),
            ticket: spill.ticket,
        })
    }

    /// Gives up a read that failed: the next request reads the same batch again.
    pub(crate) fn read_back_failed(&self, conn_id: u64) {
        let mut state = self.state.lock();
        if let Some(spill) = state.spill.as_mut().filter(|s| s.reading == Some(conn_id)) {
            spill.reading = None;
        }
    }

    /// Appends a batch read back for `request` by connection `conn_id`, if it is still the one
    /// reading (a connection that left meanwhile voids its read; the next one reads again).
    pub(crate) fn append_read_back(
        &self,
        conn_id: u64,
        request: ReadRequest,
        records: Vec<QueuedRecord>,
        journal: &Journal,
    ) -> ReadBackOutcome {
        let mut outcome = ReadBackOutcome::default();
        let mut state = self.state.lock();
        let state = &mut *state;
        let attached = state.attached.as_ref().is_some_and(|a| a.conn_id == conn_id);
        let Some(spill) = state.spill.as_mut().filter(|s| s.reading == Some(conn_id)) else {
            return outcome;
        };
        spill.reading = None;
        if !attached || spill.first_seq != request.from_seq {
            return outcome;
        }
        let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
        let found = records.len().min(request.limit);
        for record in records.into_iter().take(request.limit) {
            let Some(id) = spill.ids.pop_front() else { break };
            if id != record.delivery.message {
                tracing::warn!(client_id = %self.client_id, seq = record.seq, expected = id,
                    found = record.delivery.message, "offline queue: the store's delivery names another message");
            }
            spill.first_seq = record.seq + 1;
            let maybe_sent = record.seq < spill.sent_below || record.delivery.stage != DeliveryStage::Queued;
            let message = match (messages.get(&record.delivery.message), record.message) {
                (Some(message), _) => Some(Arc::clone(message)),
                (None, Some(stored)) => journal.message_from_record(record.delivery.message, stored).map(|m| {
                    let m = Arc::new(m);
                    messages.insert(record.delivery.message, Arc::clone(&m));
                    m
                }),
                (None, None) => None,
            };
            let item = message.and_then(|message| queued_from_record(record.delivery.clone(), message));
            let Some(item) = item else {
                // Its message is gone (expired and reclaimed): the delivery goes with it.
                outcome.dropped += 1;
                let mut changes = Changes::new();
                changes.push(Change::DeleteDelivery { client_id: self.client_id.to_string(), seq: record.seq });
                journal.release_reference(record.delivery.message, changes);
                continue;
            };
            let len = item.message.payload.len();
            spill.bytes = spill.bytes.saturating_sub(len as u64);
            state.queued_bytes += len;
            state.queue.push_back(Entry { seq: record.seq, item, durable: true, maybe_sent });
            outcome.loaded += 1;
        }
        if found < request.limit {
            // The store ended before the batch did: these deliveries are not there (nothing
            // deletes them behind the session's back, so this is damage). Their references go.
            for _ in found..request.limit {
                let Some(id) = spill.ids.pop_front() else { break };
                journal.release_reference(id, Changes::new());
                outcome.dropped += 1;
            }
            tracing::warn!(client_id = %self.client_id, missing = request.limit - found,
                "offline queue: deliveries missing from the store");
        }
        if spill.ids.is_empty() {
            self.end_spill(state);
        }
        state.dropped = state.dropped.wrapping_add(outcome.dropped as u32);
        outcome
    }

    /// Restores a queued delivery into the store-held part of the queue (recovery, before any
    /// connection): nothing of it is kept in memory but its message id.
    pub(crate) fn restore_spilled(&self, seq: u64, message: u64, bytes: usize) {
        let mut state = self.state.lock();
        state.next_seq = state.next_seq.max(seq + 1);
        let spill = self.spill_mut(&mut state);
        if spill.ids.is_empty() {
            spill.first_seq = seq;
        }
        spill.ids.push_back(message);
        spill.bytes += bytes as u64;
        // It may have been sent before the restart.
        spill.sent_below = seq + 1;
    }

    /// Releases the references of the deliveries in the store, when the session ends (their
    /// records go with the session's).
    pub(super) fn release_spilled(&self, state: &mut SessionState, journal: &Journal) {
        if let Some(spill) = state.spill.as_mut() {
            journal.release_references(spill.ids.drain());
        }
        self.end_spill(state);
    }

    /// Deliveries of this session in the store, and their payload bytes. For tests.
    #[cfg(test)]
    pub(crate) fn spilled_len(&self) -> (usize, u64) {
        let state = self.state.lock();
        state.spill.as_ref().map_or((0, 0), |s| (s.ids.len(), s.bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use midge_codec::{ProtocolVersion, QoS};

    use crate::delivery::Queued;
    use crate::journal::Journal;
    use crate::kick::Kick;
    use crate::limits::Limits;
    use crate::message::Message;
    use crate::ports::durability::{Changes, Durability, QueueReadError, QueueSource, QueuedRecord, Ticket};
    use crate::session::Session;

    /// A store that takes everything and reads back nothing: only what the session keeps in
    /// memory is under test here.
    #[derive(Debug, Default)]
    struct Sink;

    impl Durability for Sink {
        fn submit(&self, _: Changes) -> Ticket {
            Ticket(1)
        }
    }

    impl QueueSource for Sink {
        fn read_queue(&self, _: &str, _: u64, _: usize) -> Result<Vec<QueuedRecord>, QueueReadError> {
            Ok(Vec::new())
        }
    }

    fn item(id: u64, payload: &'static [u8]) -> Queued {
        Queued {
            message: Arc::new(Message::for_test(id, payload)),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            handed_on: 0,
        }
    }

    /// Detaching moves the queue to the store: the session keeps the ids and the byte count,
    /// and lets go of every message (the test's handles are the only ones left); what comes
    /// while it is offline is not held either.
    #[test]
    fn an_offline_session_holds_no_message_in_memory() {
        let journal = Journal::with_queues(Arc::new(Sink), Arc::new(Sink));
        let limits = Limits::default();
        let session = Session::new(1, Arc::from("s"), ProtocolVersion::V5, 3600);
        session.attach(7, Arc::new(Kick::default()), 10, ProtocolVersion::V5, 3600);
        let queued: Vec<Queued> = (0..3).map(|id| item(id, b"four")).collect();
        for item in &queued {
            session.enqueue(item.clone(), &limits, Some(&journal), true);
        }
        assert_eq!((session.queued_len(), session.spilled_len()), (3, (0, 0)));
        assert!(session.detach(7, Instant::now(), &limits, Some(&journal)));
        assert_eq!((session.queued_len(), session.spilled_len()), (0, (3, 12)));
        let offline = item(3, b"more");
        session.enqueue(offline.clone(), &limits, Some(&journal), true);
        assert_eq!(session.spilled_len(), (4, 16));
        for item in queued.iter().chain([&offline]) {
            assert_eq!(Arc::strong_count(&item.message), 1, "the session let go of message {}", item.message.id);
        }
        assert!(session.is_spilled() && !session.is_idle());
    }
}
