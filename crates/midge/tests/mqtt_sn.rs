//! The MQTT-SN 1.2 gateway from the wire: raw datagrams built with midge-sn-codec against a real
//! `midge serve` with an MQTT-SN listener beside its MQTT one, and an MQTT client on the other
//! side (the helpers shared with `mqtt_sn_scenarios` are in `sn_common`). Each test is named by
//! the section of the MQTT-SN 1.2 specification it checks.
//!
//! Nothing waits by sleeping: every wait is for a datagram, a packet or a log line, with a
//! timeout; that something did not arrive is shown by what arrived first.

mod sn_common;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_codec::QoS as MqttQoS;
use midge_sn_codec::{
    ClientId, Connect, Encapsulated, Message, MsgId, PubAck, Publish, PublishTopic, QoS, Register, ReturnCode,
    Subscribe, SubscribeTopic, TopicId, TopicName, WillTopic,
};
use sn_common::{name, puback, regack, short, Gateway, Sn, WAIT};

/// A forwarder (5.5) made of a UDP socket: it relays the messages of the nodes behind it, each
/// encapsulated with its Wireless Node Id and a Radius.
struct Forwarder {
    socket: UdpSocket,
    gateway: SocketAddr,
}

impl Forwarder {
    fn new(gateway: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        Self { socket, gateway }
    }

    /// Relays `message` from node `node` with `radius`.
    fn send(&self, node: &[u8], radius: u8, message: Message) {
        let wireless_node_id = Bytes::copy_from_slice(node);
        let encapsulated = Message::Encapsulated(Encapsulated { radius, wireless_node_id, message: Box::new(message) });
        let mut datagram = BytesMut::new();
        midge_sn_codec::encode(&encapsulated, &mut datagram).expect("encode");
        self.socket.send_to(&datagram, self.gateway).expect("send");
    }

    /// The next datagram from the gateway, which must be encapsulated: its node, Radius and
    /// message.
    fn recv(&self) -> (Vec<u8>, u8, Message) {
        let mut buffer = [0u8; 65_536];
        let (len, from) = self.socket.recv_from(&mut buffer).expect("a datagram from the gateway in time");
        assert_eq!(from, self.gateway);
        match midge_sn_codec::decode(&buffer[..len]).expect("the gateway sent a valid message") {
            Message::Encapsulated(Encapsulated { radius, wireless_node_id, message }) => {
                (wireless_node_id.to_vec(), radius, *message)
            }
            other => panic!("expected an Encapsulated message, got {other:?}"),
        }
    }
}

/// 6.2, 6.11, 6.12: CONNECT is answered with CONNACK, PINGREQ with PINGRESP, DISCONNECT with
/// DISCONNECT; 6.1: SEARCHGW with GWINFO and the configured gateway id.
#[test]
fn sn_6_2_connect_ping_disconnect_and_searchgw() {
    let gateway = Gateway::start("sn_gateway_id = 42", "");
    let mut sn = gateway.client();
    sn.send(&Message::SearchGw { radius: 0 });
    assert_eq!(sn.recv(), Message::GwInfo { gw_id: 42, gw_add: Bytes::new() });
    sn.connect("sensor-1");
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp);
    sn.send(&Message::Disconnect { duration: None });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    gateway.broker.wait_for_log("client_id=sensor-1 reason=client sent DISCONNECT", WAIT);
}

/// 6.5, 6.6: a topic REGISTERed, then PUBLISHes at QoS 0, 1 and 2 on its id reach an MQTT
/// subscriber, each acknowledged as its QoS asks.
#[test]
fn sn_6_5_register_then_publish_qos_0_1_2_reaches_an_mqtt_subscriber() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("sensors/#", MqttQoS::ExactlyOnce);
    let mut sn = gateway.client();
    sn.connect("sensor");
    let id = sn.register("sensors/temperature");
    assert_eq!(sn.register("sensors/temperature"), id, "the same topic, the same id");

    sn.publish(PublishTopic::Normal(id), QoS::AtMostOnce, "q0");
    assert_eq!(mqtt.recv_publish(), ("sensors/temperature".into(), "q0".into(), MqttQoS::AtMostOnce));

    let msg_id = sn.publish(PublishTopic::Normal(id), QoS::AtLeastOnce, "q1");
    assert_eq!(sn.recv(), Message::PubAck(PubAck { topic_id: id, msg_id, return_code: ReturnCode::ACCEPTED }));
    assert_eq!(mqtt.recv_publish(), ("sensors/temperature".into(), "q1".into(), MqttQoS::AtLeastOnce));

    let msg_id = sn.publish(PublishTopic::Normal(id), QoS::ExactlyOnce, "q2");
    assert_eq!(sn.recv(), Message::PubRec { msg_id });
    sn.send(&Message::PubRel { msg_id });
    assert_eq!(sn.recv(), Message::PubComp { msg_id });
    assert_eq!(mqtt.recv_publish(), ("sensors/temperature".into(), "q2".into(), MqttQoS::ExactlyOnce));
}

