//! Interoperability with rumqttc 0.24, a client nobody on the team wrote, over MQTT 3.1.1 and 5.0.
//!
//! Each scenario is written once, generic over [`Client`], and instantiated per protocol version
//! (`v311_*`, `v5_*`). Every test starts its own broker (`MIDGE_TEST_TARGET=mosquitto` to check the
//! tests against mosquitto) and bounds every wait; none sleeps to synchronise. Spec ids are given
//! as "3.1.1 X / 5.0 Y" where the two versions number the same statement differently.

mod support;

use support::TestBroker;

#[path = "interop_rumqttc/clients.rs"]
mod clients;

use std::collections::HashMap;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

use clients::{payload, Client, Connect, Message, Will, V311, V5};

/// One subscriber holds a QoS 0, a QoS 1 and a QoS 2 subscription (one topic each); a publisher
/// sends a message and then "end" at `pub_qos` to each topic. Each topic must deliver exactly the
/// two messages, in order, unaltered, at min(pub_qos, sub_qos) and with RETAIN 0.
async fn qos_round_trip<C: Client>(pub_qos: u8) {
    let broker = TestBroker::start();
    let (mut subscriber, _) = C::connect(broker.addr, "rt-sub", Connect::default()).await;
    let topic = |sub_qos: u8| format!("rt/pub{pub_qos}/sub{sub_qos}");
    for sub_qos in 0..=2 {
        // 3.1.1 MQTT-3.8.4-5 / 5.0 MQTT-3.8.4-7: the SUBACK shows the granted QoS; a broker with
        // default settings grants what was asked.
        assert_eq!(subscriber.subscribe(&topic(sub_qos), sub_qos).await, sub_qos, "granted QoS");
    }
    let (mut publisher, _) = C::connect(broker.addr, "rt-pub", Connect::default()).await;
    let body = payload(&format!("qos {pub_qos}"));
    for sub_qos in 0..=2 {
        publisher.publish(&topic(sub_qos), &body, pub_qos, false).await;
        publisher.publish(&topic(sub_qos), b"end", pub_qos, false).await;
    }

    let mut received: HashMap<String, Vec<Message>> = HashMap::new();
    for _ in 0..6 {
        let message = subscriber.recv().await;
        received.entry(message.topic.clone()).or_default().push(message);
    }
    for sub_qos in 0..=2 {
        let topic = topic(sub_qos);
        // 3.1.1 MQTT-3.8.4-6 / 5.0 MQTT-3.8.4-8: delivered at the minimum of the two QoS.
        // 3.1.1 MQTT-3.3.1-9 / 5.0 MQTT-3.3.1-12: RETAIN 0 on an established subscription.
        // MQTT-4.6.0-6: one publisher's messages to one topic arrive in order.
        let qos = pub_qos.min(sub_qos);
        let expected = vec![Message::new(&topic, &body, qos, false), Message::new(&topic, b"end", qos, false)];
        assert_eq!(received.get(&topic), Some(&expected), "messages on {topic}");
    }
}

#[tokio::test]
async fn v311_qos0_round_trip() {
    qos_round_trip::<V311>(0).await;
}

#[tokio::test]
async fn v311_qos1_round_trip() {
    qos_round_trip::<V311>(1).await;
}

#[tokio::test]
async fn v311_qos2_round_trip() {
    qos_round_trip::<V311>(2).await;
}

#[tokio::test]
async fn v5_qos0_round_trip() {
    qos_round_trip::<V5>(0).await;
}

#[tokio::test]
async fn v5_qos1_round_trip() {
    qos_round_trip::<V5>(1).await;
}

#[tokio::test]
async fn v5_qos2_round_trip() {
    qos_round_trip::<V5>(2).await;
}

