//! The frame reader and writer against frames built here byte by byte (RFC 6455 section 5.2),
//! not by the library whose parser the reader uses.

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const LIMIT: u64 = 1 << 20;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// A client frame: FIN as given, `opcode`, masked with `mask`, the length in its shortest form.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut bytes = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        len @ 0..=125 => bytes.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    bytes.extend_from_slice(&mask);
    bytes.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    bytes
}

fn binary(payload: &[u8]) -> Vec<u8> {
    frame(true, BINARY, payload, MASK)
}

/// What a reader made of a stream of raw bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    /// Pings (with their payload) and closes, in order.
    events: Vec<(Found, Vec<u8>)>,
    error: Option<FrameError>,
}

/// Feeds `raw` to a fresh reader in reads of the sizes `reads` gives (the rest in one read),
/// each decoded in place in a buffer of its own, as the WebSocket does.
fn decode_in_reads(raw: &[u8], reads: &[usize], limit: u64) -> Decoded {
    let mut reader = FrameReader::new(limit);
    let mut decoded = Decoded::default();
    let mut rest = raw;
    let mut sizes = reads.iter().copied();
    while !rest.is_empty() && decoded.error.is_none() {
        let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let mut buf = rest[..size].to_vec();
        rest = &rest[size..];
        let mut pos = Position::default();
        loop {
            match reader.decode(&mut buf, &mut pos) {
                Ok(Found::Exhausted) => break,
                Ok(found) => {
                    decoded.events.push((found, reader.control_payload().to_vec()));
                    if matches!(found, Found::Close(_)) {
                        rest = &[];
                        break;
                    }
                }
                Err(error) => {
                    decoded.error = Some(error);
                    break;
                }
            }
        }
        assert!(pos.written <= pos.read, "data is written behind what is read");
        decoded.data.extend_from_slice(&buf[..pos.written]);
    }
    decoded
}

fn decode(raw: &[u8]) -> Decoded {
    decode_in_reads(raw, &[], LIMIT)
}

