//! One session per client id, cluster-wide: who owns a client id is a key in a JetStream
//! key-value bucket (`{prefix}-sessions`, the node's name as value), changed only by
//! compare-and-set on the key's revision; the node that wins asks the one before to close
//! the client's connection (v5: DISCONNECT 0x8E) and hand the session over
//! (`midge_broker::handover`), EMQX's two-phase takeover, before its client is admitted.
//!
//! A node serialises, per client id, its own connects (from the claim to the connection's
//! admission) with the hand-over requests it answers, so a request never finds a connection
//! half admitted: of two connects racing on two nodes, the later claim's node takes the
//! session from the other once that one is done, and at most one connection is left.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use midge_broker::Broker;
use tokio::sync::{watch, Mutex as AsyncMutex, OwnedMutexGuard};

use super::handover;
use super::stats::ClusterStats;
use super::ClusterError;

/// How long a node waits for another to hand a session over.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the marker of a forgotten client id stays in the bucket.
const MARKER_TTL: Duration = Duration::from_secs(60);
/// Claims retried when another node changes the key in between.
const CLAIM_ATTEMPTS: usize = 8;

/// The first wait before a claim is tried again on an unavailable bucket, doubling up to
/// [`CLAIM_RETRY_MAX_WAIT`].
const CLAIM_RETRY_FIRST_WAIT: Duration = Duration::from_millis(25);
const CLAIM_RETRY_MAX_WAIT: Duration = Duration::from_secs(1);

/// Why one claim did not succeed.
#[derive(Debug)]
enum Attempt {
    /// Another node changed the key in between.
    Lost,
    /// The bucket did not answer (no leader, a timeout).
    Unavailable(String),
}

/// What a hand-over request asks.
const HAND_OVER: u8 = 0;
/// What an end request asks (the client starts clean on the node that asks).
const END: u8 = 1;

/// Why a client could not be given its session here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster: the session of this client id could not be claimed: {0}")]
pub struct ClaimError(pub String);

/// The bucket key of a client id.
fn key(client_id: &str) -> String {
    format!("c{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id))
}

/// The subject a node answers hand-over requests on.
fn service_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.node.{node}.session")
}

/// A node's side of session ownership.
#[derive(Debug)]
pub(super) struct Sessions {
    pub(super) broker: Arc<Broker>,
    pub(super) client: async_nats::Client,
    pub(super) store: Store,
    pub(super) prefix: String,
    pub(super) node: String,
    pub(super) stats: Arc<ClusterStats>,
    /// Set while this node's lease has lapsed: no client is admitted.
    fenced: Arc<std::sync::atomic::AtomicBool>,
    /// A lock per client id with a connect or a request in progress here.
    locks: std::sync::Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// Persistent sessions kept in JetStream.
    pub(super) durable: Arc<super::durable::Durable>,
}

/// Held from a claim until its connection is admitted (or refused): hand-over requests for the
/// client id wait for it.
#[derive(Debug)]
pub struct ClaimGuard {
    _guard: OwnedMutexGuard<()>,
}

