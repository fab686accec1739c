//! `conns`: K idle connections, each subscribed to a topic of its own. Measures how fast the
//! broker takes them (CONNECT to SUBACK, `--concurrency` attempts at once) and, with
//! `--broker-pid`, its resident memory per connection: VmRSS after holding them for
//! `--duration` seconds minus VmRSS before the first one.
//!
//! Connections come from 127.0.0.2 to 127.0.0.251 in turn when the broker is on loopback, so
//! no source address runs out of ephemeral ports, however many runs in a row. The bench raises
//! its own open files limit to the hard limit first; when that still does not allow K sockets,
//! it connects as many as it can and says so.
//!
//! Over TLS every connection makes a full handshake (see `Settings`), so the connect rate is
//! the broker's rate of TLS handshakes plus MQTT connections. Connections the broker refuses in
//! its CONNACK (a wrong `-P`) are counted apart from other failures: `midge bench conns -P
//! wrong` is a storm of refused logins (bench/auth_storm.sh).

use std::sync::Arc;
use std::time::Duration;

use midge_client::codec::TopicFilter;
use midge_client::Client;
use tokio::time::Instant;

use super::report::{self, Connections, Report};
use super::traffic::{connect_all, subscribe};
use super::{system, Settings, SOURCE_ADDRESSES};

/// Files the bench keeps for itself besides the connections: the runtime's epoll and wakers,
/// stdio, /proc reads.
pub const RESERVED_FILES: u64 = 64;

/// Runs `conns`.
pub async fn run(settings: &Settings, open_files: u64) -> anyhow::Result<Report> {
    let settings = Arc::new(settings.clone());
    let room = usize::try_from(open_files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    let attempted = settings.connections.min(room);
    if attempted < settings.connections {
        eprintln!(
            "midge bench: the open files limit ({open_files}) allows {attempted} connections, not {}",
            settings.connections
        );
    }
    let cpu_at_start = system::own_cpu_seconds();
    let broker_cpu_at_start = settings.broker_pid.and_then(|pid| system::process_cpu_seconds(pid).ok());
    let rss_before = settings.broker_pid.and_then(|pid| system::process_rss_kib(pid).ok());

    let started = Instant::now();
    let (mut finished, mut failed, mut refused, mut first_error) = (0usize, 0usize, 0usize, None);
    let mut last_line = started;
    let progress = settings.progress;
    let results = connect_all(
        attempted,
        settings.concurrency,
        |index| connect_idle(Arc::clone(&settings), index),
        |result| {
            finished += 1;
            match result {
                Ok(Idle::Connected(_)) => {}
                Ok(Idle::Refused(error)) => {
                    (failed, refused) = (failed + 1, refused + 1);
                    first_error.get_or_insert_with(|| error.clone());
                }
                Err(error) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| error.clone());
                }
            }
            if progress && last_line.elapsed() >= Duration::from_secs(1) {
                last_line = Instant::now();
                report::progress(format_args!(
                    "conns: {} of {attempted} attempted, {failed} failed ({refused} refused), {} conn/s",
                    report::count(finished as f64),
                    report::count(finished as f64 / started.elapsed().as_secs_f64())
                ));
            }
        },
    )
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let cpu_after_connect = system::own_cpu_seconds();
    let broker_cpu_after_connect = settings.broker_pid.and_then(|pid| system::process_cpu_seconds(pid).ok());
    let clients: Vec<Client> = results
        .into_iter()
        .filter_map(|result| match result {
            Ok(Idle::Connected(client)) => Some(*client),
            _ => None,
        })
        .collect();
    if progress {
        report::progress(format_args!(
            "conns: {} connected in {connect_seconds:.2} s; holding them for {:.1} s",
            report::count(clients.len() as f64),
            settings.duration.as_secs_f64()
        ));
    }
    tokio::time::sleep(settings.duration).await;
    let rss_after = settings.broker_pid.and_then(|pid| system::process_rss_kib(pid).ok());
    let connected = clients.len();
    drop(clients);

    Ok(Report {
        window_seconds: connect_seconds,
        bench_cpu_seconds: cpu_after_connect - cpu_at_start,
        bench_cpu_total_seconds: system::own_cpu_seconds() - cpu_at_start,
        broker_cpu_seconds: broker_cpu_after_connect.zip(broker_cpu_at_start).map(|(end, start)| end - start),
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: rss_after,
        errors: failed as u64,
        first_error,
        connections: Some(Connections {
            target: settings.connections,
            attempted,
            connected,
            failed,
            refused,
            connect_seconds,
            open_files_limit: open_files,
            source_addresses: if settings.source_address(0).is_some() { SOURCE_ADDRESSES.min(attempted) } else { 1 },
        }),
        ..Report::default()
    })
}

/// What became of one connection attempt that the broker answered.
enum Idle {
    /// Connected and subscribed (boxed: a client is large beside a refusal).
    Connected(Box<Client>),
    /// Refused in the CONNACK; the message says why.
    Refused(String),
}

/// Connects idle client `index` and subscribes it to its own topic.
async fn connect_idle(settings: Arc<Settings>, index: usize) -> Result<Idle, String> {
    let mut options = settings.options(format!("mb{}-c{index}", settings.run_id));
    options.local_address = settings.source_address(index);
    // No PINGREQ is due while the connections are held (the bench does not poll them).
    let hold = settings.duration.as_secs() + 120;
    options.keep_alive = u16::try_from(hold).unwrap_or(u16::MAX);
    let filter =
        TopicFilter::new(&format!("{}/conns/{index}", settings.prefix())).map_err(|error| error.to_string())?;
    let attempt = async {
        let mut client = match Client::connect(options).await {
            Ok(client) => client,
            Err(error @ midge_client::Error::Refused { .. }) => {
                return Ok(Idle::Refused(format!("connection {index}: {error}")));
            }
            Err(error) => return Err(error.to_string()),
        };
        subscribe(&mut client, filter, settings.qos).await?;
        Ok(Idle::Connected(Box::new(client)))
    };
    tokio::time::timeout(super::traffic::SETUP_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            format!("connection {index}: not subscribed within {} s", super::traffic::SETUP_TIMEOUT.as_secs())
        })?
        .map_err(|error: String| format!("connection {index}: {error}"))
}
