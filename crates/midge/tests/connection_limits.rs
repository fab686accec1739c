//! Issue 13's server-side limits over real sockets (docs/limits.md): the broker-wide connection
//! limit and the per-address connection rate close a socket at accept, a client over its
//! inbound rate is paced (slowed, never disconnected), a paced client's keep alive does not run
//! out while the broker does not read it, and a client closed with a reason reads that reason
//! even while it keeps sending. These configure midge, so they are skipped against mosquitto.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::TestBroker;
use wire::{build, Client, Connect, Event, Packet, Publish, Version, WAIT};

/// A midge broker with `extra` config, or `None` against another target.
fn midge(extra: &str) -> Option<TestBroker> {
    if wire::not_midge() {
        return None;
    }
    Some(TestBroker::start_midge_with(extra))
}

/// Whether the broker closes a freshly accepted socket without a byte: the client sends a
/// CONNECT and reads EOF (or a reset), not a CONNACK.
fn closed_at_accept(broker: &TestBroker, client_id: &str) -> bool {
    let mut stream = TcpStream::connect(broker.addr).expect("connect");
    let _ = stream.write_all(&Connect::new(Version::V5, client_id).encode());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => true,
        Err(e) => panic!("no answer and no close within {WAIT:?}: {e}"),
    }
}

#[test]
fn the_broker_wide_connection_limit_closes_the_next_socket_at_accept() {
    let Some(broker) = midge("[connections]\nmax_connections = 3\n") else { return };
    let clients: Vec<Client> = (0..3).map(|i| Client::new(&broker, Version::V5, &format!("in-{i}"))).collect();
    assert!(closed_at_accept(&broker, "one-too-many"));
    broker.wait_for_log("limit reached: max_connections", WAIT);
    // A place is given back when a connection ends.
    let mut clients = clients.into_iter();
    clients.next().unwrap().disconnect();
    let deadline = Instant::now() + WAIT;
    while closed_at_accept(&broker, "next") {
        assert!(Instant::now() < deadline, "the freed place was not given back");
    }
}

#[test]
fn the_connection_rate_per_address_closes_a_flood_and_lets_the_client_in_at_its_rate() {
    let Some(broker) = midge("[connections]\nmax_connection_rate = 5\n") else { return };
    // A burst of one second's worth gets in; the flood after it is closed at accept.
    let admitted: Vec<Client> = (0..5).map(|i| Client::new(&broker, Version::V5, &format!("burst-{i}"))).collect();
    let refused = (0..20).filter(|i| closed_at_accept(&broker, &format!("flood-{i}"))).count();
    assert!(refused >= 15, "only {refused} of 20 refused");
    broker.wait_for_log("limit reached: max_connection_rate", WAIT);
    // A client that keeps trying gets in once its address has tokens again (5 a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed_at_accept(&broker, "patient") {
        assert!(Instant::now() < deadline, "never let in again");
    }
    // Connections already in are not touched.
    for mut client in admitted {
        client.ping();
    }
}

/// A publisher over `max_inbound_messages_per_second` is paced: every message arrives, nothing
/// is refused, it is never disconnected, and it takes about as long as its rate allows.
#[test]
fn a_client_over_its_inbound_rate_is_paced_not_disconnected() {
    const RATE: usize = 200;
    const MESSAGES: usize = 800;
    let Some(broker) = midge(&format!("[mqtt]\nmax_inbound_messages_per_second = {RATE}\n")) else { return };
    let mut subscriber = Client::new(&broker, Version::V5, "reader");
    assert_eq!(subscriber.subscribe("rate/t", 0), 0);
    let mut publisher = Client::new(&broker, Version::V5, "eager");
    let started = Instant::now();
    let mut burst = Vec::new();
    for n in 0..MESSAGES {
        burst.extend(Publish::new("rate/t", format!("{n}").as_bytes(), 0).encode(Version::V5));
    }
    publisher.send(&burst);
    let mut received = 0;
    while received < MESSAGES {
        match subscriber.next(Duration::from_secs(10)) {
            Event::Packet(Packet::Publish(p)) => {
                assert_eq!(p.payload, format!("{received}").as_bytes(), "in order, none lost");
                received += 1;
            }
            other => panic!("subscriber: {other:?} after {received}"),
        }
    }
    let took = started.elapsed();
    // One second's burst, then RATE a second: at least (800 - 200) / 200 = 3 s less slack.
    assert!(took >= Duration::from_millis(2500), "not paced: {took:?}");
    publisher.ping(); // still connected, and read again
    broker.wait_for_log("limit reached: max_inbound_messages_per_second", WAIT);
}

