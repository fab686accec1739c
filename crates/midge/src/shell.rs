//! `midge shell`: an interactive MQTT client.
//!
//! Two threads. The main thread reads commands — with rustyline (line editing, history, tab
//! completion of commands) on a terminal, line by line from a pipe otherwise — and hands each to
//! the client thread, then prints the answer. The client thread owns the [`Client`] on a
//! current-thread runtime and `select!`s on commands and the connection; incoming messages are
//! printed as they arrive, through rustyline's external printer on a terminal, so they appear
//! above the prompt without garbling the line being typed.
//!
//! Commands wait for the broker's acknowledgement before answering (SUBACK, PUBACK, PUBCOMP), so
//! a piped script runs in order: a `publish` after a `subscribe` is routed to it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser};
use midge_client::codec::{PacketId, Properties, QoS, Subscription, SubscriptionOptions, TopicFilter, TopicName};
use midge_client::{Client, Error, Event};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{ExternalPrinter, Helper};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::{describe, parse_qos, resolve, ConnectArgs, Tool};

/// How long a command waits for the client thread's answer; the broker's acknowledgements
/// normally take milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `midge shell`.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    about = "Interactive MQTT client: connect, publish, subscribe and watch messages arrive",
    after_help = "With -h, -p or -L the shell connects at start; otherwise use `connect`. Type `help` in \
the shell for its commands. When stdin is not a terminal, commands are read from it one per line (lines \
starting with # are comments), so the shell can be scripted.

Examples:
  midge shell                                        then: connect -h broker -V 5
  midge shell -h localhost -p 1883                   connect at start
  printf 'subscribe -q 1 a/#\\npublish a/b hello\\nwait 1\\n' | midge shell -p 1883"
)]
pub struct ShellArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

/// The commands typed at the prompt.
#[derive(Debug, Parser)]
#[command(multicall = true, disable_help_subcommand = true)]
enum Line {
    /// Connect to a broker (takes the connection flags of `midge pub`, e.g. -h -p -V -i -u -P -c -x -k).
    #[command(disable_help_flag = true)]
    Connect(Box<ConnectArgs>),
    /// Disconnect (DISCONNECT, then close).
    Disconnect,
    /// Publish: publish [-q QOS] [-r] TOPIC MESSAGE...
    #[command(alias = "pub")]
    Publish {
        /// QoS, 0 to 2.
        #[arg(short = 'q', default_value = "0")]
        qos: String,
        /// Retain the message.
        #[arg(short = 'r')]
        retain: bool,
        /// Topic.
        topic: String,
        /// Payload: the rest of the line (may be empty).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        message: Vec<String>,
    },
    /// Subscribe: subscribe [-q QOS] FILTER...
    #[command(alias = "sub")]
    Subscribe {
        /// QoS, 0 to 2.
        #[arg(short = 'q', default_value = "0")]
        qos: String,
        /// Topic filters.
        #[arg(required = true)]
        filters: Vec<String>,
    },
    /// Unsubscribe: unsubscribe FILTER...
    #[command(alias = "unsub")]
    Unsubscribe {
        /// Topic filters.
        #[arg(required = true)]
        filters: Vec<String>,
    },
    /// List the subscriptions made in this session.
    Subscriptions,
    /// Show the connection, session and counters.
    Status,
    /// Wait until COUNT messages (default 1) have arrived since the last `wait` took its share,
    /// for at most SECONDS (default 10).
    Wait {
        /// Messages to wait for.
        #[arg(default_value = "1")]
        count: u64,
        /// Give up after this many seconds.
        #[arg(short = 't', default_value = "10")]
        seconds: u64,
    },
    /// Show the commands, or one command's options.
    Help {
        /// A command.
        command: Option<String>,
    },
    /// Leave the shell.
    #[command(alias = "exit")]
    Quit,
}

/// Names completed at the start of a line.
const COMMANDS: &[&str] = &[
    "connect",
    "disconnect",
    "exit",
    "help",
    "publish",
    "pub",
    "quit",
    "status",
    "sub",
    "subscribe",
    "subscriptions",
    "unsub",
    "unsubscribe",
    "wait",
];

