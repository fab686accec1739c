//! `/metrics`: the broker's figures in Prometheus' text exposition format (docs/metrics.md lists
//! every metric). An HTTP listener serves it (`crate::http::metrics`); this module says what is
//! exposed and writes it.
//!
//! Nothing is counted for it: a scrape reads what `$SYS` reads ([`crate::sys::sample`]: the
//! broker's sharded counters, what the broker holds, the store writer's status), the listeners'
//! counters and the process's `/proc` figures, then writes them out. What it costs is the
//! scrape's, not the connections'.
//!
//! # Layout
//! - `exposition`: the text format.
//! - `process`: the standard `process_*` figures from `/proc`.
//! - this file: the [`Source`] a scrape reads from, and [`render`], which names every metric.

pub mod exposition;
pub mod process;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use midge_broker::{Accounting, QUEUE_LENGTH_BUCKETS};
use midge_store::COMMIT_BUCKETS_MICROS;

use crate::listener::{ListenerCounters, Listeners};
use crate::sys::{Sample, StoreProbe};
use exposition::{seconds, Exposition, Kind};
use process::ProcessSample;

/// What a scrape reads, beyond the broker: the server's start, its store and its listeners.
/// One per server, shared by its HTTP listeners.
#[derive(Debug)]
pub struct Source {
    /// When the server started (for the sample's uptime).
    started: Instant,
    /// The store's writer and directory; `None` without persistence.
    store: Option<StoreProbe>,
    /// Every listener, set once they are all started. Weak: a listener's connections hold this,
    /// and the server owns the listeners.
    listeners: OnceLock<Weak<Listeners>>,
}

impl Source {
    /// The source of a server with `store`, started now; its listeners come later.
    pub fn new(store: Option<StoreProbe>) -> Self {
        Self { started: Instant::now(), store, listeners: OnceLock::new() }
    }

    /// Gives it the server's listeners, once they are started.
    pub fn set_listeners(&self, listeners: &Arc<Listeners>) {
        let _ = self.listeners.set(Arc::downgrade(listeners));
    }

    /// When the server started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The store's probe, with persistence.
    pub fn store(&self) -> Option<&StoreProbe> {
        self.store.as_ref()
    }

    /// Every open listener's counters now, with its number and protocol (a listener a reload
    /// removed is left out).
    pub fn listeners(&self) -> Vec<ListenerSample> {
        let Some(listeners) = self.listeners.get().and_then(Weak::upgrade) else { return Vec::new() };
        listeners
            .open()
            .iter()
            .map(|listener| ListenerSample {
                index: listener.index(),
                protocol: listener.protocol().to_string(),
                counters: listener.counters(),
            })
            .collect()
    }
}

/// One listener's counters, with what labels it.
#[derive(Debug, Clone)]
pub struct ListenerSample {
    /// Its place in the config, from 1 (label `listener`).
    pub index: usize,
    /// Its `protocol` key (label `protocol`).
    pub protocol: String,
    /// Its counters.
    pub counters: ListenerCounters,
}

/// Everything a scrape shows, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The broker's counters, what it holds, the store and the heap.
    pub sample: Sample,
    /// The listeners.
    pub listeners: Vec<ListenerSample>,
    /// The process.
    pub process: ProcessSample,
}

/// The label values of QoS 0, 1 and 2.
const QOS: [&str; 3] = ["0", "1", "2"];

/// Writes `scrape` in the text exposition format.
pub fn render(scrape: &Scrape) -> String {
    let mut doc = Exposition::new();
    broker(&mut doc, &scrape.sample);
    store(&mut doc, &scrape.sample);
    if let Some(cluster) = &scrape.sample.cluster {
        cluster_families(&mut doc, cluster);
    }
    listeners(&mut doc, &scrape.listeners);
    process(&mut doc, &scrape.process);
    doc.finish()
}

