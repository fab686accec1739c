//! The durable path (decision 0010, issue 17): QoS 1/2 messages through JetStream, and each
//! persistent session fed from its own consumer, so that nothing acknowledged to a publisher
//! is lost when a node dies and a session's messages wait for its client wherever it returns.
//!
//! - *The stream.* Every QoS 1/2 message a node publishes goes to `{prefix}.t.1.{topic}`
//!   through JetStream (the fabric's sending task), and its publisher's PUBACK or PUBREC waits
//!   for JetStream's acknowledgement. The stream `{prefix}-messages` keeps a message while a
//!   consumer wants it (interest retention), up to `stream_max_bytes` if set (beyond it
//!   publishes are refused, and publishers wait, rather than older messages being dropped). Core NATS
//!   subscribers of the subject (the nodes' routes for sessions that are not persistent) get
//!   it as any message.
//! - *A consumer per persistent session* (not per session and subscription: nats-server's MQTT
//!   scaling problem), filtered on the subjects of its unshared subscriptions. The core's router
//!   leaves such a session's QoS 1/2 messages out ([`midge_broker::Session::is_fabric_fed`]);
//!   while its client is connected here a *feed* pulls them from the consumer at the pace the
//!   session takes them and hands each to it ([`Broker::deliver_from_fabric_to`]); the message
//!   is acknowledged to JetStream when its exchange with the client ends (PUBACK, PUBCOMP).
//!   What is not acknowledged comes again after `redelivery_secs`: to this node, or to the
//!   node the client reconnects to if this one died. A message keeps its packet id across
//!   that (it is its stream sequence), so a QoS 2 message the client holds unreleased is
//!   recognised (MQTT-4.3.3-10) and released once.
//! - *A record per persistent session* in the `{prefix}-durable` bucket: its consumer, its
//!   subscriptions and expiry, written before a SUBACK goes out. A node the client reconnects
//!   to after its node died brings the session back from it (Session Present 1).
//!
//! A record and its consumer go together: whoever replaces or removes a record deletes the
//! consumer it names.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::Subject;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use midge_broker::handover::SessionSnapshot;
use midge_broker::{Broker, FabricDelivery};
use midge_codec::TopicName;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::fabric::FeedEvent;
use super::stats::ClusterStats;
use super::subject::{filter_subjects, subject_topic};
use super::wire::WireMessage;
use super::ClusterError;

/// The first format of a session's record.
const RECORD_VERSION: u8 = 1;

/// Messages a feed asks JetStream for at a time: what a feed stopped mid-way (its client gone
/// or taken over) hands back at once (see [`Feed::run`]).
const PULL_BATCH: usize = 64;

/// A filter no message matches: a consumer's filter while its session has no subscription
/// (an empty filter list would be every subject). No topic makes the token `/x`.
fn nothing(subject_prefix: &str) -> String {
    format!("{subject_prefix}./x")
}

/// A session's record key.
fn key(client_id: &str) -> String {
    format!("c{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id))
}

/// The key of a session's released QoS 2 messages (see [`Durable::released`]).
fn released_key(client_id: &str) -> String {
    format!("{}.r", key(client_id))
}

/// Released QoS 2 messages as the bucket keeps them: (packet id u16, stream sequence u64)*.
fn encode_released(released: &[(u16, u64)]) -> Bytes {
    let mut out = BytesMut::with_capacity(released.len() * 10);
    for (packet_id, sequence) in released {
        out.put_u16(*packet_id);
        out.put_u64(*sequence);
    }
    out.freeze()
}

fn decode_released(mut bytes: Bytes) -> Vec<(u16, u64)> {
    let mut released = Vec::with_capacity(bytes.len() / 10);
    while bytes.remaining() >= 10 {
        released.push((bytes.get_u16(), bytes.get_u64()));
    }
    released
}

/// When a message JetStream sent and nobody acknowledged is sent again the first time.
const FIRST_REDELIVERY: Duration = Duration::from_secs(1);

/// How long an acknowledged stream sequence is remembered, in redelivery waits.
const REMEMBER_ACKED: u32 = 3;

/// The durable path of a node.
#[derive(Debug)]
pub(super) struct Durable {
    broker: Arc<Broker>,
    client: async_nats::Client,
    stream: stream::Stream,
    records: Store,
    /// `{prefix}.t.1`.
    subject_prefix: String,
    /// This node's origin id: a message published here carries its publisher's session id,
    /// meaningful only here (No Local).
    origin: u64,
    redelivery: Duration,
    feeds: Mutex<HashMap<String, Feed>>,
    /// Into [`Durable::follow`]'s queue, behind the core's reports.
    events: mpsc::UnboundedSender<FeedEvent>,
    /// The generation of the last subscription change applied (see
    /// [`super::Cluster::feeds_settled`]).
    settled: watch::Sender<u64>,
    stats: Arc<ClusterStats>,
}

/// What this node tracks of a session it feeds.
#[derive(Debug, Default)]
struct Feed {
    /// Messages in the session (queued or in flight), by their id here: their stream sequence
    /// and the subject that acknowledges them.
    in_session: HashMap<u64, (u64, Subject)>,
    /// The same, by stream sequence: a redelivery of one of them (its client slow beyond the
    /// redelivery wait) is not delivered twice.
    by_sequence: HashMap<u64, u64>,
    /// QoS 2 messages the client has (PUBREC) and has not completed (PUBCOMP): their packet
    /// ids and stream sequences, kept in the bucket too (see [`Durable::released`]).
    released: Vec<(u16, u64)>,
    /// Stream sequences acknowledged lately, with when: a redelivery JetStream had sent before
    /// the acknowledgement reached it is not delivered again.
    recently_acked: RecentlyAcked,
    /// Stops the running pull, if any.
    stop: Option<CancellationToken>,
    /// Rung when the session's consumer changes (it had none), for a waiting pull.
    changed: Arc<Notify>,
}

/// A session's record: its consumer, and the session without its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) consumer: String,
    pub(super) outline: SessionSnapshot,
}

