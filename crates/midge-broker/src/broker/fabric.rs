//! A cluster's other nodes, through the fabric port ([`crate::ports::fabric`]): plugging one
//! in, messages and retained values that arrive from it, and this node's interest reported to
//! it.

use std::sync::Arc;

use midge_codec::TopicFilter;

use super::state::Broker;
use crate::handover::SessionSnapshot;
use crate::message::Message;
use crate::ports::fabric::{Fabric, FabricScope};
use crate::route::read_batch::ReadBatch;
use crate::session::Session;

/// Which subscriptions a message is routed to on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteScope<'a> {
    /// Every matching subscription: a node on its own, and the broker's own messages.
    All,
    /// Subscriptions that are not shared (a message the fabric shares out across nodes).
    Unshared,
    /// The one shared group `$share/{group}/{filter}`.
    Share(&'a str),
}

impl<'a> From<FabricScope<'a>> for RouteScope<'a> {
    fn from(scope: FabricScope<'a>) -> Self {
        match scope {
            FabricScope::Unshared => Self::Unshared,
            FabricScope::Share(name) => Self::Share(name),
        }
    }
}

impl RouteScope<'_> {
    /// Whether a shared group `group` of `filter` is in scope.
    pub(crate) fn includes_share(self, group: &str, filter: &str) -> bool {
        match self {
            Self::All => true,
            Self::Unshared => false,
            Self::Share(name) => name
                .strip_prefix("$share/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(g, f)| g == group && f == filter),
        }
    }

    /// Whether subscriptions that are not shared are in scope.
    pub(crate) fn includes_unshared(self) -> bool {
        !matches!(self, Self::Share(_))
    }
}

