//! The client's one error type. Every failure the broker reported carries its reason code and,
//! in MQTT 5, its reason string, so a tool can tell the user exactly what the broker answered.

use std::io;

use midge_codec::{DecodeError, EncodeError, InvalidValue, ProtocolVersion, ReasonCode};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport could not be opened (name resolution, TCP connect).
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port` as given.
        address: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (an untrusted or expired certificate, a name mismatch, a
    /// refused client certificate).
    #[error("TLS with {address} failed: {source}")]
    Tls {
        /// `host:port` as given.
        address: String,
        /// What the handshake said.
        #[source]
        source: io::Error,
    },
    /// The broker answered CONNECT with a failure code.
    #[error("connection refused: {}", describe(*reason, reason_string.as_deref()))]
    Refused {
        /// The CONNACK code: the v5 reason code, or for 3.x the v5 equivalent of the return code
        /// (see [`Error::connack_code`] for the byte the broker sent).
        reason: ReasonCode,
        /// The v5 Reason String, if the broker sent one.
        reason_string: Option<String>,
        /// The version the client spoke, which decides how `reason` was sent.
        version: ProtocolVersion,
    },
    /// No CONNACK arrived within the connect timeout.
    #[error("no CONNACK within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// Reading or writing the connection failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The broker closed the connection without a DISCONNECT.
    #[error("the broker closed the connection")]
    ConnectionClosed,
    /// The broker sent a DISCONNECT (MQTT 5), which ends the connection.
    #[error("the broker disconnected: {}", describe(*reason, reason_string.as_deref()))]
    Disconnected {
        /// The DISCONNECT reason code.
        reason: ReasonCode,
        /// Its Reason String, if any.
        reason_string: Option<String>,
        /// Its Server Reference, if any (another broker to use).
        server_reference: Option<String>,
    },
    /// A PINGREQ went unanswered for a whole keep alive interval: the link is dead even if the
    /// socket has not noticed (MQTT-3.1.2-24 seen from the client's side).
    #[error("no PINGRESP within the keep alive interval of {0:?}")]
    KeepAliveTimeout(std::time::Duration),
    /// The broker sent bytes that are not a valid packet.
    #[error("invalid packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (too large, or a value the version cannot carry).
    #[error("cannot encode the packet: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke a protocol rule the decoder cannot see (e.g. a packet a server never
    /// sends, an unknown topic alias).
    #[error("protocol error by the broker: {0}")]
    Protocol(&'static str),
    /// The operation needs a connection and there is none (after [`crate::Client::disconnect`], or
    /// after a failure without automatic reconnection).
    #[error("not connected")]
    NotConnected,
    /// All 65,535 packet identifiers are taken by unacknowledged packets.
    #[error("all 65535 packet identifiers are in use")]
    PacketIdsExhausted,
    /// A topic, filter or string given to the client is not valid MQTT.
    #[error("invalid {what}: {source}")]
    Invalid {
        /// What was being checked.
        what: &'static str,
        /// Why it is invalid.
        #[source]
        source: InvalidValue,
    },
}

impl Error {
    /// The reason code the broker sent, for failures the broker reported.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            Self::Refused { reason, .. } | Self::Disconnected { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// For a refused CONNECT, the code byte as the broker sent it: the v5 reason code, or the
    /// 3.x return code (1 to 5).
    pub fn connack_code(&self) -> Option<u8> {
        match self {
            Self::Refused { reason, version, .. } if version.is_v5() => Some(reason.0),
            Self::Refused { reason, .. } => Some(midge_codec::connack_return_code(*reason)),
            _ => None,
        }
    }

    /// Whether the connection is gone: the transport failed or the broker ended it. A client
    /// with automatic reconnection reconnects after these.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Self::Io(_)
                | Self::ConnectionClosed
                | Self::Disconnected { .. }
                | Self::KeepAliveTimeout(_)
                | Self::Decode(_)
                | Self::Protocol(_)
        )
    }
}

/// "0x87 (Not authorized)" followed by ": reason string" when there is one.
fn describe(reason: ReasonCode, reason_string: Option<&str>) -> String {
    match reason_string {
        Some(text) => format!("{reason}: {text}"),
        None => reason.to_string(),
    }
}
