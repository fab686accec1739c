//! `[[listener]]` over real sockets: the `bind` forms and what a listener does with its
//! clients.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use support::TestBroker;
use wire::{Client, Connect, Version, WAIT};

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
