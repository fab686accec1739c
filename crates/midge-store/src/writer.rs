//! The group-commit writer: one thread owns the store and commits everything pending at once.
//!
//! Producers call [`WriterHandle::submit`], which appends their operations to the pending batch
//! and returns a [`Ticket`] at once. The writer thread takes the whole pending batch, commits it
//! as one transaction with the [`SyncPolicy`]'s flush, and then publishes the last ticket that
//! batch contained. One exception: a commit takes at most [`MAX_SESSION_DELETIONS`] submissions
//! that delete sessions, and leaves the rest for the next (see there). While it is in `fsync`, new submissions pile up and go into the next commit
//! together, so under load one fsync serves many tickets. A std thread, not a task: `fsync`
//! blocks for milliseconds, which must not stall a runtime worker.
//!
//! # Bounds
//! The pending batch is bounded by [`WriterConfig::max_pending_bytes`] (approximate bytes of
//! the operations; a batch is always accepted into an empty queue, however big). At most one
//! more batch is being committed, so the writer holds about twice the bound at worst. When the
//! bound is reached, [`WriterHandle::submit`] does not block: it returns [`SubmitError::Full`]
//! with the batch, for the caller to refuse or delay the work that produced it;
//! [`WriterHandle::submit_blocking`] waits for room instead (tests, recovery), and
//! [`WriterHandle::submit_over_bound`] takes it anyway, for producers that must neither block
//! nor refuse and are paced instead while [`WriterHandle::is_behind`].
//!
//! # Locks
//! The queue's mutex is a leaf: nothing else is locked while it is held, and it is held only to
//! append or swap the pending batch. Producers may therefore call [`WriterHandle::submit`] while
//! holding any broker lock (it never blocks on the disk); not [`WriterHandle::submit_blocking`].
//!
//! # Failure
//! A failed commit or sync (disk full, I/O error) is logged with `tracing::error!`, published
//! in [`WriterStatus::error`], and ends the writer: the engine cannot tell what part of a
//! failed write reached the disk, so nothing after it may be acknowledged. Every ticket above
//! the committed one then gets [`DurableError::Failed`] from [`WriterHandle::durable`] and new
//! submissions get [`SubmitError::Failed`]; the broker must stop acknowledging and restart on a
//! reopened store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::batch::Batch;
use crate::commit_latency::CommitLatency;
use crate::error::{DurableError, StoreError, SubmitError};
use crate::store::{Flush, Store};

/// When commits are fsynced, which decides what a durable ticket survives.
///
/// | policy | a ticket is durable when its commit is | survives `kill -9` | survives power loss |
/// |---|---|---|---|
/// | `Always` | written and fsynced | yes | yes |
/// | `IntervalMs(n)` | written to the OS | yes | only if fsynced: at most `n` ms of durable tickets can be lost |
/// | `Never` | written to the OS | yes | only what the OS wrote back (Linux: ~30 s) and the engine synced itself |
///
/// "Written to the OS" is a `write` into the page cache: the process can die at any moment
/// after it and the kernel still writes the data out. All policies fsync once more on a clean
/// [`Writer::shutdown`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync every commit (the default): nothing acknowledged is lost to a crash or a power cut.
    #[default]
    Always,
    /// Commit without fsync, and fsync at most every `n` milliseconds (and at least that often
    /// while there are unsynced commits).
    IntervalMs(u64),
    /// Commit without fsync, never fsync except at shutdown.
    Never,
}

/// The writer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// The sync policy.
    pub policy: SyncPolicy,
    /// Bound on the approximate bytes of operations waiting for the writer (see the module's
    /// *Bounds*). Default 64 MiB: at 2 fsyncs per 10 ms on a slow disk, far more than a broker
    /// produces between two commits, so only a stalled disk reaches it.
    pub max_pending_bytes: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { policy: SyncPolicy::Always, max_pending_bytes: 64 * 1024 * 1024 }
    }
}

