//! Cluster mode (issue 17, decision 0010): persistent sessions that survive their node, through
//! JetStream. On a node of a cluster a persistent session (MQTT 5 with a Session Expiry Interval
//! above 0, or 3.1.1 with clean session 0) gets its QoS 1 and 2 messages through a JetStream
//! stream and a durable consumer of its own; a publisher's PUBACK (QoS 1) or PUBREC (QoS 2) goes
//! out once JetStream has stored the message. So what a publisher on a surviving node was told
//! is stored reaches the session, whatever happens to the node that held it, and a subscriber on
//! another node slower than the publisher loses nothing.
//!
//! Three nats-servers with JetStream (`nats_common`, replicas 3) and up to three Midge nodes, A,
//! B and C, each on its own NATS server, so that everything between nodes crosses a NATS route.
//! The clients are paho-mqtt 2.x for Python, one connection per process, driven by
//! `tests/paho/durable_client.py` (one JSON line per event: the publisher's acknowledgement of
//! each numbered message, the subscriber's CONNACK with Session Present and each message with
//! its number), and in one test Debian's `mosquitto_sub`. Each message's payload is its number,
//! so "every acknowledged message arrived" is a set difference.
//!
//! Nothing sleeps in place of synchronisation: every wait is for a client's event or a log line,
//! with a timeout. A node's death is noticed by its survivors within its lease, and what was in
//! flight to a client on it comes back after the consumer's redelivery wait: the nodes run with
//! short ones ([`LEASE_SECS`], [`REDELIVERY_SECS`]), and the tests wait for the messages
//! themselves, bounded by those times and [`WAIT`].

mod interop_common;
mod nats_common;
mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interop_common::mosquitto::{self, MESSAGE};
use nats_common::NatsCluster;
use serde_json::Value;
use support::TestBroker;

/// How long any one awaited event may take.
const WAIT: Duration = Duration::from_secs(15);

/// The nodes' `[cluster] lease_secs`: short, so that a killed node is noticed within the waits.
const LEASE_SECS: u64 = 2;

/// The nodes' `[cluster] redelivery_secs`: how long a durable consumer waits for the ack of a
/// message it delivered before it delivers it again (a message in flight on a killed node).
const REDELIVERY_SECS: u64 = 2;

/// The `[cluster]` keys of durable sessions, beyond those every cluster test sets.
const DURABLE_KEYS: &str = "redelivery_secs = 2\n";

/// The node names, in order.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// Messages in the stream of the kill tests: half before B dies, half after.
const STREAM: u64 = 2000;

/// How many of the stream the subscriber must have received through B before B is killed.
const BEFORE_THE_KILL: usize = 100;

/// How many more A must have acknowledged, while the subscriber reads nothing, before B is
/// killed: messages in flight on B.
const IN_FLIGHT: usize = 200;

// ---------------------------------------------------------------------------------------------
// The tests.

/// A persistent QoS 1 subscriber on B, a numbered QoS 1 stream published on A. B is killed with
/// SIGKILL mid-stream; the stream goes on; the client reconnects to C with clean start 0. It gets
/// Session Present 1 (MQTT 5.0: MQTT-3.2.2-3) with its subscription (it does not subscribe again), and
/// every message whose PUBACK A sent, those published while it was away included, and those in
/// flight to it on B once their redelivery wait is out. QoS 1 is at least once: a message may
/// come twice.
#[test]
fn a_persistent_subscriber_gets_every_acknowledged_message_after_its_node_is_killed() {
    let outcome = a_subscriber_outlives_its_node("5", 1, "d1", "durable-1");
    outcome.assert_every_acknowledged_message_arrived();
}

