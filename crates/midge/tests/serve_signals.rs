//! Signals `midge serve` handles: SIGHUP, which logrotate and mosquitto admins send to ask for a
//! reload, is logged and the broker keeps serving (what a reload changes: reload_config.rs);
//! SIGTERM still stops it cleanly.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::process::Command;
use std::time::Duration;

use support::TestBroker;
use wire::{Client, Version};

#[test]
fn sighup_is_logged_and_the_broker_keeps_serving() {
    let broker = TestBroker::start_midge_with("");
    let sent = Command::new("kill").arg("-HUP").arg(broker.pid().to_string()).status().expect("kill -HUP");
    assert!(sent.success());
    broker.wait_for_log("SIGHUP received", Duration::from_secs(10));
    // Still serving: a new client gets its CONNACK.
    let client = Client::new(&broker, Version::V3_1_1, "after-sighup");
    drop(client);
    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}");
}
