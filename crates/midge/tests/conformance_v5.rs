//! Conformance of what only MQTT 5.0 has: flow control, maximum packet size, topic aliases,
//! message expiry, subscription options and identifiers, shared subscriptions, property
//! forwarding and reason codes. Over raw bytes; test names carry the 5.0 statement id, or the
//! section where the statement has none.

mod conformance_wire;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use conformance_wire::{
    build, opt, payloads, prop, Client, Connect, Event, Packet, Props, Publish, Subscribe, Version, QUIET, WAIT,
};
use support::TestBroker;

const V5: Version = Version::V5;

/// A v5 client with these CONNECT properties.
fn client_with(broker: &TestBroker, id: &str, props: Props) -> Client {
    Client::connect(broker, &Connect::new(V5, id).props(props)).0
}

/// The server sends at most Receive Maximum unacknowledged QoS 1 PUBLISHes (MQTT-3.3.4-9,
/// MQTT-4.9.0-2) and still answers other packets meanwhile (MQTT-3.3.4-10).
#[test]
fn v5_receive_maximum_limits_inflight_mqtt_3_3_4_9() {
    if conformance_wire::mosquitto_deviates(
        "with Receive Maximum 2 and two unacknowledged messages, mosquitto 2.0.11 answers one \
         PUBACK with two more PUBLISHes, three in flight",
    ) {
        return;
    }
    let broker = TestBroker::start();
    let mut sub = client_with(&broker, "sub", Props::new().two(prop::RECEIVE_MAXIMUM, 2));
    sub.subscribe("rm/t", 1);
    let mut publisher = Client::new(&broker, V5, "pub");
    for i in 0..4u8 {
        publisher.publish_msg("rm/t", &[i], 1);
    }
    let first = sub.expect_publish();
    let second = sub.expect_publish();
    assert_eq!((first.payload.as_slice(), second.payload.as_slice()), (&[0u8][..], &[1u8][..]));
    sub.expect_silence(QUIET);
    sub.ping();
    sub.acknowledge(&first);
    let third = sub.expect_publish();
    assert_eq!(third.payload, [2]);
    sub.expect_silence(QUIET);
    sub.acknowledge(&second);
    sub.acknowledge(&third);
    assert_eq!(sub.receive().payload, [3]);
}

/// A message whose PUBLISH would exceed the client's Maximum Packet Size is not sent to it
/// (MQTT-3.1.2-24) but discarded as if delivered (MQTT-3.1.2-25); smaller ones still are.
#[test]
fn v5_maximum_packet_size_from_client_mqtt_3_1_2_24() {
    let broker = TestBroker::start();
    let mut sub = client_with(&broker, "sub", Props::new().four(prop::MAXIMUM_PACKET_SIZE, 128));
    sub.subscribe("mps/t", 1);
    let mut publisher = Client::new(&broker, V5, "pub");
    publisher.publish_msg("mps/t", &[b'x'; 200], 1);
    publisher.publish_msg("mps/t", b"small", 1);
    let got = sub.receive();
    assert_eq!(got.payload, b"small", "a PUBLISH larger than Maximum Packet Size was sent");
}

/// A Topic Alias set by the client with a topic is used for later PUBLISHes with an empty
/// topic, and can be remapped (MQTT-3.3.2-12). A subscriber that announced no Topic Alias
/// Maximum gets full topics and no alias (MQTT-3.1.2-27).
#[test]
fn v5_topic_alias_from_client_mqtt_3_3_2_12() {
    let broker = TestBroker::start();
    let mut sub = Client::new(&broker, V5, "sub");
    sub.subscribe("ta/#", 0);
    let (mut publisher, connack) = Client::connect(&broker, &Connect::new(V5, "pub"));
    let maximum = connack.props.int(prop::TOPIC_ALIAS_MAXIMUM).unwrap_or(0);
    assert!(maximum >= 1, "the server accepts no topic aliases: {connack:?}");
    let alias = |a: u16| Props::new().two(prop::TOPIC_ALIAS, a);
    publisher.publish(Publish::new("ta/one", b"1", 0).props(alias(1)));
    publisher.publish(Publish::new("", b"2", 0).props(alias(1)));
    publisher.publish(Publish::new("ta/two", b"3", 0).props(alias(1)));
    publisher.publish(Publish::new("", b"4", 1).props(alias(1)));
    let got: Vec<Publish> = (0..4).map(|_| sub.receive()).collect();
    let seen: Vec<(&str, &[u8])> = got.iter().map(|p| (p.topic.as_str(), p.payload.as_slice())).collect();
    assert_eq!(seen, [("ta/one", &b"1"[..]), ("ta/one", b"2"), ("ta/two", b"3"), ("ta/two", b"4")]);
    assert!(got.iter().all(|p| p.props.get(prop::TOPIC_ALIAS).is_none()), "{got:?}");
}

