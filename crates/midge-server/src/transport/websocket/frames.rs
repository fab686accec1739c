//! RFC 6455's frames as a server reads and writes them, without I/O.
//!
//! [`FrameReader`] decodes a client's raw bytes in place: each data frame's payload is unmasked
//! and moved down over the headers before it, so the bytes that stay are the MQTT byte stream
//! and nothing is copied into a buffer of its own. Frame boundaries mean nothing to MQTT
//! (MQTT-6.0.0-2, -3): a packet may span frames and a frame may hold several packets. A header
//! that arrives in part waits in the reader (14 bytes at most); a control frame's payload (125
//! bytes at most) waits in a box allocated only while one is in play. Headers are parsed by
//! tungstenite's `FrameHeader::parse`; what RFC 6455 then forbids a client is checked here, and
//! each breach names the close code the server answers with.
//!
//! Server frames are never masked and never fragmented (RFC 6455 section 5.1): [`server_header`]
//! and [`control_frame`] write them.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The longest frame header: 2 bytes, a 64-bit extended length and the mask (RFC 6455 section
/// 5.2).
const MAX_HEADER_LEN: usize = 14;
/// The longest header of a server frame: no mask.
pub(super) const MAX_SERVER_HEADER_LEN: usize = 10;
/// The longest payload of a control frame (RFC 6455 section 5.5).
pub(super) const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest control frame a server writes: a 2-byte header and the payload.
pub(super) const MAX_CONTROL_FRAME: usize = 2 + MAX_CONTROL_PAYLOAD;

/// Why a client's frame stream cannot go on: the close code the server sends (RFC 6455 section
/// 7.4.1) and a short reason, sent in the close frame and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    /// 1002 (protocol error), 1003 (a text frame), 1007 (a close reason that is not UTF-8) or
    /// 1009 (too big).
    pub code: CloseCode,
    /// What the client did, in a few words.
    pub reason: &'static str,
}

impl FrameError {
    const fn protocol(reason: &'static str) -> Self {
        Self { code: CloseCode::Protocol, reason }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "websocket: {} (close code {})", self.reason, u16::from(self.code))
    }
}

impl std::error::Error for FrameError {}

/// Where [`FrameReader::decode`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Every byte given was used: more must be read.
    Exhausted,
    /// A ping, whose payload is [`FrameReader::control_payload`], to be answered with a pong.
    Ping,
    /// A close frame, with the status code it gave if any; nothing after it is read.
    Close(Option<u16>),
}

/// How far [`FrameReader::decode`] has got in a buffer: raw bytes before `read` are used, and
/// the data decoded from them is `..written` (`written <= read`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) read: usize,
    pub(super) written: usize,
}

/// A control frame's payload: at most [`MAX_CONTROL_PAYLOAD`] bytes, inline.
#[derive(Debug, Clone)]
pub(super) struct ControlPayload {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl Default for ControlPayload {
    fn default() -> Self {
        Self { bytes: [0; MAX_CONTROL_PAYLOAD], len: 0 }
    }
}

impl ControlPayload {
    /// The first [`MAX_CONTROL_PAYLOAD`] bytes of `bytes`.
    pub(super) fn from_slice(bytes: &[u8]) -> Self {
        let mut payload = Self::default();
        payload.push(&bytes[..bytes.len().min(MAX_CONTROL_PAYLOAD)]);
        payload
    }

    /// A close frame's payload: the code, and as much of `reason` as fits (RFC 6455 5.5.1).
    pub(super) fn close(code: CloseCode, reason: &str) -> Self {
        let mut payload = Self::default();
        payload.push(&u16::from(code).to_be_bytes());
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.push(&reason.as_bytes()[..end]);
        payload
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Appends `bytes`, which the caller has checked fit.
    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }
}

/// What the frame being read carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Ping,
    Pong,
    Close,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    /// Payload bytes still to come.
    remaining: u64,
    mask: [u8; 4],
    /// Where in the mask the next payload byte is (0 to 3).
    offset: u8,
}

/// A client's frame stream, decoded as it arrives.
#[derive(Debug)]
pub(super) struct FrameReader {
    /// The largest frame payload, and data message, accepted (`websocket_max_frame_size`).
    max_frame_size: u64,
    /// A header that has arrived in part.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    /// The frame being read; `None` between frames.
    frame: Option<Frame>,
    /// Whether a data message is open: its last frame (FIN) has not come, so a continuation
    /// frame may follow and a new message may not (RFC 6455 section 5.4).
    message_open: bool,
    /// Payload bytes of the open data message so far.
    message_len: u64,
    /// The payload of the control frame being read or just read; boxed, and only while one is
    /// in play, so that a connection that sees none carries none.
    control: Option<Box<ControlPayload>>,
}

