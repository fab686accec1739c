//! A session as one node of a cluster hands it to another (issue 17): everything its client
//! would find on reconnecting to the same node: subscriptions, queued and in-flight deliveries
//! with their sequence numbers (which fix their packet ids, so none is reused or changed),
//! inbound QoS 2 ids awaiting PUBREL, MQTT-SN topic ids. Times are wall-clock, so the nodes'
//! clocks must agree (NTP) for expiries to hold.

pub use crate::ports::durability::{DeliveryStage, StoredMessage, StoredSubscription};

/// A session, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Its client identifier.
    pub client_id: String,
    /// The protocol level its client last connected with (3, 4 or 5).
    pub protocol_level: u8,
    /// Its Session Expiry Interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// The next delivery's sequence number.
    pub next_seq: u64,
    /// Its subscriptions.
    pub subscriptions: Vec<(String, StoredSubscription)>,
    /// Its deliveries, in flight and queued, in sequence order.
    pub deliveries: Vec<HandedDelivery>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound_qos2: Vec<u16>,
    /// MQTT-SN topic ids and their topics.
    pub topic_ids: Vec<(u16, String)>,
}

/// One delivery of a [`SessionSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedDelivery {
    /// Its place in the session's order (fixes its packet id).
    pub seq: u64,
    /// The QoS it is delivered with.
    pub qos: u8,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// The matching subscriptions' identifiers.
    pub subscription_ids: Vec<u32>,
    /// The `$share/{group}/{filter}` it came through.
    pub shared: Option<String>,
    /// Queued, or in flight with its packet id.
    pub stage: DeliveryStage,
    /// It may have been sent before (it goes out with DUP set).
    pub maybe_sent: bool,
    /// The message.
    pub message: StoredMessage,
}
