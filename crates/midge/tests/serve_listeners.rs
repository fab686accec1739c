//! `[[listener]]` over real sockets: the `bind` forms and what a listener does with its
//! clients.

mod support;
#[path = "conformance_wire/mod.rs"]
mod wire;

use std::path::Path;

use support::{local_addr, TestBroker};
use wire::{Client, Connect, Version};

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
    let addrs: Vec<_> = broker.log().iter().filter(|l| l.contains("listening")).filter_map(|l| local_addr(l)).collect();
    assert!(!addrs.is_empty());
    for addr in &addrs {
        assert!(addr.ip().is_loopback() && addr.port() == broker.port(), "{addrs:?}");
        let mut client = Client::open_at(*addr, Version::V3_1_1);
        let connack = client.handshake(&Connect::new(Version::V3_1_1, "via-localhost"));
        assert_eq!(connack.code, 0, "{addr}: {connack:?}");
    }
}
