//! The session's queue: offering messages to it within its bounds, handing them to the attached
//! connection within its in-flight window, and the pacing state that tells a publisher when a
//! congested subscriber has room again (DESIGN.md, "Bounds and back-pressure").

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{QoS, ReasonCode};

use super::inflight::packet_id_for;
use super::records::delivery_record;
use super::state::{EnqueueOutcome, Entry, Inflight, InflightStage, ManyOutcome, Session, SessionState};
use crate::delivery::{Outgoing, Queued, ReadyBatch};
use crate::journal::Journal;
use crate::kick::Kick;
use crate::limits::Limits;
use crate::ports::durability::{Change, Changes, DeliveryStage};

impl Session {
    /// Offers a message. Called by the router's caller with no other lock held. For a
    /// persistent session the delivery is written to the store (QoS 1/2, and QoS 0 queued
    /// offline), and the outcome carries the ticket the publisher's acknowledgement waits for.
    /// Also returns the connection to wake, when the queue was empty: the caller rings it now
    /// or once at the end of its read batch.
    ///
    /// `pace` says whether the caller can pace its source (a publisher's connection): only then
    /// may a connected subscriber's message be queued beyond the bound (QoS 0 only with
    /// `pace_qos0`). Retained messages sent on subscribe, wills and redeliveries cannot be
    /// paced and respect the bound.
    pub(crate) fn enqueue(
        &self,
        item: Queued,
        limits: &Limits,
        journal: Option<&Journal>,
        pace: bool,
    ) -> (EnqueueOutcome, Option<Arc<Kick>>) {
        let mut state = self.state.lock();
        self.enqueue_locked(&mut state, item, limits, journal, pace, None)
    }

    /// Offers a message the fabric's durable path brought, at sequence number `seq` (which
    /// fixes its packet id): its place in the fabric's stream, so that after this node dies
    /// the node its client reconnects to sends it again with the same packet id, and a QoS 2
    /// message the client holds unreleased is recognised as that one (MQTT-4.3.3-10), not
    /// taken for a new one. Not written to the store; paced as [`Session::enqueue`] with `pace`.
    pub(crate) fn enqueue_at(&self, item: Queued, seq: u64, limits: &Limits) -> (EnqueueOutcome, Option<Arc<Kick>>) {
        let mut state = self.state.lock();
        self.enqueue_locked(&mut state, item, limits, None, true, Some(seq))
    }

    /// Offers several messages under one lock (the QoS 0 deliveries of a read batch, see
    /// `route::read_batch`), paced as [`Session::enqueue`] says when `pace`.
    pub(crate) fn enqueue_many(
        &self,
        items: Vec<Queued>,
        limits: &Limits,
        journal: Option<&Journal>,
        pace: bool,
    ) -> ManyOutcome {
        let mut outcome = ManyOutcome::default();
        let mut state = self.state.lock();
        for item in items {
            let (one, woken) = self.enqueue_locked(&mut state, item, limits, journal, pace, None);
            match one {
                EnqueueOutcome::DroppedQueueFull => outcome.dropped += 1,
                EnqueueOutcome::QueuedCongested(_) => outcome.congested = true,
                EnqueueOutcome::Queued(_) | EnqueueOutcome::DroppedOffline => {}
            }
            outcome.wake = outcome.wake.or(woken);
        }
        outcome
    }

