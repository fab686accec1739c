//! The connected phase: one hand-written poll over every signal a connection waits on, and each
//! read's packets handled as one read batch.
//!
//! The task waits on: the transport readable, the transport writable (while bytes are
//! pending), its session's wake-up and its kick (takeover, server shutdown, keep alive), and
//! while they are pending the store's commit and a paced subscriber's room. Writes are batched:
//! everything produced since the last write goes out in one `write` call. While the write
//! buffer is above [`WRITE_HIGH_WATER`] the task stops reading from the client and stops
//! draining its queue.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use midge_broker::ports::durability::Ticket;
use midge_broker::{ClientConnection, CloseKind, Congestion, Flow, ReadBack, ReadBackBatch, ReadBatch, Signal};
use midge_codec::{decode_packet, ProtocolVersion, ReasonCode};
use midge_store::{DurableError, WriterHandle};

use super::held::{wait_durable, HeldResponses};
use super::inbound_rate::ReadGates;
use super::pacing::Pacing;
use crate::limits::WRITE_HIGH_WATER;
use crate::read_size::ReadSize;
use crate::transport::Transport;

/// What woke the connected phase; every signal that was ready in one poll, so that a busy
/// one (say, a subscriber's queue rung by every publisher) cannot starve the others.
#[derive(Default)]
struct ConnectedSignals {
    durable: Option<Result<Ticket, DurableError>>,
    kicked: Option<ReasonCode>,
    written: Option<std::io::Result<usize>>,
    woken: bool,
    room: bool,
    /// A client held back for its inbound rate, or while the store's writer was behind, may
    /// be read again.
    gates_open: bool,
    read_back: Option<Result<ReadBackBatch, String>>,
    readable: Option<std::io::Result<()>>,
}

impl ConnectedSignals {
    fn any(&self) -> bool {
        self.durable.is_some()
            || self.kicked.is_some()
            || self.written.is_some()
            || self.woken
            || self.room
            || self.gates_open
            || self.read_back.is_some()
            || self.readable.is_some()
    }
}

/// A batch of the offline queue on its way from the store, or why it could not be read.
type PendingReadBack = Pin<Box<dyn Future<Output = Result<ReadBackBatch, String>> + Send>>;

/// How a connection ended, and why (for the log).
pub(super) type Ending = (CloseKind, String);

