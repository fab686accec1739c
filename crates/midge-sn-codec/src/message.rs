//! The messages of MQTT-SN 1.2 (section 5.4) and the forwarder's Encapsulated message (5.5) as
//! values.
//!
//! One variant of [`Message`] per message type. Messages with one or two fields carry them in
//! the variant; the others have a struct. Every field is typed: the Flags octet is split into
//! the flags that the message uses (5.3.4 says which; the others are "not used", decoded as
//! ignored and encoded as 0), and a topic is an enum over its TopicIdType.

use bytes::Bytes;

use crate::types::{ClientId, MsgId, MsgType, QoS, ReturnCode, ShortTopicName, TopicId, TopicIdType, TopicName};

/// Any MQTT-SN 1.2 message, one per datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 5.4.1 ADVERTISE: broadcast by a gateway to advertise its presence.
    Advertise {
        /// GwId (5.3.6): the id of the gateway that sends it.
        gw_id: u8,
        /// Duration (5.3.3): seconds until this gateway's next ADVERTISE.
        duration: u16,
    },
    /// 5.4.2 SEARCHGW: broadcast by a client looking for a gateway.
    SearchGw {
        /// Radius (5.3.9): the broadcast radius, in hops; 0x00 means the whole network.
        radius: u8,
    },
    /// 5.4.3 GWINFO: the answer to a SEARCHGW.
    GwInfo {
        /// GwId (5.3.6): the id of a gateway.
        gw_id: u8,
        /// GwAdd (5.3.5): the gateway's address, its coding set by the network; present only
        /// when a client answers for a gateway, empty when a gateway answers for itself.
        gw_add: Bytes,
    },
    /// 5.4.4 CONNECT.
    Connect(Connect),
    /// 5.4.5 CONNACK.
    ConnAck {
        /// ReturnCode (5.3.10).
        return_code: ReturnCode,
    },
    /// 5.4.6 WILLTOPICREQ: the gateway asks for the will topic.
    WillTopicReq,
    /// 5.4.7 WILLTOPIC: the client's will topic, in answer to WILLTOPICREQ.
    WillTopic {
        /// The will's topic, QoS and retain flag; `None` for the empty WILLTOPIC (exactly two
        /// octets, no Flags and no WillTopic) that deletes the will topic and message (6.4).
        will: Option<WillTopic>,
    },
    /// 5.4.8 WILLMSGREQ: the gateway asks for the will message.
    WillMsgReq,
    /// 5.4.9 WILLMSG: the client's will message, in answer to WILLMSGREQ.
    WillMsg {
        /// WillMsg (5.3.13): the will's payload, possibly empty.
        will_msg: Bytes,
    },
    /// 5.4.10 REGISTER.
    Register(Register),
    /// 5.4.11 REGACK.
    RegAck(RegAck),
    /// 5.4.12 PUBLISH.
    Publish(Publish),
    /// 5.4.13 PUBACK.
    PubAck(PubAck),
    /// 5.4.14 PUBCOMP.
    PubComp {
        /// MsgId (5.3.7) of the PUBREL it completes.
        msg_id: MsgId,
    },
    /// 5.4.14 PUBREC.
    PubRec {
        /// MsgId (5.3.7) of the QoS 2 PUBLISH it acknowledges.
        msg_id: MsgId,
    },
    /// 5.4.14 PUBREL.
    PubRel {
        /// MsgId (5.3.7) of the PUBREC it answers.
        msg_id: MsgId,
    },
    /// 5.4.15 SUBSCRIBE.
    Subscribe(Subscribe),
    /// 5.4.16 SUBACK.
    SubAck(SubAck),
    /// 5.4.17 UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// 5.4.18 UNSUBACK.
    UnsubAck {
        /// MsgId (5.3.7) of the UNSUBSCRIBE it acknowledges.
        msg_id: MsgId,
    },
    /// 5.4.19 PINGREQ.
    PingReq {
        /// ClientId (5.3.1): present when a sleeping client wakes to collect its messages (6.14);
        /// `None` for a plain keep-alive.
        client_id: Option<ClientId>,
    },
    /// 5.4.20 PINGRESP.
    PingResp,
    /// 5.4.21 DISCONNECT.
    Disconnect {
        /// Duration (5.3.3): seconds the client will sleep (6.14), present when a client goes to
        /// sleep; `None` for a plain disconnect (and from a gateway).
        duration: Option<u16>,
    },
    /// 5.4.22 WILLTOPICUPD: a connected client updates its will topic.
    WillTopicUpd {
        /// The new will topic, QoS and retain flag; `None` for the empty WILLTOPICUPD (exactly
        /// two octets) that deletes the will topic and message.
        will: Option<WillTopic>,
    },
    /// 5.4.24 WILLTOPICRESP: the gateway's answer to WILLTOPICUPD.
    WillTopicResp {
        /// ReturnCode (5.3.10).
        return_code: ReturnCode,
    },
    /// 5.4.23 WILLMSGUPD: a connected client updates its will message.
    WillMsgUpd {
        /// WillMsg (5.3.13): the new payload, possibly empty.
        will_msg: Bytes,
    },
    /// 5.4.25 WILLMSGRESP: the gateway's answer to WILLMSGUPD.
    WillMsgResp {
        /// ReturnCode (5.3.10).
        return_code: ReturnCode,
    },
    /// 5.5 Encapsulated message: a message relayed by a forwarder.
    Encapsulated(Encapsulated),
}

