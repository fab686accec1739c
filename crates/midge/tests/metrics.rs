//! `GET /metrics` on an HTTP listener (docs/metrics.md): after known traffic from Debian's
//! `mosquitto_pub` and `mosquitto_sub`, a scrape with `curl` carries the counts, passes
//! `promtool check metrics` (Debian's `prometheus` package) and parses with Prometheus' own
//! Python client (`prometheus_client`); and it takes a bearer token unless `metrics_anonymous`.

mod interop_common;
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interop_common::mosquitto::{publish, Sub};
use interop_common::run_bounded;
use support::TestBroker;

/// How long a command may take.
const WAIT: Duration = Duration::from_secs(10);

const TOKEN: &str = "scr4pe";

/// A broker with an MQTT listener (1), an MQTT-SN one (2) and an HTTP one (3) with `keys`,
/// without `$SYS` (whose retained messages would count).
fn broker_with(keys: &str) -> (TestBroker, SocketAddr) {
    let http = format!("[[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n{keys}\n");
    let extra = format!("[sys]\ninterval = 0\n\n{}\n{http}", support::mqtt_sn_listener(""));
    let broker = TestBroker::start_midge_with(&extra);
    let addr = broker.listener_addr("listening (http api)");
    (broker, addr)
}

/// What `curl` got.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `curl -s` of `/metrics` at `http` with `args`.
fn scrape(http: SocketAddr, args: &[&str]) -> Answer {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "-w", "\n%{content_type}\n%{http_code}"]).args(args);
    command.arg(format!("http://{http}/metrics"));
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "curl {args:?} failed: {output}");
    let mut parts = output.trim_end().rsplitn(3, '\n');
    let code = parts.next().unwrap().parse().unwrap_or_else(|_| panic!("no status in {output:?}"));
    let content_type = parts.next().unwrap_or_default().to_owned();
    Answer { status: code, content_type, body: parts.next().unwrap_or_default().to_owned() }
}

fn with_token(http: SocketAddr) -> Answer {
    let answer = scrape(http, &["-H", &format!("Authorization: Bearer {TOKEN}")]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
}

/// Every sample of the exposition, `name{labels}` → value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a value: {line}")))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples.get(name).unwrap_or_else(|| panic!("no sample {name}"))
}

/// Runs `program` with `args`, `input` on its stdin; returns whether it succeeded and what it
/// printed (stdout and stderr).
fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// What Prometheus' Python client makes of the exposition: a line `family TYPE` per family,
/// then `sample NAME VALUE` per sample whose labels are given as `{k=v,...}` in the name.
const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type)
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print("sample", s.name + "{" + labels + "}", float(s.value))
"#;

