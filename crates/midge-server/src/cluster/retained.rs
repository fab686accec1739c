//! Retained messages cluster-wide: a JetStream key-value bucket (history 1) keyed by topic,
//! written by the node a retained message is published on and watched by every node into its
//! own retained store. Every node applies the bucket's updates in the bucket's order, so all
//! of them end with the same value for a topic, and the bucket's replicas keep it through the
//! loss of any one NATS server (with `replicas = 3`) or Midge node.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use midge_broker::Broker;
use midge_codec::{QoS, TopicName};
use tokio::sync::{mpsc, watch};

use super::fabric::{unix_now_ms, RetainedUpdate};
use super::stats::ClusterStats;
use super::wire::WireMessage;
use super::ClusterError;

/// How long a start waits for the bucket's current values before serving without them.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// The bucket's key for `topic` (keys allow few characters; base64url is among them).
pub(super) fn key(topic: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic)
}

fn topic_of(key: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key).ok()?;
    String::from_utf8(bytes).ok()
}

/// Writes the node's retained updates to the bucket, in the order they were made. An update the
/// bucket refuses is tried again for up to [`WRITE_RETRY_FOR`](super::bucket::WRITE_RETRY_FOR) (the later ones wait, so the
/// order holds), unless its key is refused, which no retry mends.
///
/// `written` counts the updates done with (written, or given up), in order.
pub(super) async fn write(store: Store, mut updates: mpsc::Receiver<RetainedUpdate>, written: watch::Sender<u64>) {
    while let Some(update) = updates.recv().await {
        let key = key(&update.topic);
        let mut waits = super::bucket::retry_waits();
        loop {
            let result = match &update.value {
                Some(value) => store
                    .put(&key, value.clone())
                    .await
                    .map(drop)
                    .map_err(|e| (e.kind() != kv::PutErrorKind::InvalidKey, e.to_string())),
                None => {
                    store.delete(&key).await.map_err(|e| (e.kind() != kv::UpdateErrorKind::InvalidKey, e.to_string()))
                }
            };
            let Err((retry, error)) = result else { break };
            match waits.next().filter(|_| retry) {
                Some(wait) => {
                    tracing::debug!(topic = %update.topic, %error, ?wait, "cluster: the retained bucket refused a write; trying again");
                    tokio::time::sleep(wait).await;
                }
                None => {
                    tracing::error!(topic = %update.topic, %error, "cluster: a retained message could not be written to the bucket; other nodes do not have it");
                    break;
                }
            }
        }
        written.send_modify(|count| *count += 1);
    }
}

/// What this node has applied of the retained bucket, by revision: the follower and
/// [`catch_up`] both apply through it, each entry once and in the bucket's order.
#[derive(Debug)]
pub(super) struct Applied {
    broker: Arc<Broker>,
    stats: Arc<ClusterStats>,
    last: parking_lot::Mutex<u64>,
    changed: watch::Sender<u64>,
}

impl Applied {
    pub(super) fn new(broker: Arc<Broker>, stats: Arc<ClusterStats>) -> Self {
        Self { broker, stats, last: parking_lot::Mutex::new(0), changed: watch::channel(0).0 }
    }

    /// Applies the bucket's entry at `revision` unless one as recent was applied.
    fn apply(&self, revision: u64, key: &str, operation: Operation, value: Bytes) {
        let mut last = self.last.lock();
        if revision <= *last {
            return;
        }
        apply(&self.broker, &self.stats, key, operation, value);
        *last = revision;
        self.changed.send_replace(revision);
    }

    /// Records that everything up to `revision` is applied (a bucket loaded whole).
    fn reached(&self, revision: u64) {
        let mut last = self.last.lock();
        if revision > *last {
            *last = revision;
            self.changed.send_replace(revision);
        }
    }
}

/// Brings this node up to every update the bucket had when this was called (at most `limit`):
/// a SUBSCRIBE handled afterwards finds every retained message whose publisher was
/// acknowledged before, on any node. The follower usually has them; if it lags (a watch that
/// stalled), the missing revisions are read from the bucket's stream here.
pub(super) async fn catch_up(store: &Store, applied: &Applied, limit: Duration) {
    let work = async {
        let Ok(status) = store.status().await else { return };
        let target = status.info.state.last_sequence;
        let mut changed = applied.changed.subscribe();
        let followed = matches!(
            tokio::time::timeout(FOLLOWER_GRACE, changed.wait_for(|revision| *revision >= target)).await,
            Ok(Ok(_))
        );
        if followed {
            return;
        }
        let from = *applied.last.lock() + 1;
        let prefix = format!("$KV.{}.", store.name);
        for revision in from..=target {
            // Superseded revisions are gone from the stream (history 1): their newer ones follow.
            let Ok(message) = store.stream.get_raw_message(revision).await else { continue };
            let Some(key) = message.subject.as_str().strip_prefix(&prefix) else { continue };
            let operation = match message.headers.get("KV-Operation").map(|value| value.as_str()) {
                Some("DEL") => Operation::Delete,
                Some("PURGE") => Operation::Purge,
                _ => Operation::Put,
            };
            applied.apply(revision, key, operation, message.payload);
        }
        applied.reached(target);
    };
    if tokio::time::timeout(limit, work).await.is_err() {
        tracing::debug!("cluster: the retained bucket could not be caught up with in time before a SUBSCRIBE");
    }
}

