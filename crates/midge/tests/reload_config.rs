//! SIGHUP (and `POST /api/v1/reload`) reads the config file again and applies it under
//! connected clients (docs/configuration.md, Reloading): listeners added, changed and removed,
//! `[log]` and `[sys]` live, what takes a restart said so; a config that cannot be used changes
//! nothing. Clients are Debian's `mosquitto_sub` and `mosquitto_pub`, and `curl`.
//!
//! Nothing sleeps: each reload is waited for in the broker's log (its own lines, after a mark
//! taken before the SIGHUP), each message and SUBACK on mosquitto_sub's output.

mod interop_common;
mod sn_common;
mod support;
mod tls_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::{publish, publish_output, Sub};
use interop_common::run_bounded;
use support::{free_port, TestBroker};

const V5: &str = "mqttv5";
const WAIT: Duration = Duration::from_secs(10);

/// The first listener of every config here: its bind stays the same, so it is kept.
const FIRST: &str = "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n";
/// The rest of every config: no store, the log at info.
const REST: &str = "[store]\npersistence = false\n\n[log]\nlevel = \"info\"\n";

/// Rewrites the config, sends SIGHUP, and waits for the reload's outcome line (`needle`, after
/// the lines logged so far); returns the line.
fn reload(broker: &TestBroker, config: &str, needle: &str) -> String {
    let mark = broker.log_len();
    broker.write_config(config);
    broker.hangup();
    broker.wait_for_log_from(mark, needle, WAIT)
}

/// `args` as the `&str`s the client helpers take.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Whether something accepts TCP connections at `addr`.
fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, WAIT).is_ok()
}

#[test]
fn listeners_are_added_and_removed_under_connected_clients() {
    let port = free_port();
    let second = format!("[[listener]]\nbind = \"127.0.0.1:{port}\"\nallow_anonymous = true\n");
    let second_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    assert!(!accepts(second_addr));
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 2, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);

    // Added: bound, and it accepts; alice, on the first listener, stays.
    let both = format!("{FIRST}\n{second}\n{REST}");
    let added = reload(&broker, &both, &format!("listener 127.0.0.1:{port} (mqtt) added as listener 2"));
    assert!(added.contains("INFO"), "{added}");
    let port_arg = port.to_string();
    // `-p` after the harness's own: the later one is the port mosquitto's clients use.
    let on_second = |args: &[&'static str]| -> Vec<String> {
        ["-p", port_arg.as_str()].iter().chain(args).map(|arg| arg.to_string()).collect()
    };
    let args = on_second(&["-t", "room/#", "-q", "1", "-C", "2"]);
    let mut bob = Sub::start_with(&broker, V5, "bob", &strs(&args), "%t|%p");
    assert_eq!(bob.wait_subscribed(), 1);
    publish(&broker, V5, "carol", &strs(&on_second(&["-t", "room/1", "-q", "1", "-m", "one"])));
    alice.wait_for("room/1|one");

    // Removed: it refuses new connections and its clients are disconnected; bob, on the
    // listener the last reload added, stays.
    let mark = broker.log_len();
    let removed = reload(&broker, &format!("{second}\n{REST}"), "listener 127.0.0.1:0 (mqtt) removed (was listener 1)");
    assert!(removed.contains("its 1 connections closed"), "{removed}");
    // Kicked by the reload (v5: DISCONNECT 0x8B), not gone by itself.
    let kicked = broker.wait_for_log_from(mark, "Client alice disconnected", WAIT);
    assert!(kicked.contains("server shutting down"), "{kicked}");
    assert!(!accepts(broker.addr), "the removed listener's socket is closed");
    publish(&broker, V5, "carol", &strs(&on_second(&["-t", "room/1", "-q", "1", "-m", "two"])));
    assert_eq!(bob.messages(), ["room/1|one", "room/1|two"]);
}