/// Topic Alias 0 is not permitted (MQTT-3.3.2-8): a Protocol Error. The spec names no reason
/// code for it, so 0x94 (Topic Alias invalid), 0x82 (Protocol Error) and 0x81 are accepted.
#[test]
fn v5_topic_alias_0_disconnects_mqtt_3_3_2_8() {
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "alias0");
    let zero = Props::new().two(prop::TOPIC_ALIAS, 0);
    client.send(&Publish::new("tz/t", b"x", 0).props(zero).encode(V5));
    let reason = client.expect_error_close();
    assert!(matches!(reason, Some(0x81 | 0x82 | 0x94)), "DISCONNECT reason {reason:02x?}");
}

/// A Topic Alias above the server's Topic Alias Maximum (MQTT-3.2.2-17) gets DISCONNECT 0x94,
/// Topic Alias invalid (5.0 section 3.2.2.3.8 and the reason code table).
#[test]
fn v5_topic_alias_above_maximum_disconnects_0x94_mqtt_3_2_2_17() {
    let broker = TestBroker::start();
    let (mut client, connack) = Client::connect(&broker, &Connect::new(V5, "aliasmax"));
    let maximum = connack.props.int(prop::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) as u16;
    let too_big = Props::new().two(prop::TOPIC_ALIAS, maximum + 1);
    client.send(&Publish::new("tz/t", b"x", 0).props(too_big).encode(V5));
    client.expect_disconnect(0x94);
}

/// A queued message whose Message Expiry Interval passes before delivery starts is not
/// delivered (MQTT-3.3.2-5); one still alive carries the interval minus its waiting time
/// (MQTT-3.3.2-6).
#[test]
fn v5_message_expiry_while_offline_mqtt_3_3_2_5() {
    let broker = TestBroker::start();
    let connect = Connect::new(V5, "sub").persistent(60);
    let (mut sub, _) = Client::connect(&broker, &connect);
    sub.subscribe("me/t", 1);
    sub.disconnect();
    let mut publisher = Client::new(&broker, V5, "pub");
    let expiry = |s: u32| Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, s);
    publisher.publish(Publish::new("me/t", b"short", 1).props(expiry(1)));
    publisher.publish(Publish::new("me/t", b"long", 1).props(expiry(60)));
    // Letting the first message expire is the point of the test.
    std::thread::sleep(Duration::from_millis(2_200));
    let (mut sub, _) = Client::connect(&broker, &connect);
    let got = sub.receive();
    assert_eq!(got.payload, b"long", "an expired message was delivered");
    let left = got.props.int(prop::MESSAGE_EXPIRY_INTERVAL).expect("Message Expiry Interval");
    assert!((1..=58).contains(&left), "expiry {left} after waiting 2 s of 60");
}

/// A forwarded message carries a Message Expiry Interval no larger than the one sent
/// (MQTT-3.3.2-6), and none when the publisher set none.
#[test]
fn v5_message_expiry_forwarded_mqtt_3_3_2_6() {
    let broker = TestBroker::start();
    let mut sub = Client::new(&broker, V5, "sub");
    sub.subscribe("mf/t", 1);
    let mut publisher = Client::new(&broker, V5, "pub");
    let props = Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 10);
    publisher.publish(Publish::new("mf/t", b"x", 1).props(props));
    publisher.publish_msg("mf/t", b"y", 1);
    let left = sub.receive().props.int(prop::MESSAGE_EXPIRY_INTERVAL).expect("expiry forwarded");
    assert!((1..=10).contains(&left), "forwarded expiry {left} of 10");
    assert_eq!(sub.receive().props.get(prop::MESSAGE_EXPIRY_INTERVAL), None);
}

