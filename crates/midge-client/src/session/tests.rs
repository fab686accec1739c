//! The state machine fed packet by packet; what it writes is decoded and compared.

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode_packet, Disconnect, MqttString, Packet, PacketId, Properties, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, SubAck, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};

use super::{Event, Session};
use crate::error::Error;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::new(text).unwrap()
}

/// Every packet in `out`, which is emptied.
fn written(out: &mut BytesMut, version: ProtocolVersion) -> Vec<Packet> {
    let mut packets = Vec::new();
    while let Some(packet) = decode_packet(out, version, usize::MAX).unwrap() {
        packets.push(packet);
    }
    assert!(out.is_empty(), "a partial packet was written");
    packets
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.next_event()).collect()
}

fn publish(session: &mut Session, qos: QoS, out: &mut BytesMut) -> Option<PacketId> {
    session.publish(&topic("t"), &Bytes::from_static(b"m"), qos, false, &Properties::default(), out).unwrap()
}

/// (DUP, QoS, packet id) of a written PUBLISH.
fn publish_fields(packet: &Packet) -> (bool, QoS, Option<u16>) {
    match packet {
        Packet::Publish(p) => (p.dup, p.qos, p.packet_id.map(PacketId::get)),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn published(packet_id: u16, qos: QoS, reason: ReasonCode) -> Event {
    Event::Published { packet_id: id(packet_id), qos, reason, properties: Box::default() }
}

#[test]
fn qos0_is_written_at_once_without_an_identifier_or_state() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    assert_eq!(publish(&mut session, QoS::AtMostOnce, &mut out), None);
    assert_eq!(publish_fields(&written(&mut out, V311)[0]), (false, QoS::AtMostOnce, None));
    assert_eq!(session.unacknowledged(), 0);
}

#[test]
fn qos1_completes_on_puback_and_frees_its_identifier() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    assert_eq!(publish(&mut session, QoS::AtLeastOnce, &mut out), Some(id(1)));
    assert_eq!(publish_fields(&written(&mut out, V311)[0]), (false, QoS::AtLeastOnce, Some(1)));
    assert_eq!(session.unacknowledged(), 1);
    session.handle(Packet::PubAck(PubResponse::success(id(1))), &mut out).unwrap();
    assert_eq!(events(&mut session), [published(1, QoS::AtLeastOnce, ReasonCode::SUCCESS)]);
    assert_eq!(session.unacknowledged(), 0);
    // A late duplicate PUBACK is ignored.
    session.handle(Packet::PubAck(PubResponse::success(id(1))), &mut out).unwrap();
    assert!(events(&mut session).is_empty());
}

#[test]
fn qos2_answers_pubrec_with_pubrel_and_completes_on_pubcomp() {
    let mut session = Session::new(V5, 10, 0);
    let mut out = BytesMut::new();
    publish(&mut session, QoS::ExactlyOnce, &mut out);
    written(&mut out, V5);
    session.handle(Packet::PubRec(PubResponse::success(id(1))), &mut out).unwrap();
    assert_eq!(written(&mut out, V5), [Packet::PubRel(PubResponse::success(id(1)))]);
    assert!(events(&mut session).is_empty(), "not complete before PUBCOMP");
    session.handle(Packet::PubComp(PubResponse::success(id(1))), &mut out).unwrap();
    assert_eq!(events(&mut session), [published(1, QoS::ExactlyOnce, ReasonCode::SUCCESS)]);
    assert_eq!(session.unacknowledged(), 0);
}

#[test]
fn v5_failure_codes_end_the_flow_and_are_reported() {
    let mut session = Session::new(V5, 10, 0);
    let mut out = BytesMut::new();
    publish(&mut session, QoS::AtLeastOnce, &mut out);
    publish(&mut session, QoS::ExactlyOnce, &mut out);
    written(&mut out, V5);
    let mut refused = PubResponse::success(id(1));
    refused.reason = ReasonCode::NOT_AUTHORIZED;
    refused.properties.reason_string = Some(MqttString::new("no").unwrap());
    session.handle(Packet::PubAck(refused.clone()), &mut out).unwrap();
    let mut quota = PubResponse::success(id(2));
    quota.reason = ReasonCode::QUOTA_EXCEEDED;
    session.handle(Packet::PubRec(quota), &mut out).unwrap();
    // No PUBREL after a failing PUBREC (MQTT 5 section 4.3.3).
    assert!(written(&mut out, V5).is_empty());
    let events = events(&mut session);
    assert_eq!(
        events[0],
        Event::Published {
            packet_id: id(1),
            qos: QoS::AtLeastOnce,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Box::new(refused.properties)
        }
    );
    assert_eq!(events[1], published(2, QoS::ExactlyOnce, ReasonCode::QUOTA_EXCEEDED));
}

