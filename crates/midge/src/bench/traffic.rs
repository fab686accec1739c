//! `fanout`, `fanin`, `pairs` and `latency`: publishers and subscribers on a plan of topics,
//! and the phases of a run.
//!
//! Subscribers connect and subscribe first, then the publishers connect. The run then goes
//! through its phases, each bounded in time: warm-up (load, not measured), measuring (counters
//! snapshotted at both ends, latencies recorded), stopping (publishers stop and wait for their
//! outstanding acknowledgements), draining (subscribers receive what is still on its way, until
//! everything arrived or nothing more comes), done.
//!
//! Each client is one task; publishers write batches of messages with one syscall, keeping a
//! window of QoS 1/2 messages in flight; subscribers only decode, check the sequence number
//! and record the latency. Counters are per client, each on its own cache line, written by
//! their task alone and summed by the progress line.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use midge_client::codec::{Properties, QoS, Subscription, SubscriptionOptions, TopicFilter, TopicName};
use midge_client::{Client, Event};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use super::payload::{self, PayloadWriter};
use super::report::{self, Latency, Report};
use super::{paced, system, Scenario, Settings};

/// QoS 0 messages a publisher encodes before each write: about 10 KB of 64-byte messages, so a
/// write syscall carries many messages and the broker still sees a steady stream.
const BATCH: u64 = 128;
/// How long publishers wait for their outstanding acknowledgements after the window.
pub const ACK_DRAIN: Duration = Duration::from_secs(5);
/// How long the subscribers may take, at most, to receive what was published.
const DELIVERY_DRAIN: Duration = Duration::from_secs(10);
/// How long connecting and subscribing one client may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing a client may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Outside `latency`, one message in this many is timed.
const LATENCY_SAMPLE: u32 = 8;
/// Largest latency the histograms hold, in microseconds (larger values count as this).
const HISTOGRAM_MAX_US: u64 = 60_000_000;

/// Where a run is. Tasks and threads read it; the run's orchestration alone sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Clients connecting.
    Setup,
    /// Publishers publishing (warm-up and measurement).
    Running,
    /// Publishers stopping: no new messages, outstanding acknowledgements awaited.
    Stopping,
    /// Subscribers stop reading.
    Done,
}

/// The current [`Phase`], readable without a lock and awaitable.
#[derive(Debug, Default)]
pub struct Phases {
    value: AtomicU8,
    changed: Notify,
}

impl Phases {
    /// The current phase.
    pub fn get(&self) -> Phase {
        match self.value.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Done,
        }
    }

    fn set(&self, phase: Phase) {
        self.value.store(phase as u8, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Completes once the run has reached `phase`.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn reached(&self, phase: Phase) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() >= phase {
                return;
            }
            notified.await;
        }
    }
}

/// A count written by one task and read by the progress line, alone on its cache line so
/// clients on different cores do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Sets the count (only its owner writes it).
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where a QoS 0 publisher held back by its window wants to be woken.
#[derive(Debug)]
pub struct Wake {
    /// The progress (see [`Shared::progress`]) each of its subscribers must reach;
    /// `u64::MAX` while it is not waiting.
    at: AtomicU64,
    /// Signalled by a subscriber whose progress crosses `at`.
    notify: Notify,
}

impl Default for Wake {
    fn default() -> Self {
        Self { at: AtomicU64::new(u64::MAX), notify: Notify::new() }
    }
}