/// The same at QoS 2: every message whose PUBREC (and PUBCOMP) A sent arrives, and exactly once
/// (MQTT 5.0 section 4.3.3, exactly once delivery: the session's node may die between a PUBLISH
/// and its PUBREL, the message must still be passed on once). paho passes a QoS 2 message on at its
/// PUBREL and keeps the packet ids awaiting one across the reconnect, as the protocol's client
/// side requires. When B dies, the message the client holds (see the scenario) has had its PUBREL
/// and no PUBCOMP yet: C must send that PUBREL again (the session's state, MQTT-4.4.0-1), not the
/// PUBLISH, or the client passes the message on twice.
#[test]
fn a_persistent_qos_2_subscriber_gets_every_acknowledged_message_once_after_its_node_is_killed() {
    let outcome = a_subscriber_outlives_its_node("5", 2, "d2", "durable-2");
    outcome.assert_every_acknowledged_message_arrived();
    let copies: Vec<String> =
        outcome.received.iter().filter(|(_, count)| **count > 1).map(|(n, count)| format!("{n} x{count}")).collect();
    assert!(copies.is_empty(), "QoS 2 messages passed on more than once: {copies:?}");
}

/// The QoS 1 test with an MQTT 3.1.1 client, clean session 0: Session Present 1 on C (3.1.1:
/// MQTT-3.2.2-2) and every acknowledged message.
#[test]
fn a_persistent_3_1_1_subscriber_gets_every_acknowledged_message_after_its_node_is_killed() {
    let outcome = a_subscriber_outlives_its_node("3.1.1", 1, "d5", "durable-5");
    outcome.assert_every_acknowledged_message_arrived();
}

/// A persistent QoS 1 subscriber on B that reads nothing while a publisher on A floods 20,000
/// QoS 1 messages as fast as A's PUBACKs allow: JetStream holds the backlog, so once the
/// subscriber reads again, every message A acknowledged arrives, in the order published (MQTT
/// 4.6: the order of first sendings of one publisher's QoS 1 messages is kept; a resend, DUP, may
/// repeat one). On one node the slow subscriber would pace the publisher; across nodes nothing
/// must be dropped instead (docs/cluster.md, gap 1, closed by the JetStream path).
#[test]
fn a_slow_remote_persistent_subscriber_loses_nothing_acknowledged() {
    const FLOOD: u64 = 20_000;
    let cluster = Cluster::start(2);
    let mut subscriber = Paho::subscriber(cluster.node(1), "durable-3");
    let connack = subscriber.connack();
    assert_eq!(connack["session_present"], false, "{connack}");
    subscriber.subscribe("d3/#", 1);
    let mut publisher = Paho::publisher(cluster.node(0), "durable-3-pub", "d3/s", 1, 100);
    publisher.connack();
    warm(&mut publisher, &mut subscriber, "d3");

    // The subscriber's network thread stops reading at its next message: from then on B cannot
    // hand it anything beyond what the socket's buffers hold.
    subscriber.send("hold");
    publisher.send(&format!("pub 0 {FLOOD} 0"));
    let acknowledged = publisher.acknowledgements(FLOOD, Duration::from_secs(30));
    subscriber.send("release");

    let mut received = Vec::new();
    let mut missing = acknowledged.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = subscriber.try_event(left, is_numbered_message) else { break };
        let n = number(&message);
        missing.remove(&n);
        received.push((n, message["dup"] == true));
    }
    assert!(
        missing.is_empty(),
        "{} of the {} messages A acknowledged never reached the subscriber on B (received {}), first: {:?}",
        missing.len(),
        acknowledged.len(),
        received.len(),
        missing.iter().take(20).collect::<Vec<_>>()
    );
    // Order: each message's first reception comes after every smaller number's.
    let mut seen = BTreeSet::new();
    let mut last = None;
    for (n, dup) in &received {
        if !seen.insert(*n) {
            // A resend to a connected client is marked (MQTT-3.3.1-1); a second "first" sending
            // would be out of order.
            assert!(*dup, "message {n} came a second time without DUP");
            continue;
        }
        assert!(last < Some(*n), "message {n} came after {last:?}: out of order");
        last = Some(*n);
    }
}

