//! A session taken whole out of this node, or brought in from another (`crate::handover`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use midge_codec::QoS;

use super::records::options_byte;
use super::state::{Entry, Inflight, InflightStage, Session};
use crate::delivery::Queued;
use crate::handover::{HandedDelivery, SessionSnapshot};
use crate::journal::Journal;
use crate::message::Message;
use crate::ports::durability::{DeliveryStage, QueueReadError, StoredMessage, StoredSubscription};

impl Session {
    /// Everything the session holds for its client, the part of its queue in the store read
    /// back. Call it on an ended session, so nothing changes it meanwhile.
    pub(crate) fn snapshot(&self, journal: Option<&Journal>) -> Result<SessionSnapshot, QueueReadError> {
        let state = self.state.lock();
        let unix_ms = |at: Instant| journal.map_or_else(|| wall_ms(at), |journal| journal.unix_ms(at));
        let stored = |message: &Message| StoredMessage {
            topic: message.topic.to_string(),
            payload: message.payload.clone(),
            qos: message.qos.as_u8(),
            retain: message.retain,
            shared_properties: message.shared_properties.clone(),
            expires_at_unix_ms: message.expires_at.map(unix_ms),
            publisher_session: None,
        };
        let handed = |seq: u64, item: &Queued, stage: DeliveryStage, maybe_sent: bool| HandedDelivery {
            seq,
            qos: item.qos.as_u8(),
            retain: item.retain,
            subscription_ids: item.subscription_ids.iter().copied().collect(),
            shared: item.shared.as_deref().map(str::to_owned),
            stage,
            maybe_sent,
            message: stored(&item.message),
        };
        let mut deliveries: Vec<HandedDelivery> = Vec::new();
        for (packet_id, entry) in &state.inflight {
            let awaiting_pubcomp = entry.stage == InflightStage::AwaitingComp;
            let stage = DeliveryStage::Inflight { packet_id: *packet_id, awaiting_pubcomp };
            deliveries.push(handed(entry.seq, &entry.item, stage, true));
        }
        for entry in &state.queue {
            deliveries.push(handed(entry.seq, &entry.item, DeliveryStage::Queued, entry.maybe_sent));
        }
        if let (Some(spill), Some(queues)) = (state.spill.as_ref(), journal.and_then(Journal::queues)) {
            for record in queues.read_queue(&self.client_id, spill.first_seq, usize::MAX)? {
                let Some(message) = record.message else { continue };
                let delivery = record.delivery;
                deliveries.push(HandedDelivery {
                    seq: record.seq,
                    qos: delivery.qos,
                    retain: delivery.retain,
                    subscription_ids: delivery.subscription_ids,
                    shared: delivery.shared,
                    stage: DeliveryStage::Queued,
                    maybe_sent: record.seq < spill.sent_below,
                    message,
                });
            }
        }
        deliveries.sort_by_key(|delivery| delivery.seq);
        Ok(SessionSnapshot {
            client_id: self.client_id.to_string(),
            protocol_level: state.protocol.level(),
            expiry_interval: state.expiry_interval,
            next_seq: state.next_seq,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, s)| {
                    (filter.to_owned(), StoredSubscription { options: options_byte(s.options), identifier: s.id })
                })
                .collect(),
            deliveries,
            inbound_qos2: state.inbound_qos2.iter().copied().collect(),
            topic_ids: state.topic_ids.iter().flat_map(|ids| ids.iter()).map(|(id, t)| (*id, t.to_string())).collect(),
        })
    }

    /// Brings in a delivery of a handed-over session (before any connection attaches); not in
    /// the store yet (`write_whole` puts it there).
    pub(crate) fn import_delivery(&self, seq: u64, item: Queued, stage: DeliveryStage, maybe_sent: bool) {
        let mut state = self.state.lock();
        state.next_seq = state.next_seq.max(seq + 1);
        match stage {
            DeliveryStage::Queued => {
                state.queued_bytes += item.message.payload.len();
                state.queue.push_back(Entry { seq, item, durable: false, maybe_sent });
            }
            DeliveryStage::Inflight { packet_id, awaiting_pubcomp } => {
                let stage = if awaiting_pubcomp { InflightStage::AwaitingComp } else { InflightStage::AwaitingAck };
                state.inflight.insert(packet_id, Inflight { seq, item, stage, durable: false });
            }
        }
    }

    /// Sets what a handed-over session continues from: its next sequence number and, its
    /// client being away, its expiry from `now`. Returns when it expires.
    pub(crate) fn import_position(&self, next_seq: u64, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock();
        state.next_seq = state.next_seq.max(next_seq);
        state.expires_at = match state.expiry_interval {
            u32::MAX => None,
            secs => Some(now + Duration::from_secs(u64::from(secs))),
        };
        state.expires_at
    }
}

/// The message a handed-over delivery carries, with a fresh id on this node. `None` for a QoS
/// or topic that is not valid.
pub(crate) fn message_from_handed(id: u64, message: StoredMessage, now: Instant) -> Option<Arc<Message>> {
    let topic = midge_codec::TopicName::new(&message.topic).ok()?;
    let qos = QoS::from_u8(message.qos)?;
    let expires_at = message.expires_at_unix_ms.map(|at| {
        let now_ms = wall_ms(now);
        now + Duration::from_millis(at.saturating_sub(now_ms))
    });
    Some(Arc::new(Message::restored(
        id,
        topic,
        message.payload,
        qos,
        message.retain,
        message.shared_properties,
        expires_at,
        None,
    )))
}

/// Wall-clock milliseconds at `at`.
fn wall_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    match at.checked_duration_since(now) {
        Some(ahead) => unix_now.saturating_add(ahead.as_millis() as u64),
        None => unix_now.saturating_sub(now.duration_since(at).as_millis() as u64),
    }
}
