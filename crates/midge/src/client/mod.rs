//! What `midge pub`, `midge sub` and `midge shell` share: the connection flags of
//! mosquitto_pub/mosquitto_sub 2.x and their checks, `-L` URLs, `-d` packet traces, and the
//! one table of error messages and exit codes.
//!
//! # Layout
//! - this file: [`ConnectArgs`], [`resolve`] into client options, [`report`] of errors.
//! - [`properties`]: `-D command identifier value`.
//! - [`format`]: how `midge sub` prints messages (`-v`, `-N`, `-F`, `--pretty`).

pub mod format;
pub mod properties;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgAction, Args};
use midge_client::codec::{MqttString, Packet, ProtocolVersion, QoS, ReasonCode, TopicName, Will};
use midge_client::{ConnectOptions, Error, TlsOptions, TlsVersion, Trace, Tracer};

use properties::CommandProperties;

/// Exit codes, as mosquitto_pub and mosquitto_sub return them.
pub mod exit {
    /// Bad arguments, or the broker could not be reached (mosquitto returns 1 for both).
    pub const FAILURE: u8 = 1;
    /// The broker broke the protocol (MOSQ_ERR_PROTOCOL).
    pub const PROTOCOL: u8 = 2;
    /// The connection was lost (MOSQ_ERR_CONN_LOST). mosquitto_sub reconnects silently instead;
    /// see docs/clients.md.
    pub const CONNECTION_LOST: u8 = 7;
    /// `-W` expired before the work was done (MOSQ_ERR_TIMEOUT).
    pub const TIMED_OUT: u8 = 27;
}

/// Which tool is running: decides messages and the default client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `midge pub`.
    Pub,
    /// `midge sub`.
    Sub,
}

impl Tool {
    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pub => "pub",
            Self::Sub => "sub",
        }
    }
}