/// 6.6: a QoS 1 PUBLISH sent again with DUP after its PUBACK was lost is acknowledged again,
/// not published twice; a QoS 2 one sent again before PUBREL gets its PUBREC again, and is not
/// published twice either.
#[test]
fn sn_6_6_a_retransmitted_publish_is_acknowledged_not_published_twice() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("d/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    sn.connect("dup");
    let id = sn.register("d/x");
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let msg_id = sn.msg_id();
        let mut publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: PublishTopic::Normal(id),
            msg_id,
            data: Bytes::from("once"),
        };
        sn.send(&Message::Publish(publish.clone()));
        let first = sn.recv();
        publish.dup = true;
        sn.send(&Message::Publish(publish));
        assert_eq!(sn.recv(), first, "the same acknowledgement again");
        if qos == QoS::ExactlyOnce {
            sn.send(&Message::PubRel { msg_id });
            assert_eq!(sn.recv(), Message::PubComp { msg_id });
        }
        assert_eq!(mqtt.recv_publish().1, "once");
        sn.publish(PublishTopic::Normal(id), QoS::AtMostOnce, "marker");
        assert_eq!(mqtt.recv_publish().1, "marker", "the retransmission was not published");
    }
}

/// 6.10: a message an MQTT client publishes reaches an MQTT-SN subscriber of a wildcard filter:
/// the gateway REGISTERs its topic first, with an id, then PUBLISHes on that id; the next
/// message on the topic needs no REGISTER. At QoS 2 the gateway goes through PUBREL.
#[test]
fn sn_6_10_wildcard_subscription_gets_register_then_publish() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("listener");
    let ack = sn.subscribe(name("alerts/+"), QoS::ExactlyOnce);
    assert_eq!((ack.return_code, ack.topic_id, ack.qos), (ReturnCode::ACCEPTED, TopicId(0), QoS::ExactlyOnce));
    let mut mqtt = gateway.mqtt("alarm");
    mqtt.publish("alerts/fire", "hot", MqttQoS::AtLeastOnce, false);
    let id = sn.accept_register("alerts/fire");
    let publish = sn.recv_publish();
    assert_eq!(
        (publish.topic, publish.qos, &publish.data[..]),
        (PublishTopic::Normal(id), QoS::AtLeastOnce, &b"hot"[..])
    );
    mqtt.publish("alerts/fire", "hotter", MqttQoS::ExactlyOnce, false);
    let publish = sn.recv_publish();
    assert_eq!(
        (publish.topic, publish.qos, &publish.data[..]),
        (PublishTopic::Normal(id), QoS::ExactlyOnce, &b"hotter"[..])
    );
}

/// 6.10: a REGISTER the client refuses is not followed by a PUBLISH on that id: the next thing
/// the client gets is the REGISTER of the next topic.
#[test]
fn sn_6_10_a_refused_register_is_not_followed_by_a_publish() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("picky");
    sn.subscribe(name("r/#"), QoS::AtLeastOnce);
    let mut mqtt = gateway.mqtt("p");
    mqtt.publish("r/unwanted", "no", MqttQoS::AtLeastOnce, false);
    let Message::Register(register) = sn.recv() else { panic!("expected REGISTER") };
    assert_eq!(register.topic_name.as_str(), "r/unwanted");
    sn.send(&regack(&register, ReturnCode::REJECTED_NOT_SUPPORTED));
    mqtt.publish("r/wanted", "yes", MqttQoS::AtLeastOnce, false);
    let id = sn.accept_register("r/wanted");
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(id), &b"yes"[..]));
}

/// 6.9: a topic name without wildcards gets its id in the SUBACK, and a SUBSCRIBE sent again
/// (its SUBACK lost) gets the same id, as does a REGISTER of the name; messages on it come on
/// that id without a REGISTER.
#[test]
fn sn_6_9_a_subscribe_sent_again_gets_the_same_topic_id() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("retry");
    let first = sn.subscribe(name("home/door"), QoS::AtLeastOnce);
    assert_eq!(first.return_code, ReturnCode::ACCEPTED);
    assert_ne!(first.topic_id, TopicId(0));
    let again = sn.subscribe(name("home/door"), QoS::AtLeastOnce);
    assert_eq!(again.topic_id, first.topic_id);
    assert_eq!(sn.register("home/door"), first.topic_id);
    gateway.mqtt("door").publish("home/door", "open", MqttQoS::AtLeastOnce, false);
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(first.topic_id), &b"open"[..]));
}

