//! A publisher of `fanout`, `fanin` and `pairs`, as fast as the broker takes messages (or at
//! `--rate`): QoS 0 in batches of [`BATCH`] messages per write, at most `--window` ahead of its
//! subscribers; QoS 1/2 keeping `--inflight` messages unacknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use midge_client::codec::{QoS, TopicName};
use midge_client::{Client, Event};
use tokio::time::{sleep_until, timeout, Instant};

use super::payload::PayloadWriter;
use super::shared::{Phase, Published, Shared};
use super::traffic::{ACK_DRAIN, CLOSE_TIMEOUT};
use super::Settings;

/// QoS 0 messages a publisher encodes before each write: about 10 KB of 64-byte messages, so a
/// write syscall carries many messages and the broker still sees a steady stream.
const BATCH: u64 = 128;

/// How far a QoS 0 publisher may run ahead of its subscribers.
pub struct Window {
    /// Messages it may be ahead of the slowest of them; 0 for no limit.
    pub credit: u64,
    /// Their progress slots.
    pub listeners: Vec<usize>,
}

impl Window {
    /// The slowest subscriber's next expected sequence number (`sent` when none listens).
    fn floor(&self, shared: &Shared, sent: u64) -> u64 {
        self.listeners.iter().map(|&slot| shared.progress[slot].get()).min().unwrap_or(sent)
    }
}

/// Publisher `index` on `topic` until the run stops it (see the module documentation).
pub async fn flood(
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
