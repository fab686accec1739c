//! The HTTP API (`protocol = "http"` listeners, docs/http-api.md) driven with Debian's `curl`
//! as a child process, against `mosquitto_pub` and `mosquitto_sub` on the MQTT side.
//!
//! Nothing sleeps: a subscriber's SUBACK (`mosquitto_sub -d`), an event stream's `: subscribed`
//! comment and each event are lines waited for with a timeout; a stream that ends is waited for
//! in the broker's log.

mod interop_common;
mod support;
mod tls_common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interop_common::mosquitto::{publish, Sub};
use interop_common::run_bounded;
use support::TestBroker;

/// How long a request or an awaited line may take.
const WAIT: Duration = Duration::from_secs(10);

const V5: &str = "mqttv5";

/// An HTTP listener table with `keys`, anonymous callers allowed unless `keys` say otherwise.
fn http_listener(keys: &str) -> String {
    let anonymous = if keys.contains("allow_anonymous") { "" } else { "allow_anonymous = true\n" };
    format!("[[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n{anonymous}{keys}\n")
}

/// A broker with an MQTT listener and an HTTP one with `keys`, then `extra` (e.g. `[mqtt]`).
fn broker_with(keys: &str, extra: &str) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_midge_with(&format!("{extra}\n{}", http_listener(keys)));
    let http = broker.listener_addr("listening (http api)");
    (broker, http)
}

/// What `curl` got: the status and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a JSON error with `status` whose `error` is `error`.
    fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let json = self.json();
        assert_eq!(json["error"], error, "{}", self.body);
        assert!(json["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{}", self.body);
    }
}

/// `curl -s` with `args` and the URL of `path` at `http`.
fn curl(http: SocketAddr, path: &str, args: &[&str]) -> Answer {
    curl_url(&format!("http://{http}{path}"), args)
}

/// `curl -s` with `args` and `url`.
fn curl_url(url: &str, args: &[&str]) -> Answer {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "-w", "\n%{http_code}"]).args(args).arg(url);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "curl {args:?} {url} failed: {output}");
    let (body, code) = output.trim_end().rsplit_once('\n').unwrap_or(("", output.trim()));
    Answer { status: code.parse().unwrap_or_else(|_| panic!("no status in {output:?}")), body: body.to_owned() }
}

