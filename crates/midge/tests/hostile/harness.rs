//! The hostile-client suite's harness: a broker to attack, a canary that shows whether anyone
//! else noticed the attack, and raw sockets for attackers that do not finish (or never start)
//! speaking MQTT.
//!
//! # Layout
//! - [`start_broker`]: `midge serve` on 127.0.0.1 with `[mqtt]` settings (the support module's
//!   [`TestBroker`] underneath: killed when dropped).
//! - [`Canary`]: a well-behaved QoS 1 publisher and subscriber pair at a fixed pace, started
//!   before an attack ([`Canary::start`], or [`Canary::start_logged_in`] with a user name and
//!   password) and checked after it ([`Canary::finish`]): every acknowledged message arrived,
//!   once, in order, each within [`CANARY_MAX_LATENCY`].
//! - Raw sockets: [`open_silent`] (connections that never speak, opened so that the broker
//!   has accepted each by a known time), [`expect_all_closed`] (the broker closes each within
//!   its window), [`assert_serves_new_client`] (a new client still gets a full round trip).
//! - The broker process, read from `/proc`: [`open_fds`], [`memory_kib`]; its log:
//!   [`wait_for_log_line`].
//! - Bounded waits: [`wait_until`] (a condition with a deadline, for state only `/proc` or the
//!   log shows), [`run_bounded`] (work that may block in a write the broker never reads),
//!   [`all_joined`] (many attacker threads, every failure reported).
//! - Names and bounds: [`unique`] (client ids), [`VERSIONS`], [`PATIENCE`], [`MARGIN`],
//!   [`QUIET`].
//!
//! # Usage
//! ```ignore
//! let broker = start_broker("connect_timeout_ms = 1000");
//! let canary = Canary::start(&broker, "my-attack");
//! // ... the attack, and what the attacker must see ...
//! assert_serves_new_client(&broker);
//! eprintln!("{}", canary.finish());
//! ```
//!
//! # Waiting
//! Nothing here sleeps to let the broker catch up: every wait is a read with a deadline, or a
//! condition polled until a deadline ([`wait_until`]). The canary's publisher sleeps to keep its
//! pace, which is the point of a canary, not a synchronisation.
// Helpers for the attacks still to come (issue 13's new limits) are kept even while unused.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conformance_wire::{build, Client, Connect, Event, Packet, Publish, Version};
use crate::support::TestBroker;

/// How long a well-behaved client waits for anything the broker owes it while an attack runs.
/// Generous: the tests run two debug brokers and their attackers on two cores at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long to listen when a test must show that nothing more arrives and no barrier message
/// can mark the end.
pub const QUIET: Duration = Duration::from_millis(500);

/// Time the broker is given, beyond a configured timeout, to act on it: its timers, and the
/// close reaching the client, on a loaded machine.
pub const MARGIN: Duration = Duration::from_secs(2);

/// The canary's pace: one QoS 1 message every 10 ms (100 a second).
pub const CANARY_PACE: Duration = Duration::from_millis(10);

/// Messages the canary publishes at the least, so that it spans the attack however short.
pub const CANARY_MIN_MESSAGES: u32 = 200;

/// The longest a canary message may take from its PUBLISH to its delivery. Idle, a debug
/// broker takes well under a millisecond; this is generous so that only a canary that is not
/// served (held up behind an attacker, or lost) fails, not a loaded machine.
pub const CANARY_MAX_LATENCY: Duration = Duration::from_secs(5);

/// Every protocol version, for tests that run an attack in each.
pub const VERSIONS: [Version; 3] = [Version::V3_1, Version::V3_1_1, Version::V5];

/// A midge broker with these `[mqtt]` settings (one per line, e.g. "connect_timeout_ms = 1000")
/// and the default store, in the broker's own temporary directory. Always midge: the attacks
/// configure midge-only bounds (`MIDGE_TEST_TARGET` is not consulted).
pub fn start_broker(mqtt: &str) -> TestBroker {
    TestBroker::start_midge_with(&format!("[mqtt]\n{mqtt}\n"))
}

/// A short name unique within this test process, for client ids and topics.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A well-behaved publisher (3.1.1) and subscriber (5.0) pair on topic `canary/NAME`, both QoS 1:
/// the publisher sends one message every [`CANARY_PACE`] and waits for its PUBACK before the
/// next; the subscriber acknowledges each message and notes its latency.
pub struct Canary {
    /// Names it in its topic, client ids and failures.
    name: String,
    /// Set by [`Canary::finish`]: the publisher stops once it has sent its minimum.
    stop: Arc<AtomicBool>,
    /// The publisher's thread: how many messages were acknowledged, or why it was not served.
    publisher: JoinHandle<Result<u32, String>>,
    /// The subscriber's thread: what it received, or why it was not served.
    subscriber: JoinHandle<Result<Vec<Delivery>, String>>,
}

