//! Reading a spilled session's queue back from the store (decision 0006): the connection asks
//! for a batch when it runs low, the server reads it off its async workers once the store has
//! committed what the batch needs, and the connection appends it to the session's queue.
//!
//! Split in three so that the core never blocks: [`ClientConnection::read_back`] (under the
//! session's lock, instant), [`ReadBack::read`] (the disk, on a blocking thread), and
//! [`ClientConnection::append_read_back`] (under the lock again).

use std::sync::Arc;

use super::state::ClientConnection;
use crate::ports::durability::{QueueReadError, QueueSource, QueuedRecord, Ticket};
use crate::session::{ReadRequest, Session};

/// A batch of a session's queue to read from the store.
#[derive(Debug)]
pub struct ReadBack {
    session: Arc<Session>,
    conn_id: u64,
    source: Arc<dyn QueueSource>,
    request: ReadRequest,
}

/// A batch read back, to hand to [`ClientConnection::append_read_back`].
#[derive(Debug)]
pub struct ReadBackBatch {
    conn_id: u64,
    request: ReadRequest,
    records: Result<Vec<QueuedRecord>, QueueReadError>,
}

impl ReadBack {
    /// The store ticket to wait for before [`read`](Self::read): the reader sees committed
    /// writes only, and the batch's deliveries were written up to this one.
    pub fn ticket(&self) -> Ticket {
        self.request.ticket
    }

    /// Reads the batch. Blocks on the disk: call it off the async worker threads.
    pub fn read(self) -> ReadBackBatch {
        let records = self.source.read_queue(self.session.client_id(), self.request.from_seq, self.request.limit);
        ReadBackBatch { conn_id: self.conn_id, request: self.request, records }
    }
}

impl ClientConnection {
    /// The next batch of the session's queue to read back from the store, when the session is
    /// spilled and fewer than half a batch of its messages wait in memory; `None` otherwise,
    /// or while a read is under way. Lock-free when the session is not spilled.
    pub fn read_back(&self) -> Option<ReadBack> {
        if !self.session.is_spilled() {
            return None;
        }
        let source = Arc::clone(self.broker.journal()?.queues()?);
        let request = self.session.read_back_request(self.conn_id)?;
        Some(ReadBack { session: Arc::clone(&self.session), conn_id: self.conn_id, source, request })
    }

    /// Appends a batch read back to the session's queue (drain it next). Returns how many
    /// messages it queued; a read that failed is given up (the next request retries it) and
    /// its error returned, for the server to end the connection with.
    pub fn append_read_back(&mut self, batch: ReadBackBatch) -> Result<usize, QueueReadError> {
        let records = match batch.records {
            Ok(records) => records,
            Err(error) => {
                self.session.read_back_failed(batch.conn_id);
                return Err(error);
            }
        };
        let Some(journal) = self.broker.journal() else { return Ok(0) };
        let outcome = self.session.append_read_back(batch.conn_id, batch.request, records, journal);
        if outcome.dropped > 0 {
            self.broker.stats().dropped(crate::stats::DropReason::ReadBack, outcome.dropped as u64);
        }
        Ok(outcome.loaded)
    }
}
