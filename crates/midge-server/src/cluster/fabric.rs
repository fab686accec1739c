//! The core's fabric port on NATS: messages published on this node go out on their topic's
//! subject, retained values to the bucket, and the node's filters become subscriptions
//! ([`super::inbound`]). Called from the core's threads: nothing here blocks; the NATS I/O is
//! in the node's tasks, fed by bounded queues.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use midge_broker::ports::fabric::Fabric;
use midge_broker::Message;
use midge_codec::{QoS, TopicFilter};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::stats::ClusterStats;
use super::subject::topic_subject;
use super::wire::WireMessage;

/// Messages waiting to go out; beyond it they are dropped and counted (a NATS link that cannot
/// keep up must not hold the node's memory without bound).
pub(super) const OUTBOUND_QUEUE: usize = 1 << 16;

/// A message on its way to the other nodes.
#[derive(Debug)]
pub(super) struct Outbound {
    /// Its topic's subject.
    pub(super) subject: String,
    /// Its [`WireMessage`] bytes.
    pub(super) payload: Bytes,
    /// QoS 1/2: published through JetStream (the durable path), with this id for JetStream to
    /// drop a second copy of, and its publisher's acknowledgement waits for JetStream's.
    pub(super) durable: Option<String>,
}

/// A retained value on its way to the bucket.
#[derive(Debug)]
pub(super) struct RetainedUpdate {
    /// The topic.
    pub(super) topic: String,
    /// Its [`WireMessage`] bytes (with an absolute expiry), or `None` to remove it.
    pub(super) value: Option<Bytes>,
}

/// A change in which filters this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InterestChange {
    /// The first session to hold it subscribed.
    Add(String),
    /// The last one left it.
    Remove(String),
}

/// The fabric the core holds.
#[derive(Debug)]
pub(super) struct NatsFabric {
    /// QoS 0 messages' subjects are under `{prefix}.t.0`, QoS 1/2 ones' under `{prefix}.t.1`
    /// (the durable path's stream holds those: see [`super::durable`]).
    pub(super) subject_prefix: String,
    durable_prefix: String,
    /// Durable messages queued so far: the ticket a publisher's acknowledgement waits for
    /// ([`super::Cluster::durable_generation`]).
    pub(super) durable_queued: AtomicU64,
    /// Messages in `outbound`: QoS 0 ones beyond [`OUTBOUND_QUEUE`] are dropped; QoS 1/2 ones
    /// are kept (their publishers wait for each read's worth, so they are bounded there).
    pub(super) queued: std::sync::atomic::AtomicUsize,
    /// Whether persistent sessions are fed through the durable path.
    feeds: bool,
    /// This node's id in the messages it sends (random at each start).
    pub(super) origin: u64,
    sequence: AtomicU64,
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Rung by the sending task as the outbound queue drains, for publishers paced while it
    /// was over its high-water mark ([`NatsFabric::congested`]).
    pub(super) room: Arc<tokio::sync::Notify>,
    retained: mpsc::Sender<RetainedUpdate>,
    /// Retained updates queued so far: a publisher's acknowledgement waits until the bucket
    /// has them ([`super::Cluster::retained_written`]).
    pub(super) retained_queued: AtomicU64,
    retained_order: Mutex<()>,
    /// How many sessions hold each filter; a change to or from none goes to `changes`, under
    /// this lock, so the subscriptions follow the counts in order.
    holders: Mutex<HashMap<Box<str>, usize>>,
    /// Each change numbered (its generation), so a connection can wait until NATS has what it
    /// subscribed to ([`super::Cluster::interest_settled`]).
    changes: mpsc::UnboundedSender<(u64, InterestChange)>,
    /// The last generation sent.
    pub(super) requested: std::sync::atomic::AtomicU64,
    /// Client ids whose sessions ended here, for their ownership keys to go. Bounded: under a
    /// storm of short sessions what does not fit is left (a stale key costs the client's next
    /// connect elsewhere one request to this node, which answers that it has nothing).
    ended: mpsc::Sender<String>,
    /// Wills armed (the will's bucket value) and disarmed (`None`), by client id.
    wills: mpsc::Sender<(String, Option<Bytes>)>,
    /// What the durable path's feeds hear of their sessions: a message delivered, or a
    /// session's subscriptions changed.
    feed_events: mpsc::UnboundedSender<FeedEvent>,
    /// The generation of the last subscription change of a fed session.
    pub(super) feed_requested: AtomicU64,
    pub(super) stats: Arc<ClusterStats>,
}

