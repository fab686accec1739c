//! Bridges lose nothing across outages (issue 16): every message a publisher on one broker had
//! acknowledged arrives at a subscriber on the other, in order, QoS 2 exactly once, while the
//! link is cut, stalled, and while each broker is killed with SIGKILL and restarted on its
//! store.
//!
//! Two Midges: LOCAL bridges `t/#` out (and, in the inbound test, in) to REMOTE through a
//! [`Proxy`] the test controls (cut: every connection closed; stall: nothing forwarded, sockets
//! open; retarget: REMOTE restarted on a new port). Publishers and subscribers are rumqttc
//! clients (a client nobody on the team wrote); the subscriber at REMOTE has a persistent
//! session and reaches REMOTE through a second proxy, so that it follows REMOTE's restarts.

mod interop_common;
mod support;
mod tcp_proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use support::TestBroker;
use tcp_proxy::Proxy;

/// Messages per phase of the outage schedule.
const PER_PHASE: u32 = 250;
/// The payload size under the stall: 250 of them outgrow the loopback sockets' buffers.
const STALL_PAYLOAD: usize = 64 * 1024;
/// How long the subscriber may take to see every message after the last phase.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a publisher may take to have all its messages acknowledged.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// QoS 1 over a 3.1.1 link: every acknowledged message arrives, in order of first arrival
/// (MQTT-4.6.0-6), at least once (MQTT-4.3.2), across cuts, a stall and both brokers' kill -9.
#[test]
fn qos1_over_311_every_acknowledged_message_crosses_every_outage() {
    outage_schedule(1, "3.1.1");
}

/// QoS 2 over a v5 link: every acknowledged message arrives exactly once (MQTT-4.3.3), in
/// order, across the same outages: the packet ids pass through the bridge unchanged, so a
/// resent PUBLISH or PUBREL after a reconnect or a restart is one the remote knows.
#[test]
fn qos2_over_v5_every_acknowledged_message_crosses_every_outage_exactly_once() {
    outage_schedule(2, "5");
}

/// QoS 2 over a 3.1.1 link (try_private), the same.
#[test]
fn qos2_over_311_every_acknowledged_message_crosses_every_outage_exactly_once() {
    outage_schedule(2, "3.1.1");
}

/// Messages published at REMOTE while the link is down (and LOCAL is killed) arrive at LOCAL
/// when it returns: the bridge's session at REMOTE is persistent (cleansession false).
#[test]
fn inbound_messages_published_while_the_link_is_down_arrive_when_it_returns() {
    let dirs = tempfile::tempdir().unwrap();
    let remote = start_remote(dirs.path());
    let link = Proxy::start(remote.addr);
    let mut local = start_local(dirs.path(), &link, 2, "3.1.1", "in");
    local.wait_for_log("bridge connected", Duration::from_secs(20));
    let subscriber_link = Proxy::start(local.addr);
    let subscriber = Subscriber::start(&subscriber_link, "in-watcher", 2);
    publish_all(remote.addr, "in-pub-1", 2, 1..=PER_PHASE);
    link.cut();
    publish_all(remote.addr, "in-pub-2", 2, PER_PHASE + 1..=2 * PER_PHASE);
    // LOCAL killed while the link is down, restarted on its store.
    drop(local);
    local = start_local(dirs.path(), &link, 2, "3.1.1", "in");
    subscriber_link.retarget(local.addr);
    link.resume();
    let received = subscriber.wait_for_all(2 * PER_PHASE, Vec::new());
    check(&received, 2 * PER_PHASE, 2);
    drop(local);
}

