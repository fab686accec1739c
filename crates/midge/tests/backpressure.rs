//! A connected subscriber that falls behind paces its publishers instead of losing their
//! messages: acknowledged QoS 1 ones (DESIGN.md, "Bounds and back-pressure"; decision 0003) and,
//! while it keeps consuming, QoS 0 ones too (decision 0005). A slow subscriber holds up its
//! publisher's other subscribers for no longer than `slow_consumer_timeout_ms`.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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

/// A numbered payload of `size` bytes: the number, then padding.
fn numbered(n: u32, size: usize) -> Vec<u8> {
    let mut payload = format!("{n:010}").into_bytes();
    payload.resize(size, b'.');
    payload
}

/// The number a [`numbered`] payload carries.
fn number(payload: &[u8]) -> u32 {
    std::str::from_utf8(&payload[..10]).unwrap().parse().unwrap()
}

/// Sends `count` numbered QoS 0 messages of `size` bytes to `topic` in one write from a new
/// client, on a thread that returns the client (kept open) once the broker has taken them all.
fn qos0_burst(broker: &TestBroker, topic: &'static str, count: u32, size: usize) -> std::thread::JoinHandle<Client> {
    let mut publisher = Client::new(broker, Version::V3_1_1, &format!("burst-{topic}"));
    std::thread::spawn(move || {
        let mut burst = Vec::new();
        for n in 0..count {
            burst.extend(Publish::new(topic, &numbered(n, size), 0).encode(Version::V3_1_1));
        }
        publisher.send(&burst);
        publisher
    })
}

