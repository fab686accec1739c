//! The session's outbound messages in flight: packet ids, acknowledgements (PUBACK, PUBREC,
//! PUBCOMP) and what a reconnecting client is sent again.

use midge_codec::{PacketId, QoS, ReasonCode};

use super::records::delivery_record;
use super::state::{AckOutcome, Inflight, InflightStage, Session, SessionState};
use crate::delivery::Outgoing;
use crate::journal::Journal;
use crate::ports::durability::{Change, Changes, DeliveryStage};

impl Session {
    /// Handles PUBACK (QoS 1) or PUBCOMP (QoS 2) for an outbound message.
    pub(crate) fn complete(&self, packet_id: PacketId, pubcomp: bool, journal: Option<&Journal>) -> AckOutcome {
        let mut state = self.state.lock();
        promote_restored(&mut state, packet_id);
        let expected = if pubcomp { InflightStage::AwaitingComp } else { InflightStage::AwaitingAck };
        match state.inflight.get(&packet_id.get()) {
            Some(entry) if entry.stage == expected && (pubcomp || entry.item.qos == QoS::AtLeastOnce) => {
                let entry = state.inflight.remove(&packet_id.get()).expect("just found");
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                state.ring_attached();
                AckOutcome::Completed(entry.item.message.id)
            }
            _ => AckOutcome::Unknown,
        }
    }

    /// Handles PUBREC for an outbound QoS 2 message. A PUBREC with an error reason ends the
    /// exchange (MQTT 5.0 section 4.3.3). For a persistent session the new stage is written
    /// before PUBREL may go out, so that after a restart PUBREL is resent, not the message.
    pub(crate) fn received(&self, packet_id: PacketId, reason: ReasonCode, journal: Option<&Journal>) -> AckOutcome {
        let mut state = self.state.lock();
        promote_restored(&mut state, packet_id);
        let Some(entry) = state.inflight.get_mut(&packet_id.get()) else { return AckOutcome::Unknown };
        if entry.item.qos != QoS::ExactlyOnce {
            return AckOutcome::Unknown;
        }
        if reason.is_error() {
            let entry = state.inflight.remove(&packet_id.get()).expect("just found");
            if entry.durable {
                self.forget_delivery(journal, entry.seq, &entry.item.message);
            }
            state.ring_attached();
            return AckOutcome::Completed(entry.item.message.id);
        }
        if entry.stage == InflightStage::AwaitingComp {
            return AckOutcome::SendPubRel(None, None); // a repeated PUBREC: already recorded
        }
        entry.stage = InflightStage::AwaitingComp;
        let ticket = match journal.filter(|_| entry.durable) {
            Some(journal) => {
                let stage = DeliveryStage::Inflight { packet_id: packet_id.get(), awaiting_pubcomp: true };
                let mut changes = Changes::new();
                let record = delivery_record(&entry.item, stage);
                changes.push(Change::PutDelivery { client_id: self.client_id.to_string(), seq: entry.seq, record });
                Some(journal.submit(changes))
            }
            None => None,
        };
        AckOutcome::SendPubRel(ticket, Some(entry.item.message.id))
    }

    /// Everything in flight, in send order, for resending after a reconnect (MQTT-4.4.0-1):
    /// unacknowledged PUBLISHes with DUP set, and PUBRELs for those past PUBREC.
    pub(crate) fn resend_inflight(&self, conn_id: u64) -> Vec<Outgoing> {
        let state = self.state.lock();
        if state.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) {
            return Vec::new();
        }
        let mut entries: Vec<_> = state.inflight.iter().collect();
        entries.sort_by_key(|(_, entry)| entry.seq);
        entries
            .into_iter()
            .map(|(&id, entry)| {
                let packet_id = PacketId::new(id).expect("in-flight ids are non-zero");
                match entry.stage {
                    InflightStage::AwaitingAck => {
                        Outgoing::Publish { item: entry.item.clone(), packet_id: Some(packet_id), dup: true }
                    }
                    InflightStage::AwaitingComp => Outgoing::PubRel(packet_id),
                }
            })
            .collect()
    }
}

