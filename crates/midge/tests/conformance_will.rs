//! Conformance of the Will Message, over raw bytes, for MQTT 3.1, 3.1.1 and 5.0 where the
//! statement applies. Test names carry the 3.1.1 statement id; where 5.0 numbers it differently
//! the doc comment says so. A "watcher" subscribes to the will topic at QoS 2 so that the will's
//! own QoS reaches it unchanged.

mod support;
#[macro_use]
mod conformance_wire;

use std::time::{Duration, Instant};

use conformance_wire::{prop, Client, Connect, Props, Publish, Version, Will, WAIT};
use support::TestBroker;

/// A client subscribed to `topic` at QoS 2.
fn watcher(broker: &TestBroker, v: Version, topic: &str) -> Client {
    let mut watcher = Client::new(broker, v, "watcher");
    assert_eq!(watcher.subscribe(topic, 2), 2);
    watcher
}

/// Shows that no will reached `watcher`: a barrier published on `topic` after the will's
/// connection is gone must be the next message.
fn assert_no_will(broker: &TestBroker, v: Version, watcher: &mut Client, topic: &str) {
    let mut publisher = Client::new(broker, v, "barrier");
    publisher.publish_msg(topic, b"barrier", 1);
    let first = watcher.receive();
    assert_eq!(first.payload, b"barrier", "the will was published: {first:?}");
}

versions! {
    /// Closing the TCP connection without DISCONNECT publishes the will (MQTT-3.1.2-8), as a
    /// non-retained message when Will Retain is 0 (MQTT-3.1.2-16; 5.0: MQTT-3.1.2-15).
    fn will_sent_on_close_without_disconnect_mqtt_3_1_2_8(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "will/t");
        let will = Will::new("will/t", b"gone").qos(1);
        let (client, _) = Client::connect(&broker, &Connect::new(v, "mortal").will(will));
        client.drop_connection();
        let got = watcher.receive();
        assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("will/t", &b"gone"[..]));
        assert_eq!((got.qos, got.retain), (1, false));
    }

    /// The will is published with the Will QoS (3.1.1 section 3.1.2.6, MQTT-3.1.2-14).
    fn will_published_at_will_qos_mqtt_3_1_2_14(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "wq/+");
        for qos in 0..3u8 {
            let will = Will::new(&format!("wq/{qos}"), b"gone").qos(qos);
            let client = Client::connect(&broker, &Connect::new(v, "mortal").will(will)).0;
            client.drop_connection();
            let got = watcher.receive();
            assert_eq!((got.topic, got.qos), (format!("wq/{qos}"), qos));
        }
    }

    /// A client silent past one and a half times its keep alive loses its connection, which
    /// publishes its will (3.1.1 section 3.1.2.5; 5.0 section 3.1.2.5).
    fn will_sent_on_keep_alive_timeout_mqtt_3_1_2_8(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "ka/t");
        let connect = Connect::new(v, "sleepy").keep_alive(1).will(Will::new("ka/t", b"timed out"));
        let (_client, _) = Client::connect(&broker, &connect);
        // 1.5 s is the deadline; the slack covers brokers that check keep alive coarsely
        // (mosquitto took up to 6 s).
        let got = match watcher.recv_within(Duration::from_secs(8)) {
            conformance_wire::Packet::Publish(p) => p,
            other => panic!("expected the will, got {other:?}"),
        };
        assert_eq!(got.payload, b"timed out");
    }

    /// A protocol error closes the connection and publishes the will (3.1.1 section 3.1.2.5;
    /// 5.0 section 3.1.2.5).
    fn will_sent_on_protocol_error_mqtt_3_1_2_8(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "err/t");
        let connect = Connect::new(v, "broken").will(Will::new("err/t", b"broke"));
        let (mut client, _) = Client::connect(&broker, &connect);
        client.send(&Publish::new("err/x", b"x", 3).id(1).encode(v));
        client.expect_error_close();
        assert_eq!(watcher.receive().payload, b"broke");
    }

    /// After DISCONNECT (v5: reason 0x00) the will is discarded, not published (MQTT-3.1.2-10,
    /// MQTT-3.14.4-3; 5.0: MQTT-3.1.2-10, MQTT-3.14.4-3).
    fn will_not_sent_after_disconnect_mqtt_3_14_4_3(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "bye/t");
        let connect = Connect::new(v, "polite").will(Will::new("bye/t", b"must not"));
        let (client, _) = Client::connect(&broker, &connect);
        client.disconnect();
        assert_no_will(&broker, v, &mut watcher, "bye/t");
    }

    /// A will with Will Retain 1 is published as a retained message (MQTT-3.1.2-17; 5.0:
    /// MQTT-3.1.2-15): a later subscriber gets it with RETAIN 1.
    fn will_retain_publishes_retained_mqtt_3_1_2_17(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut watcher = watcher(&broker, v, "wr/t");
        let will = Will::new("wr/t", b"last words").qos(1).retain();
        let client = Client::connect(&broker, &Connect::new(v, "mortal").will(will)).0;
        client.drop_connection();
        assert_eq!(watcher.receive().payload, b"last words");
        let mut late = Client::new(&broker, v, "late");
        late.subscribe("wr/t", 1);
        let got = late.receive();
        assert_eq!((got.payload.as_slice(), got.retain), (&b"last words"[..], true));
    }
}

