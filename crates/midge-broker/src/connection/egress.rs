//! Messages out: moving what the session's queue and window allow into an [`Egress`], and the
//! MQTT encoder the connection driver uses (topic aliases towards the client, its Maximum Packet
//! Size), plus the control packets the connection writes.

use std::time::Instant;

use bytes::BytesMut;
use midge_codec::{
    encode_packet, encode_publish, encoded_len, publish_len, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubResponse, PublishHeader, QoS, ReasonCode, TopicName,
};

use super::state::{ClientConnection, TopicAliases};
use crate::delivery::{Outgoing, Queued, ReadyBatch};
use crate::limits::{DRAIN_BATCH, SHARED_HAND_ONS};
use crate::ports::access::Action;
use crate::ports::egress::Egress;

impl ClientConnection {
    /// Writes what a reconnecting persistent session must resend first (MQTT-4.4.0-1).
    pub fn resume(&mut self, now: Instant, out: &mut BytesMut) {
        let resends = self.session.resend_inflight(self.conn_id);
        let mut sink = MqttEgress::new(self, out, usize::MAX);
        for outgoing in resends {
            sink.send(outgoing, now);
        }
    }

    /// Hands `sink` what a reconnecting persistent session must resend first (MQTT-4.4.0-1):
    /// [`resume`](Self::resume) for a sink other than MQTT. Every resend goes, whatever the
    /// sink's room: they are already in flight.
    pub fn resume_to(&mut self, now: Instant, sink: &mut impl Egress) {
        for outgoing in self.session.resend_inflight(self.conn_id) {
            sink.send(outgoing, now);
        }
    }

    /// Moves queued messages into `out` as MQTT packets while the client's window allows and
    /// `out` holds fewer than `limit` bytes. Returns whether more may be ready (call again once
    /// `out` drains).
    pub fn drain(&mut self, now: Instant, out: &mut BytesMut, limit: usize) -> bool {
        // The sink borrows the alias table, the drain the access cache: two fields, not `self`.
        let mut sink = MqttEgress {
            version: self.version,
            client_alias_maximum: self.client_alias_maximum,
            client_max_packet_size: self.client_max_packet_size,
            aliases: &mut self.aliases,
            out,
            limit,
        };
        drain_session(&self.broker, &self.session, self.conn_id, &mut self.access, now, &mut sink)
    }

    /// Moves queued messages into `sink` while the client's window and the sink allow; returns
    /// whether more may be ready. QoS 1/2 messages stay in flight until
    /// [`acknowledge`](Self::acknowledge)d.
    pub fn drain_to(&mut self, now: Instant, sink: &mut impl Egress) -> bool {
        drain_session(&self.broker, &self.session, self.conn_id, &mut self.access, now, sink)
    }

    /// Encodes a control packet. Acks carry no reason strings or user properties, so a client
    /// that asked for no problem information (MQTT-3.1.2-29) needs no special case.
    pub(super) fn write(&self, packet: &Packet, out: &mut BytesMut) {
        // One per response (an acknowledgement per QoS 1/2 PUBLISH at most): a thread's own
        // shard of a counter, as `Broker::publish` counts each message.
        self.broker.stats().packets_sent.add(1);
        write(packet, self.version, out);
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
}

/// Moves ready messages from `session` into `sink`, [`DRAIN_BATCH`] at a time, dropping (and
/// counting) the expired ones, those the sink refuses and those the reader may not receive.
fn drain_session(
    broker: &crate::Broker,
    session: &crate::Session,
    conn_id: u64,
    access: &mut Option<Box<crate::ports::access::AccessCache>>,
    now: Instant,
    sink: &mut impl Egress,
) -> bool {
    let mut ready = ReadyBatch::new();
    let mut handed_on: Vec<Queued> = Vec::new();
    let mut fabric_done: Vec<u64> = Vec::new();
    let mut more = true;
    while more && sink.has_room() {
        let deliverable = |item: &Queued| {
            let readable = access.as_mut().is_none_or(|access| access.allows(Action::Receive, &item.message.topic));
            if !readable && item.shared.is_some() && item.handed_on < SHARED_HAND_ONS {
                // Another member of the group may read it (MQTT 5.0 section 4.8.2 gives each
                // message to one member, not to this one in particular).
                handed_on.push(Queued { handed_on: item.handed_on + 1, ..item.clone() });
            }
            readable && sink.accepts(item, now)
        };
        let dropped =
            session.take_ready(conn_id, now, DRAIN_BATCH, deliverable, broker.journal(), &mut ready, &mut fabric_done);
        for message_id in fabric_done.drain(..) {
            broker.fabric_delivered(session.client_id(), message_id, None);
        }
        let dropped = dropped - handed_on.len();
        if dropped > 0 {
            broker.stats().dropped(crate::stats::DropReason::Undeliverable, dropped as u64);
        }
        for item in handed_on.drain(..) {
            broker.redeliver_shared(item);
        }
        more = ready.len() == DRAIN_BATCH;
        let (mut sent, mut packets, mut payload_bytes) = (0, 0, 0);
        for outgoing in ready.drain(..) {
            let (payload, release) = match &outgoing {
                Outgoing::Publish { item, .. } => (item.message.payload.len() as u64, false),
                Outgoing::PubRel(_) => (0, true),
            };
            let published = sink.send(outgoing, now);
            sent += u64::from(published);
            packets += u64::from(published || release);
            payload_bytes += if published { payload } else { 0 };
        }
        // Once per batch, not per message.
        let stats = broker.stats();
        if sent > 0 {
            stats.messages_sent.add(sent);
            stats.publish_bytes_sent.add(payload_bytes);
        }
        if packets > 0 {
            stats.packets_sent.add(packets);
        }
    }
    more
}

/// The MQTT encoding of a connection's outgoing messages into its write buffer.
struct MqttEgress<'a> {
    version: ProtocolVersion,
    /// The client's Topic Alias Maximum (0: the broker sends none).
    client_alias_maximum: u16,
    /// The client's Maximum Packet Size.
    client_max_packet_size: u32,
    aliases: &'a mut Option<Box<TopicAliases>>,
    out: &'a mut BytesMut,
    /// Bytes in `out` above which no more is taken.
    limit: usize,
}

impl Egress for MqttEgress<'_> {
    fn accepts(&mut self, item: &Queued, now: Instant) -> bool {
        let aliases = self.client_alias_maximum > 0;
        full_publish_len(item, self.version, aliases, now) <= self.client_max_packet_size as usize
    }

    fn send(&mut self, outgoing: Outgoing, now: Instant) -> bool {
        match outgoing {
            Outgoing::PubRel(id) => {
                write(&Packet::PubRel(PubResponse::success(id)), self.version, self.out);
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
                if let Err(error) = encode_publish(self.out, self.version, &header, &message.payload) {
                    tracing::warn!(%error, "message too large to encode, dropped");
                    return false;
                }
                true
            }
        }
    }

    fn has_room(&self) -> bool {
        self.out.len() < self.limit
    }
}

impl<'a> MqttEgress<'a> {
    /// The encoder of `connection`'s messages into `out`, up to `limit` bytes.
    fn new(connection: &'a mut ClientConnection, out: &'a mut BytesMut, limit: usize) -> Self {
        Self {
            version: connection.version,
            client_alias_maximum: connection.client_alias_maximum,
            client_max_packet_size: connection.client_max_packet_size,
            aliases: &mut connection.aliases,
            out,
            limit,
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
}

/// Encodes a control packet.
fn write(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    if let Err(error) = encode_packet(packet, version, out) {
        tracing::warn!(%error, kind = packet.kind(), "cannot encode packet");
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
