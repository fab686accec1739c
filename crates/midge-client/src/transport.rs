//! How bytes reach the broker. Today plain TCP; TLS and WebSocket become further [`Transport`]
//! variants whose `open` returns the same [`Link`], so nothing above this file changes.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::options::ServerAddress;

/// The kinds of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
}

/// An open connection split into halves, so the client can wait for input while a write is in
/// progress. Boxed trait objects keep the client one type whatever the transport; the cost is
/// one indirect call per read or write syscall, not per message.
pub(crate) struct Link {
    /// Bytes from the broker.
    pub(crate) reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes to the broker.
    pub(crate) writer: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Opens the transport to `server`.
pub(crate) async fn open(server: &ServerAddress, nodelay: bool) -> Result<Link, Error> {
    match server.transport {
        Transport::Tcp => {
            let address = format!("{}:{}", server.host, server.port);
            let stream = TcpStream::connect((server.host.as_str(), server.port))
                .await
                .map_err(|source| Error::Connect { address: address.clone(), source })?;
            stream.set_nodelay(nodelay).map_err(|source: io::Error| Error::Connect { address, source })?;
            let (reader, writer) = stream.into_split();
            Ok(Link { reader: Box::new(reader), writer: Box::new(writer) })
        }
    }
}