/// The kill test with a 3.1.1 client nobody on the team wrote: Debian's `mosquitto_sub -c`
/// (clean session 0) at QoS 1 on B, then, after B's SIGKILL, on C with the same client id. Every
/// message A acknowledged arrives. `mosquitto_sub` shows no Session Present and subscribes again
/// on every connection (the subscription it finds is replaced, MQTT-3.8.4-3), so this checks
/// the delivery only; the paho tests above check the session itself.
#[test]
fn a_persistent_mosquitto_sub_gets_every_acknowledged_message_after_its_node_is_killed() {
    let cluster = Cluster::start(3);
    let mut first = MosquittoSub::start(cluster.node(1), "durable-4", "d4/#");
    first.wait_line("its SUBACK", |line| line.starts_with("Subscribed (mid:"));
    let mut publisher = Paho::publisher(cluster.node(0), "durable-4-pub", "d4/s", 1, 20);
    publisher.connack();
    // Probes until one reaches the subscriber, as `warm` does for paho.
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.send("probe d4/probe");
        if first.try_line(Duration::from_millis(100), |line| line == format!("{MESSAGE}probe")).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no probe reached mosquitto_sub within {WAIT:?}");
    }

    let half = STREAM / 2;
    publisher.send(&format!("pub 0 {half} 1"));
    let mut received = BTreeSet::new();
    while received.len() < BEFORE_THE_KILL {
        let line = first.wait_line("a message through B", is_numbered_line);
        received.insert(line_number(&line));
    }
    // Stopped (SIGSTOP) while A goes on acknowledging: what B takes for it from then on is in
    // flight on B when B dies, never printed, and must come again after the redelivery wait.
    first.signal("-STOP");
    publisher.acknowledgements((BEFORE_THE_KILL + IN_FLIGHT) as u64, WAIT);
    cluster.kill_9(1);
    // It would try B again and again: it goes, and what it printed until then counts.
    received.extend(first.stop().iter().filter(|line| is_numbered_line(line)).map(|line| line_number(line)));
    publisher.send(&format!("pub {half} {STREAM} 0"));
    let acknowledged = publisher.acknowledgements(STREAM, WAIT);

    // Back on C. A refused connection ends mosquitto_sub: it is started again, as an operator's
    // supervisor would, for at most a lease and WAIT.
    let deadline = Instant::now() + WAIT + Duration::from_secs(LEASE_SECS);
    let mut second = loop {
        let mut second = MosquittoSub::start(cluster.node(2), "durable-4", "d4/#");
        let connack = second.wait_line("its CONNACK", |line| line.contains("received CONNACK"));
        if connack.ends_with("CONNACK (0)") {
            break second;
        }
        assert!(Instant::now() < deadline, "C refused the client for longer than a lease: {connack}");
        second.stop();
    };
    let deadline = Instant::now() + WAIT + Duration::from_secs(REDELIVERY_SECS);
    while acknowledged.iter().any(|n| !received.contains(n)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = second.try_line(left, is_numbered_line) else { break };
        received.insert(line_number(&line));
    }
    let missing: Vec<u64> = acknowledged.difference(&received).copied().collect();
    assert!(
        missing.is_empty(),
        "{} of the {} messages A acknowledged never reached mosquitto_sub ({} distinct received), first: {:?}",
        missing.len(),
        acknowledged.len(),
        received.len(),
        missing.iter().take(20).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// The kill scenario.

/// What the subscriber got in [`a_subscriber_outlives_its_node`].
struct Outcome {
    protocol: String,
    qos: u8,
    /// The CONNACK of its reconnection on C.
    connack: Value,
    /// The numbers A acknowledged.
    acknowledged: BTreeSet<u64>,
    /// Each number received, over both connections, with how many times.
    received: BTreeMap<u64, usize>,
}

impl Outcome {
    fn assert_every_acknowledged_message_arrived(&self) {
        let missing: Vec<u64> = self.acknowledged.iter().filter(|n| !self.received.contains_key(n)).copied().collect();
        // Both checked at once, so that a failure says everything that went wrong.
        assert!(
            self.connack["session_present"] == true && missing.is_empty(),
            "MQTT {} QoS {}: reconnected on C with {}; {} of the {} messages A acknowledged never arrived \
             ({} distinct received), first missing: {:?}",
            self.protocol,
            self.qos,
            self.connack,
            missing.len(),
            self.acknowledged.len(),
            self.received.len(),
            missing.iter().take(20).collect::<Vec<_>>()
        );
    }
}

/// A persistent subscriber (MQTT `protocol`, QoS `qos`) on B, a numbered stream at `qos` from a
/// publisher on A, B killed mid-stream with messages in flight to the client, the client back on
/// C: what it got.
fn a_subscriber_outlives_its_node(protocol: &str, qos: u8, root: &str, id: &str) -> Outcome {
    let cluster = Cluster::start(3);
    let mut subscriber = Paho::subscriber_with(cluster.node(1), id, protocol);
    let connack = subscriber.connack();
    assert_eq!(connack["session_present"], false, "{connack}");
    subscriber.subscribe(&format!("{root}/#"), qos);
    let mut publisher = Paho::publisher(cluster.node(0), &format!("{id}-pub"), &format!("{root}/s"), qos, 20);
    publisher.connack();
    warm(&mut publisher, &mut subscriber, root);

    // The first half, paced at one message a millisecond (the load's shape: the stream is
    // still going when B dies).
    let half = STREAM / 2;
    publisher.send(&format!("pub 0 {half} 1"));
    let mut received: BTreeMap<u64, usize> = BTreeMap::new();
    while received.values().sum::<usize>() < BEFORE_THE_KILL {
        let message = subscriber.wait_event("a message through B", is_numbered_message);
        *received.entry(number(&message)).or_default() += 1;
    }
    // The client stops reading (its network thread waits at its next message) while A goes on
    // acknowledging: what B takes for it from then on is in flight on B when B dies, unread or
    // unacknowledged, and must come again after the redelivery wait.
    subscriber.send("hold");
    publisher.acknowledgements((BEFORE_THE_KILL + IN_FLIGHT) as u64, WAIT);
    cluster.kill_9(1);
    subscriber.send("release");
    subscriber.wait_event("the close of the connection to B", |event| event["ev"] == "closed");
    publisher.send(&format!("pub {half} {STREAM} 0"));
    let acknowledged = publisher.acknowledgements(STREAM, WAIT);

    // Back on C with clean start 0, not subscribing again. While C does not know B is dead it
    // may refuse the client (for at most a lease): it connects again then, as a client would.
    let deadline = Instant::now() + WAIT + Duration::from_secs(LEASE_SECS);
    let connack = loop {
        subscriber.send(&format!("connect {}", cluster.node(2).port()));
        let connack = subscriber.connack();
        if connack["rc"] == 0 || Instant::now() >= deadline {
            break connack;
        }
        subscriber.wait_event("the close of a refused connection", |event| event["ev"] == "closed");
    };
    assert_eq!(connack["rc"], 0, "C refused the client for longer than a lease: {connack}");

    // Every acknowledged number, within the redelivery wait (for those in flight on B) and WAIT.
    let deadline = Instant::now() + WAIT + Duration::from_secs(REDELIVERY_SECS);
    while acknowledged.iter().any(|n| !received.contains_key(n)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = subscriber.try_event(left, is_numbered_message) else { break };
        assert_eq!(message["qos"], u64::from(qos), "granted QoS {qos}: {message}");
        *received.entry(number(&message)).or_default() += 1;
    }
    if qos == 2 {
        // Negative check, bounded: a second copy of a message the client already had (a
        // redelivery) would come within a redelivery wait of the last first copy.
        let quiet = Instant::now() + Duration::from_secs(REDELIVERY_SECS + 1);
        while let Some(message) =
            subscriber.try_event(quiet.saturating_duration_since(Instant::now()), is_numbered_message)
        {
            *received.entry(number(&message)).or_default() += 1;
        }
    }
    Outcome { protocol: protocol.to_owned(), qos, connack, acknowledged, received }
}

/// Publishes QoS 0 probes on `{root}/probe` from `publisher` until `subscriber` gets one: from
/// then on B (and NATS) route the tree to the subscriber, however interest reaches each NATS
/// server. A probe that finds no interest yet is lost: the next one is sent after a short wait
/// for the event, not instead of it.
fn warm(publisher: &mut Paho, subscriber: &mut Paho, root: &str) {
    let topic = format!("{root}/probe");
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.send(&format!("probe {topic}"));
        if subscriber.try_event(Duration::from_millis(100), |event| event["topic"] == topic.as_str()).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no probe on {topic} reached the subscriber within {WAIT:?}");
    }
    subscriber.drain();
}