/// 6.9: a retained message reaches a new MQTT-SN subscriber, on its topic's id, retained.
#[test]
fn sn_6_9_a_retained_message_reaches_an_sn_subscriber() {
    let gateway = Gateway::start("", "");
    gateway.mqtt("keeper").publish("state/lamp", "on", MqttQoS::AtLeastOnce, true);
    let mut sn = gateway.client();
    sn.connect("late");
    let ack = sn.subscribe(name("state/lamp"), QoS::AtLeastOnce);
    let publish = sn.recv_publish();
    assert_eq!(
        (publish.topic, publish.retain, &publish.data[..]),
        (PublishTopic::Normal(ack.topic_id), true, &b"on"[..])
    );
}

/// 6.7: predefined topic ids and short topic names both ways: subscribed to and published to by
/// the client, and used by the gateway for messages on those topics.
#[test]
fn sn_6_7_predefined_ids_and_short_names_both_ways() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n7 = \"plant/line-1/status\"", "");
    let mut sn = gateway.client();
    sn.connect("plc");
    let ack = sn.subscribe(SubscribeTopic::Predefined(TopicId(7)), QoS::AtLeastOnce);
    assert_eq!((ack.return_code, ack.topic_id), (ReturnCode::ACCEPTED, TopicId(7)));
    let ack = sn.subscribe(SubscribeTopic::Short(short("cm")), QoS::AtLeastOnce);
    assert_eq!(ack.return_code, ReturnCode::ACCEPTED);
    let unknown = sn.subscribe(SubscribeTopic::Predefined(TopicId(8)), QoS::AtLeastOnce);
    assert_eq!(unknown.return_code, ReturnCode::REJECTED_INVALID_TOPIC_ID);

    let mut mqtt = gateway.mqtt("scada");
    mqtt.subscribe("ab", MqttQoS::AtLeastOnce);
    mqtt.publish("plant/line-1/status", "running", MqttQoS::AtLeastOnce, false);
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Predefined(TopicId(7)), &b"running"[..]));
    mqtt.publish("cm", "command", MqttQoS::AtLeastOnce, false);
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Short(short("cm")), &b"command"[..]));

    sn.publish(PublishTopic::Short(short("ab")), QoS::AtLeastOnce, "short");
    assert!(matches!(sn.recv(), Message::PubAck(ack) if ack.return_code == ReturnCode::ACCEPTED));
    assert_eq!(mqtt.recv_publish(), ("ab".into(), "short".into(), MqttQoS::AtLeastOnce));
}

/// 6.8: a PUBLISH at QoS -1, from an address with no connection, to a predefined id or a short
/// name is published at QoS 0; one to a normal id is dropped (and never answered).
#[test]
fn sn_6_8_qos_minus_one_without_a_connection() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n1 = \"beacons/one\"", "");
    let mut mqtt = gateway.mqtt("collector");
    mqtt.subscribe("#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    sn.publish(PublishTopic::Normal(TopicId(1)), QoS::MinusOne, "lost");
    sn.publish(PublishTopic::Predefined(TopicId(1)), QoS::MinusOne, "beep");
    assert_eq!(mqtt.recv_publish(), ("beacons/one".into(), "beep".into(), MqttQoS::AtMostOnce));
    sn.publish(PublishTopic::Short(short("bx")), QoS::MinusOne, "blip");
    assert_eq!(mqtt.recv_publish(), ("bx".into(), "blip".into(), MqttQoS::AtMostOnce));
    gateway.broker.wait_for_log("QoS -1 PUBLISH to an unknown topic dropped", WAIT);
    sn.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(sn.recv(), Message::GwInfo { .. }), "nothing was sent back before");
}

/// 5.4.13, 6.6: a PUBLISH on a topic id the gateway does not know gets PUBACK "rejected:
/// invalid topic ID", whatever its QoS.
#[test]
fn sn_5_4_13_an_unknown_topic_id_gets_puback_invalid_topic_id() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("confused");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let msg_id = sn.publish(PublishTopic::Normal(TopicId(999)), qos, "x");
        let expected = PubAck { topic_id: TopicId(999), msg_id, return_code: ReturnCode::REJECTED_INVALID_TOPIC_ID };
        assert_eq!(sn.recv(), Message::PubAck(expected));
    }
    let msg_id = sn.publish(PublishTopic::Predefined(TopicId(5)), QoS::AtLeastOnce, "x");
    let expected = PubAck { topic_id: TopicId(5), msg_id, return_code: ReturnCode::REJECTED_INVALID_TOPIC_ID };
    assert_eq!(sn.recv(), Message::PubAck(expected));
}

