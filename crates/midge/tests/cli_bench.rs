//! `midge bench`: each scenario runs briefly against a test broker and its `--json` report
//! holds sane numbers. Nothing here asserts speed: performance is shown by the benchmarks
//! (docs/benchmarks.md), never by tests. Each run is about a second, bounded by the bench's
//! own budget and by [`WAIT`], after which the process is killed by its PID. TLS runs trust a
//! CA made here with rcgen; password runs use a file made by Debian's `mosquitto_passwd`.
//! `offline` and `drain` run against a broker with a store (offline queues on disk), and
//! `offline` against mosquitto too, so its counting is checked on a broker nobody here wrote.

mod cli_common;
mod support;

use std::path::Path;
use std::process::Command;

use cli_common::{midge, run, Finished};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use support::{free_port, TestBroker};

/// A short run against `broker`: 0.2 s of warm-up, 0.5 s measured.
fn bench(broker: &TestBroker, args: &[&str]) -> Value {
    let port = broker.port().to_string();
    let pid = broker.pid().to_string();
    let mut command = midge(&["bench"]);
    command.args(args).args(["-p", &port, "--broker-pid", &pid, "--warmup", "0.2", "-d", "0.5", "--json"]);
    let finished = run(command);
    assert_eq!(finished.code(), 0, "midge bench {args:?}: {finished:?}");
    serde_json::from_str(finished.text().trim()).unwrap_or_else(|error| panic!("{error}: {finished:?}"))
}

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {report}"))
}

/// What every traffic report must say: messages went through, none twice, the bench and the
/// broker used some CPU, nothing failed.
fn assert_traffic(report: &Value) {
    assert!(number(report, "delivered") > 0.0, "{report}");
    assert!(number(report, "delivered_per_s") > 0.0, "{report}");
    assert!(number(report, "delivered_total") <= number(report, "expected_total"), "{report}");
    assert_eq!(number(report, "duplicates"), 0.0, "{report}");
    assert_eq!(number(report, "foreign"), 0.0, "{report}");
    assert_eq!(number(report, "errors"), 0.0, "{report}");
    assert!(number(report, "bench_cpu_total_s") > 0.0, "{report}");
    assert!(number(report, "broker_cpu_s") >= 0.0, "{report}");
    let window = number(report, "window_s");
    assert!((0.4..5.0).contains(&window), "{report}");
}

/// At QoS 1 and 2, every message acknowledged arrived.
fn assert_nothing_lost(report: &Value) {
    assert_eq!(number(report, "lost"), 0.0, "{report}");
    assert_eq!(number(report, "unacknowledged"), 0.0, "{report}");
    assert_eq!(number(report, "acked_total"), number(report, "sent_total"), "{report}");
    assert_eq!(number(report, "delivered_total"), number(report, "expected_total"), "{report}");
}

#[test]
fn fanout_delivers_to_every_subscriber() {
    let broker = TestBroker::start();
    let report = bench(&broker, &["fanout", "--subscribers", "3", "--rate", "3000"]);
    assert_traffic(&report);
    assert_eq!(report["scenario"], "fanout");
    assert_eq!((number(&report, "publishers"), number(&report, "subscribers")), (1.0, 3.0));
    assert_eq!(number(&report, "expected_total"), 3.0 * number(&report, "sent_total"), "{report}");
    assert!(report["latency_us"]["p50"].as_u64().is_some(), "{report}");
}

#[test]
fn fanin_at_qos_1_loses_no_acknowledged_message() {
    let broker = TestBroker::start();
    let report = bench(&broker, &["fanin", "--publishers", "3", "-q", "1", "--rate", "2000"]);
    assert_traffic(&report);
    assert_nothing_lost(&report);
}

#[test]
fn pairs_at_qos_2_over_mqtt_5_with_persistent_subscribers() {
    let broker = TestBroker::start();
    let args = ["pairs", "--pairs", "2", "-q", "2", "-V", "5", "--persistent", "--rate", "1000", "-s", "100"];
    let report = bench(&broker, &args);
    assert_traffic(&report);
    assert_nothing_lost(&report);
    assert_eq!((report["version"].as_str(), number(&report, "size")), (Some("5"), 100.0));
}