fn error(raw: &[u8]) -> FrameError {
    let decoded = decode(raw);
    decoded.error.unwrap_or_else(|| panic!("no error: {decoded:?}"))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// RFC 6455 section 5.2: 7-bit, 16-bit and 64-bit lengths, at each edge.
#[test]
fn binary_frames_of_every_length_form_decode_to_their_payload() {
    for len in [0, 1, 125, 126, 127, 0xffff, 0x10000, 70_000] {
        let payload = pattern(len);
        assert_eq!(decode(&binary(&payload)).data, payload, "{len} bytes");
    }
}

/// MQTT-6.0.0-2: a packet split across frames; MQTT-6.0.0-3: several packets in one frame.
/// Frame boundaries disappear from the byte stream either way.
#[test]
fn frames_join_into_one_byte_stream() {
    let pingreq_and_disconnect = [0xc0, 0x00, 0xe0, 0x00];
    let mut raw = binary(&pingreq_and_disconnect);
    let publish = [0x30, 0x07, 0x00, 0x01, b't', b'p', b'a', b'y', b'!'];
    raw.extend(binary(&publish[..1]));
    raw.extend(binary(&publish[1..5]));
    raw.extend(binary(&publish[5..]));
    let mut expected = pingreq_and_disconnect.to_vec();
    expected.extend_from_slice(&publish);
    assert_eq!(decode(&raw), Decoded { data: expected, ..Decoded::default() });
}

/// RFC 6455 section 5.4: a fragmented message (binary, continuations, the last with FIN) with a
/// control frame between its fragments.
#[test]
fn fragmented_messages_continue_across_frames_and_around_control_frames() {
    let mut raw = frame(false, BINARY, b"ab", MASK);
    raw.extend(frame(false, CONTINUATION, b"cd", [1, 2, 3, 4]));
    raw.extend(frame(true, PING, b"hi", [9, 9, 9, 9]));
    raw.extend(frame(true, CONTINUATION, b"ef", [5, 6, 7, 8]));
    raw.extend(binary(b"gh"));
    let decoded = decode(&raw);
    assert_eq!(decoded.data, b"abcdefgh");
    assert_eq!(decoded.events, vec![(Found::Ping, b"hi".to_vec())]);
    assert_eq!(decoded.error, None);
}

#[test]
fn empty_binary_frames_carry_nothing_and_break_nothing() {
    let mut raw = binary(b"");
    raw.extend(binary(b"x"));
    raw.extend(binary(b""));
    raw.extend(frame(false, BINARY, b"", MASK));
    raw.extend(frame(true, CONTINUATION, b"", MASK));
    raw.extend(binary(b"y"));
    assert_eq!(decode(&raw), Decoded { data: b"xy".to_vec(), ..Decoded::default() });
}

/// Every frame has its own mask, and a payload split across reads at any byte keeps its place
/// in the mask.
#[test]
fn masks_are_per_frame_and_kept_across_reads() {
    let first = pattern(300);
    let second = pattern(11);
    let mut raw = frame(true, BINARY, &first, [0xde, 0xad, 0xbe, 0xef]);
    raw.extend(frame(true, BINARY, &second, [0, 0, 0, 0]));
    raw.extend(frame(true, BINARY, b"tail", [0xff, 0x01, 0x80, 0x7f]));
    let mut expected = first.clone();
    expected.extend_from_slice(&second);
    expected.extend_from_slice(b"tail");
    for split in 0..raw.len() {
        assert_eq!(decode_in_reads(&raw, &[split], LIMIT).data, expected, "split at {split}");
    }
}

/// A header split across reads at every byte, for every length form and with a ping among
/// them; and the whole stream a byte at a time.
#[test]
fn headers_split_across_reads_at_every_byte() {
    let mut raw = binary(&pattern(5));
    raw.extend(binary(&pattern(200)));
    raw.extend(frame(true, PING, b"p", MASK));
    raw.extend(binary(&pattern(70_000)));
    let mut expected = pattern(5);
    expected.extend(pattern(200));
    expected.extend(pattern(70_000));
    let header_ends = [0, 5 + 6, 5 + 6 + 200 + 8, 5 + 6 + 200 + 8 + 1 + 6];
    for start in header_ends {
        for split in start..start + 15 {
            let decoded = decode_in_reads(&raw, &[split], LIMIT);
            assert_eq!(decoded.data, expected, "split at {split}");
            assert_eq!(decoded.events, vec![(Found::Ping, b"p".to_vec())], "split at {split}");
        }
    }
    let small = {
        let mut raw = binary(&pattern(130));
        raw.extend(frame(true, PING, b"p", MASK));
        raw.extend(binary(b"end"));
        raw
    };
    let one_at_a_time = decode_in_reads(&small, &vec![1; small.len()], LIMIT);
    let mut expected = pattern(130);
    expected.extend_from_slice(b"end");
    assert_eq!(one_at_a_time.data, expected);
    assert_eq!(one_at_a_time.events, vec![(Found::Ping, b"p".to_vec())]);
}

/// RFC 6455 sections 5.5.2, 5.5.3: pings are reported with their payload; pongs are taken out.
#[test]
fn pings_are_reported_and_pongs_taken_out() {
    let mut raw = frame(true, PING, b"", MASK);
    raw.extend(frame(true, PONG, b"unsolicited", MASK));
    raw.extend(frame(true, PING, &pattern(125), MASK));
    raw.extend(binary(b"data"));
    let decoded = decode_in_reads(&raw, &[3, 10, 40], LIMIT);
    assert_eq!(decoded.data, b"data");
    assert_eq!(decoded.events, vec![(Found::Ping, vec![]), (Found::Ping, pattern(125))]);
}

/// RFC 6455 section 5.5.1: a close frame, with or without a status code, ends the stream; what
/// follows it is not read.
#[test]
fn a_close_frame_is_reported_with_its_code() {
    let mut raw = binary(b"before");
    raw.extend(frame(true, CLOSE, &[0x03, 0xe8, b'b', b'y', b'e'], MASK));
    raw.extend(binary(b"after"));
    let decoded = decode(&raw);
    assert_eq!(decoded.data, b"before");
    assert_eq!(decoded.events, vec![(Found::Close(Some(1000)), vec![0x03, 0xe8, b'b', b'y', b'e'])]);
    assert_eq!(decode(&frame(true, CLOSE, b"", MASK)).events, vec![(Found::Close(None), vec![])]);
    assert_eq!(decode(&frame(true, CLOSE, &4000u16.to_be_bytes(), MASK)).events[0].0, Found::Close(Some(4000)));
}

/// Each frame a client may not send, and the close code it gets: 1002 for RFC 6455's protocol
/// errors, 1003 for a text frame (MQTT-6.0.0-1), 1007 for a close reason that is not UTF-8.
#[test]
fn forbidden_frames_name_their_close_code() {
    let unmasked = {
        let mut raw = binary(b"abc");
        raw[1] &= 0x7f;
        raw.truncate(2);
        raw.extend_from_slice(b"abc");
        raw
    };
    let with_rsv = |bit: u8| {
        let mut raw = binary(b"abc");
        raw[0] |= bit;
        raw
    };
    let top_bit_length = {
        let mut raw = vec![0x82, 0x80 | 127];
        raw.extend_from_slice(&(1u64 << 63).to_be_bytes());
        raw.extend_from_slice(&MASK);
        raw
    };
    let mut binary_in_open_message = frame(false, BINARY, b"a", MASK);
    binary_in_open_message.extend(binary(b"b"));
    let mut after_data = binary(b"ok");
    after_data.extend(frame(true, TEXT, b"{}", MASK));
    let cases: Vec<(&str, Vec<u8>, CloseCode)> = vec![
        ("a text frame", frame(true, TEXT, b"{\"mqtt\":1}", MASK), CloseCode::Unsupported),
        ("a text frame after data", after_data, CloseCode::Unsupported),
        ("unmasked", unmasked, CloseCode::Protocol),
        ("RSV1", with_rsv(0x40), CloseCode::Protocol),
        ("RSV2", with_rsv(0x20), CloseCode::Protocol),
        ("RSV3", with_rsv(0x10), CloseCode::Protocol),
        ("a fragmented ping", frame(false, PING, b"", MASK), CloseCode::Protocol),
        ("a fragmented close", frame(false, CLOSE, b"", MASK), CloseCode::Protocol),
        ("a 126-byte ping", frame(true, PING, &pattern(126), MASK), CloseCode::Protocol),
        ("a 126-byte pong", frame(true, PONG, &pattern(126), MASK), CloseCode::Protocol),
        ("data opcode 3", frame(true, 0x3, b"", MASK), CloseCode::Protocol),
        ("data opcode 7", frame(true, 0x7, b"", MASK), CloseCode::Protocol),
        ("control opcode 0xB", frame(true, 0xb, b"", MASK), CloseCode::Protocol),
        ("control opcode 0xF", frame(true, 0xf, b"", MASK), CloseCode::Protocol),
        ("a continuation with no message", frame(true, CONTINUATION, b"a", MASK), CloseCode::Protocol),
        ("a binary frame inside a message", binary_in_open_message, CloseCode::Protocol),
        ("a length with its top bit set", top_bit_length, CloseCode::Protocol),
        ("a 1-byte close payload", frame(true, CLOSE, &[3], MASK), CloseCode::Protocol),
        ("close code 1005", frame(true, CLOSE, &1005u16.to_be_bytes(), MASK), CloseCode::Protocol),
        ("close code 999", frame(true, CLOSE, &999u16.to_be_bytes(), MASK), CloseCode::Protocol),
        ("close code 5000", frame(true, CLOSE, &5000u16.to_be_bytes(), MASK), CloseCode::Protocol),
        ("a close reason not UTF-8", frame(true, CLOSE, &[0x03, 0xe8, 0xff, 0xfe], MASK), CloseCode::Invalid),
    ];
    for (what, raw, code) in cases {
        let decoded = decode(&raw);
        let error = decoded.error.unwrap_or_else(|| panic!("{what}: no error: {decoded:?}"));
        assert_eq!(error.code, code, "{what}: {error}");
    }
}

/// A frame, or a fragmented message, over the limit is refused with 1009 from its header,
/// before its payload arrives; at the limit it is read.
#[test]
fn frames_and_messages_over_the_limit_close_with_1009() {
    let limit = 100;
    assert_eq!(decode_in_reads(&binary(&pattern(100)), &[], limit).data, pattern(100));
    let header_only = &binary(&pattern(101))[..8];
    let refused = decode_in_reads(header_only, &[], limit).error.expect("refused from the header alone");
    assert_eq!((refused.code, refused.reason), (CloseCode::Size, "a frame larger than websocket_max_frame_size"));
    let mut message = frame(false, BINARY, &pattern(60), MASK);
    message.extend(frame(true, CONTINUATION, &pattern(41), MASK));
    let refused = decode_in_reads(&message, &[], limit).error.expect("refused");
    assert_eq!((refused.code, refused.reason), (CloseCode::Size, "a message larger than websocket_max_frame_size"));
    let mut two_messages = binary(&pattern(60));
    two_messages.extend(binary(&pattern(60)));
    assert_eq!(decode_in_reads(&two_messages, &[], limit).error, None, "the limit is per message");
    let huge = {
        let mut raw = vec![0x82, 0x80 | 127];
        raw.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        raw.extend_from_slice(&MASK);
        raw
    };
    assert_eq!(error(&huge).code, CloseCode::Size);
}

/// Data before a forbidden frame in the same read is still given.
#[test]
fn data_before_an_error_is_kept() {
    let mut raw = binary(b"good");
    raw.extend(frame(true, TEXT, b"bad", MASK));
    let decoded = decode(&raw);
    assert_eq!(decoded.data, b"good");
    assert_eq!(decoded.error.map(|error| error.code), Some(CloseCode::Unsupported));
}

#[test]
fn unmask_matches_the_byte_by_byte_definition() {
    let mask = [0x11, 0x22, 0x44, 0x88];
    for len in 0..40 {
        for offset in 0..4 {
            let plain = pattern(len);
            let mut data = plain.clone();
            unmask(&mut data, mask, offset);
            let expected: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ mask[(i + offset) % 4]).collect();
            assert_eq!(data, expected, "{len} bytes from offset {offset}");
        }
    }
}

