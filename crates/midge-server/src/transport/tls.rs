//! TLS over TCP (`tokio_rustls`'s server stream).
//!
//! An idle TLS connection is waited on as a TCP one is: through the socket's readiness, with no
//! read buffer of the driver's. What rustls keeps per connection (its record buffers, the
//! session keys) it keeps anyway. Two things differ from TCP:
//!
//! - rustls may already hold decrypted bytes that the last read had no room for, or a
//!   `close_notify`: then the socket will not turn readable again for them, so
//!   [`Transport::poll_read_ready`] answers `Ready` from rustls' own state first.
//! - `tokio_rustls` reads only through `AsyncRead::poll_read`, which wants a waker. The read
//!   is made with a waker that does nothing, and `Pending` becomes `WouldBlock`: the socket's
//!   read interest then holds that no-op waker, which is harmless because the driver polls
//!   `poll_read_ready` with its own waker before it waits again (the last waker given wins).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Transport;

impl Transport for TlsStream<TcpStream> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (socket, tls) = self.get_mut();
        match tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => Poll::Ready(Ok(())),
            Ok(_) => socket.poll_read_ready(cx),
            Err(error) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error))),
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut cx = Context::from_waker(&NOOP_WAKER);
        match tokio_util::io::poll_read_buf(Pin::new(self), &mut cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A waker that does nothing, for reads that must not wait.
static NOOP_WAKER: LazyLock<Waker> = LazyLock::new(|| Waker::from(Arc::new(Noop)));

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}
