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

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::message::Message;
use crate::ports::durability::{Change, Changes, Durability, StoredMessage, Ticket};

/// Submits records through the durability port and converts between the monotonic clock the
/// broker runs on and the wall clock records are stored in.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    store: Arc<dyn Durability>,
    clock: WallClock,
}

impl Journal {
    /// A journal writing to `store`.
    pub(crate) fn new(store: Arc<dyn Durability>) -> Self {
        Self { store, clock: WallClock::now() }
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
    /// message's lock is released, so a reference and the message's deletion by a concurrent
    /// last release are always submitted in the order they happened.
    pub(crate) fn add_reference(&self, message: &Message, mut batch: Changes) -> Ticket {
        let mut durable = message.durable.lock();
        if !durable.stored {
            let mut first = Changes::new();
            first.push(Change::PutMessage { id: message.id, record: self.message_record(message) });
            first.append(&mut batch);
            batch = first;
            durable.stored = true;
        }
        durable.references += 1;
        self.submit(batch)
    }

    /// Drops a durable reference to `message`; the last one deletes the message's record.
    pub(crate) fn release_reference(&self, message: &Message, mut batch: Changes) -> Ticket {
        let mut durable = message.durable.lock();
        durable.references = durable.references.saturating_sub(1);
        if durable.references == 0 && durable.stored {
            batch.push(Change::DeleteMessage(message.id));
            durable.stored = false;
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
