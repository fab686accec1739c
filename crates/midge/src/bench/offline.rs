//! `offline`: what queues for clients that are away cost the broker, and how fast it hands them
//! over when they return.
//!
//! K persistent subscribers (`--subscribers`, default 10,000) each connect under a client
//! identifier of their own, subscribe to one topic at `--qos` (default 1) and disconnect; the
//! broker's resident memory is then read once it has settled (the baseline). One publisher
//! sends M messages (`--messages`, default 1,000) to the topic, `--inflight` at a time, and
//! waits for every acknowledgement: each session now has M messages queued, K × M deliveries
//! in all. Once the broker's memory has settled again (the loaded reading), the report gives
//! (loaded - baseline) / (K × M): the broker's memory per queued delivery. Both readings need
//! `--broker-pid`.
//!
//! Then, unless `--no-drain`, every subscriber returns (Clean Session 0, same identifier),
//! `--wave` of them connected at once, takes and acknowledges its M messages and leaves; the
//! report counts what was delivered, lost (owed and never delivered), repeated and out of order,
//! and how long reading every queue back took. Last, every session is removed (a clean
//! connection under its identifier), read back or not.
//!
//! Connections come from 127.0.0.2 to 127.0.0.251 in turn when the broker is on loopback, as in
//! `conns`: three connections per session in a minute would run one source address out of
//! ephemeral ports.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use midge_client::codec::{TopicFilter, TopicName};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::conns::RESERVED_FILES;
use super::persistent::{
    publish_all, read_queue, remove_session, settle_rss, subscribe_and_leave, with_progress, Publication, Tally,
};
use super::report::{self, count, plural, round, row, Report};
use super::shared::Shared;
use super::traffic::connect_all;
use super::{system, Settings};

/// What `offline` found, beside the counts every [`Report`] has.
#[derive(Debug, Clone, Default)]
pub struct Offline {
    /// Sessions asked for (`--subscribers`).
    pub sessions: usize,
    /// Sessions that subscribed and left: the ones messages were queued for.
    pub subscribed: usize,
    /// Seconds to subscribe every session and leave.
    pub subscribe_seconds: f64,
    /// Messages published (`--messages`).
    pub messages: u64,
    /// From the first PUBLISH to the last acknowledgement, seconds.
    pub publish_seconds: f64,
    /// Broker CPU seconds while the messages were published and queued.
    pub publish_broker_cpu_seconds: Option<f64>,
    /// Broker resident memory once the sessions had subscribed and left, KiB.
    pub rss_baseline_kib: Option<u64>,
    /// Broker resident memory once every message was queued, KiB.
    pub rss_loaded_kib: Option<u64>,
    /// Whether both readings settled (two readings in a row within 0.5 %) before their time was
    /// up (`persistent::settle_rss`); `None` without `--broker-pid`.
    pub rss_settled: Option<bool>,
    /// Reading the queues back, unless `--no-drain`.
    pub drain: Option<ReadBack>,
}

/// How the queues were read back.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    /// Sessions connected at once (`--wave`, or fewer when the open files limit says so).
    pub wave: usize,
    /// From the first reconnection to the last new message of any session, seconds (a
    /// session that stopped receiving and waited in vain is not counted waiting).
    pub seconds: f64,
    /// Sessions that reconnected.
    pub reconnected: usize,
    /// Of them, sessions the broker no longer had (CONNACK Session Present 0).
    pub not_present: usize,
    /// Messages that came after a later one of the same session.
    pub out_of_order: u64,
    /// Broker CPU seconds while reading back.
    pub broker_cpu_seconds: Option<f64>,
}

