//! MQTT over WebSocket (MQTT section 6, RFC 6455) against `midge serve` with a
//! `protocol = "websockets"` listener beside a TCP one. The WebSocket client is written here
//! on raw sockets (TCP, or rustls for wss), so every status line, header and frame the broker
//! sends is checked byte by byte; its MQTT packets are conformance_wire's, which does not use
//! midge-codec either. Every wait is bounded; nothing sleeps to synchronise.

mod conformance_wire;
mod support;
mod tls_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance_wire::build::{self, Connect, Props, Publish, Subscribe};
use conformance_wire::frame::{parse, split_frame};
use conformance_wire::{Client, Packet, Version, WAIT};
use support::TestBroker;

/// RFC 6455 section 1.3's example key, and the accept value it must get.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Frame opcodes (RFC 6455 section 5.2), with FIN set.
const BINARY: u8 = 0x82;
const TEXT: u8 = 0x81;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8a;

/// `midge serve` with a TCP listener (the broker's `addr`) and then a websockets listener with
/// `settings` added to it, both for anonymous clients, and `extra` after them; returns the
/// broker and the WebSocket listener's address, read from its `listening` line.
fn serve(settings: &str, extra: &str) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_midge_with(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websockets\"\nallow_anonymous = true\n{settings}\n\n\
         [store]\npersistence = false\n\n{extra}\n"
    ));
    let addr = broker.listener_addr("listening (mqtt over websockets");
    assert_ne!(addr, broker.addr, "the TCP listener is the broker's first");
    (broker, addr)
}

/// What the test's WebSocket client runs over: TCP, or TLS over TCP.
trait Wire: Read + Write + Send {
    fn set_timeout(&self, timeout: Duration);
}

impl Wire for TcpStream {
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).expect("set_read_timeout");
    }
}

impl Wire for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeout(&self, timeout: Duration) {
        self.sock.set_timeout(timeout);
    }
}

fn tcp(addr: SocketAddr) -> Box<dyn Wire> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    Box::new(stream)
}

/// TLS to `addr`, trusting the CA in `pki`, for the name 127.0.0.1, offering no ALPN.
fn tls(addr: SocketAddr, pki: &tls_common::Pki) -> Box<dyn Wire> {
    tls_offering(addr, pki, &[])
}

/// [`tls`] offering the ALPN protocols `alpn`.
fn tls_offering(addr: SocketAddr, pki: &tls_common::Pki, alpn: &[&[u8]]) -> Box<dyn Wire> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).expect("ca.pem") {
        roots.add(certificate.expect("a certificate")).expect("a CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    Box::new(rustls::StreamOwned::new(connection, stream))
}

/// A valid upgrade request for `path` (RFC 6455 section 4.1), with `extra` header lines.
fn upgrade_request(path: &str, extra: &[&str]) -> String {
    let mut text = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// An HTTP response's head, and what came after it.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Header lines, lowercased.
    headers: Vec<String>,
    rest: Vec<u8>,
}

impl Response {
    fn has(&self, line: &str) -> bool {
        self.headers.iter().any(|header| header == &line.to_ascii_lowercase())
    }
}

/// Sends `request` and reads the response's head; with `to_end`, reads on until the server
/// closes (a refusal's body).
fn http(wire: &mut dyn Wire, request: &str, to_end: bool) -> Response {
    wire.write_all(request.as_bytes()).expect("send the request");
    let deadline = Instant::now() + WAIT;
    let mut bytes = Vec::new();
    let mut ended = false;
    loop {
        let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some() && (!to_end || ended) {
            let head_end = head_end.unwrap_or_default();
            let head = String::from_utf8(bytes[..head_end].to_vec()).expect("an ASCII head");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok());
            let status = status.unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
            let headers = lines.map(str::to_ascii_lowercase).collect();
            return Response { status, headers, rest: bytes[head_end + 4..].to_vec() };
        }
        assert!(!ended, "closed before the response's head: {:?}", String::from_utf8_lossy(&bytes));
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no response in time"));
        wire.set_timeout(left);
        let mut buf = [0u8; 4096];
        match wire.read(&mut buf) {
            Ok(0) => ended = true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => ended = true,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    /// FIN, RSV and opcode.
    first: u8,
    payload: Vec<u8>,
}

/// The whole server frame at the front of `buf`, and its length. Server frames are never
/// masked (RFC 6455 section 5.1).
fn server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let (&first, rest) = buf.split_first()?;
    let (&second, rest) = rest.split_first()?;
    assert_eq!(second & 0x80, 0, "a masked frame from the server (RFC 6455 section 5.1)");
    let (len, rest) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), &rest[2..]),
        127 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), &rest[8..]),
        len => (u64::from(len), rest),
    };
    let len = usize::try_from(len).expect("a length that fits");
    let payload = rest.get(..len)?.to_vec();
    let used = buf.len() - rest.len() + len;
    Some((Frame { first, payload }, used))
}

