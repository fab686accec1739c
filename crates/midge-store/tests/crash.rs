//! Crash test at the store level: a child process (this test binary, re-executed) submits
//! numbered batches through the writer and prints each batch number once it is durable; the
//! parent kills it with SIGKILL after a random number of them, reopens the store and checks
//! that every batch printed durable is there, and that the store holds exactly batches 1..=M
//! for some M: a batch is all or nothing, and none is lost before a later one.
//!
//! Rounds cycle through the sync policies: every one of them promises that a durable ticket
//! survives `kill -9` (the page cache outlives the process).
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{delivery, message, session};
use midge_store::{Batch, DeliveryState, DiskStore, MessageId, Snapshot, Store, SyncPolicy, Writer, WriterConfig};

const CHILD_DIR: &str = "MIDGE_STORE_CRASH_CHILD_DIR";
const CHILD_POLICY: &str = "MIDGE_STORE_CRASH_CHILD_POLICY";
/// How long the parent waits for the next durable line before calling the child stuck.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages stay undelivered for this many batches, then batch `n` deletes batch `n - WINDOW`'s.
const WINDOW: u64 = 16;
const CLIENTS: u64 = 3;
const TOPICS: u64 = 8;
const ROUNDS: u64 = 6;

/// Batch `n`: a message queued to one session, that session's record, a retained topic; and the
/// delivery of batch `n - WINDOW`'s message (its entry and the message deleted).
fn batch(n: u64) -> Batch {
    let client = format!("sub-{}", n % CLIENTS);
    let mut b = Batch::new();
    b.put_message(MessageId(n), message(n));
    b.put_session(client.clone(), session(n));
    b.put_delivery(client, n, delivery(n, DeliveryState::Queued));
    b.put_retained(format!("r/{}", n % TOPICS), MessageId(n));
    if n > WINDOW {
        let old = n - WINDOW;
        b.delete_delivery(format!("sub-{}", old % CLIENTS), old);
        b.delete_message(MessageId(old));
    }
    b
}

/// The store's content after batches `1..=m`, built the same way through the in-memory store.
fn expected(m: u64) -> Snapshot {
    let mut store = midge_store::MemoryStore::new();
    for n in m.saturating_sub(2 * WINDOW).max(1)..=m {
        store.commit(&batch(n), midge_store::Flush::Os).expect("commit");
    }
    let mut s = store.load().expect("load");
    // Sessions and retained topics older than the replayed window keep their latest batch.
    s.sessions.retain(|_, session| session.record.session_id + CLIENTS > m);
    s.retained.retain(|_, id| id.0 + TOPICS > m);
    s
}

/// The child: runs only when re-executed by [`kill_9_keeps_every_durable_batch`].
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let policy = match std::env::var(CHILD_POLICY).as_deref() {
        Ok("interval") => SyncPolicy::IntervalMs(5),
        Ok("never") => SyncPolicy::Never,
        _ => SyncPolicy::Always,
    };
    let store = DiskStore::open(&dir).expect("child opens the store");
    let first = store.load().expect("child loads").messages.keys().next_back().map_or(1, |id| id.0 + 1);
    let writer = Writer::start(store, WriterConfig { policy, ..WriterConfig::default() }).expect("start");
    let handle = writer.handle();
    let (tickets, to_print) = mpsc::sync_channel(1024);
    let printer = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for (ticket, n) in to_print {
                handle.wait_durable(ticket).expect("durable");
                if writeln!(out, "durable {n}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        })
    };
    // Submits without waiting, so commits group; the bounded channel keeps it a little ahead.
    for n in first..first + 1_000_000 {
        let ticket = handle.submit_blocking(batch(n)).expect("submit");
        if tickets.send((ticket, n)).is_err() {
            break;
        }
    }
    drop(tickets);
    let _ = printer.join();
}

#[test]
fn kill_9_keeps_every_durable_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut rng = seed | 1;
    let mut last_m = 0;
    for round in 0..ROUNDS {
        let policy = ["always", "interval", "never"][(round % 3) as usize];
        // xorshift: enough randomness for a kill point, reproducible from the printed seed.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 1 + rng % 1500;
        let context = format!("seed {seed}, round {round}, policy {policy}, kill after {kill_after} durable batches");

        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_POLICY, policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("durable ").and_then(|n| n.parse::<u64>().ok()) {
                    if lines_tx.send(n).is_err() {
                        return;
                    }
                }
            }
        });

        let mut durable = 0;
        for _ in 0..kill_after {
            durable = lines.recv_timeout(LINE_TIMEOUT).unwrap_or_else(|e| panic!("no durable line ({e}): {context}"));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        // Lines already printed were durable too.
        reader.join().expect("reader");
        durable = lines.try_iter().fold(durable, u64::max);

        let snapshot = DiskStore::open(dir.path()).and_then(|s| s.load()).expect("reopen after kill -9");
        let m = snapshot.messages.keys().next_back().map_or(0, |id| id.0);
        assert!(m >= durable, "batch {durable} was durable but the store ends at batch {m}: {context}");
        assert!(m > last_m, "no progress: {context}");
        assert_eq!(summary(&snapshot), summary(&expected(m)), "not exactly batches 1..={m}: {context}");
        assert_eq!(snapshot, expected(m), "not exactly batches 1..={m}: {context}");
        eprintln!("{context}: last printed durable {durable}, store ends at batch {m}");
        last_m = m;
    }
}

/// A compact view for a readable assertion message.
fn summary(s: &Snapshot) -> BTreeMap<String, Vec<u64>> {
    let mut view = BTreeMap::new();
    view.insert("messages".into(), s.messages.keys().map(|id| id.0).collect());
    view.insert("retained".into(), s.retained.values().map(|id| id.0).collect());
    for (client, session) in &s.sessions {
        let mut v = vec![session.record.session_id];
        v.extend(session.deliveries.iter().map(|(seq, _)| *seq));
        view.insert(client.clone(), v);
    }
    view
}