/// A submitted batch's place in commit order: a ticket is durable when the writer's committed
/// number reaches it. Tickets start at 1 and grow by one per submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What the writer has done so far.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WriterStatus {
    /// Every ticket up to this one is durable in the sense of the [`SyncPolicy`].
    pub committed: u64,
    /// Every ticket up to this one is fsynced (power-loss safe), whatever the policy.
    pub synced: u64,
    /// Transactions committed: fewer than tickets when group commit merged them.
    pub commits: u64,
    /// Time spent committing them (and syncing, when the policy syncs), in microseconds: over
    /// `commits`, the mean time an acknowledgement waits on the disk (`$SYS`, metrics).
    pub commit_micros: u64,
    /// The same commits by how long each took (`/metrics`' `midge_store_commit_seconds`).
    pub commit_latency: CommitLatency,
    /// The failure that ended the writer, if one did.
    pub error: Option<Arc<StoreError>>,
    /// The writer thread has ended.
    pub closed: bool,
}

/// State shared by the writer thread and the handles.
struct Shared {
    /// The pending batch and the counters; the writer holds it only to swap the batch out.
    queue: Mutex<Queue>,
    /// Wakes the writer: work arrived, or shutdown.
    work: Condvar,
    /// Wakes producers blocked on the bound, and blocking waiters for durability.
    progress: Condvar,
    /// The status, for async waiters.
    status: watch::Sender<WriterStatus>,
    /// The configuration.
    config: WriterConfig,
    /// Open groups of submissions ([`WriterHandle::begin_group`]) hold it shared; the writer
    /// takes it exclusively to take a commit, so a group is never split between two commits.
    /// Writer-preferring: a waiting writer holds back new groups, so groups cannot starve it.
    /// Lock order: this, then `queue`.
    group: parking_lot::RawRwLock,
}

struct Queue {
    /// Operations submitted and not yet taken by the writer.
    pending: Batch,
    /// Where each submission in `pending` that deletes a session ends (its last operation's
    /// index + 1) and its ticket: a commit takes at most [`MAX_SESSION_DELETIONS`] of them.
    deletions: VecDeque<(usize, u64)>,
    /// The last ticket handed out.
    last_ticket: u64,
    /// What has been committed, synced, failed: the authoritative copy of the status.
    status: WriterStatus,
    /// Shutdown was asked: no new submissions.
    closing: bool,
}

/// Submissions that delete sessions one commit takes at most. Each writes a tombstone for every
/// row of its session, and the commit plans them all in memory first (about 150 bytes a row):
/// ending 10,000 offline sessions of 1,000 queued messages at once took the broker to 2.2 GiB
/// when one commit took them all; 8 sessions of even 100,000 messages (the default offline
/// bound) plan in about 120 MiB. Other submissions are never held back: group commit takes
/// everything pending, which is what keeps a burst's fsyncs few.
pub const MAX_SESSION_DELETIONS: usize = 8;

impl Queue {
    /// What the next commit takes: everything pending and the last ticket, unless more than
    /// [`MAX_SESSION_DELETIONS`] submissions delete sessions; then everything up to the last
    /// of the first that many.
    fn take_commit(&mut self) -> (Batch, u64) {
        if self.deletions.len() <= MAX_SESSION_DELETIONS {
            self.deletions.clear();
            return (std::mem::take(&mut self.pending), self.last_ticket);
        }
        let (end, ticket) = self.deletions[MAX_SESSION_DELETIONS - 1];
        self.deletions.drain(..MAX_SESSION_DELETIONS);
        for (later_end, _) in &mut self.deletions {
            *later_end -= end;
        }
        let rest = self.pending.split_off(end);
        (std::mem::replace(&mut self.pending, rest), ticket)
    }
}

/// The writer thread, owning the store until [`shutdown`](Writer::shutdown).
///
/// Dropping it shuts it down too (committing and syncing what is pending), but discards the
/// store and any error.
pub struct Writer<S: Store> {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<S>>,
}

/// A cheap, clonable handle for submitting batches and waiting for them.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle").field("committed", &self.committed()).finish_non_exhaustive()
    }
}

