//! The connection driver: one task per client that owns its transport, reads and decodes
//! packets, hands them to the broker core, and writes what the core produces.
//!
//! # Layout
//! - `proxy`: a listener's PROXY protocol header, read first, within the connect timeout, and
//!   the connection rate of the client's address it gives.
//! - `handshake`: a TLS listener's handshake, within the connect timeout, and the user name a
//!   client certificate gives.
//! - `upgrade`: a WebSocket listener's HTTP upgrade, within the connect timeout.
//! - `connect`: the CONNECT phase: the first packet in time, the broker's checks, the
//!   listener's authenticator, the CONNACK.
//! - `driver`: the connected phase, one hand-written poll over every signal, and each read's
//!   packets handled as one read batch.
//! - `held`: acknowledgements held until the store has what they promise.
//! - `pacing`: a publisher not read while subscribers it feeds are over their bound (an MQTT-SN
//!   client's task uses it too).
//! - `inbound_rate`: a client not read while it is over its inbound rate.
//! - `log`: connects and disconnects logged as mosquitto logs them.
//! - `close`: the last bytes flushed, in bounded time.

mod close;
pub(crate) mod connect;
mod driver;
mod handshake;
mod held;
mod inbound_rate;
mod log;
pub(crate) mod pacing;
mod proxy;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use midge_broker::ports::access::Authorizer;
use midge_broker::ports::auth::Authenticator;
use midge_broker::Broker;
use midge_store::WriterHandle;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::info;

use crate::config::CONNECTION_MESSAGES_TARGET;
use crate::tls::TlsListener;
use crate::transport::Transport;

pub use proxy::ProxyListener;
pub use upgrade::WebSocketListener;

/// What a listener gives its connections; one `Arc` of it per connection task.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// Who may connect through this listener.
    pub authenticator: Arc<dyn Authenticator>,
    /// What its clients may do; `None` allows everything.
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// The store's writer, whose progress releases held acknowledgements; `None` without
    /// persistence.
    pub store: Option<WriterHandle>,
    /// The listener's end (the server's shutdown, or a reload that removes it), watched by
    /// connections still before CONNECT (connected ones are kicked through their sessions:
    /// [`Broker::shut_down`], or the roster).
    pub shutdown: watch::Receiver<bool>,
    /// The listener's connected clients, which a reload that removes the listener kicks.
    pub roster: Arc<crate::roster::Roster>,
    /// `use_username_as_clientid`: a client's id is its authenticated user name.
    pub use_username_as_clientid: bool,
    /// The node's cluster, when it is one (`crate::cluster`): a client's session is claimed
    /// there before it is admitted.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// How the CONNECT phase learns who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// From the CONNECT's User Name and Password, judged by the listener's authenticator, which
    /// is also given the subject of a client certificate presented over TLS.
    Connect {
        /// The verified client certificate's subject (RFC 2253), if the client presented one.
        certificate_subject: Option<Arc<str>>,
    },
    /// From the client's TLS certificate (`use_identity_as_username`,
    /// `use_subject_as_username`): the name taken from it, or why none could be. The
    /// certificate, verified in the handshake, is the proof: the CONNECT's User Name and
    /// Password are ignored and the authenticator is not asked, as mosquitto does not check
    /// passwords on such a listener ("Authentication assumed to be cleared"). A client without a
    /// name is refused with Bad User Name or Password, as mosquitto refuses it.
    Certificate(Result<Arc<str>, &'static str>),
}

/// Drives one client connection to its end. On a listener behind a PROXY protocol proxy
/// (`proxy`), its header comes first, and its address is the client's from then on.
///
/// The task's future is what every idle connection costs, so its long-lived part is kept
/// small: the CONNECT phase and the final flush are boxed (each lives only while it runs), and
/// the connected phase waits on one hand-written poll instead of a `select!` that would keep a
/// future per branch (docs/decisions/0004-idle-connection-memory.md).
pub async fn serve(
    mut socket: TcpStream,
    peer: SocketAddr,
    proxy: Option<Arc<ProxyListener>>,
    listener: Arc<ListenerContext>,
) {
    let deadline = connect_deadline(&listener);
    let Some(peer) = client_address(&mut socket, peer, proxy, &listener, deadline).await else { return };
    serve_from_connect(socket, peer, ClientAuth::Connect { certificate_subject: None }, deadline, listener).await;
}

/// Drives one connection of a TLS listener to its end: its PROXY header first when the listener
/// is behind a proxy, then the handshake, in this task (a slow client holds up no one else) and
/// within the connect timeout, which runs from accept to CONNACK across all of them; then as
/// [`serve`].
pub async fn serve_tls(
    mut socket: TcpStream,
    peer: SocketAddr,
    proxy: Option<Arc<ProxyListener>>,
    tls: Arc<TlsListener>,
    listener: Arc<ListenerContext>,
) {
    let deadline = connect_deadline(&listener);
    let Some(peer) = client_address(&mut socket, peer, proxy, &listener, deadline).await else { return };
    // Boxed: it lives only while it runs (and `tls` is dropped with it).
    let Some((stream, auth)) = Box::pin(handshake::handshake(socket, peer, tls, &listener, deadline)).await else {
        return;
    };
    serve_from_connect(stream, peer, auth, deadline, listener).await;
}

