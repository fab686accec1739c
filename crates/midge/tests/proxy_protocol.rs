//! The client's own address behind a proxy (issue 14; docs/security.md, "Behind a proxy"), over
//! real sockets: the PROXY protocol (v1 and v2) in front of MQTT over TCP, TLS and WebSocket,
//! and a trusted proxy's `X-Forwarded-For` (or `Forwarded`) on a WebSocket listener.
//!
//! The first tests write the headers by hand, byte by byte as HAProxy's proxy-protocol.txt lays
//! them out. The last ones put Debian's HAProxy, a proxy nobody on the team wrote, in front of
//! the broker (`send-proxy`, `send-proxy-v2`, `option forwardfor`), and real clients
//! (mosquitto_pub and mosquitto_sub, paho over WebSocket) connect through it from 127.0.0.2, an
//! address the broker can only learn from the proxy.
//!
//! Where the address went is read from the broker's log (`client connected peer=...`) and from
//! the connection rate (`[connections] max_connection_rate`), which counts it. Every wait is
//! bounded; nothing sleeps to synchronise. These configure midge only, so they are skipped
//! against mosquitto.

mod conformance_wire;
mod interop_common;
mod support;
mod tls_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance_wire::{Client, Connect, Event, Packet, Version, WAIT};
use interop_common::run_bounded;
use support::{free_port, TestBroker};

/// A midge broker whose first listener (its `addr`) has `listener` keys, with `extra` config
/// after it; `None` against another target.
fn midge(listener: &str, extra: &str) -> Option<TestBroker> {
    if conformance_wire::not_midge() {
        return None;
    }
    Some(TestBroker::start_midge_listener_with(listener, &format!("[store]\npersistence = false\n\n{extra}")))
}

