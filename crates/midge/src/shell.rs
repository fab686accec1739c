//! `midge shell`: placeholder.

use clap::Args;

/// Arguments of `midge shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {}

/// Runs the shell.
pub fn run(_args: ShellArgs) -> u8 {
    0
}
