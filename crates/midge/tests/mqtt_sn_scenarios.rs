//! The scenarios of EMQX's MQTT-SN protocol suite (`emqx_sn_protocol_SUITE`), rewritten as raw
//! datagram tests of our own, with what the gateway must do taken from the MQTT-SN 1.2
//! specification; each test is named by the section it checks, and its comment names the EMQX
//! cases it stands for. Where Midge does something else than EMQX on purpose, the comment says
//! so and why. The case-by-case mapping, with the cases that do not apply to Midge, is in
//! docs/decisions/0008-mqtt-sn-gateway.md ("Tested against EMQX's scenarios").
//!
//! Nothing waits by sleeping: every wait is for a datagram, a packet or a log line, with a
//! timeout; that something did not arrive is shown by what arrived first. Where a test needs
//! time to pass (a sleep's Duration), it spends it waiting for a datagram that must not come.

mod sn_common;
mod support;

use std::time::Duration;

use bytes::Bytes;
use midge_codec::QoS as MqttQoS;
use midge_sn_codec::{
    ClientId, Message, MsgId, PubAck, Publish, PublishTopic, QoS, RegAck, Register, ReturnCode, SubscribeTopic,
    TopicId, TopicName, Unsubscribe, WillTopic,
};
use sn_common::{name, puback, regack, short, Gateway, Mqtt, Sn, WAIT};

/// UNSUBSCRIBE and its UNSUBACK.
fn unsubscribe(sn: &mut Sn, topic: SubscribeTopic) {
    let msg_id = sn.msg_id();
    sn.send(&Message::Unsubscribe(Unsubscribe { msg_id, topic }));
    assert_eq!(sn.recv(), Message::UnsubAck { msg_id });
}

