//! The core's named limits against greedy clients (issue 13, docs/limits.md): each refuses
//! with its reason code, counts the refusal, and leaves everyone else alone.

mod harness;

use harness::*;
use midge_broker::{CloseKind, Limits};
use midge_codec::{Properties, QoS, ReasonCode};

#[test]
fn max_sessions_refuses_a_new_session_but_never_a_returning_client() {
    let world = World::with(Limits { max_sessions: 2, ..Limits::default() });
    // An offline persistent session counts: it waits for its client.
    world.client(persistent(V5, "away")).close(CloseKind::Normal, world.now);
    let _here = world.client(connect(V5, "here"));
    assert_eq!(world.broker.session_count(), 2);

    let Err(refused) = world.connect(connect(V5, "third")) else { panic!("a third session is accepted") };
    assert_eq!(refused.reason, ReasonCode::QUOTA_EXCEEDED);
    assert!(refused.properties.reason_string.is_some(), "v5 is told why");
    let Err(refused) = world.connect(connect(V311, "fourth")) else { panic!("accepted in 3.1.1") };
    assert_eq!(refused.reason, ReasonCode::QUOTA_EXCEEDED, "encoded as 3.1.1's 'server unavailable'");
    assert_eq!(world.broker.stats().limits.max_sessions.get(), 2);

    // Resuming its session, or replacing it with a clean start, takes no new place.
    let (_back, connack) = world.connect(persistent(V5, "away")).expect("the away client returns");
    assert!(connack.session_present);
    let _again = world.client(connect(V5, "here"));
    assert_eq!(world.broker.session_count(), 2);
}

