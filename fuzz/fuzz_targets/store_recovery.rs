//! Damages a store directory the way disks, crashes and people do, then recovers it.
//!
//! Once per process, a pristine store is built with midge-store's public API (sessions with
//! wills, subscriptions, queued and in-flight deliveries, inbound QoS 2 ids, retained messages,
//! and deletions of all of them), most commits made durable (`Flush::Disk`), the last few only
//! handed to the OS (`Flush::Os`), and closed. Each input copies it and applies up to four
//! damages: truncate a file, flip bits, overwrite a range, zero a range, delete a file. Then the
//! store is opened and loaded twice, as a restarting broker would, and what must hold is:
//! - no panic and no hang;
//! - an error is a [`StoreError`] with a message, and opening again is an error again (never an
//!   error first and a silent start the next time);
//! - a store that loads holds exactly the state after some prefix of the commits (every record
//!   one that was written, nothing half-applied, no garbage), and that prefix includes every
//!   durable commit unless the `durable-commit` watermark itself was damaged (a journal tail that
//!   was only handed to the OS may be lost; what the watermark says was synced may not). A
//!   store that loads empty over durable data is the "silent empty start" this target hunts.
//! - loading it again gives the same state.
#![no_main]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use midge_fuzz::store_damage::{Damage, Input};
use midge_store::{
    Batch, DeliveryRecord, DeliveryState, DiskStore, Flush, MemoryStore, MessageId, MessageRecord, SessionRecord,
    Snapshot, Store, StoreError, SubscriptionRecord, WillRecord,
};

/// Damages per input, at most.
const MAX_DAMAGES: usize = 4;

/// Batches committed with `Flush::Disk`, then with `Flush::Os`.
const DURABLE_BATCHES: u64 = 24;
const BUFFERED_BATCHES: u64 = 4;

/// The watermark file (see `midge_store::disk`).
const WATERMARK_FILE: &str = "durable-commit";

fuzz_target!(|input: Input| {
    let pristine = pristine();
    let mut files: Vec<Option<FileImage>> = pristine.files.iter().map(|(_, image)| Some(image.clone())).collect();
    let mut damaged = BTreeSet::new();
    for damage in input.damages.iter().take(MAX_DAMAGES) {
        let index = damage_file(damage) % files.len();
        let (path, _) = &pristine.files[index];
        damaged.insert(file_kind(path));
        apply(damage, &mut files);
    }
    let dir = pristine.root.join("damaged");
    let _ = std::fs::remove_dir_all(&dir);
    for ((path, _), image) in pristine.files.iter().zip(&files) {
        if let Some(image) = image {
            image.write(&dir.join(path)).expect("write the damaged store");
        }
    }
    let watermark_intact = files[pristine.watermark] == Some(pristine.files[pristine.watermark].1.clone());

    let first = open_and_load(&dir);
    let second = open_and_load(&dir);
    if std::env::var_os("MIDGE_FUZZ_STATS").is_some() {
        let outcome = match &first {
            Ok(snapshot) if Some(snapshot) == pristine.expected.last() => "loaded all".to_owned(),
            Ok(snapshot) => match pristine.expected.iter().position(|e| e == snapshot) {
                Some(k) => format!("loaded after batch {k}"),
                None => "loaded garbage".to_owned(),
            },
            Err(error) => format!("refused: {}", error_kind(error)),
        };
        eprintln!("outcome {damaged:?}: {outcome}");
    }
    match (&first, &second) {
        (Err(error), Err(again)) => {
            check_error(error);
            check_error(again);
        }
        (Err(error), Ok(snapshot)) => {
            panic!("recovery failed ({error}) and then succeeded with {}", summary(snapshot))
        }
        (Ok(snapshot), Ok(again)) => {
            let k = pristine.expected.iter().position(|expected| expected == snapshot).unwrap_or_else(|| {
                let last = pristine.expected.last().expect("states");
                panic!(
                    "recovered a state that was never committed: {}; against the last state: {}; {}",
                    summary(snapshot),
                    difference(snapshot, last),
                    table_prefixes(snapshot, &pristine.expected)
                )
            });
            assert!(
                k >= pristine.durable || !watermark_intact,
                "silent loss: recovered the state after batch {k} ({}) although batches up to {} were durable",
                summary(snapshot),
                pristine.durable
            );
            assert_eq!(snapshot, again, "loading the recovered store again gave another state");
        }
        (Ok(snapshot), Err(error)) => {
            panic!("recovered {} once, then failed: {error}", summary(snapshot))
        }
    }
});

