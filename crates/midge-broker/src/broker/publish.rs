//! Publishing: the retained store, routing a message to its subscribers, and enqueueing to each
//! session, with QoS 0 deliveries deferred to the end of the publisher's read batch.

use std::sync::Arc;

use midge_codec::QoS;

use super::fabric::RouteScope;
use super::state::Broker;
use crate::delivery::Queued;
use crate::message::is_sys_topic;
use crate::message::Message;
use crate::ports::durability::{Change, Changes, Ticket};
use crate::route::overlap::{merge_overlapping, Targets};
use crate::route::read_batch::ReadBatch;
use crate::route::shared::pick_member;
use crate::route::subscriber::{Remote, Target};
use crate::router::Match;
use crate::session::EnqueueOutcome;
use crate::stats::DropReason;

/// What publishing a message did.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Sessions it was queued for (for a QoS 0 message deferred in a read batch: sessions it
    /// was deferred for, some of which may still drop it as offline or full; nothing is
    /// acknowledged for QoS 0).
    pub(crate) delivered: usize,
    /// The ticket that makes it durable (retained update, persistent deliveries), which the
    /// publisher's acknowledgement waits for.
    pub(crate) ticket: Option<Ticket>,
    /// Whether it was refused, neither retained nor delivered, because retaining it would have
    /// gone over `max_retained_messages` or `max_retained_bytes`.
    pub(crate) refused: bool,
}

/// Whether a retained message is written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Yes,
    No,
}

impl Broker {
    /// Publishes a message within a publisher's read batch: updates the retained store when it
    /// is retained, then delivers it to every matching subscription.
    pub(crate) fn publish(&self, message: Arc<Message>, batch: &mut ReadBatch) -> Published {
        self.stats.messages_received.add(message.qos, 1);
        let Some(fabric) = self.fabric() else {
            return self.publish_uncounted(message, batch, Durable::Yes);
        };
        // A node of a cluster: the other nodes get it after this node's own subscribers.
        let published = self.publish_uncounted(Arc::clone(&message), batch, Durable::Yes);
        if !published.refused {
            fabric.publish(&message);
        }
        published
    }

