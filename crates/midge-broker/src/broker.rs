//! The broker's shared state and the operations that cross sessions: connecting (session
//! lookup, takeover, clean start), routing a message to its subscribers, the retained store,
//! subscribing, ending sessions and the periodic sweep of expiries and delayed wills.
//!
//! Lock order (docs/locks.md): `sessions` → `router` → `retained` → one session's lock. No lock
//! is held across an `.await`; none of these functions is async.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{
    ConnAck, Connect, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName, Unsubscribe, Will,
};
use midge_store::{Batch, MessageId, Snapshot, SubscriptionRecord, Ticket};
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::config::BrokerConfig;
use crate::hash::ProcessSeeded;
use crate::journal::Journal;
use crate::keep_alive::KeepAlives;
use crate::message::Message;
use crate::protocol::ClientConnection;
use crate::retained::RetainedStore;
use crate::router::{Match, Router};
use crate::session::{EnqueueOutcome, Kick, Queued, Session, StoredSubscription, SubscriptionIds};
use crate::stats::Stats;

/// What the router stores for each subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    session: Arc<Session>,
    options: midge_codec::SubscriptionOptions,
    id: Option<u32>,
    /// The full `$share/...` filter for shared subscriptions.
    shared: Option<Arc<str>>,
}

/// What publishing a message did.
#[derive(Debug, Clone)]
pub struct Published {
    /// Sessions it was queued for (for a QoS 0 message routed inside a
    /// [`crate::delivery_batch::DeliveryBatch`]: sessions it was deferred for, some of which may
    /// still drop it as offline or full; nothing is acknowledged for QoS 0).
    pub delivered: usize,
    /// The ticket that makes it durable (retained update, persistent deliveries), which the
    /// publisher's acknowledgement waits for.
    pub ticket: Option<Ticket>,
    /// Connected subscribers whose queues are over their bound: the publisher is paced until
    /// they have room (empty, and not allocated, in the common case).
    pub congested: Vec<Arc<Session>>,
}

/// What [`Broker::restore`] brought back, for the startup log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Persistent sessions.
    pub sessions: usize,
    /// Their subscriptions.
    pub subscriptions: usize,
    /// Their queued and in-flight messages.
    pub deliveries: usize,
    /// Retained messages.
    pub retained: usize,
}

/// Who is connecting, beyond the CONNECT packet.
#[derive(Debug, Clone)]
pub struct ConnectContext {
    /// The peer's address, for logs.
    pub peer: String,
    /// Whether the listener accepts clients without a user name.
    pub allow_anonymous: bool,
}

/// The outcome of a CONNECT.
#[derive(Debug)]
pub enum ConnectOutcome {
    /// The client is connected: send the CONNACK, then drive the connection.
    Accepted {
        /// The per-connection protocol state.
        connection: Box<ClientConnection>,
        /// The CONNACK to send first.
        connack: ConnAck,
    },
    /// The client is refused: send the CONNACK (if any) and close.
    Refused {
        /// The CONNACK with the failure code.
        connack: ConnAck,
        /// Why, for the log.
        reason: &'static str,
    },
}

/// The broker core, shared by every connection.
pub struct Broker {
    config: BrokerConfig,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>, ProcessSeeded>>,
    router: RwLock<Router<u64, Subscriber>>,
    retained: RwLock<RetainedStore>,
    next_id: AtomicU64,
    /// Ids of messages; above every id in the store.
    next_message_id: AtomicU64,
    /// Durable storage, when persistence is on.
    journal: Option<Journal>,
    /// Seeds assigned client identifiers so they are not guessable across restarts.
    id_seed: ahash::RandomState,
    stats: Stats,
    /// Set by [`Broker::shut_down`]: connections attaching from then on are kicked at once.
    shutting_down: AtomicBool,
    /// Every connection's keep alive deadline; the server sweeps it.
    keep_alives: KeepAlives,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with `config` (already validated) that keeps everything in memory.
    pub fn new(config: BrokerConfig) -> Arc<Self> {
        Self::with_journal(config, None)
    }

