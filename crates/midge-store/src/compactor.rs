//! Compacts the tables that a steady load fills with deleted records.
//!
//! Every delivery and message record is written, then deleted once delivered. fjall evicts a
//! delete's tombstone, and the record it hides, only when compaction carries them into its last
//! level, and with keys that only grow that rarely happens on its own: under a sustained
//! persistent load (`bench/persistence.sh`) the store grew by about 0.7 MiB/s for as long as
//! the load lasted (10 minutes measured) while holding nothing live. This thread watches the
//! size of those tables and compacts one fully once it has doubled since its last compaction
//! (and is past [`MIN_BYTES`]): the store stays within about twice its live size plus that
//! floor, and each byte is rewritten at most once per doubling.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A table is not compacted below this size: small tables cost little and compaction has a
/// fixed cost.
pub const MIN_BYTES: u64 = 32 * 1024 * 1024;
/// How often the tables' sizes are looked at.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The compaction thread; stopped and joined when dropped.
#[derive(Debug)]
pub struct Compactor {
    stop: Arc<AtomicBool>,
    /// Compactions done, for tests and metrics.
    compactions: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    /// Starts watching `tables` with the default floor and interval.
    pub fn start(tables: Vec<fjall::Keyspace>) -> std::io::Result<Self> {
        Self::start_with(tables, MIN_BYTES, CHECK_INTERVAL)
    }

    /// Starts watching `tables`, compacting one past `min_bytes` and twice its last compacted
    /// size, looking every `interval`.
    pub fn start_with(tables: Vec<fjall::Keyspace>, min_bytes: u64, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let compactions = Arc::new(AtomicU64::new(0));
        let (stopped, counted) = (Arc::clone(&stop), Arc::clone(&compactions));
        let thread = std::thread::Builder::new()
            .name("midge-store-compactor".into())
            .spawn(move || run(&tables, min_bytes, interval, &stopped, &counted))?;
        Ok(Self { stop, compactions, thread: Some(thread) })
    }

    /// Compactions done so far.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Acquire)
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(tables: &[fjall::Keyspace], min_bytes: u64, interval: Duration, stop: &AtomicBool, compactions: &AtomicU64) {
    // The size each table had after its last compaction.
    let mut baseline = vec![0u64; tables.len()];
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(interval);
        for (table, baseline) in tables.iter().zip(baseline.iter_mut()) {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let size = table.disk_space();
            if !should_compact(size, *baseline, min_bytes) {
                continue;
            }
            match table.major_compact() {
                Ok(()) => {
                    compactions.fetch_add(1, Ordering::AcqRel);
                    *baseline = table.disk_space();
                    tracing::debug!(table = ?table.name(), before = size, after = *baseline, "store table compacted");
                }
                Err(error) => {
                    // Not fatal: the table keeps growing, and the next check tries again.
                    tracing::warn!(table = ?table.name(), %error, "store compaction failed");
                    *baseline = size;
                }
            }
        }
    }
}

/// Whether a table of `size` bytes, `baseline` after its last compaction, is worth compacting:
/// past the floor, and doubled since.
fn should_compact(size: u64, baseline: u64, min_bytes: u64) -> bool {
    size >= min_bytes.max(baseline.saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Records kept live: their keys are below the deleted ones' and never deleted.
    const LIVE: u64 = 1_000;
    /// Records written and deleted after them, each `LAG` records later, as deliveries are.
    const DELETED: u64 = 20_000;
    const LAG: u64 = 4_000;

    fn fill(table: &fjall::Keyspace) {
        let value = vec![7u8; 1024];
        for key in 0..LIVE {
            table.insert(key.to_be_bytes(), value.as_slice()).expect("insert");
        }
        for key in LIVE..LIVE + DELETED {
            table.insert(key.to_be_bytes(), value.as_slice()).expect("insert");
            if key >= LIVE + LAG {
                table.remove((key - LAG).to_be_bytes()).expect("remove");
            }
        }
        for key in LIVE + DELETED - LAG..LIVE + DELETED {
            table.remove(key.to_be_bytes()).expect("remove");
        }
        table.rotate_memtable_and_wait().expect("flush");
    }

    /// Waits, up to `limit`, for `done` to hold.
    fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20)); // the compactor signals nothing to wait on
        }
        true
    }

    #[test]
    fn compacts_a_table_past_its_floor_and_keeps_its_live_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fjall::Database::builder(dir.path()).open().expect("open");
        let table = db
            .keyspace("deliveries", || fjall::KeyspaceCreateOptions::default().max_memtable_size(1 << 20))
            .expect("keyspace");
        fill(&table);
        let compactor = Compactor::start_with(vec![table.clone()], 1 << 20, Duration::from_millis(20)).expect("start");
        assert!(wait_for(Duration::from_secs(20), || compactor.compactions() > 0), "never compacted");
        for key in 0..LIVE {
            assert!(table.get(key.to_be_bytes()).expect("get").is_some(), "live record {key} lost");
        }
        assert_eq!(table.len().expect("len"), LIVE as usize, "deleted records are gone, live ones stay");
        drop(compactor); // stops and joins its thread
    }

    #[test]
    fn compacts_past_the_floor_once_the_table_has_doubled() {
        let mib = 1 << 20;
        assert!(!should_compact(31 * mib, 0, MIN_BYTES), "under the floor");
        assert!(should_compact(32 * mib, 0, MIN_BYTES));
        assert!(!should_compact(150 * mib, 100 * mib, MIN_BYTES), "not doubled since the last compaction");
        assert!(should_compact(200 * mib, 100 * mib, MIN_BYTES));
    }
}
