//! Starts a broker for a test: `midge serve` from this build, or, with
//! `MIDGE_TEST_TARGET=mosquitto`, Debian's `mosquitto`, so the tests themselves can be checked
//! against a broker nobody on the team wrote.
//!
//! The broker listens on an ephemeral loopback port. Midge is given `bind = "127.0.0.1:0"` and
//! reports the port in its `local_addr=` log line; the harness waits for that line, so no test
//! sleeps waiting for a broker to come up.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a broker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which broker the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `midge serve` from this build.
    Midge,
    /// Debian's mosquitto 2.x.
    Mosquitto,
}

impl Target {
    /// The target named by `MIDGE_TEST_TARGET` (`midge` when unset).
    pub fn from_env() -> Self {
        match std::env::var("MIDGE_TEST_TARGET").as_deref() {
            Ok("mosquitto") => Self::Mosquitto,
            _ => Self::Midge,
        }
    }
}

/// With `MIDGE_TEST_NATS_URLS` set (comma-separated `nats://` URLs of a running NATS cluster
/// with JetStream, as `.ci/nats-cluster.sh` starts), every Midge a test starts from a config
/// file is a node of a cluster on it (docs/cluster.md): `text` gets a `[cluster]` section (unless
/// it has one) with a prefix of its own, so each broker is a cluster apart from the others'.
/// That runs the single-node tests against a node of a cluster.
pub fn as_cluster_node(text: String) -> String {
    as_cluster_nodes(text, 1).swap_remove(0)
}

/// How many nodes each broker a test starts from a config file is: with `MIDGE_TEST_SPREAD=N`
/// (and `MIDGE_TEST_NATS_URLS`), N nodes of one cluster, each test client connecting to the
/// next ([`TestBroker::client_addr`]), so a test with several clients has them on several
/// nodes; otherwise 1.
pub fn cluster_spread() -> usize {
    if std::env::var_os("MIDGE_TEST_NATS_URLS").is_none() {
        return 1;
    }
    std::env::var("MIDGE_TEST_SPREAD").ok().and_then(|n| n.parse().ok()).unwrap_or(1).clamp(1, 5)
}

/// `text` as the configs of `n` nodes of one cluster (see [`as_cluster_node`]): one prefix,
/// a node name each. Without `MIDGE_TEST_NATS_URLS`, or with a `[cluster]` section of its
/// own, `text` for each.
pub fn as_cluster_nodes(text: String, n: usize) -> Vec<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
    let Ok(urls) = std::env::var("MIDGE_TEST_NATS_URLS") else { return vec![text; n] };
    if text.contains("[cluster]") {
        return vec![text; n];
    }
    let k = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    let mut urls: Vec<String> = urls.split(',').map(|url| format!("{:?}", url.trim())).collect();
    if n > 1 {
        // The nodes of a spread broker share one NATS server: NATS servers pass a new
        // subscription's interest to each other without a confirmation, so a test that
        // publishes on one node right after subscribing on another through another NATS server
        // could miss the message (docs/cluster.md, gap 3), which is NATS's to close, not what
        // these tests are about.
        urls.truncate(1);
    }
    let prefix = format!("t{}x{k}", std::process::id());
    (0..n)
        .map(|i| {
            let node = if n == 1 { prefix.clone() } else { format!("{prefix}n{i}") };
            format!("{text}\n[cluster]\nnode = \"{node}\"\nprefix = \"{prefix}\"\nurls = [{}]\n", urls.join(", "))
        })
        .collect()
}

/// A running broker, stopped (SIGKILL, by its PID) when dropped.
pub struct TestBroker {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which broker it is.
    pub target: Target,
    /// Every line the broker has logged so far.
    log: Arc<Mutex<Vec<String>>>,
    /// Its working directory, with its config file (`midge.toml`) for midge.
    dir: tempfile::TempDir,
    /// The other nodes of its cluster, with `MIDGE_TEST_SPREAD` (see [`cluster_spread`]).
    siblings: Vec<TestBroker>,
    /// Which node the next [`TestBroker::client_addr`] gives.
    next_node: std::sync::atomic::AtomicUsize,
}

