//! MQTT.js 5 (npm's `mqtt`, its browser bundle `dist/mqtt.min.js`) in a real headless Chromium,
//! driven over the DevTools protocol (chromium/mod.rs), against midge's websockets
//! listeners, plain (ws) and over TLS (wss): the page connects, subscribes, and publishes at
//! QoS 0, 1 and 2 in MQTT 3.1, 3.1.1 and 5.0, and every message that comes back to it is checked
//! here. Then the example page docs/examples/live-messages.html, as a user would open it, shows
//! messages mosquitto_pub sends to the broker's TCP listener.
//!
//! Needs Debian's chromium and `npm ci` in tests/browser (bash .ci/run does both): without them
//! the tests fail and say so. Pages are files (file://), so nothing listens but the broker.
//! Results come back as the promise the page returns settles; every wait ends within
//! [`TEST_TIME`], and every browser is killed, with its child processes, when its test ends.

mod chromium;
mod support;
mod tls_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use chromium::{Chromium, Page};
use support::TestBroker;

/// How long a test's browser has for everything it does.
const TEST_TIME: Duration = Duration::from_secs(60);

/// MQTT.js's `protocolVersion` for 3.1.1 and for 5.0.
const V311: u8 = 4;
const V5: u8 = 5;

/// MQTT.js 3.1.1 over ws, and 3.1 (`MQIsdp`, protocol level 3).
#[test]
fn mqtt_js_v31_and_v311_over_ws() {
    let (_broker, ws) = serve("");
    let mut chromium = Chromium::launch(TEST_TIME, &[]);
    let page = open_exchange_page(&mut chromium);
    let url = format!("ws://127.0.0.1:{}/mqtt", ws.port());
    round_trips(&mut chromium, &page, &url, json!({ "protocolVersion": V311 }), "browser/ws311");
    round_trips(&mut chromium, &page, &url, json!({ "protocolVersion": 3, "protocolId": "MQIsdp" }), "browser/ws31");
}

/// MQTT.js 5.0 over ws, with properties that must arrive unchanged.
#[test]
fn mqtt_js_v5_over_ws() {
    let (_broker, ws) = serve("");
    let mut chromium = Chromium::launch(TEST_TIME, &[]);
    let page = open_exchange_page(&mut chromium);
    let url = format!("ws://127.0.0.1:{}/mqtt", ws.port());
    round_trips(&mut chromium, &page, &url, json!({ "protocolVersion": V5 }), "browser/ws5");
}

/// wss: the browser trusts the test's server key (by its SPKI hash, nothing else), MQTT.js
/// 3.1.1 and 5.0.
#[test]
fn mqtt_js_v311_and_v5_over_wss() {
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let (_broker, wss) = serve(&pki.midge_listener());
    let trust = format!("--ignore-certificate-errors-spki-list={}", server_spki_sha256(&pki));
    let mut chromium = Chromium::launch(TEST_TIME, &[trust]);
    let page = open_exchange_page(&mut chromium);
    let url = format!("wss://127.0.0.1:{}/mqtt", wss.port());
    round_trips(&mut chromium, &page, &url, json!({ "protocolVersion": V311 }), "browser/wss311");
    round_trips(&mut chromium, &page, &url, json!({ "protocolVersion": V5 }), "browser/wss5");
}

