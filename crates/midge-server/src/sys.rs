//! `$SYS`: the broker's counters published every `[sys] interval` seconds, retained, under
//! mosquitto 2's names and with their meanings, plus Midge's own under `$SYS/broker/midge/`.
//!
//! [`SysTree`] is sans-I/O: given a [`Sample`] of the counters and the time since the last
//! one, it says which topics changed and their new payloads. [`run`] is the task that samples
//! every interval and publishes what changed through the core ([`Broker::publish_own`]), so
//! routing, the retained store and the ACL apply as to any message: a subscriber the ACL does
//! not let read `$SYS/...` gets nothing, and `#` or `+` never match a `$` topic at the first
//! level (MQTT-4.7.2-1). docs/configuration.md lists every topic and what it counts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_broker::{Accounting, Broker, StatsSnapshot};
use midge_codec::{QoS, TopicName};
use midge_store::WriterHandle;
use tokio::sync::watch;

use crate::config::SysConfig;

/// The QoS `$SYS` messages are published at: mosquitto's (`SYS_TREE_QOS`), so a subscriber
/// gets them at the QoS it asked for.
const SYS_QOS: QoS = QoS::ExactlyOnce;

/// How to read the process's heap (bytes allocated and not freed), when the binary can say:
/// the allocator is the process's, chosen by the binary, not by this library.
static HEAP_PROBE: OnceLock<fn() -> Option<u64>> = OnceLock::new();

/// Tells `$SYS` how to read the heap (`heap/current`, `heap/maximum`); without it those two
/// topics are not published. The first call wins.
pub fn set_heap_probe(probe: fn() -> Option<u64>) {
    let _ = HEAP_PROBE.set(probe);
}

/// What `$SYS/broker/version` says.
pub fn version() -> String {
    format!("midge version {}", env!("CARGO_PKG_VERSION"))
}

/// The store's figures for `$SYS/broker/midge/store/...`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSample {
    /// Bytes on disk, when they could be measured.
    pub bytes: Option<u64>,
    /// Commits made since the start.
    pub commits: u64,
    /// Time they took, in microseconds.
    pub commit_micros: u64,
    /// The same commits by how long each took.
    pub commit_latency: midge_store::CommitLatency,
}

/// What the tree is computed from, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Time since the broker started.
    pub uptime: Duration,
    /// The counters.
    pub stats: StatsSnapshot,
    /// What the broker holds.
    pub held: Accounting,
    /// The store's figures; `None` without persistence.
    pub store: Option<StoreSample>,
    /// Bytes allocated on the heap, when the binary says how to read them.
    pub heap: Option<u64>,
    /// This node's cluster, when it is one of a cluster.
    pub cluster: Option<crate::cluster::ClusterSample>,
}

/// Reads one counter from a snapshot.
type Read = fn(&StatsSnapshot) -> u64;

/// The counters with 1, 5 and 15 minute load averages, as mosquitto's `load/` topics name
/// them, each with the counter it is the rate of.
const LOADS: [(&str, Read); 9] = [
    ("messages/received", |s| s.packets_received),
    ("messages/sent", |s| s.packets_sent),
    ("publish/dropped", |s| s.messages_dropped),
    ("publish/received", |s| s.publish_received),
    ("publish/sent", |s| s.messages_sent),
    ("bytes/received", |s| s.bytes_received),
    ("bytes/sent", |s| s.bytes_sent),
    ("sockets", |s| s.sockets_accepted),
    ("connections", |s| s.connections_accepted),
];

/// The load averages' windows, in seconds, with the suffix of their topics.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// The `$SYS` tree's state between updates: what was last published under each topic (a
/// topic is published again only when its payload changes, as mosquitto does), the load
/// averages, and the counters they were last computed from.
#[derive(Debug, Default)]
pub struct SysTree {
    published: HashMap<String, String>,
    /// Per [`LOADS`] entry, per [`WINDOWS`] entry: the load average, per minute.
    loads: [[f64; 3]; LOADS.len()],
    /// Per [`LOADS`] entry: the counter at the last update.
    last_counts: [u64; LOADS.len()],
    /// The most sessions seen at an update (`clients/maximum`).
    maximum: usize,
    /// The largest heap seen at an update (`heap/maximum`).
    heap_maximum: u64,
    /// The store's commits and their time at the last update (for the mean latency since).
    last_commits: (u64, u64),
}