/// What the clients of a run share.
#[derive(Debug)]
pub struct Shared {
    /// The phase.
    pub phases: Phases,
    /// Set during the measurement window: subscribers record latencies.
    pub measuring: AtomicBool,
    /// Per publisher: messages handed to the client.
    pub sent: Vec<Counter>,
    /// Per publisher: QoS 1/2 messages acknowledged by the broker.
    pub acked: Vec<Counter>,
    /// Per subscriber: messages received.
    pub delivered: Vec<Counter>,
    /// Per subscriber and publisher it hears (slots of [`Plan::slots`]): the next sequence
    /// number it expects. QoS 0 publishers read it to stay within their window.
    pub progress: Vec<Counter>,
    /// Per publisher: its wake-up mark.
    pub wakes: Vec<Wake>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new(plan: &Plan) -> Self {
        let counters = |n| (0..n).map(|_| Counter::default()).collect();
        let (publishers, subscribers) = (plan.topics.len(), plan.filters.len());
        Self {
            phases: Phases::default(),
            measuring: AtomicBool::new(false),
            sent: counters(publishers),
            acked: counters(publishers),
            delivered: counters(subscribers),
            progress: counters(plan.sources.iter().map(ExactSizeIterator::len).sum()),
            wakes: (0..publishers).map(|_| Wake::default()).collect(),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Counts a client failure; the first is kept for the report.
    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(what);
    }
}

/// What one publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// QoS 1/2 acknowledgements with a failure reason code.
    pub refused: u64,
    /// QoS 1/2 messages still unacknowledged when it stopped waiting.
    pub unacknowledged: u64,
    /// Worst lateness against its schedule in the window, microseconds (paced publishers).
    pub late_max_us: Option<u64>,
}

/// What one subscriber received.
#[derive(Debug)]
struct Received {
    /// Messages.
    count: u64,
    /// Per publisher, the next sequence number expected: every number below it arrived or was
    /// counted in `gaps`.
    next: Vec<u32>,
    /// Messages skipped over (a later sequence number arrived first).
    gaps: u64,
    /// Messages whose sequence number came again.
    duplicates: u64,
    /// Messages without a bench header.
    foreign: u64,
    /// Latency of the messages received in the window, µs.
    histogram: Histogram<u64>,
    /// One message in this many is timed: every one in `latency`, a sample elsewhere, where
    /// reading the clock for millions of messages a second would cost the bench more than
    /// the percentiles gain.
    sample: u32,
    /// Messages until the next one timed.
    until_sample: u32,
}

impl Received {
    fn new(publishers: usize, histogram: Histogram<u64>, sample: u32) -> Self {
        let next = vec![0; publishers];
        Self { count: 0, next, gaps: 0, duplicates: 0, foreign: 0, histogram, sample, until_sample: 1 }
    }

    /// Accounts for one message; `progress` is this subscriber's view of [`Shared::progress`].
    fn record(&mut self, payload: &[u8], measuring: bool, progress: &Progress<'_>) {
        let Some(header) = payload::parse(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(next) = self.next.get_mut(header.publisher as usize) else {
            self.foreign += 1;
            return;
        };
        self.until_sample -= 1;
        if self.until_sample == 0 {
            self.until_sample = self.sample;
            if measuring {
                let micros = payload::now_ns().saturating_sub(header.sent_ns) / 1000;
                self.histogram.saturating_record(micros.max(1));
            }
        }
        let before = u64::from(*next);
        match header.seq.cmp(next) {
            std::cmp::Ordering::Equal => *next += 1,
            std::cmp::Ordering::Greater => {
                self.gaps += u64::from(header.seq - *next);
                *next = header.seq + 1;
            }
            std::cmp::Ordering::Less => {
                self.duplicates += 1;
                return;
            }
        }
        progress.advance(header.publisher as usize, before, u64::from(*next));
    }
}

/// A subscriber's slots of [`Shared::progress`] and the publishers' wake-up marks.
struct Progress<'a> {
    /// One slot per publisher heard, from `first`.
    slots: &'a [Counter],
    /// The first publisher heard.
    first: usize,
    /// Every publisher's mark.
    wakes: &'a [Wake],
}