/// The connected phase; returns how and why it ended, with any last packets in `wbuf`.
pub(super) async fn run_connected<T: Transport>(
    connection: &mut ClientConnection,
    stream: &mut T,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    store: Option<&WriterHandle>,
    cluster: Option<&crate::cluster::Cluster>,
) -> Ending {
    let kick = std::sync::Arc::clone(connection.kick());
    let frames = FrameContext {
        version: connection.version(),
        max_packet_size: connection.broker().limits().max_packet_size as usize,
        writer: store.cloned(),
    };
    let mut more_ready = true;
    let mut held = HeldResponses::default();
    let mut read_size = ReadSize::default();
    let mut gates = Gates { pacing: None, read: ReadGates::for_limits(connection.broker().limits(), Instant::now()) };
    let mut durable = None;
    // A batch of the session's offline queue being read back from the store (decision 0006).
    let mut read_back: Option<PendingReadBack> = None;
    // The keep alive (MQTT-3.1.2-24) has no timer here: the broker sweeps every connection's
    // deadline and kicks the silent ones with 0x8D.

    loop {
        if more_ready && wbuf.len() < WRITE_HIGH_WATER {
            more_ready = connection.drain(Instant::now(), wbuf, WRITE_HIGH_WATER);
        }
        if durable.is_none() {
            if let (Some(ticket), Some(writer)) = (held.first_ticket(), &frames.writer) {
                durable = Some(Box::pin(wait_durable(writer.clone(), ticket)));
            }
        }
        if read_back.is_none() {
            if let Some(request) = connection.read_back() {
                read_back = Some(Box::pin(read_back_batch(request, frames.writer.clone())));
            }
        }
        if let Some(pacing) = gates.pacing.as_mut() {
            pacing.arm();
        }
        if gates.pacing.is_some() || ReadGates::is_closed(&gates.read) {
            // Not read by the broker's choice: its keep alive waits until it is read again
            // (every gate's end records it as heard).
            connection.pause_keep_alive();
        }
        let signals = std::future::poll_fn(|cx| {
            let mut signals = ConnectedSignals::default();
            if let Some(Poll::Ready(result)) = durable.as_mut().map(|wait| wait.as_mut().poll(cx)) {
                durable = None;
                signals.durable = Some(result);
            }
            if let Some(Poll::Ready(batch)) = read_back.as_mut().map(|read| read.as_mut().poll(cx)) {
                read_back = None;
                signals.read_back = Some(batch);
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
            let gated = ReadGates::is_closed(&gates.read);
            if gated {
                signals.gates_open = ReadGates::poll_open(&mut gates.read, cx).is_ready();
            }
            match gates.pacing.as_mut() {
                Some(pacing) => signals.room = pacing.poll_room(cx).is_ready(),
                None if wbuf.len() < WRITE_HIGH_WATER && !gated => {
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

        // First what was written: every way out below flushes `wbuf`, which must not send
        // those bytes a second time (a second CONNACK, a duplicate PUBLISH).
        match signals.written {
            Some(Ok(0) | Err(_)) => return (CloseKind::Abnormal, "write failed".to_owned()),
            Some(Ok(n)) => {
                connection.broker().stats().bytes_sent.add(n as u64); // once per write
                wbuf.advance(n);
                if wbuf.is_empty() {
                    *wbuf = BytesMut::new(); // an idle connection holds no write buffer
                }
            }
            None => {}
        }
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
        if signals.woken {
            more_ready = true;
        }
        if let Some(batch) = signals.read_back {
            match batch.map(|batch| connection.append_read_back(batch).map_err(|error| error.to_string())) {
                Ok(Ok(_)) => more_ready = true,
                Ok(Err(error)) | Err(error) => {
                    tracing::error!(client_id = %connection.client_id(), %error, "reading the offline queue back failed");
                    connection.write_disconnect(ReasonCode::UNSPECIFIED_ERROR, Some("storage failure"), wbuf);
                    return (CloseKind::Abnormal, format!("store read failed: {error}"));
                }
            }
        }
        if signals.gates_open && gates.pacing.is_none() {
            // Not reading a client held to its rate, or to the store's pace, is our doing: its
            // keep alive does not run meanwhile. Frames left buffered come before any new read.
            connection.heard(Instant::now());
            before_handling_in_cluster(cluster, rbuf).await;
            let marks = ClusterMarks::take(cluster, wbuf);
            if let Err(end) = handle_buffered(&frames, connection, rbuf, wbuf, &mut held, &mut gates, 0) {
                return end;
            }
            if let Err(end) = settle_in_cluster(cluster, marks, connection, wbuf).await {
                return end;
            }
            more_ready = true;
        }
        if signals.room {
            // Not reading a paced client is our doing: its keep alive does not run meanwhile.
            connection.heard(Instant::now());
            let still_paced = gates.pacing.as_mut().is_some_and(|pacing| pacing.recheck(connection.client_id()));
            if !still_paced {
                if let Some(done) = gates.pacing.take() {
                    gates.read.get_or_insert_with(Box::default).held_up = (*done).finish();
                }
                // Frames left buffered when pacing began come before any new read, unless the
                // client is still held back for its rate or the store.
                if !ReadGates::is_closed(&gates.read) {
                    before_handling_in_cluster(cluster, rbuf).await;
                    let marks = ClusterMarks::take(cluster, wbuf);
                    if let Err(end) = handle_buffered(&frames, connection, rbuf, wbuf, &mut held, &mut gates, 0) {
                        return end;
                    }
                    if let Err(end) = settle_in_cluster(cluster, marks, connection, wbuf).await {
                        return end;
                    }
                }
                more_ready = true;
            }
        }
        match signals.readable {
            // Pacing, or a read gate, may have begun above, from frames left buffered: then
            // this read waits.
            Some(Ok(())) if gates.pacing.is_none() && !ReadGates::is_closed(&gates.read) => {
                // The buffer is allocated only once bytes are waiting, and dropped again when
                // every frame in it is decoded: an idle connection holds no read buffer.
                rbuf.reserve(read_size.room_for_next_read(rbuf, frames.max_packet_size));
                let offered = rbuf.capacity() - rbuf.len();
                let got = match stream.try_read_buf(rbuf) {
                    Ok(0) => return (CloseKind::Abnormal, "connection closed by client".to_owned()),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        // Nothing to decode (a spurious wake-up, or a WebSocket read of frame
                        // headers and control frames alone): the room reserved goes too.
                        if rbuf.is_empty() {
                            *rbuf = BytesMut::new();
                        }
                        continue;
                    }
                    Err(error) => return (CloseKind::Abnormal, format!("read error: {error}")),
                    Ok(got) => {
                        connection.broker().stats().bytes_received.add(got as u64); // once per read
                        read_size.observe(got + stream.read_overhead(), offered);
                        got
                    }
                };
                before_handling_in_cluster(cluster, rbuf).await;
                let marks = ClusterMarks::take(cluster, wbuf);
                if let Err(end) = handle_buffered(&frames, connection, rbuf, wbuf, &mut held, &mut gates, got as u64) {
                    return end;
                }
                if let Err(end) = settle_in_cluster(cluster, marks, connection, wbuf).await {
                    return end;
                }
                more_ready = true;
            }
            Some(Ok(())) => {}
            Some(Err(error)) => return (CloseKind::Abnormal, format!("read error: {error}")),
            None => {}
        }
    }
}

/// Where a node of a cluster stood before a read's packets were handled (see
/// [`settle_in_cluster`]).
#[derive(Debug, Clone, Copy)]
struct ClusterMarks {
    cluster: crate::cluster::SettleMarks,
    /// The length of the write buffer: what the packets answered comes after it.
    answers_from: usize,
}

impl ClusterMarks {
    fn take(cluster: Option<&crate::cluster::Cluster>, wbuf: &BytesMut) -> Option<Self> {
        cluster.map(|cluster| Self { cluster: cluster.marks(), answers_from: wbuf.len() })
    }
}

/// On a node of a cluster, before a read's packets are handled: if a SUBSCRIBE is among them,
/// the node first applies what the retained bucket has (bounded), so the retained messages it
/// sends include every one acknowledged before on any node.
async fn before_handling_in_cluster(cluster: Option<&crate::cluster::Cluster>, rbuf: &[u8]) {
    if let Some(cluster) = cluster {
        if has_subscribe(rbuf) {
            cluster.retained_caught_up().await;
        }
    }
}

/// Whether the complete MQTT packets at the start of `bytes` include a SUBSCRIBE (type 8).
fn has_subscribe(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let kind = bytes[at] >> 4;
        let (mut length, mut shift, mut header) = (0usize, 0u32, 1usize);
        loop {
            let Some(&byte) = bytes.get(at + header) else { return false };
            length |= usize::from(byte & 0x7f) << shift;
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return false;
            }
        }
        if at + header + length > bytes.len() {
            return false;
        }
        if kind == 8 {
            return true;
        }
        at += header + length;
    }
    false
}

/// On a node of a cluster, what a read's packets need of the cluster before their answers go
/// out: a SUBACK once NATS has the subscription (and, for a persistent session, its JetStream
/// consumer the filter); a PUBACK for a retained message once the retained bucket has it
/// (bounded); a PUBACK or PUBREC once JetStream has stored the QoS 1/2 messages
/// (the connection is closed unanswered if it cannot, so the client sends them again); and a
/// publisher is paced while NATS is not taking this node's messages.
async fn settle_in_cluster(
    cluster: Option<&crate::cluster::Cluster>,
    marks: Option<ClusterMarks>,
    connection: &ClientConnection,
    wbuf: &mut BytesMut,
) -> Result<(), Ending> {
    let (Some(cluster), Some(before)) = (cluster, marks) else { return Ok(()) };
    if !cluster.settle(before.cluster).await {
        wbuf.truncate(before.answers_from.min(wbuf.len()));
        connection.write_disconnect(ReasonCode::UNSPECIFIED_ERROR, Some("cluster storage unavailable"), wbuf);
        tracing::warn!(client_id = %connection.client_id(), "cluster: JetStream did not store this client's QoS 1/2 messages in time; closing without acknowledging them");
        return Err((CloseKind::Abnormal, "cluster storage unavailable".to_owned()));
    }
    cluster.pace_publisher().await;
    Ok(())
}

/// What holds a client's reads back: pacing for full subscribers, and its read gates (rate,
/// store; they also keep how long pacing has held the client up, between pauses). Rarely
/// active, so boxed while they are: an idle connection keeps a null pointer each.
struct Gates {
    pacing: Option<Box<Pacing>>,
    read: Option<Box<ReadGates>>,
}

/// Handles the frames buffered in `rbuf`, `bytes_read` of them just read, within the client's
/// message budget, then starts what holds the client back: pacing for the congestion they met,
/// its rate, and the store's writer when it is behind and the client's acknowledgements wait
/// on it (the store paces the publishers whose messages wait, never a worker thread).
fn handle_buffered(
    frames: &FrameContext,
    connection: &mut ClientConnection,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    held: &mut HeldResponses,
    gates: &mut Gates,
    bytes_read: u64,
) -> Result<(), Ending> {
    let budget = ReadGates::budget(&mut gates.read);
    let (congestion, publishes) = process_frames(frames, connection, rbuf, wbuf, held, budget)?;
    gates.pacing = if congestion.is_empty() {
        None
    } else {
        Pacing::start(connection, congestion, &mut gates.read.get_or_insert_with(Box::default).held_up)
    };
    let store_behind =
        frames.writer.as_ref().filter(|writer| publishes > 0 && held.first_ticket().is_some() && writer.is_behind());
    let exhausted = budget.is_some_and(|budget| publishes >= budget);
    ReadGates::after_frames(
        &mut gates.read,
        publishes,
        bytes_read,
        exhausted,
        store_behind,
        connection.broker(),
        connection.client_id(),
    );
    Ok(())
}

/// Reads a batch of the session's offline queue once the store has committed what it needs,
/// on a blocking thread (the read may wait on the disk; the async workers must not).
///
/// # Cancel safety
/// Cancel safe: a dropped read is void (the session lets the next connection read again).
async fn read_back_batch(request: ReadBack, writer: Option<WriterHandle>) -> Result<ReadBackBatch, String> {
    if let Some(writer) = writer {
        writer.durable(midge_store::Ticket(request.ticket().0)).await.map_err(|error| error.to_string())?;
    }
    tokio::task::spawn_blocking(move || request.read()).await.map_err(|error| error.to_string())
}

/// What [`process_frames`] works with across calls: the connection's fixed settings.
struct FrameContext {
    version: ProtocolVersion,
    max_packet_size: usize,
    writer: Option<WriterHandle>,
}

/// Decodes and handles the complete frames in `rbuf` as one read batch, writing responses into
/// `wbuf` (holding back those that wait for the store). Stops early, leaving the rest buffered,
/// when a PUBLISH found a subscriber over its queue bound: the client is paced between packets,
/// so one read of many small PUBLISHes cannot overshoot the bound by much. Returns the
/// congestion the client is to be paced for and how many PUBLISHes were handled; `Err` ends the
/// connection.
///
/// The batch ends before this returns, whatever happened: the QoS 0 messages it deferred are
/// enqueued (one lock per subscriber), then every subscriber they reached is woken once.
fn process_frames(
    frames: &FrameContext,
    connection: &mut ClientConnection,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    held: &mut HeldResponses,
    budget: Option<u64>,
) -> Result<(Congestion, u64), Ending> {
    let mut batch = ReadBatch::new();
    let mut counts = ReadCounts::default();
    let handled = handle_frames(frames, connection, rbuf, wbuf, held, &mut batch, budget, &mut counts);
    connection.broker().end_batch(&mut batch);
    counts.add_to(connection.broker().stats());
    if rbuf.is_empty() {
        *rbuf = BytesMut::new(); // an idle connection holds no read buffer
    }
    handled.map(|publishes| (batch.take_congestion(), publishes))
}

/// What one read's packets add to the broker's counters, counted here and added once.
#[derive(Debug, Default)]
struct ReadCounts {
    packets: u64,
    publishes: u64,
    /// Of `publishes`, those at QoS 0, 1 and 2.
    publishes_by_qos: [u64; 3],
    payload_bytes: u64,
}

impl ReadCounts {
    fn add_to(&self, stats: &midge_broker::Stats) {
        if self.packets > 0 {
            stats.packets_received.add(self.packets);
        }
        if self.publishes > 0 {
            stats.publish_received.add(self.publishes);
            for (counter, &n) in stats.publish_received_by_qos.iter().zip(&self.publishes_by_qos) {
                if n > 0 {
                    counter.add(n);
                }
            }
            stats.publish_bytes_received.add(self.payload_bytes);
        }
    }
}

/// The packets of one read, within `batch`, up to `budget` PUBLISHes (the client's inbound
/// rate), counted in `counts`; returns how many were PUBLISHes.
#[allow(clippy::too_many_arguments)] // the driver's parts, each its own borrow
fn handle_frames(
    frames: &FrameContext,
    connection: &mut ClientConnection,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    held: &mut HeldResponses,
    batch: &mut ReadBatch,
    budget: Option<u64>,
    counts: &mut ReadCounts,
) -> Result<u64, Ending> {
    let now = Instant::now();
    let mut heard = false;
    loop {
        match decode_packet(rbuf, frames.version, frames.max_packet_size) {
            Ok(Some(packet)) => {
                counts.packets += 1;
                if let midge_codec::Packet::Publish(publish) = &packet {
                    counts.publishes += 1;
                    counts.publishes_by_qos[publish.qos as usize] += 1;
                    counts.payload_bytes += publish.payload.len() as u64;
                }
                if !heard {
                    // A complete packet: the keep alive starts again (MQTT-3.1.2-24).
                    connection.heard(now);
                    heard = true;
                }
                let mark = wbuf.len();
                let handled = connection.handle(packet, now, batch, wbuf);
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
                if batch.is_congested() || budget.is_some_and(|budget| counts.publishes >= budget) {
                    return Ok(counts.publishes);
                }
            }
            Ok(None) => return Ok(counts.publishes),
            Err(error) => {
                if matches!(error, midge_codec::DecodeError::PacketTooLarge { .. }) {
                    super::packet_too_large(connection.broker(), connection.client_id());
                }
                let detail = error.to_string();
                connection.write_disconnect(error.reason_code(), Some(&detail), wbuf);
                return Err((CloseKind::Abnormal, format!("bad packet: {detail}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_subscribe;

    #[test]
    fn a_subscribe_is_found_among_complete_packets_only() {
        let pingreq = [0xc0, 0x00];
        let subscribe = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01];
        let publish = [0x30, 0x03, 0x00, 0x01, b't'];
        assert!(!has_subscribe(&[]));
        assert!(!has_subscribe(&[pingreq.as_slice(), &publish].concat()));
        assert!(has_subscribe(&[pingreq.as_slice(), &publish, &subscribe].concat()));
        // Cut short: not (yet) a packet.
        assert!(!has_subscribe(&[pingreq.as_slice(), &subscribe[..5]].concat()));
        // A remaining length in two bytes (128), then a SUBSCRIBE.
        let mut long = vec![0x30, 0x80, 0x01];
        long.extend(std::iter::repeat_n(0u8, 128));
        long.extend_from_slice(&subscribe);
        assert!(has_subscribe(&long));
    }
}
