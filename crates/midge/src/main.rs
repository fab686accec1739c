//! `midge`: the MQTT broker and its command-line tools.
//!
//! # Layout
//! - `serve`: the broker (see [`serve`]).
//! - `logging`: the broker's log destinations and formats, as `[log]` asks (see [`logging`]).
//! - `publish`, `subscribe`: `midge pub` and `midge sub`, mosquitto_pub and mosquitto_sub's
//!   flags, output and exit codes on `midge-client`.
//! - `shell`: `midge shell`, an interactive client.
//! - `client`: what the client tools share (connection flags, `-D`, `-F` output, error table).
//! - `bench`: `midge bench`, a load generator that measures a broker (see docs/benchmarks.md).
//! - `passwd`: `midge passwd`, mosquitto_passwd's flags and behaviour for password files.
//!
//! Errors of `serve` are reported at this edge with `anyhow`: a message and a non-zero exit.
//! The client tools return mosquitto's exit codes themselves.

mod bench;
mod client;
mod log_topic;
mod logging;
mod passwd;
mod publish;
mod serve;
mod shell;
mod subscribe;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: no per-allocation header and size classes instead of
/// 16-byte rounding, which took an idle connection from 2.22 to 2.05 KB at the same message
/// rates (docs/decisions/0004-idle-connection-memory.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (its `malloc_conf`; the `_RJEM_MALLOC_CONF`
/// environment variable still overrides them): a background thread returns freed memory to the
/// system on time (jemalloc's default decay, 10 s) even when the broker then goes quiet.
/// Without it, memory a burst used stays resident until the next allocations happen to purge
/// it: 10,000 offline sessions with 1,000 queued messages each held 51 B of RSS per queued
/// message after the store's write burst, 18 B with it, against 8 B the queues themselves take
/// (docs/decisions/0007-return-memory-after-bursts.md).
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 23] = b"background_thread:true\0";

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
    /// Publish messages (like mosquitto_pub).
    Pub(publish::PubArgs),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(subscribe::SubArgs),
    /// Interactive MQTT client with line editing, history and completion.
    Shell(shell::ShellArgs),
    /// Measure a broker: throughput, loss, latency, connections.
    Bench(bench::BenchArgs),
    /// Manage password files (like mosquitto_passwd).
    Passwd(passwd::PasswdArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_error(error),
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pub(args) => return ExitCode::from(publish::run(args)),
        Command::Sub(args) => return ExitCode::from(subscribe::run(args)),
        Command::Shell(args) => return ExitCode::from(shell::run(args)),
        Command::Bench(args) => return bench::run(args),
        Command::Passwd(args) => return ExitCode::from(passwd::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("midge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a command-line error or the help. `midge pub` and `midge sub` exit with 1 for both,
/// as mosquitto_pub and mosquitto_sub do (even for --help); the rest keep clap's codes.
fn parse_error(error: clap::Error) -> ExitCode {
    let mosquitto_style = matches!(std::env::args().nth(1).as_deref(), Some("pub" | "sub"));
    let _ = error.print();
    if !mosquitto_style {
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1));
    }
    if !matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let tool = std::env::args().nth(1).unwrap_or_default();
        eprintln!("\nUse 'midge {tool} --help' to see usage.");
    }
    ExitCode::from(client::exit::FAILURE)
}

/// Bytes the process has allocated and not freed, as jemalloc counts them (its
/// `stats.allocated`, brought up to date by advancing its `epoch` first): the broker's heap, for
/// `$SYS/broker/heap/current` as mosquitto's memory tracking gives it. `None` if jemalloc
/// cannot say (built without statistics).
fn heap_allocated() -> Option<u64> {
    let epoch: u64 = 1;
    let mut allocated: usize = 0;
    let mut len = std::mem::size_of::<usize>();
    // SAFETY: both names are NUL-terminated; `epoch` is written from a u64 of the length given
    // (nothing read back), and `stats.allocated` (a size_t) is read into a usize of the length
    // given.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"epoch".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&epoch as *const u64).cast_mut().cast(),
            std::mem::size_of::<u64>(),
        );
        tikv_jemalloc_sys::mallctl(
            c"stats.allocated".as_ptr(),
            (&mut allocated as *mut usize).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (code == 0).then_some(allocated as u64)
}

#[cfg(test)]
mod allocator_tests {
    /// The options above reach jemalloc (a misspelt symbol or option would be ignored
    /// silently): its `opt.background_thread` is on.
    #[test]
    fn jemalloc_runs_a_background_thread() {
        let mut enabled = false;
        let mut len = std::mem::size_of::<bool>();
        // SAFETY: the name is NUL-terminated, and `opt.background_thread` is a bool read into
        // a bool of the length given.
        let code = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"opt.background_thread".as_ptr(),
                (&mut enabled as *mut bool).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(code, 0, "mallctl failed");
        assert!(enabled, "jemalloc's background thread is off: MALLOC_CONF did not apply");
    }

    /// jemalloc counts what is allocated: 32 MiB more shows (by half of it at least: tests on
    /// other threads allocate and free meanwhile).
    #[test]
    fn the_heap_is_counted() {
        let before = super::heap_allocated().expect("jemalloc has statistics");
        let block = vec![0u8; 32 << 20];
        let during = super::heap_allocated().expect("jemalloc has statistics");
        assert!(during >= before + (16 << 20), "{before} then {during}");
        drop(block);
    }
}