#[test]
fn a_changed_listener_gives_new_connections_its_settings_and_keeps_its_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    let passwords_arg = passwords.display().to_string();
    let mut command = Command::new("mosquitto_passwd");
    command.args(["-c", "-b", &passwords_arg, "bob", "bob-pw"]);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "mosquitto_passwd: {output}");
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    // Anonymous, connected while anonymous clients are allowed.
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 2, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);
    let closed = |extra: &str| {
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\npassword_file = {passwords_arg:?}\n\
             {extra}\n{REST}"
        )
    };
    let bob = ["-u", "bob", "-P", "bob-pw", "-t", "room/1", "-q", "1"];

    let mark = broker.log_len();
    reload(&broker, &closed(""), "listener 1 changed: allow_anonymous true -> false");
    broker.wait_for_log_from(mark, "listener 1 changed: password_file unset -> ", WAIT);
    let (status, output) = publish_output(&broker, V5, "anonymous", &["-t", "room/1", "-m", "no"]);
    assert!(!status.success(), "anonymous clients are refused now: {output}");
    publish(&broker, V5, "bob", &[&bob[..], &["-m", "one"]].concat());

    // A limit of the listener: one connection, alice's, so bob is closed at once.
    reload(&broker, &closed("max_connections = 1"), "listener 1 changed: max_connections unlimited -> 1");
    let (status, output) = publish_output(&broker, V5, "bob", &[&bob[..], &["-m", "refused"]].concat());
    assert!(!status.success(), "the listener is full: {output}");
    reload(&broker, &closed(""), "listener 1 changed: max_connections 1 -> unlimited");
    publish(&broker, V5, "bob", &[&bob[..], &["-m", "two"]].concat());

    // alice, anonymous and connected before the three reloads, received both on one connection.
    assert_eq!(alice.messages(), ["room/1|one", "room/1|two"]);
}

#[test]
fn log_settings_apply_live_and_mqtt_settings_wait_for_a_restart() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 1, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);
    let debug = format!("{FIRST}\n[store]\npersistence = false\n\n[log]\nlevel = \"debug\"\n\n[mqtt]\nmax_qos = 1\n");
    let mark = broker.log_len();
    reload(&broker, &debug, "[mqtt] max_qos changed (2 -> 1): takes effect after a restart");
    broker.wait_for_log_from(mark, "[log] level \"info\" -> \"debug\"", WAIT);
    // A debug line: a connection closed before its CONNECT.
    drop(broker.connect());
    broker.wait_for_log_from(mark, "connection closed before CONNECT", WAIT);
    // [mqtt] is as it started: QoS 2 still granted.
    let mut sub = Sub::start(&broker, V5, "sub", "t", 2, 1, "%p");
    assert_eq!(sub.wait_subscribed(), 2, "max_qos stays 2 until a restart");
    drop(sub);

    // JSON lines, and no connection messages, from the reload on.
    let quiet = format!(
        "{FIRST}\n[store]\npersistence = false\n\n[log]\nlevel = \"info\"\nformat = \"json\"\n\
         connection_messages = false\n"
    );
    let applied = reload(&broker, &quiet, "reload: applied");
    assert!(applied.starts_with('{'), "a JSON line: {applied}");
    let mark = broker.log_len();
    publish(&broker, V5, "quiet-client", &["-t", "t", "-m", "x"]);
    // A line after the client's connection and disconnection, to look before: a reload that
    // fails (its error line).
    let failed = reload(&broker, "[[listener]\n", "reload failed");
    assert!(failed.starts_with('{'), "{failed}");
    let log = broker.log();
    assert!(!log[mark..].iter().any(|line| line.contains("quiet-client")), "{}", log[mark..].join("\n"));
    // alice, connected before the three reloads, still receives.
    publish(&broker, V5, "carol", &["-t", "room/1", "-q", "1", "-m", "after"]);
    assert_eq!(alice.messages(), ["room/1|after"]);
}