impl Record {
    fn encode(&self) -> Bytes {
        let outline = super::handover::encode(&self.outline);
        let mut out = BytesMut::with_capacity(2 + self.consumer.len() + outline.len());
        out.put_u8(RECORD_VERSION);
        out.put_u8(u8::try_from(self.consumer.len()).unwrap_or(u8::MAX));
        out.put_slice(self.consumer.as_bytes());
        out.put_slice(&outline);
        out.freeze()
    }

    fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < 2 || bytes.get_u8() != RECORD_VERSION {
            return None;
        }
        let length = usize::from(bytes.get_u8());
        if bytes.len() < length {
            return None;
        }
        let consumer = String::from_utf8(bytes.split_to(length).to_vec()).ok()?;
        let outline = super::handover::decode(bytes).ok()?;
        Some(Self { consumer, outline })
    }
}

/// Keeps a session fed while its connection is here; dropping it stops the feed.
#[derive(Debug)]
pub struct FeedGuard {
    stop: CancellationToken,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The subjects of a session's unshared filters, as one consumer may hold them: NATS refuses
/// filters that overlap, so one that another contains goes, and two that overlap otherwise
/// become one that contains both. `None` if there are none.
pub(super) fn consumer_filters(subject_prefix: &str, filters: &[&str]) -> Vec<String> {
    let mut subjects: Vec<String> = filters
        .iter()
        .filter(|filter| !filter.starts_with("$share/"))
        .flat_map(|filter| filter_subjects(subject_prefix, filter))
        .collect();
    loop {
        subjects.sort();
        subjects.dedup();
        let mut merged = None;
        'pairs: for (i, a) in subjects.iter().enumerate() {
            for (j, b) in subjects.iter().enumerate() {
                if i != j && collide(a, b) {
                    merged = Some((i, j, if contains(a, b) { a.clone() } else { generalise(a, b) }));
                    break 'pairs;
                }
            }
        }
        let Some((i, j, cover)) = merged else { return subjects };
        let (first, second) = (i.max(j), i.min(j));
        subjects.remove(first);
        subjects.remove(second);
        subjects.push(cover);
    }
}

/// Whether some subject matches both NATS subject filters.
fn collide(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) | (None, None) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