/// CONNECT with a will on `topic` (QoS 1) and the will dialogue, up to CONNACK.
fn connect_with_will(sn: &mut Sn, client_id: &str, clean_session: bool, duration: u16, topic: &str, will: &str) {
    sn.connect_with(client_id, clean_session, duration, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    let will_topic = WillTopic { qos: QoS::AtLeastOnce, retain: false, topic: TopicName::new(topic).unwrap() };
    sn.send(&Message::WillTopic { will: Some(will_topic) });
    assert_eq!(sn.recv(), Message::WillMsgReq);
    sn.send(&Message::WillMsg { will_msg: Bytes::copy_from_slice(will.as_bytes()) });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
}

/// DISCONNECT with a Duration (6.14), and its DISCONNECT.
fn fall_asleep(sn: &Sn, seconds: u16) {
    sn.send(&Message::Disconnect { duration: Some(seconds) });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
}

/// The wake-up PINGREQ of 6.14, with the client's id.
fn wake_up(client_id: &str) -> Message {
    Message::PingReq { client_id: Some(ClientId::new(client_id).unwrap()) }
}

/// Lets `time` pass while checking that the gateway sends the client nothing meanwhile.
fn quiet_for(sn: &Sn, time: Duration) {
    assert_eq!(sn.try_recv(time), None, "nothing is sent meanwhile");
}

/// Shows that no will was published to the `wills/#` subscriber `watcher`: a marker published
/// now is the next message it gets.
fn no_will_before_marker(gateway: &Gateway, watcher: &mut Mqtt) {
    gateway.mqtt("marker").publish("wills/marker", "marker", MqttQoS::AtMostOnce, false);
    assert_eq!(watcher.recv_publish().0, "wills/marker", "no will came before the marker");
}

/// PUBLISHes `data` on `topic` at `qos` from a client subscribed to it at QoS 2, and completes
/// both exchanges, in whatever order the gateway interleaves them: the client's PUBLISH
/// acknowledged as its QoS asks (PUBACK; PUBREC, PUBREL, PUBCOMP), and the message coming back
/// to it (PUBLISH, with PUBREC, PUBREL, PUBCOMP at QoS 2). Returns the message that came back.
fn round_trip(sn: &mut Sn, topic: PublishTopic, qos: QoS, data: &str) -> Publish {
    let msg_id = sn.publish(topic, qos, data);
    let mut acknowledged = matches!(qos, QoS::AtMostOnce | QoS::MinusOne);
    let mut back: Option<Publish> = None;
    let mut released = false;
    while !acknowledged || back.is_none() || !released {
        match sn.recv() {
            Message::PubAck(ack) => {
                assert_eq!(qos, QoS::AtLeastOnce, "a PUBACK only for QoS 1: {ack:?}");
                let topic_id = match topic {
                    PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
                    PublishTopic::Short(name) => TopicId(u16::from_be_bytes(name.0)),
                };
                assert_eq!(ack, PubAck { topic_id, msg_id, return_code: ReturnCode::ACCEPTED });
                acknowledged = true;
            }
            Message::PubRec { msg_id: id } => {
                assert_eq!((qos, id), (QoS::ExactlyOnce, msg_id));
                sn.send(&Message::PubRel { msg_id });
            }
            Message::PubComp { msg_id: id } => {
                assert_eq!((qos, id), (QoS::ExactlyOnce, msg_id));
                acknowledged = true;
            }
            Message::Publish(publish) => {
                assert!(back.is_none(), "the message came back once: {publish:?}");
                match publish.qos {
                    QoS::AtLeastOnce => sn.send(&puback(&publish, ReturnCode::ACCEPTED)),
                    QoS::ExactlyOnce => sn.send(&Message::PubRec { msg_id: publish.msg_id }),
                    _ => {}
                }
                released = publish.qos != QoS::ExactlyOnce;
                back = Some(publish);
            }
            Message::PubRel { msg_id: id } => {
                let publish = back.as_ref().expect("a PUBREL after the gateway's PUBLISH");
                assert_eq!(id, publish.msg_id);
                sn.send(&Message::PubComp { msg_id: id });
                released = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    back.unwrap()
}

/// 5.4.17, 5.4.18, 6.9: UNSUBSCRIBE by topic name, predefined id and short name is answered
/// with UNSUBACK, and the client gets nothing more on those topics; an UNSUBSCRIBE of a
/// predefined id the gateway does not know, or of a topic the client is not subscribed to, is
/// answered with UNSUBACK too (as MQTT's is). A short name and the same two characters as a
/// topic name are one filter. (EMQX: t_subscribe, t_subscribe_case01, 02, 03, 06, 07.)
#[test]
fn sn_5_4_17_unsubscribe_by_name_predefined_id_and_short_name_stops_delivery() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n1 = \"pre/one\"", "");
    let mut sn = gateway.client();
    sn.connect("unsubscriber");
    let id = sn.subscribe(name("u/name"), QoS::AtLeastOnce).topic_id;
    sn.subscribe(SubscribeTopic::Predefined(TopicId(1)), QoS::AtLeastOnce);
    sn.subscribe(SubscribeTopic::Short(short("us")), QoS::AtLeastOnce);
    sn.subscribe(SubscribeTopic::Short(short("Q2")), QoS::AtLeastOnce);
    let mut mqtt = gateway.mqtt("publisher");
    let topics = [
        ("u/name", PublishTopic::Normal(id)),
        ("pre/one", PublishTopic::Predefined(TopicId(1))),
        ("us", PublishTopic::Short(short("us"))),
        ("Q2", PublishTopic::Short(short("Q2"))),
    ];
    for (topic, sn_topic) in topics {
        mqtt.publish(topic, "before", MqttQoS::AtLeastOnce, false);
        let publish = sn.recv_publish();
        assert_eq!((publish.topic, &publish.data[..]), (sn_topic, &b"before"[..]));
    }

    unsubscribe(&mut sn, name("u/name"));
    unsubscribe(&mut sn, SubscribeTopic::Predefined(TopicId(1)));
    unsubscribe(&mut sn, SubscribeTopic::Short(short("us")));
    unsubscribe(&mut sn, name("Q2"));
    unsubscribe(&mut sn, SubscribeTopic::Predefined(TopicId(9)));
    unsubscribe(&mut sn, name("never/subscribed"));
    sn.subscribe(SubscribeTopic::Short(short("mk")), QoS::AtLeastOnce);
    for (topic, _) in topics {
        mqtt.publish(topic, "after", MqttQoS::AtLeastOnce, false);
    }
    mqtt.publish("mk", "marker", MqttQoS::AtLeastOnce, false);
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Short(short("mk")), &b"marker"[..]));
}

/// 5.4.16: a SUBACK's TopicId is the id the gateway will PUBLISH on: a new normal id for a
/// topic name (each name its own), 0x0000 for a filter with wildcards and for a short name
/// (wildcards allowed in one too, "/#"); the QoS granted is the QoS asked for.
/// (EMQX: t_subscribe_case03, t_subscribe_case05, t_publish_qos0_case05.)
#[test]
fn sn_5_4_16_suback_topic_id_by_kind_of_topic() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("subscriber");
    let ack = sn.subscribe(SubscribeTopic::Short(short("te")), QoS::ExactlyOnce);
    assert_eq!((ack.return_code, ack.topic_id, ack.qos), (ReturnCode::ACCEPTED, TopicId(0), QoS::ExactlyOnce));
    let ack = sn.subscribe(SubscribeTopic::Short(short("/#")), QoS::AtMostOnce);
    assert_eq!((ack.return_code, ack.topic_id), (ReturnCode::ACCEPTED, TopicId(0)));
    for filter in ["/sport/#", "/a/+/water"] {
        let ack = sn.subscribe(name(filter), QoS::AtLeastOnce);
        assert_eq!((ack.return_code, ack.topic_id, ack.qos), (ReturnCode::ACCEPTED, TopicId(0), QoS::AtLeastOnce));
    }
    let abcd = sn.register("abcD");
    let ack = sn.subscribe(name("abcD"), QoS::AtLeastOnce);
    assert_eq!((ack.return_code, ack.topic_id), (ReturnCode::ACCEPTED, abcd), "the id the REGISTER gave");
    let home = sn.subscribe(name("/Tom/Home"), QoS::AtLeastOnce);
    assert_eq!(home.return_code, ReturnCode::ACCEPTED);
    assert!(home.topic_id != TopicId(0) && home.topic_id != abcd, "a new id: {:?}", home.topic_id);
}

