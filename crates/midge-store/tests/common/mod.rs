//! Records and batches shared by the integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use midge_store::{
    Batch, DeliveryRecord, DeliveryState, MessageId, MessageRecord, SessionRecord, SubscriptionRecord, WillRecord,
};

/// A message whose payload names `id`, so a damaged or mixed-up record shows.
pub fn message(id: u64) -> MessageRecord {
    MessageRecord {
        topic: format!("site/7/sensor/{}/reading", id % 100),
        payload: Bytes::from(format!("reading number {id:08}, padded to look like telemetry ........").into_bytes()),
        qos: 1 + (id % 2) as u8,
        retain: id.is_multiple_of(3),
        shared_properties: Bytes::from_static(&[0x03, 0x00, 0x04, b't', b'e', b'x', b't']),
        expires_at_unix_ms: id.is_multiple_of(5).then_some(1_900_000_000_000 + id),
        publisher_session: Some(id % 7),
    }
}

pub fn session(session_id: u64) -> SessionRecord {
    SessionRecord {
        session_id,
        protocol_level: 5,
        expiry_interval: 3600,
        expires_at_unix_ms: Some(1_900_000_000_000),
        delayed_will: session_id.is_multiple_of(2).then(|| WillRecord {
            due_unix_ms: 1_900_000_000_500,
            topic: format!("wills/{session_id}"),
            payload: Bytes::from_static(b"gone"),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
            message_expiry_interval: Some(60),
        }),
    }
}

pub fn subscription(identifier: Option<u32>) -> SubscriptionRecord {
    SubscriptionRecord { options: 0b0000_0101, identifier }
}

pub fn delivery(message: u64, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        message: MessageId(message),
        qos: 1,
        retain: false,
        subscription_ids: vec![7, 9],
        shared: message.is_multiple_of(4).then(|| "workers".to_owned()),
        state,
    }
}

/// Batches that exercise every operation, including a session deleted in the same batch that
/// put its rows, and puts overwritten or deleted later in one batch.
pub fn varied_batches() -> Vec<Batch> {
    let mut batches = Vec::new();

    let mut b = Batch::new();
    for id in 1..=6 {
        b.put_message(MessageId(id), message(id));
    }
    b.put_retained("site/7/state", MessageId(3));
    b.put_retained("site/8/state", MessageId(6));
    b.put_session("historian", session(1));
    b.put_subscription("historian", "site/+/sensor/#", subscription(Some(7)));
    b.put_subscription("historian", "$share/workers/site/#", subscription(None));
    b.put_delivery("historian", 0, delivery(1, DeliveryState::Inflight { packet_id: 1, awaiting_pubcomp: false }));
    b.put_delivery("historian", 1, delivery(2, DeliveryState::Inflight { packet_id: 2, awaiting_pubcomp: true }));
    b.put_delivery("historian", 2, delivery(4, DeliveryState::Queued));
    b.put_inbound_qos2("historian", 11);
    b.put_inbound_qos2("historian", 300);
    b.put_topic_id("historian", 2, "site/7/state");
    b.put_topic_id("historian", 1, "site/8/state");
    b.put_session("dashboard", session(2));
    b.put_subscription("dashboard", "site/7/#", subscription(None));
    b.put_topic_id("dashboard", 1, "site/7/state");
    b.put_delivery("dashboard", 0, delivery(4, DeliveryState::Queued));
    batches.push(b);

    let mut b = Batch::new();
    // Delivered: the entry and, its last reference gone, the message.
    b.delete_delivery("historian", 0);
    b.delete_message(MessageId(1));
    b.delete_inbound_qos2("historian", 11);
    b.delete_subscription("historian", "$share/workers/site/#");
    b.put_delivery("historian", 3, delivery(5, DeliveryState::Queued));
    // Put and deleted within one group commit: never written.
    b.put_message(MessageId(99), message(99));
    b.delete_message(MessageId(99));
    // Overwritten within the batch: the last one wins.
    b.put_retained("site/9/state", MessageId(5));
    b.put_retained("site/9/state", MessageId(6));
    b.delete_retained("site/8/state");
    // A session that comes and goes in one batch, plus one deleted with stored rows.
    b.put_session("ephemeral", session(3));
    b.put_subscription("ephemeral", "x/#", subscription(None));
    b.put_delivery("ephemeral", 0, delivery(5, DeliveryState::Queued));
    b.put_topic_id("ephemeral", 1, "x/y");
    b.delete_session("ephemeral");
    b.delete_session("dashboard");
    // A client id that is a prefix of another must not take the other's rows with it.
    b.put_session("historian-2", session(4));
    b.put_subscription("historian-2", "a", subscription(None));
    b.delete_session("historia");
    batches.push(b);

    batches
}