/// Whether every subject `b` matches, `a` matches.
fn contains(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (None, None) => return true,
            (Some("*"), Some(y)) if y != ">" => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// A filter that matches every subject `a` or `b` does: their common tokens, `*` where they
/// differ, `>` from where either has `>` or from the last token of the one that ends first.
fn generalise(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let mut out: Vec<&str> = Vec::new();
    for index in 0..a.len().max(b.len()) {
        match (a.get(index), b.get(index)) {
            (Some(&x), Some(&y)) if x != ">" && y != ">" => out.push(if x == y { x } else { "*" }),
            (Some(_), Some(_)) => {
                out.push(">"); // one goes on for one token or more from here
                break;
            }
            _ => {
                // One ends before this token: `>` from its last one (`>` needs one at least).
                out.pop();
                out.push(">");
                break;
            }
        }
    }
    out.join(".")
}

/// Opens the stream of QoS 1/2 messages, creating it if need be.
pub(super) async fn open_stream(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    replicas: usize,
    max_bytes: u64,
) -> Result<stream::Stream, ClusterError> {
    let name = format!("{prefix}-messages");
    if let Ok(stream) = js.get_stream(&name).await {
        return Ok(stream);
    }
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.>", super::subject_prefix(prefix, true))],
        // Kept while a consumer (a persistent session) wants it.
        retention: RetentionPolicy::Interest,
        // Full: publishes are refused (their publishers wait), rather than acknowledged
        // messages dropped.
        discard: DiscardPolicy::New,
        max_bytes: if max_bytes == 0 { -1 } else { i64::try_from(max_bytes).unwrap_or(i64::MAX) },
        storage: StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.create_stream(config).await.map_err(|error| ClusterError::Bucket { bucket: name, problem: error.to_string() })
}

impl Durable {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        broker: Arc<Broker>,
        client: async_nats::Client,
        stream: stream::Stream,
        records: Store,
        prefix: &str,
        origin: u64,
        redelivery: Duration,
        events: mpsc::UnboundedSender<FeedEvent>,
        stats: Arc<ClusterStats>,
    ) -> Self {
        Self {
            broker,
            client,
            stream,
            records,
            subject_prefix: super::subject_prefix(prefix, true),
            origin,
            redelivery,
            feeds: Mutex::new(HashMap::new()),
            events,
            settled: watch::channel(0).0,
            stats,
        }
    }

    /// Waits until the subscription changes up to `generation` are in the sessions'
    /// consumers and records (bounded).
    pub(super) async fn settled(&self, generation: u64) {
        let mut settled = self.settled.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), settled.wait_for(|g| *g >= generation)).await;
    }

    /// Starts feeding `client_id`'s session while its connection is here.
    pub(super) fn attach(self: &Arc<Self>, client_id: &str) -> FeedGuard {
        let stop = CancellationToken::new();
        let changed = {
            let mut feeds = self.feeds.lock();
            let feed = feeds.entry(client_id.to_owned()).or_default();
            if let Some(previous) = feed.stop.replace(stop.clone()) {
                previous.cancel();
            }
            Arc::clone(&feed.changed)
        };
        let this = Arc::clone(self);
        let client_id = client_id.to_owned();
        let token = stop.clone();
        tokio::spawn(async move { this.run_feed(client_id, token, changed).await });
        FeedGuard { stop }
    }

    /// What the core says of fed sessions, until the channel closes.
    pub(super) async fn follow(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<FeedEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                FeedEvent::Delivered { client_id, message_id, packet_id } => {
                    self.delivered(&client_id, message_id, packet_id).await;
                }
                FeedEvent::HandedOver { client_id, sequences } => self.forget_handed(&client_id, &sequences).await,
                FeedEvent::Released { client_id, message_id, packet_id, generation } => {
                    self.released(&client_id, message_id, packet_id).await;
                    self.settled.send_if_modified(|settled| {
                        let newer = generation > *settled;
                        *settled = (*settled).max(generation);
                        newer
                    });
                }
                FeedEvent::Subscriptions { client_id, generation } => {
                    if let Err(error) = self.update(&client_id).await {
                        tracing::error!(%client_id, %error, "cluster: a persistent session's subscriptions could not be kept in JetStream; messages for them may not reach it");
                    }
                    self.settled.send_if_modified(|settled| {
                        let newer = generation > *settled;
                        *settled = (*settled).max(generation);
                        newer
                    });
                }
            }
        }
    }

    async fn delivered(&self, client_id: &str, message_id: u64, packet_id: Option<u16>) {
        enum Done {
            Ack(Subject),
            Released(Bytes),
        }
        let done = {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(client_id) else { return };
            let released = packet_id.and_then(|id| feed.released.iter().position(|(p, _)| *p == id));
            if let Some(index) = released {
                // PUBCOMP: the exchange the bucket kept is over. JetStream may still send the
                // message again (its acknowledgement lost with a node that died): remembered.
                let (_, sequence) = feed.released.swap_remove(index);
                remember_acked(feed, sequence, self.redelivery);
                Done::Released(encode_released(&feed.released))
            } else {
                let Some((sequence, reply)) = feed.in_session.remove(&message_id) else { return };
                feed.by_sequence.remove(&sequence);
                remember_acked(feed, sequence, self.redelivery);
                Done::Ack(reply)
            }
        };
        match done {
            Done::Ack(reply) => self.ack(reply).await,
            Done::Released(value) => self.keep_released(client_id, value).await,
        }
    }

    /// The client has a QoS 2 message (PUBREC): kept in the bucket as released before the
    /// message is acknowledged to JetStream and PUBREL goes out. Should this node die, the
    /// node the client moves to sends PUBREL for it (MQTT-4.3.3-4: the client still holds it,
    /// or answers PUBCOMP if it released it), and does not send the message again: a client
    /// that released it would pass it on twice.
    async fn released(&self, client_id: &str, message_id: u64, packet_id: u16) {
        let (reply, value) = {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(client_id) else { return };
            let Some((sequence, reply)) = feed.in_session.remove(&message_id) else { return };
            feed.by_sequence.remove(&sequence);
            remember_acked(feed, sequence, self.redelivery);
            feed.released.retain(|(p, _)| *p != packet_id);
            feed.released.push((packet_id, sequence));
            (reply, encode_released(&feed.released))
        };
        self.keep_released(client_id, value).await;
        self.ack(reply).await;
    }

    async fn keep_released(&self, client_id: &str, value: Bytes) {
        let key = released_key(client_id);
        let written = retry(|| {
            let value = value.clone();
            let key = key.clone();
            async move {
                if value.is_empty() {
                    self.records.purge(key).await.map_err(|e| e.to_string())
                } else {
                    self.records.put(key, value).await.map(|_| ()).map_err(|e| e.to_string())
                }
            }
        })
        .await;
        if let Err(error) = written {
            tracing::error!(%client_id, %error, "cluster: a session's released QoS 2 messages could not be kept in JetStream");
        }
    }

    /// Takes the released QoS 2 messages of a session handed over from another node (its
    /// in-flight deliveries past PUBREC): the bucket has them already, under this client id.
    pub(super) fn adopt_released(&self, snapshot: &SessionSnapshot) {
        let released: Vec<(u16, u64)> = snapshot
            .deliveries
            .iter()
            .filter_map(|delivery| match delivery.stage {
                midge_broker::handover::DeliveryStage::Inflight { packet_id, awaiting_pubcomp: true } => {
                    Some((packet_id, delivery.seq))
                }
                _ => None,
            })
            .collect();
        if !released.is_empty() {
            self.feeds.lock().entry(snapshot.client_id.clone()).or_default().released = released;
        }
    }

    async fn ack(&self, reply: Subject) {
        if let Err(error) = self.client.publish(reply, Bytes::from_static(b"+ACK")).await {
            tracing::debug!(%error, "cluster: an acknowledgement to JetStream was not sent; the message comes again");
        }
    }

    /// The session's record, if there is one.
    pub(super) async fn record(&self, client_id: &str) -> Result<Option<(Record, u64)>, String> {
        let entry = self.records.entry(key(client_id)).await.map_err(|e| e.to_string())?;
        Ok(entry
            .filter(|entry| entry.operation == Operation::Put)
            .and_then(|entry| Record::decode(entry.value).map(|record| (record, entry.revision))))
    }

    /// Brings `client_id`'s subscriptions into its consumer and record, creating both for a
    /// session that has none (or whose record names another session: a clean start).
    async fn update(&self, client_id: &str) -> Result<(), String> {
        let Some(outline) = self.broker.session_outline(client_id) else { return Ok(()) };
        let filters: Vec<&str> = outline.subscriptions.iter().map(|(filter, _)| filter.as_str()).collect();
        let mut subjects = consumer_filters(&self.subject_prefix, &filters);
        if subjects.is_empty() {
            subjects.push(nothing(&self.subject_prefix));
        }
        let existing = self.record(client_id).await?;
        let (name, revision) = match existing {
            Some((record, revision)) => (record.consumer, Some(revision)),
            None => (consumer_name(), None),
        };
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subjects: subjects,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.redelivery,
            // The first time again after a second: a message JetStream sent to a pull that
            // ended as the session moved (in flight to a node that no longer feeds it, where
            // it is dropped) is not held up for the whole redelivery wait. Later ones (a slow
            // client's) after `redelivery_secs`.
            backoff: vec![FIRST_REDELIVERY.min(self.redelivery), self.redelivery],
            deliver_policy: DeliverPolicy::New,
            max_ack_pending: 65_535,
            // A session whose node died and whose client never returns: its consumer goes
            // when the session would have expired (the record with it, at the next look).
            inactive_threshold: match outline.expiry_interval {
                u32::MAX => Duration::ZERO,
                secs => Duration::from_secs(u64::from(secs).max(60)),
            },
            ..Default::default()
        };
        let created = retry(|| self.stream.create_consumer(config.clone())).await;
        if let Err(error) = created {
            return Err(format!("consumer {name}: {error}"));
        }
        let value = Record { consumer: name.clone(), outline }.encode();
        let written = match revision {
            Some(revision) => {
                self.records.update(key(client_id), value, revision).await.map(|_| ()).map_err(|e| e.to_string())
            }
            None => self.records.create(key(client_id), value).await.map(|_| ()).map_err(|e| e.to_string()),
        };
        written.map_err(|error| format!("record: {error}"))?;
        if let Some(feed) = self.feeds.lock().get(client_id) {
            feed.changed.notify_one();
        }
        Ok(())
    }

    /// Whether `client_id`'s session was fed here.
    pub(super) fn feeds(&self, client_id: &str) -> bool {
        self.feeds.lock().contains_key(client_id)
    }

    /// Ends `client_id`'s session in the cluster's keeping: its consumer and record go (a
    /// clean start, or the session ended here).
    pub(super) async fn end(&self, client_id: &str) {
        self.forget(client_id).await;
        match self.record(client_id).await {
            Ok(Some((record, revision))) => {
                let _ = self.stream.delete_consumer(&record.consumer).await;
                let _ = self.records.purge_expect_revision(key(client_id), Some(revision)).await;
                let _ = self.records.purge(released_key(client_id)).await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%client_id, %error, "cluster: a persistent session's record could not be read to end it")
            }
        }
    }

    /// Stops feeding `client_id` here: its session ended.
    pub(super) async fn forget(&self, client_id: &str) {
        let feed = self.feeds.lock().remove(client_id);
        if let Some(stop) = feed.and_then(|feed| feed.stop) {
            stop.cancel();
        }
    }

    /// Stops feeding `client_id` here: its session went whole to another node, which sends
    /// what it held. Its deliveries that came from JetStream are acknowledged there, once the
    /// core's reports from before it went are in (a message its client acknowledged here
    /// just before is acknowledged by that report); a message taken from JetStream and not
    /// in the session yet is not (the feed hands it back).
    pub(super) fn handed_over(&self, client_id: &str, snapshot: &SessionSnapshot) {
        if let Some(stop) = self.feeds.lock().get_mut(client_id).and_then(|feed| feed.stop.take()) {
            stop.cancel();
        }
        let sequences = snapshot.deliveries.iter().map(|delivery| delivery.seq).collect();
        let _ = self.events.send(FeedEvent::HandedOver { client_id: client_id.to_owned(), sequences });
    }

    async fn forget_handed(&self, client_id: &str, sequences: &[u64]) {
        let sequences: std::collections::HashSet<u64> = sequences.iter().copied().collect();
        let replies: Vec<Subject> = {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(client_id) else { return };
            let handed: Vec<u64> =
                feed.in_session.iter().filter(|(_, (s, _))| sequences.contains(s)).map(|(id, _)| *id).collect();
            let replies = handed
                .into_iter()
                .filter_map(|id| feed.in_session.remove(&id))
                .map(|(sequence, reply)| {
                    feed.by_sequence.remove(&sequence);
                    reply
                })
                .collect();
            if feed.stop.is_none() {
                // Not back here meanwhile (a new connection's feed would have a stop).
                feeds.remove(client_id);
            }
            replies
        };
        for reply in replies {
            self.ack(reply).await;
        }
    }

    /// Brings back `client_id`'s session from its record, its node having died: its client
    /// finds it (Session Present 1) and its consumer feeds it. Returns whether it did.
    pub(super) async fn recover(&self, client_id: &str) -> bool {
        let record = match self.record(client_id).await {
            Ok(Some((record, revision))) => (record, revision),
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%client_id, %error, "cluster: a persistent session's record could not be read");
                return false;
            }
        };
        let (record, revision) = record;
        if self.stream.consumer_info(&record.consumer).await.is_err() {
            // Gone with its session's expiry: so is the session.
            let _ = self.records.purge_expect_revision(key(client_id), Some(revision)).await;
            return false;
        }
        let released = match self.records.get(released_key(client_id)).await {
            Ok(value) => value.map(decode_released).unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%client_id, %error, "cluster: a session's released QoS 2 messages could not be read; they are not released again");
                Vec::new()
            }
        };
        let mut outline = record.outline;
        // Each released message in flight past PUBREC: PUBREL is what goes out again.
        for (packet_id, sequence) in &released {
            outline.deliveries.push(midge_broker::handover::HandedDelivery {
                seq: *sequence,
                qos: 2,
                retain: false,
                subscription_ids: Vec::new(),
                shared: None,
                stage: midge_broker::handover::DeliveryStage::Inflight {
                    packet_id: *packet_id,
                    awaiting_pubcomp: true,
                },
                maybe_sent: true,
                message: released_placeholder(),
            });
        }
        self.feeds.lock().entry(client_id.to_owned()).or_default().released = released;
        self.broker.take_over(outline, Instant::now());
        true
    }

    async fn run_feed(self: Arc<Self>, client_id: String, stop: CancellationToken, changed: Arc<Notify>) {
        let mut wait = Duration::from_millis(50);
        while !stop.is_cancelled() {
            let notified = changed.notified();
            let consumer = match self.record(&client_id).await {
                Ok(Some((record, _))) => self.stream.get_consumer::<pull::Config>(&record.consumer).await.ok(),
                Ok(None) => None,
                Err(error) => {
                    tracing::debug!(%client_id, %error, "cluster: reading a persistent session's record");
                    None
                }
            };
            let Some(consumer) = consumer else {
                // No consumer yet (no subscription): one comes with the first.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = notified => {}
                    () = tokio::time::sleep(wait) => wait = (wait * 2).min(Duration::from_secs(2)),
                }
                continue;
            };
            match self.pull(&client_id, &consumer, &stop).await {
                Ok(()) => return,
                Err(error) => {
                    if stop.is_cancelled() {
                        return;
                    }
                    tracing::debug!(%client_id, %error, "cluster: a persistent session's feed broke off; it starts again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => wait = (wait * 2).min(Duration::from_secs(2)),
                    }
                }
            }
        }
    }

    /// Pulls from the session's consumer and hands each message to it, until `stop` (then
    /// `Ok`) or the pull breaks. What was pulled and not handed over goes back (NAK), so the
    /// node its client moves to gets it at once.
    async fn pull(
        &self,
        client_id: &str,
        consumer: &consumer::PullConsumer,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        // What waited while the client was away is an offline queue, bounded as one in a
        // single node's store: beyond `max_offline_messages` (`max_queued_messages` when given
        // alone), the newer ones are dropped (counted).
        let mut backlog = Backlog::new(consumer.cached_info().num_pending, self.broker.limits().max_offline_messages);
        let mut give_back = Vec::new();
        let result = loop {
            let next = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => break Err(error.to_string()),
                None => break Err("the consumer's messages ended".to_owned()),
            };
            let first_delivery = message.info().is_ok_and(|info| info.delivered == 1);
            if first_delivery && backlog.drops_next() {
                self.broker.stats().dropped(midge_broker::DropReason::QueueFull, 1);
                if let Some(reply) = message.reply.clone() {
                    self.ack(reply).await;
                }
                continue;
            }
            if let Handed::Stop(message) = self.hand(client_id, message, stop).await {
                give_back.extend(message);
                break Ok(());
            }
        };
        // What the client buffered of the last batch goes back too; first the pull ends (its
        // inbox unsubscribed and that flushed), or JetStream would send them straight back here.
        while let Some(Some(Ok(message))) = futures_util::FutureExt::now_or_never(messages.next()) {
            give_back.push(Box::new(message));
        }
        drop(messages);
        let _ = self.client.flush().await;
        for message in give_back {
            let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(None)).await;
        }
        result
    }

    /// Hands one message to the session.
    async fn hand(&self, client_id: &str, message: async_nats::jetstream::Message, stop: &CancellationToken) -> Handed {
        let Ok(info) = message.info().map(|info| (info.stream_sequence, info.delivered)) else { return Handed::Next };
        let (sequence, _delivered) = info;
        let Some(reply) = message.reply.clone() else { return Handed::Next };
        let delivered_already = {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(client_id) else { return Handed::Stop(Some(Box::new(message))) };
            if let Some(id) = feed.by_sequence.get(&sequence).copied() {
                // Still in the session (its client slower than the redelivery wait): only the
                // subject that acknowledges it is new.
                feed.in_session.insert(id, (sequence, reply));
                return Handed::Next;
            }
            // Sent again before our acknowledgement reached JetStream, or released (its
            // acknowledgement lost with a node that died).
            feed.recently_acked.contains(sequence) || feed.released.iter().any(|(_, s)| *s == sequence)
        };
        if delivered_already {
            self.ack(reply).await;
            return Handed::Next;
        }
        let Some(routed) = self.message(&message) else {
            self.ack(reply).await; // unreadable (counted): it would only come again
            return Handed::Next;
        };
        let id = routed.id;
        if routed.is_expired(Instant::now()) {
            self.ack(reply).await;
            return Handed::Next;
        }
        loop {
            {
                // Tracked before the session has it: its client may acknowledge it at once.
                let mut feeds = self.feeds.lock();
                let Some(feed) = feeds.get_mut(client_id) else { return Handed::Stop(Some(Box::new(message))) };
                feed.in_session.insert(id, (sequence, reply.clone()));
                feed.by_sequence.insert(sequence, id);
            }
            let outcome = self.broker.deliver_from_fabric_to(client_id, Arc::clone(&routed), sequence);
            let (wait_for, kept) = match outcome {
                FabricDelivery::Queued => return Handed::Next,
                FabricDelivery::Congested(session) => (session, true),
                FabricDelivery::Full(session) => (session, false),
                FabricDelivery::NoMatch => {
                    self.untrack(client_id, id, sequence);
                    self.ack(reply).await;
                    return Handed::Next;
                }
                FabricDelivery::Dropped => {
                    // Dropped beyond the bound, as the router would have (counted by the core).
                    self.untrack(client_id, id, sequence);
                    self.ack(reply).await;
                    return Handed::Next;
                }
                FabricDelivery::Away | FabricDelivery::NoSession => {
                    // Gone from here (to another node, or ended): back to JetStream, for the
                    // node that has it now.
                    self.untrack(client_id, id, sequence);
                    return Handed::Stop(Some(Box::new(message)));
                }
            };
            if !kept {
                self.untrack(client_id, id, sequence);
            }
            tokio::select! {
                () = stop.cancelled() => return Handed::Stop((!kept).then(|| Box::new(message))),
                () = wait_for.wait_for_room() => {}
            }
            if kept {
                return Handed::Next;
            }
        }
    }

    fn untrack(&self, client_id: &str, id: u64, sequence: u64) {
        if let Some(feed) = self.feeds.lock().get_mut(client_id) {
            feed.in_session.remove(&id);
            feed.by_sequence.remove(&sequence);
        }
    }

    /// The message a stream entry holds, with a new id here.
    fn message(&self, message: &async_nats::jetstream::Message) -> Option<Arc<midge_broker::Message>> {
        let topic = subject_topic(&self.subject_prefix, &message.subject)
            .map_err(|error| error.to_string())
            .and_then(|topic| TopicName::new(&topic).map_err(|error| format!("{error:?}")));
        let wire = WireMessage::decode(message.payload.clone()).map_err(|error| error.to_string());
        let (topic, wire) = match (topic, wire) {
            (Ok(topic), Ok(wire)) => (topic, wire),
            (Err(error), _) | (_, Err(error)) => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = %message.subject, %error, "cluster: a message in JetStream cannot be read");
                return None;
            }
        };
        let expires_at = wire.expiry_ms.map(|at| super::instant_of(at, wire.expiry_unix));
        let publisher = wire.publisher.filter(|_| wire.origin == self.origin);
        Some(self.broker.fabric_message_from(
            topic,
            wire.payload,
            wire.qos,
            wire.retain,
            wire.properties,
            expires_at,
            publisher,
        ))
    }
}

