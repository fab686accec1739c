//! What `offline` and `drain` share: persistent subscribers that subscribe and leave, one
//! publisher that sends a fixed number of QoS 1/2 messages and waits for every acknowledgement,
//! and a subscriber's return, which reads its queue back and checks it message by message
//! (missing, repeated, out of order).
//!
//! Every wait here is bounded: the publisher gives up after [`ACK_STALL`] without an
//! acknowledgement, a returning subscriber after [`READ_STALL`] without a message, so a broker
//! that loses messages ends the run with them counted rather than hanging it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use midge_client::codec::{TopicFilter, TopicName};
use midge_client::{Client, ConnectOptions, Event};
use tokio::time::{timeout, Instant};

use super::payload::{self, PayloadWriter};
use super::traffic::{subscribe, CLOSE_TIMEOUT, SETUP_TIMEOUT};
use super::{report, system, Settings};

/// How long the publisher waits for its next acknowledgement before giving up: a broker that
/// writes every message to thousands of queues on disk, with an fsync per commit, may take a
/// while per message, but not this long.
pub const ACK_STALL: Duration = Duration::from_secs(60);
/// How long a returning subscriber waits for its next message before it stops reading: what
/// has not come by then is counted lost.
pub const READ_STALL: Duration = Duration::from_secs(15);
/// Session Expiry Interval of the persistent sessions over MQTT 5, in seconds: longer than any
/// run, and not "never", so a run that dies leaves nothing behind for ever.
const SESSION_EXPIRY: u32 = 86_400;
/// How often [`settle_rss`] reads the broker's memory after that.
const SETTLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long [`settle_rss`] waits, at most, for the broker's memory to stop moving.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Two readings of [`settle_rss`] within this share of each other count as settled.
const SETTLE_TOLERANCE: f64 = 0.005;

/// The client identifier of persistent subscriber `index`.
pub fn session_id(settings: &Settings, index: usize) -> String {
    format!("mb{}-o{index}", settings.run_id)
}

/// The options of persistent subscriber `index`: Clean Session 0 (3.1.1), Clean Start 0 and a
/// day of Session Expiry (5), from a loopback source address of its own (see
/// `Settings::source_address`).
pub fn persistent_options(settings: &Settings, index: usize) -> ConnectOptions {
    let mut options = session_options(settings, index);
    options.clean_start = false;
    if settings.version.is_v5() {
        options.properties.session_expiry_interval = Some(SESSION_EXPIRY);
    }
    options
}

/// The options of subscriber `index` as any session: Clean Start 1.
fn session_options(settings: &Settings, index: usize) -> ConnectOptions {
    let mut options = settings.options(session_id(settings, index));
    options.local_address = settings.source_address(index);
    options
}

/// Connects persistent subscriber `index`, subscribes it to `filter` at `--qos` and disconnects
/// normally: from then on the broker queues what matches for it.
pub async fn subscribe_and_leave(settings: Arc<Settings>, index: usize, filter: TopicFilter) -> Result<(), String> {
    let client_id = session_id(&settings, index);
    let attempt = async {
        let mut client =
            Client::connect(persistent_options(&settings, index)).await.map_err(|error| error.to_string())?;
        subscribe(&mut client, filter, settings.qos).await?;
        client.disconnect().await.map_err(|error| error.to_string())
    };
    timeout(SETUP_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("not subscribed within {} s", SETUP_TIMEOUT.as_secs()))?
        .map_err(|error: String| format!("{client_id}: {error}"))
}

/// Ends the session of subscriber `index` and whatever is queued for it: a clean connection
/// under the same client identifier.
pub async fn remove_session(settings: Arc<Settings>, index: usize) -> Result<(), String> {
    let client_id = session_id(&settings, index);
    let options = session_options(&settings, index);
    let attempt = async {
        let mut client = Client::connect(options).await.map_err(|error| error.to_string())?;
        client.disconnect().await.map_err(|error| error.to_string())
    };
    timeout(SETUP_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("{client_id}: not removed within {} s", SETUP_TIMEOUT.as_secs()))?
        .map_err(|error| format!("{client_id}: removing the session: {error}"))
}

/// What the publisher did.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    /// Messages written.
    pub sent: u64,
    /// Acknowledgements received (PUBACK, or PUBCOMP at QoS 2).
    pub acked: u64,
    /// Of them, acknowledgements with a failure reason code (v5): the broker refused the
    /// message, so no subscriber is owed it.
    pub refused: u64,
    /// Messages still unacknowledged when the publisher gave up waiting.
    pub unacknowledged: u64,
    /// From the first PUBLISH to the last acknowledgement, seconds.
    pub seconds: f64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl Publication {
    /// Messages the broker accepted: what each subscriber is owed.
    pub fn accepted(&self) -> u64 {
        self.acked - self.refused
    }
}

