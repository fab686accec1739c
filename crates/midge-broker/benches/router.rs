//! Cost of matching, subscribing and unsubscribing against 1,000 / 100,000 / 1,000,000
//! subscriptions.
//!
//! Run: `cargo bench -p midge-broker --bench router` (add `-- --quick` for a short run). Set
//! `MIDGE_BENCH_SIZES=1000000` (comma-separated) to build and measure only some sizes, e.g. when
//! profiling with `-- --profile-time 10`. `MIDGE_BENCH_POOL=256` matches a few topics over and
//! over, so that their walk stays cached: the difference with the default pool is the cost of
//! the cache misses.
//!
//! Timings on a shared machine are noisy; cache misses are not. `MIDGE_BENCH_PROBE=N` skips
//! criterion and matches N hit topics then N miss topics once each, in [`match_all`], for a cache
//! simulator to count. The figures in the commit log come from:
//!
//! ```text
//! cargo bench -p midge-broker --bench router --no-run
//! MIDGE_BENCH_SIZES=1000000 MIDGE_BENCH_PROBE=20000 valgrind --tool=callgrind \
//!     --collect-atstart=no --toggle-collect='router::match_all' --cache-sim=yes \
//!     --I1=32768,8,64 --D1=32768,8,64 --LL=8388608,16,64 target/release/deps/router-<hash>
//! callgrind_annotate callgrind.out.<pid>   # totals / (2 * N): per topic, hits and misses
//! ```
//!
//! The workload is a device fleet: 90% of subscriptions are exact, `site/{n}/dev/{m}/temp` (one
//! per device, 1,000 devices per site), 10% use wildcards, spread over the same sites and devices
//! in four shapes: `site/{n}/dev/+/temp`, `site/+/dev/{m}/temp`, `site/{n}/#` and
//! `site/{n}/dev/{m}/+`. Every subscription has its own subscriber key. Topics are drawn at random
//! from the subscribed devices (`match_hit`) or from a metric nobody subscribed to exactly
//! (`match_miss`), from a pool of 65,536 so that the walk is not always served from the cache.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};

use midge_broker::Router;

/// Devices per site in the exact filters.
const DEVICES_PER_SITE: u64 = 1_000;

/// Topics matched in turn: enough distinct paths that the trie is not all in cache.
/// `MIDGE_BENCH_POOL` overrides it: a pool of a few hundred topics keeps their whole walk in
/// cache, which separates the cost of the instructions from that of the misses.
const TOPIC_POOL: usize = 1 << 16;

fn main() {
    if let Ok(probe) = std::env::var("MIDGE_BENCH_PROBE") {
        let count = probe.parse().expect("MIDGE_BENCH_PROBE is a topic count");
        for size in sizes() {
            let router = build(size);
            let mut rng = Rng(size);
            let hits = draw(&mut rng, size, "temp", count);
            let misses = draw(&mut rng, size, "hum", count);
            let found = match_all(&router, &hits) + match_all(&router, &misses);
            println!("router/{size}: {found} matches for {} topics", 2 * count);
        }
        return;
    }
    router();
    Criterion::default().configure_from_args().final_summary();
}

/// Matches every topic once; returns the number of matches. Not inlined, so that a profiler can
/// count this and nothing else.
#[inline(never)]
fn match_all(router: &Router<u64, u8>, topics: &[String]) -> usize {
    let mut found = 0;
    for topic in topics {
        router.match_topic(black_box(topic), |m| {
            black_box(&m);
            found += 1;
        });
    }
    found
}