/// A WebSocket client carrying MQTT.
struct Ws {
    wire: Box<dyn Wire>,
    version: Version,
    /// Bytes from the server not yet a whole frame.
    raw: Vec<u8>,
    /// MQTT bytes from binary frames not yet a whole packet.
    mqtt: Vec<u8>,
    ended: bool,
    /// Frames sent, to vary the mask.
    sent: u8,
}

impl Ws {
    /// Upgrades `wire` at `path`, offering the `mqtt` subprotocol, and checks the 101: the
    /// accept key (RFC 6455 section 4.2.2) and the subprotocol (MQTT-6.0.0-4).
    fn upgrade(mut wire: Box<dyn Wire>, version: Version, path: &str) -> Self {
        let response = http(&mut *wire, &upgrade_request(path, &["Sec-WebSocket-Protocol: mqtt"]), false);
        assert_eq!(response.status, 101, "{response:?}");
        for line in ["Upgrade: websocket", "Connection: Upgrade", &format!("Sec-WebSocket-Accept: {ACCEPT}")] {
            assert!(response.has(line), "no {line:?} in {response:?}");
        }
        assert!(response.has("Sec-WebSocket-Protocol: mqtt"), "MQTT-6.0.0-4: {response:?}");
        Self { wire, version, raw: response.rest, mqtt: Vec::new(), ended: false, sent: 0 }
    }

