//! A batch of write operations, applied atomically in one transaction.

use crate::records::{DeliveryRecord, MessageId, MessageRecord, SessionRecord, SubscriptionRecord};

/// One write operation. Operations in a [`Batch`] apply in order: a later one on the same key
/// wins, and [`Op::DeleteSession`] removes what earlier operations of the batch put for that
/// client as well as what was stored before.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Stores a message (or replaces it).
    PutMessage(MessageId, MessageRecord),
    /// Deletes a message: the broker does this when its last reference goes.
    DeleteMessage(MessageId),
    /// Sets the retained message of a topic.
    PutRetained {
        /// The topic.
        topic: String,
        /// The message, stored with [`Op::PutMessage`].
        message: MessageId,
    },
    /// Clears the retained message of a topic.
    DeleteRetained(String),
    /// Stores a persistent session (or replaces it).
    PutSession {
        /// The session's client identifier.
        client_id: String,
        /// The session.
        record: SessionRecord,
    },
    /// Deletes a session with all its subscriptions, deliveries, inbound QoS 2 ids and topic ids.
    DeleteSession(String),
    /// Stores a subscription of a session (or replaces it).
    PutSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter, including any `$share/name/` prefix.
        filter: String,
        /// The options.
        record: SubscriptionRecord,
    },
    /// Deletes a subscription of a session.
    DeleteSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter.
        filter: String,
    },
    /// Stores a delivery entry of a session's queue (or replaces it, e.g. when it goes in flight).
    PutDelivery {
        /// The session's client identifier.
        client_id: String,
        /// Its position in the session's queue: entries load in `seq` order.
        seq: u64,
        /// The entry.
        record: DeliveryRecord,
    },
    /// Deletes a delivery entry: delivered (PUBACK / PUBCOMP received), expired or dropped.
    DeleteDelivery {
        /// The session's client identifier.
        client_id: String,
        /// Its position in the queue.
        seq: u64,
    },
    /// Records an inbound QoS 2 packet id whose PUBREL has not arrived.
    PutInboundQos2 {
        /// The session's client identifier.
        client_id: String,
        /// The packet id of the PUBLISH answered with PUBREC.
        packet_id: u16,
    },
    /// Forgets an inbound QoS 2 packet id (PUBREL received).
    DeleteInboundQos2 {
        /// The session's client identifier.
        client_id: String,
        /// The packet id.
        packet_id: u16,
    },
    /// Stores a topic id of a session: a number a gateway gave a topic name for the session's
    /// client (an MQTT-SN normal topic id). Deleted only with the session.
    PutTopicId {
        /// The session's client identifier.
        client_id: String,
        /// The id.
        topic_id: u16,
        /// The topic name it stands for.
        topic: String,
    },
}

impl Op {
    /// A rough size in bytes, for the writer's bound on pending work: the variable-length parts
    /// plus a fixed allowance for keys, headers and the `Op` itself.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Op::PutMessage(_, m) => m.topic.len() + m.payload.len() + m.shared_properties.len(),
                Op::DeleteMessage(_) => 0,
                Op::PutRetained { topic, .. } | Op::DeleteRetained(topic) => topic.len(),
                Op::PutSession { client_id, record } => {
                    client_id.len()
                        + record
                            .delayed_will
                            .as_ref()
                            .map_or(0, |w| w.topic.len() + w.payload.len() + w.properties.len())
                }
                Op::DeleteSession(client_id) => client_id.len(),
                Op::PutSubscription { client_id, filter, .. } | Op::DeleteSubscription { client_id, filter } => {
                    client_id.len() + filter.len()
                }
                Op::PutDelivery { client_id, record, .. } => {
                    client_id.len() + 4 * record.subscription_ids.len() + record.shared.as_ref().map_or(0, String::len)
                }
                Op::DeleteDelivery { client_id, .. }
                | Op::PutInboundQos2 { client_id, .. }
                | Op::DeleteInboundQos2 { client_id, .. } => client_id.len(),
                Op::PutTopicId { client_id, topic, .. } => client_id.len() + topic.len(),
            }
    }
}

