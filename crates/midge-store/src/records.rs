//! The records the broker persists, as plain Rust types.
//!
//! Each value is stored as one record-version byte followed by the record in postcard. A field
//! added later makes a new record version; readers keep decoding the old ones (see `codec`).
//! Protocol-level things (topic names, properties, subscription options) are kept in the shapes
//! the broker already has them in, encoded by the broker: the store never interprets them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a stored message. The broker allocates ids, starting after
/// [`Snapshot::next_message_id`](crate::Snapshot::next_message_id) on recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

/// A published message, stored once however many sessions and retained topics refer to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The topic it was published to.
    pub topic: String,
    /// The application payload.
    pub payload: Bytes,
    /// The QoS it was published with (0, 1 or 2).
    pub qos: u8,
    /// The retain flag it was published with.
    pub retain: bool,
    /// MQTT 5.0 properties that every receiver gets (content type, user properties, ...), encoded
    /// by the broker; empty for 3.1.1 publishers.
    pub shared_properties: Bytes,
    /// When the message expires (Message Expiry Interval), so recovery can resume the countdown.
    pub expires_at_unix_ms: Option<u64>,
    /// The publishing session, for the No Local option; `None` when that does not matter.
    pub publisher_session: Option<u64>,
}

/// A persistent session: one that outlives its connection (clean session 0, or a v5 session
/// expiry interval above zero).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The broker's number for this session incarnation; a new one after a clean start.
    pub session_id: u64,
    /// The protocol level the client last connected with (3, 4 or 5).
    pub protocol_level: u8,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the session expires if the client stays away; `None` while connected or never.
    pub expires_at_unix_ms: Option<u64>,
    /// A will whose Will Delay Interval had not elapsed when it was saved.
    pub delayed_will: Option<WillRecord>,
}

/// A will message waiting for its delay to elapse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WillRecord {
    /// When to publish it.
    pub due_unix_ms: u64,
    /// The will topic.
    pub topic: String,
    /// The will payload.
    pub payload: Bytes,
    /// The will QoS.
    pub qos: u8,
    /// The will retain flag.
    pub retain: bool,
    /// The will properties, encoded by the broker.
    pub properties: Bytes,
    /// Its Message Expiry Interval in seconds, counted from when it is published (record
    /// version 2; `None` in older records).
    pub message_expiry_interval: Option<u32>,
}

/// One subscription of a persistent session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// The v5 subscription options byte (QoS, No Local, Retain As Published, Retain Handling);
    /// for 3.1.1 only the QoS bits are set.
    pub options: u8,
    /// The Subscription Identifier, if the client gave one.
    pub identifier: Option<u32>,
}

/// A message queued for, or in flight to, one persistent session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The message to deliver.
    pub message: MessageId,
    /// The QoS it is delivered with (the minimum of the publish and subscription QoS).
    pub qos: u8,
    /// The retain flag it is delivered with (Retain As Published may keep it).
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// The share name, when it came through a shared subscription.
    pub shared: Option<String>,
    /// Where it is in the delivery protocol.
    pub state: DeliveryState,
}

/// The delivery protocol state of a [`DeliveryRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Not sent yet.
    Queued,
    /// Sent with this packet id; resent with DUP on reconnection.
    Inflight {
        /// The packet id it was sent with.
        packet_id: u16,
        /// QoS 2 only: PUBREC received and PUBREL sent, so PUBREL (not PUBLISH) is resent.
        awaiting_pubcomp: bool,
    },
}
