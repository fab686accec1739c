//! Bridges (`[[bridge]]`, docs/bridges.md) over real sockets, against brokers and clients nobody
//! on the team wrote: Debian's `mosquitto` as the remote of a Midge bridge and as a bridge to
//! Midge, Midge to Midge, and `mosquitto_sub` / `mosquitto_pub` (MQTT 3.1.1 and 5.0) on either
//! side to publish and to watch.
//!
//! Nothing sleeps to synchronise. A bridge is known to be ready from its retained state
//! (`$SYS/broker/connection/NAME/state` = `1`: here once its local subscriptions exist, at the
//! remote once its subscriptions there were sent, as they go first on the connection), or from
//! a retained message on the far side seen on the near one; every wait is for a message or a
//! log line, bounded by [`WAIT`]. A message is counted exactly once by waiting for a sentinel
//! that travels the path a looped-back copy would take, behind it. The one check of an absence
//! (a lazy bridge below its threshold) watches for a bounded window longer than its poll.
//!
//! Outages of the lossless kind (a side killed with messages in flight) are tested in
//! `bridge.rs`; here a remote is only dropped to see the state and start types react.

mod interop_common;
mod support;
mod tls_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interop_common::{run_bounded, spawn_lines};
use support::{free_port, midge_bin, TestBroker};
use tls_common::Pki;

/// The longest any one awaited message or log line may take (a bridge reconnecting after
/// `restart_timeout = 1` included).
const WAIT: Duration = Duration::from_secs(15);

/// How `mosquitto_sub` prints a message: topic, QoS, retain flag, v5 Message Expiry Interval
/// and user properties (empty when absent), then the payload (last, so it may hold anything).
const FORMAT: &str = "MSG|%t|%q|%r|%E|%P|%p";

/// The state topic of bridge `name`, mosquitto's and Midge's default.
fn state_topic(name: &str) -> String {
    format!("$SYS/broker/connection/{name}/state")
}

/// A message as `mosquitto_sub` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    qos: u8,
    retain: bool,
    /// Message Expiry Interval as received (v5), or empty.
    expiry: String,
    /// User properties as `key:value` (v5), or empty.
    properties: String,
    payload: String,
}

impl Msg {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("MSG|")?;
        let mut fields = rest.splitn(6, '|');
        let topic = fields.next()?.to_owned();
        let qos = fields.next()?.parse().ok()?;
        let retain = fields.next()? == "1";
        let expiry = fields.next()?.to_owned();
        let properties = fields.next()?.to_owned();
        let payload = fields.next()?.to_owned();
        Some(Self { topic, qos, retain, expiry, properties, payload })
    }
}

/// A running `mosquitto_sub -d` on one filter at QoS 2, its lines read on a thread; killed
/// (by its PID) when dropped.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
    what: String,
}

impl Watch {
    /// Subscribes to `filter` on `broker` (`version`: "311" or "5") and waits for the SUBACK.
    fn start(broker: &TestBroker, version: &str, id: &str, filter: &str) -> Self {
        Self::start_with(broker, version, id, filter, &[])
    }

    /// [`Watch::start`] with more `mosquitto_sub` arguments (TLS ones, say).
    fn start_with(broker: &TestBroker, version: &str, id: &str, filter: &str, args: &[&str]) -> Self {
        // With stdout a pipe, mosquitto_sub buffers until it exits; line buffering lets each
        // line through as it happens.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &broker.port().to_string()]);
        command.args(["-V", version, "-i", id, "-t", filter, "-q", "2", "-d", "-F", FORMAT]).args(args);
        // Its errors (why it exited, should it) go to the test's output.
        command.stderr(Stdio::inherit());
        let (child, lines) = spawn_lines(&mut command, "mosquitto_sub (apt-get install mosquitto-clients)");
        let mut watch = Self { child, lines, seen: Vec::new(), what: format!("{id} on {filter}") };
        watch.line("Subscribed (mid:");
        watch
    }

