//! mosquitto.conf directives Midge honours as mosquitto does, run with `midge serve -c FILE` and
//! Debian's mosquitto_sub and mosquitto_pub as the clients: `log_dest topic` (each log line
//! published to `$SYS/broker/log/...` by its level), `use_username_as_clientid` (the user
//! name is the client id, so a session follows the user whatever id its clients send).

mod interop_common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::{publish, publish_output, Sub};
use interop_common::run_bounded;
use support::TestBroker;

const TIMEOUT: Duration = Duration::from_secs(10);

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

/// Adds `user` with `password` to the password file at `path` with Debian's `mosquitto_passwd`
/// (`-H sha512`: quick to check).
fn mosquitto_passwd(path: &Path, user: &str, password: &str) {
    let mut command = Command::new("mosquitto_passwd");
    command.args(["-H", "sha512"]);
    if !path.exists() {
        command.arg("-c");
    }
    command.arg("-b").arg(path).args([user, password]);
    let (status, output) = run_bounded(command, TIMEOUT);
    assert!(status.success(), "mosquitto_passwd failed ({status}):\n{output}");
}

#[test]
fn use_username_as_clientid_gives_the_users_session_to_whatever_id_connects_and_refuses_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    mosquitto_passwd(&passwords, "alice", "secret");
    mosquitto_passwd(&passwords, "bob", "hunter2");
    let broker = TestBroker::start_midge_config(&mosquitto_conf(&format!(
        "password_file {}\nuse_username_as_clientid true\n",
        passwords.display()
    )));
    let alice = ["-u", "alice", "-P", "secret", "-c", "-q", "1", "-t", "persistent/#"];

    // A persistent session subscribed, under the id "first-id": its session is alice's.
    let mut first = Sub::start_with(&broker, "mqttv311", "first-id", &alice, "%t %p");
    first.wait_subscribed();
    let line = broker.wait_for_log("as alice (", TIMEOUT);
    assert!(line.contains("New client connected from 127.0.0.1:") && !line.contains("first-id"), "{line}");
    drop(first);
    broker.wait_for_log("Client alice closed its connection.", TIMEOUT);

    // Without a user name: refused, as mosquitto refuses it (v3 return code 5).
    let (status, output) = publish_output(&broker, "mqttv311", "anonymous", &["-t", "persistent/a", "-m", "no"]);
    assert!(!status.success() && output.contains("not authori"), "{status}: {output}");

    // Queued for alice's session, then delivered to her client with another id.
    publish(
        &broker,
        "mqttv311",
        "bob-publisher",
        &["-u", "bob", "-P", "hunter2", "-q", "1", "-t", "persistent/a", "-m", "queued"],
    );
    let second = Sub::start_with(&broker, "mqttv311", "second-id", &[&alice[..], &["-C", "1"]].concat(), "%t %p");
    assert_eq!(second.messages(), ["persistent/a queued"]);
    broker.wait_for_log("as bob (", TIMEOUT);
}
