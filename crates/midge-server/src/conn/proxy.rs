//! A connection of a listener behind a PROXY protocol proxy (`enable_proxy_protocol`): its
//! header, read in the connection's own task before anything else (the TLS handshake, the
//! HTTP upgrade, the CONNECT) and within the connect timeout; then the connection rate of the
//! client's address, which the accept loop left for now (`gate.rs`).
//!
//! The header is peeked at and only its own bytes are taken off the socket, so what the client
//! sent behind it (its CONNECT, TLS ClientHello or HTTP request, often in the same segment) is
//! read by the next stage as if the header had never been there. Each peek either finds the
//! header's end, and exactly that many bytes are read, or finds every byte it saw to be the
//! header's (`proxy_header::parse` says so), and those are read, so the next peek waits for
//! new bytes instead of seeing the same ones again. No buffer is taken before the first byte
//! arrives, and at most the header's bound after.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use midge_broker::LimitCounter;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::ListenerContext;
use crate::config::ListenerConfig;
use crate::gate::ConnectionGate;
use crate::limits::{PROXY_V1_MAX_HEADER, PROXY_V2_MAX_HEADER};
use crate::proxy_header::{self, HeaderError, ProxyHeader, ProxyVersion};
use crate::transport::websocket::forwarded::TrustedProxies;

/// The buffer a v2 header is first peeked into: a header with the usual TLVs fits; a longer
/// one grows it, up to [`PROXY_V2_MAX_HEADER`].
const FIRST_PEEK: usize = 256;

/// What the connections of a listener behind a PROXY protocol proxy share.
#[derive(Debug)]
pub struct ProxyListener {
    /// The listener's place in the config, from 1, for the log.
    index: usize,
    version: ProxyVersion,
    /// Whose connection rate is checked once the header has given the client's address.
    gate: Arc<ConnectionGate>,
    /// A websockets listener's `websocket_trusted_proxies`: a header address among them is a
    /// proxy's again (a chain of proxies), whose forwarded header the upgrade reads, so its
    /// connection rate is checked there.
    trusted_proxies: Option<TrustedProxies>,
    /// Headers missing, malformed, too long, not in time or cut short; also says when a refusal
    /// is due in the log (at most one line a second).
    /// Shared with the listener's next settings after a reload, so the count runs on.
    failures: Arc<LimitCounter>,
}

impl ProxyListener {
    /// Listener number `index`'s, when its `enable_proxy_protocol` is set.
    pub fn new(index: usize, config: &ListenerConfig, gate: Arc<ConnectionGate>) -> Option<Self> {
        Some(Self {
            index,
            version: config.enable_proxy_protocol?,
            gate,
            trusted_proxies: config.websocket_trusted_proxies.clone().map(TrustedProxies::new),
            failures: Arc::default(),
        })
    }

    /// The PROXY protocol version its connections start with.
    pub fn version(&self) -> ProxyVersion {
        self.version
    }

    /// The same listener with these settings, counting on from `previous`'s failures (after a
    /// reload).
    pub(crate) fn counting_on(mut self, previous: Option<&Self>) -> Self {
        if let Some(previous) = previous {
            self.failures = Arc::clone(&previous.failures);
        }
        self
    }

    /// Connections closed for their header since the start.
    pub fn header_failures(&self) -> u64 {
        self.failures.get()
    }

    /// Counts a connection refused for its header, and logs it at a bounded rate.
    fn refused(&self, peer: SocketAddr, error: &HeaderError) {
        if let Some(report) = self.failures.hit(Instant::now()) {
            info!(
                listener = self.index, %peer, reason = %error, refused = report.since_last, total = report.total,
                "PROXY header refused, closing"
            );
        }
    }
}

/// Why no header was read.
enum Failure {
    Refused(HeaderError),
    Io(io::Error),
}

