//! `midge pub`, `midge sub` and `midge bench` over WebSockets (`-L ws://...`, `--ws`) against
//! `midge serve`'s websockets listener, with mosquitto_sub on its TCP listener as the other end
//! where it helps show the message went through the broker. Every wait is bounded.

mod cli_common;
mod support;

use std::net::SocketAddr;

use cli_common::{client, midge, run, start_subscriber, Running};
use support::TestBroker;

/// `midge serve` with its TCP listener first and a websockets listener after it.
fn serve() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_midge_with(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websockets\"\nallow_anonymous = true\n\n\
         [store]\npersistence = false\n",
    );
    let addr = broker.listener_addr("listening (mqtt over websockets");
    (broker, addr)
}

/// A message published by `midge pub -L ws://` reaches a TCP subscriber, and one published on
/// TCP reaches `midge sub -L ws://`, in MQTT 3.1.1 and 5.0, at QoS 0, 1 and 2.
#[test]
fn midge_pub_and_sub_over_ws_urls() {
    let (broker, ws) = serve();
    for (version, qos) in [("mqttv311", "0"), ("mqttv311", "1"), ("mqttv5", "2"), ("mqttv5", "1")] {
        let topic = format!("ws/cli/{version}/{qos}");
        let url = format!("ws://127.0.0.1:{}/{topic}", ws.port());

        let tcp_sub = start_subscriber(
            &broker,
            client("midge-sub", &broker, &["-V", version, "-t", &topic, "-q", qos, "-C", "1", "-d"]),
            "",
        );
        let published = run(midge(&["pub", "-V", version, "-L", &url, "-q", qos, "-m", "over ws"]));
        assert_eq!(published.code(), 0, "midge pub -L ws:// failed: {}", published.stderr);
        let got = tcp_sub.finish();
        assert!(got.text().contains("over ws"), "the TCP subscriber got: {}", got.text());

        let ws_sub = Running::start(midge(&["sub", "-V", version, "-L", &url, "-q", qos, "-C", "1", "-d"]), None);
        ws_sub.wait_for_stdout("Subscribed (mid:");
        let published = run(client("midge-pub", &broker, &["-V", version, "-t", &topic, "-q", qos, "-m", "to ws"]));
        assert_eq!(published.code(), 0, "{}", published.stderr);
        let got = ws_sub.finish();
        assert_eq!(got.code(), 0, "midge sub -L ws:// failed: {}", got.stderr);
        assert!(got.text().contains("to ws"), "the WebSocket subscriber got: {}", got.text());
    }
}

/// `--ws-path` sets the upgrade's path: a listener with `websocket_path` refuses another one,
/// and `midge pub` says why and exits non-zero.
#[test]
fn ws_path_is_the_upgrade_path() {
    let broker = TestBroker::start_midge_with(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websockets\"\nallow_anonymous = true\n\
         websocket_path = \"/broker\"\n\n[store]\npersistence = false\n",
    );
    let ws = broker.listener_addr("listening (mqtt over websockets");
    let url = format!("ws://127.0.0.1:{}/t", ws.port());
    let refused = run(midge(&["pub", "-L", &url, "-m", "x"]));
    assert_ne!(refused.code(), 0, "the default path /mqtt is refused by a listener on /broker");
    assert!(refused.stderr.contains("404"), "why: {}", refused.stderr);
    let accepted = run(midge(&["pub", "-L", &url, "--ws-path", "/broker", "-m", "x"]));
    assert_eq!(accepted.code(), 0, "{}", accepted.stderr);
    let misused = run(midge(&["pub", "-h", "127.0.0.1", "-t", "t", "--ws-path", "/broker", "-m", "x"]));
    assert_ne!(misused.code(), 0, "--ws-path without a ws:// URL is an error");
}

/// `midge bench --ws` runs its scenarios over the websockets listener and reports it; nothing
/// is lost.
#[test]
fn midge_bench_over_ws() {
    let (broker, ws) = serve();
    let port = ws.port().to_string();
    let mut command =
        midge(&["bench", "fanout", "-p", &port, "--ws", "--subscribers", "2", "--count", "200", "-q", "1"]);
    command.args(["--json", "--quiet"]);
    command.args(["--broker-pid", &broker.pid().to_string()]);
    let finished = run(command);
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    let report: serde_json::Value = serde_json::from_slice(&finished.stdout).expect("JSON");
    assert_eq!(report["websocket"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
}
