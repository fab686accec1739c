//! mosquitto.conf directives Midge honours as mosquitto does, run with `midge serve -c FILE` and
//! Debian's mosquitto_sub and mosquitto_pub as the clients: `log_dest topic` (each log line
//! published to `$SYS/broker/log/...` by its level).

mod interop_common;
mod support;

use interop_common::mosquitto::{publish, Sub};
use support::TestBroker;

/// A mosquitto.conf with a listener on a port Midge reports, stderr kept for the harness, and
/// `extra`.
fn mosquitto_conf(extra: &str) -> String {
    format!("listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n{extra}")
}

#[test]
fn log_dest_topic_publishes_a_clients_connect_under_sys_broker_log_n() {
    let broker = TestBroker::start_midge_config(&mosquitto_conf("log_dest topic\nlog_type all\n"));
    let mut sub = Sub::start_with(&broker, "mqttv311", "log-reader", &["-t", "$SYS/broker/log/#"], "%t %p");
    sub.wait_subscribed();
    publish(&broker, "mqttv311", "logged-client", &["-t", "a/b", "-m", "hello"]);
    // mosquitto: "$SYS/broker/log/N" "New client connected from 127.0.0.1:PORT as logged-client
    // (p2, c1, k60)."
    let line = sub.wait_for("as logged-client (");
    assert!(line.starts_with("MSG|$SYS/broker/log/N "), "{line}");
    assert!(line.contains("New client connected from 127.0.0.1:"), "{line}");
    let line = sub.wait_for("Client logged-client disconnected");
    assert!(line.starts_with("MSG|$SYS/broker/log/N "), "{line}");
}
