//! The WebSocket transport over a scripted inner stream: what reaches the caller, what goes out,
//! and in what order (RFC 6455 sections 5 and 7).

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};
use std::task::{Wake, Waker};

use super::*;

const MASK: [u8; 4] = [0xa1, 0x0b, 0x7c, 0x33];

/// An inner stream whose input comes in the chunks given and whose writes take at most `room`
/// bytes before they wait.
#[derive(Debug, Default)]
struct Scripted {
    input: VecDeque<Vec<u8>>,
    /// The client has closed its side once `input` is read.
    eof: bool,
    output: Vec<u8>,
    /// Bytes writes may still take; `None`: any number.
    room: Option<usize>,
    shut_down: bool,
    /// Calls to `poll_write` and `poll_write_vectored` that wrote something.
    writes: usize,
}

impl Scripted {
    fn with_input(chunks: &[&[u8]]) -> Self {
        Self { input: chunks.iter().map(|chunk| chunk.to_vec()).collect(), ..Self::default() }
    }

    fn read(&mut self, room: usize) -> Option<Vec<u8>> {
        let mut chunk = self.input.pop_front()?;
        if chunk.len() > room {
            self.input.push_front(chunk.split_off(room));
        }
        Some(chunk)
    }

    fn write(&mut self, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
        let mut written = 0;
        for buf in bufs {
            let n = self.room.map_or(buf.len(), |room| room.min(buf.len()));
            self.output.extend_from_slice(&buf[..n]);
            written += n;
            if let Some(room) = self.room.as_mut() {
                *room -= n;
            }
            if n < buf.len() {
                break;
            }
        }
        if written == 0 && bufs.iter().any(|buf| !buf.is_empty()) {
            return Poll::Pending;
        }
        self.writes += 1;
        Poll::Ready(Ok(written))
    }
}