/// A publisher paced for a stalled subscriber is not read meanwhile, so its PINGREQs are not
/// either: its keep alive must not run out for what is the broker's doing (MQTT-3.1.2-24 is
/// about a client that is silent, and this one is not).
#[test]
fn a_paced_publishers_keep_alive_does_not_run_out_while_it_is_not_read() {
    let Some(broker) =
        midge("[mqtt]\nmax_queued_messages = 10\nslow_consumer_timeout_ms = 60000\n\n[store]\npersistence = false\n")
    else {
        return;
    };
    let mut subscriber = Client::new(&broker, Version::V5, "stalled");
    assert_eq!(subscriber.subscribe("ka/t", 1), 1);
    let (mut publisher, connack) = Client::connect(&broker, &Connect::new(Version::V5, "paced").keep_alive(1));
    assert_eq!(connack.code, 0);
    let mut burst = Vec::new();
    for n in 1..=200u16 {
        burst.extend(Publish::new("ka/t", format!("{n}").as_bytes(), 1).id(n).encode(Version::V5));
    }
    publisher.send(&burst);
    // Paced for 4 keep alives (the broker closes a client silent for 1.5), while the client
    // does what a client should: it sends a PINGREQ every half second.
    let paced_until = Instant::now() + Duration::from_secs(4);
    let mut acked = 0;
    while Instant::now() < paced_until {
        publisher.send(&build::pingreq());
        match publisher.next(Duration::from_millis(500)) {
            Event::Packet(Packet::Puback(_)) => acked += 1,
            Event::Packet(Packet::Pingresp) | Event::Silent => {}
            other => panic!("the paced publisher was not kept: {other:?} after {acked} PUBACKs"),
        }
    }
    assert!(acked < 200, "the publisher was never paced");
    // The subscriber catches up; the publisher gets every PUBACK.
    let mut received = 0;
    while received < 200 {
        match subscriber.next(Duration::from_secs(10)) {
            Event::Packet(Packet::Publish(p)) => {
                subscriber.send(&build::ack(build::PUBACK, Version::V5, p.id, 0));
                received += 1;
            }
            other => panic!("subscriber: {other:?} after {received}"),
        }
    }
    while acked < 200 {
        match publisher.next(Duration::from_secs(10)) {
            Event::Packet(Packet::Puback(_)) => acked += 1,
            Event::Packet(Packet::Pingresp) => {}
            other => panic!("publisher: {other:?} after {acked} PUBACKs"),
        }
    }
}

/// A client that breaks the protocol while it is still sending reads the DISCONNECT that says
/// why (MQTT-4.13.1-1: the reason code is sent before the close) instead of its writes failing
/// with a broken pipe or a reset, which makes clients such as Paho abort before they read it:
/// the broker closes gracefully, discarding what the client still sends for a bounded time.
#[test]
fn a_client_that_keeps_sending_after_its_violation_still_reads_the_reason() {
    let Some(broker) = midge("[mqtt]\nreceive_maximum = 2\n") else { return };
    let mut stream = TcpStream::connect(broker.addr).expect("connect");
    stream.write_all(&Connect::new(Version::V5, "greedy").encode()).unwrap();
    // Three QoS 2 PUBLISHes without PUBREL break Receive Maximum 2 (0x93, MQTT-3.3.4-8).
    let mut violation = Vec::new();
    for n in 1..=3u16 {
        violation.extend(Publish::new("rm/t", b"x", 2).id(n).encode(Version::V5));
    }
    stream.write_all(&violation).unwrap();
    // The client keeps sending for half a second without reading, as a client that does not
    // wait for acknowledgements does: every write must go through.
    let filler = Publish::new("rm/t", &[0u8; 1000], 0).encode(Version::V5);
    let until = Instant::now() + Duration::from_millis(500);
    let mut sent = 0usize;
    while Instant::now() < until {
        if let Err(e) = stream.write_all(&filler) {
            panic!("a write failed after {sent} bytes, before the client could read why: {e}");
        }
        sent += filler.len();
    }
    // Then it reads: CONNACK, two PUBRECs, and the DISCONNECT with its reason.
    let mut client = Client::from_stream(stream, Version::V5);
    let reason = loop {
        match client.next(WAIT) {
            Event::Packet(Packet::Connack(_) | Packet::Pubrec(_)) => {}
            Event::Packet(Packet::Disconnect(d)) => break d.reason,
            other => panic!("expected DISCONNECT 0x93, got {other:?}"),
        }
    };
    assert_eq!(reason, 0x93, "Receive Maximum exceeded");
}
