//! The durability port: what the core asks a store to keep, and what it is given back at start.
//!
//! The core decides *what* must be durable and *when* an acknowledgement may go out (see
//! `journal`); a store behind [`Durability`] decides *how* to keep it. The server plugs the
//! embedded store (midge-store) in; the core's tests use a map in memory. Changes are plain
//! values in the core's words, so the core needs no storage library.
//!
//! A store must apply each [`Changes`] atomically and in submission order, and hand back a
//! [`Ticket`] that rises with every submission: whoever holds an acknowledgement waits until the
//! store says that ticket is committed (the server does the waiting; the core never blocks on it).

use bytes::Bytes;

/// A position in the store's commit order: every change submitted up to the one that returned
/// it is durable once the store's committed ticket reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticket(pub u64);

impl Ticket {
    /// A ticket no commit reaches: what a store that cannot take a submission returns, so that
    /// whatever waits on it fails instead of acknowledging.
    pub const NEVER: Ticket = Ticket(u64::MAX);
}

/// A store the core writes its durable state to.
pub trait Durability: Send + Sync + std::fmt::Debug {
    /// Submits `changes`, to be applied together after everything submitted before, and returns
    /// the ticket that makes them durable. It does not fail: a store that cannot take them
    /// reports why itself and returns [`Ticket::NEVER`]. It may block briefly when the store is
    /// far behind (that is the back-pressure a stalled disk puts on publishers).
    fn submit(&self, changes: Changes) -> Ticket;

    /// Opens a group: what the calling thread submits until [`Durability::end_group`] is made
    /// durable together, all or nothing (an inbound QoS 2 message's packet id with the
    /// message's deliveries: a crash between them would keep the id and lose the message, and
    /// the client's resend would be taken for a duplicate). Groups nest. Default: none.
    fn begin_group(&self) {}

    /// Closes the group the last [`Durability::begin_group`] opened.
    fn end_group(&self) {}
}

/// Reads a persistent session's queue back from the store, in seq order (decision 0006: an
/// offline session's queue lives in the store and its client reads it back in batches when it
/// returns). A source sees only what the store has committed: the caller waits for the ticket
/// of the session's last write first. Reads may block on the disk; the server calls them off
/// its async worker threads.
pub trait QueueSource: Send + Sync + std::fmt::Debug {
    /// Up to `limit` deliveries of `client_id` from `from_seq` on, each with its message
    /// (`None` if the message is gone: expired and reclaimed, or never stored).
    fn read_queue(&self, client_id: &str, from_seq: u64, limit: usize) -> Result<Vec<QueuedRecord>, QueueReadError>;
}

/// A delivery read back from the store, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// Its place in the session's delivery order.
    pub seq: u64,
    /// The delivery.
    pub delivery: StoredDelivery,
    /// Its message, if it is still stored.
    pub message: Option<StoredMessage>,
}

/// A session's queue could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading the queue of {client_id} from the store: {detail}")]
pub struct QueueReadError {
    /// The session's client identifier.
    pub client_id: String,
    /// What went wrong, as the store says it.
    pub detail: String,
}

/// One change to the durable state. Later changes to the same key win; [`Change::DeleteSession`]
/// also removes the session's subscriptions, deliveries, inbound QoS 2 ids and topic ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Stores a message (once, however many deliveries and retained topics refer to it).
    PutMessage {
        /// Its id (see [`crate::Message::id`]).
        id: u64,
        /// The message.
        record: StoredMessage,
    },
    /// Deletes a message: its last reference went.
    DeleteMessage(u64),
    /// Sets the retained message of a topic.
    PutRetained {
        /// The topic.
        topic: String,
        /// The message's id, stored with [`Change::PutMessage`].
        message: u64,
    },
    /// Clears the retained message of a topic.
    DeleteRetained(String),
    /// Stores a persistent session (or replaces it).
    PutSession {
        /// Its client identifier.
        client_id: String,
        /// The session.
        record: StoredSession,
    },
    /// Deletes a session with all its rows.
    DeleteSession(String),
    /// Stores a subscription of a session (or replaces it).
    PutSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter, including any `$share/{group}/` prefix.
        filter: String,
        /// Its options.
        record: StoredSubscription,
    },
    /// Deletes a subscription of a session.
    DeleteSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter.
        filter: String,
    },
    /// Stores a delivery of a session's queue (or replaces it, when it changes stage).
    PutDelivery {
        /// The session's client identifier.
        client_id: String,
        /// Its place in the session's delivery order.
        seq: u64,
        /// The delivery.
        record: StoredDelivery,
    },
    /// Deletes a delivery: acknowledged, expired or dropped.
    DeleteDelivery {
        /// The session's client identifier.
        client_id: String,
        /// Its place in the delivery order.
        seq: u64,
    },
    /// Records an inbound QoS 2 packet id whose PUBREL has not arrived.
    PutInboundQos2 {
        /// The session's client identifier.
        client_id: String,
        /// The packet id.
        packet_id: u16,
    },
    /// Forgets an inbound QoS 2 packet id (PUBREL received).
    DeleteInboundQos2 {
        /// The session's client identifier.
        client_id: String,
        /// The packet id.
        packet_id: u16,
    },
    /// Records a topic id of a session (see [`crate::ClientConnection::record_topic_id`]),
    /// deleted only with the session.
    PutTopicId {
        /// The session's client identifier.
        client_id: String,
        /// The id.
        topic_id: u16,
        /// The topic name it stands for.
        topic: String,
    },
}

