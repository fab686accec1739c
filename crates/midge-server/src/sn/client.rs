//! A client's task: its CONNECT, then the connected phase, which waits on the client's next
//! message, its session's wake-up and kick (takeover, shutdown, keep alive), and the
//! retransmission timer of the message awaiting the client's answer; then its end, which
//! settles the session and the will as for an MQTT client.

use std::sync::Arc;
use std::time::Instant;

use midge_broker::{ClientConnection, CloseKind, Signal};
use midge_codec::{PacketId, ReasonCode};
use midge_sn_codec::{Connect, Message};
use midge_store::WriterHandle;
use tokio::sync::mpsc;
use tracing::info;

use super::outbound::{Outbound, Step, Timeout};
use super::sleep::Sleep;
use super::topics::TopicRegistry;
use super::{connect, Link, Peer, Shared};
use crate::conn::pacing::{HeldUp, Pacing};
use crate::conn::ListenerContext;
use crate::limits::SN_TOPIC_IDS;

/// How a connected phase ended: how the session and will are settled, why (for the log), and
/// the CONNECT that replaces the connection, if that is why.
pub(super) type Ending = (CloseKind, String, Option<Connect>);

/// Serves the client at `link` from its first CONNECT until it is gone, and gives its channel
/// back (what is still sent to it goes back to the reader). A CONNECT from the same address
/// while connected starts a new connection in the same task.
pub(super) async fn serve(
    first: Connect,
    link: Link,
    mut inbox: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    context: Arc<ListenerContext>,
) -> mpsc::Receiver<Message> {
    let mut next = Some(first);
    while let Some(connect) = next.take() {
        let Some(connection) = connect::accept(connect, &link, &mut inbox, &context).await else { break };
        let mut client = Client::new(link.clone(), Arc::clone(&shared), context.store.clone(), connection);
        client.cluster = context.cluster.clone();
        // In the listener's roster while connected: a reload that removes the listener kicks it.
        let member = context.roster.join(client.connection.kick());
        // A persistent session on a node of a cluster gets its QoS 1/2 messages from JetStream
        // while its client is here.
        let feed = context.cluster.as_deref().and_then(|cluster| cluster.feed(&client.connection));
        let (how, reason, again) = client.run(&mut inbox).await;
        drop(feed);
        drop(member);
        info!(peer = %link.peer, client_id = %client.connection.client_id(), %reason, "client disconnected");
        client.connection.close(how, Instant::now());
        next = again;
    }
    inbox
}

/// A connected client: its connection to the core and what the gateway keeps for it.
pub(super) struct Client {
    pub(super) link: Link,
    pub(super) shared: Arc<Shared>,
    /// The store's writer, whose commits release acknowledgements; `None` without persistence.
    pub(super) writer: Option<WriterHandle>,
    pub(super) connection: Connection,
    /// Its normal topic ids.
    pub(super) topics: TopicRegistry,
    /// What is on its way to it.
    pub(super) outbound: Outbound,
    /// The MsgIds of its last QoS 1 PUBLISHes, to acknowledge a retransmission (DUP) of one
    /// already published without publishing it again.
    pub(super) recent_qos1: RecentIds,
    /// Whether its session may have more to send.
    more_ready: bool,
    /// The subscribers over their bound its last PUBLISH reached: while any is, its messages
    /// wait in its channel unread (beyond [`SN_INBOX`](crate::limits::SN_INBOX) they are
    /// dropped, and its retransmissions bring them again), as a TCP publisher is not read.
    pub(super) pacing: Option<Box<Pacing>>,
    /// How long it has been paced across pauses (decision 0005).
    held_up: Option<Box<HeldUp>>,
    /// Its sleep, while it sleeps (6.14).
    pub(super) sleep: Option<Sleep>,
    /// The node's cluster, when it is one: what the client's packets need of it before their
    /// answers go out (`Cluster::settle`).
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The core's connection, boxed as `ClientConnection::accept` gives it.
pub(super) type Connection = Box<ClientConnection>;

impl Client {
    fn new(link: Link, shared: Arc<Shared>, writer: Option<WriterHandle>, mut connection: Connection) -> Self {
        let settings = &shared.settings;
        let mut outbound = Outbound::new(settings.retry_interval, settings.retry_count);
        // A persistent session's unacknowledged messages go first (MQTT-4.4.0-1).
        connection.resume_to(Instant::now(), &mut outbound.egress());
        // A resumed session's topic ids (decision 0008): the same topic, the same id.
        let topics = TopicRegistry::resumed(connection.topic_ids(), SN_TOPIC_IDS);
        Self {
            link,
            shared,
            writer,
            connection,
            topics,
            outbound,
            recent_qos1: RecentIds::default(),
            more_ready: true,
            pacing: None,
            held_up: None,
            sleep: None,
            cluster: None,
        }
    }

