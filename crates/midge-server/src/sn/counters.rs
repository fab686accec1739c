//! What an MQTT-SN listener drops, counted and logged at a bounded rate (at most a line a
//! second per counter, the [`LimitCounter`] pattern of the named limits).

use std::fmt::Display;
use std::time::Instant;

use midge_broker::LimitCounter;
use tracing::info;

/// A listener's drops, by reason.
#[derive(Debug, Default)]
pub(crate) struct SnCounters {
    /// Datagrams that are not one MQTT-SN 1.2 message. Never answered: an answer to garbage
    /// from a forged address would make the gateway an amplifier.
    pub(crate) malformed: LimitCounter,
    /// Messages dropped because [`SN_INBOX`](crate::limits::SN_INBOX) of their client's waited
    /// for its task.
    pub(crate) inbox_full: LimitCounter,
    /// Messages that need a connection, from an address that has none.
    pub(crate) unconnected: LimitCounter,
    /// PUBLISHes at QoS -1 refused: not to a predefined id or short name the gateway knows, or
    /// not allowed to anonymous clients.
    pub(crate) minus_one_refused: LimitCounter,
    /// SEARCHGWs not answered: beyond [`SN_GWINFO_PER_SECOND`](crate::limits::SN_GWINFO_PER_SECOND).
    pub(crate) searches_limited: LimitCounter,
    /// Messages a client has no reason to send a gateway (GWINFO, CONNACK, SUBACK and the other
    /// gateway-to-client ones).
    pub(crate) unexpected: LimitCounter,
}

/// What an MQTT-SN listener dropped, by reason, at one moment (in [`ListenerCounters`]):
/// each count since the listener started. The messages dropped for a client because of a
/// bound of its session (a REGISTER it refused, a message too long for a datagram) are in the
/// broker's `messages_dropped`; CONNECTs refused at `max_connections` in
/// `ListenerCounters::refused_max_connections`.
///
/// [`ListenerCounters`]: crate::ListenerCounters
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnDrops {
    /// Datagrams that are not one MQTT-SN 1.2 message (an encapsulation included), never
    /// answered.
    pub malformed: u64,
    /// Messages dropped because `SN_INBOX` of their client's were waiting for its task.
    pub inbox_full: u64,
    /// Messages that need a connection, from an address (or forwarded node) without one.
    pub unconnected: u64,
    /// PUBLISHes at QoS -1 refused: to a topic the gateway does not know, or not allowed.
    pub minus_one_refused: u64,
    /// SEARCHGWs not answered: over `SN_GWINFO_PER_SECOND`.
    pub searches_limited: u64,
    /// Messages a client has no reason to send a gateway, or sends while asleep.
    pub unexpected: u64,
}

impl SnCounters {
    /// The counts now.
    pub(crate) fn snapshot(&self) -> SnDrops {
        SnDrops {
            malformed: self.malformed.get(),
            inbox_full: self.inbox_full.get(),
            unconnected: self.unconnected.get(),
            minus_one_refused: self.minus_one_refused.get(),
            searches_limited: self.searches_limited.get(),
            unexpected: self.unexpected.get(),
        }
    }

    /// Counts a drop on `counter` and logs it when a report is due.
    pub(crate) fn drop(counter: &LimitCounter, what: &str, peer: &dyn Display, detail: &dyn Display) {
        if let Some(report) = counter.hit(Instant::now()) {
            info!(%peer, dropped = report.since_last, total = report.total, %detail, "mqtt-sn: {what}");
        }
    }
}
