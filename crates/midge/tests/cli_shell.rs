//! `midge shell` end to end through a pseudo-terminal: tmux runs it, `send-keys` types and
//! `capture-pane` reads the screen, as a person would see it. Every wait polls the screen for
//! the expected text with a deadline; the tmux session is killed at the end, pass or fail.

mod cli_common;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use cli_common::{client, run, WAIT};
use support::{midge_bin, TestBroker};

/// A tmux session on its own server socket, so tests never touch a user's tmux.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let socket = format!("midge-test-{}-{:?}", std::process::id(), std::thread::current().id());
        let socket = socket.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "");
        let tmux = Self { socket };
        let status = tmux.command(&["new-session", "-d", "-s", "shell", "-x", "120", "-y", "30", command]).status();
        assert!(status.expect("tmux (apt-get install tmux)").success());
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]).args(args);
        command
    }

    /// Types `keys` (tmux key names, e.g. "Enter", "Tab").
    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "shell"];
        args.extend_from_slice(keys);
        assert!(self.command(&args).status().unwrap().success());
    }

    /// Types `text` at the prompt after `before`, one key per write, each waited for on screen.
    /// rustyline, polling for input while its external printer is active, draws only the first
    /// key of a burst until the next input arrives, so a burst would sit unseen in its buffer.
    fn type_text(&self, before: &str, text: &str) {
        let mut typed = before.to_string();
        for c in text.chars() {
            let key = c.to_string();
            assert!(self.command(&["send-keys", "-t", "shell", "-l", &key]).status().unwrap().success());
            typed.push(c);
            let expected = format!("midge> {typed}");
            // A space must be on screen too before the next key: rustyline would hold a key typed
            // behind an undrawn one.
            let drawn = |line: &str| line.strip_prefix(expected.as_str()).is_some_and(|rest| rest.trim().is_empty());
            self.wait_for(&expected, |s| s.lines().any(drawn));
        }
    }

    fn screen(&self) -> String {
        // -N keeps the trailing spaces, so a typed space can be seen on screen.
        let output = self.command(&["capture-pane", "-p", "-N", "-t", "shell"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ready`; returns it.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "screen never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).stderr(std::process::Stdio::null()).status();
    }
}

#[test]
fn shell_completes_subscribes_and_prints_messages_above_the_prompt() {
    let broker = TestBroker::start_midge_with("");
    let command = format!("{} shell -h 127.0.0.1 -p {} -V mqttv5 -i shell-user", midge_bin().display(), broker.port());
    let tmux = Tmux::start(&command);
    tmux.wait_for("the connection", |s| s.contains("Connected to 127.0.0.1") && s.contains("midge>"));

    // Tab completes a command name.
    tmux.type_text("", "subscr");
    tmux.send(&["Tab"]);
    tmux.wait_for("completed `subscribe`", |s| s.lines().any(|l| l.trim_end() == "midge> subscribe"));
    tmux.type_text("subscribe ", "-q 1 news/#");
    tmux.send(&["Enter"]);
    tmux.wait_for("the SUBACK", |s| s.contains("Subscribed: news/# (QoS 1)."));

    // A half-typed line stays intact while a message arrives and is printed above it.
    tmux.type_text("", "publish news/typed half");
    let published = run(client("mosquitto_pub", &broker, &["-t", "news/flash", "-m", "breaking", "-q", "1"]));
    assert_eq!(published.code(), 0);
    let screen = tmux.wait_for("the message", |s| s.contains("news/flash breaking [qos 1]"));
    let message_row = screen.lines().position(|l| l.contains("news/flash breaking")).unwrap();
    let prompt_row = screen.lines().position(|l| l.contains("midge> publish news/typed half")).unwrap();
    assert!(message_row < prompt_row, "message printed below the prompt:\n{screen}");

    // Finishing the line publishes it; the subscription receives it too.
    tmux.type_text("publish news/typed half", " way");
    tmux.send(&["Enter"]);
    tmux.wait_for("our own message", |s| s.contains("news/typed half way") && s.contains("Published."));

    // History: Up brings back the last command.
    tmux.send(&["Up"]);
    tmux.wait_for("the recalled line", |s| s.lines().last_non_empty().contains("midge> publish news/typed half way"));
    tmux.send(&["C-u"]);
    tmux.type_text("", "status");
    tmux.send(&["Enter"]);
    tmux.wait_for("the status", |s| s.contains("1 subscription(s), 2 message(s) received"));
    tmux.type_text("", "quit");
    tmux.send(&["Enter"]);
    tmux.wait_for("the shell to end", |s| s.contains("[exited]") || !s.contains("midge> quit") || s.is_empty());
}

/// Helper for screens: the last line with text.
trait LastNonEmpty {
    fn last_non_empty(self) -> String;
}

impl<'a, I: DoubleEndedIterator<Item = &'a str>> LastNonEmpty for I {
    fn last_non_empty(mut self) -> String {
        self.rfind(|line| !line.trim().is_empty()).unwrap_or_default().to_string()
    }
}

#[test]
fn shell_reads_a_script_from_a_pipe() {
    let broker = TestBroker::start_midge_with("");
    let script = "# a comment\nsubscribe -q 2 s/#\npublish -q 2 s/1 \"two  spaces\"\nwait 1\nsubscriptions\n\
                  unsubscribe s/#\nsubscriptions\nbogus\ndisconnect\n";
    let shell = cli_common::Running::start(
        cli_common::midge(&["shell", "-h", "127.0.0.1", "-p", &broker.port().to_string(), "-i", "scripted"]),
        Some(script.as_bytes().to_vec()),
    )
    .finish();
    assert_eq!(shell.code(), 0, "{shell:?}");
    let text = shell.text();
    for expected in [
        "Connected to 127.0.0.1",
        "Subscribed: s/# (QoS 2).",
        "s/1 two  spaces [qos 2]",
        "Published (mid 2).",
        "Received.",
        "s/# (QoS 2)",
        "Unsubscribed: s/#.",
        "No subscriptions.",
        "unrecognized subcommand 'bogus'",
        "Disconnected.",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}
