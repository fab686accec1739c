//! Every message of 5.4 and the Encapsulated message of 5.5: octets laid out field by field as
//! the section's table gives them, decoded to the typed message and encoded back.

use bytes::Bytes;
use midge_sn_codec::{
    Connect, Encapsulated, Message, MsgId, PubAck, Publish, PublishTopic, QoS, RegAck, Register, ReturnCode,
    ShortTopicName, SubAck, Subscribe, SubscribeTopic, TopicId, Unsubscribe, WillTopic,
};

use crate::support::{assert_wire, client, topic};

/// Concatenates the fields of a datagram.
fn octets(fields: &[&[u8]]) -> Vec<u8> {
    fields.concat()
}

#[test]
fn sec_5_4_1_advertise() {
    // Length, MsgType, GwId, Duration (900 s).
    assert_wire(&[0x05, 0x00, 0x07, 0x03, 0x84], &Message::Advertise { gw_id: 7, duration: 900 });
}

#[test]
fn sec_5_4_2_searchgw() {
    // Length, MsgType, Radius.
    assert_wire(&[0x03, 0x01, 0x02], &Message::SearchGw { radius: 2 });
}

#[test]
fn sec_5_4_3_gwinfo_from_a_gateway_has_no_gwadd() {
    assert_wire(&[0x03, 0x02, 0x07], &Message::GwInfo { gw_id: 7, gw_add: Bytes::new() });
}

#[test]
fn sec_5_4_3_gwinfo_from_a_client_has_the_gateway_address() {
    assert_wire(
        &[0x07, 0x02, 0x07, 192, 168, 0, 1],
        &Message::GwInfo { gw_id: 7, gw_add: Bytes::from_static(&[192, 168, 0, 1]) },
    );
}

#[test]
fn sec_5_4_4_connect() {
    // Length, MsgType, Flags (Will, CleanSession), ProtocolId, Duration (60 s), ClientId.
    let bytes = octets(&[&[0x0E, 0x04, 0x0C, 0x01, 0x00, 0x3C], b"sensor-1"]);
    let connect = Connect { will: true, clean_session: true, duration: 60, client_id: client("sensor-1") };
    assert_wire(&bytes, &Message::Connect(connect));
}

#[test]
fn sec_5_4_4_connect_without_will_keeping_the_session() {
    let bytes = octets(&[&[0x07, 0x04, 0x00, 0x01, 0xFF, 0xFF], b"c"]);
    let connect = Connect { will: false, clean_session: false, duration: u16::MAX, client_id: client("c") };
    assert_wire(&bytes, &Message::Connect(connect));
}

#[test]
fn sec_5_4_4_connect_client_id_may_be_longer_than_23_characters() {
    let id = "a-client-id-of-thirty-two-octets";
    let mut bytes = vec![6 + id.len() as u8, 0x04, 0x04, 0x01, 0x00, 0x0A];
    bytes.extend_from_slice(id.as_bytes());
    let connect = Connect { will: false, clean_session: true, duration: 10, client_id: client(id) };
    assert_wire(&bytes, &Message::Connect(connect));
}

#[test]
fn sec_5_4_4_connect_client_id_is_utf8() {
    let id = "capteur-é";
    let mut bytes = vec![6 + id.len() as u8, 0x04, 0x04, 0x01, 0x00, 0x0A];
    bytes.extend_from_slice(id.as_bytes());
    let connect = Connect { will: false, clean_session: true, duration: 10, client_id: client(id) };
    assert_wire(&bytes, &Message::Connect(connect));
}

#[test]
fn sec_5_4_5_connack_with_each_return_code_of_5_3_10() {
    for code in [
        ReturnCode::ACCEPTED,
        ReturnCode::REJECTED_CONGESTION,
        ReturnCode::REJECTED_INVALID_TOPIC_ID,
        ReturnCode::REJECTED_NOT_SUPPORTED,
    ] {
        assert_wire(&[0x03, 0x05, code.0], &Message::ConnAck { return_code: code });
    }
}

#[test]
fn sec_5_3_10_reserved_return_codes_are_kept_as_they_are() {
    for value in [0x04, 0x80, 0xFF] {
        assert_wire(&[0x03, 0x05, value], &Message::ConnAck { return_code: ReturnCode(value) });
        assert!(!ReturnCode(value).is_accepted());
        assert_eq!(ReturnCode(value).name(), None);
    }
}

#[test]
fn sec_5_4_6_willtopicreq() {
    assert_wire(&[0x02, 0x06], &Message::WillTopicReq);
}

