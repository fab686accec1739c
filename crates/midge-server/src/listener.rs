//! Listening sockets: bind, accept, and hand each connection to its own task.

use std::net::SocketAddr;
use std::sync::Arc;

use midge_broker::Broker;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::ListenerConfig;
use crate::connection::{self, ListenerContext};
use crate::server::ServerError;

/// Binds every address of listener number `index` (from 1, for messages): one socket per
/// address its `bind` resolves to. With port 0, the first socket picks a free port and the
/// others take the same one, so a name listens on one port whatever its addresses.
pub async fn bind(index: usize, config: &ListenerConfig) -> Result<Vec<(TcpListener, SocketAddr)>, ServerError> {
    let bind = &config.bind;
    let addrs =
        bind.resolve().await.map_err(|source| ServerError::Resolve { listener: index, bind: bind.clone(), source })?;
    let mut sockets: Vec<(TcpListener, SocketAddr)> = Vec::with_capacity(addrs.len());
    for mut addr in addrs {
        if let Some((_, first)) = sockets.first() {
            if addr.port() == 0 {
                addr.set_port(first.port());
            }
        }
        let failed = |source| ServerError::Bind { listener: index, bind: bind.clone(), addr, source };
        let socket = TcpListener::bind(addr).await.map_err(failed)?;
        let local = socket.local_addr().map_err(failed)?;
        sockets.push((socket, local));
    }
    Ok(sockets)
}

/// Accepts connections on `listener` until shutdown, spawning a driver task for each.
pub async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    broker: Arc<Broker>,
    tasks: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let context = Arc::new(ListenerContext {
        broker: Arc::clone(&broker),
        allow_anonymous: config.allow_anonymous,
        shutdown: shutdown.clone(),
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        warn!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    tasks.spawn(connection::serve(stream, peer, Arc::clone(&context)));
                }
                Err(error) => {
                    // Out of file descriptors and the like: log, pause briefly, keep serving.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => {
                info!(bind = %config.bind, "listener closed");
                return;
            }
        }
    }
}