/// One message the canary's subscriber received.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// Its number, from 0 in the order published.
    seq: u32,
    /// From the publisher's PUBLISH to the subscriber's read.
    latency: Duration,
}

/// What a canary saw, for the test's output.
#[derive(Debug, Clone)]
pub struct CanaryReport {
    /// Its name.
    pub name: String,
    /// Messages published, acknowledged and delivered.
    pub messages: u32,
    /// Median latency, PUBLISH sent to PUBLISH received.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The worst latency.
    pub max: Duration,
}

impl std::fmt::Display for CanaryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "canary {}: {} messages, latency p50 {:?}, p99 {:?}, max {:?}",
            self.name, self.messages, self.p50, self.p99, self.max
        )
    }
}

impl Canary {
    /// Connects the pair (the subscription is in place when this returns) and starts publishing.
    /// `name` must be unique among the canaries of one broker.
    pub fn start(broker: &TestBroker, name: &str) -> Self {
        Self::start_with(broker, name, None)
    }

    /// [`Canary::start`] with both clients logging in with this user name and password.
    pub fn start_logged_in(broker: &TestBroker, name: &str, username: &str, password: &[u8]) -> Self {
        Self::start_with(broker, name, Some((username, password)))
    }

    /// [`Canary::start`], each client logging in with `login` (user name, password) if given.
    fn start_with(broker: &TestBroker, name: &str, login: Option<(&str, &[u8])>) -> Self {
        let connect = |version, client_id: String| {
            let connect = Connect::new(version, &client_id);
            let connect = match login {
                Some((username, password)) => connect.user(username, Some(password)),
                None => connect,
            };
            Client::connect(broker, &connect).0
        };
        let topic = format!("canary/{name}");
        let mut subscriber = connect(Version::V5, format!("canary-sub-{name}"));
        assert_eq!(subscriber.subscribe(&topic, 1), 1, "canary subscription");
        let publisher = connect(Version::V3_1_1, format!("canary-pub-{name}"));
        let origin = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        // The count of acknowledged messages once the publisher is done; u32::MAX before.
        let published = Arc::new(AtomicU32::new(u32::MAX));
        let publishing = {
            let (stop, published) = (Arc::clone(&stop), Arc::clone(&published));
            std::thread::Builder::new()
                .name(format!("canary-pub-{name}"))
                .spawn(move || {
                    let mut acked = 0;
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        publish_paced(publisher, &topic, origin, &stop, &mut acked)
                    }))
                    .unwrap_or_else(|panic| Err(panic_text(&panic)));
                    published.store(acked, Ordering::Release);
                    result.map(|()| acked)
                })
                .expect("spawn canary publisher")
        };
        let receiving = std::thread::Builder::new()
            .name(format!("canary-sub-{name}"))
            .spawn(move || receive_all(subscriber, origin, &published))
            .expect("spawn canary subscriber");
        Self { name: name.to_owned(), stop, publisher: publishing, subscriber: receiving }
    }

    /// Stops the canary (once it has sent [`CANARY_MIN_MESSAGES`]) and checks it: every PUBACK
    /// came within [`PATIENCE`], and every acknowledged message was delivered exactly once, in
    /// order (MQTT-4.6.0-5 in 5.0, MQTT-4.6.0-6 in 3.1.1: an ordered topic), and within
    /// [`CANARY_MAX_LATENCY`] of its PUBLISH. Panics saying what went wrong.
    pub fn finish(self) -> CanaryReport {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.publisher.join().unwrap_or_else(|p| Err(panic_text(&p)));
        let delivered = self.subscriber.join().unwrap_or_else(|p| Err(panic_text(&p)));
        let name = &self.name;
        let acked = acked.unwrap_or_else(|e| panic!("canary {name}: the publisher was not served: {e}"));
        let delivered = delivered.unwrap_or_else(|e| panic!("canary {name}: the subscriber was not served: {e}"));
        for (expected, got) in (0..acked).zip(&delivered) {
            assert_eq!(
                got.seq, expected,
                "canary {name}: message {expected} of {acked} acknowledged is not the next delivered (lost, \
                 duplicated or out of order)"
            );
        }
        assert_eq!(
            delivered.len(),
            acked as usize,
            "canary {name}: {acked} acknowledged, delivered {}",
            delivered.len()
        );
        let mut latencies: Vec<Duration> = delivered.iter().map(|d| d.latency).collect();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        let report = CanaryReport { name: name.clone(), messages: acked, p50: at(0.5), p99: at(0.99), max: at(1.0) };
        assert!(report.max <= CANARY_MAX_LATENCY, "canary {name} held up: {report}");
        report
    }
}

