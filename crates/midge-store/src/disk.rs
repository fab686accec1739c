//! The store on disk, on fjall (chosen in docs/decisions/0001-store-engine.md).
//!
//! # Files
//! The data directory holds:
//! - `midge-store`: the marker, a small text file with the format version and the store id. It
//!   is written (atomically: temporary file, fsync, rename) only once the engine holds the same
//!   two values durably, so a directory without it never holds broker data: an open that finds
//!   no marker creates a store, one that finds it insists on reading the store. Its version is
//!   read before the engine is touched, so a store from a newer Midge (maybe a newer engine
//!   format too) gets a clear "upgrade" error rather than an engine error.
//! - `durable-commit`: the number of the last commit known durable (16 bytes: the number and
//!   its complement), overwritten after each fsync. The engine tolerates a torn journal tail by
//!   dropping it silently, as it must after a power cut; but it cannot tell a torn tail from a
//!   truncated or damaged journal. Every commit also stores its number in the `meta` table, so
//!   on open a store that ends before the watermark has lost durable data: a [`StoreError::Corrupt`]
//!   instead of a silent loss. The watermark is written after the fsync that made its commit
//!   durable and is itself never fsynced, so it can lag (no check) but never lead (no false alarm).
//! - `fjall/`: the engine's directory.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::batch::Batch;
use crate::compactor::Compactor;
use crate::error::StoreError;
use crate::journal_check;
use crate::layout::{self, Read, RowVisitor, Table, WriteSet, META_COMMIT_SEQ, META_FORMAT_VERSION, META_STORE_ID};
use crate::migrate::{self, FORMAT_VERSION};
use crate::snapshot::Snapshot;
use crate::store::{Flush, Store};

/// The marker file's name.
pub const MARKER_FILE: &str = "midge-store";
/// The watermark file's name.
const WATERMARK_FILE: &str = "durable-commit";
/// The engine's directory.
pub(crate) const ENGINE_DIR: &str = "fjall";
/// The file fjall writes first in its directory; without it fjall would create a new database
/// over whatever else is there.
const ENGINE_VERSION_FILE: &str = "version";
/// The engine's directory of tables, one directory each, numbered.
pub(crate) const ENGINE_TABLES_DIR: &str = "keyspaces";
/// The file in a table's directory that names its current version; fjall writes it atomically.
const ENGINE_TABLE_VERSION_FILE: &str = "current";

/// Bound on the engine's journals. fjall deletes a journal once every table has flushed what it
/// holds; this bound forces those flushes. 64 MiB is fjall's minimum (default 512 MiB) and what
/// bounds the directory's size under a steady load (see the decision record).
const MAX_JOURNALING_BYTES: u64 = 64 * 1024 * 1024;
/// Per-table memtable size (fjall's default is 64 MiB): the live set of a broker is small, so
/// smaller memtables flush sooner and let journals go sooner.
const MAX_MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;

/// The store on disk: one directory, safe from `kill -9` for every commit and from power loss
/// for commits made with [`Flush::Disk`] or followed by [`Store::sync`].
pub struct DiskStore {
    /// Compacts the tables deletes fill; first, so it stops before the engine closes.
    compactor: Compactor,
    /// The data directory, for errors.
    dir: PathBuf,
    /// The engine's directory, for errors about its files.
    engine_dir: PathBuf,
    /// The engine.
    db: fjall::Database,
    /// One keyspace per [`Table`], indexed by `Table as usize`.
    tables: Vec<fjall::Keyspace>,
    /// This store's identifier.
    store_id: u128,
    /// The number of the last commit.
    commit_seq: u64,
    /// The durable-commit watermark file.
    watermark: File,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.dir)
            .field("commit_seq", &self.commit_seq)
            .finish_non_exhaustive()
    }
}

