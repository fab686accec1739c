//! The session's data: what it holds for its client and the types its operations exchange.
//! The operations live beside this file, one job each (`queue`, `inflight`, `inbound`,
//! `records`, `attachment`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::ProtocolVersion;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::ids::IdQueue;
use super::subscriptions::SubscriptionSet;
use crate::delivery::Queued;
use crate::hash::ProcessSeeded;
use crate::kick::Kick;
use crate::message::Message;
use crate::ports::durability::Ticket;

/// One session, shared by the broker's session map, the router and the attached connection.
#[derive(Debug)]
pub struct Session {
    /// Unique per session object (a new session for the same client id gets a new one): the
    /// router's key and the publisher id used for No Local.
    pub(super) id: u64,
    /// The client identifier.
    pub(super) client_id: Arc<str>,
    /// Everything mutable, behind a short lock.
    pub(super) state: Mutex<SessionState>,
    /// Wakes publishers paced by this session when its queue is back under its bound.
    pub(super) room: Notify,
    /// `state.congested && !state.shedding`, readable without the lock: a publisher's read
    /// batch defers QoS 0 deliveries without taking the session's lock, and this tells it to
    /// stop reading after the current packet (`route::read_batch`). Written only when pacing
    /// begins or ends, so reading it costs a load of a line the batch touches anyway.
    pub(super) over_bound: AtomicBool,
    /// `state.spill.is_some()`, readable without the lock: the attached connection checks it
    /// after every drain to know whether a batch is to be read back from the store.
    pub(super) spilled: AtomicBool,
    /// Set on a node of a cluster for a persistent session: its QoS 1/2 messages come through
    /// the fabric's durable path (one JetStream consumer per session, decision 0010), so the
    /// router leaves them out ([`crate::Broker::deliver_from_fabric_to`] brings them).
    pub(super) fabric_fed: AtomicBool,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InflightStage {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck,
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    AwaitingComp,
}

/// A queued delivery and its place in the session's delivery order.
#[derive(Debug)]
pub(super) struct Entry {
    /// Assigned at enqueue, increasing; fixes the packet id (see `inflight::packet_id_for`) and
    /// keys the delivery's record in the store.
    pub(super) seq: u64,
    pub(super) item: Queued,
    /// Whether a delivery record for it is in the store (to be deleted when it is done).
    pub(super) durable: bool,
    /// Restored from the store: it may have been sent before the restart, so it goes out with
    /// DUP set.
    pub(super) maybe_sent: bool,
}

/// An outbound QoS 1/2 message sent and not yet acknowledged.
#[derive(Debug)]
pub(super) struct Inflight {
    /// Send order, so resends keep the original order (MQTT-4.6.0-1).
    pub(super) seq: u64,
    pub(super) item: Queued,
    pub(super) stage: InflightStage,
    pub(super) durable: bool,
}

/// The connection a session is attached to.
#[derive(Debug)]
pub(super) struct Attachment {
    pub(super) conn_id: u64,
    pub(super) kick: Arc<Kick>,
    /// Outbound window: min(client's Receive Maximum, max_inflight_messages).
    pub(super) window: usize,
}

/// What offering several messages to a session did ([`Session::enqueue_many`]).
#[derive(Debug, Default)]
pub(crate) struct ManyOutcome {
    /// Messages dropped because the queue was full.
    pub(crate) dropped: usize,
    /// Whether the queue is over its bound: the publisher is to be paced.
    pub(crate) congested: bool,
    /// The connection to wake, when the queue was empty before (its subscriber sat idle).
    pub(crate) wake: Option<Arc<Kick>>,
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnqueueOutcome {
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
pub(crate) enum AckOutcome {
    /// The packet id was in flight at the stage the ack belongs to; the slot is freed. With
    /// the id of the message it carried (the fabric's durable path acknowledges it).
    Completed(u64),
    /// PUBREC accepted: send PUBREL once the ticket (if any) is durable. With the id of the
    /// message it carried the first time (not for a repeated PUBREC).
    SendPubRel(Option<Ticket>, Option<u64>),
    /// Unknown packet id (MQTT 5 answers PUBREL with 0x92 in that case).
    Unknown,
}

/// The part of a session's queue that is in the store: its deliveries are those of the session
/// from `first_seq` on, in seq order, one per id here.
#[derive(Debug)]
pub(crate) struct Spill {
    /// The message id of each delivery in the store, in delivery order.
    pub(super) ids: IdQueue,
    /// Where the first of them is, or after: reads start here.
    pub(super) first_seq: u64,
    /// Payload bytes of the deliveries in the store (for `max_offline_bytes`).
    pub(super) bytes: u64,
    /// A ticket at or after the write of every delivery here: a read waits for it, since the
    /// store's reader sees committed data only.
    pub(super) ticket: Ticket,
    /// Deliveries below this seq may have been sent to the client before (restored after a
    /// restart): they go out with DUP set.
    pub(super) sent_below: u64,
    /// The connection that is reading a batch back, if one is: one read at a time.
    pub(super) reading: Option<u64>,
    /// Messages dropped at the offline bound since the session spilled: the first is logged,
    /// the total when the client has read its queue back.
    pub(super) dropped: u64,
}

/// The topic ids a gateway gave a session's client and their topic names, ascending by id
/// (`topic_ids`).
pub(crate) type TopicIds = Vec<(u16, Arc<str>)>;

/// Everything mutable about a session.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub(super) attached: Option<Attachment>,
    /// Version of the last connection, for encoding resends.
    pub(crate) protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds: 0 ends the session with its connection, u32::MAX
    /// never expires (3.1.1 persistent sessions).
    pub(crate) expiry_interval: u32,
    /// When a detached session expires.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) subscriptions: SubscriptionSet,
    pub(super) queue: VecDeque<Entry>,
    pub(super) queued_bytes: usize,
    pub(super) inflight: BTreeMap<u16, Inflight>,
    /// Sequence number of the next enqueued delivery.
    pub(crate) next_seq: u64,
    /// Inbound QoS 2 packet ids received and PUBREC'd but not yet released: a resent PUBLISH
    /// with one of these ids is not delivered again (MQTT-4.3.3-10).
    pub(super) inbound_qos2: HashSet<u16, ProcessSeeded>,
    /// A will whose delay has not run out, as the message it becomes, and when it is due
    /// (MQTT-3.1.3-9). Boxed: most sessions never have one.
    pub(crate) delayed_will: Option<Box<(Instant, Arc<Message>)>>,
    /// Set when the session has ended (expired, or replaced by a clean start): a will that
    /// arrives afterwards from its last connection is published at once, not parked here.
    pub(crate) ended: bool,
    /// Set with `ended` when the session went whole to another node of a cluster
    /// ([`crate::Broker::hand_over`]): its client resumed it there, so its last connection here
    /// closes as one taken over by a resume (a delayed will cancelled, MQTT-3.1.3-9) and leaves
    /// nothing of it in this node's store.
    pub(crate) handed_over: bool,
    /// Messages this session dropped because a bound was hit (wrapping: for logs).
    pub(super) dropped: u32,
    /// The queue's continuation in the store, while the session is offline or reading its
    /// offline queue back (decision 0006). Boxed: most sessions never have one.
    pub(super) spill: Option<Box<Spill>>,
    /// Whether the session's record was ever written to the store, so that ending it needs a
    /// delete (a clean session that never was persistent costs the store nothing).
    pub(crate) stored: bool,
    /// Set when publishers are being paced for this session; cleared when the queue drains to
    /// the low water mark.
    pub(super) congested: bool,
    /// Where paced publishers are let go again ([`crate::limits::Limits::low_water`], set when
    /// pacing begins). 32 bits (saturating) keep a session within its allocator size class
    /// beside `over_bound` (320 bytes under jemalloc; 8 more cost 64).
    pub(super) low_water: u32,
    /// Messages taken from the queue so far: a paced publisher's timeout counts only while
    /// this does not move (the subscriber is stuck, not merely busy). Wrapping: only whether it
    /// moved matters, and 32 bits keep the session in its size class.
    pub(super) taken_total: u32,
    /// The slow-consumer policy applied: messages beyond the bound are dropped until the queue
    /// has emptied (the subscriber caught up).
    pub(super) shedding: bool,
    /// Its client sleeps (an MQTT-SN sleeping client): as while shedding, messages beyond the
    /// bound are dropped and nobody is paced for it, until it is awake again.
    pub(super) asleep: bool,
    /// The topic ids a gateway gave its client (`topic_ids`), ascending by id. Boxed: only
    /// MQTT-SN clients have any.
    pub(super) topic_ids: Option<Box<TopicIds>>,
}

impl SessionState {
    /// Messages queued in memory, not in flight.
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Their payload bytes.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages in flight.
    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Deliveries kept in the store while the session is spilled.
    pub(crate) fn spilled_len(&self) -> usize {
        self.spill.as_ref().map_or(0, |spill| spill.ids.len())
    }

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
    pub(super) fn ring_attached(&self) {
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
                handed_over: false,
                dropped: 0,
                spill: None,
                stored: false,
                congested: false,
                low_water: 0,
                taken_total: 0,
                shedding: false,
                asleep: false,
                topic_ids: None,
            }),
            room: Notify::new(),
            over_bound: AtomicBool::new(false),
            spilled: AtomicBool::new(false),
            fabric_fed: AtomicBool::new(false),
        }
    }

    /// Whether this session's QoS 1/2 messages come through the fabric's durable path.
    pub fn is_fabric_fed(&self) -> bool {
        self.fabric_fed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_fabric_fed(&self, fed: bool) {
        self.fabric_fed.store(fed, std::sync::atomic::Ordering::Relaxed);
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
}
#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    /// Every session costs its allocation: `Arc<Session>` (the two counts and the session) stays
    /// within jemalloc's 320-byte size class; the next class is 384 (docs/decisions/0004).
    #[test]
    fn a_session_stays_within_its_allocator_size_class() {
        assert!(16 + std::mem::size_of::<super::Session>() <= 320, "{} bytes", std::mem::size_of::<super::Session>());
    }
}
