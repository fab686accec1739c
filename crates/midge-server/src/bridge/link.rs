//! One connected link: packets relayed between the bridge's session here and its session at
//! the remote, with their packet ids unchanged.
//!
//! Out: the session's messages (and, after a reconnection, its PUBLISH and PUBREL resends) go
//! to the remote renamed; the remote's PUBACK, PUBREC and PUBCOMP go to the session, which
//! only then lets the message go (from the store too). In: the remote's PUBLISH and PUBREL go
//! to the session as its client's; the session's answers go back once the store has
//! committed what they promise. Neither side ever holds a message the other has not
//! acknowledged, so an outage or a restart of either loses nothing: what was in flight is
//! resent by its owner with the same id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::FutureExt as _;
use midge_broker::{Congestion, Flow, ReadBatch, Signal};
use midge_client::{Client, Event};
use midge_codec::{Packet, PubResponse, QoS};
use midge_store::WriterHandle;
use tokio::sync::watch;

use super::local::{self, Connection, ToRemote};
use super::topics::TopicMap;
use crate::conn::pacing::Pacing;

/// The most of the remote's packets handled as one read of the core (one store commit for
/// their acknowledgements).
const EVENT_BATCH: usize = 256;

/// The shortest stall timeout (see [`Link::stall_timeout`]).
const MIN_STALL_TIMEOUT: Duration = Duration::from_millis(200);

/// Why a link ended.
#[derive(Debug)]
pub(super) enum LinkEnd {
    /// The remote is gone or unusable (why, for the log).
    Lost(String),
    /// The local side failed or was told to go (why).
    Local(String),
    /// A lazy bridge saw no message for its idle timeout.
    Idle,
    /// The bridge is being stopped (shutdown, removal, a changed config).
    Stopped,
}

/// A connected link.
pub(super) struct Link<'a> {
    pub(super) client: Client,
    pub(super) local: Connection,
    pub(super) map: &'a TopicMap,
    pub(super) writer: Option<WriterHandle>,
    /// Whether the session may have more to send.
    more_ready: bool,
    /// When a message last crossed either way (a lazy bridge's idle timeout).
    last_traffic: Instant,
    /// When the remote last showed progress: an acknowledgement, or some of the backlog
    /// written.
    last_progress: Instant,
    /// The backlog at the last look, to see it shrink.
    last_backlog: usize,
    /// How long the remote may show no progress while local publishers are paced for the
    /// bridge's session before the link is taken as lost: half the core's slow-consumer timeout,
    /// so the session goes offline (its queue continuing in the store) before the slow-consumer
    /// policy could drop from it.
    stall_timeout: Duration,
}

impl<'a> Link<'a> {
    pub(super) fn new(client: Client, local: Connection, map: &'a TopicMap, writer: Option<WriterHandle>) -> Self {
        let stall_timeout = (local.broker().limits().slow_consumer_timeout() / 2).max(MIN_STALL_TIMEOUT);
        let now = Instant::now();
        Self {
            client,
            local,
            map,
            writer,
            more_ready: true,
            last_traffic: now,
            last_progress: now,
            last_backlog: 0,
            stall_timeout,
        }
    }

    /// Relays until the link ends. `idle_timeout`: a lazy bridge's.
    pub(super) async fn run(&mut self, stop: &mut watch::Receiver<bool>, idle_timeout: Option<Duration>) -> LinkEnd {
        let kick = Arc::clone(self.local.kick());
        // A resumed session's unacknowledged messages go first, with their ids (MQTT-4.4.0-1).
        self.resume();
        loop {
            if let Err(error) = self.read_back().await {
                return LinkEnd::Local(error);
            }
            self.drain();
            let wake = self.next_check(idle_timeout);
            tokio::select! {
                biased;
                _ = stop.changed() => return LinkEnd::Stopped,
                signal = std::future::poll_fn(|cx| kick.poll_signal(cx)) => match signal {
                    Signal::Work => self.more_ready = true,
                    Signal::Kicked(reason) => return LinkEnd::Local(format!("the local session was closed: {reason}")),
                },
                event = self.client.poll() => match event {
                    Ok(event) => {
                        if let Err(end) = self.relay_in(event).await {
                            return end;
                        }
                    }
                    Err(error) => return LinkEnd::Lost(error.to_string()),
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    if let Some(end) = self.check(idle_timeout) {
                        return end;
                    }
                }
            }
        }
    }