/// What the broker counts and holds.
fn broker(doc: &mut Exposition, sample: &Sample) {
    use Kind::{Counter, Gauge};
    let (stats, held) = (&sample.stats, &sample.held);
    doc.family("midge_build_info", Gauge, "Always 1; the version of the broker in its label.");
    doc.sample("midge_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    doc.single("midge_connections", Gauge, "Clients connected now (MQTT, MQTT-SN and HTTP).", held.connected);
    doc.family("midge_sessions", Gauge, "Sessions, by whether a client is connected to them.");
    doc.sample("midge_sessions", &[("state", "connected")], held.connected);
    doc.sample("midge_sessions", &[("state", "offline")], held.sessions.saturating_sub(held.connected));
    doc.single(
        "midge_sessions_expired_total",
        Counter,
        "Sessions that expired while their client was away.",
        stats.sessions_expired,
    );
    doc.single(
        "midge_subscriptions",
        Gauge,
        "Subscriptions, summed over sessions (shared ones included).",
        held.subscriptions,
    );
    doc.single(
        "midge_shared_subscriptions",
        Gauge,
        "Shared subscriptions ($share/GROUP/FILTER).",
        held.shared_subscriptions,
    );
    doc.single("midge_retained_messages", Gauge, "Retained messages.", held.retained_messages);
    doc.single("midge_retained_bytes", Gauge, "Bytes of retained topics and payloads.", held.retained_bytes);
    doc.single("midge_queued_messages", Gauge, "Messages waiting in sessions' queues in memory.", held.queued_messages);
    doc.single("midge_queued_bytes", Gauge, "Payload bytes waiting in sessions' queues in memory.", held.queued_bytes);
    doc.single(
        "midge_queue_longest_messages",
        Gauge,
        "The longest in-memory queue of one session.",
        held.longest_queue,
    );
    queue_lengths(doc, held);
    doc.single("midge_inflight_messages", Gauge, "Messages sent and not yet acknowledged.", held.inflight);
    doc.single("midge_offline_stored_messages", Gauge, "Offline sessions' messages kept in the store.", held.spilled);
    doc.single(
        "midge_sockets_accepted_total",
        Counter,
        "Network connections accepted, before CONNECT.",
        stats.sockets_accepted,
    );
    doc.single("midge_connections_accepted_total", Counter, "CONNECTs accepted.", stats.connections_accepted);
    doc.single("midge_packets_received_total", Counter, "MQTT packets of every kind received.", stats.packets_received);
    doc.single("midge_packets_sent_total", Counter, "MQTT packets of every kind sent.", stats.packets_sent);
    doc.single(
        "midge_bytes_received_total",
        Counter,
        "Bytes of MQTT received (after TLS and WebSocket).",
        stats.bytes_received,
    );
    doc.single("midge_bytes_sent_total", Counter, "Bytes of MQTT sent (before TLS and WebSocket).", stats.bytes_sent);
    doc.family(
        "midge_publish_packets_received_total",
        Counter,
        "PUBLISH packets received over MQTT (TCP, TLS, WebSocket), by QoS.",
    );
    for (qos, value) in QOS.iter().zip(stats.publish_received_by_qos) {
        doc.sample("midge_publish_packets_received_total", &[("qos", qos)], value);
    }
    doc.single(
        "midge_publish_payload_bytes_received_total",
        Counter,
        "Payload bytes of the PUBLISH packets received.",
        stats.publish_bytes_received,
    );
    doc.single(
        "midge_publish_payload_bytes_sent_total",
        Counter,
        "Payload bytes of the PUBLISH packets sent.",
        stats.publish_bytes_sent,
    );
    doc.family(
        "midge_messages_received_total",
        Counter,
        "Messages received for routing (from every protocol, wills included), by QoS.",
    );
    for (qos, value) in QOS.iter().zip(stats.messages_received_by_qos) {
        doc.sample("midge_messages_received_total", &[("qos", qos)], value);
    }
    doc.single("midge_messages_sent_total", Counter, "PUBLISH packets sent to clients.", stats.messages_sent);
    dropped(doc, sample);
    doc.single("midge_wills_published_total", Counter, "Wills published.", stats.wills_published);
    doc.single(
        "midge_paced_publishers",
        Gauge,
        "Publishers paced now, waiting for a subscriber's room.",
        stats.paced_publishers,
    );
    doc.single("midge_pacings_total", Counter, "Times a publisher was paced.", stats.pacings);
    let limits = &stats.limits;
    doc.family("midge_limit_refusals_total", Counter, "Refusals by each named limit (docs/limits.md).");
    for (limit, value) in [
        ("max_connections", limits.max_connections),
        ("listener_max_connections", limits.listener_max_connections),
        ("max_connection_rate", limits.max_connection_rate),
        ("max_sessions", limits.max_sessions),
        ("inbound_rate", limits.inbound_rate),
        ("max_subscriptions_per_client", limits.max_subscriptions_per_client),
        ("max_retained", limits.max_retained),
        ("topic_limits", limits.topic_limits),
        ("connect_timeout", limits.connect_timeout),
        ("max_packet_size", limits.max_packet_size),
    ] {
        doc.sample("midge_limit_refusals_total", &[("limit", limit)], value);
    }
    if let Some(heap) = sample.heap {
        doc.single("midge_heap_bytes", Gauge, "Bytes allocated on the heap and not freed.", heap);
    }
}

/// Sessions by the length of their in-memory queue, as a histogram over sessions (counted as
/// the accounting visits each session, so it costs the scrape, not the connections).
fn queue_lengths(doc: &mut Exposition, held: &Accounting) {
    let name = "midge_session_queue_messages";
    doc.family(name, Kind::Histogram, "Sessions by the messages waiting in their in-memory queue.");
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, count) in QUEUE_LENGTH_BUCKETS.iter().zip(held.queue_lengths) {
        cumulative += count;
        doc.sample(&bucket, &[("le", &bound.to_string())], cumulative);
    }
    doc.sample(&bucket, &[("le", "+Inf")], held.sessions);
    doc.sample(&format!("{name}_sum"), &[], held.queued_messages);
    doc.sample(&format!("{name}_count"), &[], held.sessions);
}

