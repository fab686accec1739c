//! The MQTT-SN 1.2 gateway: a listener with `protocol = "mqtt-sn"` on UDP, whose clients are
//! sessions of the broker itself (docs/decisions/0008-mqtt-sn-gateway.md).
//!
//! A datagram's way: the listener's reader task ([`gateway`]) receives it, decodes it
//! (`midge_sn_codec`; a malformed one is dropped and counted, never answered) and hands it to
//! the task of the client at its source address through a small bounded channel; messages that
//! need no connection (SEARCHGW, a PUBLISH at QoS -1) and a CONNECT from a new address it
//! handles itself. The client's task ([`client`]) owns everything of that client: a
//! `ClientConnection` of the core, fed MQTT 3.1.1 packet values translated from its messages
//! ([`inbound`]); its topic ids ([`topics`]); and what its session hands the gateway to send
//! ([`outbound`]), one message awaiting an answer at a time, retransmitted after Tretry.
//!
//! # Layout
//! - [`gateway`]: the reader task of one socket, the client map, and the messages that need no
//!   client task.
//! - [`connect`]: a client's CONNECT, with the will dialogue, the broker's checks and the
//!   listener's authenticator.
//! - [`client`]: a connected client's task: its signals, retransmission, and its end.
//! - [`inbound`]: one message from a connected client, translated for the core, and the answer
//!   translated back.
//! - [`outbound`]: messages to the client: REGISTER before PUBLISH, one outstanding message,
//!   Tretry and Nretry.
//! - [`sleep`]: sleeping clients: their messages kept, the wake-up, PINGRESP once.
//! - [`topics`]: predefined topic ids, and each client's registry of normal ids.
//! - [`counters`]: what the gateway drops, counted and logged at a bounded rate.

mod client;
mod connect;
mod counters;
mod gateway;
mod inbound;
mod outbound;
mod sleep;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use midge_sn_codec::Message;
use tokio::net::UdpSocket;

pub(crate) use counters::SnCounters;
pub(crate) use gateway::Gateway;
pub(crate) use topics::Predefined;

use crate::config::SnSettings;

/// What a listener's gateway tasks and its clients' tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The listener's place in the config, from 1, for logs.
    pub(crate) listener: usize,
    /// Its `sn_*` settings.
    pub(crate) settings: SnSettings,
    /// Its predefined topic ids.
    pub(crate) predefined: Predefined,
    /// What it drops.
    pub(crate) counters: SnCounters,
}

impl Shared {
    /// The shared state of listener `listener` with `settings`.
    pub(crate) fn new(listener: usize, settings: SnSettings) -> Self {
        let predefined = Predefined::new(&settings.predefined_topics);
        Self { listener, settings, predefined, counters: SnCounters::default() }
    }
}

/// The way to one client: the socket its datagrams came in on, and its address.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl Link {
    /// Sends `message` to the client. A datagram that cannot be sent is lost, as the network
    /// may lose any: what needs an answer is sent again after Tretry.
    async fn send(&self, message: &Message) {
        let mut datagram = BytesMut::with_capacity(message.encoded_len());
        if let Err(error) = midge_sn_codec::encode(message, &mut datagram) {
            tracing::warn!(peer = %self.peer, %error, kind = %message.msg_type(), "mqtt-sn: cannot encode a message");
            return;
        }
        if let Err(error) = self.socket.send_to(&datagram, self.peer).await {
            tracing::debug!(peer = %self.peer, %error, "mqtt-sn: send failed");
        }
    }
}
