//! Decoding: a cheap frame check that learns a packet's length from its fixed header, then a
//! full decode that splits the frame off the buffer and slices topic and payload from it.

use bytes::BytesMut;

use crate::error::DecodeError;
use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// The fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Packet type, the high nibble of the first byte (1..=15).
    pub packet_type: u8,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Length of the fixed header: 1 byte plus 1..=4 remaining-length bytes.
    pub header_len: usize,
    /// Remaining length.
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Total frame length: fixed header plus remaining length.
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn check_frame(buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
    let _ = buf;
    todo!("codec helper implements")
}

/// Decodes one packet from the front of `buf` and removes its bytes. `Ok(None)`: incomplete,
/// nothing removed. A frame whose total length exceeds `max_packet_size` fails with
/// `PacketTooLarge` as soon as its fixed header is complete. `version` is the connection's
/// version (CONNECT decodes whatever it announces).
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    todo!("codec helper implements")
}