/// The messages that waited in JetStream while a session's client was away, taken as its
/// offline queue: the first `max_offline_messages` are delivered, the rest dropped.
#[derive(Debug)]
struct Backlog {
    /// Of the backlog, how many are still to be delivered.
    keep: u64,
    /// Then how many to drop.
    drop: u64,
}

impl Backlog {
    fn new(pending: u64, max_offline_messages: usize) -> Self {
        let bound = u64::try_from(max_offline_messages).unwrap_or(u64::MAX);
        Self { keep: pending.min(bound), drop: pending.saturating_sub(bound) }
    }

    /// Whether the next message sent for the first time is to be dropped.
    fn drops_next(&mut self) -> bool {
        if self.keep > 0 {
            self.keep -= 1;
            false
        } else if self.drop > 0 {
            self.drop -= 1;
            true
        } else {
            false
        }
    }
}

/// What became of a message a feed pulled.
enum Handed {
    /// Delivered, or done with: the next.
    Next,
    /// The session is no longer fed here: the pull ends, and the message, if it was not
    /// delivered, goes back to JetStream.
    Stop(Option<Box<async_nats::jetstream::Message>>),
}

/// Remembers that `sequence` was acknowledged.
fn remember_acked(feed: &mut Feed, sequence: u64, redelivery: Duration) {
    feed.recently_acked.insert(sequence, Instant::now(), redelivery * REMEMBER_ACKED);
}