/// What the core tells the durable path's feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FeedEvent {
    /// A message a feed brought (its id here) was delivered; `packet_id` is the one its
    /// exchange ended with (PUBACK, PUBCOMP).
    Delivered { client_id: String, message_id: u64, packet_id: Option<u16> },
    /// The session went whole to another node, with the deliveries at these stream
    /// sequences (see [`super::durable::Durable::handed_over`]): after the deliveries the core
    /// reported before it went.
    HandedOver { client_id: String, sequences: Vec<u64> },
    /// The client has a QoS 2 message a feed brought (PUBREC); `generation` orders it with
    /// the subscription changes, since PUBREL waits for it as a SUBACK does for those.
    Released { client_id: String, message_id: u64, packet_id: u16, generation: u64 },
    /// A fed session's subscriptions changed; `generation` orders the changes.
    Subscriptions { client_id: String, generation: u64 },
}

/// The receiving ends of a [`NatsFabric`]'s queues.
#[derive(Debug)]
pub(super) struct FabricQueues {
    pub(super) outbound: mpsc::UnboundedReceiver<Outbound>,
    pub(super) retained: mpsc::Receiver<RetainedUpdate>,
    pub(super) changes: mpsc::UnboundedReceiver<(u64, InterestChange)>,
    pub(super) ended: mpsc::Receiver<String>,
    pub(super) wills: mpsc::Receiver<(String, Option<Bytes>)>,
    pub(super) feed_events: mpsc::UnboundedReceiver<FeedEvent>,
}