/// 6.13: a PUBLISH the client does not acknowledge is sent again with DUP after Tretry, Nretry
/// times, and then the client is taken as lost: its session closes abnormally, so its will
/// (set in the will dialogue of 6.2) is published.
#[test]
fn sn_6_13_an_unacknowledged_publish_is_sent_again_then_the_client_is_lost() {
    let gateway = Gateway::start("sn_retry_interval_ms = 200\nsn_retry_count = 2", "");
    let mut mqtt = gateway.mqtt("observer");
    mqtt.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    sn.connect_with("mute", true, 60, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    let will = WillTopic { qos: QoS::AtLeastOnce, retain: false, topic: TopicName::new("wills/mute").unwrap() };
    sn.send(&Message::WillTopic { will: Some(will) });
    assert_eq!(sn.recv(), Message::WillMsgReq);
    sn.send(&Message::WillMsg { will_msg: Bytes::from("mute is gone") });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    sn.subscribe(SubscribeTopic::Short(short("rt")), QoS::AtLeastOnce);

    mqtt.publish("rt", "hello?", MqttQoS::AtLeastOnce, false);
    let Message::Publish(first) = sn.recv() else { panic!("expected PUBLISH") };
    assert!(!first.dup);
    for _ in 0..2 {
        let Message::Publish(again) = sn.recv() else { panic!("expected the PUBLISH again") };
        assert!(again.dup, "a retransmission carries DUP");
        assert_eq!((again.msg_id, &again.data), (first.msg_id, &first.data));
    }
    assert_eq!(mqtt.recv_publish(), ("wills/mute".into(), "mute is gone".into(), MqttQoS::AtLeastOnce));
    gateway.broker.wait_for_log("reason=no answer after 2 retransmissions", WAIT);
}

/// 6.11: a client silent for 1.5 times its Duration is taken as lost; its will is published.
#[test]
fn sn_6_11_keep_alive_expiry_ends_the_client() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("observer");
    mqtt.subscribe("wills/#", MqttQoS::AtMostOnce);
    let mut sn = gateway.client();
    sn.connect_with("sleepy", true, 1, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    let will = WillTopic { qos: QoS::AtMostOnce, retain: false, topic: TopicName::new("wills/sleepy").unwrap() };
    sn.send(&Message::WillTopic { will: Some(will) });
    assert_eq!(sn.recv(), Message::WillMsgReq);
    sn.send(&Message::WillMsg { will_msg: Bytes::from("zzz") });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    assert_eq!(mqtt.recv_publish(), ("wills/sleepy".into(), "zzz".into(), MqttQoS::AtMostOnce));
    gateway.broker.wait_for_log("client_id=sleepy reason=keep alive timeout", WAIT);
}

/// Datagrams that are not MQTT-SN 1.2 messages are dropped and counted, never answered: the
/// first answer the sender gets is to the valid SEARCHGW it sent after them.
#[test]
fn malformed_datagrams_are_dropped_counted_and_not_answered() {
    let gateway = Gateway::start("", "");
    let sn = gateway.client();
    for garbage in [&[0x01][..], &[0x05, 0xFF, 0, 0, 0], &[0x03, 0x04, 0x00], &[0x07, 0x04, 0x04, 0x02, 0, 60, b'c']] {
        sn.send_raw(garbage);
    }
    sn.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(sn.recv(), Message::GwInfo { .. }), "no answer to the garbage");
    let line = gateway.broker.wait_for_log("mqtt-sn: malformed datagram dropped", WAIT);
    assert!(line.contains("total="), "{line}");
}

/// An MQTT-SN publisher feeding a subscriber whose queue is full is paced, as an MQTT one is
/// (DESIGN.md, decision 0005): its next PUBLISH waits unhandled (no PUBACK) until the
/// subscriber has taken enough to have room again.
#[test]
fn an_sn_publisher_is_paced_while_its_subscriber_is_full() {
    let gateway = Gateway::start("", "[mqtt]\nmax_queued_messages = 4\nslow_consumer_timeout_ms = 60000");
    let mut slow = gateway.client();
    slow.connect("slow");
    slow.subscribe(SubscribeTopic::Short(short("pq")), QoS::AtLeastOnce);
    let mut fast = gateway.client();
    fast.connect("fast");
    let mut published = 0;
    let unanswered = loop {
        assert!(published < 20, "the publisher was never paced");
        let msg_id = fast.publish(PublishTopic::Short(short("pq")), QoS::AtLeastOnce, &format!("m{published}"));
        published += 1;
        match fast.try_recv(Duration::from_millis(500)) {
            Some(Message::PubAck(ack)) => assert_eq!(ack.msg_id, msg_id),
            None => break msg_id,
            Some(other) => panic!("expected PUBACK, got {other:?}"),
        }
    };
    assert!(published > 4, "paced only once the queue passed max_queued_messages ({published})");
    // The subscriber takes its messages; once its queue is down to half the bound the
    // publisher is read again, and its PUBLISH is answered.
    let mut taken = Vec::new();
    let answer = loop {
        if let Some(answer) = fast.try_recv(Duration::from_millis(1)) {
            break answer;
        }
        if taken.len() == published {
            break fast.recv(); // everything taken: the answer must come now
        }
        taken.push(slow.recv_publish().data);
    };
    assert!(matches!(answer, Message::PubAck(ack) if ack.msg_id == unanswered));
    assert_eq!(taken[0], Bytes::from("m0"), "in order");
}