/// Changes applied together, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes(Vec<Change>);

impl Changes {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `change`.
    pub fn push(&mut self, change: Change) -> &mut Self {
        self.0.push(change);
        self
    }

    /// Appends every change of `other`, after these.
    pub fn append(&mut self, other: &mut Changes) {
        self.0.append(&mut other.0);
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The changes, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Change> {
        self.0.iter()
    }
}

impl IntoIterator for Changes {
    type Item = Change;
    type IntoIter = std::vec::IntoIter<Change>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A message as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// The QoS it was published with (0, 1 or 2).
    pub qos: u8,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// The v5 properties every receiver gets, encoded (see [`crate::Message::shared_properties`]).
    pub shared_properties: Bytes,
    /// When it expires, in wall-clock milliseconds since the Unix epoch.
    pub expires_at_unix_ms: Option<u64>,
    /// The publishing session, for No Local.
    pub publisher_session: Option<u64>,
}

/// A persistent session as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The broker's number for this session (a new one after a clean start).
    pub session_id: u64,
    /// The protocol level its client last connected with (3, 4 or 5).
    pub protocol_level: u8,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When it expires if its client stays away; `None` while connected or never.
    pub expires_at_unix_ms: Option<u64>,
    /// A will whose delay had not run out.
    pub delayed_will: Option<StoredWill>,
}

/// A will waiting for its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// When to publish it, in wall-clock milliseconds.
    pub due_unix_ms: u64,
    /// The will topic.
    pub topic: String,
    /// The will payload.
    pub payload: Bytes,
    /// The will QoS.
    pub qos: u8,
    /// The will RETAIN flag.
    pub retain: bool,
    /// The will's properties every receiver gets, encoded.
    pub properties: Bytes,
    /// Its Message Expiry Interval in seconds, counted from when it is published.
    pub message_expiry_interval: Option<u32>,
}

/// A subscription as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The v5 subscription options byte (QoS, No Local, Retain As Published, Retain Handling).
    pub options: u8,
    /// The subscription identifier.
    pub identifier: Option<u32>,
}

/// A delivery to a persistent session as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The message's id.
    pub message: u64,
    /// The QoS it is delivered with.
    pub qos: u8,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// The matching subscriptions' identifiers.
    pub subscription_ids: Vec<u32>,
    /// The `$share/{group}/{filter}` it came through.
    pub shared: Option<String>,
    /// Where it stands.
    pub stage: DeliveryStage,
}

/// Where a stored delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStage {
    /// Not sent yet.
    Queued,
    /// Sent with this packet id; resent with DUP after a reconnect.
    Inflight {
        /// The packet id.
        packet_id: u16,
        /// QoS 2 past PUBREC: PUBREL, not the message, is resent.
        awaiting_pubcomp: bool,
    },
}

/// What a store held at start, for [`crate::Broker::restore`]. The store repairs it first:
/// every delivery and retained topic refers to a message that is present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Every stored message, by id.
    pub messages: Vec<(u64, StoredMessage)>,
    /// Retained topics and their message ids.
    pub retained: Vec<(String, u64)>,
    /// Persistent sessions.
    pub sessions: Vec<RecoveredSession>,
}

/// One persistent session and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// Its client identifier.
    pub client_id: String,
    /// The session.
    pub record: StoredSession,
    /// Its subscriptions by filter.
    pub subscriptions: Vec<(String, StoredSubscription)>,
    /// Its queued and in-flight deliveries, in delivery order (`seq`).
    pub deliveries: Vec<(u64, StoredDelivery)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound_qos2: Vec<u16>,
    /// Its topic ids and the topic names they stand for.
    pub topic_ids: Vec<(u16, String)>,
}