/// The connection flags of mosquitto_pub and mosquitto_sub. Values are taken as text and
/// checked by [`resolve`], so each error reads as mosquitto's does.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// Broker host name or address [default: localhost].
    #[arg(short = 'h', long = "host", value_name = "HOST", help_heading = "Connection")]
    pub host: Option<String>,
    /// Broker port [default: 1883].
    #[arg(short = 'p', long = "port", value_name = "PORT", allow_negative_numbers = true, help_heading = "Connection")]
    pub port: Option<String>,
    /// User, password, host, port and topic as one URL: mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC;
    /// mqtts:// for TLS (port 8883), ws:// for MQTT over a WebSocket (port 80), wss:// for a
    /// WebSocket over TLS (port 443).
    #[arg(short = 'L', long = "url", value_name = "URL", help_heading = "Connection")]
    pub url: Option<String>,
    /// The HTTP path of a ws:// or wss:// URL's WebSocket upgrade [default: /mqtt, which
    /// mosquitto, Midge, EMQX and HiveMQ all accept].
    #[arg(long = "ws-path", value_name = "PATH", help_heading = "Connection")]
    pub ws_path: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USER", help_heading = "Connection")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD", help_heading = "Connection")]
    pub password: Option<String>,
    /// Client identifier [default: empty, so the broker assigns one; for MQTT 3.1, midge-pub-PID
    /// or midge-sub-PID].
    #[arg(short = 'i', long = "id", value_name = "ID", help_heading = "Connection")]
    pub id: Option<String>,
    /// Client identifier: this prefix followed by the process id.
    #[arg(short = 'I', long = "id-prefix", value_name = "PREFIX", help_heading = "Connection")]
    pub id_prefix: Option<String>,
    /// Keep alive in seconds, 5 to 65535 [default: 60].
    #[arg(short = 'k', long = "keepalive", value_name = "SECONDS", help_heading = "Connection")]
    pub keepalive: Option<String>,
    /// Persistent session: Clean Session 0 (3.x) / Clean Start 0 and a session that never
    /// expires unless -x says otherwise (5.0). Needs -i.
    #[arg(short = 'c', long = "disable-clean-session", help_heading = "Connection")]
    pub persistent: bool,
    /// MQTT 5 Session Expiry Interval in seconds; -1, 4294967295 or ∞ for never [default: -1
    /// with -c, else 0].
    #[arg(
        short = 'x',
        long = "session-expiry-interval",
        value_name = "SECONDS",
        allow_negative_numbers = true,
        help_heading = "Connection"
    )]
    pub session_expiry: Option<String>,
    /// Protocol version: mqttv5 (or 5), mqttv311 (or 311), mqttv31 (or 31) [default: mqttv311].
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", help_heading = "Connection")]
    pub version: Option<String>,
    /// Disable Nagle's algorithm (always on in midge; accepted for compatibility).
    #[arg(long = "nodelay", help_heading = "Connection")]
    pub nodelay: bool,
    /// Will topic: published by the broker if this client disconnects unexpectedly.
    #[arg(long = "will-topic", value_name = "TOPIC", help_heading = "Will")]
    pub will_topic: Option<String>,
    /// Will payload [default: empty].
    #[arg(long = "will-payload", value_name = "PAYLOAD", help_heading = "Will")]
    pub will_payload: Option<String>,
    /// Will QoS, 0 to 2 [default: 0].
    #[arg(long = "will-qos", value_name = "QOS", help_heading = "Will")]
    pub will_qos: Option<String>,
    /// Retain the will.
    #[arg(long = "will-retain", help_heading = "Will")]
    pub will_retain: bool,
    /// MQTT 5 property: -D COMMAND NAME VALUE, or -D COMMAND user-property KEY VALUE. COMMAND is
    /// connect, publish, subscribe, unsubscribe, disconnect or will; NAME as in mosquitto, e.g.
    /// content-type, response-topic, correlation-data, message-expiry-interval,
    /// payload-format-indicator, session-expiry-interval, receive-maximum, topic-alias,
    /// subscription-identifier, will-delay-interval. May be repeated.
    #[arg(
        short = 'D',
        long = "property",
        num_args = 3..=4,
        value_names = ["COMMAND", "NAME", "VALUE"],
        help_heading = "MQTT 5"
    )]
    pub property: Vec<String>,
    /// The TLS flags.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print every packet sent and received, and SUBACK results, to stdout.
    #[arg(short = 'd', long = "debug", help_heading = "Output")]
    pub debug: bool,
    /// Do not print error messages.
    #[arg(long = "quiet", help_heading = "Output")]
    pub quiet: bool,
    /// Print help (mosquitto's -h is the host, so help is --help only).
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// mosquitto_pub's TLS flags, shared by `midge pub`, `midge sub` and `midge bench`; checked by
/// [`tls_options`].
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Trust the CA certificates in this PEM file; turns TLS on (port 8883 unless -p says).
    #[arg(long = "cafile", value_name = "FILE", help_heading = "TLS")]
    pub cafile: Option<PathBuf>,
    /// Trust the CA certificates in the PEM files of this directory; turns TLS on.
    #[arg(long = "capath", value_name = "DIR", help_heading = "TLS")]
    pub capath: Option<PathBuf>,
    /// Trust the system's CA certificates; turns TLS on.
    #[arg(long = "tls-use-os-certs", help_heading = "TLS")]
    pub tls_use_os_certs: bool,
    /// This client's certificate chain (PEM), for brokers that ask for one; needs --key.
    #[arg(long = "cert", value_name = "FILE", help_heading = "TLS")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM); needs --cert.
    #[arg(long = "key", value_name = "FILE", help_heading = "TLS")]
    pub key: Option<PathBuf>,
    /// Do not check that the broker's certificate names the host connected to (the chain is
    /// still verified). For testing only.
    #[arg(long = "insecure", help_heading = "TLS")]
    pub insecure: bool,
    /// Oldest TLS version accepted: tlsv1.3 or tlsv1.2 [default: tlsv1.2].
    #[arg(long = "tls-version", value_name = "VERSION", help_heading = "TLS")]
    pub tls_version: Option<String>,
    /// ALPN protocol to offer, e.g. mqtt.
    #[arg(long = "tls-alpn", value_name = "PROTOCOL", help_heading = "TLS")]
    pub tls_alpn: Option<String>,
}

