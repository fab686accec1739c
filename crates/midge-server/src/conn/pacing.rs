//! A paced client (DESIGN.md "Bounds and back-pressure"; decisions 0003 and 0005): the
//! subscribers over their queue bound that its last messages reached. While any is, the client
//! is not read. The slow-consumer policy applies to a subscriber that took nothing for
//! `slow_consumer_timeout_ms`, and to the subscribers a client keeps waiting for while its
//! other subscribers sit idle, once it has been held up that long ([`HeldUp`]): one slow
//! subscriber among many holds the others up for no longer than the timeout, while one that
//! keeps consuming and holds up nobody (it is its publisher's only subscriber, or all are
//! behind alike) is never shed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use midge_broker::{Broker, ClientConnection, Congestion, Session, SlowConsumerPolicy};
use std::time::Duration;

use tokio::time::Instant;

/// How a client has been held up across its pauses, carried by the connection from one pause
/// to the next while they come no more than the timeout apart; boxed: most clients never have
/// one.
///
/// Two counts. `idle_by`: how long one subscriber has held the client up while its other
/// subscribers sat idle (every pause since then waited for it and ended with another subscriber
/// idle); a pause that ends with the others busy too (all behind alike) ends it, and one that
/// waits for someone else starts a new one. `since`: how long the client has been paced at all,
/// whoever it waited for: once that passes the timeout, a subscriber that takes nothing for a
/// grace in a pause is shed, so subscribers that stop reading one after another hold the client
/// up for about one timeout, not one each (a hundred held a publisher for a hundred timeouts in
/// bench/hostile.sh).
#[derive(Debug)]
pub(crate) struct HeldUp {
    idle_by: Option<(u64, Instant)>,
    since: Instant,
    last_pause: Instant,
}

/// The shortest grace a subscriber gets in a pause once its publisher has been paced for the
/// timeout (see [`HeldUp`]): a consuming subscriber takes something well within it, even with a
/// very short `slow_consumer_timeout_ms`.
const STUCK_GRACE_MIN: Duration = Duration::from_millis(100);

/// The subscribers a client waits for, and the wait.
pub(crate) struct Pacing {
    broker: Arc<Broker>,
    subscribers: Vec<Arc<Session>>,
    /// A few other subscribers the same read reached: idle ones are held up by this pause.
    others: Vec<Arc<Session>>,
    /// When this pause began.
    began: Instant,
    /// Each subscriber's progress when this pause began, by session id: one that has taken
    /// something since is consuming.
    progress_at_start: Vec<(u64, u64)>,
    held_up: Option<Box<HeldUp>>,
    /// When to look again: the earlier of `progress_due` and the held-up limit.
    deadline: Instant,
    /// The subscribers' summed progress when it was last seen to move.
    progress: u64,
    /// When the subscribers have gone the timeout without progress, unless it moves.
    progress_due: Instant,
    /// The wait for the first subscriber's room or the deadline; rebuilt after each wake.
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// A pause ends however its publisher's connection goes on (finished, replaced, or the
/// connection closed while paced): the count of paced publishers follows the value, not the
/// paths. A count for reports, not an effect on the broker.
impl Drop for Pacing {
    fn drop(&mut self) {
        self.broker.stats().paced_publishers.decrement();
    }
}

impl Pacing {
    /// Starts pacing if the client's last read found congested subscribers, carrying `held_up`
    /// over from the pauses before (if the last one ended within the timeout). A subscriber
    /// that has held up idle ones for the timeout already is shed at once, not waited for.
    pub(crate) fn start(
        connection: &ClientConnection,
        congestion: Congestion,
        held_up: &mut Option<Box<HeldUp>>,
    ) -> Option<Box<Self>> {
        if congestion.is_empty() {
            return None;
        }
        let broker = Arc::clone(connection.broker());
        let timeout = broker.limits().slow_consumer_timeout();
        let now = Instant::now();
        let held_up = held_up.take().filter(|held| now.duration_since(held.last_pause) <= timeout);
        let mut pacing = Self {
            broker,
            subscribers: congestion.subscribers,
            others: congestion.others,
            began: now,
            progress_at_start: Vec::new(),
            held_up,
            deadline: now,
            progress: 0,
            progress_due: now + timeout,
            wait: None,
        };
        pacing.broker.stats().paced_publishers.increment(); // until it is dropped (below)
        pacing.progress_at_start = pacing.subscribers.iter().map(|s| (s.id(), s.progress())).collect();
        pacing.shed_if_held_up_too_long(connection.client_id(), now);
        if pacing.subscribers.is_empty() {
            return None;
        }
        pacing.progress = pacing.subscribers.iter().map(|s| s.progress()).sum();
        pacing.deadline = pacing.next_deadline();
        pacing.broker.stats().pacings.add(1);
        Some(Box::new(pacing))
    }

    /// Ends the pause, handing back what the next one carries over.
    pub(crate) fn finish(mut self) -> Option<Box<HeldUp>> {
        self.held_up.take()
    }

    /// Makes sure a wait is in place for the first subscriber still paced on.
    pub(crate) fn arm(&mut self) {
        if self.wait.is_none() {
            if let Some(first) = self.subscribers.first() {
                self.wait = Some(Box::pin(wait_for_room(Arc::clone(first), self.deadline)));
            }
        }
    }

