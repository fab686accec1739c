//! A message on its way to one session: the delivery the router makes of it (with the QoS,
//! RETAIN flag and subscription identifiers of the subscription it matched), and what a session
//! hands its connection to send.

use std::sync::Arc;

use midge_codec::{PacketId, QoS};
use smallvec::SmallVec;

use crate::limits::DRAIN_BATCH;
use crate::message::Message;

/// Subscription identifiers that matched one message, usually none or one.
pub type SubscriptionIds = SmallVec<[u32; 1]>;

/// A message waiting for, or in, delivery to one session.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The shared message.
    pub message: Arc<Message>,
    /// The QoS it is delivered with: the minimum of published and granted (MQTT-3.8.4-8).
    pub qos: QoS,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// Identifiers of the matching subscriptions (MQTT-3.3.4-3).
    pub subscription_ids: SubscriptionIds,
    /// The `$share/{group}/{filter}` it came through, so that it can go to another member if this
    /// session ends before acknowledging it (MQTT 5.0 section 4.8.2).
    pub shared: Option<Arc<str>>,
    /// How many members of its shared group it was handed on from because they may not read it
    /// (at most [`crate::SHARED_HAND_ONS`]).
    pub handed_on: u8,
}

/// A message handed to the connection to send.
#[derive(Debug)]
pub enum Outgoing {
    /// A PUBLISH, new or resent.
    Publish {
        /// What to send.
        item: Queued,
        /// The packet id, for QoS 1 and 2.
        packet_id: Option<PacketId>,
        /// Whether this is a resend (MQTT-3.3.1-1).
        dup: bool,
    },
    /// A PUBREL to resend after reconnecting (MQTT-4.4.0-1).
    PubRel(PacketId),
}

/// What a session hands its connection in one go: at most [`DRAIN_BATCH`] messages, kept on the
/// stack of the drain that fills it, so an idle connection keeps no buffer for them.
pub(crate) type ReadyBatch = SmallVec<[Outgoing; DRAIN_BATCH]>;
