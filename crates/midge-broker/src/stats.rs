//! Counters the broker keeps, read by logs, `$SYS` and metrics.
//!
//! Counters touched per message are sharded: one shared atomic incremented by every worker
//! thread for every delivery would bounce its cache line between cores on the hot path. Those
//! the connection driver keeps (bytes, packets) are added once per read or write, not per byte
//! or packet. `$SYS` (`midge-server/src/sys.rs`) and `/metrics` (`midge-server/src/metrics`)
//! read them all through [`Stats::snapshot`].

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
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

/// A [`Counter`] per QoS: what is counted per message at one QoS costs what one `Counter`
/// costs (the QoS picks which counter the thread's shard is in), and the total is their sum.
#[derive(Debug, Default)]
pub struct QosCounter {
    by_qos: [Counter; 3],
}

impl QosCounter {
    /// Adds `n` at `qos`.
    pub fn add(&self, qos: midge_codec::QoS, n: u64) {
        self.by_qos[qos as usize].add(n);
    }

    /// The total so far, every QoS.
    pub fn get(&self) -> u64 {
        self.by_qos().iter().sum()
    }

    /// The counts so far at QoS 0, 1 and 2.
    pub fn by_qos(&self) -> [u64; 3] {
        [self.by_qos[0].get(), self.by_qos[1].get(), self.by_qos[2].get()]
    }
}

/// A value that goes up and down (paced publishers now): one atomic, for counts that change
/// per connection event, not per message.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn decrement(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value now (never below 0 as read, whatever order increments and decrements landed in).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
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

/// The broker's counters. Each says what it counts in mosquitto's `$SYS` terms where it has
/// one (the topic that publishes it, in `midge-server/src/sys.rs`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Network connections accepted by the listeners, before CONNECT (`load/sockets`).
    pub sockets_accepted: Counter,
    /// CONNECTs accepted (`load/connections`).
    pub connections_accepted: Counter,
    /// Sessions that expired while their client was away (`clients/expired`).
    pub sessions_expired: Counter,
    /// MQTT packets of every kind received from clients (`messages/received`), added per read.
    pub packets_received: Counter,
    /// MQTT packets of every kind written to clients (`messages/sent`).
    pub packets_sent: Counter,
    /// Bytes of MQTT received from clients (`bytes/received`): what the driver reads, after TLS
    /// and WebSocket framing, added once per read.
    pub bytes_received: Counter,
    /// Bytes of MQTT written to clients (`bytes/sent`), added once per write.
    pub bytes_sent: Counter,
    /// PUBLISH packets received from clients (`publish/messages/received`).
    pub publish_received: Counter,
    /// Of those, the MQTT ones (TCP, TLS, WebSocket) by QoS, added once per read.
    pub publish_received_by_qos: [Counter; 3],
    /// Payload bytes of those (`publish/bytes/received`).
    pub publish_bytes_received: Counter,
    /// Payload bytes of the PUBLISHes written to clients (`publish/bytes/sent`).
    pub publish_bytes_sent: Counter,
    /// PUBLISHes (and wills) received for routing, by QoS.
    pub messages_received: QosCounter,
    /// PUBLISHes written to clients (`publish/messages/sent`).
    pub messages_sent: Counter,
    /// Messages dropped because a session queue was full, a message did not fit a client's
    /// Maximum Packet Size, or it expired while queued (`publish/messages/dropped`); the
    /// reasons are in `drops`.
    pub messages_dropped: Counter,
    /// Of `messages_dropped`, what each reason dropped.
    pub drops: DropCounters,
    /// Wills published.
    pub wills_published: Counter,
    /// Publishers paced now, waiting for a subscriber's room (decision 0005).
    pub paced_publishers: Gauge,
    /// Times a publisher was paced.
    pub pacings: Counter,
    /// The named limits' refusals (docs/limits.md).
    pub limits: LimitCounters,
}