fn is_numbered_message(event: &Value) -> bool {
    event["ev"] == "msg" && event["n"].is_u64()
}

fn number(message: &Value) -> u64 {
    message["n"].as_u64().expect("a numbered message")
}

fn is_numbered_line(line: &str) -> bool {
    line.strip_prefix(MESSAGE).is_some_and(|payload| payload.parse::<u64>().is_ok())
}

fn line_number(line: &str) -> u64 {
    line.strip_prefix(MESSAGE).and_then(|payload| payload.parse().ok()).expect("a numbered message line")
}

// ---------------------------------------------------------------------------------------------
// One mosquitto_sub.

/// `mosquitto_sub -V mqttv311 -c -q 1 -d` with no timeout of its own, its stdout read line by
/// line; killed (by its PID) on drop.
struct MosquittoSub {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The last lines read, for failure messages.
    recent: VecDeque<String>,
}

impl MosquittoSub {
    fn start(broker: &TestBroker, id: &str, filter: &str) -> Self {
        // With stdout a pipe, mosquitto_sub buffers its lines until it exits; line buffering
        // lets each through as it happens.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        mosquitto::connection_args(&mut command, broker, "mqttv311", id);
        command.args(["-c", "-q", "1", "-t", filter, "-d", "-F"]).arg(format!("{MESSAGE}%p"));
        command.stderr(Stdio::inherit());
        let (child, lines) =
            interop_common::spawn_lines(&mut command, "start mosquitto_sub (apt-get install mosquitto-clients)");
        Self { child, lines, recent: VecDeque::new() }
    }