    /// The connected phase, until the client leaves, is lost, or is told to go.
    async fn run(&mut self, inbox: &mut mpsc::Receiver<Message>) -> Ending {
        let kick = Arc::clone(self.connection.kick());
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            let deadline = self.timer().map(tokio::time::Instant::from_std);
            if self.pacing.is_some() {
                if let Some(end) = self.paced(&kick, deadline).await {
                    return end;
                }
                continue;
            }
            tokio::select! {
                message = inbox.recv() => match message {
                    Some(message) => {
                        if let Some(end) = self.handle(message).await {
                            return end;
                        }
                    }
                    // The listener closed (the server is shutting down): its clients end as at
                    // shutdown, told so, their sessions kept.
                    None => {
                        self.link.send(&Message::Disconnect { duration: None }).await;
                        return (CloseKind::ServerShutdown, "listener closed".to_owned(), None);
                    }
                },
                signal = std::future::poll_fn(|cx| kick.poll_signal(cx)) => match signal {
                    Signal::Work => self.more_ready = true,
                    Signal::Kicked(reason) => return self.kicked(reason).await,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if let Some(end) = self.timer_ran_out().await {
                        return end;
                    }
                }
            }
        }
    }

    /// When the client must next be heard from: the end of its sleep while it sleeps, Tretry
    /// of the message awaiting its answer otherwise.
    fn timer(&self) -> Option<Instant> {
        if self.is_sleeping() {
            self.sleep_deadline()
        } else {
            self.outbound.deadline()
        }
    }

    /// The [`timer`](Self::timer) ran out.
    async fn timer_ran_out(&mut self) -> Option<Ending> {
        match self.sleep_deadline() {
            Some(deadline) if self.is_sleeping() => {
                // 6.14: not heard from within its sleep: lost, as at keep alive expiry.
                (Instant::now() >= deadline).then(|| (CloseKind::Abnormal, "slept past its duration".to_owned(), None))
            }
            _ => self.retry().await,
        }
    }

