//! A session: the state the broker keeps for one client identifier, whether or not a network
//! connection is attached (MQTT 3.1.1 section 3.1.2.4, 5.0 section 4.1).
//!
//! It owns the client's subscriptions, its bounded queue of messages waiting to be sent, the
//! outbound messages in flight with their packet ids, and the inbound QoS 2 packet ids awaiting
//! PUBREL. Publishers enqueue under the session's short lock and never wait for the receiver;
//! the attached connection is woken through its [`Kick`] (see [`Kick::poll_signal`]) and drains the
//! queue itself.
//!
//! A persistent session (expiry interval above 0) mirrors its deliveries and QoS 2 state into
//! the store through a [`Journal`]; each change is submitted while the session lock is held, so
//! the store sees them in the order they happened (see `journal`).
//!
//! Lock order: a session lock is never held while taking the broker's session map, router or
//! retained locks (docs/locks.md). Under it, a message's durable-reference lock and the store
//! writer's queue may be taken.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{PacketId, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use midge_store::{Batch, DeliveryRecord, DeliveryState, MessageId, SessionRecord, Ticket, WillRecord};
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::doorbell::Doorbell;
use crate::hash::ProcessSeeded;
use crate::journal::Journal;
use crate::message::Message;
use crate::subscription_set::SubscriptionSet;

/// Subscription identifiers that matched one message, usually none or one.
pub type SubscriptionIds = SmallVec<[u32; 1]>;

/// One session, shared by the broker's session map, the router and the attached connection.
#[derive(Debug)]
pub struct Session {
    /// Unique per session object (a new session for the same client id gets a new one): the
    /// router's key and the publisher id used for No Local.
    id: u64,
    /// The client identifier.
    client_id: Arc<str>,
    /// Everything mutable, behind a short lock.
    state: Mutex<SessionState>,
    /// Wakes publishers paced by this session when its queue is back under its bound.
    room: Notify,
}

/// What a connection is told from outside its task: that its session's queue has work, and
/// that it must close, and why (takeover, shutdown, keep alive, administrative action).
///
/// Both ring one [`Doorbell`] that the connection's driver polls. It belongs to the connection,
/// not to the session: a connection taking a session over gets its own, so the one it replaces
/// can never take a wake-up meant for it.
#[derive(Debug, Default)]
pub struct Kick {
    bell: Doorbell,
    /// The reason to close; 0 (never a close reason) while the connection may stay.
    reason: AtomicU8,
    /// One and a half times the keep alive, in milliseconds; 0 without a keep alive.
    keep_alive_limit_ms: u32,
    /// When the client was last heard from, on [`crate::keep_alive::KeepAlives::millis`]'s
    /// clock. Written by the connection per read batch, read by the keep alive sweep.
    heard_ms: AtomicU64,
}

/// What a connection's [`Kick`] says when it rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The session's queue may have work for the connection.
    Work,
    /// The connection must close with this reason.
    Kicked(ReasonCode),
}

impl Kick {
    /// A connection's kick with a keep alive of `keep_alive_secs` (0: none). MQTT-3.1.2-24:
    /// one and a half times the keep alive without a packet closes the connection.
    pub fn with_keep_alive(keep_alive_secs: u16) -> Self {
        Self { keep_alive_limit_ms: u32::from(keep_alive_secs) * 1500, ..Self::default() }
    }

    /// Records that the client was heard from at `millis` (see [`crate::keep_alive`]).
    pub fn heard(&self, millis: u64) {
        self.heard_ms.store(millis, Ordering::Relaxed);
    }

    /// One and a half times the keep alive, in milliseconds; 0 without one.
    pub fn keep_alive_limit_ms(&self) -> u32 {
        self.keep_alive_limit_ms
    }

    /// When the keep alive runs out unless the client is heard from again.
    pub(crate) fn deadline_ms(&self) -> u64 {
        self.heard_ms.load(Ordering::Relaxed).saturating_add(u64::from(self.keep_alive_limit_ms))
    }