    /// The next line within `deadline`; `None` when it passed.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} exited:\n{}", self.what, self.seen.join("\n")),
        }
    }

    /// Waits for a line containing `needle`.
    fn line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_line(deadline) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!("{}: no line containing {needle:?}; it printed:\n{}", self.what, self.seen.join("\n")),
            }
        }
    }

    /// The next message within `window`, if any.
    fn message_within(&mut self, window: Duration) -> Option<Msg> {
        let deadline = Instant::now() + window;
        loop {
            let line = self.next_line(deadline)?;
            if let Some(message) = Msg::parse(&line) {
                return Some(message);
            }
        }
    }

    /// Every message up to and including the first whose payload is `payload`.
    fn until(&mut self, payload: &str) -> Vec<Msg> {
        let mut messages = Vec::new();
        loop {
            let Some(message) = self.message_within(WAIT) else {
                panic!("{}: no message {payload:?}; it printed:\n{}", self.what, self.seen.join("\n"))
            };
            let last = message.payload == payload;
            messages.push(message);
            if last {
                return messages;
            }
        }
    }

    /// Waits for the message whose payload is `payload` and returns it.
    fn wait(&mut self, payload: &str) -> Msg {
        self.until(payload).pop().expect("until returns the message")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -V version -t topic -m payload -q qos ARGS` against `broker`; must succeed.
fn publish(broker: &TestBroker, version: &str, topic: &str, payload: &str, qos: u8, args: &[&str]) {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", version]);
    command.args(["-t", topic, "-m", payload, "-q", &qos.to_string()]).args(args);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_pub {topic} {payload} failed ({status}):\n{output}");
}

/// Waits until the retained state of bridge `name` on `broker` is `state`.
fn wait_state(broker: &TestBroker, name: &str, state: &str) {
    let mut watch = Watch::start(broker, "311", &format!("state-{name}-{state}"), &state_topic(name));
    let deadline = Instant::now() + WAIT;
    loop {
        match watch.message_within(deadline.saturating_duration_since(Instant::now())) {
            Some(message) if message.payload == state => return,
            Some(_) => {}
            None => panic!(
                "the state of bridge {name} never became {state:?}; watched:\n{}\nbroker log:\n{}",
                watch.seen.join("\n"),
                broker.log().join("\n")
            ),
        }
    }
}

/// A `[[bridge]]` table named `name` to `addresses`, with `keys` (more of its keys, and any
/// `[[bridge.topic]]` / `[bridge.tls]` tables after them). Reconnects after a second.
fn bridge(name: &str, addresses: &[String], keys: &str) -> String {
    let addresses: Vec<String> = addresses.iter().map(|address| format!("{address:?}")).collect();
    format!(
        "[[bridge]]\nname = \"{name}\"\naddresses = [{}]\nremote_clientid = \"{name}\"\nrestart_timeout = 1\n{keys}\n",
        addresses.join(", ")
    )
}

/// `[[bridge.topic]]`.
fn topic(pattern: &str, direction: &str, qos: u8, local_prefix: &str, remote_prefix: &str) -> String {
    format!(
        "[[bridge.topic]]\npattern = \"{pattern}\"\ndirection = \"{direction}\"\nqos = {qos}\n\
         local_prefix = \"{local_prefix}\"\nremote_prefix = \"{remote_prefix}\"\n"
    )
}

fn address(broker: &TestBroker) -> String {
    format!("127.0.0.1:{}", broker.port())
}

/// The `mosquitto_sub`/`mosquitto_pub` version argument for a bridge's `protocol_version`.
fn client_version(protocol_version: &str) -> &'static str {
    if protocol_version == "5" {
        "5"
    } else {
        "311"
    }
}

/// The payloads of `messages`, without the retained `ready` markers.
fn payloads(messages: &[Msg]) -> Vec<&str> {
    messages.iter().map(|m| m.payload.as_str()).filter(|p| *p != "ready").collect()
}

// ---- Midge bridging to Debian mosquitto ------------------------------------------------------

/// `out` lines carry QoS 0, 1 and 2 messages published on Midge to a mosquitto subscriber at
/// their QoS (the line's QoS 2 caps nothing); `in` lines carry QoS 0, 1 and 2 messages
/// published on mosquitto to a Midge subscriber.
fn midge_to_mosquitto_out_and_in(protocol_version: &str) {
    let v = client_version(protocol_version);
    let remote = TestBroker::start_mosquitto("");
    let config = bridge(
        "tomosq",
        &[address(&remote)],
        &format!(
            "protocol_version = \"{protocol_version}\"\n{}{}",
            topic("out/#", "out", 2, "", ""),
            topic("in/#", "in", 2, "", "")
        ),
    );
    let local = TestBroker::start_midge_with(&config);
    // Local subscriptions in place and the link up; the subscription at the remote sent.
    wait_state(&local, "tomosq", "1");
    wait_state(&remote, "tomosq", "1");

    let mut at_remote = Watch::start(&remote, v, "watch-remote", "#");
    let mut at_local = Watch::start(&local, v, "watch-local", "#");
    for qos in 0..=2u8 {
        publish(&local, v, &format!("out/q{qos}"), &format!("out {qos}"), qos, &[]);
        let got = at_remote.wait(&format!("out {qos}"));
        assert_eq!((got.topic.as_str(), got.qos, got.retain), (format!("out/q{qos}").as_str(), qos, false));
        publish(&remote, v, &format!("in/q{qos}"), &format!("in {qos}"), qos, &[]);
        let got = at_local.wait(&format!("in {qos}"));
        assert_eq!((got.topic.as_str(), got.qos, got.retain), (format!("in/q{qos}").as_str(), qos, false));
    }
    // An `out` topic does not come in, an `in` topic does not go out.
    publish(&remote, v, "out/from-remote", "wrong way in", 1, &[]);
    publish(&local, v, "in/from-local", "wrong way out", 1, &[]);
    publish(&remote, v, "in/end", "end in", 1, &[]);
    publish(&local, v, "out/end", "end out", 1, &[]);
    assert!(!payloads(&at_local.until("end in")).contains(&"wrong way in"));
    assert!(!payloads(&at_remote.until("end out")).contains(&"wrong way out"));
}

#[test]
fn v311_midge_to_mosquitto_out_and_in() {
    midge_to_mosquitto_out_and_in("3.1.1");
}

#[test]
fn v5_midge_to_mosquitto_out_and_in() {
    midge_to_mosquitto_out_and_in("5");
}

/// A burst of QoS 1 and QoS 2 messages goes out whole, once each and in order, within the
/// remote's Receive Maximum (mosquitto's 20 on MQTT 5, which disconnects a client that sends
/// more at once, and Midge's 100) and its in-flight window; and one comes in whole the same
/// way.
fn burst(remote: TestBroker, protocol_version: &str) {
    // The clients speak 3.1.1 whatever the link does: a v5 mosquitto_sub watching such a
    // burst at Debian's mosquitto now and then quit with "A network protocol error occurred"
    // (under load, about one run in twenty), a matter between the two of them.
    let v = "311";
    let config = bridge(
        "burst",
        &[address(&remote)],
        &format!(
            "protocol_version = \"{protocol_version}\"\n{}{}",
            topic("b/#", "out", 2, "", ""),
            topic("c/#", "in", 2, "", "")
        ),
    );
    let local = TestBroker::start_midge_with(&config);
    wait_state(&local, "burst", "1");
    wait_state(&remote, "burst", "1");
    let mut at_remote = Watch::start(&remote, v, "watch-remote", "b/#");
    let mut at_local = Watch::start(&local, v, "watch-local", "c/#");
    for qos in [1u8, 2] {
        let lines: Vec<String> = (0..300).map(|n| format!("q{qos} m{n}")).collect();
        publish_lines(&local, v, &format!("b/q{qos}"), qos, &lines);
        let got = at_remote.until(&format!("q{qos} m299"));
        assert_eq!(payloads(&got), lines, "out at QoS {qos}: every message once, in order");
        publish_lines(&remote, v, &format!("c/q{qos}"), qos, &lines);
        let got = at_local.until(&format!("q{qos} m299"));
        assert_eq!(payloads(&got), lines, "in at QoS {qos}: every message once, in order");
    }
    assert!(!local.log().iter().any(|line| line.contains("bridge down")), "the link held");
}

#[test]
fn v311_midge_to_mosquitto_burst() {
    burst(TestBroker::start_mosquitto(""), "3.1.1");
}

#[test]
fn v5_midge_to_mosquitto_burst() {
    burst(TestBroker::start_mosquitto(""), "5");
}

#[test]
fn v311_midge_to_midge_burst() {
    burst(TestBroker::start_midge_with(""), "3.1.1");
}

#[test]
fn v5_midge_to_midge_burst() {
    burst(TestBroker::start_midge_with(""), "5");
}

/// `mosquitto_pub -l`: each of `lines` one message on `topic` at `qos`; must succeed. The lines
/// are its stdin from a file; its exit is waited for with `run_bounded` (no polling).
fn publish_lines(broker: &TestBroker, version: &str, topic: &str, qos: u8, lines: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("lines");
    std::fs::write(&input, format!("{}\n", lines.join("\n"))).expect("write the lines");
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "exec mosquitto_pub -h 127.0.0.1 -p {} -V {version} -t '{topic}' -q {qos} -l < '{}'",
        broker.port(),
        input.display()
    ));
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_pub -l failed: {status}: {output}");
}

/// A `both` line with prefixes: a message published on either side arrives once on the other,
/// renamed (`here/` ↔ `there/`), and does not come back to where it was published (3.1.1:
/// try_private, mosquitto gives the bridge's subscriptions No Local; 5.0: the bridge asks for
/// No Local itself; here: the bridge's local subscriptions have No Local).
fn midge_to_mosquitto_both_without_loops(protocol_version: &str) {
    let v = client_version(protocol_version);
    let remote = TestBroker::start_mosquitto("");
    let config = bridge(
        "loop",
        &[address(&remote)],
        &format!(
            "protocol_version = \"{protocol_version}\"\ntry_private = true\n{}",
            topic("t/#", "both", 1, "here/", "there/")
        ),
    );
    let local = TestBroker::start_midge_with(&config);
    wait_state(&local, "loop", "1");
    wait_state(&remote, "loop", "1");
    let mut at_local = Watch::start(&local, v, "watch-local", "#");
    let mut at_remote = Watch::start(&remote, v, "watch-remote", "#");

    // Out: renamed, once at the remote.
    publish(&local, v, "here/t/a", "from local", 1, &[]);
    let got = at_remote.until("from local");
    assert_eq!(
        got.iter().map(|m| (m.topic.as_str(), m.payload.as_str())).collect::<Vec<_>>(),
        [("there/t/a", "from local")]
    );
    // In: renamed, and behind it on the same link any copy of "from local" the remote sent back.
    publish(&remote, v, "there/t/b", "from remote", 1, &[]);
    let got = at_local.until("from remote");
    assert_eq!(
        got.iter().map(|m| (m.topic.as_str(), m.payload.as_str())).collect::<Vec<_>>(),
        [("here/t/a", "from local"), ("here/t/b", "from remote")],
        "each once here: nothing looped back"
    );
    // Out again: behind it, any copy of "from remote" this side sent back.
    publish(&local, v, "here/t/c", "sentinel", 1, &[]);
    let got = at_remote.until("sentinel");
    assert_eq!(payloads(&got), ["from remote", "sentinel"], "each once at the remote: nothing looped back");
    // A topic outside the prefixes does not cross.
    publish(&local, v, "t/a", "unprefixed", 1, &[]);
    publish(&local, v, "here/t/d", "end", 1, &[]);
    assert_eq!(payloads(&at_remote.until("end")), ["end"]);
}

#[test]
fn v311_midge_to_mosquitto_both_without_loops() {
    midge_to_mosquitto_both_without_loops("3.1.1");
}

#[test]
fn v5_midge_to_mosquitto_both_without_loops() {
    midge_to_mosquitto_both_without_loops("5");
}

// ---- Debian mosquitto bridging to Midge ----------------------------------------------------

/// mosquitto's `connection` to Midge with `topic br/# both 1` and try_private: messages cross
/// both ways once, none loops back (Midge gives a 0x84 client's subscriptions No Local), and
/// mosquitto's retained notification `$SYS/broker/connection/CLIENTID/state` = `1` is
/// accepted by Midge and seen by a subscriber there, and so is its will (`0`) when it dies.
fn mosquitto_to_midge(bridge_protocol_version: &str) {
    let v = if bridge_protocol_version == "mqttv50" { "5" } else { "311" };
    let midge = TestBroker::start_midge_with("");
    // Seen at mosquitto only once its subscription at Midge is in place.
    publish(&midge, "311", "br/ready", "ready", 1, &["-r"]);
    let mosquitto = TestBroker::start_mosquitto(&format!(
        "connection tomidge\naddress 127.0.0.1:{}\ntopic br/# both 1\ntry_private true\n\
         remote_clientid mosq-bridge\nrestart_timeout 1\ncleansession false\n\
         bridge_protocol_version {bridge_protocol_version}\n",
        midge.port()
    ));
    wait_state(&midge, "mosq-bridge", "1");
    let mut at_mosquitto = Watch::start(&mosquitto, v, "watch-mosquitto", "br/#");
    at_mosquitto.wait("ready");
    let mut at_midge = Watch::start(&midge, v, "watch-midge", "br/#");

    publish(&mosquitto, v, "br/a", "from mosquitto", 2, &[]);
    let got = at_midge.until("from mosquitto");
    assert_eq!(payloads(&got), ["from mosquitto"]);
    assert_eq!(got.last().unwrap().qos, 1, "at the topic line's QoS");
    // mosquitto_sub prints a QoS 2 message at its PUBREL, which may come after a later QoS 1
    // message's PUBLISH: waited for first.
    assert_eq!(payloads(&at_mosquitto.until("from mosquitto")), ["from mosquitto"]);
    publish(&midge, v, "br/b", "from midge", 1, &[]);
    assert_eq!(payloads(&at_mosquitto.until("from midge")), ["from midge"], "no loop at mosquitto");
    publish(&mosquitto, v, "br/c", "sentinel", 1, &[]);
    assert_eq!(payloads(&at_midge.until("sentinel")), ["from midge", "sentinel"], "no loop at Midge");
    // Killed, mosquitto's bridge leaves its will: its state `0`, retained, here.
    drop(mosquitto);
    wait_state(&midge, "mosq-bridge", "0");
}

#[test]
fn mosquitto_v311_bridge_to_midge() {
    mosquitto_to_midge("mqttv311");
}

#[test]
fn mosquitto_v5_bridge_to_midge() {
    mosquitto_to_midge("mqttv50");
}

// ---- Midge to Midge ----------------------------------------------------------------------

/// Retained messages cross as retained both ways (the bridge's subscriptions have Retain As
/// Published: locally always, at a Midge remote by try_private or v5), so a later subscriber
/// on the far side gets them; on v5 a message's expiry and user properties cross too.
fn midge_to_midge(protocol_version: &str) {
    let v = client_version(protocol_version);
    let remote = TestBroker::start_midge_with("");
    let config = bridge(
        "m2m",
        &[address(&remote)],
        &format!("protocol_version = \"{protocol_version}\"\n{}", topic("r/#", "both", 1, "", "")),
    );
    let local = TestBroker::start_midge_with(&config);
    wait_state(&local, "m2m", "1");
    wait_state(&remote, "m2m", "1");
    let mut live_remote = Watch::start(&remote, v, "live-remote", "r/#");
    let mut live_local = Watch::start(&local, v, "live-local", "r/#");

    let v5_properties: &[&str] = if v == "5" {
        &["-D", "publish", "user-property", "origin", "midge", "-D", "publish", "message-expiry-interval", "300"]
    } else {
        &[]
    };
    let mut retained = vec!["-r"];
    retained.extend_from_slice(v5_properties);
    publish(&local, v, "r/out", "kept out", 1, &retained);
    let got = live_remote.wait("kept out");
    publish(&remote, v, "r/in", "kept in", 1, &retained);
    live_local.wait("kept in");
    if v == "5" {
        assert_eq!(got.properties, "origin:midge", "user property crossed: {got:?}");
        let expiry: u32 = got.expiry.parse().unwrap_or_else(|_| panic!("expiry crossed: {got:?}"));
        assert!((1..=300).contains(&expiry), "{got:?}");
    }
    // New subscribers get each retained message, with RETAIN 1, on both sides.
    for (broker, name) in [(&remote, "late-remote"), (&local, "late-local")] {
        let mut late = Watch::start(broker, v, name, "r/#");
        let mut got =
            vec![late.message_within(WAIT).expect("a retained message"), late.message_within(WAIT).expect("two")];
        got.sort_by(|a, b| a.topic.cmp(&b.topic));
        let seen: Vec<_> = got.iter().map(|m| (m.topic.as_str(), m.payload.as_str(), m.retain)).collect();
        assert_eq!(seen, [("r/in", "kept in", true), ("r/out", "kept out", true)], "{name}");
        if v == "5" {
            assert!(got.iter().all(|m| m.properties == "origin:midge"), "{got:?}");
        }
    }
}

#[test]
fn v311_midge_to_midge_retained() {
    midge_to_midge("3.1.1");
}

#[test]
fn v5_midge_to_midge_retained_and_properties() {
    midge_to_midge("5");
}

// ---- Notifications -----------------------------------------------------------------------

/// The state is retained `1` here and at the remote once the link is up; `0` here when the
/// remote goes away; `0` at the remote by the bridge's will when this broker dies, and by the
/// bridge itself when this broker stops.
#[test]
fn notifications_follow_the_link() {
    let remote = TestBroker::start_midge_with("");
    let keys = topic("n/#", "out", 1, "", "");
    let local = TestBroker::start_midge_with(&bridge("note", &[address(&remote)], &keys));
    wait_state(&local, "note", "1");
    wait_state(&remote, "note", "1");
    // Killed: its connection drops without a DISCONNECT, and the remote publishes the will.
    drop(local);
    wait_state(&remote, "note", "0");

    // Stopped: the bridge says `0` at the remote before it goes.
    let local = TestBroker::start_midge_with(&bridge("note", &[address(&remote)], &keys));
    wait_state(&remote, "note", "1");
    let status = local.terminate();
    assert!(status.success(), "{status}");
    wait_state(&remote, "note", "0");

    // The remote goes away: `0` here.
    let local = TestBroker::start_midge_with(&bridge("note", &[address(&remote)], &keys));
    wait_state(&local, "note", "1");
    drop(remote);
    wait_state(&local, "note", "0");
    local.wait_for_log("bridge down", WAIT);
}

/// A remote that closes a connection before answering (at its connection limit, or a load
/// balancer with nothing behind it) has not refused the bridge's protocol level: once it
/// answers, the bridge still connects with try_private, so nothing loops on a `both` line.
/// Here a proxy closes the first two connections (the bridge's 0x84 attempt and its plain
/// retry), then forwards to a Midge remote.
#[test]
fn try_private_survives_a_remote_that_closed_before_answering() {
    let remote = TestBroker::start_midge_with("");
    let proxy = closing_proxy(2, remote.addr);
    let config =
        bridge("private", &[proxy.to_string()], &format!("try_private = true\n{}", topic("t/#", "both", 1, "", "")));
    let local = TestBroker::start_midge_with(&config);
    wait_state(&local, "private", "1");
    wait_state(&remote, "private", "1");
    let mut at_local = Watch::start(&local, "311", "watch-local", "t/#");
    let mut at_remote = Watch::start(&remote, "311", "watch-remote", "t/#");
    publish(&local, "311", "t/a", "from local", 1, &[]);
    at_remote.wait("from local");
    // Behind any copy the remote sent back to the bridge.
    publish(&remote, "311", "t/b", "sentinel", 1, &[]);
    assert_eq!(payloads(&at_local.until("sentinel")), ["from local", "sentinel"], "looped back: a plain client");
}

/// A TCP proxy on a loopback port that closes its first `close_first` connections once it has
/// read their CONNECT, and forwards the later ones to `target`; its threads end with the test
/// process.
fn closing_proxy(close_first: usize, target: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(client) = stream else { return };
            if n < close_first {
                // The CONNECT read first, so the close is a FIN (the bridge reads the end of the
                // stream before any CONNACK), not a reset for unread bytes.
                let mut client = client;
                let _ = std::io::Read::read(&mut client, &mut [0; 1024]);
                drop(client);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(target) else { return };
            for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    addr
}

// ---- Addresses, start types --------------------------------------------------------------

/// The first address refuses connections: the bridge connects to the second.
#[test]
fn a_closed_first_address_fails_over_to_the_second() {
    let remote = TestBroker::start_mosquitto("");
    let closed = format!("127.0.0.1:{}", free_port());
    let local =
        TestBroker::start_midge_with(&bridge("fail", &[closed, address(&remote)], &topic("f/#", "out", 1, "", "")));
    wait_state(&local, "fail", "1");
    let line = local.wait_for_log("bridge connected", WAIT);
    assert!(line.contains(&address(&remote)), "{line}");
    let mut at_remote = Watch::start(&remote, "311", "watch-remote", "f/#");
    publish(&local, "311", "f/x", "via the second", 1, &[]);
    at_remote.wait("via the second");
}

/// round_robin false (the default): after a failover to the second address, the next
/// connection tries the first again. Here the first comes up while the bridge is on the
/// second, and a client taking over the bridge's client id there makes it reconnect.
#[test]
fn without_round_robin_the_first_address_is_preferred_again() {
    let first_port = free_port();
    let second = TestBroker::start_mosquitto("");
    let first = format!("127.0.0.1:{first_port}");
    let local = TestBroker::start_midge_with(&bridge(
        "prefer",
        &[first.clone(), address(&second)],
        &topic("p/#", "out", 1, "", ""),
    ));
    wait_state(&second, "prefer", "1");
    // The first address answers now (a mosquitto with a second listener on its port).
    let first_broker = TestBroker::start_mosquitto(&format!("listener {first_port} 127.0.0.1\n"));
    let _takeover = Watch::start(&second, "311", "prefer", "takeover/#");
    wait_state(&first_broker, "prefer", "1");
    let connected: Vec<String> = local.log().into_iter().filter(|line| line.contains("bridge connected")).collect();
    assert!(connected.last().is_some_and(|line| line.contains(&first)), "{connected:#?}");
}

/// start_type once: connected at start, not again after the remote goes away.
#[test]
fn start_type_once_is_not_restarted() {
    let remote = TestBroker::start_mosquitto("");
    let local = TestBroker::start_midge_with(&bridge(
        "once",
        &[address(&remote)],
        &format!("start_type = \"once\"\n{}", topic("o/#", "out", 1, "", "")),
    ));
    wait_state(&local, "once", "1");
    drop(remote);
    let line = local.wait_for_log("not restarted", WAIT);
    assert!(line.contains("once"), "{line}");
    assert!(!local.log().iter().any(|line| line.contains("retry_in_ms")), "a once bridge is not retried");
}

/// start_type lazy: no connection while fewer than `threshold` messages wait; at the
/// threshold it connects and they all arrive; after `idle_timeout` without traffic it
/// disconnects (and says `0` at the remote), and connects again at the threshold.
#[test]
fn start_type_lazy_connects_at_the_threshold_and_leaves_when_idle() {
    let remote = TestBroker::start_mosquitto("");
    let local = TestBroker::start_midge_with(&bridge(
        "lazy",
        &[address(&remote)],
        &format!("start_type = \"lazy\"\nthreshold = 3\nidle_timeout = 1\n{}", topic("l/#", "out", 1, "", "")),
    ));
    // Its local subscriptions exist from the start (state `0` is published after them).
    wait_state(&local, "lazy", "0");
    let mut at_remote = Watch::start(&remote, "311", "watch-remote", "l/#");
    publish(&local, "311", "l/1", "one", 1, &[]);
    publish(&local, "311", "l/2", "two", 1, &[]);
    // Below the threshold: nothing for longer than the bridge's 1 s poll.
    assert_eq!(at_remote.message_within(Duration::from_millis(2500)), None, "connected below the threshold");
    assert!(!local.log().iter().any(|line| line.contains("bridge connected")));
    publish(&local, "311", "l/3", "three", 1, &[]);
    assert_eq!(payloads(&at_remote.until("three")), ["one", "two", "three"]);
    local.wait_for_log("bridge connected", WAIT);
    local.wait_for_log("bridge idle", WAIT);
    wait_state(&remote, "lazy", "0");
    wait_state(&local, "lazy", "0");
    // Idle, it connects again at the threshold.
    for n in 4..=6 {
        publish(&local, "311", &format!("l/{n}"), &format!("again {n}"), 1, &[]);
    }
    assert_eq!(payloads(&at_remote.until("again 6")), ["again 4", "again 5", "again 6"]);
}

// ---- TLS, credentials ----------------------------------------------------------------------

/// A bridge to a Midge TLS listener whose CA it is given (`[bridge.tls] cafile`) carries
/// messages, seen by a `mosquitto_sub` over TLS at the remote.
#[test]
fn tls_bridge_to_a_midge_tls_listener() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let remote = TestBroker::start_midge_listener_with(&pki.midge_listener(), "");
    let keys = format!("{}[bridge.tls]\ncafile = {:?}\n", topic("s/#", "out", 1, "", ""), pki.arg("ca.pem"));
    let local = TestBroker::start_midge_with(&bridge("secure", &[address(&remote)], &keys));
    wait_state(&local, "secure", "1");
    let line = local.wait_for_log("bridge connected", WAIT);
    assert!(line.contains(&address(&remote)), "{line}");
    let ca = pki.arg("ca.pem");
    let mut at_remote = Watch::start_with(&remote, "311", "watch-tls", "s/#", &["--cafile", &ca, "--insecure"]);
    publish(&local, "311", "s/x", "over tls", 1, &[]);
    assert_eq!(at_remote.wait("over tls").topic, "s/x");
}

/// With a CA that did not sign the remote's certificate, the bridge does not connect and says
/// why.
#[test]
fn tls_bridge_with_the_wrong_ca_logs_why() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let remote = TestBroker::start_midge_listener_with(&pki.midge_listener(), "");
    let keys = format!("{}[bridge.tls]\ncafile = {:?}\n", topic("s/#", "out", 1, "", ""), pki.arg("other-ca.pem"));
    let local = TestBroker::start_midge_with(&bridge("untrusted", &[address(&remote)], &keys));
    let line = local.wait_for_log("bridge down", WAIT);
    assert!(line.contains("untrusted") && line.contains("cannot connect"), "{line}");
    assert!(line.contains("invalid peer certificate: UnknownIssuer"), "the reason: {line}");
    assert!(!local.log().iter().any(|line| line.contains("bridge connected")));
}