/// A command for the client thread, with where to send its answer.
struct Request {
    command: Command,
    answer: std_mpsc::Sender<String>,
}

/// What the client thread does.
enum Command {
    Connect(Box<crate::client::Connection>),
    Disconnect,
    Publish { topic: TopicName, payload: Bytes, qos: QoS, retain: bool },
    Subscribe { subscriptions: Vec<Subscription> },
    Unsubscribe { filters: Vec<TopicFilter> },
    Subscriptions,
    Status,
    Wait { count: u64, timeout: Duration },
    Quit,
}

/// Runs the shell; returns the exit code (0, or 1 if the start-up connection failed).
pub fn run(args: ShellArgs) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    let (requests, receiver) = mpsc::unbounded_channel::<Request>();
    let mut editor = if interactive { new_editor() } else { None };
    let printer: Box<dyn FnMut(String) + Send> = match editor.as_mut().and_then(|e| e.create_external_printer().ok()) {
        Some(mut printer) => Box::new(move |text| {
            let _ = printer.print(format!("{text}\n"));
        }),
        None => Box::new(|text| {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{text}");
            let _ = stdout.flush();
        }),
    };
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match runtime {
            Ok(runtime) => runtime.block_on(client_loop(receiver, printer)),
            Err(error) => eprintln!("Error: cannot start the async runtime: {error}"),
        }
    });
    let connect = &args.connect;
    let mut status = 0;
    if connect.host.is_some() || connect.port.is_some() || connect.url.is_some() {
        match resolve(connect, Tool::Pub) {
            Ok(connection) => {
                let answer = ask(&requests, Command::Connect(Box::new(connection)));
                println!("{answer}");
                if !answer.starts_with("Connected") {
                    status = 1;
                }
            }
            Err(message) => {
                eprintln!("{message}");
                status = 1;
            }
        }
    }
    match editor {
        Some(editor) => interactive_loop(editor, &requests),
        None => {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if !execute(&line, &requests) {
                    break;
                }
            }
        }
    }
    let _ = ask(&requests, Command::Quit);
    drop(requests);
    let _ = worker.join();
    status
}

fn new_editor() -> Option<rustyline::Editor<CommandHelper, rustyline::history::MemHistory>> {
    let config = rustyline::Config::builder().auto_add_history(true).build();
    let mut editor =
        rustyline::Editor::<CommandHelper, _>::with_history(config, rustyline::history::MemHistory::new()).ok()?;
    editor.set_helper(Some(CommandHelper));
    Some(editor)
}