    /// [`Session::enqueue`] with the lock held.
    fn enqueue_locked(
        &self,
        state: &mut SessionState,
        item: Queued,
        limits: &Limits,
        journal: Option<&Journal>,
        pace: bool,
        at: Option<u64>,
    ) -> (EnqueueOutcome, Option<Arc<Kick>>) {
        let online = state.attached.is_some();
        if !online && item.qos == QoS::AtMostOnce && !limits.queue_qos0_messages {
            return (EnqueueOutcome::DroppedOffline, None);
        }
        // An offline persistent session's queue, and a returning one's until it has read its
        // backlog, continue in the store (decision 0006): in order, and at no memory cost.
        if let Some(journal) = journal.filter(|j| j.queues().is_some()) {
            if state.spill.is_some() || (!online && state.persistent()) {
                return self.enqueue_to_store(state, item, limits, journal);
            }
        }
        let bytes = item.message.payload.len();
        let over_count = state.queue.len() >= limits.max_queued_messages;
        let over_bytes = limits.max_queued_bytes != 0 && state.queued_bytes + bytes > limits.max_queued_bytes;
        let mut congested = false;
        if over_count || over_bytes {
            // A connected subscriber's messages are kept: the publisher is paced instead, up to
            // the hard bound (Limits::hard_queued_messages). QoS 0 too, unless `pace_qos0` is off.
            let hard = state.queue.len() >= limits.hard_queued_messages()
                || (limits.max_queued_bytes != 0 && state.queued_bytes + bytes > limits.hard_queued_bytes());
            let drop_qos0 = item.qos == QoS::AtMostOnce && !limits.pace_qos0;
            if !pace || !online || drop_qos0 || hard || state.shedding || state.asleep {
                state.dropped = state.dropped.wrapping_add(1);
                return (EnqueueOutcome::DroppedQueueFull, None);
            }
            congested = true;
            if !state.congested {
                state.congested = true;
                state.low_water = u32::try_from(limits.low_water()).unwrap_or(u32::MAX);
                self.over_bound.store(true, Ordering::Relaxed);
            }
        }
        let was_empty = state.queue.is_empty();
        state.queued_bytes += bytes;
        let seq = match at {
            Some(seq) => {
                state.next_seq = state.next_seq.max(seq + 1);
                seq
            }
            None => {
                state.next_seq += 1;
                state.next_seq - 1
            }
        };
        let mut ticket = None;
        let durable_kind = item.qos != QoS::AtMostOnce || !online;
        if let Some(journal) = journal.filter(|_| state.persistent() && durable_kind) {
            let mut changes = Changes::new();
            let record = delivery_record(&item, DeliveryStage::Queued);
            changes.push(Change::PutDelivery { client_id: self.client_id.to_string(), seq, record });
            ticket = Some(journal.add_reference(&item.message, changes));
        }
        state.queue.push_back(Entry { seq, item, durable: ticket.is_some(), maybe_sent: false });
        let wake = if was_empty { state.attached.as_ref().map(|a| Arc::clone(&a.kick)) } else { None };
        let outcome = if congested { EnqueueOutcome::QueuedCongested(ticket) } else { EnqueueOutcome::Queued(ticket) };
        (outcome, wake)
    }

