//! `[[listener]]` over real sockets: the `bind` forms and what a listener does with its
//! clients.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Instant;

use support::TestBroker;
use wire::{Client, Connect, Event, Packet, Version, WAIT};

/// `midge serve -c FILE` where FILE holds `toml` and keeps nothing on disk.
fn serve_with(dir: &Path, toml: &str) -> TestBroker {
    let config = dir.join("midge.toml");
    std::fs::write(&config, format!("{toml}\n[store]\npersistence = false\n")).unwrap();
    TestBroker::start_midge_args(&["-c", config.to_str().unwrap()])
}

/// `bind = "localhost:0"`: the name is resolved at start, and a client reaches the broker on
/// every address it resolved to (one `listening` line each).
#[test]
fn a_host_name_is_resolved_and_reached_on_each_address() {
    let dir = tempfile::tempdir().unwrap();
    let broker = serve_with(dir.path(), "[[listener]]\nbind = \"localhost:0\"\nallow_anonymous = true\n");
    let addrs: Vec<SocketAddr> = ("localhost", broker.port()).to_socket_addrs().unwrap().collect();
    assert!(addrs.contains(&broker.addr), "{} is not one of localhost's {addrs:?}", broker.addr);
    for addr in addrs {
        let line = broker.wait_for_log(&format!("local_addr={addr} "), WAIT);
        assert!(line.contains("listening"), "{line}");
        let mut client = Client::open_at(addr, Version::V3_1_1);
        let connack = client.handshake(&Connect::new(Version::V3_1_1, "via-localhost"));
        assert_eq!(connack.code, 0, "{addr}: {connack:?}");
    }
}

/// `max_connections = 2`: a third client is closed as soon as it is accepted, without a
/// CONNACK, and logged; once one of the two leaves, a new client is let in.
#[test]
fn max_connections_closes_the_connection_over_the_limit_and_admits_again_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        serve_with(dir.path(), "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\nmax_connections = 2\n");
    let v = Version::V3_1_1;
    let first = Client::new(&broker, v, "first");
    let _second = Client::new(&broker, v, "second");

    let mut third = Client::open(&broker, v);
    third.send_lenient(&Connect::new(v, "third").encode());
    match third.next(WAIT) {
        Event::Closed => {}
        other => panic!("the third client was not closed at once: {other:?}"),
    }
    let warning = broker.wait_for_log("listener full", WAIT);
    assert!(warning.contains("max_connections=2"), "{warning}");

    // `disconnect` returns once the broker has closed the first connection. Its slot is free when
    // the connection's task has ended, a moment later: a client accepted in that moment is
    // closed like the third, so the next client tries again until it is let in. Every try waits
    // for the broker's answer, a CONNACK or a close.
    first.disconnect();
    let deadline = Instant::now() + WAIT;
    let mut closed = 0;
    loop {
        let mut next = Client::open(&broker, v);
        next.send_lenient(&Connect::new(v, "fourth").encode());
        match next.next(WAIT) {
            Event::Packet(Packet::Connack(connack)) => {
                assert_eq!(connack.code, 0, "{connack:?}");
                break;
            }
            Event::Closed if Instant::now() < deadline => closed += 1,
            other => panic!("no client let in after one left ({closed} closed): {other:?}"),
        }
    }
}
