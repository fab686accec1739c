//! Counters the broker keeps, read by logs, `$SYS` and metrics.
//!
//! Counters touched per message are sharded: one shared atomic incremented by every worker
//! thread for every delivery would bounce its cache line between cores on the hot path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    pub fn add(&self, n: u64) {
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

/// How often at most a limit's refusals are logged: the first one at once, then one line per
/// interval with how many there were since. A client hitting a limit in a tight loop must not
/// be able to flood the log, and a line a second still shows that it happens.
pub const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A named limit's refusals: counted, and reported for the log at most once per
/// [`LIMIT_LOG_INTERVAL`], lock-free, so that the connections and workers hitting it at once
/// neither contend nor each log.
#[derive(Debug, Default)]
pub struct LimitCounter {
    total: AtomicU64,
    /// Refusals not yet reported.
    unreported: AtomicU64,
    /// When the last report was made: milliseconds since `epoch` plus one (0: never).
    last_report: AtomicU64,
    /// The instant reports are timed from: the first refusal's.
    epoch: OnceLock<Instant>,
}

/// What a limit's refusals were since its last report, to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReport {
    /// Refusals since the last report, this one included.
    pub since_last: u64,
    /// Refusals since the start.
    pub total: u64,
}

impl LimitCounter {
    /// Counts one refusal at `now`. Returns what to log when a report is due (the first refusal,
    /// then at most one per [`LIMIT_LOG_INTERVAL`]), `None` otherwise.
    pub fn hit(&self, now: Instant) -> Option<LimitReport> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let epoch = *self.epoch.get_or_init(|| now);
        let now_ms = now.saturating_duration_since(epoch).as_millis() as u64 + 1;
        let last = self.last_report.load(Ordering::Relaxed);
        let interval = LIMIT_LOG_INTERVAL.as_millis() as u64;
        if last != 0 && now_ms.saturating_sub(last) < interval {
            return None;
        }
        // One of the threads that see the report due makes it.
        self.last_report.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).ok()?;
        let since_last = self.unreported.swap(0, Ordering::Relaxed).max(1);
        Some(LimitReport { since_last, total })
    }

    /// Refusals since the start.
    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
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
    /// The named limits' refusals (docs/limits.md).
    pub limits: LimitCounters,
}

/// Each named limit's refusals (docs/limits.md): one counter per limit, so what stopped a
/// client can be told apart in logs and metrics.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Connections closed at accept because the broker had `[limits] max_connections` open.
    pub max_connections: LimitCounter,
    /// Connections closed at accept because their listener had its `max_connections` open.
    pub listener_max_connections: LimitCounter,
    /// Connections closed at accept because their source address opened more than
    /// `[limits] max_connection_rate` a second.
    pub max_connection_rate: LimitCounter,
    /// CONNECTs refused because they would have created a session beyond `max_sessions`.
    pub max_sessions: LimitCounter,
    /// Times a client was paced (not read) for going over `max_inbound_messages_per_second` or
    /// `max_inbound_bytes_per_second`.
    pub inbound_rate: LimitCounter,
    /// Subscriptions refused beyond `max_subscriptions_per_client`.
    pub max_subscriptions_per_client: LimitCounter,
    /// Retained messages refused beyond `max_retained_messages` or `max_retained_bytes`.
    pub max_retained: LimitCounter,
    /// Topics and filters refused for `max_topic_levels` or `max_topic_length`.
    pub topic_limits: LimitCounter,
    /// Connections closed for not completing CONNECT (and the TLS handshake) in
    /// `connect_timeout_ms`.
    pub connect_timeout: LimitCounter,
    /// Packets refused for being larger than `max_packet_size`.
    pub max_packet_size: LimitCounter,
}

/// The named limits' refusals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each is the LimitCounters field of the same name
pub struct LimitSnapshot {
    pub max_connections: u64,
    pub listener_max_connections: u64,
    pub max_connection_rate: u64,
    pub max_sessions: u64,
    pub inbound_rate: u64,
    pub max_subscriptions_per_client: u64,
    pub max_retained: u64,
    pub topic_limits: u64,
    pub connect_timeout: u64,
    pub max_packet_size: u64,
}

impl LimitCounters {
    /// Every counter's value.
    pub fn snapshot(&self) -> LimitSnapshot {
        LimitSnapshot {
            max_connections: self.max_connections.get(),
            listener_max_connections: self.listener_max_connections.get(),
            max_connection_rate: self.max_connection_rate.get(),
            max_sessions: self.max_sessions.get(),
            inbound_rate: self.inbound_rate.get(),
            max_subscriptions_per_client: self.max_subscriptions_per_client.get(),
            max_retained: self.max_retained.get(),
            topic_limits: self.topic_limits.get(),
            connect_timeout: self.connect_timeout.get(),
            max_packet_size: self.max_packet_size.get(),
        }
    }
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
    /// The named limits' refusals.
    pub limits: LimitSnapshot,
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
            limits: self.limits.snapshot(),
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

    #[test]
    fn a_limit_is_reported_at_once_then_at_most_once_an_interval_with_what_was_not() {
        let counter = LimitCounter::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(counter.hit(at(0)), Some(LimitReport { since_last: 1, total: 1 }));
        assert_eq!(counter.hit(at(10)), None);
        assert_eq!(counter.hit(at(999)), None);
        assert_eq!(counter.hit(at(1000)), Some(LimitReport { since_last: 3, total: 4 }));
        assert_eq!(counter.hit(at(1500)), None);
        assert_eq!(counter.hit(at(5000)), Some(LimitReport { since_last: 2, total: 6 }));
        assert_eq!(counter.get(), 6);
    }

    #[test]
    fn many_threads_hitting_a_limit_make_one_report() {
        let counter = std::sync::Arc::new(LimitCounter::default());
        let now = Instant::now();
        let reports: u64 = (0..8)
            .map(|_| {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || (0..1000).filter(|_| counter.hit(now).is_some()).count() as u64)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(reports, 1);
        assert_eq!(counter.get(), 8000);
    }
}
