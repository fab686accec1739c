//! The connection driver: one task per client that owns its socket, reads and decodes packets,
//! hands them to the broker core, and writes what the core produces.
//!
//! Once connected, the task waits on one poll of: socket readable, socket writable (while bytes
//! are pending), its session's wake-up, its kick (takeover, server shutdown), the keep alive
//! deadline, and while they are pending the store's commit and a paced subscriber's room. Writes
//! are batched: everything produced since the last write goes out in one `write` call. While
//! the write buffer is above [`WRITE_HIGH_WATER`] the task stops reading from the client and
//! stops draining its queue, so a client that does not read cannot grow the broker's memory:
//! its messages wait in its bounded session queue instead.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use midge_broker::session::{Session, Signal};
use midge_broker::{Broker, ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Flow, SlowConsumerPolicy};
use midge_codec::{decode_packet, encode_packet, ConnAck, DecodeError, Packet, ProtocolVersion, ReasonCode};
use midge_store::{DurableError, Ticket, WriterHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::read_size::ReadSize;

/// Bytes pending to a client above which the driver stops producing more for it.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection may take to flush its last packets (DISCONNECT, CONNACK).
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What a listener gives its connections; one `Arc` of it per connection task.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// Whether anonymous clients are allowed.
    pub allow_anonymous: bool,
    /// Server shutdown, watched by connections still before CONNECT (connected ones are
    /// kicked through their sessions: [`Broker::shut_down`]).
    pub shutdown: watch::Receiver<bool>,
}

/// Drives one client connection to its end.
///
/// The task's future is what every idle connection costs, so its long-lived part is kept
/// small: the CONNECT phase and the final flush are boxed (each lives only while it runs), and
/// the connected phase waits on one hand-written poll ([`ConnectedSignals`]) instead of a
/// `select!` that would keep a future per branch (docs/decisions/0004-idle-connection-memory.md).
pub async fn serve(mut stream: TcpStream, peer: SocketAddr, listener: Arc<ListenerContext>) {
    // Used in place, not destructured: moving the parts out would give them a second slot in
    // this future.
    let Some(mut accepted) = Box::pin(accept(&mut stream, peer, &listener)).await else {
        return;
    };
    let (how, reason) =
        run_connected(&mut accepted.connection, &mut stream, &mut accepted.rbuf, &mut accepted.wbuf).await;
    let Accepted { connection, mut wbuf, .. } = accepted;
    info!(%peer, client_id = %connection.client_id(), reason = %reason, "client disconnected");
    // Settle the session and the will before the socket closes, so a client that reconnects
    // as soon as it sees the close finds the session as this connection left it.
    connection.close(how, Instant::now());
    Box::pin(flush_and_close(&mut stream, &mut wbuf)).await;
}