#[test]
fn latency_reports_percentiles_at_a_fixed_rate() {
    let broker = TestBroker::start();
    let report = bench(&broker, &["latency", "--rate", "1000"]);
    assert_traffic(&report);
    let latency = &report["latency_us"];
    let percentile = |key: &str| latency[key].as_u64().unwrap_or_else(|| panic!("{key} in {report}"));
    assert!(percentile("count") > 0);
    assert!(percentile("p50") <= percentile("p90") && percentile("p90") <= percentile("p99"), "{report}");
    assert!(percentile("p99") <= percentile("p99_9") && percentile("p99_9") <= percentile("max"), "{report}");
    // A fixed rate: about 1,000 msg/s sent, whatever the machine.
    let sent = number(&report, "sent_per_s");
    assert!((500.0..1500.0).contains(&sent), "{report}");
    assert!(report["publisher_late_max_us"].as_u64().is_some(), "{report}");
}

#[test]
fn conns_holds_idle_connections_and_measures_the_broker() {
    let broker = TestBroker::start();
    let report = bench(&broker, &["conns", "--connections", "60", "--concurrency", "20"]);
    assert_eq!(report["target_reached"], true, "{report}");
    assert_eq!(number(&report, "connected"), 60.0, "{report}");
    assert_eq!(number(&report, "failed"), 0.0, "{report}");
    assert!(number(&report, "connect_per_s") > 0.0, "{report}");
    assert!(number(&report, "source_addresses") > 1.0, "{report}");
    assert!(report["rss_per_connection_bytes"].is_number(), "{report}");
    assert!(number(&report, "broker_rss_after_kib") > 0.0, "{report}");
}

/// A broker with a store: offline queues on disk.
fn broker_with_store() -> (tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("[store]\ndata_dir = {:?}\nsync = \"always\"\n", dir.path().join("data"));
    (dir, TestBroker::start_midge_with(&store))
}

/// What every `offline` and `drain` report must say: every message published was acknowledged
/// and every session got all it was owed, once and in order.
fn assert_queues_delivered(report: &Value, owed: f64) {
    assert_eq!(number(report, "expected_total"), owed, "{report}");
    assert_eq!(number(report, "delivered_total"), owed, "{report}");
    assert_eq!(number(report, "lost"), 0.0, "{report}");
    assert_eq!(number(report, "duplicates"), 0.0, "{report}");
    assert_eq!(number(report, "out_of_order"), 0.0, "{report}");
    assert_eq!(number(report, "foreign"), 0.0, "{report}");
    assert_eq!((number(report, "unacknowledged"), number(report, "refused")), (0.0, 0.0), "{report}");
    assert_eq!(number(report, "errors"), 0.0, "{report}");
    assert!(number(report, "drain_s") > 0.0, "{report}");
}

#[test]
fn offline_queues_for_every_away_session_and_reads_every_queue_back() {
    let (_dir, broker) = broker_with_store();
    let args =
        ["offline", "--subscribers", "20", "--messages", "30", "--concurrency", "5", "--wave", "7", "--settle", "0"];
    let report = bench(&broker, &args);
    assert_eq!(report["scenario"], "offline");
    assert_eq!((number(&report, "sessions"), number(&report, "subscribed")), (20.0, 20.0), "{report}");
    assert_eq!((number(&report, "sent_total"), number(&report, "acked_total")), (30.0, 30.0), "{report}");
    assert_eq!(number(&report, "deliveries_queued"), 600.0, "{report}");
    assert_queues_delivered(&report, 600.0);
    assert_eq!((number(&report, "sessions_reconnected"), number(&report, "sessions_not_present")), (20.0, 0.0));
    assert_eq!((number(&report, "wave"), number(&report, "qos")), (7.0, 1.0), "{report}");
    assert!(number(&report, "rss_loaded_kib") > 0.0, "{report}");
    assert!(report["bytes_per_queued_delivery"].is_number(), "{report}");

    // Memory only, over MQTT 5 at QoS 2: nothing read back, so nothing counted as delivered
    // or lost; the sessions are removed all the same.
    let args =
        ["offline", "--subscribers", "10", "--messages", "5", "-V", "5", "-q", "2", "--no-drain", "--settle", "0"];
    let report = bench(&broker, &args);
    assert_eq!((report["drained"].as_bool(), report["version"].as_str()), (Some(false), Some("5")), "{report}");
    assert_eq!(number(&report, "deliveries_queued"), 50.0, "{report}");
    assert!(report["lost"].is_null() && report["delivered_total"].is_null(), "{report}");
    assert_eq!(number(&report, "errors"), 0.0, "{report}");
}

