//! The client's protocol state, without I/O: packet identifiers, the outbound in-flight window
//! and its queue, SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement, inbound QoS 2
//! identifiers awaiting PUBREL, and inbound topic aliases.
//!
//! Input is a packet from the broker or a request from the application; output is bytes
//! appended to the caller's write buffer and [`Event`]s queued for the application. So the
//! whole state machine — acknowledgements, the window, resending on reconnect — is tested by
//! feeding packets and decoding what comes out, without a socket.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use midge_codec::{
    encode_packet, encode_properties, encode_publish, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubResponse, Publish, PublishHeader, QoS, ReasonCode, SubAck, Subscribe, Subscription, TopicFilter, TopicName,
    UnsubAck, Unsubscribe,
};

use crate::error::Error;
use crate::packet_ids::{PacketIdAllocator, PacketIdSet};

/// What happened, for the application.
///
/// Packets that carry v5 properties are boxed: `Properties` alone is hundreds of bytes, and an
/// event is moved several times between the socket and the application, so a small event keeps
/// a subscriber's cost per message down (a box is one allocation instead of several copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An application message from the broker. Its topic is resolved when it came by topic
    /// alias. QoS 1 and 2 messages have already been acknowledged (PUBACK / PUBREC queued).
    Message(Box<Publish>),
    /// The broker finished an outbound QoS 1 (PUBACK) or QoS 2 (PUBCOMP, or a PUBREC carrying a
    /// failure) flow. `reason` is its v5 reason code (always Success in 3.x); a code of 0x80 or
    /// more means the broker refused the message.
    Published {
        /// The identifier [`crate::Client::publish`] returned.
        packet_id: PacketId,
        /// The message's QoS.
        qos: QoS,
        /// The reason code of the final acknowledgement.
        reason: ReasonCode,
        /// Its properties (reason string, user properties).
        properties: Box<Properties>,
    },
    /// The SUBACK of a SUBSCRIBE: one granted QoS or failure code per filter, in order.
    Subscribed(Box<SubAck>),
    /// The UNSUBACK of an UNSUBSCRIBE.
    Unsubscribed(Box<UnsubAck>),
    /// Relay mode only ([`crate::ConnectOptions::relay`]): a PUBACK, PUBREC, PUBREL or PUBCOMP
    /// from the broker, not acted on.
    Relayed(Box<Packet>),
    /// The client reconnected by itself after losing the connection. Without `session_present`
    /// the broker kept nothing: subscriptions must be made again.
    Reconnected {
        /// Whether the broker resumed the previous session.
        session_present: bool,
    },
}

