//! `fanout`, `fanin`, `pairs` and `latency`: publishers and subscribers on a plan of topics,
//! and the phases of a run.
//!
//! Subscribers connect and subscribe first, then the publishers connect. The run then goes
//! through its phases, each bounded in time: warm-up (load, not measured), measuring (counters
//! snapshotted at both ends, latencies recorded), stopping (publishers stop and wait for their
//! outstanding acknowledgements), draining (subscribers receive what is still on its way, until
//! everything arrived or nothing more comes), done.
//!
//! Each client is one task (`publisher`, `subscriber`; `paced` for `latency`). Counters are per
//! client, each on its own cache line, written by their task alone and summed by the progress
//! line (`shared`).

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use midge_client::codec::{Properties, QoS, Subscription, SubscriptionOptions, TopicFilter, TopicName};
use midge_client::{Client, ConnectOptions, Event};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use super::publisher::{flood, Link, MqttLink, Window};
use super::report::{self, Latency, Report};
use super::shared::{Counter, Phase, Published, Shared};
use super::sn_link::SnLink;
use super::subscriber::{receive, Received};
use super::{paced, system, Scenario, Settings};

/// How long publishers wait for their outstanding acknowledgements after the window.
pub const ACK_DRAIN: Duration = Duration::from_secs(5);
/// How long the subscribers may take, at most, to receive what was published.
const DELIVERY_DRAIN: Duration = Duration::from_secs(10);
/// How long connecting and subscribing one client may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing a client may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Outside `latency`, one message in this many is timed.
const LATENCY_SAMPLE: u32 = 8;
/// Largest latency the histograms hold, in microseconds (larger values count as this).
pub const HISTOGRAM_MAX_US: u64 = 60_000_000;

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
            Scenario::Conns | Scenario::Offline | Scenario::Drain => {
                anyhow::bail!("{} is not a traffic scenario", settings.scenario.name())
            }
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
    let slots = plan.sources.iter().map(ExactSizeIterator::len).sum();
    let shared = Arc::new(Shared::new(plan.topics.len(), plan.filters.len(), slots));
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
        // A gap the publisher still waits an acknowledgement for is not a loss of the
        // broker's (MQTT-SN: its datagram may never have reached the gateway).
        let unacknowledged_gaps: usize = sources
            .clone()
            .map(|source| {
                let seqs = published.get(source).map_or(&[][..], |p| &p.unacknowledged_seqs[..]);
                seqs.iter().filter(|&&seq| result.is_missing(source, seq)).count()
            })
            .sum();
        report.lost -= unacknowledged_gaps as u64;
        report.lost +=
            sources.map(|source| promised[source].saturating_sub(u64::from(result.next[source]))).sum::<u64>();
        report.duplicates += result.duplicates;
        report.out_of_order += result.out_of_order;
        report.foreign += result.foreign;
        match &mut latency {
            Some(merged) => merged.add(&result.histogram)?,
            None => latency = Some(result.histogram),
        }
    }
    report.latency = latency.as_ref().and_then(Latency::from_histogram);
    report.errors = shared.errors();
    report.first_error = shared.first_error();
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
    if let Some(port) = settings.sn_port {
        let links = connect_all(
            plan.topics.len(),
            settings.concurrency,
            |index| {
                let (host, topic) = (settings.host.clone(), plan.topics[index].to_string());
                let client_id = format!("mb{}-p{index}", settings.run_id);
                async move {
                    SnLink::connect(&host, port, client_id, &topic)
                        .await
                        .map_err(|error| format!("MQTT-SN publisher {index}: {error}"))
                }
            },
            |_| {},
        )
        .await;
        spawn_publishers(links, settings, plan, shared, &mut results)?;
    } else {
        let clients = connect_all(
            plan.topics.len(),
            settings.concurrency,
            |index| {
                let (settings, topic) = (Arc::clone(settings), plan.topics[index].clone());
                async move { connect_publisher(settings, index).await.map(|client| MqttLink { client, topic }) }
            },
            |_| {},
        )
        .await;
        spawn_publishers(clients, settings, plan, shared, &mut results)?;
    }
    Ok(results)
}