/// The packet id of the delivery with sequence number `seq`.
///
/// Ids follow the delivery order instead of being picked from a free list, so a session restored
/// from the store resends each in-flight message with its original packet id (MQTT-4.4.0-1)
/// without the id assignment having to be made durable before the PUBLISH is sent. An id is
/// reused only 65,535 deliveries later; if the message that held it then is still unacknowledged,
/// sending waits (see `Session::take_ready`).
/// Takes a queued message restored after a restart as in flight when the client acknowledges
/// its packet id: it was sent before the restart with that id (ids follow the delivery's
/// sequence number), and the client's PUBACK or PUBREC answers that PUBLISH (MQTT-4.3.3-6,
/// MQTT-4.4.0-1), so it is not sent again.
fn promote_restored(state: &mut SessionState, packet_id: PacketId) {
    if state.inflight.contains_key(&packet_id.get()) {
        return;
    }
    let Some(at) = state.queue.iter().position(|entry| {
        entry.maybe_sent && entry.item.qos != QoS::AtMostOnce && packet_id_for(entry.seq) == packet_id
    }) else {
        return;
    };
    let entry = state.queue.remove(at).expect("just found");
    state.queued_bytes -= entry.item.message.payload.len();
    let inflight =
        Inflight { seq: entry.seq, item: entry.item, stage: InflightStage::AwaitingAck, durable: entry.durable };
    state.inflight.insert(packet_id.get(), inflight);
}

pub(super) fn packet_id_for(seq: u64) -> PacketId {
    let id = (seq % u64::from(u16::MAX)) as u16 + 1;
    PacketId::new(id).expect("1..=65535")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;
    use midge_codec::{Properties, ProtocolVersion, Publish, TopicName};

    use super::*;
    use crate::delivery::{Queued, ReadyBatch, SubscriptionIds};
    use crate::kick::Kick;
    use crate::limits::Limits;
    use crate::message::Message;

    fn qos1(payload: &str) -> Queued {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("t").unwrap(),
            packet_id: PacketId::new(1),
            properties: Properties::default(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        };
        Queued {
            message: Arc::new(Message::new(1, &publish, None, Instant::now())),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SubscriptionIds::new(),
            shared: None,
            handed_on: 0,
        }
    }

    fn ids(out: &[Outgoing]) -> Vec<u16> {
        out.iter()
            .map(|o| match o {
                Outgoing::Publish { packet_id, .. } => packet_id.unwrap().get(),
                Outgoing::PubRel(id) => id.get(),
            })
            .collect()
    }

    #[test]
    fn packet_ids_follow_delivery_order_and_wait_for_a_reused_id_to_be_released() {
        let limits = Limits::default();
        let session = Arc::new(Session::new(1, "c".into(), ProtocolVersion::V311, 0));
        session.attach(7, Arc::new(Kick::default()), 100, ProtocolVersion::V311, 0);
        session.enqueue(qos1("a"), &limits, None, true);
        session.enqueue(qos1("b"), &limits, None, true);
        let mut out = ReadyBatch::new();
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out, &mut Vec::new());
        assert_eq!(ids(&out), [1, 2]);
        session.complete(PacketId::new(2).unwrap(), false, None);

        // 65,535 deliveries later the id 1 comes round again while "a" is still unacknowledged.
        session.lock().next_seq = u64::from(u16::MAX);
        session.enqueue(qos1("c"), &limits, None, true);
        out.clear();
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out, &mut Vec::new());
        assert!(out.is_empty(), "id 1 is still in flight");
        session.complete(PacketId::new(1).unwrap(), false, None);
        session.take_ready(7, Instant::now(), 10, |_| true, None, &mut out, &mut Vec::new());
        assert_eq!(ids(&out), [1]);
    }
}
