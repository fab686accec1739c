//! The connection driver: one task per client that owns its socket, reads and decodes packets,
//! hands them to the broker core, and writes what the core produces.
//!
//! The task `select!`s over: socket readable, socket writable (while bytes are pending), its
//! session's wake-up, its kick (takeover), the keep alive deadline and server shutdown. Writes
//! are batched: everything produced since the last write goes out in one `write` call. While
//! the write buffer is above [`WRITE_HIGH_WATER`] the task stops reading from the client and
//! stops draining its queue, so a client that does not read cannot grow the broker's memory:
//! its messages wait in its bounded session queue instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use midge_broker::session::Session;
use midge_broker::{Broker, ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Flow};
use midge_codec::{decode_packet, encode_packet, ConnAck, DecodeError, Packet, ProtocolVersion, ReasonCode};
use midge_store::{DurableError, Ticket, WriterHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::read_size::ReadSize;

/// Bytes pending to a client above which the driver stops producing more for it.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection may take to flush its last packets (DISCONNECT, CONNACK).
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What a listener tells its connections.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// Whether anonymous clients are allowed.
    pub allow_anonymous: bool,
}

/// Drives one client connection to its end.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: Arc<ListenerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let max_packet_size = broker.config().max_packet_size as usize;

    // Phase 1: the CONNECT must come first (MQTT-3.1.0-1), and in time.
    let connect_timeout = Duration::from_millis(broker.config().connect_timeout_ms);
    let first = tokio::select! {
        first = read_first_packet(&mut reader, &mut rbuf, max_packet_size) => first,
        _ = tokio::time::sleep(connect_timeout) => {
            debug!(%peer, "no CONNECT in time, closing");
            return;
        }
        _ = shutdown.changed() => return,
    };
    let connect = match first {
        Ok(Packet::Connect(connect)) => connect,
        Ok(other) => {
            info!(%peer, kind = other.kind(), "first packet is not CONNECT, closing (MQTT-3.1.0-1)");
            return;
        }
        Err(FirstPacketError::Decode(DecodeError::UnsupportedProtocol { name, level, known_name })) => {
            info!(%peer, %name, level, "unsupported protocol version, refusing");
            if known_name {
                // MQTT-3.1.2-2: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close.
                let version = if level >= 5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
                let connack = ConnAck { reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, ..ConnAck::default() };
                let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
                flush_and_close(&mut writer, &mut wbuf).await;
            }
            return;
        }
        Err(FirstPacketError::Decode(error)) => {
            info!(%peer, %error, "malformed CONNECT, closing");
            return;
        }
        Err(FirstPacketError::Io(error)) => {
            debug!(%peer, %error, "connection closed before CONNECT");
            return;
        }
    };

    if rbuf.is_empty() {
        rbuf = BytesMut::new(); // the CONNECT's read buffer is not kept by an idle client
    }
    let version = connect.protocol;
    let clean_start = connect.clean_start;
    let requested_id = connect.client_id.to_string();
    let context = ConnectContext { peer: peer.to_string(), allow_anonymous: listener.allow_anonymous };
    let (mut connection, connack) = match broker.connect(connect, &context) {
        ConnectOutcome::Accepted { connection, connack } => (connection, connack),
        ConnectOutcome::Refused { connack, reason } => {
            info!(%peer, client_id = %requested_id, code = %connack.reason, reason, "connection refused");
            let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
            flush_and_close(&mut writer, &mut wbuf).await;
            return;
        }
    };
    let client_id = Arc::clone(connection.client_id());
    info!(
        %peer, %client_id, ?version, clean_start, keep_alive = connection.keep_alive(),
        session_present = connack.session_present, "client connected"
    );
    let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
    connection.resume(Instant::now(), &mut wbuf);

    let (how, reason) =
        run_connected(&mut connection, &mut reader, &mut writer, &mut rbuf, &mut wbuf, max_packet_size, &mut shutdown)
            .await;
    // Settle the session and the will before the socket closes, so a client that reconnects
    // as soon as it sees the close finds the session as this connection left it.
    connection.close(how, Instant::now());
    flush_and_close(&mut writer, &mut wbuf).await;
    info!(%peer, %client_id, reason = %reason, "client disconnected");
}

