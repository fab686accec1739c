//! The broker's log, as `[log]` asks: one `tracing` subscriber whose filter is `[log] level`
//! (or `RUST_LOG`), writing every line to each destination (stderr, stdout, a file, syslog) in
//! text or JSON.
//!
//! # Layout
//! - [`Logging::init`] builds and installs the subscriber; [`Logging::reopen`] opens the log
//!   file again (SIGHUP, after logrotate has renamed it); [`Logging::control`] is what a reload
//!   of the config swaps the filter and the destinations with (`tracing_subscriber::reload`
//!   layers), after it has opened the new ones.
//! - [`LogFile`]: the file destination, a `Mutex<File>` swapped on reopen.
//! - [`Syslog`]: the syslog destination, one RFC 3164 datagram per line.
//! - The topic destination, `$SYS/broker/log/...`, is [`crate::log_topic`]'s.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{bail, Context};
use midge_server::config::{LogConfig, LogDestination, LogFormat, CONNECTION_MESSAGES_TARGET};
use midge_server::LogControl;

use crate::log_topic::LogTopics;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// The subscriber's type below the destinations' layers: the registry with the filter.
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// The destinations' layers, one per destination.
type Destinations = Vec<Box<dyn Layer<Filtered> + Send + Sync>>;

/// The installed log: what SIGHUP needs to reopen the file, and what a reload swaps.
pub struct Logging {
    control: Arc<LogReload>,
}

/// The live parts of the log: its filter and its destinations, each behind a
/// `tracing_subscriber::reload` layer, and the file destination to reopen.
struct LogReload {
    filter: reload::Handle<EnvFilter, Registry>,
    destinations: reload::Handle<Destinations, Filtered>,
    /// `-v`: level debug whatever `[log] level` says.
    verbose: bool,
    /// The file destination, if `[log] destinations` has it, and whether stderr is a
    /// destination too: if not, a file that cannot be reopened is reported there as well,
    /// where an operator running the broker by hand sees it.
    file: Arc<Mutex<(Option<LogFile>, bool)>>,
    /// Where the `"topic"` destination's lines go, whichever layer writes them: one sink for
    /// the process, since the broker it publishes to is started once.
    topics: Arc<LogTopics>,
}

impl Logging {
    /// Opens the destinations and installs the subscriber. `verbose` (`-v`) means level debug.
    /// A log file that cannot be opened, a syslog socket that cannot be reached or an invalid
    /// filter or timestamp format is an error: the broker does not start without its log.
    pub fn init(config: &LogConfig, verbose: bool) -> anyhow::Result<Self> {
        let (filter, filter_handle) = reload::Layer::new(filter(config, verbose)?);
        let topics = Arc::new(LogTopics::default());
        let (layers, file) = destinations(config, &topics)?;
        let (layers, destinations) = reload::Layer::new(layers);
        tracing_subscriber::registry().with(filter).with(layers).init();
        let to_stderr = config.destinations.contains(&LogDestination::Stderr);
        let file = Arc::new(Mutex::new((file, to_stderr)));
        let control = LogReload { filter: filter_handle, destinations, verbose, file, topics };
        Ok(Self { control: Arc::new(control) })
    }

    /// Starts publishing the `"topic"` destination's lines to `broker`, once it has started
    /// (on the current tokio runtime). Until then, and without that destination, none are.
    pub fn publish_to(&self, broker: Arc<midge_broker::Broker>) {
        self.control.topics.start(broker);
    }

    /// What a reload of the config applies `[log]` with.
    pub fn control(&self) -> Arc<dyn LogControl> {
        Arc::clone(&self.control) as Arc<dyn LogControl>
    }

