//! A node's lease on its place in the cluster, and what follows when one lapses.
//!
//! Each node puts its key in `{prefix}-nodes` (its start's epoch and the time) every third of
//! the lease. A node that cannot renew for a whole lease fences itself: it drops its clients
//! and refuses new ones until it renews, so a node cut off from NATS never keeps acting on
//! sessions the others may give away. A node whose key is older than the lease is dead to the
//! others: the one that creates its death key (`dead.{node}.{epoch}`, create-only) publishes
//! the wills it left (`wills`), once. A node that restarts before anyone noticed does the same
//! for its previous epoch at start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use midge_broker::Broker;
use tokio::sync::watch;

use super::fabric::unix_now_ms;
use super::stats::ClusterStats;
use super::ClusterError;

/// How long a death key stays: long past any retry.
pub(super) const DEATH_KEY_TTL: Duration = Duration::from_secs(3600);

/// What the others know of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeRecord {
    /// Its start's random id.
    pub(super) epoch: u64,
    /// When it last renewed, wall-clock milliseconds.
    pub(super) renewed_unix_ms: u64,
}

impl NodeRecord {
    fn encode(self) -> Bytes {
        let mut out = BytesMut::with_capacity(16);
        out.put_u64(self.epoch);
        out.put_u64(self.renewed_unix_ms);
        out.freeze()
    }

    fn decode(mut value: Bytes) -> Option<Self> {
        (value.remaining() == 16).then(|| Self { epoch: value.get_u64(), renewed_unix_ms: value.get_u64() })
    }
}

/// A node's lease and its watch on the others'.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) nodes: Store,
    pub(super) wills: Store,
    pub(super) node: String,
    pub(super) epoch: u64,
    pub(super) lease: Duration,
    pub(super) broker: Arc<Broker>,
    pub(super) stats: Arc<ClusterStats>,
    /// Set while this node has not renewed for a whole lease.
    pub(super) fenced: Arc<AtomicBool>,
    /// The other nodes alive, as this node last saw them.
    pub(super) peers: Peers,
}

/// The other nodes alive, shared with what reports on them.
#[derive(Debug, Clone, Default)]
pub(super) struct Peers(Arc<parking_lot::Mutex<HashMap<String, NodeRecord>>>);

impl Peers {
    pub(super) fn count(&self) -> usize {
        self.0.lock().len()
    }

    pub(super) fn list(&self) -> Vec<(String, u64)> {
        let mut list: Vec<_> = self.0.lock().iter().map(|(node, r)| (node.clone(), r.renewed_unix_ms)).collect();
        list.sort();
        list
    }
}

