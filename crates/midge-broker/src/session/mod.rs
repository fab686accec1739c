//! A session: the state the broker keeps for one client identifier, whether or not a network
//! connection is attached (MQTT 3.1.1 section 3.1.2.4, 5.0 section 4.1).
//!
//! It owns the client's subscriptions, its bounded queue of messages waiting to be sent, the
//! outbound messages in flight with their packet ids, and the inbound QoS 2 packet ids awaiting
//! PUBREL. Publishers enqueue under the session's short lock and never wait for the receiver;
//! the attached connection is woken through its [`Kick`](crate::Kick) and drains the queue
//! itself.
//!
//! A persistent session (expiry interval above 0) mirrors its deliveries and QoS 2 state into
//! the store through the journal; each change is submitted while the session lock is held, so
//! the store sees them in the order they happened (see `journal`).
//!
//! Lock order: a session lock is never held while taking the broker's session map, router or
//! retained locks (docs/locks.md). Under it, a message's durable-reference lock and the store
//! writer's queue may be taken.
//!
//! # Layout
//! - `state`: the session's data and the types its operations exchange.
//! - `queue`: enqueue within the bounds, take for sending, pacing.
//! - `inflight`: packet ids, acknowledgements, resends.
//! - `inbound`: inbound QoS 2 ids.
//! - `attachment`: attach and detach a connection.
//! - `records`: the store records, restore, and what ending the session deletes.
//! - `spill`: the queue continued in the store while the client is away, and read back;
//!   `ids`: the message ids it keeps, delta-encoded.
//! - `subscriptions`: the session's own list of its subscriptions.
//! - `topic_ids`: the topic ids a gateway gave the session's client.

mod attachment;
mod handover;
mod ids;
mod inbound;
mod inflight;
mod queue;
mod records;
mod spill;
mod state;
mod subscriptions;
mod topic_ids;

pub(crate) use handover::message_from_handed as handover_message;
pub(crate) use records::{options_byte, options_from_byte, queued_from_record};
pub(crate) use spill::ReadRequest;
pub use state::Session;
pub(crate) use state::{AckOutcome, EnqueueOutcome};
pub(crate) use subscriptions::StoredSubscription;
