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
//!   client task (SEARCHGW within `SN_GWINFO_PER_SECOND`, QoS -1).
//! - [`advertise`]: the periodic ADVERTISE, where `sn_advertise_address` says.
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

pub(crate) mod advertise;
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

use bytes::{Bytes, BytesMut};
use midge_sn_codec::{Encapsulated, Message};
use tokio::net::UdpSocket;

pub(crate) use counters::SnCounters;
pub use counters::SnDrops;
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

/// Where a client is: the UDP address its datagrams come from and, for a client behind a
/// forwarder (MQTT-SN 1.2 section 5.5), its Wireless Node Id. The gateway keeps one client per
/// `Peer`: the nodes behind one forwarder are as many clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Peer {
    /// The client's address, or its forwarder's.
    pub(crate) addr: SocketAddr,
    /// The client's Wireless Node Id, when a forwarder relays it.
    pub(crate) node: Option<Bytes>,
}

impl Peer {
    /// A client that speaks to the gateway directly.
    pub(crate) fn direct(addr: SocketAddr) -> Self {
        Self { addr, node: None }
    }
}

/// The address, then `/` and the Wireless Node Id in hex for a client behind a forwarder
/// (`10.0.0.5:1884/0a1b`): what logs and the authenticator see as the client's address.
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr)?;
        if let Some(node) = &self.node {
            f.write_str("/")?;
            for octet in node.iter() {
                write!(f, "{octet:02x}")?;
            }
        }
        Ok(())
    }
}

/// The way to one client: the socket its datagrams came in on, its [`Peer`], and for a client
/// behind a forwarder the Radius its forwarder gave (5.5: what goes back to the client is
/// encapsulated with its Wireless Node Id and that Radius).
#[derive(Debug, Clone)]
pub(crate) struct Link {
    socket: Arc<UdpSocket>,
    peer: Peer,
    radius: u8,
    /// Whose counters its datagrams add to.
    broker: Arc<midge_broker::Broker>,
}

impl Link {
    /// Sends `message` to the client. A datagram that cannot be sent is lost, as the network
    /// may lose any: what needs an answer is sent again after Tretry.
    async fn send(&self, message: &Message) {
        let Some(datagram) = datagram(message, &self.peer, self.radius) else { return };
        match self.socket.send_to(&datagram, self.peer.addr).await {
            Ok(sent) => count_sent(&self.broker, sent),
            Err(error) => tracing::debug!(peer = %self.peer, %error, "mqtt-sn: send failed"),
        }
    }
}

/// Counts a datagram sent as an MQTT connection's writes are counted ($SYS bytes and packets,
/// /metrics).
fn count_sent(broker: &midge_broker::Broker, bytes: usize) {
    broker.stats().bytes_sent.add(bytes as u64);
    broker.stats().packets_sent.add(1);
}

/// `message` encoded for `peer`: encapsulated (5.5) with its Wireless Node Id and `radius` when
/// a forwarder relays it. `None` (logged) if it cannot be encoded.
fn datagram(message: &Message, peer: &Peer, radius: u8) -> Option<BytesMut> {
    let encapsulated;
    let message = match &peer.node {
        Some(node) => {
            encapsulated = Message::Encapsulated(Encapsulated {
                radius,
                wireless_node_id: node.clone(),
                message: Box::new(message.clone()),
            });
            &encapsulated
        }
        None => message,
    };
    let mut datagram = BytesMut::with_capacity(message.encoded_len());
    match midge_sn_codec::encode(message, &mut datagram) {
        Ok(()) => Some(datagram),
        Err(error) => {
            tracing::warn!(%peer, %error, kind = %message.msg_type(), "mqtt-sn: cannot encode a message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5.5: a client behind a forwarder is its forwarder's address and its Wireless Node Id,
    /// for the reader's map and for what logs and the authenticator see.
    #[test]
    fn a_peer_behind_a_forwarder_is_its_address_and_node() {
        let addr: SocketAddr = "10.0.0.5:1884".parse().unwrap();
        let node = Peer { addr, node: Some(Bytes::from_static(&[0x0a, 0x1b])) };
        assert_eq!(node.to_string(), "10.0.0.5:1884/0a1b");
        assert_eq!(Peer::direct(addr).to_string(), "10.0.0.5:1884");
        assert_ne!(node, Peer::direct(addr));
    }
}
