//! The session's durable life: its records in the store, what a restart brings back, and what
//! ending it deletes or hands on.

use std::time::Instant;

use midge_codec::{PacketId, QoS, RetainHandling, SubscriptionOptions};

use super::state::{Entry, Inflight, InflightStage, Session};
use crate::delivery::Queued;
use crate::journal::Journal;
use crate::message::Message;
use crate::ports::durability::{
    Change, Changes, DeliveryStage, StoredDelivery, StoredSession, StoredSubscription, StoredWill, Ticket,
};

impl Session {
    /// Deletes a delivery's record and its reference to the message. Called with the session
    /// lock held, so it is ordered after the record's put.
    pub(super) fn forget_delivery(&self, journal: Option<&Journal>, seq: u64, message: &Message) {
        if let Some(journal) = journal {
            let mut changes = Changes::new();
            changes.push(Change::DeleteDelivery { client_id: self.client_id.to_string(), seq });
            journal.release_reference(message.id, changes);
        }
    }

    /// Records that a stored delivery of a message with an expiry has been sent with
    /// `packet_id`, and keeps the message's record past its expiry: a restart must resend it
    /// (MQTT-4.4.0-1), where a queued delivery of an expired message would be dropped
    /// (MQTT-3.3.2-5). Sending is not journaled otherwise (packet ids follow the delivery
    /// order), so only messages that can expire pay this write. Called with the session lock
    /// held, so the put is ordered before the delivery's deletion. The PUBLISH does not wait
    /// for it: a crash before it is written restores the delivery as queued, and an expired
    /// one is then dropped.
    pub(super) fn record_sent_expiring(&self, journal: Option<&Journal>, seq: u64, item: &Queued, packet_id: PacketId) {
        let Some(journal) = journal else { return };
        let stage = DeliveryStage::Inflight { packet_id: packet_id.get(), awaiting_pubcomp: false };
        let mut changes = Changes::new();
        changes.push(Change::PutDelivery {
            client_id: self.client_id.to_string(),
            seq,
            record: delivery_record(item, stage),
        });
        journal.submit(changes);
        journal.keep_past_expiry(item.message.id);
    }

    /// Takes every message this session holds for delivery that came through a shared
    /// subscription and may go to another member when the session ends: the queued ones, and
    /// QoS 1 ones in flight. A QoS 2 message in flight stays: this member may have delivered it
    /// already, and once its session ends no other member may be sent it (MQTT-4.8.2-5). The
    /// records of those taken are released.
    pub(crate) fn take_shared_undelivered(&self, journal: Option<&Journal>) -> Vec<Queued> {
        let mut state = self.state.lock();
        let mut taken: Vec<Queued> = Vec::new();
        let inflight = std::mem::take(&mut state.inflight);
        for (id, entry) in inflight {
            let handed_on = entry.item.shared.is_some()
                && entry.stage == InflightStage::AwaitingAck
                && entry.item.qos == midge_codec::QoS::AtLeastOnce;
            if handed_on {
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                taken.push(entry.item);
            } else {
                state.inflight.insert(id, entry);
            }
        }
        let queue = std::mem::take(&mut state.queue);
        for entry in queue {
            if entry.item.shared.is_some() {
                state.queued_bytes -= entry.item.message.payload.len();
                if entry.durable {
                    self.forget_delivery(journal, entry.seq, &entry.item.message);
                }
                taken.push(entry.item);
            } else {
                state.queue.push_back(entry);
            }
        }
        taken
    }

