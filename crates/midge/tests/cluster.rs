//! Cluster mode end to end (issue 17, decision 0010): three nats-servers with JetStream and three
//! Midge nodes (`a`, `b`, `c`) on 127.0.0.1, with clients nobody on the team wrote
//! (`mosquitto_pub`, `mosquitto_sub`, rumqttc) on different nodes.
//!
//! *Interest propagates asynchronously.* A subscription made on one node reaches publishers on
//! the others only once NATS has carried the interest across, so before a test publishes it
//! waits for it: [`MidgeCluster::sync`] publishes probes on the publishing node, one at a time,
//! until the subscriber has one (bounded). A node's messages reach another in the order they
//! were published, so whatever is published after a probe arrives after it.
//!
//! Tests that leave the NATS servers alone share one cluster ([`shared`]), each in a topic
//! space of its own; the ones that kill NATS servers start their own. Every process is killed
//! by its PID when its owner is dropped, and every wait is bounded.

mod interop_common;
mod nats_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use interop_common::{run_bounded, spawn_lines};
use nats_common::{NatsCluster, FORM_TIMEOUT};
use support::TestBroker;

/// How long any one awaited line, message or client process may take.
const WAIT: Duration = Duration::from_secs(15);

/// How long interest may take to reach a publisher's node, a NATS server's loss included (the
/// client's reconnect, its subscriptions sent again).
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a retained message may take to reach a node after a NATS server's loss: the node's
/// bucket watch may have had its consumer on the lost server, which the NATS client reports only
/// as missed heartbeats (after 10 s), and the bucket elects a new leader.
const RETAINED_AFTER_LOSS: Duration = Duration::from_secs(45);

/// How long a probe is waited for before the next is sent: interest usually crosses in well under
/// a millisecond, and a probe that comes late is still seen by the next round.
const PROBE_WINDOW: Duration = Duration::from_millis(100);

/// How long a subscriber must stay quiet after the last expected message before a test says no
/// duplicate followed (only where no sentinel can be ordered after them: shared groups).
const QUIET: Duration = Duration::from_millis(500);

/// What a probe's payload starts with; tests skip probes.
const PROBE: &str = "probe~";

/// The `-V` names of the protocol versions.
const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// The nodes, by their index in [`MidgeCluster::nodes`].
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Three NATS servers and three Midge nodes, each node given all three URLs; killed (by PID)
/// when dropped, the nodes first.
struct MidgeCluster {
    nodes: Vec<TestBroker>,
    nats: NatsCluster,
}

impl MidgeCluster {
    fn start() -> Self {
        let nats = NatsCluster::start(3);
        let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
        let nodes = ["a", "b", "c"]
            .iter()
            .map(|node| {
                TestBroker::start_midge_config(&format!(
                    "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
                     [store]\npersistence = false\n\n\
                     [cluster]\nnode = \"{node}\"\nurls = [{}]\nreplicas = 3\n",
                    urls.join(", ")
                ))
            })
            .collect();
        Self { nodes, nats }
    }

    fn node(&self, index: usize) -> &TestBroker {
        &self.nodes[index]
    }

    /// Publishes probes on `from` on `topic` until `sub` has one on that topic: then `sub`'s
    /// interest in `topic` has reached `from`.
    fn sync(&self, from: usize, sub: &mut Sub, topic: &str) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        for attempt in 0.. {
            publish(self.node(from), V5, topic, &format!("{PROBE}{attempt}"), 1, &[]);
            let window = Instant::now() + PROBE_WINDOW;
            while let Some(message) = sub.message_until(window) {
                if message.is_probe() && message.topic == topic {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{}: no probe on {topic} arrived from node {from}", sub.what);
        }
    }

    /// Waits until a new subscriber on node `on` gets `expected` (a payload) as the retained
    /// message of `topic`, or, for `None`, none: the bucket's update has reached that node.
    fn wait_retained(&self, on: usize, topic: &str, expected: Option<&str>) {
        self.wait_retained_within(on, topic, expected, SYNC_TIMEOUT);
    }

    /// [`MidgeCluster::wait_retained`], for up to `timeout`.
    fn wait_retained_within(&self, on: usize, topic: &str, expected: Option<&str>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for attempt in 0.. {
            let mut sub = Sub::start(self.node(on), V5, &format!("ret-check-{on}-{attempt}"), &[topic], 1);
            // Retained messages are sent on SUBSCRIBE, before a later publish on the same node.
            let sentinel = format!("sentinel-{attempt}");
            publish(self.node(on), V5, topic, &sentinel, 1, &[]);
            let first = sub.next_message();
            let found = if first.payload == sentinel {
                None
            } else {
                assert!(first.retain, "{topic}: the first message is neither retained nor the sentinel: {first:?}");
                Some(first.payload.clone())
            };
            if found.as_deref() == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {on}: retained message of {topic} is {found:?}, not {expected:?}, after {timeout:?}\n{}",
                self.logs()
            );
        }
    }

