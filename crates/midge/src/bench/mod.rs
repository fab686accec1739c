//! `midge bench`: a load generator on `midge-client` that measures a broker, any broker.
//!
//! Every message carries a small header (publisher, sequence number, send time), so the
//! subscribers count what was lost or duplicated per publisher and measure end-to-end latency
//! with an HDR histogram; the bench reports its own CPU time, so a result limited by the bench
//! rather than the broker shows. A run connects its clients, runs a warm-up that is not
//! measured, measures for `--duration` seconds, stops the publishers, lets the subscribers
//! drain, and reports. Every phase is bounded in time, so a run always ends by itself.
//!
//! # Layout
//! - this file: [`BenchArgs`], their checks into [`Settings`], and [`run`].
//! - `traffic`: `fanout`, `fanin`, `pairs` and `latency`: which clients on which topics, and
//!   the phases of a run; `shared`: the state its clients share.
//! - `publisher`, `subscriber`: the client loops; `sn_link`: the MQTT-SN publisher of
//!   `--sn-port`; `paced`: the fixed-rate publisher of
//!   `latency`, on a thread of its own.
//! - `conns`: idle subscribed connections: connect rate and broker memory per connection.
//! - `offline`: many persistent sessions with messages queued while their clients are away:
//!   broker memory per queued message, then the time to read the queues back; `drain`: one
//!   long queue read back while a fixed-rate canary pair measures latency; `persistent`: what
//!   the two share (subscribe and leave, publish and wait for every acknowledgement, read a
//!   queue back and check it).
//! - `payload`: the header of every message.
//! - `system`: CPU time and resident memory from the OS, the open files limit.
//! - `report`: the summary table, `--json`, the progress line.

mod conns;
mod drain;
mod offline;
mod paced;
mod payload;
mod persistent;
mod publisher;
mod report;
mod shared;
mod sn_link;
mod subscriber;
mod system;
mod traffic;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgAction, Args, ValueEnum};
use midge_client::codec::{ProtocolVersion, QoS};
use midge_client::{ConnectOptions, Tls, TlsOptions, Transport};

use crate::client::{tls_options, TlsArgs, DEFAULT_TLS_PORT};
use report::Report;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Publishers (default 1) -> N subscribers (default 10), all on one topic.
    Fanout,
    /// N publishers (default 10), each on its own topic -> subscribers (default 1) on a wildcard.
    Fanin,
    /// N publisher/subscriber pairs (default 10), each pair on its own topic.
    Pairs,
    /// A fixed publish rate (default 10,000 msg/s) from 1 publisher to 1 subscriber: latency
    /// percentiles.
    Latency,
    /// K idle subscribed connections (default 1,000): connect rate, broker memory per connection.
    Conns,
    /// K persistent subscribers (default 10,000) away while M messages (default 1,000) are
    /// queued for each: broker memory per queued message, then the time to read them back.
    Offline,
    /// N messages (default 100,000) queued for one persistent subscriber, read back when it
    /// returns, while a canary pair at a fixed rate (default 1,000 msg/s) measures latency.
    Drain,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Fanin => "fanin",
            Self::Pairs => "pairs",
            Self::Latency => "latency",
            Self::Conns => "conns",
            Self::Offline => "offline",
            Self::Drain => "drain",
        }
    }
}

/// Arguments of `midge bench`.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    about = "Measure a broker: throughput, loss, latency, connections",
    after_help = "Output: a progress line on stderr once a second, then a summary table on stdout (or one JSON \
object with --json). Exit status 0 when the run completed (even with losses: read `lost`), 1 when it could not \
(broker unreachable, run over its time budget), 2 for bad arguments.

