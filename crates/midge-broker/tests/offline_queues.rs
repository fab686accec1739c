//! Offline queues in the store (decision 0006), without sockets, on a store in memory: an
//! offline persistent session's queue is written there and read back in batches, in order, when
//! its client returns; the offline bounds and their policy; what ending the session releases.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::*;
use midge_broker::{CloseKind, Limits, READ_BACK_BATCH};
use midge_codec::{Packet, Properties, PubResponse, QoS, ReasonCode};

/// A persistent subscriber to `q` at `qos`, gone offline.
fn offline_subscriber(world: &World, qos: QoS) {
    let mut subscriber = world.client(persistent(V5, "s"));
    subscriber.subscribe(vec![sub("q", qos)], Properties::default(), world.now);
    subscriber.close(CloseKind::Abnormal, world.now);
}

/// Publishes `0..count` (as text) to `q` at `qos`, starting at `first`.
fn publish_numbers(world: &World, range: std::ops::Range<usize>, qos: QoS) {
    let mut publisher = world.client(connect(V5, "p"));
    for n in range {
        let ack = publisher.publish(publish("q", &n.to_string(), qos, false), world.now);
        if let (QoS::ExactlyOnce, Some(rec)) = (qos, ack) {
            publisher.send(Packet::PubRel(rec), world.now).unwrap();
            assert!(matches!(publisher.recv(world.now), Some(Packet::PubComp(_))));
        }
    }
    publisher.close(CloseKind::Normal, world.now);
}

/// Receives until `count` PUBLISHes have arrived, acknowledging each QoS 1 one as it comes, as
/// a client draining its backlog does; panics if the broker stops sending before.
fn receive_acking(client: &mut Client, world: &World, count: usize) -> Vec<midge_codec::Publish> {
    let mut got = Vec::new();
    while got.len() < count {
        let batch = client.publishes(world.now);
        assert!(!batch.is_empty(), "the broker stopped after {} of {count} messages", got.len());
        for publish in &batch {
            if let Some(packet_id) = publish.packet_id {
                let ack = PubResponse { packet_id, reason: ReasonCode::SUCCESS, properties: Properties::default() };
                client.send(Packet::PubAck(ack), world.now).unwrap();
            }
        }
        got.extend(batch);
    }
    got
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| n.to_string()).collect()
}

/// The loss: 3,000 acknowledged messages to an offline subscriber, three times the
/// default `max_queued_messages`, all kept in the store and delivered in order when it returns
/// (MQTT-4.6.0-6 keeps a topic's order per QoS; MQTT-3.1.2-5 keeps the session's messages). Once
/// acknowledged, nothing of them is left in the store.
#[test]
fn an_offline_queue_beyond_max_queued_messages_is_kept_in_the_store_and_read_back_in_order() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::AtLeastOnce);
    let count = 3 * Limits::default().max_queued_messages;
    assert!(count > 4 * READ_BACK_BATCH, "several batches are read back");
    publish_numbers(&world, 0..count, QoS::AtLeastOnce);
    assert_eq!(store.delivery_count("s"), count, "every delivery is in the store");
    assert_eq!(world.broker.stats().messages_dropped.get(), 0);

    let (mut back, connack) = world.connect(persistent(V5, "s")).unwrap();
    assert!(connack.session_present);
    let got = receive_acking(&mut back, &world, count);
    assert_eq!(payloads(&got), numbers(0..count));
    assert!(got.iter().all(|p| !p.dup), "none was sent before: DUP 0 (MQTT-3.3.1-1)");
    assert!(back.publishes(world.now).is_empty(), "nothing twice");
    assert_eq!(store.delivery_count("s"), 0, "acknowledged deliveries are deleted");
    assert_eq!(store.message_count(), 0, "and their messages");
}

/// Beyond `max_offline_messages` new messages are dropped (the policy is mosquitto's: keep the
/// oldest) and counted; the kept ones arrive. `max_offline_bytes` bounds payload bytes alike.
#[test]
fn the_offline_bounds_drop_new_messages_and_count_them() {
    for (limits, kept) in [
        (Limits { max_offline_messages: 5, ..Limits::default() }, 5),
        // Payloads "0".."9" are one byte each, "10".. two: 10 + 2 × 3 = 16 bytes fit.
        (Limits { max_offline_bytes: 16, ..Limits::default() }, 13),
    ] {
        let store = Arc::new(MemoryDurability::default());
        let world = World::with_queues_in(&store, limits.clone());
        offline_subscriber(&world, QoS::AtLeastOnce);
        publish_numbers(&world, 0..20, QoS::AtLeastOnce);
        assert_eq!(store.delivery_count("s"), kept, "{limits:?}");
        assert_eq!(world.broker.stats().messages_dropped.get(), (20 - kept) as u64);

        let (mut back, _) = world.connect(persistent(V5, "s")).unwrap();
        let got = receive_acking(&mut back, &world, kept);
        assert_eq!(payloads(&got), numbers(0..kept), "{limits:?}");
        assert!(back.publishes(world.now).is_empty());
    }
}

