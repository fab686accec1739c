//! Headless Chromium driven over the Chrome DevTools Protocol (CDP) on a pipe: with
//! `--remote-debugging-pipe` the browser reads commands from its file descriptor 3 and writes
//! replies and events to 4, each a JSON message ended by a NUL byte. No debugging port is opened
//! and no driver library is needed: std and serde_json speak it here.
//!
//! Each browser is the leader of a process group of its own and is killed with the whole group
//! (renderer, GPU and utility processes) when its [`Chromium`] is dropped, a failing test
//! included. Every wait ends at the deadline the browser was launched with.
//!
//! Shared by browser.rs and console.rs, each of which uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Debian's `chromium` (a script that execs the browser, so the process id stays the browser's).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How many lines of the browser's own stderr a failure message shows (D-Bus complaints left
/// out: there is no bus in a test).
const STDERR_LINES: usize = 20;

/// How much of an expression that threw a failure message shows.
const EXPRESSION_CHARS: usize = 200;

/// How long [`Chromium::wait_in_page`] waits for what a test expects a page to show, before it
/// reports what the page shows instead.
pub const PAGE_WAIT_MS: u64 = 15_000;

/// A headless Chromium and the one CDP connection to it.
pub struct Chromium {
    /// The browser, leader of its process group.
    child: Child,
    /// The browser's file descriptor 3: where commands go.
    commands: ChildStdin,
    /// Messages from its file descriptor 4, parsed by a reader thread; disconnected when the
    /// browser closes the pipe.
    messages: Receiver<Value>,
    /// Every event received so far, for [`Chromium::wait_for_event`] to search.
    events: Vec<Value>,
    /// What pages printed to their console, threw, or the browser logged about them (a refused
    /// WebSocket, a certificate error), for failure messages.
    console: Vec<String>,
    /// The browser's stderr lines, drained by a thread so it never blocks on a full pipe.
    stderr: Arc<Mutex<Vec<String>>>,
    /// The id of the next command.
    next_id: u64,
    /// When every wait gives up.
    deadline: Instant,
    /// Its `--user-data-dir`, removed (after the browser is killed) when this is dropped.
    _profile: tempfile::TempDir,
}

/// A page (a tab) of the browser: the CDP session attached to it.
pub struct Page {
    session: String,
}