#[test]
fn offline_counts_the_same_against_mosquitto() {
    let broker = TestBroker::start_mosquitto("");
    let report =
        bench(&broker, &["offline", "--subscribers", "10", "--messages", "40", "--wave", "4", "--settle", "0"]);
    assert_queues_delivered(&report, 400.0);
}

#[test]
fn drain_reads_a_long_queue_back_beside_a_canary() {
    let (_dir, broker) = broker_with_store();
    let report = bench(&broker, &["drain", "--messages", "3000", "--rate", "500"]);
    assert_eq!(report["scenario"], "drain");
    assert_eq!((number(&report, "sent_total"), number(&report, "acked_total")), (3000.0, 3000.0), "{report}");
    assert_queues_delivered(&report, 3000.0);
    assert_eq!(report["session_present"], true, "{report}");
    assert!(number(&report, "drain_per_s") > 0.0, "{report}");
    let baseline = &report["canary_baseline_us"];
    assert!(baseline["count"].as_u64().is_some_and(|count| count > 0), "{report}");
    assert!(baseline["p50"].as_u64() <= baseline["p99"].as_u64(), "{report}");
    assert!(number(&report, "canary_delivered") > 0.0, "{report}");
    assert_eq!(number(&report, "canary_rate"), 500.0, "{report}");
}

#[test]
fn offline_and_drain_print_published_delivered_and_lost_in_their_tables() {
    let (_dir, broker) = broker_with_store();
    let (port, pid) = (broker.port().to_string(), broker.pid().to_string());
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["offline", "--subscribers", "5", "--messages", "10", "--settle", "0", "--broker-pid", &pid],
            &["5 persistent subscribers", "published", "50 deliveries", "bytes per queued delivery", "lost"],
        ),
        (
            &["drain", "--messages", "300", "--warmup", "0", "-d", "0.3"],
            &["300 messages queued", "read back", "300 of 300 owed", "canary before", "canary during"],
        ),
    ];
    for (args, labels) in cases {
        let mut command = midge(&["bench"]);
        command.args(args).args(["-p", &port]);
        let finished = run(command);
        assert_eq!(finished.code(), 0, "{args:?}: {finished:?}");
        let table = finished.text();
        for label in labels {
            assert!(table.contains(label), "{label:?} missing from:\n{table}");
        }
        assert!(table.contains("lost            0 "), "something lost:\n{table}");
    }
}

#[test]
fn the_table_is_printed_without_json() {
    let broker = TestBroker::start();
    let port = broker.port().to_string();
    let mut command = midge(&["bench"]);
    command.args(["fanout", "--subscribers", "2", "--rate", "500", "--warmup", "0", "-d", "1.1", "-p", &port]);
    let finished = run(command);
    assert_eq!(finished.code(), 0, "{finished:?}");
    let table = finished.text();
    for label in ["midge bench fanout: 1 publisher -> 2 subscribers", "delivered", "not delivered", "bench CPU"] {
        assert!(table.contains(label), "{label:?} missing from:\n{table}");
    }
    assert!(finished.stderr.contains("measuring: sent"), "no progress line: {finished:?}");
}

/// `--sn-port`: MQTT-SN publishers through the broker's gateway to MQTT subscribers.
fn sn_bench(args: &[&str]) -> Value {
    let broker = TestBroker::start_midge_with(&support::mqtt_sn_listener(""));
    let sn_port = broker.mqtt_sn_addr().port().to_string();
    let mut args = args.to_vec();
    args.extend(["--sn-port", &sn_port]);
    let report = bench(&broker, &args);
    assert_eq!(report["mqtt_sn_port"].as_u64().map(|port| port.to_string()), Some(sn_port), "{report}");
    report
}

