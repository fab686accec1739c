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
//!
//! # Layout
//! - this file: the main thread (arguments, the editor or the pipe, asking the client thread);
//! - `parse`: the command line typed at the prompt, completion, help;
//! - `worker`: the client thread that owns the connection.

mod parse;
mod worker;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use clap::{Args, Parser};
use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter;
use tokio::sync::mpsc;

use crate::client::{resolve, ConnectArgs, Tool};
use parse::{command, split_words, CommandHelper, Line};
use worker::{client_loop, Command, Request};

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
/// Sends `command` to the client thread and waits for its answer.
fn ask(requests: &mpsc::UnboundedSender<Request>, command: Command) -> String {
    let (answer, receiver) = std_mpsc::channel();
    if requests.send(Request { command, answer }).is_err() {
        return "Error: the client thread has stopped.".into();
    }
    receiver.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| "Error: no answer from the broker yet.".into())
}