impl Lease {
    /// Takes the lease for this start, and publishes the wills this node's previous start left
    /// if no other node has. Call before clients are admitted.
    pub(super) async fn begin(&self) -> Result<(), ClusterError> {
        let problem = |error: String| ClusterError::Bucket { bucket: self.nodes.name.clone(), problem: error };
        // A bucket just created may not answer at once through every NATS server (its stream's
        // subjects are still reaching them: "no responders"): tried again for a while, as a
        // claim is.
        let mut waits = super::bucket::retry_waits();
        let previous = loop {
            match self.nodes.entry(&self.node).await {
                Ok(previous) => break previous,
                Err(error) => match waits.next() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(problem(error.to_string())),
                },
            }
        };
        let previous = previous.filter(|e| e.operation == Operation::Put).and_then(|e| NodeRecord::decode(e.value));
        loop {
            match self.renew().await {
                Ok(()) => break,
                Err(error) => match waits.next() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(problem(error)),
                },
            }
        }
        if let Some(previous) = previous.filter(|p| p.epoch != self.epoch) {
            self.bury(&self.node, previous.epoch).await;
        }
        Ok(())
    }

    async fn renew(&self) -> Result<(), String> {
        let record = NodeRecord { epoch: self.epoch, renewed_unix_ms: unix_now_ms() };
        self.nodes.put(&self.node, record.encode()).await.map(drop).map_err(|e| e.to_string())
    }

    /// Publishes the wills of `node`'s start `epoch`, if this node is the first to claim it.
    async fn bury(&self, node: &str, epoch: u64) {
        let death = format!("dead.{node}.{epoch:016x}");
        match self.nodes.create_with_ttl(&death, Bytes::from(self.node.clone()), DEATH_KEY_TTL).await {
            Ok(_) => {
                tracing::warn!(%node, "cluster: node lost its lease; publishing its clients' wills");
                super::wills::publish_orphans(&self.wills, node, &self.broker, &self.stats).await;
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {} // another survivor
            Err(error) => tracing::warn!(%node, %error, "cluster: cannot claim a dead node's wills"),
        }
    }

    /// Renews the lease, fences when it lapses, and buries nodes whose leases lapsed, until
    /// `stop`.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut last_renewed = Instant::now();
        let others = self.peers.clone();
        // With history: every node's current lease first, so a node that dies before renewing
        // again is still known.
        let mut watch = match self.nodes.watch_with_history(">").await {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::error!(%error, "cluster: cannot watch the other nodes' leases; their wills are not published if they die");
                None
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = renew.tick() => match tokio::time::timeout(self.lease / 3, self.renew()).await {
                    Ok(Ok(())) => {
                        last_renewed = Instant::now();
                        if self.fenced.swap(false, Ordering::SeqCst) {
                            tracing::warn!("cluster: lease renewed; accepting clients again");
                        }
                    }
                    _ if last_renewed.elapsed() >= self.lease => self.fence(),
                    _ => {}
                },
                entry = async { watch.as_mut()?.next().await }, if watch.is_some() => match entry {
                    Some(Ok(entry)) if entry.operation == Operation::Put && !entry.key.starts_with("dead.") && entry.key != self.node => {
                        if let Some(record) = NodeRecord::decode(entry.value) {
                            tracing::debug!(node = %entry.key, renewed = record.renewed_unix_ms, "cluster: lease seen");
                            others.0.lock().insert(entry.key, record);
                        }
                    }
                    Some(Ok(_)) => {}
                    // The watch's consumer lives on one NATS server: when that one is lost the
                    // client only reports missed heartbeats. A new watch (current leases first)
                    // takes its place, at the next check.
                    Some(Err(error)) => {
                        tracing::warn!(%error, "cluster: the leases' watch failed; watching again");
                        watch = None;
                    }
                    None => watch = None,
                },
                _ = check.tick() => {
                    if watch.is_none() {
                        watch = self.nodes.watch_with_history(">").await.ok();
                    }
                    if self.fenced.load(Ordering::SeqCst) {
                        continue; // cut off: this node's view of the others is not to be acted on
                    }
                    let now = unix_now_ms();
                    let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
                    let dead: Vec<(String, NodeRecord)> = others
                        .0
                        .lock()
                        .iter()
                        .filter(|(_, record)| now.saturating_sub(record.renewed_unix_ms) > lease_ms)
                        .map(|(node, record)| (node.clone(), *record))
                        .collect();
                    for (node, record) in dead {
                        others.0.lock().remove(&node);
                        self.bury(&node, record.epoch).await;
                    }
                }
            }
        }
    }

    /// Drops every client: this node may have been given up by the others.
    fn fence(&self) {
        if self.fenced.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stats.fenced.fetch_add(1, Ordering::Relaxed);
        let clients = self.broker.sessions(true, usize::MAX);
        tracing::error!(
            clients = clients.len(),
            lease_secs = self.lease.as_secs(),
            "cluster: lease not renewed within the lease; dropping every client until it is"
        );
        for client in clients {
            self.broker.kick_client(&client.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NodeRecord;

    #[test]
    fn a_record_round_trips_and_other_lengths_are_refused() {
        let record = NodeRecord { epoch: 7, renewed_unix_ms: 1_700_000_000_000 };
        assert_eq!(NodeRecord::decode(record.encode()), Some(record));
        assert_eq!(NodeRecord::decode(record.encode().slice(..15)), None);
    }
}