#[test]
fn mqtt_sn_publishers_at_qos_1_reach_mqtt_subscribers_and_lose_nothing() {
    let report = sn_bench(&["fanin", "--publishers", "3", "-q", "1", "--rate", "1500"]);
    assert_traffic(&report);
    assert_nothing_lost(&report);
    assert_eq!(number(&report, "out_of_order"), 0.0, "{report}");
}

#[test]
fn mqtt_sn_publishers_at_qos_0_fan_out_to_mqtt_subscribers() {
    let report = sn_bench(&["fanout", "--subscribers", "2", "--rate", "1000"]);
    assert_traffic(&report);
    assert_eq!(number(&report, "expected_total"), 2.0 * number(&report, "sent_total"), "{report}");
}

#[test]
fn bad_arguments_exit_2_and_an_unreachable_broker_exits_1() {
    let cases: [(&[&str], &str); 8] = [
        (&["fanout", "--size", "4"], "--size"),
        (&["fanin", "--publishers", "0"], "--publishers"),
        (&["latency", "--rate", "0"], "--rate"),
        (&["pairs", "-d", "0"], "--duration"),
        (&["offline", "-q", "0"], "-q must be 1 or 2"),
        (&["drain", "--messages", "0"], "--messages"),
        (&["latency", "--sn-port", "1884"], "--sn-port"),
        (&["fanin", "-q", "2", "--sn-port", "1884"], "QoS 0 or 1"),
    ];
    for (args, message) in cases {
        let mut command = midge(&["bench"]);
        command.args(args);
        let finished: Finished = run(command);
        assert_eq!(finished.code(), 2, "{args:?}: {finished:?}");
        assert!(finished.stderr.contains(message), "{args:?}: {finished:?}");
    }
    let port = free_port().to_string();
    let mut command = midge(&["bench"]);
    command.args(["fanout", "-p", &port, "-d", "0.2"]);
    let finished = run(command);
    assert_eq!(finished.code(), 1, "{finished:?}");
    assert!(finished.stderr.contains("cannot connect"), "{finished:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as `ca.pem`, `server.pem` and
/// `server.key` in `dir`; returns the listener keys of a TLS listener using them.
fn tls_files(dir: &Path) -> String {
    let ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "Midge bench test CA");
    let ca = params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let server = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    format!("certfile = {:?}\nkeyfile = {:?}\n", dir.join("server.pem"), dir.join("server.key"))
}

#[test]
fn pairs_and_conns_over_tls_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start_midge_listener_with(&tls_files(dir.path()), "");
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let report = bench(&broker, &["pairs", "--pairs", "2", "-q", "1", "--rate", "1000", "--cafile", ca]);
    assert_eq!(report["tls"], true, "{report}");
    assert_traffic(&report);
    assert_nothing_lost(&report);
    let report = bench(&broker, &["conns", "--connections", "20", "--concurrency", "5", "--cafile", ca]);
    assert_eq!((number(&report, "connected"), number(&report, "failed")), (20.0, 0.0), "{report}");
    assert!(number(&report, "connect_per_s") > 0.0, "{report}");
}

#[test]
fn credentials_from_u_and_p_log_in_and_a_wrong_password_is_counted_as_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    let mut command = Command::new("mosquitto_passwd");
    command.arg("-c").arg("-b").arg(&passwords).args(["alice", "s3cret"]);
    assert_eq!(run(command).code(), 0, "mosquitto_passwd failed");
    let listener = format!("password_file = {:?}\n", passwords);
    let broker = TestBroker::start_midge_listener_with(&listener, "");
    let report =
        bench(&broker, &["fanout", "--subscribers", "2", "-q", "1", "--rate", "1000", "-u", "alice", "-P", "s3cret"]);
    assert_eq!(report["username"], "alice", "{report}");
    assert_traffic(&report);
    assert_nothing_lost(&report);
    let report = bench(&broker, &["conns", "--connections", "20", "-u", "alice", "-P", "wrong"]);
    assert_eq!(number(&report, "connected"), 0.0, "{report}");
    assert_eq!((number(&report, "failed"), number(&report, "refused_connects")), (20.0, 20.0), "{report}");
    assert!(report["first_error"].as_str().is_some_and(|error| error.contains("refused")), "{report}");
}
