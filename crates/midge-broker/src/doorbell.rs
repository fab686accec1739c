//! A wake-up for one waiting task that is polled, not awaited: the connection driver checks
//! it from its own hand-written poll, so an idle connection keeps no per-signal future.
//!
//! `tokio::sync::Notify` would need a `Notified` future (64 bytes) alive in every idle
//! connection for each signal it waits on; a doorbell costs its two words in the session and
//! nothing in the waiter. It has one waiter at a time (the attached connection); a ring with no
//! one waiting is kept until the next poll, like `Notify::notify_one`'s permit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// A single-waiter wake-up signal that remembers a ring until it is seen.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

impl Doorbell {
    /// Rings: the waiter's next poll (or the current one, woken now) sees it.
    pub fn ring(&self) {
        // Release: what the ringer wrote before ringing is visible to the poll that sees it.
        self.rung.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// `Ready` once per ring; otherwise registers `cx`'s waker to be woken by the next ring.
    pub fn poll_rung(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.rung.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A ring between the check and the registration woke nobody: look again.
        if self.rung.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// Counts the wakes it receives.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ring_before_the_poll_is_kept_and_seen_once() {
        let bell = Doorbell::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        bell.ring();
        assert_eq!(bell.poll_rung(&mut cx), Poll::Ready(()));
        assert_eq!(bell.poll_rung(&mut cx), Poll::Pending, "a ring is seen once");
    }

    #[test]
    fn a_ring_after_the_poll_wakes_the_waiter() {
        let bell = Doorbell::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(bell.poll_rung(&mut cx), Poll::Pending);
        bell.ring();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the registered waker is woken");
        assert_eq!(bell.poll_rung(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn rings_across_threads_are_not_lost() {
        let bell = Arc::new(Doorbell::default());
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        for _ in 0..1_000 {
            let ringer = Arc::clone(&bell);
            let thread = std::thread::spawn(move || ringer.ring());
            runtime.block_on(std::future::poll_fn(|cx| bell.poll_rung(cx)));
            thread.join().expect("ringer");
        }
    }
}
