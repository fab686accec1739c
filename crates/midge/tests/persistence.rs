//! Durable state over real restarts: nothing acknowledged is lost to `kill -9`, a restart keeps
//! retained messages, sessions and subscriptions, and a damaged store is refused with a clear
//! error instead of starting empty (issue 5).

mod interop_common;
mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use interop_common::run_bounded;
use support::{midge_bin, TestBroker};
use wire::{build, Client, Connect, Event, Packet, Publish, Version};

/// How long one crash round may take before the test fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages a publisher sends per round at most; below the default session queue bound.
const MAX_MESSAGES: u32 = 600;
/// QoS 1/2 PUBLISHes a publisher keeps unacknowledged.
const WINDOW: u32 = 16;

fn broker_on(dir: &Path, sync: &str) -> TestBroker {
    TestBroker::start_midge_with(&format!("[store]\ndata_dir = {:?}\nsync = {sync}\n", dir.display().to_string()))
}

/// A small random number without a dependency: the kill points only need to differ.
fn random_below(bound: u32, salt: u32) -> u32 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    (nanos ^ salt.wrapping_mul(2_654_435_761)) % bound
}

/// Publishes numbered messages (odd numbers QoS 1, even QoS 2) until `MAX_MESSAGES` or the
/// connection dies, and reports each number on `acked` as soon as the broker acknowledges it
/// (PUBACK, or PUBREC for QoS 2: the point where the broker has taken responsibility).
fn publish_until_killed(mut client: Client, topic: &str, acked: mpsc::Sender<u32>) {
    let mut next = 1u32;
    let mut outstanding = 0u32;
    loop {
        while outstanding < WINDOW && next <= MAX_MESSAGES {
            let qos = if next % 2 == 1 { 1 } else { 2 };
            let mut publish = Publish::new(topic, format!("m{next}").as_bytes(), qos);
            publish.id = (next % 60_000) as u16 + 1;
            client.send_lenient(&publish.encode(client.version));
            outstanding += 1;
            next += 1;
        }
        match client.next(ROUND_TIMEOUT) {
            Event::Packet(Packet::Puback(ack)) => {
                outstanding -= 1;
                let _ = acked.send(number_of(ack.id, next));
            }
            Event::Packet(Packet::Pubrec(ack)) => {
                let _ = acked.send(number_of(ack.id, next));
                client.send_lenient(&build::ack(build::PUBREL, client.version, ack.id, 0));
            }
            Event::Packet(Packet::Pubcomp(_)) => outstanding -= 1,
            Event::Packet(other) => panic!("unexpected packet to the publisher: {other:?}"),
            Event::Closed | Event::Silent => return,
        }
        if next > MAX_MESSAGES && outstanding == 0 {
            return;
        }
    }
}

/// The message number a packet id stands for (ids are `n % 60000 + 1`, and fewer than 60,000
/// messages are sent).
fn number_of(id: u16, _next: u32) -> u32 {
    u32::from(id) - 1
}

/// One round: a persistent subscriber is offline; a publisher sends numbered QoS 1 and QoS 2
/// messages; the broker is killed with SIGKILL after a random number of acknowledgements and
/// restarted on the same store; the subscriber comes back. Every acknowledged message must
/// arrive, QoS 2 ones exactly once, in the order they were published.
fn crash_round(round: u32, version: Version, sync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("crash/{round}");
    let subscriber_connect = Connect::new(version, &format!("sub-{round}")).persistent(3600);

    let broker = broker_on(dir.path(), sync);
    let (mut subscriber, _) = Client::connect(&broker, &subscriber_connect);
    assert_eq!(subscriber.subscribe(&topic, 2), 2);
    subscriber.disconnect();

    let publisher = Client::new(&broker, version, &format!("pub-{round}"));
    let (acked_tx, acked_rx) = mpsc::channel();
    let publishing = std::thread::spawn({
        let topic = topic.clone();
        move || publish_until_killed(publisher, &topic, acked_tx)
    });
    let kill_after = 5 + random_below(200, round);
    let mut acked = HashSet::new();
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while acked.len() < kill_after as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        match acked_rx.recv_timeout(left) {
            Ok(n) => {
                acked.insert(n);
            }
            Err(_) => break, // the publisher finished (or failed: checked below)
        }
    }
    drop(broker); // SIGKILL, mid-stream
    publishing.join().expect("publisher thread");
    acked.extend(acked_rx.try_iter());
    assert!(acked.len() >= kill_after.min(MAX_MESSAGES) as usize, "round {round}: only {} acknowledged", acked.len());

    let broker = broker_on(dir.path(), sync);
    let mut sentinel = Client::new(&broker, version, &format!("end-{round}"));
    let (mut subscriber, connack) = Client::connect(&broker, &subscriber_connect);
    assert!(connack.session_present, "round {round}: the session did not survive the crash");
    sentinel.publish_msg(&topic, b"end", 1);
    let received = subscriber.receive_until(b"end");

    let numbers: Vec<u32> = received[..received.len() - 1]
        .iter()
        .map(|p| std::str::from_utf8(&p.payload).unwrap().trim_start_matches('m').parse().unwrap())
        .collect();
    let delivered: HashSet<u32> = numbers.iter().copied().collect();
    let mut missing: Vec<u32> = acked.difference(&delivered).copied().collect();
    missing.sort_unstable();
    assert!(missing.is_empty(), "round {round} ({version:?}, sync {sync}): acknowledged but lost: {missing:?}");
    let mut seen = HashSet::new();
    let mut last_first = 0;
    for &n in &numbers {
        if seen.insert(n) {
            assert!(n > last_first, "round {round}: {n} delivered after {last_first}: {numbers:?}");
            last_first = n;
        } else {
            assert_eq!(n % 2, 1, "round {round}: QoS 2 message {n} delivered twice");
        }
    }
    eprintln!(
        "round {round}: {version:?}, sync {sync}: killed after {} acknowledgements, {} delivered",
        acked.len(),
        delivered.len()
    );
}

