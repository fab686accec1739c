//! The connection driver: one task per client that owns its transport, reads and decodes
//! packets, hands them to the broker core, and writes what the core produces.
//!
//! # Layout
//! - `connect`: the CONNECT phase: the first packet in time, the broker's checks, the
//!   listener's authenticator, the CONNACK.
//! - `driver`: the connected phase, one hand-written poll over every signal, and each read's
//!   packets handled as one read batch.
//! - `held`: acknowledgements held until the store has what they promise.
//! - `pacing`: a publisher not read while subscribers it feeds are over their bound.
//! - `close`: the last bytes flushed, in bounded time.

mod close;
mod connect;
mod driver;
mod held;
mod pacing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use midge_broker::ports::access::Authorizer;
use midge_broker::ports::auth::Authenticator;
use midge_broker::Broker;
use midge_store::WriterHandle;
use tokio::sync::watch;
use tracing::info;

use crate::transport::Transport;

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
    /// Server shutdown, watched by connections still before CONNECT (connected ones are
    /// kicked through their sessions: [`Broker::shut_down`]).
    pub shutdown: watch::Receiver<bool>,
}

/// Drives one client connection to its end.
///
/// The task's future is what every idle connection costs, so its long-lived part is kept
/// small: the CONNECT phase and the final flush are boxed (each lives only while it runs), and
/// the connected phase waits on one hand-written poll instead of a `select!` that would keep a
/// future per branch (docs/decisions/0004-idle-connection-memory.md).
pub async fn serve<T: Transport>(mut stream: T, peer: SocketAddr, listener: Arc<ListenerContext>) {
    // Used in place, not destructured: moving the parts out would give them a second slot in
    // this future.
    let Some(mut accepted) = Box::pin(connect::accept(&mut stream, peer, &listener)).await else {
        return;
    };
    let (how, reason) = driver::run_connected(
        &mut accepted.connection,
        &mut stream,
        &mut accepted.rbuf,
        &mut accepted.wbuf,
        listener.store.as_ref(),
    )
    .await;
    let connect::Accepted { connection, mut wbuf, .. } = accepted;
    info!(%peer, client_id = %connection.client_id(), reason = %reason, "client disconnected");
    // Settle the session and the will before the socket closes, so a client that reconnects
    // as soon as it sees the close finds the session as this connection left it.
    connection.close(how, Instant::now());
    Box::pin(close::flush_and_close(&mut stream, &mut wbuf)).await;
}
