//! Failures of `midge pub` and `midge sub`: each gives a clear message and the exit code
//! mosquitto_pub / mosquitto_sub give for the same failure (docs/clients.md lists them).
//! Where mosquitto can be run the same way, its exit code is checked beside ours.

mod cli_common;
mod support;

use std::process::Command;

use cli_common::{client, midge, run, start_subscriber};
use support::{free_port, TestBroker};

/// (arguments, text our stderr must contain) for bad command lines; all exit 1, as mosquitto.
const BAD_ARGUMENTS: &[(&str, &[&str], &str)] = &[
    ("sub", &["-t", "a", "--bogus"], "--bogus"),
    ("sub", &[], "You must specify a topic to subscribe to"),
    ("sub", &["-t", "a", "-q", "3"], "Invalid QoS given: 3"),
    ("sub", &["-t", "a/#/b"], "Invalid subscription topic 'a/#/b'"),
    ("sub", &["-t", "a", "-F", "%z"], "Invalid format specifier 'z'"),
    ("sub", &["-t", "a", "-C", "0"], "Invalid message count \"0\""),
    ("sub", &["-t", "a", "-R", "--retained-only"], "makes no sense"),
    ("sub", &["-t", "a", "-V", "7"], "Invalid protocol version"),
    ("sub", &["-t", "a", "-k", "2"], "between 5 and 65535"),
    ("sub", &["-t", "a", "-c"], "You must provide a client id"),
    ("sub", &["-L", "mqtt://localhost"], "topic missing"),
    ("sub", &["-t", "a", "-D", "connect", "bogus", "1", "-V", "mqttv5"], "Invalid property name"),
    ("pub", &["-t", "a"], "Both topic and message must be supplied"),
    ("pub", &["-t", "a", "-m", "x", "-n"], "Only one type of message"),
    ("pub", &["-t", "a/+", "-m", "x"], "Invalid publish topic 'a/+'"),
    ("pub", &["-t", "a", "-m", "x", "-p", "0"], "Invalid port given: 0"),
    ("pub", &["-t", "a", "-m", "x", "--will-payload", "w"], "Will payload given, but no will topic given"),
];

#[test]
fn bad_arguments_exit_1_like_mosquitto() {
    for (tool, args, message) in BAD_ARGUMENTS {
        let ours = run(midge(&[tool]).args(["-p", "1"]).args(*args).tap());
        assert_eq!(ours.code(), 1, "midge {tool} {args:?}: {ours:?}");
        assert!(ours.stderr.contains(message), "midge {tool} {args:?}: {:?} lacks {message:?}", ours.stderr);
        let mut reference = Command::new(format!("mosquitto_{tool}"));
        reference.args(["-p", "1"]).args(*args);
        let reference = run(reference);
        assert_eq!(reference.code(), 1, "mosquitto_{tool} {args:?}: {reference:?}");
    }
}

/// Lets a `&mut Command` chain end in a value for `run`.
trait Tap {
    fn tap(&mut self) -> Command;
}

impl Tap for Command {
    fn tap(&mut self) -> Command {
        let mut copy = Command::new(self.get_program());
        copy.args(self.get_args());
        copy
    }
}

#[test]
fn help_exits_1_like_mosquitto() {
    for tool in ["pub", "sub"] {
        let ours = run(midge(&[tool, "--help"]));
        assert_eq!(ours.code(), 1);
        assert!(ours.text().contains("Examples:"), "{}", ours.text());
        assert_eq!(run(midge_reference(tool, &["--help"])).code(), 1);
    }
}

fn midge_reference(tool: &str, args: &[&str]) -> Command {
    let mut command = Command::new(format!("mosquitto_{tool}"));
    command.args(args);
    command
}

#[test]
fn unreachable_broker_exits_1_with_the_os_error() {
    let port = free_port();
    for tool in ["pub", "sub"] {
        let args = ["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "a", "-m", "x"];
        let args = if tool == "sub" { &args[..6] } else { &args[..] };
        let ours = run(midge(&[tool]).args(args).tap());
        assert_eq!((ours.code(), ours.stderr.as_str()), (1, "Error: Connection refused\n"), "midge {tool}");
        assert_eq!(run(midge_reference(tool, args)).code(), 1, "mosquitto_{tool}");
    }
}

/// mosquitto with a password file refuses a wrong password: CONNACK 5 (3.1.1) or reason code
/// 0x87 Not authorized (5.0); the exit code is that code, for mosquitto's tools and ours.
#[test]
fn refused_connect_exits_with_the_connack_code() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let created = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwords)
        .args(["alice", "secret"])
        .status()
        .expect("mosquitto_passwd");
    assert!(created.success());
    let broker = TestBroker::start_mosquitto(&format!("password_file {}", passwords.display()));
    let cases: &[(&str, &str, i32, &str)] = &[
        ("pub", "mqttv311", 5, "Connection error: Connection Refused: not authorised.\nError: The connection was refused.\n"),
        ("sub", "mqttv311", 5, "Connection error: Connection Refused: not authorised.\n"),
        (
            "pub",
            "mqttv5",
            135,
            "Connection error: Not authorized\nError: A network protocol error occurred when communicating with the broker.\n",
        ),
        ("sub", "mqttv5", 135, "Connection error: Not authorized\n"),
    ];
    for (tool, version, code, message) in cases {
        let args = ["-V", version, "-u", "alice", "-P", "wrong", "-t", "a", "-m", "x"];
        let args = if *tool == "sub" { &args[..8] } else { &args[..] };
        let ours = run(client(&format!("midge-{tool}"), &broker, args));
        assert_eq!((ours.code(), ours.stderr.as_str()), (*code, *message), "midge {tool} -V {version}");
        let reference = run(client(&format!("mosquitto_{tool}"), &broker, args));
        assert_eq!((reference.code(), reference.stderr.as_str()), (*code, *message), "mosquitto_{tool} -V {version}");
    }
    // The right password gets through.
    let ok = run(client("midge-pub", &broker, &["-u", "alice", "-P", "secret", "-t", "a", "-m", "x"]));
    assert_eq!(ok.code(), 0, "{ok:?}");
}

/// `-W` expires: "Timed out", exit 27, as mosquitto_sub.
#[test]
fn timeout_exits_27() {
    let broker = TestBroker::start_midge_with("");
    let ours = run(client("midge-sub", &broker, &["-t", "nothing/here", "-W", "1"]));
    assert_eq!((ours.code(), ours.stderr.as_str()), (27, "Timed out\n"));
}

/// The broker goes away under a connected `midge sub`: a clear message and exit 7 (mosquitto_sub
/// would try to reconnect for ever; see docs/clients.md).
#[test]
fn dropped_link_exits_7() {
    let broker = TestBroker::start_midge_with("");
    let sub = start_subscriber(&broker, client("midge-sub", &broker, &["-t", "a", "-d"]), "");
    drop(broker); // SIGKILL: the socket closes without DISCONNECT.
    let ended = sub.finish();
    assert_eq!(ended.code(), 7, "{ended:?}");
    assert_eq!(ended.stderr, "Error: The connection was lost.\n");
}