    /// Whether the connection was told to close.
    pub fn is_kicked(&self) -> bool {
        self.reason.load(Ordering::Acquire) != 0
    }

    /// Asks the connection to close with `reason`.
    pub fn kick(&self, reason: ReasonCode) {
        self.reason.store(reason.0, Ordering::Release);
        self.bell.ring();
    }

    /// Tells the connection that its session's queue may have work.
    pub fn ring(&self) {
        self.bell.ring();
    }

    /// `Ready` once rung since the last `Ready` (a kick wins over work: work no longer matters
    /// to a closing connection); otherwise registers `cx` to be woken by the next ring.
    pub fn poll_signal(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Signal> {
        self.bell.poll_rung(cx).map(|()| match self.reason.load(Ordering::Acquire) {
            0 => Signal::Work,
            reason => Signal::Kicked(ReasonCode(reason)),
        })
    }

    /// Waits until kicked and returns the reason.
    ///
    /// # Cancel safety
    /// Cancel safe: the reason stays set once kicked.
    pub async fn kicked(&self) -> ReasonCode {
        loop {
            if let Signal::Kicked(reason) = std::future::poll_fn(|cx| self.poll_signal(cx)).await {
                return reason;
            }
        }
    }
}

/// A message waiting for, or in, delivery to this session.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The shared message.
    pub message: Arc<Message>,
    /// The QoS it is delivered with: the minimum of published and granted (MQTT-3.8.4-8).
    pub qos: QoS,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// Identifiers of the matching subscriptions (MQTT-3.3.4-3).
    pub subscription_ids: SubscriptionIds,
    /// The `$share/{group}/{filter}` it came through, so that it can go to another member if this
    /// session ends before acknowledging it (MQTT 5.0 section 4.8.2).
    pub shared: Option<Arc<str>>,
}

/// A message handed to the connection to write.
#[derive(Debug)]
pub enum Outgoing {
    /// A PUBLISH, new or resent.
    Publish {
        /// What to send.
        item: Queued,
        /// The packet id, for QoS 1 and 2.
        packet_id: Option<PacketId>,
        /// Whether this is a resend (MQTT-3.3.1-1).
        dup: bool,
    },
    /// A PUBREL to resend after reconnecting (MQTT-4.4.0-1).
    PubRel(PacketId),
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InflightStage {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck,
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    AwaitingComp,
}

/// A queued delivery and its place in the session's delivery order.
#[derive(Debug)]
struct Entry {
    /// Assigned at enqueue, increasing; fixes the packet id (see [`packet_id_for`]) and keys the
    /// delivery's record in the store.
    seq: u64,
    item: Queued,
    /// Whether a delivery record for it is in the store (to be deleted when it is done).
    durable: bool,
    /// Restored from the store: it may have been sent before the restart, so it goes out with
    /// DUP set.
    maybe_sent: bool,
}

#[derive(Debug)]
struct Inflight {
    /// Send order, so resends keep the original order (MQTT-4.6.0-1).
    seq: u64,
    item: Queued,
    stage: InflightStage,
    durable: bool,
}

/// The connection a session is attached to.
#[derive(Debug)]
struct Attachment {
    conn_id: u64,
    kick: Arc<Kick>,
    /// Outbound window: min(client's Receive Maximum, max_inflight_messages).
    window: usize,
}

/// A subscription as the session remembers it, to restore and to unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its v5 subscription identifier.
    pub id: Option<u32>,
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Queued for delivery; the ticket, if any, makes its delivery record durable.
    Queued(Option<Ticket>),
    /// Queued beyond the session's bound because its client is connected and the message is
    /// QoS 1/2: the publisher must be paced until [`Session::has_room`].
    QueuedCongested(Option<Ticket>),
    /// Dropped because the session's queue is full (counted).
    DroppedQueueFull,
    /// Dropped because the session is offline and does not keep QoS 0 (not an error).
    DroppedOffline,
}

