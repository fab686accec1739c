//! The stores' semantics and the disk store's open-time safety: empty directory, reopen,
//! foreign directory, newer format, corrupt and truncated files, a second process.

mod common;

use std::path::{Path, PathBuf};

use common::{delivery, message, session, varied_batches};
use midge_store::{
    Batch, DeliveryState, DiskStore, Flush, MemoryStore, MessageId, Snapshot, Store, StoreError, FORMAT_VERSION,
};

fn apply_all(store: &mut impl Store, batches: &[Batch]) {
    for batch in batches {
        store.commit(batch, Flush::Disk).expect("commit");
    }
}

#[test]
fn empty_dir_opens_as_an_empty_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("not/yet/there");
    let store = DiskStore::open(&dir).expect("open creates");
    assert_eq!(store.load().expect("load"), Snapshot::default());
    assert!(dir.join("midge-store").is_file());
    drop(store);
    // An existing empty directory too.
    let empty = tempfile::tempdir().expect("tempdir");
    assert_eq!(DiskStore::open(empty.path()).expect("open").load().expect("load"), Snapshot::default());
}

#[test]
fn operations_apply_in_order_and_sessions_delete_with_their_rows() {
    let mut store = MemoryStore::new();
    apply_all(&mut store, &varied_batches());
    let s = store.load().expect("load");

    assert_eq!(s.sessions.keys().collect::<Vec<_>>(), ["historian", "historian-2"]);
    let h = &s.sessions["historian"];
    assert_eq!(h.record, session(1));
    assert_eq!(h.subscriptions.keys().collect::<Vec<_>>(), ["site/+/sensor/#"]);
    let seqs: Vec<u64> = h.deliveries.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(h.deliveries[0].1, delivery(2, DeliveryState::Inflight { packet_id: 2, awaiting_pubcomp: true }));
    assert_eq!(h.inbound_qos2, [300]);
    assert_eq!(h.topic_ids, [(1, "site/8/state".to_owned()), (2, "site/7/state".to_owned())], "by id");
    assert_eq!(h.next_seq(), 4);
    assert_eq!(s.sessions["historian-2"].subscriptions.len(), 1);

    let retained: Vec<_> = s.retained.iter().map(|(t, id)| (t.as_str(), id.0)).collect();
    assert_eq!(retained, [("site/7/state", 3), ("site/9/state", 6)]);
    assert_eq!(s.messages.keys().map(|id| id.0).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    assert_eq!(s.messages[&MessageId(5)], message(5));
    assert!(s.stray_clients.is_empty());
    assert_eq!(s.next_message_id(), MessageId(7));
    assert_eq!(s.next_session_id(), 5);
}

#[test]
fn disk_and_memory_stores_agree_and_reopen_returns_the_same_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut memory = MemoryStore::new();
    apply_all(&mut memory, &varied_batches());
    let expected = memory.load().expect("load");

    let mut disk = DiskStore::open(tmp.path()).expect("open");
    apply_all(&mut disk, &varied_batches());
    assert_eq!(disk.load().expect("load"), expected);
    drop(disk);
    let reopened = DiskStore::open(tmp.path()).expect("reopen");
    assert_eq!(reopened.load().expect("load"), expected);
}

#[test]
fn snapshot_reports_orphans_and_repair_removes_them() {
    let mut store = MemoryStore::new();
    let mut b = Batch::new();
    b.put_message(MessageId(1), message(1)); // retained
    b.put_message(MessageId(2), message(2)); // queued
    b.put_message(MessageId(3), message(3)); // orphan: its last reference went before a crash
    b.put_retained("r", MessageId(1));
    b.put_retained("gone", MessageId(40)); // dangling
    b.put_session("c", session(1));
    b.put_delivery("c", 0, delivery(2, DeliveryState::Queued));
    b.put_delivery("c", 1, delivery(41, DeliveryState::Queued)); // dangling
    b.put_delivery("stray", 0, delivery(2, DeliveryState::Queued)); // no session record
    store.commit(&b, Flush::Os).expect("commit");

    let mut s = store.load().expect("load");
    assert_eq!(s.orphaned_messages(), [MessageId(3)]);
    assert_eq!(s.stray_clients.iter().collect::<Vec<_>>(), ["stray"]);
    assert_eq!(s.reference_counts()[&MessageId(2)], 1);

    let repair = s.repair();
    assert_eq!(repair.len(), 4);
    store.commit(&repair, Flush::Os).expect("commit repair");
    let after = store.load().expect("load");
    assert_eq!(after, s);
    assert!(after.orphaned_messages().is_empty());
    assert_eq!(after.messages.keys().map(|id| id.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(after.sessions["c"].deliveries.len(), 1);
    assert!(Snapshot::clone(&after).repair().is_empty());
}

#[test]
fn a_directory_with_other_files_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("notes.txt"), b"mine").expect("write");
    let err = DiskStore::open(tmp.path()).expect_err("foreign directory");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()), "{err}");
}