/// A retained message reaches live subscribers with RETAIN 0 and later subscribers with RETAIN 1;
/// a newer retained message replaces it, a non-retained one does not, and an empty retained
/// payload clears it.
async fn retained_lifecycle<C: Client>() {
    let broker = TestBroker::start();
    let (mut live, _) = C::connect(broker.addr, "ret-live", Connect::default()).await;
    live.subscribe("ret/a", 1).await;
    let (mut publisher, _) = C::connect(broker.addr, "ret-pub", Connect::default()).await;

    let first = payload("first");
    let second = payload("second");
    publisher.publish("ret/a", &first, 1, true).await;
    // 3.1.1 MQTT-3.3.1-9 / 5.0 MQTT-3.3.1-12: RETAIN 0 to an established subscription.
    assert_eq!(live.recv().await, Message::new("ret/a", &first, 1, false));
    // 5.0 MQTT-3.3.1-5: a new retained message replaces the old one.
    publisher.publish("ret/a", &second, 1, true).await;
    // 3.1.1 MQTT-3.3.1-12 / 5.0 MQTT-3.3.1-8: a RETAIN 0 message does not replace it.
    publisher.publish("ret/a", b"not retained", 1, false).await;
    assert_eq!(live.recv().await, Message::new("ret/a", &second, 1, false));
    assert_eq!(live.recv().await, Message::new("ret/a", b"not retained", 1, false));

    // 3.1.1 MQTT-3.3.1-5, MQTT-3.3.1-6 / 5.0 MQTT-3.3.1-9: a new subscription, here through a
    // wildcard, gets the last retained message, at min(stored QoS, subscription QoS)...
    // 3.1.1 MQTT-3.3.1-8 / 5.0 §3.3.1.3: ...with RETAIN 1.
    let (mut late, _) = C::connect(broker.addr, "ret-late", Connect::default()).await;
    late.subscribe("ret/+", 2).await;
    assert_eq!(late.recv().await, Message::new("ret/a", &second, 1, true));

    // 3.1.1 MQTT-3.3.1-10: an empty retained payload is forwarded as normal...
    publisher.publish("ret/a", b"", 1, true).await;
    assert_eq!(live.recv().await, Message::new("ret/a", b"", 1, false));
    assert_eq!(late.recv().await, Message::new("ret/a", b"", 1, false));

    // ...and 3.1.1 MQTT-3.3.1-10, MQTT-3.3.1-11 / 5.0 MQTT-3.3.1-6, MQTT-3.3.1-7: it removes the
    // retained message and is not stored itself. Retained messages are sent on SUBSCRIBE, before
    // any later publish, so the first message the new subscriber sees must be the sentinel.
    let (mut after, _) = C::connect(broker.addr, "ret-after", Connect::default()).await;
    after.subscribe("ret/a", 1).await;
    publisher.publish("ret/a", b"sentinel", 1, false).await;
    assert_eq!(after.recv().await, Message::new("ret/a", b"sentinel", 1, false));
}

#[tokio::test]
async fn v311_retained_delivered_replaced_and_cleared() {
    retained_lifecycle::<V311>().await;
}

#[tokio::test]
async fn v5_retained_delivered_replaced_and_cleared() {
    retained_lifecycle::<V5>().await;
}

/// `+` matches exactly one level (an empty one too), `#` the parent and any number of levels.
async fn wildcards<C: Client>() {
    let broker = TestBroker::start();
    let filters = ["wild/+/temp", "wild/#", "wild/+", "#"];
    let mut subscribers = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        let (mut subscriber, _) = C::connect(broker.addr, &format!("wild-sub{i}"), Connect::default()).await;
        subscriber.subscribe(filter, 1).await;
        subscribers.push(subscriber);
    }
    // Each topic with the filters (by index) that match it (MQTT spec §4.7.1).
    let topics: [(&str, &[usize]); 9] = [
        ("wild/kitchen/temp", &[0, 1, 3]),
        ("wild/kitchen/humidity", &[1, 3]),
        ("wild/kitchen/temp/raw", &[1, 3]),
        ("wild", &[1, 3]),
        ("other/kitchen/temp", &[3]),
        ("wild/hall", &[1, 2, 3]),
        ("wild//temp", &[0, 1, 3]),
        ("wild/end/temp", &[0, 1, 3]),
        ("wild/end", &[1, 2, 3]),
    ];
    let (mut publisher, _) = C::connect(broker.addr, "wild-pub", Connect::default()).await;
    for (topic, _) in topics {
        publisher.publish(topic, topic.as_bytes(), 1, false).await;
    }

    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        let mut expected: Vec<&str> = topics.iter().filter(|(_, m)| m.contains(&i)).map(|(t, _)| *t).collect();
        let mut received = Vec::new();
        for _ in 0..expected.len() {
            let message = subscriber.recv().await;
            assert_eq!(message.payload, message.topic.as_bytes(), "payload for {}", message.topic);
            received.push(message.topic);
        }
        // MQTT-3.3.2-3: every topic delivered matches the filter. Order across topics is not
        // promised by the spec, so compare as sets; a non-matching topic published before the
        // last matching one would have taken a matching one's place here.
        received.sort();
        expected.sort();
        assert_eq!(received, expected, "topics delivered for filter {:?}", filters[i]);
    }
}

