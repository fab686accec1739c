//! MQTT over WebSocket (RFC 6455, MQTT section 6): a [`WebSocket`] wraps a TCP or TLS stream
//! whose HTTP upgrade has been accepted ([`handshake`]) and is itself a [`Transport`], so the
//! connection driver, the streaming MQTT decoder, limits, authentication and ACLs work over it
//! unchanged.
//!
//! # Reading
//! A read takes raw bytes from the inner stream straight into the caller's buffer and decodes
//! them there ([`frames`]): data frames' payload is unmasked and moved down over the frame
//! headers, control frames are taken out. No buffer of the WebSocket's own is filled, and no
//! message is assembled: binary and continuation frames feed the MQTT decoder as one byte
//! stream, as MQTT-6.0.0-2 and -3 have it. A read that brings only headers or control frames
//! reads again, a few times, then says `WouldBlock`. Bytes that came with the upgrade request
//! are decoded first, and make [`Transport::poll_read_ready`] answer `Ready` at once.
//!
//! A ping is answered with a pong (only the latest, as RFC 6455 section 5.5.3 allows); a close
//! frame with a close frame echoing its code, after which reads end (`Ok(0)`). A frame that RFC
//! 6455 or MQTT forbids ends reads with `InvalidData` and queues a close frame with its code
//! ([`FrameError`]); input after that is discarded until the client closes, so that closing does
//! not reset a connection whose client is still sending and lose the close frame.
//!
//! # Writing
//! Each `poll_write` (the driver's batch of packets) becomes one unmasked binary frame: its
//! header and the batch go out in one vectored write, and a partial write goes on with the
//! bytes the caller offers again. Pongs and the close frame go out between data frames, never
//! inside one: before the next batch, or from `poll_read_ready` when the driver has nothing to
//! write. Once the close frame has gone, written data is dropped: RFC 6455 section 5.5.1 lets no
//! data frame follow it. `poll_shutdown` sends a close frame (1000, unless one with an error's
//! code is queued), then shuts the inner stream's write side, so the graceful close
//! (`conn/close.rs`) works as it does over TCP.

pub mod forwarded;
mod frames;
pub mod handshake;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

pub use frames::FrameError;
use frames::{ControlPayload, Found, FrameReader, Position, MAX_CONTROL_FRAME, MAX_SERVER_HEADER_LEN};

use super::Transport;
use crate::limits::WEBSOCKET_READS_WITHOUT_DATA;
use crate::read_size::MIN_READ;

/// A WebSocket server connection over `T`, carrying MQTT in binary frames.
#[derive(Debug)]
pub struct WebSocket<T> {
    inner: T,
    reader: FrameReader,
    /// Bytes that came after the upgrade request: the client's first frames, decoded before
    /// anything more is read. Boxed: most clients send none, and wait for the 101.
    early: Option<Box<BytesMut>>,
    input: Input,
    /// Raw bytes the last `try_read_buf` took beyond the data it gave.
    overhead: usize,
    /// The data frame being written.
    out: Outgoing,
    /// Control frames to write; boxed, and only while there are some.
    control: Option<Box<ControlOut>>,
    closing: Closing,
    /// Control frames were handed to `inner` and may wait in its buffers (TLS records) until
    /// it is flushed.
    flush_due: bool,
}

/// Where the client's side of the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Open,
    /// The client sent a close frame: reads end.
    Closed,
    /// The inner stream ended.
    Ended,
    /// A frame broke the rules: the next read says so.
    Broken(FrameError),
    /// The error was reported: input is discarded until the client closes.
    Discarding,
}

/// Whether the server's close frame is queued or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    Queued,
    Sent,
}

/// The data frame being written: its header, how much of the header has gone, and how many
/// payload bytes are still to go.
#[derive(Debug, Default)]
struct Outgoing {
    header: [u8; MAX_SERVER_HEADER_LEN],
    header_len: u8,
    header_sent: u8,
    payload_left: usize,
}

impl Outgoing {
    fn in_frame(&self) -> bool {
        self.header_sent < self.header_len || self.payload_left > 0
    }

    fn start(&mut self, len: usize) {
        let (header, header_len) = frames::server_header(OpCode::Data(Data::Binary), len as u64);
        *self = Self { header, header_len: header_len as u8, header_sent: 0, payload_left: len };
    }
}

/// Control frames on their way out.
#[derive(Debug)]
struct ControlOut {
    /// The pong for the latest ping not answered yet.
    pong: Option<ControlPayload>,
    /// The close frame's payload, until it is being written.
    close: Option<ControlPayload>,
    /// The control frame being written, and how much of it has gone.
    frame: [u8; MAX_CONTROL_FRAME],
    len: usize,
    sent: usize,
    /// Whether the frame being written is the close frame.
    frame_is_close: bool,
}

