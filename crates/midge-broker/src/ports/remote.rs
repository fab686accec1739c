//! The routing-target port: a subscription whose messages go somewhere other than a local
//! session, such as another node of a cluster that has a subscriber for the filter.
//!
//! A [`RemoteTarget`] is registered with [`crate::Broker::remote_target`] and subscribed like a
//! session ([`crate::Broker::subscribe_remote`]); the router then holds it beside local
//! sessions, at no cost to them (a subscription is as large as before, and local deliveries
//! take the same path). A message that matches is handed to it as a value, after routing, with
//! no lock held.

use crate::delivery::Queued;

/// Where messages that match a remote subscription go.
pub trait RemoteTarget: Send + Sync + std::fmt::Debug {
    /// Takes one message that matched its subscriptions, with the QoS, RETAIN flag and
    /// subscription identifiers of the subscription (overlapping ones merged). Must not block.
    fn forward(&self, delivery: Queued);
}