/// 5.4.16, 6.7: a subscription by name to a topic that has a predefined id gets that id in its
/// SUBACK, because that is the id the gateway PUBLISHes the topic's messages on (with
/// TopicIdType "predefined"). A REGISTER of the same name gets a normal id (the client
/// PUBLISHes on it with TopicIdType "normal"), and a PUBLISH on it reaches the subscriber on
/// the predefined id. (EMQX: t_subscribe_case02, t_subscribe_case04. EMQX answers the REGISTER
/// with the predefined id too; Midge keeps the two kinds of id apart, as TopicIdType does, and
/// its normal ids skip the predefined ones so that a client keeping one table cannot confuse
/// them.)
#[test]
fn sn_5_4_16_a_subscription_by_name_to_a_predefined_topic_gets_its_predefined_id() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n1 = \"/predefined/hello\"", "");
    let mut sn = gateway.client();
    sn.connect("predefined-by-name");
    let ack = sn.subscribe(name("/predefined/hello"), QoS::AtLeastOnce);
    assert_eq!((ack.return_code, ack.topic_id), (ReturnCode::ACCEPTED, TopicId(1)));
    let normal = sn.register("/predefined/hello");
    assert!(normal != TopicId(0) && normal != TopicId(1), "a normal id: {normal:?}");

    let msg_id = sn.publish(PublishTopic::Normal(normal), QoS::AtLeastOnce, "hello");
    let accepted = PubAck { topic_id: normal, msg_id, return_code: ReturnCode::ACCEPTED };
    assert_eq!(sn.recv(), Message::PubAck(accepted));
    let publish = sn.recv_publish();
    assert_eq!((publish.topic, &publish.data[..]), (PublishTopic::Predefined(TopicId(1)), &b"hello"[..]));
    unsubscribe(&mut sn, name("/predefined/hello"));
}

/// 5.4.10, 5.4.11, 6.5: a REGISTER of a topic filter with wildcards is refused (REGACK
/// "rejected: not supported", TopicId 0x0000): a PUBLISH names one topic. A name with "$" in
/// it is a name like any other. (EMQX: t_subscribe_case06.)
#[test]
fn sn_5_4_10_a_register_of_a_wildcard_filter_is_refused() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("registrar");
    let abc = sn.register("abc");
    for filter in ["/blue/#", "/blue/+/white"] {
        let msg_id = sn.msg_id();
        let topic_name = TopicName::new(filter).unwrap();
        sn.send(&Message::Register(Register { topic_id: TopicId(0), msg_id, topic_name }));
        let refused = RegAck { topic_id: TopicId(0), msg_id, return_code: ReturnCode::REJECTED_NOT_SUPPORTED };
        assert_eq!(sn.recv(), Message::RegAck(refused), "{filter}");
    }
    let rain = sn.register("/$sys/rain");
    assert!(rain != TopicId(0) && rain != abc);
}

/// 5.3.4: a SUBSCRIBE whose TopicIdType is the reserved 0b11 is not an MQTT-SN 1.2 message:
/// dropped and counted, not answered; the client's next PINGREQ gets the next answer.
/// (EMQX: t_subscribe_case08, where EMQX answers SUBACK "rejected: not supported"; Midge answers
/// no malformed datagram, connected client or not, so that it never answers garbage.)
#[test]
fn sn_5_3_4_a_subscribe_with_the_reserved_topic_id_type_is_not_answered() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n2 = \"two\"", "");
    let mut sn = gateway.client();
    sn.connect("reserved");
    // Length 7, SUBSCRIBE, Flags QoS 0 and TopicIdType 0b11, MsgId 1, TopicId 2.
    sn.send_raw(&[0x07, 0x12, 0b0000_0011, 0x00, 0x01, 0x00, 0x02]);
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "the SUBSCRIBE was not answered");
    gateway.broker.wait_for_log("mqtt-sn: malformed datagram dropped", WAIT);
}