Examples:
  midge bench fanout --subscribers 100                 1 -> 100 on one topic, QoS 0, 64-byte payloads, 5 s
  midge bench fanin --publishers 100 -q 1 --json       100 -> 1 on a wildcard, QoS 1, lost messages counted
  midge bench pairs --pairs 100 -d 10                  100 pairs on distinct topics for 10 s
  midge bench latency --rate 10000 -V 5                p50..p99.9 and max at 10,000 msg/s over MQTT 5
  midge bench conns --connections 19000 --broker-pid $(pidof mosquitto)
                                                       connect rate and broker memory per connection
  midge bench conns --connections 2000 --cafile ca.pem -p 8883
                                                       full TLS handshakes per second
  midge bench conns --connections 1000 -u alice -P wrong
                                                       a storm of refused connections, counted
  midge bench offline --subscribers 10000 --messages 1000 --broker-pid $(pidof midge)
                                                       broker memory per message queued offline,
                                                       then the time to read every queue back
  midge bench drain --messages 100000 --rate 1000      a 100,000-message queue read back, and the
                                                       latency of other traffic meanwhile"
)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1", help_heading = "Broker")]
    host: String,
    /// Broker port [default: 1883, or 8883 with TLS].
    #[arg(short = 'p', long = "port", help_heading = "Broker")]
    port: Option<u16>,
    /// Connect over a WebSocket (ws://; over TLS, wss://, with the TLS options): -p is then the
    /// broker's WebSocket listener.
    #[arg(long = "ws", help_heading = "Broker")]
    websocket: bool,
    /// The HTTP path of the WebSocket upgrade (with --ws).
    #[arg(long = "ws-path", value_name = "PATH", default_value = crate::client::DEFAULT_WS_PATH, help_heading = "Broker")]
    ws_path: String,
    /// Subscribers connect to these brokers instead of -h/-p (HOST:PORT, comma-separated;
    /// subscriber i to the (i mod n)-th): publishers on one node of a cluster, subscribers on
    /// others. fanout, fanin, pairs and latency.
    #[arg(long = "subscribe-at", value_name = "HOST:PORT,...", value_delimiter = ',', value_parser = parse_address, help_heading = "Broker")]
    subscribe_at: Vec<(String, u16)>,
    /// Publishers speak MQTT-SN 1.2 over UDP to the broker's gateway on this port (fanout,
    /// fanin, pairs; QoS 0 or 1); subscribers still speak MQTT on -p.
    #[arg(long = "sn-port", value_name = "PORT", help_heading = "Broker")]
    sn_port: Option<u16>,
    /// User name of every client.
    #[arg(short = 'u', long = "username", value_name = "USER", help_heading = "Broker")]
    username: Option<String>,
    /// Password of every client.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD", help_heading = "Broker")]
    password: Option<String>,
    /// Protocol version: 311 (3.1.1) or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311", value_parser = parse_version, help_heading = "Broker")]
    version: ProtocolVersion,
    /// Process id of the broker: its CPU time in the window and its resident memory are reported.
    #[arg(long = "broker-pid", value_name = "PID", help_heading = "Broker")]
    broker_pid: Option<u32>,
    /// QoS of publications and subscriptions [default: 0; offline and drain: 1, the QoS of
    /// the queued messages, 1 or 2 (drain's canary is QoS 0)].
    #[arg(short = 'q', long = "qos", value_parser = clap::value_parser!(u8).range(0..=2), help_heading = "Load")]
    qos: Option<u8>,
    /// Payload bytes (at least 16: publisher, sequence number, send time).
    #[arg(short = 's', long = "size", default_value_t = 64, help_heading = "Load")]
    size: usize,
    /// Publishers (fanout: default 1; fanin: default 10; latency: default 1).
    #[arg(long = "publishers", value_name = "N", help_heading = "Load")]
    publishers: Option<usize>,
    /// Subscribers (fanout: default 10; fanin: default 1; latency: default 1; offline: the
    /// persistent sessions, default 10000).
    #[arg(long = "subscribers", value_name = "N", help_heading = "Load")]
    subscribers: Option<usize>,
    /// Publisher/subscriber pairs (pairs: default 10).
    #[arg(long = "pairs", value_name = "N", help_heading = "Load")]
    pairs: Option<usize>,
    /// Idle connections (conns: default 1000).
    #[arg(long = "connections", value_name = "K", help_heading = "Load")]
    connections: Option<usize>,
    /// Total publish rate in msg/s, shared by the publishers (latency: default 10000; drain:
    /// the canary's, default 1000; others: as fast as the broker takes them).
    #[arg(long = "rate", value_name = "MSG/S", help_heading = "Load")]
    rate: Option<f64>,
    /// Messages per publisher at most (default: no limit but the duration).
    #[arg(long = "count", value_name = "N", help_heading = "Load")]
    count: Option<u64>,
    /// Messages queued for each offline session (offline: default 1000; drain: default
    /// 100000).
    #[arg(long = "messages", value_name = "N", help_heading = "Load")]
    messages: Option<u64>,
    /// QoS 1/2 messages in flight per publisher: sent and not yet acknowledged.
    #[arg(long = "inflight", value_name = "N", default_value_t = 100, help_heading = "Load")]
    inflight: u16,
    /// QoS 0 messages in flight per subscriber, shared by the publishers it hears: a publisher
    /// waits while it is that far ahead of the slowest subscriber hearing it. The default is
    /// ten times a broker's usual queue bound (mosquitto's and Midge's 1,000), so a burst
    /// deeper than the queue shows what the broker does with it (drops count as not
    /// delivered). 0: no limit (flood).
    #[arg(long = "window", value_name = "N", default_value_t = 10_000, help_heading = "Load")]
    window: u64,
    /// Subscribers keep their session: Clean Session 0 (3.1.1), Clean Start 0 and an hour of
    /// Session Expiry (5). Their sessions are removed at the end.
    #[arg(long = "persistent", help_heading = "Load")]
    persistent: bool,
    /// Seconds measured [default: 5] (conns: seconds the connections are held before memory is
    /// read; drain: the canary's baseline before the queue is read back, default 2).
    #[arg(short = 'd', long = "duration", value_name = "SECONDS", help_heading = "Run")]
    duration: Option<f64>,
    /// Seconds of load before measuring.
    #[arg(long = "warmup", value_name = "SECONDS", default_value_t = 1.0, help_heading = "Run")]
    warmup: f64,
    /// Connection attempts in progress at once.
    #[arg(long = "concurrency", value_name = "N", default_value_t = 100, help_heading = "Run")]
    concurrency: usize,
    /// Sessions reading their queues back at once (offline): each is connected while it
    /// reads, so this bounds the bench's sockets and the broker's connections.
    #[arg(long = "wave", value_name = "N", default_value_t = 500, help_heading = "Run")]
    wave: usize,
    /// Offline: seconds the broker's memory is left to settle before each reading of it, so
    /// that memory freed after a burst has gone back to the system (jemalloc returns it within
    /// 10 s); 0 reads at once.
    #[arg(long = "settle", value_name = "SECONDS", default_value_t = 12.0, help_heading = "Run")]
    settle: f64,
    /// Offline: measure memory only; the queues are not read back (the sessions are still
    /// removed at the end).
    #[arg(long = "no-drain", help_heading = "Run")]
    no_drain: bool,
    /// Worker threads of the bench [default: one per core].
    #[arg(long = "threads", value_name = "N", help_heading = "Run")]
    threads: Option<usize>,
    /// TLS, with midge pub's flags. Every connection makes a full handshake (no session
    /// resumption), so `conns` measures handshakes per second.
    #[command(flatten)]
    tls: TlsArgs,
    /// Print the results as one JSON object instead of a table.
    #[arg(long = "json", help_heading = "Output")]
    json: bool,
    /// No progress line.
    #[arg(long = "quiet", help_heading = "Output")]
    quiet: bool,
    /// Print help (-h is the host, as in the other client tools).
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// The checked settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What to measure.
    pub scenario: Scenario,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TCP or TLS, one TLS configuration shared by every client.
    pub transport: Transport,
    /// Where the subscribers connect, when not to `host:port` (`--subscribe-at`).
    pub subscribe_at: Vec<(String, u16)>,
    /// The MQTT-SN gateway's UDP port, when the publishers speak MQTT-SN.
    pub sn_port: Option<u16>,
    /// User name of every client.
    pub username: Option<String>,
    /// Password of every client.
    pub password: Option<String>,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// QoS of publications and subscriptions.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// Publishers (pairs: the number of pairs).
    pub publishers: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Idle connections (conns).
    pub connections: usize,
    /// Total publish rate, if paced.
    pub rate: Option<f64>,
    /// Messages per publisher at most.
    pub count: Option<u64>,
    /// QoS 1/2 window per publisher.
    pub inflight: u16,
    /// QoS 0 window per subscriber (0: none).
    pub window: u64,
    /// Persistent subscriber sessions.
    pub persistent: bool,
    /// Messages queued per offline session (offline, drain).
    pub messages: u64,
    /// Sessions reading their queues back at once (offline).
    pub wave: usize,
    /// Whether the queues are read back (offline).
    pub drain: bool,
    /// How long the broker's memory is left to settle before it is read (offline).
    pub settle: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured load before it.
    pub warmup: Duration,
    /// Connection attempts at once.
    pub concurrency: usize,
    /// The broker's process id.
    pub broker_pid: Option<u32>,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Distinguishes this run's topics and client ids from any other run's.
    pub run_id: String,
}