impl FrameReader {
    /// A reader that refuses frames, and data messages, over `max_frame_size` payload bytes.
    pub(super) fn new(max_frame_size: u64) -> Self {
        Self {
            max_frame_size,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message_open: false,
            message_len: 0,
            control: None,
        }
    }

    /// The payload of the ping or close frame [`decode`](Self::decode) has just reported.
    pub(super) fn control_payload(&self) -> &[u8] {
        self.control.as_deref().map_or(&[], ControlPayload::as_slice)
    }

    /// Decodes the raw bytes `buf[pos.read..]` in place: data frames' payload is unmasked into
    /// `buf[pos.written..]`, headers and control frames are taken out. Returns when the bytes
    /// are used up, or at a ping or a close frame (`pos` then says how far it got, and a further
    /// call goes on from there), or at the first frame RFC 6455 or MQTT forbids.
    pub(super) fn decode(&mut self, buf: &mut [u8], pos: &mut Position) -> Result<Found, FrameError> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                if pos.read == buf.len() {
                    return Ok(self.exhausted());
                }
                match self.header(buf, pos)? {
                    Some(frame) => self.frame = Some(frame),
                    None => return Ok(self.exhausted()),
                }
                continue;
            };
            let n = usize::try_from(frame.remaining).unwrap_or(usize::MAX).min(buf.len() - pos.read);
            let raw = pos.read..pos.read + n;
            if frame.kind == Kind::Data {
                buf.copy_within(raw, pos.written);
                unmask(&mut buf[pos.written..pos.written + n], frame.mask, usize::from(frame.offset));
                pos.written += n;
            } else {
                // A control frame is at most 125 bytes (checked with its header), so it fits.
                let payload = self.control.get_or_insert_with(Box::default);
                let at = usize::from(payload.len);
                payload.push(&buf[raw]);
                unmask(&mut payload.bytes[at..at + n], frame.mask, usize::from(frame.offset));
            }
            pos.read += n;
            frame.remaining -= n as u64;
            frame.offset = ((usize::from(frame.offset) + n) % 4) as u8;
            if frame.remaining > 0 {
                return Ok(self.exhausted());
            }
            let kind = frame.kind;
            self.frame = None;
            match kind {
                Kind::Data | Kind::Pong => {}
                Kind::Ping => return Ok(Found::Ping),
                Kind::Close => return self.close_frame().map(Found::Close),
            }
        }
    }

    /// Every byte used: the control payload's box goes unless a control frame is still
    /// arriving.
    fn exhausted(&mut self) -> Found {
        if !self.frame.is_some_and(|frame| frame.kind != Kind::Data) {
            self.control = None;
        }
        Found::Exhausted
    }

    /// Parses the next header from what is kept of it and `buf[pos.read..]`: `None` when it is
    /// not all there yet (what is, is kept).
    fn header(&mut self, buf: &[u8], pos: &mut Position) -> Result<Option<Frame>, FrameError> {
        let kept = usize::from(self.header_len);
        let take = (MAX_HEADER_LEN - kept).min(buf.len() - pos.read);
        let mut bytes = self.header;
        bytes[kept..kept + take].copy_from_slice(&buf[pos.read..pos.read + take]);
        let mut cursor = Cursor::new(&bytes[..kept + take]);
        match FrameHeader::parse(&mut cursor) {
            Ok(None) => {
                // Not complete, so shorter than MAX_HEADER_LEN: every byte given is kept.
                self.header = bytes;
                self.header_len = (kept + take) as u8;
                pos.read += take;
                Ok(None)
            }
            Ok(Some((header, len))) => {
                pos.read += cursor.position() as usize - kept;
                self.header_len = 0;
                self.frame_for(&header, len).map(Some)
            }
            // Only a reserved opcode fails: a cursor over a slice reads no I/O.
            Err(_) => Err(FrameError::protocol("a reserved opcode")),
        }
    }

    /// What a client's frame with `header` and `len` payload bytes may be, or why not.
    fn frame_for(&mut self, header: &FrameHeader, len: u64) -> Result<Frame, FrameError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            // RFC 6455 section 5.2: no extension was negotiated, so the reserved bits are 0.
            return Err(FrameError::protocol("reserved bits set without an extension"));
        }
        let Some(mask) = header.mask else {
            // RFC 6455 section 5.1: a server closes on an unmasked frame from a client.
            return Err(FrameError::protocol("an unmasked frame from a client"));
        };
        if len >> 63 != 0 {
            return Err(FrameError::protocol("a frame length with its top bit set"));
        }
        let too_big = |reason| Err(FrameError { code: CloseCode::Size, reason });
        let kind = match header.opcode {
            // MQTT-6.0.0-1: MQTT travels in binary frames; a text frame closes the connection.
            OpCode::Data(Data::Text) => {
                return Err(FrameError { code: CloseCode::Unsupported, reason: "a text frame (MQTT-6.0.0-1)" })
            }
            OpCode::Data(Data::Binary) if self.message_open => {
                return Err(FrameError::protocol("a new message before the last one ended"))
            }
            OpCode::Data(Data::Continue) if !self.message_open => {
                return Err(FrameError::protocol("a continuation frame with no message to continue"))
            }
            OpCode::Data(Data::Binary | Data::Continue) => {
                let message_len = if self.message_open { self.message_len.saturating_add(len) } else { len };
                if len > self.max_frame_size {
                    return too_big("a frame larger than websocket_max_frame_size");
                }
                if message_len > self.max_frame_size {
                    return too_big("a message larger than websocket_max_frame_size");
                }
                self.message_open = !header.is_final;
                self.message_len = if header.is_final { 0 } else { message_len };
                Kind::Data
            }
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(FrameError::protocol("a reserved opcode"))
            }
            OpCode::Control(control) => {
                // RFC 6455 section 5.5: control frames are not fragmented, and carry 125 bytes
                // at most.
                if !header.is_final {
                    return Err(FrameError::protocol("a fragmented control frame"));
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::protocol("a control frame over 125 bytes"));
                }
                if let Some(payload) = self.control.as_mut() {
                    payload.len = 0;
                }
                match control {
                    Control::Ping => Kind::Ping,
                    Control::Pong => Kind::Pong,
                    _ => Kind::Close,
                }
            }
        };
        Ok(Frame { kind, remaining: len, mask, offset: 0 })
    }

    /// The status code of the close frame just read, checked (RFC 6455 sections 5.5.1, 7.4).
    fn close_frame(&self) -> Result<Option<u16>, FrameError> {
        let payload = self.control_payload();
        match payload {
            [] => Ok(None),
            [_] => Err(FrameError::protocol("a close frame with a 1-byte payload")),
            [high, low, reason @ ..] => {
                let code = u16::from_be_bytes([*high, *low]);
                if !CloseCode::from(code).is_allowed() {
                    return Err(FrameError::protocol("a close code a peer may not send"));
                }
                if std::str::from_utf8(reason).is_err() {
                    return Err(FrameError { code: CloseCode::Invalid, reason: "a close reason that is not UTF-8" });
                }
                Ok(Some(code))
            }
        }
    }
}