impl Progress<'_> {
    /// Publishes that `publisher`'s next expected sequence number went from `before` to `after`,
    /// and wakes the publisher if that crossed its mark.
    fn advance(&self, publisher: usize, before: u64, after: u64) {
        let Some(slot) = publisher.checked_sub(self.first).and_then(|index| self.slots.get(index)) else {
            return;
        };
        slot.set(after);
        let wake = &self.wakes[publisher];
        let mark = wake.at.load(Ordering::Relaxed);
        if before < mark && after >= mark {
            wake.notify.notify_one();
        }
    }
}

/// Which topics a run uses.
#[derive(Debug)]
struct Plan {
    /// Per publisher, the topic it publishes to.
    topics: Vec<TopicName>,
    /// Per subscriber, its filter.
    filters: Vec<TopicFilter>,
    /// Per subscriber, the publishers whose messages it receives.
    sources: Vec<Range<usize>>,
    /// Per subscriber, its first slot in [`Shared::progress`] (one per publisher it hears).
    slots: Vec<usize>,
    /// Per publisher, the progress slots of the subscribers that hear it.
    listeners: Vec<Vec<usize>>,
    /// Per publisher, how many QoS 0 messages it may be ahead of the slowest of them (0: no
    /// limit): `--window` shared among the publishers a subscriber hears.
    credit: Vec<u64>,
}

impl Plan {
    fn new(settings: &Settings) -> anyhow::Result<Self> {
        let prefix = settings.prefix();
        let topic = |text: String| TopicName::new(&text).map_err(|error| anyhow::anyhow!("topic {text}: {error}"));
        let filter = |text: String| TopicFilter::new(&text).map_err(|error| anyhow::anyhow!("filter {text}: {error}"));
        let (publishers, subscribers) = (settings.publishers, settings.subscribers);
        let (topics, filters, sources): (Vec<TopicName>, Vec<TopicFilter>, Vec<Range<usize>>) = match settings.scenario
        {
            Scenario::Fanout | Scenario::Latency => {
                let name = format!("{prefix}/{}", settings.scenario.name());
                (
                    (0..publishers).map(|_| topic(name.clone())).collect::<Result<_, _>>()?,
                    (0..subscribers).map(|_| filter(name.clone())).collect::<Result<_, _>>()?,
                    vec![0..publishers; subscribers],
                )
            }
            Scenario::Fanin => (
                (0..publishers).map(|index| topic(format!("{prefix}/fanin/{index}"))).collect::<Result<_, _>>()?,
                (0..subscribers).map(|_| filter(format!("{prefix}/fanin/+"))).collect::<Result<_, _>>()?,
                vec![0..publishers; subscribers],
            ),
            Scenario::Pairs => (
                (0..publishers).map(|index| topic(format!("{prefix}/pairs/{index}"))).collect::<Result<_, _>>()?,
                (0..subscribers).map(|index| filter(format!("{prefix}/pairs/{index}"))).collect::<Result<_, _>>()?,
                (0..subscribers).map(|index| index..index + 1).collect(),
            ),
            Scenario::Conns => anyhow::bail!("conns is not a traffic scenario"),
        };
        let mut slots = Vec::with_capacity(sources.len());
        let mut listeners = vec![Vec::new(); topics.len()];
        let mut widest = vec![1usize; topics.len()];
        let mut next_slot = 0;
        for heard in &sources {
            slots.push(next_slot);
            for publisher in heard.clone() {
                listeners[publisher].push(next_slot + publisher - heard.start);
                widest[publisher] = widest[publisher].max(heard.len());
            }
            next_slot += heard.len();
        }
        let credit =
            widest.iter().map(|&shared_by| (settings.window / shared_by as u64).max(settings.window.min(1))).collect();
        Ok(Self { topics, filters, sources, slots, listeners, credit })
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    sent: u64,
    delivered: u64,
    cpu: f64,
    broker_cpu: Option<f64>,
}

impl Snapshot {
    fn take(shared: &Shared, broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            sent: shared.sent.iter().map(Counter::get).sum(),
            delivered: shared.delivered.iter().map(Counter::get).sum(),
            cpu: system::own_cpu_seconds(),
            broker_cpu: broker_pid.and_then(|pid| system::process_cpu_seconds(pid).ok()),
        }
    }
}

