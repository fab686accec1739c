//! One client connection's protocol state, without I/O: the server feeds it decoded packets
//! and a clock value, and it writes the response bytes into the connection's write buffer.
//!
//! It owns what belongs to a network connection rather than a session (MQTT 5.0 section
//! 3.3.2.3.4: topic aliases live only as long as the connection), the will, and the client's
//! limits (Maximum Packet Size, Topic Alias Maximum, Request Problem Information).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use midge_codec::{
    encode_packet, encode_publish, encoded_len, publish_len, Connect, Disconnect, Packet, PacketId, Properties,
    ProtocolVersion, PubResponse, Publish, PublishHeader, QoS, ReasonCode, SubAck, TopicName, UnsubAck, Will,
};

use midge_store::Ticket;

use crate::broker::Broker;
use crate::hash::ProcessSeeded;
use crate::session::{AckOutcome, Kick, Outgoing, Queued, Session};

/// Most messages moved from the session queue under one hold of its lock, so publishers
/// enqueueing to a busy subscriber are not held up for long.
const DRAIN_BATCH: usize = 32;

thread_local! {
    /// The batch [`ClientConnection::drain`] fills and writes out, one per thread rather than
    /// one per connection: a connection that once drained a full batch would otherwise keep
    /// its capacity for as long as it stays connected.
    static DRAIN_SCRATCH: std::cell::RefCell<Vec<Outgoing>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A v5 connection's topic aliases (MQTT 5.0 section 3.3.2.3.4), both directions.
#[derive(Debug, Default)]
struct TopicAliases {
    /// Set by the client: index = alias - 1, grown as aliases are used.
    inbound: Vec<Option<TopicName>>,
    /// Set by the broker towards the client.
    outbound: HashMap<TopicName, u16, ProcessSeeded>,
}

/// A protocol violation by the client: the connection is closed, after a v5 DISCONNECT with
/// `reason` (MQTT-4.13.1-1), and the will is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} ({reason})")]
pub struct Violation {
    /// The reason code sent in DISCONNECT.
    pub reason: ReasonCode,
    /// What the client did, for the log.
    pub detail: &'static str,
}

fn violation(reason: ReasonCode, detail: &'static str) -> Violation {
    Violation { reason, detail }
}

/// What the server should do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The client sent DISCONNECT: close the connection; `with_will` for v5 reason 0x04.
    Disconnect {
        /// Whether the client asked for its will to be published (0x04).
        with_will: bool,
    },
}

/// How a connection ended, which decides whether the will is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// DISCONNECT with reason 0x00: the will is discarded (MQTT-3.1.2-10, MQTT-3.14.4-3).
    Normal,
    /// v5 DISCONNECT with 0x04: the will is published.
    NormalWithWill,
    /// Network error, keep alive timeout, protocol violation: the will is published
    /// (MQTT-3.1.2-8).
    Abnormal,
    /// Another connection took the session over (MQTT-3.1.4-3).
    TakenOver,
    /// The server is shutting down: the will is not published, since every client is going.
    ServerShutdown,
}

/// The protocol state of one connected client.
#[derive(Debug)]
pub struct ClientConnection {
    broker: Arc<Broker>,
    session: Arc<Session>,
    conn_id: u64,
    kick: Arc<Kick>,
    version: ProtocolVersion,
    /// Keep alive in force, in seconds (0: none).
    keep_alive: u16,
    /// Session Expiry Interval granted at CONNECT; a DISCONNECT may not raise it from 0
    /// (MQTT-3.14.2-2).
    connect_expiry: u32,
    /// Boxed: most clients have none, and a `Will` carries a whole `Properties`.
    will: Option<Box<Will>>,
    /// v5 topic aliases, allocated on first use: most clients use none, and an idle
    /// connection should not hold tables for them.
    aliases: Option<Box<TopicAliases>>,
    /// The Topic Alias Maximum granted to the client (0 for 3.1.1).
    alias_slots: u16,
    /// The client's Topic Alias Maximum (0: the broker sends none).
    client_alias_maximum: u16,
    /// The client's Maximum Packet Size.
    client_max_packet_size: u32,
    /// The store ticket that the responses written for the current packet must wait for.
    hold: Option<Ticket>,
    /// Subscribers this client's messages found over their queue bound: the server stops
    /// reading from this client until they have room.
    congested: Vec<Arc<Session>>,
}