/// The schedule, each phase starting once everything before it has arrived: phase 1 with a cut
/// while messages cross, phase 2 under a stall long enough for LOCAL to take the remote as lost,
/// phase 3 queued while the link is cut and LOCAL is killed and restarted, phase 4 with REMOTE
/// killed and restarted while messages cross.
fn outage_schedule(qos: u8, version: &str) {
    let dirs = tempfile::tempdir().unwrap();
    let mut remote = start_remote(dirs.path());
    let link = Proxy::start(remote.addr);
    let subscriber_link = Proxy::start(remote.addr);
    let subscriber = Subscriber::start(&subscriber_link, "watcher", qos);
    let mut local = start_local(dirs.path(), &link, qos, version, "out");
    local.wait_for_log("bridge connected", Duration::from_secs(20));
    let mut received = Vec::new();
    let arrived = |received: &mut Vec<u32>, count: u32, phase: &str| {
        if !subscriber.receive_all(count, received) {
            check(received, count, qos);
            panic!("{phase}: not everything arrived");
        }
    };

    // Phase 1: a cut while the messages cross.
    let half = PER_PHASE / 2;
    publish_all(local.addr, "pub-1a", qos, 1..=half);
    link.cut();
    publish_all(local.addr, "pub-1b", qos, half + 1..=PER_PHASE);
    link.resume();
    arrived(&mut received, PER_PHASE, "phase 1");

    // Phase 2: the link stalls (nothing forwarded, nothing closed) under more than the sockets'
    // buffers hold (64 KiB messages), until LOCAL takes the remote as lost; then it comes back.
    local.wait_for_log_count("bridge connected", 2, Duration::from_secs(20));
    link.stall();
    publish_padded(local.addr, "pub-2", qos, PER_PHASE + 1..=2 * PER_PHASE, STALL_PAYLOAD);
    // Lost by the stall rule: publishers held up while the remote takes nothing, for half the
    // slow-consumer timeout (before that policy could drop from the bridge's session).
    let down = local.wait_for_log_count("bridge down", 2, Duration::from_secs(30));
    assert!(down.contains("the remote took nothing"), "the stall was not found by the stall rule: {down}");
    link.cut();
    link.resume();
    arrived(&mut received, 2 * PER_PHASE, "phase 2");

    // Phase 3: queued at LOCAL while the link is cut, then LOCAL killed and restarted.
    link.cut();
    publish_all(local.addr, "pub-3", qos, 2 * PER_PHASE + 1..=3 * PER_PHASE);
    drop(local);
    local = start_local(dirs.path(), &link, qos, version, "out");
    link.resume();
    arrived(&mut received, 3 * PER_PHASE, "phase 3");

    // Phase 4: REMOTE killed while messages cross, restarted on its store at a new port.
    publish_all(local.addr, "pub-4a", qos, 3 * PER_PHASE + 1..=3 * PER_PHASE + half);
    drop(remote);
    publish_all(local.addr, "pub-4b", qos, 3 * PER_PHASE + half + 1..=4 * PER_PHASE);
    remote = start_remote(dirs.path());
    link.retarget(remote.addr);
    subscriber_link.retarget(remote.addr);
    link.cut();
    subscriber_link.cut();
    link.resume();
    subscriber_link.resume();

    let received = subscriber.wait_for_all(4 * PER_PHASE, received);
    check(&received, 4 * PER_PHASE, qos);
    drop((local, remote));
}

/// REMOTE: a Midge with a store under `dirs`/remote.
fn start_remote(dirs: &Path) -> TestBroker {
    let data = dirs.join("remote");
    TestBroker::start_midge_with(&format!("[store]\ndata_dir = {:?}\n", data.display().to_string()))
}

/// LOCAL: a Midge with a store under `dirs`/local, bridging `t/#` (`direction`) at `qos` over
/// `version` to the proxy.
fn start_local(dirs: &Path, link: &Proxy, qos: u8, version: &str, direction: &str) -> TestBroker {
    let data = dirs.join("local");
    TestBroker::start_midge_with(&format!(
        r#"[store]
data_dir = {data:?}

# A small online queue, so that a stalled remote soon holds up local publishers (the
# stall rule's case) rather than only filling the sockets' buffers.
[mqtt]
max_queued_messages = 32
max_offline_messages = 100000

[[bridge]]
name = "lossless"
addresses = ["127.0.0.1:{port}"]
protocol_version = "{version}"
remote_clientid = "lossless-bridge"
keepalive_interval = 5
restart_timeout = [1]

[[bridge.topic]]
pattern = "t/#"
direction = "{direction}"
qos = {qos}
"#,
        data = data.display().to_string(),
        port = link.port(),
    ))
}