#[test]
fn a_scrape_counts_known_traffic_and_passes_promtool_and_the_python_parser() {
    let (broker, http) = broker_with(&format!("[listener.http_tokens]\nops = \"{TOKEN}\"\n"));
    let mut sub = Sub::start(&broker, "mqttv311", "metrics-sub", "m/#", 2, 4, "%t %p");
    sub.wait_subscribed();
    publish(&broker, "mqttv311", "p0a", &["-t", "m/a", "-m", "zero", "-q", "0"]);
    publish(&broker, "mqttv311", "p0b", &["-t", "m/b", "-m", "zero", "-q", "0"]);
    publish(&broker, "mqttv5", "p1", &["-t", "m/c", "-m", "one", "-q", "1", "-r"]);
    publish(&broker, "mqttv311", "p2", &["-t", "m/d", "-m", "two", "-q", "2"]);
    assert_eq!(sub.messages().len(), 4);

    let answer = with_token(http);
    assert_eq!(answer.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let body = answer.body;
    let s = samples(&body);
    for (qos, count) in [("0", 2.0), ("1", 1.0), ("2", 1.0)] {
        assert_eq!(value(&s, &format!("midge_publish_packets_received_total{{qos=\"{qos}\"}}")), count, "{body}");
        assert_eq!(value(&s, &format!("midge_messages_received_total{{qos=\"{qos}\"}}")), count, "{body}");
    }
    assert_eq!(value(&s, "midge_messages_sent_total"), 4.0);
    assert_eq!(value(&s, "midge_retained_messages"), 1.0);
    let sessions = value(&s, "midge_sessions{state=\"connected\"}") + value(&s, "midge_sessions{state=\"offline\"}");
    assert_eq!(value(&s, "midge_session_queue_messages_count"), sessions);
    assert_eq!(value(&s, "midge_session_queue_messages_bucket{le=\"+Inf\"}"), sessions);
    assert!(value(&s, "midge_retained_bytes") >= 3.0);
    assert_eq!(value(&s, "midge_connections_accepted_total"), 5.0);
    assert_eq!(value(&s, "midge_messages_dropped_total{reason=\"queue_full\"}"), 0.0);
    assert_eq!(value(&s, "midge_limit_refusals_total{limit=\"max_packet_size\"}"), 0.0);
    assert_eq!(value(&s, "midge_listener_accepted_total{listener=\"1\",protocol=\"mqtt\"}"), 5.0);
    assert!(value(&s, "midge_listener_accepted_total{listener=\"3\",protocol=\"http\"}") >= 1.0);
    assert_eq!(
        value(&s, "midge_listener_mqtt_sn_dropped_total{listener=\"2\",protocol=\"mqtt-sn\",reason=\"malformed\"}"),
        0.0
    );
    // The retained QoS 1 message was committed to the store, and every commit is in the histogram.
    let commits = value(&s, "midge_store_commits_total");
    assert!(commits >= 1.0, "{body}");
    assert_eq!(value(&s, "midge_store_commit_seconds_count"), commits);
    assert_eq!(value(&s, "midge_store_commit_seconds_bucket{le=\"+Inf\"}"), commits);
    assert!(value(&s, "midge_store_bytes") > 0.0);
    assert!(value(&s, "process_resident_memory_bytes") > 1e6);
    assert!(value(&s, "process_open_fds") > 3.0 && value(&s, "process_max_fds") >= value(&s, "process_open_fds"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let started = value(&s, "process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 120.0, "started {started}, now {now}");

    let (ok, output) = run_with_input("promtool", &["check", "metrics"], &body);
    assert!(ok, "promtool check metrics (apt-get install prometheus) refused it:\n{output}\n{body}");

    let (ok, output) = run_with_input("python3", &["-c", PARSE], &body);
    assert!(ok, "prometheus_client (pip install prometheus_client) could not parse it:\n{output}");
    for family in [
        "family midge_connections gauge",
        "family midge_messages_received counter",
        "family midge_messages_dropped counter",
        "family midge_store_commit_seconds histogram",
        "family midge_session_queue_messages histogram",
        "family midge_listener_connections gauge",
        "family process_cpu_seconds counter",
    ] {
        assert!(output.lines().any(|line| line == family), "no {family:?} in:\n{output}");
    }
    assert!(output.lines().any(|line| line == "sample midge_messages_received_total{qos=0} 2.0"), "{output}");
}

#[test]
fn a_scrape_takes_a_bearer_token_of_the_listener() {
    let (_broker, http) = broker_with(&format!("[listener.http_tokens]\nops = \"{TOKEN}\"\n"));
    for args in [&[][..], &["-H", "Authorization: Bearer wrong"][..], &["-u", "ops:scr4pe"][..]] {
        let answer = scrape(http, args);
        assert_eq!(answer.status, 401, "{args:?}: {}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body).expect("a JSON error");
        assert_eq!(json["error"], "unauthorized", "{args:?}: {}", answer.body);
    }
    assert!(with_token(http).body.contains("# TYPE midge_connections gauge"));
}

#[test]
fn metrics_anonymous_lets_a_scrape_without_credentials_in_but_not_a_wrong_token() {
    let (_broker, http) =
        broker_with(&format!("metrics_anonymous = true\n[listener.http_tokens]\nops = \"{TOKEN}\"\n"));
    let answer = scrape(http, &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("# TYPE midge_connections gauge"));
    assert_eq!(scrape(http, &["-H", "Authorization: Bearer wrong"]).status, 401);
    assert_eq!(with_token(http).status, 200);
}