#[test]
fn acknowledged_messages_survive_kill_9_qos2_exactly_once_in_order() {
    let cases = [
        (Version::V5, "\"always\""),
        (Version::V3_1_1, "\"always\""),
        (Version::V5, "\"never\""),
        (Version::V3_1_1, "{ interval_ms = 50 }"),
        (Version::V5, "\"always\""),
        (Version::V3_1_1, "\"never\""),
    ];
    for (round, (version, sync)) in cases.into_iter().enumerate() {
        crash_round(round as u32, version, sync);
    }
}

/// Restart keeps retained messages, persistent sessions, their subscriptions and queued
/// messages, checked with Debian's mosquitto_pub and mosquitto_sub.
#[test]
fn restart_keeps_retained_sessions_and_subscriptions_with_mosquitto_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_on(dir.path(), "\"always\"");
    let port = broker.port().to_string();
    let run = |args: &[&str]| {
        let mut command = Command::new("mosquitto_pub");
        command.args(["-h", "127.0.0.1", "-p", &port]).args(args);
        let (status, output) = run_bounded(command, Duration::from_secs(10));
        assert!(status.success(), "mosquitto_pub {args:?}: {output}");
    };
    // A persistent subscriber (clean session off) subscribes and goes away.
    let mut command = Command::new("mosquitto_sub");
    command.args(["-h", "127.0.0.1", "-p", &port, "-i", "keeper", "-c", "-q", "1", "-t", "kept/#", "-E"]);
    let (status, output) = run_bounded(command, Duration::from_secs(10));
    assert!(status.success(), "mosquitto_sub -E: {output}");
    run(&["-t", "kept/retained", "-r", "-q", "1", "-m", "last-known-good"]);
    run(&["-t", "kept/queued", "-q", "1", "-m", "while-away"]);
    assert!(broker.terminate().success());

    let broker = broker_on(dir.path(), "\"always\"");
    let port = broker.port().to_string();
    // The session comes back with its queued message. (mosquitto_sub subscribes again on
    // every connect, so the retained message comes too.)
    let mut command = Command::new("mosquitto_sub");
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        "keeper",
        "-c",
        "-q",
        "1",
        "-t",
        "kept/#",
        "-C",
        "2",
        "-W",
        "10",
    ]);
    command.arg("-v");
    let (status, output) = run_bounded(command, Duration::from_secs(15));
    assert!(status.success(), "queued message after restart: {output}");
    assert!(output.contains("kept/queued while-away"), "{output}");
    // A new subscriber gets the retained message.
    let mut command = Command::new("mosquitto_sub");
    command.args(["-h", "127.0.0.1", "-p", &port, "-t", "kept/retained", "-C", "1", "-W", "10", "-v"]);
    let (status, output) = run_bounded(command, Duration::from_secs(15));
    assert!(status.success(), "retained after restart: {output}");
    assert!(output.contains("kept/retained last-known-good"), "{output}");
}

/// `midge serve` on a data directory; returns its exit status and output.
fn serve_on(dir: &Path) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(midge_bin());
    command.args(["serve", "-p", "0", "--data-dir"]).arg(dir);
    run_bounded(command, Duration::from_secs(20))
}

#[test]
fn damaged_or_foreign_store_is_refused_with_a_clear_error_never_started_empty() {
    // A store written by a newer Midge.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = broker_on(&data, "\"always\"");
    assert!(broker.terminate().success());
    let marker = data.join("midge-store");
    let text: String =
        std::fs::read_to_string(&marker)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("format_version") {
                    "format_version = 99\n".to_owned()
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
    std::fs::write(&marker, text).unwrap();
    let (status, output) = serve_on(&data);
    assert!(!status.success(), "started on a newer store: {output}");
    assert!(output.contains(&data.display().to_string()), "the error names the store: {output}");
    assert!(output.contains("99"), "the error says which version: {output}");

    // A truncated marker (a damaged store).
    std::fs::write(&marker, "format_vers").unwrap();
    let (status, output) = serve_on(&data);
    assert!(!status.success(), "started on a damaged store: {output}");
    assert!(output.contains("midge-store"), "the error names the file: {output}");

    // A directory with other data in it is not taken over.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let (status, output) = serve_on(&foreign);
    assert!(!status.success(), "started on a foreign directory: {output}");
    assert!(output.contains(&foreign.display().to_string()), "{output}");
}

#[test]
fn persistence_false_keeps_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = TestBroker::start_midge_with(&format!(
        "[store]\npersistence = false\ndata_dir = {:?}\n",
        data.display().to_string()
    ));
    let mut client = Client::new(&broker, Version::V3_1_1, "p");
    client.publish_msg("r", b"x", 1);
    drop(broker);
    assert!(!data.exists(), "persistence = false wrote {}", data.display());
}