/// Checked connection settings.
#[derive(Debug, Clone)]
pub struct Connection {
    /// For the client library.
    pub options: ConnectOptions,
    /// Every `-D`.
    pub properties: CommandProperties,
    /// The topic of a `-L` URL.
    pub url_topic: Option<String>,
    /// `-d`.
    pub debug: bool,
    /// `--quiet`.
    pub quiet: bool,
}

/// Checks the flags as mosquitto does and builds the client options. The error is the message
/// to print (the caller adds the usage hint and exits with [`exit::FAILURE`]).
pub fn resolve(args: &ConnectArgs, tool: Tool) -> Result<Connection, String> {
    let version = match args.version.as_deref() {
        None | Some("mqttv311" | "311") => ProtocolVersion::V311,
        Some("mqttv31" | "31") => ProtocolVersion::V31,
        Some("mqttv5" | "5") => ProtocolVersion::V5,
        Some(_) => return Err("Error: Invalid protocol version argument given.".into()),
    };
    let mut host = args.host.clone().unwrap_or_else(|| "localhost".into());
    let mut port = match &args.port {
        Some(text) => match text.parse::<i64>() {
            Ok(port @ 1..=65535) => port as u16,
            Ok(port) => return Err(format!("Error: Invalid port given: {port}")),
            Err(_) => return Err(format!("Error: Invalid port given: {}", leading_int(text))),
        },
        None => midge_client::DEFAULT_PORT,
    };
    let mut username = args.username.clone();
    let mut password = args.password.clone();
    let mut url_topic = None;
    let mut url_tls = false;
    let mut websocket = false;
    if let Some(url) = &args.url {
        let parsed = parse_url(url)?;
        host = parsed.host;
        port = parsed.port;
        username = parsed.username.or(username);
        password = parsed.password.or(password);
        url_topic = Some(parsed.topic);
        url_tls = parsed.tls;
        websocket = parsed.websocket;
    }
    let ws_path = match &args.ws_path {
        Some(_) if !websocket => return Err("Error: --ws-path needs a ws:// or wss:// URL (-L).".into()),
        Some(path) if !path.starts_with('/') => return Err(format!("Error: --ws-path must start with '/': {path}")),
        Some(path) => path.clone(),
        None => DEFAULT_WS_PATH.to_owned(),
    };
    let tls = tls_options(&args.tls, url_tls)?;
    if tls.is_some() && args.port.is_none() && args.url.is_none() {
        port = DEFAULT_TLS_PORT;
    }
    if args.id.is_some() && args.id_prefix.is_some() {
        return Err("Error: -i and -I argument cannot be used together.".into());
    }
    let keep_alive = match &args.keepalive {
        Some(text) => match text.parse::<u32>() {
            Ok(seconds @ 5..=65535) => seconds as u16,
            _ => return Err("Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.".into()),
        },
        None => 60,
    };
    let session_expiry = match args.session_expiry.as_deref() {
        None => None,
        Some("-1" | "∞") => Some(u32::MAX),
        Some(text) => match text.parse::<i64>() {
            Ok(value) if (0..=i64::from(u32::MAX)).contains(&value) => Some(value as u32),
            Ok(_) => return Err("Error: session-expiry-interval out of range.".into()),
            Err(_) => return Err("Error: session-expiry-interval not a number.".into()),
        },
    };
    let client_id = match (&args.id, &args.id_prefix) {
        (Some(id), _) => id.clone(),
        (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
        (None, None) => {
            if args.persistent {
                return Err("Error: You must provide a client id if you are using the -c option.".into());
            }
            if session_expiry.is_some_and(|expiry| expiry == u32::MAX) && version.is_v5() {
                return Err(
                    "Error: You must provide a client id if you are using an infinite session expiry interval.".into(),
                );
            }
            // MQTT 3.1 requires a client id of 1 to 23 characters; later versions let the
            // broker assign one.
            if version == ProtocolVersion::V31 {
                format!("midge-{}-{}", tool.name(), std::process::id())
            } else {
                String::new()
            }
        }
    };
    MqttString::new(&client_id).map_err(|_| "Error: Malformed UTF-8 in -i argument.".to_string())?;
    let properties = CommandProperties::parse(&args.property)?;
    if !version.is_v5() && !args.property.is_empty() {
        // mosquitto ignores -D for 3.x; so does midge, but says so.
        eprintln!("Warning: -D properties apply to MQTT 5 only (-V mqttv5); they are ignored.");
    }
    if args.will_payload.is_some() && args.will_topic.is_none() {
        return Err("Error: Will payload given, but no will topic given.".into());
    }
    if args.will_retain && args.will_topic.is_none() {
        return Err("Error: Will retain given, but no will topic given.".into());
    }
    let will = match &args.will_topic {
        Some(topic) => Some(Will {
            topic: TopicName::new(topic)
                .map_err(|_| format!("Error: Invalid will topic '{topic}', does it contain '+' or '#'?"))?,
            payload: Bytes::from(args.will_payload.clone().unwrap_or_default()),
            qos: match &args.will_qos {
                Some(text) => parse_qos(text)?,
                None => QoS::AtMostOnce,
            },
            retain: args.will_retain,
            properties: if version.is_v5() { properties.will.clone() } else { Default::default() },
        }),
        None => None,
    };

    let mut options = ConnectOptions::new(host, port);
    let tls = match tls {
        Some(tls) => Some(midge_client::Tls::new(&tls).map_err(|error| format!("Error: {error}"))?),
        None => None,
    };
    options.server.transport = match (websocket, tls) {
        (true, tls) => midge_client::Transport::WebSocket { path: ws_path, tls },
        (false, Some(tls)) => midge_client::Transport::Tls(tls),
        (false, None) => midge_client::Transport::Tcp,
    };
    options.version = version;
    options.client_id = client_id;
    options.clean_start = !args.persistent;
    options.keep_alive = keep_alive;
    options.username = username;
    options.password = password.map(Bytes::from);
    options.will = will;
    if version.is_v5() {
        options.properties = properties.connect.clone();
        // -c alone keeps the session forever; -x sets it; neither: 0 (mosquitto's defaults).
        let expiry = session_expiry.unwrap_or(if args.persistent { u32::MAX } else { 0 });
        if expiry > 0 {
            options.properties.session_expiry_interval = Some(expiry);
        }
    }
    // mosquitto connects within its own timeouts; 10 s keeps a black-holed host from hanging.
    options.connect_timeout = Duration::from_secs(10);
    Ok(Connection { options, properties, url_topic, debug: args.debug, quiet: args.quiet })
}

/// A QoS argument, 0 to 2.
pub fn parse_qos(text: &str) -> Result<QoS, String> {
    text.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("Error: Invalid QoS given: {}", leading_int(text)))
}

