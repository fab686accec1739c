//! Sessions moving between the nodes of a cluster (`crate::handover`): taken whole out of
//! this node when their client reconnects to another, brought in from another when it
//! reconnects here, or ended here for a client that starts clean elsewhere.

use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ProtocolVersion, ReasonCode, TopicFilter};

use super::state::Broker;
use crate::delivery::Queued;
use crate::handover::SessionSnapshot;
use crate::ports::durability::QueueReadError;
use crate::route::subscriber::Subscriber;
use crate::session::handover_message;
use crate::session::{options_from_byte, Session, StoredSubscription};

impl Broker {
    /// Takes the session of `client_id` out of this node for another one its client has
    /// connected to: its connection, if any, is closed as taken over (v5: DISCONNECT 0x8E,
    /// MQTT-3.1.4-3); a will waiting on its delay is dropped, the client having come back
    /// before it was due (MQTT-3.1.3-9); its messages of shared subscriptions go with it. Its
    /// records leave this node's store. `None` if this node has no such session.
    pub fn hand_over(&self, client_id: &str) -> Result<Option<SessionSnapshot>, QueueReadError> {
        let Some(session) = self.sessions.lock().get(client_id).cloned() else { return Ok(None) };
        {
            let mut state = session.lock();
            if state.ended {
                return Ok(None);
            }
            state.ended = true;
            state.handed_over = true;
            state.delayed_will = None;
            if let Some(kick) = state.attached_kick() {
                kick.kick(ReasonCode::SESSION_TAKEN_OVER);
            }
        }
        {
            let mut sessions = self.sessions.lock();
            if sessions.get(client_id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                sessions.remove(client_id);
            }
        }
        let filters: Vec<String> = session.lock().subscriptions.iter().map(|(filter, _)| filter.to_owned()).collect();
        {
            let mut router = self.router.write();
            for filter in &filters {
                router.unsubscribe(filter.as_str(), &session.id());
            }
        }
        for filter in &filters {
            if let Ok(filter) = TopicFilter::new(filter) {
                self.report_interest(&filter, false);
            }
        }
        let snapshot = session.snapshot(self.journal.as_ref());
        if let Some(journal) = &self.journal {
            session.delete_records(journal);
        }
        snapshot.map(Some)
    }

    /// Ends the session of `client_id` here as a clean start would (its connection closed as
    /// taken over, a delayed will published, its shared messages to other members): its client
    /// started clean on another node. Returns whether there was one.
    pub fn end_for_clean_start(&self, client_id: &str) -> bool {
        let Some(session) = self.sessions.lock().get(client_id).cloned() else { return false };
        self.finish_session_if(&session, false)
    }

    /// Brings in a session another node handed over, for its client about to connect here
    /// (which then finds it: Session Present 1). A session of that client id here ends first.
    /// Deliveries with a topic or QoS that cannot be read are left out, and counted in the
    /// return value.
    pub fn take_over(&self, snapshot: SessionSnapshot, now: Instant) -> usize {
        let protocol = match snapshot.protocol_level {
            3 => ProtocolVersion::V31,
            4 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        };
        let client_id: Arc<str> = Arc::from(snapshot.client_id.as_str());
        if let Some(old) = self.sessions.lock().get(&client_id).cloned() {
            self.finish_session(&old);
        }
        let session =
            Arc::new(Session::new(self.next_id(), Arc::clone(&client_id), protocol, snapshot.expiry_interval));
        session.set_fabric_fed(self.fabric_feeds(snapshot.expiry_interval));
        let mut added = Vec::new();
        {
            let mut router = self.router.write();
            for (filter, subscription) in snapshot.subscriptions {
                let Ok(topic_filter) = TopicFilter::new(&filter) else { continue };
                let options = options_from_byte(subscription.options);
                let shared = filter.starts_with("$share/").then(|| Arc::from(filter.as_str()));
                let subscriber = Subscriber::local(Arc::clone(&session), options, subscription.identifier, shared);
                router.subscribe(&topic_filter, session.id(), subscriber);
                session
                    .lock()
                    .subscriptions
                    .insert(&filter, StoredSubscription { options, id: subscription.identifier });
                added.push(topic_filter);
            }
        }
        for filter in &added {
            self.report_interest(filter, true);
        }
        let mut skipped = 0;
        for delivery in snapshot.deliveries {
            let id = self.next_id_for_message();
            let Some(message) = handover_message(id, delivery.message, now) else {
                skipped += 1;
                continue;
            };
            let Some(qos) = midge_codec::QoS::from_u8(delivery.qos) else {
                skipped += 1;
                continue;
            };
            let item = Queued {
                message,
                qos,
                retain: delivery.retain,
                subscription_ids: delivery.subscription_ids.into_iter().collect(),
                shared: delivery.shared.map(Arc::from),
                handed_on: 0,
            };
            session.import_delivery(delivery.seq, item, delivery.stage, delivery.maybe_sent);
        }
        for packet_id in snapshot.inbound_qos2 {
            session.restore_inbound_qos2(packet_id);
        }
        session.restore_topic_ids(snapshot.topic_ids);
        let expires_at = session.import_position(snapshot.next_seq, now);
        self.sessions.lock().insert(client_id, Arc::clone(&session));
        if let Some(journal) = self.journal.as_ref().filter(|_| snapshot.expiry_interval > 0) {
            session.write_whole(journal);
            self.save_session(&session);
        }
        if let Some(at) = expires_at {
            self.deadlines.schedule(at, &session);
        }
        skipped
    }
}