/// The outcome of an acknowledgement from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The packet id was in flight at the stage the ack belongs to; the slot is freed.
    Completed,
    /// PUBREC accepted: send PUBREL once the ticket (if any) is durable.
    SendPubRel(Option<Ticket>),
    /// Unknown packet id (MQTT 5 answers PUBREL with 0x92 in that case).
    Unknown,
}

#[derive(Debug)]
pub(crate) struct SessionState {
    attached: Option<Attachment>,
    /// Version of the last connection, for encoding resends.
    pub(crate) protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds: 0 ends the session with its connection, u32::MAX
    /// never expires (3.1.1 persistent sessions).
    pub(crate) expiry_interval: u32,
    /// When a detached session expires.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) subscriptions: SubscriptionSet,
    queue: VecDeque<Entry>,
    queued_bytes: usize,
    inflight: BTreeMap<u16, Inflight>,
    /// Sequence number of the next enqueued delivery.
    pub(crate) next_seq: u64,
    /// Inbound QoS 2 packet ids received and PUBREC'd but not yet released: a resent PUBLISH
    /// with one of these ids is not delivered again (MQTT-4.3.3-10).
    inbound_qos2: HashSet<u16, ProcessSeeded>,
    /// A will whose delay has not run out, as the message it becomes, and when it is due
    /// (MQTT-3.1.3-9).
    pub(crate) delayed_will: Option<(Instant, Arc<Message>)>,
    /// Set when the session has ended (expired, or replaced by a clean start): a will that
    /// arrives afterwards from its last connection is published at once, not parked here.
    pub(crate) ended: bool,
    /// Messages this session dropped because a bound was hit.
    pub(crate) dropped: u64,
    /// Whether the session's record was ever written to the store, so that ending it needs a
    /// delete (a clean session that never was persistent costs the store nothing).
    pub(crate) stored: bool,
    /// Set when publishers are being paced for this session; cleared when the queue drains to
    /// `low_water`.
    congested: bool,
    /// Half the queue bound: where paced publishers are let go again.
    low_water: usize,
    /// Messages taken from the queue so far: a paced publisher's timeout counts only while
    /// this does not move (the subscriber is stuck, not merely busy).
    taken_total: u64,
    /// The slow-consumer policy applied: messages beyond the bound are dropped until the queue
    /// has room again.
    shedding: bool,
}

impl SessionState {
    /// Whether the session outlives its connection, and so is kept in the store.
    pub(crate) fn persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// The kick handle of the attached connection.
    pub(crate) fn attached_kick(&self) -> Option<Arc<Kick>> {
        self.attached.as_ref().map(|a| Arc::clone(&a.kick))
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.attached.is_some()
    }

    /// Wakes the attached connection, if there is one. Called with the lock already held by
    /// whoever freed a slot or queued work, so that waking costs no second lock.
    pub(crate) fn ring_attached(&self) {
        if let Some(attached) = &self.attached {
            attached.kick.ring();
        }
    }
}

