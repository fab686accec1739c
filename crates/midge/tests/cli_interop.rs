//! `midge pub` and `midge sub` against `midge serve` and Debian's mosquitto, at QoS 0, 1 and 2,
//! for MQTT 3.1.1 and 5.0. The subscriber runs with `-d` (or is watched through mosquitto's log)
//! so nothing is published before its SUBACK; no test sleeps.

mod cli_common;
mod support;

use cli_common::{client, run, start_subscriber};
use support::TestBroker;

/// One `midge sub` at QoS 2 receives a message published by `midge pub` at each QoS, at that
/// QoS (MQTT-3.8.4-6 / MQTT-3.8.4-8: min(published, granted)), unaltered.
fn round_trip(broker: &TestBroker, version: &str) {
    let topic = format!("cli/{version}/round-trip");
    let id = format!("cli-sub-{version}");
    let sub_args = ["-V", version, "-i", &id, "-t", &topic, "-q", "2", "-C", "3", "-d", "-F", "MSG|%q|%r|%t|%p"];
    let sub = start_subscriber(broker, client("midge-sub", broker, &sub_args), &id);
    for qos in ["0", "1", "2"] {
        let payload = format!("payload at QoS {qos}, ünïcødé");
        let published = run(client("midge-pub", broker, &["-V", version, "-t", &topic, "-m", &payload, "-q", qos]));
        assert_eq!(published.code(), 0, "midge pub -q {qos}: {published:?}");
    }
    let received = sub.finish();
    assert_eq!(received.code(), 0, "{received:?}");
    let lines: Vec<String> =
        received.text().lines().filter(|line| line.starts_with("MSG|")).map(str::to_owned).collect();
    let expected: Vec<String> =
        ["0", "1", "2"].iter().map(|qos| format!("MSG|{qos}|0|{topic}|payload at QoS {qos}, ünïcødé")).collect();
    assert_eq!(lines, expected);
}

#[test]
fn midge_serve_mqttv311_qos_0_1_2() {
    round_trip(&TestBroker::start_midge_with(""), "mqttv311");
}

#[test]
fn midge_serve_mqttv5_qos_0_1_2() {
    round_trip(&TestBroker::start_midge_with(""), "mqttv5");
}

#[test]
fn mosquitto_mqttv311_qos_0_1_2() {
    round_trip(&TestBroker::start_mosquitto(""), "mqttv311");
}

#[test]
fn mosquitto_mqttv5_qos_0_1_2() {
    round_trip(&TestBroker::start_mosquitto(""), "mqttv5");
}

/// A retained message published by `midge pub -r` reaches a later `midge sub`, and `-r -n`
/// clears it (MQTT-3.3.1-6, MQTT-3.3.1-10/11), against midge.
#[test]
fn midge_serve_retained_set_and_cleared() {
    let broker = TestBroker::start_midge_with("");
    let topic = "cli/retained";
    assert_eq!(run(client("midge-pub", &broker, &["-t", topic, "-m", "kept", "-q", "1", "-r"])).code(), 0);
    let got = run(client("midge-sub", &broker, &["-t", topic, "-C", "1", "-F", "%r|%p"]));
    assert_eq!(got.text(), "1|kept\n");
    assert_eq!(run(client("midge-pub", &broker, &["-t", topic, "-n", "-r"])).code(), 0);
    // Nothing retained any more: -E exits after the SUBACK without printing anything.
    let got = run(client("midge-sub", &broker, &["-t", topic, "-E", "-v"]));
    assert_eq!((got.code(), got.text()), (0, String::new()));
}
