//! One message from a connected client: translated into the MQTT 3.1.1 packet the core takes,
//! handled by the client's `ClientConnection`, and the core's answer translated back.
//!
//! The core answers a packet with MQTT bytes for the client (PUBACK, PUBREC, PUBCOMP, SUBACK,
//! UNSUBACK, PINGRESP); they are decoded here, once the store has committed what they promise,
//! and become the MQTT-SN answer, with what only the MQTT-SN message carried (its topic id).
//! What MQTT-SN adds itself (topic ids, REGISTER, the gateway's own outbound messages) never
//! reaches the core.

use std::time::Instant;

use bytes::BytesMut;
use midge_broker::{CloseKind, Flow, ReadBatch};
use midge_codec::{
    decode_packet, Packet, PacketId, Properties, ProtocolVersion, PubResponse, QoS, Subscribe as MqttSubscribe,
    Subscription, SubscriptionOptions, TopicFilter, Unsubscribe as MqttUnsubscribe,
};
use midge_sn_codec::{
    Message, MsgId, PubAck, Publish, PublishTopic, QoS as SnQoS, RegAck, Register, ReturnCode, SubAck, Subscribe,
    SubscribeTopic, TopicId, Unsubscribe, WillTopic,
};

use super::client::{Client, Ending};
use super::counters::SnCounters;
use super::outbound::{PubRecOutcome, RegAckOutcome};

impl Client {
    /// Handles one message; `Some` ends the connection.
    pub(super) async fn handle(&mut self, message: Message) -> Option<Ending> {
        let now = Instant::now();
        if let Some(done) = self.while_asleep(&message, now).await {
            return done;
        }
        if self.sleep.is_none() {
            // Any message from the client is a sign of life (6.11, as MQTT-3.1.2-24).
            self.connection.heard(now);
        }
        match message {
            Message::Publish(publish) => return self.publish(publish, now).await,
            Message::Register(register) => return self.register(register).await,
            Message::RegAck(ack) => self.regack(ack),
            Message::PubAck(ack) => {
                if let Some(packet_id) = self.outbound.on_puback(ack.msg_id, ack.return_code, &mut self.topics) {
                    self.connection.acknowledge(packet_id);
                    self.window_freed();
                }
            }
            Message::PubRec { msg_id } => match self.outbound.on_pubrec(msg_id, now) {
                PubRecOutcome::Release(packet_id, release) => {
                    if let Err(end) = self.core(Packet::PubRec(PubResponse::success(packet_id)), now).await {
                        return Some(end);
                    }
                    self.link.send(&release).await;
                }
                PubRecOutcome::Again(release) => self.link.send(&release).await,
                PubRecOutcome::Unknown => {}
            },
            Message::PubComp { msg_id } => {
                if let Some(packet_id) = self.outbound.on_pubcomp(msg_id) {
                    if let Err(end) = self.core(Packet::PubComp(PubResponse::success(packet_id)), now).await {
                        return Some(end);
                    }
                    self.window_freed();
                }
            }
            Message::PubRel { msg_id } => {
                // The core releases the QoS 2 id; its PUBCOMP is ours to send either way.
                if let Some(packet_id) = PacketId::new(msg_id.0) {
                    if let Err(end) = self.core(Packet::PubRel(PubResponse::success(packet_id)), now).await {
                        return Some(end);
                    }
                }
                self.link.send(&Message::PubComp { msg_id }).await;
            }
            Message::Subscribe(subscribe) => return self.subscribe(subscribe, now).await,
            Message::Unsubscribe(unsubscribe) => return self.unsubscribe(unsubscribe, now).await,
            Message::PingReq { .. } => {
                // 6.11; from a client that is not asleep, a PINGREQ with a client id (a wake-up,
                // 6.14) is a plain PINGREQ too.
                if let Err(end) = self.core(Packet::PingReq, now).await {
                    return Some(end);
                }
                self.link.send(&Message::PingResp).await;
            }
            Message::Disconnect { duration: Some(seconds) } if seconds > 0 => self.fall_asleep(seconds, now).await,
            Message::Disconnect { .. } => {
                // 6.12: acknowledged with a DISCONNECT.
                self.link.send(&Message::Disconnect { duration: None }).await;
                return Some((CloseKind::Normal, "client sent DISCONNECT".to_owned(), None));
            }
            Message::Connect(connect) => {
                // A client that missed its CONNACK (6.13: it sends CONNECT again) or restarted:
                // a new connection, which takes the session over. The client is there, not lost,
                // so the old connection's will is not published (the new one brings its own);
                // it is when another client id takes the address.
                let same = connect.client_id.as_str() == &**self.connection.client_id();
                let how = if same { CloseKind::Normal } else { CloseKind::Abnormal };
                return Some((how, "CONNECT again from its address".to_owned(), Some(connect)));
            }
            Message::WillTopicUpd { will } => {
                let return_code = self.update_will_topic(will, now);
                self.link.send(&Message::WillTopicResp { return_code }).await;
            }
            Message::WillMsgUpd { will_msg } => {
                let return_code = self.update_will_message(will_msg, now);
                self.link.send(&Message::WillMsgResp { return_code }).await;
            }
            // A will dialogue's messages after CONNACK: a repeat the client sent, nothing to do.
            Message::WillTopic { .. } | Message::WillMsg { .. } => {}
            other => {
                let kind = other.msg_type();
                let counter = &self.shared.counters.unexpected;
                SnCounters::drop(counter, "message a client does not send dropped", self.peer(), &kind);
            }
        }
        None
    }