fn qos_of(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes `numbers` to `t/seq` at `qos` from a new client and waits until the broker has
/// acknowledged every one (PUBACK or PUBCOMP).
fn publish_all(broker: SocketAddr, id: &str, qos: u8, numbers: std::ops::RangeInclusive<u32>) {
    publish_padded(broker, id, qos, numbers, 0);
}

/// [`publish_all`] with each payload padded with spaces to `size` bytes.
fn publish_padded(broker: SocketAddr, id: &str, qos: u8, numbers: std::ops::RangeInclusive<u32>, size: usize) {
    let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(64);
    // rumqttc refuses packets over 10 KiB by default; the stall phase sends 64 KiB ones.
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 128);
    let count = numbers.clone().count();
    let publisher = std::thread::spawn(move || {
        for number in numbers {
            let mut payload = number.to_string().into_bytes();
            payload.resize(size.max(payload.len()), b' ');
            client.publish("t/seq", qos_of(qos), false, payload).expect("queue PUBLISH");
        }
        client
    });
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    let mut acknowledged = 0;
    while acknowledged < count {
        assert!(Instant::now() < deadline, "{id}: {acknowledged} of {count} acknowledged in time");
        match connection.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) if qos == 1 => acknowledged += 1,
            Ok(Ok(Event::Incoming(Packet::PubComp(_)))) if qos == 2 => acknowledged += 1,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(error)) => panic!("{id}: publisher connection failed: {error}"),
        }
    }
    let client = publisher.join().unwrap();
    let _ = client.disconnect();
}

