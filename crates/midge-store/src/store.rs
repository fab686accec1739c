//! The `Store` trait: what the writer and recovery need from a storage engine.

use crate::batch::Batch;
use crate::error::StoreError;
use crate::snapshot::Snapshot;

/// How far a commit pushes its bytes before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Handed to the operating system (`write`): survives the process being killed (`kill -9`,
    /// a panic, an OOM kill), not a power cut or a kernel crash.
    Os,
    /// Handed to the operating system and `fdatasync`ed: survives a power cut too, as far as the
    /// device honours flushes.
    Disk,
}

/// A durable store of the broker's state.
///
/// One thread owns it (the [`Writer`](crate::Writer)'s, after recovery has called
/// [`load`](Store::load)), so methods take `&mut self` and implementations need no locking.
pub trait Store: Send + 'static {
    /// Applies every operation of `batch` in one atomic transaction, pushed as far as `flush`
    /// says: after a crash, either all of it or none of it is there. An error leaves the store
    /// refusing further writes (it must be reopened), because the engine cannot tell which part
    /// of a failed write reached the disk.
    fn commit(&mut self, batch: &Batch, flush: Flush) -> Result<(), StoreError>;

    /// Makes every commit so far survive a power cut (`fdatasync`).
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Reads everything, for recovery.
    fn load(&self) -> Result<Snapshot, StoreError>;
}