/// Reads the header off `socket`, whose peer is `peer` (the proxy), until `deadline` (the
/// connect timeout's end), and returns the client's address: the header's, or `peer` for a
/// header without one (a v2 `LOCAL` health check, v1 `UNKNOWN`). `None` means the connection is
/// over: the header was refused (counted, logged at a bounded rate), cut short or too slow
/// (counted; logged at debug, or as the connect timeout is), the client's address is over its
/// connection rate, or the server is shutting down.
pub(super) async fn client_address(
    socket: &mut TcpStream,
    peer: SocketAddr,
    proxy: &ProxyListener,
    listener: &ListenerContext,
    deadline: tokio::time::Instant,
) -> Option<SocketAddr> {
    let mut shutdown = listener.shutdown.clone();
    let read = tokio::select! {
        read = read_header(socket, proxy.version) => read,
        _ = tokio::time::sleep_until(deadline) => {
            proxy.failures.hit(Instant::now());
            super::connect_timed_out(listener, peer, "PROXY header");
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    let header = match read {
        Ok(header) => header,
        Err(Failure::Refused(error)) => {
            proxy.refused(peer, &error);
            return None;
        }
        Err(Failure::Io(error)) => {
            proxy.failures.hit(Instant::now());
            debug!(%peer, %error, "connection closed before its PROXY header ended");
            return None;
        }
    };
    let client = match header.source {
        Some(source) => {
            debug!(proxy = %peer, client = %source, "PROXY header: the client's address");
            source
        }
        None => {
            debug!(%peer, "PROXY header without a client address (LOCAL or UNKNOWN): the connection's own");
            peer
        }
    };
    let forwarded_later = proxy.trusted_proxies.as_ref().is_some_and(|trusted| trusted.contains(client.ip()));
    if !forwarded_later && !proxy.gate.admit_address(client, Instant::now()) {
        return None;
    }
    Some(client)
}

/// Takes the header's bytes off `socket`, and no more.
///
/// # Cancel safety
/// Not cancel safe: a header read in part is lost (the connection is dropped when it is).
async fn read_header(socket: &mut TcpStream, version: ProxyVersion) -> Result<ProxyHeader, Failure> {
    let (first, max) = match version {
        ProxyVersion::V1 => (PROXY_V1_MAX_HEADER, PROXY_V1_MAX_HEADER),
        ProxyVersion::V2 => (FIRST_PEEK, PROXY_V2_MAX_HEADER),
    };
    // No buffer while a socket that connected sends nothing (slowloris).
    socket.readable().await.map_err(Failure::Io)?;
    let mut buf = vec![0; first];
    let mut have = 0;
    loop {
        let peeked = socket.peek(&mut buf[have..]).await.map_err(Failure::Io)?;
        if peeked == 0 {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let seen = have + peeked;
        match proxy_header::parse(&buf[..seen], version) {
            Ok(Some(header)) => {
                socket.read_exact(&mut buf[have..header.len]).await.map_err(Failure::Io)?;
                return Ok(header);
            }
            Ok(None) => {
                socket.read_exact(&mut buf[have..seen]).await.map_err(Failure::Io)?;
                have = seen;
                if have == buf.len() {
                    // parse refuses a header before it outgrows its bound, so there is room.
                    buf.resize((buf.len() * 2).min(max), 0);
                }
            }
            Err(error) => return Err(Failure::Refused(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{default_listener, ConnectionsConfig};
    use crate::test_support::listener_context;

    fn proxy_listener(version: ProxyVersion, context: &ListenerContext, rate: u32) -> ProxyListener {
        let connections = ConnectionsConfig { max_connections: None, max_connection_rate: rate };
        let gate = ConnectionGate::new(&connections, 1 << 20, Arc::clone(&context.broker));
        let config = ListenerConfig { enable_proxy_protocol: Some(version), ..default_listener(0) };
        ProxyListener::new(1, &config, gate).expect("enabled")
    }

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        (client, server, peer)
    }

    fn in_ten_seconds() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(10)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    /// The header is taken off the socket and nothing more: what follows it in the same write
    /// is the next stage's.
    #[tokio::test]
    async fn only_the_headers_bytes_are_read() {
        let (context, _shutdown) = listener_context();
        let proxy = proxy_listener(ProxyVersion::V1, &context, 0);
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883\r\n\x10\x00rest").await.expect("send");
        let address = client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await;
        assert_eq!(address, Some(addr("203.0.113.7:51234")));
        let mut rest = [0; 6];
        server.read_exact(&mut rest).await.expect("what followed");
        assert_eq!(&rest, b"\x10\x00rest");
        assert_eq!(proxy.header_failures(), 0);
    }

    /// A header that arrives a byte at a time is read whole, and nothing after it.
    #[tokio::test]
    async fn a_header_split_across_writes_is_read_whole() {
        let (context, _shutdown) = listener_context();
        let proxy = proxy_listener(ProxyVersion::V2, &context, 0);
        let (mut client, mut server, peer) = pair().await;
        let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        header.extend_from_slice(&[203, 0, 113, 7, 127, 0, 0, 1, 0xc8, 0x22, 0x07, 0x5b]);
        let writer = tokio::spawn(async move {
            for byte in header {
                client.write_all(&[byte]).await.expect("send");
                client.flush().await.expect("flush");
                tokio::task::yield_now().await;
            }
            client.write_all(b"after").await.expect("send");
            client
        });
        let address = client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await;
        assert_eq!(address, Some(addr("203.0.113.7:51234")));
        let _client = writer.await.expect("writer");
        let mut rest = [0; 5];
        server.read_exact(&mut rest).await.expect("what followed");
        assert_eq!(&rest, b"after");
    }

    /// A connection without the header, or with a bad one, is refused and counted; so is one
    /// that sends nothing in time, or closes first.
    #[tokio::test]
    async fn missing_bad_late_and_cut_short_headers_are_counted() {
        let (context, _shutdown) = listener_context();
        let proxy = proxy_listener(ProxyVersion::V1, &context, 0);
        let oversized = [b"PROXY ".as_slice(), &[b'A'; 200]].concat();
        for (sent, count) in
            [(&b"\x10\x10\x00\x04MQTT"[..], 1), (&b"PROXY TCP4 nonsense here 1 2\r\n"[..], 2), (&oversized[..], 3)]
        {
            let (mut client, mut server, peer) = pair().await;
            client.write_all(sent).await.expect("send");
            assert_eq!(client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await, None);
            assert_eq!(proxy.header_failures(), count);
        }
        let (_client, mut server, peer) = pair().await;
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(client_address(&mut server, peer, &proxy, &context, soon).await, None);
        assert_eq!(proxy.header_failures(), 4);
        assert_eq!(context.broker.stats().limits.connect_timeout.get(), 1, "counted as the connect timeout");
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 ").await.expect("send");
        drop(client);
        assert_eq!(client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await, None);
        assert_eq!(proxy.header_failures(), 5);
    }

    /// The connection rate counts the header's address, not the proxy's: two clients behind one
    /// proxy both get in at 1 a second, the same one twice does not.
    #[tokio::test]
    async fn the_connection_rate_is_the_clients() {
        let (context, _shutdown) = listener_context();
        let proxy = proxy_listener(ProxyVersion::V1, &context, 1);
        let mut admitted = Vec::new();
        for source in ["203.0.113.7", "203.0.113.8", "203.0.113.7"] {
            let (mut client, mut server, peer) = pair().await;
            client.write_all(format!("PROXY TCP4 {source} 127.0.0.1 5000 1883\r\n").as_bytes()).await.expect("send");
            admitted.push(client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await.is_some());
        }
        assert_eq!(admitted, [true, true, false]);
        assert_eq!(context.broker.stats().limits.max_connection_rate.get(), 1);
        assert_eq!(proxy.header_failures(), 0, "a rate refusal is the rate's, not the header's");
    }

    /// A v2 LOCAL header (the proxy's health check) keeps the connection's own address.
    #[tokio::test]
    async fn a_local_header_keeps_the_connections_address() {
        let (context, _shutdown) = listener_context();
        let proxy = proxy_listener(ProxyVersion::V2, &context, 0);
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00").await.expect("send");
        assert_eq!(client_address(&mut server, peer, &proxy, &context, in_ten_seconds()).await, Some(peer));
    }
}
