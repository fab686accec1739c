//! Listener handles over real sockets on 127.0.0.1: each listener of a server can be closed on
//! its own, and its counters say what it accepted and what it refused.

use std::net::SocketAddr;
use std::path::Path;
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
    let [first, second] = server.listeners() else { panic!("two listeners") };
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
    let listener = &server.listeners()[0];
    let addr = listener.local_addrs()[0];
    let (_first, answer) = handshake(addr).await;
    assert_eq!(answer, Some(CONNACK_ACCEPTED));

    let (_second, answer) = handshake(addr).await;
    assert_eq!(answer, None, "closed without CONNACK");
    let counters = listener.counters();
    assert_eq!((counters.accepted, counters.refused_max_connections, counters.open), (1, 1, 1), "{counters:?}");

    server.run_until(async {}).await;
}
