//! Sleeping clients (MQTT-SN 1.2 section 6.14).
//!
//! A client that sends DISCONNECT with a Duration goes to sleep: it stays connected, its session
//! keeps its messages (within its queue's bound, beyond which new ones are dropped and counted;
//! no publisher is paced for it: `ClientConnection::set_asleep`), the gateway sends it nothing,
//! and its keep alive gives way to the sleep's: unheard from for 1.5 times the Duration (the
//! keep alive's tolerance), it is lost and its will published. A PINGREQ from the address it is
//! bound to wakes it (a new address must CONNECT again; the PINGREQ's client id, if it has one,
//! must be its own): the buffered messages go first, each answered as usual, and a single
//! PINGRESP once nothing is left, after which it sleeps again for the same Duration. A
//! DISCONNECT with a Duration while asleep starts a new sleep; one without ends the connection;
//! a CONNECT makes the client active again, as a new connection.

use std::time::{Duration, Instant};

use midge_sn_codec::Message;

use super::client::{Client, Ending};
use super::counters::SnCounters;

/// A sleeping client's state.
#[derive(Debug)]
pub(super) struct Sleep {
    /// Its Duration.
    duration: Duration,
    /// When it is lost unless heard from.
    deadline: Instant,
    /// Woken by a PINGREQ: its buffered messages are being sent, and PINGRESP comes after them.
    awake: bool,
}

impl Sleep {
    fn new(duration: Duration, now: Instant) -> Self {
        Self { duration, deadline: now + duration.mul_f32(1.5), awake: false }
    }
}

impl Client {
    /// DISCONNECT with a Duration: the client sleeps from now.
    pub(super) async fn fall_asleep(&mut self, seconds: u16, now: Instant) {
        self.sleep = Some(Sleep::new(Duration::from_secs(u64::from(seconds)), now));
        self.connection.set_asleep(true);
        self.connection.pause_keep_alive();
        // 6.14: acknowledged with a DISCONNECT, as a plain one is.
        self.link.send(&Message::Disconnect { duration: None }).await;
        tracing::debug!(peer = %self.peer(), client_id = %self.connection.client_id(), seconds, "mqtt-sn: client asleep");
    }

    /// Whether the client sleeps and is not being woken: nothing is sent to it.
    pub(super) fn is_sleeping(&self) -> bool {
        self.sleep.as_ref().is_some_and(|sleep| !sleep.awake)
    }

    /// When a sleeping client is lost unless heard from.
    pub(super) fn sleep_deadline(&self) -> Option<Instant> {
        self.sleep.as_ref().filter(|sleep| !sleep.awake).map(|sleep| sleep.deadline)
    }

    /// A message from a client that sleeps (or is being woken), if the sleep decides what it
    /// does: `Some` with what the message ends, `None` to handle it as from an active client
    /// (a CONNECT, a DISCONNECT without a Duration, and, while it is awake, its answers).
    pub(super) async fn while_asleep(&mut self, message: &Message, now: Instant) -> Option<Option<Ending>> {
        let sleep = self.sleep.as_mut()?;
        match message {
            Message::PingReq { client_id } => {
                if client_id.as_ref().is_some_and(|id| id.as_str() != &**self.connection.client_id()) {
                    let counter = &self.shared.counters.unexpected;
                    SnCounters::drop(counter, "PINGREQ with another client's id dropped", &self.link.peer, &"");
                    return Some(None);
                }
                if !sleep.awake {
                    // Woken: what it missed goes first (a message that awaited its answer when it
                    // fell asleep is sent again at once), then PINGRESP (`woken`).
                    sleep.awake = true;
                    self.connection.set_asleep(false);
                    self.outbound.rearm(now);
                    self.window_freed();
                }
                Some(None)
            }
            Message::Disconnect { duration: Some(seconds) } if *seconds > 0 => {
                let seconds = *seconds;
                self.fall_asleep(seconds, now).await;
                Some(None)
            }
            Message::Connect(_) | Message::Disconnect { .. } => None,
            _ if sleep.awake => None,
            other => {
                let kind = other.msg_type();
                SnCounters::drop(
                    &self.shared.counters.unexpected,
                    "message from a sleeping client dropped",
                    &self.link.peer,
                    &kind,
                );
                Some(None)
            }
        }
    }

    /// After a flush: a client being woken whose buffered messages are all sent and answered
    /// gets its PINGRESP, once, and sleeps again.
    pub(super) async fn woken(&mut self, now: Instant) {
        if self.more_ready() || !self.outbound.is_idle() {
            return;
        }
        let Some(sleep) = self.sleep.as_mut().filter(|sleep| sleep.awake) else { return };
        *sleep = Sleep::new(sleep.duration, now);
        self.connection.set_asleep(true);
        self.connection.pause_keep_alive();
        self.link.send(&Message::PingResp).await;
    }
}
