//! What the `cli_*` tests share: running `midge pub`/`midge sub` and mosquitto's clients as
//! child processes, each bounded in time and killed by its PID, and waiting for a subscriber's
//! SUBACK by the broker's log instead of sleeping.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::support::{midge_bin, TestBroker};

/// How long any one client process may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `midge ARGS`.
pub fn midge(args: &[&str]) -> Command {
    let mut command = Command::new(midge_bin());
    command.args(args);
    command
}

/// `program ARGS` for a mosquitto client or `midge`, with `-h 127.0.0.1 -p PORT` added.
pub fn client(program: &str, broker: &TestBroker, args: &[&str]) -> Command {
    let mut command = match program {
        "midge-pub" => midge(&["pub"]),
        "midge-sub" => midge(&["sub"]),
        other => Command::new(other),
    };
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]).args(args);
    command
}

/// What a finished process left.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout, as bytes.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code (panics on a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// Stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A running child whose output is collected on threads; killed (by PID) when dropped.
pub struct Running {
    child: Child,
    /// Stdout so far, filled as it arrives.
    stdout: Arc<Mutex<Vec<u8>>>,
    /// Signalled with stderr when both pipes have closed.
    done: mpsc::Receiver<String>,
    /// Set once the child has been waited for: its PID may be reused, so it is not killed.
    reaped: bool,
}

impl Running {
    /// Starts `command` with stdin closed (or fed from `input`).
    pub fn start(mut command: Command, input: Option<Vec<u8>>) -> Self {
        command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&input);
            });
        }
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, done) = mpsc::channel();
        let collected = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&collected);
        std::thread::spawn(move || {
            let errors = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            });
            let mut chunk = [0u8; 4096];
            loop {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(errors.join().unwrap_or_default());
        });
        Self { child, stdout: collected, done, reaped: false }
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_for_stdout(&self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let text = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
            if text.contains(needle) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no {needle:?} on stdout; got:\n{text}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end by itself within [`WAIT`].
    pub fn finish(mut self) -> Finished {
        let stderr = match self.done.recv_timeout(WAIT) {
            Ok(output) => output,
            Err(_) => panic!("{:?} did not finish within {WAIT:?}", self.child),
        };
        let status = self.child.wait().expect("wait");
        self.reaped = true;
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        Finished { status, stdout, stderr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = Command::new("kill").arg("-KILL").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end within [`WAIT`].
pub fn run(command: Command) -> Finished {
    Running::start(command, None).finish()
}

/// Starts a subscriber and waits until the broker has sent its SUBACK: mosquitto says so in its
/// log (`Sending SUBACK to ID`); midge's log does not, so against midge the subscriber must be a
/// `midge sub -d`, whose `Subscribed (mid: ...)` line tells.
pub fn start_subscriber(broker: &TestBroker, command: Command, id: &str) -> Running {
    let running = Running::start(command, None);
    match broker.target {
        crate::support::Target::Mosquitto => {
            broker.wait_for_log(&format!("Sending SUBACK to {id}"), WAIT);
        }
        crate::support::Target::Midge => running.wait_for_stdout("Subscribed (mid:"),
    }
    running
}
