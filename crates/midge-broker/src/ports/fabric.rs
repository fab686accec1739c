//! The fabric port: the other nodes of a cluster (issue 17, decision 0010).
//!
//! A broker with a [`Fabric`] ([`crate::Broker::set_fabric`]) hands it each message published
//! on this node (by a client, as a will, or through the MQTT-SN gateway), once, and tells it
//! which filters this node's sessions hold, so the fabric can carry the message to the nodes
//! that have subscribers and bring theirs here ([`crate::Broker::publish_from_fabric`]).
//! Shared subscriptions are the fabric's to share out across nodes: a message published here
//! goes to a shared group only through it. Without a fabric nothing of this runs, and the
//! broker is what it was.

use std::sync::Arc;

use midge_codec::TopicFilter;

use crate::message::Message;

/// The rest of the cluster, as this node sees it.
pub trait Fabric: Send + Sync + std::fmt::Debug {
    /// Takes a message published on this node, after its local deliveries. Must not block.
    fn publish(&self, message: &Arc<Message>);

    /// A session of this node subscribed to `filter` (`added`), or no longer is (one call per
    /// subscription added or removed, so the fabric counts holders). Must not block.
    fn interest(&self, filter: &TopicFilter, added: bool);

    /// The session of `client_id` ended here (not handed to another node), so the cluster may
    /// forget that this node holds it. Must not block.
    fn session_ended(&self, client_id: &str);

    /// A client connected here with a will it may publish (`Some`, as it would be published
    /// now), or its connection ended (`None`: the will was published here, parked for its
    /// delay, or is not due). The cluster keeps the armed ones, so that if this node dies the
    /// others publish them. Must not block.
    fn will_armed(&self, client_id: &str, will: Option<&Message>);

    /// Whether persistent sessions get their QoS 1/2 messages through the fabric (a durable
    /// path that keeps them for the session wherever its client next connects) rather than
    /// from the router: the router then leaves them out for such sessions, and the fabric
    /// brings each with [`crate::Broker::deliver_from_fabric_to`]. Default: no.
    fn feeds_persistent_sessions(&self) -> bool {
        false
    }

    /// A message the fabric brought to `client_id`'s session (its id on this node) was
    /// delivered: acknowledged by the client (PUBACK, PUBCOMP: `packet_id` is its packet id),
    /// sent at QoS 0, or dropped (expired, undeliverable). Must not block.
    fn delivered(&self, client_id: &str, message_id: u64, packet_id: Option<u16>) {
        let _ = (client_id, message_id, packet_id);
    }

    /// The client of `client_id` has a QoS 2 message the fabric brought (it sent PUBREC for
    /// `packet_id`): PUBREL goes out next, and from then on the message is not to be sent
    /// again, only PUBREL, should the session move to another node (MQTT-4.3.3). The caller's
    /// connection waits until the fabric has kept this before PUBREL goes out (see the
    /// server's cluster). Must not block.
    fn released(&self, client_id: &str, message_id: u64, packet_id: u16) {
        let _ = (client_id, message_id, packet_id);
    }

    /// The subscriptions of `client_id`'s session, fed by the fabric, changed (a SUBSCRIBE or
    /// UNSUBSCRIBE took effect). Must not block.
    fn subscriptions_changed(&self, client_id: &str) {
        let _ = client_id;
    }
}

/// Which of this node's subscriptions a message from the fabric is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FabricScope<'a> {
    /// Every subscription that is not shared: the copy each node with subscribers gets.
    Unshared,
    /// The shared group `$share/{group}/{filter}` only: the fabric picked this node for it.
    Share(&'a str),
}
