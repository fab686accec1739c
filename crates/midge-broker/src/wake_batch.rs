//! Coalesced wake-ups: a connection that routes a read batch of messages wakes each subscriber
//! it reached once, after the batch, instead of once per message (DESIGN.md, "Enqueue"; NATS's
//! `flushClients`, PEERS.md §2).
//!
//! The server opens a [`WakeBatch`] around the synchronous processing of one read; while it is
//! open on this thread, [`wake`] records the session instead of waking it, and dropping the
//! batch wakes every recorded session. Outside a batch, [`wake`] wakes at once.

use std::cell::RefCell;
use std::sync::Arc;

use crate::session::Kick;

thread_local! {
    /// Connections to wake when the open batch ends; `None` when no batch is open.
    static DEFERRED: RefCell<Option<Vec<Arc<Kick>>>> = const { RefCell::new(None) };
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
        let connections = DEFERRED.with(|deferred| deferred.borrow_mut().take()).unwrap_or_default();
        for kick in connections {
            kick.ring();
        }
    }
}

/// Wakes the connection behind `kick` now, or at the end of this thread's open batch.
pub fn wake(kick: Arc<Kick>) {
    let now = DEFERRED.with(|deferred| match deferred.borrow_mut().as_mut() {
        Some(list) => {
            list.push(kick);
            None
        }
        None => Some(kick),
    });
    if let Some(kick) = now {
        kick.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Signal;

    #[test]
    fn wake_ups_inside_a_batch_wait_for_its_end() {
        let kick = Arc::new(Kick::default());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut woken = || kick.poll_signal(&mut cx) == std::task::Poll::Ready(Signal::Work);
        {
            let _batch = WakeBatch::begin();
            let _inner = WakeBatch::begin();
            wake(Arc::clone(&kick));
            drop(_inner);
            assert!(!woken(), "not before the outer batch ends");
        }
        assert!(woken(), "woken when the batch ends");
        wake(Arc::clone(&kick));
        assert!(woken(), "outside a batch: at once");
    }
}
