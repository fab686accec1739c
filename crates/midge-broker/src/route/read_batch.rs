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
//!
//! The batch also gathers the [`Congestion`] its messages ran into: the subscribers over their
//! queue bound, for whom the publisher is to be paced (decisions 0003 and 0005). A QoS 0
//! delivery to a subscriber already over its bound is noted when it is deferred (a lock-free
//! flag), so the driver stops decoding after that packet; one that finds the bound crossed when
//! the deferred deliveries are enqueued is noted then; a session's deferred deliveries are
//! enqueued every [`DEFERRED_PER_SESSION`], so that happens soon after the crossing. Either way
//! nothing read is dropped, and the overshoot is at most that many messages per worker thread
//! plus one packet per paced publisher, which
//! [`Limits::hard_queued_messages`](crate::Limits::hard_queued_messages) leaves room for.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use super::overlap::Targets;
use crate::delivery::Queued;
use crate::hash::ProcessSeeded;
use crate::kick::Kick;
use crate::limits::{DEFERRED_DELIVERIES, DEFERRED_PER_SESSION};
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
    /// Whether the batch's source can be paced: a connection's read can, a will or a
    /// redelivery cannot (over the bound, their messages are dropped).
    unpaced: bool,
    /// What the batch's messages ran into.
    congestion: Congestion,
    /// The first few sessions the batch's messages reached that were not over their bound.
    others: SmallVec<[Arc<Session>; OTHERS_NOTED]>,
}

/// How many of the subscribers a read reached besides the congested ones it remembers: enough
/// to see whether pacing holds up any of them.
const OTHERS_NOTED: usize = 4;

/// The subscribers over their queue bound that a read's messages reached (never the
/// publisher's own session: pacing a client for itself would stop it reading its own
/// acknowledgements), and a few of the others it reached: if they sit idle while the
/// publisher waits, the congested ones are holding them up (decision 0005's fairness).
#[derive(Debug, Default)]
pub struct Congestion {
    /// Distinct once taken with [`ReadBatch::take_congestion`], ordered by session id.
    pub subscribers: Vec<Arc<Session>>,
    /// Up to four other subscribers the read reached, none of them congested.
    pub others: Vec<Arc<Session>>,
}

impl Congestion {
    /// Whether the publisher is to be paced.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }
}

impl ReadBatch {
    /// An empty batch for one read of a publisher's packets: the caller paces the publisher
    /// for the [`Congestion`] it takes from the batch once it has ended.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch whose source cannot be paced (wills, redeliveries).
    pub(crate) fn unpaced() -> Self {
        let mut batch = Self::default();
        batch.unpaced = true;
        batch
    }

    /// Whether the batch's source can be paced.
    pub(crate) fn paces(&self) -> bool {
        !self.unpaced
    }

    /// Notes that `session`, reached by a message of `publisher`, is over its bound.
    pub(crate) fn note_congested(&mut self, session: &Arc<Session>, publisher: Option<u64>) {
        if !self.unpaced && publisher != Some(session.id()) {
            self.congestion.subscribers.push(Arc::clone(session));
        }
    }

    /// Notes that a message of the batch reached `session`, which was not over its bound.
    pub(crate) fn note_reached(&mut self, session: &Arc<Session>) {
        if !self.unpaced && self.others.len() < OTHERS_NOTED && !self.others.iter().any(|s| s.id() == session.id()) {
            self.others.push(Arc::clone(session));
        }
    }

    /// Whether a message of the batch found a subscriber over its bound: the caller stops
    /// handling the read's packets after the current one.
    pub fn is_congested(&self) -> bool {
        !self.congestion.subscribers.is_empty()
    }