    /// Every node's cluster and NATS client log lines and every NATS server's log tail, for a
    /// failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            text.push_str(&format!("--- node {index} (cluster lines) ---\n"));
            for line in node.log().iter().filter(|line| line.contains("cluster") || line.contains("async_nats")) {
                text.push_str(line);
                text.push('\n');
            }
        }
        text + &self.nats.logs()
    }

    /// The index of the NATS server that connection `name` (`midge c routes`) is on.
    fn nats_server_of(&self, name: &str) -> usize {
        (0..self.nats.len())
            .find(|&i| has_connection(&self.nats, i, name).unwrap_or(false))
            .unwrap_or_else(|| panic!("no NATS server has a connection named {name:?}"))
    }
}

/// Whether NATS server `i` has a client connection named `name` (`/connz`).
fn has_connection(nats: &NatsCluster, i: usize, name: &str) -> Result<bool, String> {
    let connz = nats.monitor(i, "/connz")?;
    let connections = connz["connections"].as_array().cloned().unwrap_or_default();
    Ok(connections.iter().any(|connection| connection["name"].as_str() == Some(name)))
}

/// The cluster the tests that leave NATS alone share: started by the first that asks, stopped
/// when the last that holds it ends.
fn shared() -> Arc<MidgeCluster> {
    static SHARED: Mutex<Weak<MidgeCluster>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(MidgeCluster::start());
    *slot = Arc::downgrade(&cluster);
    cluster
}

/// A message as `mosquitto_sub` printed it with [`FORMAT`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    qos: u8,
    retain: bool,
    topic: String,
    /// The rest of the line: the payload, or what a test's own format put there.
    payload: String,
}

/// How `mosquitto_sub` prints a message: a marker, QoS, retain flag, topic, then the payload (or
/// a test's own fields) last, so that it may hold anything.
const FORMAT: &str = "MSG|%q|%r|%t|";

impl Msg {
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.strip_prefix("MSG|")?.splitn(4, '|');
        let qos = fields.next()?.parse().ok()?;
        let retain = fields.next()? == "1";
        let topic = fields.next()?.to_owned();
        let payload = fields.next()?.to_owned();
        Some(Self { qos, retain, topic, payload })
    }

    fn is_probe(&self) -> bool {
        self.payload.contains(PROBE)
    }
}

/// A running `mosquitto_sub -d` (line-buffered through `stdbuf -oL`), its lines read on a
/// thread; killed (by its PID) when dropped.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
    what: String,
}

impl Sub {
    /// Subscribes to `filters` at `qos` on `node` and waits for the SUBACK.
    fn start(node: &TestBroker, version: &str, id: &str, filters: &[&str], qos: u8) -> Self {
        Self::start_format(node, version, id, filters, qos, "%p")
    }

    /// [`Sub::start`] printing `payload_format` after the topic (`%P|%C|%p`, say).
    fn start_format(
        node: &TestBroker,
        version: &str,
        id: &str,
        filters: &[&str],
        qos: u8,
        payload_format: &str,
    ) -> Self {
        Self::start_with(node, version, id, filters, qos, payload_format, &[])
    }

