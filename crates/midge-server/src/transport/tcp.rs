//! A plain TCP socket: readiness and reads come from the kernel.

use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::Transport;

impl Transport for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }
}