/// RFC 6455 section 5.2: a server's headers, unmasked, with FIN, in the shortest length form.
#[test]
fn server_headers_have_fin_no_mask_and_the_shortest_length() {
    let header = |len: u64| {
        let (bytes, n) = server_header(OpCode::Data(Data::Binary), len);
        bytes[..n].to_vec()
    };
    assert_eq!(header(0), [0x82, 0]);
    assert_eq!(header(125), [0x82, 125]);
    assert_eq!(header(126), [0x82, 126, 0, 126]);
    assert_eq!(header(0xffff), [0x82, 126, 0xff, 0xff]);
    assert_eq!(header(0x10000), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    let mut out = [0; MAX_CONTROL_FRAME];
    let len = control_frame(Control::Pong, b"hi", &mut out);
    assert_eq!(&out[..len], [0x8a, 2, b'h', b'i']);
    let close = ControlPayload::close(CloseCode::Size, "too big");
    let len = control_frame(Control::Close, close.as_slice(), &mut out);
    assert_eq!(&out[..len], [&[0x88, 9, 0x03, 0xf1][..], b"too big"].concat());
}

/// A close reason longer than a control frame holds is cut, on a character boundary.
#[test]
fn close_reasons_are_cut_to_fit_on_a_character_boundary() {
    let reason = "é".repeat(100);
    let payload = ControlPayload::close(CloseCode::Protocol, &reason);
    assert_eq!(payload.as_slice().len(), 2 + 122);
    assert!(std::str::from_utf8(&payload.as_slice()[2..]).is_ok());
}