    /// Opens the log file again at its path, as logrotate expects of a SIGHUP after it has
    /// renamed the file: lines from now on go to a new file there. If that fails, lines keep
    /// going to the old file and the error is logged (and written to stderr).
    pub fn reopen(&self) {
        let (file, to_stderr) = {
            let guard = self.control.file.lock().unwrap_or_else(PoisonError::into_inner);
            (guard.0.clone(), guard.1)
        };
        let Some(file) = file else { return };
        match file.reopen() {
            Ok(()) => tracing::info!(path = %file.path.display(), "log file reopened"),
            Err(err) => {
                let message =
                    format!("cannot reopen the log file {}: {err}; still writing to the old file", file.path.display());
                tracing::error!("{message}");
                if !to_stderr {
                    eprintln!("midge: {message}");
                }
            }
        }
    }
}

impl std::fmt::Debug for LogReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReload").field("verbose", &self.verbose).finish_non_exhaustive()
    }
}

impl LogControl for LogReload {
    /// Builds the filter and opens the destinations of `config` (a log file, the syslog
    /// socket); the returned closure swaps them in. `-v` and `RUST_LOG` hold as at the start.
    fn prepare(&self, config: &LogConfig) -> Result<Box<dyn FnOnce() + Send>, String> {
        let filter = filter(config, self.verbose).map_err(|error| format!("{error:#}"))?;
        let (layers, file) = destinations(config, &self.topics).map_err(|error| format!("{error:#}"))?;
        let to_stderr = config.destinations.contains(&LogDestination::Stderr);
        let (filter_handle, destinations_handle) = (self.filter.clone(), self.destinations.clone());
        let slot = Arc::clone(&self.file);
        Ok(Box::new(move || {
            // Errors only if the subscriber is gone, when there is nothing to log to anyway.
            let _ = destinations_handle.reload(layers);
            let _ = filter_handle.reload(filter);
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = (file, to_stderr);
        }))
    }
}

/// The filter for `config`: `RUST_LOG` if set, else `[log] level` (debug with `verbose`), the
/// storage engine held at WARN, and connection messages off when `connection_messages = false`.
fn filter(config: &LogConfig, verbose: bool) -> anyhow::Result<EnvFilter> {
    let level = if verbose { "debug" } else { config.level.as_str() };
    let directives = quiet_storage_engine(level);
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&directives))
        .with_context(|| format!("invalid log level {level:?}"))?;
    if !config.connection_messages {
        // `connection_messages = false` holds even under RUST_LOG.
        let off = format!("{CONNECTION_MESSAGES_TARGET}=off");
        filter = filter.add_directive(off.parse().context("the connection messages' directive")?);
    }
    Ok(filter)
}

/// One layer per destination of `config`, each opened (the file, the syslog socket), and the
/// file destination if there is one. The topic destination writes to `topics`.
fn destinations(config: &LogConfig, topics: &Arc<LogTopics>) -> anyhow::Result<(Destinations, Option<LogFile>)> {
    let timer = match &config.timestamp_format {
        Some(format) => Timer::Strftime(check_strftime(format)?),
        None => Timer::Rfc3339,
    };
    let timer = config.timestamps.then_some(timer);
    let mut file = None;
    let mut layers = Vec::new();
    for destination in &config.destinations {
        let layer = match destination {
            LogDestination::Stderr => {
                // Colours only on a terminal: log files and test harnesses read plain text.
                let ansi = io::stderr().is_terminal();
                layer(config.format, io::stderr, ansi, timer.clone(), true)
            }
            LogDestination::Stdout => layer(config.format, io::stdout, io::stdout().is_terminal(), timer.clone(), true),
            LogDestination::File => {
                // Checked with the config: "file" comes with its path.
                let Some(path) = &config.file else { bail!("[log] destinations has \"file\" but no file") };
                let opened = LogFile::open(path)?;
                file = Some(opened.clone());
                layer(config.format, opened, false, timer.clone(), true)
            }
            // The syslog header carries the time, and the level as the severity.
            LogDestination::Syslog => layer(config.format, Syslog::connect(&config.syslog_socket)?, false, None, false),
            // The topic names the level, as mosquitto's do; the time as the other destinations.
            LogDestination::Topic => layer(config.format, topics.writer(), false, timer.clone(), false),
        };
        layers.push(layer);
    }
    Ok((layers, file))
}

