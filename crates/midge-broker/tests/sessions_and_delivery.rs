//! Broker-core behaviour without sockets, with a hand-moved clock: delivery rules, sessions,
//! wills and expiry. Wire-level conformance lives in crates/midge/tests.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use midge_broker::{CloseKind, Limits};
use midge_codec::{Packet, Properties, PubResponse, QoS, ReasonCode, RetainHandling, SubscriptionOptions};

#[test]
fn delivered_qos_is_minimum_of_published_and_granted_mqtt_3_8_4_8() {
    let world = World::new();
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    publisher.publish(publish("t", "two", QoS::ExactlyOnce, false), world.now);
    publisher.publish(publish("t", "zero", QoS::AtMostOnce, false), world.now);
    let got = subscriber.publishes(world.now);
    assert_eq!(payloads(&got), ["two", "zero"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::AtMostOnce);
}

#[test]
fn overlapping_subscriptions_deliver_once_at_highest_qos_mqtt_3_3_5_1() {
    let world = World::new();
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(
        vec![sub("a/+", QoS::AtMostOnce), sub("a/#", QoS::ExactlyOnce)],
        Properties::default(),
        world.now,
    );
    let mut publisher = world.client(connect(V311, "p"));
    publisher.publish(publish("a/b", "x", QoS::ExactlyOnce, false), world.now);
    let got = subscriber.publishes(world.now);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
}

#[test]
fn v5_overlapping_subscriptions_carry_every_subscription_identifier_mqtt_3_3_4_3() {
    let world = World::new();
    let mut subscriber = world.client(connect(V5, "s"));
    let with_id = |id| Properties { subscription_identifiers: vec![id], ..Properties::default() };
    subscriber.subscribe(vec![sub("a/+", QoS::AtMostOnce)], with_id(7), world.now);
    subscriber.subscribe(vec![sub("a/#", QoS::AtMostOnce)], with_id(9), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("a/b", "x", QoS::AtMostOnce, false), world.now);
    let got = subscriber.publishes(world.now);
    assert_eq!(got.len(), 1);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [7, 9]);
}

#[test]
fn no_local_suppresses_own_messages_mqtt_3_8_3_3() {
    let world = World::new();
    let mut client = world.client(connect(V5, "c"));
    let mut subscription = sub("t", QoS::AtMostOnce);
    subscription.options.no_local = true;
    client.subscribe(vec![subscription], Properties::default(), world.now);
    client.publish(publish("t", "mine", QoS::AtMostOnce, false), world.now);
    let mut other = world.client(connect(V5, "o"));
    other.publish(publish("t", "theirs", QoS::AtMostOnce, false), world.now);
    assert_eq!(payloads(&client.publishes(world.now)), ["theirs"]);
}