/// The first logged line that `matches`, waited for.
fn log_line(broker: &TestBroker, what: &str, matches: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = broker.log().into_iter().find(|line| matches(line)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line {what}; log:\n{}", broker.log().join("\n"));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The address `client_id` connected from, as its `client connected` line says.
fn connected_peer(broker: &TestBroker, client_id: &str) -> String {
    let id = format!("client_id={client_id} ");
    let line = log_line(broker, &format!("for {client_id} connecting"), |line| {
        line.contains("client connected") && line.contains(&id)
    });
    let (_, rest) = line.split_once("peer=").unwrap_or_else(|| panic!("no peer in {line}"));
    rest.split_whitespace().next().unwrap_or_default().to_owned()
}

/// A v1 header for a client at `source` (IPv4) connecting to 127.0.0.1:1883.
fn v1(source: &str) -> Vec<u8> {
    let source: SocketAddrV4 = source.parse().expect("an IPv4 address and port");
    format!("PROXY TCP4 {} 127.0.0.1 {} 1883\r\n", source.ip(), source.port()).into_bytes()
}

/// v2's signature (section 2.2).
const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a client at `source` (IPv4) connecting to 127.0.0.1:1883, with `tlvs`
/// after the addresses.
fn v2(source: &str, tlvs: &[u8]) -> Vec<u8> {
    let source: SocketAddrV4 = source.parse().expect("an IPv4 address and port");
    let mut payload = source.ip().octets().to_vec();
    payload.extend_from_slice(&[127, 0, 0, 1]);
    payload.extend_from_slice(&source.port().to_be_bytes());
    payload.extend_from_slice(&1883u16.to_be_bytes());
    payload.extend_from_slice(tlvs);
    [SIGNATURE, &[0x21, 0x11], &u16::try_from(payload.len()).unwrap().to_be_bytes(), &payload].concat()
}

/// A v2 LOCAL header: the proxy's own connection (a health check).
fn v2_local() -> Vec<u8> {
    [SIGNATURE, &[0x20, 0x00, 0x00, 0x00]].concat()
}

fn open(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A client connected through `header`, sent with its CONNECT in one write (as a proxy that
/// forwards the client's first bytes at once sends them); asserts the CONNACK accepts it.
fn connect_behind(broker: &TestBroker, header: &[u8], client_id: &str) -> Client {
    let mut client = Client::from_stream(open(broker.addr), Version::V5);
    client.send(&[header, &Connect::new(Version::V5, client_id).encode()].concat());
    match client.recv() {
        Packet::Connack(connack) => assert_eq!(connack.code, 0, "{client_id}: {connack:?}"),
        other => panic!("{client_id}: expected CONNACK, got {other:?}"),
    }
    client
}

/// Whether the broker closes a connection that sends `bytes`, without a CONNACK.
fn closed_without_connack(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut client = Client::from_stream(open(addr), Version::V5);
    client.send_lenient(bytes);
    matches!(client.next(WAIT), Event::Closed)
}

#[test]
fn a_v1_header_gives_the_client_address_and_the_connect_behind_it_is_read() {
    let Some(broker) = midge("enable_proxy_protocol = 1\n", "") else { return };
    broker.wait_for_log("listening (mqtt over tcp, behind PROXY protocol v1)", WAIT);
    let mut client = connect_behind(&broker, &v1("203.0.113.7:51234"), "v1-client");
    client.ping();
    assert_eq!(connected_peer(&broker, "v1-client"), "203.0.113.7:51234");
}

#[test]
fn a_v2_header_with_tlvs_gives_the_client_address() {
    let Some(broker) = midge("enable_proxy_protocol = 2\n", "") else { return };
    // ALPN "mqtt", a unique id, and a NOOP: skipped.
    let tlvs = [&[0x01, 0x00, 0x04][..], b"mqtt", &[0x05, 0x00, 0x03, 1, 2, 3], &[0x04, 0x00, 0x01, 0]].concat();
    let mut client = connect_behind(&broker, &v2("203.0.113.8:40001", &tlvs), "v2-client");
    client.ping();
    assert_eq!(connected_peer(&broker, "v2-client"), "203.0.113.8:40001");
    // A LOCAL header, as a proxy's health check sends, keeps the connection's own address.
    let mut local = connect_behind(&broker, &v2_local(), "v2-local");
    local.ping();
    assert!(connected_peer(&broker, "v2-local").starts_with("127.0.0.1:"));
}

/// `max_connection_rate` counts the client's address: two clients behind the same proxy
/// address both get in at 1 a second, the same client twice does not.
#[test]
fn the_connection_rate_counts_the_address_the_header_gives() {
    let Some(broker) = midge("enable_proxy_protocol = 1\n", "[connections]\nmax_connection_rate = 1\n") else {
        return;
    };
    let _first = connect_behind(&broker, &v1("203.0.113.7:5000"), "rate-first");
    let _other = connect_behind(&broker, &v1("203.0.113.8:5000"), "rate-other");
    let again = [v1("203.0.113.7:5001"), Connect::new(Version::V5, "rate-again").encode()].concat();
    assert!(closed_without_connack(broker.addr, &again), "the same client twice in a second");
    let line =
        log_line(&broker, "about max_connection_rate", |line| line.contains("limit reached: max_connection_rate"));
    assert!(line.contains("peer=203.0.113.7:5001"), "the client's address is the one limited: {line}");
}

/// "The receiver MUST NOT try to guess whether the protocol header is present or not": a
/// connection without a valid header (a client that went round the proxy, the other version,
/// garbage, more than the header may take) is refused and logged; so is one whose header does
/// not arrive within the connect timeout.
#[test]
fn a_connection_without_a_valid_header_is_refused() {
    let Some(v1_broker) = midge("enable_proxy_protocol = 1\n", "[mqtt]\nconnect_timeout_ms = 500\n") else { return };
    let connect = Connect::new(Version::V5, "skipped-the-proxy").encode();
    let too_long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    for (what, bytes) in [
        ("a CONNECT without a header", connect.clone()),
        ("a v2 header", [v2("203.0.113.7:1", &[]), connect.clone()].concat()),
        ("a malformed header", [b"PROXY TCP4 203.0.113.7 here 1 2\r\n".as_slice(), &connect].concat()),
        ("a line longer than 107 bytes", too_long),
    ] {
        assert!(closed_without_connack(v1_broker.addr, &bytes), "{what}");
    }
    let line = log_line(&v1_broker, "about a refused header", |line| line.contains("PROXY header refused"));
    assert!(line.contains("reason=no PROXY protocol header"), "{line}");
    assert!(closed_without_connack(v1_broker.addr, b"PROXY TCP4 203.0.113.7 "), "a header that never ends");
    v1_broker.wait_for_log("connect_timeout_ms: PROXY header not finished within the connect timeout", WAIT);

    let v2_broker = midge("enable_proxy_protocol = 2\n", "").expect("midge");
    let mut announces_too_much = v2("203.0.113.7:1", &[]);
    announces_too_much[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    for (what, bytes) in [
        ("a v1 header", [v1("203.0.113.7:1"), connect.clone()].concat()),
        ("a header announcing 64 KiB", announces_too_much),
        ("a bad version", [SIGNATURE, &[0x11, 0x11, 0x00, 0x00]].concat()),
    ] {
        assert!(closed_without_connack(v2_broker.addr, &bytes), "{what}");
    }
}

/// A header that arrives in parts (a byte, a space, a CR apart) is waited for, not refused,
/// and is read whole.
#[test]
fn a_header_split_across_writes_is_read_whole() {
    let Some(v1_broker) = midge("enable_proxy_protocol = 1\n", "") else { return };
    let v2_broker = midge("enable_proxy_protocol = 2\n", "").expect("midge");
    let v1_header = v1("203.0.113.7:51234");
    let v2_header = v2("203.0.113.8:40001", &[0x04, 0x00, 0x01, 0]);
    for (broker, header, cuts, client_id, source) in [
        (&v1_broker, v1_header, [1, 15, 23, 44], "split-v1", "203.0.113.7:51234"),
        (&v2_broker, v2_header, [1, 6, 15, 20], "split-v2", "203.0.113.8:40001"),
    ] {
        let mut client = Client::from_stream(open(broker.addr), Version::V5);
        let mut start = 0;
        for cut in cuts {
            client.send(&header[start..cut]);
            start = cut;
            assert!(matches!(client.next(Duration::from_millis(100)), Event::Silent), "{client_id}: refused at {cut}");
        }
        client.send(&[&header[start..], &Connect::new(Version::V5, client_id).encode()].concat());
        assert!(matches!(client.recv(), Packet::Connack(connack) if connack.code == 0), "{client_id}");
        assert_eq!(connected_peer(broker, client_id), source);
    }
}

/// TLS to `stream`, trusting the test CA, for the name 127.0.0.1.
fn tls_client(stream: TcpStream, pki: &tls_common::Pki) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).expect("ca.pem") {
        roots.add(certificate.expect("a certificate")).expect("a CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    rustls::StreamOwned::new(rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client"), stream)
}

/// The PROXY header comes before the TLS ClientHello: the handshake and the CONNECT after it
/// work, and the address is the header's. A TLS client that skips the header is refused.
#[test]
fn the_header_comes_before_the_tls_handshake() {
    let pki = tls_common::Pki::new(&["127.0.0.1"]);
    let Some(broker) = midge(&format!("{}enable_proxy_protocol = 2\n", pki.midge_listener()), "") else { return };
    broker.wait_for_log("listening (mqtt over tls, behind PROXY protocol v2)", WAIT);
    let mut stream = open(broker.addr);
    stream.write_all(&v2("203.0.113.9:40002", &[])).expect("the header");
    let mut tls = tls_client(stream, &pki);
    tls.write_all(&Connect::new(Version::V3_1_1, "tls-client").encode()).expect("CONNECT over TLS");
    let mut connack = [0; 4];
    tls.read_exact(&mut connack).expect("CONNACK over TLS");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(connected_peer(&broker, "tls-client"), "203.0.113.9:40002");

    let mut skipped = tls_client(open(broker.addr), &pki);
    let handshake = skipped.write_all(b"\xc0\x00").and_then(|()| skipped.read(&mut [0; 1]));
    assert!(matches!(handshake, Ok(0) | Err(_)), "a handshake without the header: {handshake:?}");
    broker.wait_for_log("PROXY header refused", WAIT);
}

/// An upgrade request to a WebSocket listener, with `extra` header lines.
fn upgrade_request(extra: &[&str]) -> String {
    let mut text = "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                    Sec-WebSocket-Protocol: mqtt\r\n"
        .to_owned();
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text + "\r\n"
}

/// Sends `before` (a PROXY header, or nothing) and an upgrade request with `extra` header lines
/// on a new connection to `addr`; on a 101, sends a masked binary frame with a 3.1.1 CONNECT for
/// `client_id` and returns 101 and the CONNACK's return code; otherwise the status (0 when the
/// connection closed without one) and `None`.
fn websocket_connect(addr: SocketAddr, before: &[u8], extra: &[&str], client_id: &str) -> (u16, Option<u8>) {
    let mut stream = open(addr);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let _ = stream.write_all(&[before, upgrade_request(extra).as_bytes()].concat());
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut buf = [0; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return (0, None),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (0, None),
            Err(e) => panic!("{client_id}: no response: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    if status != 101 {
        return (status, None);
    }
    let connect = Connect::new(Version::V3_1_1, client_id).encode();
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x82, 0x80 | u8::try_from(connect.len()).expect("a short CONNECT")];
    frame.extend_from_slice(&mask);
    frame.extend(connect.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    stream.write_all(&frame).expect("the CONNECT frame");
    let mut rest = bytes[head_end..].to_vec();
    while rest.len() < 6 {
        let mut buf = [0; 64];
        let n = stream.read(&mut buf).expect("the CONNACK frame");
        assert!(n > 0, "{client_id}: closed before its CONNACK");
        rest.extend_from_slice(&buf[..n]);
    }
    // A binary frame of 4 bytes: CONNACK, remaining length 2, flags, return code.
    assert_eq!(rest[..5], [0x82, 0x04, 0x20, 0x02, 0x00], "{client_id}: {rest:02x?}");
    (101, Some(rest[5]))
}

/// The PROXY header comes before the HTTP upgrade.
#[test]
fn the_header_comes_before_the_websocket_upgrade() {
    let listener = "protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\nenable_proxy_protocol = 1\n";
    let Some(broker) = midge(listener, "") else { return };
    let header = v1("203.0.113.10:40003");
    assert_eq!(websocket_connect(broker.addr, &header, &[], "ws-proxied"), (101, Some(0)));
    assert_eq!(connected_peer(&broker, "ws-proxied"), "203.0.113.10:40003");
    assert_eq!(websocket_connect(broker.addr, b"", &[], "ws-skipped"), (0, None), "no header: refused");
}

/// `X-Forwarded-For` is believed from a trusted proxy only, walked from the right; its clients
/// each have their own connection rate; a malformed one from a trusted proxy is refused with 400.
#[test]
fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
    let websockets = "protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\n";
    let trusting = format!("{websockets}websocket_trusted_proxies = [\"127.0.0.1\"]\n");
    let Some(broker) = midge(&trusting, "[connections]\nmax_connection_rate = 1\n") else { return };
    let spoofed = "X-Forwarded-For: 6.6.6.6, 198.51.100.9";
    assert_eq!(websocket_connect(broker.addr, b"", &[spoofed], "xff-client"), (101, Some(0)));
    assert_eq!(connected_peer(&broker, "xff-client"), "198.51.100.9:0", "the right-most untrusted address");
    let other = "X-Forwarded-For: 198.51.100.10";
    assert_eq!(websocket_connect(broker.addr, b"", &[other], "xff-other"), (101, Some(0)), "its own rate");
    let again = "X-Forwarded-For: 198.51.100.9";
    assert_eq!(websocket_connect(broker.addr, b"", &[again], "xff-again"), (0, None), "over its rate");
    let malformed = "X-Forwarded-For: 198.51.100.11, proxy-a";
    assert_eq!(websocket_connect(broker.addr, b"", &[malformed], "xff-malformed"), (400, None));
    broker.wait_for_log("malformed X-Forwarded-For from a trusted proxy", WAIT);

    let untrusting = format!("{websockets}websocket_trusted_proxies = [\"10.0.0.0/8\"]\n");
    let broker = midge(&untrusting, "").expect("midge");
    assert_eq!(websocket_connect(broker.addr, b"", &["X-Forwarded-For: 198.51.100.9"], "xff-ignored"), (101, Some(0)));
    assert!(connected_peer(&broker, "xff-ignored").starts_with("127.0.0.1:"), "not from a trusted proxy: ignored");

    let forwarded = format!("{trusting}websocket_forwarded_header = \"Forwarded\"\n");
    let broker = midge(&forwarded, "").expect("midge");
    let headers = ["X-Forwarded-For: 6.6.6.6", "Forwarded: for=\"[2001:db8::9]:4711\";proto=http"];
    assert_eq!(websocket_connect(broker.addr, b"", &headers, "fwd-client"), (101, Some(0)));
    assert_eq!(connected_peer(&broker, "fwd-client"), "[2001:db8::9]:4711", "only the header named is read");
}

/// A PROXY protocol address that is itself a trusted proxy (a TCP load balancer in front of an
/// HTTP proxy) hands over to that proxy's `X-Forwarded-For`.
#[test]
fn a_proxy_protocol_address_that_is_a_trusted_proxy_hands_over_to_its_header() {
    let listener =
        "protocol = \"websockets\"\nenable_proxy_protocol = 2\nwebsocket_trusted_proxies = [\"10.0.0.0/8\"]\n";
    let Some(broker) = midge(listener, "") else { return };
    let header = v2("10.1.2.3:40004", &[]);
    let forwarded = ["X-Forwarded-For: 198.51.100.20"];
    assert_eq!(websocket_connect(broker.addr, &header, &forwarded, "chained"), (101, Some(0)));
    assert_eq!(connected_peer(&broker, "chained"), "198.51.100.20:0");
    let header = v2("203.0.113.11:40005", &[]);
    assert_eq!(websocket_connect(broker.addr, &header, &forwarded, "not-chained"), (101, Some(0)));
    assert_eq!(connected_peer(&broker, "not-chained"), "203.0.113.11:40005", "a client's own header is ignored");
}

/// Debian's HAProxy, run in the foreground with `sections` (its frontends and backends) from a
/// config file in a temporary directory; killed (by its PID) when dropped.
struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts it and waits until each of `ports` (its frontends') accepts a connection.
    fn start(sections: &str, ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("haproxy.cfg");
        let text = format!(
            "global\n    maxconn 256\n\ndefaults\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n    timeout tunnel 30s\n\n{sections}"
        );
        std::fs::write(&config, text).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("haproxy.log");
        let child = Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start haproxy (Debian's haproxy; .ci/run installs it)");
        let haproxy = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "haproxy is not listening on {port}:\n{}", haproxy.log());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        haproxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `haproxy` on the PATH, or where Debian puts it (/usr/sbin, which a non-root PATH may lack).
fn haproxy_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

/// Runs `mosquitto_pub` or `mosquitto_sub` (`tool`) against 127.0.0.1:`port` from 127.0.0.2
/// with `args`, and returns its output; asserts it succeeds.
fn mosquitto_client(tool: &str, port: u16, args: &[&str]) -> String {
    let mut command = Command::new(tool);
    command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-A", "127.0.0.2", "-V", "mqttv311"]).args(args);
    let (status, output) = run_bounded(command, Duration::from_secs(15));
    assert!(status.success(), "{tool} {args:?} failed ({status}):\n{output}");
    output
}

/// HAProxy in `mode tcp` with `send-proxy` and `send-proxy-v2` in front of two brokers:
/// mosquitto_pub and mosquitto_sub, connecting from 127.0.0.2 through it, are seen at 127.0.0.2
/// (and their message goes through: a retained one, so no subscription has to come first).
#[test]
fn haproxy_send_proxy_and_send_proxy_v2_carry_the_clients_address() {
    let Some(v1_broker) = midge("enable_proxy_protocol = 1\n", "") else { return };
    let v2_broker = midge("enable_proxy_protocol = 2\n", "").expect("midge");
    let (v1_port, v2_port) = (free_port(), free_port());
    let _haproxy = Haproxy::start(
        &format!(
            "frontend v1\n    mode tcp\n    bind 127.0.0.1:{v1_port}\n    default_backend v1\n\n\
             backend v1\n    mode tcp\n    server midge {} send-proxy\n\n\
             frontend v2\n    mode tcp\n    bind 127.0.0.1:{v2_port}\n    default_backend v2\n\n\
             backend v2\n    mode tcp\n    server midge {} send-proxy-v2\n",
            v1_broker.addr, v2_broker.addr
        ),
        &[v1_port, v2_port],
    );
    for (broker, port, version) in [(&v1_broker, v1_port, "v1"), (&v2_broker, v2_port, "v2")] {
        let (publisher, subscriber) = (format!("haproxy-{version}-pub"), format!("haproxy-{version}-sub"));
        let topic = format!("haproxy/{version}");
        mosquitto_client("mosquitto_pub", port, &["-i", &publisher, "-t", &topic, "-m", "through", "-r", "-q", "1"]);
        let output = mosquitto_client("mosquitto_sub", port, &["-i", &subscriber, "-t", &topic, "-C", "1", "-W", "10"]);
        assert_eq!(output.trim(), "through", "{version}");
        for client_id in [&publisher, &subscriber] {
            let peer = connected_peer(broker, client_id);
            assert!(peer.starts_with("127.0.0.2:"), "{client_id} seen at {peer}, not at its own address");
        }
    }
}

/// HAProxy in `mode http` with `option forwardfor` in front of a WebSocket listener that trusts
/// it: paho's WebSocket transport, connecting from 127.0.0.2 through it, round-trips a message
/// and is seen at 127.0.0.2 (port 0: `X-Forwarded-For` carries no port) rather than at
/// HAProxy's own address.
#[test]
fn haproxy_forwardfor_gives_a_websocket_clients_address() {
    let listener =
        "protocol = \"websockets\"\nwebsocket_path = \"/mqtt\"\nwebsocket_trusted_proxies = [\"127.0.0.1\"]\n";
    let Some(broker) = midge(listener, "") else { return };
    let port = free_port();
    let _haproxy = Haproxy::start(
        &format!(
            "frontend ws\n    mode http\n    bind 127.0.0.1:{port}\n    option forwardfor\n    default_backend ws\n\n\
             backend ws\n    mode http\n    server midge {}\n",
            broker.addr
        ),
        &[port],
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/paho/interop.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--transport", "websockets"])
        .args(["--bind-address", "127.0.0.2", "roundtrip", "--protocol", "5", "--qos", "1"]);
    let (status, output) = run_bounded(command, Duration::from_secs(40));
    assert!(status.success(), "paho through haproxy failed ({status}):\n{output}");
    for client_id in ["paho-rt-sub", "paho-rt-pub"] {
        assert_eq!(connected_peer(&broker, client_id), "127.0.0.2:0", "{client_id}");
    }
}