/// Drives one connection of a WebSocket listener to its end: its PROXY header first when the
/// listener is behind a proxy, the TLS handshake on a TLS listener, then the HTTP upgrade (which
/// may give the client's address from a trusted proxy's forwarded header), all in this task and
/// within the connect timeout (which runs from accept to CONNACK across all of them); then as
/// [`serve`], over the WebSocket.
pub async fn serve_websocket(
    mut socket: TcpStream,
    peer: SocketAddr,
    proxy: Option<Arc<ProxyListener>>,
    tls: Option<Arc<TlsListener>>,
    websocket: Arc<WebSocketListener>,
    listener: Arc<ListenerContext>,
) {
    let deadline = connect_deadline(&listener);
    let Some(peer) = client_address(&mut socket, peer, proxy, &listener, deadline).await else { return };
    // Each step boxed: it lives only while it runs.
    match tls {
        None => {
            let upgrade = upgrade::upgrade(socket, peer, &websocket, &listener, deadline);
            let Some((stream, peer)) = Box::pin(upgrade).await else { return };
            drop(websocket);
            let auth = ClientAuth::Connect { certificate_subject: None };
            serve_from_connect(stream, peer, auth, deadline, listener).await;
        }
        Some(tls) => {
            let Some((socket, auth)) = Box::pin(handshake::handshake(socket, peer, tls, &listener, deadline)).await
            else {
                return;
            };
            let upgrade = upgrade::upgrade(socket, peer, &websocket, &listener, deadline);
            let Some((stream, peer)) = Box::pin(upgrade).await else { return };
            drop(websocket);
            // Boxed: this future is sized for its largest branch, and a rustls connection
            // inline here would cost every plain ws connection its size too (about 2.7 KB).
            Box::pin(serve_from_connect(stream, peer, auth, deadline, listener)).await;
        }
    }
}

/// The client's address: the socket's peer, or on a listener behind a PROXY protocol proxy the
/// one its header gives (`proxy::client_address`, boxed: it lives only while it runs). `None`:
/// the connection is over.
async fn client_address(
    socket: &mut TcpStream,
    peer: SocketAddr,
    proxy: Option<Arc<ProxyListener>>,
    listener: &ListenerContext,
    deadline: tokio::time::Instant,
) -> Option<SocketAddr> {
    match proxy {
        None => Some(peer),
        Some(proxy) => Box::pin(proxy::client_address(socket, peer, &proxy, listener, deadline)).await,
    }
}

/// Counts a connection closed for not completing its CONNECT (or TLS handshake) within
/// `connect_timeout_ms`, and logs it at a bounded rate.
fn connect_timed_out(listener: &ListenerContext, peer: SocketAddr, stage: &'static str) {
    let now = Instant::now();
    if let Some(report) = listener.broker.stats().limits.connect_timeout.hit(now) {
        info!(%peer, stage, closed = report.since_last, total = report.total,
            "limit reached: connect_timeout_ms: {stage} not finished within the connect timeout, closing");
    }
}

/// Counts a packet refused for going over `max_packet_size`, logged at a bounded rate.
fn packet_too_large(broker: &Broker, peer: &dyn std::fmt::Display) {
    if let Some(report) = broker.stats().limits.max_packet_size.hit(Instant::now()) {
        info!(%peer, refused = report.since_last, total = report.total, "limit reached: max_packet_size");
    }
}

/// When a connection accepted now must have sent its CONNECT and been answered.
fn connect_deadline(listener: &ListenerContext) -> tokio::time::Instant {
    tokio::time::Instant::now() + listener.broker.limits().connect_timeout()
}

/// The CONNECT phase, the connected phase and the close.
async fn serve_from_connect<T: Transport>(
    mut stream: T,
    peer: SocketAddr,
    auth: ClientAuth,
    deadline: tokio::time::Instant,
    listener: Arc<ListenerContext>,
) {
    // Used in place, not destructured: moving the parts out would give them a second slot in
    // this future.
    let Some(mut accepted) = Box::pin(connect::accept(&mut stream, peer, auth, deadline, &listener)).await else {
        return;
    };
    // In the listener's roster while connected: a reload that removes the listener kicks it.
    let member = listener.roster.join(accepted.connection.kick());
    // A persistent session on a node of a cluster gets its QoS 1/2 messages from JetStream
    // while its client is here.
    let feed = listener.cluster.as_deref().and_then(|cluster| cluster.feed(&accepted.connection));
    let (how, reason) = driver::run_connected(
        &mut accepted.connection,
        &mut stream,
        &mut accepted.rbuf,
        &mut accepted.wbuf,
        listener.store.as_ref(),
        listener.cluster.as_deref(),
    )
    .await;
    drop(feed);
    drop(member);
    let connect::Accepted { connection, mut wbuf, .. } = accepted;
    info!(target: CONNECTION_MESSAGES_TARGET, %peer, client_id = %connection.client_id(), reason = %reason, "{}", log::disconnected(connection.client_id(), how, &reason));
    // Settle the session and the will before the socket closes, so a client that reconnects
    // as soon as it sees the close finds the session as this connection left it.
    connection.close(how, Instant::now());
    Box::pin(close::flush_and_close(&mut stream, &mut wbuf)).await;
}
