//! What a connection is told from outside its task: that its session's queue has work, and
//! that it must close, and why (takeover, shutdown, keep alive, administrative action).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use midge_codec::ReasonCode;

use crate::doorbell::Doorbell;

/// A connection's wake-up and close signal.
///
/// Both ring one [`Doorbell`] that the connection's driver polls. It belongs to the connection,
/// not to the session: a connection taking a session over gets its own, so the one it replaces
/// can never take a wake-up meant for it.
#[derive(Debug, Default)]
pub struct Kick {
    bell: Doorbell,
    /// The reason to close; 0 (never a close reason) while the connection may stay.
    reason: AtomicU8,
    /// One and a half times the keep alive, in milliseconds; 0 without a keep alive.
    keep_alive_limit_ms: u32,
    /// When the client was last heard from, on [`crate::keep_alive::KeepAlives::millis`]'s
    /// clock. Written by the connection per read batch, read by the keep alive sweep.
    heard_ms: AtomicU64,
}

/// What a connection's [`Kick`] says when it rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The session's queue may have work for the connection.
    Work,
    /// The connection must close with this reason.
    Kicked(ReasonCode),
}

impl Kick {
    /// A connection's kick with a keep alive of `keep_alive_secs` (0: none). MQTT-3.1.2-24:
    /// one and a half times the keep alive without a packet closes the connection.
    pub(crate) fn with_keep_alive(keep_alive_secs: u16) -> Self {
        Self { keep_alive_limit_ms: u32::from(keep_alive_secs) * 1500, ..Self::default() }
    }

    /// Records that the client was heard from at `millis` (see [`crate::keep_alive`]).
    pub(crate) fn heard(&self, millis: u64) {
        self.heard_ms.store(millis, Ordering::Relaxed);
    }

    /// Stops the keep alive until the client is [`heard`](Self::heard) again: its deadline is
    /// never reached meanwhile.
    pub(crate) fn pause_keep_alive(&self) {
        self.heard_ms.store(u64::MAX, Ordering::Relaxed);
    }

    /// One and a half times the keep alive, in milliseconds; 0 without one.
    pub(crate) fn keep_alive_limit_ms(&self) -> u32 {
        self.keep_alive_limit_ms
    }

    /// When the keep alive runs out unless the client is heard from again.
    pub(crate) fn deadline_ms(&self) -> u64 {
        self.heard_ms.load(Ordering::Relaxed).saturating_add(u64::from(self.keep_alive_limit_ms))
    }

    /// Whether the connection was told to close.
    pub fn is_kicked(&self) -> bool {
        self.reason.load(Ordering::Acquire) != 0
    }

    /// Asks the connection to close with `reason`.
    pub fn kick(&self, reason: ReasonCode) {
        self.reason.store(reason.0, Ordering::Release);
        self.bell.ring();
    }

    /// Tells the connection that its session's queue may have work.
    pub(crate) fn ring(&self) {
        self.bell.ring();
    }

    /// `Ready` once rung since the last `Ready` (a kick wins over work: work no longer matters
    /// to a closing connection); otherwise registers `cx` to be woken by the next ring.
    pub fn poll_signal(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Signal> {
        self.bell.poll_rung(cx).map(|()| match self.reason.load(Ordering::Acquire) {
            0 => Signal::Work,
            reason => Signal::Kicked(ReasonCode(reason)),
        })
    }

    /// Waits until kicked and returns the reason.
    ///
    /// # Cancel safety
    /// Cancel safe: the reason stays set once kicked.
    pub async fn kicked(&self) -> ReasonCode {
        loop {
            if let Signal::Kicked(reason) = std::future::poll_fn(|cx| self.poll_signal(cx)).await {
                return reason;
            }
        }
    }
}