    /// Publishes a message of the broker's own, such as a `$SYS` value: routed as any other
    /// message, so the ACL decides at delivery who reads it and a retained one is kept for new
    /// subscribers, but not counted as received (mosquitto counts only what clients send) and,
    /// when retained, kept in memory only: the broker publishes fresh values when it starts,
    /// and a store write per value per interval would buy nothing. Its deliveries are enqueued
    /// and woken before this returns.
    pub fn publish_own(
        &self,
        topic: midge_codec::TopicName,
        payload: bytes::Bytes,
        qos: QoS,
        retain: bool,
        now: std::time::Instant,
    ) -> Result<(), &'static str> {
        let publish = midge_codec::Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: None,
            properties: midge_codec::Properties::default(),
            payload,
        };
        let mut batch = ReadBatch::unpaced();
        let published = self.publish_uncounted(self.new_message(&publish, None, now), &mut batch, Durable::No);
        self.end_batch(&mut batch);
        if published.refused {
            return Err("max_retained_messages or max_retained_bytes");
        }
        Ok(())
    }

    fn publish_uncounted(&self, message: Arc<Message>, batch: &mut ReadBatch, durable: Durable) -> Published {
        let mut ticket = None;
        if message.retain {
            let mut retained = self.retained.write();
            let limits = &self.limits;
            if !retained.admits(&message, limits.max_retained_messages, limits.max_retained_bytes) {
                drop(retained);
                // The log's rate is all the clock is for here; the topic names the refusal.
                let why = "max_retained_messages or max_retained_bytes: a retained message refused";
                self.limit_hit(&self.stats.limits.max_retained, why, &message.topic, std::time::Instant::now());
                return Published { delivered: 0, ticket: None, refused: true };
            }
            let previous = retained.set(&message);
            // Submitted under the retained lock, so the store sees retained updates of one topic
            // in the order they were made. The broker's own retained messages never have a
            // retained row: only the broker publishes into `$SYS`, and `restore` drops the rows
            // a store from before held.
            if let Some(journal) = self.journal.as_ref().filter(|_| durable == Durable::Yes) {
                let topic = message.topic.to_string();
                let mut changes = Changes::new();
                if message.payload.is_empty() {
                    changes.push(Change::DeleteRetained(topic));
                    ticket = Some(journal.submit(changes));
                } else {
                    changes.push(Change::PutRetained { topic, message: message.id });
                    ticket = Some(journal.add_reference(&message, changes));
                }
                if let Some(previous) = previous {
                    journal.release_reference(previous.id, Changes::new());
                }
            }
        }
        // On a node of a cluster, shared groups are shared out by the fabric, across nodes.
        let scope =
            if self.fabric().is_some() && durable == Durable::Yes { RouteScope::Unshared } else { RouteScope::All };
        let (delivered, routed) = self.route_in(&message, batch, scope);
        Published { delivered, ticket: ticket.max(routed), refused: false }
    }

    /// Publishes a message outside any read batch (wills, redeliveries): its deliveries are
    /// enqueued and their sessions woken before this returns.
    pub(crate) fn publish_now(&self, message: Arc<Message>) {
        let mut batch = ReadBatch::unpaced();
        self.publish(message, &mut batch);
        self.end_batch(&mut batch);
    }

    /// Publishes a message that arrives without a connection: an MQTT-SN PUBLISH at QoS -1
    /// (MQTT-SN 1.2 section 6.8), which its gateway publishes at QoS 0. The topic limits apply
    /// as to a client's PUBLISH (counted, and logged naming `peer`); the message has no
    /// publisher session, and its deliveries are enqueued and woken before this returns.
    /// Returns why it was refused.
    pub fn publish_unconnected(
        &self,
        publish: &midge_codec::Publish,
        peer: &str,
        now: std::time::Instant,
    ) -> Result<(), &'static str> {
        if publish.qos != QoS::AtMostOnce {
            return Err("only QoS 0 is published without a connection");
        }
        if publish.retain && !self.limits.retain_available {
            return Err("retained PUBLISH while retain is unavailable");
        }
        self.check_topic(&publish.topic, peer, now)?;
        if is_sys_topic(&publish.topic) {
            return Err("a client may not publish into $SYS");
        }
        let mut batch = ReadBatch::unpaced();
        let published = self.publish(self.new_message(publish, None, now), &mut batch);
        self.end_batch(&mut batch);
        if published.refused {
            return Err("max_retained_messages or max_retained_bytes");
        }
        Ok(())
    }

    /// Publishes a will message now.
    pub(crate) fn publish_will(&self, will: Arc<Message>) {
        self.stats.wills_published.add(1);
        self.publish_now(will);
    }

    /// Ends a read batch: enqueues the QoS 0 deliveries it deferred, one lock per session, then
    /// wakes every session its messages reached, once each. Call it once the read's packets
    /// are handled, before anything else is read.
    pub fn end_batch(&self, batch: &mut ReadBatch) {
        self.enqueue_deferred(batch);
        for kick in batch.take_wakes() {
            kick.ring();
        }
    }

    /// Delivers a message to its subscribers; the publisher never waits for them, it is paced
    /// for the congested ones `batch` notes. Returns how many sessions it was queued for and the
    /// ticket of the last delivery record written.
    pub(super) fn route_in(
        &self,
        message: &Arc<Message>,
        batch: &mut ReadBatch,
        scope: RouteScope<'_>,
    ) -> (usize, Option<Ticket>) {
        let mut targets = Targets::new();
        let mut remotes = RemoteTargets::new();
        let mut direct_filters = 0usize;
        let mut last_filter: Option<*const u8> = None;
        {
            let router = self.router.read();
            router.match_topic(&message.topic, |found| match found {
                Match::Direct { value, filter, .. } => {
                    if !scope.includes_unshared() {
                        return;
                    }
                    if last_filter != Some(filter.as_ptr()) {
                        last_filter = Some(filter.as_ptr());
                        direct_filters += 1;
                    }
                    match &value.target {
                        Target::Local(session) => {
                            if value.options.no_local && message.publisher == Some(session.id()) {
                                return; // MQTT-3.8.3-3
                            }
                            if message.qos != QoS::AtMostOnce && session.is_fabric_fed() {
                                return; // the fabric's durable path brings it
                            }
                            targets.push((Arc::clone(session), value.delivery(message)));
                        }
                        Target::Remote(remote) => remotes.push((Arc::clone(remote), value.delivery(message))),
                    }
                }
                Match::Shared { group, filter, members, cursor } => {
                    if !scope.includes_share(group, filter) {
                        return;
                    }
                    if let Some((_, member)) = pick_member(members, cursor) {
                        match &member.target {
                            Target::Local(session) => targets.push((Arc::clone(session), member.delivery(message))),
                            Target::Remote(remote) => remotes.push((Arc::clone(remote), member.delivery(message))),
                        }
                    }
                }
            });
        }
        // One filter's subscribers are distinct sessions: only several filters can overlap.
        if direct_filters > 1 {
            merge_overlapping(&mut targets);
        }
        let forwarded = forward_remote(remotes);
        if message.qos == QoS::AtMostOnce {
            // Nothing the publisher is told depends on these enqueues: defer them to the end of
            // its read batch, one lock per session.
            let deferred = targets.len();
            if batch.defer(&mut targets, message.publisher) {
                self.enqueue_deferred(batch); // bounded: DEFERRED_DELIVERIES
            }
            return (deferred + forwarded, None);
        }
        // This publisher's earlier QoS 0 messages go first, to keep its order.
        self.enqueue_deferred(batch);
        let mut delivered = forwarded;
        let mut ticket = None;
        let pace = batch.paces();
        for (session, item) in targets {
            let (outcome, wake) = session.enqueue(item, &self.limits, self.journal.as_ref(), pace);
            match outcome {
                EnqueueOutcome::Queued(written) => {
                    batch.note_reached(&session);
                    ticket = ticket.max(written);
                    delivered += 1;
                }
                EnqueueOutcome::QueuedCongested(written) => {
                    ticket = ticket.max(written);
                    batch.note_congested(&session, message.publisher);
                    delivered += 1;
                }
                EnqueueOutcome::DroppedQueueFull => {
                    self.stats.dropped(DropReason::QueueFull, 1);
                    tracing::debug!(client_id = %session.client_id(), "queue full, message dropped");
                }
                EnqueueOutcome::DroppedOffline => {}
            }
            if let Some(kick) = wake {
                batch.wake_later(kick);
            }
        }
        (delivered, ticket)
    }

    /// Enqueues what `batch` deferred, each session under one lock; their wake-ups stay in the
    /// batch.
    fn enqueue_deferred(&self, batch: &mut ReadBatch) {
        let pace = batch.paces();
        for (session, items) in batch.take_deferred() {
            // A read batch holds one publisher's messages.
            let publisher = items.first().and_then(|item| item.message.publisher);
            let outcome = session.enqueue_many(items, &self.limits, self.journal.as_ref(), pace);
            if outcome.dropped > 0 {
                self.stats.dropped(DropReason::QueueFull, outcome.dropped as u64);
                tracing::debug!(client_id = %session.client_id(), dropped = outcome.dropped, "queue full, messages dropped");
            }
            if outcome.congested {
                batch.note_congested(&session, publisher);
            } else {
                batch.note_reached(&session);
            }
            if let Some(kick) = outcome.wake {
                batch.wake_later(kick);
            }
        }
    }
}

/// Deliveries to remote targets: none on a broker without any, and no allocation then.
type RemoteTargets = Vec<(Arc<Remote>, Queued)>;

/// Hands each remote target its deliveries, one per target (overlapping subscriptions merged
/// as for sessions: the highest QoS, every identifier). Returns how many targets it reached.
fn forward_remote(mut remotes: RemoteTargets) -> usize {
    if remotes.is_empty() {
        return 0;
    }
    remotes.sort_by_key(|(remote, _)| remote.key);
    let mut merged: RemoteTargets = Vec::with_capacity(remotes.len());
    for (remote, item) in remotes {
        match merged.last_mut() {
            Some((last, into)) if last.key == remote.key && into.shared.is_none() && item.shared.is_none() => {
                into.qos = into.qos.max(item.qos);
                into.retain |= item.retain;
                into.subscription_ids.extend(item.subscription_ids);
            }
            _ => merged.push((remote, item)),
        }
    }
    let reached = merged.len();
    for (remote, item) in merged {
        remote.target.forward(item);
    }
    reached
}