    /// `Ready` when the wait is over (room, or the deadline).
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(wait) = self.wait.as_mut() else { return Poll::Pending };
        let ready = wait.as_mut().poll(cx);
        if ready.is_ready() {
            self.wait = None;
        }
        ready
    }

    /// After a wait: notes whether the pause held up an idle subscriber, drops the subscribers
    /// that have room, applies the policy at the deadline to those that took nothing meanwhile
    /// or have held up idle ones too long, and says whether pacing goes on.
    pub(crate) fn recheck(&mut self, publisher: &str) -> bool {
        let now = Instant::now();
        self.note_held_up(now);
        self.subscribers.retain(|session| !session.has_room());
        self.shed_if_held_up_too_long(publisher, now);
        if !self.subscribers.is_empty() && now >= self.progress_due {
            // The timeout is for subscribers that stopped consuming: one that consumed while
            // we waited is merely contended, and pacing goes on.
            let progress: u64 = self.subscribers.iter().map(|s| s.progress()).sum();
            if progress == self.progress {
                for session in self.subscribers.drain(..) {
                    shed(&self.broker, publisher, &session, "its queue is still full after slow_consumer_timeout_ms");
                }
            } else {
                self.progress = progress;
                self.progress_due = now + self.broker.limits().slow_consumer_timeout();
            }
        }
        self.deadline = self.next_deadline();
        !self.subscribers.is_empty()
    }

    /// Notes this wait in the counts of [`HeldUp`]: whether it held up another subscriber of the
    /// read (one of them sits idle), and for whom it waited. Called before the subscribers with
    /// room are dropped.
    fn note_held_up(&mut self, now: Instant) {
        let Some(first) = self.subscribers.first() else { return };
        let began = self.began;
        let held =
            self.held_up.get_or_insert_with(|| Box::new(HeldUp { idle_by: None, since: began, last_pause: now }));
        held.last_pause = now;
        if !self.others.iter().any(|other| other.is_idle()) {
            held.idle_by = None;
            return;
        }
        match held.idle_by {
            Some((by, _)) if self.subscribers.iter().any(|s| s.id() == by) => {}
            _ => held.idle_by = Some((first.id(), began)),
        }
    }

    /// Applies the policy to the subscriber that has held up idle ones for the timeout, if this
    /// client waits for it; and, once the client has been paced for the timeout, to the
    /// subscribers that have taken nothing for the grace of this pause.
    fn shed_if_held_up_too_long(&mut self, publisher: &str, now: Instant) {
        let timeout = self.broker.limits().slow_consumer_timeout();
        let Some(held) = self.held_up.as_mut() else { return };
        if let Some((by, _)) = held.idle_by.filter(|(_, since)| now.duration_since(*since) >= timeout) {
            if let Some(at) = self.subscribers.iter().position(|s| s.id() == by) {
                let session = self.subscribers.swap_remove(at);
                shed(
                    &self.broker,
                    publisher,
                    &session,
                    "it held up its publisher for slow_consumer_timeout_ms while other subscribers waited",
                );
                held.idle_by = None;
            }
        }
        let paced_too_long = now.duration_since(held.since) >= timeout;
        if !paced_too_long || now.duration_since(self.began) < self.grace() {
            return;
        }
        let progress_at_start = &self.progress_at_start;
        let stuck = |session: &Arc<Session>| {
            progress_at_start.iter().any(|&(id, at)| id == session.id() && at == session.progress())
        };
        let (stuck, consuming): (Vec<_>, Vec<_>) = self.subscribers.drain(..).partition(stuck);
        self.subscribers = consuming;
        for session in stuck {
            shed(
                &self.broker,
                publisher,
                &session,
                "it took nothing while its publisher had been paced for slow_consumer_timeout_ms",
            );
        }
    }

    /// How long a subscriber may take nothing in a pause once the client has been paced for the
    /// timeout: a tenth of it, and at least [`STUCK_GRACE_MIN`], long enough for any subscriber
    /// that is consuming to have taken something.
    fn grace(&self) -> Duration {
        (self.broker.limits().slow_consumer_timeout() / 10).max(STUCK_GRACE_MIN)
    }

    /// When to look again: when the subscribers will have gone the timeout without progress,
    /// or sooner when a count of [`HeldUp`] will run out.
    fn next_deadline(&self) -> Instant {
        let timeout = self.broker.limits().slow_consumer_timeout();
        let now = Instant::now();
        let mut deadline = self.progress_due;
        if let Some(held) = &self.held_up {
            if let Some((_, since)) = held.idle_by {
                deadline = deadline.min(since + timeout);
            }
            let paced_due = (held.since + timeout).max(self.began + self.grace());
            if paced_due > now {
                deadline = deadline.min(paced_due);
            }
        }
        deadline
    }
}

/// Applies the slow-consumer policy to `session`, which `publisher` was paced for.
fn shed(broker: &Broker, publisher: &str, session: &Session, why: &str) {
    tracing::warn!(%publisher, subscriber = %session.client_id(), "slow consumer: {why}, applying slow_consumer_policy");
    session.shed(broker.limits().slow_consumer_policy == SlowConsumerPolicy::Disconnect);
}

/// Waits until `session` has room in its queue, or `until`.
///
/// # Cancel safety
/// Cancel safe: see [`Session::wait_for_room`].
async fn wait_for_room(session: Arc<Session>, until: Instant) {
    tokio::select! {
        _ = session.wait_for_room() => {}
        _ = tokio::time::sleep_until(until) => {}
    }
}