/// A v5 DISCONNECT with reason 0x04, Disconnect with Will Message, publishes the will (5.0
/// section 3.14.2.1).
#[test]
fn will_v5_disconnect_with_will_message_0x04() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "w4/t");
    let (client, _) = Client::connect(&broker, &Connect::new(v, "leaver").will(Will::new("w4/t", b"x")));
    client.disconnect_with(0x04, &Props::new());
    assert_eq!(watcher.receive().payload, b"x");
}

/// The server forwards the will's properties and keeps the order of its User Properties
/// (MQTT-3.1.3-10; section 3.1.3.2).
#[test]
fn will_v5_properties_forwarded_mqtt_3_1_3_10() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wp/t");
    let props = Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .string(prop::CONTENT_TYPE, "text/plain")
        .string(prop::RESPONSE_TOPIC, "wp/reply")
        .binary(prop::CORRELATION_DATA, b"\x00\x01")
        .user("z", "1")
        .user("a", "2")
        .user("z", "3");
    let will = Will::new("wp/t", b"bye").props(props.clone());
    Client::connect(&broker, &Connect::new(v, "mortal").will(will)).0.drop_connection();
    let got = watcher.receive();
    assert_eq!(got.props.int(prop::PAYLOAD_FORMAT_INDICATOR), Some(1));
    assert_eq!(got.props.text(prop::CONTENT_TYPE), Some("text/plain"));
    assert_eq!(got.props.text(prop::RESPONSE_TOPIC), Some("wp/reply"));
    assert_eq!(got.props.bytes(prop::CORRELATION_DATA), Some(&b"\x00\x01"[..]));
    assert_eq!(got.props.user_properties(), props.user_properties());
}

/// When a v5 session is taken over, the old connection's will is published (5.0 section
/// 3.1.4, step 3).
#[test]
fn will_v5_published_on_takeover_mqtt_3_1_4_3() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wt/t");
    let (_old, _) = Client::connect(&broker, &Connect::new(v, "twin").will(Will::new("wt/t", b"old")));
    let (_new, _) = Client::connect(&broker, &Connect::new(v, "twin"));
    assert_eq!(watcher.receive().payload, b"old");
}

fn delayed_will(v: Version, delay: u32, session_expiry: u32) -> Connect {
    let will = Will::new("wd/t", b"late").props(Props::new().four(prop::WILL_DELAY_INTERVAL, delay));
    Connect::new(v, "delayed").persistent(session_expiry).will(will)
}

/// A reconnection to the session within the Will Delay Interval cancels the will (MQTT-3.1.3-9).
#[test]
fn will_v5_delay_cancelled_by_reconnect_mqtt_3_1_3_9() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wd/t");
    let connect = delayed_will(v, 2, 30);
    Client::connect(&broker, &connect).0.drop_connection();
    let (_back, connack) = Client::connect(&broker, &Connect::new(v, "delayed").persistent(30));
    assert!(connack.session_present);
    // The delay plus a second for brokers that check it once a second.
    watcher.expect_silence(Duration::from_secs(3));
    assert_no_will(&broker, v, &mut watcher, "wd/t");
}

/// Without a reconnection the will is published once the Will Delay Interval has passed
/// (MQTT-3.1.2-8 of 5.0), not before.
#[test]
fn will_v5_delay_delivered_after_interval_mqtt_3_1_2_8() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wd/t");
    Client::connect(&broker, &delayed_will(v, 2, 30)).0.drop_connection();
    let start = Instant::now();
    let got = match watcher.recv_within(Duration::from_secs(4)) {
        conformance_wire::Packet::Publish(p) => p,
        other => panic!("expected the will, got {other:?}"),
    };
    let elapsed = start.elapsed();
    assert_eq!(got.payload, b"late");
    assert!(elapsed >= Duration::from_millis(1_500), "will published after {elapsed:?} of a 2 s delay");
}

/// The will is published when the session ends, even if the Will Delay Interval is longer
/// (MQTT-3.1.2-8 of 5.0): with Session Expiry 0 that is when the connection closes.
#[test]
fn will_v5_published_when_session_ends_before_delay_mqtt_3_1_2_8() {
    if conformance_wire::mosquitto_deviates(
        "mosquitto 2.0.11 waits out the whole Will Delay Interval (60 s here) although the session \
         (Session Expiry 0) ended when the connection closed",
    ) {
        return;
    }
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wd/t");
    let mut connect = delayed_will(v, 60, 0);
    connect.clean = true;
    Client::connect(&broker, &connect).0.drop_connection();
    let got = match watcher.recv_within(WAIT) {
        conformance_wire::Packet::Publish(p) => p,
        other => panic!("expected the will, got {other:?}"),
    };
    assert_eq!(got.payload, b"late");
}

/// A DISCONNECT with reason 0x00 also discards a delayed will (MQTT-3.1.2-10 of 5.0).
#[test]
fn will_v5_delayed_will_discarded_by_disconnect_mqtt_3_1_2_10() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let mut watcher = watcher(&broker, v, "wd/t");
    let (client, _) = Client::connect(&broker, &delayed_will(v, 1, 30));
    client.disconnect();
    watcher.expect_silence(Duration::from_secs(2));
    assert_no_will(&broker, v, &mut watcher, "wd/t");
}