/// The canary's publisher: one QoS 1 message per [`CANARY_PACE`], each acknowledged before the
/// next, until `stop` once at least [`CANARY_MIN_MESSAGES`] are out. `acked` counts PUBACKs.
fn publish_paced(
    mut client: Client,
    topic: &str,
    origin: Instant,
    stop: &AtomicBool,
    acked: &mut u32,
) -> Result<(), String> {
    loop {
        let seq = *acked;
        if seq >= CANARY_MIN_MESSAGES && stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // The pace: a fixed rate, catching up after a slow PUBACK.
        if let Some(wait) = (origin + CANARY_PACE * seq).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = (seq % u32::from(u16::MAX)) as u16 + 1;
        let sent = origin.elapsed().as_micros();
        client.send(&Publish::new(topic, format!("{seq} {sent}").as_bytes(), 1).id(id).encode(client.version));
        match client.next(PATIENCE) {
            Event::Packet(Packet::Puback(ack)) if ack.id == id && ack.reason < 0x80 => *acked += 1,
            other => return Err(format!("message {seq}: expected PUBACK {id}, got {other:?}")),
        }
    }
}

/// The canary's subscriber: acknowledges and records every message until it has as many as
/// the publisher had acknowledged once that is known (`published` below u32::MAX), giving the
/// last ones [`PATIENCE`] to arrive.
fn receive_all(mut client: Client, origin: Instant, published: &AtomicU32) -> Result<Vec<Delivery>, String> {
    let mut got = Vec::new();
    let mut last_call: Option<Instant> = None;
    loop {
        let total = published.load(Ordering::Acquire);
        if total != u32::MAX {
            if got.len() >= total as usize {
                return Ok(got);
            }
            let deadline = *last_call.get_or_insert_with(|| Instant::now() + PATIENCE);
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} of {total} acknowledged messages delivered, none more within {PATIENCE:?}",
                    got.len()
                ));
            }
        }
        match client.next(Duration::from_millis(50)) {
            Event::Packet(Packet::Publish(p)) => {
                client.send(&build::ack(build::PUBACK, client.version, p.id, 0));
                let now = origin.elapsed();
                let text = String::from_utf8_lossy(&p.payload).into_owned();
                let parsed = text.split_once(' ').and_then(|(seq, sent)| Some((seq.parse().ok()?, sent.parse().ok()?)));
                let Some((seq, sent_us)) = parsed else { return Err(format!("not a canary payload: {text:?}")) };
                got.push(Delivery { seq, latency: now.saturating_sub(Duration::from_micros(sent_us)) });
            }
            Event::Silent => {}
            Event::Closed => return Err(format!("connection closed after {} messages", got.len())),
            Event::Packet(other) => return Err(format!("unexpected {other:?} after {} messages", got.len())),
        }
    }
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// Connections opened per batch by [`open_silent`]: under the broker's accept queue, which
/// holds 128 (the listen backlog tokio takes from std).
pub const ACCEPT_BATCH: usize = 100;

/// A connection that sends nothing unless the test makes it.
pub struct Silent {
    /// The connection.
    pub stream: TcpStream,
    /// When it was opened (client side): the broker cannot have accepted it before.
    pub opened: Instant,
    /// When the broker had accepted it at the latest (see [`open_silent`]).
    pub accepted_by: Instant,
}

/// Opens `count` TCP connections to the broker that send nothing, in batches of
/// [`ACCEPT_BATCH`], each batch followed by a full round trip of a new client
/// ([`assert_serves_new_client`]). The broker accepts in order, so once that client is served
/// every connection opened before it has been accepted: that bounds when each one's timers
/// started. Opening them all at once would overflow the kernel's accept queue, and a
/// connection beyond it is established on the broker's side only when the broker's SYN-ACK is
/// resent, a second or more later, its timers with it.
pub fn open_silent(broker: &TestBroker, count: usize) -> Vec<Silent> {
    let mut all = Vec::with_capacity(count);
    while all.len() < count {
        let batch: Vec<(TcpStream, Instant)> = (all.len()..count.min(all.len() + ACCEPT_BATCH))
            .map(|i| {
                let stream = TcpStream::connect(broker.addr).unwrap_or_else(|e| panic!("silent connection {i}: {e}"));
                (stream, Instant::now())
            })
            .collect();
        assert_serves_new_client(broker);
        let accepted_by = Instant::now();
        all.extend(batch.into_iter().map(|(stream, opened)| Silent { stream, opened, accepted_by }));
    }
    all
}

