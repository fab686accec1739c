//! An offline persistent session keeps every acknowledged message across `kill -9`, under the
//! default queue limits (issue 12).
//!
//! Each round is a fresh broker with a `[store]` directory and nothing else changed. The client
//! side is `tests/paho/crash_offline_queue.py` (Eclipse paho-mqtt 2.x, MQTT 3.1.1): a subscriber
//! with CleanSession 0 goes offline, a publisher sends 3,000 numbered messages and prints
//! `KILL-NOW` after a chosen number of acknowledgements. This file owns the broker: on that line
//! it kills it with SIGKILL (by its PID), restarts it on the same store and tells the script the
//! new port on its stdin (`PORT <port>`). The script then checks that the returning subscriber
//! receives every acknowledged message, in order, QoS 2 ones exactly once, and nothing that was
//! never published.
//!
//! The kill points are random but seeded: the seed is printed, and `MIDGE_CRASH_SEED=<seed>`
//! replays a failing run. Round `r` of [`ROUNDS`] kills within the `r`-th equal slice of
//! 1..[`MESSAGES`], so every run crashes early, midway and late in the stream.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::TestBroker;

/// Crash rounds per QoS; each takes a few seconds.
const ROUNDS: u32 = 3;
/// Messages the script publishes (its `MESSAGES`); kill points lie in 1..MESSAGES.
const MESSAGES: u32 = 3000;
/// How long one round may take; longer than the script's own watchdog (45 s), so the script
/// reports its own hang first.
const ROUND_TIMEOUT: Duration = Duration::from_secs(55);
/// The environment variable that replays a run's kill points.
const SEED_VAR: &str = "MIDGE_CRASH_SEED";

/// 3.1.1 MQTT-3.1.2-4, MQTT-3.1.2-5, MQTT-4.3.2-2: every PUBACKed message reaches the offline
/// session after a crash, at least once, in order (MQTT-4.6.0-6).
#[test]
fn offline_session_gets_every_acknowledged_qos1_message_after_kill_9() {
    crash_rounds(1);
}

/// 3.1.1 MQTT-3.1.2-4, MQTT-3.1.2-5, MQTT-4.3.3-2: every PUBCOMPed message reaches the offline
/// session after a crash exactly once, in order (MQTT-4.6.0-6).
#[test]
fn offline_session_gets_every_acknowledged_qos2_message_exactly_once_after_kill_9() {
    crash_rounds(2);
}

/// Runs [`ROUNDS`] crash rounds at `qos`, each killing the broker at a seeded random point.
fn crash_rounds(qos: u8) {
    let seed = std::env::var(SEED_VAR)
        .ok()
        .map(|text| text.parse().unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not a number")))
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("crash_offline_queue QoS {qos}: seed {seed} (replay with {SEED_VAR}={seed})");
    let mut random = SplitMix64(seed);
    for round in 0..ROUNDS {
        // Round r draws from the r-th slice of 1..MESSAGES.
        let low = 1 + round * (MESSAGES - 1) / ROUNDS;
        let high = (round + 1) * (MESSAGES - 1) / ROUNDS;
        let kill_after = low + (random.next() % u64::from(high - low + 1)) as u32;
        crash_round(qos, round, kill_after, seed);
    }
}

/// One round: see the module documentation.
fn crash_round(qos: u8, round: u32, kill_after: u32, seed: u64) {
    let started = Instant::now();
    let deadline = started + ROUND_TIMEOUT;
    let context = format!("QoS {qos} round {round} (seed {seed}, kill after {kill_after} acknowledgements)");
    let store = tempfile::tempdir().expect("temp dir");
    let broker = broker_on(store.path());
    let mut script = Script::start(broker.port(), qos, kill_after);
    script.wait_for("KILL-NOW", deadline, &context);
    // SIGKILL by PID, with the publisher mid-stream unless it finished first (late kill points);
    // the process is reaped before `drop` returns.
    drop(broker);
    let broker = broker_on(store.path());
    script.send(&format!("PORT {}", broker.port()), &context);
    let (status, output) = script.finish(deadline, &context);
    let reason = output.lines().find(|line| line.starts_with("FAIL")).unwrap_or("(no FAIL line)");
    assert!(status.success(), "{context}: {reason}\nthe script exited with {status} and printed:\n{output}");
    let summary: Vec<&str> = output.lines().filter(|line| !line.starts_with("KILL-NOW")).collect();
    eprintln!("{context}: {} in {:.1?}", summary.join("; "), started.elapsed());
}

/// A midge broker with the default configuration plus a store in `dir`.
fn broker_on(dir: &Path) -> TestBroker {
    TestBroker::start_midge_with(&format!("[store]\ndata_dir = {:?}\n", dir.display().to_string()))
}

/// The paho script of one round, its stdout read line by line on a thread.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    /// Drains stderr (paho tracebacks, the script's FAIL line) so the pipe never fills up.
    stderr: Option<JoinHandle<String>>,
}

impl Script {
    /// Starts `python3 crash_offline_queue.py --host 127.0.0.1 --port PORT --qos QOS
    /// --kill-after N`.
    fn start(port: u16, qos: u8, kill_after: u32) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/paho/crash_offline_queue.py");
        let mut command = Command::new("python3");
        command.arg(&script).args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        command.args(["--qos", &qos.to_string(), "--kill-after", &kill_after.to_string()]);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self { child, stdin, lines, seen: Vec::new(), stderr: Some(stderr) }
    }

    /// Waits until the script prints the line `needle`.
    fn wait_for(&mut self, needle: &str, deadline: Instant, context: &str) {
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let found = line == needle;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => self.fail(&format!("{context}: no {needle:?} line ({e})")),
            }
        }
    }

    /// Writes `line` to the script's stdin.
    fn send(&mut self, line: &str, context: &str) {
        if let Err(e) = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()) {
            self.fail(&format!("{context}: cannot tell the script {line:?}: {e}"));
        }
    }

    /// Waits for the script to exit; returns its status and everything it printed (stdout, then
    /// stderr).
    fn finish(mut self, deadline: Instant, context: &str) -> (ExitStatus, String) {
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                // The reader thread ends when stdout closes, that is when the script exits.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("{context}: the script did not exit")),
            }
        }
        let status = self.child.wait().expect("wait for the script");
        (status, self.output())
    }

    /// Kills the script (by its PID) and panics with `why` and everything it printed.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        panic!("{why}; the script printed:\n{}", self.output());
    }

    /// The stdout lines read so far followed by all of stderr (the script must have exited).
    fn output(&mut self) -> String {
        let errors = self.stderr.take().map(|thread| thread.join().unwrap_or_default()).unwrap_or_default();
        format!("{}\n{errors}", self.seen.join("\n"))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Steele, Lea and Flood's SplitMix64: enough randomness for kill points, and replayable from
/// its seed without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
