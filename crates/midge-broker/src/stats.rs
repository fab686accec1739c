//! Counters the broker keeps, read by logs, `$SYS` and metrics.
//!
//! Counters touched per message are sharded: one shared atomic incremented by every worker
//! thread for every delivery would bounce its cache line between cores on the hot path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter: more than the cores a broker is likely to run on, so threads rarely share.
const SHARDS: usize = 16;

/// A monotonic counter spread over cache-line-sized shards; each thread adds to its own.
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.shards[shard_index()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total so far (not a snapshot across shards: fine for reporting).
    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's shard, assigned round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        index.get()
    })
}

/// The broker's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// CONNECTs accepted.
    pub connections_accepted: Counter,
    /// PUBLISHes (and wills) received for routing.
    pub messages_received: Counter,
    /// PUBLISHes written to clients.
    pub messages_sent: Counter,
    /// Messages dropped because a session queue was full, a message did not fit a client's
    /// Maximum Packet Size, or it expired while queued.
    pub messages_dropped: Counter,
    /// Wills published.
    pub wills_published: Counter,
}

/// The counters' values at one moment (each read on its own: fine for reporting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// CONNECTs accepted.
    pub connections_accepted: u64,
    /// PUBLISHes (and wills) received for routing.
    pub messages_received: u64,
    /// PUBLISHes written to clients.
    pub messages_sent: u64,
    /// Messages dropped at a bound (see [`Stats::messages_dropped`]).
    pub messages_dropped: u64,
    /// Wills published.
    pub wills_published: u64,
}

impl Stats {
    /// Every counter's value, for logs, `$SYS` and metrics.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_accepted: self.connections_accepted.get(),
            messages_received: self.messages_received.get(),
            messages_sent: self.messages_sent.get(),
            messages_dropped: self.messages_dropped.get(),
            wills_published: self.wills_published.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counter = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || (0..1000).for_each(|_| counter.add(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 8000);
    }
}
