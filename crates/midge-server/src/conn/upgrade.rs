//! A WebSocket listener's HTTP upgrade, run in the connection's own task within the connect
//! timeout (after the TLS handshake on a TLS listener), and what the listener counts of it.
//!
//! The request is read into a buffer of at most [`WEBSOCKET_MAX_REQUEST`] bytes, which
//! lives only while the upgrade runs; bytes read past the request are handed to the WebSocket
//! as the start of the client's frames. A refusal is answered with its HTTP status and reason,
//! then the connection is closed as gracefully as any other (`close.rs`).
//!
//! A request from one of the listener's trusted proxies (`websocket_trusted_proxies`) gives the
//! client's address from its forwarded header; the connection rate of that address, which the
//! accept loop left for now, is checked before the 101 is sent.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use midge_broker::LimitCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use super::close::flush_and_close;
use super::ListenerContext;
use crate::config::ListenerConfig;
use crate::gate::ConnectionGate;
use crate::limits::WEBSOCKET_MAX_REQUEST;
use crate::transport::websocket::forwarded::TrustedProxies;
use crate::transport::websocket::handshake::{check_request, Forwarding, Refusal, UpgradePolicy};
use crate::transport::websocket::WebSocket;
use crate::transport::Transport;

/// The buffer an upgrade request is first read into: a browser's request fits; a longer one
/// grows it, up to the limit.
const FIRST_READ: usize = 1024;

/// What a WebSocket listener's connections share: its upgrade policy, its frame limit, and its
/// count of upgrades that failed.
#[derive(Debug)]
pub struct WebSocketListener {
    /// The listener's place in the config, from 1, for the log.
    index: usize,
    policy: UpgradePolicy,
    /// Frames and data messages over this many payload bytes are refused with 1009.
    max_frame_size: u64,
    /// Upgrades refused with an HTTP status, or not finished (closed, timed out); also says
    /// when a refusal is due in the log (at most one line a second).
    /// Shared with the listener's next settings after a reload, so the count runs on.
    failures: Arc<LimitCounter>,
    /// Whose connection rate is checked once a trusted proxy's header has given the client's
    /// address.
    gate: Arc<ConnectionGate>,
}

impl WebSocketListener {
    /// The settings of listener number `index` (`websocket_path`, `websocket_origins`,
    /// `websocket_max_frame_size`, `websocket_trusted_proxies`, `websocket_forwarded_header`),
    /// with `max_packet_size` the broker's and `gate` the limits every listener shares.
    pub fn new(index: usize, config: &ListenerConfig, max_packet_size: u32, gate: Arc<ConnectionGate>) -> Self {
        let forwarded = config.websocket_trusted_proxies.clone().map(|ranges| Forwarding {
            trusted: TrustedProxies::new(ranges),
            header: config.websocket_forwarded_header.unwrap_or_default(),
        });
        Self {
            index,
            policy: UpgradePolicy {
                path: config.websocket_path.clone(),
                origins: config.websocket_origins.clone(),
                forwarded,
            },
            max_frame_size: u64::from(config.max_frame_size(max_packet_size)),
            failures: Arc::default(),
            gate,
        }
    }

    /// Whether `ip` is one of its trusted proxies, whose connections' addresses their forwarded
    /// header gives (so the accept loop leaves their connection rate to the upgrade).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.policy.forwarded.as_ref().is_some_and(|forwarding| forwarding.trusted.contains(ip))
    }

    /// The same listener with these settings, counting on from `previous`'s failures (after a
    /// reload).
    pub(crate) fn counting_on(mut self, previous: Option<&Self>) -> Self {
        if let Some(previous) = previous {
            self.failures = Arc::clone(&previous.failures);
        }
        self
    }

    /// Upgrades refused or not finished since the start.
    pub fn upgrade_failures(&self) -> u64 {
        self.failures.get()
    }

    /// Counts a refusal, and logs it at a bounded rate.
    fn refused(&self, peer: SocketAddr, refusal: Refusal) {
        if let Some(report) = self.failures.hit(Instant::now()) {
            info!(
                listener = self.index, %peer, status = refusal.status, reason = refusal.reason,
                refused = report.since_last, total = report.total,
                "WebSocket upgrade refused: {refusal}"
            );
        }
    }
}

/// Why an upgrade did not happen.
enum Failure {
    Refused(Refusal),
    Io(io::Error),
    /// The client's address, from a trusted proxy's header, is over its connection rate
    /// (counted and logged by the gate).
    OverRate,
}

