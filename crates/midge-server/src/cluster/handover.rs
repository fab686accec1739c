//! A session's bytes as one node hands it to another (`midge_broker::handover`), without I/O.
//! Versioned; every length is checked on reading, so a bad reply is an error, not a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use midge_broker::handover::{DeliveryStage, HandedDelivery, SessionSnapshot, StoredMessage, StoredSubscription};

const VERSION: u8 = 1;

/// Why bytes are not a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a handed-over session cannot be read: {0}")]
pub struct HandoverError(&'static str);

/// The bytes of `snapshot`.
pub fn encode(snapshot: &SessionSnapshot) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(VERSION);
    put_str(&mut out, &snapshot.client_id);
    out.put_u8(snapshot.protocol_level);
    out.put_u32(snapshot.expiry_interval);
    out.put_u64(snapshot.next_seq);
    out.put_u32(snapshot.subscriptions.len() as u32);
    for (filter, subscription) in &snapshot.subscriptions {
        put_str(&mut out, filter);
        out.put_u8(subscription.options);
        put_opt_u32(&mut out, subscription.identifier);
    }
    out.put_u32(snapshot.deliveries.len() as u32);
    for delivery in &snapshot.deliveries {
        out.put_u64(delivery.seq);
        out.put_u8(delivery.qos);
        out.put_u8(u8::from(delivery.retain) | u8::from(delivery.maybe_sent) << 1);
        out.put_u32(delivery.subscription_ids.len() as u32);
        for id in &delivery.subscription_ids {
            out.put_u32(*id);
        }
        match &delivery.shared {
            Some(shared) => {
                out.put_u8(1);
                put_str(&mut out, shared);
            }
            None => out.put_u8(0),
        }
        match delivery.stage {
            DeliveryStage::Queued => out.put_u8(0),
            DeliveryStage::Inflight { packet_id, awaiting_pubcomp } => {
                out.put_u8(1 + u8::from(awaiting_pubcomp));
                out.put_u16(packet_id);
            }
        }
        let message = &delivery.message;
        put_str(&mut out, &message.topic);
        put_bytes(&mut out, &message.payload);
        out.put_u8(message.qos);
        out.put_u8(u8::from(message.retain));
        put_bytes(&mut out, &message.shared_properties);
        match message.expires_at_unix_ms {
            Some(at) => {
                out.put_u8(1);
                out.put_u64(at);
            }
            None => out.put_u8(0),
        }
    }
    out.put_u32(snapshot.inbound_qos2.len() as u32);
    for id in &snapshot.inbound_qos2 {
        out.put_u16(*id);
    }
    out.put_u32(snapshot.topic_ids.len() as u32);
    for (id, topic) in &snapshot.topic_ids {
        out.put_u16(*id);
        put_str(&mut out, topic);
    }
    out.freeze()
}

/// Reads a session from `bytes`.
pub fn decode(bytes: Bytes) -> Result<SessionSnapshot, HandoverError> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(HandoverError("another format version"));
    }
    let client_id = r.string()?;
    let protocol_level = r.u8()?;
    let expiry_interval = r.u32()?;
    let next_seq = r.u64()?;
    let mut subscriptions = Vec::new();
    for _ in 0..r.count()? {
        let filter = r.string()?;
        let options = r.u8()?;
        let identifier = r.opt_u32()?;
        subscriptions.push((filter, StoredSubscription { options, identifier }));
    }
    let mut deliveries = Vec::new();
    for _ in 0..r.count()? {
        let seq = r.u64()?;
        let qos = r.u8()?;
        let flags = r.u8()?;
        let mut subscription_ids = Vec::new();
        for _ in 0..r.count()? {
            subscription_ids.push(r.u32()?);
        }
        let shared = match r.u8()? {
            0 => None,
            _ => Some(r.string()?),
        };
        let stage = match r.u8()? {
            0 => DeliveryStage::Queued,
            kind @ (1 | 2) => DeliveryStage::Inflight { packet_id: r.u16()?, awaiting_pubcomp: kind == 2 },
            _ => return Err(HandoverError("unknown delivery stage")),
        };
        let topic = r.string()?;
        let payload = r.bytes()?;
        let message_qos = r.u8()?;
        let retain = r.u8()? != 0;
        let shared_properties = r.bytes()?;
        let expires_at_unix_ms = match r.u8()? {
            0 => None,
            _ => Some(r.u64()?),
        };
        deliveries.push(HandedDelivery {
            seq,
            qos,
            retain: flags & 1 != 0,
            subscription_ids,
            shared,
            stage,
            maybe_sent: flags & 2 != 0,
            message: StoredMessage {
                topic,
                payload,
                qos: message_qos,
                retain,
                shared_properties,
                expires_at_unix_ms,
                publisher_session: None,
            },
        });
    }
    let mut inbound_qos2 = Vec::new();
    for _ in 0..r.count()? {
        inbound_qos2.push(r.u16()?);
    }
    let mut topic_ids = Vec::new();
    for _ in 0..r.count()? {
        let id = r.u16()?;
        topic_ids.push((id, r.string()?));
    }
    Ok(SessionSnapshot {
        client_id,
        protocol_level,
        expiry_interval,
        next_seq,
        subscriptions,
        deliveries,
        inbound_qos2,
        topic_ids,
    })
}

