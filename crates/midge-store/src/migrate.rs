//! Format versions and the steps that migrate a store from one to the next.
//!
//! The format version lives in the `meta` table (authoritative) and in the marker file (read
//! first, so a newer store is refused before the engine touches it). Each step rewrites what it
//! must and bumps the version in the same atomic, fsynced engine batch, so a crash mid-migration
//! leaves a store at one version or the next, never between; the marker follows afterwards.
//!
//! # Versions
//! - 0: before the first release, retained values were the bare 8-byte big-endian message id,
//!   without a record version byte. No store in the field has it; it exists so the migration
//!   path is exercised by a test from the start.
//! - 1: the layout in [`layout`](crate::layout) without the `topic_ids` table.
//! - 2: the `topic_ids` table (a session's MQTT-SN topic ids, decision 0008). The engine
//!   creates the empty table when it opens a store of format 1; the step only bumps the
//!   version, so a format 1 store is read by this build and refused by older ones once
//!   migrated.

use crate::disk::DiskStore;
use crate::error::StoreError;
use crate::layout::{self, Read, Table, WriteSet, META_FORMAT_VERSION};
use crate::records::MessageId;
use crate::store::Flush;

/// The format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

/// One migration step: reads the store at version `from` and returns the writes that make it
/// version `from + 1` (the version bump is added by [`migrate`]).
struct Step {
    /// The version it migrates from.
    from: u32,
    /// What it changes, for the log.
    what: &'static str,
    /// The rewrite.
    run: fn(&dyn Read) -> Result<WriteSet, String>,
}

/// Every step, in order.
const STEPS: &[Step] = &[
    Step { from: 0, what: "retained values get a record version", run: v0_to_v1 },
    Step { from: 1, what: "a table for sessions' topic ids", run: v1_to_v2 },
];

/// Migrates `store` from format `from` to [`FORMAT_VERSION`], one step at a time.
pub(crate) fn migrate(store: &mut DiskStore, from: u32) -> Result<(), StoreError> {
    for version in from..FORMAT_VERSION {
        let step = STEPS.iter().find(|s| s.from == version).ok_or_else(|| StoreError::Corrupt {
            path: store.dir().to_path_buf(),
            detail: format!("format version {version} is not one this Midge can migrate from"),
        })?;
        tracing::info!(dir = %store.dir().display(), from = version, to = version + 1, what = step.what, "migrating the store");
        let mut writes = (step.run)(store).map_err(|detail| StoreError::Corrupt {
            path: store.dir().to_path_buf(),
            detail: format!("migrating from format {version}: {detail}"),
        })?;
        writes.insert((Table::Meta, META_FORMAT_VERSION.to_vec()), Some((version + 1).to_be_bytes().to_vec()));
        store.write(writes, Flush::Disk)?;
    }
    Ok(())
}

/// Version 1 → 2: the `topic_ids` table, which the engine created empty when it opened the
/// store; nothing to rewrite.
fn v1_to_v2(_read: &dyn Read) -> Result<WriteSet, String> {
    Ok(WriteSet::new())
}