    /// [`Sub::start_format`] with more `mosquitto_sub` arguments (`-c`, say).
    fn start_with(
        node: &TestBroker,
        version: &str,
        id: &str,
        filters: &[&str],
        qos: u8,
        payload_format: &str,
        args: &[&str],
    ) -> Self {
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &node.port().to_string()]);
        command.args(["-V", version, "-i", id, "-q", &qos.to_string(), "-d", "-F"]);
        command.arg(format!("{FORMAT}{payload_format}")).args(args);
        for filter in filters {
            command.args(["-t", filter]);
        }
        command.stderr(Stdio::inherit());
        let (child, lines) = spawn_lines(&mut command, "mosquitto_sub (apt-get install mosquitto-clients)");
        let mut sub = Self { child, lines, seen: Vec::new(), what: format!("{id} on {filters:?}") };
        sub.line("Subscribed (mid:");
        sub
    }

    /// The next line before `deadline`; `None` when it passed.
    fn line_until(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} exited:\n{}", self.what, self.tail()),
        }
    }

    /// Waits for a line containing `needle`.
    fn line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.line_until(deadline) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!("{}: no line containing {needle:?}; it printed:\n{}", self.what, self.tail()),
            }
        }
    }

    /// The next message (probes included) before `deadline`, if any.
    fn message_until(&mut self, deadline: Instant) -> Option<Msg> {
        loop {
            if let Some(message) = Msg::parse(&self.line_until(deadline)?) {
                return Some(message);
            }
        }
    }

    /// The next message that is not a probe; panics after [`WAIT`].
    fn next_message(&mut self) -> Msg {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.message_until(deadline) {
                Some(message) if message.is_probe() => {}
                Some(message) => return message,
                None => panic!("{}: no message within {WAIT:?}; it printed:\n{}", self.what, self.tail()),
            }
        }
    }

    /// Every message but probes up to and including the first whose payload is `payload`.
    fn until(&mut self, payload: &str) -> Vec<Msg> {
        let mut messages = Vec::new();
        loop {
            let message = self.next_message();
            let last = message.payload == payload;
            messages.push(message);
            if last {
                return messages;
            }
        }
    }

    /// The last lines it printed, for a failure message.
    fn tail(&self) -> String {
        self.seen[self.seen.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -V version -t topic -m payload -q qos ARGS` on `node`; must succeed.
fn publish(node: &TestBroker, version: &str, topic: &str, payload: &str, qos: u8, args: &[&str]) {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &node.port().to_string(), "-V", version]);
    command.args(["-t", topic, "-m", payload, "-q", &qos.to_string()]).args(args);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_pub {topic} {payload:?} failed ({status}):\n{output}");
}

/// `mosquitto_pub -r -n`: an empty retained message on `topic`, which clears it.
fn clear_retained(node: &TestBroker, version: &str, topic: &str) {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &node.port().to_string(), "-V", version]);
    command.args(["-t", topic, "-q", "1", "-r", "-n"]);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_pub -r -n {topic} failed ({status}):\n{output}");
}

/// `mosquitto_pub -l`: each of `lines` one message on `topic` at `qos`, from one client; the
/// lines are its stdin from a file.
fn publish_lines(node: &TestBroker, topic: &str, qos: u8, lines: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("lines");
    std::fs::write(&input, format!("{}\n", lines.join("\n"))).expect("write the lines");
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "exec mosquitto_pub -h 127.0.0.1 -p {} -V mqttv311 -t '{topic}' -q {qos} -l < '{}'",
        node.port(),
        input.display()
    ));
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_pub -l failed: {status}: {output}");
}

/// QoS, topic and payload of each message.
fn triples(messages: &[Msg]) -> Vec<(u8, String, String)> {
    messages.iter().map(|m| (m.qos, m.topic.clone(), m.payload.clone())).collect()
}

/// Each published QoS to each granted QoS, from `a` to `c`: the subscriber gets min of the two
/// (3.1.1 MQTT-3.8.4-6 / 5.0 MQTT-3.8.4-8), with RETAIN 0 and the payload unaltered.
fn qos_across_nodes(version: &str) {
    let cluster = shared();
    let mut subs: Vec<(u8, String, Sub)> = (0..=2u8)
        .map(|granted| {
            let filter = format!("q1/{version}/s{granted}/#");
            let sub = Sub::start(cluster.node(C), version, &format!("q1-{version}-{granted}"), &[&filter], granted);
            (granted, filter, sub)
        })
        .collect();
    for (granted, _, sub) in &mut subs {
        cluster.sync(A, sub, &format!("q1/{version}/s{granted}/probe"));
    }
    for published in 0..=2u8 {
        for granted in 0..=2u8 {
            let topic = format!("q1/{version}/s{granted}/p{published}");
            publish(cluster.node(A), version, &topic, &format!("ünï {published}"), published, &[]);
        }
    }
    for (granted, _, sub) in &mut subs {
        let messages = sub.until("ünï 2");
        let expected: Vec<Msg> = (0..=2u8)
            .map(|published| Msg {
                qos: published.min(*granted),
                retain: false,
                topic: format!("q1/{version}/s{granted}/p{published}"),
                payload: format!("ünï {published}"),
            })
            .collect();
        assert_eq!(messages, expected, "granted QoS {granted}");
    }
}

#[test]
fn v311_each_qos_crosses_nodes_at_the_lesser_qos() {
    qos_across_nodes(V311);
}

#[test]
fn v5_each_qos_crosses_nodes_at_the_lesser_qos() {
    qos_across_nodes(V5);
}

/// `+` and `#` filters on `c` match what `a` publishes as MQTT says, `…/h/#` matching `…/h`
/// itself (MQTT-4.7.1-2); what no filter matches does not arrive.
fn wildcards_across_nodes(version: &str) {
    let cluster = shared();
    let plus = format!("w/{version}/+/x");
    let parent = format!("w/{version}/h");
    let hash = format!("{parent}/#");
    let mut sub = Sub::start(cluster.node(C), version, &format!("w-{version}"), &[&plus, &hash], 2);
    cluster.sync(A, &mut sub, &format!("w/{version}/probe/x"));
    // `h/#` is two NATS subscriptions, `h.>` and `h` itself: wait for both.
    cluster.sync(A, &mut sub, &format!("{parent}/probe"));
    cluster.sync(A, &mut sub, &parent);
    let topics = [
        (format!("w/{version}/1/x"), true),
        (format!("w/{version}/1/y"), false),
        (format!("w/{version}/1/2/x"), false),
        (format!("w/{version}/x"), false),
        (parent.clone(), true),
        (format!("{parent}/a/b"), true),
        (format!("{parent}x"), false),
        (format!("w/{version}/end/x"), true),
    ];
    for (index, (topic, _)) in topics.iter().enumerate() {
        publish(cluster.node(A), version, topic, &format!("m{index}"), 1, &[]);
    }
    let expected: Vec<(u8, String, String)> = topics
        .iter()
        .enumerate()
        .filter(|(_, (_, matches))| *matches)
        .map(|(index, (topic, _))| (1, topic.clone(), format!("m{index}")))
        .collect();
    let last = format!("m{}", topics.len() - 1);
    assert_eq!(triples(&sub.until(&last)), expected);
}

#[test]
fn v311_wildcards_match_across_nodes() {
    wildcards_across_nodes(V311);
}

#[test]
fn v5_wildcards_match_across_nodes() {
    wildcards_across_nodes(V5);
}

/// A retained message set on `a` is sent to a new subscriber on `b` with RETAIN 1; cleared with
/// an empty retained message on `b`, a new subscriber on `c` gets nothing.
#[test]
fn a_retained_message_set_on_one_node_is_on_the_others_and_cleared_from_any() {
    let cluster = shared();
    for version in [V311, V5] {
        let topic = format!("r2/{version}/state");
        publish(cluster.node(A), version, &topic, "on", 1, &["-r"]);
        cluster.wait_retained(B, &topic, Some("on"));
        let mut sub = Sub::start(cluster.node(B), version, &format!("r2-{version}-b"), &[&topic], 2);
        let message = sub.next_message();
        assert_eq!((message.qos, message.retain, message.payload.as_str()), (1, true, "on"), "{message:?}");
        drop(sub);

        // `c` must have it before the clearing, or its absence there would prove nothing.
        cluster.wait_retained(C, &topic, Some("on"));
        clear_retained(cluster.node(B), version, &topic);
        cluster.wait_retained(C, &topic, None);
        cluster.wait_retained(A, &topic, None);
    }
}

/// `$share/g/s3/#` with one member on each node: each of the messages published on `a` reaches
/// exactly one member in the whole cluster.
#[test]
fn a_shared_subscription_across_nodes_gets_each_message_once() {
    const N: usize = 60;
    let cluster = shared();
    let filter = "$share/g/s3/#";
    let mut members: Vec<Sub> =
        [A, B, C].iter().map(|&node| Sub::start(cluster.node(node), V5, &format!("s3-{node}"), &[filter], 1)).collect();
    // A probe reaches one member: the group's interest has reached `a` once any has one.
    let deadline = Instant::now() + SYNC_TIMEOUT;
    'sync: for attempt in 0.. {
        publish(cluster.node(A), V5, "s3/probe", &format!("{PROBE}{attempt}"), 1, &[]);
        for member in &mut members {
            let window = Instant::now() + PROBE_WINDOW / 3;
            while let Some(message) = member.message_until(window) {
                if message.is_probe() {
                    break 'sync;
                }
            }
        }
        assert!(Instant::now() < deadline, "no member of {filter} got a probe");
    }
    let lines: Vec<String> = (0..N).map(|i| format!("m{i:03}")).collect();
    publish_lines(cluster.node(A), "s3/x", 1, &lines);

    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + WAIT;
    while seen.len() < N {
        assert!(Instant::now() < deadline, "only {} of {N} messages arrived: {seen:?}", seen.len());
        for (index, member) in members.iter_mut().enumerate() {
            let window = Instant::now() + Duration::from_millis(20);
            while let Some(message) = member.message_until(window) {
                if !message.is_probe() {
                    seen.entry(message.payload).or_default().push(index);
                    total += 1;
                }
            }
        }
    }
    // No duplicate follows: every member stays quiet.
    for (index, member) in members.iter_mut().enumerate() {
        let window = Instant::now() + QUIET;
        while let Some(message) = member.message_until(window) {
            if !message.is_probe() {
                seen.entry(message.payload).or_default().push(index);
                total += 1;
            }
        }
    }
    let expected: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(seen.keys().collect::<BTreeSet<_>>(), expected);
    let duplicated: Vec<_> = seen.iter().filter(|(_, members)| members.len() > 1).collect();
    assert!(duplicated.is_empty(), "delivered more than once: {duplicated:?}");
    assert_eq!(total, N);
}

/// Topics whose levels hold what NATS subjects cannot (`.`, `*`, `>`, spaces, empty levels)
/// cross nodes unaltered and match their filters; a `$` topic is not matched by a filter that
/// starts with a wildcard (MQTT-4.7.2-1) on another node, and is by `$foo/#`.
#[test]
fn topic_edge_cases_cross_nodes() {
    let cluster = shared();
    let topics = [
        "e4/dot.ted/a.b.c",
        "e4/a//b",
        "/e4",
        "e4/",
        "e4/star*/x*",
        "e4/gt>/>",
        "e4/sp ace/and  more ",
        "e4/ünï/çødé",
        "e4/.",
        "e4/..",
    ];
    let mut exact = Sub::start(cluster.node(C), V5, "e4-exact", &topics, 1);
    let mut wild = Sub::start(cluster.node(C), V5, "e4-wild", &["e4/+/+", "+/e4"], 1);
    for topic in topics {
        cluster.sync(A, &mut exact, topic);
    }
    cluster.sync(A, &mut wild, "e4/probe/x");
    cluster.sync(A, &mut wild, "/e4");
    for (index, topic) in topics.iter().enumerate() {
        publish(cluster.node(A), V5, topic, &format!("m{index}"), 1, &[]);
    }
    let last = format!("m{}", topics.len() - 1);
    let expected: Vec<(u8, String, String)> =
        topics.iter().enumerate().map(|(index, topic)| (1, (*topic).to_owned(), format!("m{index}"))).collect();
    assert_eq!(triples(&exact.until(&last)), expected);
    // `e4/+/+` and `+/e4` on another node; a sentinel comes after the rest.
    publish(cluster.node(A), V5, "e4/end/x", "end", 1, &[]);
    let matching = ["e4/dot.ted/a.b.c", "/e4", "e4/star*/x*", "e4/gt>/>", "e4/sp ace/and  more ", "e4/ünï/çødé"];
    let wild_expected: Vec<(u8, String, String)> = expected
        .iter()
        .filter(|(_, topic, _)| matching.contains(&topic.as_str()))
        .cloned()
        .chain([(1, "e4/end/x".to_owned(), "end".to_owned())])
        .collect();
    assert_eq!(triples(&wild.until("end")), wild_expected);
    drop(wild);

    // `$` topics.
    let mut wildcards = Sub::start(cluster.node(C), V5, "e4-dollar-wild", &["#", "+/x"], 1);
    let mut dollar = Sub::start(cluster.node(C), V5, "e4-dollar", &["$foo/#"], 1);
    cluster.sync(A, &mut wildcards, "e4s/x");
    cluster.sync(A, &mut dollar, "$foo/probe");
    publish(cluster.node(A), V5, "$foo/x", "dollar", 1, &[]);
    publish(cluster.node(A), V5, "e4s/x", "sentinel", 1, &[]);
    let messages = wildcards.until("sentinel");
    let leaked: Vec<&Msg> = messages.iter().filter(|m| m.topic.starts_with('$')).collect();
    assert!(leaked.is_empty(), "`#` or `+/x` on another node matched a $ topic: {leaked:?}");
    let message = dollar.next_message();
    assert_eq!((message.topic.as_str(), message.payload.as_str()), ("$foo/x", "dollar"));
}

/// v5 properties published on `a` arrive on `c` unaltered: user properties in order, content
/// type, response topic, correlation data, payload format indicator (MQTT-3.3.2-15 to -20,
/// MQTT-3.3.2-4), and the Message Expiry Interval less the time it waited (MQTT-3.3.2-6).
#[test]
fn v5_properties_cross_nodes() {
    let cluster = shared();
    let topic = "p5/properties";
    let mut sub = Sub::start_format(cluster.node(C), V5, "p5-sub", &[topic], 1, "%P~%C~%R~%D~%F~%E~%p");
    cluster.sync(A, &mut sub, topic);
    #[rustfmt::skip]
    let args = [
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "user-property", "k1", "v1 again",
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "response-topic", "p5/reply",
        "-D", "publish", "correlation-data", "req-42",
        "-D", "publish", "payload-format-indicator", "1",
        "-D", "publish", "message-expiry-interval", "120",
    ];
    publish(cluster.node(A), V5, topic, "{\"a\":1}", 1, &args);
    let message = sub.next_message();
    let fields: Vec<&str> = message.payload.splitn(7, '~').collect();
    assert_eq!(fields[..5], ["k1:v1 k2:v2 k1:v1 again", "application/json", "p5/reply", "req-42", "1"], "{message:?}");
    let expiry: u32 = fields[5].parse().unwrap_or_else(|_| panic!("expiry in {message:?}"));
    assert!((100..=120).contains(&expiry), "Message Expiry Interval {expiry}, published 120");
    assert_eq!(fields[6], "{\"a\":1}");
}

/// 500 QoS 1 messages from one publisher on `a`, on `o8/1` and `o8/2` in turn, reach a
/// subscriber on `c` whose filters `o8/+` and `o8/#` both match: in publish order, each once
/// (one delivery per session however many of its subscriptions match, MQTT-3.3.4-2 / 5.0
/// §3.3.4, without subscription identifiers).
#[test]
fn messages_of_one_publisher_cross_in_order_once_each() {
    const N: usize = 500;
    let cluster = shared();
    let mut sub = Sub::start(cluster.node(C), V311, "o8-sub", &["o8/+", "o8/#"], 1);
    cluster.sync(A, &mut sub, "o8/probe");
    cluster.sync(A, &mut sub, "o8");
    let messages: Vec<(String, String)> = (0..N).map(|i| (format!("o8/{}", 1 + i % 2), format!("{i}"))).collect();
    publish_in_order(cluster.node(A), "o8-pub", &messages);
    // A later publisher on the same node is ordered after them: any duplicate comes before it.
    publish(cluster.node(A), V311, "o8/2", "end", 1, &[]);
    let got = sub.until("end");
    let got: Vec<(String, String)> =
        got.into_iter().filter(|m| m.payload != "end").map(|m| (m.topic, m.payload)).collect();
    if got != messages {
        let first = got.iter().zip(&messages).position(|(g, m)| g != m);
        panic!(
            "{} received, {N} sent; first difference at {first:?}: {:?}",
            got.len(),
            first.map(|i| &got[i..got.len().min(i + 10)])
        );
    }
}

/// A retained message whose publisher on A has its PUBACK is found by a SUBSCRIBE sent to B at
/// once after it (MQTT-3.3.1-6: the retained message is sent to a new subscription; across
/// nodes, A's PUBACK waits for the retained bucket and B applies the bucket before a SUBSCRIBE),
/// for every one of a run of topics, each set and subscribed to with no wait between (rumqttc,
/// both clients connected before).
#[test]
fn a_retained_message_acknowledged_on_one_node_is_sent_to_a_subscribe_on_another_right_after() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    const TOPICS: usize = 20;
    let cluster = MidgeCluster::start();
    let connect = |node: &TestBroker, id: &str| {
        let mut options = MqttOptions::new(id, "127.0.0.1", node.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, connection) = Client::new(options, 64);
        let (events, received) = mpsc::channel();
        std::thread::spawn(move || {
            let mut connection = connection;
            for event in connection.iter() {
                let stop = event.is_err();
                if events.send(event.map_err(|error| error.to_string())).is_err() || stop {
                    return;
                }
            }
        });
        (client, received)
    };
    let next = |received: &mpsc::Receiver<Result<Event, String>>, what: &str, wanted: &dyn Fn(&Packet) -> bool| loop {
        match received.recv_timeout(WAIT) {
            Ok(Ok(Event::Incoming(packet))) if wanted(&packet) => return packet,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("{what}: {error}"),
            Err(_) => panic!("{what}: nothing within {WAIT:?}"),
        }
    };
    let (publisher, published) = connect(cluster.node(A), "ret-pub");
    let (subscriber, deliveries) = connect(cluster.node(B), "ret-sub");
    next(&published, "publisher's CONNACK", &|p| matches!(p, Packet::ConnAck(_)));
    next(&deliveries, "subscriber's CONNACK", &|p| matches!(p, Packet::ConnAck(_)));
    for i in 0..TOPICS {
        let topic = format!("rw/{i}");
        publisher.publish(&topic, QoS::AtLeastOnce, true, format!("kept {i}").into_bytes()).expect("publish");
        next(&published, "PUBACK", &|p| matches!(p, Packet::PubAck(_)));
        subscriber.subscribe(&topic, QoS::AtLeastOnce).expect("subscribe");
        let packet =
            next(&deliveries, &format!("the retained message of {topic}"), &|p| matches!(p, Packet::Publish(_)));
        let Packet::Publish(publish) = packet else { unreachable!() };
        assert_eq!(
            (publish.topic.as_str(), publish.payload.as_ref(), publish.retain),
            (topic.as_str(), format!("kept {i}").as_bytes(), true),
            "the first message on {topic} at B is not its retained one"
        );
    }
}

