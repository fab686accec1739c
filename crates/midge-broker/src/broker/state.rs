//! The broker's shared state, and the operations on it that belong to no one packet: counters,
//! the periodic sweep of expiries and delayed wills, keep alives, and shutdown.
//!
//! Lock order (docs/locks.md): `sessions` → `router` → `retained` → one session's lock. No lock
//! is held across an `.await`; none of these functions is async.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ReasonCode, Will};
use parking_lot::{Mutex, RwLock};

use super::deadlines::Deadlines;
use crate::hash::ProcessSeeded;
use crate::journal::Journal;
use crate::keep_alive::KeepAlives;
use crate::kick::Kick;
use crate::limits::Limits;
use crate::message::Message;
use crate::ports::durability::{Change, Changes, Durability, Ticket};
use crate::retained::RetainedStore;
use crate::route::subscriber::Subscriber;
use crate::router::Router;
use crate::session::Session;
use crate::stats::{LimitCounter, Stats};

/// The broker core, shared by every connection.
pub struct Broker {
    pub(super) limits: Limits,
    pub(super) sessions: Mutex<HashMap<Arc<str>, Arc<Session>, ProcessSeeded>>,
    pub(super) router: RwLock<Router<u64, Subscriber>>,
    pub(super) retained: RwLock<RetainedStore>,
    pub(super) next_id: AtomicU64,
    /// Ids of messages; above every id in the store.
    pub(super) next_message_id: AtomicU64,
    /// Durable storage, when persistence is on.
    pub(super) journal: Option<Journal>,
    /// Seeds assigned client identifiers so they are not guessable across restarts.
    pub(super) id_seed: ahash::RandomState,
    pub(super) stats: Stats,
    /// Set by [`Broker::shut_down`]: connections attaching from then on are kicked at once.
    pub(super) shutting_down: AtomicBool,
    /// Whether clients' connects and disconnects are published on `$SYS` (`events`).
    pub(super) client_events: AtomicBool,
    /// Every connection's keep alive deadline; the server sweeps it.
    pub(super) keep_alives: KeepAlives,
    /// Detached sessions' expiry and delayed wills; `tick` takes what is due.
    pub(super) deadlines: Deadlines,
    /// The other nodes of a cluster, when this node is one (set once, at start).
    pub(super) fabric: std::sync::OnceLock<Arc<dyn crate::ports::fabric::Fabric>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with `limits` (already validated) that keeps everything in memory.
    pub fn new(limits: Limits) -> Arc<Self> {
        Self::build(limits, None)
    }

    /// A broker that keeps its durable state in `store`. Restore what the store held with
    /// [`Broker::restore`] before accepting connections.
    pub fn with_store(limits: Limits, store: Arc<dyn Durability>) -> Arc<Self> {
        Self::build(limits, Some(Journal::new(store)))
    }

    /// A broker that keeps its durable state in `store` and the queues of offline persistent
    /// sessions there too, read back through `queues` when their clients return (decision
    /// 0006): an offline session costs a few bytes per queued message, not the message.
    pub fn with_store_and_queues(
        limits: Limits,
        store: Arc<dyn Durability>,
        queues: Arc<dyn crate::ports::durability::QueueSource>,
    ) -> Arc<Self> {
        Self::build(limits, Some(Journal::with_queues(store, queues)))
    }