impl AsyncRead for Scripted {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.read(buf.remaining()) {
            Some(chunk) => buf.put_slice(&chunk),
            None if this.eof => {}
            None => return Poll::Pending,
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write(&[buf])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs: Vec<&[u8]> = bufs.iter().map(|buf| &buf[..]).collect();
        self.get_mut().write(&bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().shut_down = true;
        Poll::Ready(Ok(()))
    }
}

impl Transport for Scripted {
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.input.is_empty() && !self.eof {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.read(buf.capacity() - buf.len()) {
            Some(chunk) => {
                buf.extend_from_slice(&chunk);
                Ok(chunk.len())
            }
            None if self.eof => Ok(0),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

static NOOP: LazyLock<Waker> = LazyLock::new(|| Waker::from(Arc::new(Noop)));

fn cx() -> Context<'static> {
    Context::from_waker(&NOOP)
}

/// A client frame, masked, FIN set, with a 7- or 16-bit length.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x80 | opcode];
    if payload.len() < 126 {
        bytes.push(0x80 | payload.len() as u8);
    } else {
        bytes.push(0x80 | 126);
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    bytes.extend_from_slice(&MASK);
    bytes.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ MASK[i % 4]));
    bytes
}

fn binary(payload: &[u8]) -> Vec<u8> {
    frame(0x2, payload)
}

fn websocket(inner: Scripted) -> WebSocket<Scripted> {
    WebSocket::new(inner, BytesMut::new(), 1 << 20)
}

/// `try_read_buf` into a buffer with `room` bytes free.
fn read(ws: &mut WebSocket<Scripted>, room: usize) -> io::Result<Vec<u8>> {
    let mut buf = BytesMut::with_capacity(room);
    ws.try_read_buf(&mut buf).map(|n| {
        assert_eq!(n, buf.len());
        buf.to_vec()
    })
}

fn write(ws: &mut WebSocket<Scripted>, bytes: &[u8]) -> Poll<io::Result<usize>> {
    Pin::new(ws).poll_write(&mut cx(), bytes)
}

fn shutdown(ws: &mut WebSocket<Scripted>) -> Poll<io::Result<()>> {
    Pin::new(ws).poll_shutdown(&mut cx())
}

#[test]
fn reads_give_the_mqtt_bytes_and_count_the_framing_as_overhead() {
    let connect_start = [0x10, 0x0c, 0x00, 0x04];
    let mut raw = binary(&connect_start[..1]);
    raw.extend(binary(&connect_start[1..]));
    let mut ws = websocket(Scripted::with_input(&[&raw]));
    assert_eq!(read(&mut ws, 256).expect("data"), connect_start);
    assert_eq!(ws.read_overhead(), raw.len() - connect_start.len());
    assert_eq!(read(&mut ws, 256).expect_err("nothing more").kind(), io::ErrorKind::WouldBlock);
}

/// A read that brings only control frames reads again; with nothing more it says `WouldBlock`,
/// and the pong goes out from `poll_read_ready` when the driver has nothing to write (RFC 6455
/// section 5.5.2: a ping is answered as soon as practical).
#[test]
fn a_ping_alone_is_answered_from_poll_read_ready() {
    let mut ws = websocket(Scripted::with_input(&[&frame(0x9, b"are you there"), &binary(b"x")]));
    assert_eq!(read(&mut ws, 256).expect("the data after the ping"), b"x");
    assert!(ws.inner.output.is_empty(), "nothing written by a read");
    assert!(ws.poll_read_ready(&mut cx()).is_pending());
    assert_eq!(ws.inner.output, [&[0x8a, 13][..], b"are you there"].concat());

    let mut ws = websocket(Scripted::with_input(&[&frame(0x9, b"1")]));
    assert_eq!(read(&mut ws, 256).expect_err("only a ping").kind(), io::ErrorKind::WouldBlock);
    assert!(ws.poll_read_ready(&mut cx()).is_pending());
    assert_eq!(ws.inner.output, [0x8a, 1, b'1']);
}

/// RFC 6455 section 5.5.3: pings not answered yet are answered once, for the latest.
#[test]
fn pings_not_yet_answered_get_one_pong_for_the_latest() {
    let mut ws = websocket(Scripted::with_input(&[&frame(0x9, b"old"), &frame(0x9, b"new")]));
    assert_eq!(read(&mut ws, 256).expect_err("only pings").kind(), io::ErrorKind::WouldBlock);
    let _ = ws.poll_read_ready(&mut cx());
    assert_eq!(ws.inner.output, [0x8a, 3, b'n', b'e', b'w']);
}

/// Each write is one binary frame, header and payload in one vectored write.
#[test]
fn each_write_is_one_unmasked_binary_frame() {
    let mut ws = websocket(Scripted::default());
    assert!(matches!(write(&mut ws, b"\x20\x02\x00\x00"), Poll::Ready(Ok(4))));
    let big = vec![7u8; 300];
    assert!(matches!(write(&mut ws, &big), Poll::Ready(Ok(300))));
    let expected = [&[0x82, 4, 0x20, 0x02, 0x00, 0x00][..], &[0x82, 126, 1, 44], &big].concat();
    assert_eq!(ws.inner.output, expected);
    assert_eq!(ws.inner.writes, 2, "one write per frame");
}

/// A write the inner stream takes in part goes on with the bytes offered again, header first,
/// and a pong queued meanwhile waits for the frame's end (never inside a frame).
#[test]
fn a_partial_write_finishes_its_frame_before_a_pong() {
    let payload: Vec<u8> = (0..100).collect();
    let mut ws = websocket(Scripted { room: Some(1), ..Scripted::default() });
    assert!(write(&mut ws, &payload).is_pending(), "one header byte out, then full");
    ws.inner.room = Some(9);
    assert!(matches!(write(&mut ws, &payload), Poll::Ready(Ok(8))), "the header's end and 8 bytes");
    ws.inner.input.push_back(frame(0x9, b"p"));
    assert_eq!(read(&mut ws, 256).expect_err("only a ping").kind(), io::ErrorKind::WouldBlock);
    ws.inner.room = None;
    let _ = ws.poll_read_ready(&mut cx());
    assert_eq!(ws.inner.output.len(), 2 + 8, "no pong inside the frame");
    assert!(matches!(write(&mut ws, &payload[8..]), Poll::Ready(Ok(92))));
    assert!(ws.poll_read_ready(&mut cx()).is_pending());
    let expected = [&[0x82, 100][..], &payload, &[0x8a, 1, b'p']].concat();
    assert_eq!(ws.inner.output, expected);
}

/// A pong waiting when the driver writes goes out first, between frames.
#[test]
fn a_waiting_pong_goes_out_before_the_next_frame() {
    let mut ws = websocket(Scripted::with_input(&[&frame(0x9, b"")]));
    assert!(read(&mut ws, 256).is_err());
    assert!(matches!(write(&mut ws, b"\xd0\x00"), Poll::Ready(Ok(2))));
    assert_eq!(ws.inner.output, [0x8a, 0, 0x82, 2, 0xd0, 0x00]);
}

/// RFC 6455 section 5.5.1: a close frame is answered with one echoing its code; reads end, and
/// nothing is sent after the close frame.
#[test]
fn a_close_frame_is_echoed_and_ends_the_stream() {
    let mut raw = binary(b"last");
    raw.extend(frame(0x8, &[0x03, 0xe9, b'b', b'y', b'e']));
    let mut ws = websocket(Scripted::with_input(&[&raw]));
    assert_eq!(read(&mut ws, 256).expect("data before the close"), b"last");
    assert!(ws.poll_read_ready(&mut cx()).is_ready(), "the end is ready to be read");
    assert_eq!(read(&mut ws, 256).expect("the end"), b"");
    assert_eq!(ws.inner.output, [0x88, 2, 0x03, 0xe9]);
    assert!(matches!(write(&mut ws, b"\xe0\x00"), Poll::Ready(Ok(2))), "dropped");
    assert!(shutdown(&mut ws).is_ready());
    assert_eq!(ws.inner.output, [0x88, 2, 0x03, 0xe9], "no data and no second close");
    assert!(ws.inner.shut_down);
}

/// MQTT-6.0.0-1: a text frame ends the reads with an error; the close frame says 1003.
#[test]
fn a_text_frame_fails_the_read_and_shutdown_sends_1003() {
    let mut ws = websocket(Scripted::with_input(&[&frame(0x1, b"{}")]));
    let error = read(&mut ws, 256).expect_err("a text frame");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("MQTT-6.0.0-1"), "{error}");
    assert!(shutdown(&mut ws).is_ready());
    let reason = b"a text frame (MQTT-6.0.0-1)";
    let expected = [&[0x88, 2 + reason.len() as u8, 0x03, 0xeb][..], reason].concat();
    assert_eq!(ws.inner.output, expected);
    assert!(ws.inner.shut_down);
}

