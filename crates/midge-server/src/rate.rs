//! Token buckets: a rate with bursts of up to one second's worth, for the per-client inbound
//! limits and the per-address connection rate.

use std::time::{Duration, Instant};

/// A token bucket that may go into debt: a cost is always taken, and the bucket says how long
/// its owner must wait before it is back in credit. Taking whole reads (many packets at once)
/// then paces a client to its rate on average, however its packets are grouped.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added a second, and the most it holds (a burst of one second's worth).
    rate: f64,
    /// Tokens now; below zero while in debt.
    level: f64,
    /// When `level` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens a second (`rate` > 0).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        Self { rate, level: rate, updated: now }
    }

    /// Takes `cost` tokens at `now`, into debt if need be. Returns how long until the bucket is
    /// out of debt again, `None` when it is not in debt.
    pub fn take(&mut self, cost: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.level -= cost as f64;
        self.debt()
    }

    /// Gives back `cost` tokens taken at `now` for something that did not happen after all.
    pub fn take_back(&mut self, cost: u64, now: Instant) {
        self.refill(now);
        self.level = (self.level + cost as f64).min(self.rate);
    }

    /// Whole tokens available at `now` (0 in debt).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.level < 1.0 {
            0
        } else {
            self.level as u64
        }
    }

    /// How long until the bucket holds `tokens` at `now`, `None` when it already does.
    pub fn wait_for(&mut self, tokens: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let missing = tokens as f64 - self.level;
        (missing > 0.0).then(|| Duration::from_secs_f64(missing / self.rate))
    }

    /// Tokens added a second.
    pub fn rate_per_second(&self) -> u64 {
        self.rate as u64
    }

    /// How long until the bucket is out of debt at `now`, `None` when it is not in debt.
    pub fn debt_at(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.debt()
    }

    /// Whether the bucket is full at `now`: a bucket that is can be forgotten, since a new one
    /// would be the same.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.rate
    }

    fn debt(&self) -> Option<Duration> {
        (self.level < 0.0).then(|| Duration::from_secs_f64(-self.level / self.rate))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_seconds_worth_then_the_rate() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut bucket = TokenBucket::new(100, start);
        assert_eq!(bucket.take(100, at(0)), None, "a full second's burst");
        let wait = bucket.take(50, at(0)).expect("in debt");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.debt_at(at(250)).is_some());
        assert_eq!(bucket.debt_at(at(500)), None);
        assert!(!bucket.is_full(at(500)));
        assert!(bucket.is_full(at(1500)));
        // Never more than a second's worth, however long it rested.
        assert_eq!(bucket.take(100, at(60_000)), None);
        assert!(bucket.take(1, at(60_000)).is_some());
    }

    #[test]
    fn what_is_available_and_how_long_until_more_is() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        assert_eq!(bucket.available(start), 100);
        bucket.take(95, start);
        assert_eq!(bucket.available(start), 5);
        assert_eq!(bucket.wait_for(5, start), None);
        assert_eq!(bucket.wait_for(10, start), Some(Duration::from_millis(50)));
        assert_eq!(bucket.available(start + Duration::from_millis(50)), 10);
    }

    #[test]
    fn on_average_a_client_gets_its_rate_whatever_its_reads_hold() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, start);
        let mut now = start;
        let mut taken = 0u64;
        while now < start + Duration::from_secs(10) {
            taken += 37;
            if let Some(wait) = bucket.take(37, now) {
                now += wait;
            }
        }
        // 10 s at 1,000 a second, plus the first burst.
        assert!((10_900..=11_100).contains(&taken), "{taken}");
    }
}