#[test]
fn sys_settings_apply_live() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n[sys]\ninterval = 0\n\n{REST}"));
    let mut events = Sub::start(&broker, V5, "events", "$SYS/broker/midge/clients/connected", 0, 1, "%p");
    assert_eq!(events.wait_subscribed(), 0);
    let mut uptime = Sub::start(&broker, V5, "uptime", "$SYS/broker/uptime", 0, 1, "%p");
    assert_eq!(uptime.wait_subscribed(), 0);
    reload(&broker, &format!("{FIRST}\n[sys]\ninterval = 1\nevents = true\n\n{REST}"), "[sys] events false -> true");
    publish(&broker, V5, "newcomer", &["-t", "t", "-m", "x"]);
    assert_eq!(events.messages(), ["newcomer"]);
    let uptime = uptime.messages();
    assert!(uptime[0].ends_with("seconds"), "{uptime:?}");
}

#[test]
fn a_config_that_cannot_be_used_changes_nothing() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 1, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);

    // Not TOML: the error names the file and the line.
    let failed = reload(&broker, &format!("{FIRST}\nmax_connections = [\n{REST}"), "reload failed");
    assert!(failed.contains("midge.toml") && failed.contains("line 6"), "{failed}");
    assert!(failed.contains("nothing changed"), "{failed}");

    // A password file that does not exist, on the kept listener, after a new listener that is
    // bound first: the error names the file, and the new listener's socket is closed again.
    let port = free_port();
    let bad = format!(
        "[[listener]]\nbind = \"127.0.0.1:{port}\"\nallow_anonymous = true\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\npassword_file = \"/nonexistent/passwords\"\n\n\
         [sys]\nevents = true\n\n{REST}"
    );
    let failed = reload(&broker, &bad, "reload failed");
    assert!(failed.contains("/nonexistent/passwords"), "{failed}");
    assert!(!accepts(format!("127.0.0.1:{port}").parse().unwrap()), "the new listener is not kept");
    let log = broker.log();
    assert!(!log.iter().any(|line| line.contains("changed:") || line.contains("added as")), "{}", log.join("\n"));

    // The old settings hold: anonymous clients still get in; alice is still connected.
    publish(&broker, V5, "anonymous", &["-t", "room/1", "-q", "1", "-m", "still"]);
    assert_eq!(alice.messages(), ["room/1|still"]);
}

#[test]
fn post_api_v1_reload_reloads_and_answers_with_what_changed_or_why_not() {
    let http =
        "[[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n[listener.http_tokens]\nops = \"ops-token\"\n";
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{http}\n{REST}"));
    let http_addr = broker.listener_addr("listening (http api)");
    let post = |args: &[&str]| {
        let mut command = Command::new("curl");
        command.args(["-s", "-S", "-X", "POST", "-w", "\n%{http_code}"]).args(args);
        command.arg(format!("http://{http_addr}/api/v1/reload"));
        let (status, output) = run_bounded(command, WAIT);
        assert!(status.success(), "curl: {output}");
        let (body, code) = output.trim_end().rsplit_once('\n').expect("a status line");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code.to_owned(), json)
    };
    let token = ["-H", "Authorization: Bearer ops-token"];

    let (code, json) = post(&[]);
    assert_eq!((code.as_str(), &json["error"]), ("401", &serde_json::json!("unauthorized")), "{json}");

    let changed = "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\nmax_connections = 5\n";
    broker.write_config(&format!("{changed}\n{http}\n[mqtt]\nmax_qos = 1\n\n{REST}"));
    let (code, json) = post(&token);
    assert_eq!(code, "200", "{json}");
    assert_eq!(json["reloaded"], true);
    assert_eq!(json["changes"], serde_json::json!(["listener 1 changed: max_connections unlimited -> 5"]));
    assert_eq!(json["restart_needed"], serde_json::json!(["[mqtt] max_qos changed (2 -> 1)"]));
    broker.wait_for_log("listener 1 changed: max_connections unlimited -> 5", WAIT);

    // The HTTP listener's own settings: its tokens, for the requests after the reload.
    let new_tokens = http.replace("ops-token", "new-token");
    broker.write_config(&format!("{changed}\n{new_tokens}\n[mqtt]\nmax_qos = 1\n\n{REST}"));
    let (code, json) = post(&token);
    assert_eq!(code, "200", "{json}");
    assert_eq!(json["changes"], serde_json::json!(["listener 2 changed: http_tokens changed"]), "no token shown");
    let (code, _) = post(&token);
    assert_eq!(code, "401", "the old token is gone");
    let token = ["-H", "Authorization: Bearer new-token"];
    let http = new_tokens;

    broker.write_config(&format!("{changed}\n{http}\n[mqtt]\nmax_qos = 7\n\n{REST}"));
    let (code, json) = post(&token);
    assert_eq!((code.as_str(), &json["error"]), ("422", &serde_json::json!("reload_failed")), "{json}");
    let reason = json["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("nothing changed") && reason.contains("midge.toml") && reason.contains("max_qos"),
        "{reason}"
    );
}

