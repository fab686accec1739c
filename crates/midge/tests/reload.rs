//! SIGHUP reloads the listeners' files, as mosquitto's does: a user added to the password file
//! and the ACL gets in afterwards, while a client connected before the reload stays connected;
//! a file that became unusable changes nothing and says so.

mod interop_common;
mod support;

use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::{publish, publish_output, Sub};
use interop_common::run_bounded;
use support::TestBroker;

const V5: &str = "mqttv5";
const WAIT: Duration = Duration::from_secs(10);

fn mosquitto_passwd(args: &[&str]) {
    let mut command = Command::new("mosquitto_passwd");
    command.args(args);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_passwd {args:?}: {output}");
}

fn hangup(broker: &TestBroker) {
    let status = Command::new("kill").args(["-HUP", &broker.pid().to_string()]).status().expect("kill");
    assert!(status.success());
}

#[test]
fn sighup_reloads_passwords_and_acls_and_keeps_connected_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    let acl = dir.path().join("acl");
    let passwords_arg = passwords.display().to_string();
    mosquitto_passwd(&["-c", "-b", &passwords_arg, "alice", "alice-pw"]);
    std::fs::write(&acl, "user alice\ntopic readwrite room/#\n").expect("acl");
    let listener = format!("password_file = {passwords_arg:?}\nacl_file = {:?}\n", acl.display().to_string());
    let broker = TestBroker::start_midge_listener_with(&listener, "");

    let mut alice =
        Sub::start_with(&broker, V5, "alice", &["-u", "alice", "-P", "alice-pw", "-t", "room/#", "-C", "2"], "%t|%p");
    assert_eq!(alice.wait_subscribed(), 0);
    let bob = ["-u", "bob", "-P", "bob-pw", "-t", "room/door", "-q", "1"];
    let (status, output) = publish_output(&broker, V5, "bob", &[&bob[..], &["-m", "early"]].concat());
    assert!(!status.success(), "bob is not in the password file yet: {output}");

    mosquitto_passwd(&["-b", &passwords_arg, "bob", "bob-pw"]);
    std::fs::write(&acl, "user alice\ntopic readwrite room/#\nuser bob\ntopic write room/door\n").expect("acl");
    hangup(&broker);
    broker.wait_for_log("listener reloaded", WAIT);
    publish(&broker, V5, "bob", &[&bob[..], &["-m", "knock"]].concat());

    // An unusable ACL file: the reload fails, naming the file, and bob keeps his rights.
    std::fs::write(&acl, "user alice\ntopic sometimes room/#\n").expect("acl");
    hangup(&broker);
    let failure = broker.wait_for_log("reload failed", WAIT);
    assert!(failure.contains("acl") && failure.contains("line 2"), "{failure}");
    publish(&broker, V5, "bob", &[&bob[..], &["-m", "again"]].concat());

    // alice, connected before both reloads, received both messages on the same connection.
    assert_eq!(alice.messages(), ["room/door|knock", "room/door|again"]);
}
