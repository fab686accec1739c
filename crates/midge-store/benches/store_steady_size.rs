//! Steady-state size: a live window of 1024 queued messages (each a ~200 B message record and a
//! delivery entry) churned through the group-commit writer, 16 messages per submitted batch,
//! with the default `Always` policy and at most 8 batches awaiting durability (as a broker whose
//! publishers wait for their PUBACKs would), so commits stay small and many. Prints the store's
//! allocated size at ten checkpoints.
//!
//!   cargo bench -p midge-store --bench store_steady_size
//!
//! Without `--bench` (as under `cargo test --all-targets`) it churns only 8k messages and
//! checks the size stays under the bound the full run establishes.

use std::time::Instant;

use bytes::Bytes;
use midge_store::{
    Batch, DeliveryRecord, DeliveryState, DiskStore, MessageId, MessageRecord, SessionRecord, Writer, WriterConfig,
};

/// Undelivered messages at any time.
const LIVE: u64 = 1024;
/// Messages per submitted batch.
const PER_BATCH: u64 = 16;
/// Batches submitted and not yet durable, at most.
const IN_FLIGHT: usize = 8;
/// The bound a steady load must stay under: fjall's journal bound (64 MiB) plus memtable-sized
/// tables and slack for compaction; see the decision record.
const BOUND_BYTES: u64 = 160 * 1024 * 1024;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let messages: u64 = if full { 500_000 } else { 8_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DiskStore::open(dir.path()).expect("open");
    let writer = Writer::start(store, WriterConfig::default()).expect("start");
    let handle = writer.handle();

    let mut batch = Batch::new();
    batch.put_session(
        "historian",
        SessionRecord {
            session_id: 1,
            protocol_level: 5,
            expiry_interval: u32::MAX,
            expires_at_unix_ms: None,
            delayed_will: None,
        },
    );
    handle.submit_blocking(batch).expect("submit");

    let start = Instant::now();
    let mut checkpoints = Vec::new();
    let mut max = 0;
    let mut last = None;
    let mut in_flight = std::collections::VecDeque::new();
    let mut n = 0;
    while n < messages {
        let mut batch = Batch::new();
        for _ in 0..PER_BATCH {
            n += 1;
            batch.put_message(MessageId(n), message(n));
            batch.put_delivery("historian", n, delivery(n));
            if n > LIVE {
                batch.delete_delivery("historian", n - LIVE);
                batch.delete_message(MessageId(n - LIVE));
            }
        }
        let ticket = handle.submit_blocking(batch).expect("submit");
        last = Some(ticket);
        in_flight.push_back(ticket);
        if in_flight.len() > IN_FLIGHT {
            if let Some(oldest) = in_flight.pop_front() {
                handle.wait_durable(oldest).expect("durable");
            }
        }
        if n % (messages / 10) < PER_BATCH {
            if let Some(ticket) = last {
                handle.wait_durable(ticket).expect("durable");
            }
            let size = usage(dir.path());
            max = max.max(size);
            checkpoints.push(size / 1024);
        }
    }
    if let Some(ticket) = last {
        handle.wait_durable(ticket).expect("durable");
    }
    let commits = handle.status().commits;
    let elapsed = start.elapsed();
    drop(writer);
    let live_bytes = LIVE * (message(0).payload.len() as u64 + 100);
    println!("| messages churned | live set | commits | allocated KiB at each tenth | max | time |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {messages} | {LIVE} messages (~{} KiB) | {commits} | {} | {} KiB | {:.1} s |",
        live_bytes / 1024,
        checkpoints.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        max / 1024,
        elapsed.as_secs_f64()
    );
    assert!(max < BOUND_BYTES, "the store grew to {max} bytes, over the {BOUND_BYTES} bound");
}

fn usage(dir: &std::path::Path) -> u64 {
    // Reopening is not possible while the writer owns the store: measure the files directly.
    fn walk(dir: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.blocks() * 512,
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

fn message(n: u64) -> MessageRecord {
    MessageRecord {
        topic: format!("site/7/line/3/sensor/{:04}/reading", n % 10_000),
        payload: Bytes::from(vec![(n % 251) as u8; 150]),
        qos: 1,
        retain: false,
        shared_properties: Bytes::new(),
        expires_at_unix_ms: None,
        publisher_session: Some(2),
    }
}

fn delivery(n: u64) -> DeliveryRecord {
    DeliveryRecord {
        message: MessageId(n),
        qos: 1,
        retain: false,
        subscription_ids: vec![1],
        shared: None,
        state: DeliveryState::Queued,
    }
}
