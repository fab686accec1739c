//! What holds a client's reads back besides pacing for a full subscriber: its inbound rate
//! (`max_inbound_messages_per_second`, `max_inbound_bytes_per_second`) and the store's writer
//! being behind. Like pacing, the back-pressure goes to the client through TCP: it is slowed,
//! never disconnected for it.
//!
//! The message rate is exact: a read's PUBLISHes are handled while the client has tokens, the
//! rest wait in the read buffer (at most one read) until it has more. The byte rate is charged
//! per read, into debt: a client may go over it by one read (at most 64 KiB) and then waits
//! until it is back in credit, so it gets its rate on average.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use midge_broker::{Broker, Limits};
use midge_store::WriterHandle;
use tokio::time::Sleep;

use super::pacing::HeldUp;
use crate::rate::TokenBucket;

/// The wait for the store's writer to catch up.
type PendingCatchUp = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection's read gates, boxed by the driver and present only once one is in use: from
/// the start when a rate is limited, else from the first time the store or pacing held the
/// client back.
#[derive(Default)]
pub(super) struct ReadGates {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// Waiting for tokens.
    rate_wait: Option<Pin<Box<Sleep>>>,
    /// Waiting for the store's writer to catch up.
    store_wait: Option<PendingCatchUp>,
    /// How long pacing for full subscribers has held the client up, carried between pauses
    /// (`pacing.rs`): kept here so that an idle connection pays one pointer for all of these.
    pub(super) held_up: Option<Box<HeldUp>>,
}

impl ReadGates {
    /// The gates `limits` ask for from the start, `None` when no rate is limited.
    pub(super) fn for_limits(limits: &Limits, now: Instant) -> Option<Box<Self>> {
        let messages = u64::from(limits.max_inbound_messages_per_second);
        let bytes = limits.max_inbound_bytes_per_second;
        if messages == 0 && bytes == 0 {
            return None;
        }
        Some(Box::new(Self {
            messages: (messages > 0).then(|| TokenBucket::new(messages, now)),
            bytes: (bytes > 0).then(|| TokenBucket::new(bytes, now)),
            ..Self::default()
        }))
    }

    /// PUBLISHes the client may send now (`None`: no message rate): the frames after that many
    /// stay buffered.
    pub(super) fn budget(gates: &mut Option<Box<Self>>) -> Option<u64> {
        let bucket = gates.as_mut()?.messages.as_mut()?;
        Some(bucket.available(Instant::now()))
    }

    /// Takes a batch's `publishes` and `bytes` read from the client, and holds it back when it
    /// has `exhausted` its messages or gone over its bytes (counted and logged as the
    /// `inbound_rate` limit), or when its acknowledgements wait on a store writer that is
    /// behind.
    pub(super) fn after_frames(
        gates: &mut Option<Box<Self>>,
        publishes: u64,
        bytes: u64,
        exhausted: bool,
        store_behind: Option<&WriterHandle>,
        broker: &Broker,
        client_id: &str,
    ) {
        if let Some(writer) = store_behind {
            let writer = writer.clone();
            gates.get_or_insert_with(Box::default).store_wait = Some(Box::pin(async move { writer.caught_up().await }));
        }
        let Some(this) = gates.as_mut() else { return };
        let now = Instant::now();
        let by_messages = this.messages.as_mut().and_then(|bucket| {
            bucket.take(publishes, now);
            // Out of tokens: wait for a twentieth of a second's worth, not for each one.
            exhausted.then(|| bucket.wait_for(bucket.rate_per_second().div_ceil(20), now)).flatten()
        });
        let by_bytes = this.bytes.as_mut().and_then(|bucket| bucket.take(bytes, now));
        let Some(wait) = by_messages.max(by_bytes) else { return };
        if let Some(report) = broker.stats().limits.inbound_rate.hit(now) {
            tracing::warn!(
                who = client_id,
                paced = report.since_last,
                total = report.total,
                "limit reached: max_inbound_messages_per_second or max_inbound_bytes_per_second: client paced"
            );
        }
        this.rate_wait = Some(Box::pin(tokio::time::sleep(wait)));
    }

    /// Whether the client is held back now.
    pub(super) fn is_closed(gates: &Option<Box<Self>>) -> bool {
        gates.as_ref().is_some_and(|this| this.rate_wait.is_some() || this.store_wait.is_some())
    }

    /// Ready when the client, held back, may be read again.
    pub(super) fn poll_open(gates: &mut Option<Box<Self>>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(this) = gates.as_mut() else { return Poll::Pending };
        if this.rate_wait.is_none() && this.store_wait.is_none() {
            return Poll::Pending;
        }
        if let Some(Poll::Ready(())) = this.rate_wait.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            this.rate_wait = None;
        }
        if let Some(Poll::Ready(())) = this.store_wait.as_mut().map(|wait| wait.as_mut().poll(cx)) {
            this.store_wait = None;
        }
        if this.rate_wait.is_none() && this.store_wait.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
