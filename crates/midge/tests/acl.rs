//! ACL files (`acl_file`, mosquitto's format) enforced over real sockets, checked with Debian's
//! `mosquitto_sub` and `mosquitto_pub`: a client reading or writing where it may not gets the
//! reason code (v5) and receives nothing, retained messages included. Without a password file
//! the user name a client gives is taken as it is (`allow_anonymous = true`), which is enough to
//! exercise each rule kind.

mod interop_common;
mod support;

use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::{publish, publish_output, Sub, SUB_TIMEOUT_SECS};
use interop_common::run_bounded;
use support::TestBroker;

const ACL: &str = "\
# anonymous clients may read what is public
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#

user bob
topic read alice/#
topic read devices/#
topic write bob/#

user publisher
topic write public/#

pattern readwrite devices/%c/#
";

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// A midge whose listener enforces [`ACL`].
fn broker() -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("acl");
    std::fs::write(&path, ACL).expect("write acl");
    let broker = TestBroker::start_midge_listener_with(&format!("acl_file = {:?}\n", path.display().to_string()), "");
    // The file is read at start; the directory may go now.
    drop(dir);
    broker
}

/// A publish the client may not make is not routed; a v5 publisher is told 0x87 (Not
/// authorized) in its PUBACK, a 3.1.1 one is acknowledged as mosquitto does. The subscriber's
/// next message is the one the right publisher sent afterwards.
#[test]
fn a_publish_outside_the_writers_rights_is_not_routed() {
    let broker = broker();
    for version in [V311, V5] {
        let mut sub = Sub::start_with(&broker, version, "bob-sub", &["-u", "bob", "-t", "alice/#", "-C", "1"], "%t|%p");
        assert_eq!(sub.wait_subscribed(), 0);
        let (_, output) = publish_output(
            &broker,
            version,
            "bob-pub",
            &["-u", "bob", "-t", "alice/inbox", "-m", "forged", "-q", "1", "-d"],
        );
        if version == V5 {
            assert!(output.contains("received PUBACK") && output.contains("RC:135"), "{version}: {output}");
        }
        publish(&broker, version, "alice-pub", &["-u", "alice", "-t", "alice/inbox", "-m", "real", "-q", "1"]);
        assert_eq!(sub.messages(), ["alice/inbox|real"], "{version}");
    }
}

/// A filter nothing readable could match is refused in SUBACK: 0x87 for v5, 0x80 for 3.1.1.
/// A wider filter that also covers readable topics is granted.
#[test]
fn a_subscription_outside_the_readers_rights_is_refused() {
    let broker = broker();
    for (version, refused) in [(V311, "128"), (V5, "135")] {
        let mut command = Command::new("mosquitto_sub");
        interop_common::mosquitto::connection_args(&mut command, &broker, version, "bob-spy");
        command.args(["-u", "bob", "-t", "bob/#", "-d", "-C", "1", "-W", SUB_TIMEOUT_SECS]);
        let (_, output) = run_bounded(command, Duration::from_secs(15));
        assert!(output.contains(&format!("Subscribed (mid: 1): {refused}")), "{version}: {output}");
    }
    let mut wide = Sub::start_with(&broker, V5, "bob-wide", &["-u", "bob", "-t", "#", "-C", "1"], "%t|%p");
    assert_eq!(wide.wait_subscribed(), 0, "# covers alice/#, which bob may read");
    publish(&broker, V5, "alice-pub", &["-u", "alice", "-t", "alice/secret/plan", "-m", "no", "-q", "1"]);
    publish(&broker, V5, "pub", &["-u", "publisher", "-t", "public/notice", "-m", "not bob's", "-q", "1"]);
    publish(&broker, V5, "alice-pub", &["-u", "alice", "-t", "alice/news", "-m", "yes", "-q", "1"]);
    // alice may not write under alice/secret (denied), and bob may not read public/notice: the
    // first message bob's `#` gets is alice/news.
    assert_eq!(wide.messages(), ["alice/news|yes"]);
}

/// Retained messages are checked against the reader's rights when they are sent: an anonymous
/// subscriber to `#` gets the public one and not alice's, and then the live message published
/// after its SUBACK.
#[test]
fn retained_messages_are_checked_against_the_reader() {
    let broker = broker();
    publish(&broker, V5, "alice-pub", &["-u", "alice", "-t", "alice/diary", "-m", "private", "-r", "-q", "1"]);
    publish(&broker, V5, "pub", &["-u", "publisher", "-t", "public/news", "-m", "hello", "-r", "-q", "1"]);
    for version in [V311, V5] {
        let mut sub = Sub::start_with(&broker, version, "anon", &["-t", "#", "-C", "2"], "%t|%p|%r");
        sub.wait_subscribed();
        publish(&broker, version, "pub", &["-u", "publisher", "-t", "public/after", "-m", "live", "-q", "1"]);
        assert_eq!(sub.messages(), ["public/news|hello|1", "public/after|live|0"], "{version}");
    }
}

/// Patterns: `%c` is the client's own id, so a device may use its own topics and not another's.
#[test]
fn patterns_give_each_client_its_own_topics() {
    let broker = broker();
    let mut sub = Sub::start_with(&broker, V5, "watcher", &["-u", "bob", "-t", "devices/#", "-C", "1"], "%t|%p");
    assert_eq!(sub.wait_subscribed(), 0);
    let (_, output) =
        publish_output(&broker, V5, "dev-3", &["-t", "devices/dev-2/cmd", "-m", "forged", "-q", "1", "-d"]);
    assert!(output.contains("RC:135"), "dev-3 writes under dev-2: {output}");
    publish(&broker, V5, "dev-2", &["-t", "devices/dev-2/cmd", "-m", "own", "-q", "1"]);
    assert_eq!(sub.messages(), ["devices/dev-2/cmd|own"]);
}

/// A bad ACL file stops the start with an error naming the file and the line.
#[test]
fn a_bad_acl_file_is_refused_at_start_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("broken.acl");
    std::fs::write(&acl, "topic read a/#\nuser\n").expect("write acl");
    let config = dir.path().join("midge.toml");
    let text = format!("[[listener]]\nbind = \"127.0.0.1:0\"\nacl_file = {:?}\n", acl.display().to_string());
    std::fs::write(&config, text).expect("write config");
    let mut command = Command::new(support::midge_bin());
    command.arg("serve").arg("-c").arg(&config).arg("--data-dir").arg(dir.path().join("data"));
    let (status, output) = run_bounded(command, Duration::from_secs(15));
    assert!(!status.success(), "{output}");
    assert!(output.contains("broken.acl") && output.contains("line 2"), "{output}");
}