impl Chromium {
    /// Starts headless Chromium with `extra_args`; every wait on it ends `within` from now.
    /// Names and addresses other than `localhost` and 127.0.0.1 do not resolve in it, so
    /// nothing it does leaves the machine.
    pub fn launch(within: Duration, extra_args: &[String]) -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need Debian's chromium (`apt-get install chromium`; \
             bash .ci/run installs it)"
        );
        let deadline = Instant::now() + within;
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let mut command = Command::new("sh");
        // The shell hands the browser our stdin as its fd 3 and our stdout as its fd 4, the
        // pipe's two ends, then puts /dev/null on fds 0 and 1.
        command.arg("-c").arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#).arg(CHROMIUM);
        command.args([
            "--headless",
            "--no-sandbox", // tests run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-breakpad",
            "--no-pings",
            "--password-store=basic",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            "--window-size=1024,768",
        ]);
        command.arg(format!("--user-data-dir={}", profile.path().display()));
        command.args(extra_args).arg("about:blank");
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let commands = child.stdin.take().expect("piped stdin");
        let replies = child.stdout.take().expect("piped stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut replies = BufReader::new(replies);
            let mut message = Vec::new();
            loop {
                message.clear();
                match replies.read_until(0, &mut message) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let value = serde_json::from_slice(&message).expect("the browser sent a JSON message");
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = child.stderr.take().expect("piped stderr");
        let stderr_writer = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(lines).lines() {
                let Ok(line) = line else { break };
                stderr_writer.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            commands,
            messages,
            events: Vec::new(),
            console: Vec::new(),
            stderr,
            next_id: 1,
            deadline,
            _profile: profile,
        }
    }

    /// Opens a new tab on `url` and waits for its load event (its scripts have run). Its
    /// console, exceptions and log are recorded for failure messages.
    pub fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        let page = Page { session: attached["sessionId"].as_str().expect("sessionId").to_owned() };
        for domain in ["Runtime", "Log", "Page"] {
            self.call(Some(&page), &format!("{domain}.enable"), json!({}));
        }
        self.call(Some(&page), "Page.setLifecycleEventsEnabled", json!({ "enabled": true }));
        let navigated = self.call(Some(&page), "Page.navigate", json!({ "url": url }));
        if let Some(error) = navigated["errorText"].as_str() {
            panic!("the browser cannot open {url}: {error}{}", self.report());
        }
        let loader = navigated["loaderId"].clone();
        self.wait_for_event(&format!("the load event of {url}"), |event| {
            event["sessionId"] == page.session.as_str()
                && event["method"] == "Page.lifecycleEvent"
                && event["params"]["name"] == "load"
                && event["params"]["loaderId"] == loader
        });
        page
    }

    /// Evaluates the JavaScript `expression` in `page`, waits for the promise it returns (if it
    /// does) to settle, and returns its value as JSON. Panics, with what the page logged, if it
    /// throws or rejects.
    pub fn evaluate(&mut self, page: &Page, expression: &str) -> Value {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let evaluated = self.call(Some(page), "Runtime.evaluate", params);
        if let Some(exception) = evaluated.get("exceptionDetails") {
            let what = exception["exception"]["description"].as_str().or(exception["text"].as_str()).unwrap_or("?");
            let expression: String = expression.chars().take(EXPRESSION_CHARS).collect();
            panic!("the page threw: {what}\n(evaluating {expression}…){}", self.report());
        }
        evaluated["result"]["value"].clone()
    }

    /// Waits, in the page, until the JavaScript expression `condition` is truthy, checking it each
    /// time the document changes, and returns its value; after [`PAGE_WAIT_MS`], fails with the
    /// text the page shows.
    pub fn wait_in_page(&mut self, page: &Page, condition: &str) -> Value {
        let expression = format!(
            "new Promise((resolve, reject) => {{
                const observer = new MutationObserver(() => check());
                const timer = setTimeout(() => {{
                    observer.disconnect();
                    reject(new Error('not shown within {PAGE_WAIT_MS} ms; the page shows:\\n' + document.body.innerText));
                }}, {PAGE_WAIT_MS});
                function check() {{
                    const value = ({condition});
                    if (value) {{ observer.disconnect(); clearTimeout(timer); resolve(value); }}
                }}
                observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
                check();
            }})"
        );
        self.evaluate(page, &expression)
    }

    /// Saves a PNG of what `page` shows to `path`.
    pub fn screenshot(&mut self, page: &Page, path: &Path) {
        let shot = self.call(Some(page), "Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// What the pages logged and the browser's last stderr lines, to append to a failure message.
    pub fn report(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let lines: Vec<&str> =
            stderr.iter().map(String::as_str).filter(|line| !line.contains(":ERROR:dbus/")).collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
        format!(
            "\n--- the pages' console and log:\n{}\n--- the browser's last stderr lines:\n{}",
            self.console.join("\n"),
            tail.join("\n")
        )
    }

    /// Sends the command `method` (to `page`'s session, or the browser's) and returns its
    /// result; panics on an error reply, or none before the deadline.
    fn call(&mut self, page: Option<&Page>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(page) = page {
            command["sessionId"] = json!(page.session);
        }
        let mut bytes = serde_json::to_vec(&command).expect("JSON");
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes).and_then(|()| self.commands.flush()) {
            panic!("cannot send {method} to the browser: {e}{}", self.report());
        }
        let reply = self.receive_until(&format!("the reply to {method}"), |message| message["id"] == id);
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}{}", self.report());
        }
        reply["result"].clone()
    }

    /// Waits for an event (received already or to come) that `matches`.
    fn wait_for_event(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(event) = self.events.iter().find(|event| matches(event)) {
            return event.clone();
        }
        self.receive_until(what, matches)
    }

    /// Receives messages, keeping events, until one `matches`; panics at the deadline or if
    /// the browser has gone.
    fn receive_until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let message = match self.messages.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within the test's time{}", self.report()),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("the browser closed its pipe (exit status {status:?}) before {what}{}", self.report())
                }
            };
            if message.get("method").is_some() {
                self.record(&message);
                self.events.push(message.clone());
            }
            if matches(&message) {
                return message;
            }
        }
    }

    /// Keeps what an event says a page logged or threw.
    fn record(&mut self, event: &Value) {
        let params = &event["params"];
        let line = match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| match &arg["value"] {
                        Value::String(text) => text.clone(),
                        Value::Null => arg["description"].as_str().unwrap_or("?").to_owned(),
                        other => other.to_string(),
                    })
                    .collect();
                format!("console.{}: {}", params["type"].as_str().unwrap_or("?"), args.join(" "))
            }
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let what = details["exception"]["description"].as_str().or(details["text"].as_str());
                format!("uncaught: {}", what.unwrap_or("?"))
            }
            Some("Log.entryAdded") => {
                let entry = &params["entry"];
                format!("log ({}): {}", entry["source"].as_str().unwrap_or("?"), entry["text"].as_str().unwrap_or("?"))
            }
            _ => return,
        };
        self.console.push(line);
    }
}

/// Standard base64 (as CDP sends binary data) decoded; padding and other bytes skipped.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut held) = (0u32, 0u32);
    for sextet in text.bytes().filter_map(|c| ALPHABET.iter().position(|&a| a == c)) {
        bits = (bits << 6) | sextet as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            bytes.push((bits >> held) as u8);
        }
    }
    bytes
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole process group: the browser and every process it forked. Signalled by its
        // id, through kill(1) as the broker harness does. (Its crash handler, chrome_crashpad,
        // makes a group of its own and exits by itself once the browser is gone.)
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
