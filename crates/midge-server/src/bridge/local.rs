//! The bridge's side in this broker: a client of the core, like the HTTP API's and the
//! MQTT-SN gateway's, with a persistent session of its own (`local_clientid`). Its
//! subscriptions are the outbound topic lines; what it publishes is what comes in.
//!
//! The session is what makes the bridge lossless: a message for the remote is one of its
//! deliveries, written to the store before the local publisher is acknowledged (decision
//! 0002), kept in its queue on disk while the remote is away (decision 0006), and in flight
//! with its packet id until the remote acknowledges it. The packet id is the one the remote
//! sees too, so a restart of either side resends the same PUBLISH or PUBREL and the remote's
//! own session makes QoS 2 exactly once.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use midge_broker::ports::access::Identity;
use midge_broker::ports::auth::Verdict;
use midge_broker::ports::egress::Egress;
use midge_broker::{Broker, ClientConnection, ConnectContext, ConnectOutcome, Outgoing, Queued};
use midge_client::Client;
use midge_codec::{
    decode_packet, Connect, MqttString, Packet, PacketId, Properties, ProtocolVersion, PubResponse, PublishHeader, QoS,
    RetainHandling, Subscribe, Subscription, SubscriptionOptions, TopicFilter, Unsubscribe,
};
use midge_store::WriterHandle;

use super::topics::TopicMap;

/// The most bytes waiting to be written to the remote before the bridge stops taking
/// messages from its session: enough for a few hundred typical messages in one write, small
/// enough that a stalled link holds little in memory (the rest stays in the session).
pub(super) const REMOTE_BACKLOG: usize = 256 * 1024;

/// The core's connection, boxed as `ClientConnection::accept` gives it.
pub(super) type Connection = Box<ClientConnection>;

/// Attaches the bridge's session `client_id` (resumed if the broker holds it), with at most
/// `window` messages in flight to the remote. `Err` says why the core refused.
pub(super) fn attach(
    broker: &std::sync::Arc<Broker>,
    client_id: &str,
    name: &str,
    window: u16,
) -> Result<Connection, String> {
    let properties = Properties {
        // Never expires: the queue for the remote must outlast any outage (bounded by
        // `[mqtt] max_offline_messages` and `max_offline_bytes`, not by time).
        session_expiry_interval: Some(u32::MAX),
        receive_maximum: Some(window.max(1)),
        ..Properties::default()
    };
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 0,
        client_id: MqttString::new(client_id).map_err(|error| format!("local_clientid: {error}"))?,
        will: None,
        username: None,
        password: None,
        properties,
        bridge: false,
    };
    // The broker's own session: `persistent_client_expiration` does not end it.
    let request = broker.check_own_connect(Box::new(connect)).map_err(|refusal| refusal.reason.to_string())?;
    // The bridge is the operator's own configuration: no authenticator or ACL stands between
    // it and the core.
    let verdict = Verdict::Allow(Identity { username: None, grants: None });
    let context = ConnectContext { peer: format!("bridge {name}"), authorizer: None };
    match ClientConnection::accept(broker, request, verdict, &context, Instant::now()) {
        ConnectOutcome::Accepted { mut connection, .. } => {
            // The remote's QoS 2 flows pass through as the bridge's own: a v5 remote is held to
            // the Receive Maximum the bridge gave it, a 3.1.1 remote to nothing but the packet
            // id space. The broker's `receive_maximum` (for its clients) must not end the link
            // when such a remote has more awaiting PUBREL, which it would again on each resend.
            connection.set_receive_maximum(u16::MAX);
            Ok(connection)
        }
        ConnectOutcome::Refused(refusal) => Err(refusal.reason.to_string()),
    }
}