/// A packet as the client sends or receives it, for tracing (`midge pub -d`).
#[derive(Debug, Clone, Copy)]
pub enum Trace<'a> {
    /// A packet sent, other than PUBLISH.
    Sent(&'a Packet),
    /// A PUBLISH sent (written from parts, so there is no [`Packet`] value).
    SentPublish {
        /// DUP flag.
        dup: bool,
        /// QoS.
        qos: QoS,
        /// RETAIN flag.
        retain: bool,
        /// Packet identifier (QoS > 0).
        packet_id: Option<PacketId>,
        /// Topic.
        topic: &'a str,
        /// Payload length in bytes.
        payload_len: usize,
    },
    /// A packet received.
    Received(&'a Packet),
}

/// Receives every [`Trace`]; set with [`crate::Client::set_tracer`].
pub type Tracer = Box<dyn FnMut(Trace<'_>) + Send>;

/// An outbound QoS 1 or 2 message kept until acknowledged, for resending.
#[derive(Debug, Clone)]
struct Outgoing {
    packet_id: PacketId,
    qos: QoS,
    retain: bool,
    topic: TopicName,
    payload: Bytes,
    /// The v5 properties, encoded once (empty when there are none).
    properties: Bytes,
}

/// A slot of the in-flight window.
#[derive(Debug, Clone)]
enum InFlight {
    /// PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Outgoing),
    /// PUBREL sent, awaiting PUBCOMP.
    Released(PacketId),
}

impl InFlight {
    fn packet_id(&self) -> PacketId {
        match self {
            Self::Publish(message) => message.packet_id,
            Self::Released(id) => *id,
        }
    }
}

/// The state; see the module documentation.
pub(crate) struct Session {
    /// The version spoken, which decides encoding.
    version: ProtocolVersion,
    /// Identifiers of everything unacknowledged: in flight, queued, SUBSCRIBE/UNSUBSCRIBE.
    ids: PacketIdAllocator,
    /// The client's own bound on messages in flight.
    max_inflight: usize,
    /// The bound in force: `max_inflight`, lowered to the broker's Receive Maximum.
    window: usize,
    /// Outbound QoS 1/2 flows in the order they were sent: the order they are resent in
    /// (MQTT-4.6.0-1). Acknowledgements usually come in this order, so finding one is a look
    /// at the front.
    in_flight: VecDeque<InFlight>,
    /// QoS 1/2 messages beyond the window, sent as slots free up.
    pending: VecDeque<Outgoing>,
    /// SUBSCRIBE and UNSUBSCRIBE awaiting their acknowledgement, encoded, for resending.
    requests: Vec<(PacketId, Bytes)>,
    /// Inbound QoS 2 identifiers between PUBREC and PUBREL: a PUBLISH with one of them is a
    /// duplicate and not delivered again (MQTT-4.3.3-2, method B).
    inbound_qos2: PacketIdSet,
    /// Inbound topic aliases (v5), index `alias - 1`; as many as the client's Topic Alias
    /// Maximum allows.
    aliases: Vec<Option<TopicName>>,
    /// Events not yet taken by the application.
    events: VecDeque<Event>,
    /// Reused to encode properties, so QoS 0 with properties does not allocate.
    scratch: BytesMut,
    /// Where traces go, if anywhere.
    tracer: Option<Tracer>,
    /// Relay mode: inbound messages and acknowledgements go to the application unanswered.
    relay: bool,
}

impl Session {
    /// A fresh state for `version`, with at most `max_inflight` outbound messages in flight
    /// and `topic_alias_maximum` inbound aliases.
    pub(crate) fn new(version: ProtocolVersion, max_inflight: u16, topic_alias_maximum: u16) -> Self {
        let max_inflight = usize::from(max_inflight.max(1));
        Self {
            version,
            ids: PacketIdAllocator::new(),
            max_inflight,
            window: max_inflight,
            in_flight: VecDeque::new(),
            pending: VecDeque::new(),
            requests: Vec::new(),
            inbound_qos2: PacketIdSet::new(),
            aliases: vec![None; usize::from(topic_alias_maximum)],
            events: VecDeque::new(),
            scratch: BytesMut::new(),
            tracer: None,
            relay: false,
        }
    }

    /// Switches relay mode on ([`crate::ConnectOptions::relay`]).
    pub(crate) fn set_relay(&mut self, relay: bool) {
        self.relay = relay;
    }

    /// Writes `packet` as it is (relay mode: a PUBACK, PUBREC, PUBREL or PUBCOMP, with the
    /// application's packet identifier).
    pub(crate) fn send(&mut self, packet: &Packet, out: &mut BytesMut) -> Result<(), Error> {
        self.write(packet, out)
    }

    /// Writes a PUBLISH from parts as it is (relay mode: the application's identifier and DUP
    /// flag; nothing is kept for resending).
    pub(crate) fn relay_publish(
        &mut self,
        header: &PublishHeader<'_>,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        encode_publish(out, self.version, header, payload)?;
        trace_publish(&mut self.tracer, header, payload.len());
        Ok(())
    }

    /// Sets where traces go.
    pub(crate) fn set_tracer(&mut self, tracer: Option<Tracer>) {
        self.tracer = tracer;
    }

    /// Traces a received packet.
    pub(crate) fn trace_received(&mut self, packet: &Packet) {
        if let Some(tracer) = &mut self.tracer {
            tracer(Trace::Received(packet));
        }
    }

    /// Queues a PUBLISH. QoS 0 is written at once; QoS 1 and 2 take a packet identifier and are
    /// written if the window has room, queued otherwise. Returns the identifier.
    pub(crate) fn publish(
        &mut self,
        topic: &TopicName,
        payload: &Bytes,
        qos: QoS,
        retain: bool,
        properties: &Properties,
        out: &mut BytesMut,
    ) -> Result<Option<PacketId>, Error> {
        self.scratch.clear();
        if self.version.is_v5() && !properties.is_empty() {
            encode_properties(properties, &mut self.scratch);
        }
        if qos == QoS::AtMostOnce {
            let header = header(topic, QoS::AtMostOnce, retain, None, false, &self.scratch);
            encode_publish(out, self.version, &header, payload)?;
            trace_publish(&mut self.tracer, &header, payload.len());
            return Ok(None);
        }
        let packet_id = self.ids.allocate().ok_or(Error::PacketIdsExhausted)?;
        let message = Outgoing {
            packet_id,
            qos,
            retain,
            topic: topic.clone(),
            payload: payload.clone(),
            // Empty properties share nothing: `Bytes::new` does not allocate.
            properties: if self.scratch.is_empty() { Bytes::new() } else { self.scratch.split().freeze() },
        };
        if self.in_flight.len() < self.window && self.pending.is_empty() {
            if let Err(error) = self.send_publish(&message, false, out) {
                self.ids.release(packet_id);
                return Err(error);
            }
            self.in_flight.push_back(InFlight::Publish(message));
        } else {
            self.pending.push_back(message);
        }
        Ok(Some(packet_id))
    }

    /// Writes a SUBSCRIBE and keeps it until its SUBACK.
    pub(crate) fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
        out: &mut BytesMut,
    ) -> Result<PacketId, Error> {
        let packet_id = self.ids.allocate().ok_or(Error::PacketIdsExhausted)?;
        let packet = Packet::Subscribe(Subscribe { packet_id, subscriptions, properties });
        self.request(packet_id, &packet, out)
    }

    /// Writes an UNSUBSCRIBE and keeps it until its UNSUBACK.
    pub(crate) fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: Properties,
        out: &mut BytesMut,
    ) -> Result<PacketId, Error> {
        let packet_id = self.ids.allocate().ok_or(Error::PacketIdsExhausted)?;
        let packet = Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties });
        self.request(packet_id, &packet, out)
    }

    /// Writes PINGREQ.
    pub(crate) fn ping(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.write(&Packet::PingReq, out)
    }

    /// Writes DISCONNECT.
    pub(crate) fn disconnect(&mut self, disconnect: Disconnect, out: &mut BytesMut) -> Result<(), Error> {
        self.write(&Packet::Disconnect(disconnect), out)
    }

    /// Writes CONNECT.
    pub(crate) fn connect(&mut self, connect: Packet, out: &mut BytesMut) -> Result<(), Error> {
        self.write(&connect, out)
    }

    /// Handles a packet from the broker after CONNACK: writes the acknowledgements it calls for
    /// and queues events. PINGRESP is the caller's (it owns the keep alive timer).
    pub(crate) fn handle(&mut self, packet: Packet, out: &mut BytesMut) -> Result<(), Error> {
        if self.relay {
            if let Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) = packet {
                self.events.push_back(Event::Relayed(Box::new(packet)));
                return Ok(());
            }
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, out),
            Packet::PubAck(response) => {
                self.handle_puback(response, out);
                Ok(())
            }
            Packet::PubRec(response) => self.handle_pubrec(response, out),
            Packet::PubRel(response) => {
                // MQTT-4.3.3-9 (method B): forget the identifier, then PUBCOMP. An unknown
                // identifier is answered too, so the broker can finish its flow (v5 says why).
                let known = self.inbound_qos2.remove(response.packet_id);
                let mut pubcomp = PubResponse::success(response.packet_id);
                if !known && self.version.is_v5() {
                    pubcomp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.write(&Packet::PubComp(pubcomp), out)
            }
            Packet::PubComp(response) => {
                self.handle_pubcomp(response, out);
                Ok(())
            }
            Packet::SubAck(suback) => {
                if self.finish_request(suback.packet_id) {
                    self.events.push_back(Event::Subscribed(Box::new(suback)));
                }
                Ok(())
            }
            Packet::UnsubAck(unsuback) => {
                if self.finish_request(unsuback.packet_id) {
                    self.events.push_back(Event::Unsubscribed(Box::new(unsuback)));
                }
                Ok(())
            }
            Packet::Disconnect(disconnect) => Err(disconnected(disconnect)),
            Packet::PingResp => Ok(()),
            Packet::Auth(_) => Err(Error::Protocol("AUTH without an authentication method")),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => Err(Error::Protocol("a packet only a client sends, or a second CONNACK")),
        }
    }

    /// Picks up after a (re)connection whose CONNACK said `session_present` and announced
    /// `receive_maximum`.
    ///
    /// With the session present, unacknowledged PUBLISH (with DUP) and PUBREL are resent in their
    /// original order (MQTT-4.4.0-1). Without it the broker knows none of them: messages not yet
    /// received by it are sent again as new (DUP 0, at-least-once for QoS 2 too), those past
    /// PUBREC are reported as published, and inbound QoS 2 state is dropped. SUBSCRIBE and
    /// UNSUBSCRIBE awaiting acknowledgement are resent either way.
    pub(crate) fn resume(
        &mut self,
        session_present: bool,
        receive_maximum: Option<u16>,
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        self.window = receive_maximum.map_or(self.max_inflight, |max| usize::from(max).min(self.max_inflight));
        if !session_present {
            self.inbound_qos2.clear();
            self.aliases.fill(None);
            let in_flight = std::mem::take(&mut self.in_flight);
            for slot in in_flight.into_iter().rev() {
                match slot {
                    InFlight::Publish(message) => self.pending.push_front(message),
                    InFlight::Released(packet_id) => {
                        self.ids.release(packet_id);
                        self.events.push_back(Event::Published {
                            packet_id,
                            qos: QoS::ExactlyOnce,
                            reason: ReasonCode::SUCCESS,
                            properties: Box::default(),
                        });
                    }
                }
            }
        } else {
            for index in 0..self.in_flight.len() {
                match &self.in_flight[index] {
                    InFlight::Publish(message) => {
                        let message = message.clone();
                        self.send_publish(&message, true, out)?;
                    }
                    InFlight::Released(packet_id) => {
                        let packet = Packet::PubRel(PubResponse::success(*packet_id));
                        self.write(&packet, out)?;
                    }
                }
            }
        }
        for (_, request) in &self.requests {
            out.extend_from_slice(request);
        }
        self.fill_window(out)
    }

    /// Queues an event the driver produced (reconnection).
    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// The next event, if any.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Outbound QoS 1/2 messages not yet completed (in flight or queued).
    pub(crate) fn unacknowledged(&self) -> usize {
        self.in_flight.len() + self.pending.len()
    }

    /// SUBSCRIBE and UNSUBSCRIBE awaiting their acknowledgement.
    pub(crate) fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// The version spoken.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    fn handle_publish(&mut self, mut publish: Publish, out: &mut BytesMut) -> Result<(), Error> {
        if let Some(alias) = publish.properties.topic_alias {
            // MQTT-3.3.2-9: an alias above the client's Topic Alias Maximum is a protocol error.
            let slot = usize::from(alias)
                .checked_sub(1)
                .and_then(|index| self.aliases.get_mut(index))
                .ok_or(Error::Protocol("topic alias above the client's Topic Alias Maximum"))?;
            if publish.topic.is_empty() {
                publish.topic = slot.clone().ok_or(Error::Protocol("unknown topic alias"))?;
            } else {
                *slot = Some(publish.topic.clone());
            }
        }
        if self.relay {
            self.events.push_back(Event::Message(Box::new(publish)));
            return Ok(());
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => {
                self.write(&Packet::PubAck(PubResponse::success(packet_id)), out)?;
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                let first = self.inbound_qos2.insert(packet_id);
                self.write(&Packet::PubRec(PubResponse::success(packet_id)), out)?;
                if !first {
                    // A resend of a message already delivered (MQTT-4.3.3-10).
                    return Ok(());
                }
            }
            _ => {}
        }
        self.events.push_back(Event::Message(Box::new(publish)));
        Ok(())
    }

    fn handle_puback(&mut self, response: PubResponse, out: &mut BytesMut) {
        let found = self.position(|slot| matches!(slot, InFlight::Publish(m) if m.packet_id == response.packet_id && m.qos == QoS::AtLeastOnce));
        if let Some(index) = found {
            self.in_flight.remove(index);
            self.complete(response.packet_id, QoS::AtLeastOnce, response.reason, response.properties, out);
        }
    }

    fn handle_pubrec(&mut self, response: PubResponse, out: &mut BytesMut) -> Result<(), Error> {
        let found = self.position(|slot| matches!(slot, InFlight::Publish(m) if m.packet_id == response.packet_id && m.qos == QoS::ExactlyOnce));
        let Some(index) = found else {
            // Already released (a resent PUBREC) or unknown: answer so the broker can finish.
            let mut pubrel = PubResponse::success(response.packet_id);
            if self.version.is_v5() && !self.in_flight.iter().any(|slot| slot.packet_id() == response.packet_id) {
                pubrel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            }
            return self.write(&Packet::PubRel(pubrel), out);
        };
        if response.reason.is_error() {
            // MQTT 5 section 4.3.3: a failing PUBREC ends the flow; no PUBREL follows.
            self.in_flight.remove(index);
            self.complete(response.packet_id, QoS::ExactlyOnce, response.reason, response.properties, out);
            return Ok(());
        }
        self.in_flight[index] = InFlight::Released(response.packet_id);
        self.write(&Packet::PubRel(PubResponse::success(response.packet_id)), out)
    }

    fn handle_pubcomp(&mut self, response: PubResponse, out: &mut BytesMut) {
        let found = self.position(|slot| matches!(slot, InFlight::Released(id) if *id == response.packet_id));
        if let Some(index) = found {
            self.in_flight.remove(index);
            self.complete(response.packet_id, QoS::ExactlyOnce, response.reason, response.properties, out);
        }
    }

    /// Frees the identifier and slot of a finished flow, reports it, and sends what was queued.
    fn complete(
        &mut self,
        packet_id: PacketId,
        qos: QoS,
        reason: ReasonCode,
        properties: Properties,
        out: &mut BytesMut,
    ) {
        self.ids.release(packet_id);
        self.events.push_back(Event::Published { packet_id, qos, reason, properties: Box::new(properties) });
        // Queued messages were checked when first queued; an encoding failure now can only be
        // a message too large, which `publish` already refused. Nothing to report here.
        let _ = self.fill_window(out);
    }

    /// Sends queued messages while the window has room.
    fn fill_window(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        while self.in_flight.len() < self.window {
            let Some(message) = self.pending.pop_front() else { break };
            if let Err(error) = self.send_publish(&message, false, out) {
                self.ids.release(message.packet_id);
                return Err(error);
            }
            self.in_flight.push_back(InFlight::Publish(message));
        }
        Ok(())
    }

    fn position(&self, matches: impl Fn(&InFlight) -> bool) -> Option<usize> {
        self.in_flight.iter().position(matches)
    }

    fn send_publish(&mut self, message: &Outgoing, dup: bool, out: &mut BytesMut) -> Result<(), Error> {
        let header =
            header(&message.topic, message.qos, message.retain, Some(message.packet_id), dup, &message.properties);
        encode_publish(out, self.version, &header, &message.payload)?;
        trace_publish(&mut self.tracer, &header, message.payload.len());
        Ok(())
    }

    fn request(&mut self, packet_id: PacketId, packet: &Packet, out: &mut BytesMut) -> Result<PacketId, Error> {
        let mut encoded = BytesMut::new();
        if let Err(error) = encode_packet(packet, self.version, &mut encoded) {
            self.ids.release(packet_id);
            return Err(error.into());
        }
        out.extend_from_slice(&encoded);
        self.requests.push((packet_id, encoded.freeze()));
        if let Some(tracer) = &mut self.tracer {
            tracer(Trace::Sent(packet));
        }
        Ok(packet_id)
    }

    /// Forgets an acknowledged SUBSCRIBE/UNSUBSCRIBE; false if it was not awaited.
    fn finish_request(&mut self, packet_id: PacketId) -> bool {
        let Some(index) = self.requests.iter().position(|(id, _)| *id == packet_id) else {
            return false;
        };
        self.requests.remove(index);
        self.ids.release(packet_id);
        true
    }

    fn write(&mut self, packet: &Packet, out: &mut BytesMut) -> Result<(), Error> {
        encode_packet(packet, self.version, out)?;
        if let Some(tracer) = &mut self.tracer {
            tracer(Trace::Sent(packet));
        }
        Ok(())
    }
}