/// The example page, copied with mqtt.min.js as its README says, told the broker and topic in
/// its query string: it lists a retained message it finds on subscribing and live ones
/// mosquitto_pub sends over TCP, with topic, QoS, retained flag and payload: as text even when
/// it looks like markup, in hexadecimal when it is not UTF-8.
#[test]
fn live_messages_page_shows_messages_from_mosquitto_pub() {
    let (broker, ws) = serve("");
    let site = tempfile::tempdir().expect("temp dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/live-messages.html");
    std::fs::copy(&example, site.path().join("live-messages.html")).expect("copy the example page");
    std::fs::copy(mqtt_js(), site.path().join("mqtt.min.js")).expect("copy mqtt.min.js");

    mosquitto_pub(&broker, &["-t", "sensors/kitchen/temperature", "-m", "21.5 °C", "-q", "1", "-r"]);
    let mut chromium = Chromium::launch(TEST_TIME, &[]);
    let url = format!(
        "file://{}/live-messages.html?url={}&topic={}&qos=2",
        site.path().display(),
        query_escape(&format!("ws://127.0.0.1:{}/mqtt", ws.port())),
        query_escape("sensors/#")
    );
    let page = chromium.open(&url);
    let status = chromium.wait_in_page(
        &page,
        "document.getElementById('status').dataset.state === 'subscribed' \
         && document.getElementById('status').textContent",
    );
    assert_eq!(status, format!("Subscribed to sensors/# on ws://127.0.0.1:{}/mqtt (QoS 2).", ws.port()));
    let rows = chromium.wait_in_page(&page, &rows_once(1));
    assert_eq!(rows, json!([["sensors/kitchen/temperature", "1", "yes", "21.5 °C"]]), "the retained message");

    mosquitto_pub(&broker, &["-t", "sensors/hall/door", "-m", "<b>open</b>", "-q", "2"]);
    // Shown once its QoS 2 exchange is over, after which the next can arrive first.
    let rows = chromium.wait_in_page(&page, &rows_once(2));
    assert_eq!(rows[0], json!(["sensors/hall/door", "2", "no", "<b>open</b>"]), "the live message, on top");
    let binary = site.path().join("binary");
    std::fs::write(&binary, [0x00, 0x01, 0xfe, 0xff]).expect("write a payload");
    mosquitto_pub(&broker, &["-t", "sensors/hall/raw", "-f", binary.to_str().expect("a UTF-8 path")]);
    let rows = chromium.wait_in_page(&page, &rows_once(3));
    assert_eq!(
        rows,
        json!([
            ["sensors/hall/raw", "0", "no", "(4 bytes) 00 01 fe ff"],
            ["sensors/hall/door", "2", "no", "<b>open</b>"],
            ["sensors/kitchen/temperature", "1", "yes", "21.5 °C"]
        ]),
        "the live messages, newest first, the one that is not UTF-8 in hexadecimal"
    );
    let count = chromium.evaluate(&page, "document.getElementById('count').textContent");
    assert_eq!(count, "3 messages");
    let markup = chromium.evaluate(&page, "document.querySelectorAll('#messages b').length");
    assert_eq!(markup, 0, "a payload is shown as text, never parsed as markup");
}

/// `midge serve` with a TCP listener (the broker's `addr`) and then a websockets listener on
/// path /mqtt with `tls` (its TLS keys, or nothing) added, both for anonymous clients; returns
/// the broker and the websockets listener's address.
fn serve(tls: &str) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_midge_with(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websockets\"\nallow_anonymous = true\n\
         websocket_path = \"/mqtt\"\n{tls}\n\n[store]\npersistence = false\n"
    ));
    let addr = broker.listener_addr("listening (mqtt over websockets");
    (broker, addr)
}

/// The test folder: the pages, and node_modules once `npm ci` has run there.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// MQTT.js's browser bundle, installed by `npm ci` from the folder's package-lock.json.
fn mqtt_js() -> PathBuf {
    let bundle = browser_dir().join("node_modules/mqtt/dist/mqtt.min.js");
    assert!(
        bundle.exists(),
        "{} is missing: run `npm ci` in {} (bash .ci/run does)",
        bundle.display(),
        browser_dir().display()
    );
    bundle
}

/// Opens exchange.html (MQTT.js and exchange.js) and checks that MQTT.js loaded.
fn open_exchange_page(chromium: &mut Chromium) -> Page {
    mqtt_js();
    let page = chromium.open(&format!("file://{}", browser_dir().join("exchange.html").display()));
    let loaded = chromium.evaluate(&page, "typeof mqtt.connect === 'function' && typeof exchange === 'function'");
    assert_eq!(loaded, true, "MQTT.js or exchange.js did not load{}", chromium.report());
    page
}