/// 6.3: a client that connects with CleanSession 0 keeps its subscriptions while away, and what
/// was published for it meanwhile reaches it when it connects again, its topic REGISTERed
/// first.
#[test]
fn sn_6_3_a_persistent_session_gets_what_was_queued_while_away() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect_with("keeper", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    sn.subscribe(name("ps/+"), QoS::AtLeastOnce);
    sn.send(&Message::Disconnect { duration: None });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    gateway.broker.wait_for_log("client_id=keeper reason=client sent DISCONNECT", WAIT);

    gateway.mqtt("p").publish("ps/a", "while away", MqttQoS::AtLeastOnce, false);
    let mut back = gateway.client();
    back.connect_with("keeper", false, 60, false);
    assert_eq!(back.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let id = back.accept_register("ps/a");
    let publish = back.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(id), &b"while away"[..]));
}

/// A listener's max_connections bounds its MQTT-SN clients: one more is refused with CONNACK
/// "rejected: congestion", and no state is kept for it.
#[test]
fn max_connections_bounds_an_mqtt_sn_listener() {
    let gateway = Gateway::start("max_connections = 1", "");
    gateway.client().connect("first");
    let mut second = gateway.client();
    second.connect_with("second", true, 60, false);
    assert_eq!(second.recv(), Message::ConnAck { return_code: ReturnCode::REJECTED_CONGESTION });
    gateway.broker.wait_for_log("listener full: refusing new MQTT-SN clients", WAIT);
}

/// The MQTT-SN listener shuts down with the server: its clients are told (DISCONNECT) and the
/// process exits cleanly.
#[test]
fn an_mqtt_sn_client_is_told_when_the_server_shuts_down() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("bystander");
    let Gateway { broker, .. } = gateway;
    let status = broker.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
}

/// MQTT-SN has no credentials: on a listener that does not allow anonymous clients, a CONNECT
/// is refused with CONNACK "rejected: not supported", and a QoS -1 PUBLISH is not published.
#[test]
fn sn_6_2_a_listener_without_anonymous_clients_refuses_them() {
    let gateway = Gateway::start("allow_anonymous = false\n[listener.sn_predefined_topics]\n1 = \"closed\"", "");
    let mut sn = gateway.client();
    sn.connect_with("nobody", true, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::REJECTED_NOT_SUPPORTED });
    sn.publish(PublishTopic::Predefined(TopicId(1)), QoS::MinusOne, "x");
    gateway.broker.wait_for_log("QoS -1 PUBLISH refused: anonymous clients may not", WAIT);
}

/// 6.2, 6.13: a client that sends its CONNECT again (its CONNACK was lost) gets a new connection
/// and CONNACK, and the will of the first is not published: the client is not lost.
#[test]
fn sn_6_13_a_connect_sent_again_does_not_publish_the_will() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("observer");
    mqtt.subscribe("wills/#", MqttQoS::AtMostOnce);
    let mut sn = gateway.client();
    for _ in 0..2 {
        sn.connect_with("twice", true, 60, true);
        assert_eq!(sn.recv(), Message::WillTopicReq);
        let will = WillTopic { qos: QoS::AtMostOnce, retain: false, topic: TopicName::new("wills/twice").unwrap() };
        sn.send(&Message::WillTopic { will: Some(will) });
        assert_eq!(sn.recv(), Message::WillMsgReq);
        sn.send(&Message::WillMsg { will_msg: Bytes::from("gone") });
        assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    }
    gateway.mqtt("marker").publish("wills/marker", "first", MqttQoS::AtMostOnce, false);
    assert_eq!(mqtt.recv_publish().0, "wills/marker", "no will came before the marker");
}

