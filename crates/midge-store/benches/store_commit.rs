//! The writer on the disk store, per sync policy:
//! - latency: one producer submits a one-message batch (message + delivery entry) and waits
//!   until it is durable, again and again: the delay a lone QoS 1 publisher sees before PUBACK;
//! - group commit: 32 producer threads do the same at once (32 publishers each waiting for its
//!   PUBACK): tickets per second and tickets per commit show how fsyncs are shared.
//!
//!   cargo bench -p midge-store --bench store_commit
//!
//! Without `--bench` (under `cargo test --all-targets`) it runs a few rounds only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_store::{
    Batch, DeliveryRecord, DeliveryState, DiskStore, MessageId, MessageRecord, SyncPolicy, Writer, WriterConfig,
};

const PRODUCERS: u64 = 32;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let budget = if full { Duration::from_millis(1500) } else { Duration::from_millis(50) };
    println!("| policy | lone producer p50 | p99 | {PRODUCERS} producers: tickets/s | tickets per commit |");
    println!("|---|---|---|---|---|");
    for policy in [SyncPolicy::Always, SyncPolicy::IntervalMs(1000), SyncPolicy::Never] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DiskStore::open(dir.path()).expect("open");
        let writer = Writer::start(store, WriterConfig { policy, ..WriterConfig::default() }).expect("start");
        let handle = writer.handle();

        let mut latencies = Vec::new();
        let start = Instant::now();
        let mut id = 0;
        while start.elapsed() < budget || latencies.len() < 10 {
            id += 1;
            let t = Instant::now();
            let ticket = handle.submit(message_batch(id, "lone")).expect("submit");
            handle.wait_durable(ticket).expect("durable");
            latencies.push(t.elapsed());
        }
        latencies.sort();

        let before = handle.status();
        let start = Instant::now();
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    let client = format!("producer-{p}");
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        n += 1;
                        let ticket = handle.submit_blocking(message_batch((p + 1) << 40 | n, &client)).expect("submit");
                        handle.wait_durable(ticket).expect("durable");
                    }
                    n
                })
            })
            .collect();
        let tickets: u64 = threads.into_iter().map(|t| t.join().expect("producer")).sum();
        let elapsed = start.elapsed();
        let commits = handle.status().commits - before.commits;
        writer.shutdown().expect("shutdown");
        println!(
            "| {policy:?} | {:.0} µs | {:.0} µs | {:.0} | {:.1} |",
            latencies[latencies.len() / 2].as_secs_f64() * 1e6,
            latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e6,
            tickets as f64 / elapsed.as_secs_f64(),
            tickets as f64 / commits.max(1) as f64
        );
    }
}

/// What a QoS 1 publish to one offline persistent subscriber writes.
fn message_batch(id: u64, client: &str) -> Batch {
    let mut b = Batch::new();
    b.put_message(
        MessageId(id),
        MessageRecord {
            topic: "site/7/line/3/sensor/0042/reading".into(),
            payload: Bytes::from(vec![7u8; 150]),
            qos: 1,
            retain: false,
            shared_properties: Bytes::new(),
            expires_at_unix_ms: None,
            publisher_session: None,
        },
    );
    b.put_delivery(
        client,
        id,
        DeliveryRecord {
            message: MessageId(id),
            qos: 1,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            state: DeliveryState::Queued,
        },
    );
    b
}
