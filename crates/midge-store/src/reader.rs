//! Reading a session's queue while the writer runs (docs/decisions/0006): an offline session's
//! deliveries live in the store, and its client reads them back in batches when it returns.
//!
//! A [`Reader`] holds its own handles to the engine's `deliveries` and `messages` tables, so it
//! works beside the writer thread, which owns the store. It sees what the writer has committed
//! and nothing of what is still pending: whoever reads a session's queue waits first until the
//! ticket of that session's last write is committed ([`crate::WriterHandle::committed`]). Each
//! commit is one engine batch, so a read never sees half of one.
//!
//! Reads block on the disk when the rows are not cached: call them off the async worker threads
//! (`spawn_blocking`).

use std::path::PathBuf;

use crate::disk::DiskStore;
use crate::error::StoreError;
use crate::layout::{self, Table};
use crate::records::{DeliveryRecord, MessageId, MessageRecord};

/// Read access to queued deliveries and their messages, beside the writer.
#[derive(Clone)]
pub struct Reader {
    engine_dir: PathBuf,
    deliveries: fjall::Keyspace,
    messages: fjall::Keyspace,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("engine_dir", &self.engine_dir).finish_non_exhaustive()
    }
}

impl DiskStore {
    /// A reader of this store's committed queues, to keep once the store is handed to the
    /// writer.
    pub fn reader(&self) -> Reader {
        Reader {
            engine_dir: self.engine_dir().to_path_buf(),
            deliveries: self.keyspace(Table::Deliveries).clone(),
            messages: self.keyspace(Table::Messages).clone(),
        }
    }
}

impl Reader {
    /// Up to `limit` deliveries of `client_id` from `from_seq` on, in seq order.
    pub fn deliveries(
        &self,
        client_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeliveryRecord)>, StoreError> {
        let prefix = layout::client_prefix(client_id);
        let start = layout::delivery_key(client_id, from_seq);
        let end = layout::delivery_key(client_id, u64::MAX);
        let mut rows = Vec::with_capacity(limit.min(1024));
        for guard in self.deliveries.range(start..=end).take(limit) {
            let (key, value) = guard.into_inner().map_err(|e| self.read_error(e))?;
            let seq = layout::be_u64(&key[prefix.len()..]).map_err(|detail| self.corrupt("deliveries", detail))?;
            let record = layout::decode_value(&value).map_err(|detail| self.corrupt("deliveries", detail))?;
            rows.push((seq, record));
        }
        Ok(rows)
    }

    /// The message `id`, if it is stored.
    pub fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let Some(value) = self.messages.get(layout::message_key(id.0)).map_err(|e| self.read_error(e))? else {
            return Ok(None);
        };
        layout::decode_value(&value).map(Some).map_err(|detail| self.corrupt("messages", detail))
    }

    fn read_error(&self, e: fjall::Error) -> StoreError {
        match e {
            fjall::Error::Io(error) => StoreError::Io { path: self.engine_dir.clone(), error },
            e => StoreError::Corrupt { path: self.engine_dir.clone(), detail: format!("reading failed: {e}") },
        }
    }

    fn corrupt(&self, table: &str, detail: String) -> StoreError {
        StoreError::Corrupt { path: self.engine_dir.clone(), detail: format!("a row of {table}: {detail}") }
    }
}