/// What C's `atoi` would read from `text`, for messages that quote it as mosquitto does.
pub fn leading_int(text: &str) -> i64 {
    let text = text.trim_start();
    let end = text
        .char_indices()
        .find(|&(index, c)| !(c.is_ascii_digit() || (index == 0 && (c == '-' || c == '+'))))
        .map_or(text.len(), |(index, _)| index);
    text[..end].parse().unwrap_or(0)
}

/// The MQTT port over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// The TLS settings of the flags, or `None` for plain TCP. TLS is on with any of --cafile,
/// --capath and --tls-use-os-certs, as in mosquitto, or with an `mqtts://` URL (`url_tls`, which
/// trusts the system's roots when no CA is given).
pub fn tls_options(args: &TlsArgs, url_tls: bool) -> Result<Option<TlsOptions>, String> {
    let trusted = args.cafile.is_some() || args.capath.is_some() || args.tls_use_os_certs;
    let other = args.cert.is_some() || args.key.is_some() || args.insecure || args.tls_version.is_some();
    if !trusted && !url_tls {
        if other {
            return Err("Error: TLS options need --cafile, --capath or --tls-use-os-certs.".into());
        }
        return Ok(None);
    }
    if args.cert.is_some() != args.key.is_some() {
        return Err("Error: Both certfile and keyfile must be provided if one of them is set.".into());
    }
    let min_version = match args.tls_version.as_deref() {
        None | Some("tlsv1.2") => TlsVersion::Tls12,
        Some("tlsv1.3") => TlsVersion::Tls13,
        Some(other) => return Err(format!("Error: Unsupported TLS version {other:?}: use tlsv1.2 or tlsv1.3.")),
    };
    Ok(Some(TlsOptions {
        ca_file: args.cafile.clone(),
        ca_path: args.capath.clone(),
        os_certs: args.tls_use_os_certs || !trusted,
        cert: args.cert.clone(),
        key: args.key.clone(),
        danger_insecure_names: args.insecure,
        min_version,
        alpn: args.tls_alpn.iter().cloned().collect(),
        no_resumption: false,
    }))
}