    /// Takes what the batch's messages ran into, each subscriber once. Call it after
    /// [`Broker::end_batch`](crate::Broker::end_batch), which may add to it.
    pub fn take_congestion(&mut self) -> Congestion {
        let mut congestion = std::mem::take(&mut self.congestion);
        congestion.subscribers.sort_by_key(|s| s.id());
        congestion.subscribers.dedup_by_key(|s| s.id());
        // A session reached early in the read may be one congested by its end.
        let subscribers = &congestion.subscribers;
        congestion.others = std::mem::take(&mut self.others)
            .into_iter()
            .filter(|other| subscribers.binary_search_by_key(&other.id(), |s| s.id()).is_err())
            .collect();
        congestion
    }

    /// Whether nothing waits for the batch's end.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.wakes.is_empty()
    }

    /// Defers every delivery in `targets` (draining it), noting the sessions already over their
    /// bound. Returns true once the batch holds [`DEFERRED_DELIVERIES`], or
    /// [`DEFERRED_PER_SESSION`] for one session: the caller enqueues them now, to keep the
    /// batch bounded and to see a queue crossing its bound soon after it does.
    pub(crate) fn defer(&mut self, targets: &mut Targets, publisher: Option<u64>) -> bool {
        self.count += targets.len();
        let mut longest = 0;
        for (session, item) in targets.drain(..) {
            if session.is_over_bound() {
                self.note_congested(&session, publisher);
            }
            let slot = self.slot_for(session);
            let items = &mut self.deferred[slot].1;
            items.push(item);
            longest = longest.max(items.len());
        }
        self.count >= DEFERRED_DELIVERIES || longest >= DEFERRED_PER_SESSION
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

    /// `count` deliveries of one message to each of `sessions`.
    fn targets_to(sessions: &[Arc<Session>], count: usize) -> Targets {
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
        (0..count).flat_map(|_| sessions.iter().map(|session| (Arc::clone(session), item.clone()))).collect()
    }

    fn targets(session: &Arc<Session>, count: usize) -> Targets {
        targets_to(std::slice::from_ref(session), count)
    }

    fn broker() -> Arc<Broker> {
        Broker::new(Limits {
            queue_qos0_messages: true,
            max_queued_messages: 4 * DEFERRED_DELIVERIES,
            ..Limits::default()
        })
    }

    #[test]
    fn deliveries_wait_for_the_batch_end_and_are_bounded_in_all() {
        let broker = broker();
        let per_session = DEFERRED_PER_SESSION / 2;
        let sessions: Vec<_> = (0..DEFERRED_DELIVERIES / per_session)
            .map(|n| Arc::new(Session::new(n as u64, format!("s{n}").into(), ProtocolVersion::V311, 60)))
            .collect();
        let mut batch = ReadBatch::new();
        for message in 1..per_session {
            let mut one = targets_to(&sessions, 1);
            assert!(!batch.defer(&mut one, None), "message {message}");
            assert!(one.is_empty(), "taken by the batch");
        }
        assert!(sessions.iter().all(|s| s.queued_len() == 0), "deferred until the batch ends");
        assert!(batch.defer(&mut targets_to(&sessions, 1), None), "full at the bound: the caller enqueues now");
        batch.defer(&mut targets_to(&sessions, 1), None);
        assert_eq!(sessions[0].queued_len(), 0, "nothing happens inside the batch by itself");
        broker.end_batch(&mut batch);
        assert!(sessions.iter().all(|s| s.queued_len() == per_session + 1), "all of it when the batch ends");
        assert!(batch.is_empty());
    }

    #[test]
    fn one_sessions_deliveries_are_bounded_so_a_crossed_bound_is_seen_soon() {
        let broker = broker();
        let session = Arc::new(Session::new(1, "s".into(), ProtocolVersion::V311, 60));
        let mut batch = ReadBatch::new();
        assert!(!batch.defer(&mut targets(&session, DEFERRED_PER_SESSION - 1), None));
        assert!(batch.defer(&mut targets(&session, 1), None), "the session's share is full");
        broker.end_batch(&mut batch);
        assert_eq!(session.queued_len(), DEFERRED_PER_SESSION);
    }
}