impl SysTree {
    /// A tree that has published nothing: its first update publishes every topic, the load
    /// averages at 0.00, as mosquitto's first does.
    pub fn new() -> Self {
        Self::default()
    }

    /// The topics whose payload changed since the last update, with the payload, for a
    /// `sample` taken `elapsed` after the last one (zero for the first).
    pub fn update(&mut self, sample: &Sample, elapsed: Duration) -> Vec<(String, String)> {
        let mut values: Vec<(String, String)> = Vec::with_capacity(96);
        let mut put = |topic: &str, value: String| values.push((format!("$SYS/broker/{topic}"), value));
        let (stats, held) = (&sample.stats, &sample.held);

        put("uptime", format!("{} seconds", sample.uptime.as_secs()));
        self.maximum = self.maximum.max(held.sessions);
        let disconnected = held.sessions.saturating_sub(held.connected);
        let stored = held.queued_messages + held.inflight + held.spilled + held.retained_messages;
        let counts: [(&str, u64); 24] = [
            ("clients/total", held.sessions as u64),
            ("clients/maximum", self.maximum as u64),
            ("clients/disconnected", disconnected as u64),
            ("clients/inactive", disconnected as u64), // mosquitto's older name, still published
            ("clients/connected", held.connected as u64),
            ("clients/active", held.connected as u64), // likewise
            ("clients/expired", stats.sessions_expired),
            ("messages/stored", stored as u64),
            ("store/messages/count", stored as u64),
            ("store/messages/bytes", (held.queued_bytes + held.retained_bytes) as u64),
            ("subscriptions/count", held.subscriptions as u64),
            ("shared_subscriptions/count", held.shared_subscriptions as u64),
            ("retained messages/count", held.retained_messages as u64),
            ("messages/received", stats.packets_received),
            ("messages/sent", stats.packets_sent),
            ("bytes/received", stats.bytes_received),
            ("bytes/sent", stats.bytes_sent),
            ("publish/bytes/received", stats.publish_bytes_received),
            ("publish/bytes/sent", stats.publish_bytes_sent),
            ("publish/messages/dropped", stats.messages_dropped),
            ("publish/messages/received", stats.publish_received),
            ("publish/messages/sent", stats.messages_sent),
            ("midge/wills/published", stats.wills_published),
            ("midge/publishers/paced", stats.paced_publishers),
        ];
        for (topic, value) in counts {
            put(topic, value.to_string());
        }
        if let Some(heap) = sample.heap {
            // mosquitto's maximum is its exact peak; this is the largest seen at an update.
            self.heap_maximum = self.heap_maximum.max(heap);
            put("heap/current", heap.to_string());
            put("heap/maximum", self.heap_maximum.to_string());
        }
        self.update_loads(stats, elapsed, &mut put);
        self.midge_own(sample, &mut put);
        if let Some(cluster) = &sample.cluster {
            cluster_values(cluster, &mut put);
        }

        values.retain(|(topic, payload)| self.published.get(topic) != Some(payload));
        for (topic, payload) in &values {
            self.published.insert(topic.clone(), payload.clone());
        }
        values
    }

    /// mosquitto's load averages: each counter's rate over the last interval, per minute,
    /// folded into an exponentially decaying average whose time constant is the window (as
    /// the kernel's load average), printed with two decimals. The first update gives 0.00.
    fn update_loads(&mut self, stats: &StatsSnapshot, elapsed: Duration, put: &mut impl FnMut(&str, String)) {
        let seconds = elapsed.as_secs_f64();
        for (index, (name, counter)) in LOADS.iter().enumerate() {
            let count = counter(stats);
            let delta = count.saturating_sub(self.last_counts[index]) as f64;
            self.last_counts[index] = count;
            for (window, (span, suffix)) in WINDOWS.iter().enumerate() {
                let load = &mut self.loads[index][window];
                if seconds > 0.0 {
                    let rate = delta * 60.0 / seconds;
                    let decay = (-seconds / span).exp();
                    *load = rate + decay * (*load - rate);
                }
                put(&format!("load/{name}/{suffix}"), format!("{load:.2}"));
            }
        }
    }