    /// A broker that writes its durable state through `journal` (see [`crate::journal`]).
    pub fn with_journal(config: BrokerConfig, journal: Option<Journal>) -> Arc<Self> {
        Arc::new(Self {
            config,
            sessions: Mutex::new(HashMap::default()),
            router: RwLock::new(Router::default()),
            retained: RwLock::new(RetainedStore::default()),
            next_id: AtomicU64::new(1),
            next_message_id: AtomicU64::new(1),
            journal,
            id_seed: ahash::RandomState::new(),
            stats: Stats::default(),
            shutting_down: AtomicBool::new(false),
            keep_alives: KeepAlives::new(Instant::now()),
        })
    }

    /// The journal, when persistence is on.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
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

    /// The settings in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
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

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles a CONNECT: checks it, finds or creates the session, takes it over from a
    /// connection that holds it (MQTT-3.1.4-2), and builds the CONNACK.
    pub fn connect(self: &Arc<Self>, connect: Box<Connect>, context: &ConnectContext, now: Instant) -> ConnectOutcome {
        let version = connect.protocol;
        let refuse = |reason: ReasonCode, why: &'static str| {
            let mut properties = Properties::default();
            if version.is_v5() {
                properties.reason_string = midge_codec::MqttString::new(why).ok();
            }
            ConnectOutcome::Refused { connack: ConnAck { session_present: false, reason, properties }, reason: why }
        };

