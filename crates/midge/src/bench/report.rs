//! What a run found, printed as a table for people or as one JSON object (`--json`) for
//! scripts, and the progress line written to stderr once a second while it runs.

use std::fmt::Write as _;
use std::io::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::drain::Drain;
use super::offline::Offline;
use super::Settings;

/// Percentiles of end-to-end latency, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Messages measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `histogram`; `None` when it is empty.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Self> {
        (!histogram.is_empty()).then(|| Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        })
    }

    /// As JSON: count, p50, p90, p99, p99_9, max, mean.
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p99_9": self.p999,
            "max": self.max,
            "mean": round(self.mean, 1),
        })
    }

    /// As a table cell: "p50 12  p90 15  p99 30  p99.9 80  max 95  (1,000 messages)".
    pub fn to_text(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} messages)",
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max,
            count(self.count as f64)
        )
    }
}

/// Results of `conns`.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    /// Connections asked for (`--connections`).
    pub target: usize,
    /// Connections attempted: the target, or fewer when the open files limit does not allow it.
    pub attempted: usize,
    /// Connected and subscribed.
    pub connected: usize,
    /// Attempts that failed, refusals included.
    pub failed: usize,
    /// Attempts the broker refused in its CONNACK (bad user name or password, not authorised).
    pub refused: usize,
    /// Seconds from the first connection attempt to the last SUBACK.
    pub connect_seconds: f64,
    /// The bench's open files limit after raising it.
    pub open_files_limit: u64,
    /// Source addresses the connections were spread over.
    pub source_addresses: usize,
}

/// Everything a run measured. Message counts of the measurement window exclude the warm-up;
/// `*_total` counts cover the whole run, drain included.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seconds measured (the window after the warm-up).
    pub window_seconds: f64,
    /// Messages published in the window.
    pub sent: u64,
    /// Messages received by subscribers in the window.
    pub delivered: u64,
    /// Messages published in the whole run.
    pub sent_total: u64,
    /// QoS 1/2: messages the broker acknowledged (PUBACK / PUBCOMP).
    pub acked_total: u64,
    /// QoS 1/2: messages still unacknowledged when the publishers gave up waiting.
    pub unacknowledged: u64,
    /// QoS 1/2: acknowledgements with a failure reason code.
    pub refused: u64,
    /// Deliveries the run should have seen: each publisher's messages times the subscribers
    /// that hear it.
    pub expected_total: u64,
    /// Deliveries seen.
    pub delivered_total: u64,
    /// QoS 1/2: acknowledged messages a connected subscriber never received (sequence gaps
    /// and missing tails). QoS 0: messages sent and not delivered, which QoS 0 allows.
    pub lost: u64,
    /// Messages received again (sequence number already seen).
    pub duplicates: u64,
    /// Messages that arrived after later ones from the same publisher (MQTT-SN datagrams sent
    /// again); not lost, not duplicates.
    pub out_of_order: u64,
    /// Messages without a bench header (another publisher on the topic).
    pub foreign: u64,
    /// End-to-end latency of messages received in the window.
    pub latency: Option<Latency>,
    /// The paced publisher's worst lateness against its schedule, in microseconds (`latency`).
    pub publisher_late_max_us: Option<u64>,
    /// CPU seconds the bench used in the window.
    pub bench_cpu_seconds: f64,
    /// CPU seconds the bench used in the whole run.
    pub bench_cpu_total_seconds: f64,
    /// CPU seconds the broker used in the window (`--broker-pid`).
    pub broker_cpu_seconds: Option<f64>,
    /// Broker resident memory before the clients connected, KiB (`--broker-pid`).
    pub broker_rss_before_kib: Option<u64>,
    /// Broker resident memory at the end of the window, KiB (`--broker-pid`).
    pub broker_rss_after_kib: Option<u64>,
    /// Connections lost or refused during the run.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
    /// `conns` only.
    pub connections: Option<Connections>,
    /// `offline` only.
    pub offline: Option<Offline>,
    /// `drain` only.
    pub drain: Option<Drain>,
}

impl Report {
    fn per_second(&self, count: u64) -> f64 {
        if self.window_seconds > 0.0 {
            count as f64 / self.window_seconds
        } else {
            0.0
        }
    }

    /// Broker resident memory per connection in bytes (`conns` with `--broker-pid`).
    pub fn rss_per_connection(&self) -> Option<f64> {
        let connections = self.connections.as_ref()?;
        let (before, after) = (self.broker_rss_before_kib?, self.broker_rss_after_kib?);
        (connections.connected > 0).then(|| (after as f64 - before as f64) * 1024.0 / connections.connected as f64)
    }

