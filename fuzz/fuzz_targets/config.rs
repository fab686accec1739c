//! Feeds arbitrary text to the server's config file parser, `ServerConfig::parse` (TOML into
//! the schema, then the `[mqtt]` limits and the `[log]` filter checked), as a file read with
//! `ServerConfig::load` would be given it, and arbitrary bytes as far as they are text (the
//! invalid sequences replaced, as a reader that did not refuse them would). A config that
//! parses then goes through the checks the server makes before it binds: its limits, its
//! listeners, its store settings, and each listener's HTTP and JWT settings that need no file.
//!
//! The same text is then read as a mosquitto.conf (`LoadedConfig::parse` with
//! `ConfigFormat::Mosquitto`), which must give the same guarantees: a config that parses goes
//! through the same checks, and an error names the file and line (`FILE:LINE: directive ...`).
//!
//! Required: no panic; an error is a `ConfigError` whose message names the file; a config that
//! parses gives valid limits.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use midge_server::auth::http::HttpAuthenticator;
use midge_server::auth::jwt::JwtAuthenticator;
use midge_server::config::{check_log_filter, ConfigFormat, LoadedConfig, ServerConfig};

/// The name errors give the file.
const FILE: &str = "fuzz.toml";
/// The name errors give the file read as a mosquitto.conf.
const MOSQUITTO_FILE: &str = "fuzz.conf";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ServerConfig::parse(&text, Path::new(FILE));
    if std::env::var_os("MIDGE_FUZZ_TRACE").is_some() {
        match &parsed {
            Ok(config) => eprintln!("parsed: {} listeners, {:?}", config.listener.len(), config.mqtt.limits()),
            Err(error) => eprintln!("refused: {error}"),
        }
    }
    match parsed {
        Ok(config) => checked(&config),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(FILE), "the error does not name the file: {message}");
        }
    }
    // The same text as a mosquitto.conf. An `include_dir` line reads another file, which its
    // errors name instead; every error names a line and a directive.
    match LoadedConfig::parse(&text, Path::new(MOSQUITTO_FILE), Some(ConfigFormat::Mosquitto)) {
        Ok(loaded) => checked(&loaded.config),
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with(MOSQUITTO_FILE) || text.contains("include_dir"),
                "the error does not name the file: {message}"
            );
            assert!(message.contains(": directive "), "the error names no directive: {message}");
        }
    }
    // The `[log] level` check on its own, since most texts never reach it.
    if let Err(problem) = check_log_filter(&text) {
        assert!(!problem.is_empty(), "an empty reason for a bad log filter");
    }
});

/// What the server does with a config before it binds its listeners, short of reading files
/// and opening sockets.
fn checked(config: &ServerConfig) {
    let limits = config.mqtt.limits().expect("a config that parses has valid limits");
    assert_eq!(limits.validate(), Ok(()));
    let _ = config.store.sync.policy();
    for listener in config.effective_listeners() {
        let _ = listener.bind.port();
        let _ = listener.max_connections.get();
        if let Some(http) = &listener.http_auth {
            // Builds the client and checks its settings; makes no connection.
            if let Err(error) = HttpAuthenticator::new(http) {
                assert!(!error.to_string().is_empty());
            }
        }
        if let Some(jwt) = listener.jwt.as_ref().filter(|jwt| jwt.jwks_file.is_none()) {
            if let Err(error) = JwtAuthenticator::load(jwt) {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}
