//! The publisher of `latency`: messages at a fixed rate, evenly spaced, from a thread of its
//! own. Tokio's timers tick in milliseconds, which at 10,000 msg/s would send bursts of ten;
//! this thread sleeps to each message's due time with a 1 µs timer slack instead, and drives
//! its client on a current-thread runtime between sleeps.
//!
//! A message is stamped when it is written, so the latency measured is the broker's and the
//! network's, from the publisher's write to the subscriber's read. How far the thread fell
//! behind its schedule is reported apart (`publisher_late_max_us`); a late message is sent at
//! once, so the rate holds on average.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use midge_client::codec::{QoS, TopicName};
use midge_client::{Client, Error, Event};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::payload::PayloadWriter;
use super::shared::{Counter, Phase, Published, Shared};
use super::system;
use super::traffic::{connect_publisher, ACK_DRAIN, SETUP_TIMEOUT};
use super::Settings;

/// Starts publisher `index` on its own thread. `ready` says whether it connected; `result`
/// receives what it did once the run stops it.
pub fn spawn(
    settings: Arc<Settings>,
    index: usize,
    topic: TopicName,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), String>>,
    result: oneshot::Sender<Published>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("bench-paced-{index}")).spawn(move || {
        let published = run(&settings, index, &topic, &shared, ready);
        let _ = result.send(published);
    })?;
    Ok(())
}

fn run(
    settings: &Arc<Settings>,
    index: usize,
    topic: &TopicName,
    shared: &Shared,
    ready: oneshot::Sender<Result<(), String>>,
) -> Published {
    system::tighten_timer_slack();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(format!("publisher {index}: cannot start a runtime: {error}")));
            return Published::default();
        }
    };
    let mut client = match runtime.block_on(connect_publisher(Arc::clone(settings), index)) {
        Ok(client) => client,
        Err(error) => {
            let _ = ready.send(Err(error));
            return Published::default();
        }
    };
    let _ = ready.send(Ok(()));
    while shared.phases.get() == Phase::Setup {
        std::thread::sleep(Duration::from_millis(1));
    }

    let rate = settings.rate.unwrap_or(10_000.0) / settings.publishers as f64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let cap = settings.count.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
    let mut writer = PayloadWriter::new(index as u32, settings.size);
    let mut published = Published { late_max_us: Some(0), ..Published::default() };
    let mut acks = Acks { count: 0, counter: &shared.acked[index] };
    let mut sent = 0u64;
    let started = Instant::now();
    while shared.phases.get() < Phase::Stopping && sent < cap {
        let due = started + interval.mul_f64(sent as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if shared.measuring.load(Ordering::Relaxed) {
            let late = u64::try_from((now - due).as_micros()).unwrap_or(u64::MAX);
            published.late_max_us = published.late_max_us.max(Some(late));
        }
        let step = async {
            if settings.qos != QoS::AtMostOnce {
                acks.take(&mut client, usize::from(settings.inflight), &mut published).await?;
            }
            client.publish(topic, writer.next(sent as u32), settings.qos, false)?;
            timeout(SETUP_TIMEOUT, client.flush()).await.map_err(|_| Error::Protocol("the broker stopped reading"))?
        };
        if let Err(error) = runtime.block_on(step) {
            shared.error(format!("publisher {index}: {error}"));
            break;
        }
        sent += 1;
        shared.sent[index].set(sent);
    }
    runtime.block_on(async {
        if settings.qos != QoS::AtMostOnce {
            let _ = timeout(ACK_DRAIN, acks.all(&mut client, &mut published)).await;
        }
        published.unacknowledged = client.unacknowledged() as u64;
        let _ = timeout(Duration::from_secs(1), client.disconnect()).await;
    });
    published
}

/// Counts the acknowledgements of one publisher.
struct Acks<'a> {
    count: u64,
    counter: &'a Counter,
}

impl Acks<'_> {
    /// Takes every acknowledgement that has arrived, waiting for one while `window` messages
    /// are unacknowledged.
    async fn take(&mut self, client: &mut Client, window: usize, published: &mut Published) -> Result<(), Error> {
        loop {
            let event = if client.unacknowledged() >= window {
                timeout(SETUP_TIMEOUT, client.poll()).await.map_err(|_| Error::Protocol("no acknowledgement"))??
            } else {
                // Polls the client until it has nothing ready; yielding lets the runtime look
                // at the socket once in between.
                tokio::select! {
                    biased;
                    event = client.poll() => event?,
                    () = tokio::task::yield_now() => return Ok(()),
                }
            };
            self.note(event, published);
        }
    }

    /// Waits for every outstanding acknowledgement.
    async fn all(&mut self, client: &mut Client, published: &mut Published) -> Result<(), Error> {
        while client.unacknowledged() > 0 {
            let event = client.poll().await?;
            self.note(event, published);
        }
        Ok(())
    }

    fn note(&mut self, event: Event, published: &mut Published) {
        if let Event::Published { reason, .. } = event {
            self.count += 1;
            if reason.is_error() {
                published.refused += 1;
            }
            self.counter.set(self.count);
        }
    }
}