fn benches(c: &mut Criterion) {
    for size in sizes() {
        let mut router = build(size);
        let mut rng = Rng(size);
        let pool = topic_pool();
        let hits = draw(&mut rng, size, "temp", pool);
        let misses = draw(&mut rng, size, "hum", pool);
        report_fan_out(&router, size, &hits, &misses);

        let mut group = c.benchmark_group("router");
        for (name, topics) in [("match_hit", &hits), ("match_miss", &misses)] {
            group.bench_function(BenchmarkId::new(name, size), |b| {
                let mut at = 0;
                b.iter(|| {
                    at = (at + 1) % pool;
                    let mut found = 0u32;
                    router.match_topic(black_box(&topics[at]), |m| {
                        black_box(&m);
                        found += 1;
                    });
                    found
                })
            });
        }

        // Fresh filters beside the existing ones (a new metric on existing devices), timed one
        // way and undone the other way so the router keeps its size across iterations.
        let mut next_key = u64::MAX / 2;
        let mut fresh = |iters: u64, rng: &mut Rng| -> Vec<(String, u64)> {
            (0..iters)
                .map(|_| {
                    let (n, m) = device(rng, size);
                    next_key += 1;
                    (format!("site/{n}/dev/{m}/new{}", next_key % 7), next_key)
                })
                .collect()
        };
        group.bench_function(BenchmarkId::new("subscribe", size), |b| {
            b.iter_custom(|iters| {
                let filters = fresh(iters, &mut rng);
                let start = Instant::now();
                for (filter, key) in &filters {
                    router.subscribe(filter, *key, 1u8);
                }
                let elapsed = start.elapsed();
                for (filter, key) in &filters {
                    router.unsubscribe(filter, key);
                }
                elapsed
            })
        });
        group.bench_function(BenchmarkId::new("unsubscribe", size), |b| {
            b.iter_custom(|iters| {
                let filters = fresh(iters, &mut rng);
                for (filter, key) in &filters {
                    router.subscribe(filter, *key, 1u8);
                }
                let start = Instant::now();
                for (filter, key) in &filters {
                    router.unsubscribe(filter, key);
                }
                start.elapsed()
            })
        });
        group.finish();
        assert_eq!(router.len() as u64, size, "the benches leave the router as built");
    }
}

/// Subscription counts to measure: `MIDGE_BENCH_SIZES` or 1,000 / 100,000 / 1,000,000.
fn sizes() -> Vec<u64> {
    match std::env::var("MIDGE_BENCH_SIZES") {
        Ok(sizes) => sizes
            .split(',')
            .map(|s| s.trim().parse().expect("MIDGE_BENCH_SIZES holds comma-separated integers"))
            .collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    }
}

/// Topics in the pool matched in turn: `MIDGE_BENCH_POOL` or [`TOPIC_POOL`].
fn topic_pool() -> usize {
    match std::env::var("MIDGE_BENCH_POOL") {
        Ok(pool) => pool.parse().expect("MIDGE_BENCH_POOL is a topic count"),
        Err(_) => TOPIC_POOL,
    }
}

/// A router with `size` subscriptions of the fleet workload.
fn build(size: u64) -> Router<u64, u8> {
    let exact = exact_count(size);
    let mut router = Router::new();
    for i in 0..exact {
        let (n, m) = (i / DEVICES_PER_SITE, i % DEVICES_PER_SITE);
        router.subscribe(&format!("site/{n}/dev/{m}/temp"), i, 0);
    }
    let mut rng = Rng(7);
    for key in exact..size {
        let (n, m) = device(&mut rng, size);
        let filter = match key % 4 {
            0 => format!("site/{n}/dev/+/temp"),
            1 => format!("site/+/dev/{m}/temp"),
            2 => format!("site/{n}/#"),
            _ => format!("site/{n}/dev/{m}/+"),
        };
        router.subscribe(&filter, key, 0);
    }
    assert_eq!(router.len() as u64, size);
    router
}

/// `count` topics of random subscribed devices, with the given metric as last level.
fn draw(rng: &mut Rng, size: u64, metric: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let (n, m) = device(rng, size);
            format!("site/{n}/dev/{m}/{metric}")
        })
        .collect()
}

/// A random subscribed device: (site, device in site).
fn device(rng: &mut Rng, size: u64) -> (u64, u64) {
    let i = rng.next() % exact_count(size);
    (i / DEVICES_PER_SITE, i % DEVICES_PER_SITE)
}

/// How many of `size` subscriptions are exact.
fn exact_count(size: u64) -> u64 {
    (size * 9 / 10).max(1)
}

/// Prints the shape of the workload next to the timings, so the figures can be read.
fn report_fan_out(router: &Router<u64, u8>, size: u64, hits: &[String], misses: &[String]) {
    let average = |topics: &[String]| {
        let mut total = 0usize;
        for topic in topics {
            router.match_topic(topic, |_| total += 1);
        }
        total as f64 / topics.len() as f64
    };
    println!(
        "router/{size}: {} nodes, {:.1} matches per hit topic, {:.1} per miss topic",
        router.node_count(),
        average(hits),
        average(misses)
    );
}

/// splitmix64: reproducible topics without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

criterion_group! {
    name = router;
    // Short runs: the figures are stable to a few percent well before criterion's defaults, and
    // the machine is shared.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = benches
}