impl Session {
    pub(crate) fn new(id: u64, client_id: Arc<str>, protocol: ProtocolVersion, expiry_interval: u32) -> Self {
        Self {
            id,
            client_id,
            state: Mutex::new(SessionState {
                attached: None,
                protocol,
                expiry_interval,
                expires_at: None,
                subscriptions: SubscriptionSet::default(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: BTreeMap::new(),
                next_seq: 0,
                inbound_qos2: HashSet::default(),
                delayed_will: None,
                ended: false,
                dropped: 0,
                stored: false,
                congested: false,
                low_water: 0,
                taken_total: 0,
                shedding: false,
            }),
            room: Notify::new(),
        }
    }

    /// The unique id of this session object.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client identifier.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Offers a message. Called by the router's caller with no other lock held. For a
    /// persistent session the delivery is written to the store (QoS 1/2, and QoS 0 queued
    /// offline), and the outcome carries the ticket the publisher's acknowledgement waits for.
    ///
    /// `pace` says whether the caller can pace its source (a publisher's connection): only then
    /// may a connected subscriber's QoS 1/2 message be queued beyond the bound. Retained
    /// messages sent on subscribe and redeliveries cannot be paced and respect the bound.
    pub fn enqueue(
        self: &Arc<Self>,
        item: Queued,
        config: &BrokerConfig,
        journal: Option<&Journal>,
        pace: bool,
    ) -> EnqueueOutcome {
        let mut state = self.state.lock();
        let (outcome, wake) = self.enqueue_locked(&mut state, item, config, journal, pace);
        drop(state);
        if let Some(kick) = wake {
            // Now, or once at the end of the publisher's read batch (see `wake_batch`).
            crate::wake_batch::wake(kick);
        }
        outcome
    }

    /// Offers several messages under one lock (the QoS 0 deliveries of a read batch, see
    /// [`crate::delivery_batch`]), none of them paced. Returns how many were dropped because the
    /// queue was full.
    pub fn enqueue_many(&self, items: Vec<Queued>, config: &BrokerConfig, journal: Option<&Journal>) -> usize {
        let mut dropped = 0;
        let mut wake = None;
        let mut state = self.state.lock();
        for item in items {
            let (outcome, woken) = self.enqueue_locked(&mut state, item, config, journal, false);
            dropped += usize::from(outcome == EnqueueOutcome::DroppedQueueFull);
            wake = wake.or(woken);
        }
        drop(state);
        if let Some(kick) = wake {
            crate::wake_batch::wake(kick);
        }
        dropped
    }

    /// [`Session::enqueue`] with the lock held; also returns the connection to wake, if the
    /// queue was empty.
    fn enqueue_locked(
        &self,
        state: &mut SessionState,
        item: Queued,
        config: &BrokerConfig,
        journal: Option<&Journal>,
        pace: bool,
    ) -> (EnqueueOutcome, Option<Arc<Kick>>) {
        let online = state.attached.is_some();
        if !online && item.qos == QoS::AtMostOnce && !config.queue_qos0_messages {
            return (EnqueueOutcome::DroppedOffline, None);
        }
        let bytes = item.message.payload.len();
        let over_count = state.queue.len() >= config.max_queued_messages;
        let over_bytes = config.max_queued_bytes != 0 && state.queued_bytes + bytes > config.max_queued_bytes;
        let mut congested = false;
        if over_count || over_bytes {
            // A connected subscriber's QoS 1/2 messages are kept: the publisher is paced instead.
            // Pacing stops each publisher after the message that found the queue full, so the
            // overshoot is one message per publisher; the hard limit is a safety net.
            let hard_messages = (2 * config.max_queued_messages).max(config.max_queued_messages + 1024);
            let hard = state.queue.len() >= hard_messages
                || (config.max_queued_bytes != 0 && state.queued_bytes + bytes > 2 * config.max_queued_bytes);
            if !pace || !online || item.qos == QoS::AtMostOnce || hard || state.shedding {
                state.dropped += 1;
                return (EnqueueOutcome::DroppedQueueFull, None);
            }
            congested = true;
            state.congested = true;
            state.low_water = config.max_queued_messages / 2;
        }
        let was_empty = state.queue.is_empty();
        state.queued_bytes += bytes;
        let seq = state.next_seq;
        state.next_seq += 1;
        let mut ticket = None;
        let durable_kind = item.qos != QoS::AtMostOnce || !online;
        if let Some(journal) = journal.filter(|_| state.persistent() && durable_kind) {
            let mut batch = Batch::new();
            batch.put_delivery(&*self.client_id, seq, delivery_record(&item, DeliveryState::Queued));
            ticket = Some(journal.add_reference(&item.message, batch));
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

    /// Wakes the attached connection, if there is one.
    pub fn wake(&self) {
        self.state.lock().ring_attached();
    }

    /// Whether the queue is back under half its bound (or the session is no longer connected,
    /// in which case pacing for it is pointless).
    pub fn has_room(&self, config: &BrokerConfig) -> bool {
        let state = self.state.lock();
        state.attached.is_none() || state.ended || state.queue.len() <= config.max_queued_messages / 2
    }

    /// Waits until [`has_room`](Self::has_room) is true.
    ///
    /// # Cancel safety
    /// Cancel safe: it holds nothing but a registration with the session's notifier.
    pub async fn wait_for_room(&self, config: &BrokerConfig) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the two is not lost.
            notified.as_mut().enable();
            if self.has_room(config) {
                return;
            }
            notified.await;
        }
    }

    /// How many messages the session's queue has given up so far, to tell a subscriber that is
    /// busy (this moves) from one that is stuck.
    pub fn progress(&self) -> u64 {
        self.state.lock().taken_total
    }

    /// Applies the slow-consumer policy after publishers waited too long: from now on messages
    /// beyond the bound are dropped (counted) until the queue has room again; with `disconnect`
    /// the attached connection is also kicked with 0x97.
    pub fn shed(&self, disconnect: bool) {
        let mut state = self.state.lock();
        state.shedding = true;
        let kick = if disconnect { state.attached_kick() } else { None };
        drop(state);
        self.room.notify_waiters();
        if let Some(kick) = kick {
            kick.kick(ReasonCode::QUOTA_EXCEEDED);
        }
    }

    /// Attaches a new connection. Returns the connection previously attached, to be kicked.
    pub(crate) fn attach(
        &self,
        conn_id: u64,
        kick: Arc<Kick>,
        window: usize,
        protocol: ProtocolVersion,
        expiry_interval: u32,
    ) -> Option<Arc<Kick>> {
        let mut state = self.state.lock();
        let previous = state.attached.replace(Attachment { conn_id, kick, window }).map(|a| a.kick);
        state.protocol = protocol;
        state.expiry_interval = expiry_interval;
        state.expires_at = None;
        state.ring_attached();
        previous
    }

    /// Detaches `conn_id` if it is still the attached connection; returns whether it was.
    pub(crate) fn detach(&self, conn_id: u64, now: Instant) -> bool {
        let mut state = self.state.lock();
        if state.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) {
            return false;
        }
        state.attached = None;
        state.expires_at = match state.expiry_interval {
            u32::MAX => None,
            secs => Some(now + std::time::Duration::from_secs(u64::from(secs))),
        };
        true
    }