/// The HTTP path of a WebSocket upgrade when `--ws-path` does not give one.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// A parsed `-L` URL.
struct Url {
    /// `mqtts://` or `wss://`.
    tls: bool,
    /// `ws://` or `wss://`.
    websocket: bool,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    topic: String,
}

/// `mqtt://[user[:password]@]host[:port]/topic`, `mqtts://` for TLS (port 8883 by default),
/// `ws://` for a WebSocket (port 80) and `wss://` for a WebSocket over TLS (port 443).
fn parse_url(url: &str) -> Result<Url, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("Error: unsupported URL scheme.".into());
    };
    let (tls, websocket, default_port) = match scheme {
        "mqtt" => (false, false, midge_client::DEFAULT_PORT),
        "mqtts" => (true, false, DEFAULT_TLS_PORT),
        "ws" => (false, true, 80),
        "wss" => (true, true, 443),
        _ => return Err("Error: unsupported URL scheme.".into()),
    };
    let Some((authority, topic)) = rest.split_once('/') else {
        return Err("Error: Invalid URL for -L argument specified - topic missing.".into());
    };
    if topic.is_empty() {
        return Err("Error: Invalid URL for -L argument specified - topic missing.".into());
    }
    let (credentials, address) = match authority.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
            None => (Some(credentials.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => {
            let port = match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("Error: Invalid port given: {}", leading_int(port))),
            };
            (host.to_string(), port)
        }
        None => (address.to_string(), default_port),
    };
    Ok(Url { tls, websocket, host, port, username, password, topic: topic.to_string() })
}

/// Prints a usage error as mosquitto does and returns its exit code.
pub fn usage_error(tool: Tool, message: &str) -> u8 {
    eprintln!("{message}\n\nUse 'midge {} --help' to see usage.", tool.name());
    exit::FAILURE
}

/// Prints what went wrong (unless `quiet`) and returns the exit code, mosquitto's for the same
/// failure: 1 when the broker cannot be reached, the CONNACK code when it refuses (the 3.x
/// return code, or the v5 reason code), 7 when an established connection is lost.
pub fn report(error: &Error, tool: Tool, quiet: bool) -> u8 {
    let (message, code) = describe(error, tool);
    if !quiet {
        eprintln!("{message}");
    }
    code
}

