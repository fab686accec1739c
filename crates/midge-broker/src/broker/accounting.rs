//! What the broker holds, counted from its own state: the figures docs/limits.md's memory budget
//! is written in, for the tests that fill each bound, and for `/metrics`.

use std::sync::Arc;

use super::state::Broker;
use crate::session::Session;

/// What the broker holds at one moment (each session read on its own: fine for reporting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Sessions, connected and offline.
    pub sessions: usize,
    /// Sessions with a client connected.
    pub connected: usize,
    /// Subscriptions, summed over sessions (shared ones included).
    pub subscriptions: usize,
    /// Of those, shared subscriptions (`$share/GROUP/FILTER`).
    pub shared_subscriptions: usize,
    /// The most subscriptions one session holds.
    pub most_subscriptions: usize,
    /// Messages queued in memory (not in flight), summed over sessions.
    pub queued_messages: usize,
    /// The longest in-memory queue of one session.
    pub longest_queue: usize,
    /// Payload bytes queued in memory, summed over sessions.
    pub queued_bytes: usize,
    /// Messages in flight (sent, unacknowledged), summed over sessions.
    pub inflight: usize,
    /// Deliveries of offline sessions kept in the store, summed over sessions.
    pub spilled: usize,
    /// Retained messages.
    pub retained_messages: usize,
    /// Bytes of retained topics and payloads.
    pub retained_bytes: usize,
    /// Sessions by the length of their in-memory queue: `queue_lengths[i]` is the sessions
    /// whose queue is at most [`QUEUE_LENGTH_BUCKETS`]`[i]` long and longer than the bound
    /// before; the last is those longer than every bound.
    pub queue_lengths: [usize; QUEUE_LENGTH_BUCKETS.len() + 1],
}

/// The bounds of [`Accounting::queue_lengths`]' buckets, in messages: powers of ten from an
/// empty queue (most sessions, most of the time) to the default `max_queued_messages`'s order
/// (1,000) and the offline bound's (100,000).
pub const QUEUE_LENGTH_BUCKETS: [usize; 7] = [0, 1, 10, 100, 1_000, 10_000, 100_000];

impl Broker {
    /// Counts what the broker holds. Visits every session under its own lock, one at a time:
    /// for tests, logs and metrics, not for the hot path.
    pub fn accounting(&self) -> Accounting {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut accounting = Accounting { sessions: sessions.len(), ..Accounting::default() };
        for session in &sessions {
            let state = session.lock();
            let subscriptions = state.subscriptions.len();
            accounting.connected += usize::from(state.is_attached());
            accounting.subscriptions += subscriptions;
            accounting.shared_subscriptions +=
                state.subscriptions.iter().filter(|(filter, _)| filter.starts_with("$share/")).count();
            accounting.most_subscriptions = accounting.most_subscriptions.max(subscriptions);
            accounting.queued_messages += state.queue_len();
            accounting.longest_queue = accounting.longest_queue.max(state.queue_len());
            accounting.queue_lengths[QUEUE_LENGTH_BUCKETS.partition_point(|&bound| bound < state.queue_len())] += 1;
            accounting.queued_bytes += state.queued_bytes();
            accounting.inflight += state.inflight_len();
            accounting.spilled += state.spilled_len();
        }
        let retained = self.retained.read();
        accounting.retained_messages = retained.len();
        accounting.retained_bytes = retained.bytes();
        accounting
    }
}