impl<S: Store> Writer<S> {
    /// Starts the writer thread on `store`.
    pub fn start(store: S, config: WriterConfig) -> Result<Writer<S>, StoreError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: Batch::new(),
                deletions: VecDeque::new(),
                last_ticket: 0,
                status: WriterStatus::default(),
                closing: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            status: watch::Sender::new(WriterStatus::default()),
            config,
            group: <parking_lot::RawRwLock as parking_lot::lock_api::RawRwLock>::INIT,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("midge-store-writer".into())
            .spawn(move || run(store, thread_shared))
            .map_err(|error| StoreError::Io { path: "<writer thread>".into(), error })?;
        Ok(Writer { shared, thread: Some(thread) })
    }

    /// A handle for producers.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle { shared: Arc::clone(&self.shared) }
    }

    /// Commits what is pending, fsyncs, stops the thread and returns the store, or the error
    /// that ended the writer.
    pub fn shutdown(mut self) -> Result<S, Arc<StoreError>> {
        let joined = self.stop();
        let error = self.shared.queue.lock().status.error.clone();
        match (joined, error) {
            (_, Some(error)) => Err(error),
            (Some(store), None) => Ok(store),
            (None, None) => Err(Arc::new(writer_panicked())),
        }
    }

    fn stop(&mut self) -> Option<S> {
        self.shared.queue.lock().closing = true;
        self.shared.work.notify_one();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl<S: Store> Drop for Writer<S> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

impl WriterHandle {
    /// Queues `batch` for the next commit and returns its ticket, without blocking.
    ///
    /// Fails with [`SubmitError::Full`] (handing the batch back) when the writer is more than
    /// [`WriterConfig::max_pending_bytes`] behind.
    pub fn submit(&self, batch: Batch) -> Result<Ticket, SubmitError> {
        let mut queue = self.shared.queue.lock();
        check_open(&queue)?;
        if !queue.pending.is_empty()
            && queue.pending.approx_bytes() + batch.approx_bytes() > self.shared.config.max_pending_bytes
        {
            return Err(SubmitError::Full(batch));
        }
        Ok(self.enqueue(&mut queue, batch))
    }

    /// Opens a group: what this thread submits until [`end_group`](Self::end_group) goes into
    /// one commit, never split between two, so that a crash keeps all of it or none (an
    /// inbound QoS 2 message's packet id and the message's deliveries, say). Groups nest. Keep
    /// one short (no waiting inside): the writer waits for open groups before each commit. The
    /// submissions in it must not block waiting for the writer ([`submit_blocking`]).
    ///
    /// [`submit_blocking`]: Self::submit_blocking
    pub fn begin_group(&self) {
        use parking_lot::lock_api::RawRwLockRecursive as _;
        // Recursive: a nested group on the same thread must not wait for a queued writer.
        self.shared.group.lock_shared_recursive();
    }

    /// Closes the group the last [`begin_group`](Self::begin_group) opened.
    pub fn end_group(&self) {
        use parking_lot::lock_api::RawRwLock as _;
        // SAFETY: paired with the `lock_shared_recursive` of `begin_group`; a shared hold is
        // not tied to a thread, and callers close each group they open exactly once.
        unsafe { self.shared.group.unlock_shared() };
    }

    /// Like [`submit`](Self::submit), but accepted however far behind the writer is: for a
    /// producer that must not block and cannot refuse the work (a broker worker thread with a
    /// message to persist), which is paced by other means once the writer is behind
    /// ([`is_behind`](Self::is_behind), [`caught_up`](Self::caught_up)). Beyond the bound the
    /// queue then grows by what the producers add before they are paced.
    pub fn submit_over_bound(&self, batch: Batch) -> Result<Ticket, SubmitError> {
        let mut queue = self.shared.queue.lock();
        check_open(&queue)?;
        Ok(self.enqueue(&mut queue, batch))
    }

    /// Whether more than [`WriterConfig::max_pending_bytes`] wait for the writer: producers
    /// whose work waits on it should be paced until [`caught_up`](Self::caught_up).
    pub fn is_behind(&self) -> bool {
        self.shared.queue.lock().pending.approx_bytes() > self.shared.config.max_pending_bytes
    }

    /// Resolves once the writer is no longer behind (or has ended).
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches the writer's progress.
    pub async fn caught_up(&self) {
        let mut status = self.shared.status.subscribe();
        while self.is_behind() {
            // Each commit publishes the status; the sender lives as long as this handle.
            if status.changed().await.is_err() || status.borrow().closed {
                return;
            }
        }
    }

    /// Like [`submit`](Self::submit), but waits for room instead of failing when the writer is
    /// behind. Blocks the thread: for recovery and tests, not for a runtime worker.
    pub fn submit_blocking(&self, batch: Batch) -> Result<Ticket, SubmitError> {
        let mut queue = self.shared.queue.lock();
        loop {
            check_open(&queue)?;
            if queue.pending.is_empty()
                || queue.pending.approx_bytes() + batch.approx_bytes() <= self.shared.config.max_pending_bytes
            {
                return Ok(self.enqueue(&mut queue, batch));
            }
            self.shared.progress.wait(&mut queue);
        }
    }

    /// Waits until `ticket` is durable (see [`SyncPolicy`]).
    ///
    /// Errors if the writer failed before committing it, or shut down without committing it.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches the writer's progress, so dropping it loses nothing.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), DurableError> {
        let mut status = self.shared.status.subscribe();
        loop {
            if let Some(verdict) = verdict(&status.borrow_and_update(), ticket) {
                return verdict;
            }
            // The sender lives in `shared`, which this handle keeps alive: this cannot fail.
            if status.changed().await.is_err() {
                return Err(DurableError::Closed);
            }
        }
    }

    /// Blocking form of [`durable`](Self::durable), for threads outside an async runtime.
    pub fn wait_durable(&self, ticket: Ticket) -> Result<(), DurableError> {
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(verdict) = verdict(&queue.status, ticket) {
                return verdict;
            }
            self.shared.progress.wait(&mut queue);
        }
    }

    /// The last durable ticket, for polling.
    pub fn committed(&self) -> Ticket {
        Ticket(self.shared.status.borrow().committed)
    }

    /// The writer's progress and state.
    pub fn status(&self) -> WriterStatus {
        self.shared.status.borrow().clone()
    }

    fn enqueue(&self, queue: &mut Queue, mut batch: Batch) -> Ticket {
        let deletes_sessions = batch.deletes_sessions();
        queue.pending.append(&mut batch);
        queue.last_ticket += 1;
        if deletes_sessions {
            queue.deletions.push_back((queue.pending.len(), queue.last_ticket));
        }
        self.shared.work.notify_one();
        Ticket(queue.last_ticket)
    }
}

