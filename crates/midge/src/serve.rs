//! `midge serve`: loads the config, sets up logging ([`crate::logging`]), runs the broker until
//! SIGINT or SIGTERM. SIGHUP reopens the log file, then reads the config file again and applies
//! it (`midge_server::Reloader`: listeners added, changed and removed, their password, ACL, JWT
//! and TLS files read again, `[log]` and `[sys]` live; what takes a restart is logged as such).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use midge_server::auth::ListenerSecurity;
use midge_server::config::{ConfigFormat, ConfigSource, LoadedConfig, NoteKind};
use midge_server::tls::TlsListener;
use midge_server::{ReloadOptions, Reloader, Server};

use crate::logging::Logging;

/// Arguments of `midge serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    midge serve                    listen on 127.0.0.1:1883, anonymous clients allowed\n  \
    midge serve -p 1884            the same on port 1884\n  \
    midge serve -c /etc/midge.toml use a config file (see docs/configuration.md)\n  \
    midge serve -c /etc/mosquitto/mosquitto.conf   a mosquitto.conf (docs/migrating-from-mosquitto.md)\n  \
    midge serve --check -c FILE    check a config file and the files it names, then exit")]
pub struct ServeArgs {
    /// Config file: TOML, or a mosquitto.conf (told apart by its syntax; see --format). Without
    /// one, Midge listens on 127.0.0.1:1883 and allows anonymous clients, like mosquitto 2
    /// without a config.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The config file's format, instead of telling it from the file's syntax.
    #[arg(long = "format", value_name = "FORMAT", requires = "config")]
    format: Option<Format>,
    /// Check the config file and the files it names (password and ACL files, certificates),
    /// print "FILE: OK" or the error, and exit (0 or 1) without listening.
    #[arg(long = "check", requires = "config")]
    check: bool,
    /// Port of the default local listener (like mosquitto's -p). Not allowed together with a
    /// config file that defines listeners.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Option<u16>,
    /// Directory of the durable store (overrides `[store] data_dir`; default ./midge-data).
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log at debug level (overrides the config's [log] level; RUST_LOG overrides both).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
}

/// A config file format, as `--format` names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Midge's TOML (docs/configuration.md).
    Toml,
    /// mosquitto.conf (docs/migrating-from-mosquitto.md).
    Mosquitto,
}

/// Runs the broker.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let format = args.format.map(|format| match format {
        Format::Toml => ConfigFormat::Toml,
        Format::Mosquitto => ConfigFormat::Mosquitto,
    });
    if args.check {
        // Checked as written: -p and --data-dir change what runs, not whether the file is valid.
        let path = args.config.unwrap_or_default();
        return check(&path, &LoadedConfig::load(&path, format)?);
    }
    let mut source = ConfigSource::new(args.config, format).with_port(args.port).with_data_dir(args.data_dir);
    let LoadedConfig { config, notes, .. } = source.load()?;
    let logging = Logging::init(&config.log, args.verbose)?;
    // What a mosquitto.conf asked for that Midge does otherwise, or not yet: once, at start.
    for note in &notes {
        match note.kind {
            NoteKind::Differs => tracing::info!("{note}"),
            NoteKind::NotApplied => tracing::warn!("{note}"),
        }
    }

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Handlers first: a supervisor that sends SIGTERM as soon as the listener is logged must
        // find them installed, not the default action (which kills without a clean shutdown).
        let signals = Signals::install().context("cannot install the SIGINT/SIGTERM/SIGHUP handlers")?;
        midge_server::sys::set_heap_probe(crate::heap_allocated);
        let options = ReloadOptions { source: Some(source), log: Some(logging.control()) };
        let server = Server::start_with(config, options).await?;
        logging.publish_to(std::sync::Arc::clone(server.broker()));
        let reloader = server.reloader();
        server.run_until(signals.received(&logging, reloader)).await;
        anyhow::Ok(())
    })
}

/// `midge serve --check`: the config loaded (by the caller), then every file its listeners name
/// read as the broker would read it when binding them, and every bridge's TLS files as the
/// bridge would read them; nothing is bound, connected or created.
fn check(path: &std::path::Path, loaded: &LoadedConfig) -> anyhow::Result<()> {
    for note in &loaded.notes {
        println!("{note}");
    }
    crate::logging::check(&loaded.config.log).with_context(|| path.display().to_string())?;
    for (index, listener) in loaded.config.effective_listeners().iter().enumerate() {
        let context = || format!("{}: listener {} ({})", path.display(), index + 1, listener.bind);
        ListenerSecurity::load(listener).with_context(context)?;
        TlsListener::load(listener).with_context(context)?;
    }
    for bridge in &loaded.config.bridge {
        if let Some(tls) = &bridge.tls {
            midge_server::bridge::load_tls(tls)
                .with_context(|| format!("{}: bridge {:?}: tls", path.display(), bridge.name))?;
        }
    }
    println!("{}: OK", path.display());
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP, listened for from the moment they are installed.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    /// SIGHUP is what logrotate's postrotate scripts and mosquitto admins send to ask for a
    /// reload (its default action would kill the process).
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Completes on the first SIGINT or SIGTERM. On every SIGHUP meanwhile, reopens the log file
    /// (first, so that what follows is logged to the new one) and reloads: the config file is
    /// read again in the format it started with and, if all of it can be used, applied
    /// ([`Reloader::reload`] logs each change, or why nothing changed).
    async fn received(mut self, logging: &Logging, reloader: Reloader) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return tracing::info!("SIGINT received"),
                _ = self.terminate.recv() => return tracing::info!("SIGTERM received"),
                _ = self.hangup.recv() => {
                    logging.reopen();
                    tracing::info!("SIGHUP received: reloading the config file and the files it names");
                    // The outcome is logged by the reload itself.
                    let _ = reloader.reload().await;
                }
            }
        }
    }
}
