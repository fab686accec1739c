//! Detached sessions' deadlines (session expiry, MQTT-3.1.2-23 and 5.0's Session Expiry
//! Interval; delayed wills, MQTT-3.1.3-9), ordered by time, so that the periodic tick visits the
//! sessions whose deadline has come rather than every session (decision 0006, step 5).
//!
//! An entry is a hint, checked against the session when it comes due: a session that was
//! attached again meanwhile, or whose deadline moved, is skipped. Attaching cancels the
//! session's entries, so a client that reconnects over and over leaves none behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;

use crate::session::Session;

/// The index: (deadline, session id) → the session, held weakly (an ended session is dropped
/// whatever the index holds).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    due: Mutex<BTreeMap<(Instant, u64), Weak<Session>>>,
}

impl Deadlines {
    /// Visits `session` at `at`.
    pub(crate) fn schedule(&self, at: Instant, session: &Arc<Session>) {
        self.due.lock().insert((at, session.id()), Arc::downgrade(session));
    }

    /// Forgets the visit of session `id` at `at`, if there is one.
    pub(crate) fn cancel(&self, at: Option<Instant>, id: u64) {
        if let Some(at) = at {
            self.due.lock().remove(&(at, id));
        }
    }

    /// Takes the sessions whose deadline is at or before `now`, each once, in deadline order.
    pub(crate) fn take_due(&self, now: Instant) -> Vec<Arc<Session>> {
        let mut due = self.due.lock();
        let mut taken = Vec::new();
        while let Some(entry) = due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            if let Some(session) = entry.remove().upgrade() {
                if !taken.iter().any(|s: &Arc<Session>| s.id() == session.id()) {
                    taken.push(session);
                }
            }
        }
        taken
    }

    /// Entries held. For tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use midge_codec::{Connect, MqttString, Properties, ProtocolVersion};

    use super::*;
    use crate::ports::auth::{AnonymousOnly, Authenticator, Decision};
    use crate::{Broker, ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Limits};

    /// Connects `client_id` with a persistent v5 session (an hour of expiry) and a will delayed
    /// by a minute, and closes the connection without DISCONNECT.
    fn connect_and_drop(broker: &Arc<Broker>, client_id: &str, now: Instant) {
        let will = midge_codec::Will {
            topic: midge_codec::TopicName::new("wills/x").expect("valid"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: midge_codec::QoS::AtMostOnce,
            retain: false,
            properties: Properties { will_delay_interval: Some(60), ..Properties::default() },
        };
        let properties = Properties { session_expiry_interval: Some(3600), ..Properties::default() };
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive: 60,
            client_id: MqttString::new(client_id).expect("valid"),
            will: Some(will),
            username: None,
            password: None,
            properties,
            bridge: false,
        };
        let request = broker.check_connect(Box::new(connect)).map_err(|_| "refused").expect("checked");
        let Decision::Now(verdict) = AnonymousOnly { allow_anonymous: true }.authenticate(&request.credentials("test"))
        else {
            panic!("anonymous clients are decided at once");
        };
        let ConnectOutcome::Accepted { connection, .. } =
            ClientConnection::accept(broker, request, verdict, &ConnectContext::default(), now)
        else {
            panic!("accepted");
        };
        connection.close(CloseKind::Abnormal, now);
    }

    /// Each disconnect schedules the session's expiry and its delayed will; reconnecting
    /// cancels both, so a client that reconnects over and over leaves only its last two.
    #[test]
    fn a_client_that_reconnects_over_and_over_leaves_only_its_last_deadlines() {
        let broker = Broker::new(Limits::default());
        let start = Instant::now();
        for n in 0..50 {
            connect_and_drop(&broker, "flapping", start + Duration::from_millis(n));
        }
        assert_eq!(broker.deadlines.len(), 2, "the last expiry and the last delayed will");
        broker.tick(start + Duration::from_secs(61));
        assert_eq!(broker.deadlines.len(), 1, "the will went at its due time; the expiry waits");
    }

    fn session(id: u64) -> Arc<Session> {
        Arc::new(Session::new(id, format!("s{id}").into(), ProtocolVersion::V5, 60))
    }

    #[test]
    fn due_sessions_come_once_in_order_and_cancelled_or_dropped_ones_never() {
        let now = Instant::now();
        let deadlines = Deadlines::default();
        let (a, b, c) = (session(1), session(2), session(3));
        deadlines.schedule(now + Duration::from_secs(2), &b);
        deadlines.schedule(now + Duration::from_secs(1), &a);
        deadlines.schedule(now + Duration::from_secs(1), &b); // a will and an expiry
        deadlines.schedule(now + Duration::from_secs(9), &a);
        deadlines.schedule(now + Duration::from_secs(1), &c);
        deadlines.cancel(Some(now + Duration::from_secs(1)), c.id());
        let gone = session(4);
        deadlines.schedule(now + Duration::from_secs(1), &gone);
        drop(gone);

        assert!(deadlines.take_due(now).is_empty(), "nothing due yet");
        let due: Vec<u64> = deadlines.take_due(now + Duration::from_secs(2)).iter().map(|s| s.id()).collect();
        assert_eq!(due, [1, 2], "each once, in deadline order; cancelled and dropped ones never");
        assert_eq!(deadlines.len(), 1, "a's later deadline stays");
    }
}