/// Runs a traffic scenario.
pub async fn run(settings: &Settings) -> anyhow::Result<Report> {
    let settings = Arc::new(settings.clone());
    let plan = Plan::new(&settings)?;
    let shared = Arc::new(Shared::new(&plan));
    let cpu_at_start = system::own_cpu_seconds();
    let rss_before = settings.broker_pid.and_then(|pid| system::process_rss_kib(pid).ok());

    // Subscribers first, so they miss nothing.
    let filters = plan.filters.clone();
    let clients = connect_all(
        plan.filters.len(),
        settings.concurrency,
        |index| connect_subscriber(Arc::clone(&settings), index, filters[index].clone()),
        |_| {},
    )
    .await;
    let clients = clients.into_iter().collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    // Three significant digits where few histograms are kept; two (20 KB each) for many.
    let digits = if clients.len() <= 64 { 3 } else { 2 };
    let mut subscribers = Vec::with_capacity(clients.len());
    for (index, client) in clients.into_iter().enumerate() {
        let histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, digits)?;
        let sample = if settings.scenario == Scenario::Latency { 1 } else { LATENCY_SAMPLE };
        let received = Received::new(plan.topics.len(), histogram, sample);
        let (heard, slot) = (plan.sources[index].clone(), plan.slots[index]);
        let task = receive(client, index, (heard, slot), received, Arc::clone(&settings), Arc::clone(&shared));
        subscribers.push(tokio::spawn(task));
    }

    let publishers = start_publishers(&settings, &plan, &shared).await?;
    if settings.progress {
        report::progress(format_args!(
            "{}: {} subscriber(s) and {} publisher(s) connected",
            settings.scenario.name(),
            plan.filters.len(),
            plan.topics.len()
        ));
    }

    shared.phases.set(Phase::Running);
    let begun = Snapshot::take(&shared, settings.broker_pid);
    let warm = run_for(&settings, &shared, settings.warmup, "warm-up", begun).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let start = Snapshot::take(&shared, settings.broker_pid);
    let end = run_for(&settings, &shared, settings.duration, "measuring", warm).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let rss_after = settings.broker_pid.and_then(|pid| system::process_rss_kib(pid).ok());

    shared.phases.set(Phase::Stopping);
    let mut published = Vec::with_capacity(publishers.len());
    for result in publishers {
        // A publisher that ended without a result (a panic, an abandoned thread) is reported
        // through the error count; its counters still hold what it did.
        let outcome = timeout(ACK_DRAIN + CLOSE_TIMEOUT * 2, result).await;
        published.push(outcome.ok().and_then(Result::ok).unwrap_or_default());
    }
    drain(&settings, &plan, &shared).await;
    shared.phases.set(Phase::Done);
    let mut received = Vec::with_capacity(subscribers.len());
    for subscriber in subscribers {
        match timeout(CLOSE_TIMEOUT * 3, subscriber).await {
            Ok(Ok(result)) => received.push(Some(result)),
            _ => received.push(None),
        }
    }

    let mut report = Report {
        window_seconds: (end.at - start.at).as_secs_f64(),
        sent: end.sent - start.sent,
        delivered: end.delivered - start.delivered,
        bench_cpu_seconds: end.cpu - start.cpu,
        bench_cpu_total_seconds: system::own_cpu_seconds() - cpu_at_start,
        broker_cpu_seconds: end.broker_cpu.zip(start.broker_cpu).map(|(end, start)| end - start),
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: rss_after,
        ..Report::default()
    };
    account(&mut report, &settings, &plan, &shared, &published, received)?;
    Ok(report)
}