/// 6.4: a connected client updates its will: WILLTOPICUPD sets the topic (and QoS, retain),
/// WILLMSGUPD the message, each answered; the updated will is the one published when the client
/// is lost. An empty WILLTOPICUPD deletes the will; WILLMSGUPD without a will topic is refused.
#[test]
fn sn_6_4_will_updates() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("observer");
    mqtt.subscribe("wills/#", MqttQoS::AtLeastOnce);

    let mut deleted = gateway.client();
    deleted.connect_with("deleted", true, 1, false);
    assert_eq!(deleted.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    deleted.send(&Message::WillMsgUpd { will_msg: Bytes::from("no topic") });
    assert_eq!(deleted.recv(), Message::WillMsgResp { return_code: ReturnCode::REJECTED_NOT_SUPPORTED });
    let will = WillTopic { qos: QoS::AtMostOnce, retain: false, topic: TopicName::new("wills/deleted").unwrap() };
    deleted.send(&Message::WillTopicUpd { will: Some(will) });
    assert_eq!(deleted.recv(), Message::WillTopicResp { return_code: ReturnCode::ACCEPTED });
    deleted.send(&Message::WillTopicUpd { will: None });
    assert_eq!(deleted.recv(), Message::WillTopicResp { return_code: ReturnCode::ACCEPTED });
    gateway.broker.wait_for_log("client_id=deleted reason=keep alive timeout", WAIT);

    let mut sn = gateway.client();
    sn.connect_with("updated", true, 1, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let will = WillTopic { qos: QoS::AtLeastOnce, retain: false, topic: TopicName::new("wills/updated").unwrap() };
    sn.send(&Message::WillTopicUpd { will: Some(will) });
    assert_eq!(sn.recv(), Message::WillTopicResp { return_code: ReturnCode::ACCEPTED });
    sn.send(&Message::WillMsgUpd { will_msg: Bytes::from("updated is gone") });
    assert_eq!(sn.recv(), Message::WillMsgResp { return_code: ReturnCode::ACCEPTED });
    assert_eq!(mqtt.recv_publish(), ("wills/updated".into(), "updated is gone".into(), MqttQoS::AtLeastOnce));
}

/// 6.14: a client that sleeps is sent nothing; its messages are kept, and when it wakes with a
/// PINGREQ carrying its client id they go first (REGISTER included, each acknowledged), then one
/// PINGRESP; a second wake-up with nothing kept gets its PINGRESP at once, not the messages
/// again.
#[test]
fn sn_6_14_a_sleeping_client_gets_its_messages_when_it_wakes_then_one_pingresp() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("sleeper");
    sn.subscribe(name("sl/+"), QoS::AtLeastOnce);
    sn.subscribe(SubscribeTopic::Short(short("s0")), QoS::AtMostOnce);
    sn.send(&Message::Disconnect { duration: Some(60) });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });

    let mut mqtt = gateway.mqtt("day");
    mqtt.publish("sl/a", "one", MqttQoS::AtLeastOnce, false);
    mqtt.publish("sl/a", "two", MqttQoS::AtLeastOnce, false);
    mqtt.publish("s0", "three", MqttQoS::AtMostOnce, false);
    sn.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(sn.recv(), Message::GwInfo { .. }), "nothing is sent to a sleeping client");

    let wake = Message::PingReq { client_id: Some(ClientId::new("sleeper").unwrap()) };
    sn.send(&wake);
    let id = sn.accept_register("sl/a");
    for expected in ["one", "two"] {
        let publish = sn.recv_publish();
        assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(id), expected.as_bytes()));
    }
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Short(short("s0")), &b"three"[..]));
    assert_eq!(sn.recv(), Message::PingResp, "PINGRESP after the buffered messages");
    sn.send(&wake);
    assert_eq!(sn.recv(), Message::PingResp, "nothing kept: PINGRESP at once, once");
}

/// 6.14: a wake-up is taken only from the address the client is bound to: a PINGREQ with its
/// client id from another address is not answered (that address must CONNECT).
#[test]
fn sn_6_14_a_wake_up_from_another_address_is_not_taken() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("bound");
    sn.send(&Message::Disconnect { duration: Some(60) });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    let elsewhere = gateway.client();
    let wake = Message::PingReq { client_id: Some(ClientId::new("bound").unwrap()) };
    elsewhere.send(&wake);
    elsewhere.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(elsewhere.recv(), Message::GwInfo { .. }), "the wake-up was not answered");
    sn.send(&wake);
    assert_eq!(sn.recv(), Message::PingResp);
}

/// 6.14: the sleep's Duration replaces the keep alive: a client with a keep alive of 1 s that
/// sleeps for 2 s is lost only after the sleep (1.5 times its Duration), and its will published.
#[test]
fn sn_6_14_a_client_that_sleeps_past_its_duration_is_lost() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("observer");
    mqtt.subscribe("wills/#", MqttQoS::AtMostOnce);
    let mut sn = gateway.client();
    sn.connect_with("dreamer", true, 1, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    let will = WillTopic { qos: QoS::AtMostOnce, retain: false, topic: TopicName::new("wills/dreamer").unwrap() };
    sn.send(&Message::WillTopic { will: Some(will) });
    assert_eq!(sn.recv(), Message::WillMsgReq);
    sn.send(&Message::WillMsg { will_msg: Bytes::from("never woke") });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    sn.send(&Message::Disconnect { duration: Some(2) });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    assert_eq!(mqtt.recv_publish(), ("wills/dreamer".into(), "never woke".into(), MqttQoS::AtMostOnce));
    gateway.broker.wait_for_log("client_id=dreamer reason=slept past its duration", WAIT);
}

