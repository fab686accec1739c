//! Carries out a reload (SIGHUP, `POST /api/v1/reload`): reads the config again, checks it
//! whole, then applies the [`Plan`](crate::reload::Plan) `crate::reload` makes of it.
//!
//! A reload is all or nothing up to the point where it applies anything: the config is parsed
//! and checked, every listener's files (passwords, ACLs, JWT keys, certificates, keys) are
//! loaded, new listeners are bound, and new log destinations opened, before any of it is used.
//! If one step fails, nothing has changed: the sockets just bound are closed again and the
//! error names the file (and line) it can. Only then are listeners removed, changed and added,
//! and the live settings swapped. Reloads run one at a time.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use midge_codec::ReasonCode;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{ConfigError, ConfigSource, ListenerConfig, LogConfig, ServerConfig, SysConfig};
use crate::listener::{BoundListener, ListenerFiles, ListenerHandle, ListenerServices, Listeners};
use crate::reload::{listener_keys, plan, ListenerStep};
use crate::server::ServerError;

/// What a reload reads again and how it applies what it cannot do itself; given to
/// [`Server::start_with`](crate::Server::start_with).
#[derive(Debug, Default)]
pub struct ReloadOptions {
    /// The config file and its overrides; `None`: the config the server started with (a
    /// reload then re-reads only the listeners' files).
    pub source: Option<ConfigSource>,
    /// Applies `[log]`; `None`: a change of `[log]` takes effect after a restart.
    pub log: Option<Arc<dyn LogControl>>,
}