/// The page connects to `url` with MQTT.js `options`, subscribes to `topic/#` at QoS 2, and
/// publishes to `topic/0`, `topic/1` and `topic/2` at QoS 0, 1 and 2 (the last payload 70,000
/// bytes: a WebSocket frame with a 64-bit length). Each must come back to it once, unchanged, at
/// its QoS, not retained; in 5.0 with its properties.
fn round_trips(chromium: &mut Chromium, page: &Page, url: &str, options: Value, topic: &str) {
    let v5 = options["protocolVersion"] == V5;
    let sent: Vec<Value> = (0..=2u8)
        .map(|qos| {
            let payload = if qos == 2 { "wide ".repeat(14_000) } else { format!("QoS {qos} from a browser ✓") };
            let mut message = json!({ "topic": format!("{topic}/{qos}"), "payload": payload, "qos": qos });
            if v5 {
                message["properties"] = json!({
                    "payloadFormatIndicator": true,
                    "contentType": "text/plain",
                    "userProperties": { "from": "browser", "qos": qos.to_string() },
                });
            }
            message
        })
        .collect();
    let scenario =
        json!({ "url": url, "options": options, "filter": format!("{topic}/#"), "subscribeQos": 2, "messages": sent });
    let result = chromium.evaluate(page, &format!("exchange({scenario})"));
    assert_eq!(result["granted"], json!([2]), "granted QoS, {url} {options}");
    let received = result["received"].as_array().expect("received");
    let topics: Vec<&Value> = received.iter().map(|message| &message["topic"]).collect();
    assert_eq!(received.len(), sent.len(), "messages back in the page over {url} {options}: topics {topics:?}");
    for message in &sent {
        let back: Vec<&Value> = received.iter().filter(|got| got["topic"] == message["topic"]).collect();
        let [back] = back[..] else { panic!("{} came back {} times over {url}", message["topic"], back.len()) };
        let what = format!("{} over {url} {options}", message["topic"]);
        assert!(back["payload"] == message["payload"], "the payload of {what} changed");
        assert_eq!(back["qos"], message["qos"], "the QoS of {what}");
        assert_eq!(back["retain"], false, "the retain flag of {what}");
        if v5 {
            assert_eq!(back["properties"], message["properties"], "the properties of {what}");
        }
    }
}

/// The table rows of live-messages.html as [topic, QoS, retained, payload], once there are
/// `n` of them (a JavaScript condition for [`Chromium::wait_in_page`]).
fn rows_once(n: usize) -> String {
    format!(
        "document.querySelectorAll('#messages tr').length >= {n} && \
         Array.from(document.querySelectorAll('#messages tr'), (row) => \
             ['topic', 'qos', 'retained', 'payload'].map((cell) => row.querySelector('td.' + cell).textContent))"
    )
}

/// Debian's mosquitto_pub to the broker's TCP listener with `args`; fails the test unless it
/// succeeds within 10 seconds.
fn mosquitto_pub(broker: &TestBroker, args: &[&str]) {
    let output = Command::new("timeout")
        .args(["10", "mosquitto_pub", "-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args)
        .output()
        .expect("run timeout(1) and mosquitto_pub");
    assert!(
        output.status.success(),
        "mosquitto_pub {args:?} failed ({}; Debian's mosquitto-clients installs it): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The base64 SHA-256 hash of the server key's public key (its DER SubjectPublicKeyInfo), as
/// Chromium's `--ignore-certificate-errors-spki-list` takes it; computed by openssl.
fn server_spki_sha256(pki: &tls_common::Pki) -> String {
    let der = pki.path("server-spki.der");
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "der", "-in"])
        .arg(pki.path("server.key"))
        .arg("-out")
        .arg(&der)
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl pkey: {status}");
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"openssl dgst -sha256 -binary "$0" | openssl base64 -A"#)
        .arg(&der)
        .output()
        .expect("run openssl");
    let hash = String::from_utf8(output.stdout).expect("base64");
    // A SHA-256 hash is 32 bytes, 44 characters of base64.
    assert_eq!(hash.len(), 44, "openssl dgst: {hash:?} {}", String::from_utf8_lossy(&output.stderr));
    hash
}

/// `text` percent-encoded for a URL's query string (everything but RFC 3986's unreserved
/// characters).
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
