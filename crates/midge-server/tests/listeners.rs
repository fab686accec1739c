//! Listener handles over real sockets on 127.0.0.1: each listener of a server can be closed on
//! its own, and its counters say what it accepted and what it refused.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use midge_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one network step may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// CONNECT, MQTT 3.1.1, clean session, keep alive 60, client id "a".
const CONNECT: [u8; 15] = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a'];
/// CONNACK, session not present, accepted.
const CONNACK_ACCEPTED: [u8; 4] = [0x20, 2, 0, 0];

async fn server(toml: &str) -> Server {
    let text = format!("{toml}\n[store]\npersistence = false\n");
    Server::start(ServerConfig::parse(&text, Path::new("test.toml")).unwrap()).await.unwrap()
}

/// Connects, sends CONNECT and returns the first four bytes the server answers with, or `None`
/// when it closes the connection without answering.
async fn handshake(addr: SocketAddr) -> (TcpStream, Option<[u8; 4]>) {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
    // The write may fail if the server has already closed the connection.
    let _ = stream.write_all(&CONNECT).await;
    let mut answer = [0u8; 4];
    let read = tokio::time::timeout(WAIT, stream.read_exact(&mut answer)).await.expect("an answer or a close");
    (stream, read.ok().map(|_| answer))
}

#[tokio::test]
async fn closing_one_listener_leaves_the_others_accepting() {
    let server = server(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n",
    )
    .await;
    let listeners = server.listeners();
    let [first, second] = &listeners[..] else { panic!("two listeners") };
    let (first_addr, second_addr) = (first.local_addrs()[0], second.local_addrs()[0]);

    first.close().await;
    assert!(first.is_closed() && !second.is_closed());
    // The first's socket is gone: nothing listens there any more, so its address is free again.
    let refused = TcpStream::connect(first_addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    drop(std::net::TcpListener::bind(first_addr).expect("the closed listener's address is free"));
    // The second still accepts clients.
    let (_client, answer) = handshake(second_addr).await;
    assert_eq!(answer, Some(CONNACK_ACCEPTED));
    assert_eq!(second.counters().accepted, 1);
    assert_eq!(first.counters().accepted, 0);

    server.run_until(async {}).await;
}

#[tokio::test]
async fn a_full_listener_closes_new_connections_at_once_and_counts_them() {
    let server = server("[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\nmax_connections = 1\n").await;
    let listener = Arc::clone(&server.listeners()[0]);
    let addr = listener.local_addrs()[0];
    let (_first, answer) = handshake(addr).await;
    assert_eq!(answer, Some(CONNACK_ACCEPTED));

    let (_second, answer) = handshake(addr).await;
    assert_eq!(answer, None, "closed without CONNACK");
    let counters = listener.counters();
    assert_eq!((counters.accepted, counters.refused_max_connections, counters.open), (1, 1, 1), "{counters:?}");

    server.run_until(async {}).await;
}

/// An MQTT-SN listener's drops are counted by reason in its counters, where metrics read them: a
/// malformed datagram, a message from an address without a connection, a QoS -1 PUBLISH to a
/// topic the gateway does not know, and SEARCHGWs over the GWINFO rate. Other listeners have
/// no MQTT-SN counters.
#[tokio::test]
async fn an_mqtt_sn_listener_counts_what_it_drops_by_reason() {
    use midge_sn_codec::{Message, MsgId, Publish, PublishTopic, QoS, TopicId};

    let server = server(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [[listener]]\nprotocol = \"mqtt-sn\"\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n",
    )
    .await;
    let listeners = server.listeners();
    let [mqtt, sn] = &listeners[..] else { panic!("two listeners") };
    assert_eq!(mqtt.counters().mqtt_sn, None);
    assert_eq!(sn.counters().mqtt_sn, Some(midge_server::SnDrops::default()));
    let gateway = sn.local_addrs()[0];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let send = |message: Message| {
        let mut datagram = bytes::BytesMut::new();
        midge_sn_codec::encode(&message, &mut datagram).unwrap();
        datagram
    };
    socket.send_to(&[0x01], gateway).await.unwrap();
    socket.send_to(&send(Message::PingReq { client_id: None }), gateway).await.unwrap();
    let topic = PublishTopic::Normal(TopicId(1));
    let publish = Publish { dup: false, qos: QoS::MinusOne, retain: false, topic, msg_id: MsgId(0), data: "x".into() };
    socket.send_to(&send(Message::Publish(publish)), gateway).await.unwrap();
    for _ in 0..30 {
        socket.send_to(&send(Message::SearchGw { radius: 0 }), gateway).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + WAIT;
    let drops = loop {
        let drops = sn.counters().mqtt_sn.unwrap();
        if drops.searches_limited >= 15 && drops.minus_one_refused == 1 {
            break drops;
        }
        assert!(tokio::time::Instant::now() < deadline, "not counted in time: {drops:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((drops.malformed, drops.unconnected, drops.inbox_full, drops.unexpected), (1, 1, 0, 0), "{drops:?}");
    assert!(drops.searches_limited <= 29, "some SEARCHGWs were answered: {drops:?}");

    server.run_until(async {}).await;
}

/// A listener changed in place (`ListenerHandle::apply`, what a reload does) gives new
/// connections its new settings, and its counters run on.
#[tokio::test]
async fn a_listener_changed_in_place_counts_on() {
    let websockets = |path: &str| {
        format!(
            "[[listener]]\nprotocol = \"websockets\"\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
             websocket_path = {path:?}\n"
        )
    };
    let server = server(&websockets("/a")).await;
    let listener = Arc::clone(&server.listeners()[0]);
    let addr = listener.local_addrs()[0];
    // The status code of an upgrade to `path`.
    let upgrade = |path: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut status = [0u8; 12];
        tokio::time::timeout(WAIT, stream.read_exact(&mut status)).await.unwrap().unwrap();
        String::from_utf8_lossy(&status[9..]).into_owned()
    };
    assert_eq!(upgrade("/b").await, "404");
    let failures = |count: u64| {
        let listener = Arc::clone(&listener);
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while listener.counters().websocket_upgrade_failures != count {
                assert!(tokio::time::Instant::now() < deadline, "{:?}", listener.counters());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    failures(1).await;

    let config = ServerConfig::parse(&websockets("/b"), Path::new("test.toml")).unwrap().listener.remove(0);
    let files = midge_server::listener::ListenerFiles::load(listener.index(), &config).unwrap();
    listener.apply(config, files);
    assert_eq!(listener.config().websocket_path.as_deref(), Some("/b"));
    assert_eq!(upgrade("/b").await, "101");
    assert_eq!(upgrade("/a").await, "404");
    failures(2).await;

    server.run_until(async {}).await;
}