/// 6.6, 6.7, 6.9: a client subscribed (at QoS 2) to its own topics gets each of its PUBLISHes
/// back on the id it published on, at the QoS it published at: by normal id, predefined id and
/// short name, at QoS 0, 1 and 2, each acknowledged as its QoS asks (a PUBACK carries the
/// PUBLISH's TopicId: the id, or the short name's two octets). At QoS -1 a connected client's
/// PUBLISH to a predefined id or short name comes back at QoS 0.
/// (EMQX: t_publish_qos0_case01, 02, 04, 06; t_publish_qos1_case01, 02, 04;
/// t_publish_qos2_case01, 02, 03; t_publish_negqos_enabled for its topic kinds.)
#[test]
fn sn_6_6_a_client_gets_its_publishes_back_on_the_topic_it_used() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n2 = \"/predefined/nice\"", "");
    let mut sn = gateway.client();
    sn.connect("echo");
    let id = sn.subscribe(name("abc"), QoS::ExactlyOnce).topic_id;
    sn.subscribe(SubscribeTopic::Predefined(TopicId(2)), QoS::ExactlyOnce);
    sn.subscribe(SubscribeTopic::Short(short("TR")), QoS::ExactlyOnce);
    let topics = [PublishTopic::Normal(id), PublishTopic::Predefined(TopicId(2)), PublishTopic::Short(short("TR"))];
    for topic in topics {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let data = format!("{topic:?} at {qos:?}");
            let back = round_trip(&mut sn, topic, qos, &data);
            assert_eq!((back.topic, back.qos, &back.data[..]), (topic, qos, data.as_bytes()));
        }
    }
    for topic in &topics[1..] {
        let back = round_trip(&mut sn, *topic, QoS::MinusOne, "minus one");
        assert_eq!((back.topic, back.qos, &back.data[..]), (*topic, QoS::AtMostOnce, &b"minus one"[..]));
    }
}

/// 6.8: a PUBLISH at QoS -1 is never answered, from a connected client too: one to a topic the
/// gateway does not take at QoS -1 (a predefined id it does not know, or a normal id, which 6.8
/// does not name for QoS -1) is dropped and counted, with no PUBACK; the client's next PINGREQ
/// gets the next answer, and nothing was published. (EMQX: t_publish_negqos_enabled, where EMQX
/// publishes a connected client's QoS -1 on a normal id it registered; Midge takes QoS -1 on
/// predefined ids and short names only, connected or not, as 6.8 describes it.)
#[test]
fn sn_6_8_qos_minus_one_to_an_unknown_topic_from_a_connected_client_is_not_answered() {
    let gateway = Gateway::start("[listener.sn_predefined_topics]\n1 = \"pre/one\"", "");
    let mut sn = gateway.client();
    sn.connect("fire-and-forget");
    let id = sn.subscribe(name("abc"), QoS::AtLeastOnce).topic_id;
    sn.publish(PublishTopic::Normal(id), QoS::MinusOne, "on a normal id");
    sn.publish(PublishTopic::Predefined(TopicId(99)), QoS::MinusOne, "on an unknown id");
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "neither was answered nor published");
    gateway.broker.wait_for_log("QoS -1 PUBLISH to an unknown topic dropped", WAIT);
}

/// 5.4.13: a PUBLISH whose TopicIdType does not fit its TopicId is rejected with PUBACK
/// "rejected: invalid topic ID": a normal id sent as predefined (the listener has no such
/// predefined id), and a short name with a wildcard ("/#", "/+": a PUBLISH names one topic).
/// (EMQX: t_publish_qos0_case3, where EMQX takes the normal id sent as predefined;
/// t_publish_qos1_case05, 06, where EMQX answers "rejected: not supported". Midge reads the
/// TopicId as its TopicIdType says, and a short name that is not a topic name is not a valid
/// topic id.)
#[test]
fn sn_5_4_13_a_topic_id_of_the_wrong_type_or_a_wildcard_short_name_is_rejected() {
    let gateway = Gateway::start("", "");
    let mut mqtt = gateway.mqtt("watcher");
    mqtt.subscribe("#", MqttQoS::AtMostOnce);
    let mut sn = gateway.client();
    sn.connect("mistaken");
    let id = sn.subscribe(name("/a/b/c"), QoS::AtMostOnce).topic_id;
    let topics = [PublishTopic::Predefined(id), PublishTopic::Short(short("/#")), PublishTopic::Short(short("/+"))];
    for topic in topics {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let msg_id = sn.publish(topic, qos, "x");
            let Message::PubAck(ack) = sn.recv() else { panic!("expected PUBACK for {topic:?}") };
            assert_eq!((ack.msg_id, ack.return_code), (msg_id, ReturnCode::REJECTED_INVALID_TOPIC_ID), "{topic:?}");
        }
    }
    gateway.mqtt("marker").publish("marker", "marker", MqttQoS::AtMostOnce, false);
    assert_eq!(mqtt.recv_publish().0, "marker", "nothing was published before the marker");
}

