//! A publisher of `fanout`, `fanin` and `pairs`, as fast as the broker takes messages (or at
//! `--rate`): QoS 0 in batches of [`BATCH`] messages per write, at most `--window` ahead of its
//! subscribers; QoS 1/2 keeping `--inflight` messages unacknowledged. It publishes through a
//! [`Link`]: an MQTT client, or with `--sn-port` an MQTT-SN one through the broker's gateway
//! (`sn_link`).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

/// What a publisher publishes through, on the topic it was set up for. Errors are messages.
pub trait Link: Send {
    /// Queues one message; QoS 0 messages go out at the next [`Link::flush`].
    fn publish(&mut self, payload: Bytes, qos: QoS) -> Result<(), String>;
    /// Sends what is queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Waits for the next acknowledgement of a QoS 1/2 message: `true` when it refused the
    /// message.
    fn acknowledged(&mut self) -> impl Future<Output = Result<bool, String>> + Send;
    /// Messages sent and not yet acknowledged.
    fn unacknowledged(&self) -> usize;
    /// The sequence numbers of the unacknowledged messages, if they can be out of order (an
    /// MQTT client's are always the last ones sent: none is listed).
    fn unacknowledged_seqs(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Says goodbye to the broker.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// An MQTT client publishing on one topic.
pub struct MqttLink {
    /// The connected client.
    pub client: Client,
    /// Its topic.
    pub topic: TopicName,
}

impl Link for MqttLink {
    fn publish(&mut self, payload: Bytes, qos: QoS) -> Result<(), String> {
        self.client.publish(&self.topic, payload, qos, false).map(|_| ()).map_err(|error| error.to_string())
    }

    async fn flush(&mut self) -> Result<(), String> {
        self.client.flush().await.map_err(|error| error.to_string())
    }

    async fn acknowledged(&mut self) -> Result<bool, String> {
        loop {
            match self.client.poll().await {
                Ok(Event::Published { reason, .. }) => return Ok(reason.is_error()),
                Ok(_) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
    }

    fn unacknowledged(&self) -> usize {
        self.client.unacknowledged()
    }

    async fn close(&mut self) {
        let _ = self.client.disconnect().await;
    }
}

/// Publisher `index` on its link's topic until the run stops it (see the module documentation).
pub async fn flood(
    mut client: impl Link,
    index: usize,
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
    let fail = |error: String| shared.error(format!("publisher {index}: {error}"));

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
                if let Err(error) = client.publish(writer.next(sent as u32), qos) {
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
        let _ = timeout(CLOSE_TIMEOUT, client.close()).await;
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
                if let Err(error) = client.publish(writer.next(sent as u32), qos) {
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
            ack = client.acknowledged() => match ack {
                Ok(refused) => {
                    acked += 1;
                    if refused {
                        published.refused += 1;
                    }
                    shared.acked[index].set(acked);
                }
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
    published.unacknowledged_seqs = client.unacknowledged_seqs();
    let _ = timeout(CLOSE_TIMEOUT, client.close()).await;
    published
}
