//! `[log]`: where the broker's log goes and how its lines read. The binary builds the
//! subscriber from it (`midge serve`); this module only parses and checks.

use std::path::PathBuf;

use serde::Deserialize;

/// Logging settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: "info", "debug", "midge_server=debug,info", ... `RUST_LOG` overrides.
    /// Checked by [`check_log_filter`](super::check_log_filter).
    pub level: String,
    /// Where every line goes, each destination once; empty: nowhere (mosquitto's `log_dest
    /// none`). Several at once, as mosquitto's `log_dest` lines add up.
    pub destinations: Vec<LogDestination>,
    /// The log file, for the `"file"` destination: opened to append, created if missing, and
    /// opened again at the same path on SIGHUP (after logrotate has renamed it).
    pub file: Option<PathBuf>,
    /// The local syslog daemon's datagram socket, for the `"syslog"` destination.
    pub syslog_socket: PathBuf,
    /// How a line reads.
    pub format: LogFormat,
    /// Whether a line starts with the time (mosquitto's `log_timestamp`). Syslog lines carry
    /// the time in their header whatever this says.
    pub timestamps: bool,
    /// The time as a strftime format in local time (mosquitto's `log_timestamp_format`, e.g.
    /// "%Y-%m-%dT%H:%M:%S"); none: RFC 3339 in UTC.
    pub timestamp_format: Option<String>,
    /// Whether clients' connects and disconnects are logged (mosquitto's
    /// `connection_messages`): the events of target [`CONNECTION_MESSAGES_TARGET`].
    pub connection_messages: bool,
}

/// The `tracing` target of the mosquitto-style connect and disconnect lines, which
/// `connection_messages = false` turns off.
pub const CONNECTION_MESSAGES_TARGET: &str = "midge_server::conn::log";

/// The default syslog socket, where syslog(3) writes.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            destinations: vec![LogDestination::Stderr],
            file: None,
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            format: LogFormat::Text,
            timestamps: true,
            timestamp_format: None,
            connection_messages: true,
        }
    }
}

/// One place log lines go.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogDestination {
    /// The process's standard error (the default; systemd's journal reads it).
    Stderr,
    /// The process's standard output.
    Stdout,
    /// The file `[log] file` names.
    File,
    /// The local syslog daemon, facility daemon (RFC 3164 over `[log] syslog_socket`).
    Syslog,
    /// The broker's own topics, as mosquitto's `log_dest topic`: each line published at QoS 0,
    /// not retained, to `$SYS/broker/log/E`, `W`, `N` (connection messages), `I` or `D` by its
    /// level, where the ACL decides who reads it.
    Topic,
}

/// How a log line reads.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `TIME LEVEL target: message key=value ...`, one line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, `target`,
    /// and its spans.
    Json,
}

impl LogConfig {
    /// Checks the keys together: a `"file"` destination and a `file` path go as a pair, and no
    /// destination is listed twice. The message names the key.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (index, destination) in self.destinations.iter().enumerate() {
            if self.destinations[..index].contains(destination) {
                return Err(format!("destinations: {destination:?} is listed twice"));
            }
        }
        let to_file = self.destinations.contains(&LogDestination::File);
        match (&self.file, to_file) {
            (None, true) => Err("destinations has \"file\" but no `file = \"PATH\"` says which".to_owned()),
            (Some(_), false) => Err("file is set but destinations does not list \"file\"".to_owned()),
            (Some(path), true) if path.as_os_str().is_empty() => Err("file is empty".to_owned()),
            _ if self.timestamp_format.as_deref().is_some_and(str::is_empty) => {
                Err("timestamp_format is empty: leave it out for RFC 3339".to_owned())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ServerConfig;

    fn log(text: &str) -> Result<LogConfig, String> {
        ServerConfig::parse(&format!("[log]\n{text}"), Path::new("l.toml"))
            .map(|config| config.log)
            .map_err(|err| crate::test_support::report(&err))
    }

    #[test]
    fn the_defaults_are_stderr_text_with_timestamps_and_connection_messages() {
        let config = log("").unwrap();
        assert_eq!(config, LogConfig::default());
        assert_eq!(config.destinations, [LogDestination::Stderr]);
        assert_eq!(config.syslog_socket, Path::new("/dev/log"));
        assert!(config.timestamps && config.connection_messages);
    }

    #[test]
    fn every_key_parses() {
        let config = log(
            "destinations = [\"stdout\", \"file\", \"syslog\", \"stderr\", \"topic\"]\nfile = \"/var/log/midge.log\"\n\
             syslog_socket = \"/run/log\"\nformat = \"json\"\ntimestamps = false\n\
             timestamp_format = \"%Y-%m-%d %H:%M:%S\"\nconnection_messages = false\n",
        )
        .unwrap();
        assert_eq!(
            config.destinations,
            [
                LogDestination::Stdout,
                LogDestination::File,
                LogDestination::Syslog,
                LogDestination::Stderr,
                LogDestination::Topic
            ]
        );
        assert_eq!(config.file.as_deref(), Some(Path::new("/var/log/midge.log")));
        assert_eq!(config.syslog_socket, Path::new("/run/log"));
        assert_eq!(config.format, LogFormat::Json);
        assert!(!config.timestamps && !config.connection_messages);
        assert_eq!(config.timestamp_format.as_deref(), Some("%Y-%m-%d %H:%M:%S"));
        assert!(log("destinations = []\n").unwrap().destinations.is_empty());
    }

    #[test]
    fn file_and_destinations_go_together() {
        let err = log("destinations = [\"file\"]\n").unwrap_err();
        assert!(err.contains("[log]") && err.contains("no `file = \"PATH\"`"), "{err}");
        let err = log("file = \"/tmp/x.log\"\n").unwrap_err();
        assert!(err.contains("does not list \"file\""), "{err}");
        let err = log("destinations = [\"stderr\", \"stderr\"]\n").unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
        assert!(log("destinations = [\"file\"]\nfile = \"/tmp/x.log\"\n").is_ok());
    }

    #[test]
    fn unknown_destinations_and_formats_are_errors() {
        let err = log("destinations = [\"carrier-pigeon\"]\n").unwrap_err();
        assert!(err.contains("unknown variant") && err.contains("carrier-pigeon"), "{err}");
        let err = log("format = \"xml\"\n").unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        assert!(log("timestamp_format = \"\"\n").unwrap_err().contains("timestamp_format is empty"));
    }
}
