//! `drain`: one long queue read back when its client returns, and what that does to the other
//! traffic of the broker meanwhile.
//!
//! A persistent subscriber subscribes to a topic at `--qos` (default 1) and disconnects; one
//! publisher sends N messages (`--messages`, default 100,000) to it, `--inflight` at a time,
//! and waits for every acknowledgement. Then a canary pair starts on a topic of its own: the
//! fixed-rate publisher of `latency` (`--rate`, default 1,000 msg/s, QoS 0, on a thread of its
//! own, each message stamped when written) and a subscriber that times every message. After
//! `--warmup`, the canary's latency is measured for `--duration` (default 2 s): the baseline.
//! Then the persistent subscriber returns (Clean Session 0), takes and acknowledges all N
//! messages, each checked (missing, repeated, out of order), and the canary's latency while it
//! does is measured apart. The report gives the time to read the queue back and the canary's
//! percentiles before and during it, side by side. The session is removed at the end.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use midge_client::codec::{QoS, TopicFilter, TopicName};
use midge_client::{Client, Event};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout, Instant};

use super::payload;
use super::persistent::{publish_all, read_queue, remove_session, subscribe_and_leave, with_progress, Reading};
use super::report::{self, count, round, row, Latency, Report};
use super::shared::{Phase, Shared};
use super::traffic::{subscribe, subscriber_options, ACK_DRAIN, CLOSE_TIMEOUT, HISTOGRAM_MAX_US, SETUP_TIMEOUT};
use super::{paced, system, Settings};

/// How long the canary's subscriber may take, at most, to receive what its publisher sent
/// before it stopped.
const CANARY_DRAIN: Duration = Duration::from_secs(2);

/// What `drain` found, beside the counts every [`Report`] has.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Messages published (`--messages`).
    pub messages: u64,
    /// From the first PUBLISH to the last acknowledgement, seconds.
    pub publish_seconds: f64,
    /// Whether the broker still had the session when its client returned.
    pub session_present: bool,
    /// From the returning CONNECT to the last new message, seconds.
    pub seconds: f64,
    /// From the returning CONNECT to the first message.
    pub first_message: Option<Duration>,
    /// Messages that came after a later one.
    pub out_of_order: u64,
    /// Broker CPU seconds while the queue was read back.
    pub broker_cpu_seconds: Option<f64>,
    /// The canary's rate, msg/s.
    pub canary_rate: f64,
    /// Seconds the canary's baseline was measured.
    pub baseline_seconds: f64,
    /// The canary's latency before the subscriber returned.
    pub baseline: Option<Latency>,
    /// The canary's latency while the queue was read back.
    pub during: Option<Latency>,
    /// Canary messages sent.
    pub canary_sent: u64,
    /// Canary messages received.
    pub canary_delivered: u64,
    /// Canary messages sent and never received (QoS 0 allows it).
    pub canary_lost: u64,
    /// Canary messages received twice.
    pub canary_duplicates: u64,
    /// The canary publisher's worst lateness against its schedule, µs.
    pub publisher_late_max_us: Option<u64>,
}

/// Which histogram a canary message goes to, by when it arrives.
mod window {
    /// Warming up: not measured.
    pub const WARMUP: u8 = 0;
    /// The baseline.
    pub const BASELINE: u8 = 1;
    /// The queue being read back.
    pub const DRAIN: u8 = 2;
    /// After: not measured.
    pub const AFTER: u8 = 3;
}

/// Runs `drain`, and removes its persistent session whatever happened.
pub async fn run(settings: &Settings) -> anyhow::Result<Report> {
    let settings = Arc::new(settings.clone());
    let outcome = measure(&settings).await;
    let removed = remove_session(Arc::clone(&settings), 0).await;
    let mut report = outcome?;
    if let Err(error) = removed {
        report.errors += 1;
        report.first_error.get_or_insert(error);
    }
    Ok(report)
}