/// Why messages were dropped: each a part of [`Stats::messages_dropped`] (which also holds the
/// MQTT-SN gateway's drops, counted there only).
#[derive(Debug, Default)]
pub struct DropCounters {
    /// A session's queue was at its bound (connected: `max_queued_*`, with the slow-consumer
    /// policy `drop` or QoS 0 without pacing; offline: `max_offline_*`).
    pub queue_full: Counter,
    /// Taken from a queue but not sent: expired (MQTT-3.3.2-5), over the client's Maximum
    /// Packet Size, or refused by the ACL at delivery.
    pub undeliverable: Counter,
    /// Read back from the store for a returning client but expired or over its bounds.
    pub read_back: Counter,
}

/// Why messages were dropped (see [`DropCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// [`DropCounters::queue_full`].
    QueueFull,
    /// [`DropCounters::undeliverable`].
    Undeliverable,
    /// [`DropCounters::read_back`].
    ReadBack,
}

impl Stats {
    /// Counts `n` messages dropped for `reason`, in the total and under the reason.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.messages_dropped.add(n);
        let counter = match reason {
            DropReason::QueueFull => &self.drops.queue_full,
            DropReason::Undeliverable => &self.drops.undeliverable,
            DropReason::ReadBack => &self.drops.read_back,
        };
        counter.add(n);
    }
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
#[allow(missing_docs)] // each is the Stats field of the same name
pub struct StatsSnapshot {
    pub sockets_accepted: u64,
    pub connections_accepted: u64,
    pub sessions_expired: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub publish_received: u64,
    pub publish_received_by_qos: [u64; 3],
    pub publish_bytes_received: u64,
    pub publish_bytes_sent: u64,
    pub messages_received: u64,
    pub messages_received_by_qos: [u64; 3],
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub drops: DropSnapshot,
    pub wills_published: u64,
    pub paced_publishers: u64,
    pub pacings: u64,
    pub limits: LimitSnapshot,
}

/// What each reason dropped, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each is the DropCounters field of the same name
pub struct DropSnapshot {
    pub queue_full: u64,
    pub undeliverable: u64,
    pub read_back: u64,
}

impl Stats {
    /// Every counter's value, for logs, `$SYS` and metrics.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            sockets_accepted: self.sockets_accepted.get(),
            connections_accepted: self.connections_accepted.get(),
            sessions_expired: self.sessions_expired.get(),
            packets_received: self.packets_received.get(),
            packets_sent: self.packets_sent.get(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            publish_received: self.publish_received.get(),
            publish_received_by_qos: self.publish_received_by_qos.each_ref().map(Counter::get),
            publish_bytes_received: self.publish_bytes_received.get(),
            publish_bytes_sent: self.publish_bytes_sent.get(),
            messages_received: self.messages_received.get(),
            messages_received_by_qos: self.messages_received.by_qos(),
            messages_sent: self.messages_sent.get(),
            messages_dropped: self.messages_dropped.get(),
            drops: DropSnapshot {
                queue_full: self.drops.queue_full.get(),
                undeliverable: self.drops.undeliverable.get(),
                read_back: self.drops.read_back.get(),
            },
            wills_published: self.wills_published.get(),
            paced_publishers: self.paced_publishers.get(),
            pacings: self.pacings.get(),
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
    fn a_drop_counts_in_the_total_and_under_its_reason() {
        let stats = Stats::default();
        stats.dropped(DropReason::QueueFull, 3);
        stats.dropped(DropReason::Undeliverable, 2);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.messages_dropped, 5);
        assert_eq!(snapshot.drops, DropSnapshot { queue_full: 3, undeliverable: 2, read_back: 0 });
    }

    #[test]
    fn a_qos_counter_counts_each_qos_and_their_total() {
        let counter = QosCounter::default();
        counter.add(midge_codec::QoS::AtMostOnce, 2);
        counter.add(midge_codec::QoS::ExactlyOnce, 1);
        assert_eq!(counter.by_qos(), [2, 0, 1]);
        assert_eq!(counter.get(), 3);
    }

    #[test]
    fn a_gauge_goes_up_and_down() {
        let gauge = Gauge::default();
        gauge.increment();
        gauge.increment();
        gauge.decrement();
        assert_eq!(gauge.get(), 1);
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
