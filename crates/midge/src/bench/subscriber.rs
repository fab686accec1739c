//! A subscriber of a traffic run: it decodes every message, checks its sequence number against
//! the publisher's previous one (gaps are losses until the missing message comes late, repeats
//! are duplicates), times a sample, and publishes its progress for the QoS 0 publishers'
//! windows. Nothing else per message.
//!
//! Over TCP a publisher's messages arrive in order (MQTT-4.6.0-2 and on), so a gap is a loss.
//! MQTT-SN publishers (`--sn-port`) send datagrams: one dropped and sent again arrives after
//! later ones, so each publisher's gaps are kept as ranges and a message filling one counts as
//! out of order, not as a duplicate, and no longer as lost.

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
    /// Messages skipped over (a later sequence number arrived first) and not arrived since.
    pub gaps: u64,
    /// Per publisher, the sequence numbers skipped over and not arrived since, as half-open
    /// ranges in order; at most [`MAX_GAP_RANGES`] each.
    missing: Vec<Vec<(u32, u32)>>,
    /// Messages that filled a gap: they arrived after later ones.
    pub out_of_order: u64,
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
        let missing = vec![Vec::new(); publishers];
        Self {
            count: 0,
            next,
            gaps: 0,
            missing,
            out_of_order: 0,
            duplicates: 0,
            foreign: 0,
            histogram,
            sample,
            until_sample: 1,
        }
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
        let missing = &mut self.missing[header.publisher as usize];
        match header.seq.cmp(next) {
            std::cmp::Ordering::Equal => *next += 1,
            std::cmp::Ordering::Greater => {
                self.gaps += u64::from(header.seq - *next);
                if missing.len() == MAX_GAP_RANGES {
                    // Its oldest gap stays lost: a message filling it would count as a duplicate.
                    missing.remove(0);
                }
                missing.push((*next, header.seq));
                *next = header.seq + 1;
            }
            std::cmp::Ordering::Less => {
                if fill_gap(missing, header.seq) {
                    self.gaps -= 1;
                    self.out_of_order += 1;
                } else {
                    self.duplicates += 1;
                }
                return;
            }
        }
        progress.advance(header.publisher as usize, before, u64::from(*next));
    }
}

impl Received {
    /// Whether message `seq` of `publisher` is still missing: skipped over and not arrived.
    pub fn is_missing(&self, publisher: usize, seq: u32) -> bool {
        let ranges = &self.missing[publisher];
        let index = ranges.partition_point(|&(_, end)| end <= seq);
        ranges.get(index).is_some_and(|&(start, _)| start <= seq)
    }
}

/// Gap ranges kept per publisher: a bound on the memory of a run with many losses.
const MAX_GAP_RANGES: usize = 4096;

/// Takes `seq` out of the gap `ranges` it falls in, if it does.
fn fill_gap(ranges: &mut Vec<(u32, u32)>, seq: u32) -> bool {
    let index = ranges.partition_point(|&(_, end)| end <= seq);
    let Some(&(start, end)) = ranges.get(index).filter(|&&(start, _)| start <= seq) else {
        return false;
    };
    match (start == seq, seq + 1 == end) {
        (true, true) => {
            ranges.remove(index);
        }
        (true, false) => ranges[index].0 = seq + 1,
        (false, true) => ranges[index].1 = seq,
        (false, false) => {
            ranges[index].1 = seq;
            ranges.insert(index + 1, (seq + 1, end));
        }
    }
    true
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
    fn a_late_message_fills_its_gap_wherever_it_falls() {
        let mut ranges = vec![(2, 6), (10, 11)];
        assert!(fill_gap(&mut ranges, 4));
        assert_eq!(ranges, [(2, 4), (5, 6), (10, 11)]);
        assert!(fill_gap(&mut ranges, 2) && fill_gap(&mut ranges, 5) && fill_gap(&mut ranges, 10));
        assert_eq!(ranges, [(3, 4)]);
        assert!(!fill_gap(&mut ranges, 4), "4 arrived already");
        assert!(!fill_gap(&mut ranges, 0), "never missing");
        assert!(fill_gap(&mut ranges, 3));
        assert!(ranges.is_empty());
    }

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
        // Publisher 0 skipped 2, which came later: out of order, and 3 came twice; publisher 1
        // skipped 1 to 4.
        assert_eq!((received.gaps, received.duplicates, received.foreign), (4, 1, 1));
        assert_eq!(received.out_of_order, 1);
        assert_eq!((slots[0].get(), slots[1].get()), (4, 6));
        // Only the messages received while measuring were timed.
        assert_eq!(received.histogram.len(), 5);
        // A message filling a gap counts once: again, it is a duplicate.
        received.record(&first.next(2), true, &progress);
        assert_eq!((received.gaps, received.duplicates, received.out_of_order), (4, 2, 1));
        // Publisher 1 waited for progress 4: crossing it left a wake-up permit.
        let permit = wakes[1].notify.notified();
        tokio::pin!(permit);
        assert!(permit.as_mut().enable(), "no wake-up for the publisher");
    }
}
