//! 5.3.4 Flags: all 256 values of the Flags octet in each message that has one. Each value
//! decodes to the flags the message uses (the others are "not used": ignored, encoded as 0),
//! except a reserved TopicIdType where the message uses TopicIdType.
//!
//! The expected values are computed here from the bit positions of 5.3.4, apart from the
//! codec's own reading of them.

use midge_sn_codec::{
    decode, DecodeError, Message, MsgType, PublishTopic, QoS, ShortTopicName, SubscribeTopic, TopicId, TopicIdType,
};

use crate::support::{datagram, encode_vec};

fn dup(flags: u8) -> bool {
    flags & 0b1000_0000 != 0
}

/// Bits 6 and 5: 0b00 QoS 0, 0b01 QoS 1, 0b10 QoS 2, 0b11 QoS -1.
fn qos(flags: u8) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::MinusOne][usize::from(flags >> 5 & 0b11)]
}

fn retain(flags: u8) -> bool {
    flags & 0b0001_0000 != 0
}

fn will(flags: u8) -> bool {
    flags & 0b0000_1000 != 0
}

fn clean_session(flags: u8) -> bool {
    flags & 0b0000_0100 != 0
}

/// Bits 1 and 0: 0b00 normal, 0b01 predefined, 0b10 short name, 0b11 reserved.
fn topic_id_type(flags: u8) -> Option<TopicIdType> {
    [Some(TopicIdType::Normal), Some(TopicIdType::Predefined), Some(TopicIdType::Short), None]
        [usize::from(flags & 0b11)]
}

/// Decodes `bytes`, whose Flags octet is at index 2, and checks that the message encodes back
/// with only the `used` bits of it kept.
fn decode_flags(bytes: &[u8], used: u8) -> Result<Message, DecodeError> {
    let message = decode(bytes)?;
    let mut expected = bytes.to_vec();
    expected[2] &= used;
    assert_eq!(encode_vec(&message), expected, "flags {:#010b} of {message:?}", bytes[2]);
    Ok(message)
}

#[test]
fn sec_5_3_4_qos_bits_and_their_levels() {
    for (bits, level) in
        [(0b00, QoS::AtMostOnce), (0b01, QoS::AtLeastOnce), (0b10, QoS::ExactlyOnce), (0b11, QoS::MinusOne)]
    {
        assert_eq!(QoS::from_bits(bits), level);
        assert_eq!(level.bits(), bits);
    }
}

#[test]
fn sec_5_3_4_topic_id_type_bits_and_the_reserved_value() {
    assert_eq!(TopicIdType::from_bits(0b00), Some(TopicIdType::Normal));
    assert_eq!(TopicIdType::from_bits(0b01), Some(TopicIdType::Predefined));
    assert_eq!(TopicIdType::from_bits(0b10), Some(TopicIdType::Short));
    assert_eq!(TopicIdType::from_bits(0b11), None);
}

#[test]
fn sec_5_3_4_every_flags_value_in_connect() {
    for flags in 0..=u8::MAX {
        let bytes = datagram(0x04, &[flags, 0x01, 0x00, 0x3C, b'c']);
        let Ok(Message::Connect(connect)) = decode_flags(&bytes, 0b0000_1100) else {
            panic!("CONNECT with flags {flags:#010b} does not decode")
        };
        assert_eq!((connect.will, connect.clean_session), (will(flags), clean_session(flags)), "{flags:#010b}");
    }
}

#[test]
fn sec_5_3_4_every_flags_value_in_willtopic_and_willtopicupd() {
    for msg_type in [0x07, 0x1A] {
        for flags in 0..=u8::MAX {
            let bytes = datagram(msg_type, &[flags, b'w']);
            let will = match decode_flags(&bytes, 0b0111_0000) {
                Ok(Message::WillTopic { will: Some(will) }) | Ok(Message::WillTopicUpd { will: Some(will) }) => will,
                other => panic!("{bytes:02x?} decodes to {other:?}"),
            };
            assert_eq!((will.qos, will.retain), (qos(flags), retain(flags)), "{flags:#010b}");
        }
    }
}

