//! Reading a session's queue beside the writer (docs/decisions/0006): a range of one client's
//! deliveries in seq order, messages by id, and nothing the writer has not committed.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use common::{delivery, message};
use midge_store::{
    Batch, DeliveryState, DiskStore, Flush, MessageId, Reader, Snapshot, Store, StoreError, Ticket, Writer,
    WriterConfig, WriterHandle,
};

/// Bound on every wait, so a broken writer fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// The disk store, with each commit held until the test releases it.
struct Gated {
    inner: DiskStore,
    gate: Receiver<()>,
}

impl Store for Gated {
    fn commit(&mut self, batch: &Batch, flush: Flush) -> Result<(), StoreError> {
        self.gate.recv_timeout(WAIT).expect("the test released the commit");
        self.inner.commit(batch, flush)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }
}

/// A disk store in a temporary directory behind a gated writer, and its reader.
fn gated_store() -> (tempfile::TempDir, Writer<Gated>, Reader, Sender<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = DiskStore::open(dir.path()).expect("open");
    let reader = inner.reader();
    let (open, gate) = mpsc::channel();
    let writer = Writer::start(Gated { inner, gate }, WriterConfig::default()).expect("writer");
    (dir, writer, reader, open)
}

/// Submits `batch`, lets its commit through and waits until it is durable.
fn commit(handle: &WriterHandle, open: &Sender<()>, batch: Batch) {
    let ticket = handle.submit(batch).expect("submit");
    open.send(()).expect("writer alive");
    wait_durable(handle, ticket);
}

/// Waits until `ticket` is durable, within [`WAIT`].
fn wait_durable(handle: &WriterHandle, ticket: Ticket) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    runtime
        .block_on(async { tokio::time::timeout(WAIT, handle.durable(ticket)).await })
        .expect("durable in time")
        .expect("durable");
}

fn seqs(rows: &[(u64, midge_store::DeliveryRecord)]) -> Vec<u64> {
    rows.iter().map(|(seq, _)| *seq).collect()
}

#[test]
fn a_clients_deliveries_read_back_in_seq_order_from_any_seq() {
    let (_dir, writer, reader, open) = gated_store();
    let handle = writer.handle();
    let mut batch = Batch::new();
    batch.put_message(MessageId(1), message(1));
    for seq in 1..=10 {
        batch.put_delivery("a", seq, delivery(1, DeliveryState::Queued));
    }
    // Client ids that are prefixes of one another never mix: "ab" after "a".
    for seq in 1..=3 {
        batch.put_delivery("ab", seq, delivery(1, DeliveryState::Queued));
    }
    batch.put_delivery("a", 300, delivery(1, DeliveryState::Inflight { packet_id: 7, awaiting_pubcomp: true }));
    commit(&handle, &open, batch);

    assert_eq!(seqs(&reader.deliveries("a", 3, 4).expect("read")), [3, 4, 5, 6]);
    assert_eq!(seqs(&reader.deliveries("a", 9, 100).expect("read")), [9, 10, 300]);
    assert_eq!(seqs(&reader.deliveries("ab", 0, 100).expect("read")), [1, 2, 3]);
    assert!(reader.deliveries("b", 0, 100).expect("read").is_empty());
    let last = reader.deliveries("a", 300, 1).expect("read");
    assert_eq!(last[0].1, delivery(1, DeliveryState::Inflight { packet_id: 7, awaiting_pubcomp: true }));

    let mut batch = Batch::new();
    batch.delete_delivery("a", 4);
    commit(&handle, &open, batch);
    assert_eq!(seqs(&reader.deliveries("a", 3, 4).expect("read")), [3, 5, 6, 7], "deleted rows are gone");

    assert_eq!(reader.message(MessageId(1)).expect("read"), Some(message(1)));
    assert_eq!(reader.message(MessageId(2)).expect("read"), None);
}

#[test]
fn nothing_the_writer_has_not_committed_is_read() {
    let (_dir, writer, reader, open) = gated_store();
    let handle = writer.handle();
    let mut batch = Batch::new();
    batch.put_message(MessageId(5), message(5));
    batch.put_delivery("c", 1, delivery(5, DeliveryState::Queued));
    let ticket = handle.submit(batch).expect("submit");
    // The writer holds the batch at the gate: pending, not committed.
    assert!(handle.committed() < ticket);
    assert!(reader.deliveries("c", 0, 10).expect("read").is_empty(), "a pending delivery is not read");
    assert_eq!(reader.message(MessageId(5)).expect("read"), None, "a pending message is not read");
    open.send(()).expect("writer alive");
    wait_durable(&handle, ticket);
    assert_eq!(seqs(&reader.deliveries("c", 0, 10).expect("read")), [1]);
    assert_eq!(reader.message(MessageId(5)).expect("read"), Some(message(5)));
}