fn interactive_loop(
    mut editor: rustyline::Editor<CommandHelper, rustyline::history::MemHistory>,
    requests: &mpsc::UnboundedSender<Request>,
) {
    println!("midge shell: type `help` for commands, Tab completes, Ctrl-D leaves.");
    loop {
        match editor.readline("midge> ") {
            Ok(line) => {
                if !execute(&line, requests) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
}

/// Runs one line; false when the shell should end.
fn execute(line: &str, requests: &mpsc::UnboundedSender<Request>) -> bool {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return true;
    }
    let words = match split_words(line) {
        Ok(words) => words,
        Err(message) => {
            println!("{message}");
            return true;
        }
    };
    let parsed = match Line::try_parse_from(&words) {
        Ok(parsed) => parsed,
        Err(error) => {
            let text = error.render().to_string();
            println!("{}", text.trim_end());
            return true;
        }
    };
    let command = match command(parsed) {
        Ok(Some(command)) => command,
        Ok(None) => return true,
        Err(message) => {
            println!("{message}");
            return true;
        }
    };
    let quit = matches!(command, Command::Quit);
    let answer = ask(requests, command);
    if !answer.is_empty() {
        println!("{answer}");
    }
    !quit
}

/// Checks a parsed line; `None` for what the main thread answers itself (help).
fn command(line: Line) -> Result<Option<Command>, String> {
    Ok(Some(match line {
        Line::Connect(args) => Command::Connect(Box::new(resolve(&args, Tool::Pub)?)),
        Line::Disconnect => Command::Disconnect,
        Line::Publish { qos, retain, topic, message } => Command::Publish {
            topic: TopicName::new(&topic)
                .map_err(|_| format!("Error: Invalid publish topic '{topic}', does it contain '+' or '#'?"))?,
            payload: Bytes::from(message.join(" ")),
            qos: parse_qos(&qos)?,
            retain,
        },
        Line::Subscribe { qos, filters } => {
            let options = SubscriptionOptions { qos: parse_qos(&qos)?, ..Default::default() };
            Command::Subscribe {
                subscriptions: filters
                    .iter()
                    .map(|f| Ok(Subscription { filter: filter(f)?, options }))
                    .collect::<Result<_, String>>()?,
            }
        }
        Line::Unsubscribe { filters } => {
            Command::Unsubscribe { filters: filters.iter().map(|f| filter(f)).collect::<Result<_, _>>()? }
        }
        Line::Subscriptions => Command::Subscriptions,
        Line::Status => Command::Status,
        Line::Wait { count, seconds } => Command::Wait { count, timeout: Duration::from_secs(seconds) },
        Line::Help { command } => {
            print_help(command.as_deref());
            return Ok(None);
        }
        Line::Quit => Command::Quit,
    }))
}

fn filter(text: &str) -> Result<TopicFilter, String> {
    TopicFilter::new(text)
        .map_err(|_| format!("Error: Invalid topic filter '{text}', are all '+' and '#' wildcards correct?"))
}

fn print_help(command: Option<&str>) {
    use clap::CommandFactory;
    let mut commands = Line::command();
    match command.and_then(|name| commands.find_subcommand_mut(name)) {
        Some(sub) => println!("{}", sub.render_help().to_string().trim_end()),
        None => {
            println!("Commands:");
            for sub in commands.get_subcommands() {
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                println!("  {:<14} {about}", sub.get_name());
            }
            println!("`help COMMAND` shows a command's options.");
        }
    }
}

/// Sends `command` to the client thread and waits for its answer.
fn ask(requests: &mpsc::UnboundedSender<Request>, command: Command) -> String {
    let (answer, receiver) = std_mpsc::channel();
    if requests.send(Request { command, answer }).is_err() {
        return "Error: the client thread has stopped.".into();
    }
    receiver.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| "Error: no answer from the broker yet.".into())
}

/// Splits a line into words: whitespace separates, '...' and "..." quote, \ escapes.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("Error: unterminated quote.".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// What the client thread keeps.
struct Worker {
    client: Option<Client>,
    /// Where the current connection goes, for `status`.
    broker: String,
    /// Filter → granted code, for `subscriptions`.
    subscriptions: BTreeMap<String, u8>,
    /// Commands waiting for an acknowledgement, by packet id.
    waiting: HashMap<PacketId, (std_mpsc::Sender<String>, Vec<String>)>,
    /// A `wait` in progress: messages still expected, when to give up, whom to answer.
    wait: Option<(u64, Instant, std_mpsc::Sender<String>)>,
    /// Messages received since start.
    received: u64,
    /// Messages received that no `wait` has counted yet.
    unwaited: u64,
    /// Prints incoming messages and connection news.
    print: Box<dyn FnMut(String) + Send>,
}

async fn client_loop(mut requests: mpsc::UnboundedReceiver<Request>, print: Box<dyn FnMut(String) + Send>) {
    let mut worker = Worker {
        client: None,
        broker: String::new(),
        subscriptions: BTreeMap::new(),
        waiting: HashMap::new(),
        wait: None,
        received: 0,
        unwaited: 0,
        print,
    };
    loop {
        let deadline = worker.wait.as_ref().map(|(_, deadline, _)| *deadline);
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                if !worker.handle(request).await {
                    break;
                }
            }
            event = next_event(&mut worker.client) => worker.event(event),
            () = sleep_until(deadline) => {
                if let Some((left, _, answer)) = worker.wait.take() {
                    let _ = answer.send(format!("Timed out waiting: {left} message(s) did not arrive."));
                }
            }
        }
    }
}

