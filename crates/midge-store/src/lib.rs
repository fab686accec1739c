//! Midge's durable state: an embedded crash-safe store of retained messages, persistent
//! sessions, their queues and QoS state, and the group-commit writer that feeds it.
//!
//! The broker submits a [`Batch`] of operations per event and gets a [`Ticket`]; it holds the
//! PUBACK / PUBREC of a QoS 1/2 message until [`WriterHandle::durable`] says its ticket is
//! committed. The writer thread drains whatever is pending into one transaction per commit
//! (group commit), so the cost of an fsync is shared by everything that arrived while the
//! previous one ran. On start, [`Store::load`] returns a [`Snapshot`] of everything to recover.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use midge_store::{Batch, DiskStore, Store, SyncPolicy, Writer, WriterConfig};
//!
//! let store = DiskStore::open("./midge-data")?;
//! let mut snapshot = store.load()?;
//! let cleanup = snapshot.repair(); // orphaned messages, rows of half-deleted sessions
//! let writer = Writer::start(store, WriterConfig { policy: SyncPolicy::Always, ..Default::default() })?;
//! let handle = writer.handle();
//! handle.submit_blocking(cleanup)?;
//! let mut batch = Batch::new();
//! batch.delete_retained("plant/7/state");
//! let ticket = handle.submit(batch)?;
//! handle.durable(ticket).await?; // now acknowledge
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`records`]: the persisted record types (`MessageRecord`, `SessionRecord`, ...).
//! - [`batch`]: [`Op`] and [`Batch`], the write API.
//! - [`store`]: the [`Store`] trait and [`Flush`].
//! - [`snapshot`]: [`Snapshot`], what recovery reads, with its repair helpers.
//! - [`writer`]: the group-commit [`Writer`] thread, [`SyncPolicy`] and [`Ticket`]s.
//! - [`disk`]: [`DiskStore`], the store on disk (fjall), its files and open-time checks.
//! - [`memory`]: [`MemoryStore`], for tests.
//! - [`reader`]: [`Reader`], a session's committed queue read beside the writer.
//! - `layout`: keys and value encoding shared by both stores; `migrate`: format versions.
//! - `journal_check`: the check that the engine's journal batches' sequence numbers never fall,
//!   which the engine does not make.
//! - [`error`]: [`StoreError`], [`SubmitError`], [`DurableError`].
//!
//! # Durability
//! What "durable" means for a ticket depends on the [`SyncPolicy`]; see its documentation.
#![deny(missing_docs)]

pub mod batch;
pub mod commit_latency;
mod compactor;
pub mod disk;
pub mod error;
mod journal_check;
mod layout;
pub mod memory;
mod migrate;
pub mod reader;
pub mod records;
pub mod snapshot;
pub mod store;
pub mod writer;

pub use batch::{Batch, Op};
pub use commit_latency::{CommitLatency, COMMIT_BUCKETS_MICROS};
pub use disk::{disk_usage, DiskStore};
pub use error::{DurableError, StoreError, SubmitError};
pub use memory::MemoryStore;
pub use migrate::FORMAT_VERSION;
pub use reader::Reader;
pub use records::{
    DeliveryRecord, DeliveryState, MessageId, MessageRecord, SessionRecord, SubscriptionRecord, WillRecord,
};
pub use snapshot::{SessionSnapshot, Snapshot};
pub use store::{Flush, Store};
pub use writer::{SyncPolicy, Ticket, Writer, WriterConfig, WriterHandle, WriterStatus, MAX_SESSION_DELETIONS};
