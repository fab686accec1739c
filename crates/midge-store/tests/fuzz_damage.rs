//! Damage the `store_recovery` fuzz target (fuzz/README.md) found recovery to get wrong: each
//! must be refused as a damaged store. A test marked `#[ignore]` shows a defect not fixed yet;
//! its reason says what the fix is.

mod common;

use std::path::{Path, PathBuf};

use common::session;
use common::varied_batches;
use midge_store::{Batch, DiskStore, Flush, Store, StoreError};

/// A store holding every kind of row, closed; returns its directory.
fn written_store() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open(tmp.path()).expect("open");
    for batch in varied_batches() {
        store.commit(&batch, Flush::Disk).expect("commit");
    }
    tmp
}

/// The engine's directory of every table, sorted by the engine's table number.
fn table_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("fjall/keyspaces"))
        .expect("keyspaces")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, path)| path).collect()
}

fn assert_refused(dir: &Path, damaged: &Path) {
    let result = DiskStore::open(dir).and_then(|store| store.load());
    match result {
        Err(err @ StoreError::Corrupt { .. }) => {
            let text = err.to_string();
            assert!(text.contains(&damaged.display().to_string()), "error does not name {}: {text}", damaged.display());
        }
        Err(other) => panic!("expected Corrupt, got: {other}"),
        Ok(snapshot) => panic!("a store without a table's files loaded: {} sessions", snapshot.sessions.len()),
    }
    // And again: the first attempt must not have turned the damage into an empty table.
    assert!(DiskStore::open(dir).and_then(|store| store.load()).is_err(), "refused once, then loaded");
}

/// fjall takes a table directory without its version file (`current`) for one whose creation
/// was interrupted, deletes it and starts the table empty; every table of a store with a marker
/// was created in full, so the file is missing by damage.
#[test]
fn a_table_without_its_version_file_is_refused() {
    for index in 0..table_dirs(written_store().path()).len() {
        let tmp = written_store();
        let table = table_dirs(tmp.path())[index].clone();
        std::fs::remove_file(table.join("current")).expect("remove current");
        assert_refused(tmp.path(), &table);
    }
}

/// A table directory gone altogether: fjall would create the table again, empty.
#[test]
fn a_missing_table_directory_is_refused() {
    let tmp = written_store();
    let table = table_dirs(tmp.path())[5].clone();
    std::fs::remove_dir_all(&table).expect("remove the table's directory");
    assert_refused(tmp.path(), &tmp.path().join("fjall/keyspaces"));
}

/// Without its marker, a directory is taken for one where a store's creation was interrupted,
/// and a store is created there, as long as the engine's tables are empty. With the journal
/// lost too (the tables' data lives there until it is flushed), they are: the durable-commit
/// watermark, which says commits were made, must stop the empty start.
#[test]
fn a_store_without_its_marker_and_journal_is_not_started_empty() {
    let tmp = written_store();
    std::fs::remove_file(tmp.path().join("midge-store")).expect("remove the marker");
    let journals: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("fjall"))
        .expect("engine dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    for journal in &journals {
        std::fs::write(journal, b"").expect("empty the journal");
    }
    assert_refused(tmp.path(), &tmp.path().join("fjall"));
}

/// A creation interrupted after its first commit (the watermark says 1) and before the marker
/// is still finished by the next open.
#[test]
fn a_creation_interrupted_before_its_marker_is_finished() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(DiskStore::open(tmp.path()).expect("create"));
    std::fs::remove_file(tmp.path().join("midge-store")).expect("remove the marker");
    let store = DiskStore::open(tmp.path()).expect("created again");
    assert!(store.load().expect("load").sessions.is_empty());
}

const CHILD_DIR: &str = "MIDGE_STORE_FUZZ_DAMAGE_CHILD_DIR";