/// Fills in the totals, losses and latency of `report`.
fn account(
    report: &mut Report,
    settings: &Settings,
    plan: &Plan,
    shared: &Shared,
    published: &[Published],
    received: Vec<Option<Received>>,
) -> anyhow::Result<()> {
    let sent: Vec<u64> = shared.sent.iter().map(Counter::get).collect();
    let acked: Vec<u64> = shared.acked.iter().map(Counter::get).collect();
    report.sent_total = sent.iter().sum();
    report.acked_total = acked.iter().sum();
    report.unacknowledged = published.iter().map(|publisher| publisher.unacknowledged).sum();
    report.refused = published.iter().map(|publisher| publisher.refused).sum();
    report.publisher_late_max_us = published.iter().filter_map(|publisher| publisher.late_max_us).max();
    // At QoS 0 every message sent counts; at QoS 1 and 2 the ones the broker acknowledged.
    let promised = if settings.qos == QoS::AtMostOnce { &sent } else { &acked };
    let mut latency: Option<Histogram<u64>> = None;
    for (index, result) in received.into_iter().enumerate() {
        let sources = plan.sources[index].clone();
        report.expected_total += sent[sources.clone()].iter().sum::<u64>();
        let Some(result) = result else {
            // A subscriber that did not report back received nothing we can vouch for.
            report.lost += promised[sources].iter().sum::<u64>();
            shared.error(format!("subscriber {index} did not finish"));
            continue;
        };
        report.delivered_total += result.count;
        report.lost += result.gaps;
        report.lost +=
            sources.map(|source| promised[source].saturating_sub(u64::from(result.next[source]))).sum::<u64>();
        report.duplicates += result.duplicates;
        report.foreign += result.foreign;
        match &mut latency {
            Some(merged) => merged.add(&result.histogram)?,
            None => latency = Some(result.histogram),
        }
    }
    report.latency = latency.filter(|histogram| !histogram.is_empty()).map(|histogram| Latency {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        mean: histogram.mean(),
    });
    report.errors = shared.errors.load(Ordering::Relaxed);
    report.first_error = shared.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    Ok(())
}

/// Connects the publishers and starts them; each hands back what it did once stopped.
async fn start_publishers(
    settings: &Arc<Settings>,
    plan: &Plan,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<oneshot::Receiver<Published>>> {
    let mut results = Vec::with_capacity(plan.topics.len());
    if settings.scenario == Scenario::Latency {
        let mut readies = Vec::with_capacity(plan.topics.len());
        for (index, topic) in plan.topics.iter().enumerate() {
            let (ready, ready_rx) = oneshot::channel();
            let (result, result_rx) = oneshot::channel();
            paced::spawn(Arc::clone(settings), index, topic.clone(), Arc::clone(shared), ready, result)?;
            readies.push(ready_rx);
            results.push(result_rx);
        }
        for ready in readies {
            match timeout(SETUP_TIMEOUT, ready).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    shared.phases.set(Phase::Done);
                    anyhow::bail!(error)
                }
                _ => {
                    shared.phases.set(Phase::Done);
                    anyhow::bail!("a publisher did not connect within {} s", SETUP_TIMEOUT.as_secs())
                }
            }
        }
        return Ok(results);
    }
    let clients = connect_all(
        plan.topics.len(),
        settings.concurrency,
        |index| connect_publisher(Arc::clone(settings), index),
        |_| {},
    )
    .await;
    let clients = clients.into_iter().collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    for (index, client) in clients.into_iter().enumerate() {
        let (result, result_rx) = oneshot::channel();
        let (settings, shared, topic) = (Arc::clone(settings), Arc::clone(shared), plan.topics[index].clone());
        let window = Window { credit: plan.credit[index], listeners: plan.listeners[index].clone() };
        tokio::spawn(async move {
            let _ = result.send(flood(client, index, topic, window, settings, shared).await);
        });
        results.push(result_rx);
    }
    Ok(results)
}

