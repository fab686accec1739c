//! Raw-wire MQTT for the conformance tests: a tiny synchronous client over
//! `std::net::TcpStream`, hand-written packet builders and a frame reader. It does not use
//! midge-codec, so the tests hold the broker to the spec rather than to our own codec.
//!
//! # Layout
//! - `build`: packet builders and the property list type (bytes out).
//! - `frame`: splits and parses the frames the server sends (bytes in).
//! - this file: [`Version`], the [`Client`] that owns one connection, the `versions!` macro that
//!   turns one test body into a test per protocol version, and target checks for the few tests
//!   that need midge-only settings or that mosquitto fails.
//!
//! # Waiting
//! Every read has a deadline: [`WAIT`] for a packet the server must send (only a failing test
//! waits that long), [`QUIET`] to confirm that nothing arrives. Tests prefer a barrier to
//! [`QUIET`]: to show that message A is not delivered, the publisher sends A and then a sentinel
//! B, and the subscriber's next message must be B. This relies on the server handling one
//! connection's packets in order, which the spec only promises per topic and QoS (MQTT-4.6.0-6)
//! but which every broker does.
#![allow(dead_code)]

pub mod build;
pub mod frame;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// Each test file uses its own subset of these.
#[allow(unused_imports)]
pub use build::{opt, prop, Connect, Props, Publish, Subscribe, Value, Will};
#[allow(unused_imports)]
pub use frame::{Ack, Connack, Disconnect, Packet, Suback};

use crate::support::{Target, TestBroker};

/// How long to wait for a packet the server must send.
pub const WAIT: Duration = Duration::from_secs(3);

/// How long to listen when a test must show that nothing arrives and no barrier is possible.
pub const QUIET: Duration = Duration::from_millis(300);

/// The protocol versions. Variant names double as test names in `versions!`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1: "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: "MQTT", level 5.
    V5,
}