impl DiskStore {
    /// Opens the store in `dir`, creating the directory and an empty store if there is none.
    ///
    /// Refuses, with an error naming the file and what to do, a directory that holds other
    /// files, a store from a newer Midge, a damaged store, or one another process has open.
    /// An older format is migrated in place.
    pub fn open(dir: impl AsRef<Path>) -> Result<DiskStore, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|error| StoreError::Io { path: dir.to_path_buf(), error })?;
        let marker_path = dir.join(MARKER_FILE);
        match read_marker(&marker_path)? {
            None => Self::create(dir),
            Some(marker) => Self::open_existing(dir, marker),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's identifier, chosen at creation.
    pub fn store_id(&self) -> u128 {
        self.store_id
    }

    /// Full compactions of the delivery and message tables so far (see `compactor.rs`): how
    /// often deleted records had piled up to twice the tables' compacted size.
    pub fn compactions(&self) -> u64 {
        self.compactor.compactions()
    }

    /// Bytes the store's files take on disk (allocated blocks): what "the store stays flat"
    /// is measured in.
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        disk_usage(&self.dir)
    }

    /// A new store in `dir`, which must be empty but for an engine directory left by a creation
    /// that was interrupted before the marker was written (it holds no broker data then).
    fn create(dir: &Path) -> Result<DiskStore, StoreError> {
        let io = |error| StoreError::Io { path: dir.to_path_buf(), error };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if name != ENGINE_DIR && name != WATERMARK_FILE && name != marker_tmp_name().as_str() {
                return Err(StoreError::NotAStore { path: dir.to_path_buf(), marker: MARKER_FILE });
            }
        }
        // Commit 1 creates a store, and the marker follows it before any other commit: a
        // watermark past 1 says a store with data was here, whose marker and journal are gone
        // (the tables are checked below, but a lost journal leaves them empty). An unreadable
        // watermark may be one torn while a creation was interrupted: no evidence either way.
        if let Ok(durable) = read_watermark(&dir.join(WATERMARK_FILE)) {
            if durable > 1 {
                let detail = format!(
                    "there is no {MARKER_FILE} file, but {WATERMARK_FILE} says commit {durable} of a store \
                     here was made durable: the store's files are missing"
                );
                return Err(StoreError::Corrupt { path: dir.join(ENGINE_DIR), detail });
            }
        }
        let mut store = Self::open_engine(dir, 0)?;
        for table in Table::ALL {
            if table != Table::Meta && !store.keys_with_prefix(table, &[])?.is_empty() {
                return Err(StoreError::Corrupt {
                    path: store.engine_dir.clone(),
                    detail: format!("table {} holds data but there is no {MARKER_FILE} file", table.name()),
                });
            }
        }
        store.store_id = new_store_id();
        store.commit_seq = 0;
        let mut writes = WriteSet::new();
        writes.insert((Table::Meta, META_FORMAT_VERSION.to_vec()), Some(FORMAT_VERSION.to_be_bytes().to_vec()));
        writes.insert((Table::Meta, META_STORE_ID.to_vec()), Some(store.store_id.to_be_bytes().to_vec()));
        store.write(writes, Flush::Disk)?;
        write_marker(dir, Marker { format_version: FORMAT_VERSION, store_id: store.store_id })?;
        tracing::info!(dir = %dir.display(), store_id = %format!("{:032x}", store.store_id), "created a new store");
        Ok(store)
    }

    /// Opens the store a marker says is there, checks it, and migrates an older format.
    fn open_existing(dir: &Path, marker: Marker) -> Result<DiskStore, StoreError> {
        let marker_path = dir.join(MARKER_FILE);
        if marker.format_version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: marker_path,
                found: marker.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let engine_dir = dir.join(ENGINE_DIR);
        if !engine_dir.join(ENGINE_VERSION_FILE).is_file() {
            return Err(StoreError::Corrupt {
                path: engine_dir,
                detail: format!("the engine's files are missing (no {ENGINE_VERSION_FILE} file)"),
            });
        }
        check_tables(&engine_dir, marker.format_version)?;
        journal_check::check_journal_order(&engine_dir)?;
        let watermark = read_watermark(&dir.join(WATERMARK_FILE))?;
        let mut store = Self::open_engine(dir, watermark)?;
        let corrupt = |detail: String| StoreError::Corrupt { path: store.engine_dir.clone(), detail };

        let version =
            store.meta(META_FORMAT_VERSION)?.ok_or_else(|| corrupt("no format version in table meta".into()))?;
        let version = u32::from_be_bytes(
            version.as_slice().try_into().map_err(|_| corrupt("format version is not 4 bytes".into()))?,
        );
        let store_id = store.meta(META_STORE_ID)?.ok_or_else(|| corrupt("no store id in table meta".into()))?;
        let store_id = u128::from_be_bytes(
            store_id.as_slice().try_into().map_err(|_| corrupt("store id is not 16 bytes".into()))?,
        );
        if store_id != marker.store_id {
            return Err(corrupt(format!(
                "the engine's files belong to store {store_id:032x}, but {MARKER_FILE} names store {:032x}",
                marker.store_id
            )));
        }
        store.store_id = store_id;
        let commit_seq = match store.meta(META_COMMIT_SEQ)? {
            Some(bytes) => layout::be_u64(&bytes).map_err(|e| corrupt(format!("commit number: {e}")))?,
            None => 0,
        };
        if commit_seq < watermark {
            return Err(corrupt(format!(
                "commit {watermark} was made durable ({WATERMARK_FILE}) but the store ends at commit {commit_seq}: \
                 the engine's journal was truncated or damaged"
            )));
        }
        store.commit_seq = commit_seq;
        if version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: store.engine_dir.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version < FORMAT_VERSION {
            migrate::migrate(&mut store, version)?;
        }
        if marker.format_version != FORMAT_VERSION {
            write_marker(dir, Marker { format_version: FORMAT_VERSION, store_id })?;
        }
        Ok(store)
    }

    /// Opens (or creates) the engine and its tables.
    fn open_engine(dir: &Path, watermark: u64) -> Result<DiskStore, StoreError> {
        let engine_dir = dir.join(ENGINE_DIR);
        let opened = catch_unwind(AssertUnwindSafe(|| -> Result<_, fjall::Error> {
            let db = fjall::Database::builder(&engine_dir).max_journaling_size(MAX_JOURNALING_BYTES).open()?;
            let options = || fjall::KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_BYTES);
            let tables = Table::ALL.iter().map(|t| db.keyspace(t.name(), options)).collect::<Result<Vec<_>, _>>()?;
            Ok((db, tables))
        }));
        let (db, tables) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(fjall::Error::Locked)) => return Err(StoreError::Locked { path: dir.to_path_buf() }),
            Ok(Err(fjall::Error::Io(error))) => return Err(StoreError::Io { path: engine_dir, error }),
            Ok(Err(e)) => {
                return Err(StoreError::Corrupt { path: engine_dir, detail: format!("the engine cannot open it: {e}") })
            }
            Err(panic) => {
                return Err(StoreError::Corrupt {
                    path: engine_dir,
                    detail: format!("the engine failed opening it: {}", panic_message(&panic)),
                })
            }
        };
        let watermark_path = dir.join(WATERMARK_FILE);
        let watermark_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&watermark_path)
            .map_err(|error| StoreError::Io { path: watermark_path, error })?;
        let compactor = Compactor::start(vec![
            tables[Table::Messages as usize].clone(),
            tables[Table::Deliveries as usize].clone(),
        ])
        .map_err(|error| StoreError::Io { path: dir.to_path_buf(), error })?;
        let mut store = DiskStore {
            compactor,
            dir: dir.to_path_buf(),
            engine_dir,
            db,
            tables,
            store_id: 0,
            commit_seq: 0,
            watermark: watermark_file,
        };
        // A fresh file: record what was read, so a failed open leaves no weaker check behind.
        store.record_watermark(watermark);
        Ok(store)
    }

    /// A value of the `meta` table.
    fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.keyspace(Table::Meta).get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| self.read_error(e))
    }

    /// The engine's directory, named in errors.
    pub(crate) fn engine_dir(&self) -> &Path {
        &self.engine_dir
    }

    pub(crate) fn keyspace(&self, table: Table) -> &fjall::Keyspace {
        &self.tables[table as usize]
    }

    /// Writes `writes` and the next commit number in one engine batch.
    pub(crate) fn write(&mut self, writes: WriteSet, flush: Flush) -> Result<(), StoreError> {
        let seq = self.commit_seq + 1;
        let mode = match flush {
            Flush::Os => fjall::PersistMode::Buffer,
            Flush::Disk => fjall::PersistMode::SyncData,
        };
        let mut batch = self.db.batch().durability(Some(mode));
        for ((table, key), value) in writes {
            match value {
                Some(value) => batch.insert(self.keyspace(table), key, value),
                None => batch.remove(self.keyspace(table), key),
            }
        }
        batch.insert(self.keyspace(Table::Meta), META_COMMIT_SEQ, seq.to_be_bytes());
        batch.commit().map_err(|e| self.write_error(e))?;
        self.commit_seq = seq;
        if flush == Flush::Disk {
            self.record_watermark(seq);
        }
        Ok(())
    }

    /// Records that commit `seq` is durable. A failure only weakens the check on open, so it is
    /// logged, not returned: the commit itself is durable.
    fn record_watermark(&mut self, seq: u64) {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        bytes[8..].copy_from_slice(&(!seq).to_be_bytes());
        let written = self.watermark.seek(SeekFrom::Start(0)).and_then(|_| self.watermark.write_all(&bytes));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot record the durable commit number");
        }
    }

    fn read_error(&self, e: fjall::Error) -> StoreError {
        match e {
            fjall::Error::Io(error) => StoreError::Io { path: self.engine_dir.clone(), error },
            e => StoreError::Corrupt { path: self.engine_dir.clone(), detail: format!("reading failed: {e}") },
        }
    }

    fn write_error(&self, e: fjall::Error) -> StoreError {
        StoreError::WriteFailed { path: self.engine_dir.clone(), detail: e.to_string() }
    }
}

