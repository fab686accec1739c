//! `$SYS` topics (issue 15) read with Debian's `mosquitto_sub -t '$SYS/#'`: their values after
//! known traffic, who may read them (never `#`, MQTT-4.7.2-1; only whom the ACL lets), `[sys]
//! interval = 0`, every topic name mosquitto 2 publishes under the same traffic published by
//! Midge too, with the same values where the same packets give the same counts; Midge's own
//! (pacing, drops by reason), client events (`[sys] events`), and the mosquitto-style connect
//! and disconnect log lines.
//!
//! No test sleeps for synchronisation: each waits, with a deadline, for the values it expects.

mod interop_common;
mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interop_common::mosquitto::{publish, Sub};
use support::TestBroker;

/// How long values may take to show what a test expects: a few `$SYS` intervals of 1 s.
const WAIT: Duration = Duration::from_secs(15);

/// A midge publishing `$SYS` every second.
fn midge() -> TestBroker {
    TestBroker::start_midge_with("[sys]\ninterval = 1\n")
}

/// A running `mosquitto_sub -t '$SYS/#'` (or other filters), keeping each topic's latest value.
struct SysWatch {
    child: Child,
    lines: mpsc::Receiver<String>,
    values: HashMap<String, String>,
    /// Every topic seen, in the order first seen.
    seen: Vec<String>,
}

impl SysWatch {
    fn start(broker: &TestBroker, id: &str, extra: &[&str]) -> Self {
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        interop_common::mosquitto::connection_args(&mut command, broker, "mqttv311", id);
        command.args(extra).args(["-W", "30", "-F", "%t|%p"]);
        command.stderr(Stdio::null());
        let (child, lines) =
            interop_common::spawn_lines(&mut command, "start mosquitto_sub (apt-get install mosquitto-clients)");
        Self { child, lines, values: HashMap::new(), seen: Vec::new() }
    }

    /// Subscribes to `$SYS/#`.
    fn sys(broker: &TestBroker, id: &str) -> Self {
        Self::start(broker, id, &["-t", "$SYS/#"])
    }

    /// Reads messages until `done` holds for the latest values; panics after [`WAIT`].
    fn wait_until(&mut self, what: &str, done: impl Fn(&HashMap<String, String>) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.values) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let (topic, payload) = line.split_once('|').expect("topic|payload");
                    if !self.values.contains_key(topic) {
                        self.seen.push(topic.to_owned());
                    }
                    self.values.insert(topic.to_owned(), payload.to_owned());
                }
                Err(_) => panic!("{what}: not seen in time; last values:\n{}", self.dump()),
            }
        }
    }

    /// Reads until `uptime` has moved `updates` times from what it was: that many updates later.
    fn wait_updates(&mut self, updates: usize) {
        for _ in 0..updates {
            self.wait_until("an uptime", |v| v.contains_key("$SYS/broker/uptime"));
            let before = self.values["$SYS/broker/uptime"].clone();
            self.wait_until("the next update", |v| v["$SYS/broker/uptime"] != before);
        }
    }

    fn value(&self, topic: &str) -> &str {
        self.values.get(topic).map_or("(none)", String::as_str)
    }

    fn dump(&self) -> String {
        let mut lines: Vec<String> = self.values.iter().map(|(t, p)| format!("{t} {p}")).collect();
        lines.sort();
        lines.join("\n")
    }
}

impl Drop for SysWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same traffic for every broker, from the same client ids (so the same bytes): 10 QoS 1
/// messages of 5 bytes from one connection, then one retained QoS 0 message of 2 bytes.
/// Packets received: 12 (CONNECT, 10 PUBLISH, DISCONNECT) + 3 (CONNECT, PUBLISH, DISCONNECT).
fn known_traffic(broker: &TestBroker) {
    publish(broker, "mqttv311", "sys-pub", &["-t", "t/x", "-m", "hello", "-q", "1", "--repeat", "10"]);
    publish(broker, "mqttv311", "sys-ret", &["-t", "t/r", "-m", "hi", "-r"]);
}

fn is(topic: &'static str, value: &'static str) -> impl Fn(&HashMap<String, String>) -> bool {
    move |values| values.get(topic).is_some_and(|v| v == value)
}

