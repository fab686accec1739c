//! Counters the broker keeps, read by logs, `$SYS` and metrics.

use std::sync::atomic::AtomicU64;

/// Monotonic counters; relaxed atomics, since they are read only for reporting.
#[derive(Debug, Default)]
pub struct Stats {
    /// CONNECTs accepted.
    pub connections_accepted: AtomicU64,
    /// PUBLISHes (and wills) received for routing.
    pub messages_received: AtomicU64,
    /// PUBLISHes written to clients.
    pub messages_sent: AtomicU64,
    /// Messages dropped because a session queue was full or a message did not fit a client's
    /// Maximum Packet Size, or expired while queued.
    pub messages_dropped: AtomicU64,
    /// Wills published.
    pub wills_published: AtomicU64,
}