    /// 5.4.12 PUBLISH from the client (6.6, 6.7, 6.8): its topic resolved to a name, then
    /// published by the core as an MQTT PUBLISH, and acknowledged as its QoS asks.
    async fn publish(&mut self, publish: Publish, now: Instant) -> Option<Ending> {
        let Publish { dup, qos, retain, topic, msg_id, data } = publish;
        let answer = |return_code| Message::PubAck(PubAck { topic_id: raw_topic_id(topic), msg_id, return_code });
        let name = match &topic {
            PublishTopic::Normal(TopicId(id)) if qos != SnQoS::MinusOne => self.topics.name(*id),
            PublishTopic::Normal(_) => None,
            PublishTopic::Predefined(TopicId(id)) => self.shared.predefined.name(*id),
            PublishTopic::Short(name) => name.as_str(),
        };
        let Some(topic_name) = name.and_then(|name| midge_codec::TopicName::new(name).ok()) else {
            if qos == SnQoS::MinusOne {
                // 6.8: a PUBLISH at QoS -1 is never answered, whoever sends it; one to a topic
                // the gateway does not take at QoS -1 is dropped, as from an unconnected address.
                let counter = &self.shared.counters.minus_one_refused;
                let detail = format!("{topic:?}");
                SnCounters::drop(counter, "QoS -1 PUBLISH to an unknown topic dropped", self.peer(), &detail);
                return None;
            }
            // An id the gateway does not know: the client must REGISTER again (5.4.13).
            self.link.send(&answer(ReturnCode::REJECTED_INVALID_TOPIC_ID)).await;
            return None;
        };
        let qos = match qos {
            // 6.8: from a connected client too, QoS -1 is published as QoS 0.
            SnQoS::AtMostOnce | SnQoS::MinusOne => QoS::AtMostOnce,
            SnQoS::AtLeastOnce => QoS::AtLeastOnce,
            SnQoS::ExactlyOnce => QoS::ExactlyOnce,
        };
        let limits = self.connection.broker().limits();
        let packet_id = PacketId::new(msg_id.0);
        let supported = qos.as_u8() <= limits.max_qos && (!retain || limits.retain_available);
        if !supported || (qos != QoS::AtMostOnce && packet_id.is_none()) {
            // MQTT would close the connection; MQTT-SN can say no to the one message.
            self.link.send(&answer(ReturnCode::REJECTED_NOT_SUPPORTED)).await;
            return None;
        }
        if qos == QoS::AtLeastOnce && dup && self.recent_qos1.contains(msg_id.0) {
            // A retransmission of one already published: its PUBACK was lost.
            self.link.send(&answer(ReturnCode::ACCEPTED)).await;
            return None;
        }
        let packet = midge_codec::Publish {
            dup,
            qos,
            retain,
            topic: topic_name,
            packet_id: packet_id.filter(|_| qos != QoS::AtMostOnce),
            properties: Properties::default(),
            payload: data,
        };
        let responses = match self.core(Packet::Publish(packet), now).await {
            Ok(responses) => responses,
            Err(end) => return Some(end),
        };
        for response in responses {
            match response {
                Packet::PubAck(_) => {
                    self.recent_qos1.push(msg_id.0);
                    self.link.send(&answer(ReturnCode::ACCEPTED)).await;
                }
                // The core knows a QoS 2 id it already has (MQTT-4.3.3-10): acknowledged, not
                // published again.
                Packet::PubRec(_) => self.link.send(&Message::PubRec { msg_id }).await,
                _ => {}
            }
        }
        None
    }

