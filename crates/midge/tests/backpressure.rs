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