/// A subscriber that keeps consuming, slower than its publisher, receives every QoS 0 message
/// of a burst 400 times its queue bound, in order: the broker stops reading the publisher while
/// the subscriber's queue is full instead of dropping what it read (`pace_qos0`, on by default;
/// with `pace_qos0 = false` this subscriber loses most of the burst).
#[test]
fn consuming_qos0_subscriber_loses_nothing_to_a_faster_publisher() {
    const BURST: u32 = 40_000;
    let broker = TestBroker::start_midge_with("[mqtt]\nmax_queued_messages = 100\n\n[store]\npersistence = false\n");
    let mut subscriber = Client::new(&broker, Version::V3_1_1, "consumer");
    assert_eq!(subscriber.subscribe("q0/t", 0), 0);
    let publishing = qos0_burst(&broker, "q0/t", BURST, 64);
    // The subscriber's own pace, not a wait for anything: it reads 4 KiB at a time and pauses
    // a millisecond every 256 messages, so it consumes all along but slower than the broker
    // reads the burst.
    subscriber.read_chunk = 4096;
    for n in 0..BURST {
        match subscriber.next(Duration::from_secs(30)) {
            Event::Packet(Packet::Publish(p)) => {
                assert_eq!(number(&p.payload), n, "every message, in order (message {n} missing)")
            }
            other => panic!("subscriber: {other:?} after {n} of {BURST} messages"),
        }
        if n % 256 == 255 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    publishing.join().expect("publisher");
}

/// One slow subscriber among fast ones holds them up for no longer than the slow-consumer
/// timeout: once the publisher has been held up that long for it while the fast one sat idle,
/// the policy applies to it (here `drop`: what does not fit its queue is dropped) and the
/// publisher goes on at its own rate. Without the rule the fast one would get the stream at
/// the slow one's pace, never more than a queue ahead of it.
///
/// The slow subscriber is slow at the MQTT level, where its pace is exact: it takes QoS 1 and
/// acknowledges one message a millisecond, so its queue moves all along (the rule for a
/// subscriber that takes nothing does not apply). The publisher sends 5,000 msg/s, well
/// within what even a debug build of the broker delivers, so the fast subscriber (QoS 0,
/// counting bytes rather than parsing packets) is idle between messages.
#[test]
fn slow_subscriber_holds_up_the_others_no_longer_than_the_timeout() {
    const MESSAGES: u16 = 40_000;
    const PER_TICK: u16 = 50;
    const TOPIC: &str = "mixed/t";
    let broker =
        TestBroker::start_midge_with("[mqtt]\nslow_consumer_timeout_ms = 2000\n\n[store]\npersistence = false\n");
    let mut slow = Client::new(&broker, Version::V3_1_1, "slow");
    assert_eq!(slow.subscribe(TOPIC, 1), 1);
    let mut fast = Client::new(&broker, Version::V3_1_1, "fast");
    assert_eq!(fast.subscribe(TOPIC, 0), 0);
    // What the fast subscriber gets: QoS 0 copies, all of one length.
    let packet_len = Publish::new(TOPIC, &numbered(0, 64), 0).encode(Version::V3_1_1).len();
    let total = u64::from(MESSAGES) * packet_len as u64;
    let slow_received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let slow_reader = {
        let (received, done) = (Arc::clone(&slow_received), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                match slow.next(Duration::from_millis(100)) {
                    Event::Packet(Packet::Publish(p)) => {
                        // Its own pace: a millisecond per message.
                        std::thread::sleep(Duration::from_millis(1));
                        slow.send(&build::ack(build::PUBACK, Version::V3_1_1, p.id, 0));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Silent => {}
                    other => panic!("slow subscriber: {other:?}"),
                }
            }
        })
    };
    let mut publisher = Client::new(&broker, Version::V3_1_1, "steady");
    let publishing = std::thread::spawn(move || {
        // The publisher's own rate: 50 QoS 1 messages every 10 ms (its PUBACKs left unread).
        for tick in 0..MESSAGES / PER_TICK {
            let mut batch = Vec::new();
            for n in tick * PER_TICK..(tick + 1) * PER_TICK {
                let mut publish = Publish::new(TOPIC, &numbered(u32::from(n), 64), 1);
                publish.id = n + 1;
                batch.extend(publish.encode(Version::V3_1_1));
            }
            publisher.send(&batch);
            std::thread::sleep(Duration::from_millis(10));
        }
        publisher
    });
    // 8 s at the publisher's rate; 40 s at the slow subscriber's.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut fast_bytes = 0u64;
    while fast_bytes < total {
        assert!(
            std::time::Instant::now() < deadline,
            "the fast subscriber is held to the slow one's pace: {fast_bytes} of {total} bytes after 30 s"
        );
        fast_bytes += fast.read_raw(64 * 1024, Duration::from_secs(1)) as u64;
    }
    assert_eq!(fast_bytes, total, "the fast subscriber gets every message");
    let slow_got = slow_received.load(Ordering::Relaxed);
    assert!(
        slow_got < u64::from(MESSAGES) / 2,
        "the fast subscriber had all {MESSAGES} when the slow one had {slow_got}"
    );
    broker.wait_for_log("while other subscribers waited", Duration::from_secs(10));
    done.store(true, Ordering::Relaxed);
    slow_reader.join().expect("slow subscriber");
    publishing.join().expect("publisher");
}

/// A paced publisher costs the others nothing: while one publisher waits for a stuck
/// subscriber (its timeout far away), another publisher's burst reaches its own subscriber in
/// full. Pacing parks the publisher's task; it never holds a worker thread.
#[test]
fn a_paced_publisher_does_not_delay_unrelated_ones() {
    const BURST: u32 = 20_000;
    let broker = TestBroker::start_midge_with(
        "[mqtt]\nmax_queued_messages = 100\nslow_consumer_timeout_ms = 600000\n\n[store]\npersistence = false\n",
    );
    let mut stuck = Client::new(&broker, Version::V3_1_1, "stuck");
    assert_eq!(stuck.subscribe("stuck/t", 0), 0);
    let mut reader = Client::new(&broker, Version::V3_1_1, "reader");
    assert_eq!(reader.subscribe("free/t", 0), 0);
    // Far more than the stuck subscriber's queue and socket buffers hold: its publisher is
    // paced for the rest of the test.
    let _paced = qos0_burst(&broker, "stuck/t", BURST, 1024);
    let free = qos0_burst(&broker, "free/t", BURST, 64);
    for n in 0..BURST {
        match reader.next(Duration::from_secs(30)) {
            Event::Packet(Packet::Publish(p)) => assert_eq!(number(&p.payload), n),
            other => panic!("reader: {other:?} after {n} of {BURST} messages"),
        }
    }
    free.join().expect("unrelated publisher");
    drop(stuck);
}