/// Operations applied atomically, in order, in one transaction: all of them or none survive a
/// crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The operations, in order.
    ops: Vec<Op>,
    /// Sum of [`Op::approx_bytes`], kept up to date so the writer's bound costs nothing to check.
    approx_bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.approx_bytes += op.approx_bytes();
        self.ops.push(op);
        self
    }

    /// Appends every operation of `other`, after this batch's.
    pub fn append(&mut self, other: &mut Batch) {
        self.approx_bytes += std::mem::take(&mut other.approx_bytes);
        self.ops.append(&mut other.ops);
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Splits the batch in two at operation `at`: this keeps the first `at`, the result holds
    /// the rest.
    pub(crate) fn split_off(&mut self, at: usize) -> Batch {
        let ops = self.ops.split_off(at);
        let approx_bytes = ops.iter().map(Op::approx_bytes).sum();
        self.approx_bytes -= approx_bytes;
        Batch { ops, approx_bytes }
    }

    /// Whether it deletes a session: committing that writes a tombstone for every row the
    /// session has (its queue may hold 100,000 deliveries).
    pub(crate) fn deletes_sessions(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::DeleteSession(_)))
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// A rough size in bytes (see [`Op::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// Appends [`Op::PutMessage`].
    pub fn put_message(&mut self, id: MessageId, record: MessageRecord) -> &mut Self {
        self.push(Op::PutMessage(id, record))
    }

    /// Appends [`Op::DeleteMessage`].
    pub fn delete_message(&mut self, id: MessageId) -> &mut Self {
        self.push(Op::DeleteMessage(id))
    }

    /// Appends [`Op::PutRetained`].
    pub fn put_retained(&mut self, topic: impl Into<String>, message: MessageId) -> &mut Self {
        self.push(Op::PutRetained { topic: topic.into(), message })
    }

    /// Appends [`Op::DeleteRetained`].
    pub fn delete_retained(&mut self, topic: impl Into<String>) -> &mut Self {
        self.push(Op::DeleteRetained(topic.into()))
    }

    /// Appends [`Op::PutSession`].
    pub fn put_session(&mut self, client_id: impl Into<String>, record: SessionRecord) -> &mut Self {
        self.push(Op::PutSession { client_id: client_id.into(), record })
    }

    /// Appends [`Op::DeleteSession`].
    pub fn delete_session(&mut self, client_id: impl Into<String>) -> &mut Self {
        self.push(Op::DeleteSession(client_id.into()))
    }

    /// Appends [`Op::PutSubscription`].
    pub fn put_subscription(
        &mut self,
        client_id: impl Into<String>,
        filter: impl Into<String>,
        record: SubscriptionRecord,
    ) -> &mut Self {
        self.push(Op::PutSubscription { client_id: client_id.into(), filter: filter.into(), record })
    }

    /// Appends [`Op::DeleteSubscription`].
    pub fn delete_subscription(&mut self, client_id: impl Into<String>, filter: impl Into<String>) -> &mut Self {
        self.push(Op::DeleteSubscription { client_id: client_id.into(), filter: filter.into() })
    }

    /// Appends [`Op::PutDelivery`].
    pub fn put_delivery(&mut self, client_id: impl Into<String>, seq: u64, record: DeliveryRecord) -> &mut Self {
        self.push(Op::PutDelivery { client_id: client_id.into(), seq, record })
    }

    /// Appends [`Op::DeleteDelivery`].
    pub fn delete_delivery(&mut self, client_id: impl Into<String>, seq: u64) -> &mut Self {
        self.push(Op::DeleteDelivery { client_id: client_id.into(), seq })
    }

    /// Appends [`Op::PutInboundQos2`].
    pub fn put_inbound_qos2(&mut self, client_id: impl Into<String>, packet_id: u16) -> &mut Self {
        self.push(Op::PutInboundQos2 { client_id: client_id.into(), packet_id })
    }

    /// Appends [`Op::DeleteInboundQos2`].
    pub fn delete_inbound_qos2(&mut self, client_id: impl Into<String>, packet_id: u16) -> &mut Self {
        self.push(Op::DeleteInboundQos2 { client_id: client_id.into(), packet_id })
    }

    /// Appends [`Op::PutTopicId`].
    pub fn put_topic_id(&mut self, client_id: impl Into<String>, topic_id: u16, topic: impl Into<String>) -> &mut Self {
        self.push(Op::PutTopicId { client_id: client_id.into(), topic_id, topic: topic.into() })
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Self {
        let approx_bytes = ops.iter().map(Op::approx_bytes).sum();
        Batch { ops, approx_bytes }
    }
}