#[test]
fn sec_5_4_7_willtopic() {
    // Length, MsgType, Flags (QoS 1, Retain), WillTopic.
    let bytes = octets(&[&[0x0C, 0x07, 0x30], b"s/1/state"]);
    let will = WillTopic { qos: QoS::AtLeastOnce, retain: true, topic: topic("s/1/state") };
    assert_wire(&bytes, &Message::WillTopic { will: Some(will) });
}

#[test]
fn sec_5_4_7_empty_willtopic_deletes_the_will() {
    // "exactly 2 octets long": no Flags, no WillTopic.
    assert_wire(&[0x02, 0x07], &Message::WillTopic { will: None });
}

#[test]
fn sec_5_4_8_willmsgreq() {
    assert_wire(&[0x02, 0x08], &Message::WillMsgReq);
}

#[test]
fn sec_5_4_9_willmsg() {
    assert_wire(&octets(&[&[0x09, 0x09], b"offline"]), &Message::WillMsg { will_msg: Bytes::from_static(b"offline") });
    assert_wire(&[0x02, 0x09], &Message::WillMsg { will_msg: Bytes::new() });
}

#[test]
fn sec_5_4_10_register_from_a_client_carries_topic_id_0() {
    // Length, MsgType, TopicId, MsgId, TopicName.
    let bytes = octets(&[&[0x0E, 0x0A, 0x00, 0x00, 0x00, 0x01], b"s/1/temp"]);
    let register = Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name: topic("s/1/temp") };
    assert_wire(&bytes, &Message::Register(register));
}

#[test]
fn sec_5_4_10_register_from_a_gateway_carries_the_assigned_id() {
    let bytes = octets(&[&[0x0E, 0x0A, 0x01, 0x05, 0x12, 0x34], b"s/2/temp"]);
    let register = Register { topic_id: TopicId(0x0105), msg_id: MsgId(0x1234), topic_name: topic("s/2/temp") };
    assert_wire(&bytes, &Message::Register(register));
}

#[test]
fn sec_5_4_11_regack() {
    // Length, MsgType, TopicId, MsgId, ReturnCode.
    let ack = RegAck { topic_id: TopicId(5), msg_id: MsgId(1), return_code: ReturnCode::ACCEPTED };
    assert_wire(&[0x07, 0x0B, 0x00, 0x05, 0x00, 0x01, 0x00], &Message::RegAck(ack));
}

#[test]
fn sec_5_4_12_publish_qos1_to_a_registered_topic_id() {
    // Length, MsgType, Flags (QoS 1, TopicIdType normal), TopicId, MsgId, Data.
    let bytes = octets(&[&[0x0B, 0x0C, 0x20, 0x00, 0x05, 0x00, 0x02], b"21.5"]);
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(TopicId(5)),
        msg_id: MsgId(2),
        data: Bytes::from_static(b"21.5"),
    };
    assert_wire(&bytes, &Message::Publish(publish));
}

#[test]
fn sec_5_4_12_publish_qos_minus_1_to_a_predefined_topic_id() {
    // Flags: QoS 0b11 (-1), TopicIdType 0b01; MsgId 0x0000.
    let bytes = octets(&[&[0x08, 0x0C, 0x61, 0x00, 0x10, 0x00, 0x00], b"1"]);
    let publish = Publish {
        dup: false,
        qos: QoS::MinusOne,
        retain: false,
        topic: PublishTopic::Predefined(TopicId(0x10)),
        msg_id: MsgId(0),
        data: Bytes::from_static(b"1"),
    };
    assert_wire(&bytes, &Message::Publish(publish));
}

#[test]
fn sec_5_4_12_publish_to_a_short_topic_name_retained_with_empty_data() {
    // Flags: Retain, TopicIdType 0b10; the TopicId field holds the two characters.
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: PublishTopic::Short(ShortTopicName(*b"ab")),
        msg_id: MsgId(0),
        data: Bytes::new(),
    };
    assert_wire(&[0x07, 0x0C, 0x12, b'a', b'b', 0x00, 0x00], &Message::Publish(publish));
}

#[test]
fn sec_5_4_12_publish_qos2_resent_with_dup() {
    let publish = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: PublishTopic::Normal(TopicId(0xFFFF)),
        msg_id: MsgId(0xFFFF),
        data: Bytes::from_static(&[0x00, 0xFF]),
    };
    assert_wire(&[0x09, 0x0C, 0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF], &Message::Publish(publish));
}