impl Settings {
    fn from_args(args: &BenchArgs) -> Result<Self, String> {
        let scenario = args.scenario;
        let positive = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(format!("--{name} must be at least 1")),
            Some(value) => Ok(value),
            None => Ok(default),
        };
        let (publishers, subscribers) = match scenario {
            Scenario::Fanout => {
                (positive("publishers", args.publishers, 1)?, positive("subscribers", args.subscribers, 10)?)
            }
            Scenario::Fanin => {
                (positive("publishers", args.publishers, 10)?, positive("subscribers", args.subscribers, 1)?)
            }
            Scenario::Pairs => {
                let pairs = positive("pairs", args.pairs, 10)?;
                (pairs, pairs)
            }
            Scenario::Latency => {
                (positive("publishers", args.publishers, 1)?, positive("subscribers", args.subscribers, 1)?)
            }
            Scenario::Conns => (0, 0),
            Scenario::Offline => (1, positive("subscribers", args.subscribers, 10_000)?),
            Scenario::Drain => (1, 1),
        };
        let queues = matches!(scenario, Scenario::Offline | Scenario::Drain);
        let messages = match (scenario, args.messages) {
            (_, Some(0)) => return Err("--messages must be at least 1".into()),
            (_, Some(messages)) if messages > u64::from(u32::MAX) => {
                return Err("--messages must be at most 4294967295".into())
            }
            (_, Some(messages)) => messages,
            (Scenario::Drain, None) => 100_000,
            (_, None) => 1000,
        };
        let qos = match (queues, args.qos) {
            (true, Some(0)) => return Err("-q must be 1 or 2: offline queues hold QoS 1 and 2 messages".into()),
            (true, qos) => qos.unwrap_or(1),
            (false, qos) => qos.unwrap_or(0),
        };
        if args.wave == 0 {
            return Err("--wave must be at least 1".into());
        }
        let connections =
            if scenario == Scenario::Conns { positive("connections", args.connections, 1000)? } else { 0 };
        let rate = match (scenario, args.rate) {
            (_, Some(rate)) if !(rate.is_finite() && rate > 0.0) => return Err("--rate must be above 0".into()),
            (Scenario::Latency, None) => Some(10_000.0),
            (Scenario::Drain, None) => Some(1000.0),
            (_, rate) => rate,
        };
        let seconds = |name: &str, value: f64, min: f64| {
            if value.is_finite() && value >= min && value <= 3600.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!("--{name} must be between {min} and 3600 seconds"))
            }
        };
        if args.count == Some(0) {
            return Err("--count must be at least 1".into());
        }
        if args.size < payload::HEADER_LEN || args.size > 16 * 1024 * 1024 {
            return Err(format!("--size must be between {} and 16777216 bytes", payload::HEADER_LEN));
        }
        if args.sn_port.is_some() {
            if !matches!(scenario, Scenario::Fanout | Scenario::Fanin | Scenario::Pairs) {
                return Err("--sn-port: MQTT-SN publishers are for fanout, fanin and pairs".into());
            }
            if qos > 1 {
                return Err("--sn-port: MQTT-SN publishers publish at QoS 0 or 1".into());
            }
        }
        if !args.ws_path.starts_with('/') {
            return Err(format!("--ws-path must start with '/': {}", args.ws_path));
        }
        let tls = match tls_options(&args.tls, false)? {
            Some(options) => {
                let options = TlsOptions { no_resumption: true, ..options };
                Some(Tls::new(&options).map_err(|error| format!("TLS: {error}"))?)
            }
            None => None,
        };
        // midge pub's rule: TLS without -p means the MQTT over TLS port.
        let port = args.port.unwrap_or(if tls.is_some() { DEFAULT_TLS_PORT } else { midge_client::DEFAULT_PORT });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(Self {
            scenario,
            host: args.host.clone(),
            port,
            transport: match (args.websocket, tls) {
                (true, tls) => Transport::WebSocket { path: args.ws_path.clone(), tls },
                (false, Some(tls)) => Transport::Tls(tls),
                (false, None) => Transport::Tcp,
            },
            subscribe_at: args.subscribe_at.clone(),
            sn_port: args.sn_port,
            username: args.username.clone(),
            password: args.password.clone(),
            version: args.version,
            qos: QoS::from_u8(qos).unwrap_or_default(),
            size: args.size,
            publishers,
            subscribers,
            connections,
            rate,
            count: args.count,
            inflight: args.inflight.max(1),
            window: args.window,
            persistent: args.persistent || queues,
            messages,
            wave: args.wave,
            drain: !args.no_drain,
            settle: seconds("settle", args.settle, 0.0)?,
            duration: seconds(
                "duration",
                args.duration.unwrap_or(if scenario == Scenario::Drain { 2.0 } else { 5.0 }),
                0.1,
            )?,
            warmup: seconds("warmup", args.warmup, 0.0)?,
            concurrency: args.concurrency.max(1),
            broker_pid: args.broker_pid,
            progress: !args.quiet,
            run_id: format!("{:x}{:04x}", std::process::id(), now.subsec_micros() & 0xffff),
        })
    }

    /// Client options for one client of this run.
    fn options(&self, client_id: String) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.host.clone(), self.port);
        options.version = self.version;
        options.client_id = client_id;
        options.max_inflight = self.inflight;
        options.server.transport = self.transport.clone();
        options.username = self.username.clone();
        options.password = self.password.clone().map(Bytes::from);
        options
    }

    /// The longest a run may take before it is abandoned: the measured time, plus generous
    /// room to connect every client, drain and disconnect.
    fn time_budget(&self) -> Duration {
        let clients = self.publishers + self.subscribers + self.connections;
        let mut budget =
            self.warmup + self.duration + Duration::from_secs(60) + Duration::from_millis(clients as u64 * 10);
        if matches!(self.scenario, Scenario::Offline | Scenario::Drain) {
            // Each session connects three times (subscribe, read back, removal), and every
            // queued delivery is written and read back: room for a slow disk at 5,000 a second
            // each way. Each phase also gives up by itself once nothing moves (`persistent`).
            let deliveries = self.subscribers as u64 * self.messages;
            budget += Duration::from_secs(60)
                + Duration::from_millis(self.subscribers as u64 * 30)
                + Duration::from_micros(deliveries.saturating_mul(400));
        }
        budget
    }

    /// The topic prefix of this run.
    fn prefix(&self) -> String {
        format!("midge-bench/{}", self.run_id)
    }

    /// The source address of connection `index` when connections are spread over 127.0.0.x:
    /// only when the broker is on IPv4 loopback.
    fn source_address(&self, index: usize) -> Option<IpAddr> {
        let loopback =
            self.host.parse::<Ipv4Addr>().is_ok_and(|address| address.is_loopback()) || self.host == "localhost";
        // 127.0.0.2 to 127.0.0.251: 250 addresses, each with its own ephemeral ports.
        loopback.then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % SOURCE_ADDRESSES) as u8)))
    }
}

