//! The Midge broker core, without I/O: sessions, the subscription index, retained messages,
//! wills, QoS state and limits. The server feeds it decoded packets and a clock value; it
//! answers with bytes to write and wakes the sessions that have messages to send. What it does
//! not do itself (keep state on disk, decide who may connect and what they may do, carry
//! messages to clients that do not speak MQTT) it asks of [`ports`].
//!
//! # The public face
//! - [`Broker`]: the shared state; [`Broker::check_connect`] then
//!   [`ClientConnection::accept`] connect a client; [`Broker::end_batch`] ends a read batch;
//!   [`Broker::tick`] and [`Broker::sweep_keep_alives`] are the periodic work.
//! - [`ClientConnection`]: one connection's protocol state; [`ReadBatch`], the effects one read
//!   of its packets defers, and the [`Congestion`] it ran into (whom its publisher is paced
//!   for); [`Kick`], how it is woken or told to close.
//! - [`Message`], [`Queued`], [`Outgoing`]: what a sink is given; [`Session`], what pacing waits on.
//! - [`Limits`]: every capability and bound; [`Stats`]: the counters.
//! - [`ports`]: durability, authentication, authorization, egress.
//! - [`filters`]: topic filters against topic names and each other, for rules that name filters.
//! - [`Router`]: the subscription index, public for its benchmark.
//!
//! # Layout (private modules)
//! - `broker/`: connect, publish, subscribe, end, restore, and the shared state.
//! - `connection/`: one connection: packets, publish, egress, close.
//! - `session/`: queue, in-flight window, inbound QoS 2, attachment, records, subscriptions.
//! - `route/`: the subscriber a subscription holds, shared groups, overlap, the read batch.
//! - `router/`: the subscription index; `retained/`: retained messages.
//! - `journal`: what is written to the store; `keep_alive`: every connection's deadline;
//!   `kick`, `doorbell`: waking a connection; `delivery`: a message on its way to a session;
//!   `message`, `limits`, `stats`, `hash`.
//!
//! Modules depend one way: `connection` → `broker` → `route` → `session` → `delivery` →
//! `message`, with `ports`, `limits`, `journal`, `kick` and `stats` below them all.
#![deny(missing_docs)]

mod broker;
mod connection;
mod delivery;
mod doorbell;
pub mod filters;
pub mod handover;
mod hash;
mod journal;
mod keep_alive;
mod kick;
mod limits;
mod message;
pub mod ports;
mod retained;
mod route;
mod router;
mod session;
mod stats;

pub use broker::{
    Accounting, Broker, ConnectRequest, FabricDelivery, Refusal, Restored, SessionView, SubscriptionView,
    QUEUE_LENGTH_BUCKETS,
};
pub use connection::{
    ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Flow, ReadBack, ReadBackBatch, Violation,
};
pub use delivery::{Outgoing, Queued, SubscriptionIds};
pub use kick::{Kick, Signal};
pub use limits::{
    LimitError, Limits, SlowConsumerPolicy, ACCESS_CACHE_ANSWERS, DEFERRED_DELIVERIES, DRAIN_BATCH,
    KEEP_ALIVE_FILE_AHEAD, KEEP_ALIVE_SWEEP, PROTOCOL_MAX_PACKET_SIZE, READ_BACK_BATCH, SHARED_HAND_ONS,
};
pub use message::Message;
pub use route::read_batch::{Congestion, ReadBatch};
pub use route::subscriber::Remote;
pub use router::{Match, Router};
pub use session::Session;
pub use stats::{
    Counter, DropCounters, DropReason, DropSnapshot, Gauge, LimitCounter, LimitCounters, LimitReport, LimitSnapshot,
    QosCounter, Stats, StatsSnapshot, LIMIT_LOG_INTERVAL,
};