/// `remote_username` / `remote_password` against a Midge remote with a password file
/// (made by Debian's `mosquitto_passwd`): the right password connects, a wrong one is refused
/// and logged.
#[test]
fn remote_credentials_against_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let mut command = Command::new("mosquitto_passwd");
    command.args(["-c", "-b"]).arg(&file).args(["bridge-user", "s3cret"]);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_passwd: {output}");
    let remote = start_midge_with_passwords(dir.path(), &file);

    let keys =
        format!("remote_username = \"bridge-user\"\nremote_password = \"s3cret\"\n{}", topic("p/#", "out", 1, "", ""));
    let good = TestBroker::start_midge_with(&bridge("login", &[address(&remote)], &keys));
    wait_state(&good, "login", "1");
    let keys =
        format!("remote_username = \"bridge-user\"\nremote_password = \"wrong\"\n{}", topic("p/#", "out", 1, "", ""));
    let bad = TestBroker::start_midge_with(&bridge("badlogin", &[address(&remote)], &keys));
    let line = bad.wait_for_log("bridge down", WAIT);
    assert!(line.contains("cannot connect") && line.contains("Bad User Name or Password"), "{line}");
    assert!(!bad.log().iter().any(|line| line.contains("bridge connected")));
}

/// `midge serve` with one listener on 127.0.0.1:0 that refuses anonymous clients and reads
/// `password_file`; its config file is written in `dir`.
fn start_midge_with_passwords(dir: &Path, password_file: &Path) -> TestBroker {
    let config = dir.join("remote.toml");
    let text = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\npassword_file = {:?}\n",
        path_text(password_file)
    );
    std::fs::write(&config, text).unwrap();
    TestBroker::start_midge_args(&["-c", &path_text(&config)])
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

// ---- Config ------------------------------------------------------------------------------

/// A bridge that cannot work is refused when the file is read, naming the bridge and the key.
#[test]
fn a_bad_bridge_is_refused_at_start_naming_it_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("restart_timeout = [10, 5]\n[[bridge.topic]]\npattern = \"a/#\"\n", "restart_timeout"),
        ("[[bridge.topic]]\npattern = \"a/#\"\nqos = 3\n", "qos"),
        ("start_type = \"lazy\"\nthreshold = 0\n[[bridge.topic]]\npattern = \"a\"\n", "threshold"),
        ("no_such_key = 1\n[[bridge.topic]]\npattern = \"a\"\n", "no_such_key"),
    ];
    for (keys, key) in cases {
        let config = dir.path().join("bad.toml");
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[bridge]]\nname = \"broken-one\"\naddresses = [\"127.0.0.1:1\"]\n{keys}"
        );
        std::fs::write(&config, text).unwrap();
        let mut command = Command::new(midge_bin());
        command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
        let (status, output) = run_bounded(command, WAIT);
        assert!(!status.success(), "{keys:?} was accepted:\n{output}");
        assert!(
            output.contains("broken-one") && output.contains(key),
            "{keys:?}: the message names neither:\n{output}"
        );
    }
}
