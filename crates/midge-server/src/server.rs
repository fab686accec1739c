//! Starts the listeners and the housekeeping timer, and shuts everything down cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use midge_broker::{Broker, KEEP_ALIVE_SWEEP};
use midge_store::{DiskStore, Writer};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::bind::BindAddr;
use crate::config::ServerConfig;
use crate::gate::{raise_open_files_limit, ConnectionGate};
use crate::limits::{HOUSEKEEPING_INTERVAL, SHUTDOWN_GRACE, STORE_SIZE_CHECK};
use crate::listener::{BoundListener, ListenerHandle, ListenerServices, Listeners};
pub use crate::reloader::{LogControl, ReloadError, ReloadOptions, ReloadReport, ReloadRequests, Reloader};
use crate::reloader::{ReloadState, ReloaderInner};

/// Why the server could not start.
///
/// Each variant's cause is its `source()`, not part of its message: `midge serve` prints the
/// whole chain (`{error:#}`), so a cause in both would be printed twice.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or read; the store's error names the directory and what
    /// to do.
    #[error("cannot use the store")]
    Store(#[from] midge_store::StoreError),
    /// A setting of `[mqtt]` is out of range (a config built in code; files are checked when
    /// they are read).
    #[error("[mqtt] {0}")]
    Limits(midge_broker::LimitError),
    /// A listener's host name did not resolve.
    #[error("listener {listener} (bind = \"{bind}\"): cannot resolve the host name")]
    Resolve {
        /// The listener's place in the config, from 1.
        listener: usize,
        /// Its `bind` as written.
        bind: BindAddr,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// A listener's security settings name a file that cannot be used.
    #[error("listener {listener}")]
    Security {
        /// The listener's place in the config, from 1.
        listener: usize,
        /// What is wrong, naming the file.
        source: crate::auth::SecurityError,
    },
    /// A listener's TLS settings cannot be used; the cause names the key and the file.
    #[error("listener {listener}: TLS")]
    Tls {
        /// The listener's place in the config, from 1.
        listener: usize,
        /// What is wrong, naming the file.
        source: crate::tls::TlsError,
    },
    /// A listener's settings cannot be used (a config built in code; files are checked when
    /// they are read).
    #[error("listener {listener}: {problem}")]
    Listener {
        /// The listener's place in the config, from 1.
        listener: usize,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// The node could not join its cluster (`[cluster]`).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A listener could not bind one of its addresses.
    #[error("listener {listener} (bind = \"{bind}\"): cannot listen on {addr}")]
    Bind {
        /// The listener's place in the config, from 1.
        listener: usize,
        /// Its `bind` as written.
        bind: BindAddr,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running broker.
pub struct Server {
    broker: Arc<Broker>,
    /// Every listener started, in order. A closed one stays here: shutdown waits for the
    /// connections it accepted. Shared with the [`Reloader`], which adds and closes them.
    listeners: Arc<Listeners>,
    /// Runs reloads, one at a time.
    reloader: Reloader,
    shutdown: watch::Sender<bool>,
    /// The housekeeping task.
    tasks: TaskTracker,
    /// The store writer, flushed and closed at shutdown.
    writer: Option<Writer<DiskStore>>,
    /// Whether it serves, for HTTP listeners' `/readyz`.
    readiness: Arc<crate::http::Readiness>,
    /// The bridges to other brokers; a reload changes them.
    bridges: Arc<tokio::sync::Mutex<crate::bridge::Bridges>>,
    /// This node's part in a cluster, when it is one.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("listeners", &self.listeners).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds every listener, opens the store, and starts serving. A reload reads no file
    /// again: it re-reads the listeners' files ([`Server::start_with`] reads a config file).
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        Self::start_with(config, ReloadOptions::default()).await
    }

    /// [`Server::start`], with what a reload reads again (`options.source`, the file `config`
    /// came from) and applies the log settings with (`options.log`).
    pub async fn start_with(config: ServerConfig, options: ReloadOptions) -> Result<Self, ServerError> {
        // Listeners first: a taken port or a name that does not resolve must stop the start
        // before the store's directory is created, locked or repaired. Clients that connect
        // meanwhile wait in the listen backlog until the accept loops start.
        let effective = config.effective_listeners();
        let mut bound = Vec::new();
        for (index, listener_config) in effective.iter().cloned().enumerate() {
            bound.push(BoundListener::bind(index + 1, listener_config).await?);
        }
        let (broker, writer) = open_broker(&config)?;
        broker.set_client_events(config.sys.events);
        // Before any client: the cluster's retained messages load, and every session's
        // filters reach the other nodes.
        let cluster = match &config.cluster {
            Some(cluster) => Some(Arc::new(crate::cluster::Cluster::start(cluster, Arc::clone(&broker)).await?)),
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let store = writer.as_ref().map(Writer::handle);
        let open_files = usize::try_from(raise_open_files_limit()).unwrap_or(usize::MAX);
        let gate = ConnectionGate::new(&config.connections, open_files, Arc::clone(&broker));
        info!(
            max_connections = gate.max_connections(),
            open_files,
            max_connection_rate = config.connections.max_connection_rate,
            "connection limits"
        );
        let readiness = Arc::new(crate::http::Readiness::default());
        let probe = store.clone().map(|writer| crate::sys::StoreProbe { writer, dir: config.store.data_dir.clone() });
        let metrics = Arc::new(crate::metrics::Source::new(probe.clone()));
        let requests = ReloadRequests::default();
        let services = ListenerServices {
            broker: Arc::clone(&broker),
            gate,
            store,
            readiness: Arc::clone(&readiness),
            metrics: Arc::clone(&metrics),
            reload: Some(requests.clone()),
            cluster: cluster.clone(),
        };
        let listeners = Arc::new(Listeners::default());
        let mut running = Vec::new();
        for listener in bound {
            let handle = Arc::new(listener.start(&services));
            listeners.push(Arc::clone(&handle));
            running.push(handle);
        }
        metrics.set_listeners(&listeners);
        readiness.set(true);
        let tasks = TaskTracker::new();
        if services.store.is_some() && config.store.max_size_mb > 0 {
            let max_bytes = config.store.max_size_mb.saturating_mul(1 << 20);
            let dir = config.store.data_dir.clone();
            tasks.spawn(watch_store_size(Arc::clone(&broker), dir, max_bytes, shutdown_rx.clone()));
        }
        let (sys, sys_rx) = watch::channel(config.sys);
        tasks.spawn(crate::sys::run(Arc::clone(&broker), sys_rx, probe, cluster.clone(), shutdown_rx.clone()));
        tasks.spawn(housekeeping(Arc::clone(&broker), shutdown_rx));
        let bridge_context =
            crate::bridge::BridgeContext { broker: Arc::clone(&broker), store: services.store.clone() };
        let bridges = Arc::new(tokio::sync::Mutex::new(crate::bridge::Bridges::start(&config.bridge, bridge_context)));
        let next_index = running.len() + 1;
        let state = ReloadState { config, running, next_index, sys, shutting_down: false };
        let reloader = Reloader {
            inner: Arc::new(ReloaderInner {
                state: tokio::sync::Mutex::new(state),
                source: std::sync::Mutex::new(options.source),
                log: options.log,
                services,
                listeners: Arc::clone(&listeners),
                bridges: Arc::clone(&bridges),
            }),
        };
        requests.set(&reloader);
        Ok(Self { broker, listeners, reloader, shutdown, tasks, writer, readiness, bridges, cluster })
    }

    /// Every listener started, in order (closed ones too, while they have connections).
    pub fn listeners(&self) -> Vec<Arc<ListenerHandle>> {
        self.listeners.snapshot()
    }

    /// The addresses the open listeners are bound to, in order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.open().iter().flat_map(|listener| listener.local_addrs().to_vec()).collect()
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// What reloads the config while the server runs (on SIGHUP, or `POST /api/v1/reload`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `signal` completes, then shuts down: listeners close, v5 clients are sent
    /// DISCONNECT 0x8B, and connections get [`SHUTDOWN_GRACE`] to finish.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        info!("shutting down");
        self.readiness.set(false);
        // After a reload in progress, and before any other: none adds a listener from now on.
        self.reloader.inner.state.lock().await.shutting_down = true;
        let listeners = self.listeners.snapshot();
        for listener in &listeners {
            listener.close().await;
        }
        for listener in &listeners {
            listener.shut_down();
        }
        // Bridges next, while the core still runs: each detaches its session (what is queued
        // for its remote stays in the store) and tells its remote it is going.
        self.bridges.lock().await.stop().await;
        // Housekeeping and connections still before CONNECT watch the channel; connected
        // clients are kicked through their sessions.
        let _ = self.shutdown.send(true);
        self.broker.shut_down();
        self.tasks.close();
        let ended = async {
            self.tasks.wait().await;
            for listener in &listeners {
                listener.connections_ended().await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, ended).await.is_err() {
            info!("some connections did not close in time");
        }
        // After the clients: their wills go to the other nodes too.
        if let Some(cluster) = &self.cluster {
            cluster.stop().await;
        }
        let stats = self.broker.stats().snapshot();
        info!(
            connections = stats.connections_accepted,
            received = stats.messages_received,
            sent = stats.messages_sent,
            dropped = stats.messages_dropped,
            wills = stats.wills_published,
            "totals since start"
        );
        let refused = stats.limits;
        info!(
            max_connections = refused.max_connections,
            listener_max_connections = refused.listener_max_connections,
            max_connection_rate = refused.max_connection_rate,
            max_sessions = refused.max_sessions,
            inbound_rate = refused.inbound_rate,
            max_subscriptions_per_client = refused.max_subscriptions_per_client,
            max_retained = refused.max_retained,
            topic_limits = refused.topic_limits,
            connect_timeout = refused.connect_timeout,
            max_packet_size = refused.max_packet_size,
            "limits reached since start"
        );
        if let Some(writer) = self.writer {
            // Commits and fsyncs what is pending, whatever the sync policy.
            match tokio::task::spawn_blocking(move || writer.shutdown()).await {
                Ok(Ok(_)) => info!("store closed"),
                Ok(Err(error)) => tracing::error!(%error, "store writer failed"),
                Err(error) => tracing::error!(%error, "store writer did not shut down"),
            }
        }
        info!("stopped");
    }
}

/// Builds the broker: with persistence, opens the store, repairs what a crash left half done,
/// starts the writer and restores the stored state.
fn open_broker(config: &ServerConfig) -> Result<(Arc<Broker>, Option<Writer<DiskStore>>), ServerError> {
    let limits = config.mqtt.limits().map_err(ServerError::Limits)?;
    if !config.store.persistence {
        info!("persistence is off: state is kept in memory only");
        return Ok((Broker::new(limits), None));
    }
    let dir = &config.store.data_dir;
    let (broker, writer, restored) = crate::store::open(dir, limits, config.store.sync.policy())?;
    info!(
        data_dir = %dir.display(), sync = ?config.store.sync, sessions = restored.sessions,
        subscriptions = restored.subscriptions, queued = restored.deliveries, retained = restored.retained,
        "store opened"
    );
    Ok((broker, Some(writer)))
}

/// Measures the store against `[store] max_size_mb` every [`STORE_SIZE_CHECK`] and tells the
/// broker whether it is over (offline queues then take nothing new); logs each change.
async fn watch_store_size(
    broker: Arc<Broker>,
    dir: std::path::PathBuf,
    max_bytes: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(STORE_SIZE_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let measured = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || midge_store::disk_usage(&dir)).await
        };
        let used = match measured {
            Ok(Ok(used)) => used,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot measure the store's size; its bound is not enforced meanwhile");
                continue;
            }
            Err(_) => continue, // the runtime is shutting down
        };
        let full = used >= max_bytes;
        match (broker.set_store_full(full), full) {
            (false, true) => tracing::warn!(
                used_bytes = used,
                max_bytes,
                "store over [store] max_size_mb: offline queues take no new messages (dropped, counted)"
            ),
            (true, false) => info!(used_bytes = used, max_bytes, "store back under [store] max_size_mb"),
            _ => {}
        }
    }
}

/// Periodic work: session expiry, delayed wills, retained message expiry, and every
/// connection's keep alive (swept together rather than a timer per connection).
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE_SWEEP);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.tick(Instant::now()),
            _ = keep_alive.tick() => {
                let kicked = broker.sweep_keep_alives(Instant::now());
                if kicked > 0 {
                    tracing::debug!(kicked, "keep alive: closing silent connections");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::test_support::report;

    #[test]
    fn a_report_prints_each_cause_once() {
        let in_use = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let os_text = in_use().to_string();
        let bind = ServerError::Bind {
            listener: 2,
            bind: BindAddr::parse("localhost").unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            source: in_use(),
        };
        assert_eq!(
            report(&bind),
            format!("listener 2 (bind = \"localhost\"): cannot listen on 127.0.0.1:1883: {os_text}")
        );
        let store = ServerError::Store(midge_store::StoreError::Io { path: PathBuf::from("/d"), error: in_use() });
        assert_eq!(report(&store).matches(&os_text).count(), 1, "{}", report(&store));
    }
}
