//! The fixed header: remaining length, size limit, packet type and flag bits; incomplete input;
//! zero-copy slicing.

use bytes::BytesMut;
use midge_codec::{check_frame, decode_packet, DecodeError, FrameHeader, Packet, ProtocolVersion};

use crate::samples;
use crate::support::{assert_malformed, decode, frame, str16, ALL, V3};

#[test]
fn check_frame_reads_type_flags_and_remaining_length() {
    assert_eq!(
        check_frame(&[0x3B, 0x80, 0x01]),
        Ok(Some(FrameHeader { packet_type: 3, flags: 0xB, header_len: 3, remaining_len: 128 }))
    );
    assert_eq!(
        check_frame(&[0xC0, 0x00, 0xFF]),
        Ok(Some(FrameHeader { packet_type: 12, flags: 0, header_len: 2, remaining_len: 0 }))
    );
}

#[test]
fn check_frame_waits_for_the_whole_remaining_length() {
    assert_eq!(check_frame(&[]), Ok(None));
    assert_eq!(check_frame(&[0x30]), Ok(None));
    assert_eq!(check_frame(&[0x30, 0xFF]), Ok(None));
    assert_eq!(check_frame(&[0x30, 0xFF, 0xFF, 0xFF]), Ok(None));
}

/// Section 2.2.3 (3.1.1), 1.5.5 (5.0): the remaining length has at most four bytes, so
/// 268,435,455 is the largest and a fifth byte is malformed.
#[test]
fn remaining_length_has_at_most_four_bytes() {
    let largest = check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap().unwrap();
    assert_eq!(largest.remaining_len, 268_435_455);
    assert_eq!(largest.header_len, 5);
    let five = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert!(matches!(check_frame(&five), Err(DecodeError::Malformed(_))));
    for version in ALL {
        let mut buf = BytesMut::from(&five[..]);
        assert!(matches!(decode_packet(&mut buf, version, usize::MAX), Err(DecodeError::Malformed(_))));
    }
}

#[test]
fn too_large_is_reported_before_the_body_arrives() {
    // A PUBLISH announcing 2,097,151 bytes, of which none has arrived.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(
        decode_packet(&mut buf, ProtocolVersion::V5, 1024),
        Err(DecodeError::PacketTooLarge { size: 4 + 2_097_151, max: 1024 })
    );
}

#[test]
fn the_limit_counts_the_whole_frame() {
    let ping = [0xC0, 0x00];
    for version in ALL {
        let mut buf = BytesMut::from(&ping[..]);
        assert_eq!(decode_packet(&mut buf, version, 2), Ok(Some(Packet::PingReq)));
        let mut buf = BytesMut::from(&ping[..]);
        assert_eq!(decode_packet(&mut buf, version, 1), Err(DecodeError::PacketTooLarge { size: 2, max: 1 }));
    }
}

#[test]
fn every_prefix_of_a_valid_packet_is_incomplete() {
    for version in ALL {
        for (packet, bytes) in samples::frames(version) {
            for len in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..len]);
                assert_eq!(
                    decode_packet(&mut buf, version, usize::MAX),
                    Ok(None),
                    "{} prefix of {len} bytes as {version:?}",
                    packet.kind()
                );
                assert_eq!(&buf[..], &bytes[..len], "the buffer is untouched");
            }
        }
    }
}

#[test]
fn back_to_back_packets_decode_in_turn() {
    for version in ALL {
        let frames = samples::frames(version);
        let mut stream: Vec<u8> = frames.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        // Half a packet at the end stays in the buffer.
        stream.extend_from_slice(&frames[0].1[..3]);
        let mut buf = BytesMut::from(&stream[..]);
        for (packet, _) in &frames {
            assert_eq!(decode_packet(&mut buf, version, usize::MAX).as_ref(), Ok(&Some(packet.clone())));
        }
        assert_eq!(decode_packet(&mut buf, version, usize::MAX), Ok(None));
        assert_eq!(&buf[..], &frames[0].1[..3]);
    }
}

#[test]
fn topic_and_payload_share_the_read_buffer() {
    let bytes = frame(0x30, &[str16(b"a/b"), b"hello".to_vec()].concat());
    let mut buf = BytesMut::from(&bytes[..]);
    let storage = buf.as_ptr_range();
    let Some(Packet::Publish(publish)) = decode_packet(&mut buf, ProtocolVersion::V311, 1024).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert!(storage.contains(&publish.payload.as_ptr()));
    assert!(storage.contains(&publish.topic.as_mqtt_string().as_bytes().as_ptr()));
}

#[test]
fn packet_type_0_is_reserved() {
    for version in ALL {
        assert_malformed(&[0x00, 0x00], version);
    }
}

#[test]
fn packet_type_15_is_reserved_before_v5() {
    for version in V3 {
        assert_malformed(&[0xF0, 0x00], version);
    }
    assert!(matches!(decode(&[0xF0, 0x00], ProtocolVersion::V5), Ok(Packet::Auth(_))));
}

/// MQTT-2.2.2-1, MQTT-2.2.2-2 (3.1.1) and MQTT-2.1.3-1 (5.0): PUBREL, SUBSCRIBE and UNSUBSCRIBE
/// have flags 0010, every other packet but PUBLISH 0000; anything else is malformed.
#[test]
fn reserved_flags_mqtt_2_2_2_2_and_2_1_3_1() {
    for version in ALL {
        for (packet, bytes) in samples::frames(version) {
            if matches!(packet, Packet::Publish(_)) {
                continue;
            }
            let expected = bytes[0] & 0x0F;
            for flags in (0..16).filter(|&flags| flags != expected) {
                if version == ProtocolVersion::V31 && expected == 0b0010 && flags == 0b1010 {
                    continue;
                }
                let mut changed = bytes.clone();
                changed[0] = (bytes[0] & 0xF0) | flags;
                assert_malformed(&changed, version);
            }
        }
    }
}

/// MQTT 3.1 section 2.1: a retried PUBREL, SUBSCRIBE or UNSUBSCRIBE sets DUP, so 1010 is
/// accepted from 3.1 clients; 3.1.1 and 5.0 reject it.
#[test]
fn v31_accepts_dup_on_retried_pubrel_subscribe_unsubscribe() {
    let bodies = [
        (0x6A, vec![0x00, 0x01]),
        (0x8A, [vec![0x00, 0x01], str16(b"a"), vec![0x01]].concat()),
        (0xAA, [vec![0x00, 0x01], str16(b"a")].concat()),
    ];
    for (first, body) in bodies {
        let bytes = frame(first, &body);
        assert!(decode(&bytes, ProtocolVersion::V31).is_ok(), "{first:#x}");
        assert_malformed(&bytes, ProtocolVersion::V311);
    }
}

/// MQTT-3.3.1-4: a PUBLISH with both QoS bits set is malformed.
#[test]
fn publish_qos_3_is_malformed_mqtt_3_3_1_4() {
    for version in ALL {
        let body = [str16(b"a"), vec![0x00, 0x01], vec![0x00]].concat();
        assert_malformed(&frame(0x36, &body), version);
        // Before the body arrives.
        let mut buf = BytesMut::from(&[0x36, 0x10][..]);
        assert!(matches!(decode_packet(&mut buf, version, usize::MAX), Err(DecodeError::Malformed(_))));
    }
}

/// MQTT-3.3.1-2: DUP is 0 in every QoS 0 PUBLISH.
#[test]
fn publish_qos_0_with_dup_is_malformed_mqtt_3_3_1_2() {
    for version in ALL {
        let body = [str16(b"a"), vec![0x00]].concat();
        assert_malformed(&frame(0x38, &body), version);
    }
}