/// Publishes `messages` (topic, payload) at QoS 1 from one rumqttc client (MQTT 3.1.1), in
/// order, and waits until every one is acknowledged.
fn publish_in_order(node: &TestBroker, id: &str, messages: &[(String, String)]) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(id, "127.0.0.1", node.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(options, 64);
    let total = messages.len();
    let (done, acked) = mpsc::channel();
    std::thread::spawn(move || {
        let mut count = 0;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    count += 1;
                    if count == total {
                        let _ = done.send(Ok(()));
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = done.send(Err(format!("after {count} acks: {error}")));
                    return;
                }
            }
        }
    });
    for (topic, payload) in messages {
        client.publish(topic, QoS::AtLeastOnce, false, payload.clone().into_bytes()).expect("queue a publish");
    }
    match acked.recv_timeout(WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("rumqttc publisher: {error}"),
        Err(_) => panic!("rumqttc publisher: not every message acknowledged within {WAIT:?}"),
    }
    let _ = client.disconnect();
}

/// Sends `payload` on `topic` from `a` and waits for it on `sub` (on `c`), after syncing.
fn flows(cluster: &MidgeCluster, sub: &mut Sub, payload: &str) {
    cluster.sync(A, sub, "k/probe");
    publish(cluster.node(A), V311, "k/x", payload, 1, &[]);
    assert_eq!(triples(&sub.until(payload)), [(1, "k/x".to_owned(), payload.to_owned())]);
}

