//! An inbound PUBLISH: the limits, the topic alias, the authorization check, routing, and the
//! acknowledgement the QoS asks for.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use midge_codec::{Packet, PacketId, PubResponse, Publish, QoS, ReasonCode, TopicName};

use super::state::{violation, ClientConnection, Violation};
use crate::broker::is_reserved_for_the_broker;
use crate::ports::access::Action;
use crate::route::read_batch::ReadBatch;

impl ClientConnection {
    pub(super) fn handle_publish(
        &mut self,
        mut publish: Publish,
        now: Instant,
        batch: &mut ReadBatch,
        out: &mut BytesMut,
    ) -> Result<(), Violation> {
        let broker = Arc::clone(&self.broker);
        let limits = broker.limits();
        if publish.qos.as_u8() > limits.max_qos {
            // MQTT-3.2.2-11.
            return Err(violation(ReasonCode::QOS_NOT_SUPPORTED, "PUBLISH above the server's maximum QoS"));
        }
        if publish.retain && !limits.retain_available {
            // MQTT-3.2.2-14.
            return Err(violation(ReasonCode::RETAIN_NOT_SUPPORTED, "retained PUBLISH while retain is unavailable"));
        }
        self.resolve_topic_alias(&mut publish)?;
        if let Err(why) = broker.check_topic(&publish.topic, self.session.client_id(), now) {
            return Err(violation(ReasonCode::TOPIC_NAME_INVALID, why));
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            // MQTT-3.3.4-6: a client must not send a Subscription Identifier.
            return Err(violation(ReasonCode::PROTOCOL_ERROR, "Subscription Identifier in a client PUBLISH"));
        }
        if is_reserved_for_the_broker(&publish.topic) {
            // The broker's own tree: a client's value would pass for the broker's until the next
            // interval. Refused as an ACL refusal, as mosquitto refuses it.
            tracing::debug!(client_id = %self.client_id(), topic = %publish.topic, "publish to $SYS refused");
            return self.refuse_publish(&publish, ReasonCode::NOT_AUTHORIZED, out);
        }
        if !self.permits(Action::Publish, &publish.topic) {
            tracing::debug!(client_id = %self.client_id(), topic = %publish.topic, "publish refused by the ACL");
            return self.refuse_publish(&publish, ReasonCode::NOT_AUTHORIZED, out);
        }
        let publisher = Some(self.session.id());
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                broker.publish(broker.new_message(&publish, publisher, now), batch);
            }
            (QoS::AtLeastOnce, Some(id)) => {
                let published = broker.publish(broker.new_message(&publish, publisher, now), batch);
                if published.refused {
                    return self.refuse_publish(&publish, ReasonCode::QUOTA_EXCEEDED, out);
                }
                // The PUBACK is a promise: it waits until the message is durable.
                self.hold_for(published.ticket);
                // MQTT-4.3.2-2 (3.1.1: MQTT-4.3.2-2): PUBACK with the same id.
                self.write(&Packet::PubAck(self.publish_ack(id, published.delivered)), out);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let pending = self.session.inbound_qos2_pending();
                let journal = broker.journal();
                // The packet id and the message's deliveries are made durable together: a crash
                // between them would keep the id and lose the message, and the client's resend
                // (DUP) would be taken for one already received (MQTT-4.3.3-10).
                let _together = journal.map(crate::journal::Journal::group);
                let (new, recorded) = self.session.begin_inbound_qos2(id, journal);
                if new {
                    if self.version.is_v5() && pending >= usize::from(self.receive_maximum) {
                        self.session.release_inbound_qos2(id, journal);
                        // MQTT-3.3.4-8.
                        return Err(violation(
                            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            "more QoS 2 in flight than allowed",
                        ));
                    }
                    let published = broker.publish(broker.new_message(&publish, publisher, now), batch);
                    if published.refused {
                        self.session.release_inbound_qos2(id, journal);
                        return self.refuse_publish(&publish, ReasonCode::QUOTA_EXCEEDED, out);
                    }
                    self.hold_for(recorded.max(published.ticket));
                    self.write(&Packet::PubRec(self.publish_ack(id, published.delivered)), out);
                } else {
                    // A resend before PUBREL: acknowledge, do not deliver again (MQTT-4.3.3-10).
                    self.write(&Packet::PubRec(PubResponse::success(id)), out);
                }
            }
            (_, None) => return Err(violation(ReasonCode::PROTOCOL_ERROR, "QoS > 0 PUBLISH without packet id")),
        }
        Ok(())
    }

    /// A PUBLISH refused for `reason` (the ACL: Not Authorized; a retained bound: Quota
    /// exceeded) is not routed. v5 acknowledges it with the reason; 3.x has no way to say so
    /// and is acknowledged as usual, as mosquitto does for the ACL, with a QoS 2 id recorded so
    /// its PUBREL completes normally.
    fn refuse_publish(&mut self, publish: &Publish, reason: ReasonCode, out: &mut BytesMut) -> Result<(), Violation> {
        let Some(id) = publish.packet_id else { return Ok(()) };
        let mut ack = PubResponse::success(id);
        if self.version.is_v5() {
            ack.reason = reason;
        }
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write(&Packet::PubAck(ack), out),
            QoS::ExactlyOnce => {
                if !self.version.is_v5() {
                    let (_, recorded) = self.session.begin_inbound_qos2(id, self.broker.journal());
                    self.hold_for(recorded);
                }
                self.write(&Packet::PubRec(ack), out);
            }
        }
        Ok(())
    }

    /// An acknowledgement for an inbound PUBLISH; v5 says 0x10 when nobody subscribed.
    fn publish_ack(&self, id: PacketId, delivered: usize) -> PubResponse {
        let mut ack = PubResponse::success(id);
        if delivered == 0 && self.version.is_v5() {
            ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        }
        ack
    }

    /// Replaces an alias with its topic, or records a new alias (MQTT 5.0 section 3.3.2.3.4).
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), Violation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            if publish.topic.is_empty() {
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "empty topic without a topic alias"));
            }
            return Ok(());
        };
        let slot = usize::from(alias).checked_sub(1).filter(|&i| i < usize::from(self.alias_slots));
        let Some(slot) = slot else {
            // MQTT-3.3.2-8 / MQTT-3.3.2-9: alias 0 or above our Topic Alias Maximum.
            return Err(violation(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range"));
        };
        if publish.topic.is_empty() {
            match self.aliases.as_ref().and_then(|aliases| aliases.inbound.get(slot)) {
                Some(Some(topic)) => publish.topic = topic.clone(),
                _ => return Err(violation(ReasonCode::PROTOCOL_ERROR, "unknown topic alias")),
            }
        } else {
            // Copy the topic so the alias table does not pin the read buffer.
            let owned = TopicName::new(&publish.topic).expect("already a valid topic");
            let inbound = &mut self.aliases.get_or_insert_with(Box::default).inbound;
            if slot >= inbound.len() {
                inbound.resize(slot + 1, None);
            }
            inbound[slot] = Some(owned);
        }
        Ok(())
    }
}