    /// Whether this is a report of `offline` or `drain`, whose counts cover the whole run
    /// (there is no measurement window).
    fn is_queue(&self) -> bool {
        self.offline.is_some() || self.drain.is_some()
    }

    /// The report as one JSON object.
    pub fn to_json(&self, settings: &Settings) -> Value {
        if let Some(offline) = &self.offline {
            return self.queue_json(settings, offline.to_json(self));
        }
        if let Some(drain) = &self.drain {
            return self.queue_json(settings, drain.to_json(self));
        }
        let mut object = json!({
            "scenario": settings.scenario.name(),
            "host": settings.host,
            "port": settings.port,
            "tls": uses_tls(&settings.transport),
            "username": settings.username,
            "version": version_name(settings),
            "qos": settings.qos as u8,
            "size": settings.size,
            "publishers": settings.publishers,
            "subscribers": settings.subscribers,
            "rate": settings.rate,
            "inflight": settings.inflight,
            "window": settings.window,
            "persistent": settings.persistent,
            "warmup_s": settings.warmup.as_secs_f64(),
            "duration_s": settings.duration.as_secs_f64(),
            "window_s": round(self.window_seconds, 3),
            "sent": self.sent,
            "delivered": self.delivered,
            "sent_per_s": round(self.per_second(self.sent), 1),
            "delivered_per_s": round(self.per_second(self.delivered), 1),
            "sent_total": self.sent_total,
            "acked_total": self.acked_total,
            "unacknowledged": self.unacknowledged,
            "refused": self.refused,
            "expected_total": self.expected_total,
            "delivered_total": self.delivered_total,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "latency_us": self.latency.as_ref().map(Latency::to_json),
            "publisher_late_max_us": self.publisher_late_max_us,
            "bench_cpu_s": round(self.bench_cpu_seconds, 3),
            "bench_cpu_total_s": round(self.bench_cpu_total_seconds, 3),
            "broker_pid": settings.broker_pid,
            "broker_cpu_s": self.broker_cpu_seconds.map(|seconds| round(seconds, 3)),
            "delivered_per_broker_cpu_s": self.broker_cpu_seconds
                .filter(|&seconds| seconds > 0.0 && self.connections.is_none())
                .map(|seconds| round(self.delivered as f64 / seconds, 1)),
            "broker_rss_before_kib": self.broker_rss_before_kib,
            "broker_rss_after_kib": self.broker_rss_after_kib,
            "errors": self.errors,
            "first_error": self.first_error,
        });
        if let Some(connections) = &self.connections {
            let rate = if connections.connect_seconds > 0.0 {
                connections.connected as f64 / connections.connect_seconds
            } else {
                0.0
            };
            let fields = json!({
                "connections": connections.target,
                "attempted": connections.attempted,
                "connected": connections.connected,
                "failed": connections.failed,
                "refused_connects": connections.refused,
                "target_reached": connections.connected == connections.target,
                "connect_s": round(connections.connect_seconds, 3),
                "connect_per_s": round(rate, 1),
                "rss_per_connection_bytes": self.rss_per_connection().map(|bytes| round(bytes, 1)),
                "open_files_limit": connections.open_files_limit,
                "source_addresses": connections.source_addresses,
            });
            if let (Value::Object(object), Value::Object(fields)) = (&mut object, fields) {
                object.extend(fields);
            }
        }
        object["websocket"] = json!(uses_websocket(&settings.transport));
        object["out_of_order"] = json!(self.out_of_order);
        object["mqtt_sn_port"] = json!(settings.sn_port);
        object
    }

    /// The JSON object of `offline` and `drain`: the run's settings and the counts every
    /// report has (published, acknowledged, expected, delivered, lost, side by side), then the
    /// scenario's `fields` (which may replace a count it could not measure with null), then
    /// CPU, memory and errors.
    fn queue_json(&self, settings: &Settings, fields: Value) -> Value {
        let mut object = json!({
            "scenario": settings.scenario.name(),
            "host": settings.host,
            "port": settings.port,
            "tls": uses_tls(&settings.transport),
            "username": settings.username,
            "version": version_name(settings),
            "qos": settings.qos as u8,
            "size": settings.size,
            "subscribers": settings.subscribers,
            "inflight": settings.inflight,
            "sent_total": self.sent_total,
            "acked_total": self.acked_total,
            "unacknowledged": self.unacknowledged,
            "refused": self.refused,
            "expected_total": self.expected_total,
            "delivered_total": self.delivered_total,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
        });
        let tail = json!({
            "run_s": round(self.window_seconds, 3),
            "bench_cpu_total_s": round(self.bench_cpu_total_seconds, 3),
            "broker_pid": settings.broker_pid,
            "broker_cpu_s": self.broker_cpu_seconds.map(|seconds| round(seconds, 3)),
            "broker_rss_before_kib": self.broker_rss_before_kib,
            "broker_rss_after_kib": self.broker_rss_after_kib,
            "errors": self.errors,
            "first_error": self.first_error,
        });
        for part in [fields, tail] {
            if let (Value::Object(object), Value::Object(part)) = (&mut object, part) {
                object.extend(part);
            }
        }
        object["websocket"] = json!(uses_websocket(&settings.transport));
        object
    }

