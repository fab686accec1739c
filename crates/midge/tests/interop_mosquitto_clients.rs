//! Interoperability with Debian's `mosquitto_pub` and `mosquitto_sub` (2.0.x), run as child
//! processes against the broker, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! `mosquitto_sub` runs with `-d`, so its debug lines tell when its SUBSCRIBE has been
//! acknowledged; only then is anything published, so no test sleeps. Messages are printed with a
//! `-F` format that starts with a marker, which tells them from the debug lines. Every process
//! and every wait is bounded.

mod interop_common;
mod support;

use interop_common::mosquitto::{publish, Sub};
use support::TestBroker;

/// The `-V` names of the protocol versions.
const V31: &str = "mqttv31";
const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// A payload with spaces and non-ASCII UTF-8, passed as one argument.
const PAYLOAD: &str = "hello from mosquitto_pub, ünïcødé €";

/// A subscriber at `qos` receives a message published at `qos`, unaltered, at that QoS and with
/// RETAIN 0.
fn round_trip(version: &str, qos: u8) {
    let broker = TestBroker::start();
    let topic = format!("mc/{version}/qos{qos}");
    let mut sub = Sub::start(&broker, version, "rt-sub", &topic, qos, 1, "%q|%r|%t|%p");
    // 3.1.1 MQTT-3.8.4-5 / 5.0 MQTT-3.8.4-7: the SUBACK grants the QoS asked for (default settings).
    assert_eq!(sub.wait_subscribed(), qos, "granted QoS");
    publish(&broker, version, "rt-pub", &["-t", &topic, "-m", PAYLOAD, "-q", &qos.to_string()]);
    // 3.1.1 MQTT-3.8.4-6 / 5.0 MQTT-3.8.4-8: delivered at min(published, granted) QoS;
    // 3.1.1 MQTT-3.3.1-9 / 5.0 MQTT-3.3.1-12: RETAIN 0 to an established subscription.
    assert_eq!(sub.messages(), [format!("{qos}|0|{topic}|{PAYLOAD}")]);
}

#[test]
fn mqttv31_qos0_round_trip() {
    round_trip(V31, 0);
}

#[test]
fn mqttv31_qos1_round_trip() {
    round_trip(V31, 1);
}

#[test]
fn mqttv31_qos2_round_trip() {
    round_trip(V31, 2);
}

#[test]
fn mqttv311_qos0_round_trip() {
    round_trip(V311, 0);
}

#[test]
fn mqttv311_qos1_round_trip() {
    round_trip(V311, 1);
}

#[test]
fn mqttv311_qos2_round_trip() {
    round_trip(V311, 2);
}

#[test]
fn mqttv5_qos0_round_trip() {
    round_trip(V5, 0);
}

#[test]
fn mqttv5_qos1_round_trip() {
    round_trip(V5, 1);
}

#[test]
fn mqttv5_qos2_round_trip() {
    round_trip(V5, 2);
}

/// `mosquitto_pub -r` stores a retained message for later subscribers; `-r -n` clears it.
fn retained_set_and_cleared(version: &str) {
    let broker = TestBroker::start();
    let topic = format!("mc/{version}/retained");
    publish(&broker, version, "ret-pub", &["-t", &topic, "-m", PAYLOAD, "-q", "1", "-r"]);
    // 3.1.1 MQTT-3.3.1-5, MQTT-3.3.1-6 / 5.0 MQTT-3.3.1-5, MQTT-3.3.1-9: a later subscriber gets
    // the retained message; 3.1.1 MQTT-3.3.1-8 / 5.0 §3.3.1.3: with RETAIN 1.
    let sub = Sub::start(&broker, version, "ret-sub1", &topic, 1, 1, "%q|%r|%t|%p");
    assert_eq!(sub.messages(), [format!("1|1|{topic}|{PAYLOAD}")]);

    publish(&broker, version, "ret-clear", &["-t", &topic, "-n", "-q", "1", "-r"]);
    // 3.1.1 MQTT-3.3.1-10, MQTT-3.3.1-11 / 5.0 MQTT-3.3.1-6, MQTT-3.3.1-7: the empty retained
    // message removed the stored one and was not stored itself. Retained messages are sent on
    // SUBSCRIBE, before any later publish, so the first message must be the sentinel.
    let mut sub = Sub::start(&broker, version, "ret-sub2", &topic, 1, 1, "%q|%r|%t|%p");
    sub.wait_subscribed();
    publish(&broker, version, "ret-sentinel", &["-t", &topic, "-m", "sentinel", "-q", "1"]);
    assert_eq!(sub.messages(), [format!("1|0|{topic}|sentinel")]);
}

#[test]
fn mqttv311_retained_set_and_cleared() {
    retained_set_and_cleared(V311);
}

#[test]
fn mqttv5_retained_set_and_cleared() {
    retained_set_and_cleared(V5);
}

#[test]
fn mqttv5_publish_properties_forwarded() {
    let broker = TestBroker::start();
    let topic = "mc/v5/properties";
    let mut sub = Sub::start(&broker, V5, "props-sub", topic, 1, 1, "%P|%C|%R|%D|%F|%p");
    sub.wait_subscribed();
    #[rustfmt::skip]
    let args = [
        "-t", topic, "-m", "{\"a\":1}", "-q", "1",
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "user-property", "k1", "v1 again",
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "response-topic", "mc/v5/reply",
        "-D", "publish", "correlation-data", "req-42",
        "-D", "publish", "payload-format-indicator", "1",
    ];
    publish(&broker, V5, "props-pub", &args);
    // MQTT-3.3.2-17, MQTT-3.3.2-18: user properties unaltered and in order (`%P` prints them as
    // key:value separated by spaces); MQTT-3.3.2-20 content type, MQTT-3.3.2-15 response topic,
    // MQTT-3.3.2-16 correlation data, MQTT-3.3.2-4 payload format indicator, all unaltered.
    assert_eq!(sub.messages(), ["k1:v1 k2:v2 k1:v1 again|application/json|mc/v5/reply|req-42|1|{\"a\":1}"]);
}

/// A client killed with SIGKILL (TCP closed without DISCONNECT) has its will published.
fn will_on_kill(version: &str) {
    let broker = TestBroker::start();
    let topic = format!("mc/{version}/will");
    let mut watcher = Sub::start(&broker, version, "will-watcher", &topic, 1, 1, "%q|%r|%t|%p");
    watcher.wait_subscribed();
    #[rustfmt::skip]
    let args = [
        "-t", "mc/unrelated", "--will-topic", &topic, "--will-payload", PAYLOAD, "--will-qos", "1",
    ];
    let mut doomed = Sub::start_with(&broker, version, "will-doomed", &args, "%p");
    doomed.wait_for("received CONNACK");
    // Drop sends SIGKILL: the OS closes the socket, no DISCONNECT is sent.
    drop(doomed);
    // 3.1.1 MQTT-3.1.2-8 / 5.0 MQTT-3.1.2-8: the will is published, at its QoS, RETAIN 0.
    assert_eq!(watcher.messages(), [format!("1|0|{topic}|{PAYLOAD}")]);
}

#[test]
fn mqttv311_will_published_when_client_is_killed() {
    will_on_kill(V311);
}

#[test]
fn mqttv5_will_published_when_client_is_killed() {
    will_on_kill(V5);
}