async fn measure(settings: &Arc<Settings>) -> anyhow::Result<Report> {
    let prefix = settings.prefix();
    let topic = |name: String| TopicName::new(&name).map_err(|error| anyhow::anyhow!("topic {name}: {error}"));
    let filter = |name: String| TopicFilter::new(&name).map_err(|error| anyhow::anyhow!("filter {name}: {error}"));
    let (queue, canary) = (format!("{prefix}/drain/queue"), format!("{prefix}/drain/canary"));
    let pid = settings.broker_pid;
    let broker_cpu = || pid.and_then(|pid| system::process_cpu_seconds(pid).ok());
    let run_started = Instant::now();
    let cpu_at_start = system::own_cpu_seconds();
    let broker_cpu_at_start = broker_cpu();
    let rss_before = pid.and_then(|pid| system::process_rss_kib(pid).ok());
    let shared = Arc::new(Shared::new(1, 1, 1));

    // The queue: a subscriber that leaves, then N messages for it.
    subscribe_and_leave(Arc::clone(settings), 0, filter(queue.clone())?).await.map_err(anyhow::Error::msg)?;
    let acked = AtomicU64::new(0);
    let messages = settings.messages;
    let publication = with_progress(
        settings.progress,
        publish_all(settings, format!("mb{}-qp", settings.run_id), &topic(queue)?, messages, &acked),
        || {
            format!(
                "drain: {} of {} messages acknowledged",
                count(acked.load(Ordering::Relaxed) as f64),
                count(messages as f64)
            )
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    if let Some(error) = &publication.error {
        shared.error(error.clone());
    }
    if settings.progress {
        report::progress(format_args!(
            "drain: {} messages queued in {:.2} s; starting the canary",
            count(publication.accepted() as f64),
            publication.seconds
        ));
    }

    // The canary: a paced QoS 0 publisher and a subscriber timing every message.
    let canary_settings = Arc::new(Settings {
        qos: QoS::AtMostOnce,
        publishers: 1,
        subscribers: 1,
        count: None,
        persistent: false,
        ..Settings::clone(settings)
    });
    let mut client = Client::connect(subscriber_options(&canary_settings, 0))
        .await
        .map_err(|error| anyhow::anyhow!("canary subscriber: {error}"))?;
    subscribe(&mut client, filter(canary.clone())?, QoS::AtMostOnce)
        .await
        .map_err(|error| anyhow::anyhow!("canary subscriber: {error}"))?;
    let current = Arc::new(AtomicU8::new(window::WARMUP));
    let listener = tokio::spawn(listen(client, Arc::clone(&current), Arc::clone(&shared)));
    let (ready, ready_rx) = oneshot::channel();
    let (result, result_rx) = oneshot::channel();
    paced::spawn(Arc::clone(&canary_settings), 0, topic(canary)?, Arc::clone(&shared), ready, result)?;
    match timeout(SETUP_TIMEOUT, ready_rx).await {
        Ok(Ok(Ok(()))) => {}
        outcome => {
            shared.phases.set(Phase::Done);
            let error = match outcome {
                Ok(Ok(Err(error))) => error,
                _ => format!("the canary publisher did not connect within {} s", SETUP_TIMEOUT.as_secs()),
            };
            anyhow::bail!(error)
        }
    }
    shared.phases.set(Phase::Running);
    if settings.progress {
        report::progress(format_args!(
            "drain: canary at {} msg/s; {:.1} s of warm-up, then {:.1} s of baseline",
            count(canary_settings.rate.unwrap_or_default()),
            settings.warmup.as_secs_f64(),
            settings.duration.as_secs_f64()
        ));
    }
    sleep(settings.warmup).await;
    current.store(window::BASELINE, Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let baseline_started = Instant::now();
    sleep(settings.duration).await;
    let baseline_seconds = baseline_started.elapsed().as_secs_f64();

    // The subscriber returns and reads its queue back.
    current.store(window::DRAIN, Ordering::Relaxed);
    let drain_cpu_at_start = broker_cpu();
    let received = Arc::new(AtomicU64::new(0));
    let owed = publication.accepted();
    let drain_started = Instant::now();
    let reading =
        with_progress(settings.progress, read_queue(Arc::clone(settings), 0, owed, Arc::clone(&received)), || {
            let received = received.load(Ordering::Relaxed) as f64;
            format!(
                "drain: read back {} of {} ({} msg/s)",
                count(received),
                count(owed as f64),
                count(received / drain_started.elapsed().as_secs_f64())
            )
        })
        .await;
    current.store(window::AFTER, Ordering::Relaxed);
    shared.measuring.store(false, Ordering::Relaxed);
    let drain_broker_cpu = broker_cpu().zip(drain_cpu_at_start).map(|(end, start)| end - start);

    // The canary stops; its subscriber takes what is still on its way.
    shared.phases.set(Phase::Stopping);
    let published = timeout(ACK_DRAIN + CLOSE_TIMEOUT * 2, result_rx).await.ok().and_then(Result::ok);
    let canary_sent = shared.sent[0].get();
    let deadline = Instant::now() + CANARY_DRAIN;
    while shared.delivered[0].get() < canary_sent && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    shared.phases.set(Phase::Done);
    let heard = timeout(CLOSE_TIMEOUT * 3, listener).await.ok().and_then(Result::ok);
    if heard.is_none() {
        shared.error("the canary subscriber did not finish".into());
    }

    let reading = match reading {
        Ok(reading) => Some(reading),
        Err(error) => {
            shared.error(error);
            None
        }
    };
    if let Some(error) = reading.as_ref().and_then(|reading| reading.error.clone()) {
        shared.error(error);
    }
    let tally = reading.as_ref().map(|reading: &Reading| reading.tally.clone());
    let heard = heard.unwrap_or_default();
    let drain = Drain {
        messages,
        publish_seconds: publication.seconds,
        session_present: reading.as_ref().is_some_and(|reading| reading.session_present),
        seconds: reading.as_ref().map_or(0.0, |reading| reading.seconds),
        first_message: reading.as_ref().and_then(|reading| reading.first_message),
        out_of_order: tally.as_ref().map_or(0, |tally| tally.out_of_order),
        broker_cpu_seconds: drain_broker_cpu,
        canary_rate: canary_settings.rate.unwrap_or_default(),
        baseline_seconds,
        baseline: heard.baseline.as_ref().and_then(Latency::from_histogram),
        during: during_read_back(&heard.during, reading.as_ref().map(|reading| reading.last)),
        canary_sent,
        canary_delivered: heard.received,
        canary_lost: heard.gaps + canary_sent.saturating_sub(u64::from(heard.next)),
        canary_duplicates: heard.duplicates,
        publisher_late_max_us: published.and_then(|published| published.late_max_us),
    };
    let own_cpu = system::own_cpu_seconds() - cpu_at_start;
    Ok(Report {
        window_seconds: run_started.elapsed().as_secs_f64(),
        sent_total: publication.sent,
        acked_total: publication.acked,
        unacknowledged: publication.unacknowledged,
        refused: publication.refused,
        expected_total: owed,
        delivered_total: tally.as_ref().map_or(0, |tally| tally.received),
        lost: owed.saturating_sub(tally.as_ref().map_or(0, |tally| tally.distinct)),
        duplicates: tally.as_ref().map_or(0, |tally| tally.duplicates),
        foreign: tally.as_ref().map_or(0, |tally| tally.foreign),
        bench_cpu_seconds: own_cpu,
        bench_cpu_total_seconds: own_cpu,
        broker_cpu_seconds: broker_cpu().zip(broker_cpu_at_start).map(|(end, start)| end - start),
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: pid.and_then(|pid| system::process_rss_kib(pid).ok()),
        errors: shared.errors(),
        first_error: shared.first_error(),
        drain: Some(drain),
        ..Report::default()
    })
}

/// The canary's latency while the queue was read back: of the messages that arrived up to
/// `end`, the last new message of the queue (a read back that stopped waiting for messages
/// that never came is not measured waiting).
fn during_read_back(samples: &[(Instant, u64)], end: Option<Instant>) -> Option<Latency> {
    let end = end.unwrap_or_else(Instant::now);
    let mut histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).ok()?;
    for &(_, micros) in samples.iter().filter(|(at, _)| *at <= end) {
        histogram.saturating_record(micros);
    }
    Latency::from_histogram(&histogram)
}

/// What the canary's subscriber heard.
#[derive(Debug, Default)]
struct Heard {
    /// Latency of the messages received during the baseline, µs.
    baseline: Option<Histogram<u64>>,
    /// When each message received while the queue was read back arrived, and its latency, µs:
    /// the canary's rate times the read back's length, 16 bytes each.
    during: Vec<(Instant, u64)>,
    /// Messages received.
    received: u64,
    /// The next sequence number expected.
    next: u32,
    /// Messages skipped over.
    gaps: u64,
    /// Messages received again.
    duplicates: u64,
}

/// The canary's subscriber: times every message and files it by the window it arrives in,
/// until the run is done.
async fn listen(mut client: Client, current: Arc<AtomicU8>, shared: Arc<Shared>) -> Heard {
    let mut heard = Heard::default();
    let Ok(mut baseline) = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3) else {
        shared.error("the canary's histogram could not be made".into());
        return heard;
    };
    {
        let done = shared.phases.reached(Phase::Done);
        tokio::pin!(done);
        loop {
            let event = tokio::select! {
                biased;
                event = client.poll() => event,
                () = &mut done => break,
            };
            match event {
                Ok(Event::Message(message)) => {
                    heard.received += 1;
                    shared.delivered[0].set(heard.received);
                    let Some(header) = payload::parse(&message.payload) else { continue };
                    let micros = (payload::now_ns().saturating_sub(header.sent_ns) / 1000).max(1);
                    match current.load(Ordering::Relaxed) {
                        window::BASELINE => baseline.saturating_record(micros),
                        window::DRAIN => heard.during.push((Instant::now(), micros)),
                        _ => {}
                    }
                    match header.seq.cmp(&heard.next) {
                        std::cmp::Ordering::Equal => heard.next += 1,
                        std::cmp::Ordering::Greater => {
                            heard.gaps += u64::from(header.seq - heard.next);
                            heard.next = header.seq + 1;
                        }
                        std::cmp::Ordering::Less => heard.duplicates += 1,
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    shared.error(format!("canary subscriber: {error}"));
                    break;
                }
            }
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    heard.baseline = Some(baseline);
    heard
}

impl Drain {
    /// The fields of the JSON report.
    pub fn to_json(&self, report: &Report) -> Value {
        let per_second = |count: u64, seconds: f64| (seconds > 0.0).then(|| round(count as f64 / seconds, 1));
        json!({
            "messages": self.messages,
            "publish_s": round(self.publish_seconds, 3),
            "publish_per_s": per_second(report.acked_total, self.publish_seconds),
            "session_present": self.session_present,
            "drain_s": round(self.seconds, 3),
            "drain_per_s": per_second(report.delivered_total, self.seconds),
            "first_message_ms": self.first_message.map(|first| round(first.as_secs_f64() * 1000.0, 2)),
            "out_of_order": self.out_of_order,
            "broker_cpu_drain_s": self.broker_cpu_seconds.map(|seconds| round(seconds, 3)),
            "canary_rate": self.canary_rate,
            "canary_qos": 0,
            "canary_baseline_s": round(self.baseline_seconds, 3),
            "canary_baseline_us": self.baseline.as_ref().map(Latency::to_json),
            "canary_drain_us": self.during.as_ref().map(Latency::to_json),
            "canary_sent": self.canary_sent,
            "canary_delivered": self.canary_delivered,
            "canary_lost": self.canary_lost,
            "canary_duplicates": self.canary_duplicates,
            "publisher_late_max_us": self.publisher_late_max_us,
        })
    }

    /// The rows of the table.
    pub fn table(&self, report: &Report, out: &mut String) {
        let rate = |count: u64, seconds: f64| if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
        row(
            out,
            "published",
            format!(
                "{} messages in {:.2} s ({} msg/s): {} acknowledged, {} unacknowledged, {} refused",
                count(report.sent_total as f64),
                self.publish_seconds,
                count(rate(report.acked_total, self.publish_seconds)),
                count(report.acked_total as f64),
                report.unacknowledged,
                report.refused
            ),
        );
        let first = self.first_message.map_or_else(
            || "no message came".to_owned(),
            |first| format!("the first after {:.1} ms", first.as_secs_f64() * 1000.0),
        );
        row(
            out,
            "read back",
            format!(
                "{} in {:.3} s: {} msg/s ({first}){}",
                count(report.delivered_total as f64),
                self.seconds,
                count(rate(report.delivered_total, self.seconds)),
                if self.session_present { "" } else { "; the broker no longer had the session" }
            ),
        );
        row(
            out,
            "delivered",
            format!("{} of {} owed", count(report.delivered_total as f64), count(report.expected_total as f64)),
        );
        row(out, "lost", format!("{} acknowledged messages never delivered", count(report.lost as f64)));
        row(out, "duplicates", format!("{} (out of order: {})", report.duplicates, self.out_of_order));
        let latency =
            |latency: &Option<Latency>| latency.as_ref().map_or_else(|| "no message".to_owned(), Latency::to_text);
        row(out, "canary before", format!("µs {} over {:.1} s", latency(&self.baseline), self.baseline_seconds));
        row(out, "canary during", format!("µs {}", latency(&self.during)));
        row(
            out,
            "canary",
            format!(
                "{} msg/s QoS 0: {} sent, {} delivered, {} lost, {} duplicates",
                count(self.canary_rate),
                count(self.canary_sent as f64),
                count(self.canary_delivered as f64),
                self.canary_lost,
                self.canary_duplicates
            ),
        );
        if let Some(late) = self.publisher_late_max_us {
            row(out, "canary late", format!("at most {late} µs behind its schedule"));
        }
    }
}
