//! Messages from the other nodes: this node's filters as NATS subscriptions, and what arrives
//! on them put back in order and handed to the core's router.
//!
//! *Once per node.* Every unshared subscription is in one queue group named after the node, so
//! NATS gives the node one copy of a message however many of its filters match (`a/+` and
//! `a/#` overlap); the node's own router then finds every local subscriber. A shared group
//! `$share/{g}/{f}` is a queue group named after both the share name and the filter (NATS
//! groups by queue name only, MQTT by name and filter), on the connection that echoes, so one
//! member in the whole cluster gets each message.
//!
//! *In order.* `async-nats` gives each subscription its own queue, so two messages of one
//! publisher that matched different subscriptions could be taken out of order. Each
//! subscription is polled with a waker that names it; a batch is taken until no subscription
//! is ready, and sorted by (origin, sequence). That is enough: the connection fills the queues
//! in the order the server sent, which is each publisher's order, so when a message is taken,
//! every earlier one of its publisher is already in some queue and is in this batch or was in
//! an earlier one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_nats::{Client, Subscriber};
use base64::Engine as _;
use futures_util::StreamExt as _;
use midge_broker::ports::fabric::FabricScope;
use midge_broker::Broker;
use midge_codec::TopicName;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

use super::fabric::InterestChange;
use super::stats::ClusterStats;
use super::subject::{filter_subjects, subject_topic};
use super::wire::WireMessage;

/// A request nobody answers, through the server and back: see [`Inbound::flush`].
async fn round_trip(client: Client, subject: String) {
    match client.request(subject, bytes::Bytes::new()).await {
        Ok(_) => {}
        Err(error) if error.kind() == async_nats::client::RequestErrorKind::NoResponders => {}
        Err(error) => tracing::debug!(%error, "cluster: NATS round trip after new subscriptions"),
    }
}

/// How long a flush of new subscriptions may hold up the SUBACKs waiting for it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The queue group of a node's unshared subscriptions.
pub(super) fn node_queue(prefix: &str, node: &str) -> String {
    format!("{prefix}.node.{node}")
}

/// The queue group of a shared subscription `$share/{group}/{filter}`, cluster-wide.
pub(super) fn share_queue(prefix: &str, share: &str) -> String {
    format!("{prefix}.share.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(share))
}

/// Which subscriptions are ready to be read, named by the wakers they were polled with.
#[derive(Debug, Default)]
struct Ready {
    slots: Mutex<Vec<usize>>,
    notify: Notify,
}

struct SlotWaker {
    slot: usize,
    ready: Arc<Ready>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.slots.lock().push(self.slot);
        self.ready.notify.notify_one();
    }
}

/// One NATS subscription of a filter.
struct Slot {
    subscriber: Subscriber,
    waker: Waker,
    /// The shared subscription it is for, or `None` for the node's unshared ones.
    share: Option<Arc<str>>,
}

/// What arrived, before it is sorted.
struct Arrival {
    wire: WireMessage,
    subject: async_nats::Subject,
    share: Option<Arc<str>>,
}

/// This node's subscriptions on NATS and the task that reads them.
pub(super) struct Inbound {
    pub(super) broker: Arc<Broker>,
    pub(super) routes: Client,
    pub(super) shares: Client,
    pub(super) prefix: String,
    pub(super) subject_prefix: String,
    pub(super) node: String,
    pub(super) stats: Arc<ClusterStats>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_filter: HashMap<String, Vec<usize>>,
    ready: Arc<Ready>,
}

impl Inbound {
    pub(super) fn new(
        broker: Arc<Broker>,
        routes: Client,
        shares: Client,
        prefix: String,
        node: String,
        stats: Arc<ClusterStats>,
    ) -> Self {
        // QoS 0 messages and QoS 1/2 ones (the durable path's) alike.
        let subject_prefix = format!("{prefix}.t.*");
        Self {
            broker,
            routes,
            shares,
            prefix,
            subject_prefix,
            node,
            stats,
            slots: Vec::new(),
            free: Vec::new(),
            by_filter: HashMap::new(),
            ready: Arc::default(),
        }
    }

    /// Follows the node's interest and delivers what arrives, until `stop`.
    ///
    /// Outside tokio's cooperative budget: with the budget spent, a subscription with messages
    /// waiting answers `Pending` and its wake is deferred until the task yields, so a batch
    /// would end while earlier messages of a publisher still wait on another subscription, and
    /// they would be delivered after later ones. The task yields when every subscription is
    /// empty.
    ///
    /// After each run of interest changes, both connections are flushed (the server has the
    /// subscriptions then) and the last change's generation is told to `settled`.
    pub(super) async fn run(
        self,
        changes: mpsc::UnboundedReceiver<(u64, InterestChange)>,
        settled: watch::Sender<u64>,
        stop: watch::Receiver<bool>,
    ) {
        tokio::task::unconstrained(self.follow(changes, settled, stop)).await;
    }

