//! The CONNECT phase: the first packet, in time (MQTT-3.1.0-1); the broker's checks; the
//! listener's authenticator, awaited when it answers later; then the CONNACK, or a refusal.
//! The connect timeout covers all of it, from accept to CONNACK (a TLS handshake included).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use midge_broker::ports::auth::{Decision, Identity, Verdict};
use midge_broker::{ClientConnection, ConnectContext, ConnectOutcome, Refusal};
use midge_codec::{
    decode_packet, encode_packet, ConnAck, DecodeError, MqttString, Packet, Properties, ProtocolVersion, ReasonCode,
};
use tracing::{debug, info};

use super::close::flush_and_close;
use super::{ClientAuth, ListenerContext};
use crate::config::CONNECTION_MESSAGES_TARGET;
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
/// `auth` says where the client's identity comes from; `deadline` ends the connect timeout.
pub(super) async fn accept<T: Transport>(
    stream: &mut T,
    peer: SocketAddr,
    auth: ClientAuth,
    deadline: tokio::time::Instant,
    listener: &ListenerContext,
) -> Option<Accepted> {
    let broker = &listener.broker;
    let mut shutdown = listener.shutdown.clone();
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let max_packet_size = broker.limits().max_packet_size as usize;

    let mut announces_v5 = false;
    let mut received = 0;
    let first = tokio::select! {
        first = read_first_packet(stream, &mut rbuf, max_packet_size, &mut announces_v5, &mut received) => first,
        _ = tokio::time::sleep_until(deadline) => {
            super::connect_timed_out(listener, peer, "CONNECT");
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    broker.stats().bytes_received.add(received);
    if first.is_ok() {
        broker.stats().packets_received.add(1);
    }
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
            if matches!(error, DecodeError::PacketTooLarge { .. }) {
                super::packet_too_large(broker, &peer);
            }
            info!(%peer, %error, "malformed CONNECT, closing");
            if announces_v5 {
                // A client that announced MQTT 5 is told why before the close (MQTT 5.0
                // section 4.13.1: CONNACK with the reason code; 3.x cannot be, MQTT-3.1.4-1).
                let properties =
                    Properties { reason_string: MqttString::new(&error.to_string()).ok(), ..Properties::default() };
                let connack = ConnAck { session_present: false, reason: error.reason_code(), properties };
                let _ = encode_packet(&Packet::ConnAck(connack), ProtocolVersion::V5, &mut wbuf);
                flush_and_close(stream, &mut wbuf).await;
            }
            return None;
        }
        Err(FirstPacketError::Io(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
            // The transport's own framing broke (a WebSocket frame RFC 6455 or MQTT-6.0.0-1
            // forbids, a bad TLS record): closed gracefully, so that the transport can say why
            // (a WebSocket close frame with its code).
            debug!(%peer, %error, "broken transport framing before CONNECT, closing");
            flush_and_close(stream, &mut wbuf).await;
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
        broker.stats().packets_sent.add(1);
        let _ = encode_packet(&Packet::ConnAck(refusal.connack), version, wbuf);
    };

    // Step 1: the protocol and the limits.
    let mut request = match broker.check_connect(connect) {
        Ok(request) => request,
        Err(refusal) => {
            refuse(*refusal, &mut wbuf);
            flush_and_close(stream, &mut wbuf).await;
            return None;
        }
    };
    // Step 2: who the client is, within what is left of the connect timeout.
    let peer_text = peer.to_string();
    let decision = match auth {
        ClientAuth::Connect { certificate_subject } => {
            let mut credentials = request.credentials(&peer_text);
            credentials.certificate_subject = certificate_subject.as_deref();
            listener.authenticator.authenticate(&credentials)
        }
        ClientAuth::Certificate(Ok(username)) => {
            Decision::Now(Verdict::Allow(Identity { username: Some(username), grants: None }))
        }
        ClientAuth::Certificate(Err(why)) => Decision::Now(Verdict::Deny {
            reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            detail: format!("{why}: this listener takes user names from client certificates").into(),
        }),
    };
    let verdict = verdict_by(decision, deadline, &mut shutdown).await?;
    let clean_start = request.clean_start();
    let username = match &verdict {
        Verdict::Allow(identity) => identity.username.clone(),
        Verdict::Deny { .. } => None,
    };
    if listener.use_username_as_clientid {
        // mosquitto's use_username_as_clientid: the session is the user's, whatever id was sent.
        match username.as_deref() {
            Some(name) if !name.is_empty() => request.set_client_id(std::sync::Arc::from(name)),
            _ if matches!(verdict, Verdict::Deny { .. }) => {}
            _ => {
                // As mosquitto: Not authorized (v3 return code 5, v5 0x87).
                let why = "use_username_as_clientid: the client gave no user name";
                refuse(Refusal::new(version, ReasonCode::NOT_AUTHORIZED, why), &mut wbuf);
                flush_and_close(stream, &mut wbuf).await;
                return None;
            }
        }
    }
    // Step 3, on a node of a cluster: the session is this node's before the client is admitted
    // (one session per client id cluster-wide); held until it is. An id the broker assigned
    // is new everywhere.
    let _claim = match (&listener.cluster, &verdict) {
        (Some(cluster), Verdict::Allow(_)) if !request.assigned() => {
            let claim = cluster.claim(request.client_id(), clean_start);
            match tokio::time::timeout_at(deadline, claim).await {
                Ok(Ok(guard)) => Some(guard),
                outcome => {
                    let why = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => "cluster: claiming the session took longer than the connect timeout".to_owned(),
                    };
                    refuse(Refusal::new(version, ReasonCode::SERVER_UNAVAILABLE, why), &mut wbuf);
                    flush_and_close(stream, &mut wbuf).await;
                    return None;
                }
            }
        }
        _ => None,
    };
    if listener.cluster.is_some() {
        request.feed_from_fabric(); // its feed runs beside the connection (`conn::serve_from_connect`)
    }
    let context = ConnectContext { peer: peer_text, authorizer: listener.authorizer.clone() };
    let (mut connection, connack) = match ClientConnection::accept(broker, request, verdict, &context, Instant::now()) {
        ConnectOutcome::Accepted { connection, connack } => (connection, connack),
        ConnectOutcome::Refused(refusal) => {
            refuse(refusal, &mut wbuf);
            flush_and_close(stream, &mut wbuf).await;
            return None;
        }
    };
    let line = super::log::connected(
        &peer,
        connection.client_id(),
        version,
        clean_start,
        connection.keep_alive(),
        username.as_deref(),
    );
    info!(
        target: CONNECTION_MESSAGES_TARGET,
        %peer, client_id = %connection.client_id(), username = username.as_deref().unwrap_or(""), ?version, clean_start, keep_alive = connection.keep_alive(),
        session_present = connack.session_present, "{line}"
    );
    broker.stats().packets_sent.add(1);
    let _ = encode_packet(&Packet::ConnAck(connack), version, &mut wbuf);
    connection.resume(Instant::now(), &mut wbuf);
    Some(Accepted { connection: *connection, rbuf, wbuf })
}

/// The protocol level of the CONNECT whose start is in `buf`, once its protocol name and level
/// have arrived: `None` for anything else.
fn connect_level(buf: &[u8]) -> Option<u8> {
    let header = midge_codec::check_frame(buf).ok()??;
    if header.packet_type != 1 {
        return None;
    }
    let variable = buf.get(header.header_len..)?;
    let name_len = usize::from(u16::from_be_bytes([*variable.first()?, *variable.get(1)?]));
    let name = variable.get(2..2 + name_len)?;
    (name == b"MQTT").then(|| variable.get(2 + name_len).copied()).flatten()
}

/// Why the first packet could not be read.
enum FirstPacketError {
    Decode(DecodeError),
    Io(std::io::Error),
}

/// The authenticator's verdict: at once, or awaited until `deadline` (then refused as Server
/// Unavailable: the connect timeout covers authentication). `None` on shutdown. Shared by the
/// MQTT CONNECT phase and the MQTT-SN gateway's.
pub(crate) async fn verdict_by(
    decision: Decision,
    deadline: tokio::time::Instant,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Verdict> {
    match decision {
        Decision::Now(verdict) => Some(verdict),
        Decision::Later(later) => tokio::select! {
            verdict = later => Some(verdict),
            _ = tokio::time::sleep_until(deadline) => Some(Verdict::Deny {
                reason: ReasonCode::SERVER_UNAVAILABLE,
                detail: "authentication did not answer within the connect timeout".into(),
            }),
            _ = shutdown.changed() => None,
        },
    }
}

/// Reads until one packet is complete, adding the bytes it reads to `received`. Sets
/// `announces_v5` when the bytes read so far are a CONNECT of MQTT 5, so that a malformed one
/// can be answered with its reason code.
///
/// Waits for the socket to be readable before it takes a buffer, and gives an empty one back
/// when a read finds nothing: a socket that connects and never sends (slowloris, or a client
/// slow to start) holds no read buffer while it waits for its connect timeout.
async fn read_first_packet<T: Transport>(
    stream: &mut T,
    rbuf: &mut BytesMut,
    max_packet_size: usize,
    announces_v5: &mut bool,
    received: &mut u64,
) -> Result<Packet, FirstPacketError> {
    loop {
        *announces_v5 = connect_level(rbuf) == Some(5);
        // The version only matters for packets after CONNECT; CONNECT announces its own.
        match decode_packet(rbuf, ProtocolVersion::V311, max_packet_size) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(error) => return Err(FirstPacketError::Decode(error)),
        }
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await.map_err(FirstPacketError::Io)?;
        rbuf.reserve(ReadSize::default().room_for_next_read(rbuf, max_packet_size));
        match stream.try_read_buf(rbuf) {
            Ok(0) => return Err(FirstPacketError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof"))),
            Ok(got) => *received += got as u64,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if rbuf.is_empty() {
                    *rbuf = BytesMut::new();
                }
            }
            Err(error) => return Err(FirstPacketError::Io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use midge_broker::ports::auth::{Authenticator, Credentials};
    use midge_broker::{Broker, Limits};
    use midge_codec::{Connect, MqttString, Properties};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::conn::connect_deadline;

    /// Answers after `wait`: allows user "late", and never answers for anyone else.
    #[derive(Debug)]
    struct Slow {
        release: Arc<tokio::sync::Notify>,
    }

    impl Authenticator for Slow {
        fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
            let release = Arc::clone(&self.release);
            let allowed = credentials.username == Some("late");
            let verdict: Pin<Box<dyn Future<Output = Verdict> + Send>> = Box::pin(async move {
                if !allowed {
                    std::future::pending::<()>().await;
                }
                release.notified().await;
                Verdict::Allow(Identity { username: Some(Arc::from("late")), grants: None })
            });
            Decision::Later(verdict)
        }
    }

    async fn connected_pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        (client, server, peer)
    }

    async fn send_connect(client: &mut TcpStream, username: &str) {
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: MqttString::new(username).expect("id"),
            will: None,
            username: Some(MqttString::new(username).expect("name")),
            password: None,
            properties: Properties::default(),
            bridge: false,
        };
        let mut out = BytesMut::new();
        encode_packet(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5, &mut out).expect("encode");
        client.write_all(&out).await.expect("write");
    }

    async fn read_connack(client: &mut TcpStream) -> ConnAck {
        let mut rbuf = BytesMut::new();
        loop {
            if let Some(packet) = decode_packet(&mut rbuf, ProtocolVersion::V5, 1 << 16).expect("a valid packet") {
                let Packet::ConnAck(connack) = packet else { panic!("expected CONNACK, got {packet:?}") };
                return connack;
            }
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), client.read_buf(&mut rbuf));
            assert!(read.await.expect("CONNACK in time").expect("read") > 0, "closed before CONNACK");
        }
    }

    /// A socket that connects and sends nothing holds no read buffer while it waits for its
    /// CONNECT (10,000 of them took 40 MiB more than that before); one byte of a CONNECT
    /// brings one, and the CONNECT still decodes when the rest arrives.
    #[tokio::test]
    async fn a_socket_waiting_for_its_connect_holds_no_read_buffer() {
        let (mut client, mut server, _) = connected_pair().await;
        let mut rbuf = BytesMut::new();
        let mut announces_v5 = false;
        let mut received = 0;
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            read_first_packet(&mut server, &mut rbuf, 1 << 20, &mut announces_v5, &mut received),
        );
        assert!(waiting.await.is_err(), "nothing was sent, so nothing was read");
        assert_eq!(rbuf.capacity(), 0, "a read buffer was taken before any byte arrived");

        let mut connect = BytesMut::new();
        let packet = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: MqttString::new("c").expect("id"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
            bridge: false,
        };
        encode_packet(&Packet::Connect(Box::new(packet)), ProtocolVersion::V5, &mut connect).expect("encode");
        client.write_all(&connect[..1]).await.expect("write");
        client.write_all(&connect[1..]).await.expect("write");
        let read = read_first_packet(&mut server, &mut rbuf, 1 << 20, &mut announces_v5, &mut received);
        let packet = tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("in time");
        assert!(matches!(packet, Ok(Packet::Connect(_))), "the CONNECT did not decode");
        assert_eq!(received, connect.len() as u64, "every byte read is counted");
    }

    /// A listener's context, and the shutdown sender that must outlive it (a dropped sender
    /// reads as shutdown).
    fn listener(
        authenticator: Arc<dyn Authenticator>,
        connect_timeout_ms: u64,
    ) -> (ListenerContext, tokio::sync::watch::Sender<bool>) {
        let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
        let context = ListenerContext {
            broker: Broker::new(Limits { connect_timeout_ms, ..Limits::default() }),
            authenticator,
            authorizer: None,
            store: None,
            shutdown,
            roster: Default::default(),
            use_username_as_clientid: false,
            cluster: None,
        };
        (context, shutdown_sender)
    }

    /// A verdict that comes later is waited for: CONNACK goes out only once it is in.
    #[tokio::test]
    async fn a_later_verdict_is_awaited_before_connack() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (context, _shutdown) = listener(Arc::new(Slow { release: Arc::clone(&release) }), 10_000);
        let (mut client, mut server, peer) = connected_pair().await;
        send_connect(&mut client, "late").await;
        let accepting = tokio::spawn(async move {
            accept(
                &mut server,
                peer,
                ClientAuth::Connect { certificate_subject: None },
                connect_deadline(&context),
                &context,
            )
            .await
            .is_some()
        });
        tokio::task::yield_now().await;
        assert!(!accepting.is_finished(), "no CONNACK before the verdict");
        release.notify_one();
        assert!(accepting.await.expect("task"), "accepted");
    }

    /// An authenticator that never answers cannot hold a connection past the connect timeout:
    /// the client is refused with Server Unavailable (0x88).
    #[tokio::test]
    async fn a_verdict_that_never_comes_is_refused_at_the_connect_timeout() {
        let (context, _shutdown) = listener(Arc::new(Slow { release: Arc::new(tokio::sync::Notify::new()) }), 200);
        let (mut client, mut server, peer) = connected_pair().await;
        send_connect(&mut client, "never").await;
        let accepted = accept(
            &mut server,
            peer,
            ClientAuth::Connect { certificate_subject: None },
            connect_deadline(&context),
            &context,
        )
        .await;
        assert!(accepted.is_none());
        assert_eq!(read_connack(&mut client).await.reason, ReasonCode::SERVER_UNAVAILABLE);
    }
}