impl ClientConnection {
    pub(crate) fn new(
        broker: Arc<Broker>,
        session: Arc<Session>,
        conn_id: u64,
        kick: Arc<Kick>,
        connect: &Connect,
        keep_alive: u16,
        connect_expiry: u32,
    ) -> Self {
        let alias_slots = if connect.protocol.is_v5() { broker.config().topic_alias_maximum } else { 0 };
        Self {
            version: connect.protocol,
            keep_alive,
            connect_expiry,
            will: connect.will.clone().map(Box::new),
            aliases: None,
            alias_slots,
            client_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
            // MQTT-3.1.2-24: outbound packets are bounded by the client's limit alone; the
            // server's max_packet_size bounds what it accepts.
            client_max_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
            broker,
            session,
            conn_id,
            kick,
            hold: None,
            congested: Vec::new(),
        }
    }

    /// Whether the last packets found a congested subscriber other than this client.
    pub fn is_congested(&self) -> bool {
        let own = self.session.id();
        self.congested.iter().any(|s| s.id() != own)
    }

    /// Takes the congested subscribers the last packets ran into (never this client's own
    /// session: pacing a client for itself would stop it reading its own acknowledgements).
    pub fn take_congested(&mut self) -> Vec<Arc<Session>> {
        let own = self.session.id();
        let mut congested = std::mem::take(&mut self.congested);
        congested.retain(|s| s.id() != own);
        congested.sort_by_key(|s| s.id());
        congested.dedup_by_key(|s| s.id());
        congested
    }

    /// Takes the ticket the bytes written by the last [`handle`](Self::handle) must wait for
    /// before they are sent (an acknowledgement is a promise that the message is durable).
    pub fn take_hold(&mut self) -> Option<Ticket> {
        self.hold.take()
    }

    fn hold_for(&mut self, ticket: Option<Ticket>) {
        self.hold = self.hold.max(ticket);
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client identifier.
    pub fn client_id(&self) -> &Arc<str> {
        self.session.client_id()
    }

    /// The keep alive in force, in seconds; 0 means none.
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The session this connection is attached to.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Records that the client was heard from at `now`, for its keep alive (MQTT-3.1.2-24):
    /// once per read batch that held a complete packet is enough.
    pub fn heard(&self, now: Instant) {
        self.kick.heard(self.broker.keep_alives().millis(now));
    }

    /// The kick handle, whose [`Kick::kicked`] signals that the connection must close.
    pub fn kick(&self) -> &Arc<Kick> {
        &self.kick
    }

    /// Writes what a reconnecting persistent session must resend first (MQTT-4.4.0-1).
    pub fn resume(&mut self, now: Instant, out: &mut BytesMut) {
        let resends = self.session.resend_inflight(self.conn_id);
        for outgoing in resends {
            let _ = self.write_outgoing(outgoing, now, out);
        }
    }

    /// Handles one packet from the client, writing responses into `out`.
    pub fn handle(&mut self, packet: Packet, now: Instant, out: &mut BytesMut) -> Result<Flow, Violation> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, now, out)?,
            Packet::PubAck(ack) => {
                self.session.complete(ack.packet_id, false, self.broker.journal());
            }
            Packet::PubRec(rec) => match self.session.received(rec.packet_id, rec.reason, self.broker.journal()) {
                AckOutcome::SendPubRel(ticket) => {
                    self.hold_for(ticket);
                    self.write(&Packet::PubRel(PubResponse::success(rec.packet_id)), out);
                }
                AckOutcome::Completed => {}
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
                self.session.complete(comp.packet_id, true, self.broker.journal());
            }
            Packet::Subscribe(subscribe) => {
                if !subscribe.properties.subscription_identifiers.is_empty()
                    && !self.broker.config().subscription_identifier_available
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
                let (reasons, ticket) = self.broker.subscribe(&self.session, &subscribe, now);
                self.hold_for(ticket);
                // MQTT-3.8.4-1, MQTT-3.8.4-2: SUBACK with the same packet id, one code each.
                let ack = SubAck { packet_id: subscribe.packet_id, reasons, properties: Properties::default() };
                self.write(&Packet::SubAck(ack), out);
            }
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

