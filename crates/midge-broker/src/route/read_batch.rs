//! The read batch: what routing one read of a publisher's packets defers to the end of that
//! read, so each subscriber's lock is taken once per batch and each subscriber is woken once
//! (DESIGN.md, "Enqueue"; NATS's `flushClients`, PEERS.md §2).
//!
//! In a fan-out the per-message enqueue was the broker's largest cost, and most of it was the
//! session lock's cache line moving between the publisher's core and the subscriber's, which
//! takes the same lock to drain: one lock per read batch moves it once.
//!
//! Only messages *published* at QoS 0 are deferred. They have no acknowledgement to hold for a
//! store ticket and no publisher to pace, so nothing the publisher is told depends on the
//! enqueue having happened. A QoS 1/2 message enqueues what is deferred before it is routed
//! (`Broker::publish`), so a publisher's messages reach each session in the order it sent them.
//! The deferred deliveries are bounded ([`DEFERRED_DELIVERIES`]).
//!
//! The connection driver owns the batch and ends it explicitly with
//! [`Broker::end_batch`](crate::Broker::end_batch): first the deferred deliveries are enqueued,
//! then the sessions they reached are woken. Nothing happens when a batch is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use super::overlap::Targets;
use crate::delivery::Queued;
use crate::hash::ProcessSeeded;
use crate::kick::Kick;
use crate::limits::DEFERRED_DELIVERIES;
use crate::session::Session;

/// The deferred deliveries and wake-ups of one read. Empty, it holds no allocation.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Deliveries grouped by session, in the order they were routed.
    deferred: Vec<(Arc<Session>, Vec<Queued>)>,
    /// Session id to its place in `deferred`.
    slots: HashMap<u64, usize, ProcessSeeded>,
    /// The slot after the one used last (see [`ReadBatch::slot_for`]).
    cursor: usize,
    /// Deliveries deferred.
    count: usize,
    /// Connections to wake when the batch ends.
    wakes: Vec<Arc<Kick>>,
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing waits for the batch's end.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.wakes.is_empty()
    }

    /// Defers every delivery in `targets` (draining it). Returns true once the batch holds
    /// [`DEFERRED_DELIVERIES`]: the caller enqueues them now to keep the batch bounded.
    pub(crate) fn defer(&mut self, targets: &mut Targets) -> bool {
        self.count += targets.len();
        for (session, item) in targets.drain(..) {
            let slot = self.slot_for(session);
            self.deferred[slot].1.push(item);
        }
        self.count >= DEFERRED_DELIVERIES
    }

    /// Takes the deferred deliveries, grouped by session.
    pub(crate) fn take_deferred(&mut self) -> Vec<(Arc<Session>, Vec<Queued>)> {
        self.slots.clear();
        self.cursor = 0;
        self.count = 0;
        std::mem::take(&mut self.deferred)
    }

    /// Wakes `kick`'s connection when the batch ends.
    pub(crate) fn wake_later(&mut self, kick: Arc<Kick>) {
        self.wakes.push(kick);
    }

    /// Takes the connections to wake.
    pub(crate) fn take_wakes(&mut self) -> Vec<Arc<Kick>> {
        std::mem::take(&mut self.wakes)
    }

    /// The place of `session`'s deliveries. A fan-out routes message after message to the
    /// same sessions in the same order, so the slot after the last one is tried before the map.
    fn slot_for(&mut self, session: Arc<Session>) -> usize {
        if self.deferred.get(self.cursor).is_some_and(|(s, _)| s.id() == session.id()) {
            self.cursor += 1;
            return self.cursor - 1;
        }
        let deferred = &mut self.deferred;
        let slot = *self.slots.entry(session.id()).or_insert_with(|| {
            deferred.push((session, Vec::new()));
            deferred.len() - 1
        });
        self.cursor = slot + 1;
        slot
    }
}

impl Drop for ReadBatch {
    fn drop(&mut self) {
        // A batch dropped with work in it lost messages: a bug in the caller, caught in tests.
        debug_assert!(std::thread::panicking() || self.is_empty(), "a read batch was dropped before it was ended");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use midge_codec::{Properties, ProtocolVersion, Publish, QoS, TopicName};

    use super::*;
    use crate::broker::Broker;
    use crate::limits::Limits;
    use crate::message::Message;

    fn targets(session: &Arc<Session>, count: usize) -> Targets {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::new("t").expect("valid topic"),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        };
        let message = Arc::new(Message::new(1, &publish, None, Instant::now()));
        let item = Queued {
            message,
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            handed_on: 0,
        };
        (0..count).map(|_| (Arc::clone(session), item.clone())).collect()
    }

    #[test]
    fn deliveries_wait_for_the_batch_end_and_are_bounded() {
        let limits =
            Limits { queue_qos0_messages: true, max_queued_messages: 4 * DEFERRED_DELIVERIES, ..Limits::default() };
        let broker = Broker::new(limits);
        let session = Arc::new(Session::new(1, "s".into(), ProtocolVersion::V311, 60));
        let mut batch = ReadBatch::new();
        let mut first = targets(&session, DEFERRED_DELIVERIES - 1);
        assert!(!batch.defer(&mut first));
        assert!(first.is_empty(), "taken by the batch");
        assert_eq!(session.queued_len(), 0, "deferred until the batch ends");
        assert!(batch.defer(&mut targets(&session, 1)), "full at the bound: the caller enqueues now");
        batch.defer(&mut targets(&session, 2));
        assert_eq!(session.queued_len(), 0, "nothing happens inside the batch by itself");
        broker.end_batch(&mut batch);
        assert_eq!(session.queued_len(), DEFERRED_DELIVERIES + 2, "all of it when the batch ends");
        assert!(batch.is_empty());
    }
}