/// Publishes `count` messages (sequence numbers 0 to `count` - 1, publisher 0) to `topic` at
/// `--qos` as client `client_id`, keeping at most `--inflight` unacknowledged, and waits for
/// every acknowledgement. `acked` follows the acknowledgements, for the progress line. An
/// error is a connection that could not be made; what happens after is in the result.
pub async fn publish_all(
    settings: &Settings,
    client_id: String,
    topic: &TopicName,
    count: u64,
    acked: &AtomicU64,
) -> Result<Publication, String> {
    let options = settings.options(client_id.clone());
    let mut client = timeout(SETUP_TIMEOUT, Client::connect(options))
        .await
        .map_err(|_| format!("{client_id}: not connected within {} s", SETUP_TIMEOUT.as_secs()))?
        .map_err(|error| format!("{client_id}: {error}"))?;
    let inflight = usize::from(settings.inflight);
    let mut writer = PayloadWriter::new(0, settings.size);
    let mut done = Publication::default();
    let started = Instant::now();
    while done.acked < count {
        while done.sent < count && client.unacknowledged() < inflight {
            if let Err(error) = client.publish(topic, writer.next(done.sent as u32), settings.qos, false) {
                done.error = Some(format!("{client_id}: {error}"));
                break;
            }
            done.sent += 1;
        }
        if done.error.is_some() {
            break;
        }
        match timeout(ACK_STALL, client.poll()).await {
            Ok(Ok(Event::Published { reason, .. })) => {
                done.acked += 1;
                if reason.is_error() {
                    done.refused += 1;
                }
                acked.store(done.acked, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                done.error = Some(format!("{client_id}: {error}"));
                break;
            }
            Err(_) => {
                done.error = Some(format!(
                    "{client_id}: no acknowledgement for {} s ({} of {count} acknowledged)",
                    ACK_STALL.as_secs(),
                    done.acked
                ));
                break;
            }
        }
    }
    done.seconds = started.elapsed().as_secs_f64();
    done.unacknowledged = done.sent - done.acked;
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    Ok(done)
}

/// What a returning subscriber received of the `expected` messages queued for it, numbered
/// 0 to `expected` - 1 by one publisher.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Messages received, repeats included.
    pub received: u64,
    /// Distinct sequence numbers received.
    pub distinct: u64,
    /// Messages whose sequence number had come already.
    pub duplicates: u64,
    /// New messages that came after a later one: QoS 1/2 messages on one topic from one
    /// publisher must arrive in order (MQTT-4.6.0-5).
    pub out_of_order: u64,
    /// Messages without a bench header, or numbered beyond what was published.
    pub foreign: u64,
    /// Messages published: sequence numbers 0 to this - 1.
    expected: u64,
    /// The highest sequence number so far.
    highest: Option<u32>,
    /// One bit per sequence number: received.
    seen: Vec<u64>,
}

impl Tally {
    /// Nothing received yet of `expected` messages.
    pub fn new(expected: u64) -> Self {
        let words = usize::try_from(expected.div_ceil(64)).unwrap_or(usize::MAX);
        let seen = vec![0; words];
        Self { received: 0, distinct: 0, duplicates: 0, out_of_order: 0, foreign: 0, expected, highest: None, seen }
    }

    /// Accounts for one message.
    pub fn record(&mut self, payload: &[u8]) {
        self.received += 1;
        let header = payload::parse(payload);
        let Some(header) = header.filter(|header| header.publisher == 0 && u64::from(header.seq) < self.expected)
        else {
            self.foreign += 1;
            return;
        };
        let (word, bit) = (header.seq as usize / 64, 1u64 << (header.seq % 64));
        let Some(slot) = self.seen.get_mut(word) else {
            self.foreign += 1; // not reached: `seen` covers every number below `expected`
            return;
        };
        if *slot & bit != 0 {
            self.duplicates += 1;
            return;
        }
        *slot |= bit;
        self.distinct += 1;
        if self.highest.is_some_and(|highest| header.seq < highest) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(header.seq));
    }

    /// Adds another subscriber's tally to this one's counts.
    pub fn add(&mut self, other: &Tally) {
        self.received += other.received;
        self.distinct += other.distinct;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
    }
}

/// A returning subscriber's reading of its queue.
#[derive(Debug, Clone)]
pub struct Reading {
    /// What arrived.
    pub tally: Tally,
    /// Whether the broker said it still had the session (CONNACK Session Present).
    pub session_present: bool,
    /// From the CONNECT to the first message.
    pub first_message: Option<Duration>,
    /// From the CONNECT to the last new message (to the CONNACK when none came).
    pub seconds: f64,
    /// When the last new message came (the CONNACK when none came).
    pub last: Instant,
    /// Why it stopped before every message came, if it did.
    pub error: Option<String>,
}