/// Waits `length`, printing the progress line once a second; returns the snapshot at the end.
async fn run_for(settings: &Settings, shared: &Shared, length: Duration, label: &str, mut last: Snapshot) -> Snapshot {
    let end = Instant::now() + length;
    loop {
        let next = (Instant::now() + Duration::from_secs(1)).min(end);
        sleep_until(next).await;
        let current = Snapshot::take(shared, settings.broker_pid);
        let elapsed = (current.at - last.at).as_secs_f64();
        if settings.progress && elapsed >= 0.5 {
            let mut line = format!(
                "{} {label}: sent {} msg/s, delivered {} msg/s, bench CPU {:.0} %",
                settings.scenario.name(),
                report::count((current.sent - last.sent) as f64 / elapsed),
                report::count((current.delivered - last.delivered) as f64 / elapsed),
                100.0 * (current.cpu - last.cpu) / elapsed
            );
            if let (Some(now), Some(before)) = (current.broker_cpu, last.broker_cpu) {
                line.push_str(&format!(", broker CPU {:.0} %", 100.0 * (now - before) / elapsed));
            }
            let errors = shared.errors.load(Ordering::Relaxed);
            if errors > 0 {
                line.push_str(&format!(", {errors} errors"));
            }
            report::progress(format_args!("{line}"));
            last = current;
        }
        if current.at >= end {
            return current;
        }
    }
}

/// Waits until the subscribers have received everything sent, or nothing more arrives, or
/// [`DELIVERY_DRAIN`] is over.
async fn drain(settings: &Settings, plan: &Plan, shared: &Shared) {
    let sent: Vec<u64> = shared.sent.iter().map(Counter::get).collect();
    let expected: u64 = plan.sources.iter().map(|sources| sent[sources.clone()].iter().sum::<u64>()).sum();
    // QoS 0 messages a broker dropped never come; QoS 1/2 ones may still be resent.
    let stall = if settings.qos == QoS::AtMostOnce { Duration::from_millis(500) } else { Duration::from_secs(2) };
    let deadline = Instant::now() + DELIVERY_DRAIN;
    let delivered = || shared.delivered.iter().map(Counter::get).sum::<u64>();
    let (mut last, mut changed) = (delivered(), Instant::now());
    while last < expected && Instant::now() < deadline && changed.elapsed() < stall {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = delivered();
        if now != last {
            (last, changed) = (now, Instant::now());
        }
    }
}

/// Runs `make(index)` for every index, at most `concurrency` at once, each as its own task;
/// `done` sees each result as it comes. Results are in index order.
pub async fn connect_all<T, F, Fut>(
    count: usize,
    concurrency: usize,
    mut make: F,
    mut done: impl FnMut(&Result<T, String>),
) -> Vec<Result<T, String>>
where
    T: Send + 'static,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let mut results: Vec<Option<Result<T, String>>> = (0..count).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    let mut next = 0;
    while next < count || !tasks.is_empty() {
        while next < count && tasks.len() < concurrency {
            let (index, attempt) = (next, make(next));
            tasks.spawn(async move { (index, attempt.await) });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok((index, result))) => {
                done(&result);
                results[index] = Some(result);
            }
            Some(Err(error)) => std::panic::resume_unwind(error.into_panic()),
            None => break,
        }
    }
    results.into_iter().map(|result| result.unwrap_or_else(|| Err("not attempted".into()))).collect()
}

/// Connects subscriber `index` and subscribes it to `filter`.
async fn connect_subscriber(settings: Arc<Settings>, index: usize, filter: TopicFilter) -> Result<Client, String> {
    let mut options = settings.options(subscriber_id(&settings, index));
    if settings.persistent {
        options.clean_start = false;
        if settings.version.is_v5() {
            options.properties.session_expiry_interval = Some(3600);
        }
    }
    let mut client = Client::connect(options).await.map_err(|error| format!("subscriber {index}: {error}"))?;
    subscribe(&mut client, filter, settings.qos).await.map_err(|error| format!("subscriber {index}: {error}"))?;
    Ok(client)
}