/// Messages dropped, by reason. The MQTT-SN gateway's drops are counted in the total only; they
/// are what the total has beyond the other reasons.
fn dropped(doc: &mut Exposition, sample: &Sample) {
    let (total, drops) = (sample.stats.messages_dropped, &sample.stats.drops);
    let mqtt_sn = total.saturating_sub(drops.queue_full + drops.undeliverable + drops.read_back);
    doc.family("midge_messages_dropped_total", Kind::Counter, "Messages dropped, by reason.");
    for (reason, value) in [
        ("queue_full", drops.queue_full),
        ("undeliverable", drops.undeliverable),
        ("read_back", drops.read_back),
        ("mqtt_sn_gateway", mqtt_sn),
    ] {
        doc.sample("midge_messages_dropped_total", &[("reason", reason)], value);
    }
}

/// The store's size and commits, with persistence.
/// A node's cluster state (docs/cluster.md).
fn cluster_families(doc: &mut Exposition, cluster: &crate::cluster::ClusterSample) {
    use Kind::{Counter, Gauge};
    let counts = &cluster.counts;
    doc.family("midge_cluster_info", Gauge, "Always 1; this node's name in its label.");
    doc.sample("midge_cluster_info", &[("node", cluster.node.as_str())], 1);
    doc.single("midge_cluster_nodes", Gauge, "Cluster nodes alive, this one included.", cluster.nodes);
    doc.single("midge_cluster_connected", Gauge, "1 while the NATS connections are up.", u8::from(cluster.connected));
    doc.single(
        "midge_cluster_fenced",
        Gauge,
        "1 while this node's lease has lapsed and it admits no client.",
        u8::from(cluster.fenced),
    );
    doc.single("midge_cluster_filters", Gauge, "Distinct filters this node subscribes to on NATS.", cluster.filters);
    doc.family("midge_cluster_messages_total", Counter, "Messages sent to other nodes and received from them.");
    doc.sample("midge_cluster_messages_total", &[("direction", "sent")], counts.sent);
    doc.sample("midge_cluster_messages_total", &[("direction", "received")], counts.received);
    doc.family("midge_cluster_dropped_total", Counter, "Updates not sent because the NATS link was not keeping up.");
    doc.sample("midge_cluster_dropped_total", &[("what", "message")], counts.dropped_outbound);
    doc.sample("midge_cluster_dropped_total", &[("what", "retained")], counts.dropped_retained);
    doc.sample("midge_cluster_dropped_total", &[("what", "will")], counts.dropped_wills);
    doc.single(
        "midge_cluster_unreadable_total",
        Counter,
        "Messages from other nodes that could not be read.",
        counts.unreadable,
    );
    doc.single("midge_cluster_takeovers_total", Counter, "Sessions taken over from other nodes.", counts.takeovers);
    doc.single(
        "midge_cluster_orphan_wills_total",
        Counter,
        "Wills of dead nodes' clients this node published.",
        counts.orphan_wills,
    );
    doc.single(
        "midge_cluster_fenced_total",
        Counter,
        "Times this node fenced itself for want of its lease.",
        counts.fenced,
    );
}

fn store(doc: &mut Exposition, sample: &Sample) {
    let Some(store) = &sample.store else { return };
    if let Some(bytes) = store.bytes {
        doc.single("midge_store_bytes", Kind::Gauge, "Bytes the store takes on disk.", bytes);
    }
    doc.single("midge_store_commits_total", Kind::Counter, "Transactions the store writer committed.", store.commits);
    let name = "midge_store_commit_seconds";
    doc.family(name, Kind::Histogram, "How long each commit took (and its sync, when the policy syncs).");
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, count) in COMMIT_BUCKETS_MICROS.iter().zip(store.commit_latency.counts) {
        cumulative += count;
        doc.sample(&bucket, &[("le", &seconds(*bound).to_string())], cumulative);
    }
    let count = store.commit_latency.total();
    doc.sample(&bucket, &[("le", "+Inf")], count);
    doc.sample(&format!("{name}_sum"), &[], seconds(store.commit_micros));
    doc.sample(&format!("{name}_count"), &[], count);
}