/// The child of [`a_damaged_table_version_file_is_an_error_not_an_abort`]: opens the store it is
/// given and prints the outcome (it may never get to, which is the defect).
#[test]
fn open_damaged_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    match DiskStore::open(&dir).and_then(|store| store.load()) {
        Ok(_) => println!("outcome: loaded"),
        Err(error) => println!("outcome: {error}"),
    }
}

/// A flipped bit in a table's version file (`keyspaces/N/vM`, the file its `current` names)
/// makes lsm-tree assert while fjall recovers the table with a lock held; the lock is poisoned,
/// fjall's `Drop` then panics on it during the unwinding, and the process aborts: midge-store's
/// `catch_unwind` never got the panic, and the broker died at start instead of saying the store
/// is damaged. Now each version file is checked against the checksum in `current` before the
/// engine opens it. Run in a child process, since the defect aborts it.
#[test]
fn a_damaged_table_version_file_is_an_error_not_an_abort() {
    let tmp = written_store();
    let table = table_dirs(tmp.path())[4].clone();
    let current = std::fs::read(table.join("current")).expect("current");
    let version = u64::from_le_bytes(current[..8].try_into().expect("8 bytes"));
    let file = table.join(format!("v{version}"));
    let mut bytes = std::fs::read(&file).expect("version file");
    bytes[8] ^= 0xff;
    std::fs::write(&file, bytes).expect("write");

    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["open_damaged_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, tmp.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child died ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("outcome: the store at"), "not refused as damaged: {stdout}");
}

/// fjall checks each journal batch against an xxh3 checksum of its items, but the batch's
/// header (item count and sequence number) is outside it. A flipped bit that lowers a batch's
/// sequence number below the one before makes its writes older than that batch's: a key both
/// wrote reverts to the older value, and the store loads a state that was never committed,
/// with every commit number in place (so the durable-commit watermark does not see it).
/// fjall cannot tell; midge-store checks before it opens the engine that the journal's batch
/// sequence numbers never fall (`journal_check`).
#[test]
fn a_flipped_bit_in_a_journal_batch_header_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open(tmp.path()).expect("open");
    for (client, id) in [("c", 1), ("c", 2), ("d", 3)] {
        let mut batch = Batch::new();
        batch.put_session(client, session(id));
        store.commit(&batch, Flush::Disk).expect("commit");
    }
    drop(store);

    // The journal's entries: Start (tag 1, count u32, seqno u64), Item (tag 2, ..., key and
    // value lengths at 11 and 17, 21 bytes before the key), End (tag 3, 12 more bytes).
    let journal = std::fs::read_dir(tmp.path().join("fjall"))
        .expect("engine dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jnl"))
        .expect("a journal");
    let mut bytes = std::fs::read(&journal).expect("journal");
    let (mut pos, mut starts) = (0, Vec::new());
    while pos < bytes.len() && bytes[pos] != 0 {
        match bytes[pos] {
            1 => {
                starts.push(pos);
                pos += 13;
            }
            2 => {
                let key = usize::from(u16::from_le_bytes([bytes[pos + 11], bytes[pos + 12]]));
                let value = u32::from_le_bytes(bytes[pos + 17..pos + 21].try_into().unwrap()) as usize;
                pos += 21 + key + value;
            }
            _ => pos += 13,
        }
    }
    // The second to last batch put session 2 over the session 1 of the one before: lower its
    // seqno below that one's. The last batch keeps the commit number up to date.
    let last = starts[starts.len() - 2];
    let seqno = u64::from_le_bytes(bytes[last + 5..last + 13].try_into().unwrap());
    let lowered = seqno & !(1 << (63 - seqno.leading_zeros()));
    bytes[last + 5..last + 13].copy_from_slice(&lowered.to_le_bytes());
    std::fs::write(&journal, bytes).expect("write");

    match DiskStore::open(tmp.path()).and_then(|store| store.load()) {
        Err(StoreError::Corrupt { .. }) => {}
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(snapshot) => {
            panic!(
                "loaded a state never committed: session {:?}",
                snapshot.sessions.get("c").map(|s| s.record.session_id)
            )
        }
    }
}
