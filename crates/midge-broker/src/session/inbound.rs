//! The session's inbound QoS 2 packet ids: received and answered with PUBREC, waiting for
//! PUBREL, so a resent PUBLISH is not delivered twice (MQTT-4.3.3-10).

use midge_codec::PacketId;

use super::state::Session;
use crate::journal::Journal;
use crate::ports::durability::{Change, Changes, Ticket};

impl Session {
    /// Records an inbound QoS 2 packet id. Returns false if it was already awaiting PUBREL, in
    /// which case the PUBLISH is a resend and must not be delivered again (MQTT-4.3.3-10); and
    /// the ticket that makes the id durable, which the PUBREC waits for.
    pub(crate) fn begin_inbound_qos2(&self, packet_id: PacketId, journal: Option<&Journal>) -> (bool, Option<Ticket>) {
        let mut state = self.state.lock();
        if !state.inbound_qos2.insert(packet_id.get()) {
            return (false, None);
        }
        let ticket = journal.filter(|_| state.persistent()).map(|journal| {
            let mut changes = Changes::new();
            changes.push(Change::PutInboundQos2 { client_id: self.client_id.to_string(), packet_id: packet_id.get() });
            journal.submit(changes)
        });
        (true, ticket)
    }

    /// Releases an inbound QoS 2 packet id on PUBREL; returns whether it was known, and the
    /// ticket the PUBCOMP waits for (a restart must not remember an id the client may reuse).
    pub(crate) fn release_inbound_qos2(
        &self,
        packet_id: PacketId,
        journal: Option<&Journal>,
    ) -> (bool, Option<Ticket>) {
        let mut state = self.state.lock();
        if !state.inbound_qos2.remove(&packet_id.get()) {
            return (false, None);
        }
        let ticket = journal.filter(|_| state.persistent()).map(|journal| {
            let mut changes = Changes::new();
            let client_id = self.client_id.to_string();
            changes.push(Change::DeleteInboundQos2 { client_id, packet_id: packet_id.get() });
            journal.submit(changes)
        });
        (true, ticket)
    }

    /// Inbound QoS 2 ids awaiting PUBREL, for the Receive Maximum check (MQTT-3.3.4-8).
    pub(crate) fn inbound_qos2_pending(&self) -> usize {
        self.state.lock().inbound_qos2.len()
    }

    /// Restores an inbound QoS 2 packet id (recovery only).
    pub(crate) fn restore_inbound_qos2(&self, packet_id: u16) {
        self.state.lock().inbound_qos2.insert(packet_id);
    }
}