/// Runs `offline`.
pub async fn run(settings: &Settings, open_files: u64) -> anyhow::Result<Report> {
    let settings = Arc::new(settings.clone());
    let (sessions, messages, pid) = (settings.subscribers, settings.messages, settings.broker_pid);
    let name = format!("{}/offline", settings.prefix());
    let topic = TopicName::new(&name).map_err(|error| anyhow::anyhow!("topic {name}: {error}"))?;
    let filter = TopicFilter::new(&name).map_err(|error| anyhow::anyhow!("filter {name}: {error}"))?;
    let shared = Shared::new(0, 0, 0);
    let broker_cpu = || pid.and_then(|pid| system::process_cpu_seconds(pid).ok());
    let run_started = Instant::now();
    let cpu_at_start = system::own_cpu_seconds();
    let broker_cpu_at_start = broker_cpu();
    let rss_before = pid.and_then(|pid| system::process_rss_kib(pid).ok());

    // The sessions subscribe and leave.
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let results = with_progress(
        settings.progress,
        connect_all(
            sessions,
            settings.concurrency,
            |index| subscribe_and_leave(Arc::clone(&settings), index, filter.clone()),
            |_| {
                done.fetch_add(1, Ordering::Relaxed);
            },
        ),
        || format!("offline: {} of {} sessions subscribed and away", count_of(&done), count(sessions as f64)),
    )
    .await;
    let subscribe_seconds = started.elapsed().as_secs_f64();
    let mut subscribed = Vec::with_capacity(sessions);
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => subscribed.push(index),
            Err(error) => shared.error(error),
        }
    }
    if subscribed.is_empty() {
        anyhow::bail!("no session subscribed: {}", shared.first_error().unwrap_or_default());
    }
    if settings.progress {
        report::progress(format_args!(
            "offline: {} sessions subscribed and away in {subscribe_seconds:.2} s; reading the broker's memory",
            count(subscribed.len() as f64)
        ));
    }
    let baseline = settle_rss(pid, settings.settle).await;

    // One publisher queues M messages for each of them.
    let acked = AtomicU64::new(0);
    let publish_cpu_at_start = broker_cpu();
    let publisher = format!("mb{}-qp", settings.run_id);
    let publication =
        with_progress(settings.progress, publish_all(&settings, publisher, &topic, messages, &acked), || {
            format!(
                "offline: {} of {} messages acknowledged ({} deliveries queued)",
                count(acked.load(Ordering::Relaxed) as f64),
                count(messages as f64),
                count((acked.load(Ordering::Relaxed) * subscribed.len() as u64) as f64)
            )
        })
        .await
        // A publisher that could not connect queued nothing: the sessions are still removed.
        .unwrap_or_else(|error| Publication { error: Some(error), ..Publication::default() });
    let publish_broker_cpu = broker_cpu().zip(publish_cpu_at_start).map(|(end, start)| end - start);
    if let Some(error) = &publication.error {
        shared.error(error.clone());
    }
    if settings.progress {
        report::progress(format_args!(
            "offline: {} messages acknowledged in {:.2} s; reading the broker's memory",
            count(publication.acked as f64),
            publication.seconds
        ));
    }
    let loaded = settle_rss(pid, settings.settle).await;
    let owed = publication.accepted();
    let expected = subscribed.len() as u64 * owed;

    let mut total = Tally::new(0);
    let mut lost = 0;
    let drain = if settings.drain {
        let room = usize::try_from(open_files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(1);
        let wave = settings.wave.min(room);
        if wave < settings.wave {
            eprintln!(
                "midge bench: the open files limit ({open_files}) allows {wave} sessions at once, not {}",
                settings.wave
            );
        }
        let received = Arc::new(AtomicU64::new(0));
        let finished = AtomicUsize::new(0);
        let cpu_at_start = broker_cpu();
        let started = Instant::now();
        let readings = with_progress(
            settings.progress,
            connect_all(
                subscribed.len(),
                wave,
                |index| read_queue(Arc::clone(&settings), subscribed[index], owed, Arc::clone(&received)),
                |_| {
                    finished.fetch_add(1, Ordering::Relaxed);
                },
            ),
            || {
                let received = received.load(Ordering::Relaxed) as f64;
                format!(
                    "offline: read back {} of {} deliveries ({}/s), {} of {} sessions done",
                    count(received),
                    count(expected as f64),
                    count(received / started.elapsed().as_secs_f64()),
                    count_of(&finished),
                    count(subscribed.len() as f64)
                )
            },
        )
        .await;
        let mut read_back = ReadBack { wave, ..ReadBack::default() };
        let mut last = started;
        read_back.broker_cpu_seconds = broker_cpu().zip(cpu_at_start).map(|(end, start)| end - start);
        for result in readings {
            match result {
                Ok(reading) => {
                    last = last.max(reading.last);
                    read_back.reconnected += 1;
                    read_back.not_present += usize::from(!reading.session_present);
                    total.add(&reading.tally);
                    lost += owed.saturating_sub(reading.tally.distinct);
                    if let Some(error) = reading.error {
                        shared.error(error);
                    }
                }
                Err(error) => {
                    lost += owed;
                    shared.error(error);
                }
            }
        }
        read_back.out_of_order = total.out_of_order;
        read_back.seconds = (last - started).as_secs_f64();
        Some(read_back)
    } else {
        None
    };

    // Every session is removed, with whatever it still holds.
    let removed = AtomicUsize::new(0);
    let results = with_progress(
        settings.progress,
        connect_all(
            sessions,
            settings.concurrency,
            |index| remove_session(Arc::clone(&settings), index),
            |_| {
                removed.fetch_add(1, Ordering::Relaxed);
            },
        ),
        || format!("offline: {} of {} sessions removed", count_of(&removed), count(sessions as f64)),
    )
    .await;
    for error in results.into_iter().filter_map(Result::err) {
        shared.error(error);
    }

    let offline = Offline {
        sessions,
        subscribed: subscribed.len(),
        subscribe_seconds,
        messages,
        publish_seconds: publication.seconds,
        publish_broker_cpu_seconds: publish_broker_cpu,
        rss_baseline_kib: baseline.map(|(kib, _)| kib),
        rss_loaded_kib: loaded.map(|(kib, _)| kib),
        rss_settled: baseline.zip(loaded).map(|((_, baseline), (_, loaded))| baseline && loaded),
        drain,
    };
    let own_cpu = system::own_cpu_seconds() - cpu_at_start;
    Ok(Report {
        window_seconds: run_started.elapsed().as_secs_f64(),
        sent_total: publication.sent,
        acked_total: publication.acked,
        unacknowledged: publication.unacknowledged,
        refused: publication.refused,
        expected_total: expected,
        delivered_total: total.received,
        lost,
        duplicates: total.duplicates,
        foreign: total.foreign,
        bench_cpu_seconds: own_cpu,
        bench_cpu_total_seconds: own_cpu,
        broker_cpu_seconds: broker_cpu().zip(broker_cpu_at_start).map(|(end, start)| end - start),
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: pid.and_then(|pid| system::process_rss_kib(pid).ok()),
        errors: shared.errors(),
        first_error: shared.first_error(),
        offline: Some(offline),
        ..Report::default()
    })
}

