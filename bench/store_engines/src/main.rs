//! redb against fjall on Midge's store write pattern, for docs/decisions/0001-store-engine.md.
//!
//!   cargo run --release --manifest-path bench/store_engines/Cargo.toml
//!
//! The pattern: a message is stored once (a ~200 B record keyed by a `u64` id) with one delivery
//! entry for a persistent session (a ~60 B record keyed by client id + sequence number); once the
//! message is delivered both records are deleted. Every commit inserts the records of `N` new
//! messages and deletes those of the messages that fell out of a live window of 1024 messages, in
//! one transaction, so inserts and deletes mix in each commit as they will under group commit.
//!
//! Each section runs both engines on fresh directories under the system temp dir, alternating
//! engines in two rounds so that drift in the machine's load hits both alike; the figures to
//! compare are the ratios of one run. Every run is bounded in time (about 40 s in all).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// Messages kept undelivered at any time: the size of the live set the store holds in steady state.
const LIVE_WINDOW: u64 = 1024;
/// Records for the recovery measurement: half messages, half delivery entries.
const RECOVERY_RECORDS: u64 = 100_000;
/// Client id of the one persistent subscriber the delivery entries belong to.
const CLIENT: &[u8] = b"plant-7/line-3/historian";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "crash-child" {
        crash_child(&args[2], Path::new(&args[3]));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only commit|recovery|corruption|steady` runs one section.
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let budget = if quick { Duration::from_millis(150) } else { Duration::from_millis(700) };

    println!("# store engines: redb {} vs fjall {}", "4.5", "3.1");
    println!("# {} cores, load average at start: {}", cores(), load_average());
    println!("# records: message ~{} B + delivery entry ~{} B per message", message_value(0).len(), 60);
    println!();

    if run("commit") {
        println!("## commit latency and throughput (one transaction per batch; time budget {budget:?} per engine)");
        println!("| durability | batch (messages) | engine | commits | p50 commit | p99 commit | records/s | bytes written per commit |");
        println!("|---|---|---|---|---|---|---|---|");
        for sync in [true, false] {
            for n in [1u64, 16, 256] {
                let mut results: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
                let mut written = [0u64; 2];
                for _round in 0..2 {
                    let w = bytes_written();
                    results[0].extend(commit_run::<Redb>(n, sync, budget / 2));
                    written[0] += bytes_written() - w;
                    let w = bytes_written();
                    results[1].extend(commit_run::<Fjall<false>>(n, sync, budget / 2));
                    written[1] += bytes_written() - w;
                }
                let mut medians = [0.0; 2];
                for (i, name) in ["redb", "fjall"].iter().enumerate() {
                    let lat = &mut results[i];
                    lat.sort();
                    let total: Duration = lat.iter().sum();
                    // 2 records inserted and 2 deleted per message.
                    let records = lat.len() as f64 * n as f64 * 4.0;
                    let p50 = lat[lat.len() / 2];
                    medians[i] = p50.as_secs_f64();
                    println!(
                        "| {} | {n} | {name} | {} | {} | {} | {:.0} | {} |",
                        if sync { "fsync per commit" } else { "no fsync" },
                        lat.len(),
                        micros(p50),
                        micros(lat[lat.len() * 99 / 100]),
                        records / total.as_secs_f64(),
                        written[i] / lat.len() as u64
                    );
                }
                println!("| | | **redb/fjall p50** | | **{:.2}** | | | |", medians[0] / medians[1]);
            }
        }
        println!();
    }
    if run("recovery") {
        println!("## recovery: open + read everything, {RECOVERY_RECORDS} records");
        println!("| engine | shutdown | open | full scan | first fsync'd commit | records | on disk (apparent / allocated) |");
        println!("|---|---|---|---|---|---|---|");
        for _round in 0..1 {
            recovery::<Redb>();
            recovery::<Fjall<false>>();
            recovery::<Fjall<true>>();
        }
        println!();
    }
    if run("corruption") {
        let trials = if quick { 16 } else { 64 };
        println!("## corruption: one byte flipped in a closed store of 4000 records (fresh copy per trial)");
        println!(
            "| engine | store | trials | error reported | read back intact | **silently lost or altered** | panicked |"
        );
        println!("|---|---|---|---|---|---|---|");
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        corruption::<Redb>(trials);
        corruption::<Fjall<false>>(trials);
        std::panic::set_hook(hook);
        println!();
    }
    if run("steady") {
        let commits = if quick { 1_000 } else { 25_000 };
        println!(
            "## steady size: {commits} commits of 16 messages, live window {LIVE_WINDOW} messages \
         (~{} KiB of records), fsync every 64th commit",
            LIVE_WINDOW * (message_value(0).len() as u64 + 60) / 1024
        );
        println!(
            "| engine | messages churned | max size (apparent / allocated) | final size (apparent / allocated) \
         | allocated KiB at 20, 40 .. 100 % | time |"
        );
        println!("|---|---|---|---|---|---|");
        steady::<Redb>(commits, 64);
        steady::<Fjall<false>>(commits, 64);
        steady::<Fjall<true>>(commits, 64);
        let commits = if quick { 200 } else { 1_500 };
        println!("| *fsync every commit, {commits} commits* | | | | | |");
        steady::<Redb>(commits, 1);
        steady::<Fjall<false>>(commits, 1);
        steady::<Fjall<true>>(commits, 1);
    }
}

/// What each engine must do for the measurement.
trait Engine: Sized {
    const NAME: &'static str;
    fn open(dir: &Path) -> Self;
    /// Applies one batch in one transaction; `sync` asks for fdatasync before returning.
    fn commit(&mut self, batch: &Batch, sync: bool);
    /// Reads every record, as recovery will: returns (records, value bytes).
    fn scan(&self) -> (u64, u64);
    /// Opens `dir` and returns every (table, key, value), or the engine's error as text.
    fn try_dump(dir: &Path) -> Result<Vec<(u8, Vec<u8>, Vec<u8>)>, String>;
}

/// One transaction's worth of operations, built before the clock starts.
#[derive(Default)]
struct Batch {
    message_puts: Vec<(u64, Vec<u8>)>,
    delivery_puts: Vec<(Vec<u8>, Vec<u8>)>,
    message_deletes: Vec<u64>,
    delivery_deletes: Vec<Vec<u8>>,
}

/// Generates batches: `n` new messages each, deleting those that fall out of the live window.
struct Workload {
    next: u64,
    live: VecDeque<u64>,
}

impl Workload {
    fn new() -> Self {
        Workload { next: 0, live: VecDeque::new() }
    }

    fn batch(&mut self, n: u64) -> Batch {
        let mut b = Batch::default();
        for _ in 0..n {
            let id = self.next;
            self.next += 1;
            b.message_puts.push((id, message_value(id)));
            b.delivery_puts.push((delivery_key(id), delivery_value(id)));
            self.live.push_back(id);
        }
        while self.live.len() as u64 > LIVE_WINDOW {
            let Some(id) = self.live.pop_front() else { break };
            b.message_deletes.push(id);
            b.delivery_deletes.push(delivery_key(id));
        }
        b
    }
}

/// ~200 B: a version byte, topic, payload, QoS, retain, properties, expiry, publisher.
fn message_value(id: u64) -> Vec<u8> {
    let mut v = vec![1u8];
    let topic = format!("site/7/line/3/sensor/{:04}/reading", id % 10_000);
    v.push(topic.len() as u8);
    v.extend_from_slice(topic.as_bytes());
    v.push(150);
    v.extend((0..150u32).map(|i| (id as u32).wrapping_mul(31).wrapping_add(i) as u8));
    v.extend_from_slice(&[1, 0, 0, 0]);
    v.extend_from_slice(&id.to_le_bytes());
    v
}

/// Client id, a separator and the big-endian sequence number, so that keys sort in queue order.
fn delivery_key(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(CLIENT.len() + 9);
    k.extend_from_slice(CLIENT);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// ~27 B: version, message id, QoS, retain, subscription id, state.
fn delivery_value(id: u64) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&[1, 0, 1, 7, 0, 0]);
    v.extend_from_slice(&[0; 11]);
    v
}

fn commit_run<E: Engine>(n: u64, sync: bool, budget: Duration) -> Vec<Duration> {
    let dir = tempdir();
    let mut engine = E::open(dir.path());
    let mut work = Workload::new();
    // Fill the live window first, so that every timed commit also deletes.
    while work.next < LIVE_WINDOW {
        let b = work.batch(256);
        engine.commit(&b, false);
    }
    engine.commit(&work.batch(1), true);
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || lat.len() < 20 {
        let b = work.batch(n);
        let t = Instant::now();
        engine.commit(&b, sync);
        lat.push(t.elapsed());
    }
    lat
}

fn recovery<E: Engine>() {
    for crash in [false, true] {
        let dir = tempdir();
        if crash {
            // The child writes everything, then exits without closing the store (as kill -9).
            let status = Command::new(std::env::current_exe().expect("own path"))
                .args(["crash-child", E::NAME, &dir.path().display().to_string()])
                .status()
                .expect("run child");
            assert!(status.success());
        } else {
            let mut e = E::open(dir.path());
            fill(&mut e);
            drop(e);
        }
        let t = Instant::now();
        let e = E::open(dir.path());
        let open = t.elapsed();
        let t = Instant::now();
        let (records, _bytes) = e.scan();
        let scan = t.elapsed();
        assert_eq!(records, RECOVERY_RECORDS);
        // An engine may defer repair after a crash to the first write: time it too.
        let mut e = e;
        let mut work = Workload { next: u64::MAX / 2, live: VecDeque::new() };
        let t = Instant::now();
        e.commit(&work.batch(1), true);
        let first_commit = t.elapsed();
        drop(e);
        let (apparent, allocated) = dir_size(dir.path());
        println!(
            "| {} | {} | {} | {} | {} | {records} | {} / {} KiB |",
            E::NAME,
            if crash { "killed" } else { "clean" },
            millis(open),
            millis(scan),
            millis(first_commit),
            apparent / 1024,
            allocated / 1024
        );
    }
}

fn fill<E: Engine>(e: &mut E) {
    let mut work = Workload::new();
    let mut written = 0;
    while written < RECOVERY_RECORDS {
        let mut b = work.batch(256.min((RECOVERY_RECORDS - written) / 2));
        // Keep everything: recovery reads a full store.
        b.message_deletes.clear();
        b.delivery_deletes.clear();
        work.live.clear();
        written += 2 * b.message_puts.len() as u64;
        let last = written >= RECOVERY_RECORDS;
        e.commit(&b, last);
    }
}

fn crash_child(engine: &str, dir: &Path) {
    match engine {
        "redb" => fill(&mut Redb::open(dir)),
        "fjall" => fill(&mut Fjall::<false>::open(dir)),
        "fjall-small" => fill(&mut Fjall::<true>::open(dir)),
        other => panic!("unknown engine {other}"),
    }
    // Leaves without running destructors: nothing is closed, as after kill -9.
    std::process::exit(0);
}

fn steady<E: Engine>(commits: u64, sync_every: u64) {
    let dir = tempdir();
    let mut engine = E::open(dir.path());
    let mut work = Workload::new();
    let (mut max_apparent, mut max_allocated) = (0, 0);
    let mut trace = Vec::new();
    let start = Instant::now();
    for i in 1..=commits {
        let b = work.batch(16);
        engine.commit(&b, i % sync_every == 0);
        if i % 50 == 0 {
            let (a, b) = dir_size(dir.path());
            max_apparent = max_apparent.max(a);
            max_allocated = max_allocated.max(b);
        }
        if i % (commits / 5) == 0 {
            trace.push(format!("{}", dir_size(dir.path()).1 / 1024));
        }
    }
    let elapsed = start.elapsed();
    let (apparent, allocated) = dir_size(dir.path());
    println!(
        "| {} | {} | {} / {} KiB | {} / {} KiB | {} | {} |",
        E::NAME,
        work.next,
        max_apparent.max(apparent) / 1024,
        max_allocated.max(allocated) / 1024,
        apparent / 1024,
        allocated / 1024,
        trace.join(", "),
        millis(elapsed)
    );
}

fn corruption<E: Engine>(trials: u64) {
    let pristine = tempdir();
    {
        let mut e = E::open(pristine.path());
        let mut work = Workload::new();
        for _ in 0..125 {
            let b = work.batch(16);
            work.live.clear();
            e.commit(&b, true);
        }
    }
    let expected = E::try_dump(pristine.path()).expect("pristine store reads");
    assert_eq!(expected.len(), 4000);
    // The bytes that matter: each file up to its last non-zero byte (fjall preallocates journals).
    let mut files = Vec::new();
    collect_files(pristine.path(), &mut files);
    files.sort();
    let used: Vec<(PathBuf, u64)> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).expect("read");
            let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p as u64 + 1);
            (f.strip_prefix(pristine.path()).expect("under dir").to_path_buf(), used)
        })
        .collect();
    let total: u64 = used.iter().map(|(_, u)| u).sum();
    let (mut detected, mut panicked, mut intact, mut silent) = (0, 0, 0, 0);
    for t in 0..trials {
        // Evenly spread, offset by half a step: byte `pos` of the concatenated used bytes.
        let mut pos = (2 * t + 1) * total / (2 * trials);
        let trial = tempdir();
        copy_dir(pristine.path(), trial.path());
        for (rel, u) in &used {
            if pos < *u {
                let path = trial.path().join(rel);
                let mut bytes = std::fs::read(&path).expect("read");
                bytes[pos as usize] ^= 0x5a;
                std::fs::write(&path, bytes).expect("write");
                break;
            }
            pos -= u;
        }
        let outcome = std::panic::catch_unwind(|| E::try_dump(trial.path()));
        match outcome {
            Err(_) => panicked += 1,
            Ok(Err(e)) => {
                if std::env::var_os("SHOW_ERRORS").is_some() {
                    eprintln!("{}: {e}", E::NAME);
                }
                detected += 1
            }
            Ok(Ok(got)) if got == expected => intact += 1,
            Ok(Ok(_)) => silent += 1,
        }
    }
    println!(
        "| {} | {} files, {} KiB used | {trials} | {detected} | {intact} | {silent} | {panicked} |",
        E::NAME,
        files.len(),
        total / 1024
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let path = e.path();
        let target = to.join(e.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = e.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.file_name().is_some_and(|n| n != "lock" && n != ".lock") {
            out.push(path);
        }
    }
}

// ---- redb ----

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");

struct Redb {
    db: redb::Database,
}

impl Engine for Redb {
    const NAME: &'static str = "redb";

    fn open(dir: &Path) -> Self {
        // Midge would open with the integrity check: corruption is then an error, not a panic.
        let db = redb::Database::builder()
            .set_check_integrity_on_open(true)
            .create(dir.join("store.redb"))
            .expect("redb open");
        let tx = db.begin_write().expect("begin");
        tx.open_table(MESSAGES).expect("table");
        tx.open_table(DELIVERIES).expect("table");
        tx.commit().expect("commit");
        Redb { db }
    }

    fn commit(&mut self, b: &Batch, sync: bool) {
        let mut tx = self.db.begin_write().expect("begin");
        let durability = if sync { redb::Durability::Immediate } else { redb::Durability::None };
        tx.set_durability(durability).expect("durability");
        {
            let mut m = tx.open_table(MESSAGES).expect("table");
            for (id, v) in &b.message_puts {
                m.insert(*id, v.as_slice()).expect("insert");
            }
            for id in &b.message_deletes {
                m.remove(*id).expect("remove");
            }
            let mut d = tx.open_table(DELIVERIES).expect("table");
            for (k, v) in &b.delivery_puts {
                d.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
            for k in &b.delivery_deletes {
                d.remove(k.as_slice()).expect("remove");
            }
        }
        tx.commit().expect("commit");
    }

    fn scan(&self) -> (u64, u64) {
        let tx = self.db.begin_read().expect("begin");
        let (mut n, mut bytes) = (0, 0);
        for e in tx.open_table(MESSAGES).expect("table").iter().expect("iter") {
            let (_k, v) = e.expect("read");
            n += 1;
            bytes += v.value().len() as u64;
        }
        for e in tx.open_table(DELIVERIES).expect("table").iter().expect("iter") {
            let (_k, v) = e.expect("read");
            n += 1;
            bytes += v.value().len() as u64;
        }
        (n, bytes)
    }

    fn try_dump(dir: &Path) -> Result<Vec<(u8, Vec<u8>, Vec<u8>)>, String> {
        let db = redb::Database::builder()
            .set_check_integrity_on_open(true)
            .create(dir.join("store.redb"))
            .map_err(|e| e.to_string())?;
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for e in tx.open_table(MESSAGES).map_err(|e| e.to_string())?.iter().map_err(|e| e.to_string())? {
            let (k, v) = e.map_err(|e| e.to_string())?;
            out.push((0, k.value().to_be_bytes().to_vec(), v.value().to_vec()));
        }
        for e in tx.open_table(DELIVERIES).map_err(|e| e.to_string())?.iter().map_err(|e| e.to_string())? {
            let (k, v) = e.map_err(|e| e.to_string())?;
            out.push((1, k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

// ---- fjall ----

/// `SMALL`: the smallest journal bound fjall accepts (64 MiB, default 512 MiB) and 4 MiB
/// memtables (default 64 MiB), to bound the directory's size as tightly as fjall allows.
struct Fjall<const SMALL: bool> {
    db: fjall::Database,
    messages: fjall::Keyspace,
    deliveries: fjall::Keyspace,
}

impl<const SMALL: bool> Engine for Fjall<SMALL> {
    const NAME: &'static str = if SMALL { "fjall-small" } else { "fjall" };

    fn open(dir: &Path) -> Self {
        let mut builder = fjall::Database::builder(dir);
        if SMALL {
            builder = builder.max_journaling_size(64 * 1024 * 1024);
        }
        let db = builder.open().expect("fjall open");
        let options = || {
            let o = fjall::KeyspaceCreateOptions::default();
            if SMALL {
                o.max_memtable_size(4 * 1024 * 1024)
            } else {
                o
            }
        };
        let messages = db.keyspace("messages", options).expect("ks");
        let deliveries = db.keyspace("deliveries", options).expect("ks");
        Fjall { db, messages, deliveries }
    }

    fn commit(&mut self, b: &Batch, sync: bool) {
        // Buffer hands the journal to the OS (kill -9 safe); SyncData adds fdatasync, as redb's
        // Immediate does.
        let mode = if sync { fjall::PersistMode::SyncData } else { fjall::PersistMode::Buffer };
        let mut batch = self.db.batch().durability(Some(mode));
        for (id, v) in &b.message_puts {
            batch.insert(&self.messages, id.to_be_bytes(), v.as_slice());
        }
        for id in &b.message_deletes {
            batch.remove(&self.messages, id.to_be_bytes());
        }
        for (k, v) in &b.delivery_puts {
            batch.insert(&self.deliveries, k.as_slice(), v.as_slice());
        }
        for k in &b.delivery_deletes {
            batch.remove(&self.deliveries, k.as_slice());
        }
        batch.commit().expect("commit");
    }

    fn scan(&self) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for ks in [&self.messages, &self.deliveries] {
            for g in ks.iter() {
                let (_k, v) = g.into_inner().expect("read");
                n += 1;
                bytes += v.len() as u64;
            }
        }
        (n, bytes)
    }

    fn try_dump(dir: &Path) -> Result<Vec<(u8, Vec<u8>, Vec<u8>)>, String> {
        let db = fjall::Database::builder(dir).open().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (table, name) in [(0u8, "messages"), (1, "deliveries")] {
            let ks = db.keyspace(name, fjall::KeyspaceCreateOptions::default).map_err(|e| e.to_string())?;
            for g in ks.iter() {
                let (k, v) = g.into_inner().map_err(|e| e.to_string())?;
                out.push((table, k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

// ---- helpers ----

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("midge-store-engines").tempdir().expect("tempdir")
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    let (mut apparent, mut allocated) = (0, 0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                apparent += m.len();
                allocated += m.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Bytes this process (all its threads) passed to write syscalls, from /proc/self/io; this
/// includes filling the live window before each timed run, the same for both engines.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