/// Turns one test body into a `#[test]` per protocol version, in a module named after the test:
/// `connect_second_connect_mqtt_3_1_0_2::V3_1_1`.
///
/// ```ignore
/// versions! {
///     /// Doc comment.
///     fn connect_pingreq_mqtt_3_12_4_1(v) in [V3_1, V3_1_1, V5] {
///         ...
///     }
/// }
/// ```
#[allow(unused_macros)]
macro_rules! versions {
    ($($(#[$meta:meta])* fn $name:ident($v:ident) in [$($ver:ident),+ $(,)?] $body:block)*) => {$(
        $(#[$meta])*
        #[allow(non_snake_case)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($v: $crate::conformance_wire::Version) $body

            $(
                #[test]
                fn $ver() {
                    run($crate::conformance_wire::Version::$ver)
                }
            )+
        }
    )*};
}

/// True (and says so on stderr) when the tests run against mosquitto, for a test that checks
/// behaviour mosquitto 2.0.11 gets wrong. `why` says how it deviates.
pub fn mosquitto_deviates(why: &str) -> bool {
    let skip = Target::from_env() == Target::Mosquitto;
    if skip {
        eprintln!("skipped against mosquitto, which deviates from the spec here: {why}");
    }
    skip
}

/// True (and says so on stderr) when the tests do not run against midge, for a test that needs
/// a midge-only setting.
pub fn not_midge() -> bool {
    let skip = Target::from_env() != Target::Midge;
    if skip {
        eprintln!("skipped: this test configures midge-only settings");
    }
    skip
}

/// What the next read found.
#[derive(Debug)]
pub enum Event {
    Packet(Packet),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived before the deadline.
    Silent,
}

/// One client connection, speaking raw bytes.
pub struct Client {
    stream: TcpStream,
    pub version: Version,
    /// Bytes read but not yet parsed.
    pending: Vec<u8>,
    /// Packets read while waiting for another one (e.g. a PUBLISH that arrived before a SUBACK).
    backlog: VecDeque<Packet>,
    closed: bool,
    next_id: u16,
    /// Bytes asked for per read (16 KiB unless a test makes the client a slow reader).
    pub read_chunk: usize,
}

impl Client {
    /// A TCP connection to the broker (with `MIDGE_TEST_SPREAD`, to the next node of its
    /// cluster), with nothing sent yet.
    pub fn open(broker: &TestBroker, version: Version) -> Self {
        Self::open_at(broker.client_addr(), version)
    }

    /// A TCP connection to one of the broker's addresses (a broker with several listeners),
    /// with nothing sent yet.
    pub fn open_at(addr: SocketAddr, version: Version) -> Self {
        Self::from_stream(connect_tcp_at(addr), version)
    }

    /// A client over a connection the test opened (and may have written to) itself.
    pub fn from_stream(stream: TcpStream, version: Version) -> Self {
        Self {
            stream,
            version,
            pending: Vec::new(),
            backlog: VecDeque::new(),
            closed: false,
            next_id: 1,
            read_chunk: 16 * 1024,
        }
    }

    /// Connects with `connect` and asserts a successful CONNACK.
    pub fn connect(broker: &TestBroker, connect: &Connect) -> (Self, Connack) {
        let mut client = Self::open(broker, connect.version);
        let connack = client.handshake(connect);
        assert_eq!(connack.code, 0, "CONNACK refused {connect:?}: {connack:?}");
        (client, connack)
    }

    /// Connects a clean session with this client id and default settings.
    pub fn new(broker: &TestBroker, version: Version, client_id: &str) -> Self {
        Self::connect(broker, &Connect::new(version, client_id)).0
    }

    /// Sends `connect` and returns the CONNACK, whatever its code.
    pub fn handshake(&mut self, connect: &Connect) -> Connack {
        self.send(&connect.encode());
        match self.recv() {
            Packet::Connack(connack) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Writes raw bytes; panics if the connection is already gone.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// Writes raw bytes, ignoring errors, for a server that may already have closed.
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next event within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Event {
        if let Some(packet) = self.backlog.pop_front() {
            return Event::Packet(packet);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match frame::split_frame(&self.pending) {
                Ok(Some(frame)) => {
                    let packet = frame::parse(self.version, frame.first, frame.body)
                        .unwrap_or_else(|e| panic!("bad packet from server: {e}; {frame:02x?}"));
                    let used = frame.len;
                    self.pending.drain(..used);
                    return Event::Packet(packet);
                }
                Ok(None) => {}
                Err(e) => panic!("bad frame from server: {e}"),
            }
            if self.closed {
                return Event::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Silent;
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(left)).expect("set_read_timeout");
            let mut buf = [0u8; 16 * 1024];
            let chunk = self.read_chunk.clamp(1, buf.len());
            match self.stream.read(&mut buf[..chunk]) {
                Ok(0) => self.closed = true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
                    ) =>
                {
                    self.closed = true
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads up to `max` bytes without parsing them, for a reader that only counts what it
    /// gets: bytes already buffered first, else what arrives within `timeout`. Returns how many
    /// (0: nothing came, or the connection is closed).
    pub fn read_raw(&mut self, max: usize, timeout: Duration) -> usize {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(max);
            self.pending.drain(..n);
            return n;
        }
        if self.closed {
            return 0;
        }
        let mut buf = vec![0u8; max.max(1)];
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).expect("set_read_timeout");
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.closed = true;
                0
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => 0,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// The next packet; panics if the connection closes or nothing arrives within [`WAIT`].
    pub fn recv(&mut self) -> Packet {
        self.recv_within(WAIT)
    }

    /// The next packet within `timeout`.
    pub fn recv_within(&mut self, timeout: Duration) -> Packet {
        match self.next(timeout) {
            Event::Packet(packet) => packet,
            Event::Closed => panic!("connection closed while waiting for a packet"),
            Event::Silent => panic!("no packet within {timeout:?}"),
        }
    }

    /// Waits for the server to close the connection within `timeout`, returning the v5
    /// DISCONNECT it sent first, if any. Any other packet fails the test.
    pub fn expect_closed(&mut self, timeout: Duration) -> Option<Disconnect> {
        let deadline = Instant::now() + timeout;
        let mut disconnect = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Event::Closed => return disconnect,
                Event::Packet(Packet::Disconnect(d)) if disconnect.is_none() => disconnect = Some(d),
                Event::Packet(other) => panic!("expected the connection to close, got {other:?}"),
                Event::Silent => panic!("connection still open after {timeout:?}"),
            }
        }
    }

    /// Waits for the server to close the connection because of a protocol error: a v5 server
    /// may first send DISCONNECT, whose reason code must then be 0x80 or above (MQTT-4.13.1-1).
    pub fn expect_error_close(&mut self) -> Option<u8> {
        let disconnect = self.expect_closed(WAIT);
        if let Some(d) = &disconnect {
            assert!(d.reason >= 0x80, "DISCONNECT before an error close has reason {:#04x}", d.reason);
        }
        disconnect.map(|d| d.reason)
    }

    /// Waits for the server to refuse a CONNECT and close. `allowed` says which CONNACK codes
    /// the spec lets it send before closing (`|_| false`: it must close without a CONNACK, as
    /// 3.1.1's MQTT-3.1.4-1 demands for a malformed CONNECT). Returns the code it sent.
    pub fn expect_refused(&mut self, allowed: impl Fn(u8) -> bool) -> Option<u8> {
        match self.next(WAIT) {
            Event::Closed => None,
            Event::Packet(Packet::Connack(connack)) => {
                assert!(allowed(connack.code), "CONNACK code {:#04x} not allowed here", connack.code);
                assert_ne!(connack.code, 0, "the CONNECT was accepted");
                assert!(!connack.session_present, "refusing CONNACK with Session Present 1 (MQTT-3.2.2-4)");
                let disconnect = self.expect_closed(WAIT);
                // A server MUST NOT send DISCONNECT before a successful CONNACK (MQTT-3.14.0-1).
                assert_eq!(disconnect, None, "DISCONNECT after a refusing CONNACK");
                Some(connack.code)
            }
            Event::Packet(other) => panic!("expected a refusal, got {other:?}"),
            Event::Silent => panic!("the server neither refused nor closed within {WAIT:?}"),
        }
    }

    /// Waits for a v5 DISCONNECT with this reason code followed by the close.
    pub fn expect_disconnect(&mut self, reason: u8) {
        match self.expect_closed(WAIT) {
            Some(d) => assert_eq!(d.reason, reason, "DISCONNECT reason code: {d:?}"),
            None => panic!("connection closed without the DISCONNECT {reason:#04x}"),
        }
    }

    /// Asserts that nothing arrives (and the connection stays open) for `duration`.
    pub fn expect_silence(&mut self, duration: Duration) {
        match self.next(duration) {
            Event::Silent => {}
            Event::Closed => panic!("connection closed; expected it to stay open and quiet"),
            Event::Packet(p) => panic!("expected nothing, got {p:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH; it is not acknowledged.
    pub fn expect_publish(&mut self) -> Publish {
        match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledged according to its QoS (for QoS 2 the whole flow).
    pub fn receive(&mut self) -> Publish {
        let publish = self.expect_publish();
        self.acknowledge(&publish);
        publish
    }

    /// Receives PUBLISHes, acknowledging each, up to and including the first whose payload is
    /// `last` (the sentinel of a barrier).
    pub fn receive_until(&mut self, last: &[u8]) -> Vec<Publish> {
        let mut got = Vec::new();
        loop {
            let publish = self.receive();
            let done = publish.payload == last;
            got.push(publish);
            if done {
                return got;
            }
            assert!(got.len() < 1000, "no {last:?} among {got:?}");
        }
    }

    /// Acknowledges a PUBLISH from the server: PUBACK, or PUBREC → PUBREL → PUBCOMP.
    pub fn acknowledge(&mut self, publish: &Publish) {
        match publish.qos {
            0 => {}
            1 => self.send(&build::ack(build::PUBACK, self.version, publish.id, 0)),
            _ => {
                self.send(&build::ack(build::PUBREC, self.version, publish.id, 0));
                let pubrel = self.wait_for(|p| matches!(p, Packet::Pubrel(a) if a.id == publish.id));
                let Packet::Pubrel(pubrel) = pubrel else { unreachable!() };
                assert!(pubrel.reason < 0x80, "PUBREL {pubrel:?}");
                self.send(&build::ack(build::PUBCOMP, self.version, publish.id, 0));
            }
        }
    }

    /// Reads until a packet satisfies `want`, keeping the others for later reads.
    pub fn wait_for(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        let mut skipped = Vec::new();
        let deadline = Instant::now() + WAIT;
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Event::Packet(p) if want(&p) => break p,
                Event::Packet(p) => skipped.push(p),
                Event::Closed => panic!("connection closed; had {skipped:?}"),
                Event::Silent => panic!("the awaited packet did not come; had {skipped:?}"),
            }
        };
        for p in skipped.into_iter().rev() {
            self.backlog.push_front(p);
        }
        found
    }

    /// A fresh non-zero packet identifier.
    pub fn fresh_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC → PUBREL → PUBCOMP), asserting
    /// success codes. A packet id of 0 is replaced with a fresh one.
    pub fn publish(&mut self, publish: Publish) {
        let mut publish = publish;
        if publish.qos > 0 && publish.id == 0 {
            publish.id = self.fresh_id();
        }
        self.send(&publish.encode(self.version));
        let id = publish.id;
        match publish.qos {
            0 => {}
            1 => {
                let Packet::Puback(ack) = self.wait_for(|p| matches!(p, Packet::Puback(a) if a.id == id)) else {
                    unreachable!()
                };
                assert!(ack.reason < 0x80, "PUBACK {ack:?}");
            }
            _ => {
                let Packet::Pubrec(rec) = self.wait_for(|p| matches!(p, Packet::Pubrec(a) if a.id == id)) else {
                    unreachable!()
                };
                assert!(rec.reason < 0x80, "PUBREC {rec:?}");
                self.send(&build::ack(build::PUBREL, self.version, id, 0));
                self.wait_for(|p| matches!(p, Packet::Pubcomp(a) if a.id == id));
            }
        }
    }

    /// Shorthand for [`Client::publish`] of a plain message.
    pub fn publish_msg(&mut self, topic: &str, payload: &[u8], qos: u8) {
        self.publish(Publish::new(topic, payload, qos));
    }

    /// Subscribes one filter and returns the SUBACK code.
    pub fn subscribe(&mut self, filter: &str, options: u8) -> u8 {
        let suback = self.subscribe_many(&[(filter, options)]);
        suback.codes[0]
    }

    /// Subscribes several filters in one SUBSCRIBE and returns the SUBACK, checking that it
    /// carries the packet id (MQTT-3.8.4-2) and one code per filter (MQTT-3.8.4-5/-6).
    pub fn subscribe_many(&mut self, filters: &[(&str, u8)]) -> Suback {
        let id = self.fresh_id();
        self.subscribe_with(Subscribe::new(id, filters))
    }

    /// Sends a SUBSCRIBE and returns its SUBACK.
    pub fn subscribe_with(&mut self, subscribe: Subscribe) -> Suback {
        self.send(&subscribe.encode(self.version));
        let id = subscribe.id;
        let Packet::Suback(suback) = self.wait_for(|p| matches!(p, Packet::Suback(_))) else { unreachable!() };
        assert_eq!(suback.id, id, "SUBACK packet id");
        assert_eq!(suback.codes.len(), subscribe.filters.len(), "one SUBACK code per filter");
        suback
    }

    /// Unsubscribes and returns the UNSUBACK, checking its packet id (MQTT-3.10.4-4).
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Suback {
        let id = self.fresh_id();
        self.send(&build::unsubscribe(self.version, id, filters));
        let Packet::Unsuback(unsuback) = self.wait_for(|p| matches!(p, Packet::Unsuback(_))) else { unreachable!() };
        assert_eq!(unsuback.id, id, "UNSUBACK packet id");
        unsuback
    }

    /// PINGREQ, then waits for the PINGRESP.
    pub fn ping(&mut self) {
        self.send(&build::pingreq());
        self.wait_for(|p| matches!(p, Packet::Pingresp));
    }

    /// Sends DISCONNECT (v5: reason 0x00), half-closes, and waits until the server has closed
    /// too, so the server has handled the DISCONNECT when this returns.
    pub fn disconnect(mut self) {
        self.send(&build::disconnect(self.version, 0, &Props::new()));
        self.finish();
    }

    /// Sends a v5 DISCONNECT with this reason code and properties, then as [`Client::disconnect`].
    pub fn disconnect_with(mut self, reason: u8, props: &Props) {
        self.send(&build::disconnect(self.version, reason, props));
        self.finish();
    }

    /// Drops the TCP connection without DISCONNECT and waits until the server has noticed.
    pub fn drop_connection(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + WAIT;
        // Packets still in flight to this client are of no interest once it leaves.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Event::Closed => return,
                Event::Packet(_) => {}
                Event::Silent => panic!("server kept the connection open after the client left"),
            }
        }
    }
}

/// A TCP connection to the broker at `addr`. Retries a refused connection for a moment:
/// mosquitto logs the line the harness waits for just before it starts listening.
fn connect_tcp_at(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_nodelay(true).expect("TCP_NODELAY");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("cannot connect to the broker at {addr}: {e}"),
        }
    }
}

/// The topics of `publishes`, for readable assertions.
pub fn topics(publishes: &[Publish]) -> Vec<&str> {
    publishes.iter().map(|p| p.topic.as_str()).collect()
}

/// The payloads of `publishes`, for readable assertions.
pub fn payloads(publishes: &[Publish]) -> Vec<&[u8]> {
    publishes.iter().map(|p| p.payload.as_slice()).collect()
}