/// Traces a PUBLISH written from parts.
fn trace_publish(tracer: &mut Option<Tracer>, header: &PublishHeader<'_>, payload_len: usize) {
    if let Some(tracer) = tracer {
        tracer(Trace::SentPublish {
            dup: header.dup,
            qos: header.qos,
            retain: header.retain,
            packet_id: header.packet_id,
            topic: header.topic,
            payload_len,
        });
    }
}

/// The header of a PUBLISH whose v5 properties are already encoded.
fn header<'a>(
    topic: &'a TopicName,
    qos: QoS,
    retain: bool,
    packet_id: Option<PacketId>,
    dup: bool,
    properties: &'a [u8],
) -> PublishHeader<'a> {
    PublishHeader {
        dup,
        qos,
        retain,
        topic: topic.as_str(),
        packet_id,
        shared_properties: properties,
        message_expiry_interval: None,
        topic_alias: None,
        subscription_identifiers: &[],
    }
}

/// The error a DISCONNECT from the broker ends the connection with.
fn disconnected(disconnect: Disconnect) -> Error {
    Error::Disconnected {
        reason: disconnect.reason,
        reason_string: disconnect.properties.reason_string.map(|text| text.to_string()),
        server_reference: disconnect.properties.server_reference.map(|text| text.to_string()),
    }
}

#[cfg(test)]
mod tests;