/// With No Local set, a client does not get its own messages back (MQTT-3.8.3-3).
#[test]
fn v5_no_local_mqtt_3_8_3_3() {
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "self");
    client.subscribe("nl/t", 1 | opt::NO_LOCAL);
    client.publish_msg("nl/t", b"mine", 1);
    Client::new(&broker, V5, "other").publish_msg("nl/t", b"theirs", 1);
    assert_eq!(client.receive().payload, b"theirs", "a No Local subscription got its own message");
}

/// No Local on a shared subscription is a Protocol Error (MQTT-3.8.3-4).
#[test]
fn v5_no_local_on_shared_subscription_is_protocol_error_mqtt_3_8_3_4() {
    if conformance_wire::mosquitto_deviates("mosquitto 2.0.11 grants a shared subscription with No Local set") {
        return;
    }
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "self");
    client.send(&Subscribe::new(1, &[("$share/g/nl/t", 1 | opt::NO_LOCAL)]).encode(V5));
    client.expect_error_close();
}

/// Retain As Published 1 forwards the publisher's RETAIN flag (MQTT-3.3.1-13); 0 clears it
/// (MQTT-3.3.1-12).
#[test]
fn v5_retain_as_published_mqtt_3_3_1_12() {
    let broker = TestBroker::start();
    let mut keeper = Client::new(&broker, V5, "keeper");
    keeper.subscribe("rap/t", 1 | opt::RETAIN_AS_PUBLISHED);
    let mut plain = Client::new(&broker, V5, "plain");
    plain.subscribe("rap/t", 1);
    let mut publisher = Client::new(&broker, V5, "pub");
    publisher.publish(Publish::new("rap/t", b"r", 1).retain());
    publisher.publish_msg("rap/t", b"n", 1);
    let kept: Vec<bool> = (0..2).map(|_| keeper.receive().retain).collect();
    let cleared: Vec<bool> = (0..2).map(|_| plain.receive().retain).collect();
    assert_eq!(kept, [true, false], "Retain As Published 1");
    assert_eq!(cleared, [false, false], "Retain As Published 0");
}

/// Retain Handling 0 sends retained messages on every SUBSCRIBE (MQTT-3.3.1-9), 1 only when
/// the subscription is new (MQTT-3.3.1-10), 2 never (MQTT-3.3.1-11).
#[test]
fn v5_retain_handling_mqtt_3_3_1_9_10_11() {
    let broker = TestBroker::start();
    let mut publisher = Client::new(&broker, V5, "pub");
    publisher.publish(Publish::new("rh/t", b"kept", 1).retain());
    let subscribe_twice = |id: &str, handling: u8| -> Vec<Publish> {
        let mut sub = Client::new(&broker, V5, id);
        sub.subscribe("rh/t", 1 | handling);
        sub.subscribe("rh/t", 1 | handling);
        let mut publisher = Client::new(&broker, V5, "barrier");
        publisher.publish_msg("rh/t", b"barrier", 1);
        sub.receive_until(b"barrier")
    };
    let kept = |p: &[Publish]| p.iter().filter(|p| p.payload == b"kept" && p.retain).count();
    assert_eq!(kept(&subscribe_twice("rh0", 0)), 2, "Retain Handling 0");
    assert_eq!(kept(&subscribe_twice("rh1", opt::RETAIN_HANDLING_IF_NEW)), 1, "Retain Handling 1");
    let never = subscribe_twice("rh2", opt::RETAIN_HANDLING_NEVER);
    assert_eq!(payloads(&never), [&b"barrier"[..]], "Retain Handling 2");
}

