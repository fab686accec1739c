//! The core's ports driven without sockets: an authenticator that answers later, an authorizer
//! checked on publish, subscribe, delivery and wills, and a sink that takes messages as values.

mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use harness::*;
use midge_broker::ports::access::{Action, Authorizer};
use midge_broker::ports::auth::Identity;
use midge_broker::ports::egress::Egress;
use midge_broker::{CloseKind, ConnectContext, Outgoing, Queued};
use midge_codec::{MqttString, Packet, Properties, QoS, ReasonCode};

/// Authentication decided later (as a password hash off the runtime or an HTTP call would) is
/// what CONNACK answers with: a wrong password is refused with its reason code, the right one
/// connects.
#[test]
fn a_later_verdict_decides_before_connack() {
    let world = World::new();
    for (version, password, expected) in [
        (V5, "wrong", Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD)),
        (V311, "wrong", Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD)),
        (V5, "secret", None),
    ] {
        let mut packet = connect(version, "device");
        packet.username = Some(MqttString::new("user").unwrap());
        packet.password = Some(bytes::Bytes::from(password));
        let outcome = world.connect_through(packet, &LaterAuthenticator, &ConnectContext::default());
        match (outcome, expected) {
            (Err(connack), Some(code)) => assert_eq!(connack.reason, code, "{version:?} {password}"),
            (Ok((_, connack)), None) => assert_eq!(connack.reason, ReasonCode::SUCCESS),
            (Ok(_), Some(code)) => panic!("{version:?} {password}: accepted, expected {code}"),
            (Err(connack), None) => panic!("{version:?} {password}: refused with {}", connack.reason),
        }
    }
}

/// Anonymous clients are let in only where the listener allows them (today's rule).
#[test]
fn anonymous_only_refuses_without_allow_anonymous() {
    use midge_broker::ports::auth::AnonymousOnly;
    let world = World::new();
    let closed = AnonymousOnly { allow_anonymous: false };
    let refused = world.connect_through(connect(V5, "anon"), &closed, &ConnectContext::default()).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::NOT_AUTHORIZED);
    let mut named = connect(V311, "named");
    named.username = Some(MqttString::new("u").unwrap());
    let refused = world.connect_through(named, &closed, &ConnectContext::default()).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

/// Rules for the tests: "user" may publish and read `open/#` only; nobody may touch `secret/#`;
/// everyone else may do everything. Counts the questions, to show answers are cached.
#[derive(Debug, Default)]
struct Rules {
    asked: AtomicU64,
    generation: AtomicU64,
}

