//! The CONNECT phase: the first packet, in time (MQTT-3.1.0-1); the broker's checks; the
//! listener's authenticator, awaited when it answers later; then the CONNACK, or a refusal.
//! The connect timeout covers all of it, from accept to CONNACK.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use midge_broker::ports::auth::{Decision, Verdict};
use midge_broker::{ClientConnection, ConnectContext, ConnectOutcome, Refusal};
use midge_codec::{decode_packet, encode_packet, ConnAck, DecodeError, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info};

use super::close::flush_and_close;
use super::ListenerContext;
use crate::read_size::ReadSize;
use crate::transport::Transport;

/// A connection whose CONNECT was accepted, with the CONNACK (and any resent messages) in
/// `wbuf` and whatever followed the CONNECT in `rbuf`.
pub(super) struct Accepted {
    pub(super) connection: ClientConnection,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
}

/// Runs the CONNECT phase. Refusals are answered and closed here; `None` means the connection
/// is over.
pub(super) async fn accept<T: Transport>(
    stream: &mut T,
    peer: SocketAddr,
    listener: &ListenerContext,
) -> Option<Accepted> {
    let broker = &listener.broker;
    let mut shutdown = listener.shutdown.clone();
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let max_packet_size = broker.limits().max_packet_size as usize;
    let deadline = tokio::time::Instant::now() + broker.limits().connect_timeout();

    let first = tokio::select! {
        first = read_first_packet(stream, &mut rbuf, max_packet_size) => first,
        _ = tokio::time::sleep_until(deadline) => {
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
    let requested_id = connect.client_id.to_string();
    let refuse = |refusal: Refusal, wbuf: &mut BytesMut| {
        info!(%peer, client_id = %requested_id, code = %refusal.connack.reason, reason = %refusal.reason, "connection refused");
        let _ = encode_packet(&Packet::ConnAck(refusal.connack), version, wbuf);
    };

    // Step 1: the protocol and the limits.
    let request = match broker.check_connect(connect) {
        Ok(request) => request,
        Err(refusal) => {
            refuse(*refusal, &mut wbuf);
            flush_and_close(stream, &mut wbuf).await;
            return None;
        }
    };
    // Step 2: who the client is, within what is left of the connect timeout.
    let peer_text = peer.to_string();
    let verdict = match listener.authenticator.authenticate(&request.credentials(&peer_text)) {
        Decision::Now(verdict) => verdict,
        Decision::Later(later) => tokio::select! {
            verdict = later => verdict,
            _ = tokio::time::sleep_until(deadline) => Verdict::Deny {
                reason: ReasonCode::SERVER_UNAVAILABLE,
                detail: "authentication did not answer within the connect timeout".into(),
            },
            _ = shutdown.changed() => return None,
        },
    };
    let clean_start = request.clean_start();
    let context = ConnectContext { peer: peer_text, authorizer: listener.authorizer.clone() };
    let (mut connection, connack) = match ClientConnection::accept(broker, request, verdict, &context, Instant::now()) {
        ConnectOutcome::Accepted { connection, connack } => (connection, connack),
        ConnectOutcome::Refused(refusal) => {
            refuse(refusal, &mut wbuf);
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
