//! The egress port: a session's messages taken as values by whatever carries them to its
//! client, so a sink that does not speak MQTT (an MQTT-SN client, a server-sent event stream,
//! a bridge, another cluster node) never decodes MQTT bytes.
//!
//! [`crate::ClientConnection::drain_to`] moves what the session's queue and in-flight window
//! allow into an [`Egress`]; packet ids are assigned and QoS 1/2 messages stay in flight until
//! the sink's side acknowledges them ([`crate::ClientConnection::acknowledge`]). The MQTT
//! encoder the connection driver uses ([`crate::ClientConnection::drain`]) is the first
//! implementation.

use std::time::Instant;

use crate::delivery::{Outgoing, Queued};

/// Takes a session's messages for its client.
pub trait Egress {
    /// Whether `item` can be sent to this client at all (for MQTT: it fits the client's Maximum
    /// Packet Size, MQTT-3.1.2-25). One it refuses is dropped and counted.
    fn accepts(&mut self, item: &Queued, now: Instant) -> bool;

    /// Sends one message, or a PUBREL to resend. Returns whether a message was sent (for the
    /// count of messages sent).
    fn send(&mut self, outgoing: Outgoing, now: Instant) -> bool;

    /// Whether the sink takes more now (its buffer is under its bound).
    fn has_room(&self) -> bool;
}