    fn build(limits: Limits, journal: Option<Journal>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            sessions: Mutex::new(HashMap::default()),
            router: RwLock::new(Router::default()),
            retained: RwLock::new(RetainedStore::default()),
            next_id: AtomicU64::new(1),
            next_message_id: AtomicU64::new(1),
            journal,
            id_seed: ahash::RandomState::new(),
            stats: Stats::default(),
            shutting_down: AtomicBool::new(false),
            client_events: AtomicBool::new(false),
            keep_alives: KeepAlives::new(Instant::now()),
            deadlines: Deadlines::default(),
            fabric: std::sync::OnceLock::new(),
        })
    }

    /// The settings in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sessions currently held (connected or not).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Retained messages currently held.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Bytes of the retained messages' topics and payloads (what `max_retained_bytes` bounds).
    pub fn retained_bytes(&self) -> usize {
        self.retained.read().bytes()
    }

    /// Whether the broker keeps durable state (a store is plugged in).
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Tells the broker whether its store is over its size bound (`[store] max_size_mb`, which
    /// the server measures): while it is, offline queues take no new message (each is dropped
    /// and counted, as at a session's own bound); connected sessions go on as before. Returns
    /// whether it was before.
    pub fn set_store_full(&self, full: bool) -> bool {
        self.journal.as_ref().is_some_and(|journal| journal.set_full(full))
    }

    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh message id.
    pub(crate) fn next_id_for_message(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new message from a PUBLISH, with a fresh id.
    pub(crate) fn new_message(
        &self,
        publish: &midge_codec::Publish,
        publisher: Option<u64>,
        now: Instant,
    ) -> Arc<Message> {
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Message::new(id, publish, publisher, now))
    }

    /// The message a will becomes when published at `at`.
    pub(crate) fn will_message(&self, will: &Will, publisher: Option<u64>, at: Instant) -> Arc<Message> {
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Message::from_will(id, will, publisher, at))
    }

    /// Refuses topic names and filters longer than `max_topic_length` or deeper than
    /// `max_topic_levels`, counting and logging the refusal for `client_id`.
    pub(crate) fn check_topic(&self, topic: &str, client_id: &str, now: Instant) -> Result<(), &'static str> {
        let why = if topic.len() > self.limits.max_topic_length {
            "topic longer than max_topic_length"
        } else if topic.split('/').count() > self.limits.max_topic_levels {
            "topic has more levels than max_topic_levels"
        } else {
            return Ok(());
        };
        self.limit_hit(&self.stats.limits.topic_limits, why, client_id, now);
        Err(why)
    }

    /// Counts a refusal by a named limit and logs it at a bounded rate (at most one line per
    /// [`crate::stats::LIMIT_LOG_INTERVAL`] per limit), naming who was refused last: a client
    /// id, or the topic for a retained message.
    pub(crate) fn limit_hit(&self, counter: &LimitCounter, why: &'static str, who: &str, now: Instant) {
        if let Some(report) = counter.hit(now) {
            tracing::warn!(who, refused = report.since_last, total = report.total, "limit reached: {why}");
        }
    }

    /// Writes a persistent session's record (expiry, delayed will) to the store.
    pub(crate) fn save_session(&self, session: &Session) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        let mut changes = Changes::new();
        changes
            .push(Change::PutSession { client_id: session.client_id().to_string(), record: session.record(journal) });
        Some(journal.submit(changes))
    }

    /// Visits `session` at `at` for its expiry or delayed will (see [`Broker::tick`]).
    pub(crate) fn schedule_deadline(&self, at: Instant, session: &Arc<Session>) {
        self.deadlines.schedule(at, session);
    }

    /// Runs timed work due at `now`: expires detached sessions (MQTT-3.1.2-23 / session expiry),
    /// publishes delayed wills whose delay ran out, and drops expired retained messages. Only
    /// the sessions whose deadline has come are visited (`deadlines`), not every session.
    pub fn tick(&self, now: Instant) {
        for session in self.deadlines.take_due(now) {
            let (expired, will) = {
                let mut state = session.lock();
                if state.is_attached() {
                    continue;
                }
                let expired = state.expires_at.is_some_and(|at| now >= at);
                let will_due = state.delayed_will.as_ref().is_some_and(|will| now >= will.0);
                (expired, if will_due { state.delayed_will.take().map(|will| *will) } else { None })
            };
            if let Some((_, will)) = will {
                self.publish_will(will);
                self.disarm_will(session.client_id());
                if !expired && session.lock().persistent() {
                    self.save_session(&session);
                }
            }
            if expired && self.finish_session_if(&session, true) {
                self.stats.sessions_expired.add(1);
                tracing::debug!(client_id = %session.client_id(), "session expired");
            }
        }
        let mut retained = self.retained.write();
        let expired = retained.expire(now);
        if let Some(journal) = &self.journal {
            // Deleted under the retained lock, in order with the topic's later updates: an
            // expired retained message leaves the store too (MQTT-3.3.2-5), with its reference.
            for message in &expired {
                let mut changes = Changes::new();
                changes.push(Change::DeleteRetained(message.topic.to_string()));
                journal.release_reference(message.id, changes);
            }
        }
        drop(retained);
        drop(expired); // freed outside the lock
        if let Some(journal) = &self.journal {
            let reclaimed = journal.expire_messages(now);
            if reclaimed > 0 {
                tracing::debug!(reclaimed, "expired messages deleted from the store");
            }
        }
    }

    /// Watches `kick`'s keep alive from `now`.
    pub(crate) fn watch_keep_alive(&self, kick: Arc<Kick>, now: Instant) {
        self.keep_alives.watch(kick, now);
    }

    /// Records that `kick`'s client was heard from at `now` (MQTT-3.1.2-24).
    pub(crate) fn heard(&self, kick: &Kick, now: Instant) {
        kick.heard(self.keep_alives.millis(now));
    }

    /// Closes the connections silent past their keep alive at `now` (0x8D); call every
    /// [`crate::limits::KEEP_ALIVE_SWEEP`]. Returns how many it closed.
    pub fn sweep_keep_alives(&self, now: Instant) -> usize {
        self.keep_alives.sweep(now)
    }

    /// Begins shutting down: every attached connection is kicked with Server Shutting Down
    /// (v5 clients are sent DISCONNECT 0x8B), and so is any that attaches from now on.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            if let Some(kick) = session.lock().attached_kick() {
                kick.kick(ReasonCode::SERVER_SHUTTING_DOWN);
            }
        }
    }
}