    /// The report as a table.
    pub fn to_table(&self, settings: &Settings) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "midge bench {}: {}", settings.scenario.name(), describe(settings));
        if let Some(connections) = &self.connections {
            self.connections_table(&mut out, connections);
        } else if let Some(offline) = &self.offline {
            offline.table(self, &mut out);
        } else if let Some(drain) = &self.drain {
            drain.table(self, &mut out);
        } else {
            self.traffic_table(&mut out, settings);
        }
        let window = if self.window_seconds > 0.0 { self.window_seconds } else { 1.0 };
        let bench_cpu = if self.is_queue() {
            format!(
                "{:.2} s in all ({:.0} % of one core over the {:.1} s run)",
                self.bench_cpu_total_seconds,
                100.0 * self.bench_cpu_total_seconds / window,
                self.window_seconds
            )
        } else {
            format!(
                "{:.2} s in the window ({:.0} % of one core), {:.2} s in all",
                self.bench_cpu_seconds,
                100.0 * self.bench_cpu_seconds / window,
                self.bench_cpu_total_seconds
            )
        };
        row(&mut out, "bench CPU", bench_cpu);
        if let Some(seconds) = self.broker_cpu_seconds {
            let mut text = format!("{seconds:.2} s ({:.0} % of one core)", 100.0 * seconds / window);
            if self.connections.is_none() && !self.is_queue() && seconds > 0.0 {
                let _ =
                    write!(text, ", {} delivered msg per broker CPU-second", count(self.delivered as f64 / seconds));
            }
            row(&mut out, "broker CPU", text);
        }
        if let (Some(before), Some(after)) = (self.broker_rss_before_kib, self.broker_rss_after_kib) {
            row(
                &mut out,
                "broker RSS",
                format!("{} KiB before, {} KiB after", count(before as f64), count(after as f64)),
            );
        }
        row(&mut out, "errors", self.errors.to_string());
        if let Some(error) = &self.first_error {
            row(&mut out, "first error", error.clone());
        }
        out
    }

    fn traffic_table(&self, out: &mut String, settings: &Settings) {
        row(
            out,
            "measured",
            format!("{:.2} s after a {:.1} s warm-up", self.window_seconds, settings.warmup.as_secs_f64()),
        );
        row(out, "sent", format!("{} msg/s ({} messages)", count(self.per_second(self.sent)), count(self.sent as f64)));
        row(
            out,
            "delivered",
            format!("{} msg/s ({} messages)", count(self.per_second(self.delivered)), count(self.delivered as f64)),
        );
        if settings.qos as u8 > 0 {
            row(
                out,
                "acknowledged",
                format!(
                    "{} of {} sent, {} unacknowledged, {} refused",
                    count(self.acked_total as f64),
                    count(self.sent_total as f64),
                    self.unacknowledged,
                    self.refused
                ),
            );
            row(out, "lost", format!("{} acknowledged messages never delivered", self.lost));
        } else {
            let share =
                if self.expected_total > 0 { 100.0 * self.lost as f64 / self.expected_total as f64 } else { 0.0 };
            row(
                out,
                "not delivered",
                format!(
                    "{} of {} expected ({share:.3} %; QoS 0 may drop)",
                    count(self.lost as f64),
                    count(self.expected_total as f64)
                ),
            );
        }
        if self.out_of_order > 0 {
            row(out, "duplicates", format!("{} (out of order: {})", self.duplicates, self.out_of_order));
        } else {
            row(out, "duplicates", self.duplicates.to_string());
        }
        if let Some(latency) = &self.latency {
            row(out, "latency µs", latency.to_text());
        }
        if let Some(late) = self.publisher_late_max_us {
            row(out, "publisher late", format!("at most {late} µs behind its schedule"));
        }
    }

    fn connections_table(&self, out: &mut String, connections: &Connections) {
        let rate = if connections.connect_seconds > 0.0 {
            connections.connected as f64 / connections.connect_seconds
        } else {
            0.0
        };
        row(
            out,
            "connected",
            format!(
                "{} of {} (attempted {}, failed {}, refused {}) over {} source addresses",
                count(connections.connected as f64),
                count(connections.target as f64),
                count(connections.attempted as f64),
                connections.failed,
                connections.refused,
                connections.source_addresses
            ),
        );
        if connections.attempted < connections.target {
            row(out, "not reached", format!("the open files limit is {}", connections.open_files_limit));
        }
        row(
            out,
            "connect rate",
            format!("{} conn/s ({:.2} s, CONNECT to SUBACK)", count(rate), connections.connect_seconds),
        );
        if let Some(bytes) = self.rss_per_connection() {
            row(out, "broker memory", format!("{} bytes resident per connection", count(bytes)));
        }
    }
}

