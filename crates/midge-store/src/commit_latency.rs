//! How long the writer's commits take, as a fixed-bucket histogram (`/metrics` exposes it as
//! `midge_store_commit_seconds`). Recorded by the writer thread only, under the lock it already
//! takes to publish its status: nothing is added on the connections' path.

/// The buckets' upper bounds, in microseconds: from a commit the page cache absorbs (100 µs) to
/// a stalled disk (2.5 s). An fsync on an SSD lands around 1-10 ms, on a spinning disk around
/// 10-50 ms, so the middle buckets are the close ones.
pub const COMMIT_BUCKETS_MICROS: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

/// Commits counted by how long each took: `counts[i]` is the commits that took at most
/// `COMMIT_BUCKETS_MICROS[i]` and more than the bound before; the last count is those above
/// every bound. Not cumulative: the exposition sums them as it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitLatency {
    /// Per bucket, then above every bound.
    pub counts: [u64; COMMIT_BUCKETS_MICROS.len() + 1],
}

impl CommitLatency {
    /// Counts one commit that took `micros`.
    pub fn record(&mut self, micros: u64) {
        let bucket = COMMIT_BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket] += 1;
    }

    /// Commits counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let mut latency = CommitLatency::default();
        latency.record(0);
        latency.record(100);
        latency.record(101);
        latency.record(2_500_000);
        latency.record(2_500_001);
        assert_eq!(latency.counts[0], 2);
        assert_eq!(latency.counts[1], 1);
        assert_eq!(latency.counts[COMMIT_BUCKETS_MICROS.len() - 1], 1);
        assert_eq!(latency.counts[COMMIT_BUCKETS_MICROS.len()], 1);
        assert_eq!(latency.total(), 5);
    }
}
