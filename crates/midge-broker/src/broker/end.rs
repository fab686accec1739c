//! Ending a session: out of the session map and the router, its shared-subscription messages to
//! other members, its records out of the store, and a will still waiting on its delay published.

use std::sync::Arc;

use super::state::Broker;
use crate::delivery::Queued;
use crate::route::shared::pick_member;
use crate::route::subscriber::Target;
use crate::router::Match;
use crate::session::Session;

impl Broker {
    /// Ends a session: removes it from the map (if it is still the one there), drops its
    /// subscriptions, hands its undelivered shared-subscription messages to other members, and
    /// publishes a will still waiting on its delay (MQTT 5.0 section 3.1.3.2.2: the will is sent
    /// when the delay passes or the session ends, whichever is first).
    pub(crate) fn finish_session(&self, session: &Arc<Session>) {
        self.finish_session_if(session, false);
    }

    /// Ends `session` unless it has ended already, or (with `only_detached`) a connection has
    /// attached to it meanwhile. A connection still attached is told it was taken over (v5:
    /// DISCONNECT 0x8E, MQTT-3.1.4-3), under the same lock that marks the session ended, so a
    /// connection attaching concurrently is either kicked here or sees the end when it attaches
    /// ([`Broker::admit`]). Returns whether it ended it.
    pub(crate) fn finish_session_if(&self, session: &Arc<Session>, only_detached: bool) -> bool {
        {
            let mut state = session.lock();
            if state.ended || (only_detached && state.is_attached()) {
                return false;
            }
            state.ended = true;
            if let Some(kick) = state.attached_kick() {
                kick.kick(midge_codec::ReasonCode::SESSION_TAKEN_OVER);
            }
        }
        {
            let mut sessions = self.sessions.lock();
            if sessions.get(session.client_id()).is_some_and(|s| Arc::ptr_eq(s, session)) {
                sessions.remove(session.client_id());
            }
        }
        let (filters, will) = {
            let mut state = session.lock();
            let filters = state.subscriptions.take_filters();
            (filters, state.delayed_will.take().map(|will| *will))
        };
        {
            let mut router = self.router.write();
            for filter in &filters {
                router.unsubscribe(filter, &session.id());
            }
        }
        if self.fabric().is_some() {
            for filter in &filters {
                if let Ok(filter) = midge_codec::TopicFilter::new(filter) {
                    self.report_interest(&filter, false);
                }
            }
        }
        for item in session.take_shared_undelivered(self.journal.as_ref()) {
            self.redeliver_shared(item);
        }
        if let Some(journal) = &self.journal {
            session.delete_records(journal);
        }
        if let Some((_, will)) = will {
            self.publish_will(will);
            self.disarm_will(session.client_id());
        }
        if let Some(fabric) = self.fabric() {
            fabric.session_ended(session.client_id());
        }
        true
    }

    /// Sends a message of a shared subscription to another member of its group: one a departed
    /// member did not acknowledge, or one its member may not read.
    pub(crate) fn redeliver_shared(&self, item: Queued) {
        let Some(shared) = item.shared.clone() else {
            return;
        };
        let Some((group, filter)) = shared.strip_prefix("$share/").and_then(|rest| rest.split_once('/')) else {
            return;
        };
        let mut target = None;
        self.router.read().match_topic(&item.message.topic, |found| {
            if let Match::Shared { group: g, filter: f, members, cursor } = found {
                if g == group && f == filter && target.is_none() {
                    target = pick_member(members, cursor).map(|(_, m)| m.target.clone());
                }
            }
        });
        match target {
            Some(Target::Local(session)) => {
                if let (_, Some(kick)) = session.enqueue(item, &self.limits, self.journal.as_ref(), false) {
                    kick.ring();
                }
            }
            Some(Target::Remote(remote)) => remote.target.forward(item),
            None => {}
        }
    }
}