    /// 5.4.22 WILLTOPICUPD (6.4): a new will topic, QoS and retain flag, keeping the will
    /// message (empty if there was no will); an empty WILLTOPICUPD deletes the will.
    fn update_will_topic(&mut self, will: Option<WillTopic>, now: Instant) -> ReturnCode {
        let Some(will) = will else {
            return self.set_will(None, now);
        };
        let Ok(topic) = midge_codec::TopicName::new(will.topic.as_str()) else {
            return ReturnCode::REJECTED_NOT_SUPPORTED;
        };
        let payload = self.connection.will().map(|old| old.payload.clone()).unwrap_or_default();
        let qos = match will.qos {
            SnQoS::AtMostOnce | SnQoS::MinusOne => QoS::AtMostOnce,
            SnQoS::AtLeastOnce => QoS::AtLeastOnce,
            SnQoS::ExactlyOnce => QoS::ExactlyOnce,
        };
        let will = midge_codec::Will { topic, payload, qos, retain: will.retain, properties: Properties::default() };
        self.set_will(Some(will), now)
    }

    /// 5.4.23 WILLMSGUPD (6.4): a new will message for the will topic in force; refused when
    /// there is none.
    fn update_will_message(&mut self, will_msg: bytes::Bytes, now: Instant) -> ReturnCode {
        let Some(old) = self.connection.will() else { return ReturnCode::REJECTED_NOT_SUPPORTED };
        let will = midge_codec::Will { payload: will_msg, ..old.clone() };
        self.set_will(Some(will), now)
    }

    fn set_will(&mut self, will: Option<midge_codec::Will>, now: Instant) -> ReturnCode {
        match self.connection.set_will(will, now) {
            Ok(()) => ReturnCode::ACCEPTED,
            Err(why) => {
                tracing::debug!(peer = %self.peer(), why, "mqtt-sn: will update refused");
                ReturnCode::REJECTED_NOT_SUPPORTED
            }
        }
    }

    /// 5.4.10 REGISTER from the client (6.5): the id of a topic name, the same one every time.
    async fn register(&mut self, register: Register) -> Option<Ending> {
        let Register { msg_id, topic_name, .. } = register;
        let (topic_id, return_code) = if midge_codec::TopicName::new(topic_name.as_str()).is_err() {
            // Wildcards, or not a topic MQTT can carry.
            (0, ReturnCode::REJECTED_NOT_SUPPORTED)
        } else {
            match self.topics.assign_known(topic_name.as_str(), &self.shared.predefined) {
                Some(id) => (id, ReturnCode::ACCEPTED),
                None => (0, ReturnCode::REJECTED_CONGESTION),
            }
        };
        if let Err(end) = self.record_topic_ids().await {
            return Some(end);
        }
        self.link.send(&Message::RegAck(RegAck { topic_id: TopicId(topic_id), msg_id, return_code })).await;
        None
    }

    /// 5.4.11 REGACK from the client, for the gateway's REGISTER (6.10).
    fn regack(&mut self, ack: RegAck) {
        match self.outbound.on_regack(ack.msg_id, ack.return_code, &mut self.topics) {
            RegAckOutcome::Refused(packet_id) => self.dropped(packet_id, "the client refused its topic's REGISTER"),
            RegAckOutcome::Accepted | RegAckOutcome::Stale => {}
        }
    }

