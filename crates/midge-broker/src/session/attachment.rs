//! Attaching a connection to the session and detaching it: the session outlives its
//! connections, and a new connection takes it over from the one before (MQTT-3.1.4-2).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::ProtocolVersion;

use super::state::{Attachment, Session};
use crate::journal::Journal;
use crate::kick::Kick;
use crate::limits::Limits;

impl Session {
    /// Attaches a new connection. Returns the connection previously attached, to be kicked.
    pub(crate) fn attach(
        &self,
        conn_id: u64,
        kick: Arc<Kick>,
        window: usize,
        protocol: ProtocolVersion,
        expiry_interval: u32,
    ) -> Option<Arc<Kick>> {
        let mut state = self.state.lock();
        let previous = state.attached.replace(Attachment { conn_id, kick, window }).map(|a| a.kick);
        state.protocol = protocol;
        state.expiry_interval = expiry_interval;
        state.expires_at = None;
        state.ring_attached();
        previous
    }

    /// Detaches `conn_id` if it is still the attached connection; returns whether it was. A
    /// persistent session's queue moves to the store, when offline queues are kept there.
    pub(crate) fn detach(&self, conn_id: u64, now: Instant, limits: &Limits, journal: Option<&Journal>) -> bool {
        let mut state = self.state.lock();
        if state.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) {
            return false;
        }
        state.attached = None;
        state.expires_at = match state.expiry_interval {
            u32::MAX => None,
            secs => Some(now + std::time::Duration::from_secs(u64::from(secs))),
        };
        // Offline, the session paces nobody (beyond its bound it drops): publishers waiting
        // for its room go on now, not at their slow-consumer deadline.
        let paced = state.congested || state.shedding;
        state.congested = false;
        state.shedding = false;
        self.over_bound.store(false, Ordering::Relaxed);
        if let Some(journal) = journal.filter(|j| j.queues().is_some() && state.persistent() && !state.ended) {
            self.spill_queue(&mut state, limits, journal);
        }
        drop(state);
        if paced {
            self.room.notify_waiters();
        }
        true
    }
}