/// 6.5, 6.14: topic ids hold across a sleep: woken, the client is sent its messages on the id
/// the SUBACK gave, without a REGISTER; back to the active state with a CONNECT that keeps its
/// session (CleanSession 0), it publishes on the id it registered before it slept.
#[test]
fn sn_6_14_topic_ids_hold_across_a_sleep() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("nap/out", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    sn.connect_with("napper", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let out = sn.register("nap/out");
    let inn = sn.subscribe(name("nap/in"), QoS::AtLeastOnce).topic_id;
    sn.send(&Message::Disconnect { duration: Some(60) });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    mqtt.publish("nap/in", "while asleep", MqttQoS::AtLeastOnce, false);

    sn.send(&Message::PingReq { client_id: Some(ClientId::new("napper").unwrap()) });
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(inn), &b"while asleep"[..]));
    assert_eq!(sn.recv(), Message::PingResp);

    sn.connect_with("napper", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let msg_id = sn.publish(PublishTopic::Normal(out), QoS::AtLeastOnce, "awake");
    assert_eq!(sn.recv(), Message::PubAck(PubAck { topic_id: out, msg_id, return_code: ReturnCode::ACCEPTED }));
    assert_eq!(mqtt.recv_publish(), ("nap/out".into(), "awake".into(), MqttQoS::AtLeastOnce));
    assert_eq!(sn.register("nap/in"), inn, "registered again: the same id");
}

/// 6.5, 6.3, decision 0008: a persistent session's topic ids survive a restart of the broker
/// (killed, on the same store). The client CONNECTs again with CleanSession 0 and publishes on
/// the id it registered before; a message for it on a topic that had an id comes on that id,
/// REGISTERed again first (the gateway does not assume the client kept its table); a new topic
/// gets an id none of the old ones has.
#[test]
fn sn_6_5_topic_ids_of_a_persistent_session_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("[store]\ndata_dir = {:?}\n", dir.path().display().to_string());
    let gateway = Gateway::start("", &store);
    let mut sn = gateway.client();
    sn.connect_with("keeper", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let temperature = sn.register("plant/temperature");
    let command = sn.subscribe(name("plant/command"), QoS::AtLeastOnce).topic_id;
    drop(gateway); // SIGKILL: what the REGACK and SUBACK promised is in the store

    let gateway = Gateway::start("", &store);
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("plant/temperature", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    sn.connect_with("keeper", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let msg_id = sn.publish(PublishTopic::Normal(temperature), QoS::AtLeastOnce, "21.5");
    let accepted = PubAck { topic_id: temperature, msg_id, return_code: ReturnCode::ACCEPTED };
    assert_eq!(sn.recv(), Message::PubAck(accepted), "the id registered before the restart");
    assert_eq!(mqtt.recv_publish(), ("plant/temperature".into(), "21.5".into(), MqttQoS::AtLeastOnce));

    mqtt.publish("plant/command", "stop", MqttQoS::AtLeastOnce, false);
    assert_eq!(sn.accept_register("plant/command"), command, "REGISTERed again, with its id");
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Normal(command), &b"stop"[..]));
    let other = sn.register("plant/other");
    assert!(other != temperature && other != command, "a new id: {other:?}");
}

