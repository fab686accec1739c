//! Listening sockets: bind, accept, and hand each connection to its own task.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::ListenerConfig;
use crate::conn::{self as connection, ListenerContext};

/// Accepts connections on `listener` until shutdown, spawning a driver task for each.
pub async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    context: Arc<ListenerContext>,
    tasks: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
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