/// The file a damage is done to, before it is taken modulo the number of files.
fn damage_file(damage: &Damage) -> usize {
    let file = match *damage {
        Damage::Truncate { file, .. }
        | Damage::Flip { file, .. }
        | Damage::Overwrite { file, .. }
        | Damage::Zero { file, .. }
        | Damage::Delete { file } => file,
    };
    usize::from(file)
}

/// Applies a damage to the store's files as they will be written.
fn apply(damage: &Damage, files: &mut [Option<FileImage>]) {
    let slot = &mut files[damage_file(damage) % files.len()];
    let Some(image) = slot else { return }; // deleted by an earlier damage
    let used = image.data.len();
    let offset = |at: u32, room: usize| if room == 0 { 0 } else { at as usize % room };
    match *damage {
        Damage::Truncate { at, .. } => {
            let at = offset(at, used + 1);
            image.data.truncate(at);
            image.len = at as u64;
        }
        Damage::Flip { at, mask, .. } => {
            if used > 0 {
                image.data[offset(at, used)] ^= mask.max(1);
            }
        }
        Damage::Overwrite { at, bytes: ref with, .. } => {
            let start = offset(at, used + 1);
            for (i, &b) in with.iter().take(64).enumerate() {
                match image.data.get_mut(start + i) {
                    Some(slot) => *slot = b,
                    None => image.data.push(b),
                }
            }
            image.len = image.len.max(image.data.len() as u64);
        }
        Damage::Zero { at, len, .. } => {
            let start = offset(at, used + 1);
            let end = (start + usize::from(len)).min(used);
            image.data[start.min(end)..end].fill(0);
        }
        Damage::Delete { .. } => *slot = None,
    }
}

/// A file of the store: the bytes up to its last non-zero one, and its length (journals are
/// preallocated: the rest is zeros, written back as a hole so a copy costs what the data does).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileImage {
    data: Vec<u8>,
    len: u64,
}

impl FileImage {
    fn read(path: &Path) -> std::io::Result<Self> {
        let mut data = std::fs::read(path)?;
        let len = data.len() as u64;
        data.truncate(data.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1));
        Ok(Self { data, len })
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("in a directory"))?;
        let file = std::fs::File::create(path)?;
        std::io::Write::write_all(&mut &file, &self.data)?;
        file.set_len(self.len)
    }
}

/// The pristine store, built once per process.
struct Pristine {
    /// A directory of this process's own, in /dev/shm (or the system's temporary directory).
    root: PathBuf,
    /// The pristine store's files, by path relative to the store's directory, sorted.
    files: Vec<(PathBuf, FileImage)>,
    /// Which of them is the watermark.
    watermark: usize,
    /// The state after each prefix of the batches: `expected[k]` after batches `1..=k`.
    expected: Vec<Snapshot>,
    /// How many batches the watermark says are durable.
    durable: usize,
}

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        quiet_caught_panics();
        // In memory when the system has a tmpfs: creating and deleting files on a disk's file
        // system is most of the cost of an input otherwise. One directory per process; the
        // static is never dropped, so it stays behind (a few hundred KiB).
        let base = std::env::var_os("MIDGE_FUZZ_STORE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        });
        let root = base.join(format!("midge-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("pristine");
        let batches: Vec<Batch> = (1..=DURABLE_BATCHES + BUFFERED_BATCHES).map(batch).collect();
        let mut store = DiskStore::open(&dir).expect("create the pristine store");
        for (i, batch) in batches.iter().enumerate() {
            let flush = if (i as u64) < DURABLE_BATCHES { Flush::Disk } else { Flush::Os };
            store.commit(batch, flush).expect("commit");
        }
        drop(store);

        let mut memory = MemoryStore::new();
        let mut expected = vec![memory.load().expect("load")];
        for batch in &batches {
            memory.commit(batch, Flush::Os).expect("commit");
            expected.push(memory.load().expect("load"));
        }
        let watermark_bytes = std::fs::read(dir.join(WATERMARK_FILE)).expect("the watermark");
        let commit = u64::from_be_bytes(watermark_bytes[..8].try_into().expect("8 bytes"));
        // Commit 1 created the store; batch k is commit k + 1.
        let durable = usize::try_from(commit - 1).expect("small");
        assert_eq!(durable as u64, DURABLE_BATCHES, "the watermark names the last durable batch");
        let mut paths = Vec::new();
        list_files(&dir, &dir, &mut paths);
        paths.sort();
        let files: Vec<(PathBuf, FileImage)> =
            paths.into_iter().map(|path| (path.clone(), FileImage::read(&dir.join(path)).expect("read"))).collect();
        if std::env::var_os("MIDGE_FUZZ_TRACE").is_some() {
            for (path, image) in &files {
                eprintln!(
                    "pristine file {}: {} bytes, data in the first {}",
                    path.display(),
                    image.len,
                    image.data.len()
                );
            }
        }
        let watermark = files.iter().position(|(path, _)| path == Path::new(WATERMARK_FILE)).expect("a watermark");
        Pristine { root, files, watermark, expected, durable }
    })
}

