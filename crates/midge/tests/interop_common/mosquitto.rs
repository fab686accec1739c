//! `mosquitto_sub` and `mosquitto_pub` (Debian's mosquitto-clients 2.0.x) as child processes:
//! a subscriber whose `-d` lines tell when its SUBACK came, so nothing is published before it,
//! and a bounded publisher.
//!
//! Messages are printed with a `-F` format that starts with [`MESSAGE`], which tells them from
//! the debug lines. Every process and every wait is bounded.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::run_bounded;
use crate::support::TestBroker;

/// How long any one client process or awaited line may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `mosquitto_sub -W`: it gives up by itself after this many seconds.
pub const SUB_TIMEOUT_SECS: &str = "10";

/// How a received message line starts (`@` and `%` are format sequences, so neither is used).
pub const MESSAGE: &str = "MSG|";

/// A running `mosquitto_sub -d`, its stdout read line by line on a thread.
pub struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl Sub {
    /// Starts `mosquitto_sub -V version -i id -t topic -q qos -C count -W 10 -d -F format`.
    pub fn start(broker: &TestBroker, version: &str, id: &str, topic: &str, qos: u8, count: u32, format: &str) -> Self {
        Self::start_with(broker, version, id, &["-t", topic, "-q", &qos.to_string(), "-C", &count.to_string()], format)
    }

    /// Starts `mosquitto_sub -V version -i id ARGS -W 10 -d -F format`.
    pub fn start_with(broker: &TestBroker, version: &str, id: &str, args: &[&str], format: &str) -> Self {
        // With stdout a pipe, mosquitto_sub buffers its debug lines until it exits; line
        // buffering lets the SUBACK line through as it happens.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        connection_args(&mut command, broker, version, id);
        command.args(args).args(["-W", SUB_TIMEOUT_SECS, "-d", "-F"]).arg(format!("{MESSAGE}{format}"));
        command.stderr(Stdio::inherit());
        let (child, lines) =
            super::spawn_lines(&mut command, "start mosquitto_sub (apt-get install mosquitto-clients)");
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => {
                    panic!("no line containing {needle:?} ({e}); mosquitto_sub printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Asserts that no line containing `needle` arrives within `quiet` (a negative check: its
    /// wait is the point, not a stand-in for an event).
    pub fn assert_no_line(&mut self, needle: &str, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.contains(needle), "unexpected line {line:?}; printed:\n{}", self.seen.join("\n"));
                    self.seen.push(line);
                }
                Err(_) => return,
            }
        }
    }

    /// Waits for the SUBACK and returns the QoS granted to the (single) subscription.
    pub fn wait_subscribed(&mut self) -> u8 {
        let line = self.wait_for("Subscribed (mid:");
        let granted = line.rsplit(':').next().unwrap().trim();
        granted.parse().unwrap_or_else(|_| panic!("granted QoS in {line:?}"))
    }

    /// Waits for the process to exit (after `-C` messages) and returns the message lines, without
    /// the [`MESSAGE`] prefix.
    pub fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                // The reader thread ends when stdout closes, that is when the process exits.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("mosquitto_sub did not exit; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
        let status = self.child.wait().expect("wait for mosquitto_sub");
        assert!(status.success(), "mosquitto_sub failed ({status}); it printed:\n{}", self.seen.join("\n"));
        self.seen.iter().filter_map(|line| line.strip_prefix(MESSAGE)).map(str::to_owned).collect()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `-h 127.0.0.1 -p PORT -V version -i id`.
pub fn connection_args(command: &mut Command, broker: &TestBroker, version: &str, id: &str) {
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", version, "-i", id]);
}

/// Runs `mosquitto_pub` with `args` and asserts it succeeds within [`WAIT`].
pub fn publish(broker: &TestBroker, version: &str, id: &str, args: &[&str]) {
    let (status, output) = publish_output(broker, version, id, args);
    assert!(status.success(), "mosquitto_pub {args:?} failed ({status}):\n{output}");
}

/// Runs `mosquitto_pub` with `args` within [`WAIT`]; returns its status and its output.
pub fn publish_output(broker: &TestBroker, version: &str, id: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut command = Command::new("mosquitto_pub");
    connection_args(&mut command, broker, version, id);
    command.args(args);
    run_bounded(command, WAIT)
}