#[test]
fn retained_message_sent_on_subscribe_with_retain_set_and_cleared_by_empty_payload_mqtt_3_3_1_6_and_10() {
    let world = World::new();
    let mut publisher = world.client(connect(V311, "p"));
    publisher.publish(publish("r/1", "kept", QoS::AtLeastOnce, true), world.now);
    let mut first = world.client(connect(V311, "a"));
    first.subscribe(vec![sub("r/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    let got = first.publishes(world.now);
    assert_eq!(payloads(&got), ["kept"]);
    assert!(got[0].retain, "MQTT-3.3.1-8: RETAIN set on a message sent for a new subscription");

    // A live subscriber sees RETAIN 0 on a forwarded retained message (MQTT-3.3.1-9).
    publisher.publish(publish("r/1", "newer", QoS::AtMostOnce, true), world.now);
    let live = first.publishes(world.now);
    assert_eq!(payloads(&live), ["newer"]);
    assert!(!live[0].retain);

    publisher.publish(publish("r/1", "", QoS::AtMostOnce, true), world.now);
    assert_eq!(world.broker.retained_count(), 0);
    let mut second = world.client(connect(V311, "b"));
    second.subscribe(vec![sub("r/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    assert!(second.publishes(world.now).is_empty());
}

#[test]
fn retain_handling_and_retain_as_published_mqtt_3_3_1_12_and_3_8_3() {
    let world = World::new();
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("h", "r", QoS::AtMostOnce, true), world.now);
    let options = |rh, rap| SubscriptionOptions { retain_handling: rh, retain_as_published: rap, ..Default::default() };
    let mut client = world.client(connect(V5, "c"));
    let mut subscription = sub("h", QoS::AtMostOnce);

    subscription.options = options(RetainHandling::DoNotSend, false);
    client.subscribe(vec![subscription.clone()], Properties::default(), world.now);
    assert!(client.publishes(world.now).is_empty(), "retain handling 2 sends nothing");

    subscription.options = options(RetainHandling::SendIfNew, true);
    client.subscribe(vec![subscription.clone()], Properties::default(), world.now);
    assert!(client.publishes(world.now).is_empty(), "retain handling 1 sends nothing for an existing subscription");

    publisher.publish(publish("h", "live", QoS::AtMostOnce, true), world.now);
    let got = client.publishes(world.now);
    assert!(got[0].retain, "retain as published keeps RETAIN on live delivery");

    subscription.options = options(RetainHandling::SendAtSubscribe, false);
    client.subscribe(vec![subscription], Properties::default(), world.now);
    assert_eq!(payloads(&client.publishes(world.now)), ["live"]);
}

#[test]
fn qos2_resend_before_pubrel_is_not_delivered_twice_mqtt_4_3_3_10() {
    let world = World::new();
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(vec![sub("q", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    let mut message = publish("q", "once", QoS::ExactlyOnce, false);
    message.packet_id = Some(pid(7));
    publisher.publish(message.clone(), world.now);
    message.dup = true;
    let ack = publisher.publish(message, world.now).unwrap();
    assert_eq!(ack.packet_id, pid(7));
    publisher.send(Packet::PubRel(PubResponse::success(pid(7))), world.now).unwrap();
    assert!(matches!(publisher.recv(world.now), Some(Packet::PubComp(c)) if c.packet_id == pid(7)));
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["once"]);
}

#[test]
fn persistent_session_queues_while_offline_and_resends_unacked_with_dup_mqtt_4_4_0_1() {
    let world = World::new();
    let mut persistent = connect(V311, "keeper");
    persistent.clean_start = false;
    let (mut subscriber, connack) = world.connect(persistent.clone()).unwrap();
    assert!(!connack.session_present);
    subscriber.subscribe(vec![sub("p/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    publisher.publish(publish("p/1", "first", QoS::AtLeastOnce, false), world.now);
    let first = subscriber.publishes(world.now);
    assert_eq!(payloads(&first), ["first"]);
    let first_id = first[0].packet_id;
    subscriber.close(CloseKind::Abnormal, world.now); // no PUBACK

    publisher.publish(publish("p/2", "second", QoS::AtLeastOnce, false), world.now);
    publisher.publish(publish("p/3", "dropped qos0", QoS::AtMostOnce, false), world.now);

    let (mut back, connack) = world.connect(persistent).unwrap();
    assert!(connack.session_present, "MQTT-3.2.2-2");
    let got = back.publishes(world.now);
    assert_eq!(payloads(&got), ["first", "second"]);
    assert!(got[0].dup, "the unacknowledged message is resent with DUP");
    assert_eq!(got[0].packet_id, first_id, "with its original packet id");
    assert!(!got[1].dup);
}

#[test]
fn clean_session_discards_previous_session_mqtt_3_1_2_6() {
    let world = World::new();
    let mut persistent = connect(V311, "c");
    persistent.clean_start = false;
    let mut client = world.client(persistent.clone());
    client.subscribe(vec![sub("x", QoS::AtLeastOnce)], Properties::default(), world.now);
    client.close(CloseKind::Normal, world.now);
    let (mut clean, connack) = world.connect(connect(V311, "c")).unwrap();
    assert!(!connack.session_present);
    let mut publisher = world.client(connect(V311, "p"));
    publisher.publish(publish("x", "m", QoS::AtLeastOnce, false), world.now);
    assert!(clean.publishes(world.now).is_empty(), "the old subscription is gone");
}

#[test]
fn takeover_kicks_the_old_connection_with_0x8e_mqtt_3_1_4_2() {
    let world = World::new();
    let first = world.client(connect(V5, "same"));
    let kick = std::sync::Arc::clone(first.connection.as_ref().unwrap().kick());
    let _second = world.client(connect(V5, "same"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let reason = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), kick.kicked()).await }).unwrap();
    assert_eq!(reason, ReasonCode::SESSION_TAKEN_OVER);
}

#[test]
fn will_published_on_abnormal_close_not_on_disconnect_mqtt_3_1_2_8_and_10() {
    let world = World::new();
    let mut watcher = world.client(connect(V311, "w"));
    watcher.subscribe(vec![sub("will/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut with_will = connect(V311, "a");
    with_will.will = Some(will("will/a", "gone", QoS::AtMostOnce, false));
    world.client(with_will.clone()).close(CloseKind::Abnormal, world.now);
    assert_eq!(payloads(&watcher.publishes(world.now)), ["gone"]);
    world.client(with_will).close(CloseKind::Normal, world.now);
    assert!(watcher.publishes(world.now).is_empty());
}

#[test]
fn v5_will_delay_is_cancelled_by_reconnect_and_fires_otherwise_mqtt_3_1_3_9() {
    let mut world = World::new();
    let mut watcher = world.client(connect(V5, "w"));
    watcher.subscribe(vec![sub("will/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut delayed = connect(V5, "d");
    delayed.clean_start = false;
    delayed.properties.session_expiry_interval = Some(60);
    let mut w = will("will/d", "late", QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(5);
    delayed.will = Some(w);

    world.client(delayed.clone()).close(CloseKind::Abnormal, world.now);
    world.advance(Duration::from_secs(3));
    assert!(watcher.publishes(world.now).is_empty(), "not before the delay");
    let mut reconnect = delayed.clone();
    reconnect.will = None;
    let mut back = world.client(reconnect);
    world.advance(Duration::from_secs(5));
    assert!(watcher.publishes(world.now).is_empty(), "reconnecting cancelled the will");

    back.close(CloseKind::Normal, world.now);
    world.client(delayed).close(CloseKind::Abnormal, world.now);
    world.advance(Duration::from_secs(6));
    assert_eq!(payloads(&watcher.publishes(world.now)), ["late"]);
}

#[test]
fn v5_session_expiry_ends_session_after_interval() {
    let mut world = World::new();
    let mut persistent = connect(V5, "e");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(10);
    world.client(persistent.clone()).close(CloseKind::Normal, world.now);
    assert_eq!(world.broker.session_count(), 1);
    world.advance(Duration::from_secs(11));
    assert_eq!(world.broker.session_count(), 0);
    let (_, connack) = world.connect(persistent).unwrap();
    assert!(!connack.session_present);
}

#[test]
fn v5_message_expiry_drops_stale_messages_and_forwards_remaining_lifetime_mqtt_3_3_2_5_and_6() {
    let mut world = World::new();
    let mut persistent = connect(V5, "slow");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(600);
    let mut subscriber = world.client(persistent.clone());
    subscriber.subscribe(vec![sub("e/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    subscriber.close(CloseKind::Normal, world.now);
    let mut publisher = world.client(connect(V5, "p"));
    let mut short = publish("e/short", "short", QoS::AtLeastOnce, false);
    short.properties.message_expiry_interval = Some(2);
    let mut long = publish("e/long", "long", QoS::AtLeastOnce, false);
    long.properties.message_expiry_interval = Some(100);
    publisher.publish(short, world.now);
    publisher.publish(long, world.now);
    world.advance(Duration::from_secs(5));
    let mut back = world.client(persistent);
    let got = back.publishes(world.now);
    assert_eq!(payloads(&got), ["long"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(95));
}

#[test]
fn v5_receive_maximum_bounds_outbound_inflight_mqtt_3_3_4_9() {
    let world = World::new();
    let mut connect_packet = connect(V5, "r");
    connect_packet.properties.receive_maximum = Some(2);
    let mut subscriber = world.client(connect_packet);
    subscriber.subscribe(vec![sub("w", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for i in 0..5 {
        publisher.publish(publish("w", &i.to_string(), QoS::AtLeastOnce, false), world.now);
    }
    let first = subscriber.publishes(world.now);
    assert_eq!(payloads(&first), ["0", "1"]);
    subscriber.send(Packet::PubAck(PubResponse::success(first[0].packet_id.unwrap())), world.now).unwrap();
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["2"]);
}

#[test]
fn v5_message_larger_than_client_maximum_packet_size_is_not_sent_mqtt_3_1_2_25() {
    let world = World::new();
    let mut connect_packet = connect(V5, "small");
    connect_packet.properties.maximum_packet_size = Some(64);
    let mut subscriber = world.client(connect_packet);
    subscriber.subscribe(vec![sub("m", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("m", &"x".repeat(200), QoS::AtMostOnce, false), world.now);
    publisher.publish(publish("m", "fits", QoS::AtMostOnce, false), world.now);
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["fits"]);
}

#[test]
fn v5_topic_aliases_in_both_directions() {
    let world = World::new();
    let mut connect_packet = connect(V5, "s");
    connect_packet.properties.topic_alias_maximum = Some(5);
    let mut subscriber = world.client(connect_packet);
    subscriber.subscribe(vec![sub("alias/topic", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    let mut first = publish("alias/topic", "1", QoS::AtMostOnce, false);
    first.properties.topic_alias = Some(3);
    publisher.publish(first, world.now);
    let mut second = publish("alias/topic", "2", QoS::AtMostOnce, false);
    second.topic = midge_codec::TopicName::empty_for_alias();
    second.properties.topic_alias = Some(3);
    publisher.publish(second, world.now);

    let got = subscriber.publishes(world.now);
    assert_eq!(payloads(&got), ["1", "2"]);
    assert_eq!(got[0].topic.as_str(), "alias/topic");
    let alias = got[0].properties.topic_alias.expect("the broker sets an alias");
    assert!(got[1].topic.is_empty(), "the second delivery goes by alias only");
    assert_eq!(got[1].properties.topic_alias, Some(alias));

    let mut bad = publish("x", "y", QoS::AtMostOnce, false);
    bad.properties.topic_alias = Some(11); // above the default Topic Alias Maximum of 10
    let err = publisher.send(Packet::Publish(bad), world.now).unwrap_err();
    assert_eq!(err.reason, ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn shared_subscription_gives_each_message_to_one_member_and_redelivers_on_leave() {
    let world = World::new();
    let mut a = world.client(connect(V5, "a"));
    let mut b = world.client(connect(V5, "b"));
    a.subscribe(vec![sub("$share/g/jobs/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    b.subscribe(vec![sub("$share/g/jobs/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for i in 0..10 {
        publisher.publish(publish("jobs/x", &i.to_string(), QoS::AtLeastOnce, false), world.now);
    }
    let got_a = a.publishes(world.now);
    let got_b = b.publishes(world.now);
    assert_eq!(got_a.len() + got_b.len(), 10);
    assert!(!got_a.is_empty() && !got_b.is_empty(), "round robin uses both members");

    // a leaves without acknowledging: its messages go to b.
    let unacked = got_a.len();
    a.close(CloseKind::Abnormal, world.now);
    let redelivered = b.publishes(world.now);
    assert_eq!(redelivered.len(), unacked);
}

#[test]
fn server_capabilities_are_enforced() {
    let config = Limits { max_qos: 1, retain_available: false, ..Limits::default() };
    let world = World::with(config);
    let (mut client, connack) = world.connect(connect(V5, "c")).unwrap();
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(connack.properties.retain_available, Some(false));
    let granted = client.subscribe(vec![sub("t", QoS::ExactlyOnce)], Properties::default(), world.now);
    assert_eq!(granted, [ReasonCode::GRANTED_QOS_1]);
    let mut too_high = publish("t", "x", QoS::ExactlyOnce, false);
    too_high.packet_id = Some(pid(1));
    assert_eq!(client.send(Packet::Publish(too_high), world.now).unwrap_err().reason, ReasonCode::QOS_NOT_SUPPORTED);
    let retained = publish("t", "x", QoS::AtMostOnce, true);
    assert_eq!(client.send(Packet::Publish(retained), world.now).unwrap_err().reason, ReasonCode::RETAIN_NOT_SUPPORTED);
}

#[test]
fn empty_client_id_rules_mqtt_3_1_3_8() {
    let world = World::new();
    let mut persistent = connect(V311, "");
    persistent.clean_start = false;
    let refused = world.connect(persistent).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    let (_, connack) = world.connect(connect(V5, "")).unwrap();
    let assigned = connack.properties.assigned_client_identifier.expect("assigned id");
    assert!(!assigned.is_empty());
}

#[test]
fn offline_queue_is_bounded_and_counts_drops() {
    let config = Limits { max_queued_messages: 3, ..Limits::default() };
    let world = World::with(config);
    let mut persistent = connect(V311, "bounded");
    persistent.clean_start = false;
    let mut subscriber = world.client(persistent.clone());
    subscriber.subscribe(vec![sub("b", QoS::AtLeastOnce)], Properties::default(), world.now);
    subscriber.close(CloseKind::Normal, world.now);
    let mut publisher = world.client(connect(V311, "p"));
    for i in 0..10 {
        publisher.publish(publish("b", &i.to_string(), QoS::AtLeastOnce, false), world.now);
    }
    assert_eq!(world.broker.stats().messages_dropped.get(), 7);
    let mut back = world.client(persistent);
    assert_eq!(payloads(&back.publishes(world.now)), ["0", "1", "2"]);
}

#[test]
fn v5_disconnect_reason_string_dropped_beyond_client_maximum_packet_size_mqtt_3_14_2_3() {
    let world = World::new();
    let disconnect_from = |limit: u32| {
        let mut packet = connect(V5, "tiny");
        packet.properties.maximum_packet_size = Some(limit);
        let client = world.client(packet);
        let mut out = bytes::BytesMut::new();
        client.connection.as_ref().unwrap().write_disconnect(
            ReasonCode::PROTOCOL_ERROR,
            Some("a long explanation"),
            &mut out,
        );
        let size = out.len();
        match midge_codec::decode_packet(&mut out, V5, usize::MAX).unwrap() {
            Some(Packet::Disconnect(d)) => (size, d),
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    };
    let (size, small) = disconnect_from(8);
    assert!(size <= 8);
    assert_eq!(small.reason, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(small.properties.reason_string, None);
    let (_, large) = disconnect_from(1024);
    assert_eq!(large.properties.reason_string.as_deref(), Some("a long explanation"));
}

#[test]
fn v5_delayed_will_of_a_session_ended_by_clean_start_takeover_is_published_at_once() {
    let world = World::new();
    let mut watcher = world.client(connect(V5, "w"));
    watcher.subscribe(vec![sub("will/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut first = connect(V5, "dup");
    first.clean_start = false;
    first.properties.session_expiry_interval = Some(600);
    let mut w = will("will/dup", "ended", QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(300);
    first.will = Some(w);
    let mut old = world.client(first);
    let _new = world.client(connect(V5, "dup")); // clean start: the old session ends
    old.close(CloseKind::TakenOver, world.now);
    assert_eq!(payloads(&watcher.publishes(world.now)), ["ended"], "MQTT 5.0 section 3.1.3.2.2");
}

/// Publishes messages "0", "1", ... to `topic`, each as a read of its own, and returns for each
/// how many subscribers the server would pace `publisher` for.
fn paced_for_each(publisher: &mut Client, topic: &str, qos: QoS, count: usize, now: Instant) -> Vec<usize> {
    (0..count)
        .map(|i| publisher.publish_read(publish(topic, &i.to_string(), qos, false), now).subscribers.len())
        .collect()
}

#[test]
fn connected_subscriber_over_its_bound_paces_the_publisher_instead_of_dropping_qos1() {
    let config = Limits { max_queued_messages: 3, max_inflight_messages: 1, ..Limits::default() };
    let world = World::with(config);
    let mut subscriber = world.client(connect(V311, "slow"));
    subscriber.subscribe(vec![sub("b", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    let paced_for = paced_for_each(&mut publisher, "b", QoS::AtLeastOnce, 6, world.now);
    // Nothing is sent before the subscriber reads: three queued, the fourth finds the bound.
    assert_eq!(paced_for, [0, 0, 0, 1, 1, 1], "the publisher is to be paced, not its messages dropped");
    assert_eq!(world.broker.stats().messages_dropped.get(), 0);
    let mut received = Vec::new();
    while received.len() < 6 {
        let got = subscriber.publishes(world.now);
        assert_eq!(got.len(), 1, "window of one");
        subscriber.send(Packet::PubAck(PubResponse::success(got[0].packet_id.unwrap())), world.now).unwrap();
        received.extend(payloads(&got));
    }
    assert_eq!(received, ["0", "1", "2", "3", "4", "5"]);
}

/// QoS 0 is paced as QoS 1/2 are (decision 0005): a connected subscriber's full queue paces the
/// publisher instead of dropping its messages; `pace_qos0 = false` drops them at once, as before.
#[test]
fn connected_subscriber_over_its_bound_paces_qos0_publishers_unless_pace_qos0_is_off() {
    for pace_qos0 in [true, false] {
        let world = World::with(Limits { max_queued_messages: 3, pace_qos0, ..Limits::default() });
        let mut subscriber = world.client(connect(V311, "slow"));
        subscriber.subscribe(vec![sub("b", QoS::AtMostOnce)], Properties::default(), world.now);
        let mut publisher = world.client(connect(V311, "p"));
        let paced = paced_for_each(&mut publisher, "b", QoS::AtMostOnce, 6, world.now);
        if pace_qos0 {
            // The fourth message takes the queue over its bound; the fifth is seen going to a
            // subscriber over its bound as it is deferred.
            assert_eq!(paced, [0, 0, 0, 1, 1, 1], "pace_qos0 = {pace_qos0}");
            assert_eq!(world.broker.stats().messages_dropped.get(), 0);
            assert_eq!(payloads(&subscriber.publishes(world.now)), ["0", "1", "2", "3", "4", "5"]);
        } else {
            assert_eq!(paced, [0; 6], "pace_qos0 = {pace_qos0}");
            assert_eq!(world.broker.stats().messages_dropped.get(), 3);
            assert_eq!(payloads(&subscriber.publishes(world.now)), ["0", "1", "2"]);
        }
    }
}

/// QoS 2 publishers are paced too (before issue 11 a QoS 2 publisher's congestion was ignored,
/// and its messages beyond the hard bound were dropped).
#[test]
fn connected_subscriber_over_its_bound_paces_qos2_publishers() {
    let world = World::with(Limits { max_queued_messages: 2, max_inflight_messages: 1, ..Limits::default() });
    let mut subscriber = world.client(connect(V5, "slow"));
    subscriber.subscribe(vec![sub("b", QoS::ExactlyOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    let paced = paced_for_each(&mut publisher, "b", QoS::ExactlyOnce, 5, world.now);
    assert_eq!(paced, [0, 0, 1, 1, 1]);
}

/// A client is never paced for its own session, nor are wills (nobody can be paced for them):
/// over the bound they are dropped and counted.
#[test]
fn own_messages_and_wills_pace_nobody() {
    let world = World::with(Limits { max_queued_messages: 2, ..Limits::default() });
    let mut echo = world.client(connect(V311, "echo"));
    echo.subscribe(vec![sub("e", QoS::AtMostOnce)], Properties::default(), world.now);
    for i in 0..4 {
        let congestion = echo.publish_read(publish("e", &i.to_string(), QoS::AtMostOnce, false), world.now);
        assert!(congestion.is_empty(), "a client is not paced for itself");
    }
    let mut watcher = world.client(connect(V311, "watcher"));
    watcher.subscribe(vec![sub("will/#", QoS::AtMostOnce)], Properties::default(), world.now);
    for n in 0..4 {
        let mut dying = connect(V311, &format!("dying{n}"));
        dying.will = Some(will(&format!("will/{n}"), "gone", QoS::AtMostOnce, false));
        world.client(dying).close(CloseKind::Abnormal, world.now);
    }
    assert_eq!(watcher.publishes(world.now).len(), 2, "wills respect the bound");
}

/// A publisher that came to wait while the queue sat between its low water mark and its bound
/// is let go when the queue drains, not left for its slow-consumer deadline: `has_room` holds
/// exactly when the session wakes paced publishers.
#[test]
fn has_room_follows_the_wake_up_not_the_queue_length() {
    let world = World::with(Limits { max_queued_messages: 4, max_inflight_messages: 1, ..Limits::default() });
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(vec![sub("b", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    let mut congested = None;
    for i in 0..6 {
        let congestion = publisher.publish_read(publish("b", &i.to_string(), QoS::AtLeastOnce, false), world.now);
        congested = congested.or(congestion.subscribers.into_iter().next());
    }
    let session = congested.expect("paced");
    assert!(!session.has_room());
    let mut acked = 0;
    while !session.has_room() {
        let got = subscriber.publishes(world.now);
        subscriber.send(Packet::PubAck(PubResponse::success(got[0].packet_id.unwrap())), world.now).unwrap();
        acked += 1;
    }
    // Six queued, taken one at a time: room once the queue is at its low water mark (2).
    assert_eq!(acked, 4, "room at the low water mark");
    // Refilled to between low water and the bound, nobody is paced and the room stays.
    for i in 6..8 {
        assert!(publisher.publish_read(publish("b", &i.to_string(), QoS::AtLeastOnce, false), world.now).is_empty());
    }
    assert!(session.has_room(), "no publisher waits for a wake-up that would never come");
}

/// The QoS 0 messages of a read batch are enqueued when the batch ends, one lock per session
/// (midge_broker::ReadBatch), yet a publisher's messages still reach a subscriber in the
/// order it sent them: a QoS 1 message first enqueues the QoS 0 ones before it. MQTT-4.6.0-5
/// asks for the order per QoS; Midge keeps it across QoS too.
#[test]
fn read_batch_defers_qos0_but_keeps_publish_order_across_qos_mqtt_4_6_0_5() {
    use midge_broker::ReadBatch;

    let world = World::new();
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "p"));
    let mut batch = ReadBatch::new();
    let mut send = |payload: &str, qos: QoS, id: u16| {
        let mut packet = publish("t", payload, qos, false);
        packet.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
        publisher.send_in(Packet::Publish(packet), world.now, &mut batch).unwrap();
    };
    send("0a", QoS::AtMostOnce, 0);
    assert!(subscriber.publishes(world.now).is_empty(), "a QoS 0 delivery waits for the batch's end");
    send("1b", QoS::AtLeastOnce, 1);
    send("0c", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["0a", "1b"], "0a is enqueued before 1b");
    world.broker.end_batch(&mut batch);
    assert!(batch.is_empty());
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["0c"], "the rest when the batch ends");
}

/// Shutdown reaches connected clients through their kick with Server Shutting Down (0x8B), and
/// a client whose CONNECT is accepted after shutdown began is kicked at once, not left running.
#[test]
fn shutdown_kicks_connected_clients_and_later_arrivals_with_0x8b() {
    use midge_broker::Signal;
    use std::task::{Context, Poll, Waker};

    let world = World::new();
    let before = world.client(connect(V5, "before"));
    world.broker.shut_down();
    let after = world.client(connect(V5, "after"));
    for (name, client) in [("before", &before), ("after", &after)] {
        let kick = client.connection.as_ref().expect("connected").kick();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            kick.poll_signal(&mut cx),
            Poll::Ready(Signal::Kicked(ReasonCode::SERVER_SHUTTING_DOWN)),
            "{name} shutdown"
        );
    }
}
