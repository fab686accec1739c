//! `midge sub`: mosquitto_sub's flags and behaviour on midge-client.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use midge_client::codec::{
    Disconnect, Properties, Publish, QoS, ReasonCode, RetainHandling, Subscription, SubscriptionOptions, TopicFilter,
};
use midge_client::{Client, Error, Event};

use crate::client::format::{parse_format, Output};
use crate::client::{exit, leading_int, parse_qos, report, resolve, usage_error, ConnectArgs, Connection, Tool};

/// Arguments of `midge sub`.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    args_override_self = true,
    about = "Subscribe and print messages as they arrive (like mosquitto_sub)",
    after_help = "Output format (-F): %t topic, %p payload, %x / %X payload in hex, %l payload length, %q QoS, \
%r retain flag, %m packet id, %I ISO-8601 local time, %U Unix time with nanoseconds, %j the message as JSON \
(payload as a string), %J the same with a JSON payload embedded, %C content type, %D correlation data, \
%E message expiry interval, %F payload format indicator, %P user properties (key:value ...), %R response \
topic, %S subscription identifier, %A topic alias, %% a percent sign. Fields take printf flags: %-10t, \
%05l, %.3p. @X is strftime's %X of the local time (@@ an at sign, @N nanoseconds); \\n \\t \\e \\0 \\\\ \
... are escapes. -F prints no newline of its own unless the format has one... except that, as in \
mosquitto, one is added unless -N is given.

Exit status: 0 after -C messages, -E, --retained-only's first live message, or SIGINT/SIGTERM; 1 for bad \
arguments or an unreachable broker; the CONNACK code when the broker refuses the connection (3.x: 1-5, 5.0: \
the reason code); 7 when the connection is lost (mosquitto_sub would reconnect silently); 27 when -W expires.

Examples:
  midge sub -t 'sensors/#' -v                        print topic and payload of everything under sensors/
  midge sub -h broker -t a -t b -q 1 -C 10            ten messages at QoS 1 from two topics, then exit
  midge sub -t '#' -T '$SYS/#' -F '%I %t %p'          timestamped, filtering a subtree out
  midge sub -t 'a/#' --retained-only --remove-retained   clear every retained message under a/
  midge sub -t a -F %j --pretty                       JSON, indented
  midge sub -V mqttv5 -c -i me -x 3600 -t jobs -q 1   persistent v5 session expiring after an hour
  midge sub -L mqtt://alice:secret@broker/a/b -W 5    give up (exit 27) after 5 seconds"
)]
pub struct SubArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic filter to subscribe to; may be repeated.
    #[arg(short = 't', long = "topic", value_name = "FILTER", help_heading = "Subscription")]
    topics: Vec<String>,
    /// Topic filter whose messages are not printed; may be repeated.
    #[arg(short = 'T', long = "filter-out", value_name = "FILTER", help_heading = "Subscription")]
    filter_out: Vec<String>,
    /// Unsubscribe from this filter after connecting (clears it from a persistent session); may be
    /// repeated.
    #[arg(short = 'U', long = "unsubscribe", value_name = "FILTER", help_heading = "Subscription")]
    unsubscribe: Vec<String>,
    /// Subscription QoS, 0 to 2 [default: 0].
    #[arg(short = 'q', long = "qos", value_name = "QOS", help_heading = "Subscription")]
    qos: Option<String>,
    /// MQTT 5 No Local: do not receive this client's own publications.
    #[arg(long = "nl", help_heading = "Subscription")]
    no_local: bool,
    /// MQTT 5 Retain As Published: keep the retain flag of forwarded messages.
    #[arg(long = "rap", help_heading = "Subscription")]
    retain_as_published: bool,
    /// MQTT 5 Retain Handling: 0 send retained messages, 1 only for a new subscription, 2 never.
    #[arg(long = "rh", value_name = "0|1|2", help_heading = "Subscription")]
    retain_handling: Option<u8>,
    /// Exit after this many messages.
    #[arg(
        short = 'C',
        long = "count",
        value_name = "COUNT",
        allow_negative_numbers = true,
        help_heading = "Behaviour"
    )]
    count: Option<String>,
    /// Exit (27) if not done after this many seconds.
    #[arg(
        short = 'W',
        long = "timeout",
        value_name = "SECONDS",
        allow_negative_numbers = true,
        help_heading = "Behaviour"
    )]
    timeout: Option<String>,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E', help_heading = "Behaviour")]
    exit_after_subscribe: bool,
    /// Do not print retained (stale) messages.
    #[arg(short = 'R', help_heading = "Behaviour")]
    no_retained: bool,
    /// Handle only retained messages; exit at the first message without the retain flag.
    #[arg(long = "retained-only", help_heading = "Behaviour")]
    retained_only: bool,
    /// Clear each retained message received (publish an empty retained message to its topic).
    #[arg(long = "remove-retained", help_heading = "Behaviour")]
    remove_retained: bool,
    /// Print the topic, a space, then the payload.
    #[arg(short = 'v', long = "verbose", help_heading = "Output")]
    verbose: bool,
    /// Do not add a newline after each message.
    #[arg(short = 'N', help_heading = "Output")]
    no_eol: bool,
    /// Output format; see below.
    #[arg(short = 'F', value_name = "FORMAT", help_heading = "Output")]
    format: Option<String>,
    /// Indent JSON output (%j, %J).
    #[arg(long = "pretty", help_heading = "Output")]
    pretty: bool,
}

