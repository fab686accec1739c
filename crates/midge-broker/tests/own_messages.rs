//! The broker's own messages (`$SYS`, issue 15) and the counters they report: published
//! through the core like any message, kept out of the store, refused to clients; what the
//! counters and the accounting say after known traffic.

mod harness;

use std::sync::Arc;

use bytes::Bytes;
use harness::*;
use midge_broker::ports::durability::{Change, Changes, Durability};
use midge_broker::CloseKind;
use midge_codec::{Properties, QoS, ReasonCode, TopicName};

fn own(world: &World, topic: &str, payload: &str) {
    let topic = TopicName::new(topic).expect("a valid topic");
    world.broker.publish_own(topic, Bytes::from(payload.to_owned()), QoS::ExactlyOnce, true, world.now).unwrap();
}

#[test]
fn own_messages_reach_sys_subscribers_not_wildcards_mqtt_4_7_2_1() {
    let world = World::new();
    let mut all = world.client(connect(V5, "all"));
    all.subscribe(
        vec![sub("#", QoS::AtMostOnce), sub("+/broker/uptime", QoS::AtMostOnce)],
        Properties::default(),
        world.now,
    );
    let mut sys = world.client(connect(V5, "sys"));
    sys.subscribe(vec![sub("$SYS/#", QoS::AtMostOnce)], Properties::default(), world.now);

    own(&world, "$SYS/broker/uptime", "1 seconds");
    assert_eq!(payloads(&sys.publishes(world.now)), ["1 seconds"]);
    assert!(all.publishes(world.now).is_empty(), "# and + do not match a $ topic at the first level");

    // Retained: a later subscriber gets the latest value.
    own(&world, "$SYS/broker/uptime", "2 seconds");
    let mut late = world.client(connect(V311, "late"));
    late.subscribe(vec![sub("$SYS/broker/+", QoS::AtLeastOnce)], Properties::default(), world.now);
    let got = late.publishes(world.now);
    assert_eq!(payloads(&got), ["2 seconds"]);
    assert!(got[0].retain);
    assert_eq!(got[0].qos, QoS::AtLeastOnce, "the subscription's QoS, below the message's 2");
    assert_eq!(world.broker.stats().messages_received.get(), 0, "the broker's own are not received");
}

#[test]
fn own_retained_messages_stay_out_of_the_store() {
    let store = Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    own(&world, "$SYS/broker/version", "midge 0");
    own(&world, "$SYS/broker/version", "midge 1");
    assert_eq!(world.broker.retained_count(), 1, "the second replaced the first");
    assert!(store.recovered().retained.is_empty(), "a restart publishes fresh values");
    assert_eq!(store.submissions(), 0);
}

#[test]
fn a_sys_value_a_client_stored_before_leaves_the_store_at_restore() {
    // A store written before clients were refused `$SYS`: a retained row there, naming the
    // message an ordinary retained topic holds too.
    let store = Arc::new(MemoryDurability::default());
    {
        let world = World::with_store(&store);
        let mut publisher = world.client(connect(V5, "old"));
        publisher.publish(publish("kept/topic", "value", QoS::AtLeastOnce, true), world.now);
    }
    let (_, id) = store.recovered().retained[0].clone();
    let mut changes = Changes::new();
    changes.push(Change::PutRetained { topic: "$SYS/broker/uptime".to_owned(), message: id });
    store.submit(changes);

    let store = Arc::new(store.reopened());
    let world = World::with_store(&store);
    assert_eq!(world.broker.retained_count(), 1, "only the ordinary retained message");
    let held = store.recovered();
    assert_eq!(held.retained, [("kept/topic".to_owned(), id)], "the $SYS row is deleted");
    assert_eq!(store.message_ids(), [id], "the message stays for the topic that still holds it");
}

