//! A connection's last bytes, flushed in bounded time.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::limits::CLOSE_FLUSH_TIMEOUT;

/// Writes what is pending, bounded in time, then shuts the write side down.
pub(super) async fn flush_and_close<W: AsyncWrite + Unpin>(writer: &mut W, wbuf: &mut BytesMut) {
    let flush = async {
        if !wbuf.is_empty() {
            writer.write_all(wbuf).await?;
        }
        writer.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await {
        debug!(%error, "error flushing a closing connection");
    }
    wbuf.clear();
}