/// Writes the progress line: what phase, how fast, so far.
pub fn progress(line: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_fmt(line);
    let _ = stderr.write_all(b"\n");
}

/// "1 publisher -> 100 subscribers, QoS 0, 64 B, MQTT 3.1.1, 127.0.0.1:1883".
fn describe(settings: &Settings) -> String {
    let qos = settings.qos as u8;
    let clients = match settings.scenario {
        super::Scenario::Conns => format!("{} idle subscribed connections", settings.connections),
        super::Scenario::Offline => format!(
            "{} persistent subscriber{}, {} message{} queued for each while away",
            count(settings.subscribers as f64),
            plural(settings.subscribers),
            count(settings.messages as f64),
            plural(settings.messages as usize)
        ),
        super::Scenario::Drain => format!(
            "{} message{} queued for 1 persistent subscriber, read back beside a QoS 0 canary at {} msg/s",
            count(settings.messages as f64),
            plural(settings.messages as usize),
            count(settings.rate.unwrap_or_default())
        ),
        super::Scenario::Pairs => format!("{} publisher/subscriber pairs", settings.publishers),
        _ => format!(
            "{} publisher{} -> {} subscriber{}",
            settings.publishers,
            plural(settings.publishers),
            settings.subscribers,
            plural(settings.subscribers)
        ),
    };
    let mut text = format!("{clients}, QoS {qos}, {} B, MQTT {}", settings.size, version_name(settings));
    let queues = matches!(settings.scenario, super::Scenario::Offline | super::Scenario::Drain);
    if let Some(rate) = settings.rate.filter(|_| !queues) {
        let _ = write!(text, ", {} msg/s", count(rate));
    }
    if settings.persistent && !queues {
        text.push_str(", persistent subscribers");
    }
    let _ = write!(text, ", {}:{}", settings.host, settings.port);
    if !settings.subscribe_at.is_empty() {
        let at: Vec<String> = settings.subscribe_at.iter().map(|(host, port)| format!("{host}:{port}")).collect();
        let _ = write!(text, " (subscribers at {})", at.join(", "));
    }
    match &settings.transport {
        midge_client::Transport::WebSocket { path, tls } => {
            let _ = write!(text, " over a WebSocket ({path})");
            if tls.is_some() {
                text.push_str(" over TLS (full handshakes)");
            }
        }
        midge_client::Transport::Tcp => {}
        _ => text.push_str(" over TLS (full handshakes)"),
    }
    if let Some(port) = settings.sn_port {
        let _ = write!(text, ", publishers over MQTT-SN to {}:{port} (UDP)", settings.host);
    }
    text
}

/// Whether `transport` is a WebSocket.
fn uses_websocket(transport: &midge_client::Transport) -> bool {
    matches!(transport, midge_client::Transport::WebSocket { .. })
}

/// Whether `transport` runs over TLS.
fn uses_tls(transport: &midge_client::Transport) -> bool {
    match transport {
        midge_client::Transport::Tcp => false,
        midge_client::Transport::WebSocket { tls, .. } => tls.is_some(),
        _ => true,
    }
}

fn version_name(settings: &Settings) -> &'static str {
    if settings.version.is_v5() {
        "5"
    } else {
        "3.1.1"
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One row of a table: a label and its value.
pub(super) fn row(out: &mut String, label: &str, value: String) {
    let _ = writeln!(out, "  {label:<15} {value}");
}

/// `value` rounded to `decimals` decimal places, for JSON.
pub(super) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A count with thousands separators ("1,234,567"), or with a suffix above ten million
/// ("51.2M").
pub fn count(value: f64) -> String {
    if value >= 10e6 {
        return format!("{:.2}M", value / 1e6);
    }
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_easily() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(51_234_000.0), "51.23M");
    }
}