#[test]
fn sec_5_4_13_puback() {
    // Length, MsgType, TopicId, MsgId, ReturnCode.
    let ack = PubAck { topic_id: TopicId(5), msg_id: MsgId(2), return_code: ReturnCode::ACCEPTED };
    assert_wire(&[0x07, 0x0D, 0x00, 0x05, 0x00, 0x02, 0x00], &Message::PubAck(ack));
}

#[test]
fn sec_5_4_13_puback_rejecting_a_qos0_publish_has_msg_id_0() {
    let ack = PubAck { topic_id: TopicId(9), msg_id: MsgId(0), return_code: ReturnCode::REJECTED_INVALID_TOPIC_ID };
    assert_wire(&[0x07, 0x0D, 0x00, 0x09, 0x00, 0x00, 0x02], &Message::PubAck(ack));
}

#[test]
fn sec_5_4_14_pubrec_pubrel_pubcomp() {
    // Length, MsgType, MsgId.
    assert_wire(&[0x04, 0x0F, 0x00, 0x03], &Message::PubRec { msg_id: MsgId(3) });
    assert_wire(&[0x04, 0x10, 0x00, 0x03], &Message::PubRel { msg_id: MsgId(3) });
    assert_wire(&[0x04, 0x0E, 0x00, 0x03], &Message::PubComp { msg_id: MsgId(3) });
}

#[test]
fn sec_5_4_15_subscribe_to_a_topic_name_with_wildcards() {
    // Length, MsgType, Flags (QoS 1, TopicIdType 0b00), MsgId, TopicName.
    let bytes = octets(&[&[0x0D, 0x12, 0x20, 0x00, 0x04], b"s/+/temp"]);
    let subscribe = Subscribe {
        dup: false,
        qos: QoS::AtLeastOnce,
        msg_id: MsgId(4),
        topic: SubscribeTopic::Name(topic("s/+/temp")),
    };
    assert_wire(&bytes, &Message::Subscribe(subscribe));
}

#[test]
fn sec_5_4_15_subscribe_to_a_predefined_topic_id() {
    let subscribe = Subscribe {
        dup: false,
        qos: QoS::AtMostOnce,
        msg_id: MsgId(4),
        topic: SubscribeTopic::Predefined(TopicId(0x10)),
    };
    assert_wire(&[0x07, 0x12, 0x01, 0x00, 0x04, 0x00, 0x10], &Message::Subscribe(subscribe));
}

#[test]
fn sec_5_4_15_subscribe_to_a_short_topic_name_resent_at_qos2() {
    let subscribe = Subscribe {
        dup: true,
        qos: QoS::ExactlyOnce,
        msg_id: MsgId(4),
        topic: SubscribeTopic::Short(ShortTopicName(*b"ab")),
    };
    assert_wire(&[0x07, 0x12, 0xC2, 0x00, 0x04, b'a', b'b'], &Message::Subscribe(subscribe));
}

#[test]
fn sec_5_4_16_suback() {
    // Length, MsgType, Flags (granted QoS 1), TopicId, MsgId, ReturnCode.
    let ack =
        SubAck { qos: QoS::AtLeastOnce, topic_id: TopicId(5), msg_id: MsgId(4), return_code: ReturnCode::ACCEPTED };
    assert_wire(&[0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00], &Message::SubAck(ack));
}

#[test]
fn sec_5_4_17_unsubscribe_each_topic_id_type() {
    // Length, MsgType, Flags (TopicIdType), MsgId, TopicName or TopicId.
    let name = Unsubscribe { msg_id: MsgId(6), topic: SubscribeTopic::Name(topic("s/+/temp")) };
    assert_wire(&octets(&[&[0x0D, 0x14, 0x00, 0x00, 0x06], b"s/+/temp"]), &Message::Unsubscribe(name));
    let predefined = Unsubscribe { msg_id: MsgId(6), topic: SubscribeTopic::Predefined(TopicId(0x10)) };
    assert_wire(&[0x07, 0x14, 0x01, 0x00, 0x06, 0x00, 0x10], &Message::Unsubscribe(predefined));
    let short = Unsubscribe { msg_id: MsgId(6), topic: SubscribeTopic::Short(ShortTopicName(*b"ab")) };
    assert_wire(&[0x07, 0x14, 0x02, 0x00, 0x06, b'a', b'b'], &Message::Unsubscribe(short));
}

#[test]
fn sec_5_4_18_unsuback() {
    assert_wire(&[0x04, 0x15, 0x00, 0x06], &Message::UnsubAck { msg_id: MsgId(6) });
}

