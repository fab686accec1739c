//! proptest strategies for arbitrary valid messages.
//!
//! Values cover each field's whole range (every QoS, every return code, reserved ones
//! included, any octets where the specification sets no coding), strings of any characters,
//! and data long enough to need the 3-octet Length field.

use bytes::Bytes;
use midge_sn_codec::{
    ClientId, Connect, Encapsulated, Message, MsgId, PubAck, Publish, PublishTopic, QoS, RegAck, Register, ReturnCode,
    ShortTopicName, SubAck, Subscribe, SubscribeTopic, TopicId, TopicName, Unsubscribe, WillTopic,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/+#]{1,12}", "(?s).{1,8}"]
}

fn client_id() -> impl Strategy<Value = ClientId> {
    text().prop_map(|text| ClientId::new(text).unwrap())
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    text().prop_map(|text| TopicName::new(text).unwrap())
}

/// Octets, now and then enough of them to need the 3-octet Length field.
fn octets() -> impl Strategy<Value = Bytes> {
    prop_oneof![4 => vec(any::<u8>(), 0..32), 1 => vec(any::<u8>(), 240..600)].prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    (0u8..4).prop_map(QoS::from_bits)
}

fn return_code() -> impl Strategy<Value = ReturnCode> {
    prop_oneof![(0u8..4).prop_map(ReturnCode), any::<u8>().prop_map(ReturnCode)]
}

fn msg_id() -> impl Strategy<Value = MsgId> {
    any::<u16>().prop_map(MsgId)
}

fn topic_id() -> impl Strategy<Value = TopicId> {
    any::<u16>().prop_map(TopicId)
}

fn short_name() -> impl Strategy<Value = ShortTopicName> {
    any::<[u8; 2]>().prop_map(ShortTopicName)
}

fn will() -> impl Strategy<Value = Option<WillTopic>> {
    option::of((qos(), any::<bool>(), topic_name()).prop_map(|(qos, retain, topic)| WillTopic { qos, retain, topic }))
}

fn publish_topic() -> impl Strategy<Value = PublishTopic> {
    prop_oneof![
        topic_id().prop_map(PublishTopic::Normal),
        topic_id().prop_map(PublishTopic::Predefined),
        short_name().prop_map(PublishTopic::Short),
    ]
}

fn subscribe_topic() -> impl Strategy<Value = SubscribeTopic> {
    prop_oneof![
        topic_name().prop_map(SubscribeTopic::Name),
        topic_id().prop_map(SubscribeTopic::Predefined),
        short_name().prop_map(SubscribeTopic::Short),
    ]
}

/// Any message but an Encapsulated one.
pub fn plain_message() -> BoxedStrategy<Message> {
    prop_oneof![
        (any::<u8>(), any::<u16>()).prop_map(|(gw_id, duration)| Message::Advertise { gw_id, duration }),
        any::<u8>().prop_map(|radius| Message::SearchGw { radius }),
        (any::<u8>(), octets()).prop_map(|(gw_id, gw_add)| Message::GwInfo { gw_id, gw_add }),
        (any::<bool>(), any::<bool>(), any::<u16>(), client_id()).prop_map(
            |(will, clean_session, duration, client_id)| Message::Connect(Connect {
                will,
                clean_session,
                duration,
                client_id
            })
        ),
        return_code().prop_map(|return_code| Message::ConnAck { return_code }),
        Just(Message::WillTopicReq),
        will().prop_map(|will| Message::WillTopic { will }),
        Just(Message::WillMsgReq),
        octets().prop_map(|will_msg| Message::WillMsg { will_msg }),
        (topic_id(), msg_id(), topic_name()).prop_map(|(topic_id, msg_id, topic_name)| Message::Register(Register {
            topic_id,
            msg_id,
            topic_name
        })),
        (topic_id(), msg_id(), return_code()).prop_map(|(topic_id, msg_id, return_code)| Message::RegAck(RegAck {
            topic_id,
            msg_id,
            return_code
        })),
        (any::<bool>(), qos(), any::<bool>(), publish_topic(), msg_id(), octets()).prop_map(
            |(dup, qos, retain, topic, msg_id, data)| Message::Publish(Publish {
                dup,
                qos,
                retain,
                topic,
                msg_id,
                data
            })
        ),
        (topic_id(), msg_id(), return_code()).prop_map(|(topic_id, msg_id, return_code)| Message::PubAck(PubAck {
            topic_id,
            msg_id,
            return_code
        })),
        msg_id().prop_map(|msg_id| Message::PubComp { msg_id }),
        msg_id().prop_map(|msg_id| Message::PubRec { msg_id }),
        msg_id().prop_map(|msg_id| Message::PubRel { msg_id }),
        (any::<bool>(), qos(), msg_id(), subscribe_topic())
            .prop_map(|(dup, qos, msg_id, topic)| Message::Subscribe(Subscribe { dup, qos, msg_id, topic })),
        (qos(), topic_id(), msg_id(), return_code()).prop_map(|(qos, topic_id, msg_id, return_code)| {
            Message::SubAck(SubAck { qos, topic_id, msg_id, return_code })
        }),
        (msg_id(), subscribe_topic()).prop_map(|(msg_id, topic)| Message::Unsubscribe(Unsubscribe { msg_id, topic })),
        msg_id().prop_map(|msg_id| Message::UnsubAck { msg_id }),
        option::of(client_id()).prop_map(|client_id| Message::PingReq { client_id }),
        Just(Message::PingResp),
        option::of(any::<u16>()).prop_map(|duration| Message::Disconnect { duration }),
        will().prop_map(|will| Message::WillTopicUpd { will }),
        return_code().prop_map(|return_code| Message::WillTopicResp { return_code }),
        octets().prop_map(|will_msg| Message::WillMsgUpd { will_msg }),
        return_code().prop_map(|return_code| Message::WillMsgResp { return_code }),
    ]
    .boxed()
}

/// Any message, Encapsulated ones included (around any other message).
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        8 => plain_message(),
        1 => (0u8..4, vec(any::<u8>(), 0..8), plain_message()).prop_map(|(radius, id, message)| {
            Message::Encapsulated(Encapsulated { radius, wireless_node_id: Bytes::from(id), message: Box::new(message) })
        }),
    ]
}
