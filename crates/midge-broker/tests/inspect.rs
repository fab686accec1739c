//! The operator's view of the core (`Broker::sessions`, `session`, `kick_client`,
//! `retained_matching`), which the server's HTTP API shows: copies of what the broker holds.

mod harness;

use harness::*;
use midge_broker::{CloseKind, SubscriptionView};
use midge_codec::{Properties, QoS};

#[test]
fn sessions_show_connection_subscriptions_and_queues() {
    let world = World::new();
    let mut reader = world.client(persistent(V5, "reader"));
    reader.subscribe(vec![sub("a/#", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V311, "publisher"));
    reader.close(CloseKind::Normal, world.now);
    publisher.publish(publish("a/1", "queued", QoS::AtLeastOnce, false), world.now);

    let view = world.broker.session("reader").expect("a persistent session stays");
    assert!(!view.connected);
    assert_eq!((view.expiry_interval, view.queued, view.inflight), (3600, 1, 0));
    assert_eq!(view.subscriptions, [SubscriptionView { filter: "a/#".into(), qos: QoS::AtLeastOnce }]);
    let connected: Vec<_> = world.broker.sessions(true, 10).into_iter().map(|view| view.client_id).collect();
    assert_eq!(connected, ["publisher".into()]);
    assert_eq!(world.broker.sessions(false, 10).len(), 2);
    assert_eq!(world.broker.sessions(false, 1).len(), 1, "the limit");
    assert!(world.broker.session("nobody").is_none());
}

#[test]
fn a_kicked_client_is_told_to_go_and_an_absent_one_is_not_found() {
    let world = World::new();
    let publisher = world.client(connect(V5, "publisher"));
    assert!(world.broker.kick_client("publisher"));
    assert!(publisher.connection.as_ref().unwrap().kick().is_kicked());
    assert!(!world.broker.kick_client("nobody"));
}

#[test]
fn retained_messages_are_found_by_filter_within_the_limit() {
    let world = World::new();
    let mut publisher = world.client(connect(V311, "publisher"));
    for topic in ["r/1", "r/2", "other"] {
        publisher.publish(publish(topic, "kept", QoS::AtLeastOnce, true), world.now);
    }
    let topics = |filter: &str, limit| -> Vec<String> {
        let mut found: Vec<String> = world
            .broker
            .retained_matching(filter, world.now, limit)
            .iter()
            .map(|message| message.topic.to_string())
            .collect();
        found.sort();
        found
    };
    assert_eq!(topics("r/#", 10), ["r/1", "r/2"]);
    assert_eq!(topics("r/2", 10), ["r/2"]);
    assert_eq!(topics("#", 1).len(), 1);
}