/// What `midge serve --check` can tell of `[log]` without opening anything: the timestamp
/// format.
pub fn check(config: &LogConfig) -> anyhow::Result<()> {
    config.timestamp_format.as_deref().map(check_strftime).transpose()?;
    Ok(())
}

/// One destination's formatting layer: the format, the time (or none), colours or not, the
/// level or not.
fn layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
    timer: Option<Timer>,
    level: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).with_level(level);
    match (format, timer) {
        (LogFormat::Text, Some(timer)) => base.with_timer(timer).boxed(),
        (LogFormat::Text, None) => base.without_time().boxed(),
        // Flattened: `message` and the event's fields at the top, beside `level` and `target`.
        (LogFormat::Json, Some(timer)) => base.json().flatten_event(true).with_timer(timer).boxed(),
        (LogFormat::Json, None) => base.json().flatten_event(true).without_time().boxed(),
    }
}

/// Targets of the storage engine (fjall and its LSM tree), which log at INFO what an operator
/// does not need: "Creating database", a "Finished ingestion writer" per table, ... about eight
/// lines at every start.
const STORAGE_ENGINE_TARGETS: [&str; 2] = ["fjall", "lsm_tree"];

/// The log filter for `level` with the storage engine's targets held at WARN, unless `level`
/// names them itself (`RUST_LOG`, when set, replaces the whole filter instead).
fn quiet_storage_engine(level: &str) -> String {
    let mut filter = level.to_owned();
    for target in STORAGE_ENGINE_TARGETS {
        if !level.split(',').any(|directive| directive.trim().starts_with(target)) {
            filter.push_str(&format!(",{target}=warn"));
        }
    }
    filter
}

/// When a line says it was written.
#[derive(Debug, Clone)]
enum Timer {
    /// RFC 3339 in UTC, to the microsecond (`tracing`'s own).
    Rfc3339,
    /// A strftime format in local time, as mosquitto's `log_timestamp_format`.
    Strftime(String),
}

impl FormatTime for Timer {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        match self {
            Self::Rfc3339 => SystemTime.format_time(w),
            Self::Strftime(format) => write!(w, "{}", chrono::Local::now().format(format)),
        }
    }
}

/// `format` if chrono can write it: an unknown `%` specifier is an error at start rather than a
/// line that cannot be formatted later.
fn check_strftime(format: &str) -> anyhow::Result<String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        bail!("[log] timestamp_format {format:?} is not a strftime format Midge can write");
    }
    Ok(format.to_owned())
}

/// The log file: opened to append, and swapped for a newly opened one on SIGHUP.
///
/// A `Mutex<File>` of our own rather than `tracing-appender`'s non-blocking writer, which
/// rotates by time but cannot be told to reopen its file. A line is one `write` of a few
/// hundred bytes to the page cache, as a line to stderr is today; the lock is held for that
/// write only, and the reopen holds it just long enough to swap the handle (the new file is
/// opened before the lock is taken).
#[derive(Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file = open_append(path).with_context(|| format!("cannot open the log file {}", path.display()))?;
        Ok(Self { path: path.to_owned(), file: Arc::new(Mutex::new(file)) })
    }

    fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = file;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        // A panic while writing a line leaves the file as usable as before.
        LogFileLine(self.file.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The log file, locked for one line.
struct LogFileLine<'a>(MutexGuard<'a, File>);