/// Whether `ticket`'s fate is known from `status`: `None` while it may still be committed.
fn verdict(status: &WriterStatus, ticket: Ticket) -> Option<Result<(), DurableError>> {
    if status.committed >= ticket.0 {
        Some(Ok(()))
    } else if let Some(error) = &status.error {
        Some(Err(DurableError::Failed(Arc::clone(error))))
    } else if status.closed {
        Some(Err(DurableError::Closed))
    } else {
        None
    }
}

fn check_open(queue: &Queue) -> Result<(), SubmitError> {
    if let Some(error) = &queue.status.error {
        return Err(SubmitError::Failed(Arc::clone(error)));
    }
    if queue.closing || queue.status.closed {
        return Err(SubmitError::Closed);
    }
    Ok(())
}

fn writer_panicked() -> StoreError {
    StoreError::WriteFailed { path: "<writer thread>".into(), detail: "the writer thread panicked".into() }
}

/// Marks the writer closed however the thread ends, a panic included, so no waiter hangs.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        queue.status.closed = true;
        if std::thread::panicking() && queue.status.error.is_none() {
            queue.status.error = Some(Arc::new(writer_panicked()));
        }
        self.0.status.send_replace(queue.status.clone());
        self.0.progress.notify_all();
    }
}

/// The writer thread's loop.
fn run<S: Store>(mut store: S, shared: Arc<Shared>) -> S {
    let _exit = ExitGuard(&shared);
    let policy = shared.config.policy;
    let interval = match policy {
        SyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms)),
        SyncPolicy::Always | SyncPolicy::Never => None,
    };
    let flush = if policy == SyncPolicy::Always { Flush::Disk } else { Flush::Os };
    let mut last_sync = Instant::now();
    // The last ticket committed but not yet fsynced (0: none).
    let mut unsynced = 0;

    loop {
        let (batch, upto, closing) = {
            let mut queue = shared.queue.lock();
            loop {
                if !queue.pending.is_empty() || queue.last_ticket > queue.status.committed || queue.closing {
                    break;
                }
                match interval {
                    Some(interval) if unsynced > 0 => {
                        let deadline = last_sync + interval;
                        if Instant::now() >= deadline {
                            break;
                        }
                        shared.work.wait_until(&mut queue, deadline);
                    }
                    _ => shared.work.wait(&mut queue),
                }
            }
            // A group of submissions is committed whole: the batch is taken only while no group
            // is open. The queue's lock is let go first, since a producer in a group may be
            // waiting for it to submit.
            drop(queue);
            let no_open_group = ExclusiveGroup::take(&shared.group);
            let mut queue = shared.queue.lock();
            let (batch, upto) = queue.take_commit();
            drop(no_open_group);
            // Room for producers blocked on the bound.
            shared.progress.notify_all();
            (batch, upto, queue.closing && queue.pending.is_empty())
        };

        let mut result = Ok(());
        let committed = !batch.is_empty();
        let started = Instant::now();
        if committed {
            result = store.commit(&batch, flush);
        }
        drop(batch);
        let mut synced = None;
        if result.is_ok() {
            if flush == Flush::Disk {
                synced = Some(upto);
            } else {
                if committed || upto > unsynced {
                    unsynced = upto;
                }
                let due = interval.is_some_and(|i| last_sync.elapsed() >= i);
                if unsynced > 0 && (due || closing) {
                    result = store.sync();
                    last_sync = Instant::now();
                    if result.is_ok() {
                        synced = Some(unsynced);
                        unsynced = 0;
                    }
                }
            }
        }

        let mut queue = shared.queue.lock();
        match result {
            Ok(()) => {
                queue.status.committed = upto;
                if let Some(synced) = synced {
                    queue.status.synced = synced;
                }
                queue.status.commits += u64::from(committed);
                if committed {
                    let micros = started.elapsed().as_micros() as u64;
                    queue.status.commit_micros += micros;
                    queue.status.commit_latency.record(micros);
                }
            }
            Err(error) => {
                tracing::error!(%error, "the store writer failed: refusing further writes; nothing after ticket {} is durable", queue.status.committed);
                queue.status.error = Some(Arc::new(error));
            }
        }
        let done = queue.status.error.is_some() || (queue.closing && queue.pending.is_empty() && unsynced == 0);
        shared.status.send_replace(queue.status.clone());
        shared.progress.notify_all();
        if done {
            drop(queue);
            return store;
        }
    }
}

/// The writer's exclusive hold on the group lock while it takes a commit: no group is open.
struct ExclusiveGroup<'a>(&'a parking_lot::RawRwLock);

impl<'a> ExclusiveGroup<'a> {
    fn take(lock: &'a parking_lot::RawRwLock) -> Self {
        use parking_lot::lock_api::RawRwLock as _;
        lock.lock_exclusive();
        Self(lock)
    }
}

impl Drop for ExclusiveGroup<'_> {
    fn drop(&mut self) {
        use parking_lot::lock_api::RawRwLock as _;
        // SAFETY: taken exclusively in `take`, released once here.
        unsafe { self.0.unlock_exclusive() };
    }
}
