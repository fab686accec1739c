//! Bridges: this broker as a client of other brokers, carrying topics out, in or both ways
//! (`[[bridge]]`, mosquitto's `connection` sections; docs/bridges.md).
//!
//! A bridge is a relay between two MQTT sessions that keep their packet ids: its session in
//! this broker's core (`local.rs`), which holds what goes out durably until the remote has
//! acknowledged it, and its session at the remote (`remote.rs`, `midge-client` in relay mode),
//! which does the same for what comes in. `link.rs` relays one connection's packets; `run.rs`
//! is a bridge's life (connect, back off, start types, state notifications); `topics.rs`
//! renames topics as mosquitto's topic lines say. This module starts, stops and replaces
//! bridges as the config says.
//!
//! # Layout
//! - `topics`: the topic lines, sans-I/O.
//! - `local`: the bridge's client of the core, and the egress that writes to the remote.
//! - `remote`: connecting to the remote (addresses, failover, try_private, TLS, will).
//! - `link`: a connected link's relay loop.
//! - `run`: one bridge's task.

mod link;
mod local;
mod remote;
mod run;
mod topics;

use std::time::Duration;

pub use run::BridgeContext;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::BridgeConfig;

/// A bridge's TLS settings loaded as the bridge loads them when it connects (its CA,
/// certificate and key files read and parsed): `midge serve --check` calls it too.
pub fn load_tls(tls: &crate::config::BridgeTls) -> Result<midge_client::Tls, midge_client::TlsError> {
    midge_client::Tls::new(&remote::tls_options(tls))
}

/// How long stopping waits for bridges to say goodbye to their remotes.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The running bridges.
#[derive(Debug)]
pub struct Bridges {
    context: BridgeContext,
    running: Vec<Running>,
    tasks: TaskTracker,
}

/// A running bridge: its config (to tell a change) and how to stop it.
#[derive(Debug)]
struct Running {
    config: BridgeConfig,
    stop: watch::Sender<bool>,
}

impl Bridges {
    /// Starts every bridge of `configs`.
    pub fn start(configs: &[BridgeConfig], context: BridgeContext) -> Self {
        let mut bridges = Self { context, running: Vec::new(), tasks: TaskTracker::new() };
        for config in configs {
            bridges.spawn(config.clone());
        }
        bridges
    }

    /// Makes the running bridges those of `configs` (a reload): a bridge whose config is
    /// unchanged keeps its connection and queue; a changed one is stopped and started again
    /// (its session, and so its queue, is kept when its local client id is the same); a removed
    /// one is stopped (its session stays, with its queue, until a bridge of the same local
    /// client id comes back); a new one is started. Returns what changed, for the log.
    pub fn apply(&mut self, configs: &[BridgeConfig]) -> Vec<String> {
        let mut changes = Vec::new();
        let mut kept = Vec::new();
        for running in std::mem::take(&mut self.running) {
            match configs.iter().find(|config| config.name == running.config.name) {
                Some(config) if *config == running.config => kept.push(running),
                Some(_) => {
                    let _ = running.stop.send(true);
                    changes.push(format!("bridge {} changed: restarted", running.config.name));
                }
                None => {
                    let _ = running.stop.send(true);
                    changes.push(format!("bridge {} removed", running.config.name));
                }
            }
        }
        self.running = kept;
        for config in configs {
            if !self.running.iter().any(|running| running.config.name == config.name) {
                if !changes.iter().any(|change| change.starts_with(&format!("bridge {} changed", config.name))) {
                    changes.push(format!("bridge {} added", config.name));
                }
                self.spawn(config.clone());
            }
        }
        changes
    }

    /// Stops every bridge (at shutdown): each tells its remote it is going and detaches its
    /// session, within [`STOP_GRACE`].
    pub async fn stop(&mut self) {
        for running in self.running.drain(..) {
            let _ = running.stop.send(true);
        }
        self.tasks.close();
        if tokio::time::timeout(STOP_GRACE, self.tasks.wait()).await.is_err() {
            info!("some bridges did not stop in time");
        }
    }

    /// The names of the running bridges.
    pub fn names(&self) -> Vec<String> {
        self.running.iter().map(|running| running.config.name.clone()).collect()
    }

    fn spawn(&mut self, config: BridgeConfig) {
        let (stop, stopped) = watch::channel(false);
        info!(bridge = %config.name, addresses = ?config.addresses, "bridge starting");
        self.running.push(Running { config: config.clone(), stop });
        self.tasks.spawn(run::run(config, self.context.clone(), stopped));
    }
}