    async fn follow(
        mut self,
        mut changes: mpsc::UnboundedReceiver<(u64, InterestChange)>,
        settled: watch::Sender<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let ready = Arc::clone(&self.ready);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                change = changes.recv() => {
                    let Some(mut change) = change else { return };
                    // This change and every one queued behind it, then one flush for them all.
                    loop {
                        let (generation, what) = change;
                        match what {
                            InterestChange::Add(filter) => self.subscribe(filter).await,
                            InterestChange::Remove(filter) => self.unsubscribe(&filter),
                        }
                        match changes.try_recv() {
                            Ok(next) => change = next,
                            Err(_) => {
                                self.flush().await;
                                settled.send_replace(generation);
                                break;
                            }
                        }
                    }
                }
                () = ready.notify.notified() => {
                    self.deliver_ready();
                    // Outside the budget, only this lets the worker's other tasks run while
                    // messages keep coming.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Waits (a little) until the NATS server has processed what was sent on both connections:
    /// a request nobody answers makes a round trip through the server, which handles a
    /// connection's commands in order, so its "no responders" comes after our SUBs took effect
    /// (the client's `flush` only writes them out).
    async fn flush(&self) {
        let subject = format!("{}.ping.{}", self.prefix, self.node);
        let both = futures_util::future::join(
            round_trip(self.routes.clone(), subject.clone()),
            round_trip(self.shares.clone(), subject),
        );
        if tokio::time::timeout(FLUSH_TIMEOUT, both).await.is_err() {
            tracing::debug!("cluster: NATS did not confirm new subscriptions in time");
        }
    }

    async fn subscribe(&mut self, filter: String) {
        let (client, queue, inner, share) = match filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/')) {
            Some((_, inner)) => {
                (&self.shares, share_queue(&self.prefix, &filter), inner.to_owned(), Some(Arc::from(filter.as_str())))
            }
            None => (&self.routes, node_queue(&self.prefix, &self.node), filter.clone(), None),
        };
        let mut subscribers = Vec::new();
        for subject in filter_subjects(&self.subject_prefix, &inner) {
            match client.queue_subscribe(subject.clone(), queue.clone()).await {
                Ok(subscriber) => subscribers.push(subscriber),
                Err(error) => {
                    tracing::error!(%filter, %subject, %error, "cluster: cannot subscribe on NATS; messages from other nodes for this filter are not received")
                }
            }
        }
        let mut slots = Vec::with_capacity(subscribers.len());
        for subscriber in subscribers {
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let waker = Waker::from(Arc::new(SlotWaker { slot, ready: Arc::clone(&self.ready) }));
            self.slots[slot] = Some(Slot { subscriber, waker, share: share.clone() });
            // Polled once, so its waker is registered.
            self.ready.slots.lock().push(slot);
            slots.push(slot);
        }
        self.ready.notify.notify_one();
        self.by_filter.insert(filter, slots);
    }

    fn unsubscribe(&mut self, filter: &str) {
        for slot in self.by_filter.remove(filter).unwrap_or_default() {
            // Dropping the subscriber unsubscribes it.
            self.slots[slot] = None;
            self.free.push(slot);
        }
    }

    /// Takes everything ready, puts it in each publisher's order and routes it.
    fn deliver_ready(&mut self) {
        let mut batch: Vec<Arrival> = Vec::new();
        loop {
            let ready = std::mem::take(&mut *self.ready.slots.lock());
            if ready.is_empty() {
                break;
            }
            for slot in ready {
                let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
                let mut context = Context::from_waker(&entry.waker);
                // Until it is empty (Pending) or closed: unsubscribed, or the client closed.
                while let Poll::Ready(Some(message)) = entry.subscriber.poll_next_unpin(&mut context) {
                    match WireMessage::decode(message.payload) {
                        Ok(wire) => batch.push(Arrival { wire, subject: message.subject, share: entry.share.clone() }),
                        Err(error) => {
                            self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(subject = %message.subject, %error, "cluster: a message from another node cannot be read");
                        }
                    }
                }
            }
        }
        batch.sort_by_key(|arrival| (arrival.wire.origin, arrival.wire.sequence));
        let now = Instant::now();
        for arrival in batch {
            self.deliver(arrival, now);
        }
    }

    fn deliver(&self, arrival: Arrival, now: Instant) {
        let prefix = super::subject_prefix(&self.prefix, arrival.wire.qos != midge_codec::QoS::AtMostOnce);
        let topic = subject_topic(&prefix, &arrival.subject)
            .map_err(|error| error.to_string())
            .and_then(|topic| TopicName::new(&topic).map_err(|error| format!("{error:?}")));
        let topic = match topic {
            Ok(topic) => topic,
            Err(error) => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = %arrival.subject, %error, "cluster: a message from another node has no valid topic");
                return;
            }
        };
        let wire = arrival.wire;
        let expires_at = wire.expiry_ms.map(|ms| {
            if wire.expiry_unix {
                super::instant_of(ms, true)
            } else {
                now + Duration::from_millis(ms)
            }
        });
        let message =
            self.broker.fabric_message(topic, wire.payload, wire.qos, wire.retain, wire.properties, expires_at);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let scope = match &arrival.share {
            Some(share) => FabricScope::Share(share),
            None => FabricScope::Unshared,
        };
        self.broker.publish_from_fabric(message, scope);
    }
}
