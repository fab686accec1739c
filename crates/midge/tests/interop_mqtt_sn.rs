//! Interoperability of the MQTT-SN gateway with a client nobody on the team wrote: the PyPI
//! package `mqtt-sn-12` (`pip install mqtt-sn-12`; its `mqtt_sn_pub` and `mqtt_sn_sub` tools,
//! run as `python3 -m mqttsn12.mqtt_sn_pub` so no script directory needs to be on PATH), with
//! Debian's `mosquitto_sub` and `mosquitto_pub` on the MQTT side.
//!
//! Nothing is published before its subscriber is subscribed: `mosquitto_sub -d` says when its
//! SUBACK came, and the gateway logs (at debug) when it subscribed an MQTT-SN client. Every
//! process and every wait is bounded.

mod interop_common;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use interop_common::mosquitto::{publish, Sub};
use interop_common::run_bounded;
use support::TestBroker;

const V311: &str = "mqttv311";

/// How long one client process may take.
const WAIT: Duration = Duration::from_secs(30);

/// A broker with an MQTT listener and an MQTT-SN one with predefined topic id 5.
fn broker() -> TestBroker {
    let listener = support::mqtt_sn_listener("[listener.sn_predefined_topics]\n5 = \"pre/five\"");
    TestBroker::start_midge_with(&listener)
}

/// `python3 -m mqttsn12.TOOL -h 127.0.0.1 -p PORT ARGS`.
fn sn_tool(broker: &TestBroker, tool: &str, args: &[&str]) -> Command {
    let port = broker.mqtt_sn_addr().port().to_string();
    let mut command = Command::new("python3");
    command
        .args(["-m", &format!("mqttsn12.{tool}"), "-h", "127.0.0.1", "-p", &port, "--timeout", "10"])
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    command
}

/// Runs `mqtt_sn_pub ARGS` to its end; it must succeed.
fn sn_publish(broker: &TestBroker, args: &[&str]) {
    let (status, output) = run_bounded(sn_tool(broker, "mqtt_sn_pub", args), WAIT);
    assert!(status.success(), "mqtt_sn_pub {args:?} failed ({status}):\n{output}");
}

/// Starts `mqtt_sn_sub -i ID -1 ARGS` (it exits after one message) on a thread, waits until the
/// gateway has subscribed it, and returns a handle that yields what it printed.
fn sn_subscribe(broker: &TestBroker, id: &str, args: &[&str]) -> std::thread::JoinHandle<String> {
    let mut command = sn_tool(broker, "mqtt_sn_sub", &["-i", id, "-1"]);
    command.args(args);
    let what = format!("mqtt_sn_sub {args:?}");
    let running = std::thread::spawn(move || {
        let (status, output) = run_bounded(command, WAIT);
        assert!(status.success(), "{what} failed ({status}):\n{output}");
        output
    });
    broker.wait_for_log(&format!("client_id={id} filter_text="), Duration::from_secs(20));
    running
}

/// mqtt_sn_pub → mosquitto_sub at QoS 0, 1 and 2 (REGISTER, then PUBLISH on the id), to a short
/// topic name, and at QoS -1 to a predefined topic id without a connection.
#[test]
fn mqtt_sn_pub_reaches_mosquitto_sub() {
    let broker = broker();
    let cases: [(&str, &[&str], &str); 5] = [
        ("sn/topic", &["-t", "sn/topic", "-q", "0"], "qos 0"),
        ("sn/topic", &["-t", "sn/topic", "-q", "1"], "qos 1"),
        ("sn/topic", &["-t", "sn/topic", "-q", "2"], "qos 2"),
        ("ab", &["-t", "ab", "-q", "1"], "short name"),
        ("pre/five", &["-T", "5", "-q", "-1"], "qos -1"),
    ];
    for (n, (topic, args, payload)) in cases.into_iter().enumerate() {
        let mut sub = Sub::start(&broker, V311, &format!("mosq-{n}"), topic, 2, 1, "%t|%p");
        sub.wait_subscribed();
        let mut args = args.to_vec();
        args.extend(["-m", payload]);
        sn_publish(&broker, &args);
        assert_eq!(sub.messages(), [format!("{topic}|{payload}")], "{args:?}");
    }
}

/// mosquitto_pub → mqtt_sn_sub through a wildcard subscription (the gateway REGISTERs the topic
/// first, which the client accepts), and through a predefined topic id.
#[test]
fn mosquitto_pub_reaches_mqtt_sn_sub() {
    let broker = broker();
    let sub = sn_subscribe(&broker, "sn-wild", &["-t", "sensors/+", "-q", "1"]);
    publish(&broker, V311, "mosq-pub", &["-t", "sensors/kitchen", "-m", "21.5", "-q", "1"]);
    assert_eq!(sub.join().expect("subscriber").trim(), "21.5");

    let sub = sn_subscribe(&broker, "sn-pre", &["-T", "5", "-q", "1"]);
    publish(&broker, V311, "mosq-pub", &["-t", "pre/five", "-m", "five", "-q", "1"]);
    assert_eq!(sub.join().expect("subscriber").trim(), "five");
}

/// The will an mqtt_sn_sub gives in the will dialogue is published when it disappears: killed,
/// it stops sending PINGREQ, and its keep alive of 1 s runs out.
#[test]
fn a_vanished_mqtt_sn_client_s_will_reaches_mosquitto_sub() {
    let broker = broker();
    let mut sub = Sub::start(&broker, V311, "mosq-will", "wills/#", 1, 1, "%t|%p");
    sub.wait_subscribed();
    let will = ["-t", "nothing/here", "-k", "1", "--will-topic", "wills/sn", "--will-payload", "gone"];
    let mut command = sn_tool(&broker, "mqtt_sn_sub", &["-i", "sn-will"]);
    command.args(will).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child: Child = command.spawn().expect("start python3 -m mqttsn12.mqtt_sn_sub (pip install mqtt-sn-12)");
    broker.wait_for_log("client_id=sn-will filter_text=", Duration::from_secs(20));
    child.kill().expect("kill mqtt_sn_sub");
    child.wait().expect("reap mqtt_sn_sub");
    assert_eq!(sub.messages(), ["wills/sn|gone"]);
    broker.wait_for_log("client_id=sn-will reason=keep alive timeout", Duration::from_secs(10));
}