impl Offline {
    /// Broker memory per queued delivery, bytes: (loaded - baseline) / (K × M).
    pub fn bytes_per_delivery(&self, report: &Report) -> Option<f64> {
        let (baseline, loaded) = (self.rss_baseline_kib?, self.rss_loaded_kib?);
        (report.expected_total > 0).then(|| (loaded as f64 - baseline as f64) * 1024.0 / report.expected_total as f64)
    }

    /// Broker memory per offline session with its subscription and an empty queue, bytes:
    /// (baseline - before) / K.
    pub fn bytes_per_session(&self, report: &Report) -> Option<f64> {
        let (before, baseline) = (report.broker_rss_before_kib?, self.rss_baseline_kib?);
        (self.subscribed > 0).then(|| (baseline as f64 - before as f64) * 1024.0 / self.subscribed as f64)
    }

    /// The fields of the JSON report. Without a read back, what was delivered and lost is not
    /// known: null.
    pub fn to_json(&self, report: &Report) -> Value {
        let per_second = |count: f64, seconds: f64| (seconds > 0.0).then(|| round(count / seconds, 1));
        let mut fields = json!({
            "sessions": self.sessions,
            "subscribed": self.subscribed,
            "subscribe_s": round(self.subscribe_seconds, 3),
            "messages": self.messages,
            "deliveries_queued": report.expected_total,
            "publish_s": round(self.publish_seconds, 3),
            "publish_per_s": per_second(report.acked_total as f64, self.publish_seconds),
            "queued_per_s": per_second(report.expected_total as f64, self.publish_seconds),
            "broker_cpu_publish_s": self.publish_broker_cpu_seconds.map(|seconds| round(seconds, 3)),
            "rss_baseline_kib": self.rss_baseline_kib,
            "rss_loaded_kib": self.rss_loaded_kib,
            "rss_settled": self.rss_settled,
            "bytes_per_queued_delivery": self.bytes_per_delivery(report).map(|bytes| round(bytes, 2)),
            "rss_per_session_bytes": self.bytes_per_session(report).map(|bytes| round(bytes, 1)),
            "drained": self.drain.is_some(),
        });
        let drain = match &self.drain {
            Some(drain) => json!({
                "wave": drain.wave,
                "drain_s": round(drain.seconds, 3),
                "drain_per_s": per_second(report.delivered_total as f64, drain.seconds),
                "sessions_reconnected": drain.reconnected,
                "sessions_not_present": drain.not_present,
                "out_of_order": drain.out_of_order,
                "broker_cpu_drain_s": drain.broker_cpu_seconds.map(|seconds| round(seconds, 3)),
            }),
            None => json!({ "delivered_total": null, "lost": null, "duplicates": null }),
        };
        if let (Value::Object(fields), Value::Object(drain)) = (&mut fields, drain) {
            fields.extend(drain);
        }
        fields
    }

