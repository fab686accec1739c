//! One valid message of each type, and of each form a type has (empty WILLTOPIC, PINGREQ with
//! a client id, DISCONNECT with a duration, each topic id type, the 3-octet Length): inputs for
//! the corruption property test and the fuzz seed corpus.

use bytes::Bytes;
use midge_sn_codec::{
    Connect, Encapsulated, Message, MsgId, PubAck, Publish, PublishTopic, QoS, RegAck, Register, ReturnCode,
    ShortTopicName, SubAck, Subscribe, SubscribeTopic, TopicId, Unsubscribe, WillTopic,
};

use crate::support::{client, encode_vec, topic};

/// Representative messages of every type.
pub fn messages() -> Vec<Message> {
    let will = || WillTopic { qos: QoS::AtLeastOnce, retain: true, topic: topic("s/1/state") };
    let publish = |qos, topic, msg_id, data: &'static [u8]| {
        Message::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            msg_id: MsgId(msg_id),
            data: Bytes::from_static(data),
        })
    };
    vec![
        Message::Advertise { gw_id: 7, duration: 900 },
        Message::SearchGw { radius: 2 },
        Message::GwInfo { gw_id: 7, gw_add: Bytes::from_static(&[192, 168, 0, 1]) },
        Message::Connect(Connect { will: true, clean_session: true, duration: 60, client_id: client("sensor-1") }),
        Message::ConnAck { return_code: ReturnCode::ACCEPTED },
        Message::WillTopicReq,
        Message::WillTopic { will: Some(will()) },
        Message::WillTopic { will: None },
        Message::WillMsgReq,
        Message::WillMsg { will_msg: Bytes::from_static(b"offline") },
        Message::Register(Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name: topic("s/1/temp") }),
        Message::RegAck(RegAck { topic_id: TopicId(5), msg_id: MsgId(1), return_code: ReturnCode::ACCEPTED }),
        publish(QoS::AtLeastOnce, PublishTopic::Normal(TopicId(5)), 2, b"21.5"),
        publish(QoS::MinusOne, PublishTopic::Predefined(TopicId(0x10)), 0, b"1"),
        publish(QoS::ExactlyOnce, PublishTopic::Short(ShortTopicName(*b"ab")), 3, b""),
        publish(QoS::AtMostOnce, PublishTopic::Normal(TopicId(5)), 0, &[0x5A; 300]),
        Message::PubAck(PubAck {
            topic_id: TopicId(5),
            msg_id: MsgId(2),
            return_code: ReturnCode::REJECTED_CONGESTION,
        }),
        Message::PubComp { msg_id: MsgId(3) },
        Message::PubRec { msg_id: MsgId(3) },
        Message::PubRel { msg_id: MsgId(3) },
        Message::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: MsgId(4),
            topic: SubscribeTopic::Name(topic("s/+/temp")),
        }),
        Message::Subscribe(Subscribe {
            dup: true,
            qos: QoS::ExactlyOnce,
            msg_id: MsgId(4),
            topic: SubscribeTopic::Predefined(TopicId(0x10)),
        }),
        Message::SubAck(SubAck {
            qos: QoS::AtLeastOnce,
            topic_id: TopicId(5),
            msg_id: MsgId(4),
            return_code: ReturnCode::ACCEPTED,
        }),
        Message::Unsubscribe(Unsubscribe { msg_id: MsgId(6), topic: SubscribeTopic::Short(ShortTopicName(*b"ab")) }),
        Message::UnsubAck { msg_id: MsgId(6) },
        Message::PingReq { client_id: None },
        Message::PingReq { client_id: Some(client("sensor-1")) },
        Message::PingResp,
        Message::Disconnect { duration: None },
        Message::Disconnect { duration: Some(3600) },
        Message::WillTopicUpd { will: Some(will()) },
        Message::WillTopicUpd { will: None },
        Message::WillTopicResp { return_code: ReturnCode::ACCEPTED },
        Message::WillMsgUpd { will_msg: Bytes::from_static(b"gone") },
        Message::WillMsgResp { return_code: ReturnCode::REJECTED_NOT_SUPPORTED },
        Message::Encapsulated(Encapsulated {
            radius: 1,
            wireless_node_id: Bytes::from_static(&[0x12, 0x34]),
            message: Box::new(Message::Connect(Connect {
                will: false,
                clean_session: true,
                duration: 60,
                client_id: client("node-1234"),
            })),
        }),
    ]
}

/// Writes the samples to `fuzz/corpus/decode_sn/` as the fuzzer's seed corpus, one datagram per
/// file, named by index and message type. Rerun by hand when the samples change:
/// `cargo test -p midge-sn-codec --test sn -- --ignored write_fuzz_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/decode_sn; run by hand"]
fn write_fuzz_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode_sn");
    std::fs::create_dir_all(&dir).unwrap();
    for (index, message) in messages().iter().enumerate() {
        let name = format!("{index:02}-{}", message.msg_type()).to_lowercase().replace(' ', "-");
        std::fs::write(dir.join(name), encode_vec(message)).unwrap();
    }
    // Valid datagrams the encoder never writes, for the target's check of the canonical form.
    let non_canonical: [(&str, &[u8]); 3] = [
        ("pingreq-3-octet-length", &[0x01, 0x00, 0x04, 0x16]),
        ("connect-unused-flags", &[0x07, 0x04, 0xF3, 0x01, 0x00, 0x3C, b'c']),
        ("encapsulated-reserved-ctrl-bits", &[0x04, 0xFE, 0xFD, 0x07, 0x02, 0x16]),
    ];
    for (index, (name, datagram)) in non_canonical.into_iter().enumerate() {
        assert!(midge_sn_codec::decode(datagram).is_ok(), "{name}");
        let index = messages().len() + index;
        std::fs::write(dir.join(format!("{index:02}-{name}")), datagram).unwrap();
    }
}

#[test]
fn samples_survive_encoding_and_decoding() {
    for message in messages() {
        assert_eq!(midge_sn_codec::decode(&encode_vec(&message)), Ok(message));
    }
}
