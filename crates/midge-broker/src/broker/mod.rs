//! The broker: shared state and the operations that cross sessions.
//!
//! # Layout
//! - `state`: the shared state (session map, router, retained store, store journal, counters),
//!   the periodic sweep, keep alives and shutdown.
//! - `connect`: the connect pipeline, checked then admitted around authentication.
//! - `publish`: the retained store, routing, enqueueing, and ending a read batch.
//! - `subscribe`: subscribe and unsubscribe.
//! - `end`: ending a session.
//! - `deadlines`: detached sessions' expiry and delayed wills, indexed by time.
//! - `remote`: routing targets that are not local sessions.
//! - `handover`: sessions moving between the nodes of a cluster.
//! - `fabric`: a cluster's other nodes (messages and retained values from them, interest to them).
//! - `restore`: recovery from the store.
//! - `accounting`: what the broker holds, counted (docs/limits.md).
//! - `events`: clients' connects and disconnects published on `$SYS`, when switched on.
//! - `inspect`: what it holds, as an operator sees it (sessions, retained messages), and kicking
//!   a client.

mod accounting;
mod connect;
mod deadlines;
mod end;
mod events;
mod fabric;
mod handover;
mod inspect;
mod publish;
mod remote;
mod restore;
mod state;
mod subscribe;

pub(crate) use crate::message::{is_reserved_for_the_broker, is_sys_topic};
pub use accounting::{Accounting, QUEUE_LENGTH_BUCKETS};
pub(crate) use connect::Admitted;
pub use connect::{ConnectRequest, Refusal};
pub(crate) use events::ClientEvent;
pub use fabric::FabricDelivery;
pub use inspect::{SessionView, SubscriptionView};
pub use restore::Restored;
pub use state::Broker;
