//! Keep alive deadlines of every connection, checked by one periodic sweep instead of a timer
//! in each connection (docs/decisions/0004-idle-connection-memory.md).
//!
//! MQTT-3.1.2-24: a connection that sends nothing for one and a half times its keep alive is
//! closed. A timer per connection would cost each idle connection a `Sleep` (112 bytes) in its
//! task and a timer-wheel update whenever it is re-armed. Here a connection only records when it
//! last heard from its client (one relaxed store per read batch, in its [`Kick`]); the deadlines
//! live in one map, keyed by sweep slot, that holds each connection once. A sweep looks only at
//! the slots that are due: a connection heard from meanwhile is filed again under its new
//! deadline, one that was not is kicked with Keep Alive Timeout (0x8D).
//!
//! A connection is filed at most [`KEEP_ALIVE_FILE_AHEAD`] ahead, even when its deadline is later: an
//! ended connection is dropped from the map the next time it is looked at, so with keep alives
//! of hours a churn of short connections would otherwise leave their entries for hours. An idle
//! connection is looked at every 10 s; its deadline itself does not change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::ReasonCode;
use parking_lot::Mutex;

use crate::kick::Kick;
use crate::limits::{KEEP_ALIVE_FILE_AHEAD, KEEP_ALIVE_SWEEP};

/// The keep alive deadlines of the connections that have one.
#[derive(Debug)]
pub(crate) struct KeepAlives {
    /// Where the millisecond clock of [`Kick::heard`] starts.
    epoch: Instant,
    /// Sweep slot (deadline in milliseconds / slot length, rounded up) to the connections
    /// whose deadline falls in it.
    due: Mutex<BTreeMap<u64, Vec<Arc<Kick>>>>,
}

impl KeepAlives {
    /// An empty set; `now` starts its millisecond clock.
    pub(crate) fn new(now: Instant) -> Self {
        Self { epoch: now, due: Mutex::new(BTreeMap::new()) }
    }

    /// `now` on the clock connections record their last packet with.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        // Saturating: an instant before the epoch (a test's clock) counts as the epoch.
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Watches `kick`'s connection, heard from at `now`. A connection without a keep alive
    /// (limit 0) is not watched.
    pub(crate) fn watch(&self, kick: Arc<Kick>, now: Instant) {
        if kick.keep_alive_limit_ms() == 0 {
            return;
        }
        let now_ms = self.millis(now);
        kick.heard(now_ms);
        let slot = slot_to_look(kick.deadline_ms(), now_ms);
        self.due.lock().entry(slot).or_default().push(kick);
    }

    /// Kicks the connections silent past their deadline at `now`, files the others again under
    /// their new deadline, and forgets connections that are gone. Returns how many it kicked.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let now_ms = self.millis(now);
        let mut looked_at = Vec::new();
        {
            let mut due = self.due.lock();
            while let Some(entry) = due.first_entry() {
                if entry.key().saturating_mul(slot_ms()) > now_ms {
                    break;
                }
                looked_at.extend(entry.remove());
            }
        }
        let mut kicked = 0;
        let mut again = Vec::new();
        for kick in looked_at {
            // Only this map still holds it: the connection has ended.
            if Arc::strong_count(&kick) == 1 || kick.is_kicked() {
                continue;
            }
            let deadline = kick.deadline_ms();
            if deadline <= now_ms {
                kick.kick(ReasonCode::KEEP_ALIVE_TIMEOUT);
                kicked += 1;
            } else {
                again.push((slot_to_look(deadline, now_ms), kick));
            }
        }
        if !again.is_empty() {
            let mut due = self.due.lock();
            for (slot, kick) in again {
                due.entry(slot).or_default().push(kick);
            }
        }
        kicked
    }

    /// Connections watched (including ended ones not swept yet).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.lock().values().map(Vec::len).sum()
    }

    /// Whether no connection is watched.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn slot_ms() -> u64 {
    KEEP_ALIVE_SWEEP.as_millis() as u64
}

/// The sweep slot to look at a connection in: its deadline's, or [`KEEP_ALIVE_FILE_AHEAD`] from now if
/// that is sooner.
fn slot_to_look(deadline_ms: u64, now_ms: u64) -> u64 {
    let horizon_ms = now_ms + KEEP_ALIVE_FILE_AHEAD.as_millis() as u64;
    deadline_ms.min(horizon_ms).div_ceil(slot_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::kick::Signal;

    fn kicked_reason(kick: &Kick) -> Option<ReasonCode> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match kick.poll_signal(&mut cx) {
            std::task::Poll::Ready(Signal::Kicked(reason)) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn a_silent_connection_is_kicked_after_one_and_a_half_keep_alives_mqtt_3_1_2_24() {
        let start = Instant::now();
        let alives = KeepAlives::new(start);
        let kick = Arc::new(Kick::with_keep_alive(10)); // 10 s: the limit is 15 s
        alives.watch(Arc::clone(&kick), start);
        assert_eq!(alives.sweep(start + Duration::from_millis(14_900)), 0, "not before 1.5 x keep alive");
        assert_eq!(kicked_reason(&kick), None);
        assert_eq!(alives.sweep(start + Duration::from_millis(15_000)), 1);
        assert_eq!(kicked_reason(&kick), Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
        assert!(alives.is_empty(), "a kicked connection is not watched again");
    }

    #[test]
    fn a_connection_heard_from_is_filed_under_its_new_deadline() {
        let start = Instant::now();
        let alives = KeepAlives::new(start);
        let kick = Arc::new(Kick::with_keep_alive(2)); // limit 3 s
        alives.watch(Arc::clone(&kick), start);
        kick.heard(alives.millis(start + Duration::from_secs(2)));
        assert_eq!(alives.sweep(start + Duration::from_secs(3)), 0, "heard at 2 s: due at 5 s");
        assert_eq!(alives.len(), 1);
        assert_eq!(alives.sweep(start + Duration::from_millis(4_900)), 0);
        assert_eq!(alives.sweep(start + Duration::from_secs(5)), 1);
        assert_eq!(kicked_reason(&kick), Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
    }

    #[test]
    fn an_ended_connection_with_a_long_keep_alive_is_forgotten_within_file_ahead() {
        let start = Instant::now();
        let alives = KeepAlives::new(start);
        alives.watch(Arc::new(Kick::with_keep_alive(u16::MAX)), start); // ended at once
        let live = Arc::new(Kick::with_keep_alive(u16::MAX));
        alives.watch(Arc::clone(&live), start);
        assert_eq!(alives.sweep(start + KEEP_ALIVE_FILE_AHEAD), 0);
        assert_eq!(alives.len(), 1, "the ended one is gone, the live one filed again");
        assert_eq!(kicked_reason(&live), None, "its deadline is hours away");
    }

    #[test]
    fn ended_connections_and_keep_alive_0_are_not_kept() {
        let start = Instant::now();
        let alives = KeepAlives::new(start);
        alives.watch(Arc::new(Kick::with_keep_alive(0)), start);
        assert!(alives.is_empty(), "keep alive 0: no deadline (MQTT-3.1.2-10 of 3.1.1)");
        alives.watch(Arc::new(Kick::with_keep_alive(1)), start); // nobody else holds it
        assert_eq!(alives.len(), 1);
        assert_eq!(alives.sweep(start + Duration::from_secs(2)), 0, "an ended connection is not kicked");
        assert!(alives.is_empty());
    }
}
