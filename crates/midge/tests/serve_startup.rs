//! `midge serve` at start: what it refuses and how it says so (one clear message, a non-zero
//! exit), and what it does before serving.

mod interop_common;
mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use interop_common::run_bounded;
use support::{midge_bin, TestBroker};

/// How long a `midge serve` that must fail at start may take.
const FAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// `midge serve ARGS` with the default log filter (no RUST_LOG from the test's environment).
fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(midge_bin());
    command.arg("serve").args(args).env_remove("RUST_LOG");
    command
}

#[test]
fn a_taken_port_is_reported_once_with_the_os_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (status, output) = run_bounded(serve(&["-p", &port, "--data-dir", data.to_str().unwrap()]), FAIL_TIMEOUT);
    assert!(!status.success(), "started on a taken port: {output}");
    assert!(output.contains(&format!("127.0.0.1:{port}")), "the error names the address: {output}");
    let os_text = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    assert_eq!(output.matches(&os_text).count(), 1, "the OS error once: {output}");
}

/// Every listener binds before the store is opened: a start that fails on a taken port leaves
/// no store directory behind.
#[test]
fn a_taken_port_fails_the_start_before_the_store_directory_is_created() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let (status, output) = run_bounded(serve(&["-p", &port, "--data-dir", data.to_str().unwrap()]), FAIL_TIMEOUT);
    assert!(!status.success(), "started on a taken port: {output}");
    assert!(!data.exists(), "{} was created before the bind failed: {output}", data.display());
}

#[test]
fn an_unknown_log_level_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("midge.toml");
    std::fs::write(
        &config,
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[log]\nlevel = \"loud\"\n\n[store]\npersistence = false\n",
    )
    .unwrap();
    let (status, output) = run_bounded(serve(&["-c", config.to_str().unwrap()]), FAIL_TIMEOUT);
    assert!(!status.success(), "started with level = \"loud\": {output}");
    assert!(output.contains(&config.display().to_string()), "the error names the file: {output}");
    assert!(output.contains("level") && output.contains("loud"), "the error names the key: {output}");
}

/// fjall and lsm_tree log about eight INFO lines at every start; at the default level they are
/// held back (WARN and above still show).
#[test]
fn the_storage_engine_does_not_log_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = TestBroker::start_midge_args(&["-p", "0", "--data-dir", data.to_str().unwrap()]);
    broker.wait_for_log("store opened", Duration::from_secs(10));
    let log = broker.log();
    // `2026-01-01T00:00:00Z  INFO fjall::db: Creating database at ...`: the third field is
    // the target.
    let engine = |line: &&String| {
        let target = line.split_whitespace().nth(2).unwrap_or_default();
        target.starts_with("fjall") || target.starts_with("lsm_tree")
    };
    let engine_lines: Vec<_> = log.iter().filter(engine).collect();
    assert!(engine_lines.is_empty(), "storage engine lines at the default level: {engine_lines:#?}");
    assert!(broker.terminate().success());
}

/// A `bind` name that does not resolve stops the start with an error naming the listener
/// (`.invalid` never resolves: RFC 6761).
#[test]
fn a_bind_name_that_does_not_resolve_is_reported_with_its_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("midge.toml");
    let text = "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[listener]]\nbind = \"no-such-host.invalid:1884\"\n\n\
                [store]\npersistence = false\n";
    std::fs::write(&config, text).unwrap();
    let (status, output) = run_bounded(serve(&["-c", config.to_str().unwrap()]), FAIL_TIMEOUT);
    assert!(!status.success(), "started with a bind that does not resolve: {output}");
    assert!(
        output.contains("listener 2 (bind = \"no-such-host.invalid:1884\"): cannot resolve the host name: "),
        "{output}"
    );
}