#[test]
fn window_holds_messages_back_until_a_slot_frees() {
    let mut session = Session::new(V311, 2, 0);
    let mut out = BytesMut::new();
    for _ in 0..3 {
        publish(&mut session, QoS::AtLeastOnce, &mut out);
    }
    let sent: Vec<_> = written(&mut out, V311).iter().map(publish_fields).collect();
    assert_eq!(sent, [(false, QoS::AtLeastOnce, Some(1)), (false, QoS::AtLeastOnce, Some(2))]);
    assert_eq!(session.unacknowledged(), 3);
    session.handle(Packet::PubAck(PubResponse::success(id(2))), &mut out).unwrap();
    assert_eq!(publish_fields(&written(&mut out, V311)[0]), (false, QoS::AtLeastOnce, Some(3)));
}

#[test]
fn broker_receive_maximum_narrows_the_window() {
    let mut session = Session::new(V5, 100, 0);
    let mut out = BytesMut::new();
    session.resume(false, Some(1), &mut out).unwrap();
    publish(&mut session, QoS::AtLeastOnce, &mut out);
    publish(&mut session, QoS::AtLeastOnce, &mut out);
    assert_eq!(written(&mut out, V5).len(), 1);
}

#[test]
fn resume_with_session_resends_publish_with_dup_and_pubrel_in_order() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    publish(&mut session, QoS::ExactlyOnce, &mut out); // 1: will be past PUBREC
    publish(&mut session, QoS::AtLeastOnce, &mut out); // 2: unacknowledged
    session.handle(Packet::PubRec(PubResponse::success(id(1))), &mut out).unwrap();
    out.clear();
    // MQTT-4.4.0-1: resend unacknowledged PUBLISH (DUP 1, MQTT-3.3.1-1) and PUBREL, in order.
    session.resume(true, None, &mut out).unwrap();
    let resent = written(&mut out, V311);
    assert_eq!(resent[0], Packet::PubRel(PubResponse::success(id(1))));
    assert_eq!(publish_fields(&resent[1]), (true, QoS::AtLeastOnce, Some(2)));
    assert_eq!(resent.len(), 2);
}

#[test]
fn resume_without_session_sends_again_as_new_and_reports_released_ones() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    publish(&mut session, QoS::ExactlyOnce, &mut out);
    publish(&mut session, QoS::AtLeastOnce, &mut out);
    session.handle(Packet::PubRec(PubResponse::success(id(1))), &mut out).unwrap();
    out.clear();
    session.resume(false, None, &mut out).unwrap();
    // The broker had message 1 (it sent PUBREC): done. Message 2 is new to the new session.
    assert_eq!(events(&mut session), [published(1, QoS::ExactlyOnce, ReasonCode::SUCCESS)]);
    let resent = written(&mut out, V311);
    assert_eq!(resent.iter().map(publish_fields).collect::<Vec<_>>(), [(false, QoS::AtLeastOnce, Some(2))]);
}

#[test]
fn inbound_qos1_is_acknowledged_and_delivered() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    let message = inbound(QoS::AtLeastOnce, Some(9), false);
    session.handle(Packet::Publish(message.clone()), &mut out).unwrap();
    assert_eq!(written(&mut out, V311), [Packet::PubAck(PubResponse::success(id(9)))]);
    assert_eq!(events(&mut session), [Event::Message(Box::new(message))]);
}

#[test]
fn inbound_qos2_is_delivered_once_until_pubrel() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    let message = inbound(QoS::ExactlyOnce, Some(5), false);
    session.handle(Packet::Publish(message.clone()), &mut out).unwrap();
    let mut again = message.clone();
    again.dup = true;
    session.handle(Packet::Publish(again), &mut out).unwrap();
    // Both answered with PUBREC; delivered once (MQTT-4.3.3-10).
    assert_eq!(written(&mut out, V311), vec![Packet::PubRec(PubResponse::success(id(5))); 2]);
    assert_eq!(events(&mut session), [Event::Message(Box::new(message.clone()))]);
    session.handle(Packet::PubRel(PubResponse::success(id(5))), &mut out).unwrap();
    assert_eq!(written(&mut out, V311), [Packet::PubComp(PubResponse::success(id(5)))]);
    // After PUBREL the identifier is free: the same id is a new message.
    session.handle(Packet::Publish(message.clone()), &mut out).unwrap();
    assert_eq!(events(&mut session), [Event::Message(Box::new(message))]);
}

