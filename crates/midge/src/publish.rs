//! `midge pub`: mosquitto_pub's flags and behaviour on midge-client, plus `-e`, the
//! request/response of mosquitto_rr (publish with a Response Topic, print the first answer).

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use midge_client::codec::{Properties, QoS, Subscription, SubscriptionOptions, TopicFilter, TopicName};
use midge_client::{Client, Error, Event};
use tokio::sync::mpsc;

use crate::client::format::{parse_format, Output};
use crate::client::{exit, report, resolve, usage_error, ConnectArgs, Connection, Tool};

/// Arguments of `midge pub`.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    args_override_self = true,
    about = "Publish one message, a file, or each line of stdin (like mosquitto_pub)",
    after_help = "Exit status: 0 when every message was sent (and, at QoS 1 and 2, acknowledged); 1 for bad \
arguments or an unreachable broker; the CONNACK code when the broker refuses the connection (3.x: 1-5, 5.0: \
the reason code, e.g. 135 Not authorized); 7 when the connection is lost; 27 when -W expires.

Examples:
  midge pub -t sensors/1 -m 21.5                      publish one message at QoS 0 to localhost:1883
  midge pub -h broker -p 1884 -t a/b -m hi -q 2 -r    QoS 2, retained
  midge pub -t a/b -r -n                              clear the retained message of a/b
  midge pub -L mqtt://alice:secret@broker:1883/a/b -m hi
  midge pub -t logs -f /var/log/app.log               the whole file as one message
  tail -f app.log | midge pub -t logs -l -q 1         one message per line
  midge pub -V mqttv5 -t a -m '{}' -D publish content-type application/json \\
            -D publish user-property source cli        MQTT 5 properties
  midge pub -V mqttv5 -t rpc/add -m '1 2' -e rpc/reply request/response: print the first reply"
)]
pub struct PubArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", value_name = "TOPIC", help_heading = "Message")]
    topic: Option<String>,
    /// Message payload.
    #[arg(short = 'm', long = "message", value_name = "MESSAGE", help_heading = "Message", allow_hyphen_values = true)]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "FILE", help_heading = "Message")]
    file: Option<PathBuf>,
    /// Read the whole of stdin as one message.
    #[arg(short = 's', long = "stdin-file", help_heading = "Message")]
    stdin_file: bool,
    /// Read stdin, sending one message per line (without its newline; empty lines are empty
    /// messages).
    #[arg(short = 'l', long = "stdin-line", help_heading = "Message")]
    stdin_line: bool,
    /// Send an empty (zero length) message.
    #[arg(short = 'n', long = "null-message", help_heading = "Message")]
    null: bool,
    /// QoS, 0 to 2 [default: 0].
    #[arg(short = 'q', long = "qos", value_name = "QOS", help_heading = "Message")]
    qos: Option<String>,
    /// Retain the message.
    #[arg(short = 'r', long = "retain", help_heading = "Message")]
    retain: bool,
    /// Request/response (mosquitto_rr): subscribe to this topic, publish with it as the MQTT 5
    /// Response Topic, print the first message that arrives on it, and exit.
    #[arg(short = 'e', long = "response-topic", value_name = "TOPIC", help_heading = "Request/response")]
    response_topic: Option<String>,
    /// With -e: give up after this many seconds (exit 27).
    #[arg(short = 'W', value_name = "SECONDS", help_heading = "Request/response")]
    timeout: Option<String>,
    /// With -e: print the response in this format (see `midge sub --help`).
    #[arg(short = 'F', value_name = "FORMAT", help_heading = "Request/response")]
    format: Option<String>,
    /// With -e: print the response's topic before its payload.
    #[arg(short = 'v', long = "verbose", help_heading = "Request/response")]
    verbose: bool,
    /// With -e: no newline after the response.
    #[arg(short = 'N', help_heading = "Request/response")]
    no_eol: bool,
    /// With -e and a JSON format: indent the JSON.
    #[arg(long = "pretty", help_heading = "Request/response")]
    pretty: bool,
}

/// Where the payload comes from.
enum Source {
    /// One message, read before connecting (-m, -f, -s, -n).
    Once(Bytes),
    /// One message per line of stdin (-l).
    Lines,
}

/// Checked arguments.
struct Plan {
    connection: Connection,
    topic: TopicName,
    source: Source,
    qos: QoS,
    retain: bool,
    response: Option<(TopicName, Output)>,
    timeout: Option<Duration>,
}

/// Runs `midge pub`; returns the exit code.
pub fn run(args: PubArgs) -> u8 {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err((message, true)) => return usage_error(Tool::Pub, &message),
        Err((message, false)) => {
            eprintln!("{message}");
            return exit::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return exit::FAILURE;
        }
    };
    let quiet = plan.connection.quiet;
    runtime.block_on(async move {
        let timeout = plan.timeout;
        let work = publish(plan);
        let outcome = match timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    if !quiet {
                        eprintln!("Timed out");
                    }
                    return exit::TIMED_OUT;
                }
            },
            None => work.await,
        };
        match outcome {
            Ok(()) => 0,
            Err(error) => report(&error, Tool::Pub, quiet),
        }
    })
}

