//! From a matched subscription to a session's queue: what the router stores per subscription,
//! shared-subscription groups, merging overlapping subscriptions, and the read batch that defers
//! QoS 0 deliveries and wake-ups to the end of a publisher's read.

pub(crate) mod overlap;
pub(crate) mod read_batch;
pub(crate) mod shared;
pub(crate) mod subscriber;