#[test]
fn inbound_topic_alias_is_learnt_and_resolved() {
    let mut session = Session::new(V5, 10, 2);
    let mut out = BytesMut::new();
    let mut first = inbound(QoS::AtMostOnce, None, false);
    first.properties.topic_alias = Some(2);
    session.handle(Packet::Publish(first), &mut out).unwrap();
    let mut second = inbound(QoS::AtMostOnce, None, false);
    second.topic = TopicName::empty_for_alias();
    second.properties.topic_alias = Some(2);
    session.handle(Packet::Publish(second), &mut out).unwrap();
    let topics: Vec<_> = events(&mut session)
        .into_iter()
        .map(|event| match event {
            Event::Message(message) => message.topic.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(topics, ["in/topic", "in/topic"]);
    let mut beyond = inbound(QoS::AtMostOnce, None, false);
    beyond.properties.topic_alias = Some(3);
    assert!(matches!(session.handle(Packet::Publish(beyond), &mut out), Err(Error::Protocol(_))));
}

#[test]
fn subscribe_is_acknowledged_and_resent_on_reconnect_until_then() {
    let mut session = Session::new(V311, 10, 0);
    let mut out = BytesMut::new();
    let subscription = Subscription {
        filter: TopicFilter::new("a/#").unwrap(),
        options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
    };
    let packet_id = session.subscribe(vec![subscription], Properties::default(), &mut out).unwrap();
    let first = written(&mut out, V311);
    session.resume(true, None, &mut out).unwrap();
    assert_eq!(written(&mut out, V311), first);
    let suback = SubAck { packet_id, reasons: vec![ReasonCode::GRANTED_QOS_1], properties: Properties::default() };
    session.handle(Packet::SubAck(suback.clone()), &mut out).unwrap();
    assert_eq!(events(&mut session), [Event::Subscribed(Box::new(suback))]);
    assert_eq!(session.pending_requests(), 0);
}

#[test]
fn broker_disconnect_carries_its_reason() {
    let mut session = Session::new(V5, 10, 0);
    let mut disconnect = Disconnect { reason: ReasonCode::SESSION_TAKEN_OVER, ..Default::default() };
    disconnect.properties.reason_string = Some(MqttString::new("another client").unwrap());
    let error = session.handle(Packet::Disconnect(disconnect), &mut BytesMut::new()).unwrap_err();
    assert_eq!(error.reason_code(), Some(ReasonCode::SESSION_TAKEN_OVER));
    assert!(error.to_string().contains("another client"), "{error}");
}

fn inbound(qos: QoS, packet_id: Option<u16>, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic("in/topic"),
        packet_id: packet_id.map(id),
        properties: Properties::default(),
        payload: Bytes::from_static(b"hello"),
    }
}

/// Relay mode (a bridge): nothing is answered by the session; the application gets the
/// PUBLISH and the acknowledgements as they came, and what it sends goes out unchanged.
#[test]
fn relay_mode_answers_nothing_and_passes_acknowledgements_up() {
    let mut session = Session::new(V311, 10, 0);
    session.set_relay(true);
    let mut out = BytesMut::new();
    session.handle(Packet::Publish(inbound(QoS::ExactlyOnce, Some(7), false)), &mut out).unwrap();
    session.handle(Packet::PubRel(PubResponse::success(id(7))), &mut out).unwrap();
    session.handle(Packet::PubAck(PubResponse::success(id(9))), &mut out).unwrap();
    assert!(out.is_empty(), "relay mode wrote {:?}", written(&mut out, V311));
    let got = events(&mut session);
    assert!(matches!(&got[0], Event::Message(p) if p.packet_id == Some(id(7)) && p.qos == QoS::ExactlyOnce));
    assert_eq!(got[1], Event::Relayed(Box::new(Packet::PubRel(PubResponse::success(id(7))))));
    assert_eq!(got[2], Event::Relayed(Box::new(Packet::PubAck(PubResponse::success(id(9))))));
    session.send(&Packet::PubRec(PubResponse::success(id(7))), &mut out).unwrap();
    assert_eq!(written(&mut out, V311), vec![Packet::PubRec(PubResponse::success(id(7)))]);
}