/// Reads the upgrade request and answers it until `deadline` (the connect timeout's end);
/// returns the WebSocket and the client's address (`peer`, or what a trusted proxy's header
/// says). `None` means the connection is over: the request was refused (answered, counted,
/// logged at a bounded rate), cut short or too slow (counted; logged at debug, or as the
/// connect timeout is), its client is over its connection rate, or the server is shutting
/// down.
pub(super) async fn upgrade<T: Transport>(
    mut stream: T,
    peer: SocketAddr,
    websocket: &WebSocketListener,
    listener: &ListenerContext,
    deadline: tokio::time::Instant,
) -> Option<(WebSocket<T>, SocketAddr)> {
    let mut shutdown = listener.shutdown.clone();
    let mut request = BytesMut::with_capacity(FIRST_READ);
    let outcome = tokio::select! {
        outcome = read_and_answer(&mut stream, &mut request, peer, websocket) => outcome,
        _ = tokio::time::sleep_until(deadline) => {
            websocket.failures.hit(Instant::now());
            super::connect_timed_out(listener, peer, "WebSocket upgrade");
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    match outcome {
        Ok((request_len, client)) => {
            let early = request.split_off(request_len);
            Some((WebSocket::new(stream, early, websocket.max_frame_size), client))
        }
        Err(Failure::Refused(refusal)) => {
            websocket.refused(peer, refusal);
            let mut response = BytesMut::from(refusal.response().as_bytes());
            flush_and_close(&mut stream, &mut response).await;
            None
        }
        Err(Failure::Io(error)) => {
            websocket.failures.hit(Instant::now());
            debug!(%peer, %error, "WebSocket upgrade not finished");
            None
        }
        Err(Failure::OverRate) => None,
    }
}

/// Reads until the request is complete, then answers it with 101; returns the request's
/// length and the client's address. At most [`WEBSOCKET_MAX_REQUEST`] bytes are read.
///
/// # Cancel safety
/// Not cancel safe: a request read in part is lost (the connection is dropped when it is).
async fn read_and_answer<T: Transport>(
    stream: &mut T,
    request: &mut BytesMut,
    peer: SocketAddr,
    websocket: &WebSocketListener,
) -> Result<(usize, SocketAddr), Failure> {
    loop {
        let room = WEBSOCKET_MAX_REQUEST - request.len();
        let read = stream.read_buf(&mut (&mut *request).limit(room)).await.map_err(Failure::Io)?;
        if read == 0 {
            let ended = io::Error::new(io::ErrorKind::UnexpectedEof, "closed before its upgrade request ended");
            return Err(Failure::Io(ended));
        }
        match check_request(request, &websocket.policy, peer) {
            Ok(Some(upgrade)) => {
                let client = match upgrade.client {
                    None => peer,
                    Some(client) => {
                        debug!(proxy = %peer, %client, "WebSocket upgrade: the client's address from its proxy's header");
                        if !websocket.gate.admit_address(client, Instant::now()) {
                            return Err(Failure::OverRate);
                        }
                        client
                    }
                };
                stream.write_all(upgrade.response().as_bytes()).await.map_err(Failure::Io)?;
                stream.flush().await.map_err(Failure::Io)?;
                return Ok((upgrade.request_len, client));
            }
            Ok(None) => {}
            Err(refusal) => return Err(Failure::Refused(refusal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use midge_broker::{Broker, Limits};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::{default_listener, ConnectionsConfig, ListenerProtocol};
    use crate::test_support::listener_context;

    const REQUEST: &str = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn websocket_listener(path: Option<&str>) -> WebSocketListener {
        let config = ListenerConfig {
            protocol: ListenerProtocol::Websockets,
            websocket_path: path.map(str::to_owned),
            ..default_listener(0)
        };
        let gate = ConnectionGate::new(&ConnectionsConfig::default(), 1 << 20, Broker::new(Limits::default()));
        WebSocketListener::new(1, &config, 1 << 20, gate)
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

    /// Frames a client sends right behind its request, before the 101, are the start of its
    /// stream: kept, not lost with the request's buffer.
    #[tokio::test]
    async fn frames_sent_with_the_request_are_the_streams_start() {
        let (context, _shutdown) = listener_context();
        let websocket = websocket_listener(Some("/mqtt"));
        let (mut client, server, peer) = pair().await;
        let pingreq_frame = [0x82, 0x82, 0, 0, 0, 0, 0xc0, 0x00];
        client.write_all(&[REQUEST.as_bytes(), &pingreq_frame].concat()).await.expect("send");
        let (mut ws, address) = upgrade(server, peer, &websocket, &context, in_ten_seconds()).await.expect("upgraded");
        assert_eq!(address, peer, "no trusted proxies: the peer is the client");
        let mut response = vec![0; 256];
        let n = client.read(&mut response).await.expect("the 101");
        assert!(response[..n].starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        let mut data = [0u8; 16];
        let n = ws.read(&mut data).await.expect("the early frame");
        assert_eq!(&data[..n], [0xc0, 0x00]);
        assert_eq!(websocket.upgrade_failures(), 0);
    }

    /// A refused request is answered with its status and counted.
    #[tokio::test]
    async fn a_refused_request_is_answered_and_counted() {
        let (context, _shutdown) = listener_context();
        let websocket = websocket_listener(Some("/mqtt"));
        let (mut client, server, peer) = pair().await;
        client.write_all(REQUEST.replace("/mqtt", "/other").as_bytes()).await.expect("send");
        // The client reads to the end and closes, which ends the server's graceful close.
        let read = async move {
            let mut response = String::new();
            client.read_to_string(&mut response).await.expect("the response, then the end");
            response
        };
        let (upgraded, response) = tokio::join!(upgrade(server, peer, &websocket, &context, in_ten_seconds()), read);
        assert!(upgraded.is_none());
        assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nno WebSocket at this path\n"), "{response}");
        assert_eq!(websocket.upgrade_failures(), 1);
    }

    /// A client that never finishes its request is closed at the deadline and counted; so is
    /// one that closes before it has.
    #[tokio::test]
    async fn an_unfinished_request_is_counted() {
        let (context, _shutdown) = listener_context();
        let websocket = websocket_listener(None);
        let (mut client, server, peer) = pair().await;
        client.write_all(&REQUEST.as_bytes()[..20]).await.expect("send");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        assert!(upgrade(server, peer, &websocket, &context, deadline).await.is_none());
        assert_eq!(websocket.upgrade_failures(), 1);
        assert_eq!(context.broker.stats().limits.connect_timeout.get(), 1, "counted as the connect timeout");
        let (client, server, peer) = pair().await;
        drop(client);
        assert!(upgrade(server, peer, &websocket, &context, in_ten_seconds()).await.is_none());
        assert_eq!(websocket.upgrade_failures(), 2);
    }
}