#[test]
fn sec_5_3_4_every_flags_value_in_publish() {
    for flags in 0..=u8::MAX {
        let bytes = datagram(0x0C, &[flags, b'a', b'b', 0x00, 0x01, b'x']);
        let Some(kind) = topic_id_type(flags) else {
            let refused = Err(DecodeError::ReservedTopicIdType { msg_type: MsgType::Publish });
            assert_eq!(decode(&bytes), refused, "{flags:#010b}");
            continue;
        };
        let Ok(Message::Publish(publish)) = decode_flags(&bytes, 0b1111_0011) else {
            panic!("PUBLISH with flags {flags:#010b} does not decode")
        };
        assert_eq!((publish.dup, publish.qos, publish.retain), (dup(flags), qos(flags), retain(flags)));
        let topic = match kind {
            TopicIdType::Normal => PublishTopic::Normal(TopicId(0x6162)),
            TopicIdType::Predefined => PublishTopic::Predefined(TopicId(0x6162)),
            TopicIdType::Short => PublishTopic::Short(ShortTopicName(*b"ab")),
        };
        assert_eq!(publish.topic, topic, "{flags:#010b}");
    }
}

#[test]
fn sec_5_3_4_every_flags_value_in_subscribe() {
    for flags in 0..=u8::MAX {
        let bytes = datagram(0x12, &[flags, 0x00, 0x01, b'a', b'b']);
        let Some(kind) = topic_id_type(flags) else {
            let refused = Err(DecodeError::ReservedTopicIdType { msg_type: MsgType::Subscribe });
            assert_eq!(decode(&bytes), refused, "{flags:#010b}");
            continue;
        };
        let Ok(Message::Subscribe(subscribe)) = decode_flags(&bytes, 0b1110_0011) else {
            panic!("SUBSCRIBE with flags {flags:#010b} does not decode")
        };
        assert_eq!((subscribe.dup, subscribe.qos), (dup(flags), qos(flags)), "{flags:#010b}");
        assert_eq!(subscribe.topic, subscribe_topic(kind));
    }
}

#[test]
fn sec_5_3_4_every_flags_value_in_suback() {
    for flags in 0..=u8::MAX {
        let bytes = datagram(0x13, &[flags, 0x00, 0x05, 0x00, 0x01, 0x00]);
        let Ok(Message::SubAck(ack)) = decode_flags(&bytes, 0b0110_0000) else {
            panic!("SUBACK with flags {flags:#010b} does not decode")
        };
        assert_eq!(ack.qos, qos(flags), "{flags:#010b}");
    }
}

#[test]
fn sec_5_3_4_every_flags_value_in_unsubscribe() {
    for flags in 0..=u8::MAX {
        let bytes = datagram(0x14, &[flags, 0x00, 0x01, b'a', b'b']);
        let Some(kind) = topic_id_type(flags) else {
            let refused = Err(DecodeError::ReservedTopicIdType { msg_type: MsgType::Unsubscribe });
            assert_eq!(decode(&bytes), refused, "{flags:#010b}");
            continue;
        };
        let Ok(Message::Unsubscribe(unsubscribe)) = decode_flags(&bytes, 0b0000_0011) else {
            panic!("UNSUBSCRIBE with flags {flags:#010b} does not decode")
        };
        assert_eq!(unsubscribe.topic, subscribe_topic(kind), "{flags:#010b}");
    }
}

/// The topic `ab` of the SUBSCRIBE and UNSUBSCRIBE above, read as `kind` says.
fn subscribe_topic(kind: TopicIdType) -> SubscribeTopic {
    match kind {
        TopicIdType::Normal => SubscribeTopic::Name(crate::support::topic("ab")),
        TopicIdType::Predefined => SubscribeTopic::Predefined(TopicId(0x6162)),
        TopicIdType::Short => SubscribeTopic::Short(ShortTopicName(*b"ab")),
    }
}

#[test]
fn sec_5_5_reserved_ctrl_bits_are_ignored() {
    for ctrl in 0..=u8::MAX {
        let bytes = [0x03, 0xFE, ctrl, 0x02, 0x17];
        let Ok(Message::Encapsulated(encapsulated)) = decode(&bytes) else {
            panic!("Encapsulated message with Ctrl {ctrl:#010b} does not decode")
        };
        assert_eq!(encapsulated.radius, ctrl & 0b11);
        assert_eq!(encode_vec(&Message::Encapsulated(encapsulated)), [0x03, 0xFE, ctrl & 0b11, 0x02, 0x17]);
    }
}