/// 5.5: a forwarder relays two nodes' messages from one UDP address, each encapsulated with its
/// Wireless Node Id. Each node is a client of its own (forwarder address + node id); everything
/// the gateway sends a node goes back to the forwarder encapsulated with that node's id and the
/// Radius it came with: GWINFO, CONNACK, SUBACK, REGACK, PUBACK, the gateway's REGISTER and
/// PUBLISH, PINGRESP. A message from the forwarder's address that is not encapsulated is not
/// either node's.
#[test]
fn sn_5_5_each_node_behind_a_forwarder_is_a_client_answered_encapsulated() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("fw/#", MqttQoS::AtLeastOnce);
    let forwarder = Forwarder::new(gateway.sn);
    let (one, two) = (&b"\x0a\x01"[..], &b"node-2"[..]);
    forwarder.send(one, 1, Message::SearchGw { radius: 0 });
    assert_eq!(forwarder.recv(), (one.to_vec(), 1, Message::GwInfo { gw_id: 1, gw_add: Bytes::new() }));
    for (node, radius, client_id) in [(one, 1, "behind-1"), (two, 2, "behind-2")] {
        let client_id = ClientId::new(client_id).unwrap();
        forwarder.send(
            node,
            radius,
            Message::Connect(Connect { will: false, clean_session: true, duration: 60, client_id }),
        );
        let accepted = Message::ConnAck { return_code: ReturnCode::ACCEPTED };
        assert_eq!(forwarder.recv(), (node.to_vec(), radius, accepted));
    }
    gateway.broker.wait_for_log("client_id=behind-2 protocol=\"mqtt-sn\"", WAIT);

    let topic = name("fw/+");
    forwarder.send(
        one,
        1,
        Message::Subscribe(Subscribe { dup: false, qos: QoS::AtLeastOnce, msg_id: MsgId(1), topic }),
    );
    let (node, _, Message::SubAck(ack)) = forwarder.recv() else { panic!("expected SUBACK") };
    assert_eq!((node.as_slice(), ack.return_code), (one, ReturnCode::ACCEPTED));
    let topic_name = TopicName::new("fw/two").unwrap();
    forwarder.send(two, 2, Message::Register(Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name }));
    let (node, radius, Message::RegAck(ack)) = forwarder.recv() else { panic!("expected REGACK") };
    assert_eq!((node.as_slice(), radius), (two, 2));
    let data = Bytes::from("from two");
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(ack.topic_id),
        msg_id: MsgId(2),
        data,
    };
    forwarder.send(two, 2, Message::Publish(publish));
    assert_eq!(mqtt.recv_publish(), ("fw/two".into(), "from two".into(), MqttQoS::AtLeastOnce));

    // Node two's PUBACK and node one's REGISTER, in either order.
    let mut register = None;
    for _ in 0..2 {
        match forwarder.recv() {
            (node, 2, Message::PubAck(ack)) if node == two => assert_eq!(ack.return_code, ReturnCode::ACCEPTED),
            (node, 1, Message::Register(r)) if node == one => register = Some(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    let register = register.expect("node one's REGISTER");
    assert_eq!(register.topic_name.as_str(), "fw/two");
    forwarder.send(one, 1, regack(&register, ReturnCode::ACCEPTED));
    let (node, radius, Message::Publish(publish)) = forwarder.recv() else { panic!("expected PUBLISH") };
    assert_eq!((node.as_slice(), radius, publish.topic), (one, 1, PublishTopic::Normal(register.topic_id)));
    assert_eq!(&publish.data[..], b"from two");
    forwarder.send(one, 1, puback(&publish, ReturnCode::ACCEPTED));

    // Not encapsulated: the forwarder's address itself has no connection.
    let direct = Sn { socket: forwarder.socket.try_clone().unwrap(), gateway: gateway.sn, next_id: 0 };
    direct.send(&Message::PingReq { client_id: None });
    direct.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(direct.recv(), Message::GwInfo { .. }), "the plain PINGREQ was not answered");
    forwarder.send(one, 1, Message::PingReq { client_id: None });
    assert_eq!(forwarder.recv(), (one.to_vec(), 1, Message::PingResp));
}

/// 5.4.1, 6.1: the gateway sends ADVERTISE to `sn_advertise_address` (a broadcast address in
/// production; a socket of the test's here), the first at once and then every
/// `sn_advertise_interval_s`, with its GwId and that interval as Duration.
#[test]
fn sn_5_4_1_advertise_goes_to_the_configured_address_every_interval() {
    let listener = UdpSocket::bind("127.0.0.1:0").expect("bind");
    listener.set_read_timeout(Some(WAIT)).expect("timeout");
    let address = listener.local_addr().unwrap();
    let keys = format!("sn_gateway_id = 5\nsn_advertise_address = \"{address}\"\nsn_advertise_interval_s = 1");
    let gateway = Gateway::start(&keys, "");
    let mut buffer = [0u8; 64];
    let mut advertise = || {
        let (len, from) = listener.recv_from(&mut buffer).expect("an ADVERTISE in time");
        assert_eq!(from, gateway.sn, "from the gateway's socket");
        let message = midge_sn_codec::decode(&buffer[..len]).expect("a valid message");
        (message, std::time::Instant::now())
    };
    let (first, at) = advertise();
    assert_eq!(first, Message::Advertise { gw_id: 5, duration: 1 });
    let (second, then) = advertise();
    assert_eq!(second, first);
    let gap = then - at;
    assert!(gap >= Duration::from_millis(900), "one interval apart: {gap:?}");
}

/// 6.1: GWINFO answers SEARCHGW from anyone, so its rate is bounded (SN_GWINFO_PER_SECOND, 10):
/// a burst of SEARCHGWs gets at most about that many GWINFOs, the rest are dropped and counted,
/// and once the bucket has refilled a SEARCHGW is answered again. A GWINFO is no longer than
/// the SEARCHGW it answers (3 octets), so there is no amplification either.
#[test]
fn sn_6_1_gwinfo_answers_are_rate_limited() {
    let gateway = Gateway::start("", "");
    let sn = gateway.client();
    let search = {
        let mut datagram = BytesMut::new();
        midge_sn_codec::encode(&Message::SearchGw { radius: 0 }, &mut datagram).unwrap();
        datagram
    };
    for _ in 0..40 {
        sn.send_raw(&search);
    }
    let mut answered = 0;
    while let Some(message) = sn.try_recv(Duration::from_millis(500)) {
        let Message::GwInfo { .. } = message else { panic!("expected GWINFO, got {message:?}") };
        let mut encoded = BytesMut::new();
        midge_sn_codec::encode(&message, &mut encoded).unwrap();
        assert!(encoded.len() <= search.len(), "no amplification");
        answered += 1;
    }
    assert!((1..=12).contains(&answered), "{answered} of 40 answered");
    let line = gateway.broker.wait_for_log("mqtt-sn: SEARCHGW over the GWINFO rate dropped", WAIT);
    assert!(line.contains("total="), "{line}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        sn.send_raw(&search);
        if let Some(message) = sn.try_recv(Duration::from_millis(200)) {
            assert!(matches!(message, Message::GwInfo { .. }));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never answered again");
    }
}