/// Each listener's counters, labelled with its place and protocol.
fn listeners(doc: &mut Exposition, listeners: &[ListenerSample]) {
    type Read = fn(&ListenerCounters) -> u64;
    let families: [(&str, Kind, &str, Read); 7] = [
        ("midge_listener_connections", Kind::Gauge, "Connections open now on the listener.", |c| c.open as u64),
        ("midge_listener_accepted_total", Kind::Counter, "Connections the listener accepted.", |c| c.accepted),
        (
            "midge_listener_refused_total",
            Kind::Counter,
            "Connections closed at accept because the listener had its max_connections open.",
            |c| c.refused_max_connections,
        ),
        (
            "midge_listener_accept_errors_total",
            Kind::Counter,
            "Failed accepts (out of file descriptors and the like).",
            |c| c.accept_errors,
        ),
        (
            "midge_listener_tls_handshake_failures_total",
            Kind::Counter,
            "TLS handshakes that failed or did not finish within the connect timeout.",
            |c| c.tls_handshake_failures,
        ),
        (
            "midge_listener_websocket_upgrade_failures_total",
            Kind::Counter,
            "WebSocket upgrades refused or not finished.",
            |c| c.websocket_upgrade_failures,
        ),
        (
            "midge_listener_proxy_header_failures_total",
            Kind::Counter,
            "Connections closed for their PROXY protocol header.",
            |c| c.proxy_header_failures,
        ),
    ];
    let labels: Vec<(String, &str)> = listeners.iter().map(|l| (l.index.to_string(), l.protocol.as_str())).collect();
    for (name, kind, help, read) in families {
        doc.family(name, kind, help);
        for (listener, (index, protocol)) in listeners.iter().zip(&labels) {
            doc.sample(name, &[("listener", index), ("protocol", protocol)], read(&listener.counters));
        }
    }
    let gateways: Vec<_> =
        listeners.iter().zip(&labels).filter_map(|(l, labels)| Some((l.counters.mqtt_sn?, labels))).collect();
    if gateways.is_empty() {
        return;
    }
    let name = "midge_listener_mqtt_sn_dropped_total";
    doc.family(name, Kind::Counter, "What an MQTT-SN listener dropped, by reason.");
    for (drops, (index, protocol)) in gateways {
        for (reason, value) in [
            ("malformed", drops.malformed),
            ("inbox_full", drops.inbox_full),
            ("unconnected", drops.unconnected),
            ("minus_one_refused", drops.minus_one_refused),
            ("searches_limited", drops.searches_limited),
            ("unexpected", drops.unexpected),
        ] {
            doc.sample(name, &[("listener", index), ("protocol", protocol), ("reason", reason)], value);
        }
    }
}

/// The standard `process_*` metrics, those that could be read.
fn process(doc: &mut Exposition, process: &ProcessSample) {
    use Kind::{Counter, Gauge};
    if let Some(value) = process.cpu_seconds {
        doc.single("process_cpu_seconds_total", Counter, "Total user and system CPU time spent in seconds.", value);
    }
    if let Some(value) = process.resident_bytes {
        doc.single("process_resident_memory_bytes", Gauge, "Resident memory size in bytes.", value);
    }
    if let Some(value) = process.virtual_bytes {
        doc.single("process_virtual_memory_bytes", Gauge, "Virtual memory size in bytes.", value);
    }
    if let Some(value) = process.start_time_seconds {
        doc.single(
            "process_start_time_seconds",
            Gauge,
            "Start time of the process since unix epoch in seconds.",
            value,
        );
    }
    if let Some(value) = process.open_fds {
        doc.single("process_open_fds", Gauge, "Number of open file descriptors.", value);
    }
    if let Some(value) = process.max_fds {
        doc.single("process_max_fds", Gauge, "Maximum number of open file descriptors.", value);
    }
}

#[cfg(test)]
mod tests {
    use midge_broker::StatsSnapshot;

    use super::*;
    use crate::sys::StoreSample;

