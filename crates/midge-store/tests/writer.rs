//! The group-commit writer: ordering, grouping, back-pressure, sync policies and failures.
//! Stores wrapped around a `MemoryStore` report or block each call, so the tests synchronise on
//! events, never on sleeps.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::message;
use midge_store::{
    Batch, DurableError, Flush, MemoryStore, MessageId, Snapshot, Store, StoreError, SubmitError, SyncPolicy, Ticket,
    Writer, WriterConfig, MAX_SESSION_DELETIONS,
};

/// Bound on every wait, so a broken writer fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// What an instrumented store reports.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Commit { ops: usize, flush: Flush },
    Sync,
}

/// A store that reports every call, and can hold commits until released or fail them.
struct Instrumented {
    inner: MemoryStore,
    events: Sender<Event>,
    /// While set, each commit waits for a message on it before proceeding.
    gate: Option<Receiver<()>>,
    /// Commits after this many fail, as a full disk would.
    fail_after: Arc<Mutex<Option<u64>>>,
}

impl Instrumented {
    fn new() -> (Self, Receiver<Event>) {
        let (events, rx) = mpsc::channel();
        (Instrumented { inner: MemoryStore::new(), events, gate: None, fail_after: Arc::default() }, rx)
    }

    fn gated(mut self) -> (Self, Sender<()>) {
        let (open, gate) = mpsc::channel();
        self.gate = Some(gate);
        (self, open)
    }
}

impl Store for Instrumented {
    fn commit(&mut self, batch: &Batch, flush: Flush) -> Result<(), StoreError> {
        let _ = self.events.send(Event::Commit { ops: batch.len(), flush });
        if let Some(gate) = &self.gate {
            gate.recv_timeout(WAIT).expect("test released the commit");
        }
        if let Some(n) = *self.fail_after.lock().expect("lock") {
            if self.inner.commits() >= n {
                return Err(StoreError::WriteFailed {
                    path: "/data/fjall".into(),
                    detail: "No space left on device".into(),
                });
            }
        }
        self.inner.commit(batch, flush)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let _ = self.events.send(Event::Sync);
        self.inner.sync()
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }
}

fn one_message(id: u64) -> Batch {
    let mut b = Batch::new();
    b.put_message(MessageId(id), message(id));
    b
}

fn next(events: &Receiver<Event>) -> Event {
    events.recv_timeout(WAIT).expect("an event from the writer")
}

#[test]
fn tickets_commit_in_order_and_group_while_a_commit_is_in_progress() {
    let (store, events) = Instrumented::new();
    let (store, release) = store.gated();
    let writer = Writer::start(store, WriterConfig::default()).expect("start");
    let handle = writer.handle();

    let first = handle.submit(one_message(1)).expect("submit");
    assert_eq!(first, Ticket(1));
    // The writer is now inside the first commit; the next three wait for it and go together.
    assert_eq!(next(&events), Event::Commit { ops: 1, flush: Flush::Disk });
    let later: Vec<Ticket> = (2..=4).map(|id| handle.submit(one_message(id)).expect("submit")).collect();
    assert_eq!(later, [Ticket(2), Ticket(3), Ticket(4)]);
    assert!(handle.committed() < first);

    release.send(()).expect("release");
    handle.wait_durable(first).expect("first durable");
    assert_eq!(next(&events), Event::Commit { ops: 3, flush: Flush::Disk });
    release.send(()).expect("release");
    handle.wait_durable(Ticket(4)).expect("all durable");
    let status = handle.status();
    assert_eq!((status.committed, status.synced, status.commits), (4, 4, 2));

    let store = writer.shutdown().expect("shutdown");
    assert_eq!(store.load().expect("load").messages.len(), 4);
}