/// Starts a publisher on each connected link, or fails if any could not connect.
fn spawn_publishers<L: Link + 'static>(
    links: Vec<Result<L, String>>,
    settings: &Arc<Settings>,
    plan: &Plan,
    shared: &Arc<Shared>,
    results: &mut Vec<oneshot::Receiver<Published>>,
) -> anyhow::Result<()> {
    let links = links.into_iter().collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    for (index, link) in links.into_iter().enumerate() {
        let (result, result_rx) = oneshot::channel();
        let (settings, shared) = (Arc::clone(settings), Arc::clone(shared));
        let window = Window { credit: plan.credit[index], listeners: plan.listeners[index].clone() };
        tokio::spawn(async move {
            let _ = result.send(flood(link, index, window, settings, shared).await);
        });
        results.push(result_rx);
    }
    Ok(())
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
            let errors = shared.errors();
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
    let options = subscriber_options(&settings, index);
    let mut client = Client::connect(options).await.map_err(|error| format!("subscriber {index}: {error}"))?;
    subscribe(&mut client, filter, settings.qos).await.map_err(|error| format!("subscriber {index}: {error}"))?;
    Ok(client)
}

/// Connects publisher `index`.
pub async fn connect_publisher(settings: Arc<Settings>, index: usize) -> Result<Client, String> {
    let options = settings.options(format!("mb{}-p{index}", settings.run_id));
    Client::connect(options).await.map_err(|error| format!("publisher {index}: {error}"))
}

/// The options of subscriber `index`: a persistent session with `--persistent`.
pub fn subscriber_options(settings: &Settings, index: usize) -> ConnectOptions {
    let mut options = settings.options(format!("mb{}-s{index}", settings.run_id));
    if !settings.subscribe_at.is_empty() {
        let (host, port) = &settings.subscribe_at[index % settings.subscribe_at.len()];
        (options.server.host, options.server.port) = (host.clone(), *port);
    }
    if settings.persistent {
        options.clean_start = false;
        if settings.version.is_v5() {
            options.properties.session_expiry_interval = Some(3600);
        }
    }
    options
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::BenchArgs;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(args: &[&str]) -> Plan {
        let command = Command::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).unwrap();
        Plan::new(&Settings::from_args(&command.args).unwrap()).unwrap()
    }

    #[test]
    fn fanout_shares_one_topic_and_each_subscriber_gets_the_whole_window() {
        let plan = plan(&["fanout", "--subscribers", "3"]);
        assert_eq!(plan.topics.len(), 1);
        assert!(plan.filters.iter().all(|filter| filter.as_str() == plan.topics[0].as_str()));
        assert_eq!(plan.sources, vec![0..1; 3]);
        assert_eq!(plan.listeners, [vec![0, 1, 2]]);
        assert_eq!(plan.credit, [10_000], "the default window");
    }

    #[test]
    fn fanin_splits_the_subscriber_window_among_the_publishers() {
        let plan = plan(&["fanin", "--publishers", "4", "--window", "100"]);
        assert_eq!(plan.filters.len(), 1);
        assert!(plan.filters[0].as_str().ends_with("/fanin/+"));
        assert_eq!(plan.slots, [0]);
        assert_eq!(plan.listeners, [[0], [1], [2], [3]]);
        assert_eq!(plan.credit, [25; 4]);
        // No window: no limit.
        assert_eq!(super::tests::plan(&["fanin", "--window", "0"]).credit, [0; 10]);
    }

    #[test]
    fn pairs_have_a_topic_each() {
        let plan = plan(&["pairs", "--pairs", "3"]);
        assert_eq!(plan.sources, [0..1, 1..2, 2..3]);
        assert_eq!(plan.slots, [0, 1, 2]);
        assert_eq!(plan.listeners, [[0], [1], [2]]);
        assert_eq!(plan.topics[2].as_str(), plan.filters[2].as_str());
        assert_ne!(plan.topics[1].as_str(), plan.topics[2].as_str());
    }
}