/// The message and exit code for `error`.
pub fn describe(error: &Error, tool: Tool) -> (String, u8) {
    match error {
        Error::Connect { source, .. } => (format!("Error: {}", strerror(source)), exit::FAILURE),
        // mosquitto_pub and mosquitto_sub say "A TLS error occurred." and exit with 1.
        Error::Tls { source, .. } => (format!("Error: A TLS error occurred: {source}."), exit::FAILURE),
        Error::Refused { reason, reason_string, version } => {
            let code = error.connack_code().unwrap_or(exit::FAILURE);
            let mut text = if version.is_v5() {
                let name = reason.name().unwrap_or("Unknown reason");
                if *reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                    format!("Connection error: {name}. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.")
                } else {
                    format!("Connection error: {name}")
                }
            } else {
                format!("Connection error: {}", connack_string(code))
            };
            if let Some(reason_string) = reason_string {
                text.push_str(&format!("\nReason: {reason_string}"));
            }
            // mosquitto_pub adds the library's view of the failure on a second line, which for
            // MQTT 5 is, oddly, a protocol error.
            if tool == Tool::Pub {
                if version.is_v5() {
                    text.push_str("\nError: A network protocol error occurred when communicating with the broker.");
                } else {
                    text.push_str("\nError: The connection was refused.");
                }
            }
            (text, code)
        }
        Error::ConnectTimeout(after) => {
            (format!("Error: No CONNACK from the broker within {} s.", after.as_secs()), exit::FAILURE)
        }
        Error::Disconnected { reason, reason_string, .. } => {
            let mut text = format!(
                "Error: The connection was lost: the broker sent DISCONNECT ({}).",
                reason.name().unwrap_or("Unknown reason")
            );
            if let Some(reason_string) = reason_string {
                text.push_str(&format!("\nReason: {reason_string}"));
            }
            (text, exit::CONNECTION_LOST)
        }
        Error::KeepAliveTimeout(_) => (
            "Error: The connection was lost: no PINGRESP within the keep alive interval.".into(),
            exit::CONNECTION_LOST,
        ),
        Error::Io(_) | Error::ConnectionClosed | Error::NotConnected => {
            ("Error: The connection was lost.".into(), exit::CONNECTION_LOST)
        }
        Error::Decode(_) | Error::Protocol(_) => (
            format!("Error: A network protocol error occurred when communicating with the broker ({error})."),
            exit::PROTOCOL,
        ),
        other => (format!("Error: {other}."), exit::FAILURE),
    }
}

/// libmosquitto's text for a 3.x CONNACK return code.
fn connack_string(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted.",
        1 => "Connection Refused: unacceptable protocol version.",
        2 => "Connection Refused: identifier rejected.",
        3 => "Connection Refused: broker unavailable.",
        4 => "Connection Refused: bad user name or password.",
        5 => "Connection Refused: not authorised.",
        _ => "Connection Refused: unknown reason.",
    }
}

/// The C library's text for an OS error, without Rust's " (os error N)".
fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.split_once(" (os error") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

/// A tracer printing libmosquitto's debug lines (`-d`) to stdout.
pub fn debug_tracer(client_id: &str) -> Tracer {
    let name = if client_id.is_empty() { "(null)".to_string() } else { client_id.to_string() };
    Box::new(move |trace| {
        let line = trace_line(&name, trace);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    })
}

