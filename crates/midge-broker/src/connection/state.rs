//! One client connection's protocol state, and what its operations tell the server.
//!
//! It owns what belongs to a network connection rather than a session (MQTT 5.0 section
//! 3.3.2.3.4: topic aliases live only as long as the connection), the will, the client's limits
//! (Maximum Packet Size, Topic Alias Maximum), and its cached authorization answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ProtocolVersion, ReasonCode, TopicName, Will};

use crate::broker::Broker;
use crate::hash::ProcessSeeded;
use crate::kick::Kick;
use crate::ports::access::{AccessCache, Action};
use crate::ports::durability::Ticket;
use crate::session::Session;

/// A v5 connection's topic aliases (MQTT 5.0 section 3.3.2.3.4), both directions.
#[derive(Debug, Default)]
pub(super) struct TopicAliases {
    /// Set by the client: index = alias - 1, grown as aliases are used.
    pub(super) inbound: Vec<Option<TopicName>>,
    /// Set by the broker towards the client.
    pub(super) outbound: HashMap<TopicName, u16, ProcessSeeded>,
}

/// A protocol violation by the client: the connection is closed, after a v5 DISCONNECT with
/// `reason` (MQTT-4.13.1-1), and the will is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} ({reason})")]
pub struct Violation {
    /// The reason code sent in DISCONNECT.
    pub reason: ReasonCode,
    /// What the client did, for the log.
    pub detail: &'static str,
}

pub(super) fn violation(reason: ReasonCode, detail: &'static str) -> Violation {
    Violation { reason, detail }
}

/// What the server should do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The client sent DISCONNECT: close the connection; `with_will` for v5 reason 0x04.
    Disconnect {
        /// Whether the client asked for its will to be published (0x04).
        with_will: bool,
    },
}

/// How a connection ended, which decides whether the will is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// DISCONNECT with reason 0x00: the will is discarded (MQTT-3.1.2-10, MQTT-3.14.4-3).
    Normal,
    /// v5 DISCONNECT with 0x04: the will is published.
    NormalWithWill,
    /// Network error, keep alive timeout, protocol violation: the will is published
    /// (MQTT-3.1.2-8).
    Abnormal,
    /// Another connection took the session over (MQTT-3.1.4-3).
    TakenOver,
    /// The server is shutting down: the will is not published, since every client is going.
    ServerShutdown,
}

/// The protocol state of one connected client.
#[derive(Debug)]
pub struct ClientConnection {
    pub(super) broker: Arc<Broker>,
    pub(super) session: Arc<Session>,
    pub(super) conn_id: u64,
    pub(super) kick: Arc<Kick>,
    pub(super) version: ProtocolVersion,
    /// Keep alive in force, in seconds (0: none).
    pub(super) keep_alive: u16,
    /// Session Expiry Interval granted at CONNECT; a DISCONNECT may not raise it from 0
    /// (MQTT-3.14.2-2).
    pub(super) connect_expiry: u32,
    /// Boxed: most clients have none, and a `Will` carries a whole `Properties`.
    pub(super) will: Option<Box<Will>>,
    /// v5 topic aliases, allocated on first use: most clients use none, and an idle
    /// connection should not hold tables for them.
    pub(super) aliases: Option<Box<TopicAliases>>,
    /// The Topic Alias Maximum granted to the client (0 for 3.1.1).
    pub(super) alias_slots: u16,
    /// The client's Topic Alias Maximum (0: the broker sends none).
    pub(super) client_alias_maximum: u16,
    /// The client's Maximum Packet Size.
    pub(super) client_max_packet_size: u32,
    /// Cached authorization answers; `None` where everything is allowed (nothing is asked).
    pub(super) access: Option<Box<AccessCache>>,
    /// The store ticket that the responses written for the current packet must wait for.
    pub(super) hold: Option<Ticket>,
    /// A mosquitto-style bridge (the protocol level's top bit, `try_private`): its
    /// subscriptions get No Local and Retain As Published, so that what it publishes here is
    /// not sent back to it (a loop between two brokers) and retained messages cross as such.
    pub(super) bridge: bool,
    /// The inbound QoS 2 flows the client may have at once (v5, MQTT-3.3.4-8): the broker's
    /// `receive_maximum`, or what the server sets for a client of its own
    /// ([`ClientConnection::set_receive_maximum`]).
    pub(super) receive_maximum: u16,
}

