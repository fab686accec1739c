//! What the `core` fuzz target (fuzz/fuzz_targets/core.rs) found, each as the smallest history
//! that shows it. A test marked `#[ignore]` shows a defect not fixed yet: its reason says what the
//! fix is; remove the mark with the fix.

mod harness;

use harness::*;
use midge_broker::CloseKind;
use midge_codec::{Properties, QoS};

/// MQTT-4.8.2-5: a QoS 2 message a shared subscription was sending to one member (PUBLISH sent,
/// no PUBREC yet) must not go to any other member when that member's session ends: the first
/// member may have delivered it to its application already, so a second copy breaks exactly
/// once. (A QoS 1 message may go to another member, and one not yet sent should.)
#[test]
fn a_shared_qos2_message_sent_to_a_member_that_leaves_goes_to_no_other_member_mqtt_4_8_2_5() {
    let world = World::new();
    let mut a = world.client(connect(V5, "a"));
    let mut b = world.client(connect(V5, "b"));
    a.subscribe(vec![sub("$share/g/jobs", QoS::ExactlyOnce)], Properties::default(), world.now);
    b.subscribe(vec![sub("$share/g/jobs", QoS::ExactlyOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("jobs", "once", QoS::ExactlyOnce, false), world.now);

    let (mut first, mut second) = (a, b);
    let mut sent = first.publishes(world.now);
    if sent.is_empty() {
        std::mem::swap(&mut first, &mut second);
        sent = first.publishes(world.now);
    }
    assert_eq!(payloads(&sent), ["once"], "one member was sent it");
    assert_eq!(sent[0].qos, QoS::ExactlyOnce);

    // That member's session ends before it answers with PUBREC.
    first.close(CloseKind::Abnormal, world.now);
    assert_eq!(payloads(&second.publishes(world.now)), Vec::<String>::new(), "no other member is sent it");
}

/// A session that becomes persistent when its client reconnects (v5: Clean Start 0 with a
/// Session Expiry Interval above 0 over a session that had none; 3.1.1: Clean Session 0 over a
/// clean session) is restored after a restart, but without what it held before: its
/// subscriptions (and its queued and in-flight messages) were never written, because they were
/// made while it was not persistent, and becoming persistent writes only the session's record.
#[test]
fn a_session_that_becomes_persistent_keeps_its_subscriptions_across_a_restart() {
    let store = std::sync::Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut first = world.client(connect(V5, "c"));
    first.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    // A message waits for it, queued while the session was not persistent.
    world.client(connect(V5, "early")).publish(publish("t", "before", QoS::AtLeastOnce, false), world.now);
    let mut resume = connect(V5, "c");
    resume.clean_start = false;
    resume.properties.session_expiry_interval = Some(3600);
    let (_second, connack) = world.connect(resume.clone()).expect("accepted");
    assert!(connack.session_present);
    first.close(CloseKind::TakenOver, world.now);

    let restarted = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (mut client, connack) = restarted.connect(resume).expect("accepted");
    assert!(connack.session_present, "the persistent session is restored");
    let mut publisher = restarted.client(connect(V5, "p"));
    publisher.publish(publish("t", "after", QoS::AtLeastOnce, false), restarted.now);
    assert_eq!(
        payloads(&client.publishes(restarted.now)),
        ["before", "after"],
        "its queued message and its subscription were restored too"
    );
}

/// MQTT-3.3.2-5 expires only a copy whose onward delivery has not started, and MQTT-4.4.0-1
/// resends every unacknowledged PUBLISH to a resumed session. A message sent to a persistent
/// session and not yet acknowledged is kept past its Message Expiry Interval, in memory and in
/// the store, across restarts (the fuzz target found the store deleting it when the interval
/// passed). A copy of the same message still queued for another session, never sent, expires.
#[test]
fn an_unacknowledged_message_past_its_expiry_is_resent_after_a_restart_mqtt_4_4_0_1() {
    let store = std::sync::Arc::new(MemoryDurability::default());
    let mut world = World::with_store(&store);
    let mut persistent = connect(V5, "s");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(3600);
    let mut subscriber = world.client(persistent.clone());
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    let mut expiring = publish("t", "brief", QoS::AtLeastOnce, false);
    expiring.properties.message_expiry_interval = Some(5);
    publisher.publish(expiring, world.now);
    assert_eq!(payloads(&subscriber.publishes(world.now)), ["brief"], "sent, not acknowledged");
    world.advance(std::time::Duration::from_secs(10));

    let restarted = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (mut client, connack) = restarted.connect(persistent.clone()).expect("accepted");
    assert!(connack.session_present);
    let resent = client.publishes(restarted.now);
    assert_eq!(payloads(&resent), ["brief"], "the unacknowledged message is resent");
    assert!(resent[0].dup);

    let again = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (mut client, _) = again.connect(persistent).expect("accepted");
    assert_eq!(payloads(&client.publishes(again.now)), ["brief"], "and after a second restart");
}

#[test]
fn an_expired_message_queued_and_never_sent_is_dropped_after_a_restart_mqtt_3_3_2_5() {
    let store = std::sync::Arc::new(MemoryDurability::default());
    let mut world = World::with_store(&store);
    let persistent = persistent(V5, "s");
    let mut subscriber = world.client(persistent.clone());
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    subscriber.close(CloseKind::Normal, world.now);
    let mut publisher = world.client(connect(V5, "p"));
    let mut expiring = publish("t", "brief", QoS::AtLeastOnce, false);
    expiring.properties.message_expiry_interval = Some(5);
    publisher.publish(expiring, world.now);
    publisher.publish(publish("t", "lasting", QoS::AtLeastOnce, false), world.now);
    world.advance(std::time::Duration::from_secs(10));

    let restarted = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (mut client, connack) = restarted.connect(persistent).expect("accepted");
    assert!(connack.session_present);
    assert_eq!(payloads(&client.publishes(restarted.now)), ["lasting"], "the expired one is not sent");
}

/// A QoS 2 message sent before a restart and not yet answered is restored as queued (sending
/// is not journaled), and goes out again with DUP once the client's window allows. A PUBREC
/// the client sends for it before that (one it answers late, a manual acknowledgement) meets an
/// id the broker does not know: it answers PUBREL with 0x92, the client takes the id as
/// released, and the resent PUBLISH that follows is a new message to it: delivered twice
/// (MQTT-4.3.3-6: after PUBREC the PUBLISH is not sent again).
#[test]
fn a_pubrec_for_a_message_restored_after_a_restart_is_honoured_mqtt_4_3_3_6() {
    let store = std::sync::Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut persistent = connect(V5, "s");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(3600);
    let mut subscriber = world.client(persistent.clone());
    subscriber.subscribe(vec![sub("t", QoS::ExactlyOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("t", "once", QoS::ExactlyOnce, false), world.now);
    let sent = subscriber.publishes(world.now);
    assert_eq!(payloads(&sent), ["once"]);
    let id = sent[0].packet_id.expect("QoS 2");

    let restarted = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (mut client, connack) = restarted.connect(persistent).expect("accepted");
    assert!(connack.session_present);
    // The client answers the PUBLISH it had before the restart.
    client.send(midge_codec::Packet::PubRec(midge_codec::PubResponse::success(id)), restarted.now).unwrap();
    match client.recv(restarted.now) {
        Some(midge_codec::Packet::PubRel(release)) => {
            assert_eq!(release.reason, midge_codec::ReasonCode::SUCCESS, "the PUBREC is for a message in flight")
        }
        other => panic!("expected PUBREL, got {other:?}"),
    }
    assert_eq!(payloads(&client.publishes(restarted.now)), Vec::<String>::new(), "not sent again after PUBREC");
}

/// A session resumed with a Session Expiry Interval of 0 ends when its network connection
/// closes (MQTT 5.0 section 3.1.2.11.2), a server shutdown included. When it was persistent
/// before, its records stay in the store, with the old interval, until it ends some other way;
/// after a restart the broker restores it, and the client is told Session Present for a session
/// that ended (MQTT-3.2.2-2), whose in-flight state since it stopped being persistent is gone.
#[test]
fn a_session_resumed_with_expiry_0_does_not_outlive_a_restart() {
    let store = std::sync::Arc::new(MemoryDurability::default());
    let world = World::with_store(&store);
    let mut persistent = connect(V5, "c");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(3600);
    let mut first = world.client(persistent.clone());
    first.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut clean_end = connect(V5, "c");
    clean_end.clean_start = false; // resumes the session, which now ends with the connection
    let (mut second, connack) = world.connect(clean_end).expect("accepted");
    assert!(connack.session_present);
    first.close(CloseKind::TakenOver, world.now);
    second.close(CloseKind::ServerShutdown, world.now);

    let restarted = World::with_store(&std::sync::Arc::new(store.reopened()));
    let (_client, connack) = restarted.connect(persistent).expect("accepted");
    assert!(!connack.session_present, "the session ended with its last connection");
}
