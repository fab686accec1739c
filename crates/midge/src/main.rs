//! `midge`: the MQTT broker and its command-line tools.
//!
//! # Layout
//! - `serve`: the broker (see [`serve`]).
//!
//! Errors are reported at this edge with `anyhow`: a message and a non-zero exit.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Midge, an MQTT broker for MQTT 3.1, 3.1.1 and 5.0.
#[derive(Debug, Parser)]
#[command(name = "midge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("midge: {error:#}");
            ExitCode::FAILURE
        }
    }
}
