//! The commands typed at the prompt: splitting a line into words, parsing them with clap,
//! turning them into work for the client thread, help and tab completion.

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use midge_client::codec::{Subscription, SubscriptionOptions, TopicFilter, TopicName};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::Helper;

use super::worker::Command;
use crate::client::{parse_qos, resolve, ConnectArgs, Tool};

/// The commands typed at the prompt.
#[derive(Debug, Parser)]
#[command(multicall = true, disable_help_subcommand = true)]
pub(super) enum Line {
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
pub(super) const COMMANDS: &[&str] = &[
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

/// Checks a parsed line; `None` for what the main thread answers itself (help).
pub(super) fn command(line: Line) -> Result<Option<Command>, String> {
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

pub(super) fn filter(text: &str) -> Result<TopicFilter, String> {
    TopicFilter::new(text)
        .map_err(|_| format!("Error: Invalid topic filter '{text}', are all '+' and '#' wildcards correct?"))
}

pub(super) fn print_help(command: Option<&str>) {
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

/// Splits a line into words: whitespace separates, '...' and "..." quote, \ escapes.
pub(super) fn split_words(line: &str) -> Result<Vec<String>, String> {
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

/// Completes command names at the start of the line.
pub(super) struct CommandHelper;

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
    use midge_client::codec::QoS;

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
