//! The bounds of offline queues kept in the store (issue 12, decision 0006), over real sockets:
//! mosquitto's `max_queued_messages` keeps its meaning for a user who sets it, and
//! `[store] max_size_mb` stops offline queues growing when the store is over it. The defaults
//! (100,000 messages, 64 MiB per session) are exercised by `crash_offline_queue.rs`; the exact
//! limits of `max_offline_messages` and `max_offline_bytes` by the core's
//! `tests/offline_queues.rs`.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::path::Path;
use std::time::Duration;

use support::TestBroker;
use wire::{Client, Connect, Publish, Version};

/// How long the subscriber waits for one more message before it concludes there is none.
const QUIET: Duration = Duration::from_millis(1500);

fn broker(dir: &Path, extra: &str) -> TestBroker {
    TestBroker::start_midge_with(&format!(
        "[store]\ndata_dir = {:?}\nsync = \"never\"\n{extra}",
        dir.display().to_string()
    ))
}

fn persistent(client_id: &str) -> Connect {
    let mut connect = Connect::new(Version::V3_1_1, client_id);
    connect.clean = false;
    connect
}

/// A persistent subscriber to `q` at QoS 1 that has gone offline.
fn offline_subscriber(broker: &TestBroker) {
    let (mut subscriber, _) = Client::connect(broker, &persistent("offline"));
    assert_eq!(subscriber.subscribe("q", 1), 1);
    subscriber.disconnect();
}

/// The returning subscriber's messages, each acknowledged, until none comes for [`QUIET`].
fn drain_offline(broker: &TestBroker) -> Vec<Vec<u8>> {
    let (mut back, connack) = Client::connect(broker, &persistent("offline"));
    assert!(connack.session_present, "MQTT-3.2.2-2");
    let mut got = Vec::new();
    while let wire::Event::Packet(wire::Packet::Publish(publish)) = back.next(QUIET) {
        back.acknowledge(&publish);
        got.push(publish.payload);
    }
    got
}

fn numbers(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|n| n.to_string().into_bytes()).collect()
}

/// `max_queued_messages` given alone bounds a session's queue while its client is away too, as
/// in mosquitto: the first 10 of 25 are kept, the rest dropped (the publisher is still
/// acknowledged: the broker took the message, the offline session could not).
#[test]
fn max_queued_messages_given_alone_bounds_the_offline_queue_as_in_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), "[mqtt]\nmax_queued_messages = 10\n");
    offline_subscriber(&broker);
    let mut publisher = Client::new(&broker, Version::V3_1_1, "publisher");
    for n in 0..25 {
        publisher.publish(Publish::new("q", n.to_string().as_bytes(), 1));
    }
    assert_eq!(drain_offline(&broker), numbers(0..10));
    broker.wait_for_log("offline queue full", Duration::from_secs(5));
}

/// Over `[store] max_size_mb` offline queues take nothing new until the store is under it; what
/// they took before is kept and delivered in order.
#[test]
fn a_store_over_max_size_mb_stops_offline_queues_growing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), "max_size_mb = 1\n");
    offline_subscriber(&broker);
    let mut publisher = Client::new(&broker, Version::V3_1_1, "publisher");
    let filler = vec![b'x'; 1024];
    for n in 0..1500u32 {
        let mut payload = n.to_string().into_bytes();
        payload.push(b':');
        payload.extend_from_slice(&filler);
        publisher.publish(Publish::new("q", &payload, 1));
    }
    broker.wait_for_log("store over [store] max_size_mb", Duration::from_secs(15));
    for n in 0..5 {
        publisher.publish(Publish::new("q", format!("late {n}").as_bytes(), 1));
    }
    let got = drain_offline(&broker);
    let kept: Vec<String> =
        got.iter().map(|p| String::from_utf8_lossy(p).split(':').next().unwrap_or_default().to_owned()).collect();
    let store_log: Vec<String> = broker.log().into_iter().filter(|line| line.contains("store")).collect();
    let late: Vec<&String> = kept.iter().filter(|p| p.starts_with("late")).collect();
    assert!(late.is_empty(), "taken while the store was full: {late:?}; the broker's log:\n{}", store_log.join("\n"));
    let expected: Vec<String> = (0..kept.len() as u32).map(|n| n.to_string()).collect();
    assert_eq!(kept, expected, "what was taken before arrives whole and in order");
    assert!(kept.len() >= 600, "the store filled before the bound: only {} taken", kept.len());
}