/// 5.4.13, 6.10: a client that answers the gateway's PUBLISH with PUBACK "rejected: invalid
/// topic ID" (it lost its table) gets the topic REGISTERed again, with the same id, before the
/// next PUBLISH on it. The rejected message is settled: the client refused it, as an MQTT 5
/// PUBACK with an error reason code settles one. (EMQX: t_delivery_qos1_register_invalid_topic_id
/// and the replay in t_register_subs_resume_off, where EMQX sends the rejected message again
/// after the REGACK; 5.4.13 asks no redelivery, and Midge does not publish a message twice to a
/// client that answered it.)
#[test]
fn sn_5_4_13_a_client_rejecting_a_topic_id_gets_the_topic_registered_again() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("forgetful");
    let id = sn.subscribe(name("ab/c"), QoS::AtLeastOnce).topic_id;
    let mut mqtt = gateway.mqtt("publisher");
    mqtt.publish("ab/c", "first", MqttQoS::AtLeastOnce, false);
    let Message::Publish(first) = sn.recv() else { panic!("expected PUBLISH") };
    assert_eq!((first.topic, &first.data[..]), (PublishTopic::Normal(id), &b"first"[..]));
    sn.send(&puback(&first, ReturnCode::REJECTED_INVALID_TOPIC_ID));

    mqtt.publish("ab/c", "second", MqttQoS::AtLeastOnce, false);
    assert_eq!(sn.accept_register("ab/c"), id, "REGISTERed again, with its id");
    let second = sn.recv_publish();
    assert_eq!((second.topic, &second.data[..]), (PublishTopic::Normal(id), &b"second"[..]));
}

/// 6.2, 5.4.7: an empty WILLTOPIC answers WILLTOPICREQ with "no will": CONNACK comes at once
/// (no WILLMSGREQ), and when the client is lost nothing is published. (EMQX: t_will_test3.)
#[test]
fn sn_6_2_an_empty_willtopic_connects_without_a_will() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("#", MqttQoS::AtMostOnce);
    let mut sn = gateway.client();
    sn.connect_with("will-less", true, 1, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    sn.send(&Message::WillTopic { will: None });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    gateway.broker.wait_for_log("client_id=will-less reason=keep alive timeout", WAIT);
    gateway.mqtt("marker").publish("marker", "marker", MqttQoS::AtMostOnce, false);
    assert_eq!(watcher.recv_publish().0, "marker", "no will came before the marker");
}

/// 6.2, 6.3: the will of a client with a persistent session (CleanSession 0) is published when
/// the client is lost, as a clean one's is. (EMQX: t_will_case06.)
#[test]
fn sn_6_3_a_persistent_session_s_will_is_published_when_the_client_is_lost() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    connect_with_will(&mut sn, "persistent-will", false, 1, "wills/persistent", "gone");
    assert_eq!(watcher.recv_publish(), ("wills/persistent".into(), "gone".into(), MqttQoS::AtLeastOnce));
    gateway.broker.wait_for_log("client_id=persistent-will reason=keep alive timeout", WAIT);
}

/// 6.14: while a client sleeps its keep alive gives way to the sleep's Duration: a client with
/// a keep alive of 1 s that sleeps for 2 s and wakes every 1.8 s (past 1.5 times its keep
/// alive) stays connected, each wake-up answered with PINGRESP and no will published; once it
/// stays silent past 1.5 times the Duration it is lost and its will published.
/// (EMQX: t_asleep_test02_to_awake_and_back.)
#[test]
fn sn_6_14_wake_ups_keep_a_client_whose_keep_alive_is_shorter_than_its_sleep() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    connect_with_will(&mut sn, "napper", true, 1, "wills/napper", "overslept");
    fall_asleep(&sn, 2);
    for _ in 0..2 {
        quiet_for(&sn, Duration::from_millis(1800));
        sn.send(&wake_up("napper"));
        assert_eq!(sn.recv(), Message::PingResp, "still connected");
    }
    assert_eq!(watcher.recv_publish(), ("wills/napper".into(), "overslept".into(), MqttQoS::AtLeastOnce));
    gateway.broker.wait_for_log("client_id=napper reason=slept past its duration", WAIT);
}

/// 6.14: a QoS 2 message kept while the client slept is delivered when it wakes, through
/// PUBREC, PUBREL and PUBCOMP, and the PINGRESP comes after the exchange is complete.
/// (EMQX: t_asleep_test06_to_awake_qos2_dl_msg.)
#[test]
fn sn_6_14_a_qos_2_message_kept_while_asleep_completes_before_pingresp() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("sleeper");
    let id = sn.subscribe(name("tom"), QoS::ExactlyOnce).topic_id;
    fall_asleep(&sn, 60);
    gateway.mqtt("day").publish("tom", "exactly once", MqttQoS::ExactlyOnce, false);
    sn.send(&wake_up("sleeper"));
    let publish = sn.recv_publish(); // PUBLISH, PUBREC, PUBREL, PUBCOMP
    assert_eq!(
        (publish.topic, publish.qos, &publish.data[..]),
        (PublishTopic::Normal(id), QoS::ExactlyOnce, &b"exactly once"[..])
    );
    assert_eq!(sn.recv(), Message::PingResp, "PINGRESP after the QoS 2 exchange");
}