    /// Everything in flight, in send order, for resending after a reconnect (MQTT-4.4.0-1):
    /// unacknowledged PUBLISHes with DUP set, and PUBRELs for those past PUBREC.
    pub fn resend_inflight(&self, conn_id: u64) -> Vec<Outgoing> {
        let state = self.state.lock();
        if state.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) {
            return Vec::new();
        }
        let mut entries: Vec<(&u16, &Inflight)> = state.inflight.iter().collect();
        entries.sort_by_key(|(_, entry)| entry.seq);
        entries
            .into_iter()
            .map(|(&id, entry)| {
                let packet_id = PacketId::new(id).expect("in-flight ids are non-zero");
                match entry.stage {
                    InflightStage::AwaitingAck => {
                        Outgoing::Publish { item: entry.item.clone(), packet_id: Some(packet_id), dup: true }
                    }
                    InflightStage::AwaitingComp => Outgoing::PubRel(packet_id),
                }
            })
            .collect()
    }

    /// Moves up to `max` queued messages into `out` for the attached connection `conn_id`,
    /// assigning packet ids to QoS 1/2 ones while the in-flight window allows. Expired
    /// messages are dropped (MQTT-3.3.2-5), and so are messages `fits` rejects (larger than the
    /// client's Maximum Packet Size, MQTT-3.1.2-25). Returns how many messages were dropped.
    pub fn take_ready(
        &self,
        conn_id: u64,
        now: Instant,
        max: usize,
        fits: impl Fn(&Queued) -> bool,
        journal: Option<&Journal>,
        out: &mut Vec<Outgoing>,
    ) -> usize {
        let mut state = self.state.lock();
        let Some(window) = state.attached.as_ref().filter(|a| a.conn_id == conn_id).map(|a| a.window) else {
            return 0;
        };
        let low_water = state.low_water;
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
            if item.message.is_expired(now) || !fits(&item) {
                dropped += 1;
                if durable {
                    self.forget_delivery(journal, seq, &item.message);
                }
                continue;
            }
            taken += 1;
            if item.qos == QoS::AtMostOnce {
                if durable {
                    self.forget_delivery(journal, seq, &item.message);
                }
                out.push(Outgoing::Publish { item, packet_id: None, dup: false });
                continue;
            }
            let entry = Inflight { seq, item: item.clone(), stage: InflightStage::AwaitingAck, durable };
            state.inflight.insert(packet_id.get(), entry);
            out.push(Outgoing::Publish { item, packet_id: Some(packet_id), dup: maybe_sent });
        }
        state.dropped += dropped as u64;
        state.taken_total += (taken + dropped) as u64;
        if (state.congested || state.shedding) && taken + dropped > 0 && state.queue.len() <= low_water {
            state.congested = false;
            state.shedding = false;
            drop(state);
            self.room.notify_waiters();
        }
        dropped
    }

    /// Deletes a delivery's record and its reference to the message. Called with the session
    /// lock held, so it is ordered after the record's put.
    fn forget_delivery(&self, journal: Option<&Journal>, seq: u64, message: &Message) {
        if let Some(journal) = journal {
            let mut batch = Batch::new();
            batch.delete_delivery(&*self.client_id, seq);
            journal.release_reference(message, batch);
        }
    }

    /// Handles PUBACK (QoS 1) or PUBCOMP (QoS 2) for an outbound message.
    pub fn complete(&self, packet_id: PacketId, pubcomp: bool, journal: Option<&Journal>) -> AckOutcome {
        let mut state = self.state.lock();
        let expected = if pubcomp { InflightStage::AwaitingComp } else { InflightStage::AwaitingAck };
        match state.inflight.get(&packet_id.get()) {
            Some(entry) if entry.stage == expected && (pubcomp || entry.item.qos == QoS::AtLeastOnce) => {
                let entry = state.inflight.remove(&packet_id.get()).expect("just found");
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                state.ring_attached();
                AckOutcome::Completed
            }
            _ => AckOutcome::Unknown,
        }
    }

    /// Handles PUBREC for an outbound QoS 2 message. A PUBREC with an error reason ends the
    /// exchange (MQTT 5.0 section 4.3.3). For a persistent session the new stage is written
    /// before PUBREL may go out, so that after a restart PUBREL is resent, not the message.
    pub fn received(&self, packet_id: PacketId, reason: ReasonCode, journal: Option<&Journal>) -> AckOutcome {
        let mut state = self.state.lock();
        let Some(entry) = state.inflight.get_mut(&packet_id.get()) else { return AckOutcome::Unknown };
        if entry.item.qos != QoS::ExactlyOnce {
            return AckOutcome::Unknown;
        }
        if reason.is_error() {
            let entry = state.inflight.remove(&packet_id.get()).expect("just found");
            if entry.durable {
                self.forget_delivery(journal, entry.seq, &entry.item.message);
            }
            state.ring_attached();
            return AckOutcome::Completed;
        }
        if entry.stage == InflightStage::AwaitingComp {
            return AckOutcome::SendPubRel(None); // a repeated PUBREC: already recorded
        }
        entry.stage = InflightStage::AwaitingComp;
        let ticket = match journal.filter(|_| entry.durable) {
            Some(journal) => {
                let state = DeliveryState::Inflight { packet_id: packet_id.get(), awaiting_pubcomp: true };
                let mut batch = Batch::new();
                batch.put_delivery(&*self.client_id, entry.seq, delivery_record(&entry.item, state));
                Some(journal.submit(batch))
            }
            None => None,
        };
        AckOutcome::SendPubRel(ticket)
    }

    /// Records an inbound QoS 2 packet id. Returns false if it was already awaiting PUBREL, in
    /// which case the PUBLISH is a resend and must not be delivered again (MQTT-4.3.3-10); and
    /// the ticket that makes the id durable, which the PUBREC waits for.
    pub fn begin_inbound_qos2(&self, packet_id: PacketId, journal: Option<&Journal>) -> (bool, Option<Ticket>) {
        let mut state = self.state.lock();
        if !state.inbound_qos2.insert(packet_id.get()) {
            return (false, None);
        }
        let ticket = journal.filter(|_| state.persistent()).map(|journal| {
            let mut batch = Batch::new();
            batch.put_inbound_qos2(&*self.client_id, packet_id.get());
            journal.submit(batch)
        });
        (true, ticket)
    }

    /// Releases an inbound QoS 2 packet id on PUBREL; returns whether it was known, and the
    /// ticket the PUBCOMP waits for (a restart must not remember an id the client may reuse).
    pub fn release_inbound_qos2(&self, packet_id: PacketId, journal: Option<&Journal>) -> (bool, Option<Ticket>) {
        let mut state = self.state.lock();
        if !state.inbound_qos2.remove(&packet_id.get()) {
            return (false, None);
        }
        let ticket = journal.filter(|_| state.persistent()).map(|journal| {
            let mut batch = Batch::new();
            batch.delete_inbound_qos2(&*self.client_id, packet_id.get());
            journal.submit(batch)
        });
        (true, ticket)
    }

    /// Inbound QoS 2 ids awaiting PUBREL, for the Receive Maximum check (MQTT-3.3.4-8).
    pub fn inbound_qos2_pending(&self) -> usize {
        self.state.lock().inbound_qos2.len()
    }

    /// Takes every message this session holds for delivery (queued and in flight, not yet past
    /// PUBREC) that came through a shared subscription, for handing to another member when the
    /// session ends. Their records here are released.
    pub(crate) fn take_shared_undelivered(&self, journal: Option<&Journal>) -> Vec<Queued> {
        let mut state = self.state.lock();
        let mut taken: Vec<Queued> = Vec::new();
        let inflight = std::mem::take(&mut state.inflight);
        for (id, entry) in inflight {
            if entry.item.shared.is_some() && entry.stage == InflightStage::AwaitingAck {
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                taken.push(entry.item);
            } else {
                state.inflight.insert(id, entry);
            }
        }
        let queue = std::mem::take(&mut state.queue);
        for entry in queue {
            if entry.item.shared.is_some() {
                state.queued_bytes -= entry.item.message.payload.len();
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                taken.push(entry.item);
            } else {
                state.queue.push_back(entry);
            }
        }
        taken
    }

    /// Ends the session's durable life: deletes its records, and releases its deliveries'
    /// references to their messages. Called once, when the session ends.
    pub(crate) fn delete_records(&self, journal: &Journal) {
        let mut state = self.state.lock();
        if state.stored {
            let mut batch = Batch::new();
            batch.delete_session(&*self.client_id);
            journal.submit(batch);
            state.stored = false;
        }
        let queue = std::mem::take(&mut state.queue);
        let inflight = std::mem::take(&mut state.inflight);
        state.queued_bytes = 0;
        let durable = queue
            .into_iter()
            .filter(|e| e.durable)
            .map(|e| e.item.message)
            .chain(inflight.into_values().filter(|e| e.durable).map(|e| e.item.message));
        for message in durable {
            journal.release_reference(&message, Batch::new());
        }
    }

    /// The session's record for the store.
    pub(crate) fn record(&self, journal: &Journal) -> SessionRecord {
        let mut state = self.state.lock();
        state.stored = true;
        SessionRecord {
            session_id: self.id,
            protocol_level: state.protocol.level(),
            expiry_interval: state.expiry_interval,
            expires_at_unix_ms: state.expires_at.map(|at| journal.unix_ms(at)),
            delayed_will: state.delayed_will.as_ref().map(|(due, will)| WillRecord {
                due_unix_ms: journal.unix_ms(*due),
                topic: will.topic.to_string(),
                payload: will.payload.clone(),
                qos: will.qos.as_u8(),
                retain: will.retain,
                properties: will.shared_properties.clone(),
            }),
        }
    }

    /// Restores a delivery read from the store (recovery only, before any connection).
    pub(crate) fn restore_delivery(&self, seq: u64, item: Queued, state: DeliveryState) {
        let mut session = self.state.lock();
        session.next_seq = session.next_seq.max(seq + 1);
        match state {
            DeliveryState::Queued => {
                session.queued_bytes += item.message.payload.len();
                session.queue.push_back(Entry { seq, item, durable: true, maybe_sent: true });
            }
            DeliveryState::Inflight { packet_id, awaiting_pubcomp } => {
                let stage = if awaiting_pubcomp { InflightStage::AwaitingComp } else { InflightStage::AwaitingAck };
                session.inflight.insert(packet_id, Inflight { seq, item, stage, durable: true });
            }
        }
    }

    /// Restores an inbound QoS 2 packet id (recovery only).
    pub(crate) fn restore_inbound_qos2(&self, packet_id: u16) {
        self.state.lock().inbound_qos2.insert(packet_id);
    }
}

