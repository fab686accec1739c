//! Errors of the store and of its writer.
//!
//! Every error that concerns the data on disk names the file or directory, and the ones an
//! operator has to act on say what to do: Midge must refuse to start rather than start empty over
//! data it cannot read.

use std::path::PathBuf;
use std::sync::Arc;

use crate::batch::Batch;

/// An error opening, reading or writing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operating system refused an operation on a file or directory.
    ///
    /// The OS error is part of the message and deliberately not this error's `source()`: store
    /// errors are logged with `%error` (by the writer, the broker's journal, the connections),
    /// which shows only the message, while a report that walks the chain (`midge serve`'s
    /// `{error:#}`) would print a source twice.
    #[error("store I/O error on {path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The store holds data this Midge cannot read, or has lost data it had made durable.
    #[error(
        "the store at {path} is corrupt: {detail}. Midge will not start over it; restore the directory \
         from a backup, or move it away to start with an empty store (its messages and sessions are then lost)"
    )]
    Corrupt {
        /// The file or directory that is damaged.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The store was written by a newer Midge, in a format this one does not know.
    #[error(
        "the store at {path} has format version {found}, newer than the {supported} this Midge reads: \
         upgrade Midge, or move the directory away to start with an empty store"
    )]
    NewerFormat {
        /// The file that holds the format version.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The directory is not empty but holds no Midge store: Midge does not write among foreign
    /// files.
    #[error(
        "{path} is not empty and holds no Midge store (no {marker} file): point the data directory \
         at an empty or new directory"
    )]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// The marker file a store has.
        marker: &'static str,
    },
    /// Another process has the store open.
    #[error("the store at {path} is in use by another process (is another midge running?)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A commit or sync failed (disk full, I/O error). The engine refuses further writes after
    /// this, so the store must be reopened: nothing written after the failure is acknowledged.
    #[error("writing the store at {path} failed: {detail}")]
    WriteFailed {
        /// The directory.
        path: PathBuf,
        /// What the engine reported.
        detail: String,
    },
}

/// Why [`WriterHandle::submit`](crate::WriterHandle::submit) did not take a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The writer is more than its pending-bytes bound behind. The batch is handed back: the
    /// caller can refuse the work that produced it (e.g. answer a QoS 1/2 PUBLISH with Quota
    /// exceeded, or stop reading from the publisher) or wait with
    /// [`submit_blocking`](crate::WriterHandle::submit_blocking).
    #[error("the store writer is behind by more than its pending bound")]
    Full(Batch),
    /// A commit failed earlier; nothing is written any more.
    #[error("the store writer failed: {0}")]
    Failed(Arc<StoreError>),
    /// The writer has shut down.
    #[error("the store writer has shut down")]
    Closed,
}

/// Why a ticket will never become durable.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// A commit failed at or before this ticket; the broker must not acknowledge it.
    #[error("the store writer failed: {0}")]
    Failed(Arc<StoreError>),
    /// The writer shut down before committing the ticket.
    #[error("the store writer shut down before the ticket was committed")]
    Closed,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn io_error_is_in_the_message_and_not_repeated_by_a_chain_report() {
        let error = StoreError::Io {
            path: PathBuf::from("/var/lib/midge"),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let message = error.to_string();
        assert!(message.contains("/var/lib/midge"), "{message}");
        assert!(message.contains("permission denied"), "{message}");
        assert!(error.source().is_none(), "a chain report would print the OS error twice");
    }
}