/// A commit takes at most `MAX_SESSION_DELETIONS` submissions that delete sessions, so ending
/// thousands of sessions at once (each deletion writes a tombstone per row of the session) is
/// planned a few at a time, not all in one write set; other submissions go with them, and
/// tickets still become durable in order.
#[test]
fn a_commit_takes_at_most_max_session_deletions() {
    let (store, events) = Instrumented::new();
    let (store, release) = store.gated();
    let writer = Writer::start(store, WriterConfig::default()).expect("start");
    let handle = writer.handle();
    let first = handle.submit(one_message(1)).expect("submit");
    assert_eq!(next(&events), Event::Commit { ops: 1, flush: Flush::Disk });
    for n in 0..20 {
        let mut batch = Batch::new();
        batch.delete_session(format!("client-{n}"));
        handle.submit(batch).expect("submit");
    }
    let last = handle.submit(one_message(2)).expect("submit");
    release.send(()).expect("release");
    handle.wait_durable(first).expect("durable");
    assert_eq!(MAX_SESSION_DELETIONS, 8);
    // 8 deletions a commit; the message rides with the last 4.
    for ops in [8, 8, 5] {
        assert_eq!(next(&events), Event::Commit { ops, flush: Flush::Disk });
        release.send(()).expect("release");
    }
    handle.wait_durable(last).expect("all durable");
    assert_eq!(handle.status().commits, 4);
    assert_eq!(writer.shutdown().expect("shutdown").load().expect("load").messages.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn durable_resolves_for_async_callers() {
    let writer = Writer::start(MemoryStore::new(), WriterConfig::default()).expect("start");
    let handle = writer.handle();
    let tickets: Vec<Ticket> = (1..=50).map(|id| handle.submit(one_message(id)).expect("submit")).collect();
    for ticket in tickets {
        tokio::time::timeout(WAIT, handle.durable(ticket)).await.expect("in time").expect("durable");
    }
    // An empty batch is a barrier: durable once everything before it is.
    let barrier = handle.submit(Batch::new()).expect("submit");
    tokio::time::timeout(WAIT, handle.durable(barrier)).await.expect("in time").expect("durable");
    assert_eq!(writer.shutdown().expect("shutdown").load().expect("load").messages.len(), 50);
}

#[test]
fn a_full_queue_hands_the_batch_back_and_blocking_submit_waits_for_room() {
    let (store, events) = Instrumented::new();
    let (store, release) = store.gated();
    let config = WriterConfig { max_pending_bytes: 1024, ..WriterConfig::default() };
    let writer = Writer::start(store, config).expect("start");
    let handle = writer.handle();

    handle.submit(one_message(1)).expect("submit");
    assert!(matches!(next(&events), Event::Commit { .. }));
    // The writer is held inside the commit: fill the pending queue past its bound.
    let mut accepted = 0;
    let rejected = loop {
        match handle.submit(one_message(100 + accepted)) {
            Ok(_) => accepted += 1,
            Err(SubmitError::Full(batch)) => break batch,
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(accepted < 100, "the bound never applied");
    };
    assert!(accepted >= 1);
    assert_eq!(rejected, one_message(100 + accepted));

    let blocked = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.submit_blocking(rejected))
    };
    release.send(()).expect("release first commit");
    // The pending batch goes into the second commit, which makes room for the blocked one.
    assert!(matches!(next(&events), Event::Commit { .. }));
    release.send(()).expect("release second commit");
    let ticket = blocked.join().expect("thread").expect("submitted after room was made");
    assert!(matches!(next(&events), Event::Commit { ops: 1, .. }));
    release.send(()).expect("release third commit");
    handle.wait_durable(ticket).expect("durable");
    drop(writer);
}

/// Issue 13: a broker worker must never block on a writer that is behind. Past the bound a
/// submission is still taken at once; the writer says it is behind until a commit catches up.
#[tokio::test]
async fn submitting_over_the_bound_never_blocks_and_caught_up_waits_for_the_writer() {
    let (store, events) = Instrumented::new();
    let (store, release) = store.gated();
    let config = WriterConfig { max_pending_bytes: 1024, ..WriterConfig::default() };
    let writer = Writer::start(store, config).expect("start");
    let handle = writer.handle();

    handle.submit(one_message(1)).expect("submit");
    assert!(matches!(next(&events), Event::Commit { .. }));
    // The writer is held inside its commit: 100 submissions go far past the bound, each taken
    // at once (a blocking one would hang this thread, and the test, until the release).
    let mut last = None;
    for id in 0..100 {
        last = Some(handle.submit_over_bound(one_message(100 + id)).expect("taken"));
    }
    assert!(handle.is_behind());
    let caught_up = tokio::spawn({
        let handle = handle.clone();
        async move { handle.caught_up().await }
    });
    tokio::task::yield_now().await;
    assert!(!caught_up.is_finished(), "the writer is still behind");
    release.send(()).expect("release the first commit");
    // The writer takes everything pending into its second commit: no longer behind.
    assert!(matches!(next(&events), Event::Commit { .. }));
    release.send(()).expect("release the second commit");
    tokio::time::timeout(WAIT, caught_up).await.expect("caught up in time").expect("task");
    assert!(!handle.is_behind());
    handle.durable(last.expect("a ticket")).await.expect("durable");
    drop(writer);
}

#[test]
fn a_failed_commit_fails_its_tickets_and_everything_after() {
    let (store, _events) = Instrumented::new();
    let fail_after = Arc::clone(&store.fail_after);
    let writer = Writer::start(store, WriterConfig::default()).expect("start");
    let handle = writer.handle();

    let ok = handle.submit(one_message(1)).expect("submit");
    handle.wait_durable(ok).expect("durable before the failure");
    *fail_after.lock().expect("lock") = Some(1);
    let failed = handle.submit(one_message(2)).expect("submit");
    match handle.wait_durable(failed) {
        Err(DurableError::Failed(e)) => assert!(e.to_string().contains("No space left"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Already-durable tickets stay durable; new work is refused with the cause.
    handle.wait_durable(ok).expect("still durable");
    assert!(matches!(handle.submit(one_message(3)), Err(SubmitError::Failed(_))));
    assert!(handle.status().error.is_some());
    assert!(writer.shutdown().is_err());
}

#[test]
fn interval_policy_acknowledges_on_write_and_fsyncs_within_the_interval() {
    let (store, events) = Instrumented::new();
    let config = WriterConfig { policy: SyncPolicy::IntervalMs(20), ..WriterConfig::default() };
    let writer = Writer::start(store, config).expect("start");
    let handle = writer.handle();

    let ticket = handle.submit(one_message(1)).expect("submit");
    handle.wait_durable(ticket).expect("durable once written to the OS");
    assert_eq!(next(&events), Event::Commit { ops: 1, flush: Flush::Os });
    // No further submission: the writer wakes on its own to fsync.
    assert_eq!(next(&events), Event::Sync);
    drop(writer);
}

#[test]
fn never_policy_fsyncs_only_at_shutdown() {
    let (store, events) = Instrumented::new();
    let config = WriterConfig { policy: SyncPolicy::Never, ..WriterConfig::default() };
    let writer = Writer::start(store, config).expect("start");
    let handle = writer.handle();
    for id in 1..=3 {
        let ticket = handle.submit(one_message(id)).expect("submit");
        handle.wait_durable(ticket).expect("durable");
    }
    assert_eq!(handle.status().synced, 0);
    writer.shutdown().expect("shutdown");
    let calls: Vec<Event> = events.try_iter().collect();
    assert_eq!(calls.iter().filter(|e| **e == Event::Sync).count(), 1);
    assert_eq!(calls.last(), Some(&Event::Sync));
    assert!(matches!(handle.submit(one_message(9)), Err(SubmitError::Closed)));
    assert!(matches!(handle.wait_durable(Ticket(9)), Err(DurableError::Closed)));
}

/// A group of submissions (`begin_group` .. `end_group`) goes into one commit, never split:
/// here message 2 waits for the group's message 3, though the writer was free to take it alone
/// as soon as the commit before it ended.
#[test]
fn a_group_of_submissions_is_committed_whole() {
    let (store, events) = Instrumented::new();
    let (store, release) = store.gated();
    let writer = Writer::start(store, WriterConfig::default()).expect("start");
    let handle = writer.handle();
    let first = handle.submit(one_message(1)).expect("submit");
    assert_eq!(next(&events), Event::Commit { ops: 1, flush: Flush::Disk });
    handle.begin_group();
    handle.submit(one_message(2)).expect("submit");
    // The first commit ends while the group is open: the writer must not take message 2 yet.
    release.send(()).unwrap();
    handle.wait_durable(first).expect("durable");
    // No commit while the group is open. (An absence has no event to wait for: without the
    // group the writer takes message 2 alone at once, well within this bound.)
    assert!(events.recv_timeout(Duration::from_millis(300)).is_err(), "a commit split the group");
    let third = handle.submit(one_message(3)).expect("submit");
    handle.end_group();
    assert_eq!(next(&events), Event::Commit { ops: 2, flush: Flush::Disk });
    release.send(()).unwrap();
    handle.wait_durable(third).expect("durable");
    drop(release);
    assert_eq!(writer.shutdown().expect("shutdown").load().expect("load").messages.len(), 3);
}