    fn line<'a>(doc: &'a str, prefix: &str) -> &'a str {
        doc.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{doc}"))
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let doc = render(&Scrape::default());
        let mut declared = Vec::new();
        for text in doc.lines() {
            if let Some(rest) = text.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !text.starts_with('#') {
                let name = text.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(declared.last().is_some_and(|d| d == name || d == family), "{text} is not under its TYPE");
            }
        }
        assert!(doc.contains("# HELP midge_connections "));
        assert!(!doc.contains("midge_store_"), "no store without persistence");
    }

    #[test]
    fn counters_and_gauges_carry_their_values_and_labels() {
        let mut stats =
            StatsSnapshot { messages_dropped: 9, messages_received_by_qos: [4, 2, 1], ..Default::default() };
        stats.drops.queue_full = 5;
        stats.limits.max_packet_size = 3;
        let mut held = Accounting { sessions: 5, connected: 2, queued_messages: 12, ..Default::default() };
        held.queue_lengths[0] = 3; // empty
        held.queue_lengths[3] = 2; // 11 to 100
        let doc = render(&Scrape { sample: Sample { stats, held, ..Default::default() }, ..Default::default() });
        assert_eq!(line(&doc, "midge_connections "), "midge_connections 2");
        assert_eq!(line(&doc, "midge_sessions{state=\"offline\"}"), "midge_sessions{state=\"offline\"} 3");
        assert_eq!(
            line(&doc, "midge_messages_received_total{qos=\"1\"}"),
            "midge_messages_received_total{qos=\"1\"} 2"
        );
        assert_eq!(line(&doc, "midge_messages_dropped_total{reason=\"queue_full\"}").split(' ').nth(1), Some("5"));
        assert_eq!(line(&doc, "midge_messages_dropped_total{reason=\"mqtt_sn_gateway\"}").split(' ').nth(1), Some("4"));
        assert_eq!(line(&doc, "midge_limit_refusals_total{limit=\"max_packet_size\"}").split(' ').nth(1), Some("3"));
        assert_eq!(line(&doc, "midge_session_queue_messages_bucket{le=\"10\"}").split(' ').nth(1), Some("3"));
        assert_eq!(line(&doc, "midge_session_queue_messages_bucket{le=\"100\"}").split(' ').nth(1), Some("5"));
        assert_eq!(line(&doc, "midge_session_queue_messages_bucket{le=\"+Inf\"}").split(' ').nth(1), Some("5"));
        assert_eq!(line(&doc, "midge_session_queue_messages_sum"), "midge_session_queue_messages_sum 12");
    }

    #[test]
    fn commit_latency_is_a_cumulative_histogram_in_seconds() {
        let mut store = StoreSample { bytes: Some(8192), commits: 3, commit_micros: 3_600, ..Default::default() };
        store.commit_latency.record(80);
        store.commit_latency.record(900);
        store.commit_latency.record(3_000_000);
        let doc = render(&Scrape { sample: Sample { store: Some(store), ..Default::default() }, ..Default::default() });
        assert_eq!(line(&doc, "midge_store_commit_seconds_bucket{le=\"0.0001\"}").split(' ').nth(1), Some("1"));
        assert_eq!(line(&doc, "midge_store_commit_seconds_bucket{le=\"0.001\"}").split(' ').nth(1), Some("2"));
        assert_eq!(line(&doc, "midge_store_commit_seconds_bucket{le=\"2.5\"}").split(' ').nth(1), Some("2"));
        assert_eq!(line(&doc, "midge_store_commit_seconds_bucket{le=\"+Inf\"}").split(' ').nth(1), Some("3"));
        assert_eq!(line(&doc, "midge_store_commit_seconds_sum"), "midge_store_commit_seconds_sum 0.0036");
        assert_eq!(line(&doc, "midge_store_commit_seconds_count"), "midge_store_commit_seconds_count 3");
        assert_eq!(line(&doc, "midge_store_bytes"), "midge_store_bytes 8192");
    }

    #[test]
    fn listeners_are_labelled_by_place_and_protocol() {
        let counters = ListenerCounters {
            accepted: 7,
            refused_max_connections: 0,
            accept_errors: 0,
            open: 2,
            tls_handshake_failures: 0,
            websocket_upgrade_failures: 0,
            proxy_header_failures: 0,
            mqtt_sn: None,
        };
        let listeners = vec![ListenerSample { index: 2, protocol: "websockets".into(), counters }];
        let doc = render(&Scrape { listeners, ..Default::default() });
        assert_eq!(
            line(&doc, "midge_listener_accepted_total{"),
            "midge_listener_accepted_total{listener=\"2\",protocol=\"websockets\"} 7"
        );
        assert!(!doc.contains("mqtt_sn_dropped"), "no MQTT-SN family without a gateway");
    }
}
