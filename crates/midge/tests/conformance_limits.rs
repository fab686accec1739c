//! Conformance of the capabilities and limits midge's `[mqtt]` settings announce and enforce:
//! what the CONNACK says (5.0 section 3.2.2.3) and what happens to a client that goes past it.
//! These tests configure midge, so they are skipped against mosquitto.

mod conformance_wire;
mod support;

use conformance_wire::{
    prop, Client, Connack, Connect, Event, Packet, Props, Publish, Subscribe, Version, Will, QUIET, WAIT,
};
use support::TestBroker;

const V5: Version = Version::V5;

/// A midge broker with these `[mqtt]` settings, or `None` against another target.
fn midge(settings: &str) -> Option<TestBroker> {
    if conformance_wire::not_midge() {
        return None;
    }
    Some(TestBroker::start_midge_with(&format!("[mqtt]\n{settings}\n")))
}

fn connack_v5(broker: &TestBroker, connect: &Connect) -> (Client, Connack) {
    Client::connect(broker, connect)
}

/// Subscribes and expects the server to refuse with `code`: in the SUBACK, or (where the spec
/// calls the use of an unavailable feature a Protocol Error) in a DISCONNECT before closing.
fn expect_subscribe_refused(client: &mut Client, subscribe: Subscribe, code: u8) {
    let id = subscribe.id;
    client.send(&subscribe.encode(V5));
    match client.next(WAIT) {
        Event::Packet(Packet::Suback(s)) => assert_eq!((s.id, s.codes), (id, vec![code])),
        Event::Packet(Packet::Disconnect(d)) => {
            assert_eq!(d.reason, code, "{d:?}");
            client.expect_closed(WAIT);
        }
        other => panic!("expected SUBACK or DISCONNECT {code:#04x}, got {other:?}"),
    }
}

/// With default settings the CONNACK announces Receive Maximum 100 and Topic Alias Maximum 10,
/// leaves out Maximum QoS (only 0 or 1 may be sent, section 3.2.2.3.4) and announces every
/// optional feature as available (absent or 1).
#[test]
fn limits_default_connack_capabilities() {
    let Some(broker) = midge("") else { return };
    let (_client, connack) = connack_v5(&broker, &Connect::new(V5, "defaults"));
    let p = &connack.props;
    assert_eq!(p.int(prop::RECEIVE_MAXIMUM), Some(100), "{connack:?}");
    assert_eq!(p.int(prop::TOPIC_ALIAS_MAXIMUM), Some(10), "{connack:?}");
    assert_eq!(p.get(prop::MAXIMUM_QOS), None, "{connack:?}");
    assert_eq!(p.get(prop::SERVER_KEEP_ALIVE), None, "{connack:?}");
    for feature in [
        prop::RETAIN_AVAILABLE,
        prop::WILDCARD_SUBSCRIPTION_AVAILABLE,
        prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        prop::SHARED_SUBSCRIPTION_AVAILABLE,
    ] {
        assert!(matches!(p.int(feature), None | Some(1)), "property {feature:#04x}: {connack:?}");
    }
    assert!(matches!(p.int(prop::MAXIMUM_PACKET_SIZE), None | Some(268_435_455)), "{connack:?}");
}

/// `max_qos = 1`: CONNACK Maximum QoS 1 (MQTT-3.2.2-9); SUBSCRIBE at QoS 2 is still accepted,
/// granted at most 1 (MQTT-3.2.2-10, and for v3 clients too); a QoS 2 PUBLISH gets DISCONNECT
/// 0x9B (MQTT-3.2.2-11); a Will QoS 2 gets CONNACK 0x9B (MQTT-3.2.2-12).
#[test]
fn limits_max_qos_1_mqtt_3_2_2_9() {
    let Some(broker) = midge("max_qos = 1") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "q"));
    assert_eq!(connack.props.int(prop::MAXIMUM_QOS), Some(1), "{connack:?}");
    assert!(client.subscribe("mq/t", 2) <= 1);
    client.send(&Publish::new("mq/t", b"x", 2).id(1).encode(V5));
    client.expect_disconnect(0x9B);

    let mut v3 = Client::new(&broker, Version::V3_1_1, "v3");
    assert_eq!(v3.subscribe("mq/t", 2), 1);

    let mut client = Client::open(&broker, V5);
    client.send(&Connect::new(V5, "w").will(Will::new("mq/w", b"x").qos(2)).encode());
    assert_eq!(client.expect_refused(|c| c == 0x9B), Some(0x9B));
}