#[test]
fn sys_topics_count_known_traffic() {
    let broker = midge();
    known_traffic(&broker);
    let mut watch = SysWatch::sys(&broker, "sys-watch");
    watch.wait_until("the version", is("$SYS/broker/version", concat!("midge version ", env!("CARGO_PKG_VERSION"))));
    // The watcher's CONNECT and SUBSCRIBE come on top of the traffic's 15 packets.
    watch.wait_until("messages/received", is("$SYS/broker/messages/received", "17"));
    watch.wait_until("publish/messages/received", is("$SYS/broker/publish/messages/received", "11"));
    watch.wait_until("publish/bytes/received", is("$SYS/broker/publish/bytes/received", "52"));
    watch.wait_until("clients/connected", is("$SYS/broker/clients/connected", "1"));
    watch.wait_until("clients/total", is("$SYS/broker/clients/total", "1"));
    watch.wait_until("clients/maximum", |v| v.get("$SYS/broker/clients/maximum").is_some_and(|m| m != "0"));
    watch.wait_until("subscriptions/count", is("$SYS/broker/subscriptions/count", "1"));
    watch.wait_until("load/connections", |v| {
        v.get("$SYS/broker/load/connections/1min").is_some_and(|load| load.parse::<f64>().unwrap() > 0.0)
    });
    // Every retained $SYS value, and the traffic's one retained message.
    watch.wait_updates(1);
    watch.wait_until("retained messages/count", |v| {
        let sys = v.keys().filter(|topic| topic.starts_with("$SYS/")).count();
        v.get("$SYS/broker/retained messages/count") == Some(&(sys + 1).to_string())
    });
    let uptime = watch.value("$SYS/broker/uptime").to_owned();
    assert!(uptime.ends_with(" seconds"), "{uptime}");
}

/// Connects and disconnects are logged as mosquitto logs them.
#[test]
fn connects_and_disconnects_are_logged_as_mosquitto_logs_them() {
    let broker = midge();
    publish(&broker, "mqttv311", "log-pub", &["-t", "t/x", "-m", "hello", "-u", "alice"]);
    let connected = broker.wait_for_log("as log-pub (", WAIT);
    assert!(connected.contains("New client connected from 127.0.0.1:"), "{connected}");
    assert!(connected.contains(" as log-pub (p2, c1, k60, u'alice')."), "{connected}");
    broker.wait_for_log("Client log-pub disconnected.", WAIT);
}

/// With `[sys] events = true`, each connect and disconnect is a message.
#[test]
fn client_events_are_published_with_events_on() {
    let broker = TestBroker::start_midge_with("[sys]\ninterval = 1\nevents = true\n");
    let filter = "$SYS/broker/midge/clients/+";
    let mut events = Sub::start_with(&broker, "mqttv311", "monitor", &["-t", filter, "-C", "2"], "%t|%p");
    events.wait_subscribed();
    publish(&broker, "mqttv311", "ev-pub", &["-t", "t/x", "-m", "hello"]);
    assert_eq!(
        events.messages(),
        ["$SYS/broker/midge/clients/connected|ev-pub", "$SYS/broker/midge/clients/disconnected|ev-pub"]
    );
}

#[test]
fn a_hash_subscriber_gets_no_sys_topics_mqtt_4_7_2_1() {
    let broker = midge();
    let mut everything = Sub::start_with(&broker, "mqttv311", "everything", &["-t", "#", "-C", "1", "-v"], "%t|%p");
    everything.wait_subscribed();
    // Two $SYS updates while `#` is subscribed, then a message of its own: it is the first
    // (and, with -C 1, the only) message `#` gets.
    SysWatch::sys(&broker, "sys-watch").wait_updates(2);
    publish(&broker, "mqttv311", "marker-pub", &["-t", "marker", "-m", "first"]);
    assert_eq!(everything.messages(), ["marker|first"]);
}