#[test]
fn a_websocket_listeners_options_apply_to_new_upgrades() {
    let ws = |path: &str| {
        format!(
            "[[listener]]\nprotocol = \"websockets\"\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
             websocket_path = {path:?}\n"
        )
    };
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{}\n{REST}", ws("/mqtt")));
    let ws_addr = broker.listener_addr("listening (mqtt over websockets)");
    // The upgrade's status: 404 on a path the listener does not serve (101 would hang curl, so
    // only refusals are asked for).
    let status = |path: &str| {
        let mut command = Command::new("curl");
        command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Connection: Upgrade"]);
        command.args(["-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13"]);
        command.args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", "Sec-WebSocket-Protocol: mqtt"]);
        command.arg(format!("http://{ws_addr}{path}"));
        let (status, output) = run_bounded(command, WAIT);
        assert!(status.success(), "curl: {output}");
        output
    };
    assert_eq!(status("/ws"), "404");
    reload(
        &broker,
        &format!("{FIRST}\n{}\n{REST}", ws("/ws")),
        "listener 2 changed: websocket_path \"/mqtt\" -> \"/ws\"",
    );
    assert_eq!(status("/mqtt"), "404", "the old path is refused now");
    // The new path upgrades: the status line of a handshake written by hand.
    let mut stream = TcpStream::connect(ws_addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {ws_addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).expect("the status line");
    assert_eq!(&answer, b"HTTP/1.1 101");
}

#[test]
fn a_mosquitto_conf_is_read_again_as_a_mosquitto_conf() {
    let conf = "listener 0 127.0.0.1\nallow_anonymous true\npersistence false\n";
    let broker = TestBroker::start_midge_config(conf);
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 1, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);
    let port = free_port();
    let added = format!("{conf}listener {port} 127.0.0.1\n");
    reload(&broker, &added, &format!("listener 127.0.0.1:{port} (mqtt) added as listener 2"));
    let port_arg = port.to_string();
    publish(&broker, V5, "carol", &["-p", &port_arg, "-t", "room/1", "-q", "1", "-m", "via the new one"]);
    assert_eq!(alice.messages(), ["room/1|via the new one"]);
}

#[test]
fn a_log_file_destination_added_by_a_reload_gets_the_lines_from_then_on() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let file = broker.config_path().with_file_name("added.log");
    let with_file = format!(
        "{FIRST}\n[store]\npersistence = false\n\n[log]\nlevel = \"info\"\n\
         destinations = [\"stderr\", \"file\"]\nfile = {:?}\n",
        file.display().to_string()
    );
    reload(&broker, &with_file, "[log] destinations [Stderr] -> [Stderr, File]");
    publish(&broker, V5, "logged-to-file", &["-t", "t", "-m", "x"]);
    // The file gets its lines as stderr does (polled as the harness polls stderr's).
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("Client logged-to-file disconnected") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "not in the log file: {text}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(text.contains("New client connected") && text.contains("logged-to-file"), "{text}");
    assert!(!text.contains("listening"), "lines from before the reload went to stderr only: {text}");
}