    /// Midge's own: drops by reason, pacing, the named limits, what waits in queues, the store.
    fn midge_own(&mut self, sample: &Sample, put: &mut impl FnMut(&str, String)) {
        let (stats, held) = (&sample.stats, &sample.held);
        let limits = &stats.limits;
        let own: [(&str, u64); 18] = [
            ("midge/messages/dropped/queue_full", stats.drops.queue_full),
            ("midge/messages/dropped/undeliverable", stats.drops.undeliverable),
            ("midge/messages/dropped/read_back", stats.drops.read_back),
            ("midge/messages/queued", held.queued_messages as u64),
            ("midge/messages/inflight", held.inflight as u64),
            ("midge/messages/offline", held.spilled as u64),
            ("midge/publishers/pacings", stats.pacings),
            ("midge/retained/bytes", held.retained_bytes as u64),
            ("midge/limits/max_connections", limits.max_connections),
            ("midge/limits/listener_max_connections", limits.listener_max_connections),
            ("midge/limits/max_connection_rate", limits.max_connection_rate),
            ("midge/limits/max_sessions", limits.max_sessions),
            ("midge/limits/inbound_rate", limits.inbound_rate),
            ("midge/limits/max_subscriptions_per_client", limits.max_subscriptions_per_client),
            ("midge/limits/max_retained", limits.max_retained),
            ("midge/limits/topic_limits", limits.topic_limits),
            ("midge/limits/connect_timeout", limits.connect_timeout),
            ("midge/limits/max_packet_size", limits.max_packet_size),
        ];
        for (topic, value) in own {
            put(topic, value.to_string());
        }
        let Some(store) = sample.store else { return };
        if let Some(bytes) = store.bytes {
            put("midge/store/bytes", bytes.to_string());
        }
        put("midge/store/commits", store.commits.to_string());
        let (commits, micros) = (store.commits, store.commit_micros);
        let (last_commits, last_micros) = std::mem::replace(&mut self.last_commits, (commits, micros));
        if commits > last_commits {
            // The mean over this interval's commits; unchanged through an interval without any.
            let mean_ms = micros.saturating_sub(last_micros) as f64 / (commits - last_commits) as f64 / 1000.0;
            put("midge/store/commit_latency_ms", format!("{mean_ms:.2}"));
        }
    }
}

/// A node's cluster state (`midge/cluster/...`; Midge's own, mosquitto has no cluster).
fn cluster_values(cluster: &crate::cluster::ClusterSample, put: &mut impl FnMut(&str, String)) {
    let counts = &cluster.counts;
    put("midge/cluster/node", cluster.node.clone());
    let numbers: [(&str, u64); 12] = [
        ("midge/cluster/nodes", cluster.nodes as u64),
        ("midge/cluster/connected", u64::from(cluster.connected)),
        ("midge/cluster/fenced", u64::from(cluster.fenced)),
        ("midge/cluster/filters", cluster.filters as u64),
        ("midge/cluster/messages/sent", counts.sent),
        ("midge/cluster/messages/received", counts.received),
        ("midge/cluster/messages/dropped", counts.dropped_outbound),
        ("midge/cluster/messages/unreadable", counts.unreadable),
        ("midge/cluster/retained/dropped", counts.dropped_retained),
        ("midge/cluster/sessions/taken_over", counts.takeovers),
        ("midge/cluster/wills/orphans_published", counts.orphan_wills),
        ("midge/cluster/lease/fenced", counts.fenced),
    ];
    for (topic, value) in numbers {
        put(topic, value.to_string());
    }
}

/// What the `$SYS` task reads the store's figures from.
#[derive(Debug, Clone)]
pub struct StoreProbe {
    /// The writer, for its commits and their time.
    pub writer: WriterHandle,
    /// The store's directory, measured on a blocking thread.
    pub dir: PathBuf,
}

