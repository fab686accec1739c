//! The Midge broker core, without I/O: sessions, the subscription index, retained messages,
//! wills, QoS state and limits. The server feeds it decoded packets and a clock value; it
//! answers with bytes to write and wakes the sessions that have messages to send.
//!
//! # Layout
//! - [`config`]: every capability and bound, with defaults and reasons (`[mqtt]` in the config).
//! - [`broker`]: shared state and cross-session operations (connect, route, subscribe, expiry).
//! - [`protocol`]: one connection's protocol state machine.
//! - [`session`]: per-client session state: queue, in-flight window, packet ids;
//!   [`subscription_set`], the session's own list of its subscriptions.
//! - [`message`]: a message as the broker shares it among receivers.
//! - [`journal`]: what is written to the store, and what waits for it.
//! - [`keep_alive`]: every connection's keep alive deadline, swept together.
//! - [`router`]: the subscription index.
//! - [`retained`]: retained messages and their expiry; [`retained_tree`] finds them by filter.
//! - [`stats`], the counters the broker keeps; [`hash`], the seeded hasher of client-keyed maps.
//! - [`wake_batch`]: one wake-up per subscriber per read batch; [`doorbell`], the wake-up itself;
//!   [`delivery_batch`], one lock per subscriber per read batch of QoS 0 messages.
#![deny(missing_docs)]

pub mod broker;
pub mod config;
pub mod delivery_batch;
pub mod doorbell;
pub mod hash;
pub mod journal;
pub mod keep_alive;
pub mod message;
pub mod protocol;
pub mod retained;
pub mod retained_tree;
pub mod router;
pub mod session;
pub mod stats;
pub mod subscription_set;
pub mod wake_batch;

pub use broker::{Broker, ConnectContext, ConnectOutcome, Published, Restored};
pub use config::{BrokerConfig, SlowConsumerPolicy};
pub use protocol::{ClientConnection, CloseKind, Flow, Violation};