/// 6.14: a CONNECT from a sleeping client makes it active again, as a new connection (its
/// CONNACK); the sleep's Duration no longer applies (it outlives 1.5 times the Duration and
/// answers PINGREQ), and the will of the sleeping connection is not published: the client is
/// there. (EMQX: t_asleep_test07_to_connected, t_awake_test01_to_connected.)
#[test]
fn sn_6_14_a_connect_while_asleep_makes_the_client_active() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    connect_with_will(&mut sn, "riser", true, 60, "wills/riser", "never");
    fall_asleep(&sn, 1);
    sn.connect("riser");
    quiet_for(&sn, Duration::from_millis(2000));
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "active, connected");
    no_will_before_marker(&gateway, &mut watcher);
}

/// 6.14, 6.12: a DISCONNECT without a Duration from a sleeping client, or from one that woke
/// and sleeps again after its PINGRESP, ends the connection normally: answered with DISCONNECT,
/// its will not published. (EMQX: t_asleep_test08_to_disconnected, t_awake_test02_to_disconnected.)
#[test]
fn sn_6_14_a_disconnect_while_asleep_ends_the_client_without_its_will() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    for (client_id, wakes) in [("asleep", false), ("woken", true)] {
        let mut sn = gateway.client();
        connect_with_will(&mut sn, client_id, true, 60, &format!("wills/{client_id}"), "never");
        fall_asleep(&sn, 1);
        if wakes {
            sn.send(&wake_up(client_id));
            assert_eq!(sn.recv(), Message::PingResp);
        }
        sn.send(&Message::Disconnect { duration: None });
        assert_eq!(sn.recv(), Message::Disconnect { duration: None });
        gateway.broker.wait_for_log(&format!("client_id={client_id} reason=client sent DISCONNECT"), WAIT);
    }
    no_will_before_marker(&gateway, &mut watcher);
}

/// 6.13, 6.10: the gateway's REGISTER awaits its REGACK as a PUBLISH awaits its PUBACK: a
/// REGISTER the client refuses is not retried (its topic's message is dropped and the next
/// topic's REGISTER follows), an unanswered one is sent again after Tretry, Nretry times, and
/// then the client is lost and its will published.
/// (EMQX: t_register_skip_failure_topic_name_and_reach_max_retry_times, where EMQX also sends
/// the client a DISCONNECT; Midge does not write to a client it takes as lost.)
#[test]
fn sn_6_13_an_unanswered_register_is_sent_again_then_the_client_is_lost() {
    let gateway = Gateway::start("sn_retry_interval_ms = 200\nsn_retry_count = 2", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    connect_with_will(&mut sn, "unregistered", true, 60, "wills/unregistered", "no REGACK");
    sn.subscribe(name("rg/+"), QoS::AtLeastOnce);
    let mut mqtt = gateway.mqtt("publisher");
    mqtt.publish("rg/a", "refused", MqttQoS::AtLeastOnce, false);
    mqtt.publish("rg/b", "unanswered", MqttQoS::AtLeastOnce, false);
    let Message::Register(refused) = sn.recv() else { panic!("expected REGISTER") };
    assert_eq!(refused.topic_name.as_str(), "rg/a");
    sn.send(&regack(&refused, ReturnCode::REJECTED_INVALID_TOPIC_ID));

    // The refused REGISTER may have been sent again before its REGACK came.
    let first = loop {
        let Message::Register(register) = sn.recv() else { panic!("expected the next topic's REGISTER") };
        if register != refused {
            break register;
        }
    };
    assert_eq!(first.topic_name.as_str(), "rg/b");
    for _ in 0..2 {
        assert_eq!(sn.recv(), Message::Register(first.clone()), "the same REGISTER again");
    }
    assert_eq!(watcher.recv_publish(), ("wills/unregistered".into(), "no REGACK".into(), MqttQoS::AtLeastOnce));
    gateway.broker.wait_for_log("client_id=unregistered reason=no answer after 2 retransmissions", WAIT);
}

/// 6.10, 6.13: messages for a topic whose REGISTER awaits its REGACK wait too: nothing is sent
/// meanwhile (the client's PINGREQ is answered first), and after the REGACK they come in the
/// order they were published, at their QoS. (EMQX: t_register_enqueue_delivering_messages; the
/// "no PUBLISH before REGACK" step of t_asleep_test04_to_awake_qos1_dl_msg.)
#[test]
fn sn_6_10_messages_wait_for_the_regack_of_their_topic() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("patient");
    sn.subscribe(name("eq/#"), QoS::AtLeastOnce);
    let mut mqtt = gateway.mqtt("publisher");
    mqtt.publish("eq/a", "m1", MqttQoS::AtMostOnce, false);
    let Message::Register(register) = sn.recv() else { panic!("expected REGISTER") };
    assert_eq!(register.topic_name.as_str(), "eq/a");
    mqtt.publish("eq/a", "m2", MqttQoS::AtLeastOnce, false);
    mqtt.publish("eq/a", "m3", MqttQoS::AtLeastOnce, false);
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "nothing sent before the REGACK");

    sn.send(&regack(&register, ReturnCode::ACCEPTED));
    for (data, qos) in [("m1", QoS::AtMostOnce), ("m2", QoS::AtLeastOnce), ("m3", QoS::AtLeastOnce)] {
        let publish = sn.recv_publish();
        assert_eq!(
            (publish.topic, publish.qos, &publish.data[..]),
            (PublishTopic::Normal(register.topic_id), qos, data.as_bytes())
        );
    }
}

