//! What the `interop_*` tests share beyond the harness in `support`.
#![allow(dead_code)]

use std::time::Duration;

use crate::support::{Target, TestBroker};

/// How long a broker may take to accept connections once the harness has seen it start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker with default settings that accepts connections.
///
/// The harness takes mosquitto's "Opening ipv4 listen socket" line as the sign it is up, but
/// mosquitto logs that line before it calls listen(), so a fast client can be refused. Its
/// "mosquitto version X running" line comes after every listener is open.
pub fn start_broker() -> TestBroker {
    let broker = TestBroker::start();
    if broker.target == Target::Mosquitto {
        broker.wait_for_log(" running", READY_TIMEOUT);
    }
    broker
}