#[test]
fn a_client_may_not_publish_into_sys() {
    let world = World::new();
    let mut sys = world.client(connect(V5, "sys"));
    sys.subscribe(vec![sub("$SYS/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut spoofer = world.client(connect(V5, "spoofer"));
    let ack = spoofer.publish(publish("$SYS/broker/uptime", "0 seconds", QoS::AtLeastOnce, true), world.now);
    assert_eq!(ack.expect("PUBACK").reason, ReasonCode::NOT_AUTHORIZED);
    assert!(sys.publishes(world.now).is_empty());
    assert_eq!(world.broker.retained_count(), 0);
    // Look-alikes are ordinary topics.
    let ack = spoofer.publish(publish("$SYSTEM/x", "y", QoS::AtLeastOnce, false), world.now);
    assert_eq!(ack.expect("PUBACK").reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

#[test]
fn counters_and_accounting_after_known_traffic() {
    let world = World::new();
    let mut subscriber = world.client(connect(V311, "subscriber"));
    subscriber.subscribe(
        vec![sub("t/#", QoS::AtLeastOnce), sub("$share/g/t/+", QoS::AtMostOnce)],
        Properties::default(),
        world.now,
    );
    let mut publisher = world.client(persistent(V311, "publisher"));
    for _ in 0..10 {
        publisher.publish(publish("t/1", "12345", QoS::AtLeastOnce, false), world.now).expect("PUBACK");
    }
    let got = subscriber.publishes(world.now);
    assert_eq!(got.len(), 20, "each message once per subscription, the shared one included");

    let stats = world.broker.stats().snapshot();
    assert_eq!(stats.connections_accepted, 2);
    assert_eq!(stats.messages_received, 10);
    assert_eq!(stats.messages_sent, 20);
    assert_eq!(stats.publish_bytes_sent, 100);
    // SUBACK, 10 PUBACKs and 20 PUBLISHes; the harness writes no CONNACK (the server does).
    assert_eq!(stats.packets_sent, 31);

    let held = world.broker.accounting();
    assert_eq!((held.sessions, held.connected), (2, 2));
    assert_eq!((held.subscriptions, held.shared_subscriptions), (2, 1));
    publisher.close(CloseKind::Abnormal, world.now);
    let held = world.broker.accounting();
    assert_eq!((held.sessions, held.connected), (2, 1), "the persistent session waits, disconnected");
}

#[test]
fn client_events_are_published_when_switched_on() {
    let world = World::new();
    let mut monitor = world.client(connect(V5, "monitor"));
    monitor.subscribe(vec![sub("$SYS/broker/midge/clients/+", QoS::AtMostOnce)], Properties::default(), world.now);
    world.client(connect(V5, "quiet")).close(CloseKind::Normal, world.now);
    assert!(monitor.publishes(world.now).is_empty(), "off unless switched on");

    world.broker.set_client_events(true);
    world.client(connect(V311, "device-7")).close(CloseKind::Abnormal, world.now);
    let got = monitor.publishes(world.now);
    let events: Vec<(&str, String)> =
        got.iter().map(|p| (&*p.topic, String::from_utf8_lossy(&p.payload).into_owned())).collect();
    assert_eq!(
        events,
        [
            ("$SYS/broker/midge/clients/connected", "device-7".to_owned()),
            ("$SYS/broker/midge/clients/disconnected", "device-7".to_owned()),
        ]
    );
    assert!(got.iter().all(|p| !p.retain));
}

#[test]
fn a_will_into_sys_is_not_published() {
    let world = World::new();
    let mut sys = world.client(connect(V5, "sys"));
    sys.subscribe(vec![sub("$SYS/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut with_will = connect(V311, "spoofer");
    with_will.will = Some(will("$SYS/broker/clients/connected", "0", QoS::AtMostOnce, true));
    world.client(with_will).close(CloseKind::Abnormal, world.now);
    assert!(sys.publishes(world.now).is_empty());
    assert_eq!(world.broker.stats().wills_published.get(), 0);
}

#[test]
fn retained_messages_beyond_a_new_subscribers_bound_are_counted_as_dropped() {
    let world = World::with(midge_broker::Limits { max_queued_messages: 2, ..midge_broker::Limits::default() });
    let mut publisher = world.client(connect(V5, "publisher"));
    for topic in ["r/1", "r/2", "r/3", "r/4", "r/5"] {
        publisher.publish(publish(topic, "kept", QoS::AtLeastOnce, true), world.now);
    }
    let mut late = world.client(connect(V5, "late"));
    late.subscribe(vec![sub("r/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let got = late.publishes(world.now).len() as u64;
    let stats = world.broker.stats().snapshot();
    assert_eq!(got + stats.drops.queue_full, 5, "each one sent or counted");
    assert!(stats.drops.queue_full > 0);
    assert_eq!(stats.messages_dropped, stats.drops.queue_full);
}