/// Checked arguments.
struct Plan {
    connection: Connection,
    subscriptions: Vec<Subscription>,
    unsubscribe: Vec<TopicFilter>,
    filter_out: Vec<TopicFilter>,
    count: Option<u64>,
    timeout: Option<Duration>,
    exit_after_subscribe: bool,
    no_retained: bool,
    retained_only: bool,
    remove_retained: bool,
    output: Output,
}

/// Runs `midge sub`; returns the exit code.
pub fn run(args: SubArgs) -> u8 {
    if args.no_retained && args.retained_only {
        eprintln!("\nError: Combining '-R' and '--retained-only' makes no sense.");
        return exit::FAILURE;
    }
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => return usage_error(Tool::Sub, &message),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(subscribe(plan))
}

fn plan(args: SubArgs) -> Result<Plan, String> {
    let connection = resolve(&args.connect, Tool::Sub)?;
    let qos = match &args.qos {
        Some(text) => parse_qos(text)?,
        None => QoS::AtMostOnce,
    };
    let retain_handling = match args.retain_handling {
        None | Some(0) => RetainHandling::SendAtSubscribe,
        Some(1) => RetainHandling::SendIfNew,
        Some(2) => RetainHandling::DoNotSend,
        Some(_) => return Err("Error: Invalid retain-handling value, it must be 0, 1 or 2.".into()),
    };
    let options = SubscriptionOptions {
        qos,
        no_local: args.no_local,
        retain_as_published: args.retain_as_published,
        retain_handling,
    };
    let mut topics = args.topics.clone();
    if let Some(topic) = &connection.url_topic {
        topics.push(topic.clone());
    }
    if topics.is_empty() {
        return Err("Error: You must specify a topic to subscribe to.".into());
    }
    let subscriptions = topics
        .iter()
        .map(|topic| {
            TopicFilter::new(topic).map(|filter| Subscription { filter, options }).map_err(|_| {
                format!("Error: Invalid subscription topic '{topic}', are all '+' and '#' wildcards correct?")
            })
        })
        .collect::<Result<_, _>>()?;
    let filter_out = args
        .filter_out
        .iter()
        .map(|topic| {
            TopicFilter::new(topic)
                .map_err(|_| format!("Error: Invalid filter topic '{topic}', are all '+' and '#' wildcards correct?"))
        })
        .collect::<Result<_, _>>()?;
    let unsubscribe = args
        .unsubscribe
        .iter()
        .map(|topic| {
            TopicFilter::new(topic).map_err(|_| {
                format!("Error: Invalid unsubscribe topic '{topic}', are all '+' and '#' wildcards correct?")
            })
        })
        .collect::<Result<_, _>>()?;
    let count = match &args.count {
        Some(text) => match text.parse::<u64>() {
            Ok(count) if count > 0 => Some(count),
            _ => return Err(format!("Error: Invalid message count \"{}\".", leading_int(text))),
        },
        None => None,
    };
    let timeout = match &args.timeout {
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Some(Duration::from_secs(seconds)),
            _ => return Err(format!("Error: Invalid timeout \"{}\".", leading_int(text))),
        },
        None => None,
    };
    let format = args.format.as_deref().map(parse_format).transpose()?;
    Ok(Plan {
        connection,
        subscriptions,
        unsubscribe,
        filter_out,
        count,
        timeout,
        exit_after_subscribe: args.exit_after_subscribe,
        no_retained: args.no_retained,
        retained_only: args.retained_only,
        remove_retained: args.remove_retained,
        output: Output { format, verbose: args.verbose, eol: !args.no_eol, pretty: args.pretty },
    })
}