/// A message carries the Subscription Identifiers of the subscriptions it matched
/// (MQTT-3.3.4-3): all of them in a single copy (MQTT-3.3.4-4), or each in its own copy
/// (MQTT-3.3.4-5); a subscription without one adds none.
#[test]
fn v5_subscription_identifiers_returned_mqtt_3_3_4_3() {
    let broker = TestBroker::start();
    let mut sub = Client::new(&broker, V5, "sub");
    let with_id = |id: u16, filter: &str, sid: u32| {
        Subscribe::new(id, &[(filter, 1)]).props(Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, sid))
    };
    sub.subscribe_with(with_id(1, "si/+", 7));
    sub.subscribe_with(with_id(2, "si/#", 300));
    sub.subscribe("plain/t", 1);
    let mut publisher = Client::new(&broker, V5, "pub");
    publisher.publish_msg("si/x", b"m", 1);
    publisher.publish_msg("si/x", b"end", 1);
    publisher.publish_msg("plain/t", b"p", 1);
    let mut m_ids = Vec::new();
    let mut end_ids = BTreeSet::new();
    let mut copies = 0;
    while end_ids != BTreeSet::from([7, 300]) {
        let got = sub.receive();
        assert_eq!(got.topic, "si/x", "{got:?}");
        if got.payload == b"m" {
            copies += 1;
            m_ids.extend(got.props.ints(prop::SUBSCRIPTION_IDENTIFIER));
        } else {
            end_ids.extend(got.props.ints(prop::SUBSCRIPTION_IDENTIFIER));
        }
    }
    m_ids.sort();
    assert_eq!(m_ids, [7, 300], "Subscription Identifiers over {copies} copies");
    let plain = sub.receive();
    assert_eq!(plain.payload, b"p");
    assert_eq!(plain.props.get(prop::SUBSCRIPTION_IDENTIFIER), None);
}

/// A Subscription Identifier of 0 is a Protocol Error (5.0 section 3.8.2.1.2).
#[test]
fn v5_subscription_identifier_0_is_protocol_error() {
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "zero");
    let props = Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, 0);
    client.send(&Subscribe::new(1, &[("sz/t", 0)]).props(props).encode(V5));
    client.expect_error_close();
}

/// A PUBLISH from a client must not carry a Subscription Identifier (MQTT-3.3.4-6): a
/// Protocol Error.
#[test]
fn v5_client_publish_with_subscription_identifier_is_protocol_error_mqtt_3_3_4_6() {
    if conformance_wire::mosquitto_deviates(
        "mosquitto 2.0.11 accepts a client PUBLISH carrying a Subscription Identifier",
    ) {
        return;
    }
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "inpub");
    let props = Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, 5);
    client.send(&Publish::new("sz/t", b"x", 0).props(props).encode(V5));
    client.expect_error_close();
}

/// Each message on a shared subscription goes to exactly one member (5.0 section 4.8.2).
#[test]
fn v5_shared_subscription_one_member_per_message_4_8_2() {
    let broker = TestBroker::start();
    let mut members = [Client::new(&broker, V5, "m1"), Client::new(&broker, V5, "m2")];
    for member in &mut members {
        assert_eq!(member.subscribe("$share/g/sh/t", 1), 1);
    }
    let mut publisher = Client::new(&broker, V5, "pub");
    for i in 0..10u8 {
        publisher.publish_msg("sh/t", &[i], 1);
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 10 {
        assert!(Instant::now() < deadline, "only {got:?} arrived");
        for member in &mut members {
            if let Event::Packet(Packet::Publish(p)) = member.next(Duration::from_millis(20)) {
                member.acknowledge(&p);
                got.push(p.payload[0]);
            }
        }
    }
    for member in &mut members {
        member.expect_silence(QUIET);
    }
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<u8>>(), "each message exactly once");
}