/// Batch `n`: a message queued to one of three sessions (its record rewritten, a will on every
/// other one), a retained topic, a subscription, an inbound QoS 2 id, the message of batch
/// `n - 6` delivered (its delivery moving in flight first), and every ninth batch one session
/// deleted with its rows and started again. Every value names its batch, so a record from the
/// wrong batch shows.
fn batch(n: u64) -> Batch {
    let client = format!("client-{}", n % 3);
    let mut b = Batch::new();
    b.put_message(MessageId(n), message(n));
    b.put_session(client.clone(), session(n));
    b.put_delivery(client.clone(), n, delivery(n, DeliveryState::Queued));
    b.put_retained(format!("retained/{}", n % 5), MessageId(n));
    b.put_subscription(
        client.clone(),
        format!("site/{n}/#"),
        SubscriptionRecord { options: 1, identifier: Some(n as u32) },
    );
    b.put_inbound_qos2(client.clone(), n as u16);
    if n > 3 {
        let old = n - 3;
        let state = DeliveryState::Inflight { packet_id: old as u16, awaiting_pubcomp: old.is_multiple_of(2) };
        b.put_delivery(format!("client-{}", old % 3), old, delivery(old, state));
        b.delete_inbound_qos2(format!("client-{}", old % 3), old as u16);
    }
    if n > 6 {
        let old = n - 6;
        b.delete_delivery(format!("client-{}", old % 3), old);
        b.delete_subscription(format!("client-{}", old % 3), format!("site/{old}/#"));
        // Its retained topic has had a newer message since batch n - 1.
        b.delete_message(MessageId(old));
    }
    if n.is_multiple_of(9) {
        let gone = format!("client-{}", (n + 1) % 3);
        b.delete_session(gone.clone());
        b.put_session(gone, session(n));
    }
    b
}

fn message(n: u64) -> MessageRecord {
    MessageRecord {
        topic: format!("site/{n}/reading"),
        payload: Bytes::from(format!("payload of batch {n:04}")),
        qos: (n % 3) as u8,
        retain: n.is_multiple_of(2),
        shared_properties: Bytes::from(vec![0x03, 0x00, 0x01, b'0' + (n % 10) as u8]),
        expires_at_unix_ms: (n.is_multiple_of(4)).then_some(1_900_000_000_000 + n),
        publisher_session: Some(n),
    }
}

fn session(n: u64) -> SessionRecord {
    SessionRecord {
        session_id: n,
        protocol_level: if n.is_multiple_of(2) { 5 } else { 4 },
        expiry_interval: 3600 + n as u32,
        expires_at_unix_ms: Some(1_900_000_000_000 + n),
        delayed_will: (n.is_multiple_of(2)).then(|| WillRecord {
            due_unix_ms: 1_900_000_000_500 + n,
            topic: format!("wills/{n}"),
            payload: Bytes::from(format!("will of batch {n}")),
            qos: 1,
            retain: n.is_multiple_of(4),
            properties: Bytes::new(),
            message_expiry_interval: Some(n as u32),
        }),
    }
}

fn delivery(n: u64, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        message: MessageId(n),
        qos: 1 + (n % 2) as u8,
        retain: false,
        subscription_ids: vec![n as u32],
        shared: (n.is_multiple_of(4)).then(|| format!("$share/g/site/{n}/#")),
        state,
    }
}

/// Opens the store and reads everything, as recovery does. midge-store turns a panic of the
/// engine while it opens or reads into a `StoreError::Corrupt`; one that gets out is a finding.
fn open_and_load(dir: &Path) -> Result<Snapshot, StoreError> {
    match std::panic::catch_unwind(|| DiskStore::open(dir)?.load()) {
        Ok(result) => result,
        Err(_) => {
            let message = LAST_PANIC.lock().map(|last| last.clone()).unwrap_or_default();
            panic!("recovery panicked: {}", message.unwrap_or_default())
        }
    }
}

