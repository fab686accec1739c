//! A connection's last bytes, flushed in bounded time, and a close the client can read.
//!
//! Closing a socket whose receive buffer still holds unread bytes makes the kernel send a reset
//! instead of a FIN, and a reset lets the client's TCP stack discard what it had received but
//! not yet read: the very DISCONNECT or CONNACK that says why it was closed (the Paho suite's
//! v5 flow-control test saw a broken pipe instead of DISCONNECT 0x93). So the close is
//! graceful: write what is pending, shut the write side down (the client reads the packet, then
//! the end of the stream), discard what the client still sends until it closes its side or
//! [`CLOSE_DRAIN_TIMEOUT`] runs out, then close.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::limits::{CLOSE_DRAIN_TIMEOUT, CLOSE_FLUSH_TIMEOUT};

/// Writes what is pending, bounded in time, shuts the write side down, then discards the
/// client's input until it closes or [`CLOSE_DRAIN_TIMEOUT`] has passed.
pub(super) async fn flush_and_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, wbuf: &mut BytesMut) {
    let flush = async {
        if !wbuf.is_empty() {
            stream.write_all(wbuf).await?;
        }
        stream.shutdown().await
    };
    let flushed = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await;
    wbuf.clear();
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            debug!(%error, "error flushing a closing connection");
            return;
        }
        // A client that does not read gets no grace: it would not read the reason anyway.
        Err(_) => return,
    }
    let drain = async {
        // On the stack and small: the bytes are thrown away, only the time is bounded.
        let mut discard = [0u8; 512];
        while let Ok(n) = stream.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_DRAIN_TIMEOUT, drain).await;
}