/// The connected phase; returns how and why it ended, with any last packets in `wbuf`.
async fn run_connected(
    connection: &mut ClientConnection,
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    max_packet_size: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> (CloseKind, String) {
    let version = connection.version();
    let session = Arc::clone(connection.session());
    let kick = Arc::clone(connection.kick());
    // MQTT-3.1.2-24: one and a half times the keep alive without a packet closes the connection.
    let keep_alive = match connection.keep_alive() {
        0 => None,
        secs => Some(Duration::from_millis(u64::from(secs) * 1500)),
    };
    let far_future = Duration::from_secs(86_400 * 365);
    let mut more_ready = true;
    let writer_handle = connection.broker().journal().map(|journal| journal.writer().clone());
    let mut frames = FrameContext {
        version,
        max_packet_size,
        keep_alive,
        writer: writer_handle.clone(),
        deadline: tokio::time::Instant::now() + keep_alive.unwrap_or(far_future),
    };
    let mut held = HeldResponses::default();
    let mut read_size = ReadSize::default();
    let broker = Arc::clone(connection.broker());
    // Subscribers over their queue bound that this client published to: while any is, this
    // client is not read (pacing, DESIGN.md "Bounds and back-pressure"), for at most
    // slow_consumer_timeout_ms.
    let mut paced: Vec<Arc<Session>> = Vec::new();
    let mut pace_deadline = tokio::time::Instant::now();
    let mut pace_progress = 0u64;
    let pace_timeout = Duration::from_millis(broker.config().slow_consumer_timeout_ms);
    // One timer for the keep alive, re-armed only when it fires early: packets move
    // `frames.deadline` without touching the timer, so a busy connection does not register a
    // timer per packet.
    let keep_alive_timer = tokio::time::sleep_until(frames.deadline);
    tokio::pin!(keep_alive_timer);

    loop {
        if more_ready && wbuf.len() < WRITE_HIGH_WATER {
            more_ready = connection.drain(Instant::now(), wbuf, WRITE_HIGH_WATER);
        }
        let room = wbuf.len() < WRITE_HIGH_WATER;
        // Rarely active, so boxed only when they are: an idle connection's task stays small.
        let pacing =
            only_if(paced.first().map(|s| Box::pin(wait_for_room(Arc::clone(&broker), Arc::clone(s), pace_deadline))));
        let durable = only_if(
            held.first_ticket()
                .zip(writer_handle.clone())
                .map(|(ticket, writer)| Box::pin(wait_durable(writer, ticket))),
        );
        tokio::select! {
            durable = durable => match durable {
                Ok(committed) => held.release(committed, wbuf),
                Err(error) => {
                    tracing::error!(%error, "the store failed: acknowledgements cannot be given");
                    connection.write_disconnect(ReasonCode::UNSPECIFIED_ERROR, Some("storage failure"), wbuf);
                    return (CloseKind::Abnormal, format!("store failed: {error}"));
                }
            },
            reason = kick.kicked() => {
                connection.write_disconnect(reason, None, wbuf);
                let how = if reason == ReasonCode::SESSION_TAKEN_OVER { CloseKind::TakenOver } else { CloseKind::Abnormal };
                return (how, format!("kicked: {reason}"));
            }
            _ = shutdown.changed() => {
                connection.write_disconnect(ReasonCode::SERVER_SHUTTING_DOWN, None, wbuf);
                return (CloseKind::ServerShutdown, "server shutting down".to_owned());
            }
            _ = &mut keep_alive_timer, if keep_alive.is_some() => {
                if frames.deadline > tokio::time::Instant::now() {
                    keep_alive_timer.as_mut().reset(frames.deadline);
                    continue;
                }
                connection.write_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT, Some("keep alive timeout"), wbuf);
                return (CloseKind::Abnormal, "keep alive timeout".to_owned());
            }
            written = writer.write(&wbuf[..]), if !wbuf.is_empty() => match written {
                Ok(0) | Err(_) => return (CloseKind::Abnormal, "write failed".to_owned()),
                Ok(n) => {
                    wbuf.advance(n);
                    if wbuf.is_empty() {
                        *wbuf = BytesMut::new(); // an idle connection holds no write buffer
                    }
                }
            },
            _ = session.woken(), if room => more_ready = true,
            _ = pacing => {
                paced.retain(|session| !session.has_room(broker.config()));
                if !paced.is_empty() && tokio::time::Instant::now() >= pace_deadline {
                    // The timeout is for subscribers that stopped consuming: one that consumed
                    // while we waited is merely contended, and pacing goes on.
                    let progress: u64 = paced.iter().map(|s| s.progress()).sum();
                    if progress != pace_progress {
                        pace_progress = progress;
                        pace_deadline = tokio::time::Instant::now() + pace_timeout;
                        continue;
                    }
                    let disconnect = broker.config().slow_consumer_policy == midge_broker::SlowConsumerPolicy::Disconnect;
                    for session in paced.drain(..) {
                        tracing::warn!(
                            publisher = %connection.client_id(), subscriber = %session.client_id(),
                            "slow consumer: queue still full after slow_consumer_timeout_ms, applying the policy"
                        );
                        session.shed(disconnect);
                    }
                }
                if paced.is_empty() {
                    if let Some(keep_alive) = keep_alive {
                        // Not reading was our doing: the client's keep alive starts again.
                        frames.deadline = tokio::time::Instant::now() + keep_alive;
                    }
                    // Frames left buffered when pacing began come before any new read.
                    if let Err(end) = process_frames(&mut frames, connection, rbuf, wbuf, &mut held) {
                        return end;
                    }
                    more_ready = true;
                    start_pacing(connection, &mut paced, &mut pace_deadline, pace_timeout, &mut pace_progress);
                }
            }
            readable = reader.readable(), if room && paced.is_empty() => {
                if let Err(error) = readable {
                    return (CloseKind::Abnormal, format!("read error: {error}"));
                }
                // The buffer is allocated only once bytes are waiting, and dropped again when
                // every frame in it is decoded: an idle connection holds no read buffer.
                rbuf.reserve(read_size.room_for_next_read(rbuf, max_packet_size));
                let offered = rbuf.capacity() - rbuf.len();
                match reader.try_read_buf(rbuf) {
                    Ok(0) => return (CloseKind::Abnormal, "connection closed by client".to_owned()),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(error) => return (CloseKind::Abnormal, format!("read error: {error}")),
                    Ok(got) => read_size.observe(got, offered),
                }
                if let Err(end) = process_frames(&mut frames, connection, rbuf, wbuf, &mut held) {
                    return end;
                }
                more_ready = true;
                start_pacing(connection, &mut paced, &mut pace_deadline, pace_timeout, &mut pace_progress);
            }
        }
    }
}