        if connect.properties.authentication_method.is_some() {
            // Enhanced authentication is not offered (MQTT 5.0 section 4.12).
            return refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported");
        }
        if connect.username.is_none() && !context.allow_anonymous {
            return refuse(ReasonCode::NOT_AUTHORIZED, "anonymous clients are not allowed on this listener");
        }
        if connect.username.is_some() && !context.allow_anonymous {
            return refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD, "no password file is configured");
        }
        if let Some(will) = &connect.will {
            if will.qos.as_u8() > self.config.max_qos {
                // MQTT-3.2.2-12: a will QoS above Maximum QoS is refused with 0x9B.
                return refuse(ReasonCode::QOS_NOT_SUPPORTED, "will QoS above the server's maximum");
            }
            if will.retain && !self.config.retain_available {
                // MQTT-3.2.2-13.
                return refuse(ReasonCode::RETAIN_NOT_SUPPORTED, "retained will while retain is unavailable");
            }
            if let Err(why) = self.check_topic_levels(&will.topic) {
                return refuse(ReasonCode::TOPIC_NAME_INVALID, why);
            }
        }

        // Keep alive (mosquitto's max_keepalive semantics, see BrokerConfig::max_keepalive).
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        let limited = self.config.max_keepalive < u16::MAX;
        if limited && (keep_alive > self.config.max_keepalive || keep_alive == 0) {
            if version.is_v5() {
                keep_alive = self.config.max_keepalive;
                server_keep_alive = Some(keep_alive);
            } else {
                return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "keep alive above max_keepalive");
            }
        }

        // Client identifier rules.
        let mut assigned = None;
        let client_id: Arc<str> = if connect.client_id.is_empty() {
            match version {
                // MQTT 3.1 requires 1 to 23 characters.
                ProtocolVersion::V31 => return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client id"),
                // MQTT-3.1.3-8: empty id with clean session 0 is refused with 0x02.
                ProtocolVersion::V311 if !connect.clean_start => {
                    return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client id without clean session")
                }
                _ if !self.config.allow_zero_length_clientid => {
                    return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client ids are not allowed")
                }
                _ => {
                    let id: Arc<str> = self.assign_client_id().into();
                    if version.is_v5() {
                        assigned = Some(id.clone());
                    }
                    id
                }
            }
        } else {
            Arc::from(connect.client_id.as_str())
        };

        let expiry_interval = match version {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            _ if connect.clean_start => 0,
            _ => u32::MAX,
        };
        let granted_expiry = expiry_interval.min(self.config.max_session_expiry_interval);

        let receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let window = usize::from(receive_maximum.min(self.config.max_inflight_messages));
        let conn_id = self.next_id();

        let kick = Arc::new(Kick::with_keep_alive(keep_alive));
        self.keep_alives.watch(Arc::clone(&kick), now);

        // Find or create the session.
        let (session, session_present, ended) = {
            let mut sessions = self.sessions.lock();
            match sessions.get(&client_id).cloned() {
                Some(existing) if !connect.clean_start && !existing.lock().ended => (existing, true, None),
                existing => {
                    let session = Arc::new(Session::new(self.next_id(), client_id.clone(), version, granted_expiry));
                    sessions.insert(client_id.clone(), Arc::clone(&session));
                    (session, false, existing)
                }
            }
        };
        if let Some(old) = ended {
            // Clean start: the old session ends now (MQTT-3.1.2-4); its holder is told.
            if let Some(old_kick) = old.lock().attached_kick() {
                old_kick.kick(ReasonCode::SESSION_TAKEN_OVER);
            }
            self.finish_session(&old);
        }
        if let Some(previous) = session.attach(conn_id, Arc::clone(&kick), window, version, granted_expiry) {
            // MQTT-3.1.4-2: the connection that held the session is closed (v5: 0x8E).
            previous.kick(ReasonCode::SESSION_TAKEN_OVER);
        }
        // Attached, then checked: a shutdown that started meanwhile either found this attachment
        // or set the flag before it (both take the session's lock), so no connection is missed.
        if self.shutting_down.load(Ordering::SeqCst) {
            kick.kick(ReasonCode::SERVER_SHUTTING_DOWN);
        }
        // MQTT-3.1.3-9: a new connection to the session before the will delay ran out cancels it.
        session.lock().delayed_will = None;
        if granted_expiry > 0 {
            self.save_session(&session);
        }

        let mut properties = Properties::default();
        if version.is_v5() {
            properties.assigned_client_identifier =
                assigned.as_deref().map(|id| midge_codec::MqttString::new(id).expect("assigned ids are ASCII"));
            properties.server_keep_alive = server_keep_alive;
            if granted_expiry != expiry_interval {
                properties.session_expiry_interval = Some(granted_expiry);
            }
            if self.config.receive_maximum != u16::MAX {
                properties.receive_maximum = Some(self.config.receive_maximum);
            }
            if self.config.max_qos < 2 {
                properties.maximum_qos = QoS::from_u8(self.config.max_qos);
            }
            if !self.config.retain_available {
                properties.retain_available = Some(false);
            }
            if self.config.max_packet_size < crate::config::PROTOCOL_MAX_PACKET_SIZE {
                properties.maximum_packet_size = Some(self.config.max_packet_size);
            }
            if self.config.topic_alias_maximum > 0 {
                properties.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            if !self.config.wildcard_subscription_available {
                properties.wildcard_subscription_available = Some(false);
            }
            if !self.config.subscription_identifier_available {
                properties.subscription_identifier_available = Some(false);
            }
            if !self.config.shared_subscription_available {
                properties.shared_subscription_available = Some(false);
            }
        }
        self.stats.connections_accepted.add(1);
        let connection =
            ClientConnection::new(Arc::clone(self), session, conn_id, kick, &connect, keep_alive, granted_expiry);
        ConnectOutcome::Accepted {
            connection: Box::new(connection),
            connack: ConnAck { session_present, reason: ReasonCode::SUCCESS, properties },
        }
    }

    fn assign_client_id(&self) -> String {
        let mut hasher = self.id_seed.build_hasher();
        hasher.write_u64(self.next_id());
        format!("midge-{:016x}", hasher.finish())
    }

    /// Refuses topics deeper than `max_topic_levels`.
    pub(crate) fn check_topic_levels(&self, topic: &str) -> Result<(), &'static str> {
        if topic.split('/').count() > self.config.max_topic_levels {
            return Err("topic has more levels than max_topic_levels");
        }
        Ok(())
    }

    /// Writes a persistent session's record (expiry, delayed will) to the store.
    pub(crate) fn save_session(&self, session: &Session) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        let mut batch = Batch::new();
        batch.put_session(&**session.client_id(), session.record(journal));
        Some(journal.submit(batch))
    }

    /// Publishes a message: updates the retained store when it is retained, then delivers it
    /// to every matching subscription.
    pub fn publish(&self, message: Arc<Message>) -> Published {
        self.stats.messages_received.add(1);
        let mut ticket = None;
        if message.retain {
            let mut retained = self.retained.write();
            let previous = retained.set(&message);
            // Submitted under the retained lock, so the store sees retained updates of one topic
            // in the order they were made.
            if let Some(journal) = &self.journal {
                let mut batch = Batch::new();
                if message.payload.is_empty() {
                    batch.delete_retained(message.topic.as_str());
                    ticket = Some(journal.submit(batch));
                } else {
                    batch.put_retained(message.topic.as_str(), MessageId(message.id));
                    ticket = Some(journal.add_reference(&message, batch));
                }
                if let Some(previous) = previous {
                    journal.release_reference(&previous, Batch::new());
                }
            }
        }
        let (delivered, routed, congested) = self.route(&message);
        Published { delivered, ticket: ticket.max(routed), congested }
    }

    /// Delivers a message to its subscribers; the publisher never waits for them. Returns how
    /// many sessions it was queued for, and the ticket of the last delivery record written.
    fn route(&self, message: &Arc<Message>) -> (usize, Option<Ticket>, Vec<Arc<Session>>) {
        let mut targets: SmallVec<[(Arc<Session>, Queued); 8]> = SmallVec::new();
        let mut direct_filters = 0usize;
        let mut last_filter: Option<*const u8> = None;
        {
            let router = self.router.read();
            router.match_topic(&message.topic, |found| match found {
                Match::Direct { value, filter, .. } => {
                    if value.options.no_local && message.publisher == Some(value.session.id()) {
                        return; // MQTT-3.8.3-3
                    }
                    if last_filter != Some(filter.as_ptr()) {
                        last_filter = Some(filter.as_ptr());
                        direct_filters += 1;
                    }
                    targets.push((Arc::clone(&value.session), delivery(message, value)));
                }
                Match::Shared { members, cursor, .. } => {
                    if let Some((_, member)) = pick_member(members, cursor) {
                        targets.push((Arc::clone(&member.session), delivery(message, member)));
                    }
                }
            });
        }
        // One filter's subscribers are distinct sessions: only several filters can overlap.
        if direct_filters > 1 {
            merge_overlapping(&mut targets);
        }
        let mut delivered = 0;
        let mut ticket = None;
        let mut congested = Vec::new();
        if message.qos == QoS::AtMostOnce {
            // Nothing the publisher is told depends on these enqueues: defer them to the end of
            // its read batch, one lock per session (crate::delivery_batch).
            if let Some(deferred) = crate::delivery_batch::defer_all(self, &mut targets) {
                return (deferred, None, congested);
            }
        } else {
            // This publisher's earlier QoS 0 messages go first, to keep its order.
            crate::delivery_batch::flush();
        }
        for (session, item) in targets {
            delivered += self.enqueue_now(&session, item, &mut ticket, &mut congested);
        }
        (delivered, ticket, congested)
    }

    /// Enqueues one routed delivery; returns 1 if it was queued, 0 if dropped.
    fn enqueue_now(
        &self,
        session: &Arc<Session>,
        item: Queued,
        ticket: &mut Option<Ticket>,
        congested: &mut Vec<Arc<Session>>,
    ) -> usize {
        match session.enqueue(item, &self.config, self.journal.as_ref(), true) {
            EnqueueOutcome::Queued(written) => {
                *ticket = (*ticket).max(written);
                1
            }
            EnqueueOutcome::QueuedCongested(written) => {
                *ticket = (*ticket).max(written);
                congested.push(Arc::clone(session));
                1
            }
            EnqueueOutcome::DroppedQueueFull => {
                self.stats.messages_dropped.add(1);
                tracing::debug!(client_id = %session.client_id(), "queue full, message dropped");
                0
            }
            EnqueueOutcome::DroppedOffline => 0,
        }
    }

    /// Enqueues the QoS 0 deliveries a read batch deferred for `session` (crate::delivery_batch).
    pub(crate) fn enqueue_deferred(&self, session: &Session, items: Vec<Queued>) {
        let dropped = session.enqueue_many(items, &self.config, self.journal.as_ref());
        if dropped > 0 {
            self.stats.messages_dropped.add(dropped as u64);
            tracing::debug!(client_id = %session.client_id(), dropped, "queue full, messages dropped");
        }
    }

    /// Handles a SUBSCRIBE for `session`; returns one reason code per filter and the ticket the
    /// SUBACK waits for, and queues the retained messages the new subscriptions ask for.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        subscribe: &Subscribe,
        now: Instant,
    ) -> (Vec<ReasonCode>, Option<Ticket>) {
        let subscription_id = subscribe.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(subscribe.subscriptions.len());
        let mut batch = Batch::new();
        for subscription in &subscribe.subscriptions {
            let reason = self.subscribe_one(session, &subscription.filter, subscription.options, subscription_id, now);
            if !reason.is_error() {
                let granted =
                    SubscriptionOptions { qos: QoS::from_u8(reason.0).unwrap_or_default(), ..subscription.options };
                let record =
                    SubscriptionRecord { options: crate::session::options_byte(granted), identifier: subscription_id };
                batch.put_subscription(&**session.client_id(), subscription.filter.as_str(), record);
            }
            reasons.push(reason);
        }
        (reasons, self.write_session_rows(session, batch))
    }

    /// Submits rows of a persistent session (subscriptions); nothing for other sessions.
    fn write_session_rows(&self, session: &Session, batch: Batch) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        if batch.is_empty() || !session.lock().persistent() {
            return None;
        }
        Some(journal.submit(batch))
    }

    fn subscribe_one(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        mut options: midge_codec::SubscriptionOptions,
        id: Option<u32>,
        now: Instant,
    ) -> ReasonCode {
        let shared = match parse_shared(filter) {
            Ok(shared) => shared,
            Err(()) => return ReasonCode::TOPIC_FILTER_INVALID,
        };
        if shared.is_some() && !self.config.shared_subscription_available {
            return ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED;
        }
        if filter.has_wildcard() && !self.config.wildcard_subscription_available {
            return ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED;
        }
        if self.check_topic_levels(filter).is_err() {
            return ReasonCode::TOPIC_FILTER_INVALID;
        }
        options.qos = options.qos.min(QoS::from_u8(self.config.max_qos).unwrap_or(QoS::ExactlyOnce));
        {
            let state = session.lock();
            if !state.subscriptions.contains(filter.as_str())
                && state.subscriptions.len() >= self.config.max_subscriptions_per_client
            {
                return ReasonCode::QUOTA_EXCEEDED;
            }
        }
        let subscriber = Subscriber {
            session: Arc::clone(session),
            options,
            id,
            shared: shared.map(|_| Arc::from(filter.as_str())),
        };
        let existed = self.router.write().subscribe(filter, session.id(), subscriber).is_some();
        session.lock().subscriptions.insert(filter.as_str(), StoredSubscription { options, id });

        // Retained messages: never for shared subscriptions (MQTT 5.0 section 4.8.2); otherwise
        // as Retain Handling says (MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11); a replaced
        // subscription re-sends them (MQTT-3.8.4-3).
        let send_retained = shared.is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let mut matches: Vec<Arc<Message>> = Vec::new();
            self.retained.read().for_each_match(filter, now, |message| matches.push(Arc::clone(message)));
            for message in matches {
                let item = Queued {
                    qos: message.qos.min(options.qos),
                    // MQTT-3.3.1-8: sent because of a new subscription, so RETAIN is 1.
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                    shared: None,
                    message,
                };
                session.enqueue(item, &self.config, self.journal.as_ref(), false);
            }
        }
        ReasonCode(options.qos.as_u8())
    }

    /// Handles an UNSUBSCRIBE; returns one reason code per filter and the ticket the UNSUBACK
    /// waits for.
    pub(crate) fn unsubscribe(
        &self,
        session: &Arc<Session>,
        unsubscribe: &Unsubscribe,
    ) -> (Vec<ReasonCode>, Option<Ticket>) {
        let mut batch = Batch::new();
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                let removed = self.router.write().unsubscribe(filter, &session.id()).is_some();
                session.lock().subscriptions.remove(filter.as_str());
                if removed {
                    batch.delete_subscription(&**session.client_id(), filter.as_str());
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        (reasons, self.write_session_rows(session, batch))
    }

    /// Publishes a will message now.
    pub(crate) fn publish_will(&self, will: Arc<Message>) {
        self.stats.wills_published.add(1);
        self.publish(will);
    }

    /// Ends a session: removes it from the map (if it is still the one there), drops its
    /// subscriptions, hands its undelivered shared-subscription messages to other members, and
    /// publishes a will still waiting on its delay (MQTT 5.0 section 3.1.3.2.2: the will is sent
    /// when the delay passes or the session ends, whichever is first).
    pub(crate) fn finish_session(&self, session: &Arc<Session>) {
        self.finish_session_if(session, false);
    }

    /// Ends `session` unless it has ended already, or (with `only_detached`) a connection has
    /// attached to it meanwhile. Returns whether it ended it.
    fn finish_session_if(&self, session: &Arc<Session>, only_detached: bool) -> bool {
        {
            let mut state = session.lock();
            if state.ended || (only_detached && state.is_attached()) {
                return false;
            }
            state.ended = true;
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
            (filters, state.delayed_will.take())
        };
        {
            let mut router = self.router.write();
            for filter in &filters {
                router.unsubscribe(filter, &session.id());
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
        }
        true
    }

    /// Sends a message that a departed member of a shared subscription did not acknowledge to
    /// another member.
    fn redeliver_shared(&self, item: Queued) {
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
                    target = pick_member(members, cursor).map(|(_, m)| Arc::clone(&m.session));
                }
            }
        });
        if let Some(session) = target {
            let _ = session.enqueue(item, &self.config, self.journal.as_ref(), false);
        }
    }

    /// Runs timed work due at `now`: expires detached sessions (MQTT-3.1.2-23 / session expiry),
    /// publishes delayed wills whose delay ran out, and drops expired retained messages.
    pub fn tick(&self, now: Instant) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            let (expired, will) = {
                let mut state = session.lock();
                if state.is_attached() {
                    continue;
                }
                let expired = state.expires_at.is_some_and(|at| now >= at);
                let will_due = state.delayed_will.as_ref().is_some_and(|(at, _)| now >= *at);
                (expired, if will_due { state.delayed_will.take() } else { None })
            };
            if let Some((_, will)) = will {
                self.publish_will(will);
                if !expired && session.lock().persistent() {
                    self.save_session(&session);
                }
            }
            if expired && self.finish_session_if(&session, true) {
                tracing::debug!(client_id = %session.client_id(), "session expired");
            }
        }
        let expired = self.retained.write().expire(now);
        drop(expired); // freed outside the lock
    }

    /// Restores what the store held: retained messages, and persistent sessions with their
    /// subscriptions, queued and in-flight deliveries, inbound QoS 2 ids and delayed wills.
    /// Detached sessions resume their expiry countdown from the stored deadline, or from `now`
    /// when the broker stopped while their client was connected. Call before accepting
    /// connections, with a snapshot already [`repair`](midge_store::Snapshot::repair)ed.
    pub fn restore(&self, snapshot: Snapshot, now: Instant) -> Restored {
        let Some(journal) = &self.journal else { return Restored::default() };
        let counts = snapshot.reference_counts();
        self.next_message_id.fetch_max(snapshot.next_message_id().0, Ordering::Relaxed);
        self.next_id.fetch_max(snapshot.next_session_id(), Ordering::Relaxed);
        let mut restored = Restored::default();

        let mut messages: HashMap<u64, Arc<Message>> = HashMap::with_capacity(snapshot.messages.len());
        for (id, record) in snapshot.messages {
            let (Ok(topic), Some(qos)) = (TopicName::new(&record.topic), QoS::from_u8(record.qos)) else {
                tracing::warn!(id = id.0, topic = %record.topic, "stored message with an invalid topic or QoS, skipped");
                continue;
            };
            let expires_at = record.expires_at_unix_ms.map(|ms| journal.instant(ms));
            let references = counts.get(&id).copied().unwrap_or(0);
            let message = Message::restored(
                id.0,
                topic,
                record.payload,
                qos,
                record.retain,
                record.shared_properties,
                expires_at,
                record.publisher_session,
                references,
            );
            messages.insert(id.0, Arc::new(message));
        }
        {
            let mut retained = self.retained.write();
            for (_, id) in snapshot.retained {
                if let Some(message) = messages.get(&id.0) {
                    retained.set(message);
                    restored.retained += 1;
                }
            }
        }

        for (client_id, stored) in snapshot.sessions {
            let record = stored.record;
            let protocol = match record.protocol_level {
                3 => ProtocolVersion::V31,
                4 => ProtocolVersion::V311,
                _ => ProtocolVersion::V5,
            };
            let client_id: Arc<str> = Arc::from(client_id.as_str());
            let session =
                Arc::new(Session::new(record.session_id, client_id.clone(), protocol, record.expiry_interval));
            {
                let mut state = session.lock();
                state.stored = true;
                state.expires_at = match (record.expires_at_unix_ms, record.expiry_interval) {
                    (Some(ms), _) => Some(journal.instant(ms)),
                    (None, u32::MAX) => None,
                    (None, secs) => Some(now + std::time::Duration::from_secs(u64::from(secs))),
                };
                state.delayed_will = record.delayed_will.and_then(|will| {
                    let topic = TopicName::new(&will.topic).ok()?;
                    let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
                    let message = Message::restored(
                        id,
                        topic,
                        will.payload,
                        QoS::from_u8(will.qos)?,
                        will.retain,
                        will.properties,
                        None,
                        None,
                        0,
                    );
                    Some((journal.instant(will.due_unix_ms), Arc::new(message)))
                });
            }
            {
                let mut router = self.router.write();
                for (filter, subscription) in stored.subscriptions {
                    let options = crate::session::options_from_byte(subscription.options);
                    let shared = filter.starts_with("$share/").then(|| Arc::from(filter.as_str()));
                    let subscriber =
                        Subscriber { session: Arc::clone(&session), options, id: subscription.identifier, shared };
                    router.subscribe(&filter, session.id(), subscriber);
                    let stored = StoredSubscription { options, id: subscription.identifier };
                    session.lock().subscriptions.insert(&filter, stored);
                    restored.subscriptions += 1;
                }
            }
            for (seq, delivery) in stored.deliveries {
                let (Some(message), Some(qos)) = (messages.get(&delivery.message.0), QoS::from_u8(delivery.qos)) else {
                    continue;
                };
                let item = Queued {
                    message: Arc::clone(message),
                    qos,
                    retain: delivery.retain,
                    subscription_ids: delivery.subscription_ids.into_iter().collect(),
                    shared: delivery.shared.map(Arc::from),
                };
                session.restore_delivery(seq, item, delivery.state);
                restored.deliveries += 1;
            }
            for packet_id in stored.inbound_qos2 {
                session.restore_inbound_qos2(packet_id);
            }
            self.sessions.lock().insert(client_id, session);
            restored.sessions += 1;
        }
        restored
    }

    /// The keep alive deadlines of the connections, for the server to sweep every
    /// [`crate::keep_alive::SWEEP_INTERVAL`] and for connections to record what they hear.
    pub fn keep_alives(&self) -> &KeepAlives {
        &self.keep_alives
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

/// Splits `$share/{group}/{filter}`; `Ok(None)` for an ordinary filter, `Err` for a malformed
/// shared one (MQTT-4.8.2-1: the group name has no `+`, `#` or `/`; MQTT-4.8.2-2: a filter
/// follows).
fn parse_shared(filter: &TopicFilter) -> Result<Option<(&str, &str)>, ()> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return if filter.as_str() == "$share" { Err(()) } else { Ok(None) };
    };
    let (group, inner) = rest.split_once('/').ok_or(())?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(());
    }
    Ok(Some((group, inner)))
}

