//! The broker's use of the durability port, without sockets, on a store in memory: what is
//! written, what waits for it, and that a restore brings back what was acknowledged.

mod harness;

use std::sync::Arc;

use harness::*;
use midge_broker::CloseKind;
use midge_codec::{Packet, Properties, PubResponse, QoS};

#[test]
fn clean_sessions_and_qos0_never_touch_the_store() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut subscriber = world.client(connect(V5, "s"));
    subscriber.subscribe(vec![sub("t", QoS::ExactlyOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher.publish(publish("t", "x", qos, false), world.now);
        assert_eq!(publisher.hold(), None, "nothing durable, nothing to wait for");
    }
    subscriber.close(CloseKind::Normal, world.now);
    publisher.close(CloseKind::Abnormal, world.now);
    assert_eq!(store.submissions(), 0, "clean sessions wrote to the store");
}

#[test]
fn puback_waits_for_the_delivery_to_a_persistent_session_and_restore_brings_it_back_mqtt_4_4_0_1() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut subscriber = world.client(persistent(V5, "keeper"));
    subscriber.subscribe(vec![sub("p/#", QoS::ExactlyOnce)], Properties::default(), world.now);
    assert!(subscriber.hold().is_some(), "SUBACK waits for the subscription to be stored");
    let mut publisher = world.client(connect(V311, "pub"));
    publisher.publish(publish("p/retained", "kept", QoS::AtLeastOnce, true), world.now);
    assert!(publisher.hold().is_some(), "PUBACK waits for the retained message");

    // The subscriber receives the first message but never acknowledges it, then goes away.
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["kept"]);
    subscriber.close(CloseKind::Abnormal, world.now);
    let ack = publisher.publish(publish("p/1", "one", QoS::AtLeastOnce, false), world.now).unwrap();
    let ticket = publisher.hold().expect("PUBACK waits for the delivery record");
    assert_eq!(ack.packet_id, pid(2));
    publisher.publish(publish("p/2", "two", QoS::ExactlyOnce, false), world.now);
    assert!(publisher.hold().unwrap() > ticket);

    // Restart: a new broker on what the store holds.
    drop((subscriber, publisher, world));
    let store = Arc::new(store.reopened());
    let world = World::with_store(&store);
    assert_eq!(world.broker.retained_count(), 1);
    let (mut back, connack) = world.connect(persistent(V5, "keeper")).unwrap();
    assert!(connack.session_present);
    let got = back.publishes(world.now);
    assert_eq!(payloads(&got), ["kept", "one", "two"]);
    assert!(got.iter().all(|p| p.dup), "restored messages may have been sent before: DUP");
    assert_eq!(got[2].qos, QoS::ExactlyOnce);

    // Acknowledging deletes the deliveries, and the last reference deletes the message.
    for publish in &got[..2] {
        back.send(Packet::PubAck(PubResponse::success(publish.packet_id.unwrap())), world.now).unwrap();
    }
    let id = got[2].packet_id.unwrap();
    back.send(Packet::PubRec(PubResponse::success(id)), world.now).unwrap();
    assert!(back.hold().is_some(), "PUBREL waits for the PUBREC stage to be stored");
    back.send(Packet::PubComp(PubResponse::success(id)), world.now).unwrap();
    let held = store.recovered();
    let session = held.sessions.iter().find(|s| s.client_id == "keeper").expect("the session is kept");
    assert!(session.deliveries.is_empty(), "acknowledged deliveries are deleted: {:?}", session.deliveries);
    assert_eq!(held.messages.len(), 1, "only the retained message is left");
    assert_eq!(held.retained.len(), 1);
}

#[test]
fn ending_a_persistent_session_deletes_it_and_its_messages() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut subscriber = world.client(persistent(V311, "gone"));
    subscriber.subscribe(vec![sub("g", QoS::AtLeastOnce)], Properties::default(), world.now);
    subscriber.close(CloseKind::Normal, world.now);
    let mut publisher = world.client(connect(V311, "pub"));
    publisher.publish(publish("g", "queued", QoS::AtLeastOnce, false), world.now);
    // A clean session with the same client id ends the stored one (MQTT-3.1.2-6).
    let clean = world.client(connect(V311, "gone"));
    drop(clean);
    let held = store.recovered();
    assert!(held.sessions.is_empty(), "{:?}", held.sessions);
    assert!(held.messages.is_empty(), "the queued message's record went with the session");
}

/// An expired retained message leaves the store with its record and its message
/// (MQTT-3.3.2-5): a restart does not bring it back, and nothing of it is kept on disk.
#[test]
fn an_expired_retained_message_is_deleted_from_the_store() {
    let store = Arc::new(MemoryDurability::default());
    let mut world = World::with_store(&store);
    let mut publisher = world.client(connect(V5, "pub"));
    let mut short = publish("r/short", "soon gone", QoS::AtLeastOnce, true);
    short.properties.message_expiry_interval = Some(5);
    publisher.publish(short, world.now);
    publisher.publish(publish("r/long", "kept", QoS::AtLeastOnce, true), world.now);
    assert_eq!(store.recovered().retained.len(), 2);

    world.advance(std::time::Duration::from_secs(6));
    world.broker.tick(world.now);
    let held = store.recovered();
    assert_eq!(held.retained.iter().map(|(topic, _)| topic.as_str()).collect::<Vec<_>>(), ["r/long"]);
    assert_eq!(held.messages.len(), 1, "the expired message's record is deleted");
}

