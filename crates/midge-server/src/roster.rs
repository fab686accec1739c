//! A listener's connected clients, by their kick handles, so that a listener a reload removes
//! can close its connections (`ListenerHandle::end_connections`) without the connections
//! watching anything more than their session's kick.
//!
//! A client joins once it is connected (after its CONNACK) and leaves when its connection
//! ends: one short lock each time, never on the path of a message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use midge_broker::Kick;
use midge_codec::ReasonCode;

/// The connected clients of one listener.
#[derive(Debug, Default)]
pub struct Roster {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set once the listener is closing its connections: a client that joins after that is
    /// kicked at once.
    closed: Option<ReasonCode>,
    /// The number the next member gets.
    next: u64,
    members: HashMap<u64, Arc<Kick>>,
}

impl Roster {
    /// Adds a connected client; it is in the roster until the returned [`Member`] is dropped
    /// (the end of its connection). On a closed roster the client is kicked at once.
    pub fn join(self: &Arc<Self>, kick: &Arc<Kick>) -> Member {
        let mut inner = self.lock();
        if let Some(reason) = inner.closed {
            kick.kick(reason);
        }
        inner.next += 1;
        let id = inner.next;
        inner.members.insert(id, Arc::clone(kick));
        Member { roster: Arc::clone(self), id }
    }

    /// Kicks every client with `reason`, and every one that joins from now on.
    pub fn close(&self, reason: ReasonCode) {
        let members: Vec<Arc<Kick>> = {
            let mut inner = self.lock();
            inner.closed = Some(reason);
            inner.members.values().cloned().collect()
        };
        for kick in members {
            kick.kick(reason);
        }
    }

    /// How many clients are in it.
    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// Whether it has no client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock, held for a map operation only: a panic cannot leave the map half changed.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client's place in its listener's [`Roster`], given up when dropped: bookkeeping only, the
/// connection's end itself happens where its task says so.
#[derive(Debug)]
pub struct Member {
    roster: Arc<Roster>,
    id: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.roster.lock().members.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use midge_broker::Signal;

    use super::*;

    fn kicked(kick: &Kick) -> Option<ReasonCode> {
        let waker = std::task::Waker::noop();
        match kick.poll_signal(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(Signal::Kicked(reason)) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn closing_kicks_members_and_late_joiners_but_not_those_that_left() {
        let roster = Arc::new(Roster::default());
        let (a, b, late) = (Arc::new(Kick::default()), Arc::new(Kick::default()), Arc::new(Kick::default()));
        let _a = roster.join(&a);
        drop(roster.join(&b));
        assert_eq!(roster.len(), 1);
        roster.close(ReasonCode::SERVER_SHUTTING_DOWN);
        assert_eq!(kicked(&a), Some(ReasonCode::SERVER_SHUTTING_DOWN));
        assert_eq!(kicked(&b), None, "b had left");
        let _late = roster.join(&late);
        assert_eq!(kicked(&late), Some(ReasonCode::SERVER_SHUTTING_DOWN));
    }
}