#[test]
fn a_store_from_a_newer_midge_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(DiskStore::open(tmp.path()).expect("create"));
    let marker = tmp.path().join("midge-store");
    let text = std::fs::read_to_string(&marker).expect("marker");
    let newer = FORMAT_VERSION + 1;
    std::fs::write(
        &marker,
        text.replace(&format!("format_version = {FORMAT_VERSION}"), &format!("format_version = {newer}")),
    )
    .expect("write");
    let err = DiskStore::open(tmp.path()).expect_err("newer format");
    match &err {
        StoreError::NewerFormat { path, found, supported } => {
            assert_eq!(path, &marker);
            assert_eq!((*found, *supported), (newer, FORMAT_VERSION));
        }
        other => panic!("expected NewerFormat, got {other}"),
    }
    assert!(err.to_string().contains("upgrade Midge"), "{err}");
}

#[test]
fn a_damaged_marker_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(DiskStore::open(tmp.path()).expect("create"));
    let marker = tmp.path().join("midge-store");
    let bytes = std::fs::read(&marker).expect("read");
    std::fs::write(&marker, &bytes[..bytes.len() / 2]).expect("truncate");
    assert_corrupt(DiskStore::open(tmp.path()).map(|_| ()), &marker);
}

#[test]
fn a_deleted_marker_over_existing_data_is_not_a_new_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open(tmp.path()).expect("create");
    apply_all(&mut store, &varied_batches());
    drop(store);
    std::fs::remove_file(tmp.path().join("midge-store")).expect("remove marker");
    assert_corrupt(DiskStore::open(tmp.path()).map(|_| ()), &tmp.path().join("fjall"));
}

#[test]
fn missing_engine_files_are_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(DiskStore::open(tmp.path()).expect("create"));
    std::fs::remove_dir_all(tmp.path().join("fjall")).expect("remove");
    assert_corrupt(DiskStore::open(tmp.path()).map(|_| ()), &tmp.path().join("fjall"));
}

#[test]
fn a_flipped_byte_in_the_journal_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open(tmp.path()).expect("create");
    apply_all(&mut store, &varied_batches());
    drop(store);
    // Flip a byte inside a payload the store wrote: the journal's checksum catches it.
    let journal = journal_file(tmp.path());
    let mut bytes = std::fs::read(&journal).expect("read journal");
    let needle = b"reading number 00000004";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("payload in the journal");
    bytes[at + 5] ^= 0x20;
    std::fs::write(&journal, bytes).expect("write journal");
    let result = DiskStore::open(tmp.path()).and_then(|s| s.load().map(|_| ()));
    assert_corrupt(result, &tmp.path().join("fjall"));
}

#[test]
fn a_truncated_journal_is_a_clear_error_not_a_silent_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open(tmp.path()).expect("create");
    apply_all(&mut store, &varied_batches());
    drop(store);
    // The engine takes a short journal for a torn tail and drops it quietly; the durable
    // watermark shows that commits it had made durable are gone.
    let journal = journal_file(tmp.path());
    let bytes = std::fs::read(&journal).expect("read journal");
    let used = bytes.iter().rposition(|b| *b != 0).expect("journal has data") + 1;
    std::fs::write(&journal, &bytes[..used / 2]).expect("truncate journal");
    let result = DiskStore::open(tmp.path()).and_then(|s| s.load().map(|_| ()));
    let err = assert_corrupt(result, &tmp.path().join("fjall"));
    assert!(err.contains("was made durable"), "{err}");
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _first = DiskStore::open(tmp.path()).expect("open");
    let err = DiskStore::open(tmp.path()).expect_err("second open");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

/// Asserts a [`StoreError::Corrupt`] naming `path` and saying what to do; returns its text.
fn assert_corrupt(result: Result<(), StoreError>, path: &Path) -> String {
    match result {
        Err(err @ StoreError::Corrupt { .. }) => {
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "error does not name {}: {text}", path.display());
            assert!(text.contains("move it away"), "error does not say what to do: {text}");
            text
        }
        Err(other) => panic!("expected Corrupt naming {}, got: {other}", path.display()),
        Ok(()) => panic!("a damaged store opened without error"),
    }
}

fn journal_file(dir: &Path) -> PathBuf {
    let mut journals: Vec<PathBuf> = std::fs::read_dir(dir.join("fjall"))
        .expect("engine dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    journals.sort();
    journals.pop().expect("a journal file")
}