/// A connection whose CONNECT was accepted, with the CONNACK (and any resent messages) in
/// `wbuf` and whatever followed the CONNECT in `rbuf`.
struct Accepted {
    connection: ClientConnection,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

/// The CONNECT phase: reads the first packet, in time, and hands it to the broker. Refusals
/// are answered and closed here; `None` means the connection is over.
async fn accept(stream: &mut TcpStream, peer: SocketAddr, listener: &ListenerContext) -> Option<Accepted> {
    let broker = &listener.broker;
    let mut shutdown = listener.shutdown.clone();
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let max_packet_size = broker.config().max_packet_size as usize;

    // The CONNECT must come first (MQTT-3.1.0-1), and in time.
    let connect_timeout = Duration::from_millis(broker.config().connect_timeout_ms);
    let first = tokio::select! {
        first = read_first_packet(stream, &mut rbuf, max_packet_size) => first,
        _ = tokio::time::sleep(connect_timeout) => {
            debug!(%peer, "no CONNECT in time, closing");
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    let connect = match first {
        Ok(Packet::Connect(connect)) => connect,
        Ok(other) => {
            info!(%peer, kind = other.kind(), "first packet is not CONNECT, closing (MQTT-3.1.0-1)");
            return None;
        }
        Err(FirstPacketError::Decode(DecodeError::UnsupportedProtocol { name, level, known_name })) => {
            info!(%peer, %name, level, "unsupported protocol version, refusing");
            if known_name {
                // MQTT-3.1.2-2: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close.
                let version = if level >= 5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
                let connack = ConnAck { reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, ..ConnAck::default() };
                let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
                flush_and_close(stream, &mut wbuf).await;
            }
            return None;
        }
        Err(FirstPacketError::Decode(error)) => {
            info!(%peer, %error, "malformed CONNECT, closing");
            return None;
        }
        Err(FirstPacketError::Io(error)) => {
            debug!(%peer, %error, "connection closed before CONNECT");
            return None;
        }
    };

    if rbuf.is_empty() {
        rbuf = BytesMut::new(); // the CONNECT's read buffer is not kept by an idle client
    }
    let version = connect.protocol;
    let clean_start = connect.clean_start;
    let requested_id = connect.client_id.to_string();
    let context = ConnectContext { peer: peer.to_string(), allow_anonymous: listener.allow_anonymous };
    let (mut connection, connack) = match broker.connect(connect, &context, Instant::now()) {
        ConnectOutcome::Accepted { connection, connack } => (connection, connack),
        ConnectOutcome::Refused { connack, reason } => {
            info!(%peer, client_id = %requested_id, code = %connack.reason, reason, "connection refused");
            let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
            flush_and_close(stream, &mut wbuf).await;
            return None;
        }
    };
    info!(
        %peer, client_id = %connection.client_id(), ?version, clean_start, keep_alive = connection.keep_alive(),
        session_present = connack.session_present, "client connected"
    );
    let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
    connection.resume(Instant::now(), &mut wbuf);
    Some(Accepted { connection: *connection, rbuf, wbuf })
}

/// What woke the connected phase; every signal that was ready in one poll, so that a busy
/// one (say, a subscriber's queue rung by every publisher) cannot starve the others.
#[derive(Default)]
struct ConnectedSignals {
    durable: Option<Result<Ticket, DurableError>>,
    kicked: Option<ReasonCode>,
    written: Option<std::io::Result<usize>>,
    woken: bool,
    room: bool,
    readable: Option<std::io::Result<()>>,
}

impl ConnectedSignals {
    fn any(&self) -> bool {
        self.durable.is_some()
            || self.kicked.is_some()
            || self.written.is_some()
            || self.woken
            || self.room
            || self.readable.is_some()
    }
}

/// The connected phase; returns how and why it ended, with any last packets in `wbuf`.
async fn run_connected(
    connection: &mut ClientConnection,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
) -> (CloseKind, String) {
    let kick = Arc::clone(connection.kick());
    let broker = connection.broker();
    let frames = FrameContext {
        version: connection.version(),
        max_packet_size: broker.config().max_packet_size as usize,
        writer: broker.journal().map(|journal| journal.writer().clone()),
    };
    let mut more_ready = true;
    let mut held = HeldResponses::default();
    let mut read_size = ReadSize::default();
    // Rarely active, so boxed while they are: an idle connection keeps a null pointer each.
    let mut pacing: Option<Box<Pacing>> = None;
    let mut durable = None;
    // The keep alive (MQTT-3.1.2-24) has no timer here: the broker sweeps every connection's
    // deadline and kicks the silent ones with 0x8D (midge_broker::keep_alive).

    loop {
        if more_ready && wbuf.len() < WRITE_HIGH_WATER {
            more_ready = connection.drain(Instant::now(), wbuf, WRITE_HIGH_WATER);
        }
        if durable.is_none() {
            if let (Some(ticket), Some(writer)) = (held.first_ticket(), &frames.writer) {
                durable = Some(Box::pin(wait_durable(writer.clone(), ticket)));
            }
        }
        if let Some(pacing) = pacing.as_mut() {
            pacing.arm();
        }
        let signals = std::future::poll_fn(|cx| {
            let mut signals = ConnectedSignals::default();
            if let Some(Poll::Ready(result)) = durable.as_mut().map(|wait| wait.as_mut().poll(cx)) {
                durable = None;
                signals.durable = Some(result);
            }
            match kick.poll_signal(cx) {
                Poll::Ready(Signal::Kicked(reason)) => signals.kicked = Some(reason),
                Poll::Ready(Signal::Work) => signals.woken = true,
                Poll::Pending => {}
            }
            if !wbuf.is_empty() {
                if let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, &wbuf[..]) {
                    signals.written = Some(written);
                }
            }
            match pacing.as_mut() {
                Some(pacing) => signals.room = pacing.poll_room(cx).is_ready(),
                None if wbuf.len() < WRITE_HIGH_WATER => {
                    if let Poll::Ready(readable) = stream.poll_read_ready(cx) {
                        signals.readable = Some(readable);
                    }
                }
                None => {}
            }
            if signals.any() {
                Poll::Ready(signals)
            } else {
                Poll::Pending
            }
        })
        .await;

        match signals.durable {
            Some(Ok(committed)) => held.release(committed, wbuf),
            Some(Err(error)) => {
                tracing::error!(%error, "the store failed: acknowledgements cannot be given");
                connection.write_disconnect(ReasonCode::UNSPECIFIED_ERROR, Some("storage failure"), wbuf);
                return (CloseKind::Abnormal, format!("store failed: {error}"));
            }
            None => {}
        }
        if let Some(reason) = signals.kicked {
            connection.write_disconnect(reason, None, wbuf);
            return match reason {
                ReasonCode::SESSION_TAKEN_OVER => (CloseKind::TakenOver, format!("kicked: {reason}")),
                ReasonCode::KEEP_ALIVE_TIMEOUT => (CloseKind::Abnormal, "keep alive timeout".to_owned()),
                ReasonCode::SERVER_SHUTTING_DOWN => (CloseKind::ServerShutdown, "server shutting down".to_owned()),
                _ => (CloseKind::Abnormal, format!("kicked: {reason}")),
            };
        }
        match signals.written {
            Some(Ok(0) | Err(_)) => return (CloseKind::Abnormal, "write failed".to_owned()),
            Some(Ok(n)) => {
                wbuf.advance(n);
                if wbuf.is_empty() {
                    *wbuf = BytesMut::new(); // an idle connection holds no write buffer
                }
            }
            None => {}
        }
        if signals.woken {
            more_ready = true;
        }
        if signals.room {
            // Not reading a paced client is our doing: its keep alive does not run meanwhile.
            connection.heard(Instant::now());
            let still_paced = pacing.as_mut().is_some_and(|pacing| pacing.recheck(connection.client_id()));
            if !still_paced {
                // Frames left buffered when pacing began come before any new read.
                if let Err(end) = process_frames(&frames, connection, rbuf, wbuf, &mut held) {
                    return end;
                }
                more_ready = true;
                pacing = Pacing::start(connection);
            }
        }
        match signals.readable {
            // Pacing may have begun above, from frames left buffered: then this read waits.
            Some(Ok(())) if pacing.is_none() => {
                // The buffer is allocated only once bytes are waiting, and dropped again when
                // every frame in it is decoded: an idle connection holds no read buffer.
                rbuf.reserve(read_size.room_for_next_read(rbuf, frames.max_packet_size));
                let offered = rbuf.capacity() - rbuf.len();
                match stream.try_read_buf(rbuf) {
                    Ok(0) => return (CloseKind::Abnormal, "connection closed by client".to_owned()),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(error) => return (CloseKind::Abnormal, format!("read error: {error}")),
                    Ok(got) => read_size.observe(got, offered),
                }
                if let Err(end) = process_frames(&frames, connection, rbuf, wbuf, &mut held) {
                    return end;
                }
                more_ready = true;
                pacing = Pacing::start(connection);
            }
            Some(Ok(())) => {}
            Some(Err(error)) => return (CloseKind::Abnormal, format!("read error: {error}")),
            None => {}
        }
    }
}

/// A paced client (DESIGN.md "Bounds and back-pressure"): the subscribers over their queue
/// bound that its last messages reached. While any is, the client is not read, for at most
/// `slow_consumer_timeout_ms` without progress; then the slow-consumer policy applies.
struct Pacing {
    broker: Arc<Broker>,
    subscribers: Vec<Arc<Session>>,
    deadline: tokio::time::Instant,
    /// The subscribers' summed progress when the deadline was set.
    progress: u64,
    /// The wait for the first subscriber's room or the deadline; rebuilt after each wake.
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Pacing {
    /// Starts pacing if the client's last packets found congested subscribers.
    fn start(connection: &mut ClientConnection) -> Option<Box<Self>> {
        let subscribers = connection.take_congested();
        if subscribers.is_empty() {
            return None;
        }
        let broker = Arc::clone(connection.broker());
        let progress = subscribers.iter().map(|s| s.progress()).sum();
        let deadline = tokio::time::Instant::now() + Self::timeout(&broker);
        Some(Box::new(Self { broker, subscribers, deadline, progress, wait: None }))
    }

    fn timeout(broker: &Broker) -> Duration {
        Duration::from_millis(broker.config().slow_consumer_timeout_ms)
    }

    /// Makes sure a wait is in place for the first subscriber still paced on.
    fn arm(&mut self) {
        if self.wait.is_none() {
            if let Some(first) = self.subscribers.first() {
                self.wait = Some(Box::pin(wait_for_room(Arc::clone(&self.broker), Arc::clone(first), self.deadline)));
            }
        }
    }

    /// `Ready` when the wait is over (room, or the deadline).
    fn poll_room(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let Some(wait) = self.wait.as_mut() else { return Poll::Pending };
        let ready = wait.as_mut().poll(cx);
        if ready.is_ready() {
            self.wait = None;
        }
        ready
    }

    /// After a wait: drops the subscribers that have room, applies the policy at the deadline
    /// to those that took nothing meanwhile, and says whether pacing goes on.
    fn recheck(&mut self, publisher: &str) -> bool {
        let broker = &*self.broker;
        self.subscribers.retain(|session| !session.has_room(broker.config()));
        if !self.subscribers.is_empty() && tokio::time::Instant::now() >= self.deadline {
            // The timeout is for subscribers that stopped consuming: one that consumed while
            // we waited is merely contended, and pacing goes on.
            let progress: u64 = self.subscribers.iter().map(|s| s.progress()).sum();
            if progress != self.progress {
                self.progress = progress;
                self.deadline = tokio::time::Instant::now() + Self::timeout(broker);
            } else {
                let disconnect = broker.config().slow_consumer_policy == SlowConsumerPolicy::Disconnect;
                for session in self.subscribers.drain(..) {
                    tracing::warn!(
                        %publisher, subscriber = %session.client_id(),
                        "slow consumer: queue still full after slow_consumer_timeout_ms, applying the policy"
                    );
                    session.shed(disconnect);
                }
            }
        }
        !self.subscribers.is_empty()
    }
}

/// What [`process_frames`] works with across calls: the connection's fixed settings.
struct FrameContext {
    version: ProtocolVersion,
    max_packet_size: usize,
    writer: Option<WriterHandle>,
}

/// Decodes and handles the complete frames in `rbuf`, writing responses into `wbuf` (holding
/// back those that wait for the store). Stops early, leaving the rest buffered, when a
/// PUBLISH found a subscriber over its queue bound: the client is paced between packets, so
/// one read of many small PUBLISHes cannot overshoot the bound. `Err` ends the connection.
fn process_frames(
    frames: &FrameContext,
    connection: &mut ClientConnection,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    held: &mut HeldResponses,
) -> Result<(), (CloseKind, String)> {
    let now = Instant::now();
    // Every subscriber this read's messages reach is woken once, when the batch ends, and its
    // lock is taken once for the batch's QoS 0 messages. Dropped in reverse order: deliveries
    // are flushed first, then the sessions they reached are woken.
    let _wakes = midge_broker::wake_batch::WakeBatch::begin();
    let _deliveries = midge_broker::delivery_batch::DeliveryBatch::begin(connection.broker());
    let mut heard = false;
    loop {
        match decode_packet(rbuf, frames.version, frames.max_packet_size) {
            Ok(Some(packet)) => {
                if !heard {
                    // A complete packet: the keep alive starts again (MQTT-3.1.2-24).
                    connection.heard(now);
                    heard = true;
                }
                let mark = wbuf.len();
                let handled = connection.handle(packet, now, wbuf);
                held.hold_back(connection.take_hold(), mark, wbuf, frames.writer.as_ref());
                match handled {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Disconnect { with_will }) => {
                        let how = if with_will { CloseKind::NormalWithWill } else { CloseKind::Normal };
                        return Err((how, "client sent DISCONNECT".to_owned()));
                    }
                    Err(violation) => {
                        connection.write_disconnect(violation.reason, Some(violation.detail), wbuf);
                        return Err((CloseKind::Abnormal, format!("protocol violation: {violation}")));
                    }
                }
                if connection.is_congested() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let detail = error.to_string();
                connection.write_disconnect(error.reason_code(), Some(&detail), wbuf);
                return Err((CloseKind::Abnormal, format!("bad packet: {detail}")));
            }
        }
    }
    if rbuf.is_empty() {
        *rbuf = BytesMut::new(); // an idle connection holds no read buffer
    }
    Ok(())
}

/// Responses that must not be sent before a store ticket is durable (an acknowledgement
/// promises that the message is stored), in the order they were written. Once one response
/// waits, every later response waits behind it, so acknowledgements keep their order.
#[derive(Debug, Default)]
struct HeldResponses {
    /// Allocated while responses wait and freed when none does: most connections never hold
    /// one (no persistence, or QoS 0), and an idle one should not keep the queue. Boxed so
    /// that the empty state costs one pointer in every connection's task, not four words.
    #[expect(clippy::box_collection, reason = "the Box is what keeps the idle connection small")]
    queue: Option<Box<std::collections::VecDeque<(Ticket, BytesMut)>>>,
}

impl HeldResponses {
    /// Moves what was written after `mark` out of `wbuf` into the queue if it must wait for
    /// `ticket`, or for responses already waiting.
    fn hold_back(&mut self, ticket: Option<Ticket>, mark: usize, wbuf: &mut BytesMut, writer: Option<&WriterHandle>) {
        let committed = writer.map_or(Ticket(0), WriterHandle::committed);
        let waiting = ticket.filter(|t| *t > committed);
        let ticket = match (waiting, self.queue.as_ref().and_then(|queue| queue.back())) {
            (None, None) => return,
            (Some(t), None) => t,
            (t, Some((last, _))) => t.map_or(*last, |t| t.max(*last)),
        };
        let bytes = wbuf.split_off(mark);
        if !bytes.is_empty() {
            self.queue.get_or_insert_with(Box::default).push_back((ticket, bytes));
        }
    }

    fn first_ticket(&self) -> Option<Ticket> {
        self.queue.as_ref().and_then(|queue| queue.front()).map(|(ticket, _)| *ticket)
    }

    /// Appends to `wbuf` every response whose ticket is now durable.
    fn release(&mut self, committed: Ticket, wbuf: &mut BytesMut) {
        let Some(queue) = self.queue.as_mut() else { return };
        while queue.front().is_some_and(|(ticket, _)| *ticket <= committed) {
            let (_, bytes) = queue.pop_front().expect("front exists");
            wbuf.extend_from_slice(&bytes);
        }
        if queue.is_empty() {
            self.queue = None;
        }
    }
}

/// Waits until `session` has room in its queue, or `until`.
///
/// # Cancel safety
/// Cancel safe: see [`midge_broker::session::Session::wait_for_room`].
async fn wait_for_room(broker: Arc<Broker>, session: Arc<Session>, until: tokio::time::Instant) {
    tokio::select! {
        _ = session.wait_for_room(broker.config()) => {}
        _ = tokio::time::sleep_until(until) => {}
    }
}

/// Waits until `ticket` is durable and returns the committed ticket.
///
/// # Cancel safety
/// Cancel safe: it only watches the writer's progress.
async fn wait_durable(writer: WriterHandle, ticket: Ticket) -> Result<Ticket, DurableError> {
    writer.durable(ticket).await?;
    Ok(writer.committed())
}

/// Why the first packet could not be read.
enum FirstPacketError {
    Decode(DecodeError),
    Io(std::io::Error),
}

/// Reads until one packet is complete.
async fn read_first_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Packet, FirstPacketError> {
    loop {
        // The version only matters for packets after CONNECT; CONNECT announces its own.
        match decode_packet(rbuf, ProtocolVersion::V311, max_packet_size) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(error) => return Err(FirstPacketError::Decode(error)),
        }
        rbuf.reserve(ReadSize::default().room_for_next_read(rbuf, max_packet_size));
        match reader.read_buf(rbuf).await {
            Ok(0) => return Err(FirstPacketError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof"))),
            Ok(_) => {}
            Err(error) => return Err(FirstPacketError::Io(error)),
        }
    }
}

/// Writes what is pending, bounded in time, then shuts the write side down.
async fn flush_and_close<W: AsyncWrite + Unpin>(writer: &mut W, wbuf: &mut BytesMut) {
    let flush = async {
        if !wbuf.is_empty() {
            writer.write_all(wbuf).await?;
        }
        writer.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await {
        debug!(%error, "error flushing a closing connection");
    }
    wbuf.clear();
}