#[test]
fn sys_interval_0_publishes_nothing() {
    let broker = TestBroker::start_midge_with("[sys]\ninterval = 0\n");
    // The retained $SYS values would come right after the SUBACK, before the marker.
    let mut sub =
        Sub::start_with(&broker, "mqttv311", "sys-none", &["-t", "$SYS/#", "-t", "marker", "-C", "1"], "%t|%p");
    sub.wait_for("Subscribed (mid:");
    publish(&broker, "mqttv311", "marker-pub", &["-t", "marker", "-m", "first"]);
    assert_eq!(sub.messages(), ["marker|first"]);
}

#[test]
fn sys_is_read_only_by_whom_the_acl_lets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("acl");
    // Anonymous clients (the first rules) may publish the marker; `#` does not reach `$SYS`.
    std::fs::write(&acl, "topic write marker\n\nuser admin\ntopic read $SYS/#\n\nuser eve\ntopic read #\n")
        .expect("write acl");
    let broker = TestBroker::start_midge_listener_with(
        &format!("acl_file = {:?}\n", acl.display().to_string()),
        "[sys]\ninterval = 1\n",
    );
    let mut admin = SysWatch::start(&broker, "admin", &["-u", "admin", "-t", "$SYS/#"]);
    admin.wait_until("the version for admin", |v| v.contains_key("$SYS/broker/version"));

    // Another user's $SYS subscription is refused (3.1.1: 0x80), and it gets nothing.
    let mut eve = Sub::start_with(
        &broker,
        "mqttv311",
        "eve",
        &["-u", "eve", "-t", "$SYS/broker/uptime", "-t", "marker", "-C", "1"],
        "%t|%p",
    );
    eve.wait_for("Subscribed (mid:");
    admin.wait_updates(1);
    publish(&broker, "mqttv311", "marker-pub", &["-t", "marker", "-m", "first"]);
    assert_eq!(eve.messages(), ["marker|first"]);
}

/// A subscriber that takes nothing paces its publisher, then (`slow_consumer_policy = "drop"`,
/// after `slow_consumer_timeout_ms`) loses what does not fit its queue: Midge's own topics show
/// the pacing, its end, and the drops under their reason.
#[test]
fn pacing_and_drops_by_reason_show_under_midges_own_topics() {
    let broker = TestBroker::start_midge_with(
        "[mqtt]\nmax_queued_messages = 20\nslow_consumer_timeout_ms = 100\n\n[store]\npersistence = false\n\n\
         [sys]\ninterval = 1\n",
    );
    let mut stuck = wire::Client::new(&broker, wire::Version::V5, "stuck");
    assert_eq!(stuck.subscribe("drop/t", 1), 1);
    let mut publisher = wire::Client::new(&broker, wire::Version::V5, "flooder");
    let mut burst = Vec::new();
    for n in 1..=300u16 {
        let mut publish = wire::Publish::new("drop/t", format!("{n}").as_bytes(), 1);
        publish.id = n;
        burst.extend(publish.encode(wire::Version::V5));
    }
    publisher.send(&burst);
    for acked in 0..300 {
        match publisher.next(Duration::from_secs(30)) {
            wire::Event::Packet(wire::Packet::Puback(_)) => {}
            other => panic!("publisher: {other:?} after {acked} PUBACKs"),
        }
    }
    // Only the topics read: an update is a burst of up to a hundred messages, and a QoS 0
    // subscriber of `$SYS/#` under this queue bound of 20 would lose most of each.
    let topics = [
        "$SYS/broker/publish/messages/dropped",
        "$SYS/broker/midge/messages/dropped/+",
        "$SYS/broker/midge/publishers/+",
    ];
    let mut watch = SysWatch::start(&broker, "sys-watch", &topics.map(|topic| ["-t", topic]).concat());
    watch.wait_until("pacing over, drops counted by reason", |v| {
        let number = |topic: &str| v.get(topic).and_then(|value| value.parse::<u64>().ok());
        let dropped = number("$SYS/broker/publish/messages/dropped");
        let reasons = ["queue_full", "undeliverable", "read_back"]
            .map(|reason| number(&format!("$SYS/broker/midge/messages/dropped/{reason}")));
        number("$SYS/broker/midge/publishers/pacings").is_some_and(|n| n >= 1)
            && number("$SYS/broker/midge/publishers/paced") == Some(0)
            && reasons[0].is_some_and(|n| n > 0)
            && dropped.is_some()
            && dropped == reasons.iter().copied().sum::<Option<u64>>()
    });
}