impl Message {
    /// The message's type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::Advertise { .. } => MsgType::Advertise,
            Self::SearchGw { .. } => MsgType::SearchGw,
            Self::GwInfo { .. } => MsgType::GwInfo,
            Self::Connect(_) => MsgType::Connect,
            Self::ConnAck { .. } => MsgType::ConnAck,
            Self::WillTopicReq => MsgType::WillTopicReq,
            Self::WillTopic { .. } => MsgType::WillTopic,
            Self::WillMsgReq => MsgType::WillMsgReq,
            Self::WillMsg { .. } => MsgType::WillMsg,
            Self::Register(_) => MsgType::Register,
            Self::RegAck(_) => MsgType::RegAck,
            Self::Publish(_) => MsgType::Publish,
            Self::PubAck(_) => MsgType::PubAck,
            Self::PubComp { .. } => MsgType::PubComp,
            Self::PubRec { .. } => MsgType::PubRec,
            Self::PubRel { .. } => MsgType::PubRel,
            Self::Subscribe(_) => MsgType::Subscribe,
            Self::SubAck(_) => MsgType::SubAck,
            Self::Unsubscribe(_) => MsgType::Unsubscribe,
            Self::UnsubAck { .. } => MsgType::UnsubAck,
            Self::PingReq { .. } => MsgType::PingReq,
            Self::PingResp => MsgType::PingResp,
            Self::Disconnect { .. } => MsgType::Disconnect,
            Self::WillTopicUpd { .. } => MsgType::WillTopicUpd,
            Self::WillTopicResp { .. } => MsgType::WillTopicResp,
            Self::WillMsgUpd { .. } => MsgType::WillMsgUpd,
            Self::WillMsgResp { .. } => MsgType::WillMsgResp,
            Self::Encapsulated(_) => MsgType::Encapsulated,
        }
    }

    /// The number of octets [`encode`](crate::encode()) writes for this message: its header in the
    /// form it needs (5.2.1) and its fields, or for an Encapsulated message the forwarder's
    /// header and the inner message.
    pub fn encoded_len(&self) -> usize {
        crate::encode::encoded_len(self)
    }
}

/// 5.4.4 CONNECT: sets up a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The Will flag (5.3.4): the gateway asks for a will topic and message before CONNACK.
    pub will: bool,
    /// The CleanSession flag (5.3.4), as in MQTT, extended to the will (6.3).
    pub clean_session: bool,
    /// Duration (5.3.3): the keep-alive period in seconds.
    pub duration: u16,
    /// ClientId (5.3.1).
    pub client_id: ClientId,
}

/// The will of a WILLTOPIC (5.4.7) or WILLTOPICUPD (5.4.22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillTopic {
    /// The will's QoS (5.3.4).
    pub qos: QoS,
    /// The will's Retain flag (5.3.4).
    pub retain: bool,
    /// WillTopic (5.3.14).
    pub topic: TopicName,
}

/// 5.4.10 REGISTER: asks for (from a client) or announces (from a gateway) the topic id of a
/// topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// TopicId (5.3.11): 0x0000 from a client; the assigned id from a gateway.
    pub topic_id: TopicId,
    /// MsgId (5.3.7), echoed by the REGACK.
    pub msg_id: MsgId,
    /// TopicName (5.3.12).
    pub topic_name: TopicName,
}

/// 5.4.11 REGACK: answers a REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegAck {
    /// TopicId (5.3.11): the id assigned (from a gateway); unused in a rejection.
    pub topic_id: TopicId,
    /// MsgId (5.3.7) of the REGISTER.
    pub msg_id: MsgId,
    /// ReturnCode (5.3.10).
    pub return_code: ReturnCode,
}

