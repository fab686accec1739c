//! Conformance of persistent sessions (3.1 and 3.1.1: CleanSession 0; 5.0: Clean Start 0 and a
//! Session Expiry Interval), over raw bytes. Test names carry the 3.1.1 statement id; where 5.0
//! numbers it differently the doc comment says so. MQTT 3.1 has no Session Present flag, so
//! those checks skip it.

mod support;
#[macro_use]
mod conformance_wire;

use std::collections::BTreeSet;
use std::time::Duration;

use conformance_wire::{prop, Client, Connect, Props, Version};
use support::TestBroker;

/// Connects a persistent session for `id` and checks Session Present where the version has it.
fn reconnect(broker: &TestBroker, v: Version, id: &str, present: bool) -> Client {
    let (client, connack) = Client::connect(broker, &Connect::new(v, id).persistent(60));
    if v != Version::V3_1 {
        assert_eq!(connack.session_present, present, "Session Present");
    }
    client
}

versions! {
    /// A persistent session keeps its subscriptions across connections (MQTT-3.1.2-4; 5.0:
    /// MQTT-3.1.2-5).
    fn session_subscription_survives_reconnect_mqtt_3_1_2_4(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = reconnect(&broker, v, "sub", false);
        sub.subscribe("keep/t", 1);
        sub.disconnect();
        let mut sub = reconnect(&broker, v, "sub", true);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("keep/t", b"still here", 1);
        assert_eq!(sub.receive().payload, b"still here");
    }

    /// QoS 1 and 2 messages that match a disconnected persistent session are stored and
    /// delivered when it reconnects (MQTT-3.1.2-5; 5.0: MQTT-3.1.2-23, MQTT-4.5.0-1). QoS 0
    /// ones may be dropped, so they are not asserted.
    fn session_offline_qos1_qos2_delivered_on_reconnect_mqtt_3_1_2_5(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = reconnect(&broker, v, "sub", false);
        sub.subscribe("off/t", 2);
        sub.disconnect();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("off/t", b"one", 1);
        publisher.publish_msg("off/t", b"two", 2);
        publisher.publish_msg("off/t", b"zero", 0);
        let mut sub = reconnect(&broker, v, "sub", true);
        let mut got = BTreeSet::new();
        while !(got.contains(&(b"one".to_vec(), 1)) && got.contains(&(b"two".to_vec(), 2))) {
            let p = sub.receive();
            got.insert((p.payload, p.qos));
            assert!(got.len() <= 3, "unexpected messages {got:?}");
        }
    }

    /// CleanSession 1 discards the stored session: its subscriptions and queued messages are
    /// gone, and it is not stored after the clean connection ends (MQTT-3.1.2-6; 5.0:
    /// MQTT-3.1.2-4).
    fn session_clean_session_discards_old_session_mqtt_3_1_2_6(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = reconnect(&broker, v, "sub", false);
        sub.subscribe("cs/t", 1);
        sub.disconnect();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("cs/t", b"queued", 1);

        let (mut clean, connack) = Client::connect(&broker, &Connect::new(v, "sub"));
        assert!(!connack.session_present);
        clean.subscribe("cs/barrier", 1);
        publisher.publish_msg("cs/t", b"live", 1);
        publisher.publish_msg("cs/barrier", b"barrier", 1);
        let first = clean.receive();
        assert_eq!(first.payload, b"barrier", "the old session survived: {first:?}");
        clean.disconnect();
        reconnect(&broker, v, "sub", false);
    }

    /// A second connection that takes over a persistent session resumes it (MQTT-3.1.4-2/-3;
    /// 5.0: MQTT-3.1.4-3/-4): Session Present 1 and the subscriptions keep delivering.
    fn session_takeover_resumes_session_mqtt_3_1_4_3(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut first = reconnect(&broker, v, "sub", false);
        first.subscribe("to/t", 1);
        let mut second = reconnect(&broker, v, "sub", true);
        first.expect_closed(conformance_wire::WAIT);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("to/t", b"moved", 1);
        assert_eq!(second.receive().payload, b"moved");
    }
}

/// A v5 session with Session Expiry Interval 0 (or absent) ends with its connection, even with
/// Clean Start 0 (5.0 section 3.1.2.11.2).
#[test]
fn session_v5_expiry_0_ends_with_connection_mqtt_3_1_2_23() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let connect = Connect::new(v, "brief").clean(false);
    let (mut client, _) = Client::connect(&broker, &connect);
    client.subscribe("brief/t", 1);
    client.disconnect();
    let (_client, connack) = Client::connect(&broker, &connect);
    assert!(!connack.session_present, "a session with expiry 0 outlived its connection");
}

/// The server discards a v5 session once its Session Expiry Interval has passed after the
/// connection closed (MQTT-4.1.0-2 of 5.0), and not before (MQTT-3.1.2-23).
#[test]
fn session_v5_discarded_after_expiry_mqtt_4_1_0_2() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let connect = Connect::new(v, "expiring").persistent(1);
    let (mut client, _) = Client::connect(&broker, &connect);
    client.subscribe("exp/t", 1);
    client.disconnect();
    let (client, connack) = Client::connect(&broker, &connect);
    assert!(connack.session_present, "the session expired early");
    client.disconnect();
    // Waiting for the expiry is what is tested here; 1.5 s of slack covers servers that check
    // expiry once a second.
    std::thread::sleep(Duration::from_millis(2_500));
    let (_client, connack) = Client::connect(&broker, &connect);
    assert!(!connack.session_present, "the session outlived its 1 s expiry");
}

/// A v5 DISCONNECT may lower the Session Expiry Interval; 0 ends the session now (5.0 section
/// 3.14.2.2.2).
#[test]
fn session_v5_disconnect_sets_expiry_0() {
    let broker = TestBroker::start();
    let v = Version::V5;
    let connect = Connect::new(v, "ender").persistent(60);
    let (mut client, _) = Client::connect(&broker, &connect);
    client.subscribe("end/t", 1);
    client.disconnect_with(0x00, &Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 0));
    let (_client, connack) = Client::connect(&broker, &connect);
    assert!(!connack.session_present, "the session outlived DISCONNECT with expiry 0");
}
