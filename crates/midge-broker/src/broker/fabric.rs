//! A cluster's other nodes, through the fabric port ([`crate::ports::fabric`]): plugging one
//! in, messages and retained values that arrive from it, and this node's interest reported to
//! it.

use std::sync::Arc;

use midge_codec::TopicFilter;

use super::state::Broker;
use crate::message::Message;
use crate::ports::fabric::{Fabric, FabricScope};
use crate::route::read_batch::ReadBatch;

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
        let id = self.next_id_for_message();
        Arc::new(Message::restored(id, topic, payload, qos, retain, shared_properties, expires_at, None))
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