/// Messages that arrive while a returning client is still reading its backlog go after it:
/// they are written behind it in the store, not queued in memory ahead of it (MQTT-4.6.0-6).
#[test]
fn messages_arriving_while_the_backlog_is_read_back_come_after_it() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::AtLeastOnce);
    let backlog = READ_BACK_BATCH * 2 + 10;
    publish_numbers(&world, 0..backlog, QoS::AtLeastOnce);

    let (mut back, _) = world.connect(persistent(V5, "s")).unwrap();
    let mut got = receive_acking(&mut back, &world, 30);
    publish_numbers(&world, backlog..backlog + 40, QoS::AtLeastOnce);
    let rest = backlog + 40 - got.len();
    got.extend(receive_acking(&mut back, &world, rest));
    assert_eq!(payloads(&got), numbers(0..backlog + 40));

    // Caught up: the session is in memory again, and a new message is delivered at once.
    publish_numbers(&world, 0..1, QoS::AtLeastOnce);
    assert_eq!(payloads(&back.publishes(world.now)), ["0"]);
}

/// A clean start ends the offline session: its deliveries and the messages only they referred
/// to leave the store, without reading the queue back (MQTT-3.1.2-4).
#[test]
fn ending_an_offline_session_releases_its_stored_messages() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::ExactlyOnce);
    // A second session keeps half the messages: they stay stored.
    let mut other = world.client(persistent(V5, "other"));
    other.subscribe(vec![sub("q/keep", QoS::AtLeastOnce)], Properties::default(), world.now);
    other.close(CloseKind::Abnormal, world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for n in 0..50 {
        let topic = if n % 2 == 0 { "q" } else { "q/keep" };
        publisher.publish(publish(topic, &n.to_string(), QoS::AtLeastOnce, false), world.now);
    }
    let mut sub_both = world.client(persistent(V5, "s2"));
    sub_both.subscribe(vec![sub("q/keep", QoS::AtLeastOnce)], Properties::default(), world.now);
    sub_both.close(CloseKind::Abnormal, world.now);
    publisher.publish(publish("q/keep", "shared", QoS::AtLeastOnce, false), world.now);
    assert_eq!(store.message_count(), 51);

    let mut fresh = connect(V5, "s");
    fresh.clean_start = true;
    let (_, connack) = world.connect(fresh).unwrap();
    assert!(!connack.session_present);
    assert_eq!(store.delivery_count("s"), 0);
    assert_eq!(store.message_count(), 26, "the 25 messages of the ended session went; the others stay");

    let mut fresh = connect(V5, "other");
    fresh.clean_start = true;
    world.connect(fresh).unwrap();
    assert_eq!(store.message_count(), 1, "the message s2 still holds stays");
}

/// After a restart the queue stays in the store until the client returns, then arrives whole
/// and in order; messages that may have been sent before the restart carry DUP.
#[test]
fn a_restart_leaves_the_offline_queue_in_the_store_until_its_client_returns() {
    let store = Arc::new(MemoryDurability::default());
    let count = READ_BACK_BATCH * 3;
    {
        let world = World::with_queues_in(&store, Limits::default());
        offline_subscriber(&world, QoS::ExactlyOnce);
        publish_numbers(&world, 0..count, QoS::ExactlyOnce);
    }
    let store = Arc::new(store.reopened());
    let world = World::with_queues_in(&store, Limits::default());
    let (mut back, connack) = world.connect(persistent(V5, "s")).unwrap();
    assert!(connack.session_present);
    let mut got = Vec::new();
    while got.len() < count {
        let batch = back.publishes(world.now);
        assert!(!batch.is_empty(), "stopped after {}", got.len());
        for publish in &batch {
            let packet_id = publish.packet_id.expect("QoS 2");
            let rec = PubResponse { packet_id, reason: ReasonCode::SUCCESS, properties: Properties::default() };
            back.send(Packet::PubRec(rec.clone()), world.now).unwrap();
            let rel = back.recv(world.now);
            assert!(matches!(rel, Some(Packet::PubRel(_))), "PUBREL, got {rel:?}");
            back.send(Packet::PubComp(rec), world.now).unwrap();
        }
        got.extend(batch);
    }
    assert_eq!(payloads(&got), numbers(0..count), "exactly once, in order (MQTT-4.3.3)");
    assert!(back.publishes(world.now).is_empty());
    assert_eq!((store.delivery_count("s"), store.message_count()), (0, 0));
}