/// XORs `data` with `mask`, starting at byte `offset` of it (RFC 6455 section 5.3), eight bytes
/// at a time.
pub(super) fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let key: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The header of a server frame (final, unmasked) with `len` payload bytes, and its length.
pub(super) fn server_header(opcode: OpCode, len: u64) -> ([u8; MAX_SERVER_HEADER_LEN], usize) {
    let header = FrameHeader { is_final: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask: None };
    let mut bytes = [0; MAX_SERVER_HEADER_LEN];
    let mut out = &mut bytes[..];
    // An unmasked header is at most MAX_SERVER_HEADER_LEN bytes: the write into them cannot
    // run out of room, which is the only way it fails.
    let _ = header.format(len, &mut out);
    let written = MAX_SERVER_HEADER_LEN - out.len();
    (bytes, written)
}

/// A server control frame (`opcode` with `payload`) in `out`; returns its length.
pub(super) fn control_frame(opcode: Control, payload: &[u8], out: &mut [u8; MAX_CONTROL_FRAME]) -> usize {
    let (header, header_len) = server_header(OpCode::Control(opcode), payload.len() as u64);
    out[..header_len].copy_from_slice(&header[..header_len]);
    out[header_len..header_len + payload.len()].copy_from_slice(payload);
    header_len + payload.len()
}

#[cfg(test)]
mod tests;
