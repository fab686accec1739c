//! Subscribing and unsubscribing: the router, the session's own list, the store's rows, and
//! the retained messages a new subscription is sent.

use std::sync::Arc;
use std::time::Instant;

use midge_codec::{QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, TopicFilter, Unsubscribe};

use super::state::Broker;
use crate::delivery::Queued;
use crate::message::Message;
use crate::ports::durability::{Change, Changes, StoredSubscription as SubscriptionRow, Ticket};
use crate::route::shared::parse_shared;
use crate::route::subscriber::Subscriber;
use crate::session::{options_byte, EnqueueOutcome, Session, StoredSubscription};
use crate::stats::DropReason;

impl Broker {
    /// Handles a SUBSCRIBE for `session`; returns one reason code per filter and the ticket the
    /// SUBACK waits for, and queues the retained messages the new subscriptions ask for. A
    /// filter `permitted` refuses gets `refused` (the caller's authorization answer).
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        subscribe: &Subscribe,
        now: Instant,
        mut permitted: impl FnMut(&TopicFilter) -> bool,
        refused: ReasonCode,
    ) -> (Vec<ReasonCode>, Option<Ticket>) {
        let subscription_id = subscribe.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(subscribe.subscriptions.len());
        let mut changes = Changes::new();
        for subscription in &subscribe.subscriptions {
            if !permitted(&subscription.filter) {
                reasons.push(refused);
                continue;
            }
            let reason = self.subscribe_one(session, &subscription.filter, subscription.options, subscription_id, now);
            if !reason.is_error() {
                let granted =
                    SubscriptionOptions { qos: QoS::from_u8(reason.0).unwrap_or_default(), ..subscription.options };
                let record = SubscriptionRow { options: options_byte(granted), identifier: subscription_id };
                let client_id = session.client_id().to_string();
                changes.push(Change::PutSubscription { client_id, filter: subscription.filter.to_string(), record });
            }
            reasons.push(reason);
        }
        self.fabric_subscriptions_changed(session);
        (reasons, self.write_session_rows(session, changes))
    }

    /// Handles an UNSUBSCRIBE; returns one reason code per filter and the ticket the UNSUBACK
    /// waits for.
    pub(crate) fn unsubscribe(
        &self,
        session: &Arc<Session>,
        unsubscribe: &Unsubscribe,
    ) -> (Vec<ReasonCode>, Option<Ticket>) {
        let mut changes = Changes::new();
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                let removed = self.router.write().unsubscribe(filter, &session.id()).is_some();
                session.lock().subscriptions.remove(filter.as_str());
                if removed {
                    self.report_interest(filter, false);
                    let client_id = session.client_id().to_string();
                    changes.push(Change::DeleteSubscription { client_id, filter: filter.to_string() });
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.fabric_subscriptions_changed(session);
        (reasons, self.write_session_rows(session, changes))
    }

    /// Submits rows of a persistent session (subscriptions); nothing for other sessions.
    fn write_session_rows(&self, session: &Session, changes: Changes) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        if changes.is_empty() || !session.lock().persistent() {
            return None;
        }
        Some(journal.submit(changes))
    }

    fn subscribe_one(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        mut options: SubscriptionOptions,
        id: Option<u32>,
        now: Instant,
    ) -> ReasonCode {
        let shared = match parse_shared(filter) {
            Ok(shared) => shared,
            Err(()) => return ReasonCode::TOPIC_FILTER_INVALID,
        };
        if shared.is_some() && !self.limits.shared_subscription_available {
            return ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED;
        }
        if filter.has_wildcard() && !self.limits.wildcard_subscription_available {
            return ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED;
        }
        if self.check_topic(filter, session.client_id(), now).is_err() {
            return ReasonCode::TOPIC_FILTER_INVALID;
        }
        options.qos = options.qos.min(QoS::from_u8(self.limits.max_qos).unwrap_or(QoS::ExactlyOnce));
        {
            let state = session.lock();
            if !state.subscriptions.contains(filter.as_str())
                && state.subscriptions.len() >= self.limits.max_subscriptions_per_client
            {
                drop(state);
                let counter = &self.stats.limits.max_subscriptions_per_client;
                self.limit_hit(counter, "max_subscriptions_per_client", session.client_id(), now);
                return ReasonCode::QUOTA_EXCEEDED;
            }
        }
        let subscriber =
            Subscriber::local(Arc::clone(session), options, id, shared.map(|_| Arc::from(filter.as_str())));
        let existed = self.router.write().subscribe(filter, session.id(), subscriber).is_some();
        session.lock().subscriptions.insert(filter.as_str(), StoredSubscription { options, id });
        if !existed {
            self.report_interest(filter, true);
        }

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
                    handed_on: 0,
                    message,
                };
                let (outcome, kick) = session.enqueue(item, &self.limits, self.journal.as_ref(), false);
                if outcome == EnqueueOutcome::DroppedQueueFull {
                    // Retained messages sent on subscribe respect the queue's bound: no
                    // publisher to pace, so what does not fit is dropped, and counted.
                    self.stats.dropped(DropReason::QueueFull, 1);
                }
                if let Some(kick) = kick {
                    kick.ring();
                }
            }
        }
        ReasonCode(options.qos.as_u8())
    }
}
