//! A paced client (DESIGN.md "Bounds and back-pressure"): the subscribers over their queue
//! bound that its last messages reached. While any is, the client is not read, for at most
//! `slow_consumer_timeout_ms` without progress; then the slow-consumer policy applies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use midge_broker::{Broker, ClientConnection, Session, SlowConsumerPolicy};

/// The subscribers a client waits for, and the wait.
pub(super) struct Pacing {
    broker: Arc<Broker>,
    subscribers: Vec<Arc<Session>>,
    deadline: tokio::time::Instant,
    /// The subscribers' summed progress when the deadline was set.
    progress: u64,
    /// The wait for the first subscriber's room or the deadline; rebuilt after each wake.
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Pacing {
    /// Starts pacing if the client's last packets found congested subscribers.
    pub(super) fn start(connection: &mut ClientConnection) -> Option<Box<Self>> {
        let subscribers = connection.take_congested();
        if subscribers.is_empty() {
            return None;
        }
        let broker = Arc::clone(connection.broker());
        let progress = subscribers.iter().map(|s| s.progress()).sum();
        let deadline = tokio::time::Instant::now() + broker.limits().slow_consumer_timeout();
        Some(Box::new(Self { broker, subscribers, deadline, progress, wait: None }))
    }

    /// Makes sure a wait is in place for the first subscriber still paced on.
    pub(super) fn arm(&mut self) {
        if self.wait.is_none() {
            if let Some(first) = self.subscribers.first() {
                self.wait = Some(Box::pin(wait_for_room(Arc::clone(&self.broker), Arc::clone(first), self.deadline)));
            }
        }
    }

    /// `Ready` when the wait is over (room, or the deadline).
    pub(super) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(wait) = self.wait.as_mut() else { return Poll::Pending };
        let ready = wait.as_mut().poll(cx);
        if ready.is_ready() {
            self.wait = None;
        }
        ready
    }

    /// After a wait: drops the subscribers that have room, applies the policy at the deadline
    /// to those that took nothing meanwhile, and says whether pacing goes on.
    pub(super) fn recheck(&mut self, publisher: &str) -> bool {
        let broker = &*self.broker;
        self.subscribers.retain(|session| !session.has_room(broker.limits()));
        if !self.subscribers.is_empty() && tokio::time::Instant::now() >= self.deadline {
            // The timeout is for subscribers that stopped consuming: one that consumed while
            // we waited is merely contended, and pacing goes on.
            let progress: u64 = self.subscribers.iter().map(|s| s.progress()).sum();
            if progress != self.progress {
                self.progress = progress;
                self.deadline = tokio::time::Instant::now() + broker.limits().slow_consumer_timeout();
            } else {
                let disconnect = broker.limits().slow_consumer_policy == SlowConsumerPolicy::Disconnect;
                for session in self.subscribers.drain(..) {
                    tracing::warn!(
                        %publisher, subscriber = %session.client_id(),
                        "slow consumer: queue still full after slow_consumer_timeout_ms, applying the policy"
                    );
                    session.shed(disconnect);
                }
            }
        }
        !self.subscribers.is_empty()
    }
}

/// Waits until `session` has room in its queue, or `until`.
///
/// # Cancel safety
/// Cancel safe: see [`Session::wait_for_room`].
async fn wait_for_room(broker: Arc<Broker>, session: Arc<Session>, until: tokio::time::Instant) {
    tokio::select! {
        _ = session.wait_for_room(broker.limits()) => {}
        _ = tokio::time::sleep_until(until) => {}
    }
}