/// Stream sequences acknowledged within a while, oldest first: each forgotten once older than
/// the horizon, or once [`RECENTLY_ACKED_MAX`] newer ones came (bounded under any load).
#[derive(Debug, Default)]
struct RecentlyAcked {
    order: std::collections::VecDeque<(Instant, u64)>,
    set: std::collections::HashSet<u64>,
}

/// The most acknowledged sequences a feed remembers.
const RECENTLY_ACKED_MAX: usize = 65_536;

impl RecentlyAcked {
    fn insert(&mut self, sequence: u64, now: Instant, horizon: Duration) {
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) < horizon && self.order.len() < RECENTLY_ACKED_MAX {
                break;
            }
            self.order.pop_front();
            self.set.remove(&old);
        }
        if self.set.insert(sequence) {
            self.order.push_back((now, sequence));
        }
    }

    fn contains(&self, sequence: u64) -> bool {
        self.set.contains(&sequence)
    }
}

/// The message of a released QoS 2 delivery brought back from the bucket: only its PUBREL
/// is ever sent, so it has no content.
fn released_placeholder() -> midge_broker::handover::StoredMessage {
    midge_broker::handover::StoredMessage {
        topic: "$midge/released".to_owned(),
        payload: Bytes::new(),
        qos: 2,
        retain: false,
        shared_properties: Bytes::new(),
        expires_at_unix_ms: None,
        publisher_session: None,
    }
}