/// 5.4.12 PUBLISH: carries an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The DUP flag (5.3.4): a retransmission.
    pub dup: bool,
    /// The message's QoS (5.3.4), -1 included.
    pub qos: QoS,
    /// The Retain flag (5.3.4).
    pub retain: bool,
    /// TopicId (5.3.11) with its TopicIdType: a topic id or a short topic name.
    pub topic: PublishTopic,
    /// MsgId (5.3.7): 0x0000 for QoS 0 and -1 (5.4.12 says so; a decoded value is kept as
    /// sent).
    pub msg_id: MsgId,
    /// Data (5.3.2): the payload, possibly empty.
    pub data: Bytes,
}

/// The topic of a PUBLISH: the TopicId field read as its TopicIdType says (5.3.4, 5.4.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishTopic {
    /// TopicIdType `0b00`: a topic id registered with REGISTER.
    Normal(TopicId),
    /// TopicIdType `0b01`: a predefined topic id.
    Predefined(TopicId),
    /// TopicIdType `0b10`: a short topic name.
    Short(ShortTopicName),
}

impl PublishTopic {
    /// The TopicIdType that names this kind of topic.
    pub fn id_type(&self) -> TopicIdType {
        match self {
            Self::Normal(_) => TopicIdType::Normal,
            Self::Predefined(_) => TopicIdType::Predefined,
            Self::Short(_) => TopicIdType::Short,
        }
    }
}

/// 5.4.13 PUBACK: acknowledges a QoS 1 PUBLISH, or rejects any PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// TopicId (5.3.11) of the PUBLISH.
    pub topic_id: TopicId,
    /// MsgId (5.3.7) of the PUBLISH.
    pub msg_id: MsgId,
    /// ReturnCode (5.3.10).
    pub return_code: ReturnCode,
}

/// 5.4.15 SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The DUP flag (5.3.4): a retransmission.
    pub dup: bool,
    /// The requested QoS (5.3.4).
    pub qos: QoS,
    /// MsgId (5.3.7), echoed by the SUBACK.
    pub msg_id: MsgId,
    /// TopicName or TopicId, as TopicIdType says.
    pub topic: SubscribeTopic,
}

/// The topic of a SUBSCRIBE or UNSUBSCRIBE: a TopicName or a TopicId field, as the TopicIdType
/// says (5.3.4, 5.4.15, 5.4.17).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubscribeTopic {
    /// TopicIdType `0b00`: a topic name, wildcards allowed.
    Name(TopicName),
    /// TopicIdType `0b01`: a predefined topic id.
    Predefined(TopicId),
    /// TopicIdType `0b10`: a short topic name (exactly two octets).
    Short(ShortTopicName),
}

impl SubscribeTopic {
    /// The TopicIdType that names this kind of topic.
    pub fn id_type(&self) -> TopicIdType {
        match self {
            Self::Name(_) => TopicIdType::Normal,
            Self::Predefined(_) => TopicIdType::Predefined,
            Self::Short(_) => TopicIdType::Short,
        }
    }
}

/// 5.4.16 SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck {
    /// The granted QoS (5.3.4).
    pub qos: QoS,
    /// TopicId (5.3.11): the id assigned to a topic name without wildcards, 0x0000 otherwise.
    pub topic_id: TopicId,
    /// MsgId (5.3.7) of the SUBSCRIBE.
    pub msg_id: MsgId,
    /// ReturnCode (5.3.10).
    pub return_code: ReturnCode,
}

/// 5.4.17 UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// MsgId (5.3.7), echoed by the UNSUBACK.
    pub msg_id: MsgId,
    /// TopicName or TopicId, as TopicIdType says.
    pub topic: SubscribeTopic,
}

/// 5.5 Forwarder Encapsulation: a message between a gateway and a forwarder, wrapping one
/// client's message with the wireless node it comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated {
    /// Radius, bits 0 and 1 of the Ctrl octet: the broadcast radius (relevant only from
    /// gateway to forwarder), 0..=3. The other Ctrl bits are reserved: ignored by the decoder,
    /// written as 0.
    pub radius: u8,
    /// Wireless Node Id: the client's address on the wireless network, its coding set by that
    /// network; at most 252 octets, as the encapsulation's one-octet Length counts it.
    pub wireless_node_id: Bytes,
    /// The encapsulated message; never itself an Encapsulated message.
    pub message: Box<Message>,
}