impl Write for LogFileLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The local syslog daemon: each line one datagram to its socket (`/dev/log`), in the format
/// syslog(3) sends there, RFC 3164's `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG` without the HOSTNAME
/// field, which a local daemon fills in (journald and rsyslog would take a host name there for
/// the tag). Facility daemon; the level maps to the severity.
///
/// The socket does not block: a daemon too slow to take a line loses it rather than stalling
/// the thread that logs it, a broker worker. No crate: the format is one line of code.
struct Syslog {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
    /// `midge[PID]: `, the tag and the process id.
    tag: String,
}

/// RFC 3164's facility 3, system daemons, shifted into the priority value.
const FACILITY_DAEMON: u8 = 3 << 3;

impl Syslog {
    fn connect(path: &Path) -> anyhow::Result<Self> {
        let socket = Self::socket(path).with_context(|| {
            format!(
                "cannot reach the syslog socket {} (is a syslog daemon running? [log] syslog_socket names another)",
                path.display()
            )
        })?;
        let tag = format!("midge[{}]: ", std::process::id());
        Ok(Self { path: path.to_owned(), socket: Mutex::new(socket), tag })
    }

    fn socket(path: &Path) -> io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// Sends one line at `level`. A daemon that restarted has a new socket at the path: a send
    /// that fails for another reason than a full queue connects again and tries once more.
    fn send(&self, level: Level, message: &[u8]) {
        let datagram = [header(level, &self.tag).as_bytes(), message].concat();
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        match socket.send(&datagram) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                if let Ok(new) = Self::socket(&self.path) {
                    *socket = new;
                    let _ = socket.send(&datagram);
                }
            }
        }
    }
}

/// `<PRI>Mmm dd hh:mm:ss TAG`: facility daemon, the severity from the level (error 3, warning 4,
/// info 6, debug 7), the local time with the day padded by a space as RFC 3164 writes it.
fn header(level: Level, tag: &str) -> String {
    let severity = match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    };
    let time = chrono::Local::now().format("%b %e %H:%M:%S");
    format!("<{}>{time} {tag}", FACILITY_DAEMON + severity)
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine { syslog: self, level: Level::INFO, line: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SyslogLine { syslog: self, level: *meta.level(), line: Vec::new() }
    }
}

/// One line for syslog, gathered from the formatter's writes and sent when dropped.
struct SyslogLine<'a> {
    syslog: &'a Syslog,
    level: Level,
    line: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        if !line.is_empty() {
            self.syslog.send(self.level, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_engine_is_held_at_warn_unless_named() {
        assert_eq!(quiet_storage_engine("info"), "info,fjall=warn,lsm_tree=warn");
        assert_eq!(quiet_storage_engine("debug"), "debug,fjall=warn,lsm_tree=warn");
        assert_eq!(quiet_storage_engine("info,fjall=debug"), "info,fjall=debug,lsm_tree=warn");
        assert_eq!(quiet_storage_engine("lsm_tree::tree=trace"), "lsm_tree::tree=trace,fjall=warn");
    }

    #[test]
    fn syslog_priorities_are_facility_daemon_and_the_levels_severity() {
        assert!(header(Level::ERROR, "midge[1]: ").starts_with("<27>"));
        assert!(header(Level::WARN, "t").starts_with("<28>"));
        assert!(header(Level::INFO, "t").starts_with("<30>"));
        assert!(header(Level::DEBUG, "t").starts_with("<31>"));
        assert!(header(Level::TRACE, "t").starts_with("<31>"));
        // "<30>Dec  5 01:02:03 midge[1]: ": the month, a day padded to two, the time, the tag.
        let header = header(Level::INFO, "midge[1]: ");
        assert_eq!(header.len(), "<30>Dec  5 01:02:03 midge[1]: ".len(), "{header:?}");
        assert!(header.ends_with(" midge[1]: "), "{header:?}");
    }

    #[test]
    fn timestamp_formats_are_checked() {
        assert!(check_strftime("%Y-%m-%dT%H:%M:%S").is_ok());
        assert!(check_strftime("%Q").unwrap_err().to_string().contains("timestamp_format"));
    }
}