/// QoS 0 is kept offline only with `queue_qos0_messages`, as in mosquitto; kept, it is stored
/// and read back like the rest.
#[test]
fn offline_qos0_is_stored_only_with_queue_qos0_messages() {
    for queue_qos0_messages in [false, true] {
        let store = Arc::new(MemoryDurability::default());
        let world = World::with_queues_in(&store, Limits { queue_qos0_messages, ..Limits::default() });
        offline_subscriber(&world, QoS::AtMostOnce);
        publish_numbers(&world, 0..300, QoS::AtMostOnce);
        let kept = if queue_qos0_messages { 300 } else { 0 };
        assert_eq!(store.delivery_count("s"), kept);
        let (mut back, _) = world.connect(persistent(V5, "s")).unwrap();
        let mut got = Vec::new();
        loop {
            let batch = back.publishes(world.now);
            if batch.is_empty() {
                break;
            }
            got.extend(batch);
        }
        assert_eq!(payloads(&got), numbers(0..kept));
        assert_eq!(store.delivery_count("s"), 0, "QoS 0 deliveries are deleted as they are sent");
    }
}

/// A message that expired while its client was away is never sent (MQTT-3.3.2-5), and its
/// payload leaves the store when it expires, with no queue read (the journal's expiry index);
/// a delivery whose message record is gone is skipped when read back. Both deliveries leave the
/// store, counted as dropped.
#[test]
fn expired_and_missing_messages_are_skipped_when_read_back() {
    let store = Arc::new(MemoryDurability::default());
    let mut world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::AtLeastOnce);
    let mut publisher = world.client(connect(V5, "p"));
    let mut short = publish("q", "expires", QoS::AtLeastOnce, false);
    short.properties.message_expiry_interval = Some(10);
    publisher.publish(short, world.now);
    publisher.publish(publish("q", "vanishes", QoS::AtLeastOnce, false), world.now);
    publisher.publish(publish("q", "kept", QoS::AtLeastOnce, false), world.now);
    let ids = store.message_ids();
    store.forget_message(ids[1]);
    world.advance(Duration::from_secs(9));
    assert_eq!(store.message_count(), 2, "not yet due");
    world.advance(Duration::from_secs(2));
    assert_eq!(store.message_ids(), [ids[2]], "the expired payload is deleted at its expiry");
    assert_eq!(store.delivery_count("s"), 3, "its delivery goes when it is read back");

    let (mut back, _) = world.connect(persistent(V5, "s")).unwrap();
    let got = receive_acking(&mut back, &world, 1);
    assert_eq!(payloads(&got), ["kept"]);
    assert_eq!(world.broker.stats().messages_dropped.get(), 2);
    assert_eq!(store.delivery_count("s"), 0);
}

/// While the store is over its size bound offline queues take nothing new (dropped, counted);
/// once it is back under, they take messages again.
#[test]
fn a_full_store_stops_offline_queues_until_it_is_not() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::AtLeastOnce);
    publish_numbers(&world, 0..3, QoS::AtLeastOnce);
    assert!(!world.broker.set_store_full(true));
    publish_numbers(&world, 3..6, QoS::AtLeastOnce);
    assert!(world.broker.set_store_full(false));
    publish_numbers(&world, 6..9, QoS::AtLeastOnce);
    assert_eq!(world.broker.stats().messages_dropped.get(), 3);
    let (mut back, _) = world.connect(persistent(V5, "s")).unwrap();
    let got = receive_acking(&mut back, &world, 6);
    assert_eq!(payloads(&got), ["0", "1", "2", "6", "7", "8"]);
}

/// A connection that takes the session over while the one before was reading a batch back
/// reads it again; the batch read for the one before is not appended (nothing twice, nothing
/// lost; MQTT-3.1.4-2 gives the session to the new connection).
#[test]
fn a_takeover_during_a_read_back_voids_the_old_read() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_queues_in(&store, Limits::default());
    offline_subscriber(&world, QoS::AtLeastOnce);
    publish_numbers(&world, 0..300, QoS::AtLeastOnce);
    let (mut first, _) = world.connect(persistent(V5, "s")).unwrap();
    let pending = first.connection.as_ref().unwrap().read_back().expect("a batch to read");
    let (mut second, connack) = world.connect(persistent(V5, "s")).unwrap();
    assert!(connack.session_present);
    let got = receive_acking(&mut second, &world, 300);
    assert_eq!(payloads(&got), numbers(0..300));
    let late = pending.read();
    assert_eq!(first.connection.as_mut().unwrap().append_read_back(late).unwrap(), 0, "void");
    assert!(second.publishes(world.now).is_empty(), "nothing twice");
}
