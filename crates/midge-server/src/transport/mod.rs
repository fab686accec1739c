//! What a connection's bytes travel over: TCP ([`tcp`]), TLS over TCP ([`tls`]), and WebSocket
//! over either ([`websocket`]).
//!
//! The connection driver never keeps a read buffer while a client is idle: it waits until the
//! transport says bytes can be read ([`Transport::poll_read_ready`]), and only then allocates a
//! buffer and reads what is there without waiting ([`Transport::try_read_buf`]). A plain socket
//! answers from the kernel's readiness; a transport with its own framing (TLS records, WebSocket
//! frames) answers from its inner socket's readiness and decodes in `try_read_buf`, returning
//! `WouldBlock` when a record or frame is still incomplete. Writes go through `AsyncWrite`, one
//! call per batch of packets.

use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

mod tcp;
mod tls;
pub mod websocket;

/// A connection's byte stream.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// `Ready` when a read may find bytes (or the end of the stream, or an error); registers
    /// `cx` otherwise. A spurious `Ready` is allowed: the read then says `WouldBlock`.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Appends what can be read now to `buf` (whose spare capacity the caller reserved);
    /// `Ok(0)` is the end of the stream, `WouldBlock` means nothing yet.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Bytes the last [`try_read_buf`](Transport::try_read_buf) took from the socket beyond
    /// those it appended (WebSocket frame headers and control frames), so that the read size
    /// adapts to what the socket gave (`read_size`). 0 where every byte read is data.
    fn read_overhead(&self) -> usize {
        0
    }
}
