//! A subscriber of a traffic run: it decodes every message, checks its sequence number against
//! the publisher's previous one (gaps are losses, repeats duplicates), times a sample, and
//! publishes its progress for the QoS 0 publishers' windows. Nothing else per message.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hdrhistogram::Histogram;
use midge_client::{Client, Event};
use tokio::time::timeout;

use super::payload;
use super::shared::{Counter, Phase, Shared, Wake};
use super::traffic::{subscriber_options, CLOSE_TIMEOUT};
use super::Settings;

/// What one subscriber received.
#[derive(Debug)]
pub struct Received {
    /// Messages.
    pub count: u64,
    /// Per publisher, the next sequence number expected: every number below it arrived or was
    /// counted in `gaps`.
    pub next: Vec<u32>,
    /// Messages skipped over (a later sequence number arrived first).
    pub gaps: u64,
    /// Messages whose sequence number came again.
    pub duplicates: u64,
    /// Messages without a bench header.
    pub foreign: u64,
    /// Latency of the messages received in the window, µs.
    pub histogram: Histogram<u64>,
    /// One message in this many is timed: every one in `latency`, a sample elsewhere, where
    /// reading the clock for millions of messages a second would cost the bench more than
    /// the percentiles gain.
    sample: u32,
    /// Messages until the next one timed.
    until_sample: u32,
}

impl Received {
    /// Nothing received yet from `publishers` publishers; one message in `sample` timed.
    pub fn new(publishers: usize, histogram: Histogram<u64>, sample: u32) -> Self {
        let next = vec![0; publishers];
        Self { count: 0, next, gaps: 0, duplicates: 0, foreign: 0, histogram, sample, until_sample: 1 }
    }

    /// Accounts for one message; `progress` is this subscriber's view of [`Shared::progress`].
    fn record(&mut self, payload: &[u8], measuring: bool, progress: &Progress<'_>) {
        let Some(header) = payload::parse(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(next) = self.next.get_mut(header.publisher as usize) else {
            self.foreign += 1;
            return;
        };
        self.until_sample -= 1;
        if self.until_sample == 0 {
            self.until_sample = self.sample;
            if measuring {
                let micros = payload::now_ns().saturating_sub(header.sent_ns) / 1000;
                self.histogram.saturating_record(micros.max(1));
            }
        }
        let before = u64::from(*next);
        match header.seq.cmp(next) {
            std::cmp::Ordering::Equal => *next += 1,
            std::cmp::Ordering::Greater => {
                self.gaps += u64::from(header.seq - *next);
                *next = header.seq + 1;
            }
            std::cmp::Ordering::Less => {
                self.duplicates += 1;
                return;
            }
        }
        progress.advance(header.publisher as usize, before, u64::from(*next));
    }
}

/// A subscriber's slots of [`Shared::progress`] and the publishers' wake-up marks.
struct Progress<'a> {
    /// One slot per publisher heard, from `first`.
    slots: &'a [Counter],
    /// The first publisher heard.
    first: usize,
    /// Every publisher's mark.
    wakes: &'a [Wake],
}

impl Progress<'_> {
    /// Publishes that `publisher`'s next expected sequence number went from `before` to `after`,
    /// and wakes the publisher if that crossed its mark.
    fn advance(&self, publisher: usize, before: u64, after: u64) {
        let Some(slot) = publisher.checked_sub(self.first).and_then(|index| self.slots.get(index)) else {
            return;
        };
        slot.set(after);
        let wake = &self.wakes[publisher];
        let mark = wake.at.load(Ordering::Relaxed);
        if before < mark && after >= mark {
            wake.notify.notify_one();
        }
    }
}

/// A subscriber: counts, checks and times every message until the run is done. It hears the
/// publishers `heard`; `slot` is its first progress slot.
pub async fn receive(
    mut client: Client,
    index: usize,
    (heard, slot): (Range<usize>, usize),
    mut received: Received,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
) -> Received {
    {
        let done = shared.phases.reached(Phase::Done);
        tokio::pin!(done);
        let counter = &shared.delivered[index];
        let slots = &shared.progress[slot..slot + heard.len()];
        let progress = Progress { slots, first: heard.start, wakes: &shared.wakes };
        loop {
            let event = tokio::select! {
                biased;
                event = client.poll() => event,
                () = &mut done => break,
            };
            match event {
                Ok(Event::Message(message)) => {
                    received.count += 1;
                    counter.set(received.count);
                    received.record(&message.payload, shared.measuring.load(Ordering::Relaxed), &progress);
                }
                Ok(_) => {}
                Err(error) => {
                    shared.error(format!("subscriber {index}: {error}"));
                    break;
                }
            }
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, client.disconnect()).await;
    if settings.persistent {
        // Remove the session: a clean connection under the same client id ends it.
        let mut options = subscriber_options(&settings, index);
        options.clean_start = true;
        options.properties.session_expiry_interval = None;
        let _ = timeout(CLOSE_TIMEOUT, async {
            if let Ok(mut client) = Client::connect(options).await {
                let _ = client.disconnect().await;
            }
        })
        .await;
    }
    received
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::bench::payload::PayloadWriter;

    #[test]
    fn gaps_and_repeats_are_counted_per_publisher_and_progress_published() {
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 2).unwrap();
        let mut received = Received::new(2, histogram, 1);
        let slots = [Counter::default(), Counter::default()];
        let wakes = [Wake::default(), Wake::default()];
        wakes[1].at.store(4, Ordering::SeqCst);
        let progress = Progress { slots: &slots, first: 0, wakes: &wakes };
        let mut first = PayloadWriter::new(0, 64);
        let mut second = PayloadWriter::new(1, 64);
        for seq in [0, 1, 3, 3, 2] {
            received.record(&first.next(seq), true, &progress);
        }
        for seq in [0, 5] {
            received.record(&second.next(seq), false, &progress);
        }
        received.record(b"not from the bench", true, &progress);
        assert_eq!(received.next, [4, 6]);
        // Publisher 0 skipped 2 (it came later: a repeat); publisher 1 skipped 1 to 4.
        assert_eq!((received.gaps, received.duplicates, received.foreign), (1 + 4, 2, 1));
        assert_eq!((slots[0].get(), slots[1].get()), (4, 6));
        // Only the messages received while measuring were timed.
        assert_eq!(received.histogram.len(), 5);
        // Publisher 1 waited for progress 4: crossing it left a wake-up permit.
        let permit = wakes[1].notify.notified();
        tokio::pin!(permit);
        assert!(permit.as_mut().enable(), "no wake-up for the publisher");
    }
}