/// 6.3, 6.13: a persistent session resumed by a new CONNECT (CleanSession 0) first completes
/// what was in flight: a QoS 2 message the client had PUBRECed gets its PUBREL again; then the
/// messages queued while it was away come, their topic REGISTERed again with the same id (the
/// gateway does not assume the client kept its table, decision 0008).
/// (EMQX: t_register_subs_resume_off, t_register_subs_resume_on: EMQX REGISTERs every
/// subscribed topic up front when `subs_resume` is on; Midge REGISTERs a topic before its first
/// PUBLISH in the connection, and never PUBLISHes on an id the client was not given in it.)
#[test]
fn sn_6_3_a_resumed_session_sends_its_pubrel_again_then_what_was_queued() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect_with("resumer", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let id = sn.subscribe(name("rs/b"), QoS::ExactlyOnce).topic_id;
    let mut mqtt = gateway.mqtt("publisher");
    mqtt.publish("rs/b", "in flight", MqttQoS::ExactlyOnce, false);
    let Message::Publish(in_flight) = sn.recv() else { panic!("expected PUBLISH") };
    assert_eq!((in_flight.topic, in_flight.qos), (PublishTopic::Normal(id), QoS::ExactlyOnce));
    sn.send(&Message::PubRec { msg_id: in_flight.msg_id });
    assert_eq!(sn.recv(), Message::PubRel { msg_id: in_flight.msg_id });
    sn.send(&Message::Disconnect { duration: None }); // its PUBCOMP is lost with it
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
    gateway.broker.wait_for_log("client_id=resumer reason=client sent DISCONNECT", WAIT);
    for data in ["queued 1", "queued 2"] {
        mqtt.publish("rs/b", data, MqttQoS::AtLeastOnce, false);
    }

    let mut back = gateway.client();
    back.connect_with("resumer", false, 60, false);
    assert_eq!(back.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    assert_eq!(back.recv(), Message::PubRel { msg_id: in_flight.msg_id }, "the PUBREL again, first");
    back.send(&Message::PubComp { msg_id: in_flight.msg_id });
    assert_eq!(back.accept_register("rs/b"), id, "REGISTERed again, with its id");
    for data in ["queued 1", "queued 2"] {
        let publish = back.recv_publish();
        assert_eq!(
            (publish.topic, publish.qos, &publish.data[..]),
            (PublishTopic::Normal(id), QoS::AtLeastOnce, data.as_bytes())
        );
    }
}

/// 6.12: a DISCONNECT from an address without a connection is not answered: the gateway
/// answers an address it has no client for only a SEARCHGW or a CONNECT.
/// (EMQX: t_first_disconnect, where EMQX answers with DISCONNECT; Midge keeps no state and
/// sends nothing for an address without a connection but GWINFO and CONNACK, the two answers
/// that are bounded and no longer than what they answer.)
#[test]
fn sn_6_12_a_disconnect_without_a_connection_is_not_answered() {
    let gateway = Gateway::start("", "");
    let sn = gateway.client();
    sn.send(&Message::Disconnect { duration: None });
    sn.send(&Message::SearchGw { radius: 0 });
    assert!(matches!(sn.recv(), Message::GwInfo { .. }), "the DISCONNECT was not answered");
    gateway.broker.wait_for_log("message from an address without a connection", WAIT);
}

/// 6.2: during the will dialogue a message that does not belong to it (an ADVERTISE) is
/// ignored, and a CONNECT sent again (the client missed WILLTOPICREQ) starts the dialogue over
/// with WILLTOPICREQ; the will it ends with is the one published when the client is lost. After
/// CONNACK, a message only a gateway sends (ADVERTISE) is dropped, not answered.
/// (EMQX: t_will_case07 and the unexpected messages of t_connect, in the older
/// apps/emqx_sn suite.)
#[test]
fn sn_6_2_the_will_dialogue_ignores_other_messages_and_starts_over_on_connect() {
    let gateway = Gateway::start("", "");
    let mut watcher = gateway.mqtt("watcher");
    watcher.subscribe("wills/#", MqttQoS::AtLeastOnce);
    let mut sn = gateway.client();
    let advertise = Message::Advertise { gw_id: 1, duration: 100 };
    sn.connect_with("talker", true, 1, true);
    assert_eq!(sn.recv(), Message::WillTopicReq);
    sn.send(&advertise);
    sn.connect_with("talker", true, 1, true);
    assert_eq!(sn.recv(), Message::WillTopicReq, "asked again, not answered the ADVERTISE");
    let will = WillTopic { qos: QoS::AtLeastOnce, retain: false, topic: TopicName::new("wills/talker").unwrap() };
    sn.send(&Message::WillTopic { will: Some(will) });
    assert_eq!(sn.recv(), Message::WillMsgReq);
    sn.send(&advertise);
    sn.send(&Message::WillMsg { will_msg: Bytes::from("talked out") });
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    sn.send(&advertise);
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "the ADVERTISE was not answered");
    assert_eq!(watcher.recv_publish(), ("wills/talker".into(), "talked out".into(), MqttQoS::AtLeastOnce));
}