/// What [`process_frames`] works with across calls: the connection's fixed settings and its
/// keep alive deadline.
struct FrameContext {
    version: ProtocolVersion,
    max_packet_size: usize,
    keep_alive: Option<Duration>,
    writer: Option<WriterHandle>,
    /// When the keep alive runs out; every complete packet moves it.
    deadline: tokio::time::Instant,
}

/// Decodes and handles the complete frames in `rbuf`, writing responses into `wbuf` (holding
/// back those that wait for the store). Stops early, leaving the rest buffered, when a
/// PUBLISH found a subscriber over its queue bound: the client is paced between packets, so
/// one read of many small PUBLISHes cannot overshoot the bound. `Err` ends the connection.
fn process_frames(
    frames: &mut FrameContext,
    connection: &mut ClientConnection,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    held: &mut HeldResponses,
) -> Result<(), (CloseKind, String)> {
    let now = Instant::now();
    // Every subscriber this read's messages reach is woken once, when the batch ends.
    let _wakes = midge_broker::wake_batch::WakeBatch::begin();
    loop {
        match decode_packet(rbuf, frames.version, frames.max_packet_size) {
            Ok(Some(packet)) => {
                if let Some(keep_alive) = frames.keep_alive {
                    frames.deadline = tokio::time::Instant::now() + keep_alive;
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

/// Starts pacing this client if its last packets found congested subscribers.
fn start_pacing(
    connection: &mut ClientConnection,
    paced: &mut Vec<Arc<Session>>,
    pace_deadline: &mut tokio::time::Instant,
    pace_timeout: Duration,
    pace_progress: &mut u64,
) {
    let congested = connection.take_congested();
    if !congested.is_empty() {
        *pace_progress = congested.iter().map(|s| s.progress()).sum();
        *paced = congested;
        *pace_deadline = tokio::time::Instant::now() + pace_timeout;
    }
}

/// Responses that must not be sent before a store ticket is durable (an acknowledgement
/// promises that the message is stored), in the order they were written. Once one response
/// waits, every later response waits behind it, so acknowledgements keep their order.
#[derive(Debug, Default)]
struct HeldResponses {
    queue: std::collections::VecDeque<(Ticket, BytesMut)>,
}

impl HeldResponses {
    /// Moves what was written after `mark` out of `wbuf` into the queue if it must wait for
    /// `ticket`, or for responses already waiting.
    fn hold_back(&mut self, ticket: Option<Ticket>, mark: usize, wbuf: &mut BytesMut, writer: Option<&WriterHandle>) {
        let committed = writer.map_or(Ticket(0), WriterHandle::committed);
        let waiting = ticket.filter(|t| *t > committed);
        let ticket = match (waiting, self.queue.back()) {
            (None, None) => return,
            (Some(t), None) => t,
            (t, Some((last, _))) => t.map_or(*last, |t| t.max(*last)),
        };
        let bytes = wbuf.split_off(mark);
        if !bytes.is_empty() {
            self.queue.push_back((ticket, bytes));
        }
    }

    fn first_ticket(&self) -> Option<Ticket> {
        self.queue.front().map(|(ticket, _)| *ticket)
    }

    /// Appends to `wbuf` every response whose ticket is now durable.
    fn release(&mut self, committed: Ticket, wbuf: &mut BytesMut) {
        while self.queue.front().is_some_and(|(ticket, _)| *ticket <= committed) {
            let (_, bytes) = self.queue.pop_front().expect("front exists");
            wbuf.extend_from_slice(&bytes);
        }
    }
}

/// Runs `future` if there is one; otherwise never completes (a disabled `select!` branch whose
/// inactive state costs one pointer).
async fn only_if<F: std::future::Future>(future: Option<std::pin::Pin<Box<F>>>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
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
