//! The packets of MQTT 3.1, 3.1.1 and 5.0 as values.
//!
//! One struct per packet kind; fields that exist only in v5 (properties, reason codes) are
//! ignored when encoding for 3.x and default when decoding 3.x.

use bytes::Bytes;

use crate::properties::Properties;
use crate::reason::ReasonCode;
use crate::types::{MqttString, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1).
    Connect(Box<Connect>),
    /// CONNACK (2).
    ConnAck(ConnAck),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4).
    PubAck(PubResponse),
    /// PUBREC (5).
    PubRec(PubResponse),
    /// PUBREL (6).
    PubRel(PubResponse),
    /// PUBCOMP (7).
    PubComp(PubResponse),
    /// SUBSCRIBE (8).
    Subscribe(Subscribe),
    /// SUBACK (9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11).
    UnsubAck(UnsubAck),
    /// PINGREQ (12).
    PingReq,
    /// PINGRESP (13).
    PingResp,
    /// DISCONNECT (14).
    Disconnect(Disconnect),
    /// AUTH (15), v5 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "CONNECT",
            Self::ConnAck(_) => "CONNACK",
            Self::Publish(_) => "PUBLISH",
            Self::PubAck(_) => "PUBACK",
            Self::PubRec(_) => "PUBREC",
            Self::PubRel(_) => "PUBREL",
            Self::PubComp(_) => "PUBCOMP",
            Self::Subscribe(_) => "SUBSCRIBE",
            Self::SubAck(_) => "SUBACK",
            Self::Unsubscribe(_) => "UNSUBSCRIBE",
            Self::UnsubAck(_) => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect(_) => "DISCONNECT",
            Self::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version named by protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client Identifier; may be empty.
    pub client_id: MqttString,
    /// The will, when the Will Flag is set.
    pub will: Option<Will>,
    /// User Name, when its flag is set.
    pub username: Option<MqttString>,
    /// Password, when its flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (v5).
    pub properties: Properties,
    /// The protocol level's top bit (3.1 and 3.1.1 only), as mosquitto's bridges set it
    /// (`try_private`): the client is a bridge, which gets none of its own messages back and
    /// the RETAIN flag as published. Not part of either standard.
    pub bridge: bool,
}

/// A will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will Topic.
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: Properties,
}

/// CONNACK. For 3.x the encoder maps `reason` to a return code (see `connack_return_code`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Reason code (v5) or the v5 equivalent of the 3.x return code.
    pub reason: ReasonCode,
    /// CONNACK properties (v5).
    pub properties: Properties,
}

/// PUBLISH. `topic` and `payload` share the read buffer's storage after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty only when a v5 topic alias names the topic.
    pub topic: TopicName,
    /// Packet identifier: present exactly when QoS > 0 (MQTT-2.3.1-5).
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (v5).
    pub properties: Properties,
    /// Application message.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    /// The packet id of the PUBLISH (or PUBREL) acknowledged.
    pub packet_id: PacketId,
    /// Reason code (v5); SUCCESS for 3.x.
    pub reason: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl PubResponse {
    /// A successful acknowledgement without properties.
    pub fn success(packet_id: PacketId) -> Self {
        Self { packet_id, reason: ReasonCode::SUCCESS, properties: Properties::default() }
    }
}

/// How retained messages are sent when a subscription is made (v5, section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// Subscription options byte (v5; for 3.x only `qos` is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not deliver the client's own publications back to it.
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag on forwarded messages.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// At least one subscription (MQTT-3.8.3-3).
    pub subscriptions: Vec<Subscription>,
    /// Properties (v5): at most one subscription identifier.
    pub properties: Properties,
}

/// SUBACK. For 3.x any failure code is encoded as 0x80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// One code per subscription, in order: granted QoS or failure.
    pub reasons: Vec<ReasonCode>,
    /// Properties (v5).
    pub properties: Properties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// At least one filter (MQTT-3.10.3-2).
    pub filters: Vec<TopicFilter>,
    /// Properties (v5).
    pub properties: Properties,
}

/// UNSUBACK. 3.x carries no reason codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// One code per filter (v5).
    pub reasons: Vec<ReasonCode>,
    /// Properties (v5).
    pub properties: Properties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code (v5); SUCCESS for 3.x.
    pub reason: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

/// AUTH (v5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Reason code.
    pub reason: ReasonCode,
    /// Properties.
    pub properties: Properties,
}