/// Publishes `$SYS/broker/version` once, then every topic that changed every `config.interval`
/// seconds, until shutdown; publishes nothing while the interval is 0. A reload's new interval
/// (through `config`) is timed from when it arrives.
///
/// # Cancel safety
/// Cancel safe: each update is published in full before the next await.
pub async fn run(
    broker: Arc<Broker>,
    mut config: watch::Receiver<SysConfig>,
    store: Option<StoreProbe>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut tree = SysTree::new();
    let mut version_published = false;
    // Whether a reload can still change the interval (its sender may be gone).
    let mut reloadable = true;
    loop {
        let interval = config.borrow_and_update().interval;
        if interval == 0 {
            tokio::select! {
                changed = config.changed(), if reloadable => reloadable = changed.is_ok(),
                _ = shutdown.changed() => return,
            }
            continue;
        }
        if !version_published {
            publish(&broker, "$SYS/broker/version", version(), started);
            version_published = true;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs(interval));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = config.changed(), if reloadable => {
                    reloadable = changed.is_ok();
                    // A new interval (or 0) from a reload: timed afresh.
                    break;
                }
                _ = shutdown.changed() => return,
            }
            let mut sample = sample(&broker, store.as_ref(), started).await;
            sample.cluster = cluster.as_ref().map(|cluster| cluster.sample());
            let now = Instant::now();
            let elapsed = last.map_or(Duration::ZERO, |last| now - last);
            last = Some(now);
            for (topic, payload) in tree.update(&sample, elapsed) {
                publish(&broker, &topic, payload, now);
            }
        }
    }
}

/// Every figure `$SYS` publishes, now: the counters, what the broker holds, the store's
/// figures and the heap; for a broker started at `started`. What `/metrics` reads too.
///
/// Read on a blocking thread: what the broker holds is counted visiting every session under
/// its own lock, and the store's size walking its directory, which for a large broker is
/// longer than an async worker should be kept from its connections.
pub async fn sample(broker: &Arc<Broker>, store: Option<&StoreProbe>, started: Instant) -> Sample {
    let broker = Arc::clone(broker);
    let store = store.cloned();
    let read = move || {
        let store = store.map(|probe| {
            let status = probe.writer.status();
            let bytes = midge_store::disk_usage(&probe.dir).ok();
            StoreSample {
                bytes,
                commits: status.commits,
                commit_micros: status.commit_micros,
                commit_latency: status.commit_latency,
            }
        });
        let heap = HEAP_PROBE.get().and_then(|probe| probe());
        Sample {
            uptime: started.elapsed(),
            stats: broker.stats().snapshot(),
            held: broker.accounting(),
            store,
            heap,
            cluster: None,
        }
    };
    // The runtime shutting down cancels it: then nothing is published anyway.
    tokio::task::spawn_blocking(read).await.unwrap_or_default()
}