/// The delivery of `message` through one subscription.
fn delivery(message: &Arc<Message>, subscriber: &Subscriber) -> Queued {
    Queued {
        message: Arc::clone(message),
        qos: message.qos.min(subscriber.options.qos),
        // MQTT-3.3.1-12/13: RETAIN is kept only with Retain As Published.
        retain: message.retain && subscriber.options.retain_as_published,
        subscription_ids: subscriber.id.into_iter().collect(),
        shared: subscriber.shared.clone(),
    }
}

/// Picks the next member of a shared group round-robin, preferring connected members.
fn pick_member<'a>(
    members: &'a [(u64, Subscriber)],
    cursor: &std::sync::atomic::AtomicUsize,
) -> Option<&'a (u64, Subscriber)> {
    if members.is_empty() {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    (0..members.len())
        .map(|i| &members[(start + i) % members.len()])
        .find(|(_, m)| m.session.lock().is_attached())
        .or_else(|| members.get(start % members.len()))
}

/// Merges deliveries to the same session through overlapping ordinary subscriptions into one,
/// at the highest granted QoS with every subscription identifier (MQTT-3.3.4-2,
/// MQTT-3.3.4-3 / 3.1.1 MQTT-3.3.5-1).
fn merge_overlapping(targets: &mut SmallVec<[(Arc<Session>, Queued); 8]>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_by_key(|(session, item)| (session.id(), item.shared.is_some()));
    let mut merged: SmallVec<[(Arc<Session>, Queued); 8]> = SmallVec::with_capacity(targets.len());
    for (session, item) in targets.drain(..) {
        if let Some((last_session, last)) = merged.last_mut() {
            if last_session.id() == session.id() && last.shared.is_none() && item.shared.is_none() {
                last.qos = last.qos.max(item.qos);
                last.retain |= item.retain;
                let ids: SubscriptionIds = item.subscription_ids;
                last.subscription_ids.extend(ids);
                continue;
            }
        }
        merged.push((session, item));
    }
    *targets = merged;
}