#[tokio::test]
async fn v311_wildcard_subscriptions() {
    wildcards::<V311>().await;
}

#[tokio::test]
async fn v5_wildcard_subscriptions() {
    wildcards::<V5>().await;
}

/// A persistent session keeps its subscription and queues QoS 1 and QoS 2 messages while its
/// client is offline; the client gets them, in order, when it comes back.
async fn persistent_session_queues<C: Client>() {
    let broker = TestBroker::start();
    let persistent = Connect { persistent: true, ..Connect::default() };
    let (mut subscriber, present) = C::connect(broker.addr, "sess-sub", persistent.clone()).await;
    // 3.1.1 MQTT-3.2.2-3 / 5.0 MQTT-3.2.2-3: no session existed, so Session Present is 0.
    assert!(!present, "Session Present on a first connection");
    subscriber.subscribe("sess/q", 1).await;
    subscriber.disconnect().await;

    let (mut publisher, _) = C::connect(broker.addr, "sess-pub", Connect::default()).await;
    let first = payload("queued 1");
    let second = payload("queued 2");
    publisher.publish("sess/q", &first, 1, false).await;
    publisher.publish("sess/q", &second, 2, false).await;

    let (mut subscriber, present) = C::connect(broker.addr, "sess-sub", persistent).await;
    // 3.1.1 MQTT-3.2.2-2 / 5.0 MQTT-3.2.2-3: the session was kept, so Session Present is 1.
    assert!(present, "Session Present on reconnection");
    // 3.1.1 MQTT-3.1.2-5 / 5.0 MQTT-3.1.2-23: messages that arrived while offline were stored;
    // MQTT-4.6.0-6: in order; 3.1.1 MQTT-3.8.4-6 / 5.0 MQTT-3.8.4-8: at the subscription's QoS.
    assert_eq!(subscriber.recv().await, Message::new("sess/q", &first, 1, false));
    assert_eq!(subscriber.recv().await, Message::new("sess/q", &second, 1, false));
    // 3.1.1 MQTT-3.1.2-4 / 5.0 MQTT-3.1.2-5: the subscription itself was resumed.
    publisher.publish("sess/q", b"live", 1, false).await;
    assert_eq!(subscriber.recv().await, Message::new("sess/q", b"live", 1, false));
}

#[tokio::test]
async fn v311_persistent_session_receives_messages_queued_offline() {
    persistent_session_queues::<V311>().await;
}

#[tokio::test]
async fn v5_persistent_session_receives_messages_queued_offline() {
    persistent_session_queues::<V5>().await;
}

/// Connecting with a clean session discards a stored session and what it had queued.
async fn clean_session_discards<C: Client>() {
    let broker = TestBroker::start();
    let persistent = Connect { persistent: true, ..Connect::default() };
    let (mut subscriber, _) = C::connect(broker.addr, "clean-sub", persistent).await;
    subscriber.subscribe("clean/q", 1).await;
    subscriber.disconnect().await;
    let (mut publisher, _) = C::connect(broker.addr, "clean-pub", Connect::default()).await;
    publisher.publish("clean/q", b"queued", 1, false).await;

    let (mut subscriber, present) = C::connect(broker.addr, "clean-sub", Connect::default()).await;
    // 3.1.1 MQTT-3.2.2-1 / 5.0 MQTT-3.2.2-2: Session Present is 0 with a clean session.
    assert!(!present, "Session Present with a clean session");
    // 3.1.1 MQTT-3.1.2-6 / 5.0 MQTT-3.1.2-4: the old session, its subscription and its queue are
    // gone. Subscribe again: the first message must be one published after that.
    subscriber.subscribe("clean/q", 1).await;
    publisher.publish("clean/q", b"sentinel", 1, false).await;
    assert_eq!(subscriber.recv().await, Message::new("clean/q", b"sentinel", 1, false));
}