/// Applies `[log]` settings (the binary owns the log, the server library does not).
pub trait LogControl: Send + Sync + std::fmt::Debug {
    /// Checks `config` and opens what it names (a log file, the syslog socket) without using
    /// it yet; returns what swaps it in. An error says why it cannot be used, and changes
    /// nothing.
    fn prepare(&self, config: &LogConfig) -> Result<Box<dyn FnOnce() + Send>, String>;
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file cannot be read or is not valid; the cause names the file and line.
    #[error("the config file")]
    Config(#[source] ConfigError),
    /// A listener's files cannot be used, or a new listener cannot be bound; the cause names
    /// the listener and the file or address.
    #[error("the listeners")]
    Listener(#[source] ServerError),
    /// `[log]` cannot be used (a log file that cannot be opened, say).
    #[error("[log]: {0}")]
    Log(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What a reload applied, line by line as it logged them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Each change applied: a listener added, changed or removed, a log or `$SYS` setting.
    pub changes: Vec<String>,
    /// Each setting that changed in the file but takes effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// Runs reloads of a running server ([`crate::Server::reloader`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub(crate) inner: Arc<ReloaderInner>,
}

#[derive(Debug)]
pub(crate) struct ReloaderInner {
    /// What the server runs with; locked for a whole reload, so reloads run one at a time.
    pub(crate) state: tokio::sync::Mutex<ReloadState>,
    /// Where the config is read from (a lock of its own: a load fixes the detected format).
    pub(crate) source: Mutex<Option<ConfigSource>>,
    pub(crate) log: Option<Arc<dyn LogControl>>,
    /// What new listeners are started with.
    pub(crate) services: ListenerServices,
    /// Every listener started, where shutdown finds them.
    pub(crate) listeners: Arc<Listeners>,
    /// The bridges, made those of the new config by each reload.
    pub(crate) bridges: Arc<tokio::sync::Mutex<crate::bridge::Bridges>>,
}

/// What the server runs with now.
#[derive(Debug)]
pub(crate) struct ReloadState {
    /// The config running: the last one applied, with the settings that take a restart as the
    /// server started with them (so each reload says again that they wait for one).
    pub(crate) config: ServerConfig,
    /// The listeners running, in the order of `config`'s effective listeners.
    pub(crate) running: Vec<Arc<ListenerHandle>>,
    /// The number the next listener added gets.
    pub(crate) next_index: usize,
    /// The `$SYS` task's settings.
    pub(crate) sys: watch::Sender<SysConfig>,
    /// Set once the server shuts down: no reload runs after that.
    pub(crate) shutting_down: bool,
}

impl Reloader {
    /// Reads the config again and applies it: what changed is logged once each (info), what
    /// takes a restart is logged as such (warn); or, when anything in it cannot be used,
    /// nothing changes and the error is logged, naming the file (and line) where known.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = self.run().await;
        match &result {
            Ok(report) if report.changes.is_empty() && report.restart_needed.is_empty() => {
                info!("reload: config unchanged; the listeners' files were read again")
            }
            Ok(report) => {
                info!(changes = report.changes.len(), restart_needed = report.restart_needed.len(), "reload: applied")
            }
            Err(error) => tracing::error!(
                error = %crate::error_chain(error),
                "reload failed: nothing changed, the running config stays"
            ),
        }
        result
    }

    async fn run(&self) -> Result<ReloadReport, ReloadError> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if state.shutting_down {
            return Err(ReloadError::ShuttingDown);
        }
        let new = {
            let mut source = inner.source.lock().unwrap_or_else(PoisonError::into_inner);
            match source.as_mut() {
                Some(source) => source.load().map_err(ReloadError::Config)?.config,
                None => state.config.clone(),
            }
        };
        let running: Vec<ListenerConfig> =
            state.running.iter().map(|listener| ListenerConfig::clone(&listener.config())).collect();
        let plan = plan(&state.config, &running, &new);
        let new_listeners = new.effective_listeners();
        let old_keys = listener_keys(&running);
        let new_keys = listener_keys(&new_listeners);

        // Check everything first. Nothing below uses what it loads until all of it has loaded.
        let mut prepared = Vec::with_capacity(plan.listeners.len());
        let mut next_index = state.next_index;
        for step in &plan.listeners {
            let ready = match step {
                ListenerStep::Remove { old } => Ready::Remove { old: *old },
                ListenerStep::Keep { old, new } | ListenerStep::Change { old, new, .. } => {
                    let config = crate::reload::running_after(&running[*old], new_listeners[*new].clone());
                    let files =
                        ListenerFiles::load(state.running[*old].index(), &config).map_err(ReloadError::Listener)?;
                    let what = match step {
                        ListenerStep::Change { what, .. } => what.clone(),
                        _ => Vec::new(),
                    };
                    Ready::Apply { old: *old, what, config, files }
                }
                ListenerStep::Add { new } => {
                    let bound = BoundListener::bind(next_index, new_listeners[*new].clone())
                        .await
                        .map_err(ReloadError::Listener)?;
                    next_index += 1;
                    Ready::Start { new: *new, bound }
                }
            };
            prepared.push(ready);
        }
        let log = match (&plan.log, &inner.log) {
            (Some(config), Some(control)) => Some(control.prepare(config).map_err(ReloadError::Log)?),
            _ => None,
        };

        // Apply. The log first, so that what follows is logged as the new settings say.
        let mut report = ReloadReport::default();
        let log_live = log.is_some();
        if let Some(apply) = log {
            apply();
        }
        for change in &plan.changes {
            if change.starts_with("[log]") && !log_live {
                report.restart_needed.push(format!("{change} (no live log here)"));
            } else {
                report.changes.push(change.clone());
            }
        }
        if let Some(connections) = &plan.connections {
            inner.services.gate.set(connections);
        }
        if let Some(sys) = plan.sys {
            inner.services.broker.set_client_events(sys.events);
            let _ = state.sys.send(sys);
        }
        let mut kept = Vec::with_capacity(new_listeners.len());
        for ready in prepared {
            match ready {
                Ready::Remove { old } => {
                    let listener = &state.running[old];
                    listener.close().await;
                    let clients = listener.counters().open;
                    listener.end_connections(ReasonCode::SERVER_SHUTTING_DOWN);
                    report.changes.push(format!(
                        "listener {} removed (was listener {}): its {clients} connections closed",
                        old_keys[old],
                        listener.index()
                    ));
                }
                Ready::Apply { old, what, config, files } => {
                    let listener = Arc::clone(&state.running[old]);
                    listener.apply(config, files);
                    if what.is_empty() {
                        info!(
                            listener = listener.index(),
                            "listener reloaded: new connections use its files as they are now"
                        );
                    }
                    for what in what {
                        report.changes.push(format!("listener {} changed: {what}", listener.index()));
                    }
                    kept.push(listener);
                }
                Ready::Start { new, bound } => {
                    let listener = Arc::new(bound.start(&inner.services));
                    inner.listeners.push(Arc::clone(&listener));
                    report.changes.push(format!("listener {} added as listener {}", new_keys[new], listener.index()));
                    kept.push(listener);
                }
            }
        }
        // Bridges: an unchanged one keeps its link and queue; a changed one restarts.
        report.changes.extend(inner.bridges.lock().await.apply(&new.bridge));
        for change in &report.changes {
            info!("{change}");
        }
        report.restart_needed.extend(plan.restart.iter().cloned());
        for setting in &report.restart_needed {
            warn!("{setting}: takes effect after a restart");
        }

        state.running = kept;
        state.next_index = next_index;
        let running_config = ServerConfig {
            listener: new.listener,
            sys: new.sys,
            connections: new.connections,
            bridge: new.bridge,
            log: if log_live { new.log } else { state.config.log.clone() },
            // What takes a restart (`[mqtt]`, `[store]`, a section a reload does not apply yet)
            // stays as it runs, so the next reload reports it again.
            ..state.config.clone()
        };
        state.config = running_config;
        Ok(report)
    }
}

/// One listener's step of the plan, with what it was checked with.
enum Ready {
    /// Removed: its place among the running listeners.
    Remove { old: usize },
    /// Kept (`what` empty) or changed (`what` says how): its next config and files.
    Apply { old: usize, what: Vec<String>, config: ListenerConfig, files: ListenerFiles },
    /// Added: its place in the new config, and its sockets, bound, not yet accepting.
    Start { new: usize, bound: BoundListener },
}

/// Where reloads are asked for from inside the server (`POST /api/v1/reload`): the server's
/// [`Reloader`], once it exists, held weakly (the reloader holds the listeners that hold this).
#[derive(Debug, Clone, Default)]
pub struct ReloadRequests(Arc<OnceLock<Weak<ReloaderInner>>>);

impl ReloadRequests {
    /// Points the requests at `reloader`.
    pub(crate) fn set(&self, reloader: &Reloader) {
        let _ = self.0.set(Arc::downgrade(&reloader.inner));
    }

    /// Runs a reload and returns what it did; `None` when the server is gone.
    pub async fn reload(&self) -> Option<Result<ReloadReport, ReloadError>> {
        let inner = self.0.get()?.upgrade()?;
        Some(Reloader { inner }.reload().await)
    }
}