async fn next_event(client: &mut Option<Client>) -> Result<Event, Error> {
    match client {
        Some(client) => client.poll().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// Runs a command; false after `quit`.
    async fn handle(&mut self, request: Request) -> bool {
        let Request { command, answer } = request;
        let reply = |text: String| {
            let _ = answer.send(text);
        };
        match command {
            Command::Connect(connection) => {
                if self.client.as_ref().is_some_and(Client::is_connected) {
                    reply("Already connected; `disconnect` first.".into());
                    return true;
                }
                let options = connection.options;
                let broker = format!("{}:{}", options.server.host, options.server.port);
                match Client::connect(options).await {
                    Ok(client) => {
                        let connack = client.connack();
                        let id = connack
                            .properties
                            .assigned_client_identifier
                            .as_ref()
                            .map(|id| id.to_string())
                            .unwrap_or_else(|| client.options().client_id.clone());
                        reply(format!(
                            "Connected to {broker} (client id '{id}', session present: {}).",
                            connack.session_present
                        ));
                        if !connack.session_present {
                            self.subscriptions.clear();
                        }
                        self.broker = broker;
                        self.client = Some(client);
                    }
                    Err(error) => reply(describe(&error, Tool::Sub).0),
                }
            }
            Command::Disconnect => match self.client.take() {
                Some(mut client) => {
                    let _ = client.disconnect().await;
                    self.fail_waiting("disconnected");
                    reply("Disconnected.".into());
                }
                None => reply("Not connected.".into()),
            },
            Command::Publish { topic, payload, qos, retain } => {
                let Some(client) = self.connected(&answer) else { return true };
                match client.publish(&topic, payload, qos, retain) {
                    Ok(Some(packet_id)) => {
                        self.waiting.insert(packet_id, (answer, Vec::new()));
                    }
                    Ok(None) => match client.flush().await {
                        Ok(()) => reply("Published.".into()),
                        Err(error) => reply(describe(&error, Tool::Pub).0),
                    },
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Subscribe { subscriptions } => {
                let Some(client) = self.connected(&answer) else { return true };
                let filters = subscriptions.iter().map(|s| s.filter.to_string()).collect();
                match client.subscribe(subscriptions, Properties::default()) {
                    Ok(packet_id) => {
                        self.waiting.insert(packet_id, (answer, filters));
                    }
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Unsubscribe { filters } => {
                let Some(client) = self.connected(&answer) else { return true };
                let names = filters.iter().map(|f| f.to_string()).collect();
                match client.unsubscribe(filters, Properties::default()) {
                    Ok(packet_id) => {
                        self.waiting.insert(packet_id, (answer, names));
                    }
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Subscriptions => {
                if self.subscriptions.is_empty() {
                    reply("No subscriptions.".into());
                } else {
                    let lines: Vec<String> =
                        self.subscriptions.iter().map(|(filter, qos)| format!("{filter} (QoS {qos})")).collect();
                    reply(lines.join("\n"));
                }
            }
            Command::Status => reply(self.status()),
            Command::Wait { count, timeout } => {
                if self.unwaited >= count {
                    self.unwaited -= count;
                    reply("Received.".into());
                } else {
                    self.wait = Some((count - self.unwaited, Instant::now() + timeout, answer));
                    self.unwaited = 0;
                }
            }
            Command::Quit => {
                if let Some(mut client) = self.client.take() {
                    let _ = client.disconnect().await;
                }
                reply(String::new());
                return false;
            }
        }
        true
    }

    fn connected(&mut self, answer: &std_mpsc::Sender<String>) -> Option<&mut Client> {
        if self.client.is_none() {
            let _ = answer.send("Not connected; use `connect` first.".into());
        }
        self.client.as_mut()
    }

    fn status(&self) -> String {
        let Some(client) = &self.client else {
            return format!("Not connected. {} message(s) received.", self.received);
        };
        let options = client.options();
        let version = match options.version {
            midge_client::codec::ProtocolVersion::V31 => "3.1",
            midge_client::codec::ProtocolVersion::V311 => "3.1.1",
            midge_client::codec::ProtocolVersion::V5 => "5.0",
        };
        format!(
            "Connected to {} with MQTT {version}, client id '{}', keep alive {} s, {} session.\n\
             {} subscription(s), {} message(s) received, {} unacknowledged.",
            self.broker,
            options.client_id,
            options.keep_alive,
            if options.clean_start { "clean" } else { "persistent" },
            self.subscriptions.len(),
            self.received,
            client.unacknowledged()
        )
    }

    fn event(&mut self, event: Result<Event, Error>) {
        match event {
            Ok(Event::Message(message)) => {
                self.received += 1;
                let payload = String::from_utf8_lossy(&message.payload);
                let flags = match (message.qos, message.retain) {
                    (QoS::AtMostOnce, false) => String::new(),
                    (qos, retain) => format!(" [qos {}{}]", qos.as_u8(), if retain { ", retained" } else { "" }),
                };
                (self.print)(format!("{} {payload}{flags}", message.topic));
                match self.wait.take() {
                    Some((left, deadline, answer)) if left > 1 => self.wait = Some((left - 1, deadline, answer)),
                    Some((_, _, answer)) => {
                        let _ = answer.send("Received.".into());
                    }
                    None => self.unwaited += 1,
                }
            }
            Ok(Event::Published { packet_id, reason, .. }) => {
                if let Some((answer, _)) = self.waiting.remove(&packet_id) {
                    let text = if reason.is_error() {
                        format!("Publish {packet_id} failed: {reason}.")
                    } else {
                        format!("Published (mid {packet_id}).")
                    };
                    let _ = answer.send(text);
                }
            }
            Ok(Event::Subscribed(suback)) => {
                if let Some((answer, filters)) = self.waiting.remove(&suback.packet_id) {
                    let mut parts = Vec::new();
                    for (filter, code) in filters.into_iter().zip(&suback.reasons) {
                        if code.is_error() {
                            parts.push(format!("{filter} refused ({code})"));
                        } else {
                            parts.push(format!("{filter} (QoS {})", code.0));
                            self.subscriptions.insert(filter, code.0);
                        }
                    }
                    let _ = answer.send(format!("Subscribed: {}.", parts.join(", ")));
                }
            }
            Ok(Event::Unsubscribed(unsuback)) => {
                if let Some((answer, filters)) = self.waiting.remove(&unsuback.packet_id) {
                    for filter in &filters {
                        self.subscriptions.remove(filter);
                    }
                    let _ = answer.send(format!("Unsubscribed: {}.", filters.join(", ")));
                }
            }
            Ok(Event::Reconnected { .. }) => {}
            Err(error) => {
                self.client = None;
                (self.print)(describe(&error, Tool::Sub).0);
                self.fail_waiting("the connection was lost");
            }
        }
    }

    /// Answers every command still waiting for the broker.
    fn fail_waiting(&mut self, why: &str) {
        for (_, (answer, _)) in self.waiting.drain() {
            let _ = answer.send(format!("Error: {why} before the broker answered."));
        }
        if let Some((_, _, answer)) = self.wait.take() {
            let _ = answer.send(format!("Error: {why}."));
        }
    }
}

/// Completes command names at the start of the line.
struct CommandHelper;

impl Completer for CommandHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        if typed.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let candidates = COMMANDS
            .iter()
            .filter(|name| name.starts_with(typed))
            .map(|name| Pair { display: name.to_string(), replacement: format!("{name} ") })
            .collect();
        Ok((0, candidates))
    }
}

impl Hinter for CommandHelper {
    type Hint = String;
}

impl Highlighter for CommandHelper {}

impl Validator for CommandHelper {}

impl Helper for CommandHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"publish a/b "hello world" it\'s"#).unwrap(),
            ["publish", "a/b", "hello world", "it's"]
        );
        assert_eq!(split_words("  sub  -q 1 'a b' ").unwrap(), ["sub", "-q", "1", "a b"]);
        assert!(split_words("pub 'open").is_err());
    }

    #[test]
    fn lines_parse_into_commands() {
        let line = Line::try_parse_from(["pub", "-q", "1", "-r", "t", "hello", "there"]).unwrap();
        let Some(Command::Publish { qos, retain, payload, .. }) = command(line).unwrap() else { panic!() };
        assert_eq!((qos, retain, &payload[..]), (QoS::AtLeastOnce, true, &b"hello there"[..]));
        assert!(Line::try_parse_from(["subscribe"]).is_err());
        assert!(Line::try_parse_from(["connect", "-h", "example", "-p", "1884", "-V", "5"]).is_ok());
    }
}