/// The last panic's message.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Wraps libFuzzer's panic hook, which aborts at once, so that it applies only to this target's
/// own panics (its checks, and an engine panic [`open_and_load`] saw escape); any other panic
/// is recorded (and with `MIDGE_FUZZ_TRACE` printed): the engine's panics that midge-store
/// catches are part of what is tested, not crashes.
fn quiet_caught_panics() {
    let trace = std::env::var_os("MIDGE_FUZZ_TRACE").is_some();
    let aborting = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|at| at.file().contains("fuzz_targets")) {
            aborting(info); // a check of this target failed
            return;
        }
        let message = info.to_string();
        if trace {
            eprintln!("panic: {message}");
        }
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
}

/// A file's path with its numbers left out: which kind of file a damage hit.
fn file_kind(path: &Path) -> String {
    let mut kind = String::new();
    for c in path.to_string_lossy().chars() {
        let c = if c.is_ascii_digit() { '#' } else { c };
        if !(c == '#' && kind.ends_with('#')) {
            kind.push(c);
        }
    }
    kind
}

/// An error's variant and its detail without paths, for the statistics.
fn error_kind(error: &StoreError) -> String {
    match error {
        StoreError::Corrupt { detail, .. } => {
            let keep_numbers = std::env::var_os("MIDGE_FUZZ_TRACE").is_some();
            let detail: String =
                detail.chars().take(90).map(|c| if c.is_ascii_digit() && !keep_numbers { '#' } else { c }).collect();
            format!("Corrupt ({detail})")
        }
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// An error names what is wrong.
fn check_error(error: &StoreError) {
    let message = error.to_string();
    assert!(message.len() > 10, "an error without a useful message: {error:?}");
}

/// What a snapshot holds, in a line.
fn summary(snapshot: &Snapshot) -> String {
    let sessions: BTreeSet<&String> = snapshot.sessions.keys().collect();
    format!(
        "{} messages (last {:?}), {} retained, sessions {sessions:?}, {} stray clients",
        snapshot.messages.len(),
        snapshot.messages.keys().next_back(),
        snapshot.retained.len(),
        snapshot.stray_clients.len()
    )
}

/// For each table, the batches after which it held what `found` holds: tables recovered to
/// different points show a recovery that is not atomic across them.
fn table_prefixes(found: &Snapshot, expected: &[Snapshot]) -> String {
    let at = |same: &dyn Fn(&Snapshot) -> bool| -> Vec<usize> {
        expected.iter().enumerate().filter(|(_, e)| same(e)).map(|(k, _)| k).collect()
    };
    let sessions = |s: &Snapshot| -> Vec<(String, SessionRecord)> {
        s.sessions.iter().map(|(c, x)| (c.clone(), x.record.clone())).collect()
    };
    let rows = |s: &Snapshot| {
        s.sessions
            .iter()
            .map(|(c, x)| (c.clone(), x.subscriptions.clone(), x.deliveries.clone(), x.inbound_qos2.clone()))
            .collect::<Vec<_>>()
    };
    format!(
        "messages as after batches {:?}, retained {:?}, session records {:?}, session rows {:?}",
        at(&|e| e.messages == found.messages),
        at(&|e| e.retained == found.retained),
        at(&|e| sessions(e) == sessions(found)),
        at(&|e| rows(e) == rows(found)),
    )
}

/// Which parts of `found` differ from `expected`, in a line.
fn difference(found: &Snapshot, expected: &Snapshot) -> String {
    let mut parts = Vec::new();
    if found.messages != expected.messages {
        parts.push(format!("messages {} (expected {})", found.messages.len(), expected.messages.len()));
    }
    if found.retained != expected.retained {
        parts.push(format!("retained {} (expected {})", found.retained.len(), expected.retained.len()));
    }
    for (client, session) in &expected.sessions {
        let Some(got) = found.sessions.get(client) else {
            parts.push(format!("session {client} missing"));
            continue;
        };
        let count = |s: &midge_store::SessionSnapshot| {
            (s.subscriptions.len(), s.deliveries.len(), s.inbound_qos2.len(), s.record.session_id)
        };
        if got != session {
            parts.push(format!(
                "session {client}: (subscriptions, deliveries, inbound QoS 2, id) {:?}, expected {:?}",
                count(got),
                count(session)
            ));
        }
    }
    if found.stray_clients != expected.stray_clients {
        parts.push(format!("stray clients {:?}", found.stray_clients));
    }
    parts.join("; ")
}

fn list_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry")) {
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            list_files(root, &path, files);
        } else {
            files.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}