/// Makes the session's subscriptions those of `map`'s outbound lines: No Local (what the
/// bridge brings in does not go back out), Retain As Published (a retained message stays
/// retained at the remote), retained messages sent for a new subscription only (not again at
/// each reconnection); filters of lines no longer configured are unsubscribed. Returns the
/// store ticket the subscriptions are durable with.
pub(super) fn subscribe(
    connection: &mut Connection,
    map: &TopicMap,
) -> Result<Option<midge_broker::ports::durability::Ticket>, String> {
    let wanted = map.local_subscriptions();
    let held: Vec<Box<str>> = connection
        .broker()
        .session(connection.client_id())
        .map(|view| view.subscriptions.into_iter().map(|subscription| subscription.filter).collect())
        .unwrap_or_default();
    let stale: Vec<TopicFilter> = held
        .iter()
        .filter(|filter| !wanted.iter().any(|(wanted, _)| wanted.as_str() == &***filter))
        .filter_map(|filter| TopicFilter::new(filter.as_ref()).ok())
        .collect();
    let packet_id = PacketId::new(1).expect("1 is a packet id");
    if !stale.is_empty() {
        let unsubscribe = Unsubscribe { packet_id, filters: stale, properties: Properties::default() };
        handle(connection, Packet::Unsubscribe(unsubscribe))?;
    }
    if !wanted.is_empty() {
        let subscriptions = wanted
            .into_iter()
            .map(|(filter, qos)| Subscription {
                filter,
                options: SubscriptionOptions {
                    qos,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            })
            .collect();
        let subscribe = Subscribe { packet_id, subscriptions, properties: Properties::default() };
        for answer in handle(connection, Packet::Subscribe(subscribe))? {
            if let Packet::SubAck(suback) = answer {
                for reason in suback.reasons.iter().filter(|reason| reason.is_error()) {
                    tracing::error!(client_id = %connection.client_id(), %reason, "bridge: a local subscription was refused");
                }
            }
        }
    }
    Ok(connection.take_hold())
}

/// Hands the core one packet the bridge makes itself (SUBSCRIBE, UNSUBSCRIBE); its answers.
fn handle(connection: &mut Connection, packet: Packet) -> Result<Vec<Packet>, String> {
    let mut batch = midge_broker::ReadBatch::new();
    let mut out = BytesMut::new();
    let handled = connection.handle(packet, Instant::now(), &mut batch, &mut out);
    connection.broker().end_batch(&mut batch);
    match handled {
        Ok(midge_broker::Flow::Continue) => Ok(answers(&mut out)),
        Ok(midge_broker::Flow::Disconnect { .. }) => Err("the core ended the bridge's connection".into()),
        Err(violation) => Err(violation.to_string()),
    }
}

/// Waits until the store has committed `ticket` (what an answer about to go out promises).
pub(super) async fn durable(
    writer: Option<&WriterHandle>,
    ticket: Option<midge_broker::ports::durability::Ticket>,
) -> Result<(), String> {
    match (ticket, writer) {
        (Some(ticket), Some(writer)) => {
            writer.durable(midge_store::Ticket(ticket.0)).await.map_err(|error| format!("the store failed: {error}"))
        }
        _ => Ok(()),
    }
}

/// The core's answers the last `handle` wrote (v5-encoded) as packets.
pub(super) fn answers(out: &mut BytesMut) -> Vec<Packet> {
    let mut packets = Vec::new();
    while let Ok(Some(packet)) = decode_packet(out, ProtocolVersion::V5, usize::MAX) {
        packets.push(packet);
    }
    out.clear();
    packets
}

/// The [`Egress`] the bridge's session drains into: each message renamed for the remote and
/// written to its client with the session's packet id.
pub(super) struct ToRemote<'a> {
    pub(super) client: &'a mut Client,
    pub(super) map: &'a TopicMap,
    /// The remote's Maximum Packet Size, if it gave one.
    pub(super) max_packet_size: Option<u32>,
    /// Messages no outbound line names any more (subscribed under an earlier config), or that
    /// the remote could not take: acknowledged to the session after the drain, and counted.
    pub(super) dropped: Vec<Option<PacketId>>,
    /// Messages written.
    pub(super) sent: usize,
}

impl Egress for ToRemote<'_> {
    fn accepts(&mut self, item: &Queued, _now: Instant) -> bool {
        let message = &item.message;
        // A rough size: the fixed header, topic, id, properties and payload.
        let size = 5 + 2 + message.topic.len() + 2 + message.shared_properties.len() + 10 + message.payload.len();
        self.max_packet_size.is_none_or(|max| size <= max as usize)
    }

    fn send(&mut self, outgoing: Outgoing, now: Instant) -> bool {
        match outgoing {
            Outgoing::Publish { item, packet_id, dup } => {
                let message = &item.message;
                let Some(topic) = self.map.to_remote(message.topic.as_str()) else {
                    self.dropped.push(packet_id);
                    return false;
                };
                let v5 = self.client.options().version.is_v5();
                let header = PublishHeader {
                    dup,
                    qos: item.qos,
                    retain: item.retain,
                    topic: topic.as_str(),
                    packet_id,
                    shared_properties: if v5 { &message.shared_properties } else { &[] },
                    message_expiry_interval: if v5 { message.remaining_expiry(now) } else { None },
                    topic_alias: None,
                    subscription_identifiers: &[],
                };
                match self.client.send_publish(&header, &message.payload) {
                    Ok(()) => {
                        self.sent += 1;
                        true
                    }
                    Err(error) => {
                        tracing::warn!(%error, topic = %topic, "bridge: a message cannot be sent to the remote: dropped");
                        self.dropped.push(packet_id);
                        false
                    }
                }
            }
            Outgoing::PubRel(packet_id) => {
                let _ = self.client.send(&Packet::PubRel(PubResponse::success(packet_id)));
                false
            }
        }
    }

    fn has_room(&self) -> bool {
        self.client.write_backlog() < REMOTE_BACKLOG
    }
}

/// The remote's PUBLISH as the bridge's client publishes it here: under its local topic, with
/// its QoS, RETAIN flag, packet id and message properties, without what names the remote's own
/// tables (a topic alias) or only a server sends (subscription identifiers).
pub(super) fn publish_from_remote(
    mut publish: midge_codec::Publish,
    topic: midge_codec::TopicName,
) -> midge_codec::Publish {
    publish.topic = topic;
    publish.properties.topic_alias = None;
    publish.properties.subscription_identifiers.clear();
    publish
}

/// The link's state as the notification topic carries it: `1` up, `0` down (mosquitto's).
pub(super) fn state_payload(up: bool) -> Bytes {
    Bytes::from_static(if up { b"1" } else { b"0" })
}

/// QoS of the local notification: retained state for monitors, at most once is enough.
pub(super) const NOTIFICATION_QOS: QoS = QoS::AtMostOnce;