/// One debug line in libmosquitto's words.
fn trace_line(name: &str, trace: Trace<'_>) -> String {
    let id = |packet_id: Option<midge_client::codec::PacketId>| packet_id.map_or(0, |id| id.get());
    match trace {
        Trace::SentPublish { dup, qos, retain, packet_id, topic, payload_len } => format!(
            "Client {name} sending PUBLISH (d{}, q{}, r{}, m{}, '{topic}', ... ({payload_len} bytes))",
            u8::from(dup),
            qos.as_u8(),
            u8::from(retain),
            id(packet_id)
        ),
        Trace::Sent(packet) => match packet {
            Packet::Subscribe(subscribe) => {
                let mut line = String::new();
                for (index, subscription) in subscribe.subscriptions.iter().enumerate() {
                    if index > 0 {
                        line.push('\n');
                    }
                    let options = subscription.options;
                    let byte = options.qos.as_u8()
                        | u8::from(options.no_local) << 2
                        | u8::from(options.retain_as_published) << 3
                        | (options.retain_handling as u8) << 4;
                    line.push_str(&format!(
                        "Client {name} sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x{:02x})",
                        subscribe.packet_id,
                        subscription.filter,
                        options.qos.as_u8(),
                        byte & 0xFC
                    ));
                }
                line
            }
            Packet::Unsubscribe(unsubscribe) => unsubscribe
                .filters
                .iter()
                .map(|filter| {
                    format!("Client {name} sending UNSUBSCRIBE (Mid: {}, Topic: {filter})", unsubscribe.packet_id)
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Packet::PubAck(response) => {
                format!("Client {name} sending PUBACK (m{}, rc{})", response.packet_id, response.reason.0)
            }
            Packet::PubRec(response) => {
                format!("Client {name} sending PUBREC (m{}, rc{})", response.packet_id, response.reason.0)
            }
            Packet::PubRel(response) => format!("Client {name} sending PUBREL (m{})", response.packet_id),
            Packet::PubComp(response) => format!("Client {name} sending PUBCOMP (m{})", response.packet_id),
            other => format!("Client {name} sending {}", other.kind()),
        },
        Trace::Received(packet) => match packet {
            Packet::ConnAck(connack) => {
                format!("Client {name} received CONNACK ({})", midge_client::codec::connack_return_code(connack.reason))
            }
            Packet::Publish(publish) => format!(
                "Client {name} received PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(publish.dup),
                publish.qos.as_u8(),
                u8::from(publish.retain),
                id(publish.packet_id),
                publish.topic,
                publish.payload.len()
            ),
            Packet::PubAck(response) | Packet::PubComp(response) => format!(
                "Client {name} received {} (Mid: {}, RC:{})",
                packet.kind(),
                response.packet_id,
                response.reason.0
            ),
            Packet::PubRec(response) | Packet::PubRel(response) => {
                format!("Client {name} received {} (Mid: {})", packet.kind(), response.packet_id)
            }
            other => format!("Client {name} received {}", other.kind()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gives_credentials_host_port_and_topic() {
        let url = parse_url("mqtt://alice:s3cret@broker.example:1884/a/b").unwrap();
        assert_eq!(
            (url.username.as_deref(), url.password.as_deref(), url.host.as_str(), url.port, url.topic.as_str()),
            (Some("alice"), Some("s3cret"), "broker.example", 1884, "a/b")
        );
        let url = parse_url("mqtt://localhost/t").unwrap();
        assert_eq!((url.port, url.username), (1883, None));
        let url = parse_url("mqtts://h/t").unwrap();
        assert_eq!((url.tls, url.port), (true, 8883), "mqtts:// is TLS, on 8883 by default");
        let url = parse_url("ws://h/t").unwrap();
        assert_eq!((url.websocket, url.tls, url.port), (true, false, 80), "ws:// is a WebSocket, on 80 by default");
        let url = parse_url("wss://u:p@h:9002/a/b").unwrap();
        assert_eq!((url.websocket, url.tls, url.port, url.topic.as_str()), (true, true, 9002, "a/b"));
        assert_eq!(parse_url("http://h/t").err().unwrap(), "Error: unsupported URL scheme.");
        assert!(parse_url("mqtt://h").err().unwrap().contains("topic missing"));
    }

    #[test]
    fn persistent_session_needs_an_id_and_never_expires_by_default() {
        let args = ConnectArgs { persistent: true, ..Default::default() };
        assert!(resolve(&args, Tool::Sub).unwrap_err().contains("client id"));
        let args = ConnectArgs {
            persistent: true,
            id: Some("me".into()),
            version: Some("mqttv5".into()),
            ..Default::default()
        };
        let connection = resolve(&args, Tool::Sub).unwrap();
        assert!(!connection.options.clean_start);
        assert_eq!(connection.options.properties.session_expiry_interval, Some(u32::MAX));
    }

    #[test]
    fn values_are_checked_with_mosquittos_messages() {
        let with = |f: fn(&mut ConnectArgs)| {
            let mut args = ConnectArgs::default();
            f(&mut args);
            resolve(&args, Tool::Pub).unwrap_err()
        };
        assert_eq!(with(|a| a.port = Some("0".into())), "Error: Invalid port given: 0");
        assert_eq!(with(|a| a.version = Some("7".into())), "Error: Invalid protocol version argument given.");
        assert!(with(|a| a.keepalive = Some("2".into())).contains("between 5 and 65535"));
        assert_eq!(parse_qos("3").unwrap_err(), "Error: Invalid QoS given: 3");
    }
}