/// A new consumer's name: unique (a clean start's session gets another).
fn consumer_name() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&super::fabric::unix_now_ms().to_le_bytes());
    }
    format!("s{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Tries a JetStream request again while the stream has no leader (a NATS server restarting).
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T, E> {
    let mut waits = super::bucket::retry_waits();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => match waits.next() {
                Some(wait) => {
                    tracing::debug!(%error, "cluster: a JetStream request failed; trying again");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{collide, consumer_filters, contains, generalise};

    const P: &str = "m.t.1";

    #[test]
    fn subjects_that_overlap_become_one_that_covers_both() {
        // `a/#` is `a.>` and `a`; `a/b` is inside `a.>`.
        assert_eq!(consumer_filters(P, &["a/#", "a/b"]), ["m.t.1.a", "m.t.1.a.>"]);
        // `+/b` and `a/+` overlap (at `a/b`) and neither holds the other.
        assert_eq!(consumer_filters(P, &["+/b", "a/+"]), ["m.t.1.*.*"]);
        // Apart: kept apart; shared ones are not the consumer's.
        assert_eq!(consumer_filters(P, &["x", "y/+", "$share/g/z"]), ["m.t.1.x", "m.t.1.y.*"]);
        assert!(consumer_filters(P, &[]).is_empty());
    }

    #[test]
    fn the_result_never_overlaps_and_matches_what_each_filter_does() {
        let filters = ["a/+/c", "a/b/+", "+/b/#", "d", "d/#", "e/f", "+"];
        let subjects = consumer_filters(P, &filters);
        for (i, a) in subjects.iter().enumerate() {
            for (j, b) in subjects.iter().enumerate() {
                assert!(i == j || !collide(a, b), "{a} and {b} overlap");
            }
        }
        for filter in filters {
            for subject in super::filter_subjects(P, filter) {
                assert!(subjects.iter().any(|s| contains(s, &subject)), "{subject} is not covered by {subjects:?}");
            }
        }
    }

    #[test]
    fn a_backlog_beyond_the_queue_bound_loses_its_newest() {
        let mut backlog = super::Backlog::new(5, 2);
        let drops: Vec<bool> = (0..7).map(|_| backlog.drops_next()).collect();
        assert_eq!(drops, [false, false, true, true, true, false, false]);
        let mut within = super::Backlog::new(1, 2);
        assert!(!within.drops_next() && !within.drops_next());
    }

    #[test]
    fn acknowledged_sequences_are_forgotten_by_age_and_by_count() {
        use std::time::{Duration, Instant};
        let mut acked = super::RecentlyAcked::default();
        let start = Instant::now();
        let horizon = Duration::from_secs(30);
        acked.insert(1, start, horizon);
        acked.insert(2, start + Duration::from_secs(10), horizon);
        assert!(acked.contains(1) && acked.contains(2));
        acked.insert(3, start + Duration::from_secs(31), horizon);
        assert!(!acked.contains(1) && acked.contains(2) && acked.contains(3));
        for sequence in 10..10 + super::RECENTLY_ACKED_MAX as u64 {
            acked.insert(sequence, start + Duration::from_secs(32), horizon);
        }
        assert!(acked.set.len() <= super::RECENTLY_ACKED_MAX && !acked.contains(2));
    }

    #[test]
    fn generalising_keeps_common_tokens() {
        assert_eq!(generalise("a.b.c", "a.x.c"), "a.*.c");
        assert_eq!(generalise("a.b", "a.b.c"), "a.>");
        assert_eq!(generalise("a.>", "b.c"), "*.>");
        assert!(contains("a.>", "a.b.*") && !contains("a.*", "a.>") && contains("a.*", "a.b"));
    }
}