/// Connects publisher `index`.
pub async fn connect_publisher(settings: Arc<Settings>, index: usize) -> Result<Client, String> {
    let options = settings.options(format!("mb{}-p{index}", settings.run_id));
    Client::connect(options).await.map_err(|error| format!("publisher {index}: {error}"))
}

fn subscriber_id(settings: &Settings, index: usize) -> String {
    format!("mb{}-s{index}", settings.run_id)
}

/// Subscribes to `filter` and waits for a SUBACK that grants it.
pub async fn subscribe(client: &mut Client, filter: TopicFilter, qos: QoS) -> Result<(), String> {
    let options = SubscriptionOptions { qos, ..Default::default() };
    client
        .subscribe(vec![Subscription { filter, options }], Properties::default())
        .map_err(|error| error.to_string())?;
    let suback = async {
        loop {
            match client.poll().await {
                Ok(Event::Subscribed(suback)) => {
                    return match suback.reasons.first() {
                        Some(reason) if !reason.is_error() => Ok(()),
                        Some(reason) => Err(format!("subscription refused: {reason}")),
                        None => Err("empty SUBACK".into()),
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
    };
    timeout(SETUP_TIMEOUT, suback).await.map_err(|_| format!("no SUBACK within {} s", SETUP_TIMEOUT.as_secs()))?
}

/// A subscriber: counts, checks and times every message until the run is done. It hears the
/// publishers `heard`; `slot` is its first progress slot.
async fn receive(
    mut client: Client,
    index: usize,
    (heard, slot): (Range<usize>, usize),
    mut received: Received,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
) -> Received {
    {
        let done = shared.phases.reached(Phase::Done);
        tokio::pin!(done);
        let counter = &shared.delivered[index];
        let slots = &shared.progress[slot..slot + heard.len()];
        let progress = Progress { slots, first: heard.start, wakes: &shared.wakes };
        loop {
            let event = tokio::select! {
                biased;
                event = client.poll() => event,
                () = &mut done => break,
            };
            match event {
                Ok(Event::Message(message)) => {
                    received.count += 1;
                    counter.set(received.count);
                    received.record(&message.payload, shared.measuring.load(Ordering::Relaxed), &progress);
                }
                Ok(_) => {}
                Err(error) => {
                    shared.error(format!("subscriber {index}: {error}"));
                    break;
                }
            }
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    if settings.persistent {
        // Remove the session: a clean connection under the same client id ends it.
        let options = settings.options(subscriber_id(&settings, index));
        let _ = timeout(CLOSE_TIMEOUT, async {
            if let Ok(mut client) = Client::connect(options).await {
                let _ = client.disconnect().await;
            }
        })
        .await;
    }
    received
}

/// How far a QoS 0 publisher may run ahead of its subscribers.
struct Window {
    /// Messages it may be ahead of the slowest of them; 0 for no limit.
    credit: u64,
    /// Their progress slots.
    listeners: Vec<usize>,
}

impl Window {
    /// The slowest subscriber's next expected sequence number (`sent` when none listens).
    fn floor(&self, shared: &Shared, sent: u64) -> u64 {
        self.listeners.iter().map(|&slot| shared.progress[slot].get()).min().unwrap_or(sent)
    }
}

/// A publisher as fast as the broker takes messages (or at `--rate`): QoS 0 in batches of
/// [`BATCH`] per write, at most `--window` ahead of its subscribers; QoS 1/2 keeping
/// `--inflight` messages unacknowledged.
async fn flood(
    mut client: Client,
    index: usize,
    topic: TopicName,
    window: Window,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
) -> Published {
    let rate = settings.rate.map(|rate| rate / settings.publishers as f64);
    let cap = settings.count.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
    let inflight = usize::from(settings.inflight);
    let qos = settings.qos;
    let mut writer = PayloadWriter::new(index as u32, settings.size);
    let mut published = Published::default();
    let (mut sent, mut acked) = (0u64, 0u64);
    let started = Instant::now();
    // Messages due by now under `--rate`, and when the next one is.
    let due = || rate.map_or(u64::MAX, |rate| (started.elapsed().as_secs_f64() * rate) as u64 + 1);
    let next_due = |sent: u64| rate.map(|rate| started + Duration::from_secs_f64(sent as f64 / rate));
    let stop = shared.phases.reached(Phase::Stopping);
    tokio::pin!(stop);
    let fail = |error: midge_client::Error| shared.error(format!("publisher {index}: {error}"));

    if qos == QoS::AtMostOnce {
        loop {
            if shared.phases.get() >= Phase::Stopping {
                break;
            }
            let mut allowed = due().min(cap).saturating_sub(sent);
            if window.credit > 0 && allowed > 0 {
                allowed = allowed.min((window.floor(&shared, sent) + window.credit).saturating_sub(sent));
                if allowed == 0 {
                    // Too far ahead: wait until the slowest subscriber is half a window (or a
                    // batch) closer. The 1 ms sleep covers a wake-up lost to the race between
                    // setting the mark and a subscriber crossing it.
                    let wake = &shared.wakes[index];
                    let step = (window.credit / 2).clamp(1, BATCH);
                    let mark = (sent + step).saturating_sub(window.credit);
                    let notified = wake.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    wake.at.store(mark, Ordering::SeqCst);
                    if window.floor(&shared, sent) < mark {
                        tokio::select! {
                            biased;
                            () = &mut stop => break,
                            () = notified => {}
                            () = tokio::time::sleep(Duration::from_millis(1)) => {}
                        }
                    }
                    wake.at.store(u64::MAX, Ordering::SeqCst);
                    continue;
                }
            }
            if allowed == 0 {
                let wake = next_due(sent).filter(|_| sent < cap);
                tokio::select! {
                    () = &mut stop => break,
                    () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => continue,
                }
            }
            for _ in 0..allowed.min(BATCH) {
                if let Err(error) = client.publish(&topic, writer.next(sent as u32), qos, false) {
                    fail(error);
                    return published;
                }
                sent += 1;
            }
            shared.sent[index].set(sent);
            tokio::select! {
                biased;
                result = client.flush() => if let Err(error) = result {
                    fail(error);
                    return published;
                },
                () = &mut stop => break,
            }
        }
        let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
        return published;
    }

    let mut stopping = false;
    let mut give_up = Instant::now();
    loop {
        if !stopping && shared.phases.get() >= Phase::Stopping {
            (stopping, give_up) = (true, Instant::now() + ACK_DRAIN);
        }
        let mut room = inflight.saturating_sub(client.unacknowledged());
        if !stopping {
            let allowed = due().min(cap).saturating_sub(sent).min(room as u64);
            for _ in 0..allowed {
                if let Err(error) = client.publish(&topic, writer.next(sent as u32), qos, false) {
                    fail(error);
                    return published;
                }
                sent += 1;
            }
            room -= allowed as usize;
            shared.sent[index].set(sent);
        } else if client.unacknowledged() == 0 {
            break;
        }
        let wake = next_due(sent).filter(|_| !stopping && room > 0 && sent < cap);
        tokio::select! {
            biased;
            event = client.poll() => match event {
                Ok(Event::Published { reason, .. }) => {
                    acked += 1;
                    if reason.is_error() {
                        published.refused += 1;
                    }
                    shared.acked[index].set(acked);
                }
                Ok(_) => {}
                Err(error) => {
                    fail(error);
                    break;
                }
            },
            () = &mut stop, if !stopping => (stopping, give_up) = (true, Instant::now() + ACK_DRAIN),
            () = sleep_until(give_up), if stopping => break,
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
    }
    published.unacknowledged = client.unacknowledged() as u64;
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    published
}