/// A persistent subscriber to `t/#`: Debian's `mosquitto_sub` with a clean session 0, which
/// reconnects by itself after a cut or a restart (rumqttc 0.24 cannot be used here: it drops
/// the connection on a resent PUBREL it has already completed, which a broker restarted
/// between PUBREL and its commit of PUBCOMP rightly sends, MQTT-4.3.3).
struct Subscriber {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(link: &Proxy, id: &str, qos: u8) -> Self {
        // Line-buffered: through a pipe its lines would otherwise wait for its exit.
        let mut command = std::process::Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &link.port().to_string(), "-i", id, "-c", "-d"]);
        command.args(["-q", &qos.to_string(), "-k", "5", "-t", "t/#"]);
        let (child, lines) = interop_common::spawn_lines(&mut command, "mosquitto_sub");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("SUBACK") => break,
                Ok(_) => {}
                Err(_) => panic!("mosquitto_sub did not subscribe in time"),
            }
        }
        Self { child, lines }
    }

    /// The next payload it printed (its `-d` lines are skipped), within `timeout`.
    fn next(&self, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
            if let Ok(number) = line.trim().parse() {
                return Some(number);
            }
        }
    }

    /// Reads until every number of 1..=`count` has come (or the timeout), keeping all it
    /// reads in `received`, in order of arrival; false if some never came.
    fn receive_all(&self, count: u32, received: &mut Vec<u32>) -> bool {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut seen: std::collections::HashSet<u32> = received.iter().copied().collect();
        while (1..=count).any(|number| !seen.contains(&number)) {
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(number) = self.next(Duration::from_millis(500)) {
                received.push(number);
                seen.insert(number);
            }
        }
        true
    }

    /// All it received: `received`, then whatever comes until all of 1..=`count` have come,
    /// then anything more (a duplicate on its way) within a short while.
    fn wait_for_all(&self, count: u32, mut received: Vec<u32>) -> Vec<u32> {
        self.receive_all(count, &mut received);
        let quiet_until = Instant::now() + Duration::from_secs(2);
        while let Some(number) = self.next(quiet_until.saturating_duration_since(Instant::now())) {
            received.push(number);
        }
        received
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every number of 1..=`count` arrived, first arrivals in order, and at QoS 2 none twice.
fn check(received: &[u32], count: u32, qos: u8) {
    let mut times: HashMap<u32, u32> = HashMap::new();
    let mut firsts = Vec::new();
    for &number in received {
        let seen = times.entry(number).or_default();
        if *seen == 0 {
            firsts.push(number);
        }
        *seen += 1;
    }
    let missing: Vec<u32> = (1..=count).filter(|number| !times.contains_key(number)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never arrived: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let unknown: Vec<u32> = times.keys().copied().filter(|number| *number == 0 || *number > count).collect();
    assert!(unknown.is_empty(), "messages never published arrived: {unknown:?}");
    let out_of_order: Vec<(u32, u32)> =
        firsts.windows(2).filter(|pair| pair[1] < pair[0]).map(|pair| (pair[0], pair[1])).collect();
    assert!(
        out_of_order.is_empty(),
        "out of order (first arrivals): {:?}",
        &out_of_order[..out_of_order.len().min(20)]
    );
    if qos == 2 {
        let twice: Vec<u32> = times.iter().filter(|(_, times)| **times > 1).map(|(number, _)| *number).collect();
        assert!(twice.is_empty(), "QoS 2 messages delivered more than once: {twice:?}");
    }
}

/// A reload (SIGHUP) applies `[[bridge]]` changes (issue 16): a bridge added connects, one
/// changed restarts, one removed stops, and one unchanged keeps its connection: it does not
/// connect again, and messages still cross it.
#[test]
fn a_reload_adds_changes_and_removes_bridges_and_keeps_unchanged_ones_connected() {
    use interop_common::mosquitto::{publish, Sub};
    let remote = TestBroker::start_midge_with("");
    let bridge = |name: &str, pattern: &str, qos: u8| {
        format!(
            "[[bridge]]\nname = \"{name}\"\naddresses = [\"127.0.0.1:{}\"]\nremote_clientid = \"{name}-link\"\n\
             [[bridge.topic]]\npattern = \"{pattern}\"\nqos = {qos}\n\n",
            remote.port()
        )
    };
    let head = "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n[store]\npersistence = false\n\n";
    let local = TestBroker::start_midge_config(&format!("{head}{}", bridge("first", "a/#", 1)));
    local.wait_for_log("bridge connected bridge=first", Duration::from_secs(20));

    let reload = |config: String, needle: &str| {
        let mark = local.log_len();
        local.write_config(&config);
        local.hangup();
        local.wait_for_log_from(mark, needle, Duration::from_secs(20))
    };
    reload(format!("{head}{}{}", bridge("first", "a/#", 1), bridge("second", "b/#", 1)), "bridge second added");
    local.wait_for_log("bridge connected bridge=second", Duration::from_secs(20));
    let mut watcher = Sub::start(&remote, "mqttv311", "watcher", "#", 1, 2, "%t|%p");
    watcher.wait_subscribed();
    publish(&local, "mqttv311", "pub-a", &["-t", "a/1", "-q", "1", "-m", "through-first"]);
    publish(&local, "mqttv311", "pub-b", &["-t", "b/1", "-q", "1", "-m", "through-second"]);
    watcher.wait_for("a/1|through-first");
    watcher.wait_for("b/1|through-second");
    let connects = |name: &str| {
        local.log().iter().filter(|line| line.contains(&format!("bridge connected bridge={name}"))).count()
    };
    assert_eq!(connects("first"), 1, "the unchanged bridge connected again");

    // `first` changed (its QoS), `second` removed.
    reload(format!("{head}{}", bridge("first", "a/#", 2)), "bridge first changed: restarted");
    local.wait_for_log("bridge second removed", Duration::from_secs(20));
    local.wait_for_log_count("bridge connected bridge=first", 2, Duration::from_secs(20));
    local.wait_for_log("bridge stopped bridge=second", Duration::from_secs(20));
}

/// A client that connects as mosquitto's bridges do (`try_private`: protocol level 0x84) is a
/// bridge to Midge: its subscriptions get No Local, so what it publishes is not sent back to it
/// (no loop through a bridge configured both ways), and Retain As Published.
#[test]
fn a_client_announcing_itself_as_a_bridge_does_not_get_its_own_messages_back() {
    use midge_client::codec::{QoS as Q, Subscription, SubscriptionOptions, TopicFilter, TopicName};
    use midge_client::{Client as MidgeClient, ConnectOptions, Event as MidgeEvent};

    let broker = TestBroker::start_midge_with("");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut options = ConnectOptions::new("127.0.0.1", broker.port());
        options.client_id = "a-bridge".into();
        options.bridge = true;
        let mut bridge = MidgeClient::connect(options).await.expect("a bridge's CONNECT (level 0x84) is accepted");
        let filter = TopicFilter::new("t/#").unwrap();
        let subscription =
            Subscription { filter, options: SubscriptionOptions { qos: Q::AtLeastOnce, ..Default::default() } };
        bridge.subscribe(vec![subscription], Default::default()).unwrap();
        assert!(matches!(next_event(&mut bridge).await, MidgeEvent::Subscribed(_)));
        bridge.publish(&TopicName::new("t/own").unwrap(), "own", Q::AtLeastOnce, true).unwrap();
        assert!(matches!(next_event(&mut bridge).await, MidgeEvent::Published { .. }));
        interop_common::mosquitto::publish(&broker, "mqttv311", "other", &["-t", "t/other", "-q", "1", "-m", "x"]);
        // The next message is the other client's: its own was not sent back before it.
        match next_event(&mut bridge).await {
            MidgeEvent::Message(message) => assert_eq!(message.topic.as_str(), "t/other"),
            other => panic!("expected the other client's message, got {other:?}"),
        }
    });
}

/// The next event of a midge-client connection, within 10 s.
async fn next_event(client: &mut midge_client::Client) -> midge_client::Event {
    tokio::time::timeout(Duration::from_secs(10), client.poll()).await.expect("an event in time").expect("connected")
}