/// Version 0 → 1: retained values from a bare big-endian id to a versioned record.
fn v0_to_v1(read: &dyn Read) -> Result<WriteSet, String> {
    let mut writes = WriteSet::new();
    read.for_each(Table::Retained, &mut |key, value| {
        let id = layout::be_u64(value).map_err(|e| StoreError::Corrupt {
            path: "retained".into(),
            detail: format!("{:?}: {e}", String::from_utf8_lossy(key)),
        })?;
        writes.insert((Table::Retained, key.to_vec()), Some(layout::encode_value(&MessageId(id))));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::Batch;
    use crate::disk::{ENGINE_DIR, ENGINE_TABLES_DIR, MARKER_FILE};
    use crate::records::{MessageRecord, SessionRecord};
    use crate::store::Store;

    /// Makes a version 0 store the way the pre-release code wrote it, then opens it.
    #[test]
    fn opens_a_v0_store_and_migrates_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let message = MessageRecord {
            topic: "plant/7/state".into(),
            payload: Bytes::from_static(b"running"),
            qos: 1,
            retain: true,
            shared_properties: Bytes::new(),
            expires_at_unix_ms: None,
            publisher_session: None,
        };
        let store_id = {
            let mut store = DiskStore::open(dir.path()).expect("create");
            let mut batch = Batch::new();
            batch.put_message(MessageId(7), message.clone());
            store.commit(&batch, Flush::Disk).expect("commit");
            // The v0 fixture: a bare id as the retained value and version 0 in meta and marker.
            let mut writes = WriteSet::new();
            writes.insert((Table::Retained, b"plant/7/state".to_vec()), Some(7u64.to_be_bytes().to_vec()));
            writes.insert((Table::Meta, META_FORMAT_VERSION.to_vec()), Some(0u32.to_be_bytes().to_vec()));
            store.write(writes, Flush::Disk).expect("write v0");
            store.store_id()
        };
        let marker = dir.path().join(MARKER_FILE);
        let text = std::fs::read_to_string(&marker).expect("marker");
        let current = format!("format_version = {FORMAT_VERSION}");
        std::fs::write(&marker, text.replace(&current, "format_version = 0")).expect("marker v0");

        let store = DiskStore::open(dir.path()).expect("open and migrate v0");
        assert_eq!(store.store_id(), store_id);
        let snapshot = store.load().expect("load");
        assert_eq!(snapshot.retained.get("plant/7/state"), Some(&MessageId(7)));
        assert_eq!(snapshot.messages.get(&MessageId(7)), Some(&message));
        drop(store);
        assert!(std::fs::read_to_string(&marker).expect("marker").contains(&current));
        // Migrated once: a second open finds the current version and changes nothing.
        let again = DiskStore::open(dir.path()).expect("reopen").load().expect("load");
        assert_eq!(again, snapshot);
    }

    /// A format 1 store has no `topic_ids` table: it opens (the engine adds the table), is
    /// migrated to format 2, keeps its sessions, and takes topic ids from then on.
    #[test]
    fn opens_a_v1_store_without_the_topic_ids_table_and_migrates_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = SessionRecord {
            session_id: 3,
            protocol_level: 4,
            expiry_interval: u32::MAX,
            expires_at_unix_ms: None,
            delayed_will: None,
        };
        {
            let mut store = DiskStore::open(dir.path()).expect("create");
            let mut batch = Batch::new();
            batch.put_session("sensor", session.clone());
            store.commit(&batch, Flush::Disk).expect("commit");
            let mut writes = WriteSet::new();
            writes.insert((Table::Meta, META_FORMAT_VERSION.to_vec()), Some(1u32.to_be_bytes().to_vec()));
            store.write(writes, Flush::Disk).expect("write v1");
        }
        // The v1 fixture: the marker says 1, and the last table (created last) is not there.
        let marker = dir.path().join(MARKER_FILE);
        let text = std::fs::read_to_string(&marker).expect("marker");
        let current = format!("format_version = {FORMAT_VERSION}");
        std::fs::write(&marker, text.replace(&current, "format_version = 1")).expect("marker v1");
        let tables = dir.path().join(ENGINE_DIR).join(ENGINE_TABLES_DIR);
        let last = std::fs::read_dir(&tables)
            .expect("tables")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .expect("a table");
        assert_eq!(last as usize, Table::ALL.len(), "the engine's own table is 0, then ours in order");
        std::fs::remove_dir_all(tables.join(last.to_string())).expect("remove the topic_ids table");

        let mut store = DiskStore::open(dir.path()).expect("open and migrate v1");
        assert!(std::fs::read_to_string(&marker).expect("marker").contains(&current));
        let mut batch = Batch::new();
        batch.put_topic_id("sensor", 1, "a/b");
        store.commit(&batch, Flush::Disk).expect("commit");
        drop(store);
        let snapshot = DiskStore::open(dir.path()).expect("reopen").load().expect("load");
        let sensor = &snapshot.sessions["sensor"];
        assert_eq!(sensor.record, session);
        assert_eq!(sensor.topic_ids, vec![(1, "a/b".to_owned())]);
    }

    #[test]
    fn every_version_below_the_current_has_a_step() {
        for version in 0..FORMAT_VERSION {
            assert!(STEPS.iter().any(|s| s.from == version), "no step from {version}");
        }
    }
}
