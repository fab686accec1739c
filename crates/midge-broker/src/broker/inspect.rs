//! What the broker holds, for an operator (the server's HTTP API): its sessions with their
//! subscriptions and queues, its retained messages, and kicking a client. Each view is a copy
//! taken under the locks in their order (the session map, then one session at a time; the
//! retained store alone), so a caller holds no lock and may take its time with it.

use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ProtocolVersion, QoS, ReasonCode};

use super::state::Broker;
use crate::message::Message;
use crate::session::Session;

/// One session as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Its client identifier.
    pub client_id: Arc<str>,
    /// Whether a connection is attached.
    pub connected: bool,
    /// The protocol its client connected with.
    pub protocol: ProtocolVersion,
    /// Its expiry interval in seconds (0: it ends with its connection).
    pub expiry_interval: u32,
    /// Its subscriptions, in no particular order.
    pub subscriptions: Vec<SubscriptionView>,
    /// Messages waiting, in memory or in the store, not in flight.
    pub queued: usize,
    /// Messages in flight (sent, not yet acknowledged).
    pub inflight: usize,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    /// Its topic filter (`$share/...` included).
    pub filter: Box<str>,
    /// The QoS it was granted.
    pub qos: QoS,
}

impl Broker {
    /// At most `limit` sessions (only those with a connection when `connected_only`), in no
    /// particular order.
    pub fn sessions(&self, connected_only: bool, limit: usize) -> Vec<SessionView> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        sessions
            .iter()
            .map(|session| view(session))
            .filter(|view| view.connected || !connected_only)
            .take(limit)
            .collect()
    }

    /// Whether the broker holds a session for `client_id`.
    pub fn has_session(&self, client_id: &str) -> bool {
        self.sessions.lock().contains_key(client_id)
    }

    /// One session, by client id.
    pub fn session(&self, client_id: &str) -> Option<SessionView> {
        let session = self.sessions.lock().get(client_id).cloned()?;
        Some(view(&session))
    }

    /// Tells the connection attached to `client_id`'s session to close, with `reason` (an
    /// operator's: v5 clients are sent DISCONNECT 0x98 Administrative action). Its session stays
    /// as its expiry says. Returns whether a connection was attached.
    pub fn kick_client(&self, client_id: &str) -> bool {
        let Some(session) = self.sessions.lock().get(client_id).cloned() else { return false };
        let kick = session.lock().attached_kick();
        match kick {
            Some(kick) => {
                kick.kick(ReasonCode::ADMINISTRATIVE_ACTION);
                true
            }
            None => false,
        }
    }

    /// At most `limit` live retained messages whose topics match `filter`.
    pub fn retained_matching(&self, filter: &str, now: Instant, limit: usize) -> Vec<Arc<Message>> {
        let mut found = Vec::new();
        self.retained.read().for_each_match(filter, now, |message| {
            if found.len() < limit {
                found.push(Arc::clone(message));
            }
        });
        found
    }
}

fn view(session: &Session) -> SessionView {
    let state = session.lock();
    let subscriptions = state
        .subscriptions
        .iter()
        .map(|(filter, stored)| SubscriptionView { filter: filter.into(), qos: stored.options.qos })
        .collect();
    SessionView {
        client_id: Arc::clone(session.client_id()),
        connected: state.is_attached(),
        protocol: state.protocol,
        expiry_interval: state.expiry_interval,
        subscriptions,
        queued: state.queue_len() + state.spilled_len(),
        inflight: state.inflight_len(),
    }
}