impl ClientConnection {
    /// Takes the ticket the bytes written by the last [`handle`](Self::handle) must wait for
    /// before they are sent (an acknowledgement is a promise that the message is durable).
    pub fn take_hold(&mut self) -> Option<Ticket> {
        self.hold.take()
    }

    pub(super) fn hold_for(&mut self, ticket: Option<Ticket>) {
        self.hold = self.hold.max(ticket);
    }

    /// Whether the client may do `action` on `topic` (always, without an authorizer).
    pub(super) fn permits(&mut self, action: Action, topic: &str) -> bool {
        self.access.as_mut().is_none_or(|access| access.allows(action, topic))
    }

    /// Holds the client to `receive_maximum` inbound QoS 2 flows instead of the broker's
    /// `receive_maximum`: for the server's own clients that relay a peer whose flow is bounded
    /// elsewhere. A bridge hands the core what its remote sends, and a 3.1.1 remote has no
    /// Receive Maximum: it may have any number of QoS 2 messages awaiting PUBREL.
    pub fn set_receive_maximum(&mut self, receive_maximum: u16) {
        self.receive_maximum = receive_maximum.max(1);
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client identifier.
    pub fn client_id(&self) -> &Arc<str> {
        self.session.client_id()
    }

    /// The keep alive in force, in seconds; 0 means none.
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// Whether this connection's session gets its QoS 1/2 messages through the fabric's
    /// durable path (a persistent session on a node of a cluster).
    pub fn is_fabric_fed(&self) -> bool {
        self.session.is_fabric_fed()
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Records that the client was heard from at `now`, for its keep alive (MQTT-3.1.2-24):
    /// once per read batch that held a complete packet is enough.
    pub fn heard(&self, now: Instant) {
        self.broker.heard(&self.kick, now);
    }

    /// Stops the keep alive while the server chooses not to read the client (it is paced for
    /// a full subscriber, its inbound rate or the store): its PINGREQs wait unread in the
    /// socket, and being silent is then the broker's doing, not the client's. [`heard`](Self::heard)
    /// when reading resumes starts it again.
    pub fn pause_keep_alive(&self) {
        self.kick.pause_keep_alive();
    }

    /// Marks the client as asleep (`true`) or awake: an MQTT-SN client that sleeps (MQTT-SN 1.2
    /// section 6.14) stays connected while it takes nothing. Asleep, its session keeps its
    /// messages within its queue's bound and drops (and counts) new ones beyond it, and no
    /// publisher is paced for it. Its keep alive is the caller's to stop
    /// ([`pause_keep_alive`](Self::pause_keep_alive)).
    pub fn set_asleep(&self, asleep: bool) {
        self.session.set_asleep(asleep);
    }

    /// The topic ids recorded for the session's client ([`record_topic_id`](Self::record_topic_id)),
    /// ascending by id: none for a new session; a resumed one's, restored from the store after
    /// a restart.
    pub fn topic_ids(&self) -> Vec<(u16, Arc<str>)> {
        self.session.topic_ids()
    }

    /// Records that `topic_id` stands for `topic` for the session's client, for as long as the
    /// session lives: an MQTT-SN gateway's normal topic ids (MQTT-SN 1.2 section 6.5), which the
    /// core keeps and never reads. A persistent session writes it to the store: the returned
    /// ticket is the one whatever tells the client the id (REGACK, SUBACK, REGISTER) waits for.
    pub fn record_topic_id(&self, topic_id: u16, topic: Arc<str>) -> Option<Ticket> {
        self.session.record_topic_id(self.conn_id, topic_id, topic, self.broker.journal())
    }

    /// Whether publishers are being paced for this connection's session (its queue went over
    /// its bound and has not drained back): a relay that cannot deliver onwards should let the
    /// session go offline (its queue then continues in the store) rather than hold them up.
    pub fn holds_up_publishers(&self) -> bool {
        !self.session.has_room()
    }

    /// The kick handle, whose [`Kick::poll_signal`] says that the session has work or that the
    /// connection must close.
    pub fn kick(&self) -> &Arc<Kick> {
        &self.kick
    }
}