impl Read for DiskStore {
    fn keys_with_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        for guard in self.keyspace(table).prefix(prefix) {
            keys.push(guard.key().map_err(|e| self.read_error(e))?.to_vec());
        }
        Ok(keys)
    }

    fn for_each(&self, table: Table, f: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        for guard in self.keyspace(table).iter() {
            let (key, value) = guard.into_inner().map_err(|e| self.read_error(e))?;
            f(&key, &value)?;
        }
        Ok(())
    }
}

impl Store for DiskStore {
    fn commit(&mut self, batch: &Batch, flush: Flush) -> Result<(), StoreError> {
        let writes = layout::plan(batch, self)?;
        self.write(writes, flush)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.persist(fjall::PersistMode::SyncData).map_err(|e| self.write_error(e))?;
        self.record_watermark(self.commit_seq);
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        // The engine may panic on damaged files it reads lazily; recovery must get an error.
        match catch_unwind(AssertUnwindSafe(|| Snapshot::read(self, &self.engine_dir))) {
            Ok(result) => result,
            Err(panic) => Err(StoreError::Corrupt {
                path: self.engine_dir.clone(),
                detail: format!("the engine failed reading it: {}", panic_message(&panic)),
            }),
        }
    }
}

/// The marker file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    format_version: u32,
    store_id: u128,
}

