//! Midge's durable state: an embedded crash-safe store of retained messages, persistent
//! sessions, their queues and QoS state, and the group-commit writer that feeds it.
//!
//! The broker writes a [`Batch`] of operations per event, applied atomically.
//! On start, [`Store::load`] returns a [`Snapshot`] of everything to recover.
//!
//!
//! # Layout
//! - [`records`]: the persisted record types (`MessageRecord`, `SessionRecord`, ...).
//! - [`batch`]: [`Op`] and [`Batch`], the write API.
//! - [`store`]: the [`Store`] trait and [`Flush`].
//! - [`snapshot`]: [`Snapshot`], what recovery reads, with its repair helpers.
//! - [`disk`]: [`DiskStore`], the store on disk (fjall), its files and open-time checks.
//! - [`memory`]: [`MemoryStore`], for tests.
//! - `layout`: keys and value encoding shared by both stores; `migrate`: format versions.
//! - [`error`]: [`StoreError`], [`SubmitError`], [`DurableError`].
#![deny(missing_docs)]

pub mod batch;
pub mod disk;
pub mod error;
mod layout;
pub mod memory;
mod migrate;
pub mod records;
pub mod snapshot;
pub mod store;

pub use batch::{Batch, Op};
pub use disk::DiskStore;
pub use error::{DurableError, StoreError, SubmitError};
pub use memory::MemoryStore;
pub use migrate::FORMAT_VERSION;
pub use records::{
    DeliveryRecord, DeliveryState, MessageId, MessageRecord, SessionRecord, SubscriptionRecord, WillRecord,
};
pub use snapshot::{SessionSnapshot, Snapshot};
pub use store::{Flush, Store};