#[tokio::test]
async fn v311_clean_session_discards_stored_session() {
    clean_session_discards::<V311>().await;
}

#[tokio::test]
async fn v5_clean_start_discards_stored_session() {
    clean_session_discards::<V5>().await;
}

/// A client whose TCP connection drops without DISCONNECT has its will published.
async fn will_on_connection_loss<C: Client>(retain: bool) {
    let broker = TestBroker::start();
    let topic = if retain { "will/retained" } else { "will/plain" };
    let (mut watcher, _) = C::connect(broker.addr, "will-watcher", Connect::default()).await;
    watcher.subscribe(topic, 2).await;
    let will = Will { topic: topic.to_owned(), payload: payload("gone"), qos: 1, retain };
    let how = Connect { will: Some(will.clone()), ..Connect::default() };
    let (doomed, _) = C::connect(broker.addr, "will-doomed", how).await;
    doomed.kill().await;

    // 3.1.1 MQTT-3.1.2-8 / 5.0 MQTT-3.1.2-8: published when the connection closes without
    // DISCONNECT, at the will's QoS, and with RETAIN 0 to an established subscription.
    assert_eq!(watcher.recv().await, Message::new(topic, &will.payload, 1, false));
    if retain {
        // 3.1.1 and 5.0 MQTT-3.1.2-17: Will Retain 1 publishes it as a retained message.
        let (mut late, _) = C::connect(broker.addr, "will-late", Connect::default()).await;
        late.subscribe(topic, 1).await;
        assert_eq!(late.recv().await, Message::new(topic, &will.payload, 1, true));
    }
}

#[tokio::test]
async fn v311_will_published_when_connection_drops() {
    will_on_connection_loss::<V311>(false).await;
}

#[tokio::test]
async fn v5_will_published_when_connection_drops() {
    will_on_connection_loss::<V5>(false).await;
}

#[tokio::test]
async fn v311_retained_will_published_when_connection_drops() {
    will_on_connection_loss::<V311>(true).await;
}

#[tokio::test]
async fn v5_retained_will_published_when_connection_drops() {
    will_on_connection_loss::<V5>(true).await;
}

/// A client that sends DISCONNECT does not have its will published.
async fn no_will_after_disconnect<C: Client>() {
    let broker = TestBroker::start();
    let (mut watcher, _) = C::connect(broker.addr, "nowill-watcher", Connect::default()).await;
    watcher.subscribe("will/kept", 1).await;
    let will = Will { topic: "will/kept".to_owned(), payload: payload("must not appear"), qos: 1, retain: false };
    let how = Connect { will: Some(will), ..Connect::default() };
    let (careful, _) = C::connect(broker.addr, "nowill-careful", how).await;
    // rumqttc keeps its socket open after DISCONNECT, so this waits for the broker to close it
    // (both versions, §3.14.4: the server SHOULD close the connection if the client has not);
    // by then the broker has handled the DISCONNECT.
    careful.disconnect().await;

    // 3.1.1 MQTT-3.14.4-3, MQTT-3.1.2-10 / 5.0 MQTT-3.14.4-3, MQTT-3.1.2-10: the will is
    // discarded. A will would have been routed before this later publish, so the first message
    // on the topic must be the sentinel.
    watcher.publish("will/kept", b"sentinel", 1, false).await;
    assert_eq!(watcher.recv().await, Message::new("will/kept", b"sentinel", 1, false));
}

#[tokio::test]
async fn v311_will_not_published_after_disconnect() {
    no_will_after_disconnect::<V311>().await;
}