fn marker_tmp_name() -> String {
    format!("{MARKER_FILE}.tmp")
}

/// Reads the marker; `None` if there is none.
fn read_marker(path: &Path) -> Result<Option<Marker>, StoreError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::Io { path: path.to_path_buf(), error }),
    };
    let corrupt = |detail: &str| StoreError::Corrupt { path: path.to_path_buf(), detail: detail.to_owned() };
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8 text"))?;
    let (mut version, mut store_id) = (None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').ok_or_else(|| corrupt("a line is not `key = value`"))?;
        match key.trim() {
            "format_version" => version = Some(value.trim().parse().map_err(|_| corrupt("bad format_version"))?),
            "store_id" => {
                store_id = Some(
                    u128::from_str_radix(value.trim().trim_matches('"'), 16).map_err(|_| corrupt("bad store_id"))?,
                )
            }
            _ => {}
        }
    }
    match (version, store_id) {
        (Some(format_version), Some(store_id)) => Ok(Some(Marker { format_version, store_id })),
        _ => Err(corrupt("format_version or store_id missing")),
    }
}

/// Writes the marker atomically: a temporary file, fsynced, renamed over, directory fsynced.
fn write_marker(dir: &Path, marker: Marker) -> Result<(), StoreError> {
    let tmp = dir.join(marker_tmp_name());
    let text = format!(
        "# A Midge store: messages, retained messages and sessions that must survive a restart.\n\
         # Do not edit. To start empty, stop midge and move this whole directory away.\n\
         format_version = {}\n\
         store_id = \"{:032x}\"\n",
        marker.format_version, marker.store_id
    );
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| StoreError::Io { path, error }
    };
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    let path = dir.join(MARKER_FILE);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Checks that every table's directory is whole before the engine opens them: fjall deletes a
/// table directory that lacks its version file, taking it for one whose creation was
/// interrupted, and creates a missing one anew, so either would load as an empty table. In a
/// store with a marker every table was created in full (the marker is written after), so both
/// are damage. Found by the `store_recovery` fuzz target. A store of an older format
/// `version` has the tables of that format ([`Table::count_in_format`]); the engine adds the
/// newer ones when it opens it.
fn check_tables(engine_dir: &Path, version: u32) -> Result<(), StoreError> {
    let keyspaces = engine_dir.join(ENGINE_TABLES_DIR);
    let corrupt = |path: &Path, detail: String| StoreError::Corrupt { path: path.to_path_buf(), detail };
    let io = |error| StoreError::Io { path: keyspaces.clone(), error };
    let entries = match std::fs::read_dir(&keyspaces) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(&keyspaces, "the engine's table directory is missing".to_owned()))
        }
        Err(error) => return Err(io(error)),
    };
    let mut tables = 0;
    for entry in entries {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let path = entry.path();
        if !path.join(ENGINE_TABLE_VERSION_FILE).is_file() {
            let detail = format!("a table has lost its {ENGINE_TABLE_VERSION_FILE} file");
            return Err(corrupt(&path, detail));
        }
        check_table_version(&path)?;
        // The engine's own table is 0; Midge's tables are the others.
        if entry.file_name() != "0" {
            tables += 1;
        }
    }
    let expected = Table::count_in_format(version);
    if tables < expected {
        let detail = format!("{tables} of the store's {expected} tables are there");
        return Err(corrupt(&keyspaces, detail));
    }
    Ok(())
}

