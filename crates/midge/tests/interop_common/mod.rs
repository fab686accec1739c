//! What the `interop_*` tests share beyond the harness in `support`.
#![allow(dead_code)]

pub mod mosquitto;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `command` to completion with stdout and stderr captured; kills it (by its PID) and panics
/// if it is still running after `timeout`. Returns its status and its stdout followed by stderr.
pub fn run_bounded(mut command: Command, timeout: Duration) -> (ExitStatus, String) {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // stderr is drained on its own thread so neither pipe can fill up and block the child.
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut output = String::new();
        let _ = stdout.read_to_string(&mut output);
        output.push_str(&errors.join().unwrap_or_default());
        let _ = tx.send((child.wait(), output));
    });
    match rx.recv_timeout(timeout) {
        Ok((status, output)) => (status.expect("wait for child"), output),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("{command:?} did not finish within {timeout:?}");
        }
    }
}

/// Starts `command` with its stdout piped and read line by line on a thread of its own (so a
/// test waits for a line with `recv_timeout`, never by sleeping); stdin is closed.
pub fn spawn_lines(command: &mut Command, what: &str) -> (Child, mpsc::Receiver<String>) {
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}