/// Why the loop ended without an error.
enum Stop {
    /// -C, -E, --retained-only: done.
    Done,
    /// -W expired.
    TimedOut,
    /// SIGINT or SIGTERM.
    Signalled,
}

async fn subscribe(plan: Plan) -> u8 {
    let quiet = plan.connection.quiet;
    let tracer = plan.connection.debug.then(|| crate::client::debug_tracer(&plan.connection.options.client_id));
    let mut client = match Client::connect_traced(plan.connection.options.clone(), tracer).await {
        Ok(client) => client,
        Err(error) => return report(&error, Tool::Sub, quiet),
    };
    let deadline = plan.timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    let outcome = tokio::select! {
        outcome = receive(&mut client, &plan) => outcome,
        () = sleep_until(deadline) => Ok(Stop::TimedOut),
        () = signal() => Ok(Stop::Signalled),
    };
    let v5 = plan.connection.options.version.is_v5();
    let mut disconnect = Disconnect::default();
    if v5 {
        disconnect.properties = plan.connection.properties.disconnect.clone();
    }
    match outcome {
        Ok(Stop::Done) => {
            let _ = client.disconnect_with(disconnect).await;
            0
        }
        Ok(stop) => {
            // mosquitto_sub disconnects "with will" on -W and signals, so a v5 broker still
            // publishes the will.
            if v5 {
                disconnect.reason = ReasonCode::DISCONNECT_WITH_WILL;
            }
            let _ = client.disconnect_with(disconnect).await;
            if matches!(stop, Stop::TimedOut) {
                if !quiet {
                    eprintln!("Timed out");
                }
                return exit::TIMED_OUT;
            }
            0
        }
        Err(error) => report(&error, Tool::Sub, quiet),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Completes on SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Subscribes, then handles messages as mosquitto_sub's message callback does.
async fn receive(client: &mut Client, plan: &Plan) -> Result<Stop, Error> {
    let connection = &plan.connection;
    let v5 = connection.options.version.is_v5();
    let subscribe_properties = if v5 { connection.properties.subscribe.clone() } else { Properties::default() };
    client.subscribe(plan.subscriptions.clone(), subscribe_properties)?;
    for filter in &plan.unsubscribe {
        let properties = if v5 { connection.properties.unsubscribe.clone() } else { Properties::default() };
        client.unsubscribe(vec![filter.clone()], properties)?;
    }
    let mut received = 0u64;
    let mut buffer = Vec::new();
    let mut stopping = false;
    loop {
        if stopping && client.unacknowledged() == 0 {
            return Ok(Stop::Done);
        }
        match client.poll().await? {
            Event::Subscribed(suback) => {
                if connection.debug && !connection.quiet {
                    let granted: Vec<String> = suback.reasons.iter().map(|code| code.0.to_string()).collect();
                    println!("Subscribed (mid: {}): {}", suback.packet_id, granted.join(", "));
                    let _ = std::io::stdout().flush();
                }
                if plan.exit_after_subscribe {
                    stopping = true;
                }
            }
            Event::Message(message) if !stopping => {
                if plan.retained_only && !message.retain {
                    stopping = true;
                    continue;
                }
                if message.retain && plan.no_retained {
                    continue;
                }
                if plan.filter_out.iter().any(|filter| matches(filter, &message)) {
                    continue;
                }
                if plan.remove_retained && message.retain {
                    client.publish(&message.topic, Bytes::new(), QoS::AtLeastOnce, true)?;
                }
                buffer.clear();
                let problem = plan.output.render(&message, &mut buffer);
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&buffer);
                let _ = stdout.flush();
                if let Err(problem) = problem {
                    if !connection.quiet {
                        eprintln!("{problem}");
                    }
                }
                received += 1;
                if plan.count == Some(received) {
                    stopping = true;
                }
            }
            _ => {}
        }
    }
}

/// Whether `message`'s topic matches `filter` (for -T), with the `$`-topic rule of
/// MQTT-4.7.2-1: a filter starting with a wildcard does not match topics starting with `$`.
fn matches(filter: &TopicFilter, message: &Publish) -> bool {
    topic_matches(filter.as_str(), message.topic.as_str())
}

fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn filter_matching_for_filter_out() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(!topic_matches("a/b", "a"));
    }
}