/// 6.14: what a sleeping client sends besides PINGREQ, CONNECT and DISCONNECT is dropped and
/// counted, not answered (a PUBACK or PUBREC for nothing, a PUBLISH); a PINGREQ from its
/// address wakes it, its ClientId being optional (5.4.19), and with nothing kept it gets its
/// PINGRESP at once; a DISCONNECT then ends it. (EMQX: t_asleep_unexpected, in the older
/// apps/emqx_sn suite, where a PINGREQ without ClientId is not answered; Midge knows the client
/// by its address, which only the client can send from.)
#[test]
fn sn_6_14_a_sleeping_client_s_other_messages_are_dropped_and_a_pingreq_wakes_it() {
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("restless");
    fall_asleep(&sn, 60);
    sn.send(&Message::PubAck(PubAck {
        topic_id: TopicId(5),
        msg_id: MsgId(5),
        return_code: ReturnCode::REJECTED_INVALID_TOPIC_ID,
    }));
    sn.send(&Message::PubRec { msg_id: MsgId(5) });
    sn.publish(PublishTopic::Short(short("zz")), QoS::AtLeastOnce, "in my sleep");
    sn.send(&Message::PingReq { client_id: None });
    assert_eq!(sn.recv(), Message::PingResp, "none of the others was answered");
    gateway.broker.wait_for_log("mqtt-sn: message from a sleeping client dropped", WAIT);
    sn.send(&Message::Disconnect { duration: None });
    assert_eq!(sn.recv(), Message::Disconnect { duration: None });
}

/// 5.4.11, 5.4.16, 6.5: a client's topic registry is bounded (SN_TOPIC_IDS, 1,024 ids): beyond
/// it a REGISTER of a new topic is refused with REGACK "rejected: congestion" (TopicId 0x0000),
/// as is a SUBSCRIBE to a new topic name, while the topics it has keep their ids.
/// (EMQX: t_topic_id_to_large, in the older apps/emqx_sn suite, where EMQX answers
/// "rejected: not supported" and "rejected: invalid topic ID"; the registry is full for now,
/// which is what "congestion" says.)
#[test]
fn sn_6_5_a_full_topic_registry_refuses_new_topics_with_congestion() {
    const SN_TOPIC_IDS: usize = 1_024;
    let gateway = Gateway::start("", "");
    let mut sn = gateway.client();
    sn.connect("collector");
    let first = sn.register("t/0");
    for n in 1..SN_TOPIC_IDS {
        sn.register(&format!("t/{n}"));
    }
    let msg_id = sn.msg_id();
    let topic_name = TopicName::new("t/one-too-many").unwrap();
    sn.send(&Message::Register(Register { topic_id: TopicId(0), msg_id, topic_name }));
    let refused = RegAck { topic_id: TopicId(0), msg_id, return_code: ReturnCode::REJECTED_CONGESTION };
    assert_eq!(sn.recv(), Message::RegAck(refused));
    let ack = sn.subscribe(name("t/one-too-many"), QoS::AtLeastOnce);
    assert_eq!((ack.return_code, ack.topic_id), (ReturnCode::REJECTED_CONGESTION, TopicId(0)));
    assert_eq!(sn.register("t/0"), first, "a topic it has keeps its id");
}
