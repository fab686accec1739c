//! The bridge's side at the remote broker: a `midge-client` connection in relay mode (packet
//! ids pass through unchanged, acknowledgements are the bridge's to send), made to the first
//! address that answers, as a bridge where the remote understands it (`try_private`), with
//! the link's state as its will.

use std::time::Duration;

use bytes::Bytes;
use midge_client::codec::{Properties, ProtocolVersion, QoS, TopicName, Will};
use midge_client::{Client, ConnectOptions, ServerAddress, TlsOptions, TlsVersion, Transport};

use crate::config::{split_address, BridgeConfig, BridgeProtocol, BridgeTls};

/// How long one address may take to answer (TCP, TLS and CONNACK).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Receive Maximum the bridge gives the remote: how many of the remote's QoS 1/2 messages
/// may await the local store's commit at once. The core's own inbound bound applies too.
const REMOTE_RECEIVE_MAXIMUM: u16 = 1024;

/// Where and how the bridge connects; built once from its config.
pub(super) struct Remote {
    /// The addresses in the config's order.
    addresses: Vec<ServerAddress>,
    /// The address to try first next time.
    next: usize,
    round_robin: bool,
    template: ConnectOptions,
    /// `try_private` and not yet refused by this remote.
    try_private: bool,
}

/// A connected remote.
pub(super) struct Connected {
    pub(super) client: Client,
    /// The address reached, for the log.
    pub(super) address: String,
}

impl Remote {
    /// The remote of `config`, whose client id there is `client_id`; why its TLS files
    /// cannot be used.
    pub(super) fn new(config: &BridgeConfig, client_id: &str, notification_topic: &str) -> Result<Self, String> {
        let transport = match &config.tls {
            Some(tls) => Transport::Tls(super::load_tls(tls).map_err(|error| error.to_string())?),
            None => Transport::Tcp,
        };
        let default_port = if config.tls.is_some() { 8883 } else { 1883 };
        let mut addresses = Vec::new();
        for address in &config.addresses {
            let (host, port) = split_address(address, default_port)?;
            addresses.push(ServerAddress { host, port, transport: transport.clone() });
        }
        let version = match config.protocol_version {
            BridgeProtocol::V311 => ProtocolVersion::V311,
            BridgeProtocol::V5 => ProtocolVersion::V5,
        };
        let mut template = ConnectOptions::new("", 0);
        template.version = version;
        template.client_id = client_id.to_owned();
        template.clean_start = config.cleansession;
        template.keep_alive = config.keepalive_interval;
        template.username = config.remote_username.clone();
        template.password = config.remote_password.clone().map(|password| Bytes::from(password.into_bytes()));
        template.connect_timeout = CONNECT_TIMEOUT;
        template.relay = true;
        if version.is_v5() {
            // A persistent session at the remote lasts as long as it allows (MQTT 5 needs it
            // asked for; 3.1.1's clean session 0 is enough).
            template.properties.session_expiry_interval = (!config.cleansession).then_some(u32::MAX);
            template.properties.receive_maximum = Some(REMOTE_RECEIVE_MAXIMUM);
        }
        if config.notifications {
            let topic = TopicName::new(notification_topic).map_err(|error| error.to_string())?;
            template.will = Some(Will {
                topic,
                payload: Bytes::from_static(b"0"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            });
        }
        let try_private = config.try_private && !version.is_v5();
        Ok(Self { addresses, next: 0, round_robin: config.round_robin, template, try_private })
    }

    /// Connects to the first address that answers, from the one [`Remote::next`] names.
    /// `Err` is every address's failure, for the log.
    pub(super) async fn connect(&mut self) -> Result<Connected, String> {
        let mut failures = Vec::new();
        let count = self.addresses.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let server = self.addresses[index].clone();
            let address = format!("{}:{}", server.host, server.port);
            match self.connect_to(server).await {
                Ok(client) => {
                    // mosquitto's round_robin false: after a failover, the first address is
                    // tried first again next time (the preferred one); true stays here.
                    self.next = if self.round_robin { index } else { 0 };
                    return Ok(Connected { client, address });
                }
                Err(error) => failures.push(format!("{address}: {error}")),
            }
        }
        if self.round_robin {
            self.next = (self.next + 1) % count;
        }
        Err(failures.join("; "))
    }

    /// One address; as a bridge first when `try_private`, and again as a plain client if the
    /// remote refuses that (mosquitto does the same). The remote is taken not to know the
    /// bridge level, and not asked again, only when it says so ("unacceptable protocol
    /// version") or when it closed the bridge's connection and at once accepted the plain
    /// one: a remote that closes every connection for a while (at its connection limit, a
    /// load balancer with nothing behind it) must not make the bridge a plain client for
    /// good, whose `both` lines would loop.
    async fn connect_to(&mut self, server: ServerAddress) -> Result<Client, midge_client::Error> {
        let mut options = self.template.clone();
        options.server = server;
        if !self.try_private {
            return Client::connect(options).await;
        }
        options.bridge = true;
        let refusal = match Client::connect(options.clone()).await {
            Ok(client) => return Ok(client),
            Err(error) => match refusal_of_the_bridge_level(&error) {
                Some(refusal) => refusal,
                None => return Err(error),
            },
        };
        tracing::info!(?refusal, "the remote may not know a bridge's protocol level: connecting as a plain client");
        options.bridge = false;
        let plain = Client::connect(options).await;
        if refusal == Refusal::Said || plain.is_ok() {
            tracing::warn!(
                "the remote does not take a bridge's protocol level: a plain client from now on (try_private)"
            );
            self.try_private = false;
        }
        plain
    }
}

/// How a remote may have refused the bridge's protocol level (0x84).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// "Unacceptable protocol version" (3.1.1 return code 1).
    Said,
    /// The connection closed before any CONNACK: a broker that does not know the level, or
    /// one that closes every connection for now.
    Closed,
}

/// Whether, and how, `error` may be a remote's answer to the bridge's protocol level.
fn refusal_of_the_bridge_level(error: &midge_client::Error) -> Option<Refusal> {
    use midge_client::codec::ReasonCode;
    match error {
        midge_client::Error::Refused { reason, .. } if *reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
            Some(Refusal::Said)
        }
        midge_client::Error::ConnectionClosed => Some(Refusal::Closed),
        _ => None,
    }
}

/// The client's TLS options for a bridge's `tls` table.
pub(super) fn tls_options(tls: &BridgeTls) -> TlsOptions {
    TlsOptions {
        ca_file: tls.cafile.clone(),
        ca_path: tls.capath.clone(),
        // Neither CA given: the system's roots, as mosquitto does with bridge_capath unset.
        os_certs: tls.cafile.is_none() && tls.capath.is_none(),
        cert: tls.certfile.clone(),
        key: tls.keyfile.clone(),
        danger_insecure_names: tls.insecure,
        min_version: match tls.tls_version.as_deref() {
            Some("tlsv1.3") => TlsVersion::Tls13,
            _ => TlsVersion::Tls12,
        },
        alpn: tls.alpn.iter().cloned().collect(),
        no_resumption: false,
    }
}