    /// The session's in-flight messages, resent (DUP) or their PUBREL, before anything new.
    fn resume(&mut self) {
        let now = Instant::now();
        let dropped = {
            let Self { client, local, map, .. } = self;
            let max_packet_size = client.connack().properties.maximum_packet_size;
            let mut sink = ToRemote { client, map, max_packet_size, dropped: Vec::new(), sent: 0 };
            local.resume_to(now, &mut sink);
            sink.dropped
        };
        self.settle_dropped(dropped);
    }

    /// Moves what the session has ready into the remote's write buffer, while it has room.
    fn drain(&mut self) {
        if !self.more_ready {
            return;
        }
        let now = Instant::now();
        let (more, dropped, sent) = {
            let Self { client, local, map, .. } = self;
            let max_packet_size = client.connack().properties.maximum_packet_size;
            let mut sink = ToRemote { client, map, max_packet_size, dropped: Vec::new(), sent: 0 };
            let more = local.drain_to(now, &mut sink);
            (more, std::mem::take(&mut sink.dropped), sink.sent)
        };
        self.more_ready = more;
        if sent > 0 {
            self.last_traffic = now;
        }
        self.settle_dropped(dropped);
    }

    /// Messages the remote will never get (no outbound line names their topic now, or they
    /// are too large for it): acknowledged to the session, so they leave it, and counted.
    fn settle_dropped(&mut self, dropped: Vec<Option<midge_codec::PacketId>>) {
        for packet_id in dropped {
            if let Some(packet_id) = packet_id {
                self.local.acknowledge(packet_id);
                self.more_ready = true;
            }
            self.local.broker().stats().messages_dropped.add(1);
        }
    }

    /// When [`Link::check`] must next run: the idle timeout, or the stall timeout.
    fn next_check(&mut self, idle_timeout: Option<Duration>) -> Instant {
        let now = Instant::now();
        let backlog = self.client.write_backlog();
        if backlog < self.last_backlog || !self.local.holds_up_publishers() {
            self.last_progress = now;
        }
        self.last_backlog = backlog;
        let idle = idle_timeout.map(|timeout| self.last_traffic + timeout);
        // Looked at again within a stall timeout: publishers may come to be paced without the
        // link hearing of it.
        let recheck = now.checked_sub(self.stall_timeout / 2).unwrap_or(now);
        let stall = self.last_progress.max(recheck) + self.stall_timeout;
        [idle, Some(stall)].into_iter().flatten().min().unwrap_or(stall)
    }

    /// Whether the link ends for idleness or a stalled remote.
    fn check(&mut self, idle_timeout: Option<Duration>) -> Option<LinkEnd> {
        let now = Instant::now();
        if self.local.holds_up_publishers() && now >= self.last_progress + self.stall_timeout {
            return Some(LinkEnd::Lost(format!(
                "the remote took nothing for {} ms while local publishers waited on the bridge",
                self.stall_timeout.as_millis()
            )));
        }
        match idle_timeout {
            Some(timeout) if now >= self.last_traffic + timeout => Some(LinkEnd::Idle),
            _ => None,
        }
    }