/// A connection the broker must close, and when.
pub struct Watched {
    /// Names it in failures.
    pub label: String,
    /// The connection.
    pub stream: TcpStream,
    /// Not closed before this (e.g. opened + the connect timeout); `None`: any time.
    pub not_before: Option<Instant>,
    /// Closed by this.
    pub deadline: Instant,
}

/// How a connection ended, as [`wait_closed`] saw it.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    /// When the close was read: no earlier than the broker closed.
    pub at: Instant,
    /// Bytes the broker sent before closing.
    pub bytes: usize,
}

/// Waits for the broker to close every connection by its deadline, with nothing sent first,
/// and none before its `not_before`. Waits in deadline order, so that waiting for one never
/// spends another's time. Returns the failures, by label.
pub fn expect_all_closed(mut watched: Vec<Watched>) -> Vec<String> {
    watched.sort_by_key(|w| w.deadline);
    let mut failures = Vec::new();
    for mut w in watched {
        match wait_closed(&mut w.stream, w.deadline) {
            Ok(closed) if closed.bytes > 0 => {
                failures.push(format!("{}: sent {} bytes before the close", w.label, closed.bytes))
            }
            Ok(closed) if w.not_before.is_some_and(|t| closed.at < t) => failures.push(format!(
                "{}: closed {:?} too early",
                w.label,
                w.not_before.map(|t| t - closed.at).unwrap_or_default()
            )),
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: {e}", w.label)),
        }
    }
    failures
}

/// Waits until the broker closes `stream` (end of stream, or a reset), reading and counting
/// whatever it sends first; `Err` if it is still open at `deadline`.
pub fn wait_closed(stream: &mut TcpStream, deadline: Instant) -> Result<Closed, String> {
    let mut bytes = 0;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open at its deadline ({bytes} bytes received)"));
        }
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Closed { at: Instant::now(), bytes }),
            Ok(n) => bytes += n,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return Ok(Closed { at: Instant::now(), bytes })
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Asserts that a new client is served in full: a 5.0 client connects, subscribes, publishes
/// a QoS 1 message to itself and receives it, then disconnects.
pub fn assert_serves_new_client(broker: &TestBroker) {
    let id = unique("fresh");
    let mut client = Client::new(broker, Version::V5, &id);
    let topic = format!("fresh/{id}");
    assert_eq!(client.subscribe(&topic, 1), 1, "a new client's subscription");
    client.publish_msg(&topic, b"still served", 1);
    assert_eq!(client.receive().payload, b"still served", "a new client's round trip");
    client.disconnect();
}

/// How many file descriptors the process `pid` has open (its sockets among them).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// A `/proc/PID/status` memory figure in KiB: "VmRSS" (resident) or "VmSize" (address space).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Polls `ready` until it holds; panics after `timeout` naming `what`. For state that only
/// `/proc` shows (the broker's open descriptors), which sends no event to wait on.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `work` on its own thread and waits at most `timeout` for it, panicking naming `what` if
/// it does not finish in time (its thread is left behind, blocked on a broker the test will
/// kill) or if it panics. For attackers and clients that block in a write the broker may never
/// read, which no read timeout bounds.
pub fn run_bounded<T: Send + 'static>(what: &str, timeout: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            let _ = done.send(outcome.map_err(|panic| panic_text(&panic)));
        })
        .expect("spawn");
    match result.recv_timeout(timeout) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => panic!("{what}: {panic}"),
        Err(_) => panic!("{what}: not done within {timeout:?}"),
    }
}

/// Waits until the broker has logged a line containing every one of `needles`; panics after
/// `timeout`.
pub fn wait_for_log_line(broker: &TestBroker, needles: &[&str], timeout: Duration) -> String {
    let mut found = None;
    wait_until(&format!("a log line with {needles:?}"), timeout, || {
        found = broker.log().into_iter().find(|line| needles.iter().all(|needle| line.contains(needle)));
        found.is_some()
    });
    found.unwrap_or_default()
}

/// The results of a many-client attack's threads, once joined (`handle.join()`), panicking
/// with every failure among them.
pub fn all_joined<T>(joined: impl IntoIterator<Item = std::thread::Result<T>>) -> Vec<T> {
    let mut failures = Vec::new();
    let mut results = Vec::new();
    for (i, outcome) in joined.into_iter().enumerate() {
        match outcome {
            Ok(result) => results.push(result),
            Err(panic) => failures.push(format!("thread {i}: {}", panic_text(&panic))),
        }
    }
    assert!(failures.is_empty(), "{} attacker threads failed:\n{}", failures.len(), failures.join("\n"));
    results
}