/// `retain_available = false`: CONNACK Retain Available 0; a retained PUBLISH gets DISCONNECT
/// 0x9A (MQTT-3.2.2-14); a retained will gets CONNACK 0x9A (MQTT-3.2.2-13).
#[test]
fn limits_retain_unavailable_mqtt_3_2_2_14() {
    let Some(broker) = midge("retain_available = false") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "r"));
    assert_eq!(connack.props.int(prop::RETAIN_AVAILABLE), Some(0), "{connack:?}");
    client.send(&Publish::new("ra/t", b"x", 0).retain().encode(V5));
    client.expect_disconnect(0x9A);

    let mut client = Client::open(&broker, V5);
    client.send(&Connect::new(V5, "w").will(Will::new("ra/w", b"x").retain()).encode());
    assert_eq!(client.expect_refused(|c| c == 0x9A), Some(0x9A));
}

/// `max_keepalive = 10`: a v5 client asking 60 s or 0 gets Server Keep Alive 10 (section
/// 3.2.2.3.14); one asking 5 s keeps it; a v3 client asking more than 10 is refused with
/// CONNACK 0x02.
#[test]
fn limits_max_keepalive_server_keep_alive() {
    let Some(broker) = midge("max_keepalive = 10") else {
        return;
    };
    for asked in [60, 0] {
        let (_c, connack) = connack_v5(&broker, &Connect::new(V5, "ka").keep_alive(asked));
        assert_eq!(connack.props.int(prop::SERVER_KEEP_ALIVE), Some(10), "asked {asked}");
    }
    let (_c, connack) = connack_v5(&broker, &Connect::new(V5, "ka").keep_alive(5));
    assert!(matches!(connack.props.int(prop::SERVER_KEEP_ALIVE), None | Some(5)), "{connack:?}");

    for v in [Version::V3_1, Version::V3_1_1] {
        let mut client = Client::open(&broker, v);
        client.send(&Connect::new(v, "ka3").keep_alive(60).encode());
        assert_eq!(client.expect_refused(|c| c == 0x02), Some(0x02), "{v:?}");
        Client::connect(&broker, &Connect::new(v, "ka3").keep_alive(10));
    }
}

/// `max_packet_size = 1000` counts whole packets: CONNACK Maximum Packet Size 1000; a 1000-byte
/// PUBLISH is delivered, a 1001-byte one gets DISCONNECT 0x95 (MQTT-3.2.2-15); a v3 client is
/// closed.
#[test]
fn limits_max_packet_size_mqtt_3_2_2_15() {
    let Some(broker) = midge("max_packet_size = 1000") else {
        return;
    };
    let mut sub = Client::new(&broker, V5, "sub");
    sub.subscribe("mp/t", 0);
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "big"));
    assert_eq!(connack.props.int(prop::MAXIMUM_PACKET_SIZE), Some(1000), "{connack:?}");
    // 3 bytes of fixed header, 6 of topic, 1 of property length: 10 + payload.
    let fits = Publish::new("mp/t", &[b'x'; 990], 0).encode(V5);
    assert_eq!(fits.len(), 1000);
    client.send(&fits);
    assert_eq!(sub.expect_publish().payload.len(), 990);
    client.send(&Publish::new("mp/t", &[b'x'; 991], 0).encode(V5));
    client.expect_disconnect(0x95);

    let mut v3 = Client::new(&broker, Version::V3_1_1, "v3");
    v3.send(&Publish::new("mp/t", &[b'x'; 2000], 0).encode(Version::V3_1_1));
    assert_eq!(v3.expect_closed(WAIT), None);
}