    /// The next line matching `wanted` within `timeout`, or `None` (also once it has exited).
    fn try_line(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(line.clone());
            if wanted(&line) {
                return Some(line);
            }
        }
    }

    /// The next line matching `wanted`; panics after [`WAIT`] or if it exits first.
    fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        match self.try_line(WAIT, wanted) {
            Some(line) => line,
            None => panic!("mosquitto_sub printed no {what} within {WAIT:?}; last lines: {:?}", self.recent),
        }
    }

    /// Sends it `signal` (`kill SIGNAL PID`).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} mosquitto_sub");
    }

    /// Kills it and returns the lines it printed that were not read yet.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its stdout is closed now: the reader thread ends once it has passed on the rest.
        let mut rest = Vec::new();
        let deadline = Instant::now() + WAIT;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster.

/// Three nats-servers and `n` Midge nodes, node `i` connected to NATS server `i` only.
struct Cluster {
    nodes: Vec<TestBroker>,
    /// Dropped last: the nodes go first.
    _nats: NatsCluster,
}

impl Cluster {
    fn start(n: usize) -> Self {
        let nats = NatsCluster::start(3);
        let nodes = (0..n)
            .map(|i| {
                let config = format!(
                    "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
                     [store]\npersistence = false\n\n\
                     [cluster]\nnode = \"{name}\"\nurls = [\"{url}\"]\nreplicas = 3\nlease_secs = {LEASE_SECS}\n\
                     {DURABLE_KEYS}",
                    name = NAMES[i],
                    url = nats.url(i),
                );
                let node = TestBroker::start_midge_config(&config);
                node.wait_for_log("cluster: joined", WAIT);
                node
            })
            .collect();
        Self { nodes, _nats: nats }
    }

    fn node(&self, i: usize) -> &TestBroker {
        &self.nodes[i]
    }