/// Publishes one value, retained.
fn publish(broker: &Broker, topic: &str, payload: String, now: Instant) {
    let Ok(topic) = TopicName::new(topic) else {
        tracing::warn!(topic, "not a valid $SYS topic name");
        return;
    };
    if let Err(why) = broker.publish_own(topic, Bytes::from(payload), SYS_QOS, true, now) {
        tracing::debug!(why, "a $SYS value was not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(changes: &[(String, String)]) -> Vec<&str> {
        changes.iter().map(|(topic, _)| topic.as_str()).collect()
    }

    fn value<'a>(changes: &'a [(String, String)], topic: &str) -> Option<&'a str> {
        changes.iter().find(|(t, _)| t == topic).map(|(_, payload)| payload.as_str())
    }

    #[test]
    fn the_first_update_publishes_everything_then_only_what_changed() {
        let mut tree = SysTree::new();
        let mut sample = Sample::default();
        let first = tree.update(&sample, Duration::ZERO);
        assert_eq!(value(&first, "$SYS/broker/uptime"), Some("0 seconds"));
        assert_eq!(value(&first, "$SYS/broker/load/bytes/sent/15min"), Some("0.00"));
        assert_eq!(value(&first, "$SYS/broker/retained messages/count"), Some("0"));
        assert!(!topics(&first).contains(&"$SYS/broker/midge/store/bytes"), "no store, no store topics");

        sample.uptime = Duration::from_secs(10);
        sample.stats.publish_received = 3;
        let second = tree.update(&sample, Duration::from_secs(10));
        assert!(topics(&second).contains(&"$SYS/broker/uptime"));
        assert_eq!(value(&second, "$SYS/broker/publish/messages/received"), Some("3"));
        assert!(!topics(&second).contains(&"$SYS/broker/messages/received"), "unchanged: not published again");
        assert!(!topics(&second).contains(&"$SYS/broker/load/messages/received/1min"));
    }

    #[test]
    fn loads_decay_as_mosquitto_computes_them() {
        let mut tree = SysTree::new();
        let mut sample = Sample::default();
        tree.update(&sample, Duration::ZERO);
        // 60 PUBLISHes in 10 s is 360 a minute: the 1 minute average moves 1 - e^(-1/6) of the way.
        sample.stats.publish_received = 60;
        let changes = tree.update(&sample, Duration::from_secs(10));
        let expected = 360.0 * (1.0 - (-10.0f64 / 60.0).exp());
        assert_eq!(value(&changes, "$SYS/broker/load/publish/received/1min"), Some(format!("{expected:.2}").as_str()));
        let expected_15 = 360.0 * (1.0 - (-10.0f64 / 900.0).exp());
        assert_eq!(
            value(&changes, "$SYS/broker/load/publish/received/15min"),
            Some(format!("{expected_15:.2}").as_str())
        );
        // Nothing more: the averages decay towards 0.
        let changes = tree.update(&sample, Duration::from_secs(10));
        let decayed = expected * (-10.0f64 / 60.0).exp();
        assert_eq!(value(&changes, "$SYS/broker/load/publish/received/1min"), Some(format!("{decayed:.2}").as_str()));
    }

    #[test]
    fn clients_count_sessions_and_the_maximum_only_grows() {
        let mut tree = SysTree::new();
        let mut sample = Sample::default();
        sample.held.sessions = 3;
        sample.held.connected = 2;
        let changes = tree.update(&sample, Duration::ZERO);
        assert_eq!(value(&changes, "$SYS/broker/clients/total"), Some("3"));
        assert_eq!(value(&changes, "$SYS/broker/clients/connected"), Some("2"));
        assert_eq!(value(&changes, "$SYS/broker/clients/active"), Some("2"));
        assert_eq!(value(&changes, "$SYS/broker/clients/disconnected"), Some("1"));
        assert_eq!(value(&changes, "$SYS/broker/clients/maximum"), Some("3"));
        sample.held.sessions = 1;
        sample.held.connected = 1;
        let changes = tree.update(&sample, Duration::from_secs(1));
        assert_eq!(value(&changes, "$SYS/broker/clients/total"), Some("1"));
        assert!(!topics(&changes).contains(&"$SYS/broker/clients/maximum"));
    }

    #[test]
    fn the_store_reports_its_size_and_the_mean_commit_time_of_each_interval() {
        let mut tree = SysTree::new();
        let mut sample = Sample {
            store: Some(StoreSample { bytes: Some(4096), commits: 4, commit_micros: 8000, ..Default::default() }),
            ..Sample::default()
        };
        let changes = tree.update(&sample, Duration::ZERO);
        assert_eq!(value(&changes, "$SYS/broker/midge/store/bytes"), Some("4096"));
        assert_eq!(value(&changes, "$SYS/broker/midge/store/commit_latency_ms"), Some("2.00"));
        sample.store = Some(StoreSample { bytes: Some(4096), commits: 6, commit_micros: 9000, ..Default::default() });
        let changes = tree.update(&sample, Duration::from_secs(1));
        assert_eq!(value(&changes, "$SYS/broker/midge/store/commit_latency_ms"), Some("0.50"));
        let changes = tree.update(&sample, Duration::from_secs(1));
        assert!(changes.iter().all(|(topic, _)| !topic.contains("store/commit")), "no commits: unchanged");
    }

    #[test]
    fn the_heap_and_its_largest_value_seen_when_the_binary_can_read_it() {
        let mut tree = SysTree::new();
        let first = tree.update(&Sample::default(), Duration::ZERO);
        assert!(!topics(&first).contains(&"$SYS/broker/heap/current"), "no probe, no heap topics");
        let changes = tree.update(&Sample { heap: Some(2048), ..Sample::default() }, Duration::from_secs(1));
        assert_eq!(value(&changes, "$SYS/broker/heap/current"), Some("2048"));
        assert_eq!(value(&changes, "$SYS/broker/heap/maximum"), Some("2048"));
        let changes = tree.update(&Sample { heap: Some(1024), ..Sample::default() }, Duration::from_secs(1));
        assert_eq!(value(&changes, "$SYS/broker/heap/current"), Some("1024"));
        assert!(!topics(&changes).contains(&"$SYS/broker/heap/maximum"));
    }

    #[test]
    fn the_version_names_midge() {
        assert!(version().starts_with("midge version "));
    }
}
