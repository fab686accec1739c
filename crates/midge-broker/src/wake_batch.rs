//! Coalesced wake-ups: a connection that routes a read batch of messages wakes each subscriber
//! it reached once, after the batch, instead of once per message (DESIGN.md, "Enqueue"; NATS's
//! `flushClients`, PEERS.md §2).
//!
//! The server opens a [`WakeBatch`] around the synchronous processing of one read; while it is
//! open on this thread, [`wake`] records the session instead of waking it, and dropping the
//! batch wakes every recorded session. Outside a batch, [`wake`] wakes at once.

use std::cell::RefCell;
use std::sync::Arc;

use crate::session::Session;

thread_local! {
    /// Sessions to wake when the open batch ends; `None` when no batch is open.
    static DEFERRED: RefCell<Option<Vec<Arc<Session>>>> = const { RefCell::new(None) };
}

/// Defers wake-ups on this thread until dropped. Not `Send`: it must end on the thread that
/// opened it, with no `.await` in between.
#[derive(Debug)]
pub struct WakeBatch {
    /// Whether this guard opened the batch (an inner guard leaves it to the outer one).
    opened: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl WakeBatch {
    /// Opens a batch on this thread (or joins the one already open).
    pub fn begin() -> Self {
        let opened = DEFERRED.with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            if deferred.is_some() {
                return false;
            }
            *deferred = Some(Vec::new());
            true
        });
        Self { opened, _not_send: std::marker::PhantomData }
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.opened {
            return;
        }
        let sessions = DEFERRED.with(|deferred| deferred.borrow_mut().take()).unwrap_or_default();
        for session in sessions {
            session.wake();
        }
    }
}

/// Wakes `session`'s connection now, or at the end of this thread's open batch.
pub fn wake(session: &Arc<Session>) {
    let deferred = DEFERRED.with(|deferred| match deferred.borrow_mut().as_mut() {
        Some(list) => {
            list.push(Arc::clone(session));
            true
        }
        None => false,
    });
    if !deferred {
        session.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_codec::ProtocolVersion;

    #[test]
    fn wake_ups_inside_a_batch_wait_for_its_end() {
        let session = Arc::new(Session::new(1, "s".into(), ProtocolVersion::V311, 0));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let woken = |session: &Arc<Session>| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(1), session.woken()).await.is_ok()
            })
        };
        {
            let _batch = WakeBatch::begin();
            let _inner = WakeBatch::begin();
            wake(&session);
            drop(_inner);
            assert!(!woken(&session), "not before the outer batch ends");
        }
        assert!(woken(&session), "woken when the batch ends");
        wake(&session);
        assert!(woken(&session), "outside a batch: at once");
    }
}