/// The size of a table's `current` file in lsm-tree 3.1 (`version::persist`): the version
/// number (u64 LE), the xxh3-128 checksum of that version's file `v{N}` (u128 LE), and the
/// checksum's type (0: xxh3).
const TABLE_VERSION_POINTER_LEN: usize = 8 + 16 + 1;

/// Checks a table's version file (`v{N}`, the list of its on-disk segments) against the
/// checksum its `current` file holds. lsm-tree writes that checksum but does not check it, and
/// a damaged version file makes it assert while fjall holds a lock, whose poisoning then
/// panics again in fjall's `Drop`: the process aborts, past `catch_unwind`, instead of the
/// store being refused. Found by the `store_recovery` fuzz target.
fn check_table_version(table: &Path) -> Result<(), StoreError> {
    let corrupt =
        |path: &Path, detail: &str| StoreError::Corrupt { path: path.to_path_buf(), detail: detail.to_owned() };
    let read = |path: &Path| std::fs::read(path).map_err(|error| StoreError::Io { path: path.to_path_buf(), error });
    let pointer_path = table.join(ENGINE_TABLE_VERSION_FILE);
    let pointer = read(&pointer_path)?;
    if pointer.len() != TABLE_VERSION_POINTER_LEN || pointer[24] != 0 {
        return Err(corrupt(&pointer_path, "a table's version pointer is damaged"));
    }
    let version = u64::from_le_bytes(pointer[..8].try_into().expect("8 bytes"));
    let expected = u128::from_le_bytes(pointer[8..24].try_into().expect("16 bytes"));
    let version_path = table.join(format!("v{version}"));
    let bytes = match std::fs::read(&version_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(&version_path, "a table's version file is missing"))
        }
        other => other.map_err(|error| StoreError::Io { path: version_path.clone(), error })?,
    };
    if xxhash_rust::xxh3::xxh3_128(&bytes) != expected {
        return Err(corrupt(&version_path, "a table's version file does not match its checksum"));
    }
    Ok(())
}