/// The server forwards Payload Format Indicator, Content Type, Response Topic, Correlation Data
/// and User Properties unaltered, User Properties in order (MQTT-3.3.2-4/-15/-16/-17/-18/-20).
#[test]
fn v5_publish_properties_forwarded_unaltered_mqtt_3_3_2_17() {
    let broker = TestBroker::start();
    let mut sub = Client::new(&broker, V5, "sub");
    sub.subscribe("pp/t", 1);
    let props = Props::new()
        .user("b", "1")
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .string(prop::CONTENT_TYPE, "application/json")
        .user("a", "2")
        .string(prop::RESPONSE_TOPIC, "pp/reply")
        .binary(prop::CORRELATION_DATA, b"\x00\xffcorr")
        .user("b", "3");
    let mut publisher = Client::new(&broker, V5, "pub");
    publisher.publish(Publish::new("pp/t", b"{}", 1).props(props.clone()));
    let got = sub.receive();
    assert_eq!(got.props.int(prop::PAYLOAD_FORMAT_INDICATOR), Some(1));
    assert_eq!(got.props.text(prop::CONTENT_TYPE), Some("application/json"));
    assert_eq!(got.props.text(prop::RESPONSE_TOPIC), Some("pp/reply"));
    assert_eq!(got.props.bytes(prop::CORRELATION_DATA), Some(&b"\x00\xffcorr"[..]));
    assert_eq!(got.props.user_properties(), props.user_properties());
}

/// A Malformed Packet closes the connection after a DISCONNECT with reason 0x81 (MQTT-4.13.1-1;
/// the DISCONNECT is a SHOULD that midge keeps).
#[test]
fn v5_malformed_packet_disconnect_0x81_mqtt_4_13_1_1() {
    let broker = TestBroker::start();
    // A property length running past the end of the packet.
    let mut overrun = Vec::new();
    build::put_str(&mut overrun, "mal/t");
    overrun.extend_from_slice(&[0x20, 0x01, 0x01]);
    // A property identifier that does not exist.
    let mut unknown = Vec::new();
    build::put_str(&mut unknown, "mal/t");
    unknown.extend_from_slice(&[0x02, 0x7F, 0x00]);
    for body in [overrun, unknown] {
        let mut client = Client::new(&broker, V5, "mal");
        client.send(&build::frame(0x30, &body));
        client.expect_disconnect(0x81);
    }
}

/// A property that may appear once appearing twice is a Protocol Error: DISCONNECT 0x82
/// (5.0 section 2.2.2.2 and 3.3.2.3).
#[test]
fn v5_duplicate_property_disconnect_0x82() {
    if conformance_wire::mosquitto_deviates(
        "mosquitto 2.0.11 closes without the DISCONNECT 0x82 that section 4.13 says it SHOULD send",
    ) {
        return;
    }
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, V5, "dup");
    let props = Props::new().string(prop::CONTENT_TYPE, "a").string(prop::CONTENT_TYPE, "b");
    client.send(&Publish::new("dp/t", b"x", 0).props(props).encode(V5));
    client.expect_disconnect(0x82);
}

/// Receive Maximum 0 and Maximum Packet Size 0 in CONNECT are Protocol Errors (5.0 sections
/// 3.1.2.11.3 and 3.1.2.11.4): the server refuses, at most with a CONNACK of 0x80 or above.
#[test]
fn v5_connect_zero_receive_maximum_or_packet_size_refused() {
    let broker = TestBroker::start();
    for props in [Props::new().two(prop::RECEIVE_MAXIMUM, 0), Props::new().four(prop::MAXIMUM_PACKET_SIZE, 0)] {
        let mut client = Client::open(&broker, V5);
        client.send(&Connect::new(V5, "zero").props(props).encode());
        client.expect_refused(|code| code >= 0x80);
    }
}

/// A server sends no Response Information unless asked (MQTT-3.1.2-28) and no Authentication
/// Method or AUTH to a client that sent none (MQTT-4.12.0-6/-7).
#[test]
fn v5_connack_has_nothing_unrequested_mqtt_3_1_2_28() {
    let broker = TestBroker::start();
    let (mut client, connack) = Client::connect(&broker, &Connect::new(V5, "plain"));
    assert_eq!(connack.props.get(prop::RESPONSE_INFORMATION), None);
    assert_eq!(connack.props.get(prop::AUTHENTICATION_METHOD), None);
    client.ping();
}
