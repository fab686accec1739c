//! `[log]` as operators use it: a file that logrotate renames and SIGHUP reopens, syslog
//! datagrams with their priority, JSON lines, lines without timestamps, connection messages
//! turned off, and a destination that cannot be opened stopping the start.
//!
//! The harness reads the broker's stderr to learn its port and wait for lines, so the tests
//! that use it keep stderr among the destinations.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{midge_bin, TestBroker};
use wire::{Client, Version};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the file at `path` has a line containing `needle`; panics after [`TIMEOUT`].
fn wait_for_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no line containing {needle:?} in {}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send_signal(broker: &TestBroker, signal: &str) {
    let sent = Command::new("kill").arg(signal).arg(broker.pid().to_string()).status().expect("kill");
    assert!(sent.success(), "kill {signal}");
}

#[test]
fn the_log_file_gets_every_line_and_sighup_reopens_it_after_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("midge.log");
    let broker = TestBroker::start_midge_with(&format!(
        "destinations = [\"stderr\", \"file\"]\nfile = \"{}\"\n",
        path.display()
    ));
    wait_for_line(&path, "listening (mqtt over tcp)");
    let client = Client::new(&broker, Version::V3_1_1, "before-rotation");
    wait_for_line(&path, "New client connected from");
    client.disconnect();
    wait_for_line(&path, "Client before-rotation disconnected.");

    // What logrotate does without copytruncate: rename, then `kill -HUP` in postrotate.
    let rotated = dir.path().join("midge.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    send_signal(&broker, "-HUP");
    wait_for_line(&path, "log file reopened");
    let client = Client::new(&broker, Version::V5, "after-rotation");
    wait_for_line(&path, "New client connected from 127.0.0.1");
    drop(client);

    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("before-rotation") && !old.contains("after-rotation"), "{old}");
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(!new.contains("listening") && !new.contains("before-rotation"), "{new}");
    // The same lines went to stderr.
    broker.wait_for_log("as after-rotation", TIMEOUT);
}

#[test]
fn syslog_gets_rfc_3164_datagrams_with_facility_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let broker = TestBroker::start_midge_with(&format!(
        "destinations = [\"stderr\", \"syslog\"]\nsyslog_socket = \"{}\"\n",
        socket_path.display()
    ));
    let client = Client::new(&broker, Version::V3_1_1, "via-syslog");
    let tag = format!(" midge[{}]: ", broker.pid());
    let mut buf = vec![0; 64 * 1024];
    let mut datagrams = Vec::new();
    let connected = loop {
        let len = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no connect datagram ({e}); got {datagrams:#?}"));
        let datagram = String::from_utf8(buf[..len].to_vec()).unwrap();
        if datagram.contains("New client connected") {
            break datagram;
        }
        datagrams.push(datagram);
    };
    drop(client);
    // <30>: facility daemon (3 * 8) + severity info (6); then "Mmm dd hh:mm:ss", the tag.
    assert!(connected.starts_with("<30>"), "{connected}");
    assert!(connected.contains(&tag), "{connected}");
    assert!(connected.contains("as via-syslog (p2, c1, k"), "{connected}");
    assert!(!connected.ends_with('\n'), "{connected:?}");
    let (header, _) = connected.split_once(&tag).unwrap();
    assert_eq!(header.len(), "<30>Dec  5 01:02:03".len(), "{connected}");
    // The level is in the priority, not repeated in the message.
    assert!(connected.contains(&format!("{tag}midge_server::conn::log: New client")), "{connected}");
    let listening = datagrams.iter().find(|d| d.contains("listening (mqtt over tcp)")).expect("listening");
    assert!(listening.starts_with("<30>") && listening.contains(&tag), "{listening}");
}

#[test]
fn connection_messages_false_leaves_out_connects_and_disconnects() {
    let broker = TestBroker::start_midge_with("connection_messages = false\n");
    let client = Client::new(&broker, Version::V3_1_1, "quiet-client");
    client.disconnect();
    // The totals at shutdown count the connection: everything it logged is in by then.
    send_signal(&broker, "-TERM");
    broker.wait_for_log("connections=1", TIMEOUT);
    broker.wait_for_log("stopped", TIMEOUT);
    let log = broker.log();
    assert!(!log.iter().any(|line| line.contains("New client connected") || line.contains("quiet-client")), "{log:#?}");
}

#[test]
fn timestamps_false_starts_lines_with_the_level() {
    let broker = TestBroker::start_midge_with("timestamps = false\n");
    let levels = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
    let log = broker.log();
    assert!(!log.is_empty());
    for line in &log {
        let first = line.split_whitespace().next().unwrap_or("");
        assert!(levels.contains(&first), "{line:?}");
    }
}