#[test]
fn max_retained_refuses_a_new_retained_topic_with_quota_exceeded_and_delivers_nothing() {
    let world = World::with(Limits { max_retained_messages: 2, max_retained_bytes: 100, ..Limits::default() });
    let mut watcher = world.client(connect(V5, "watcher"));
    watcher.subscribe(vec![sub("r/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "publisher"));
    for topic in ["r/1", "r/2"] {
        let ack = publisher.publish(publish(topic, "kept", QoS::AtLeastOnce, true), world.now).unwrap();
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
    }
    let ack = publisher.publish(publish("r/3", "refused", QoS::AtLeastOnce, true), world.now).unwrap();
    assert_eq!(ack.reason, ReasonCode::QUOTA_EXCEEDED);
    let rec = publisher.publish(publish("r/4", "refused", QoS::ExactlyOnce, true), world.now).unwrap();
    assert_eq!(rec.reason, ReasonCode::QUOTA_EXCEEDED, "PUBREC with an error ends the exchange");
    assert_eq!(world.broker.retained_count(), 2);
    assert_eq!(world.broker.stats().limits.max_retained.get(), 2);

    // Replacing within the bytes and clearing are never refused; nor are unretained messages.
    let ack = publisher.publish(publish("r/1", "new value", QoS::AtLeastOnce, true), world.now).unwrap();
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let big = "x".repeat(100);
    let ack = publisher.publish(publish("r/2", &big, QoS::AtLeastOnce, true), world.now).unwrap();
    assert_eq!(ack.reason, ReasonCode::QUOTA_EXCEEDED, "a replacement beyond max_retained_bytes");
    publisher.publish(publish("r/2", "", QoS::AtLeastOnce, true), world.now).unwrap();
    publisher.publish(publish("r/3", "plain", QoS::AtLeastOnce, false), world.now).unwrap();
    let ack = publisher.publish(publish("r/3", "now there is room", QoS::AtLeastOnce, true), world.now).unwrap();
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        payloads(&watcher.publishes(world.now)),
        ["kept", "kept", "new value", "", "plain", "now there is room"],
        "refused messages are not delivered"
    );

    // 3.1.1 cannot be told: acknowledged as usual, still neither retained nor delivered.
    let mut old = world.client(connect(V311, "old"));
    let ack = old.publish(publish("r/5", "refused", QoS::AtLeastOnce, true), world.now).unwrap();
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(watcher.publishes(world.now).is_empty());
    assert_eq!(world.broker.retained_count(), 2);
}

#[test]
fn max_topic_length_refuses_long_topics_and_filters() {
    let world = World::with(Limits { max_topic_length: 8, ..Limits::default() });
    let mut client = world.client(connect(V5, "c"));
    let reasons = client.subscribe(
        vec![sub("a/b", QoS::AtMostOnce), sub("a/long/filter", QoS::AtMostOnce)],
        Properties::default(),
        world.now,
    );
    assert_eq!(reasons, [ReasonCode::SUCCESS, ReasonCode::TOPIC_FILTER_INVALID]);
    let mut packet = publish("a/long/topic", "x", QoS::AtMostOnce, false);
    packet.packet_id = None;
    let violation = client.send(midge_codec::Packet::Publish(packet), world.now).unwrap_err();
    assert_eq!(violation.reason, ReasonCode::TOPIC_NAME_INVALID);
    assert_eq!(world.broker.stats().limits.topic_limits.get(), 2);
}

#[test]
fn max_subscriptions_per_client_is_counted() {
    let world = World::with(Limits { max_subscriptions_per_client: 2, ..Limits::default() });
    let mut client = world.client(connect(V5, "c"));
    let filters = ["a", "b", "c", "d"].map(|f| sub(f, QoS::AtMostOnce)).to_vec();
    let reasons = client.subscribe(filters, Properties::default(), world.now);
    assert_eq!(reasons[2..], [ReasonCode::QUOTA_EXCEEDED, ReasonCode::QUOTA_EXCEEDED]);
    assert_eq!(world.broker.stats().limits.max_subscriptions_per_client.get(), 2);
}

/// docs/limits.md's memory budget rests on these: greedy clients push every bound at once,
/// and the broker's own accounting stays within what the limits allow.
#[test]
fn greedy_clients_fill_every_bound_and_the_accounting_stays_within_it() {
    let limits = Limits {
        max_sessions: 20,
        max_subscriptions_per_client: 5,
        max_queued_messages: 10,
        max_queued_bytes: 0,
        max_inflight_messages: 4,
        max_offline_messages: 30,
        max_retained_messages: 15,
        max_retained_bytes: 600,
        ..Limits::default()
    };
    let world = World::with(limits.clone());
    let mut clients = Vec::new();
    // 40 clients try for 20 sessions; each subscribes to 10 filters; half never read.
    for i in 0..40 {
        if let Ok((mut client, _)) = world.connect(connect(V5, &format!("greedy-{i}"))) {
            let filters = (0..10).map(|f| sub(&format!("flood/{f}"), QoS::AtLeastOnce)).collect();
            client.subscribe(filters, Properties::default(), world.now);
            clients.push(client);
        }
    }
    assert_eq!(clients.len(), 20);
    // A flood of QoS 0 and QoS 1 messages (and retained ones, each to a new topic) to all.
    let mut publisher = clients.pop().unwrap();
    for n in 0..200 {
        let topic = format!("flood/{}", n % 5);
        publisher.publish(publish(&topic, "0123456789", QoS::AtLeastOnce, false), world.now);
        publisher.publish(publish(&format!("retained/{n}"), "0123456789", QoS::AtLeastOnce, true), world.now);
        // Half the subscribers read (and acknowledge) as they go; the others never do.
        for reader in clients.iter_mut().step_by(2) {
            for got in reader.publishes(world.now) {
                if let Some(id) = got.packet_id {
                    reader.send(midge_codec::Packet::PubAck(midge_codec::PubResponse::success(id)), world.now).unwrap();
                }
            }
        }
    }
    let held = world.broker.accounting();
    assert_eq!(held.sessions, 20);
    assert!(held.most_subscriptions <= limits.max_subscriptions_per_client, "{held:?}");
    assert!(held.longest_queue <= limits.hard_queued_messages(), "{held:?}");
    // Every session is in one bucket of the queue lengths, the longest in the highest one used.
    assert_eq!(held.queue_lengths.iter().sum::<usize>(), 20, "{held:?}");
    let highest = held.queue_lengths.iter().rposition(|&n| n > 0).unwrap();
    let bucket = midge_broker::QUEUE_LENGTH_BUCKETS.partition_point(|&bound| bound < held.longest_queue);
    assert_eq!(highest, bucket, "{held:?}");
    assert!(held.inflight <= 20 * usize::from(limits.max_inflight_messages), "{held:?}");
    assert!(held.retained_messages <= limits.max_retained_messages, "{held:?}");
    assert!(held.retained_bytes <= limits.max_retained_bytes, "{held:?}");
    let refused = &world.broker.stats().limits;
    assert!(refused.max_sessions.get() == 20 && refused.max_subscriptions_per_client.get() > 0);
    assert!(refused.max_retained.get() > 0);
}