impl Default for ControlOut {
    fn default() -> Self {
        Self { pong: None, close: None, frame: [0; MAX_CONTROL_FRAME], len: 0, sent: 0, frame_is_close: false }
    }
}

impl From<FrameError> for io::Error {
    fn from(error: FrameError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

impl<T: Transport> WebSocket<T> {
    /// A WebSocket over `inner`, whose upgrade request has been answered with 101; `early` is
    /// what the client sent after its request; frames and data messages over `max_frame_size`
    /// payload bytes are refused with close code 1009.
    pub fn new(inner: T, early: BytesMut, max_frame_size: u64) -> Self {
        Self {
            inner,
            reader: FrameReader::new(max_frame_size),
            early: (!early.is_empty()).then(|| Box::new(early)),
            input: Input::Open,
            overhead: 0,
            out: Outgoing::default(),
            control: None,
            closing: Closing::Open,
            flush_due: false,
        }
    }

    /// Decodes `raw`, bytes just read, in place; returns how many data bytes are at its start.
    /// Answers pings, notes a close frame or an error, and queues the close frame they call for.
    fn decode_raw(&mut self, raw: &mut [u8]) -> usize {
        let mut pos = Position::default();
        loop {
            match self.reader.decode(raw, &mut pos) {
                Ok(Found::Exhausted) => return pos.written,
                Ok(Found::Ping) => {
                    if self.closing == Closing::Open {
                        let pong = ControlPayload::from_slice(self.reader.control_payload());
                        self.control.get_or_insert_with(Box::default).pong = Some(pong);
                    }
                }
                Ok(Found::Close(code)) => {
                    // RFC 6455 section 5.5.1: answered with a close frame, which echoes the code.
                    self.input = Input::Closed;
                    let echo = code.map(u16::to_be_bytes);
                    self.queue_close(ControlPayload::from_slice(echo.as_ref().map_or(&[], |code| &code[..])));
                    return pos.written;
                }
                Err(error) => {
                    self.input = Input::Broken(error);
                    self.queue_close(ControlPayload::close(error.code, error.reason));
                    return pos.written;
                }
            }
        }
    }

    /// Queues the close frame, unless one is queued or sent already.
    fn queue_close(&mut self, payload: ControlPayload) {
        if self.closing == Closing::Open {
            self.closing = Closing::Queued;
            self.control.get_or_insert_with(Box::default).close = Some(payload);
        }
    }

    /// Writes the queued control frames: the pong, then the close frame. Called between data
    /// frames only.
    fn poll_flush_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(control) = self.control.as_mut() {
            if control.sent < control.len {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &control.frame[control.sent..control.len]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                control.sent += n;
                self.flush_due = true;
                continue;
            }
            if control.frame_is_close {
                control.frame_is_close = false;
                self.closing = Closing::Sent;
            }
            let (opcode, payload) = match (control.pong.take(), control.close.take()) {
                (Some(pong), close) if self.closing != Closing::Sent => {
                    control.close = close;
                    (Control::Pong, pong)
                }
                (_, Some(close)) => {
                    control.frame_is_close = true;
                    (Control::Close, close)
                }
                _ => {
                    self.control = None;
                    break;
                }
            };
            control.len = frames::control_frame(opcode, payload.as_slice(), &mut control.frame);
            control.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and throws away what the client sends after a broken frame, until it closes.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut discard = [0u8; 512];
        loop {
            let mut raw = ReadBuf::new(&mut discard);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                self.input = Input::Ended;
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Takes up to `room` early bytes into `put`; returns how many.
    fn take_early(&mut self, room: usize, put: impl FnOnce(&[u8])) -> Option<usize> {
        let early = self.early.as_mut()?;
        let n = early.len().min(room);
        put(&early[..n]);
        early.advance(n);
        if early.is_empty() {
            self.early = None;
        }
        Some(n)
    }
}

impl<T: Transport> Transport for WebSocket<T> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Pongs and the close frame go out even when the driver has nothing to write; a data
        // frame being written is finished first, by the driver's own writes.
        if !self.out.in_frame() {
            if let Poll::Ready(Err(error)) = self.poll_flush_control(cx) {
                return Poll::Ready(Err(error));
            }
            if self.flush_due && self.control.is_none() {
                if let Poll::Ready(flushed) = Pin::new(&mut self.inner).poll_flush(cx) {
                    self.flush_due = false;
                    flushed?;
                }
            }
        }
        match self.input {
            Input::Open if self.early.is_some() => Poll::Ready(Ok(())),
            Input::Open | Input::Discarding => self.inner.poll_read_ready(cx),
            Input::Closed | Input::Ended | Input::Broken(_) => Poll::Ready(Ok(())),
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.overhead = 0;
        if buf.capacity() == buf.len() {
            buf.reserve(MIN_READ); // an inner read into no room would read as the end
        }
        for _ in 0..WEBSOCKET_READS_WITHOUT_DATA {
            match self.input {
                Input::Open => {}
                Input::Closed | Input::Ended => return Ok(0),
                Input::Broken(error) => {
                    self.input = Input::Discarding;
                    return Err(error.into());
                }
                Input::Discarding => loop {
                    let at = buf.len();
                    if self.inner.try_read_buf(buf)? == 0 {
                        self.input = Input::Ended;
                        return Ok(0);
                    }
                    buf.truncate(at);
                },
            }
            let at = buf.len();
            let raw = match self.take_early(buf.capacity() - at, |early| buf.extend_from_slice(early)) {
                Some(n) => n,
                None => match self.inner.try_read_buf(buf)? {
                    0 => {
                        self.input = Input::Ended;
                        return Ok(0);
                    }
                    n => n,
                },
            };
            let kept = self.decode_raw(&mut buf[at..]);
            buf.truncate(at + kept);
            self.overhead += raw - kept;
            if kept > 0 {
                return Ok(kept);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn read_overhead(&self) -> usize {
        self.overhead
    }
}

impl<T: Transport> AsyncRead for WebSocket<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        for _ in 0..WEBSOCKET_READS_WITHOUT_DATA {
            // These reads are the CONNECT phase's and the close's, when nothing else writes: a
            // pong or a close frame goes out as soon as it can. Only an error is of interest
            // here; a write that must wait is tried again by the next read.
            if !this.out.in_frame() {
                if let Poll::Ready(Err(error)) = this.poll_flush_control(cx) {
                    return Poll::Ready(Err(error));
                }
            }
            match this.input {
                Input::Open => {}
                Input::Closed | Input::Ended => return Poll::Ready(Ok(())),
                Input::Broken(error) => {
                    this.input = Input::Discarding;
                    return Poll::Ready(Err(error.into()));
                }
                Input::Discarding => return this.poll_discard(cx),
            }
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let region = out.initialize_unfilled();
            let raw = match this.take_early(region.len(), |early| region[..early.len()].copy_from_slice(early)) {
                Some(n) => n,
                None => {
                    let mut raw = ReadBuf::new(region);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
                    if raw.filled().is_empty() {
                        this.input = Input::Ended;
                        return Poll::Ready(Ok(()));
                    }
                    raw.filled().len()
                }
            };
            let kept = this.decode_raw(&mut out.initialize_unfilled()[..raw]);
            out.advance(kept);
            if kept > 0 {
                if !this.out.in_frame() {
                    if let Poll::Ready(Err(error)) = this.poll_flush_control(cx) {
                        return Poll::Ready(Err(error));
                    }
                }
                return Poll::Ready(Ok(()));
            }
        }
        // Only headers and control frames so far: give way, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: Transport> AsyncWrite for WebSocket<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !this.out.in_frame() {
            ready!(this.poll_flush_control(cx))?;
            if this.closing == Closing::Sent {
                // RFC 6455 section 5.5.1: no data frame after the close frame; the client will
                // not read it either.
                return Poll::Ready(Ok(buf.len()));
            }
            this.out.start(buf.len());
        }
        loop {
            let payload = &buf[..buf.len().min(this.out.payload_left)];
            let header = &this.out.header[usize::from(this.out.header_sent)..usize::from(this.out.header_len)];
            let inner = Pin::new(&mut this.inner);
            let written = if header.is_empty() {
                ready!(inner.poll_write(cx, payload))?
            } else {
                ready!(inner.poll_write_vectored(cx, &[IoSlice::new(header), IoSlice::new(payload)]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_header = written.min(header.len());
            this.out.header_sent += from_header as u8;
            let from_payload = written - from_header;
            this.out.payload_left -= from_payload;
            if from_payload > 0 {
                return Poll::Ready(Ok(from_payload));
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.out.in_frame() {
            ready!(this.poll_flush_control(cx))?;
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flush_due = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A data frame cut short cannot be finished: its client gets the end of the stream
        // without a close frame.
        if !this.out.in_frame() {
            this.queue_close(ControlPayload::close(CloseCode::Normal, ""));
            ready!(this.poll_flush_control(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
