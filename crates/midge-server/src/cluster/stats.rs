//! A node's cluster counters, for `$SYS`, the metrics and the HTTP API.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the node started.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages published here and sent to the other nodes.
    pub sent: AtomicU64,
    /// Messages from other nodes delivered here.
    pub received: AtomicU64,
    /// Messages not sent because the outbound queue was full (the NATS link was not keeping up).
    pub dropped_outbound: AtomicU64,
    /// Retained updates not sent because their queue was full.
    pub dropped_retained: AtomicU64,
    /// Messages from other nodes this node could not read (another format version, or a
    /// subject that is no topic's).
    pub unreadable: AtomicU64,
    /// Sessions this node took over from another node.
    pub takeovers: AtomicU64,
    /// Will updates not sent to the bucket because their queue was full.
    pub dropped_wills: AtomicU64,
    /// Wills of dead nodes' clients this node published.
    pub orphan_wills: AtomicU64,
    /// Times this node fenced itself (dropped its clients) for want of its lease.
    pub fenced: AtomicU64,
}

/// A copy of [`ClusterStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterCounts {
    /// See [`ClusterStats::sent`].
    pub sent: u64,
    /// See [`ClusterStats::received`].
    pub received: u64,
    /// See [`ClusterStats::dropped_outbound`].
    pub dropped_outbound: u64,
    /// See [`ClusterStats::dropped_retained`].
    pub dropped_retained: u64,
    /// See [`ClusterStats::unreadable`].
    pub unreadable: u64,
    /// See [`ClusterStats::takeovers`].
    pub takeovers: u64,
    /// See [`ClusterStats::dropped_wills`].
    pub dropped_wills: u64,
    /// See [`ClusterStats::orphan_wills`].
    pub orphan_wills: u64,
    /// See [`ClusterStats::fenced`].
    pub fenced: u64,
}

impl ClusterStats {
    /// The counts now.
    pub fn snapshot(&self) -> ClusterCounts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClusterCounts {
            sent: get(&self.sent),
            received: get(&self.received),
            dropped_outbound: get(&self.dropped_outbound),
            dropped_retained: get(&self.dropped_retained),
            unreadable: get(&self.unreadable),
            takeovers: get(&self.takeovers),
            dropped_wills: get(&self.dropped_wills),
            orphan_wills: get(&self.orphan_wills),
            fenced: get(&self.fenced),
        }
    }
}