/// RFC 6455 section 7.1.2: the server starts the closing handshake with 1000 when it closes.
#[test]
fn shutdown_sends_close_1000_then_shuts_the_inner_stream() {
    let mut ws = websocket(Scripted::default());
    assert!(matches!(write(&mut ws, b"\x20\x02\x00\x00"), Poll::Ready(Ok(4))));
    assert!(shutdown(&mut ws).is_ready());
    assert_eq!(ws.inner.output, [0x82, 4, 0x20, 0x02, 0x00, 0x00, 0x88, 2, 0x03, 0xe8]);
    assert!(ws.inner.shut_down);
}

/// Data before a broken frame is given first; the error comes with the next read.
#[test]
fn data_before_a_broken_frame_comes_first() {
    let mut raw = binary(b"ok");
    raw.extend(frame(0x3, b""));
    let mut ws = websocket(Scripted::with_input(&[&raw]));
    assert_eq!(read(&mut ws, 256).expect("the data first"), b"ok");
    assert!(ws.poll_read_ready(&mut cx()).is_ready(), "the error is ready to be read");
    assert_eq!(read(&mut ws, 256).expect_err("then the error").kind(), io::ErrorKind::InvalidData);
}

/// Bytes that came after the upgrade request are the first frames: the stream is ready at once,
/// and they are read before the socket.
#[test]
fn bytes_after_the_upgrade_request_are_read_first() {
    let mut early = binary(b"first");
    early.extend(binary(b"second"));
    let mut ws = WebSocket::new(Scripted::with_input(&[&binary(b"third")]), BytesMut::from(&early[..]), 1 << 20);
    assert!(ws.poll_read_ready(&mut cx()).is_ready());
    // Little room: the early bytes are taken a few at a time, headers split across reads.
    let mut got = Vec::new();
    while got.len() < b"firstsecondthird".len() {
        got.extend(read(&mut ws, 8).expect("more"));
    }
    assert_eq!(got, b"firstsecondthird");
}