/// Issue 13: a delayed will restored from the store keeps its Message Expiry Interval, which
/// runs from its publication (MQTT-3.1.3-9 for the delay; MQTT-3.3.2-5 and MQTT-3.3.2-6 for
/// the expiry a receiver is told).
#[test]
fn a_restored_delayed_will_keeps_its_message_expiry_interval() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut leaving = persistent(V5, "leaving");
    let mut last_word = will("wills/leaving", "gone", QoS::AtLeastOnce, false);
    last_word.properties.will_delay_interval = Some(60);
    last_word.properties.message_expiry_interval = Some(30);
    leaving.will = Some(last_word);
    world.client(leaving).close(CloseKind::Abnormal, world.now);

    // Restart before the will is due.
    drop(world);
    let store = Arc::new(store.reopened());
    let mut world = World::with_store(&store);
    let mut watcher = world.client(persistent(V5, "watcher"));
    watcher.subscribe(vec![sub("wills/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    world.advance(std::time::Duration::from_secs(61));
    let got = watcher.publishes(world.now);
    assert_eq!(payloads(&got), ["gone"]);
    let expiry = got[0].properties.message_expiry_interval.expect("the will's expiry survived the restart");
    assert!((29..=30).contains(&expiry), "expiry runs from publication: {expiry}");

    // And it still expires: a subscriber that comes after the interval does not get it.
    let mut leaving = persistent(V5, "leaving2");
    let mut last_word = will("late/leaving2", "stale", QoS::AtLeastOnce, false);
    last_word.properties.will_delay_interval = Some(5);
    last_word.properties.message_expiry_interval = Some(10);
    leaving.will = Some(last_word);
    world.client(leaving).close(CloseKind::Abnormal, world.now);
    let mut offline = persistent(V5, "offline");
    offline.will = None;
    let mut reader = world.client(offline.clone());
    reader.subscribe(vec![sub("late/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    reader.close(CloseKind::Abnormal, world.now);
    drop(world);
    let store = Arc::new(store.reopened());
    let mut world = World::with_store(&store);
    world.advance(std::time::Duration::from_secs(6)); // published to the offline session
    world.advance(std::time::Duration::from_secs(11)); // and expired while it waited
    let (mut back, _) = world.connect(offline).unwrap();
    assert!(payloads(&back.publishes(world.now)).is_empty(), "an expired will is not delivered");
}

/// MQTT-SN 1.2 section 6.5, decision 0008: the topic ids a gateway records for a session live
/// as long as the session. A persistent session's are stored (the REGACK waits for the ticket)
/// and come back after a restart; a clean session's are kept for its connection only; a
/// connection that was taken over records nothing; a clean start forgets them.
#[test]
fn topic_ids_live_as_long_as_the_session_and_survive_a_restart() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut first = world.client(persistent(V311, "sensor"));
    let connection = first.connection.as_ref().unwrap();
    assert!(connection.topic_ids().is_empty(), "a new session has none");
    assert!(connection.record_topic_id(2, Arc::from("a/b")).is_some(), "a persistent session's is stored");
    assert_eq!(connection.record_topic_id(2, Arc::from("a/b")), None, "nothing new, nothing written");
    connection.record_topic_id(1, Arc::from("c/d"));
    let expected: Vec<(u16, Arc<str>)> = vec![(1, Arc::from("c/d")), (2, Arc::from("a/b"))];
    assert_eq!(connection.topic_ids(), expected, "ascending by id");

    let clean = world.client(connect(V311, "clean"));
    let clean_connection = clean.connection.as_ref().unwrap();
    assert_eq!(clean_connection.record_topic_id(1, Arc::from("x")), None, "a clean session's is not stored");
    assert_eq!(clean_connection.topic_ids().len(), 1, "but kept while its connection lives");

    // Taken over: the session's ids go to the new connection; the old one records nothing.
    let mut second = world.client(persistent(V311, "sensor"));
    assert_eq!(second.connection.as_ref().unwrap().topic_ids(), expected);
    assert_eq!(first.connection.as_ref().unwrap().record_topic_id(3, Arc::from("late")), None);
    first.close(CloseKind::TakenOver, world.now);
    second.close(CloseKind::Abnormal, world.now);
    assert_eq!(store.recovered().sessions[0].topic_ids, [(1, "c/d".to_owned()), (2, "a/b".to_owned())]);

    // Restart: the resumed session has them.
    drop(world);
    let store = Arc::new(store.reopened());
    let world = World::with_store(&store);
    let (back, connack) = world.connect(persistent(V311, "sensor")).unwrap();
    assert!(connack.session_present);
    assert_eq!(back.connection.as_ref().unwrap().topic_ids(), expected);

    // A clean start ends the session, its ids with it, in memory and in the store.
    let fresh = world.client(connect(V311, "sensor"));
    assert!(fresh.connection.as_ref().unwrap().topic_ids().is_empty());
    assert!(store.recovered().sessions.iter().all(|session| session.topic_ids.is_empty()));
}