fn put_str(out: &mut BytesMut, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn put_opt_u32(out: &mut BytesMut, value: Option<u32>) {
    match value {
        Some(value) => {
            out.put_u8(1);
            out.put_u32(value);
        }
        None => out.put_u8(0),
    }
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), HandoverError> {
        if self.0.remaining() < n {
            return Err(HandoverError("cut short"));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, HandoverError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, HandoverError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }

    fn u32(&mut self) -> Result<u32, HandoverError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    fn u64(&mut self) -> Result<u64, HandoverError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    /// A count of items, each at least a byte: more than the bytes left is refused before
    /// anything is allocated for them.
    fn count(&mut self) -> Result<usize, HandoverError> {
        let count = self.u32()? as usize;
        if count > self.0.remaining() {
            return Err(HandoverError("a count beyond the bytes left"));
        }
        Ok(count)
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, HandoverError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.u32().map(Some),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, HandoverError> {
        let len = self.u32()? as usize;
        self.need(len)?;
        Ok(self.0.split_to(len))
    }

    fn string(&mut self) -> Result<String, HandoverError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| HandoverError("text that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use midge_broker::handover::{DeliveryStage, HandedDelivery, SessionSnapshot, StoredMessage, StoredSubscription};
    use proptest::prelude::*;

    use super::{decode, encode};

    fn delivery() -> impl Strategy<Value = HandedDelivery> {
        (
            any::<u64>(),
            0u8..3,
            any::<bool>(),
            proptest::collection::vec(any::<u32>(), 0..3),
            proptest::option::of("[a-z/]{0,8}"),
            proptest::option::of((any::<u16>(), any::<bool>())),
            any::<bool>(),
            ("[a-z/]{1,8}", proptest::collection::vec(any::<u8>(), 0..16), proptest::option::of(any::<u64>())),
        )
            .prop_map(|(seq, qos, retain, ids, shared, inflight, maybe_sent, (topic, payload, expiry))| {
                HandedDelivery {
                    seq,
                    qos,
                    retain,
                    subscription_ids: ids,
                    shared,
                    stage: inflight.map_or(DeliveryStage::Queued, |(packet_id, awaiting_pubcomp)| {
                        DeliveryStage::Inflight { packet_id, awaiting_pubcomp }
                    }),
                    maybe_sent,
                    message: StoredMessage {
                        topic,
                        payload: Bytes::from(payload),
                        qos,
                        retain,
                        shared_properties: Bytes::from_static(b"\x26\x00\x01k\x00\x01v"),
                        expires_at_unix_ms: expiry,
                        publisher_session: None,
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn every_session_round_trips(
            client_id in "[ -~]{0,16}",
            level in 3u8..6,
            expiry: u32,
            next_seq: u64,
            subscriptions in proptest::collection::vec(("[a-z/+#]{1,8}", any::<u8>(), proptest::option::of(any::<u32>())), 0..4),
            deliveries in proptest::collection::vec(delivery(), 0..4),
            inbound in proptest::collection::vec(any::<u16>(), 0..4),
            topic_ids in proptest::collection::vec((any::<u16>(), "[a-z]{1,4}"), 0..3),
        ) {
            let snapshot = SessionSnapshot {
                client_id,
                protocol_level: level,
                expiry_interval: expiry,
                next_seq,
                subscriptions: subscriptions.into_iter().map(|(f, options, identifier)| (f, StoredSubscription { options, identifier })).collect(),
                deliveries,
                inbound_qos2: inbound,
                topic_ids,
            };
            prop_assert_eq!(decode(encode(&snapshot)), Ok(snapshot));
        }

        #[test]
        fn no_bytes_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn a_snapshot_cut_anywhere_is_an_error() {
        let snapshot = SessionSnapshot {
            client_id: "c".into(),
            protocol_level: 5,
            expiry_interval: 60,
            next_seq: 9,
            subscriptions: vec![("a/#".into(), StoredSubscription { options: 1, identifier: Some(4) })],
            deliveries: Vec::new(),
            inbound_qos2: vec![7],
            topic_ids: Vec::new(),
        };
        let bytes = encode(&snapshot);
        for cut in 0..bytes.len() {
            assert!(decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