/// The AsyncRead side (the CONNECT phase's reads) decodes the same way, and once a broken frame
/// has been reported it discards input until the client closes (so the close does not reset
/// the connection while the client still sends).
#[test]
fn async_reads_decode_and_discard_after_an_error() {
    let mut raw = binary(b"CONNECT");
    raw.extend(frame(0x1, b"text"));
    let mut ws = websocket(Scripted { eof: true, ..Scripted::with_input(&[&raw, b"more junk"]) });
    let mut storage = [0u8; 64];
    let mut buf = ReadBuf::new(&mut storage);
    assert!(matches!(Pin::new(&mut ws).poll_read(&mut cx(), &mut buf), Poll::Ready(Ok(()))));
    assert_eq!(buf.filled(), b"CONNECT");
    let mut buf = ReadBuf::new(&mut storage);
    match Pin::new(&mut ws).poll_read(&mut cx(), &mut buf) {
        Poll::Ready(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::InvalidData),
        other => panic!("expected the error, got {other:?}"),
    }
    let mut buf = ReadBuf::new(&mut storage);
    assert!(matches!(Pin::new(&mut ws).poll_read(&mut cx(), &mut buf), Poll::Ready(Ok(()))));
    assert!(buf.filled().is_empty(), "the end, after the junk was discarded");
    assert!(ws.inner.input.is_empty());
}

/// The AsyncRead side answers a ping at once, and echoes a close frame before it gives the end
/// of the stream: in the CONNECT phase, nothing else writes.
#[test]
fn async_reads_answer_pings_and_close_frames_at_once() {
    let mut raw = frame(0x9, b"hi");
    raw.extend(binary(b"\x10"));
    let mut ws = websocket(Scripted::with_input(&[&raw, &frame(0x8, &1000u16.to_be_bytes())]));
    let mut storage = [0u8; 64];
    let mut buf = ReadBuf::new(&mut storage);
    assert!(matches!(Pin::new(&mut ws).poll_read(&mut cx(), &mut buf), Poll::Ready(Ok(()))));
    assert_eq!(buf.filled(), b"\x10");
    assert_eq!(ws.inner.output, [0x8a, 2, b'h', b'i'], "the pong, before the read returned");
    let mut buf = ReadBuf::new(&mut storage);
    assert!(matches!(Pin::new(&mut ws).poll_read(&mut cx(), &mut buf), Poll::Ready(Ok(()))));
    assert!(buf.filled().is_empty(), "the end of the stream");
    assert_eq!(ws.inner.output, [0x8a, 2, b'h', b'i', 0x88, 2, 0x03, 0xe8], "and the close frame's echo");
}

/// What a WebSocket adds to each connection while it is idle: its state, and no buffer (the
/// control frames' box and the early bytes exist only while they are in play).
#[test]
fn an_idle_websocket_adds_its_state_and_no_buffer() {
    let added = size_of::<WebSocket<tokio::net::TcpStream>>() - size_of::<tokio::net::TcpStream>();
    // 136 on x86-64 (docs/limits.md): the frame reader's state, the data frame being written,
    // and a few flags.
    assert!(added <= 136, "a WebSocket adds {added} bytes");
    let ws = websocket(Scripted::default());
    assert!(ws.control.is_none() && ws.early.is_none() && ws.reader.control_payload().is_empty());
}
