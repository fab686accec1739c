//! An in-memory store, for tests of the broker and of this crate.

use std::collections::BTreeMap;
use std::path::Path;

use crate::batch::Batch;
use crate::error::StoreError;
use crate::layout::{self, Read, RowVisitor, Table};
use crate::snapshot::Snapshot;
use crate::store::{Flush, Store};

/// A [`Store`] that keeps everything in memory and loses it when dropped.
///
/// It encodes keys and values exactly as the disk store does and shares its planning and
/// loading code, so tests on it cover the record layout too.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Encoded key → encoded value, per table.
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Commits applied so far.
    commits: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many commits were applied: lets tests see group commit at work.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

impl Read for MemoryStore {
    fn keys_with_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(rows) = self.tables.get(&table) else { return Ok(Vec::new()) };
        Ok(rows.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }

    fn for_each(&self, table: Table, f: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        for (k, v) in self.tables.get(&table).into_iter().flatten() {
            f(k, v)?;
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn commit(&mut self, batch: &Batch, _flush: Flush) -> Result<(), StoreError> {
        for ((table, key), value) in layout::plan(batch, self)? {
            let rows = self.tables.entry(table).or_default();
            match value {
                Some(value) => rows.insert(key, value),
                None => rows.remove(&key),
            };
        }
        self.commits += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        Snapshot::read(self, Path::new("<memory>"))
    }
}