/// Reads the durable-commit watermark: 0 when absent or empty (nothing to check).
fn read_watermark(path: &Path) -> Result<u64, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(StoreError::Io { path: path.to_path_buf(), error }),
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let corrupt = || StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: "the durable commit number is damaged (delete this file only if you accept that a lost \
                 journal tail goes undetected once)"
            .to_owned(),
    };
    let seq = bytes.get(..8).and_then(|b| layout::be_u64(b).ok()).ok_or_else(corrupt)?;
    let check = bytes.get(8..16).and_then(|b| layout::be_u64(b).ok()).ok_or_else(corrupt)?;
    if check != !seq {
        return Err(corrupt());
    }
    Ok(seq)
}

/// A store identifier: not secret, only distinct, so time, process id and std's per-process
/// random hash keys are enough (no random-number dependency for one value).
fn new_store_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *half = h.finish();
    }
    (u128::from(halves[0]) << 64) | u128::from(halves[1])
}

/// Bytes a store's files take on disk (allocated blocks), by the store's directory: for a
/// process that handed the [`DiskStore`] to its writer (the server's `[store] max_size_mb`).
pub fn disk_usage(dir: &Path) -> Result<u64, StoreError> {
    dir_usage(dir)
}

/// Allocated bytes of every file under `dir`.
fn dir_usage(dir: &Path) -> Result<u64, StoreError> {
    let io = |error| StoreError::Io { path: dir.to_path_buf(), error };
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        if meta.is_dir() {
            total += dir_usage(&entry.path())?;
        } else {
            total += allocated(&meta);
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // Journals are preallocated sparse files: their length overstates what they take.
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marker is checked first; the version in the engine is checked too, for a marker
    /// restored from elsewhere or an engine directory copied in.
    #[test]
    fn a_newer_version_in_the_engine_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = DiskStore::open(dir.path()).expect("create");
        let mut writes = WriteSet::new();
        writes.insert((Table::Meta, META_FORMAT_VERSION.to_vec()), Some((FORMAT_VERSION + 1).to_be_bytes().to_vec()));
        store.write(writes, Flush::Disk).expect("write");
        drop(store);
        match DiskStore::open(dir.path()) {
            Err(StoreError::NewerFormat { path, found, .. }) => {
                assert_eq!(path, dir.path().join(ENGINE_DIR));
                assert_eq!(found, FORMAT_VERSION + 1);
            }
            other => panic!("expected NewerFormat, got {other:?}"),
        }
    }

    #[test]
    fn a_marker_naming_another_store_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = DiskStore::open(dir.path()).expect("create").store_id();
        write_marker(dir.path(), Marker { format_version: FORMAT_VERSION, store_id: id ^ 1 }).expect("marker");
        let err = DiskStore::open(dir.path()).expect_err("mismatched store id");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("belong to store"), "{err}");
    }

    #[test]
    fn the_watermark_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(WATERMARK_FILE);
        assert_eq!(read_watermark(&path).expect("absent"), 0);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&41u64.to_be_bytes());
        bytes[8..].copy_from_slice(&(!41u64).to_be_bytes());
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(read_watermark(&path).expect("valid"), 41);
        bytes[3] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(matches!(read_watermark(&path), Err(StoreError::Corrupt { .. })));
    }
}