/// `curl -N`: an event stream read line by line on a thread.
struct EventStream {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl EventStream {
    fn open(http: SocketAddr, path: &str, args: &[&str]) -> Self {
        let mut command = Command::new("curl");
        command.args(["-s", "-N"]).args(args).arg(format!("http://{http}{path}"));
        command.stderr(Stdio::inherit());
        let (child, lines) = interop_common::spawn_lines(&mut command, "start curl");
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a line that starts with `start` and returns it.
    fn wait_for(&mut self, start: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(start) {
                        return line;
                    }
                }
                Err(e) => panic!("no line starting {start:?} ({e}); the stream had:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the next event and returns its id and its data as JSON.
    fn next_event(&mut self) -> (u64, serde_json::Value) {
        let id = self.wait_for("id: ")["id: ".len()..].parse().expect("a numeric id");
        self.wait_for("event: message");
        let data = self.wait_for("data: ");
        (id, serde_json::from_str(&data["data: ".len()..]).expect("JSON data"))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn health_readiness_and_json_errors_for_unknown_paths() {
    let (_broker, http) = broker_with("", "");
    let alive = curl(http, "/healthz", &[]);
    assert_eq!((alive.status, alive.json()["status"].as_str()), (200, Some("alive")));
    let ready = curl(http, "/readyz", &[]);
    assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")), "{}", ready.body);
    curl(http, "/api/v1/nothing", &[]).assert_error(404, "not_found");
    curl(http, "/api/v1/publish", &[]).assert_error(405, "method_not_allowed");
}

#[test]
fn shutdown_ends_open_event_streams() {
    let (broker, http) = broker_with("", "");
    let mut stream = EventStream::open(http, "/api/v1/subscribe?filter=x", &[]);
    stream.wait_for(": subscribed");
    let started = Instant::now();
    let status = broker.terminate();
    assert!(status.success(), "{status}");
    // Not held up to the shutdown grace by the stream: its session's end ends it.
    assert!(started.elapsed() < Duration::from_secs(4), "shutdown took {:?}", started.elapsed());
    // curl's output ends: the response is over.
    let deadline = Instant::now() + WAIT;
    loop {
        match stream.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => assert!(line.is_empty() || line.starts_with(':'), "{line}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the event stream did not end"),
        }
    }
}

#[test]
fn publish_is_answered_once_acknowledged_and_reaches_mosquitto_sub() {
    let (broker, http) = broker_with("", "");
    let mut sub = Sub::start(&broker, V5, "http-sub", "api/#", 2, 3, "%q|%r|%t|%p");
    sub.wait_subscribed();
    for qos in ["0", "1", "2"] {
        let answer =
            curl(http, &format!("/api/v1/publish?topic=api/q{qos}&qos={qos}"), &["--data-binary", "hello über"]);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json = answer.json();
        assert_eq!((json["topic"].as_str(), json["qos"].as_u64()), (Some(&*format!("api/q{qos}")), qos.parse().ok()));
    }
    assert_eq!(sub.messages(), ["0|0|api/q0|hello über", "1|0|api/q1|hello über", "2|0|api/q2|hello über"]);
    // JSON, base64, retained: a later subscriber gets it.
    let body = r#"{"topic":"api/retained","payload":"AAEC/w==","encoding":"base64","qos":1,"retain":true}"#;
    let answer = curl(http, "/api/v1/publish", &["-H", "Content-Type: application/json", "--data-binary", body]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sub = Sub::start(&broker, V5, "http-sub2", "api/retained", 1, 1, "%r|%x");
    assert_eq!(sub.messages(), ["1|000102ff"]);
}

#[test]
fn bad_requests_and_oversized_bodies_get_json_errors() {
    let (_broker, http) = broker_with("", "[mqtt]\nmax_packet_size = 1024\nmax_qos = 1\n");
    curl(http, "/api/v1/publish", &["--data-binary", "x"]).assert_error(400, "bad_request");
    curl(http, "/api/v1/publish?topic=a/%23", &["--data-binary", "x"]).assert_error(400, "bad_request");
    curl(http, "/api/v1/publish?topic=a&qos=2", &["--data-binary", "x"]).assert_error(400, "bad_request");
    curl(http, "/api/v1/publish?topic=a&qos=7", &["--data-binary", "x"]).assert_error(400, "bad_request");
    curl(http, "/api/v1/publish", &["-H", "Content-Type: application/json", "--data-binary", "{"])
        .assert_error(400, "bad_request");
    let big = "x".repeat(2000);
    curl(http, "/api/v1/publish?topic=a", &["--data-binary", &big]).assert_error(413, "payload_too_large");
    // Chunked: no Content-Length to refuse it by, the body's length does.
    curl(http, "/api/v1/publish?topic=a", &["-H", "Transfer-Encoding: chunked", "--data-binary", &big])
        .assert_error(413, "payload_too_large");
    curl(http, "/api/v1/subscribe", &[]).assert_error(400, "bad_request");
    curl(http, "/api/v1/subscribe?filter=a/%23/b", &[]).assert_error(400, "bad_request");
}

#[test]
fn event_stream_receives_what_mosquitto_pub_sends_and_resumes_from_last_event_id() {
    let (broker, http) = broker_with("", "");
    let path = "/api/v1/subscribe?filter=sse/%23&client_id=reader&session_expiry=300";
    let mut stream = EventStream::open(http, path, &[]);
    stream.wait_for(": subscribed");
    publish(&broker, V5, "pub1", &["-t", "sse/a", "-m", "one", "-q", "1"]);
    let (id, data) = stream.next_event();
    assert_eq!(id, 1);
    assert_eq!(
        data,
        serde_json::json!({"topic": "sse/a", "qos": 1, "retain": false, "payload": "one", "encoding": "text"})
    );
    publish(&broker, V5, "pub1", &["-t", "sse/b", "-m", "two", "-q", "1"]);
    assert_eq!(stream.next_event().0, 2);
    drop(stream);
    broker.wait_for_log("http: event stream ended", WAIT);
    // Kept by the session while its reader is away.
    publish(&broker, V5, "pub2", &["-t", "sse/c", "-m", "three", "-q", "1"]);
    let binary = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(binary.path(), [0xff, 0x00]).unwrap();
    let binary = binary.path().to_str().unwrap();
    publish(&broker, V5, "pub2", &["-t", "sse/d", "-f", binary, "-q", "1"]);
    // The reader got event 1 but not 2: 2 is sent again, then what the session kept.
    let mut stream = EventStream::open(http, path, &["-H", "Last-Event-ID: 1"]);
    stream.wait_for(": subscribed");
    let (id, data) = stream.next_event();
    assert_eq!((id, data["payload"].as_str()), (2, Some("two")));
    let (id, data) = stream.next_event();
    assert_eq!((id, data["payload"].as_str()), (3, Some("three")));
    let (id, data) = stream.next_event();
    // Not UTF-8: base64.
    assert_eq!((id, data["payload"].as_str(), data["encoding"].as_str()), (4, Some("/wA="), Some("base64")));
    drop(stream);
    // Without Last-Event-ID a reader starts a new session: ids from 1, nothing kept.
    broker.wait_for_log("http: event stream ended", WAIT);
    let mut stream = EventStream::open(http, path, &[]);
    stream.wait_for(": subscribed");
    publish(&broker, V5, "pub3", &["-t", "sse/e", "-m", "five", "-q", "0"]);
    let (id, data) = stream.next_event();
    assert_eq!((id, data["payload"].as_str(), data["qos"].as_u64()), (1, Some("five"), Some(0)));
}

#[test]
fn tokens_basic_credentials_and_the_acl_decide_as_for_mqtt_clients() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let (status, output) = run_bounded(
        {
            let mut command = Command::new("mosquitto_passwd");
            command.args(["-b", "-c"]).arg(&passwords).args(["alice", "wonderland"]);
            command
        },
        WAIT,
    );
    assert!(status.success(), "{output}");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\n\nuser ops\ntopic readwrite #\n").unwrap();
    let keys = format!(
        "allow_anonymous = false\npassword_file = {:?}\nacl_file = {:?}\n[listener.http_tokens]\nops = \"t0ken\"\n",
        passwords.display().to_string(),
        acl.display().to_string()
    );
    let (broker, http) = broker_with(&keys, "");
    let publish_to = |topic: &str, auth: &[&str]| {
        let mut args = vec!["--data-binary", "x"];
        args.extend_from_slice(auth);
        curl(http, &format!("/api/v1/publish?topic={topic}&qos=1"), &args)
    };
    publish_to("alice/a", &[]).assert_error(401, "unauthorized");
    publish_to("alice/a", &["-H", "Authorization: Bearer wrong"]).assert_error(401, "unauthorized");
    publish_to("alice/a", &["-u", "alice:wrong"]).assert_error(401, "unauthorized");
    publish_to("alice/a", &["-H", "Authorization: Digest x"]).assert_error(401, "unauthorized");
    assert_eq!(publish_to("alice/a", &["-u", "alice:wonderland"]).status, 200);
    publish_to("bob/a", &["-u", "alice:wonderland"]).assert_error(403, "forbidden");
    assert_eq!(publish_to("bob/a", &["-H", "Authorization: Bearer t0ken"]).status, 200);
    let subscribe = |filter: &str, auth: &[&str]| curl(http, &format!("/api/v1/subscribe?filter={filter}"), auth);
    subscribe("bob/%23", &["-u", "alice:wonderland"]).assert_error(403, "forbidden");
    subscribe("alice/%23", &[]).assert_error(401, "unauthorized");
    // Health needs no credentials.
    assert_eq!(curl(http, "/healthz", &[]).status, 200);
    let mut stream = EventStream::open(http, "/api/v1/subscribe?filter=alice/%23", &["-u", "alice:wonderland"]);
    stream.wait_for(": subscribed");
    assert_eq!(publish_to("alice/b", &["-H", "Authorization: Bearer t0ken"]).status, 200);
    assert_eq!(stream.next_event().1["topic"], "alice/b");
    drop(broker);
}

#[test]
fn https_with_the_listeners_tls_keys() {
    let pki = tls_common::Pki::new(&["localhost"]);
    let (broker, _) = (TestBroker::start_midge_with(&http_listener(&pki.midge_listener())), ());
    let https = broker.listener_addr("listening (http api over tls)");
    let port = https.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/api/v1/publish?topic=tls/a&qos=1");
    let answer = curl_url(&url, &["--cacert", &pki.arg("ca.pem"), "--resolve", &resolve, "--data-binary", "x"]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Plain HTTP to it is not answered as HTTP.
    let mut command = Command::new("curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]).arg(format!("http://127.0.0.1:{port}/healthz"));
    let (_, output) = run_bounded(command, WAIT);
    assert!(output.starts_with("000"), "{output}");
}

#[test]
fn a_reader_that_stops_reading_is_a_slow_consumer_under_the_mqtt_policy() {
    let (broker, http) = broker_with(
        "",
        "[mqtt]\nmax_queued_messages = 10\nslow_consumer_policy = \"disconnect\"\nslow_consumer_timeout_ms = 300\n",
    );
    // An event stream whose reader sends its request and never reads.
    let mut reader = std::net::TcpStream::connect(http).unwrap();
    write!(reader, "GET /api/v1/subscribe?filter=flood/%23&qos=0 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    broker.wait_for_log("http: event stream started", WAIT);
    // More than the socket buffers, the stream's chunks and the session's queue hold together:
    // 16 MB in 8 KiB messages.
    let mut publisher = Command::new("mosquitto_pub");
    publisher.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-t", "flood/a", "-l", "-q", "0"]);
    publisher.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut publisher = publisher.spawn().expect("start mosquitto_pub");
    let mut stdin = publisher.stdin.take().unwrap();
    std::thread::spawn(move || {
        let line = format!("{}\n", "x".repeat(8 * 1024));
        for _ in 0..2_000 {
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    let slow = broker.wait_for_log("slow consumer", Duration::from_secs(20));
    assert!(slow.contains("subscriber=http-"), "{slow}");
    let ended = broker.wait_for_log("http: event stream ended", WAIT);
    assert!(ended.contains("kicked: 0x97"), "{ended}");
    let _ = publisher.kill();
    let _ = publisher.wait();
    drop(reader);
}

#[test]
fn operators_list_show_and_kick_clients_and_manage_retained_messages() {
    let (broker, http) = broker_with("[listener.http_tokens]\nops = \"t0ken\"\n", "");
    let token = ["-H", "Authorization: Bearer t0ken"];
    let get = |path: &str| {
        let answer = curl(http, path, &token);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answer.json()
    };
    // A persistent MQTT client, connected.
    let mut sub = Sub::start_with(&broker, V5, "watcher", &["-t", "adm/#", "-q", "1", "-c", "-x", "300"], "%t");
    sub.wait_subscribed();
    let clients = get("/api/v1/clients");
    let watcher = clients["clients"].as_array().unwrap().iter().find(|c| c["client_id"] == "watcher").cloned();
    let watcher = watcher.unwrap_or_else(|| panic!("{clients}"));
    assert_eq!((watcher["connected"].as_bool(), watcher["protocol_level"].as_u64()), (Some(true), Some(5)));
    let shown = get("/api/v1/clients/watcher");
    assert_eq!(shown["subscriptions"], serde_json::json!([{"filter": "adm/#", "qos": 1}]), "{shown}");
    assert_eq!(shown["session_expiry"], 300);
    let subscriptions = get("/api/v1/subscriptions");
    assert!(subscriptions["subscriptions"].as_array().unwrap().contains(&serde_json::json!(
        {"client_id": "watcher", "filter": "adm/#", "qos": 1}
    )));
    curl(http, "/api/v1/clients/nobody", &token).assert_error(404, "not_found");
    curl(http, "/api/v1/clients/%FF", &token).assert_error(400, "bad_request");
    // Kicked: DISCONNECT 0x98; the persistent session stays, offline.
    let kicked = curl(http, "/api/v1/clients/watcher", &["-X", "DELETE", token[0], token[1]]);
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    let line = broker.wait_for_log("Administrative action", WAIT);
    assert!(line.contains("watcher"), "{line}");
    drop(sub);
    let sessions = get("/api/v1/sessions");
    assert!(sessions["sessions"].as_array().unwrap().iter().any(|s| s["client_id"] == "watcher"), "{sessions}");
    curl(http, "/api/v1/clients/nobody", &["-X", "DELETE", token[0], token[1]]).assert_error(404, "not_found");
    // Retained messages: listed, shown, deleted (and then not found).
    publish(&broker, V5, "retainer", &["-t", "adm/r", "-m", "kept", "-r", "-q", "1"]);
    let listed = get("/api/v1/retained?filter=adm/%23");
    assert_eq!(
        listed["retained"],
        serde_json::json!([{"topic": "adm/r", "qos": 1, "payload": "kept", "encoding": "text"}])
    );
    assert_eq!(get("/api/v1/retained/adm/r")["payload"], "kept");
    let deleted = curl(http, "/api/v1/retained/adm/r", &["-X", "DELETE", token[0], token[1]]);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    curl(http, "/api/v1/retained/adm/r", &token).assert_error(404, "not_found");
    assert_eq!(get("/api/v1/retained")["retained"], serde_json::json!([]));
    let stats = get("/api/v1/stats");
    assert!(stats["messages_received"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["sessions"].as_u64().unwrap() >= 1, "{stats}");
    // Only a bearer token opens them.
    curl(http, "/api/v1/stats", &[]).assert_error(401, "unauthorized");
    curl(http, "/api/v1/clients", &["-H", "Authorization: Bearer wrong"]).assert_error(401, "unauthorized");
    curl(http, "/api/v1/clients", &["-u", "ops:t0ken"]).assert_error(401, "unauthorized");
}

#[test]
fn an_http_publisher_is_paced_by_a_full_subscriber_as_an_mqtt_one_is() {
    let (broker, http) = broker_with("", "[mqtt]\nmax_queued_messages = 10\nslow_consumer_timeout_ms = 300\n");
    // A reader that never reads: once the sockets between are full, its session's queue fills.
    let mut reader = std::net::TcpStream::connect(http).unwrap();
    write!(reader, "GET /api/v1/subscribe?filter=paced&qos=0 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    broker.wait_for_log("http: event stream started", WAIT);
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), vec![b'x'; 1 << 20]).unwrap();
    let data = format!("@{}", body.path().display());
    // Each publish is answered once the subscriber has room or has been dealt with as slow; the
    // one that finds it full waits for the slow-consumer rule, which names the HTTP publisher.
    let found = (0..200).any(|_| {
        let answer = curl(http, "/api/v1/publish?topic=paced", &["--data-binary", &data]);
        assert_eq!(answer.status, 200, "{}", answer.body);
        broker.log().iter().any(|line| line.contains("slow consumer") && line.contains("publisher=http-"))
    });
    assert!(found, "no HTTP publisher was paced; log:\n{}", broker.log().join("\n"));
    drop(reader);
}

#[test]
fn a_connection_that_sends_no_request_is_closed_after_the_connect_timeout() {
    let (_broker, http) = broker_with("", "[mqtt]\nconnect_timeout_ms = 300\n");
    let mut silent = std::net::TcpStream::connect(http).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let read = std::io::Read::read(&mut silent, &mut buffer);
    // Closed (hyper may answer 408 first), well before the read timeout.
    assert!(read.is_ok(), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "open for {:?}", started.elapsed());
}

#[test]
fn an_event_stream_starts_with_retained_messages_and_sends_base64_when_asked() {
    let (broker, http) = broker_with("", "");
    publish(&broker, V5, "retainer", &["-t", "ret/a", "-m", "before", "-r", "-q", "1"]);
    let mut stream = EventStream::open(http, "/api/v1/subscribe?filter=ret/%23&encoding=base64&qos=2", &[]);
    stream.wait_for(": subscribed");
    let (id, data) = stream.next_event();
    // RETAIN is set on a retained message sent on subscribe (5.0: MQTT-3.3.1-9).
    assert_eq!(id, 1);
    assert_eq!(
        data,
        serde_json::json!({"topic": "ret/a", "qos": 1, "retain": true, "payload": "YmVmb3Jl", "encoding": "base64"})
    );
    publish(&broker, V5, "publisher", &["-t", "ret/b", "-m", "after", "-q", "2"]);
    let (id, data) = stream.next_event();
    assert_eq!((id, data["retain"].as_bool(), data["qos"].as_u64()), (2, Some(false), Some(2)));
    assert_eq!(data["payload"], "YWZ0ZXI=");
}

#[test]
fn a_publisher_that_gives_up_while_paced_leaves_no_client_connected() {
    let (broker, http) = broker_with(
        "[listener.http_tokens]\nops = \"t0ken\"\n",
        "[mqtt]\nmax_queued_messages = 10\nslow_consumer_timeout_ms = 1500\n",
    );
    let mut reader = std::net::TcpStream::connect(http).unwrap();
    write!(reader, "GET /api/v1/subscribe?filter=paced&qos=0 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    broker.wait_for_log("http: event stream started", WAIT);
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), vec![b'x'; 1 << 20]).unwrap();
    let data = format!("@{}", body.path().display());
    // Publish until one request is paced past curl's patience (exit code 28: timed out).
    let gave_up = (0..200).any(|_| {
        let mut command = Command::new("curl");
        command.args(["-s", "--max-time", "0.5", "--data-binary", &data]);
        command.arg(format!("http://{http}/api/v1/publish?topic=paced"));
        let (status, output) = run_bounded(command, WAIT);
        assert!(status.success() || status.code() == Some(28), "{status}: {output}");
        !status.success()
    });
    assert!(gave_up, "no publish was paced");
    // Its publish goes on without it, and its client is closed when it is done: only the
    // reader is left connected.
    let deadline = Instant::now() + WAIT;
    loop {
        let clients = curl(http, "/api/v1/clients", &["-H", "Authorization: Bearer t0ken"]).json();
        let clients = clients["clients"].as_array().unwrap().clone();
        if clients.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "clients left connected: {clients:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(reader);
}

#[test]
fn an_idle_event_stream_gets_keep_alive_comments_and_outlives_the_keep_alive() {
    // A v5 client asking for no keep alive is given max_keepalive (2 s): the stream's comments
    // come every second, and each counts as the client being heard.
    let (broker, http) = broker_with("", "[mqtt]\nmax_keepalive = 2\n");
    let mut stream = EventStream::open(http, "/api/v1/subscribe?filter=idle", &[]);
    stream.wait_for(": subscribed");
    let started = Instant::now();
    for _ in 0..4 {
        stream.wait_for(": keep-alive");
    }
    // Past 1.5 times the keep alive, the session is still there.
    assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
    publish(&broker, V5, "waker", &["-t", "idle", "-m", "still here"]);
    assert_eq!(stream.next_event().1["payload"], "still here");
}