impl Sessions {
    // The node's parts, each its own: a struct of them would only be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open(
        js: &async_nats::jetstream::Context,
        broker: Arc<Broker>,
        client: async_nats::Client,
        prefix: &str,
        node: &str,
        replicas: usize,
        stats: Arc<ClusterStats>,
        fenced: Arc<std::sync::atomic::AtomicBool>,
        durable: Arc<super::durable::Durable>,
    ) -> Result<Self, ClusterError> {
        // Purge markers of forgotten client ids go after a while.
        let store = super::bucket::open(js, prefix, "sessions", replicas, Some(MARKER_TTL)).await?;
        Ok(Self {
            broker,
            client,
            store,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            stats,
            fenced,
            locks: std::sync::Mutex::new(HashMap::new()),
            durable,
        })
    }

    /// The lock of `client_id` here, taken.
    async fn lock(&self, client_id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Locks nobody holds or waits for go, so the map stays as large as what is in progress.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(locks.entry(client_id.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    /// Makes this node the owner of `client_id`'s session before its client is admitted here:
    /// the node that held it closes its connection and hands the session over (or, for a
    /// clean start, ends it). Keep the guard until the connection is admitted.
    pub async fn claim(&self, client_id: &str, clean_start: bool) -> Result<ClaimGuard, ClaimError> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(ClaimError("this node's lease has lapsed (cut off from NATS?)".to_owned()));
        }
        let guard = self.lock(client_id).await;
        let key = key(client_id);
        let mut lost = 0;
        let mut wait = CLAIM_RETRY_FIRST_WAIT;
        loop {
            match self.try_claim(&key).await {
                Ok(previous) => {
                    let taken = match &previous {
                        Some(owner) => self.take_from(owner, client_id, clean_start).await,
                        None => false,
                    };
                    if clean_start && (previous.is_some() || self.durable.feeds(client_id)) {
                        // What the cluster kept of the old session goes with it (MQTT-3.1.2-4).
                        self.durable.end(client_id).await;
                    } else if !clean_start && !taken && previous.is_some() && self.durable.recover(client_id).await {
                        // Its node died (or lost it): JetStream kept it.
                        self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%client_id, from = ?previous, "cluster: persistent session brought back from JetStream");
                    }
                    return Ok(ClaimGuard { _guard: guard });
                }
                Err(Attempt::Lost) => {
                    lost += 1;
                    if lost >= CLAIM_ATTEMPTS {
                        return Err(ClaimError(format!(
                            "{CLAIM_ATTEMPTS} attempts lost to other nodes claiming it at once"
                        )));
                    }
                }
                // The bucket has no leader for a moment (a NATS server restarting): tried again
                // until it has; the connect timeout bounds the wait.
                Err(Attempt::Unavailable(error)) => {
                    tracing::debug!(%client_id, %error, "cluster: claiming a session: the bucket is unavailable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(CLAIM_RETRY_MAX_WAIT);
                }
            }
        }
    }

    /// One claim of `key`: `Ok` with the node that held it before (if another did), once
    /// this node holds it.
    async fn try_claim(&self, key: &str) -> Result<Option<String>, Attempt> {
        let value = Bytes::from(self.node.clone());
        let unavailable = |error: &dyn std::fmt::Display| Attempt::Unavailable(error.to_string());
        match self.store.entry(key).await.map_err(|e| unavailable(&e))? {
            None => match self.store.create(key, value).await {
                Ok(_) => Ok(None),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Err(Attempt::Lost),
                Err(error) => Err(unavailable(&error)),
            },
            Some(entry) => {
                let owner =
                    (entry.operation == Operation::Put).then(|| String::from_utf8_lossy(&entry.value).into_owned());
                if owner.as_deref() == Some(self.node.as_str()) {
                    return Ok(None);
                }
                match self.store.update(key, value, entry.revision).await {
                    Ok(_) => Ok(owner),
                    Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(Attempt::Lost),
                    Err(error) => Err(unavailable(&error)),
                }
            }
        }
    }

    /// Asks `owner` for the session (or to end it), and brings in what it hands over. Returns
    /// whether a session came.
    async fn take_from(&self, owner: &str, client_id: &str, clean_start: bool) -> bool {
        let mut request = BytesMut::with_capacity(1 + client_id.len());
        request.put_u8(if clean_start { END } else { HAND_OVER });
        request.put_slice(client_id.as_bytes());
        let subject = service_subject(&self.prefix, owner);
        let payload = match tokio::time::timeout(HANDOVER_TIMEOUT, self.ask(subject, request.freeze())).await {
            Ok(Ok(payload)) => payload,
            Ok(Err(why)) => {
                // No responders: the node is gone, and its sessions with it, but for what
                // JetStream keeps of the persistent ones (see `durable`).
                tracing::warn!(%client_id, %owner, %why, "cluster: the node that held this session did not hand it over");
                return false;
            }
            Err(_) => {
                tracing::warn!(%client_id, %owner, "cluster: the node that held this session did not answer in time");
                return false;
            }
        };
        if payload.is_empty() {
            return false; // no session there (or a clean start: ended there)
        }
        match handover::decode(payload) {
            Ok(snapshot) => {
                self.durable.adopt_released(&snapshot);
                let skipped = self.broker.take_over(snapshot, Instant::now());
                self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                if skipped > 0 {
                    tracing::warn!(%client_id, %owner, skipped, "cluster: deliveries of a handed-over session could not be read");
                }
                tracing::info!(%client_id, from = %owner, "cluster: session taken over");
                true
            }
            Err(error) => {
                tracing::error!(%client_id, %owner, %error, "cluster: a handed-over session cannot be read; it starts afresh");
                false
            }
        }
    }

    /// Sends `request` to `subject` and gathers the reply's chunks (see [`chunks`]) into one
    /// payload. `Err` names why there is none (no node answers there).
    async fn ask(&self, subject: String, request: Bytes) -> Result<Bytes, String> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
        self.client.publish_with_reply(subject, inbox, request).await.map_err(|e| e.to_string())?;
        let mut whole = BytesMut::new();
        let mut expected = 0u32;
        while let Some(message) = replies.next().await {
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err("no node answers for it".to_owned());
            }
            let mut chunk = message.payload;
            if chunk.len() < 8 {
                return Err("a reply chunk cut short".to_owned());
            }
            let index = chunk.get_u32();
            let total = chunk.get_u32();
            if index != expected {
                return Err(format!("reply chunk {index} where {expected} was due"));
            }
            whole.extend_from_slice(&chunk);
            expected += 1;
            if expected >= total {
                return Ok(whole.freeze());
            }
        }
        Err("the reply's subscription ended".to_owned())
    }

    /// Forgets the ownership of client ids whose sessions ended here, until `stop`: the key
    /// goes if it still names this node and no new session of the id began here meanwhile.
    pub(super) async fn forget_ended(
        self: Arc<Self>,
        mut ended: tokio::sync::mpsc::Receiver<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let client_id = tokio::select! {
                _ = stop.changed() => return,
                client_id = ended.recv() => match client_id {
                    Some(client_id) => client_id,
                    None => return,
                },
            };
            let _guard = self.lock(&client_id).await;
            if self.broker.has_session(&client_id) {
                continue;
            }
            let key = key(&client_id);
            let mut still_ours = false;
            if let Ok(Some(entry)) = self.store.entry(&key).await {
                if entry.operation == Operation::Put && entry.value == self.node.as_bytes() {
                    // Another node's claim in between changes the revision: then the key stays.
                    still_ours = true;
                    let _ = self.store.purge_expect_revision_with_ttl(&key, entry.revision, MARKER_TTL).await;
                }
            }
            if still_ours && self.durable.feeds(&client_id) {
                // Ended here (expired, or its client left for good): what JetStream kept goes.
                self.durable.end(&client_id).await;
            } else {
                self.durable.forget(&client_id).await;
            }
        }
    }

    /// The node the bucket names as holding `client_id`'s session.
    pub(super) async fn owner(&self, client_id: &str) -> Result<Option<String>, String> {
        let entry = self.store.entry(key(client_id)).await.map_err(|e| e.to_string())?;
        Ok(entry.filter(|e| e.operation == Operation::Put).map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Answers other nodes' hand-over and end requests until `stop`.
    pub(super) async fn serve(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let subject = service_subject(&self.prefix, &self.node);
        let mut requests = match self.client.subscribe(subject.clone()).await {
            Ok(requests) => requests,
            Err(error) => {
                tracing::error!(%subject, %error, "cluster: cannot answer hand-over requests; sessions cannot move from this node");
                return;
            }
        };
        loop {
            let request = tokio::select! {
                _ = stop.changed() => return,
                request = requests.next() => match request {
                    Some(request) => request,
                    None => return,
                },
            };
            // Each in its own task: one waiting on a client id's lock holds up no other.
            let sessions = Arc::clone(&self);
            tokio::spawn(async move { sessions.answer(request).await });
        }
    }

    async fn answer(&self, request: async_nats::Message) {
        let Some(reply) = request.reply.clone() else { return };
        let Some((&kind, client_id)) = request.payload.split_first() else { return };
        let Ok(client_id) = std::str::from_utf8(client_id).map(str::to_owned) else { return };
        let _guard = self.lock(&client_id).await;
        let payload = if kind == END {
            self.broker.end_for_clean_start(&client_id);
            Bytes::new()
        } else {
            let broker = Arc::clone(&self.broker);
            let id = client_id.clone();
            // The part of an offline queue in the store is read back: off the async workers.
            match tokio::task::spawn_blocking(move || broker.hand_over(&id)).await {
                Ok(Ok(Some(snapshot))) => {
                    // What it held from JetStream goes with it: the new node sends it.
                    self.durable.handed_over(&client_id, &snapshot);
                    handover::encode(&snapshot)
                }
                Ok(Ok(None)) => Bytes::new(),
                Ok(Err(error)) => {
                    tracing::error!(%client_id, %error, "cluster: a session's queue could not be read for its new node; handed over without it");
                    Bytes::new()
                }
                Err(error) => {
                    tracing::error!(%client_id, %error, "cluster: handing a session over failed");
                    Bytes::new()
                }
            }
        };
        // A session's queue can be larger than NATS's max_payload: sent in chunks.
        let max = self.client.server_info().max_payload.saturating_sub(CHUNK_HEADROOM).max(1024);
        for chunk in chunks(&payload, max) {
            if let Err(error) = self.client.publish(reply.clone(), chunk).await {
                tracing::error!(%client_id, %error, "cluster: the hand-over reply could not be sent");
                if let Ok(snapshot) = handover::decode(payload) {
                    // Kept here rather than lost: its client finds it if it comes back here.
                    self.broker.take_over(snapshot, Instant::now());
                }
                return;
            }
        }
        let _ = self.client.flush().await;
    }
}

/// Room left in a NATS message for the subject, headers and the chunk's own header.
const CHUNK_HEADROOM: usize = 512;

/// `payload` as reply chunks of at most `max` bytes of it each, every one headed by its index
/// and the total (u32 each); an empty payload is one empty chunk.
fn chunks(payload: &Bytes, max: usize) -> Vec<Bytes> {
    let total = payload.len().div_ceil(max).max(1);
    (0..total)
        .map(|index| {
            let part = payload.slice((index * max).min(payload.len())..((index + 1) * max).min(payload.len()));
            let mut chunk = BytesMut::with_capacity(8 + part.len());
            chunk.put_u32(index as u32);
            chunk.put_u32(total as u32);
            chunk.put_slice(&part);
            chunk.freeze()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, Bytes};

    #[test]
    fn a_reply_is_cut_into_chunks_that_join_back() {
        for (len, max, count) in [(0usize, 10usize, 1usize), (10, 10, 1), (11, 10, 2), (95, 10, 10)] {
            let payload = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let chunks = super::chunks(&payload, max);
            assert_eq!(chunks.len(), count, "{len} bytes in chunks of {max}");
            let mut joined = Vec::new();
            for (i, mut chunk) in chunks.into_iter().enumerate() {
                assert!(chunk.len() <= max + 8);
                assert_eq!(chunk.get_u32() as usize, i);
                assert_eq!(chunk.get_u32() as usize, count);
                joined.extend_from_slice(&chunk);
            }
            assert_eq!(joined, payload);
        }
    }

    #[test]
    fn keys_are_valid_bucket_keys() {
        for id in ["", "a", "client/1", "ünï cödé", "$x.y*>"] {
            let key = super::key(id);
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{key}");
            assert!(!key.is_empty());
        }
    }
}
