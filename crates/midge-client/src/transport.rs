//! How bytes reach the broker: plain TCP, TLS over it, or a WebSocket over either; `open`
//! returns the same [`Link`] for each, so nothing above this file changes.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::Error;
use crate::options::ServerAddress;
use crate::tls::Tls;
use crate::websocket;

/// The kinds of transport.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
    /// MQTT over TLS over TCP.
    Tls(Tls),
    /// MQTT over a WebSocket (`ws://`), or over a WebSocket over TLS (`wss://`) when `tls` is
    /// set; `path` is the HTTP request's path, such as `/mqtt`.
    WebSocket {
        /// The request path, with its leading `/`.
        path: String,
        /// TLS under the WebSocket.
        tls: Option<Tls>,
    },
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

/// Opens the transport to `server`, from `local_address` when one is given.
pub(crate) async fn open(server: &ServerAddress, nodelay: bool, local_address: Option<IpAddr>) -> Result<Link, Error> {
    let address = format!("{}:{}", server.host, server.port);
    let connected = match local_address {
        None => TcpStream::connect((server.host.as_str(), server.port)).await,
        Some(local) => connect_from(local, &server.host, server.port).await,
    };
    let stream = connected.map_err(|source| Error::Connect { address: address.clone(), source })?;
    stream.set_nodelay(nodelay).map_err(|source: io::Error| Error::Connect { address: address.clone(), source })?;
    match &server.transport {
        Transport::Tcp => {
            let (reader, writer) = stream.into_split();
            Ok(Link { reader: Box::new(reader), writer: Box::new(writer) })
        }
        Transport::Tls(tls) => {
            let stream = tls_over(stream, tls, &server.host, &address).await?;
            let (reader, writer) = tokio::io::split(stream);
            Ok(Link { reader: Box::new(reader), writer: Box::new(writer) })
        }
        Transport::WebSocket { path, tls: None } => {
            let url = format!("ws://{}{path}", host_port(server));
            let (reader, writer) =
                websocket::upgrade(stream, &url).await.map_err(|source| Error::Connect { address, source })?;
            Ok(Link { reader: Box::new(reader), writer: Box::new(writer) })
        }
        Transport::WebSocket { path, tls: Some(tls) } => {
            let stream = tls_over(stream, tls, &server.host, &address).await?;
            let url = format!("wss://{}{path}", host_port(server));
            let (reader, writer) =
                websocket::upgrade(stream, &url).await.map_err(|source| Error::Connect { address, source })?;
            Ok(Link { reader: Box::new(reader), writer: Box::new(writer) })
        }
    }
}

/// Runs the TLS handshake over `stream` to `host`.
async fn tls_over(
    stream: TcpStream,
    tls: &Tls,
    host: &str,
    address: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::Tls {
        address: address.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.config));
    connector.connect(name, stream).await.map_err(|source| Error::Tls { address: address.to_owned(), source })
}

/// `host:port` for a URL, with an IPv6 address in brackets.
fn host_port(server: &ServerAddress) -> String {
    if server.host.contains(':') && !server.host.starts_with('[') {
        format!("[{}]:{}", server.host, server.port)
    } else {
        format!("{}:{}", server.host, server.port)
    }
}

/// Connects to the first address of `host` in `local`'s family, from a socket bound to `local`
/// (port chosen by the OS).
async fn connect_from(local: IpAddr, host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last_error = None;
    for remote in tokio::net::lookup_host((host, port)).await? {
        if remote.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(local, 0))?;
        match socket.connect(remote).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{host} has no address in the family of {local}"))
    }))
}