/// Reconnects persistent subscriber `index` to its session and receives until `expected`
/// distinct messages have come or none came for [`READ_STALL`], then disconnects. Each message
/// is acknowledged as it is taken (the client queues the PUBACK, written with the next read or
/// with the DISCONNECT). `received` follows the messages, for the progress line. An error is
/// a connection that could not be made.
pub async fn read_queue(
    settings: Arc<Settings>,
    index: usize,
    expected: u64,
    received: Arc<AtomicU64>,
) -> Result<Reading, String> {
    let client_id = session_id(&settings, index);
    let started = Instant::now();
    let options = persistent_options(&settings, index);
    let mut client = timeout(SETUP_TIMEOUT, Client::connect(options))
        .await
        .map_err(|_| format!("{client_id}: not reconnected within {} s", SETUP_TIMEOUT.as_secs()))?
        .map_err(|error| format!("{client_id}: {error}"))?;
    let mut reading = Reading {
        tally: Tally::new(expected),
        session_present: client.connack().session_present,
        first_message: None,
        seconds: started.elapsed().as_secs_f64(),
        last: Instant::now(),
        error: None,
    };
    if !reading.session_present {
        // A new, empty session: nothing will come.
        reading.error = Some(format!("{client_id}: the broker no longer had the session (Session Present 0)"));
    }
    while reading.session_present && reading.tally.distinct < expected {
        match timeout(READ_STALL, client.poll()).await {
            Ok(Ok(Event::Message(message))) => {
                reading.first_message.get_or_insert_with(|| started.elapsed());
                let distinct = reading.tally.distinct;
                reading.tally.record(&message.payload);
                if reading.tally.distinct > distinct {
                    reading.last = Instant::now();
                    reading.seconds = (reading.last - started).as_secs_f64();
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                reading.error.get_or_insert_with(|| format!("{client_id}: {error}"));
                break;
            }
            Err(_) => {
                reading.error.get_or_insert_with(|| {
                    format!(
                        "{client_id}: no message for {} s after {} of {expected}",
                        READ_STALL.as_secs(),
                        reading.tally.distinct
                    )
                });
                break;
            }
        }
    }
    // The DISCONNECT goes out after the last PUBACKs, so the broker sees them all.
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    Ok(reading)
}

/// The broker's resident memory once it has stopped moving: read after `first` (`--settle`),
/// then every [`SETTLE_INTERVAL`] until two readings in a row are within [`SETTLE_TOLERANCE`]
/// of each other, or for [`SETTLE_MAX`] more at most. Returns the last reading and whether it
/// settled; `None` without a process to read.
///
/// `first` should be longer than the broker's allocator keeps freed memory before returning
/// it (jemalloc's decay, 10 s, which midge's background thread runs on time; decision 0007):
/// the purge follows a curve that starts flat, so readings taken at once look settled while a
/// burst's freed memory is still resident. One run read 13 and another 40 bytes per queued
/// delivery that way, depending on the moment.
pub async fn settle_rss(pid: Option<u32>, first: Duration) -> Option<(u64, bool)> {
    let pid = pid?;
    tokio::time::sleep(first).await;
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = system::process_rss_kib(pid).ok()?;
    loop {
        tokio::time::sleep(SETTLE_INTERVAL).await;
        let now = system::process_rss_kib(pid).ok()?;
        if (now as f64 - last as f64).abs() <= SETTLE_TOLERANCE * last.max(1) as f64 {
            return Some((now, true));
        }
        if Instant::now() >= deadline {
            return Some((now, false));
        }
        last = now;
    }
}

/// Runs `future`, printing `line()` as the progress line once a second meanwhile (with
/// `progress`).
pub async fn with_progress<F: Future>(progress: bool, future: F, mut line: impl FnMut() -> String) -> F::Output {
    tokio::pin!(future);
    let mut ticks = tokio::time::interval_at(Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            output = &mut future => return output,
            _ = ticks.tick() => if progress {
                report::progress(format_args!("{}", line()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_repeats_late_arrivals_and_strangers_apart() {
        let mut tally = Tally::new(100);
        let mut writer = PayloadWriter::new(0, 64);
        for seq in [0, 1, 3, 2, 3, 99, 4] {
            tally.record(&writer.next(seq));
        }
        tally.record(&writer.next(100)); // beyond what was published
        tally.record(&PayloadWriter::new(1, 64).next(5)); // another publisher
        tally.record(b"short");
        assert_eq!((tally.received, tally.distinct, tally.duplicates), (10, 6, 1));
        // 2 came after 3, and 4 after 99.
        assert_eq!((tally.out_of_order, tally.foreign), (2, 3));
        let mut sum = Tally::new(0);
        sum.add(&tally);
        sum.add(&tally);
        assert_eq!((sum.received, sum.distinct, sum.out_of_order), (20, 12, 4));
    }
}