/// `wildcard_subscription_available = false`: CONNACK says 0, and a wildcard filter is
/// refused with 0xA2 while a plain one is granted (section 3.2.2.3.11).
#[test]
fn limits_wildcard_subscriptions_unavailable() {
    let Some(broker) = midge("wildcard_subscription_available = false") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "wc"));
    assert_eq!(connack.props.int(prop::WILDCARD_SUBSCRIPTION_AVAILABLE), Some(0), "{connack:?}");
    assert_eq!(client.subscribe("wc/plain", 1), 1);
    for filter in ["wc/#", "wc/+/t"] {
        let mut client = Client::new(&broker, V5, "wc");
        expect_subscribe_refused(&mut client, Subscribe::new(1, &[(filter, 0)]), 0xA2);
    }
}

/// `shared_subscription_available = false`: CONNACK says 0, and `$share/...` is refused with
/// 0x9E (section 3.2.2.3.13).
#[test]
fn limits_shared_subscriptions_unavailable() {
    let Some(broker) = midge("shared_subscription_available = false") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "sh"));
    assert_eq!(connack.props.int(prop::SHARED_SUBSCRIPTION_AVAILABLE), Some(0), "{connack:?}");
    expect_subscribe_refused(&mut client, Subscribe::new(1, &[("$share/g/t", 0)]), 0x9E);
}

/// `subscription_identifier_available = false`: CONNACK says 0, and a SUBSCRIBE with a
/// Subscription Identifier is refused with 0xA1 (section 3.2.2.3.12).
#[test]
fn limits_subscription_identifiers_unavailable() {
    let Some(broker) = midge("subscription_identifier_available = false") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "si"));
    assert_eq!(connack.props.int(prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE), Some(0));
    let props = Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, 3);
    expect_subscribe_refused(&mut client, Subscribe::new(1, &[("si/t", 0)]).props(props), 0xA1);
}

/// `topic_alias_maximum = 2`: CONNACK Topic Alias Maximum 2; alias 2 is accepted, 3 gets
/// DISCONNECT 0x94 (MQTT-3.2.2-17, MQTT-3.3.2-12).
#[test]
fn limits_topic_alias_maximum_mqtt_3_2_2_17() {
    let Some(broker) = midge("topic_alias_maximum = 2") else {
        return;
    };
    let mut sub = Client::new(&broker, V5, "sub");
    sub.subscribe("tam/t", 0);
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "pub"));
    assert_eq!(connack.props.int(prop::TOPIC_ALIAS_MAXIMUM), Some(2), "{connack:?}");
    client.publish(Publish::new("tam/t", b"ok", 0).props(Props::new().two(prop::TOPIC_ALIAS, 2)));
    assert_eq!(sub.expect_publish().payload, b"ok");
    client.send(&Publish::new("tam/t", b"no", 0).props(Props::new().two(prop::TOPIC_ALIAS, 3)).encode(V5));
    client.expect_disconnect(0x94);
}

/// `topic_alias_maximum = 0`: no Topic Alias Maximum (or 0) in CONNACK, so the client may send
/// no alias at all (MQTT-3.2.2-18); alias 1 gets DISCONNECT 0x94.
#[test]
fn limits_topic_aliases_disabled_mqtt_3_2_2_18() {
    let Some(broker) = midge("topic_alias_maximum = 0") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "pub"));
    assert!(matches!(connack.props.int(prop::TOPIC_ALIAS_MAXIMUM), None | Some(0)), "{connack:?}");
    client.send(&Publish::new("tad/t", b"no", 0).props(Props::new().two(prop::TOPIC_ALIAS, 1)).encode(V5));
    client.expect_disconnect(0x94);
}

/// `receive_maximum = 2`: CONNACK Receive Maximum 2, and a third QoS 2 PUBLISH while two await
/// their PUBREL gets DISCONNECT 0x93, Receive Maximum exceeded (section 3.3.4).
#[test]
fn limits_receive_maximum_exceeded_0x93() {
    let Some(broker) = midge("receive_maximum = 2") else {
        return;
    };
    let (mut client, connack) = connack_v5(&broker, &Connect::new(V5, "flood"));
    assert_eq!(connack.props.int(prop::RECEIVE_MAXIMUM), Some(2), "{connack:?}");
    for id in 1..=2 {
        client.send(&Publish::new("rx/t", b"x", 2).id(id).encode(V5));
        assert!(matches!(client.recv(), Packet::Pubrec(a) if a.id == id));
    }
    client.send(&Publish::new("rx/t", b"x", 2).id(3).encode(V5));
    client.expect_disconnect(0x93);
}