impl TestBroker {
    /// A broker with default settings.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A midge broker whose config file has `extra_toml` appended after the listener table, e.g.
    /// "[mqtt]\nmax_qos = 1\n". Against mosquitto, `extra_toml` must be empty (tests that need
    /// midge-only settings call [`TestBroker::start_midge_with`]).
    pub fn start_with(extra_toml: &str) -> Self {
        match Target::from_env() {
            Target::Midge => Self::start_midge_with(extra_toml),
            Target::Mosquitto => {
                assert!(extra_toml.is_empty(), "this test needs midge-specific config");
                Self::start_mosquitto("")
            }
        }
    }

    /// `midge serve -c FILE` with `extra_toml` appended to a config that has one listener on
    /// 127.0.0.1:0.
    pub fn start_midge_with(extra_toml: &str) -> Self {
        Self::start_midge_listener_with("", extra_toml)
    }

    /// [`TestBroker::start_midge_with`] with `listener_toml` added to the listener's table, e.g.
    /// "acl_file = \"/tmp/x/acl\"\n".
    pub fn start_midge_listener_with(listener_toml: &str, extra_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("midge.toml");
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n{listener_toml}\n[log]\nlevel = \"debug\"\n\n{extra_toml}\n"
        );
        let mut configs = as_cluster_nodes(text, cluster_spread());
        std::fs::write(&config, configs.remove(0)).expect("write config");
        let mut command = Command::new(midge_bin());
        command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
        let mut broker = Self::spawn(command, Target::Midge, dir, local_addr);
        broker.start_siblings(configs, false);
        broker
    }

    /// Starts the other nodes of a spread cluster, each from its config in a directory of its own.
    fn start_siblings(&mut self, configs: Vec<String>, default_log: bool) {
        for text in configs {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("midge.toml");
            std::fs::write(&config, text).expect("write config");
            let mut command = Command::new(midge_bin());
            command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
            if default_log {
                command.env_remove("RUST_LOG");
            }
            self.siblings.push(Self::spawn(command, Target::Midge, dir, local_addr));
        }
    }

    /// Where a test client connects: the broker, or with `MIDGE_TEST_SPREAD` each of its
    /// cluster's nodes in turn.
    pub fn client_addr(&self) -> SocketAddr {
        let n = self.next_node.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (1 + self.siblings.len());
        if n == 0 {
            self.addr
        } else {
            self.siblings[n - 1].addr
        }
    }

    /// `midge serve -c FILE` with `text` as the whole config file, which must give its first
    /// listener a port it reports (`bind = "127.0.0.1:0"`). The file is
    /// [`TestBroker::config_path`], to rewrite before a reload.
    pub fn start_midge_config(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("midge.toml");
        let mut configs = as_cluster_nodes(text.to_owned(), cluster_spread());
        std::fs::write(&config, configs.remove(0)).expect("write config");
        let mut command = Command::new(midge_bin());
        command.arg("serve").arg("-c").arg(&config).env_remove("RUST_LOG").current_dir(dir.path());
        let mut broker = Self::spawn(command, Target::Midge, dir, local_addr);
        broker.start_siblings(configs, true);
        broker
    }

    /// `midge serve ARGS`, run in a temporary directory with the default log filter (no
    /// `RUST_LOG`). The arguments must make it listen on a port it reports (`-p 0`, or a config
    /// with port 0).
    pub fn start_midge_args(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(midge_bin());
        command.arg("serve").args(args).env_remove("RUST_LOG").current_dir(dir.path());
        Self::spawn(command, Target::Midge, dir, local_addr)
    }

    /// Debian's `mosquitto -c FILE` with one listener on a free loopback port, anonymous access,
    /// and `extra_conf` appended (mosquitto.conf syntax).
    pub fn start_mosquitto(extra_conf: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type all\npersistence false\n{extra_conf}\n"
        );
        std::fs::write(&config, text).expect("write config");
        let mut command = Command::new("mosquitto");
        command.arg("-c").arg(&config).current_dir(dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Self::spawn(command, Target::Mosquitto, dir, move |line| {
            // mosquitto logs "Opening ipv4 listen socket" before listen(); "running" comes after.
            (line.contains("mosquitto version") && line.contains("running")).then_some(addr)
        })
    }

    fn spawn(
        mut command: Command,
        target: Target,
        dir: tempfile::TempDir,
        ready: impl Fn(&str) -> Option<SocketAddr> + Send + 'static,
    ) -> Self {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {target:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log_writer = Arc::clone(&log);
        // Drains stderr for the broker's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MIDGE_TEST_ECHO").is_some() {
                    eprintln!("[broker] {line}");
                }
                // Logged before the broker is reported ready, so that a test can find the line
                // that made it ready.
                let addr = ready(&line);
                log_writer.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{target:?} did not start listening; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Self { child, addr, target, log, dir, siblings: Vec::new(), next_node: Default::default() }
    }

    /// The address of the listener whose `listening` line contains `what` (e.g. "mqtt over
    /// websockets"), for a broker with several listeners; waits for the line.
    pub fn listener_addr(&self, what: &str) -> SocketAddr {
        let line = self.wait_for_log(what, START_TIMEOUT);
        local_addr(&line).unwrap_or_else(|| panic!("no local_addr in {line}"))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A new TCP connection to it.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to broker");
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// midge's config file (`midge.toml` in its working directory).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("midge.toml")
    }

    /// Replaces midge's config file with `text` (a reload reads it).
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Sends SIGHUP to the broker process (by its PID): a reload.
    pub fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// How many lines it has logged so far: a mark for [`TestBroker::wait_for_log_from`].
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits until a line logged after the first `from` contains `needle`; panics after
    /// `timeout`.
    pub fn wait_for_log_from(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().skip(from).find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?} after line {from}; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every line logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a logged line contains `needle`; panics after `timeout`. Polls the captured
    /// log, which the drain thread fills as lines arrive.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line containing {needle:?}; log:\n{}", self.log().join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `count` logged lines contain `needle` and returns the last; panics after
    /// `timeout`. For an event that happens more than once (a link coming back).
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).nth(count - 1) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {count} log lines containing {needle:?}; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address of its MQTT-SN listener (one added with [`mqtt_sn_listener`]), from its
    /// `listening (mqtt-sn over udp) ... local_addr=` line.
    pub fn mqtt_sn_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("listening (mqtt-sn over udp)", START_TIMEOUT);
        local_addr(&line).expect("the MQTT-SN listener's local_addr")
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit, returning its status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "broker did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a midge `listening ... local_addr=IP:PORT` line.
pub fn local_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("local_addr=")?;
    let addr = rest.split_whitespace().next()?;
    addr.trim_matches('"').parse().ok()
}

/// The `midge` binary of this build.
pub fn midge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_midge"))
}

/// A loopback port that was free a moment ago (for peers that cannot report an ephemeral port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `[[listener]]` table for [`TestBroker::start_midge_with`]: an MQTT-SN gateway on a free
/// loopback UDP port that allows anonymous clients (unless `keys` say otherwise), with `keys`
/// added to it (`sn_*` keys, then any `[listener.sn_predefined_topics]` table).
pub fn mqtt_sn_listener(keys: &str) -> String {
    let anonymous = if keys.contains("allow_anonymous") { "" } else { "allow_anonymous = true\n" };
    format!("[[listener]]\nprotocol = \"mqtt-sn\"\nbind = \"127.0.0.1:0\"\n{anonymous}{keys}\n")
}
