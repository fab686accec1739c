//! Deferred QoS 0 deliveries: a connection that routes a read batch of QoS 0 messages takes each
//! subscriber's lock once for the batch, instead of once per message (DESIGN.md, "Enqueue").
//!
//! In a fan-out the per-message enqueue was the broker's largest cost, and most of it was the
//! session lock's cache line moving between the publisher's core and the subscriber's, which
//! takes the same lock to drain: one lock per read batch moves it once.
//!
//! Only messages *published* at QoS 0 are deferred. They have no acknowledgement to hold for a
//! store ticket and no publisher to pace (QoS 0 to a full queue is dropped and counted), so
//! nothing the publisher is told depends on the enqueue having happened. A QoS 1/2 message
//! flushes what is deferred before it is routed, so a publisher's messages reach each session in
//! the order it sent them. The deferred deliveries are bounded ([`DEFERRED_LIMIT`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::broker::Broker;
use crate::hash::ProcessSeeded;
use crate::session::{Queued, Session};

/// Deliveries deferred before they are flushed anyway, so a batch to many subscribers stays
/// bounded in memory (4,096 × about 48 bytes).
pub const DEFERRED_LIMIT: usize = 4_096;

thread_local! {
    /// The open batch on this thread, if any.
    static OPEN: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// What the open batch holds: deliveries grouped by session, in the order they were routed.
struct Pending {
    broker: Arc<Broker>,
    sessions: Vec<(Arc<Session>, Vec<Queued>)>,
    /// Session id to its place in `sessions`.
    slots: HashMap<u64, usize, ProcessSeeded>,
    /// The slot after the one used last (see [`Pending::slot_for`]).
    cursor: usize,
    count: usize,
}

/// Defers QoS 0 deliveries routed through `broker` on this thread until dropped, then enqueues
/// them. Not `Send`: it must end on the thread that opened it, with no `.await` in between.
/// Open it inside a [`crate::wake_batch::WakeBatch`], so the sessions it reaches are woken once.
#[derive(Debug)]
pub struct DeliveryBatch {
    /// Whether this guard opened the batch (an inner guard leaves it to the outer one).
    opened: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DeliveryBatch {
    /// Opens a batch for `broker` on this thread (or joins the one already open).
    pub fn begin(broker: &Arc<Broker>) -> Self {
        let opened = OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if open.is_some() {
                return false;
            }
            *open = Some(Pending {
                broker: Arc::clone(broker),
                sessions: Vec::new(),
                slots: HashMap::default(),
                cursor: 0,
                count: 0,
            });
            true
        });
        Self { opened, _not_send: std::marker::PhantomData }
    }
}

impl Drop for DeliveryBatch {
    fn drop(&mut self) {
        if self.opened {
            flush();
            OPEN.with(|open| open.borrow_mut().take());
        }
    }
}

/// Defers every delivery in `targets` (draining it) if a batch for `broker` is open on this
/// thread, and returns how many; returns `None`, leaving `targets` as they are, otherwise.
pub(crate) fn defer_all<A>(broker: &Broker, targets: &mut SmallVec<A>) -> Option<usize>
where
    A: smallvec::Array<Item = (Arc<Session>, Queued)>,
{
    let (deferred, full) = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let pending = open.as_mut().filter(|p| std::ptr::eq(Arc::as_ptr(&p.broker), broker))?;
        let deferred = targets.len();
        for (session, item) in targets.drain(..) {
            let slot = pending.slot_for(session);
            pending.sessions[slot].1.push(item);
        }
        pending.count += deferred;
        Some((deferred, pending.count >= DEFERRED_LIMIT))
    })?;
    if full {
        flush();
    }
    Some(deferred)
}

impl Pending {
    /// The place of `session`'s deliveries. A fan-out routes message after message to the
    /// same sessions in the same order, so the slot after the last one is tried before the map.
    fn slot_for(&mut self, session: Arc<Session>) -> usize {
        if self.sessions.get(self.cursor).is_some_and(|(s, _)| s.id() == session.id()) {
            self.cursor += 1;
            return self.cursor - 1;
        }
        let sessions = &mut self.sessions;
        let slot = *self.slots.entry(session.id()).or_insert_with(|| {
            sessions.push((session, Vec::new()));
            sessions.len() - 1
        });
        self.cursor = slot + 1;
        slot
    }
}

/// Enqueues what the open batch deferred, each session under one lock; the batch stays open.
pub(crate) fn flush() {
    let taken = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let pending = open.as_mut()?;
        if pending.count == 0 {
            return None;
        }
        pending.slots.clear();
        pending.cursor = 0;
        pending.count = 0;
        Some((Arc::clone(&pending.broker), std::mem::take(&mut pending.sessions)))
    });
    // Enqueued outside the thread-local's borrow: enqueueing wakes sessions, which may defer
    // into the open wake batch.
    if let Some((broker, sessions)) = taken {
        for (session, items) in sessions {
            broker.enqueue_deferred(&session, items);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use midge_codec::{Properties, ProtocolVersion, Publish, QoS, TopicName};

    use super::*;
    use crate::config::BrokerConfig;
    use crate::message::Message;

    type Targets = SmallVec<[(Arc<Session>, Queued); 8]>;

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
        let item =
            Queued { message, qos: QoS::AtMostOnce, retain: false, subscription_ids: Default::default(), shared: None };
        (0..count).map(|_| (Arc::clone(session), item.clone())).collect()
    }

    #[test]
    fn deliveries_wait_for_the_batch_end_and_are_bounded() {
        let config = BrokerConfig {
            queue_qos0_messages: true,
            max_queued_messages: 4 * DEFERRED_LIMIT,
            ..BrokerConfig::default()
        };
        let broker = Broker::new(config);
        let session = Arc::new(Session::new(1, "s".into(), ProtocolVersion::V311, 60));
        {
            let _batch = DeliveryBatch::begin(&broker);
            let mut first = targets(&session, DEFERRED_LIMIT - 1);
            assert_eq!(defer_all(&broker, &mut first), Some(DEFERRED_LIMIT - 1));
            assert!(first.is_empty());
            assert_eq!(session.queued_len(), 0, "deferred until the batch ends");
            defer_all(&broker, &mut targets(&session, 1));
            assert_eq!(session.queued_len(), DEFERRED_LIMIT, "flushed at the limit: memory stays bounded");
            defer_all(&broker, &mut targets(&session, 2));
            assert_eq!(session.queued_len(), DEFERRED_LIMIT);
        }
        assert_eq!(session.queued_len(), DEFERRED_LIMIT + 2, "the rest when the batch ends");
    }

    #[test]
    fn without_a_batch_for_this_broker_nothing_is_deferred() {
        let broker = Broker::new(BrokerConfig::default());
        let other = Broker::new(BrokerConfig::default());
        let session = Arc::new(Session::new(1, "s".into(), ProtocolVersion::V311, 60));
        let mut some = targets(&session, 3);
        assert_eq!(defer_all(&broker, &mut some), None, "no batch open");
        let _batch = DeliveryBatch::begin(&other);
        assert_eq!(defer_all(&broker, &mut some), None, "a batch for another broker");
        assert_eq!(some.len(), 3, "left to the caller");
    }
}