    /// Messages waiting in the queue (not in flight). For tests.
    #[cfg(test)]
    pub(crate) fn queued_len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Moves up to `max` queued messages into `out` for the attached connection `conn_id`,
    /// assigning packet ids to QoS 1/2 ones while the in-flight window allows. Expired
    /// messages are dropped (MQTT-3.3.2-5), and so are messages `deliverable` rejects (larger
    /// than the client's Maximum Packet Size, MQTT-3.1.2-25, or not readable by it). Returns how
    /// many messages were dropped. For a session fed by the fabric, the ids of the messages
    /// whose delivery ends here (dropped, or sent at QoS 0) are added to `fabric_done`.
    // Each argument is one thing the drain needs; a struct of them would be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn take_ready(
        &self,
        conn_id: u64,
        now: Instant,
        max: usize,
        mut deliverable: impl FnMut(&Queued) -> bool,
        journal: Option<&Journal>,
        out: &mut ReadyBatch,
        fabric_done: &mut Vec<u64>,
    ) -> usize {
        let fed = self.is_fabric_fed();
        let mut state = self.state.lock();
        let Some(window) = state.attached.as_ref().filter(|a| a.conn_id == conn_id).map(|a| a.window) else {
            return 0;
        };
        let low_water = state.low_water as usize;
        let mut dropped = 0;
        let mut taken = 0;
        while taken < max {
            let Some(front) = state.queue.front() else { break };
            let packet_id = packet_id_for(front.seq);
            if front.item.qos != QoS::AtMostOnce
                && (state.inflight.len() >= window || state.inflight.contains_key(&packet_id.get()))
            {
                // The window is full, or a much older message still holds this packet id.
                break;
            }
            let Entry { seq, item, durable, maybe_sent } = state.queue.pop_front().expect("front exists");
            state.queued_bytes -= item.message.payload.len();
            if item.message.is_expired(now) || !deliverable(&item) {
                dropped += 1;
                if fed {
                    fabric_done.push(item.message.id);
                }
                if durable {
                    self.forget_delivery(journal, seq, &item.message);
                }
                continue;
            }
            taken += 1;
            if item.qos == QoS::AtMostOnce {
                if fed {
                    fabric_done.push(item.message.id);
                }
                if durable {
                    self.forget_delivery(journal, seq, &item.message);
                }
                out.push(Outgoing::Publish { item, packet_id: None, dup: false });
                continue;
            }
            if durable && item.message.expires_at.is_some() {
                self.record_sent_expiring(journal, seq, &item, packet_id);
            }
            let entry = Inflight { seq, item: item.clone(), stage: InflightStage::AwaitingAck, durable };
            state.inflight.insert(packet_id.get(), entry);
            out.push(Outgoing::Publish { item, packet_id: Some(packet_id), dup: maybe_sent });
        }
        state.dropped = state.dropped.wrapping_add(dropped as u32);
        state.taken_total = state.taken_total.wrapping_add((taken + dropped) as u32);
        if state.queue.is_empty() {
            // Caught up: a shed subscriber is an ordinary one again.
            state.shedding = false;
        }
        if state.congested && taken + dropped > 0 && state.queue.len() <= low_water {
            state.congested = false;
            self.over_bound.store(false, Ordering::Relaxed);
            drop(state);
            self.room.notify_waiters();
        }
        dropped
    }

    /// Whether publishers need no longer be paced for this session: its queue has drained to
    /// its low water mark since it went over its bound, the slow-consumer policy shed it, or it
    /// is no longer connected (pacing for it is then pointless). Exactly the moments the
    /// session wakes paced publishers: a test of the queue's length instead would leave a
    /// publisher that came to wait while the queue sat between low water and the bound
    /// waiting for a wake-up that never comes.
    pub fn has_room(&self) -> bool {
        let state = self.state.lock();
        state.attached.is_none() || state.ended || !state.congested || state.shedding || state.asleep
    }

    /// Whether messages beyond the bound are dropped rather than paced: the slow-consumer
    /// policy shed this session, or its MQTT-SN client sleeps.
    pub(crate) fn drops_beyond_bound(&self) -> bool {
        let state = self.state.lock();
        state.shedding || state.asleep
    }

    /// Waits until [`has_room`](Self::has_room) is true.
    ///
    /// # Cancel safety
    /// Cancel safe: it holds nothing but a registration with the session's notifier.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the two is not lost.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// How many messages the session's queue has given up so far, to tell a subscriber that is
    /// busy (this moves) from one that is stuck.
    pub fn progress(&self) -> u64 {
        u64::from(self.state.lock().taken_total)
    }

    /// Whether the session has nothing queued, in memory or in the store: its subscriber
    /// waits for messages.
    pub fn is_idle(&self) -> bool {
        let state = self.state.lock();
        state.queue.is_empty() && state.spill.is_none()
    }

    /// Whether publishers are to be paced for this session: its queue went over its bound and
    /// has not yet drained to its low water mark, and no policy has shed it. Lock-free.
    pub(crate) fn is_over_bound(&self) -> bool {
        self.over_bound.load(Ordering::Relaxed)
    }

    /// Marks the session's client as asleep or awake (an MQTT-SN sleeping client, section
    /// 6.14). While it sleeps its messages are kept within the queue's bound, beyond which new
    /// ones are dropped and counted, and no publisher is paced for it: a sleeping client is
    /// expected not to take anything. Publishers paced for it when it fell asleep are let go.
    pub(crate) fn set_asleep(&self, asleep: bool) {
        let mut state = self.state.lock();
        state.asleep = asleep;
        if asleep {
            state.congested = false;
            self.over_bound.store(false, Ordering::Relaxed);
            drop(state);
            self.room.notify_waiters();
        }
    }

    /// Applies the slow-consumer policy after publishers waited too long: from now on messages
    /// beyond the bound are dropped (counted) until the subscriber has caught up (its queue
    /// empty), and nobody is paced for it; with `disconnect` the attached connection is also
    /// kicked with 0x97.
    pub fn shed(&self, disconnect: bool) {
        let mut state = self.state.lock();
        state.shedding = true;
        self.over_bound.store(false, Ordering::Relaxed);
        let kick = if disconnect { state.attached_kick() } else { None };
        drop(state);
        self.room.notify_waiters();
        if let Some(kick) = kick {
            kick.kick(ReasonCode::QUOTA_EXCEEDED);
        }
    }
}