    /// The rows of the table.
    pub fn table(&self, report: &Report, out: &mut String) {
        row(
            out,
            "sessions",
            format!(
                "{} of {} subscribed and left in {:.2} s",
                count(self.subscribed as f64),
                count(self.sessions as f64),
                self.subscribe_seconds
            ),
        );
        let rate = if self.publish_seconds > 0.0 { report.acked_total as f64 / self.publish_seconds } else { 0.0 };
        row(
            out,
            "published",
            format!(
                "{} message{} in {:.2} s ({} msg/s): {} acknowledged, {} unacknowledged, {} refused",
                count(report.sent_total as f64),
                plural(report.sent_total as usize),
                self.publish_seconds,
                count(rate),
                count(report.acked_total as f64),
                report.unacknowledged,
                report.refused
            ),
        );
        row(
            out,
            "queued",
            format!(
                "{} deliveries ({} sessions × {} messages), {} deliveries/s",
                count(report.expected_total as f64),
                count(self.subscribed as f64),
                count((report.acked_total - report.refused) as f64),
                count(rate * self.subscribed as f64)
            ),
        );
        if let (Some(baseline), Some(loaded)) = (self.rss_baseline_kib, self.rss_loaded_kib) {
            let per_delivery =
                self.bytes_per_delivery(report).map_or_else(|| "–".to_owned(), |bytes| format!("{bytes:.1}"));
            row(
                out,
                "broker memory",
                format!(
                    "{} KiB with the sessions away, {} KiB with their queues: {per_delivery} bytes per queued \
                     delivery{}",
                    count(baseline as f64),
                    count(loaded as f64),
                    if self.rss_settled == Some(false) { " (not settled)" } else { "" }
                ),
            );
            if let Some(bytes) = self.bytes_per_session(report) {
                row(out, "per session", format!("{} bytes resident per offline session, queue empty", count(bytes)));
            }
        } else {
            row(out, "broker memory", "not read (give --broker-pid)".to_owned());
        }
        let Some(drain) = &self.drain else {
            row(out, "read back", "no (--no-drain)".to_owned());
            return;
        };
        let rate = if drain.seconds > 0.0 { report.delivered_total as f64 / drain.seconds } else { 0.0 };
        row(
            out,
            "read back",
            format!(
                "{} sessions, {} at a time, in {:.2} s: {} deliveries/s",
                count(drain.reconnected as f64),
                count(drain.wave as f64),
                drain.seconds,
                count(rate)
            ),
        );
        row(
            out,
            "delivered",
            format!("{} of {} owed", count(report.delivered_total as f64), count(report.expected_total as f64)),
        );
        row(out, "lost", format!("{} acknowledged deliveries never delivered", count(report.lost as f64)));
        row(out, "duplicates", format!("{} (out of order: {})", report.duplicates, drain.out_of_order));
        if drain.not_present > 0 {
            row(out, "not resumed", format!("{} sessions the broker no longer had", drain.not_present));
        }
    }
}

fn count_of(counter: &AtomicUsize) -> String {
    count(counter.load(Ordering::Relaxed) as f64)
}