impl Broker {
    /// Makes this broker a node of a cluster: from now on it hands `fabric` the messages
    /// published here and its sessions' filters (those held already are reported now). Set it
    /// before accepting connections. Returns `false`, changing nothing, if one was set before.
    pub fn set_fabric(&self, fabric: Arc<dyn Fabric>) -> bool {
        if self.fabric.set(Arc::clone(&fabric)).is_err() {
            return false;
        }
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            let filters: Vec<String> = session.lock().subscriptions.iter().map(|(f, _)| f.to_owned()).collect();
            for filter in filters {
                if let Ok(filter) = TopicFilter::new(&filter) {
                    fabric.interest(&filter, true);
                }
            }
        }
        true
    }

    /// Delivers a message from another node to this node's subscriptions in `scope`. Its
    /// retained value, if any, arrives separately ([`Broker::set_retained_from_fabric`]).
    pub fn publish_from_fabric(&self, message: Arc<Message>, scope: FabricScope<'_>) {
        let mut batch = ReadBatch::unpaced();
        self.route_in(&message, &mut batch, scope.into());
        self.end_batch(&mut batch);
    }

    /// Sets a retained value the cluster agreed on (an empty payload removes the topic's): kept
    /// in memory for new subscribers, not routed (its publisher's node did that) and not
    /// written to this node's store (the cluster's copy is the one that survives).
    pub fn set_retained_from_fabric(&self, message: Arc<Message>) {
        self.retained.write().set(&message);
    }

    /// A message from another node, with a fresh id on this one.
    #[allow(clippy::too_many_arguments)]
    pub fn fabric_message(
        &self,
        topic: midge_codec::TopicName,
        payload: bytes::Bytes,
        qos: midge_codec::QoS,
        retain: bool,
        shared_properties: bytes::Bytes,
        expires_at: Option<std::time::Instant>,
    ) -> Arc<Message> {
        self.fabric_message_from(topic, payload, qos, retain, shared_properties, expires_at, None)
    }

    /// A message from the fabric, with a fresh id on this one, published by the session
    /// `publisher` of this node (a message that came back: No Local holds for it).
    #[allow(clippy::too_many_arguments)]
    pub fn fabric_message_from(
        &self,
        topic: midge_codec::TopicName,
        payload: bytes::Bytes,
        qos: midge_codec::QoS,
        retain: bool,
        shared_properties: bytes::Bytes,
        expires_at: Option<std::time::Instant>,
        publisher: Option<u64>,
    ) -> Arc<Message> {
        let id = self.next_id_for_message();
        Arc::new(Message::restored(id, topic, payload, qos, retain, shared_properties, expires_at, publisher))
    }

    /// Whether a session that is persistent (`expiry_interval` > 0) gets its QoS 1/2 messages
    /// through the fabric on this node.
    pub(crate) fn fabric_feeds(&self, expiry_interval: u32) -> bool {
        expiry_interval > 0 && self.fabric.get().is_some_and(|fabric| fabric.feeds_persistent_sessions())
    }

    /// Delivers a message the fabric kept for `client_id`'s session (see
    /// [`Fabric::feeds_persistent_sessions`]) through its subscriptions that match, as the
    /// router would have (QoS downgrade, Retain As Published, No Local, subscription
    /// identifiers, overlapping subscriptions once), shared ones excepted (the fabric shares
    /// those out). Queued beyond the session's bound while its client is connected, as a
    /// paced publisher's would be: the caller then waits for [`Session::wait_for_room`].
    ///
    /// `seq` is the message's place in the fabric's stream: it fixes the packet id (see
    /// `Session::enqueue_at`).
    pub fn deliver_from_fabric_to(&self, client_id: &str, message: Arc<Message>, seq: u64) -> FabricDelivery {
        let Some(session) = self.sessions.lock().get(client_id).cloned() else { return FabricDelivery::NoSession };
        let mut item: Option<crate::delivery::Queued> = None;
        {
            let state = session.lock();
            if state.ended {
                return FabricDelivery::NoSession;
            }
            for (filter, subscription) in state.subscriptions.iter() {
                if filter.starts_with("$share/") || !crate::filters::matches(filter, &message.topic) {
                    continue;
                }
                let options = subscription.options;
                if options.no_local && message.publisher == Some(session.id()) {
                    continue; // MQTT-3.8.3-3
                }
                let qos = message.qos.min(options.qos);
                // MQTT-3.3.1-12/13: RETAIN is kept only with Retain As Published.
                let retain = message.retain && options.retain_as_published;
                match item.as_mut() {
                    // Overlapping subscriptions: one delivery, the highest QoS, every id (MQTT-3.3.4-2, -3).
                    Some(item) => {
                        item.qos = item.qos.max(qos);
                        item.retain |= retain;
                        item.subscription_ids.extend(subscription.id);
                    }
                    None => {
                        item = Some(crate::delivery::Queued {
                            message: Arc::clone(&message),
                            qos,
                            retain,
                            subscription_ids: subscription.id.into_iter().collect(),
                            shared: None,
                            handed_on: 0,
                        });
                    }
                }
            }
        }
        let Some(item) = item else { return FabricDelivery::NoMatch };
        // Not written to this node's store: the fabric keeps it until it is delivered.
        let (outcome, wake) = session.enqueue_at(item, seq, &self.limits);
        if let Some(kick) = wake {
            kick.ring();
        }
        match outcome {
            crate::session::EnqueueOutcome::Queued(_) => FabricDelivery::Queued,
            crate::session::EnqueueOutcome::QueuedCongested(_) => FabricDelivery::Congested(session),
            crate::session::EnqueueOutcome::DroppedQueueFull | crate::session::EnqueueOutcome::DroppedOffline => {
                if !session.lock().is_attached() {
                    FabricDelivery::Away
                } else if session.drops_beyond_bound() {
                    self.stats.dropped(crate::stats::DropReason::QueueFull, 1);
                    FabricDelivery::Dropped
                } else {
                    FabricDelivery::Full(session)
                }
            }
        }
    }

    /// Tells the fabric that a message it brought to `client_id` was delivered (with the
    /// packet id its exchange ended with, if it had one).
    pub(crate) fn fabric_delivered(&self, client_id: &str, message_id: u64, packet_id: Option<u16>) {
        if let Some(fabric) = self.fabric.get() {
            fabric.delivered(client_id, message_id, packet_id);
        }
    }

    /// Tells the fabric that the client of `client_id` has a QoS 2 message it brought
    /// (PUBREC), before PUBREL goes out.
    pub(crate) fn fabric_released(&self, client_id: &str, message_id: u64, packet_id: u16) {
        if let Some(fabric) = self.fabric.get() {
            fabric.released(client_id, message_id, packet_id);
        }
    }

    /// Tells the fabric that a session it feeds changed its subscriptions.
    pub(crate) fn fabric_subscriptions_changed(&self, session: &Session) {
        if session.is_fabric_fed() {
            if let Some(fabric) = self.fabric.get() {
                fabric.subscriptions_changed(session.client_id());
            }
        }
    }

    /// The session of `client_id` without its messages: what the cluster keeps of a session
    /// it feeds, to bring it back on another node if this one dies.
    pub fn session_outline(&self, client_id: &str) -> Option<SessionSnapshot> {
        let session = self.sessions.lock().get(client_id).cloned()?;
        let state = session.lock();
        if state.ended {
            return None;
        }
        Some(SessionSnapshot {
            client_id: client_id.to_owned(),
            protocol_level: state.protocol.level(),
            expiry_interval: state.expiry_interval,
            next_seq: 0,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, subscription)| {
                    let record = crate::ports::durability::StoredSubscription {
                        options: crate::session::options_byte(subscription.options),
                        identifier: subscription.id,
                    };
                    (filter.to_owned(), record)
                })
                .collect(),
            deliveries: Vec::new(),
            inbound_qos2: Vec::new(),
            topic_ids: Vec::new(),
        })
    }

    /// Tells the fabric, if there is one, that a session subscribed to `filter` or left it.
    pub(crate) fn report_interest(&self, filter: &TopicFilter, added: bool) {
        if let Some(fabric) = self.fabric.get() {
            fabric.interest(filter, added);
        }
    }

    /// Tells the fabric, if there is one, that `client_id`'s will is no longer this node's to
    /// publish (it was, or it was cancelled).
    pub(crate) fn disarm_will(&self, client_id: &str) {
        if let Some(fabric) = self.fabric.get() {
            fabric.will_armed(client_id, None);
        }
    }

    /// The fabric, if this node is one of a cluster.
    pub(crate) fn fabric(&self) -> Option<&Arc<dyn Fabric>> {
        self.fabric.get()
    }
}

impl Broker {
    /// Publishes the will of a client of a node that died (the cluster kept it): as a will
    /// published here, to this node's subscribers and, through the fabric, the others'.
    pub fn publish_orphan_will(&self, message: Arc<Message>) {
        self.publish_will(message);
    }
}

/// What became of a message the fabric brought to one session
/// ([`Broker::deliver_from_fabric_to`]).
#[derive(Debug)]
pub enum FabricDelivery {
    /// Queued; the fabric hears when it is delivered ([`Fabric::delivered`]).
    Queued,
    /// Queued beyond the session's bound: wait for [`Session::wait_for_room`] before the next.
    Congested(Arc<Session>),
    /// Not queued: the session's queue is at its hard bound. Offer it again after
    /// [`Session::wait_for_room`].
    Full(Arc<Session>),
    /// Not queued: the session is over its bound and drops what comes beyond it (the
    /// slow-consumer policy shed it, or its MQTT-SN client sleeps), as it would from the
    /// router; counted. Done with.
    Dropped,
    /// Not queued: its client is not connected (it just left): offer it when it is again.
    Away,
    /// None of the session's subscriptions matches it (any more): nothing to deliver.
    NoMatch,
    /// There is no such session on this node (ended, or moved to another).
    NoSession,
}
