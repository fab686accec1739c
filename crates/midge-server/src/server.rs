//! Starts the listeners and the housekeeping timer, and shuts everything down cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use midge_broker::Broker;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::ServerConfig;
use crate::listener;

/// How often expiries and delayed wills are checked; their resolution is one second in the
/// protocol, so a finer tick buys nothing.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running broker.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: TaskTracker,
}

impl Server {
    /// Binds every listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let broker = Broker::new(config.mqtt.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = TaskTracker::new();
        let mut local_addrs = Vec::new();
        for listener_config in config.effective_listeners() {
            let addr = listener_config.bind;
            let socket = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
            let local = socket.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
            info!(local_addr = %local, allow_anonymous = listener_config.allow_anonymous, "listening (mqtt over tcp)");
            local_addrs.push(local);
            tasks.spawn(listener::accept_loop(
                socket,
                listener_config,
                Arc::clone(&broker),
                tasks.clone(),
                shutdown_rx.clone(),
            ));
        }
        tasks.spawn(housekeeping(Arc::clone(&broker), shutdown_rx));
        Ok(Self { broker, local_addrs, shutdown, tasks })
    }

    /// The addresses the listeners are bound to, in config order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `signal` completes, then shuts down: listeners close, v5 clients are sent
    /// DISCONNECT 0x8B, and connections get [`SHUTDOWN_GRACE`] to finish.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        info!("shutting down");
        let _ = self.shutdown.send(true);
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await.is_err() {
            info!("some connections did not close in time");
        }
        info!("stopped");
    }
}

/// Periodic work: session expiry, delayed wills, retained message expiry.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.tick(Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}
