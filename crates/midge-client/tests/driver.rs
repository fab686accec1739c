//! The async driver against a scripted broker on a loopback socket: keep alive, dead-link
//! detection, refusal, and resending after an automatic reconnection. Time-dependent tests run
//! on tokio's paused clock, so a 5 s keep alive takes no wall time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_client::codec::{
    decode_packet, encode_packet, ConnAck, MqttString, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode, TopicName,
};
use midge_client::{Backoff, Client, ConnectOptions, Error, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One accepted connection of the scripted broker.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Peer {
    async fn accept(listener: &TcpListener, version: ProtocolVersion) -> Self {
        let (stream, _) = listener.accept().await.unwrap();
        Self { stream, buf: BytesMut::new(), version }
    }

    /// The next packet, or `None` when the client closed the connection.
    async fn receive(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode_packet(&mut self.buf, self.version, usize::MAX).unwrap() {
                return Some(packet);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode_packet(&packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads CONNECT and answers CONNACK with `connack`.
    async fn handshake(&mut self, connack: ConnAck) {
        assert!(matches!(self.receive().await, Some(Packet::Connect(_))));
        self.send(Packet::ConnAck(connack)).await;
    }
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test(start_paused = true)]
async fn pingreq_after_idle_keep_alive_and_dead_link_detected_without_pingresp() {
    let (listener, port) = listener().await;
    let broker = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener, ProtocolVersion::V311).await;
        peer.handshake(ConnAck::default()).await;
        // MQTT-3.1.2-23: with nothing else to send, a PINGREQ within the keep alive. Answered once.
        assert_eq!(peer.receive().await, Some(Packet::PingReq));
        peer.send(Packet::PingResp).await;
        // The second is ignored: the client must give up by itself.
        assert_eq!(peer.receive().await, Some(Packet::PingReq));
        peer
    });
    let mut options = ConnectOptions::new("127.0.0.1", port);
    options.keep_alive = 5;
    let mut client = Client::connect(options).await.unwrap();
    let started = tokio::time::Instant::now();
    let error = client.poll().await.unwrap_err();
    assert!(matches!(error, Error::KeepAliveTimeout(_)), "{error}");
    // Ping at 5 s, answered; ping at 10 s, unanswered; dead at 15 s.
    assert_eq!(started.elapsed().as_secs(), 15);
    assert!(error.is_connection_lost());
    let _peer = broker.await.unwrap();
    assert!(matches!(client.poll().await, Err(Error::NotConnected)));
}

#[tokio::test]
async fn refused_connect_reports_the_v5_reason_code_and_string() {
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        let mut peer = Peer::accept(&listener, ProtocolVersion::V5).await;
        let mut connack = ConnAck { reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD, ..Default::default() };
        connack.properties.reason_string = Some(MqttString::new("unknown user").unwrap());
        peer.handshake(connack).await;
    });
    let mut options = ConnectOptions::new("127.0.0.1", port);
    options.version = ProtocolVersion::V5;
    let error = Client::connect(options).await.err().unwrap();
    assert_eq!(error.reason_code(), Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert_eq!(error.connack_code(), Some(0x86));
    assert!(error.to_string().contains("unknown user"), "{error}");
}

#[tokio::test]
async fn refused_3_1_1_connect_reports_the_return_code() {
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        let mut peer = Peer::accept(&listener, ProtocolVersion::V311).await;
        peer.handshake(ConnAck { reason: ReasonCode::NOT_AUTHORIZED, ..Default::default() }).await;
    });
    let error = Client::connect(ConnectOptions::new("127.0.0.1", port)).await.err().unwrap();
    assert_eq!(error.connack_code(), Some(5));
}

#[tokio::test]
async fn unreachable_broker_is_a_connect_error() {
    let (listener, port) = listener().await;
    drop(listener);
    let error = Client::connect(ConnectOptions::new("127.0.0.1", port)).await.err().unwrap();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
}

#[tokio::test(start_paused = true)]
async fn reconnect_resumes_the_session_and_resends_with_dup() {
    let (listener, port) = listener().await;
    let broker = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener, ProtocolVersion::V311).await;
        peer.handshake(ConnAck::default()).await;
        let Some(Packet::Publish(first)) = peer.receive().await else { panic!("expected PUBLISH") };
        assert!(!first.dup);
        // The link drops before the PUBACK.
        drop(peer);
        let mut peer = Peer::accept(&listener, ProtocolVersion::V311).await;
        peer.handshake(ConnAck { session_present: true, ..Default::default() }).await;
        // MQTT-4.4.0-1, MQTT-3.3.1-1: the same message, same identifier, DUP set.
        let Some(Packet::Publish(again)) = peer.receive().await else { panic!("expected PUBLISH") };
        assert!(again.dup);
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(again.payload, first.payload);
        peer.send(Packet::PubAck(PubResponse::success(again.packet_id.unwrap()))).await;
        peer
    });
    let mut options = ConnectOptions::new("127.0.0.1", port);
    options.clean_start = false;
    options.client_id = "resender".into();
    options.reconnect = Some(Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) });
    let mut client = Client::connect(options).await.unwrap();
    let topic = TopicName::new("r/t").unwrap();
    let packet_id = client.publish(&topic, Bytes::from_static(b"keep me"), QoS::AtLeastOnce, false).unwrap();
    let error = client.poll().await.unwrap_err();
    assert!(error.is_connection_lost(), "{error}");
    assert_eq!(client.poll().await.unwrap(), Event::Reconnected { session_present: true });
    match client.poll().await.unwrap() {
        Event::Published { packet_id: acked, reason, .. } => {
            assert_eq!(Some(acked), packet_id);
            assert_eq!(reason, ReasonCode::SUCCESS);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.unacknowledged(), 0);
    let _peer = broker.await.unwrap();
}