#[tokio::test]
async fn v5_will_not_published_after_disconnect() {
    no_will_after_disconnect::<V5>().await;
}

/// The application properties a v5 publisher may set, all of them, some repeated user
/// properties among them.
fn application_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(300),
        response_topic: Some("props/reply/42".to_owned()),
        correlation_data: Some(Bytes::from_static(&[0x00, 0x01, 0xfe, 0xff, b'c'])),
        user_properties: vec![
            ("k1".to_owned(), "v1".to_owned()),
            ("k2".to_owned(), "v2".to_owned()),
            ("k1".to_owned(), "v1 again".to_owned()),
            ("ünï".to_owned(), "cødé €".to_owned()),
        ],
        content_type: Some("application/json; charset=utf-8".to_owned()),
        ..PublishProperties::default()
    }
}

/// Checks that `received` carries what `sent` did, as 5.0 §3.3.2.3 requires.
fn assert_properties_forwarded(received: Option<PublishProperties>, sent: &PublishProperties) {
    let received = received.expect("the forwarded PUBLISH has properties");
    // MQTT-3.3.2-4: Payload Format Indicator unaltered.
    assert_eq!(received.payload_format_indicator, sent.payload_format_indicator, "payload format indicator");
    // MQTT-3.3.2-15: Response Topic unaltered.
    assert_eq!(received.response_topic, sent.response_topic, "response topic");
    // MQTT-3.3.2-16: Correlation Data unaltered.
    assert_eq!(received.correlation_data, sent.correlation_data, "correlation data");
    // MQTT-3.3.2-17, MQTT-3.3.2-18: all User Properties unaltered and in order.
    assert_eq!(received.user_properties, sent.user_properties, "user properties");
    // MQTT-3.3.2-20: Content Type unaltered.
    assert_eq!(received.content_type, sent.content_type, "content type");
    // MQTT-3.3.2-6: Message Expiry Interval = sent value minus the time spent in the broker.
    let expiry = received.message_expiry_interval.expect("message expiry interval forwarded");
    let sent_expiry = sent.message_expiry_interval.unwrap();
    assert!(expiry <= sent_expiry && expiry + 30 >= sent_expiry, "expiry {expiry}, sent {sent_expiry}");
    // §3.3.2.3.8: Subscription Identifiers are sent only for subscriptions that have one.
    assert!(
        received.subscription_identifiers.is_empty(),
        "subscription identifiers {:?}",
        received.subscription_identifiers
    );
}

#[tokio::test]
async fn v5_publish_properties_forwarded_unchanged() {
    let broker = TestBroker::start();
    let (mut subscriber, _) = V5::connect(broker.addr, "props-sub", Connect::default()).await;
    subscriber.subscribe("props/t", 2).await;
    let (mut publisher, _) = V5::connect(broker.addr, "props-pub", Connect::default()).await;
    let sent = application_properties();
    for qos in 0..=2 {
        let body = format!("{{\"qos\":{qos}}}");
        publisher.publish_with_properties("props/t", body.as_bytes(), qos, false, sent.clone()).await;
        let received = subscriber.recv_publish().await;
        assert_eq!(received.payload.as_ref(), body.as_bytes());
        assert_eq!(received.qos as u8, qos);
        assert_properties_forwarded(received.properties, &sent);
    }
}

#[tokio::test]
async fn v5_retained_message_keeps_its_properties() {
    let broker = TestBroker::start();
    let (mut publisher, _) = V5::connect(broker.addr, "rprops-pub", Connect::default()).await;
    let sent = application_properties();
    publisher.publish_with_properties("rprops/t", b"{}", 1, true, sent.clone()).await;
    // 5.0 MQTT-3.3.1-5: the retained Application Message, properties included, reaches a later
    // subscriber.
    let (mut subscriber, _) = V5::connect(broker.addr, "rprops-sub", Connect::default()).await;
    subscriber.subscribe("rprops/t", 1).await;
    let received = subscriber.recv_publish().await;
    assert!(received.retain, "RETAIN 1 on a message sent because of a new subscription");
    assert_eq!(received.payload.as_ref(), b"{}");
    assert_properties_forwarded(received.properties, &sent);
}