impl NatsFabric {
    /// `prefix` is the cluster's; `feeds` whether persistent sessions are fed through the
    /// durable path.
    pub(super) fn new(prefix: &str, origin: u64, feeds: bool, stats: Arc<ClusterStats>) -> (Self, FabricQueues) {
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (feed_events, feed_events_rx) = mpsc::unbounded_channel();
        let (retained, retained_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (ended, ended_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (wills, wills_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let fabric = Self {
            subject_prefix: super::subject_prefix(prefix, false),
            durable_prefix: super::subject_prefix(prefix, true),
            durable_queued: AtomicU64::new(0),
            queued: std::sync::atomic::AtomicUsize::new(0),
            feeds,
            origin,
            sequence: AtomicU64::new(0),
            outbound,
            room: Arc::new(tokio::sync::Notify::new()),
            retained,
            retained_queued: AtomicU64::new(0),
            retained_order: Mutex::new(()),
            holders: Mutex::new(HashMap::new()),
            changes,
            requested: std::sync::atomic::AtomicU64::new(0),
            ended,
            wills,
            feed_events,
            feed_requested: AtomicU64::new(0),
            stats,
        };
        let queues = FabricQueues {
            outbound: outbound_rx,
            retained: retained_rx,
            changes: changes_rx,
            ended: ended_rx,
            wills: wills_rx,
            feed_events: feed_events_rx,
        };
        (fabric, queues)
    }

    /// A sender of what the durable path's feeds hear, in order with the core's reports.
    pub(super) fn feed_events(&self) -> mpsc::UnboundedSender<FeedEvent> {
        self.feed_events.clone()
    }

    /// Whether the outbound queue is over three quarters full: NATS is not taking this node's
    /// messages as fast as its publishers send them.
    pub(super) fn congested(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > OUTBOUND_QUEUE / 4 * 3
    }

    /// How many distinct filters this node holds.
    pub(super) fn filters(&self) -> usize {
        self.holders.lock().len()
    }

    fn wire(&self, message: &Message, expiry_ms: Option<u64>) -> WireMessage {
        WireMessage {
            qos: message.qos,
            retain: message.retain,
            origin: self.origin,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
            expiry_ms,
            expiry_unix: false,
            publisher: None,
            properties: message.shared_properties.clone(),
            payload: message.payload.clone(),
        }
    }
}

impl Fabric for NatsFabric {
    fn publish(&self, message: &Arc<Message>) {
        let now = Instant::now();
        if message.is_expired(now) {
            return;
        }
        let left_ms = message
            .expires_at
            .map(|at| u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX));
        if message.qos == QoS::AtMostOnce {
            if self.queued.load(Ordering::Relaxed) >= OUTBOUND_QUEUE {
                self.stats.dropped_outbound.fetch_add(1, Ordering::Relaxed);
            } else {
                let payload = self.wire(message, left_ms).encode();
                let subject = topic_subject(&self.subject_prefix, &message.topic);
                self.queue(Outbound { subject, payload, durable: None });
            }
        } else {
            // It may wait in JetStream for a session whose client is away: the time it expires
            // at, not the time it has left (the nodes' clocks must agree).
            let mut wire = self.wire(message, left_ms.map(|left| unix_now_ms().saturating_add(left)));
            wire.expiry_unix = wire.expiry_ms.is_some();
            wire.publisher = message.publisher;
            let id = format!("{:x}-{:x}", wire.origin, wire.sequence);
            let subject = topic_subject(&self.durable_prefix, &message.topic);
            // Counted before it is queued: a publisher's ticket never runs ahead of its message.
            self.durable_queued.fetch_add(1, Ordering::SeqCst);
            self.queue(Outbound { subject, payload: wire.encode(), durable: Some(id) });
        }
        if message.retain {
            let value = (!message.payload.is_empty()).then(|| {
                let unix_ms = left_ms.map(|left| unix_now_ms().saturating_add(left));
                self.wire(message, unix_ms).encode()
            });
            // Counted under the lock that orders the queue, so a count read after a publish
            // covers its update (see `Cluster::retained_generation`).
            let _order = self.retained_order.lock();
            if self.retained.try_send(RetainedUpdate { topic: message.topic.to_string(), value }).is_err() {
                self.stats.dropped_retained.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %message.topic, "cluster: retained update dropped, the bucket is not keeping up");
            } else {
                self.retained_queued.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn feeds_persistent_sessions(&self) -> bool {
        self.feeds
    }

    fn delivered(&self, client_id: &str, message_id: u64, packet_id: Option<u16>) {
        let _ = self.feed_events.send(FeedEvent::Delivered { client_id: client_id.to_owned(), message_id, packet_id });
    }

    fn released(&self, client_id: &str, message_id: u64, packet_id: u16) {
        let generation = self.feed_requested.fetch_add(1, Ordering::SeqCst) + 1;
        let client_id = client_id.to_owned();
        let _ = self.feed_events.send(FeedEvent::Released { client_id, message_id, packet_id, generation });
    }

    fn subscriptions_changed(&self, client_id: &str) {
        let generation = self.feed_requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.feed_events.send(FeedEvent::Subscriptions { client_id: client_id.to_owned(), generation });
    }

    fn interest(&self, filter: &TopicFilter, added: bool) {
        let mut holders = self.holders.lock();
        if added {
            let count = holders.entry(Box::from(filter.as_str())).or_insert(0);
            *count += 1;
            if *count == 1 {
                let generation = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = self.changes.send((generation, InterestChange::Add(filter.to_string())));
            }
        } else if let Some(count) = holders.get_mut(filter.as_str()) {
            *count -= 1;
            if *count == 0 {
                holders.remove(filter.as_str());
                let generation = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = self.changes.send((generation, InterestChange::Remove(filter.to_string())));
            }
        }
    }

    fn session_ended(&self, client_id: &str) {
        let _ = self.ended.try_send(client_id.to_owned());
    }

    fn will_armed(&self, client_id: &str, will: Option<&Message>) {
        let value = will.map(|will| {
            let left_ms = will
                .expires_at
                .map(|at| u64::try_from(at.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX));
            super::wills::encode(&will.topic, &self.wire(will, left_ms))
        });
        if self.wills.try_send((client_id.to_owned(), value)).is_err() {
            self.stats.dropped_wills.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%client_id, "cluster: a will's update was dropped, the bucket is not keeping up");
        }
    }
}

impl NatsFabric {
    fn queue(&self, outbound: Outbound) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.outbound.send(outbound).is_err() {
            // The node is leaving the cluster: its sending task is gone.
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped_outbound.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(super) fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use midge_codec::TopicFilter;

    use super::{InterestChange, NatsFabric};
    use midge_broker::ports::fabric::Fabric;

    #[test]
    fn a_filter_is_subscribed_by_its_first_holder_and_left_by_its_last() {
        let (fabric, mut queues) = NatsFabric::new("m", 1, true, Arc::default());
        let filter = TopicFilter::new("a/+").unwrap();
        fabric.interest(&filter, true);
        fabric.interest(&filter, true);
        fabric.interest(&filter, false);
        assert_eq!(fabric.filters(), 1);
        fabric.interest(&filter, false);
        // A removal of a filter not held (never added) changes nothing.
        fabric.interest(&TopicFilter::new("b").unwrap(), false);
        assert_eq!(queues.changes.try_recv(), Ok((1, InterestChange::Add("a/+".into()))));
        assert_eq!(queues.changes.try_recv(), Ok((2, InterestChange::Remove("a/+".into()))));
        assert!(queues.changes.try_recv().is_err());
        assert_eq!(fabric.filters(), 0);
    }
}
