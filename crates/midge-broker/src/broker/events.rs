//! Client events on `$SYS`: when switched on (the server's `[sys] events`), each client's
//! connect and disconnect is published as a message of the broker's own, not retained, with the
//! client id as payload, so a monitor subscribed to them sees clients come and go as they do.
//!
//! Under `$SYS/broker/midge/`, not mosquitto's `$SYS/broker/clients/connected`: that topic
//! already holds the retained count of connected clients.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use midge_codec::{QoS, TopicName};

use super::state::Broker;

/// A client's connect or disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    Connected,
    Disconnected,
}

impl ClientEvent {
    fn topic(self) -> &'static str {
        match self {
            ClientEvent::Connected => "$SYS/broker/midge/clients/connected",
            ClientEvent::Disconnected => "$SYS/broker/midge/clients/disconnected",
        }
    }
}

impl Broker {
    /// Switches client events on or off (off at start).
    pub fn set_client_events(&self, on: bool) {
        self.client_events.store(on, Ordering::Relaxed);
    }

    /// Publishes `event` for `client_id`, when client events are on.
    pub(crate) fn client_event(&self, event: ClientEvent, client_id: &str, now: Instant) {
        if !self.client_events.load(Ordering::Relaxed) {
            return;
        }
        let topic = TopicName::new(event.topic()).expect("a valid topic name");
        // Never refused: not retained, so no retained bound applies.
        let _ = self.publish_own(topic, Bytes::copy_from_slice(client_id.as_bytes()), QoS::ExactlyOnce, false, now);
    }
}