    /// Kills node `i` with SIGKILL (by its PID): no goodbye to NATS, its clients or its store.
    /// As `cluster_ops.rs` does; the process is reaped when the cluster is dropped.
    fn kill_9(&self, i: usize) {
        let status = Command::new("kill").args(["-9", &self.nodes[i].pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -9 node {}", NAMES[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// One paho connection.

/// One paho-mqtt connection in its own `durable_client.py` process, killed on drop.
struct Paho {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    /// Events read but not yet asked for.
    pending: VecDeque<Value>,
    /// The last events read, for failure messages.
    recent: VecDeque<Value>,
    /// A publisher's messages answered so far (acknowledged or refused).
    answered: u64,
    /// A publisher's numbers acknowledged so far.
    acknowledged: BTreeSet<u64>,
}

/// How many events [`Paho::recent`] keeps.
const RECENT: usize = 20;

impl Paho {
    /// A persistent subscriber: MQTT 5, clean start 0, Session Expiry Interval 300.
    fn subscriber(broker: &TestBroker, id: &str) -> Self {
        Self::subscriber_with(broker, id, "5")
    }

    /// A persistent subscriber of `protocol`: "5" (clean start 0, Session Expiry Interval 300)
    /// or "3.1.1" (clean session 0).
    fn subscriber_with(broker: &TestBroker, id: &str, protocol: &str) -> Self {
        Self::start(broker, &["--role", "sub", "--id", id, "--protocol", protocol, "--expiry", "300"])
    }

    /// A publisher of numbered messages on `{prefix}/{n % 4}` at `qos`, `inflight` at a time.
    fn publisher(broker: &TestBroker, id: &str, prefix: &str, qos: u8, inflight: u16) -> Self {
        let (qos, inflight) = (qos.to_string(), inflight.to_string());
        Self::start(broker, &["--role", "pub", "--id", id, "--prefix", prefix, "--qos", &qos, "--inflight", &inflight])
    }

    fn start(broker: &TestBroker, args: &[&str]) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/paho/durable_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &broker.port().to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 (paho-mqtt 2.x: pip install 'paho-mqtt>=2,<3')");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            events,
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            answered: 0,
            acknowledged: BTreeSet::new(),
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()).expect("write to the paho client");
    }

    /// The next event matching `wanted` within `timeout`, or `None`; the others stay pending.
    fn try_event(&mut self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(at) = self.pending.iter().position(&wanted) {
            return self.pending.remove(at);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).ok()?;
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(event.clone());
            assert!(event["ev"] != "error", "paho client: {event}");
            if wanted(&event) {
                return Some(event);
            }
            self.pending.push_back(event);
        }
    }

    /// The next event matching `wanted`; panics after [`WAIT`].
    fn wait_event(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        match self.try_event(WAIT, wanted) {
            Some(event) => event,
            None => panic!("no {what} within {WAIT:?}; last events: {:?}", self.recent),
        }
    }

    fn connack(&mut self) -> Value {
        self.wait_event("CONNACK", |event| event["ev"] == "connack")
    }

    fn subscribe(&mut self, filter: &str, qos: u8) {
        self.send(&format!("sub {filter} {qos}"));
        let suback = self.wait_event("SUBACK", |event| event["ev"] == "suback");
        assert_eq!(suback["codes"][0], u64::from(qos), "{suback}");
    }

    /// Waits until the publisher has an answer for `count` of its messages (acknowledged:
    /// PUBACK, or PUBCOMP after PUBREC, under 0x80; or refused), within `timeout`: the numbers
    /// acknowledged so far.
    fn acknowledgements(&mut self, count: u64, timeout: Duration) -> BTreeSet<u64> {
        let deadline = Instant::now() + timeout;
        while self.answered < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.try_event(left, |event| event["ev"] == "acked" || event["ev"] == "refused") else {
                panic!(
                    "the publisher had {} of {count} answers after {timeout:?}; last events: {:?}",
                    self.answered, self.recent
                );
            };
            self.answered += 1;
            if event["ev"] == "acked" {
                self.acknowledged.insert(event["n"].as_u64().expect("n"));
            }
        }
        self.acknowledged.clone()
    }

    /// Forgets the events read so far and those waiting.
    fn drain(&mut self) {
        self.pending.clear();
        while self.events.try_recv().is_ok() {}
    }
}

impl Drop for Paho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
