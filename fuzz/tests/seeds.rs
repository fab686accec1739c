//! The checked-in seed corpora of the structure-aware targets, as readable values: each seed is
//! written as the bytes `arbitrary` builds it from (`midge_fuzz::encode`). The round trip is a
//! test; writing the files is an ignored one:
//!
//! ```sh
//! cargo test --test seeds -- --ignored write_seed_corpora   # in fuzz/
//! ```

use arbitrary::{Arbitrary, Unstructured};
use midge_fuzz::core_ops::{AckKind, Expiry, Input, Linger, Op, Setup, Step, WillSpec};
use midge_fuzz::encode::Encode;
use midge_fuzz::store_damage::{self, Damage};

/// The `core` target's seeds: each drives one path the invariants watch.
fn core_seeds() -> Vec<(&'static str, Input)> {
    use Op::*;
    let connect = |client, v5, clean, expiry| Connect {
        client,
        v5,
        clean,
        expiry,
        keep_alive: false,
        will: None,
        receive_maximum: None,
        linger: None,
    };
    // Filter and topic numbers index the target's FILTERS and TOPICS.
    let (a_all, everything, share_g_s) = (3, 5, 9);
    let (a, a_b, s_1) = (0, 1, 4);
    let store = Setup { store: true, max_offline: 15, ..Setup::default() };
    vec![
        (
            "qos2-exactly-once-across-restart",
            Input {
                setup: store.clone(),
                ops: vec![
                    connect(0, true, true, Expiry::Long),
                    Subscribe { client: 0, filters: vec![(a_all, 2, false)] },
                    connect(1, true, true, Expiry::Zero),
                    Publish { client: 1, topic: a_b, qos: 2, retain: false, expiry: None, empty: false },
                    Publish { client: 1, topic: a_b, qos: 2, retain: false, expiry: None, empty: false },
                    Drain { client: 0, ack: false },
                    Ack { client: 0, which: 0 },
                    Restart,
                    connect(0, true, false, Expiry::Long),
                    Drain { client: 0, ack: true },
                ],
            },
        ),
        (
            "shared-group-hands-over-qos1",
            Input {
                setup: Setup::default(),
                ops: vec![
                    connect(0, true, true, Expiry::Zero),
                    connect(1, false, true, Expiry::Zero),
                    Subscribe { client: 0, filters: vec![(share_g_s, 1, false)] },
                    Subscribe { client: 1, filters: vec![(share_g_s, 1, false)] },
                    connect(2, true, true, Expiry::Zero),
                    Burst { client: 2, topic: s_1, qos: 1, count: 6 },
                    Drain { client: 0, ack: false },
                    Drop { client: 0 },
                    Drain { client: 1, ack: true },
                ],
            },
        ),
        (
            "burst-to-the-hard-bound",
            Input {
                setup: Setup { pace_qos0: true, ..Setup::default() },
                ops: vec![
                    connect(0, false, true, Expiry::Zero),
                    Subscribe { client: 0, filters: vec![(everything, 1, false)] },
                    connect(1, true, true, Expiry::Zero),
                    Burst { client: 1, topic: a, qos: 1, count: 255 },
                    Burst { client: 1, topic: a, qos: 0, count: 255 },
                    Burst { client: 1, topic: a, qos: 1, count: 255 },
                    Burst { client: 1, topic: a, qos: 2, count: 255 },
                    Burst { client: 1, topic: a, qos: 1, count: 255 },
                    Shed { disconnect: false },
                    Drain { client: 0, ack: true },
                ],
            },
        ),
        (
            "offline-queue-spills-and-reads-back",
            Input {
                setup: Setup { queue_qos0_messages: true, byte_bounds: true, ..store.clone() },
                ops: vec![
                    connect(0, false, false, Expiry::Never),
                    Subscribe { client: 0, filters: vec![(a_all, 1, false)] },
                    connect(1, true, true, Expiry::Zero),
                    Burst { client: 1, topic: a_b, qos: 1, count: 3 },
                    Drain { client: 0, ack: false },
                    Disconnect { client: 0, with_will: false, expiry: None },
                    Burst { client: 1, topic: a_b, qos: 1, count: 20 },
                    Burst { client: 1, topic: a_b, qos: 0, count: 5 },
                    StoreFull(true),
                    Burst { client: 1, topic: a_b, qos: 1, count: 2 },
                    StoreFull(false),
                    connect(0, false, false, Expiry::Never),
                    Drain { client: 0, ack: true },
                ],
            },
        ),
        (
            "takeover-with-a-will",
            Input {
                setup: store.clone(),
                ops: vec![
                    connect(3, true, true, Expiry::Zero),
                    Subscribe { client: 3, filters: vec![(everything, 2, false)] },
                    Connect {
                        client: 0,
                        v5: true,
                        clean: true,
                        expiry: Expiry::Short,
                        keep_alive: true,
                        will: Some(WillSpec { topic: a_b, qos: 2, retain: true, delay: Some(3) }),
                        receive_maximum: Some(1),
                        linger: None,
                    },
                    Subscribe { client: 0, filters: vec![(a_all, 1, false)] },
                    Publish { client: 3, topic: a, qos: 1, retain: false, expiry: None, empty: false },
                    Connect {
                        client: 0,
                        v5: true,
                        clean: false,
                        expiry: Expiry::Short,
                        keep_alive: false,
                        will: None,
                        receive_maximum: None,
                        linger: Some(Linger::AckAll),
                    },
                    Drop { client: 0 },
                    Advance(Step::Second),
                    Advance(Step::KeepAlive),
                    Drain { client: 3, ack: true },
                    Advance(Step::HalfMinute),
                ],
            },
        ),
        (
            "retained-and-message-expiry",
            Input {
                setup: Setup { short_expiry: true, ..store.clone() },
                ops: vec![
                    connect(1, true, true, Expiry::Zero),
                    Publish { client: 1, topic: a_b, qos: 2, retain: true, expiry: Some(4), empty: false },
                    Publish { client: 1, topic: a, qos: 1, retain: true, expiry: None, empty: false },
                    connect(2, true, false, Expiry::Long),
                    Subscribe { client: 2, filters: vec![(a_all, 2, false), (everything, 1, true)] },
                    Drain { client: 2, ack: false },
                    Advance(Step::Second),
                    Publish { client: 1, topic: a, qos: 0, retain: true, expiry: None, empty: true },
                    Drop { client: 2 },
                    Advance(Step::HalfMinute),
                    Restart,
                    connect(2, true, false, Expiry::Long),
                    Drain { client: 2, ack: true },
                    Unsubscribe { client: 2, filters: vec![a_all, everything] },
                ],
            },
        ),
        (
            "publisher-resends-qos2",
            Input {
                setup: store,
                ops: vec![
                    connect(0, false, true, Expiry::Zero),
                    Subscribe { client: 0, filters: vec![(a_all, 2, false)] },
                    connect(1, false, false, Expiry::Never),
                    Publish { client: 1, topic: a_b, qos: 2, retain: false, expiry: None, empty: false },
                    Resend { client: 1, which: 0 },
                    Drop { client: 1 },
                    connect(1, false, false, Expiry::Never),
                    Resend { client: 1, which: 0 },
                    Release { client: 1, which: 0 },
                    Bogus { client: 1, kind: AckKind::PubRel, id: 1 },
                    Bogus { client: 0, kind: AckKind::PubRec, id: 9 },
                    Drain { client: 0, ack: true },
                    Ping { client: 0 },
                ],
            },
        ),
    ]
}