    /// 5.4.15 SUBSCRIBE (6.9): to a topic name (wildcards allowed), a predefined id or a short
    /// name. A topic name without wildcards gets its normal id in the SUBACK, the same one a
    /// SUBSCRIBE sent again gets.
    async fn subscribe(&mut self, subscribe: Subscribe, now: Instant) -> Option<Ending> {
        let Subscribe { qos, msg_id, topic, .. } = subscribe;
        let refuse =
            |return_code| Message::SubAck(SubAck { qos: SnQoS::AtMostOnce, topic_id: TopicId(0), msg_id, return_code });
        let qos = match qos {
            SnQoS::AtMostOnce => QoS::AtMostOnce,
            SnQoS::AtLeastOnce => QoS::AtLeastOnce,
            SnQoS::ExactlyOnce => QoS::ExactlyOnce,
            SnQoS::MinusOne => {
                self.link.send(&refuse(ReturnCode::REJECTED_NOT_SUPPORTED)).await;
                return None;
            }
        };
        let Some((filter, named)) = self.filter(&topic) else {
            self.link.send(&refuse(ReturnCode::REJECTED_INVALID_TOPIC_ID)).await;
            return None;
        };
        // The id the client will see messages on (5.4.16: the SUBACK's TopicId is the one the
        // gateway PUBLISHes on): a topic name's predefined id if it has one, else its normal id;
        // none for a filter or a short name.
        let by_name = matches!(topic, SubscribeTopic::Name(_)) && named;
        let predefined = if by_name { self.shared.predefined.id(filter.as_str()) } else { None };
        let normal = by_name && predefined.is_none();
        let topic_id = if let Some(id) = predefined {
            id
        } else if normal {
            match self.topics.assign(filter.as_str(), &self.shared.predefined) {
                Some(id) => id,
                None => {
                    self.link.send(&refuse(ReturnCode::REJECTED_CONGESTION)).await;
                    return None;
                }
            }
        } else if let SubscribeTopic::Predefined(TopicId(id)) = &topic {
            *id
        } else {
            0
        };
        let filter_text = filter.as_str().to_owned();
        let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
        let packet = MqttSubscribe {
            packet_id: core_packet_id(msg_id),
            subscriptions: vec![Subscription { filter, options }],
            properties: Properties::default(),
        };
        let responses = match self.core(Packet::Subscribe(packet), now).await {
            Ok(responses) => responses,
            Err(end) => return Some(end),
        };
        if let Err(end) = self.record_topic_ids().await {
            return Some(end);
        }
        for response in responses {
            let Packet::SubAck(ack) = response else { continue };
            let granted = ack.reasons.first().and_then(|reason| QoS::from_u8(reason.0));
            tracing::debug!(peer = %self.peer(), client_id = %self.connection.client_id(), %filter_text, ?granted, "mqtt-sn: subscribed");
            let message = match granted {
                Some(granted) => {
                    if normal {
                        self.topics.set_known(topic_id, true);
                    }
                    let qos = match granted {
                        QoS::AtMostOnce => SnQoS::AtMostOnce,
                        QoS::AtLeastOnce => SnQoS::AtLeastOnce,
                        QoS::ExactlyOnce => SnQoS::ExactlyOnce,
                    };
                    Message::SubAck(SubAck {
                        qos,
                        topic_id: TopicId(topic_id),
                        msg_id,
                        return_code: ReturnCode::ACCEPTED,
                    })
                }
                // Refused by the ACL or a limit: MQTT-SN has no closer code.
                None => refuse(ReturnCode::REJECTED_NOT_SUPPORTED),
            };
            self.link.send(&message).await;
        }
        None
    }

