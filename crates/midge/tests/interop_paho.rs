//! Interoperability with Eclipse paho-mqtt 2.x for Python (`pip install 'paho-mqtt>=2,<3'`).
//!
//! The scenarios live in `tests/paho/interop.py`, one subcommand each; every test here starts its
//! own broker, runs one scenario against it and asserts that it succeeded, printing the script's
//! output when it did not. The script bounds each of its waits and its whole run.

mod interop_common;
mod support;
mod tls_common;

use support::TestBroker;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use interop_common::run_bounded;

/// Longer than the script's own watchdog, so the script reports its own hang first.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);

/// Runs `python3 interop.py --host 127.0.0.1 --port PORT ARGS` against a fresh broker.
fn scenario(args: &[&str]) {
    run_scenario(&TestBroker::start(), &[], args);
}

/// Runs the script against `broker` with `options` (before the scenario) and `args`.
fn run_scenario(broker: &TestBroker, options: &[&str], args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/paho/interop.py");
    let mut command = Command::new("python3");
    command.arg(&script).args(["--host", "127.0.0.1", "--port", &broker.port().to_string()]).args(options).args(args);
    let (status, output) = run_bounded(command, SCRIPT_TIMEOUT);
    assert!(status.success(), "paho scenario {options:?} {args:?} failed ({status}):\n{output}");
}

/// paho over TLS, trusting the test CA, to a midge TLS listener: round trips at QoS 1 and 2 for
/// 3.1.1 and 5.
#[test]
fn paho_round_trips_over_tls() {
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let broker = TestBroker::start_midge_listener_with(&pki.midge_listener(), "");
    let cafile = pki.arg("ca.pem");
    for protocol in ["3.1.1", "5"] {
        for qos in ["1", "2"] {
            run_scenario(&broker, &["--cafile", &cafile], &["roundtrip", "--protocol", protocol, "--qos", qos]);
        }
    }
}

/// paho's websockets transport (its own WebSocket client) to a midge `protocol =
/// "websockets"` listener, plain and over TLS (wss): round trips at QoS 0, 1 and 2 for 3.1.1
/// and 5 (MQTT section 6).
#[test]
fn paho_round_trips_over_websockets() {
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let websockets = "protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\n";
    let ws = TestBroker::start_midge_listener_with(websockets, "");
    let wss = TestBroker::start_midge_listener_with(&format!("{websockets}{}", pki.midge_listener()), "");
    let cafile = pki.arg("ca.pem");
    for (broker, tls) in [(&ws, &[][..]), (&wss, &["--cafile", cafile.as_str()][..])] {
        let options = [tls, &["--transport", "websockets", "--ws-path", "/mqtt"]].concat();
        for protocol in ["3.1.1", "5"] {
            for qos in ["0", "1", "2"] {
                run_scenario(broker, &options, &["roundtrip", "--protocol", protocol, "--qos", qos]);
            }
        }
    }
}

#[test]
fn paho_v31_qos0_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1", "--qos", "0"]);
}

#[test]
fn paho_v31_qos1_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1", "--qos", "1"]);
}

#[test]
fn paho_v31_qos2_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1", "--qos", "2"]);
}

#[test]
fn paho_v311_qos0_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1.1", "--qos", "0"]);
}

#[test]
fn paho_v311_qos1_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1.1", "--qos", "1"]);
}

#[test]
fn paho_v311_qos2_round_trip() {
    scenario(&["roundtrip", "--protocol", "3.1.1", "--qos", "2"]);
}

#[test]
fn paho_v5_qos0_round_trip() {
    scenario(&["roundtrip", "--protocol", "5", "--qos", "0"]);
}

#[test]
fn paho_v5_qos1_round_trip() {
    scenario(&["roundtrip", "--protocol", "5", "--qos", "1"]);
}

#[test]
fn paho_v5_qos2_round_trip() {
    scenario(&["roundtrip", "--protocol", "5", "--qos", "2"]);
}

/// MQTT-3.3.2-4, -6, -15, -16, -17, -18, -20: v5 application properties forwarded unaltered.
#[test]
fn paho_v5_publish_properties_forwarded() {
    scenario(&["properties"]);
}

/// 5.0 MQTT-3.1.2-5, MQTT-3.1.2-23, MQTT-3.2.2-3: Clean Start 0 with a Session Expiry Interval.
#[test]
fn paho_v5_persistent_session_receives_messages_queued_offline() {
    scenario(&["session", "--protocol", "5"]);
}

/// 3.1.1 MQTT-3.1.2-4, MQTT-3.1.2-5, MQTT-3.2.2-2: CleanSession 0.
#[test]
fn paho_v311_persistent_session_receives_messages_queued_offline() {
    scenario(&["session", "--protocol", "3.1.1"]);
}