/// Checks the arguments. The error says whether to add the usage hint.
fn plan(args: PubArgs) -> Result<Plan, (String, bool)> {
    let usage = |message: String| (message, true);
    let connection = resolve(&args.connect, Tool::Pub).map_err(usage)?;
    let sources = [args.message.is_some(), args.file.is_some(), args.stdin_file, args.stdin_line, args.null]
        .iter()
        .filter(|&&s| s)
        .count();
    if sources > 1 {
        return Err(usage("Error: Only one type of message can be sent at once.".into()));
    }
    let topic = args.topic.clone().or_else(|| connection.url_topic.clone());
    let (Some(topic), 1) = (topic, sources) else {
        return Err(usage("Error: Both topic and message must be supplied.".into()));
    };
    let topic = TopicName::new(&topic)
        .map_err(|_| usage(format!("Error: Invalid publish topic '{topic}', does it contain '+' or '#'?")))?;
    let qos = match &args.qos {
        Some(text) => crate::client::parse_qos(text).map_err(usage)?,
        None => QoS::AtMostOnce,
    };
    let timeout = match &args.timeout {
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Some(Duration::from_secs(seconds)),
            _ => return Err(usage(format!("Error: Invalid timeout \"{}\".", crate::client::leading_int(text)))),
        },
        None => None,
    };
    let response = match &args.response_topic {
        Some(text) => {
            let topic = TopicName::new(text)
                .map_err(|_| usage(format!("Error: Invalid response topic '{text}', does it contain '+' or '#'?")))?;
            let format = args.format.as_deref().map(parse_format).transpose().map_err(usage)?;
            Some((topic, Output { format, verbose: args.verbose, eol: !args.no_eol, pretty: args.pretty }))
        }
        None => None,
    };
    let source = if let Some(message) = args.message {
        Source::Once(Bytes::from(message))
    } else if let Some(path) = &args.file {
        let data =
            std::fs::read(path).map_err(|_| (format!("Error loading input file \"{}\".", path.display()), false))?;
        Source::Once(Bytes::from(data))
    } else if args.stdin_file {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).map_err(|_| ("Error loading input from stdin.".to_string(), false))?;
        Source::Once(Bytes::from(data))
    } else if args.stdin_line {
        Source::Lines
    } else {
        Source::Once(Bytes::new())
    };
    Ok(Plan { connection, topic, source, qos, retain: args.retain, response, timeout })
}

/// Connects, publishes, waits for the acknowledgements (and the response with -e), disconnects.
async fn publish(plan: Plan) -> Result<(), Error> {
    let Plan { connection, topic, source, qos, retain, response, .. } = plan;
    let tracer = connection.debug.then(|| crate::client::debug_tracer(&connection.options.client_id));
    let v5 = connection.options.version.is_v5();
    let mut client = Client::connect_traced(connection.options.clone(), tracer).await?;
    let mut properties = if v5 { connection.properties.publish.clone() } else { Properties::default() };
    let quiet = connection.quiet;

    if let Some((response_topic, output)) = response {
        let filter =
            TopicFilter::new(response_topic.as_str()).map_err(|source| Error::Invalid { what: "topic", source })?;
        let options = SubscriptionOptions { qos, ..Default::default() };
        client.subscribe(vec![Subscription { filter, options }], Properties::default())?;
        wait(&mut client, |event| matches!(event, Event::Subscribed(_)), quiet).await?;
        if v5 {
            properties.response_topic = Some(response_topic.clone());
        }
        let Source::Once(payload) = &source else {
            return Err(Error::Protocol("-e takes one message, not -l"));
        };
        client.publish_with(&topic, payload, qos, retain, &properties)?;
        let mut buffer = Vec::new();
        loop {
            if let Event::Message(message) = client.poll().await? {
                if message.topic == response_topic {
                    if let Err(problem) = output.render(&message, &mut buffer) {
                        eprintln!("{problem}");
                    }
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(&buffer);
                    let _ = stdout.flush();
                    break;
                }
            }
        }
        return finish(&mut client, &connection, quiet).await;
    }

    match source {
        Source::Once(payload) => {
            client.publish_with(&topic, &payload, qos, retain, &properties)?;
        }
        Source::Lines => {
            // A thread reads stdin (blocking) while the client keeps the connection alive.
            let (lines, mut receiver) = mpsc::channel::<Bytes>(64);
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match stdin.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if line.last() == Some(&b'\n') {
                                line.pop();
                            }
                            if lines.blocking_send(Bytes::copy_from_slice(&line)).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            loop {
                tokio::select! {
                    line = receiver.recv() => match line {
                        Some(payload) => {
                            client.publish_with(&topic, &payload, qos, retain, &properties)?;
                        }
                        None => break,
                    },
                    event = client.poll() => warn_on_failure(&event?, quiet),
                }
            }
        }
    }
    finish(&mut client, &connection, quiet).await
}

/// Waits until every message is acknowledged, then sends DISCONNECT (with `-D disconnect`).
async fn finish(client: &mut Client, connection: &Connection, quiet: bool) -> Result<(), Error> {
    while client.unacknowledged() > 0 {
        let event = client.poll().await?;
        warn_on_failure(&event, quiet);
    }
    let mut disconnect = midge_client::codec::Disconnect::default();
    if connection.options.version.is_v5() {
        disconnect.properties = connection.properties.disconnect.clone();
    }
    client.disconnect_with(disconnect).await
}

/// Polls until an event satisfies `done`.
async fn wait(client: &mut Client, done: impl Fn(&Event) -> bool, quiet: bool) -> Result<(), Error> {
    loop {
        let event = client.poll().await?;
        warn_on_failure(&event, quiet);
        if done(&event) {
            return Ok(());
        }
    }
}

/// mosquitto_pub's warning for a message the broker refused (v5 reason code 0x80 or more); the
/// exit status stays 0, as mosquitto's does.
fn warn_on_failure(event: &Event, quiet: bool) {
    if let Event::Published { packet_id, reason, properties, .. } = event {
        if reason.is_error() && !quiet {
            eprintln!("Warning: Publish {packet_id} failed: {}.", reason.name().unwrap_or("Unknown reason"));
            if let Some(text) = &properties.reason_string {
                eprintln!("{text}");
            }
        }
    }
}