/// The `store_recovery` target's seeds: one damage of each kind, to the files it matters most
/// in. File numbers index the pristine store's files, sorted: 0 `durable-commit`, 1 the
/// journal, 2 the engine's own table's `current`, 3 its table file, last the marker; the
/// target takes them modulo the number of files, so a seed stays valid if the layout changes.
fn store_recovery_seeds() -> Vec<(&'static str, store_damage::Input)> {
    let input = |damages| store_damage::Input { damages };
    let (watermark, journal, engine_current, engine_table, marker) = (0, 1, 2, 3, 32);
    vec![
        ("truncated-journal", input(vec![Damage::Truncate { file: journal, at: 15_000 }])),
        ("flipped-journal-bit", input(vec![Damage::Flip { file: journal, at: 9_000, mask: 0x08 }])),
        ("zeroed-table-block", input(vec![Damage::Zero { file: engine_table, at: 4_000, len: 512 }])),
        (
            "marker-from-the-future",
            input(vec![Damage::Overwrite { file: marker, at: 165, bytes: b"format_version = 9\n".to_vec() }]),
        ),
        (
            "lost-watermark-and-journal-tail",
            input(vec![Damage::Delete { file: watermark }, Damage::Truncate { file: journal, at: 12_000 }]),
        ),
        ("lost-version-file", input(vec![Damage::Delete { file: engine_current }])),
    ]
}

#[test]
fn store_recovery_seeds_read_back_as_written() {
    for (name, input) in store_recovery_seeds() {
        let bytes = input.to_bytes();
        let read = store_damage::Input::arbitrary_take_rest(Unstructured::new(&bytes)).expect("reads");
        assert_eq!(read, input, "seed {name}");
    }
}

#[test]
fn core_seeds_read_back_as_written() {
    for (name, input) in core_seeds() {
        let bytes = input.to_bytes();
        let read = Input::arbitrary_take_rest(Unstructured::new(&bytes)).expect("reads");
        assert_eq!(read, input, "seed {name}");
    }
}

#[test]
#[ignore = "writes the seed corpora into corpus/"]
fn write_seed_corpora() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/core");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in core_seeds() {
        std::fs::write(dir.join(name), input.to_bytes()).unwrap();
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/store_recovery");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in store_recovery_seeds() {
        std::fs::write(dir.join(name), input.to_bytes()).unwrap();
    }
}