/// The NATS server node `c` subscribes through is killed: `c` reconnects to another (it has
/// all three URLs), subscribes again, and messages from `a` reach it; a retained message set
/// meanwhile reaches `b` (the bucket has three replicas).
#[test]
fn routing_survives_the_loss_of_a_nats_server() {
    let mut cluster = MidgeCluster::start();
    let mut sub = Sub::start(cluster.node(C), V311, "k-sub", &["k/#"], 1);
    flows(&cluster, &mut sub, "before");
    let victim = cluster.nats_server_of("midge c routes");
    cluster.nats.kill(victim);
    cluster.nats.wait_until("node c to reconnect to another NATS server", FORM_TIMEOUT, |nats| {
        let mut found = false;
        for i in (0..nats.len()).filter(|&i| i != victim) {
            found |= has_connection(nats, i, "midge c routes")?;
        }
        Ok(found)
    });
    flows(&cluster, &mut sub, "after");
    publish(cluster.node(A), V311, "k/retained", "kept", 1, &["-r"]);
    for node in [A, B, C] {
        cluster.wait_retained_within(node, "k/retained", Some("kept"), RETAINED_AFTER_LOSS);
    }
}

/// Each NATS server in turn is killed and restarted while subscribers stay connected: after
/// each step messages still flow from `a` to `c`, and to a persistent subscriber on `b` (fed
/// from its JetStream consumer, which moves with the servers' restarts), and retained messages
/// still cross.
#[test]
fn routing_survives_a_rolling_restart_of_the_nats_servers() {
    let mut cluster = MidgeCluster::start();
    let mut sub = Sub::start(cluster.node(C), V311, "k-sub", &["k/#"], 1);
    let mut durable = Sub::start_with(cluster.node(B), V311, "k-durable", &["k/x"], 1, "%p", &["-c"]);
    let mut step = |cluster: &MidgeCluster, sub: &mut Sub, payload: &str| {
        flows(cluster, sub, payload);
        let last = durable.until(payload).pop().expect("one message at least");
        assert_eq!((last.qos, last.topic.as_str()), (1, "k/x"), "the persistent subscriber on b");
    };
    step(&cluster, &mut sub, "start");
    for i in 0..cluster.nats.len() {
        cluster.nats.kill(i);
        step(&cluster, &mut sub, &format!("without n{i}"));
        cluster.nats.restart(i);
        step(&cluster, &mut sub, &format!("with n{i} again"));
    }
    publish(cluster.node(A), V311, "k/retained", "after the restarts", 1, &["-r"]);
    for node in [A, B, C] {
        cluster.wait_retained_within(node, "k/retained", Some("after the restarts"), RETAINED_AFTER_LOSS);
    }
}