    /// A frame with this first byte (FIN, RSV, opcode) and payload, masked as a client's must be.
    fn send_frame(&mut self, first: u8, payload: &[u8]) {
        self.sent = self.sent.wrapping_add(1);
        let mask = [0x5a, self.sent, 0xc3, 0x0f ^ self.sent];
        let mut bytes = vec![first];
        match payload.len() {
            len @ 0..=125 => bytes.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
        self.wire.write_all(&bytes).expect("send a frame");
    }

    /// MQTT bytes in one binary frame.
    fn send(&mut self, mqtt: &[u8]) {
        self.send_frame(BINARY, mqtt);
    }

    /// The next frame from the server; `None` once it has closed the connection.
    fn next_frame(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((frame, used)) = server_frame(&self.raw) {
                self.raw.drain(..used);
                return Some(frame);
            }
            if self.ended {
                assert!(self.raw.is_empty(), "the server closed in the middle of a frame: {:02x?}", self.raw);
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no frame in time"));
            self.wire.set_timeout(left);
            let mut buf = [0u8; 16 * 1024];
            match self.wire.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof) => {
                    self.ended = true
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next MQTT packet, from binary frames (a packet may span them: MQTT-6.0.0-2).
    fn recv(&mut self) -> Packet {
        loop {
            if let Some(frame) = split_frame(&self.mqtt).expect("an MQTT frame") {
                let packet = parse(self.version, frame.first, frame.body).expect("a packet");
                let used = frame.len;
                self.mqtt.drain(..used);
                return packet;
            }
            match self.next_frame() {
                // FIN set, no RSV bit, binary: the broker never fragments or uses text frames.
                Some(Frame { first: BINARY, payload }) => self.mqtt.extend_from_slice(&payload),
                Some(other) => panic!("expected a binary frame, got {other:?}"),
                None => panic!("the server closed while a packet was awaited"),
            }
        }
    }

    /// Waits for the server's close frame and returns its code and reason; then the server
    /// must close the connection (RFC 6455 section 7.1.1: the server closes TCP first).
    fn expect_close(&mut self) -> (u16, String) {
        let close = loop {
            match self.next_frame() {
                Some(Frame { first: CLOSE, payload }) => break payload,
                // A v5 DISCONNECT may come before the close.
                Some(Frame { first: BINARY, .. }) => {}
                Some(other) => panic!("expected a close frame, got {other:?}"),
                None => panic!("the server closed without a close frame"),
            }
        };
        assert!(close.len() >= 2, "a close frame without a code: {close:?}");
        let code = u16::from_be_bytes([close[0], close[1]]);
        let reason = String::from_utf8(close[2..].to_vec()).expect("a UTF-8 reason");
        assert_eq!(self.next_frame(), None, "nothing after the close frame (RFC 6455 section 5.5.1)");
        (code, reason)
    }

    /// Acknowledges a PUBLISH from the server: PUBACK, or PUBREC → PUBREL → PUBCOMP.
    fn acknowledge(&mut self, publish: &Publish) {
        match publish.qos {
            0 => {}
            1 => self.send(&build::ack(build::PUBACK, self.version, publish.id, 0)),
            _ => {
                self.send(&build::ack(build::PUBREC, self.version, publish.id, 0));
                assert!(matches!(self.recv(), Packet::Pubrel(ack) if ack.id == publish.id), "PUBREL");
                self.send(&build::ack(build::PUBCOMP, self.version, publish.id, 0));
            }
        }
    }
}

/// Payload bytes of every value, `len` of them.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A whole session over `ws` beside a TCP client: CONNECT in a 1-byte frame and a frame with
/// the rest (MQTT-6.0.0-2), an empty frame between them; SUBSCRIBE and PINGREQ in one frame
/// (MQTT-6.0.0-3); QoS 0, 1 and 2 to the TCP client and back, with payloads that take each of
/// the three frame length forms (RFC 6455 section 5.2); DISCONNECT, and the close (1000).
fn exchange(mut ws: Ws, tcp_addr: SocketAddr, name: &str) {
    let version = ws.version;
    let mut tcp = Client::open_at(tcp_addr, version);
    let connack = tcp.handshake(&Connect::new(version, &format!("{name}-tcp")));
    assert_eq!(connack.code, 0);
    assert_eq!(tcp.subscribe(&format!("{name}/from-ws/#"), 2), 2);

    let connect = Connect::new(version, &format!("{name}-ws")).encode();
    ws.send(&connect[..1]);
    ws.send(b"");
    ws.send(&connect[1..]);
    assert!(matches!(ws.recv(), Packet::Connack(connack) if connack.code == 0), "CONNACK 0");
    let mut subscribe_and_ping = Subscribe::new(1, &[(&format!("{name}/from-tcp/#"), 2)]).encode(version);
    subscribe_and_ping.extend(build::pingreq());
    ws.send(&subscribe_and_ping);
    assert!(matches!(ws.recv(), Packet::Suback(suback) if suback.id == 1 && suback.codes == [2]), "SUBACK");
    assert_eq!(ws.recv(), Packet::Pingresp);

    for (qos, len) in [(0u8, 10), (1, 300), (2, 70_000)] {
        let topic = format!("{name}/from-ws/{qos}");
        let id = 10 + u16::from(qos);
        ws.send(&Publish::new(&topic, &pattern(len), qos).id(id).encode(version));
        match qos {
            0 => {}
            1 => assert!(matches!(ws.recv(), Packet::Puback(ack) if ack.id == id), "PUBACK"),
            _ => {
                assert!(matches!(ws.recv(), Packet::Pubrec(ack) if ack.id == id), "PUBREC");
                ws.send(&build::ack(build::PUBREL, version, id, 0));
                assert!(matches!(ws.recv(), Packet::Pubcomp(ack) if ack.id == id), "PUBCOMP");
            }
        }
        let got = tcp.receive();
        assert_eq!((got.topic.as_str(), got.qos, got.payload.len()), (topic.as_str(), qos, len));
        assert_eq!(got.payload, pattern(len));
    }
    for (qos, len) in [(0u8, 70_000), (1, 10), (2, 300)] {
        let topic = format!("{name}/from-tcp/{qos}");
        tcp.publish(Publish::new(&topic, &pattern(len), qos));
        let Packet::Publish(got) = ws.recv() else { panic!("expected PUBLISH") };
        assert_eq!((got.topic.as_str(), got.qos, got.payload.len()), (topic.as_str(), qos, len));
        assert_eq!(got.payload, pattern(len));
        ws.acknowledge(&got);
    }
    // The broker acknowledged everything: a PINGREQ's answer is the next packet.
    ws.send(&build::pingreq());
    assert_eq!(ws.recv(), Packet::Pingresp);

    ws.send(&build::disconnect(version, 0, &Props::new()));
    assert_eq!(ws.expect_close(), (1000, String::new()), "a normal close after DISCONNECT");
}

#[test]
fn mqtt_3_1_1_over_websockets_to_and_from_a_tcp_client() {
    let (broker, ws_addr) = serve("", "");
    exchange(Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/mqtt"), broker.addr, "v311");
}

#[test]
fn mqtt_5_over_websockets_to_and_from_a_tcp_client() {
    let (broker, ws_addr) = serve("", "");
    exchange(Ws::upgrade(tcp(ws_addr), Version::V5, "/"), broker.addr, "v5");
}

/// WebSocket over TLS (wss): the same listener keys as a TLS listener, the same exchange; a
/// client offering no ALPN, and one offering `http/1.1` alone, as browsers do.
#[test]
fn mqtt_3_1_1_and_5_over_websockets_over_tls() {
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let (broker, ws_addr) = serve(&pki.midge_listener(), "");
    broker.wait_for_log("listening (mqtt over websockets over tls)", WAIT);
    exchange(Ws::upgrade(tls(ws_addr, &pki), Version::V3_1_1, "/mqtt"), broker.addr, "wss311");
    let browser_like = tls_offering(ws_addr, &pki, &[b"http/1.1"]);
    exchange(Ws::upgrade(browser_like, Version::V5, "/mqtt"), broker.addr, "wss5");
}

/// RFC 6455 section 4.2.1 and 4.4, MQTT-6.0.0-3/-4, and the listener's own rules: each bad
/// upgrade request gets its HTTP status and a reason, then the connection closes; the refusals
/// are logged at a bounded rate.
#[test]
fn bad_upgrade_requests_get_their_http_status() {
    let (broker, ws_addr) = serve("websocket_path = \"/mqtt\"\nwebsocket_origins = [\"https://app.example\"]\n", "");
    let origin = "Origin: https://app.example";
    let without = |name: &str| {
        let request = upgrade_request("/mqtt", &[origin]);
        request.split("\r\n").filter(|line| !line.starts_with(name)).collect::<Vec<_>>().join("\r\n")
    };
    let cases = [
        ("no Upgrade", without("Upgrade:"), 426, Some("upgrade: websocket")),
        (
            "version 8",
            upgrade_request("/mqtt", &[origin]).replace("Version: 13", "Version: 8"),
            426,
            Some("sec-websocket-version: 13"),
        ),
        ("another path", upgrade_request("/", &[origin]), 404, None),
        ("an Origin not allowed", upgrade_request("/mqtt", &["Origin: https://evil.example"]), 403, None),
        ("no Origin", upgrade_request("/mqtt", &[]), 403, None),
        (
            "only other subprotocols",
            upgrade_request("/mqtt", &[origin, "Sec-WebSocket-Protocol: chat, wamp"]),
            400,
            None,
        ),
        ("not GET", upgrade_request("/mqtt", &[origin]).replacen("GET", "POST", 1), 405, Some("allow: get")),
    ];
    for (what, request, status, header) in cases {
        let response = http(&mut *tcp(ws_addr), &request, true);
        assert_eq!(response.status, status, "{what}: {response:?}");
        if let Some(header) = header {
            assert!(response.has(header), "{what}: no {header:?} in {response:?}");
        }
        assert!(response.has("connection: close"), "{what}: {response:?}");
        let body = String::from_utf8_lossy(&response.rest);
        assert!(body.ends_with('\n') && body.len() > 1, "{what}: a short reason as the body: {body:?}");
    }
    let line = broker.wait_for_log("WebSocket upgrade refused", WAIT);
    assert!(line.contains("status=426") && line.contains("total=1"), "the first refusal is logged: {line}");

    // The same request, right: 101 with the subprotocol; none offered, none answered.
    let accepted =
        http(&mut *tcp(ws_addr), &upgrade_request("/mqtt?client=1", &[origin, "Sec-WebSocket-Protocol: mqtt"]), false);
    assert_eq!(accepted.status, 101, "{accepted:?}");
    assert!(accepted.has("sec-websocket-protocol: mqtt"), "{accepted:?}");
    let no_subprotocol = http(&mut *tcp(ws_addr), &upgrade_request("/mqtt", &[origin]), false);
    assert_eq!(no_subprotocol.status, 101, "{no_subprotocol:?}");
    assert!(!no_subprotocol.headers.iter().any(|line| line.starts_with("sec-websocket-protocol")));
}

/// MQTT-6.0.0-1: a text frame closes the connection, with close code 1003 (RFC 6455 section
/// 7.4.1), before CONNECT as after it.
#[test]
fn a_text_frame_closes_the_connection_with_1003() {
    let (_broker, ws_addr) = serve("", "");
    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/");
    ws.send(&Connect::new(Version::V3_1_1, "texter").encode());
    assert!(matches!(ws.recv(), Packet::Connack(connack) if connack.code == 0));
    ws.send_frame(TEXT, b"{\"hello\":1}");
    let (code, reason) = ws.expect_close();
    assert_eq!(code, 1003, "{reason}");
    assert!(reason.contains("MQTT-6.0.0-1"), "{reason}");

    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/");
    ws.send_frame(TEXT, &Connect::new(Version::V3_1_1, "texter").encode());
    assert_eq!(ws.expect_close().0, 1003, "before CONNECT");
}

/// RFC 6455 section 5.5.2: a ping is answered with a pong carrying its payload, before CONNECT
/// (ahead of the CONNACK) and on an idle connection.
#[test]
fn a_ping_is_answered_with_a_pong() {
    let (_broker, ws_addr) = serve("", "");
    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V5, "/");
    ws.send_frame(PING, b"early");
    ws.send(&Connect::new(Version::V5, "pinger").encode());
    assert_eq!(ws.next_frame(), Some(Frame { first: PONG, payload: b"early".to_vec() }));
    assert!(matches!(ws.recv(), Packet::Connack(connack) if connack.code == 0));
    ws.send_frame(PING, b"idle?");
    assert_eq!(ws.next_frame(), Some(Frame { first: PONG, payload: b"idle?".to_vec() }));
    ws.send(&build::pingreq());
    assert_eq!(ws.recv(), Packet::Pingresp, "the connection carries on");
}

/// A frame over `websocket_max_frame_size` is refused from its header with close code 1009
/// (RFC 6455 section 7.4.1); one at the limit is read.
#[test]
fn a_frame_over_websocket_max_frame_size_closes_with_1009() {
    let (_broker, ws_addr) = serve("websocket_max_frame_size = 1024\n", "");
    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/");
    ws.send(&Connect::new(Version::V3_1_1, "big").encode());
    assert!(matches!(ws.recv(), Packet::Connack(connack) if connack.code == 0));
    let at_limit = Publish::new("big", &[], 1).id(7);
    // The remaining length takes a second byte at this size.
    let overhead = at_limit.encode(Version::V3_1_1).len() + 1;
    let at_limit = Publish::new("big", &pattern(1024 - overhead), 1).id(7).encode(Version::V3_1_1);
    assert_eq!(at_limit.len(), 1024);
    ws.send(&at_limit);
    assert!(matches!(ws.recv(), Packet::Puback(ack) if ack.id == 7), "a frame at the limit is read");
    // Only the header of a 1025-byte frame: the broker must not wait for its payload.
    ws.wire.write_all(&[BINARY, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4]).expect("send a header");
    let (code, reason) = ws.expect_close();
    assert_eq!(code, 1009, "{reason}");
}

/// RFC 6455 section 5.1: a server closes the connection on an unmasked frame from a client,
/// with close code 1002.
#[test]
fn an_unmasked_frame_closes_with_1002() {
    let (_broker, ws_addr) = serve("", "");
    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/");
    let pingreq = build::pingreq();
    ws.wire.write_all(&[&[BINARY, pingreq.len() as u8][..], &pingreq].concat()).expect("send");
    assert_eq!(ws.expect_close().0, 1002);
}

/// RFC 6455 sections 5.5.1 and 7.1.1: a client's close frame is answered with one echoing its
/// code, and the server then closes the connection; the broker sees the client gone.
#[test]
fn a_close_frame_is_echoed_and_the_connection_ends() {
    let (broker, ws_addr) = serve("", "");
    let mut ws = Ws::upgrade(tcp(ws_addr), Version::V3_1_1, "/");
    ws.send(&Connect::new(Version::V3_1_1, "leaver").encode());
    assert!(matches!(ws.recv(), Packet::Connack(connack) if connack.code == 0));
    ws.send_frame(CLOSE, &[&1001u16.to_be_bytes()[..], b"going away"].concat());
    assert_eq!(ws.expect_close(), (1001, String::new()));
    broker.wait_for_log("client_id=leaver reason=connection closed by client", WAIT);
}

/// The connect timeout runs from accept: a client that never sends its upgrade request is
/// closed at `connect_timeout_ms`, and the log names the stage.
#[test]
fn the_connect_timeout_covers_the_upgrade() {
    let (broker, ws_addr) = serve("", "[mqtt]\nconnect_timeout_ms = 200\n");
    let mut silent = TcpStream::connect(ws_addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("set_read_timeout");
    let mut buf = [0u8; 64];
    assert_eq!(silent.read(&mut buf).expect("the server closes"), 0, "closed without a response");
    broker.wait_for_log("stage=\"WebSocket upgrade\"", WAIT);
}