/// The store record of a delivery.
fn delivery_record(item: &Queued, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        message: MessageId(item.message.id),
        qos: item.qos.as_u8(),
        retain: item.retain,
        subscription_ids: item.subscription_ids.to_vec(),
        shared: item.shared.as_deref().map(str::to_owned),
        state,
    }
}

/// The v5 subscription options byte, as the store keeps it.
pub(crate) fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos.as_u8()
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

/// The subscription options of a stored options byte.
pub(crate) fn options_from_byte(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11).unwrap_or(QoS::AtMostOnce),
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling: match (byte >> 4) & 0b11 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

/// The packet id of the delivery with sequence number `seq`.
///
/// Ids follow the delivery order instead of being picked from a free list, so a session restored
/// from the store resends each in-flight message with its original packet id (MQTT-4.4.0-1)
/// without the id assignment having to be made durable before the PUBLISH is sent. An id is
/// reused only 65,535 deliveries later; if the message that held it then is still unacknowledged,
/// sending waits (see `take_ready`).
pub(crate) fn packet_id_for(seq: u64) -> PacketId {
    let id = (seq % u64::from(u16::MAX)) as u16 + 1;
    PacketId::new(id).expect("1..=65535")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use midge_codec::{Properties, Publish, TopicName};

    fn qos1(seq_hint: &str) -> Queued {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("t").unwrap(),
            packet_id: PacketId::new(1),
            properties: Properties::default(),
            payload: Bytes::copy_from_slice(seq_hint.as_bytes()),
        };
        Queued {
            message: Arc::new(Message::new(1, &publish, None, Instant::now())),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SubscriptionIds::new(),
            shared: None,
        }
    }

    fn ids(out: &[Outgoing]) -> Vec<u16> {
        out.iter()
            .map(|o| match o {
                Outgoing::Publish { packet_id, .. } => packet_id.unwrap().get(),
                Outgoing::PubRel(id) => id.get(),
            })
            .collect()
    }

    #[test]
    fn packet_ids_follow_delivery_order_and_wait_for_a_reused_id_to_be_released() {
        let config = BrokerConfig::default();
        let session = Arc::new(Session::new(1, "c".into(), ProtocolVersion::V311, 0));
        session.attach(7, Arc::new(Kick::default()), 100, ProtocolVersion::V311, 0);
        session.enqueue(qos1("a"), &config, None, true);
        session.enqueue(qos1("b"), &config, None, true);
        let mut out = Vec::new();
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out);
        assert_eq!(ids(&out), [1, 2]);
        session.complete(PacketId::new(2).unwrap(), false, None);

        // 65,535 deliveries later the id 1 comes round again while "a" is still unacknowledged.
        session.lock().next_seq = u64::from(u16::MAX);
        session.enqueue(qos1("c"), &config, None, true);
        out.clear();
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out);
        assert!(out.is_empty(), "id 1 is still in flight");
        session.complete(PacketId::new(1).unwrap(), false, None);
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out);
        assert_eq!(ids(&out), [1]);
    }
}