impl Authorizer for Rules {
    fn allows(&self, identity: &Identity, _client_id: &str, action: Action, topic: &str) -> bool {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if topic.starts_with("secret") {
            return false;
        }
        match identity.username.as_deref() {
            Some("user") => {
                topic.starts_with("open")
                    || (action == Action::Subscribe && (topic == "#" || topic.starts_with("$share/")))
            }
            _ => true,
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn with_rules(world: &World, rules: &Arc<Rules>, version: midge_codec::ProtocolVersion, id: &str) -> Client {
    let mut packet = connect(version, id);
    packet.username = Some(MqttString::new("user").unwrap());
    packet.password = Some(bytes::Bytes::from("secret"));
    let context = ConnectContext { peer: "test".into(), authorizer: Some(Arc::clone(rules) as Arc<dyn Authorizer>) };
    world.connect_through(packet, &LaterAuthenticator, &context).expect("accepted").0
}

/// A publish the client may not make is not routed: v5 is told 0x87 in PUBACK and PUBREC,
/// 3.1.1 is acknowledged as usual (it has no code for it), as mosquitto does.
#[test]
fn a_refused_publish_is_not_routed_and_v5_is_told_0x87() {
    let world = World::new();
    let rules = Arc::new(Rules::default());
    let mut reader = world.client(connect(V5, "reader"));
    reader.subscribe(vec![sub("#", QoS::ExactlyOnce)], Properties::default(), world.now);
    for version in [V5, V311] {
        let mut writer = with_rules(&world, &rules, version, "writer");
        let ack = writer.publish(publish("closed/1", "no", QoS::AtLeastOnce, false), world.now).unwrap();
        let rec = writer.publish(publish("closed/2", "no", QoS::ExactlyOnce, false), world.now).unwrap();
        writer.publish(publish("closed/0", "no", QoS::AtMostOnce, false), world.now);
        let expected = if version.is_v5() { ReasonCode::NOT_AUTHORIZED } else { ReasonCode::SUCCESS };
        assert_eq!((ack.reason, rec.reason), (expected, expected), "{version:?}");
        assert!(reader.publishes(world.now).is_empty(), "{version:?}: refused messages were routed");
        writer.publish(publish("open/1", "yes", QoS::AtLeastOnce, false), world.now);
        assert_eq!(payloads(&reader.publishes(world.now)), ["yes"]);
        writer.close(CloseKind::Normal, world.now);
    }
}

/// A filter the client may not subscribe to is refused with 0x87 (3.1.1: 0x80, which the codec
/// writes for any failure), the others in the same SUBSCRIBE are granted.
#[test]
fn a_refused_subscription_gets_0x87_and_the_others_are_granted() {
    let world = World::new();
    let rules = Arc::new(Rules::default());
    let mut client = with_rules(&world, &rules, V5, "sub");
    let reasons = client.subscribe(
        vec![sub("secret/#", QoS::AtLeastOnce), sub("open/#", QoS::AtLeastOnce)],
        Properties::default(),
        world.now,
    );
    assert_eq!(reasons, [ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_1]);
}

/// Delivery is checked against the reader's rights when a message is sent, so a wide filter
/// does not reach what the reader may not read: not live messages, not retained ones.
#[test]
fn delivery_is_checked_against_the_readers_rights_retained_included() {
    let world = World::new();
    let rules = Arc::new(Rules::default());
    let mut publisher = world.client(connect(V5, "anyone"));
    publisher.publish(publish("closed/retained", "hidden", QoS::AtLeastOnce, true), world.now);
    publisher.publish(publish("open/retained", "shown", QoS::AtLeastOnce, true), world.now);
    let mut reader = with_rules(&world, &rules, V5, "reader");
    reader.subscribe(vec![sub("#", QoS::AtLeastOnce)], Properties::default(), world.now);
    assert_eq!(payloads(&reader.publishes(world.now)), ["shown"], "retained: only what the reader may read");
    publisher.publish(publish("closed/live", "hidden", QoS::AtMostOnce, false), world.now);
    publisher.publish(publish("open/live", "live", QoS::AtMostOnce, false), world.now);
    assert_eq!(payloads(&reader.publishes(world.now)), ["live"]);
    let asked = rules.asked.load(Ordering::SeqCst);
    publisher.publish(publish("open/live", "again", QoS::AtMostOnce, false), world.now);
    assert_eq!(payloads(&reader.publishes(world.now)), ["again"]);
    assert_eq!(rules.asked.load(Ordering::SeqCst), asked, "the answer for a topic is cached");
    rules.generation.fetch_add(1, Ordering::SeqCst); // a reload
    publisher.publish(publish("open/live", "after", QoS::AtMostOnce, false), world.now);
    reader.publishes(world.now);
    assert!(rules.asked.load(Ordering::SeqCst) > asked, "a new generation drops the cache");
}

/// A will is checked against the client's rights when it is published.
#[test]
fn a_will_the_client_may_not_publish_is_not_published() {
    let world = World::new();
    let rules = Arc::new(Rules::default());
    let mut watcher = world.client(connect(V5, "watcher"));
    watcher.subscribe(vec![sub("#", QoS::AtMostOnce)], Properties::default(), world.now);
    for (topic, published) in [("closed/will", false), ("open/will", true)] {
        let mut packet = connect(V5, "dying");
        packet.username = Some(MqttString::new("user").unwrap());
        packet.password = Some(bytes::Bytes::from("secret"));
        packet.will = Some(will(topic, "gone", QoS::AtMostOnce, false));
        let context =
            ConnectContext { peer: "test".into(), authorizer: Some(Arc::clone(&rules) as Arc<dyn Authorizer>) };
        let (mut dying, _) = world.connect_through(packet, &LaterAuthenticator, &context).expect("accepted");
        dying.close(CloseKind::Abnormal, world.now);
        assert_eq!(!watcher.publishes(world.now).is_empty(), published, "{topic}");
    }
}

/// A sink that is not an MQTT socket: it collects messages as values and acknowledges them.
#[derive(Default)]
struct Collector {
    got: Vec<(String, QoS, Option<midge_codec::PacketId>)>,
    room: usize,
}

impl Egress for Collector {
    fn accepts(&mut self, _item: &Queued, _now: Instant) -> bool {
        true
    }

    fn send(&mut self, outgoing: Outgoing, _now: Instant) -> bool {
        match outgoing {
            Outgoing::Publish { item, packet_id, .. } => {
                let payload = String::from_utf8_lossy(&item.message.payload).into_owned();
                self.got.push((payload, item.qos, packet_id));
                true
            }
            Outgoing::PubRel(_) => false,
        }
    }

    fn has_room(&self) -> bool {
        self.got.len() < self.room
    }
}

/// A session's messages reach a non-MQTT sink as values, within the in-flight window; QoS 1
/// ones stay in flight until the sink acknowledges them.
#[test]
fn a_sink_takes_messages_as_values_within_the_window() {
    let world = World::with(midge_broker::Limits { max_inflight_messages: 2, ..Default::default() });
    let mut subscriber = world.client(connect(V5, "sink"));
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for i in 0..3 {
        publisher.publish(publish("t", &format!("m{i}"), QoS::AtLeastOnce, false), world.now);
    }
    let connection = subscriber.connection.as_mut().expect("connected");
    let mut sink = Collector { room: 10, ..Collector::default() };
    connection.drain_to(world.now, &mut sink);
    let taken: Vec<&str> = sink.got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(taken, ["m0", "m1"], "two in flight");
    assert!(sink.got.iter().all(|(_, qos, id)| *qos == QoS::AtLeastOnce && id.is_some()));
    connection.acknowledge(sink.got[0].2.unwrap());
    connection.drain_to(world.now, &mut sink);
    assert_eq!(sink.got.last().map(|(p, _, _)| p.as_str()), Some("m2"), "acknowledged: room for the next");
    assert!(subscriber.recv_all(world.now).iter().all(|p| !matches!(p, Packet::Publish(_))), "no MQTT bytes");
}

/// A persistent session resumed by a client whose sink is not MQTT gets its unacknowledged
/// messages again as values, marked as resends (MQTT-4.4.0-1), before anything new.
#[test]
fn a_sink_is_handed_the_resends_of_a_resumed_session() {
    let world = World::new();
    let mut subscriber = world.client(persistent(V311, "sleepy"));
    subscriber.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("t", "once", QoS::AtLeastOnce, false), world.now);
    let mut sink = Collector { room: 10, ..Collector::default() };
    subscriber.connection.as_mut().expect("connected").drain_to(world.now, &mut sink);
    assert_eq!(sink.got.len(), 1, "sent, not acknowledged");
    subscriber.close(CloseKind::Abnormal, world.now);

    let (mut back, connack) = world.connect(persistent(V311, "sleepy")).expect("accepted");
    assert!(connack.session_present);
    let mut again = Collector { room: 10, ..Collector::default() };
    back.connection.as_mut().expect("connected").resume_to(world.now, &mut again);
    assert_eq!(again.got, sink.got, "the same message, with the same packet id");
}

/// A message that comes without a connection (an MQTT-SN PUBLISH at QoS -1) reaches the
/// subscribers at QoS 0, and is refused above QoS 0 or beyond the topic limits.
#[test]
fn a_message_without_a_connection_is_published_at_qos_0() {
    let world = World::with(midge_broker::Limits { max_topic_levels: 3, ..Default::default() });
    let mut subscriber = world.client(connect(V311, "s"));
    subscriber.subscribe(vec![sub("#", QoS::AtLeastOnce)], Properties::default(), world.now);
    world.broker.publish_unconnected(&publish("sensors/1", "21.5", QoS::AtMostOnce, false), "peer", world.now).unwrap();
    let got = subscriber.publishes(world.now);
    assert_eq!(payloads(&got), ["21.5"]);
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    let qos1 = publish("sensors/1", "x", QoS::AtLeastOnce, false);
    assert!(world.broker.publish_unconnected(&qos1, "peer", world.now).is_err());
    let deep = publish("a/b/c/d", "x", QoS::AtMostOnce, false);
    assert!(world.broker.publish_unconnected(&deep, "peer", world.now).is_err());
    assert!(subscriber.publishes(world.now).is_empty(), "nothing refused was delivered");
}

/// A connection's will replaced after CONNECT (an MQTT-SN will update) is the one published;
/// one the limits refuse leaves the will as it was; a deleted one is not published.
#[test]
fn a_will_set_after_connect_is_the_one_published() {
    let world = World::with(midge_broker::Limits { max_qos: 1, ..Default::default() });
    let mut watcher = world.client(connect(V311, "watcher"));
    watcher.subscribe(vec![sub("w/#", QoS::AtMostOnce)], Properties::default(), world.now);
    let mut client = world.client(connect(V311, "updated"));
    let connection = client.connection.as_mut().expect("connected");
    assert!(connection.will().is_none());
    connection.set_will(Some(will("w/new", "late will", QoS::AtMostOnce, false)), world.now).unwrap();
    let refused = connection.set_will(Some(will("w/qos2", "x", QoS::ExactlyOnce, false)), world.now);
    assert!(refused.is_err(), "QoS 2 is above max_qos");
    assert_eq!(connection.will().map(|w| w.topic.as_str()), Some("w/new"));
    client.close(CloseKind::Abnormal, world.now);
    assert_eq!(payloads(&watcher.publishes(world.now)), ["late will"]);

    let mut packet = connect(V311, "deleted");
    packet.will = Some(will("w/gone", "x", QoS::AtMostOnce, false));
    let mut deleted = world.client(packet);
    deleted.connection.as_mut().expect("connected").set_will(None, world.now).unwrap();
    deleted.close(CloseKind::Abnormal, world.now);
    assert!(watcher.publishes(world.now).is_empty(), "the deleted will was not published");
}

/// A client marked asleep paces nobody: its session keeps its messages up to the queue's bound
/// and drops (counts) the rest; awake, it gets what was kept, and its queue paces again.
#[test]
fn a_sleeping_client_keeps_its_bound_and_paces_nobody() {
    let world = World::with(midge_broker::Limits { max_queued_messages: 2, ..Default::default() });
    let mut sleeper = world.client(connect(V311, "sleeper"));
    sleeper.subscribe(vec![sub("t", QoS::AtLeastOnce)], Properties::default(), world.now);
    sleeper.connection.as_ref().expect("connected").set_asleep(true);
    let mut publisher = world.client(connect(V311, "p"));
    for i in 0..5 {
        let congestion = publisher.publish_read(publish("t", &format!("m{i}"), QoS::AtLeastOnce, false), world.now);
        assert!(congestion.is_empty(), "nobody is paced for a sleeping client");
    }
    assert_eq!(world.broker.stats().messages_dropped.get(), 3, "the bound kept two");
    sleeper.connection.as_ref().expect("connected").set_asleep(false);
    assert_eq!(payloads(&sleeper.publishes(world.now)), ["m0", "m1"]);
    let paced = (5..8).any(|i| {
        !publisher.publish_read(publish("t", &format!("m{i}"), QoS::AtLeastOnce, false), world.now).is_empty()
    });
    assert!(paced, "awake, a full queue paces its publishers again");
}

/// A routing target that is not a local session: it records what it is forwarded.
#[derive(Debug, Default)]
struct Recorder {
    got: std::sync::Mutex<Vec<(String, QoS, Vec<u32>)>>,
}

/// The broker's handle on a shared [`Recorder`].
#[derive(Debug)]
struct RecorderHandle(Arc<Recorder>);

impl midge_broker::ports::remote::RemoteTarget for RecorderHandle {
    fn forward(&self, delivery: Queued) {
        let payload = String::from_utf8_lossy(&delivery.message.payload).into_owned();
        self.0.got.lock().unwrap().push((payload, delivery.qos, delivery.subscription_ids.to_vec()));
    }
}

/// A remote target subscribed beside a local session gets each matching message once (its
/// overlapping filters merged, at its granted QoS), and is a member of a shared group like a
/// session: the group's messages alternate between the local and the remote member.
#[test]
fn a_remote_target_is_routed_to_beside_local_sessions() {
    use midge_codec::{SubscriptionOptions, TopicFilter};
    let world = World::new();
    let recorder = Arc::new(Recorder::default());
    let remote = world.broker.remote_target(Box::new(RecorderHandle(Arc::clone(&recorder))));
    let qos1 = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    for filter in ["a/#", "a/+", "$share/g/jobs"] {
        let granted = world.broker.subscribe_remote(&remote, &TopicFilter::new(filter).unwrap(), qos1);
        assert_eq!(granted, ReasonCode::GRANTED_QOS_1);
    }
    let mut local = world.client(connect(V5, "local"));
    local.subscribe(
        vec![sub("a/#", QoS::AtMostOnce), sub("$share/g/jobs", QoS::AtMostOnce)],
        Properties::default(),
        world.now,
    );
    let mut publisher = world.client(connect(V5, "p"));
    publisher.publish(publish("a/b", "both", QoS::ExactlyOnce, false), world.now);
    assert_eq!(payloads(&local.publishes(world.now)), ["both"]);
    let got: Vec<_> = recorder.got.lock().unwrap().drain(..).collect();
    assert_eq!(got, [("both".to_owned(), QoS::AtLeastOnce, vec![])], "once, though two filters match");

    for i in 0..4 {
        publisher.publish(publish("jobs", &format!("job{i}"), QoS::AtMostOnce, false), world.now);
    }
    let to_local = payloads(&local.publishes(world.now));
    let to_remote: Vec<String> = recorder.got.lock().unwrap().drain(..).map(|(payload, _, _)| payload).collect();
    assert_eq!((to_local.len(), to_remote.len()), (2, 2), "in turn: {to_local:?} {to_remote:?}");

    assert!(world.broker.unsubscribe_remote(&remote, &TopicFilter::new("a/#").unwrap()));
    assert!(world.broker.unsubscribe_remote(&remote, &TopicFilter::new("a/+").unwrap()));
    publisher.publish(publish("a/b", "local only", QoS::AtMostOnce, false), world.now);
    assert!(recorder.got.lock().unwrap().is_empty(), "unsubscribed");
}

/// A shared-subscription message given to a member that may not read it goes to another member
/// of the group instead of being lost (MQTT 5.0 section 4.8.2: each message to one member).
#[test]
fn a_shared_message_a_member_may_not_read_goes_to_another_member() {
    let world = World::new();
    let rules = Arc::new(Rules::default());
    let mut restricted = with_rules(&world, &rules, V5, "restricted");
    restricted.subscribe(vec![sub("$share/g/jobs", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut reader = world.client(connect(V5, "reader"));
    reader.subscribe(vec![sub("$share/g/jobs", QoS::AtLeastOnce)], Properties::default(), world.now);
    let mut publisher = world.client(connect(V5, "p"));
    for i in 0..4 {
        publisher.publish(publish("jobs", &format!("job{i}"), QoS::AtLeastOnce, false), world.now);
        assert!(restricted.publishes(world.now).is_empty(), "the restricted member may not read jobs");
    }
    let mut got = payloads(&reader.publishes(world.now));
    got.sort();
    assert_eq!(got, ["job0", "job1", "job2", "job3"], "every job reached the member that may read it");
}