    /// 5.4.17 UNSUBSCRIBE (6.9), answered with UNSUBACK whether or not the client was
    /// subscribed (as MQTT's UNSUBACK is).
    async fn unsubscribe(&mut self, unsubscribe: Unsubscribe, now: Instant) -> Option<Ending> {
        let Unsubscribe { msg_id, topic } = unsubscribe;
        if let Some((filter, _)) = self.filter(&topic) {
            let packet = MqttUnsubscribe {
                packet_id: core_packet_id(msg_id),
                filters: vec![filter],
                properties: Properties::default(),
            };
            if let Err(end) = self.core(Packet::Unsubscribe(packet), now).await {
                return Some(end);
            }
        }
        self.link.send(&Message::UnsubAck { msg_id }).await;
        None
    }

    /// The MQTT topic filter a SUBSCRIBE or UNSUBSCRIBE names, and whether it is a topic name
    /// (no wildcards); `None` for an id the gateway does not know or a filter MQTT refuses.
    fn filter(&self, topic: &SubscribeTopic) -> Option<(TopicFilter, bool)> {
        let text = match topic {
            SubscribeTopic::Name(name) => name.as_str(),
            SubscribeTopic::Predefined(TopicId(id)) => self.shared.predefined.name(*id)?,
            SubscribeTopic::Short(name) => name.as_str()?,
        };
        let filter = TopicFilter::new(text).ok()?;
        let named = !text.contains(['+', '#']);
        Some((filter, named))
    }

    /// Hands `packet` to the core as a read of its own and returns the core's answers, once the
    /// store has committed what they promise. `Err` ends the connection (a protocol violation,
    /// a store failure).
    pub(super) async fn core(&mut self, packet: Packet, now: Instant) -> Result<Vec<Packet>, Ending> {
        let cluster = self.cluster.clone();
        if let (Some(cluster), Packet::Subscribe(_)) = (cluster.as_deref(), &packet) {
            // Its retained messages include every one acknowledged before, on any node.
            cluster.retained_caught_up().await;
        }
        let marks = cluster.as_deref().map(crate::cluster::Cluster::marks);
        let mut batch = ReadBatch::new();
        let mut out = BytesMut::new();
        let handled = self.connection.handle(packet, now, &mut batch, &mut out);
        self.connection.broker().end_batch(&mut batch);
        self.pace(batch.take_congestion());
        let hold = self.connection.take_hold();
        match handled {
            Ok(Flow::Continue) => {}
            Ok(Flow::Disconnect { .. }) => return Err((CloseKind::Normal, "client sent DISCONNECT".to_owned(), None)),
            Err(violation) => {
                self.link.send(&Message::Disconnect { duration: None }).await;
                return Err((CloseKind::Abnormal, format!("protocol violation: {violation}"), None));
            }
        }
        if let (Some(ticket), Some(writer)) = (hold, self.writer.as_ref()) {
            if let Err(error) = writer.durable(midge_store::Ticket(ticket.0)).await {
                tracing::error!(%error, "the store failed: acknowledgements cannot be given");
                return Err((CloseKind::Abnormal, format!("store failed: {error}"), None));
            }
        }
        if let (Some(cluster), Some(marks)) = (cluster.as_deref(), marks) {
            if !cluster.settle(marks).await {
                tracing::warn!(client_id = %self.connection.client_id(), "cluster: JetStream did not store this client's QoS 1/2 messages in time; closing without acknowledging them");
                self.link.send(&Message::Disconnect { duration: None }).await;
                return Err((CloseKind::Abnormal, "cluster storage unavailable".to_owned(), None));
            }
        }
        let mut responses = Vec::new();
        while let Ok(Some(response)) = decode_packet(&mut out, ProtocolVersion::V311, usize::MAX) {
            responses.push(response);
        }
        Ok(responses)
    }
}

/// The TopicId field of a PUBLISH as the client sent it, for its PUBACK: the id, or the short
/// name's two octets.
fn raw_topic_id(topic: PublishTopic) -> TopicId {
    match topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => TopicId(u16::from_be_bytes(name.0)),
    }
}

/// The packet id the core is given for a SUBSCRIBE or UNSUBSCRIBE: its MsgId, or 1 for a
/// MsgId of 0 (MQTT has none); the answer carries the client's MsgId either way.
fn core_packet_id(msg_id: MsgId) -> PacketId {
    PacketId::new(msg_id.0).unwrap_or(PacketId::new(1).expect("1 is not 0"))
}