    /// Writes what a persistent session keeps in the store, for a session that was not
    /// persistent until now (a client resumed it with a Session Expiry Interval above 0, or
    /// 3.1.1 Clean Session 0): its subscriptions, its QoS 1/2 deliveries queued and in flight,
    /// its inbound QoS 2 ids and its topic ids, all made while nothing of it was stored. Called with no lock
    /// held, before its record is saved. Returns the last ticket.
    pub(crate) fn write_whole(&self, journal: &Journal) -> Option<Ticket> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let client_id = self.client_id.to_string();
        let mut ticket = None;
        let mut changes = Changes::new();
        for (filter, subscription) in state.subscriptions.iter() {
            let record =
                StoredSubscription { options: options_byte(subscription.options), identifier: subscription.id };
            changes.push(Change::PutSubscription { client_id: client_id.clone(), filter: filter.to_owned(), record });
        }
        for packet_id in &state.inbound_qos2 {
            changes.push(Change::PutInboundQos2 { client_id: client_id.clone(), packet_id: *packet_id });
        }
        for (topic_id, topic) in state.topic_ids.iter().flat_map(|ids| ids.iter()) {
            changes.push(Change::PutTopicId {
                client_id: client_id.clone(),
                topic_id: *topic_id,
                topic: topic.to_string(),
            });
        }
        if !changes.is_empty() {
            ticket = Some(journal.submit(changes));
        }
        for (packet_id, entry) in state.inflight.iter_mut().filter(|(_, entry)| !entry.durable) {
            let awaiting_pubcomp = entry.stage == InflightStage::AwaitingComp;
            let stage = DeliveryStage::Inflight { packet_id: *packet_id, awaiting_pubcomp };
            let mut changes = Changes::new();
            let record = delivery_record(&entry.item, stage);
            changes.push(Change::PutDelivery { client_id: client_id.clone(), seq: entry.seq, record });
            ticket = ticket.max(Some(journal.add_reference(&entry.item.message, changes)));
            journal.keep_past_expiry(entry.item.message.id);
            entry.durable = true;
        }
        for entry in state.queue.iter_mut().filter(|entry| !entry.durable && entry.item.qos != QoS::AtMostOnce) {
            let mut changes = Changes::new();
            let record = delivery_record(&entry.item, DeliveryStage::Queued);
            changes.push(Change::PutDelivery { client_id: client_id.clone(), seq: entry.seq, record });
            ticket = ticket.max(Some(journal.add_reference(&entry.item.message, changes)));
            entry.durable = true;
        }
        ticket
    }

    /// Deletes the records of a stored session that a client resumed with a Session Expiry
    /// Interval of 0: it now ends with its connection, and must not come back after a restart
    /// (MQTT-3.1.2-23 ends it when the connection closes; a shutdown must not keep it). Its
    /// messages stay queued in memory, no longer durable. A session whose queue is in the store
    /// (spilled) keeps its records until it has read it back and ends. Called with no lock held.
    pub(crate) fn forget_stored(&self, journal: &Journal) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if !state.stored || state.spill.is_some() {
            return;
        }
        let mut changes = Changes::new();
        changes.push(Change::DeleteSession(self.client_id.to_string()));
        journal.submit(changes);
        state.stored = false;
        let queued = state.queue.iter_mut().map(|entry| (&mut entry.durable, entry.item.message.id));
        let inflight = state.inflight.values_mut().map(|entry| (&mut entry.durable, entry.item.message.id));
        for (durable, message) in queued.chain(inflight) {
            if std::mem::take(durable) {
                journal.release_reference(message, Changes::new());
            }
        }
    }

    /// Ends the session's durable life: deletes its records, and releases its deliveries'
    /// references to their messages. Called once, when the session ends.
    pub(crate) fn delete_records(&self, journal: &Journal) {
        let mut state = self.state.lock();
        if state.stored {
            let mut changes = Changes::new();
            changes.push(Change::DeleteSession(self.client_id.to_string()));
            journal.submit(changes);
            state.stored = false;
        }
        self.release_spilled(&mut state, journal);
        let queue = std::mem::take(&mut state.queue);
        let inflight = std::mem::take(&mut state.inflight);
        state.queued_bytes = 0;
        let durable = queue
            .into_iter()
            .filter(|e| e.durable)
            .map(|e| e.item.message)
            .chain(inflight.into_values().filter(|e| e.durable).map(|e| e.item.message));
        for message in durable {
            journal.release_reference(message.id, Changes::new());
        }
    }

    /// The session's record for the store.
    pub(crate) fn record(&self, journal: &Journal) -> StoredSession {
        let mut state = self.state.lock();
        state.stored = true;
        StoredSession {
            session_id: self.id,
            protocol_level: state.protocol.level(),
            expiry_interval: state.expiry_interval,
            expires_at_unix_ms: state.expires_at.map(|at| journal.unix_ms(at)),
            delayed_will: state.delayed_will.as_deref().map(|(due, will)| StoredWill {
                due_unix_ms: journal.unix_ms(*due),
                topic: will.topic.to_string(),
                payload: will.payload.clone(),
                qos: will.qos.as_u8(),
                retain: will.retain,
                properties: will.shared_properties.clone(),
                // The message was made to be published at `due`: its expiry counts from then.
                message_expiry_interval: will
                    .expires_at
                    .map(|at| u32::try_from(at.saturating_duration_since(*due).as_secs()).unwrap_or(u32::MAX)),
            }),
        }
    }

    /// Restores a delivery read from the store (recovery only, before any connection).
    pub(crate) fn restore_delivery(&self, seq: u64, item: Queued, stage: DeliveryStage) {
        let mut session = self.state.lock();
        session.next_seq = session.next_seq.max(seq + 1);
        match stage {
            DeliveryStage::Queued => {
                session.queued_bytes += item.message.payload.len();
                session.queue.push_back(Entry { seq, item, durable: true, maybe_sent: true });
            }
            DeliveryStage::Inflight { packet_id, awaiting_pubcomp } => {
                let stage = if awaiting_pubcomp { InflightStage::AwaitingComp } else { InflightStage::AwaitingAck };
                session.inflight.insert(packet_id, Inflight { seq, item, stage, durable: true });
            }
        }
    }

    /// Restores the expiry countdown of a session read from the store: from the stored
    /// deadline, or from `now` when the broker stopped while its client was connected.
    pub(crate) fn restore_expiry(&self, expires_at: Option<Instant>, now: Instant) {
        let mut state = self.state.lock();
        state.stored = true;
        state.expires_at = match (expires_at, state.expiry_interval) {
            (Some(at), _) => Some(at),
            (None, u32::MAX) => None,
            (None, secs) => Some(now + std::time::Duration::from_secs(u64::from(secs))),
        };
    }
}

/// The store record of a delivery.
pub(super) fn delivery_record(item: &Queued, stage: DeliveryStage) -> StoredDelivery {
    StoredDelivery {
        message: item.message.id,
        qos: item.qos.as_u8(),
        retain: item.retain,
        subscription_ids: item.subscription_ids.to_vec(),
        shared: item.shared.as_deref().map(str::to_owned),
        stage,
    }
}

/// The delivery a stored record describes, of `message` (`None` for an invalid QoS).
pub(crate) fn queued_from_record(delivery: StoredDelivery, message: std::sync::Arc<Message>) -> Option<Queued> {
    Some(Queued {
        message,
        qos: QoS::from_u8(delivery.qos)?,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.into_iter().collect(),
        shared: delivery.shared.map(std::sync::Arc::from),
        handed_on: 0,
    })
}

/// The v5 subscription options byte, as the store keeps it.
pub(crate) fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos.as_u8()
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

/// The subscription options of a stored options byte.
pub(crate) fn options_from_byte(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11).unwrap_or(QoS::AtMostOnce),
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling: match (byte >> 4) & 0b11 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}
