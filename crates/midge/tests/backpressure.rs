//! A connected subscriber that falls behind paces its publishers instead of losing their
//! acknowledged QoS 1 messages (DESIGN.md, "Bounds and back-pressure").

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::time::Duration;

use support::TestBroker;
use wire::{build, Client, Event, Packet, Publish, Version};

const MESSAGES: u16 = 500;

#[test]
fn stalled_subscriber_paces_publisher_and_loses_no_acknowledged_qos1_message() {
    let broker = TestBroker::start_midge_with("[mqtt]\nmax_queued_messages = 20\n\n[store]\npersistence = false\n");
    let mut subscriber = Client::new(&broker, Version::V3_1_1, "stalled");
    assert_eq!(subscriber.subscribe("bp/t", 1), 1);

    // The publisher sends everything at once and then collects PUBACKs, while the subscriber
    // reads nothing: the broker must stop reading the publisher rather than drop.
    let mut publisher = Client::new(&broker, Version::V5, "fast");
    let (progress, acks) = std::sync::mpsc::channel();
    let publishing = std::thread::spawn(move || {
        let mut burst = Vec::new();
        for n in 1..=MESSAGES {
            let mut publish = Publish::new("bp/t", format!("{n}").as_bytes(), 1);
            publish.id = n;
            burst.extend(publish.encode(Version::V5));
        }
        publisher.send(&burst);
        let mut acked = 0;
        while acked < MESSAGES {
            match publisher.next(Duration::from_secs(30)) {
                Event::Packet(Packet::Puback(ack)) => {
                    assert!(ack.reason < 0x80, "PUBACK {ack:?}");
                    acked += 1;
                    let _ = progress.send(acked);
                }
                other => panic!("publisher: {other:?} after {acked} PUBACKs"),
            }
        }
    });

    // The subscriber reads nothing until 30 messages are acknowledged: by then its window (20)
    // is in flight and its queue (bound 20) is filling, so what follows must be paced.
    loop {
        let acked = acks.recv_timeout(Duration::from_secs(30)).expect("the publisher got no PUBACKs");
        if acked >= 30 {
            break;
        }
    }
    // Only now does the subscriber read, acknowledging as it goes.
    let mut received = Vec::new();
    while received.len() < usize::from(MESSAGES) {
        match subscriber.next(Duration::from_secs(30)) {
            Event::Packet(Packet::Publish(p)) => {
                subscriber.send(&build::ack(build::PUBACK, Version::V3_1_1, p.id, 0));
                received.push(String::from_utf8(p.payload).unwrap().parse::<u16>().unwrap());
            }
            other => panic!("subscriber: {other:?} after {} messages", received.len()),
        }
    }
    publishing.join().expect("publisher");
    let expected: Vec<u16> = (1..=MESSAGES).collect();
    assert_eq!(received, expected, "every acknowledged message, in order");
}

/// A subscriber that keeps consuming is not a slow consumer, however long one publisher among
/// many waits for room: the slow-consumer timeout counts only while the subscriber makes no
/// progress, so no acknowledged message is shed.
#[test]
fn contended_but_consuming_subscriber_is_never_shed() {
    const PUBLISHERS: u16 = 6;
    const EACH: u16 = 1500;
    let broker = TestBroker::start_midge_with(
        "[mqtt]\nmax_queued_messages = 10\nslow_consumer_timeout_ms = 20\n\n[store]\npersistence = false\n",
    );
    let mut subscriber = Client::new(&broker, Version::V3_1_1, "busy");
    assert_eq!(subscriber.subscribe("fair/#", 1), 1);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let mut publisher = Client::new(&broker, Version::V3_1_1, &format!("pub{p}"));
            std::thread::spawn(move || {
                let mut burst = Vec::new();
                for n in 1..=EACH {
                    let mut publish = Publish::new(&format!("fair/{p}"), format!("{p}:{n}").as_bytes(), 1);
                    publish.id = n;
                    burst.extend(publish.encode(Version::V3_1_1));
                }
                publisher.send(&burst);
                for _ in 0..EACH {
                    match publisher.next(Duration::from_secs(30)) {
                        Event::Packet(Packet::Puback(_)) => {}
                        other => panic!("publisher {p}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut received = 0u32;
    while received < u32::from(PUBLISHERS) * u32::from(EACH) {
        match subscriber.next(Duration::from_secs(30)) {
            Event::Packet(Packet::Publish(p)) => {
                subscriber.send(&build::ack(build::PUBACK, Version::V3_1_1, p.id, 0));
                received += 1;
            }
            other => panic!("subscriber: {other:?} after {received} messages"),
        }
    }
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
}

/// Publishes `count` QoS 1 messages at once from a new client and returns a thread that collects
/// their PUBACKs (panicking if they do not all come within 30 s).
fn flood(broker: &TestBroker, topic: &'static str, count: u16) -> std::thread::JoinHandle<()> {
    let mut publisher = Client::new(broker, Version::V5, "flooder");
    std::thread::spawn(move || {
        let mut burst = Vec::new();
        for n in 1..=count {
            let mut publish = Publish::new(topic, format!("{n}").as_bytes(), 1);
            publish.id = n;
            burst.extend(publish.encode(Version::V5));
        }
        publisher.send(&burst);
        for acked in 0..count {
            match publisher.next(Duration::from_secs(30)) {
                Event::Packet(Packet::Puback(_)) => {}
                other => panic!("publisher: {other:?} after {acked} PUBACKs"),
            }
        }
    })
}

/// `slow_consumer_policy = "disconnect"`: a subscriber that takes nothing from its full queue for
/// `slow_consumer_timeout_ms` is disconnected with 0x97 (Quota exceeded), and its publisher goes
/// on.
#[test]
fn stuck_subscriber_is_disconnected_under_the_disconnect_policy() {
    let broker = TestBroker::start_midge_with(
        "[mqtt]\nmax_queued_messages = 20\nslow_consumer_timeout_ms = 100\nslow_consumer_policy = \"disconnect\"\n\n\
         [store]\npersistence = false\n",
    );
    let mut subscriber = Client::new(&broker, Version::V5, "stuck");
    assert_eq!(subscriber.subscribe("stuck/t", 1), 1);
    let publishing = flood(&broker, "stuck/t", 300);
    // The subscriber reads but never acknowledges: its window stays full, its queue never moves.
    loop {
        match subscriber.next(Duration::from_secs(30)) {
            Event::Packet(Packet::Publish(_)) => {}
            Event::Packet(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, 0x97, "{d:?}");
                break;
            }
            other => panic!("expected DISCONNECT 0x97, got {other:?}"),
        }
    }
    publishing.join().expect("the publisher was released");
}

/// `slow_consumer_policy = "drop"` (the default): after the timeout the publisher is no longer
/// paced; what does not fit the stuck subscriber's queue is dropped and counted.
#[test]
fn stuck_subscriber_releases_its_publisher_under_the_drop_policy() {
    let broker = TestBroker::start_midge_with(
        "[mqtt]\nmax_queued_messages = 20\nslow_consumer_timeout_ms = 100\n\n[store]\npersistence = false\n",
    );
    let mut subscriber = Client::new(&broker, Version::V5, "stuck");
    assert_eq!(subscriber.subscribe("drop/t", 1), 1);
    flood(&broker, "drop/t", 300).join().expect("every PUBACK arrives although nobody consumes");
    broker.wait_for_log("slow consumer", Duration::from_secs(10));
}