/// `max_inflight_messages = 2` bounds unacknowledged outbound QoS 1 messages for clients that
/// set no Receive Maximum (all v3 clients).
#[test]
fn limits_max_inflight_messages() {
    let Some(broker) = midge("max_inflight_messages = 2") else {
        return;
    };
    let mut sub = Client::new(&broker, Version::V3_1_1, "sub");
    sub.subscribe("inf/t", 1);
    let mut publisher = Client::new(&broker, Version::V3_1_1, "pub");
    for i in 0..3u8 {
        publisher.publish_msg("inf/t", &[i], 1);
    }
    let first = sub.expect_publish();
    let second = sub.expect_publish();
    sub.expect_silence(QUIET);
    sub.acknowledge(&first);
    sub.acknowledge(&second);
    assert_eq!(sub.receive().payload, [2]);
}

/// `max_queued_messages = 2` bounds what an offline session keeps.
#[test]
fn limits_max_queued_messages() {
    let Some(broker) = midge("max_queued_messages = 2") else {
        return;
    };
    let connect = Connect::new(Version::V3_1_1, "sub").persistent(60);
    let (mut sub, _) = Client::connect(&broker, &connect);
    sub.subscribe("mq/t", 1);
    sub.disconnect();
    let mut publisher = Client::new(&broker, Version::V3_1_1, "pub");
    for i in 0..5u8 {
        publisher.publish_msg("mq/t", &[i], 1);
    }
    let (mut sub, _) = Client::connect(&broker, &connect);
    sub.receive();
    sub.receive();
    sub.expect_silence(QUIET);
}

/// `allow_zero_length_clientid = false`: an empty ClientId is rejected, with CONNACK 0x02 for
/// 3.1.1 (MQTT-3.1.3-9) and 0x85 for 5.0 (MQTT-3.1.3-8).
#[test]
fn limits_zero_length_client_id_disallowed_mqtt_3_1_3_9() {
    let Some(broker) = midge("allow_zero_length_clientid = false") else {
        return;
    };
    for (v, code) in [(Version::V3_1_1, 0x02), (V5, 0x85)] {
        let mut client = Client::open(&broker, v);
        client.send(&Connect::new(v, "").encode());
        assert_eq!(client.expect_refused(|c| c == code), Some(code), "{v:?}");
    }
}

/// `max_session_expiry_interval = 5`: a client asking 60 s is told 5 s in the CONNACK's
/// Session Expiry Interval (section 3.2.2.3.2).
#[test]
fn limits_max_session_expiry_interval() {
    let Some(broker) = midge("max_session_expiry_interval = 5") else {
        return;
    };
    let (_c, connack) = connack_v5(&broker, &Connect::new(V5, "long").persistent(60));
    assert_eq!(connack.props.int(prop::SESSION_EXPIRY_INTERVAL), Some(5), "{connack:?}");
}

/// SIGTERM shuts midge down cleanly: v5 clients get DISCONNECT 0x8B, Server shutting down; v3
/// clients see the connection close.
#[test]
fn limits_sigterm_disconnects_with_0x8b() {
    let Some(broker) = midge("") else { return };
    let mut v5 = Client::new(&broker, V5, "v5");
    let mut v3 = Client::new(&broker, Version::V3_1_1, "v3");
    let status = broker.terminate();
    assert!(status.success(), "midge exited with {status}");
    v5.expect_disconnect(0x8B);
    assert_eq!(v3.expect_closed(WAIT), None);
}

/// SIGTERM sent the moment the listener is logged still gets a clean shutdown (exit 0): the
/// handlers are installed before the listeners open, so no early signal meets the default
/// action. Repeated because the window it guards against is short.
#[test]
fn limits_sigterm_right_after_start_is_a_clean_shutdown() {
    for _ in 0..10 {
        let Some(broker) = midge("") else { return };
        let status = broker.terminate();
        assert!(status.success(), "midge exited with {status}");
    }
}