/// How many loopback source addresses `conns` spreads its connections over.
const SOURCE_ADDRESSES: usize = 250;

/// `HOST:PORT`, for `--subscribe-at`.
fn parse_address(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "311" | "3.1.1" | "mqttv311" | "4" => Ok(ProtocolVersion::V311),
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err("expected 311 or 5".into()),
    }
}

/// Runs `midge bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("midge bench: {message}");
            return ExitCode::from(2);
        }
    };
    let open_files = system::raise_open_files_limit();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("midge bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    payload::now_ns();
    let budget = settings.time_budget();
    let outcome = runtime.block_on(async {
        let run = async {
            match settings.scenario {
                Scenario::Conns => conns::run(&settings, open_files).await,
                Scenario::Offline => offline::run(&settings, open_files).await,
                Scenario::Drain => drain::run(&settings).await,
                _ => traffic::run(&settings).await,
            }
        };
        tokio::time::timeout(budget, run).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(Ok(report)) => {
            print(&report, &settings, args.json);
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("midge bench: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("midge bench: the run did not finish within its budget of {} s", budget.as_secs());
            ExitCode::FAILURE
        }
    }
}

fn print(report: &Report, settings: &Settings, json: bool) {
    if json {
        println!("{}", report.to_json(settings));
    } else {
        print!("{}", report.to_table(settings));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let command = Command::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).unwrap();
        Settings::from_args(&command.args)
    }

    /// A CA certificate in a temporary directory, for `--cafile`.
    fn ca_file() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    #[test]
    fn plain_tcp_on_1883_without_credentials_by_default() {
        let settings = settings(&["pairs"]).unwrap();
        assert_eq!((settings.port, &settings.transport), (1883, &Transport::Tcp));
        let options = settings.options("id".into());
        assert_eq!((options.username, options.password), (None, None));
    }

    #[test]
    fn cafile_turns_tls_on_port_8883_unless_p_says_and_every_client_gets_it() {
        let (_dir, ca) = ca_file();
        for scenario in ["fanout", "fanin", "pairs", "latency", "conns", "offline", "drain"] {
            let settings = settings(&[scenario, "--cafile", &ca]).unwrap();
            assert!(matches!(settings.transport, Transport::Tls(_)), "{scenario}");
            assert_eq!(settings.port, DEFAULT_TLS_PORT, "{scenario}: midge pub's default port over TLS");
            let options = settings.options("c".into());
            assert_eq!((options.server.transport, options.server.port), (settings.transport.clone(), 8883));
        }
        let settings = settings(&["conns", "--cafile", &ca, "-p", "18883", "--insecure", "--tls-version", "tlsv1.3"]);
        assert_eq!(settings.unwrap().port, 18883);
    }

    #[test]
    fn tls_flags_are_checked_as_midge_pub_checks_them() {
        let (_dir, ca) = ca_file();
        let error = settings(&["fanout", "--insecure"]).unwrap_err();
        assert!(error.contains("need --cafile"), "{error}");
        let error = settings(&["fanout", "--cafile", &ca, "--cert", &ca]).unwrap_err();
        assert!(error.contains("Both certfile and keyfile"), "{error}");
        let error = settings(&["fanout", "--cafile", &ca, "--tls-version", "tlsv1.1"]).unwrap_err();
        assert!(error.contains("Unsupported TLS version"), "{error}");
        let error = settings(&["fanout", "--cafile", "/nonexistent/ca.pem"]).unwrap_err();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn username_and_password_reach_every_client() {
        let settings = settings(&["latency", "-u", "alice", "-P", "s3cret", "-p", "1884"]).unwrap();
        let options = settings.options("c".into());
        assert_eq!(options.username.as_deref(), Some("alice"));
        assert_eq!(options.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!((options.server.port, &options.server.transport), (1884, &Transport::Tcp));
    }

    #[test]
    fn subscribe_at_spreads_the_subscribers_and_leaves_the_publishers() {
        let settings = settings(&["fanout", "-p", "1884", "--subscribe-at", "127.0.0.1:2001,[::1]:2002"]).unwrap();
        let at = |index| {
            let options = super::traffic::subscriber_options(&settings, index);
            (options.server.host, options.server.port)
        };
        assert_eq!(at(0), ("127.0.0.1".to_owned(), 2001));
        assert_eq!(at(1), ("::1".to_owned(), 2002));
        assert_eq!(at(2), ("127.0.0.1".to_owned(), 2001));
        assert_eq!(settings.options("p".into()).server.port, 1884, "publishers stay on -p");
        assert!(super::parse_address("no-port").is_err());
        assert!(super::parse_address("h:99999").is_err());
    }

    #[test]
    fn offline_and_drain_queue_qos_1_by_default_and_refuse_qos_0() {
        let offline = settings(&["offline"]).unwrap();
        assert_eq!((offline.subscribers, offline.messages, offline.qos), (10_000, 1000, QoS::AtLeastOnce));
        assert!(offline.persistent && offline.drain);
        let drain = settings(&["drain"]).unwrap();
        assert_eq!((drain.messages, drain.rate, drain.duration), (100_000, Some(1000.0), Duration::from_secs(2)));
        assert_eq!(settings(&["offline", "--no-drain", "-q", "2"]).unwrap().qos, QoS::ExactlyOnce);
        assert!(!settings(&["offline", "--no-drain"]).unwrap().drain);
        assert_eq!(settings(&["fanout"]).unwrap().qos, QoS::AtMostOnce, "other scenarios keep QoS 0");
        for (args, message) in [
            (&["offline", "-q", "0"][..], "-q must be 1 or 2"),
            (&["drain", "--messages", "0"][..], "--messages"),
            (&["offline", "--wave", "0"][..], "--wave"),
        ] {
            let error = settings(args).unwrap_err();
            assert!(error.contains(message), "{args:?}: {error}");
        }
    }
}