#[test]
fn timestamp_format_is_strftime() {
    let broker = TestBroker::start_midge_with("timestamp_format = \"[%Y-%m-%d %H:%M:%S]\"\n");
    let line = broker.wait_for_log("listening", TIMEOUT);
    let (time, _) = line.split_once(']').unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(time.len(), "[2026-12-05 01:02:03".len(), "{line:?}");
    assert!(time.starts_with("[20"), "{line:?}");
}

/// `midge serve -c FILE` with `config`, run in `dir`; its stderr lines, as they come.
fn spawn_reading_stderr(dir: &Path, config: &str) -> (std::process::Child, mpsc::Receiver<String>) {
    let path = dir.join("midge.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(midge_bin())
        .arg("serve")
        .arg("-c")
        .arg(&path)
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn json_lines_parse_with_level_message_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) =
        spawn_reading_stderr(dir.path(), "[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n");
    let mut seen = Vec::new();
    let listening = loop {
        let line = lines.recv_timeout(TIMEOUT).unwrap_or_else(|_| panic!("no listening line; got {seen:#?}"));
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(value["level"].is_string() && value["message"].is_string(), "{line}");
        assert!(value["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        if value["message"].as_str().is_some_and(|m| m.starts_with("listening")) {
            break value;
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["listener"], 1);
    assert!(listening["local_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{listening}");
}

/// Runs `midge serve` with `config` until it exits (it must, within [`TIMEOUT`]): its exit code
/// and stderr.
fn start_fails(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_reading_stderr(dir.path(), config);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker started: {:#?}", lines.try_iter().collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.wait();
    (status.code(), lines.iter().collect::<Vec<_>>().join("\n"))
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_start() {
    let (code, stderr) = start_fails(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\ndestinations = [\"file\"]\nfile = \"/nonexistent-dir/midge.log\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot open the log file /nonexistent-dir/midge.log"), "{stderr}");
}

#[test]
fn a_missing_syslog_socket_stops_the_start() {
    let (code, stderr) = start_fails(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\ndestinations = [\"syslog\"]\nsyslog_socket = \"/nonexistent-dir/log\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the syslog socket /nonexistent-dir/log"), "{stderr}");
}

#[test]
fn a_mosquitto_conf_log_dest_file_and_connection_messages_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosquitto.log");
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_dest file {}\n\
             log_timestamp false\nconnection_messages false\nlog_type all\n",
            path.display()
        ),
    )
    .unwrap();
    let broker = TestBroker::start_midge_args(&["-c", conf.to_str().unwrap()]);
    let line = wait_for_line(&path, "listening (mqtt over tcp)");
    assert!(line.starts_with("INFO") || line.starts_with(" INFO"), "{line:?}");
    Client::new(&broker, Version::V3_1_1, "quiet-client").disconnect();
    send_signal(&broker, "-TERM");
    wait_for_line(&path, "connections=1");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("quiet-client"), "{text}");
}

#[test]
fn a_log_file_that_cannot_be_reopened_leaves_the_old_one_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("midge.log");
    let broker = TestBroker::start_midge_with(&format!(
        "destinations = [\"stderr\", \"file\"]\nfile = \"{}\"\n",
        path.display()
    ));
    wait_for_line(&path, "listening (mqtt over tcp)");
    let rotated = dir.path().join("midge.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // A directory where the file was: opening it to append fails, for root too.
    std::fs::create_dir(&path).unwrap();
    send_signal(&broker, "-HUP");
    broker.wait_for_log("cannot reopen the log file", TIMEOUT);
    wait_for_line(&rotated, "cannot reopen the log file");
    let client = Client::new(&broker, Version::V3_1_1, "still-logged");
    wait_for_line(&rotated, "as still-logged");
    drop(client);
}

#[test]
fn stdout_is_a_destination_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("midge.toml");
    std::fs::write(&config, "[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\ndestinations = [\"stdout\"]\n").unwrap();
    let mut child = Command::new(midge_bin())
        .arg("serve")
        .arg("-c")
        .arg(&config)
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let listening = BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("listening"));
        let _ = tx.send(listening);
    });
    let listening = rx.recv_timeout(TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let line = listening.ok().flatten().expect("a listening line on stdout");
    assert!(line.contains("local_addr=127.0.0.1:"), "{line}");
}

#[test]
fn a_timestamp_format_chrono_cannot_write_fails_the_check_and_the_start() {
    let config = "[[listener]]\nbind = \"127.0.0.1:0\"\n[log]\ntimestamp_format = \"%Q\"\n";
    let (code, stderr) = start_fails(config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("timestamp_format \"%Q\""), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("midge.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(midge_bin()).arg("serve").arg("--check").arg("-c").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