    /// Hands the remote's `first` packet, and those already read after it, to the session as
    /// one read; sends its answers once the store has committed them; waits while a
    /// subscriber they reached is over its bound, as a publisher is paced.
    async fn relay_in(&mut self, first: Event) -> Result<(), LinkEnd> {
        let mut batch = ReadBatch::new();
        let mut out = BytesMut::new();
        let mut direct = Vec::new();
        let now = Instant::now();
        let mut next: Option<Result<Event, midge_client::Error>> = Some(Ok(first));
        let mut handled = 0;
        let mut ended = None;
        while let Some(event) = next.take() {
            match event {
                Ok(event) => {
                    if let Err(end) = self.hand_in(event, now, &mut batch, &mut out, &mut direct) {
                        ended = Some(end);
                        break;
                    }
                }
                Err(error) => {
                    ended = Some(LinkEnd::Lost(error.to_string()));
                    break;
                }
            }
            handled += 1;
            if handled < EVENT_BATCH {
                next = self.client.poll().now_or_never();
            }
        }
        self.local.broker().end_batch(&mut batch);
        let congestion = batch.take_congestion();
        let hold = self.local.take_hold();
        if let Some(end) = ended {
            return Err(end);
        }
        local::durable(self.writer.as_ref(), hold).await.map_err(LinkEnd::Local)?;
        for answer in local::answers(&mut out).into_iter().chain(direct) {
            if let Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) = answer {
                if let Err(error) = self.client.send(&answer) {
                    return Err(LinkEnd::Lost(error.to_string()));
                }
            }
        }
        if !congestion.is_empty() {
            self.wait_for_room(congestion).await;
        }
        Ok(())
    }

    /// One packet from the remote, for the session.
    fn hand_in(
        &mut self,
        event: Event,
        now: Instant,
        batch: &mut ReadBatch,
        out: &mut BytesMut,
        direct: &mut Vec<Packet>,
    ) -> Result<(), LinkEnd> {
        let packet = match event {
            Event::Message(publish) => {
                self.last_traffic = now;
                let Some(topic) = self.map.to_local(publish.topic.as_str()) else {
                    // Subscribed at the remote under an earlier config: acknowledged, not kept.
                    tracing::debug!(topic = %publish.topic, "bridge: a message no inbound topic line names: dropped");
                    self.local.broker().stats().messages_dropped.add(1);
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => direct.push(Packet::PubAck(PubResponse::success(id))),
                        (QoS::ExactlyOnce, Some(id)) => direct.push(Packet::PubRec(PubResponse::success(id))),
                        _ => {}
                    }
                    return Ok(());
                };
                Packet::Publish(local::publish_from_remote(*publish, topic))
            }
            Event::Relayed(packet) => {
                if let Packet::PubAck(_) | Packet::PubComp(_) | Packet::PubRec(_) = *packet {
                    self.more_ready = true;
                    self.last_progress = now;
                }
                *packet
            }
            Event::Subscribed(suback) => {
                for reason in suback.reasons.iter().filter(|reason| reason.is_error()) {
                    tracing::error!(%reason, "bridge: the remote refused a subscription");
                }
                return Ok(());
            }
            Event::Unsubscribed(_) | Event::Published { .. } | Event::Reconnected { .. } => return Ok(()),
        };
        match self.local.handle(packet, now, batch, out) {
            Ok(Flow::Continue) => Ok(()),
            Ok(Flow::Disconnect { .. }) => Err(LinkEnd::Local("the core ended the bridge's connection".into())),
            Err(violation) => Err(LinkEnd::Local(format!("the core refused the remote's packet: {violation}"))),
        }
    }

    /// Waits while subscribers the remote's messages reached are over their bound (the remote
    /// is not read meanwhile, as a publisher is paced), or until the slow-consumer policy has
    /// dealt with them.
    async fn wait_for_room(&mut self, congestion: Congestion) {
        let mut held_up = None;
        let Some(mut pacing) = Pacing::start(&self.local, congestion, &mut held_up) else { return };
        let client_id = Arc::clone(self.local.client_id());
        loop {
            pacing.arm();
            std::future::poll_fn(|cx| pacing.poll_room(cx)).await;
            if !pacing.recheck(&client_id) {
                return;
            }
        }
    }

    /// Brings the next batch of the session's queue back from the store when it asks for one
    /// (decision 0006).
    async fn read_back(&mut self) -> Result<(), String> {
        let Some(request) = self.local.read_back() else { return Ok(()) };
        if let Some(writer) = &self.writer {
            writer.durable(midge_store::Ticket(request.ticket().0)).await.map_err(|error| error.to_string())?;
        }
        let batch = tokio::task::spawn_blocking(move || request.read()).await.map_err(|error| error.to_string())?;
        self.local.append_read_back(batch).map_err(|error| error.to_string())?;
        self.more_ready = true;
        Ok(())
    }

    /// The link's parts, once it has ended.
    pub(super) fn into_parts(self) -> (Client, Connection) {
        (self.client, self.local)
    }
}