    fn handle_publish(&mut self, mut publish: Publish, now: Instant, out: &mut BytesMut) -> Result<(), Violation> {
        let broker = Arc::clone(&self.broker);
        let config = broker.config();
        if publish.qos.as_u8() > config.max_qos {
            // MQTT-3.2.2-11.
            return Err(violation(ReasonCode::QOS_NOT_SUPPORTED, "PUBLISH above the server's maximum QoS"));
        }
        if publish.retain && !config.retain_available {
            // MQTT-3.2.2-14.
            return Err(violation(ReasonCode::RETAIN_NOT_SUPPORTED, "retained PUBLISH while retain is unavailable"));
        }
        self.resolve_topic_alias(&mut publish)?;
        if self.broker.check_topic_levels(&publish.topic).is_err() {
            return Err(violation(ReasonCode::TOPIC_NAME_INVALID, "topic has too many levels"));
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            // MQTT-3.3.4-6: a client must not send a Subscription Identifier.
            return Err(violation(ReasonCode::PROTOCOL_ERROR, "Subscription Identifier in a client PUBLISH"));
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                let published = self.broker.publish(self.broker.new_message(&publish, Some(self.session.id()), now));
                self.congested.extend(published.congested);
            }
            (QoS::AtLeastOnce, Some(id)) => {
                let published = self.broker.publish(self.broker.new_message(&publish, Some(self.session.id()), now));
                self.congested.extend(published.congested);
                // The PUBACK is a promise: it waits until the message is durable.
                self.hold_for(published.ticket);
                // MQTT-4.3.2-2 (3.1.1: MQTT-4.3.2-2): PUBACK with the same id.
                self.write(&Packet::PubAck(self.publish_ack(id, published.delivered)), out);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let pending = self.session.inbound_qos2_pending();
                let journal = broker.journal();
                let (new, recorded) = self.session.begin_inbound_qos2(id, journal);
                if new {
                    if self.version.is_v5() && pending >= usize::from(config.receive_maximum) {
                        self.session.release_inbound_qos2(id, journal);
                        // MQTT-3.3.4-8.
                        return Err(violation(
                            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            "more QoS 2 in flight than allowed",
                        ));
                    }
                    let published =
                        self.broker.publish(self.broker.new_message(&publish, Some(self.session.id()), now));
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

    fn handle_disconnect(&mut self, disconnect: &Disconnect) -> Result<(), Violation> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.connect_expiry == 0 && expiry != 0 {
                // MQTT-3.14.2-2.
                return Err(violation(ReasonCode::PROTOCOL_ERROR, "session expiry raised from 0 at DISCONNECT"));
            }
            let granted = expiry.min(self.broker.config().max_session_expiry_interval);
            self.session.lock().expiry_interval = granted;
        }
        Ok(())
    }

    /// Moves queued messages into `out` while the client's window allows and `out` holds fewer
    /// than `limit` bytes. Returns whether more may be ready (call again once `out` drains).
    pub fn drain(&mut self, now: Instant, out: &mut BytesMut, limit: usize) -> bool {
        let mut outgoing = DRAIN_SCRATCH.with(|scratch| std::mem::take(&mut *scratch.borrow_mut()));
        let max_size = self.client_max_packet_size as usize;
        let version = self.version;
        let aliases = self.client_alias_maximum > 0;
        let mut more = true;
        while more && out.len() < limit {
            let dropped = self.session.take_ready(
                self.conn_id,
                now,
                DRAIN_BATCH,
                |item| full_publish_len(item, version, aliases, now) <= max_size,
                self.broker.journal(),
                &mut outgoing,
            );
            if dropped > 0 {
                self.broker.stats().messages_dropped.add(dropped as u64);
            }
            more = outgoing.len() == DRAIN_BATCH;
            let mut sent = 0;
            for item in outgoing.drain(..) {
                sent += u64::from(self.write_outgoing(item, now, out));
            }
            if sent > 0 {
                self.broker.stats().messages_sent.add(sent); // once per batch, not per message
            }
        }
        DRAIN_SCRATCH.with(|scratch| *scratch.borrow_mut() = outgoing);
        more
    }

    /// Writes one outgoing packet; returns whether it was a PUBLISH.
    fn write_outgoing(&mut self, outgoing: Outgoing, now: Instant, out: &mut BytesMut) -> bool {
        match outgoing {
            Outgoing::PubRel(id) => {
                self.write(&Packet::PubRel(PubResponse::success(id)), out);
                false
            }
            Outgoing::Publish { item, packet_id, dup } => {
                let v5 = self.version.is_v5();
                let (topic, alias) = if v5 { self.outbound_alias(&item.message.topic) } else { (true, None) };
                let message = &item.message;
                let header = PublishHeader {
                    dup,
                    qos: item.qos,
                    retain: item.retain,
                    topic: if topic { &message.topic } else { "" },
                    packet_id,
                    shared_properties: if v5 { &message.shared_properties } else { &[] },
                    message_expiry_interval: if v5 { message.remaining_expiry(now) } else { None },
                    topic_alias: alias,
                    subscription_identifiers: if v5 { &item.subscription_ids } else { &[] },
                };
                if let Err(error) = encode_publish(out, self.version, &header, &message.payload) {
                    tracing::warn!(%error, "message too large to encode, dropped");
                    return false;
                }
                true
            }
        }
    }

    /// Chooses how to name `topic` to a v5 client: `(send_topic, alias)`. A known topic goes
    /// by alias alone; a new one gets the next free alias while the client's Topic Alias
    /// Maximum allows (MQTT-3.3.2-10: never above it); after that topics are sent in full.
    fn outbound_alias(&mut self, topic: &TopicName) -> (bool, Option<u16>) {
        if self.client_alias_maximum == 0 {
            return (true, None);
        }
        let outbound = &mut self.aliases.get_or_insert_with(Box::default).outbound;
        if let Some(&alias) = outbound.get(topic) {
            return (false, Some(alias));
        }
        let next = outbound.len() + 1;
        if next > usize::from(self.client_alias_maximum) {
            return (true, None);
        }
        let alias = next as u16;
        outbound.insert(topic.clone(), alias);
        (true, Some(alias))
    }

    /// Encodes a control packet. Acks carry no reason strings or user properties, so a client
    /// that asked for no problem information (MQTT-3.1.2-29) needs no special case.
    fn write(&self, packet: &Packet, out: &mut BytesMut) {
        if let Err(error) = encode_packet(packet, self.version, out) {
            tracing::warn!(%error, kind = packet.kind(), "cannot encode packet");
        }
    }

    /// Writes the DISCONNECT a v5 client is sent before the server closes (MQTT-4.13.1-1);
    /// nothing for 3.x, which has no server DISCONNECT.
    /// `detail` becomes the Reason String, which DISCONNECT may carry even when the client asked
    /// for no problem information (MQTT-3.1.2-29).
    pub fn write_disconnect(&self, reason: ReasonCode, detail: Option<&str>, out: &mut BytesMut) {
        if self.version.is_v5() {
            let properties = Properties {
                reason_string: detail.and_then(|d| midge_codec::MqttString::new(d).ok()),
                ..Properties::default()
            };
            let mut packet = Packet::Disconnect(Disconnect { reason, properties });
            if encoded_len(&packet, self.version) > self.client_max_packet_size as usize {
                // MQTT-3.14.2-3: drop the Reason String rather than exceed the client's limit.
                packet = Packet::Disconnect(Disconnect { reason, properties: Properties::default() });
            }
            self.write(&packet, out);
        }
    }

    /// Ends the connection: publishes or schedules the will as `how` requires, detaches from
    /// the session, and ends the session if it does not outlive the connection.
    pub fn close(mut self, how: CloseKind, now: Instant) {
        let will = match how {
            CloseKind::Abnormal | CloseKind::NormalWithWill | CloseKind::TakenOver => self.will.take(),
            CloseKind::Normal | CloseKind::ServerShutdown => None,
        };
        let detached = self.session.detach(self.conn_id, now);
        let expiry = self.session.lock().expiry_interval;
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            let publish_now = if delay == 0 || (detached && expiry == 0) {
                true
            } else if detached {
                // MQTT 5.0 section 3.1.3.2.2: published when the delay or the session ends,
                // whichever is first. Checked under the session lock, so a session ending
                // concurrently either publishes the parked will or makes us publish it.
                let mut state = self.session.lock();
                if state.ended {
                    true
                } else {
                    let due = now + std::time::Duration::from_secs(u64::from(delay));
                    state.delayed_will = Some((due, self.broker.will_message(&will, Some(self.session.id()), due)));
                    false
                }
            } else {
                // Taken over: by a clean start, which ended this session (publish now), or by a
                // connection that resumed it, which cancels a delayed will (MQTT-3.1.3-9).
                self.session.lock().ended
            };
            if publish_now {
                self.broker.publish_will(self.broker.will_message(&will, Some(self.session.id()), now));
            } else if self.session.lock().persistent() {
                self.broker.save_session(&self.session); // the parked will is durable too
            }
        }
        if detached && expiry == 0 && how != CloseKind::ServerShutdown {
            self.broker.finish_session(&self.session);
        } else if detached && expiry > 0 && how != CloseKind::ServerShutdown {
            self.broker.save_session(&self.session); // when it expires, now that it is detached
        }
    }
}

/// The size of a PUBLISH of `item` with its full topic (and an alias, when the client accepts
/// them): an upper bound of what is sent, used for the client's Maximum Packet Size.
fn full_publish_len(item: &Queued, version: ProtocolVersion, aliases: bool, now: Instant) -> usize {
    let v5 = version.is_v5();
    let message = &item.message;
    let header = PublishHeader {
        dup: false,
        qos: item.qos,
        retain: item.retain,
        topic: &message.topic,
        packet_id: if item.qos == QoS::AtMostOnce { None } else { PacketId::new(1) },
        shared_properties: if v5 { &message.shared_properties } else { &[] },
        message_expiry_interval: if v5 { message.remaining_expiry(now) } else { None },
        topic_alias: if v5 && aliases { Some(1) } else { None },
        subscription_identifiers: if v5 { &item.subscription_ids } else { &[] },
    };
    publish_len(&header, message.payload.len(), version)
}
