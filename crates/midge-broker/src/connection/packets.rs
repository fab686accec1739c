//! One handler per packet a client sends after CONNECT: acknowledgements, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ, DISCONNECT, and the packets a client must not send (PUBLISH has a file
//! of its own).

use std::time::Instant;

use bytes::BytesMut;
use midge_codec::{Disconnect, Packet, Properties, PubResponse, ReasonCode, SubAck, Subscribe, UnsubAck};

use super::state::{violation, ClientConnection, Flow, Violation};
use crate::ports::access::Action;
use crate::route::read_batch::ReadBatch;
use crate::session::AckOutcome;

impl ClientConnection {
    /// Handles one packet from the client, writing responses into `out`. Messages it publishes
    /// may wait in `batch` until [`Broker::end_batch`](crate::Broker::end_batch).
    pub fn handle(
        &mut self,
        packet: Packet,
        now: Instant,
        batch: &mut ReadBatch,
        out: &mut BytesMut,
    ) -> Result<Flow, Violation> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, now, batch, out)?,
            Packet::PubAck(ack) => {
                let outcome = self.session.complete(ack.packet_id, false, self.broker.journal());
                self.completed(outcome, ack.packet_id);
            }
            Packet::PubRec(rec) => match self.session.received(rec.packet_id, rec.reason, self.broker.journal()) {
                AckOutcome::SendPubRel(ticket, first) => {
                    self.hold_for(ticket);
                    if let Some(message_id) = first.filter(|_| self.session.is_fabric_fed()) {
                        // Kept by the fabric before PUBREL goes out (the connection's driver
                        // waits for it), so the node the client may move to sends PUBREL, not
                        // the message, again.
                        self.broker.fabric_released(self.session.client_id(), message_id, rec.packet_id.get());
                    }
                    self.write(&Packet::PubRel(PubResponse::success(rec.packet_id)), out);
                }
                outcome @ AckOutcome::Completed(_) => self.completed(outcome, rec.packet_id),
                AckOutcome::Unknown => {
                    // MQTT 5.0 section 3.6.2.1: PUBREL with 0x92 for an unknown id.
                    let mut release = PubResponse::success(rec.packet_id);
                    release.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    self.write(&Packet::PubRel(release), out);
                }
            },
            Packet::PubRel(rel) => {
                let mut complete = PubResponse::success(rel.packet_id);
                let (known, ticket) = self.session.release_inbound_qos2(rel.packet_id, self.broker.journal());
                self.hold_for(ticket);
                if !known {
                    complete.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                // MQTT-4.3.3-11: PUBCOMP with the same packet id.
                self.write(&Packet::PubComp(complete), out);
            }
            Packet::PubComp(comp) => {
                let outcome = self.session.complete(comp.packet_id, true, self.broker.journal());
                self.completed(outcome, comp.packet_id);
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(&subscribe, now, out)?,
            Packet::Unsubscribe(unsubscribe) => {
                let (reasons, ticket) = self.broker.unsubscribe(&self.session, &unsubscribe);
                self.hold_for(ticket);
                // MQTT-3.10.4-4: UNSUBACK with the same packet id.
                let ack = UnsubAck { packet_id: unsubscribe.packet_id, reasons, properties: Properties::default() };
                self.write(&Packet::UnsubAck(ack), out);
            }
            // MQTT-3.12.4-1.
            Packet::PingReq => self.write(&Packet::PingResp, out),
            Packet::Disconnect(disconnect) => {
                self.handle_disconnect(&disconnect)?;
                let with_will = disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL;
                return Ok(Flow::Disconnect { with_will });
            }
            // MQTT-3.1.0-2: a second CONNECT is a protocol violation.
            Packet::Connect(_) => return Err(violation(ReasonCode::PROTOCOL_ERROR, "second CONNECT")),
            Packet::Auth(_) => {
                // No authentication method was accepted at CONNECT (MQTT-4.12.0-1 family).
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "AUTH without an authentication method"));
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "server-to-client packet sent by a client"));
            }
        }
        Ok(Flow::Continue)
    }

    /// Acknowledges an outbound message a sink other than MQTT delivered (see
    /// [`crate::ports::egress`]): completes QoS 1 at once and QoS 2 as PUBREC then PUBCOMP would.
    pub fn acknowledge(&mut self, packet_id: midge_codec::PacketId) {
        let journal = self.broker.journal();
        let mut outcome = self.session.complete(packet_id, false, journal);
        if outcome == AckOutcome::Unknown {
            outcome = self.session.received(packet_id, ReasonCode::SUCCESS, journal);
            if let AckOutcome::SendPubRel(..) = outcome {
                outcome = self.session.complete(packet_id, true, journal);
            }
        }
        self.completed(outcome, packet_id);
    }

    /// An outbound message's exchange ended: a session fed by the fabric's durable path tells
    /// it, so the message is acknowledged there (and not sent again after a node dies).
    fn completed(&self, outcome: AckOutcome, packet_id: midge_codec::PacketId) {
        if let AckOutcome::Completed(message_id) = outcome {
            if self.session.is_fabric_fed() {
                self.broker.fabric_delivered(self.session.client_id(), message_id, Some(packet_id.get()));
            }
        }
    }

    fn handle_subscribe(&mut self, subscribe: &Subscribe, now: Instant, out: &mut BytesMut) -> Result<(), Violation> {
        if !subscribe.properties.subscription_identifiers.is_empty()
            && !self.broker.limits().subscription_identifier_available
        {
            return Err(violation(
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifier while they are not supported",
            ));
        }
        for subscription in &subscribe.subscriptions {
            if subscription.options.no_local && subscription.filter.starts_with("$share/") {
                // MQTT-3.8.3-4: No Local on a shared subscription is a protocol error.
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "No Local on a shared subscription"));
            }
        }
        let access = &mut self.access;
        let permitted = |filter: &midge_codec::TopicFilter| {
            let allowed = access.as_mut().is_none_or(|access| access.allows(Action::Subscribe, filter));
            if !allowed {
                tracing::debug!(%filter, "subscription refused by the ACL");
            }
            allowed
        };
        let bridged;
        let subscribe = if self.bridge {
            bridged = as_bridge(subscribe);
            &bridged
        } else {
            subscribe
        };
        // Refused filters get 0x87 (v5); 3.x clients are sent 0x80.
        let (reasons, ticket) =
            self.broker.subscribe(&self.session, subscribe, now, permitted, ReasonCode::NOT_AUTHORIZED);
        self.hold_for(ticket);
        // MQTT-3.8.4-1, MQTT-3.8.4-2: SUBACK with the same packet id, one code each.
        let ack = SubAck { packet_id: subscribe.packet_id, reasons, properties: Properties::default() };
        self.write(&Packet::SubAck(ack), out);
        Ok(())
    }

    fn handle_disconnect(&mut self, disconnect: &Disconnect) -> Result<(), Violation> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.connect_expiry == 0 && expiry != 0 {
                // MQTT-3.14.2-2.
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "session expiry raised from 0 at DISCONNECT"));
            }
            // Only clients send DISCONNECT: the broker's own sessions are never capped here.
            let granted = self.broker.limits().granted_expiry(expiry, false);
            self.session.lock().expiry_interval = granted;
        }
        Ok(())
    }
}

/// `subscribe` as a mosquitto-style bridge means it: No Local and Retain As Published on every
/// filter but shared ones (MQTT-3.8.3-4 forbids No Local there).
fn as_bridge(subscribe: &Subscribe) -> Subscribe {
    let mut subscribe = subscribe.clone();
    for subscription in &mut subscribe.subscriptions {
        if !subscription.filter.starts_with("$share/") {
            subscription.options.no_local = true;
            subscription.options.retain_as_published = true;
        }
    }
    subscribe
}