/// How long [`catch_up`] gives the follower before reading the bucket itself.
const FOLLOWER_GRACE: Duration = Duration::from_millis(200);

/// Loads the bucket's current values into `broker`, then follows its updates until `stop`.
/// Returns once the current values are loaded (or [`SYNC_TIMEOUT`] passed), with the task that
/// follows.
///
/// Entries are applied through `applied`.
pub(super) async fn follow(
    store: &Store,
    applied: Arc<Applied>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
    let problem = |error: String| ClusterError::Bucket { bucket: store.name.clone(), problem: error };
    // With history: the current value of every key first (watch_all sends only new ones).
    let mut watch = store.watch_with_history(">").await.map_err(|e| problem(e.to_string()))?;
    let status = store.status().await.map_err(|e| problem(e.to_string()))?;
    let values = status.values();
    let loaded_up_to = status.info.state.last_sequence;
    let mut loaded = 0u64;
    // The revision of the last entry applied: a new watch starts after it.
    let mut last = 0u64;
    if values > 0 {
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(entry))) => {
                    let current = entry.seen_current || entry.delta == 0;
                    last = entry.revision;
                    applied.apply(entry.revision, &entry.key, entry.operation, entry.value);
                    loaded += 1;
                    if current {
                        break;
                    }
                }
                Ok(Some(Err(error))) => return Err(problem(error.to_string())),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        loaded,
                        "cluster: the retained bucket did not finish loading in time; serving, the rest follows"
                    );
                    break;
                }
            }
        }
    }
    tracing::info!(loaded, "cluster: retained messages loaded");
    applied.reached(last.max(loaded_up_to));
    let store = store.clone();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => {
                        last = entry.revision;
                        applied.apply(entry.revision, &entry.key, entry.operation, entry.value);
                    }
                    // The watch's consumer lives on one NATS server; when that one is lost, the
                    // client (still connected to another) only reports missed heartbeats and
                    // never makes a new one. A new watch starts where this one stopped.
                    Some(Err(error)) => {
                        tracing::warn!(%error, revision = last, "cluster: retained bucket watch failed; watching again from the next revision");
                        match rewatch(&store, last, &mut stop).await {
                            Some(new) => watch = new,
                            None => return,
                        }
                    }
                    None => return,
                },
            }
        }
    }))
}

/// A watch of every key from the revision after `last`, tried until it opens or `stop`.
async fn rewatch(store: &Store, last: u64, stop: &mut watch::Receiver<bool>) -> Option<kv::Watch> {
    let mut wait = super::bucket::WRITE_RETRY_FIRST_WAIT;
    loop {
        match store.watch_all_from_revision(last + 1).await {
            Ok(watch) => return Some(watch),
            Err(error) => tracing::warn!(%error, "cluster: cannot watch the retained bucket again; retrying"),
        }
        tokio::select! {
            _ = stop.changed() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(super::bucket::WRITE_RETRY_MAX_WAIT);
    }
}

/// Applies one bucket entry to the node's retained store.
fn apply(broker: &Broker, stats: &ClusterStats, key: &str, operation: Operation, value: Bytes) {
    let Some(topic) = topic_of(key).and_then(|topic| TopicName::new(&topic).ok()) else {
        stats.unreadable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%key, "cluster: a retained bucket key is no topic");
        return;
    };
    let message = match operation {
        Operation::Put => match WireMessage::decode(value) {
            Ok(wire) => {
                let now_ms = unix_now_ms();
                if wire.expiry_ms.is_some_and(|at| at <= now_ms) {
                    broker.fabric_message(topic, Bytes::new(), QoS::AtMostOnce, true, Bytes::new(), None)
                } else {
                    let expires_at = wire.expiry_ms.map(|at| Instant::now() + Duration::from_millis(at - now_ms));
                    broker.fabric_message(topic, wire.payload, wire.qos, true, wire.properties, expires_at)
                }
            }
            Err(error) => {
                stats.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, %error, "cluster: a retained value cannot be read");
                return;
            }
        },
        Operation::Delete | Operation::Purge => {
            broker.fabric_message(topic, Bytes::new(), QoS::AtMostOnce, true, Bytes::new(), None)
        }
    };
    broker.set_retained_from_fabric(message);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_topic_is_a_key_that_reads_back() {
        for topic in ["a/b", "/", "$SYS/x", "a b/c.d/*/>", "ünï/çødé"] {
            let key = super::key(topic);
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{key}");
            assert_eq!(super::topic_of(&key).as_deref(), Some(topic));
        }
    }
}
