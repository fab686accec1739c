//! rumqttc 0.24 over WebSocket (its `websocket` feature: async-tungstenite's client, nobody on
//! the team wrote it) to a midge `protocol = "websockets"` listener, plain (ws) and over TLS
//! (wss), MQTT 3.1.1 and 5.0: a subscriber and a publisher, both over WebSocket, exchange
//! messages at QoS 0, 1 and 2 (MQTT section 6).

mod support;
mod tls_common;

#[path = "interop_rumqttc/clients.rs"]
#[allow(dead_code)] // the scenarios here use a part of it
mod clients;

use std::net::SocketAddr;

use clients::{Client, Connect, Message, WebSocket, V311, V5};
use support::TestBroker;

/// A broker whose one listener is a websockets listener, with `tls` (its TLS keys) added.
fn serve(tls: &str) -> (TestBroker, SocketAddr) {
    let listener = format!("protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\n{tls}");
    let broker = TestBroker::start_midge_listener_with(&listener, "[store]\npersistence = false\n");
    let addr = broker.listener_addr("listening (mqtt over websockets");
    (broker, addr)
}

/// Each QoS from a publisher to a subscriber holding a QoS 2 subscription: every message comes
/// once, in order, at the QoS it was published with.
async fn round_trips<C: Client>(addr: SocketAddr, websocket: WebSocket, name: &str) {
    let how = Connect { websocket: Some(websocket), ..Connect::default() };
    let (mut subscriber, _) = C::connect(addr, &format!("{name}-sub"), how.clone()).await;
    assert_eq!(subscriber.subscribe(&format!("{name}/#"), 2).await, 2, "granted QoS");
    let (mut publisher, _) = C::connect(addr, &format!("{name}-pub"), how).await;
    for qos in 0..=2 {
        let payload = format!("over websockets at QoS {qos}").repeat(usize::from(qos) * 100 + 1);
        publisher.publish(&format!("{name}/{qos}"), payload.as_bytes(), qos, false).await;
        let expected = Message::new(&format!("{name}/{qos}"), payload.as_bytes(), qos, false);
        assert_eq!(subscriber.recv().await, expected);
    }
    publisher.disconnect().await;
    subscriber.disconnect().await;
}

fn ws() -> WebSocket {
    WebSocket { path: "/mqtt".to_owned(), ca: None }
}

#[tokio::test]
async fn v311_over_websockets() {
    let (_broker, addr) = serve("");
    round_trips::<V311>(addr, ws(), "ws311").await;
}

#[tokio::test]
async fn v5_over_websockets() {
    let (_broker, addr) = serve("");
    round_trips::<V5>(addr, ws(), "ws5").await;
}

/// wss: rumqttc's rustls trusting the test CA, to a websockets listener with `certfile` and
/// `keyfile`.
#[tokio::test]
async fn v311_and_v5_over_websockets_over_tls() {
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let (_broker, addr) = serve(&pki.midge_listener());
    let ca = std::fs::read(pki.path("ca.pem")).expect("CA file");
    let wss = WebSocket { path: "/mqtt".to_owned(), ca: Some(ca) };
    round_trips::<V311>(addr, wss.clone(), "wss311").await;
    round_trips::<V5>(addr, wss, "wss5").await;
}