#[test]
fn every_topic_mosquitto_publishes_midge_publishes_too() {
    let mosquitto = TestBroker::start_mosquitto("sys_interval 1\n");
    let midge = midge();
    let mut trees = Vec::new();
    for broker in [&mosquitto, &midge] {
        known_traffic(broker);
        let mut watch = SysWatch::sys(broker, "sys-watch");
        watch.wait_until("publish/bytes/received", is("$SYS/broker/publish/bytes/received", "52"));
        watch.wait_until("messages/received", is("$SYS/broker/messages/received", "17"));
        // mosquitto publishes a topic only once it differs from its initial value: a few
        // updates let every one that the traffic moved come.
        watch.wait_updates(3);
        trees.push(watch);
    }
    let (theirs, ours) = (&trees[0], &trees[1]);
    // Every one, `heap/current` and `heap/maximum` included (mosquitto's from its memory
    // tracking, Midge's from jemalloc's statistics).
    let missing: BTreeSet<&String> = theirs.seen.iter().filter(|topic| !ours.values.contains_key(*topic)).collect();
    assert!(missing.is_empty(), "mosquitto publishes {missing:?}, Midge does not");

    // The same packets from the same client ids: the same counts.
    for topic in [
        "$SYS/broker/messages/received",
        "$SYS/broker/bytes/received",
        "$SYS/broker/publish/bytes/received",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/publish/messages/dropped",
    ] {
        assert_eq!(ours.value(topic), theirs.value(topic), "{topic}");
    }
    // mosquitto 2.0 counts a PUBLISH when `command & 0xF5 == 0x30`, a mask that keeps the
    // RETAIN bit and the high QoS bit: it misses retained and QoS 2 PUBLISHes (here, the
    // retained one). Midge counts every PUBLISH, which is what the topic's name says.
    assert_eq!(theirs.value("$SYS/broker/publish/messages/received"), "10");
    assert_eq!(ours.value("$SYS/broker/publish/messages/received"), "11");
}

/// An MQTT-SN client's datagrams count as an MQTT connection's packets and bytes do: a
/// SEARCHGW (3 bytes) read and its GWINFO (3 bytes) sent move `messages/received` by 1 and
/// `bytes/received` by 3 (issue 14: "$SYS/metrics count exactly as for MQTT clients").
#[test]
fn mqtt_sn_datagrams_count_as_packets_and_bytes() {
    let broker = TestBroker::start_midge_with(&format!("[sys]\ninterval = 1\n\n{}", support::mqtt_sn_listener("")));
    let gateway = broker.mqtt_sn_addr();
    let mut watch = SysWatch::sys(&broker, "sys-sn");
    // The watcher's own CONNECT and SUBSCRIBE, counted and published: the baseline.
    watch.wait_until("the watcher's two packets", is("$SYS/broker/messages/received", "2"));
    // Two updates on, the one that carried them has arrived whole (its topics come one by one).
    watch.wait_updates(2);
    let number = |watch: &SysWatch, topic: &str| watch.value(topic).parse::<u64>().expect(topic);
    let (packets, bytes) =
        (number(&watch, "$SYS/broker/messages/received"), number(&watch, "$SYS/broker/bytes/received"));
    let sent = number(&watch, "$SYS/broker/messages/sent");

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.send_to(&[3, 0x01, 0], gateway).unwrap(); // SEARCHGW, radius 0
    let mut gwinfo = [0u8; 16];
    let (len, _) = socket.recv_from(&mut gwinfo).expect("GWINFO");
    assert_eq!(&gwinfo[..2], &[3, 0x02], "GWINFO: {:?}", &gwinfo[..len]);

    let (packets_after, bytes_after) = ((packets + 1).to_string(), (bytes + 3).to_string());
    watch.wait_until("the SEARCHGW counted", |v| {
        v.get("$SYS/broker/messages/received") == Some(&packets_after)
            && v.get("$SYS/broker/bytes/received") == Some(&bytes_after)
    });
    // Sent also counts the $SYS messages themselves: the GWINFO is one more among them.
    assert!(number(&watch, "$SYS/broker/messages/sent") > sent, "{}", watch.dump());
}