    /// One wait while the client is paced: for the subscribers' room, the session's signals and
    /// Tretry, not for the client's messages. Its keep alive does not run meanwhile: not reading
    /// it is the broker's doing.
    async fn paced(
        &mut self,
        kick: &Arc<midge_broker::Kick>,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Ending> {
        let client_id = Arc::clone(self.connection.client_id());
        let pacing = self.pacing.as_mut()?;
        pacing.arm();
        self.connection.pause_keep_alive();
        let room = std::future::poll_fn(|cx| pacing.poll_room(cx));
        tokio::select! {
            () = room => {
                self.connection.heard(Instant::now());
                if !self.pacing.as_mut().is_some_and(|pacing| pacing.recheck(&client_id)) {
                    self.held_up = self.pacing.take().and_then(|done| (*done).finish());
                }
            }
            signal = std::future::poll_fn(|cx| kick.poll_signal(cx)) => match signal {
                Signal::Work => self.more_ready = true,
                Signal::Kicked(reason) => return Some(self.kicked(reason).await),
            },
            _ = sleep_until(deadline), if deadline.is_some() => return self.timer_ran_out().await,
        }
        None
    }

    /// Tretry ran out: the outstanding message is sent again, or the client is lost (6.13).
    async fn retry(&mut self) -> Option<Ending> {
        match self.outbound.on_timeout(Instant::now()) {
            Timeout::Resend(message) => self.link.send(&message).await,
            Timeout::Lost => {
                let retries = self.shared.settings.retry_count;
                return Some((CloseKind::Abnormal, format!("no answer after {retries} retransmissions"), None));
            }
            Timeout::NotDue => {}
        }
        None
    }

    /// Starts pacing the client for the congestion its last read ran into.
    pub(super) fn pace(&mut self, congestion: midge_broker::Congestion) {
        if !congestion.is_empty() && self.pacing.is_none() {
            self.pacing = Pacing::start(&self.connection, congestion, &mut self.held_up);
        }
    }

    /// Told to close by the broker: the client is told too (DISCONNECT), unless it went silent.
    async fn kicked(&mut self, reason: ReasonCode) -> Ending {
        let how = match reason {
            ReasonCode::KEEP_ALIVE_TIMEOUT => return (CloseKind::Abnormal, "keep alive timeout".to_owned(), None),
            ReasonCode::SESSION_TAKEN_OVER => CloseKind::TakenOver,
            ReasonCode::SERVER_SHUTTING_DOWN => CloseKind::ServerShutdown,
            _ => CloseKind::Abnormal,
        };
        self.link.send(&Message::Disconnect { duration: None }).await;
        (how, format!("kicked: {reason}"), None)
    }

    /// Takes what the session has ready while the line has room, and sends what can go now.
    /// `Err` ends the connection: the session's queue could not be read back from the store.
    async fn flush(&mut self) -> Result<(), Ending> {
        if self.is_sleeping() {
            return Ok(());
        }
        loop {
            self.read_back().await?;
            if self.more_ready && self.outbound.has_room() {
                self.more_ready = self.connection.drain_to(Instant::now(), &mut self.outbound.egress());
            }
            let mut sent = false;
            loop {
                let step = self.outbound.next(&mut self.topics, &self.shared.predefined, Instant::now());
                match step {
                    Step::Send(message) => {
                        // A REGISTER's new id is the session's before the client learns it.
                        self.record_topic_ids().await?;
                        self.link.send(&message).await;
                        sent = true;
                    }
                    Step::Dropped(packet_id) => {
                        self.dropped(packet_id, "its topic would need an id beyond SN_TOPIC_IDS")
                    }
                    Step::Idle => break,
                }
            }
            if !(sent && self.more_ready && self.outbound.has_room()) {
                self.woken(Instant::now()).await;
                return Ok(());
            }
        }
    }

    /// Records the topic ids assigned since the last call with the session (decision 0008), and
    /// waits until the store has them: a client is told an id (REGACK, SUBACK, REGISTER) only
    /// once a restart cannot give it to another topic. `Err` ends the connection: the store
    /// failed.
    pub(super) async fn record_topic_ids(&mut self) -> Result<(), Ending> {
        let mut ticket = None;
        for (id, name) in self.topics.take_new() {
            ticket = ticket.max(self.connection.record_topic_id(id, name));
        }
        if let (Some(ticket), Some(writer)) = (ticket, self.writer.as_ref()) {
            if let Err(error) = writer.durable(midge_store::Ticket(ticket.0)).await {
                tracing::error!(%error, "the store failed: topic ids cannot be given");
                return Err((CloseKind::Abnormal, format!("store failed: {error}"), None));
            }
        }
        Ok(())
    }

    /// Whether the session may have more to send.
    pub(super) fn more_ready(&self) -> bool {
        self.more_ready
    }

    /// Brings the next batch of a spilled session's queue back from the store when the session
    /// asks for one (decision 0006): once the store has committed it, read on a blocking thread
    /// (the read may wait on the disk), while this client waits.
    async fn read_back(&mut self) -> Result<(), Ending> {
        let Some(request) = self.connection.read_back() else { return Ok(()) };
        let read = async {
            if let Some(writer) = &self.writer {
                writer.durable(midge_store::Ticket(request.ticket().0)).await.map_err(|error| error.to_string())?;
            }
            tokio::task::spawn_blocking(move || request.read()).await.map_err(|error| error.to_string())
        };
        let appended = match read.await {
            Ok(batch) => self.connection.append_read_back(batch).map_err(|error| error.to_string()),
            Err(error) => Err(error),
        };
        match appended {
            Ok(_) => {
                self.more_ready = true;
                Ok(())
            }
            Err(error) => {
                tracing::error!(client_id = %self.connection.client_id(), %error, "reading the offline queue back failed");
                Err((CloseKind::Abnormal, format!("store read failed: {error}"), None))
            }
        }
    }

    /// A message the gateway gives up on before the client has it: it leaves the session's
    /// window (a QoS 1 or 2 one is acknowledged for the client), and is counted as dropped.
    pub(super) fn dropped(&mut self, packet_id: Option<PacketId>, why: &str) {
        if let Some(packet_id) = packet_id {
            self.connection.acknowledge(packet_id);
            self.more_ready = true;
        }
        self.connection.broker().stats().messages_dropped.add(1);
        tracing::debug!(client_id = %self.connection.client_id(), why, "mqtt-sn: message to the client dropped");
    }

    /// Marks the session as possibly having more to send (an acknowledgement freed its window).
    pub(super) fn window_freed(&mut self) {
        self.more_ready = true;
    }

    /// The client's address.
    pub(super) fn peer(&self) -> &Peer {
        &self.link.peer
    }
}

/// Sleeps until `deadline`; forever without one (its `select!` branch is off then).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The last few MsgIds of a client's QoS 1 PUBLISHes. A client has one outstanding at a time
/// (6.13), so a retransmission repeats one of the last; eight cover a few lost PUBACKs in a
/// row.
#[derive(Debug, Default)]
pub(super) struct RecentIds {
    ids: [Option<u16>; 8],
    next: usize,
}

impl RecentIds {
    /// Whether `id` is one of the last.
    pub(super) fn contains(&self, id: u16) -> bool {
        self.ids.contains(&Some(id))
    }

    /// Records `id`.
    pub(super) fn push(&mut self, id: u16) {
        self.ids[self.next] = Some(id);
        self.next = (self.next + 1) % self.ids.len();
    }
}