#[test]
fn a_new_listener_that_cannot_bind_fails_the_whole_reload() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\nmax_connections = 1\n\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\nallow_anonymous = true\n\n{REST}"
    );
    let failed = reload(&broker, &config, "reload failed");
    assert!(failed.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{failed}");
    // The first listener's change was not applied: two clients at once still get in.
    let mut first = Sub::start(&broker, V5, "first", "t", 0, 1, "%p");
    assert_eq!(first.wait_subscribed(), 0);
    publish(&broker, V5, "second", &["-t", "t", "-m", "x"]);
    assert_eq!(first.messages(), ["x"]);
    drop(taken);
}

#[test]
fn removing_an_http_listener_ends_its_event_streams() {
    let http = "[[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n";
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{http}\n{REST}"));
    let http_addr = broker.listener_addr("listening (http api)");
    let mut command = Command::new("curl");
    command.args(["-s", "-N"]).arg(format!("http://{http_addr}/api/v1/subscribe?filter=room/%23"));
    let (mut curl, lines) = interop_common::spawn_lines(&mut command, "start curl");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).expect("the stream's `: subscribed` comment");
        if line.starts_with(": subscribed") {
            break;
        }
    }
    reload(&broker, &format!("{FIRST}\n{REST}"), "listener 127.0.0.1:0 (http) removed (was listener 2)");
    // The stream ends: curl's output closes (its reader thread drops the channel).
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(_) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(error) => panic!("the event stream did not end: {error}"),
        }
    }
    let _ = curl.wait();
    assert!(!accepts(http_addr), "the removed listener's socket is closed");
}

#[test]
fn connection_limits_across_listeners_apply_live() {
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 1, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);
    let one = format!("{FIRST}\n[connections]\nmax_connections = 1\n\n{REST}");
    reload(&broker, &one, "[connections] max_connections the open-file limit -> 1");
    let (status, output) = publish_output(&broker, V5, "refused", &["-t", "room/1", "-m", "no"]);
    assert!(!status.success(), "the broker is full with alice: {output}");
    broker.wait_for_log("limit reached: max_connections", WAIT);
    reload(&broker, &format!("{FIRST}\n{REST}"), "[connections] max_connections 1 -> the open-file limit");
    publish(&broker, V5, "carol", &["-t", "room/1", "-q", "1", "-m", "after"]);
    assert_eq!(alice.messages(), ["room/1|after"]);
}

#[test]
fn removing_an_mqtt_sn_listener_disconnects_its_clients() {
    let gateway = sn_common::Gateway::start("", "[store]\npersistence = false\n");
    let mut client = gateway.client();
    client.connect("sensor");
    // The harness's config, less the MQTT-SN listener.
    let without = "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\n[log]\nlevel = \"debug\"\n\n\
                   [store]\npersistence = false\n";
    reload(&gateway.broker, without, "(mqtt-sn) removed (was listener 2)");
    assert_eq!(client.recv(), midge_sn_codec::Message::Disconnect { duration: None });
}

#[test]
fn a_plain_listener_becomes_tls_for_new_connections_and_keeps_its_plain_clients() {
    let pki = tls_common::Pki::new(&["127.0.0.1"]);
    let broker = TestBroker::start_midge_config(&format!("{FIRST}\n{REST}"));
    let mut alice = Sub::start(&broker, V5, "alice", "room/#", 1, 1, "%t|%p");
    assert_eq!(alice.wait_subscribed(), 1);
    let tls = format!("{FIRST}{}\n{REST}", pki.midge_listener());
    reload(&broker, &tls, "listener 1 changed: keyfile unset -> ");
    let (status, output) = publish_output(&broker, V5, "plain", &["-t", "room/1", "-m", "plain"]);
    assert!(!status.success(), "plain MQTT is refused now: {output}");
    let cafile = pki.arg("ca.pem");
    publish(&broker, V5, "over-tls", &["--cafile", &cafile, "-t", "room/1", "-q", "1", "-m", "over tls"]);
    // alice, connected in plain MQTT before the reload, receives it.
    assert_eq!(alice.messages(), ["room/1|over tls"]);
}