#[test]
fn sec_5_4_19_pingreq_without_client_id() {
    assert_wire(&[0x02, 0x16], &Message::PingReq { client_id: None });
}

#[test]
fn sec_5_4_19_pingreq_with_client_id_from_a_waking_client() {
    assert_wire(&octets(&[&[0x0A, 0x16], b"sensor-1"]), &Message::PingReq { client_id: Some(client("sensor-1")) });
}

#[test]
fn sec_5_4_20_pingresp() {
    assert_wire(&[0x02, 0x17], &Message::PingResp);
}

#[test]
fn sec_5_4_21_disconnect_without_duration() {
    assert_wire(&[0x02, 0x18], &Message::Disconnect { duration: None });
}

#[test]
fn sec_5_4_21_disconnect_with_sleep_duration() {
    assert_wire(&[0x04, 0x18, 0x0E, 0x10], &Message::Disconnect { duration: Some(3600) });
}

#[test]
fn sec_5_4_22_willtopicupd() {
    let bytes = octets(&[&[0x0C, 0x1A, 0x40], b"s/1/state"]);
    let will = WillTopic { qos: QoS::ExactlyOnce, retain: false, topic: topic("s/1/state") };
    assert_wire(&bytes, &Message::WillTopicUpd { will: Some(will) });
}

#[test]
fn sec_5_4_22_empty_willtopicupd_deletes_the_will() {
    assert_wire(&[0x02, 0x1A], &Message::WillTopicUpd { will: None });
}

#[test]
fn sec_5_4_23_willmsgupd() {
    assert_wire(&octets(&[&[0x06, 0x1C], b"gone"]), &Message::WillMsgUpd { will_msg: Bytes::from_static(b"gone") });
    assert_wire(&[0x02, 0x1C], &Message::WillMsgUpd { will_msg: Bytes::new() });
}

#[test]
fn sec_5_4_24_willtopicresp() {
    assert_wire(&[0x03, 0x1B, 0x00], &Message::WillTopicResp { return_code: ReturnCode::ACCEPTED });
}

#[test]
fn sec_5_4_25_willmsgresp() {
    assert_wire(&[0x03, 0x1D, 0x03], &Message::WillMsgResp { return_code: ReturnCode::REJECTED_NOT_SUPPORTED });
}

#[test]
fn sec_5_5_encapsulated_pingreq() {
    // Length (up to the end of the Wireless Node Id), MsgType 0xFE, Ctrl (radius 1), Wireless
    // Node Id, then the MQTT-SN message with its own header.
    let encapsulated = Encapsulated {
        radius: 1,
        wireless_node_id: Bytes::from_static(&[0x12, 0x34]),
        message: Box::new(Message::PingReq { client_id: None }),
    };
    assert_wire(&[0x05, 0xFE, 0x01, 0x12, 0x34, 0x02, 0x16], &Message::Encapsulated(encapsulated));
}

#[test]
fn sec_5_5_encapsulated_connect_with_an_empty_wireless_node_id() {
    let connect = Connect { will: false, clean_session: true, duration: 60, client_id: client("c") };
    let encapsulated =
        Encapsulated { radius: 3, wireless_node_id: Bytes::new(), message: Box::new(Message::Connect(connect)) };
    assert_wire(&[0x03, 0xFE, 0x03, 0x07, 0x04, 0x04, 0x01, 0x00, 0x3C, b'c'], &Message::Encapsulated(encapsulated));
}

#[test]
fn sec_5_5_encapsulated_message_of_more_than_255_octets() {
    // The inner message takes the 3-octet form; the Encapsulated header keeps its one octet.
    let data = Bytes::from(vec![0x5A; 300]);
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Predefined(TopicId(1)),
        msg_id: MsgId(0),
        data: data.clone(),
    };
    let mut bytes = vec![0x04, 0xFE, 0x00, 0xAA, 0x01, 0x01, 0x35, 0x0C, 0x01, 0x00, 0x01, 0x00, 0x00];
    bytes.extend_from_slice(&data);
    let encapsulated = Encapsulated {
        radius: 0,
        wireless_node_id: Bytes::from_static(&[0xAA]),
        message: Box::new(Message::Publish(publish)),
    };
    assert_wire(&bytes, &Message::Encapsulated(encapsulated));
}

#[test]
fn every_message_type_has_a_test_sample() {
    let mut seen: Vec<_> = crate::samples::messages().iter().map(Message::msg_type).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, midge_sn_codec::MsgType::ALL.to_vec());
}
