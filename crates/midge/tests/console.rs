//! The web console (docs/http-api.md, Console) in a real headless Chromium, driven over the
//! DevTools protocol (chromium/mod.rs), against `mosquitto_sub` and `mosquitto_pub` on the MQTT
//! side: signing in (a wrong token first), a connected client in Clients and kicking it, a
//! message from mosquitto_pub in Live and in the topic tree, publishing from the form to a
//! mosquitto_sub, and the overview's counters and chart.
//!
//! A screenshot of each page is saved under the build's temporary directory
//! (`CARGO_TARGET_TMPDIR/console-screenshots`, never committed) and its path printed. Needs
//! Debian's chromium and mosquitto-clients (bash .ci/run installs both). Nothing sleeps: each
//! step waits, within a bound, for what the page or a client shows.

mod chromium;
mod interop_common;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use chromium::{Chromium, Page};
use interop_common::mosquitto::{publish, Sub};
use interop_common::run_bounded;
use support::TestBroker;

/// How long the browser test has for everything it does.
const TEST_TIME: Duration = Duration::from_secs(90);

/// The listener's operator token.
const TOKEN: &str = "console-t0ken";

const V5: &str = "mqttv5";

/// A broker with its MQTT listener and an HTTP listener that takes [`TOKEN`]; returns the
/// broker and the HTTP listener's address.
fn serve() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_midge_with(&format!(
        "[[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\n\
         [listener.http_tokens]\nops = \"{TOKEN}\"\n"
    ));
    let http = broker.listener_addr("listening (http api)");
    (broker, http)
}

#[test]
fn the_console_signs_in_shows_clients_topics_and_live_messages_publishes_and_kicks() {
    let (broker, http) = serve();
    let shots = screenshot_dir();
    let mut chromium = Chromium::launch(TEST_TIME, &[]);
    let page = chromium.open(&format!("http://{http}/"));

    // Signing in: a wrong token is refused and says so; the right one opens the overview.
    chromium.wait_in_page(&page, "!document.getElementById('signin').hidden");
    sign_in(&mut chromium, &page, "not-the-token");
    let refused = chromium.wait_in_page(
        &page,
        "!document.getElementById('signin-error').hidden && document.getElementById('signin-error').textContent",
    );
    assert_eq!(refused, "That token is not one of this listener’s.");
    shoot(&mut chromium, &page, &shots, "1-sign-in-refused");
    sign_in(&mut chromium, &page, TOKEN);
    chromium.wait_in_page(
        &page,
        "!document.getElementById('app').hidden && document.getElementById('stat-sessions').textContent !== '–'",
    );

    // Clients: a mosquitto_sub is listed, its details show its subscription, and kicking it
    // (confirmed) disconnects it.
    let mut watcher = Sub::start_with(&broker, V5, "console-watcher", &["-t", "plant/#", "-q", "1"], "%t");
    watcher.wait_subscribed();
    go(&mut chromium, &page, "clients");
    let row = "document.querySelector('#client-rows tr[data-client-id=\"console-watcher\"]')";
    chromium.wait_in_page(&page, row);
    set(&mut chromium, &page, "client-search", "watcher");
    chromium.evaluate(&page, &format!("{row}.click()"));
    let filter = chromium.wait_in_page(
        &page,
        "document.querySelector('#client-details h3')?.textContent === 'console-watcher' \
         && document.querySelector('#client-details table.list td')?.textContent",
    );
    assert_eq!(filter, "plant/#", "the watcher's subscription");
    shoot(&mut chromium, &page, &shots, "2-clients");
    click(&mut chromium, &page, "client-kick");
    chromium.wait_in_page(&page, "document.getElementById('client-kick-confirm')");
    shoot(&mut chromium, &page, &shots, "3-clients-kick-confirm");
    click(&mut chromium, &page, "client-kick-confirm");
    let notice = chromium.wait_in_page(&page, "document.getElementById('client-notice').textContent");
    assert_eq!(notice, "console-watcher was disconnected.");
    let kicked = broker.wait_for_log("Administrative action", interop_common::mosquitto::WAIT);
    assert!(kicked.contains("console-watcher"), "{kicked}");
    // mosquitto_sub -d prints the reason code: 0x98, Administrative action.
    watcher.wait_for("Received DISCONNECT (152)");
    drop(watcher);

    // Live: a filter subscribed from the page shows what mosquitto_pub publishes, as text (in
    // hexadecimal when it is not UTF-8).
    go(&mut chromium, &page, "live");
    set(&mut chromium, &page, "live-filter", "plant/#");
    chromium.evaluate(&page, "document.getElementById('live-form').requestSubmit()");
    chromium.wait_in_page(&page, "document.getElementById('live-status').dataset.state === 'subscribed'");
    publish(&broker, V5, "console-pub", &["-t", "plant/kitchen/temperature", "-m", "<b>21.5</b> °C", "-q", "1", "-r"]);
    publish(&broker, V5, "console-pub", &["-t", "plant/hall/door", "-m", "{\"open\":true}"]);
    let binary = shots.join("binary-payload");
    std::fs::write(&binary, [0x00, 0x01, 0xfe, 0xff]).expect("write a payload");
    publish(&broker, V5, "console-pub", &["-t", "plant/hall/raw", "-f", binary.to_str().expect("a UTF-8 path")]);
    let rows = chromium.wait_in_page(
        &page,
        "document.querySelectorAll('#live-rows tr').length >= 3 && Array.from(document.querySelectorAll('#live-rows tr'), \
         (row) => Array.from(row.cells).slice(1).map((cell) => cell.textContent))",
    );
    assert_eq!(
        rows,
        json!([
            ["plant/hall/raw", "0", "no", "(4 bytes) 00 01 fe ff"],
            ["plant/hall/door", "0", "no", "{\"open\":true}"],
            ["plant/kitchen/temperature", "1", "no", "<b>21.5</b> °C"]
        ]),
        "the live messages, newest first, the one that is not UTF-8 in hexadecimal"
    );
    shoot(&mut chromium, &page, &shots, "4-live");

    // Topics: the tree holds both topics with their latest values; the retained one says so.
    go(&mut chromium, &page, "topics");
    let node = "document.querySelector('.topic-row[data-topic=\"plant/kitchen/temperature\"]')";
    let value = chromium
        .wait_in_page(&page, &format!("{node}?.querySelector('.badge') && {node}.querySelector('.value').textContent"));
    assert_eq!(value, "<b>21.5</b> °C");
    chromium.wait_in_page(&page, "document.querySelector('.topic-row[data-topic=\"plant/hall/door\"]')");
    chromium.evaluate(&page, &format!("{node}.click()"));
    let shown = chromium.wait_in_page(&page, "document.getElementById('topic-selected')?.textContent");
    assert_eq!(shown, "plant/kitchen/temperature");
    shoot(&mut chromium, &page, &shots, "5-topics");
    let markup =
        chromium.evaluate(&page, "document.querySelectorAll('#topic-tree b, #topic-details b, #live-rows b').length");
    assert_eq!(markup, 0, "payloads are shown as text, never parsed as markup");
    // Clearing the retained message (two clicks): the topic stays, without its badge, and the
    // empty retained message that clears it is its latest value.
    click(&mut chromium, &page, "topic-clear");
    click(&mut chromium, &page, "topic-clear");
    chromium.wait_in_page(
        &page,
        &format!("{node} && !{node}.querySelector('.badge') && {node}.querySelector('.value')?.textContent === ''"),
    );
    let retained = chromium.evaluate(&page, "document.querySelectorAll('#topic-details pre.payload').length");
    assert_eq!(retained, 1, "the latest value only: no retained message any more");

    // Publish: the form's message reaches a mosquitto_sub.
    let mut reader = Sub::start(&broker, V5, "console-reader", "plant/form", 1, 1, "%q|%p");
    reader.wait_subscribed();
    go(&mut chromium, &page, "publish");
    set(&mut chromium, &page, "publish-topic", "plant/form");
    set(&mut chromium, &page, "publish-payload", "from the console ✓");
    chromium.evaluate(&page, "document.getElementById('publish-form').requestSubmit()");
    let result = chromium.wait_in_page(
        &page,
        "document.getElementById('publish-result').dataset.state === 'published' \
         && document.getElementById('publish-result').textContent",
    );
    assert_eq!(result, "Published to plant/form at QoS 1: 0x00 (Success).");
    shoot(&mut chromium, &page, &shots, "6-publish");
    assert_eq!(reader.messages(), ["1|from the console ✓"]);

    // Overview: the counters and a chart of rates (each poll after the first makes a sample;
    // two make a line).
    go(&mut chromium, &page, "overview");
    chromium.wait_in_page(&page, "Number(document.getElementById('rates').dataset.samples) >= 2");
    let store = chromium.wait_in_page(&page, "/(B|KiB|MiB)$/.test(document.getElementById('stat-store').textContent) && document.getElementById('stat-store').textContent");
    println!("the store's size: {store}");
    let received = chromium.evaluate(&page, "document.querySelector('#counters tr:nth-child(2) td').textContent");
    assert_eq!(received, "5", "messages received: three from mosquitto_pub, the clearing one, the form's");
    shoot(&mut chromium, &page, &shots, "7-overview");

    // Signing out forgets the token; signing in again opens the console again.
    click(&mut chromium, &page, "signout");
    chromium.wait_in_page(&page, "!document.getElementById('signin').hidden && sessionStorage.length === 0");
    sign_in(&mut chromium, &page, TOKEN);
    chromium.wait_in_page(&page, "document.getElementById('signin').hidden && !document.getElementById('app').hidden");
    let kept = chromium.evaluate(&page, "sessionStorage.getItem('midge.console.token')");
    assert_eq!(kept, TOKEN, "the token, kept for the tab");
    // Nothing thrown, and nothing the page's policy (scripts, styles, requests: the listener's
    // own only) had to refuse.
    let report = chromium.report();
    assert!(!report.contains("uncaught") && !report.contains("Content Security Policy"), "{report}");
}

/// The page and its files: their content types, cache headers and policy; no credentials
/// needed for them, while the API still wants its token.
#[test]
fn the_console_is_served_from_the_binary() {
    let (_broker, http) = serve();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let headers = curl_headers(http, path, &[]);
        assert!(headers.starts_with("HTTP/1.1 200"), "{path}: {headers}");
        assert!(headers.contains(&format!("content-type: {content_type}\r\n")), "{path}: {headers}");
        assert!(headers.contains("cache-control: no-cache\r\n"), "{path}: {headers}");
        assert!(headers.contains("content-security-policy: default-src 'none'; script-src 'self';"), "{headers}");
        let etag = headers.lines().find_map(|line| line.strip_prefix("etag: ")).expect("an ETag");
        let again = curl_headers(http, path, &["-H", &format!("If-None-Match: {etag}")]);
        assert!(again.starts_with("HTTP/1.1 304"), "{path} again: {again}");
    }
    assert!(curl_headers(http, "/console/nothing.js", &[]).starts_with("HTTP/1.1 404"));
    assert!(curl_headers(http, "/api/v1/stats", &[]).starts_with("HTTP/1.1 401"));
}

/// The response headers of `GET path` (lower-case names), by `curl -s -D - -o /dev/null`.
fn curl_headers(http: SocketAddr, path: &str, args: &[&str]) -> String {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "-D", "-", "-o", "/dev/null"]).args(args).arg(format!("http://{http}{path}"));
    let (status, output) = run_bounded(command, interop_common::mosquitto::WAIT);
    assert!(status.success(), "curl {path}: {output}");
    output.to_lowercase().replace("http/1.1", "HTTP/1.1")
}

/// Where the screenshots go: a folder of the build's temporary directory, made anew.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the screenshot folder");
    dir
}

/// Saves a screenshot of `page` as `name`.png in `dir` and prints its path.
fn shoot(chromium: &mut Chromium, page: &Page, dir: &std::path::Path, name: &str) {
    let path = dir.join(format!("{name}.png"));
    chromium.screenshot(page, &path);
    println!("screenshot: {}", path.display());
}

/// Types `token` into the sign-in form and submits it.
fn sign_in(chromium: &mut Chromium, page: &Page, token: &str) {
    set(chromium, page, "signin-token", token);
    chromium.evaluate(page, "document.getElementById('signin-form').requestSubmit()");
}

/// Opens the page `name` from the navigation and waits for it to show.
fn go(chromium: &mut Chromium, page: &Page, name: &str) {
    chromium.evaluate(page, &format!("document.querySelector('#nav a[data-page=\"{name}\"]').click()"));
    chromium.wait_in_page(page, &format!("!document.getElementById('page-{name}').hidden"));
}

/// Sets the input `id` to `value` as typing would (an `input` event follows).
fn set(chromium: &mut Chromium, page: &Page, id: &str, value: &str) {
    let value = serde_json::to_string(value).expect("JSON");
    chromium.evaluate(
        page,
        &format!(
            "(() => {{ const input = document.getElementById('{id}'); input.value = {value}; \
             input.dispatchEvent(new Event('input', {{ bubbles: true }})); }})()"
        ),
    );
}

/// Clicks the button `id`.
fn click(chromium: &mut Chromium, page: &Page, id: &str) {
    chromium.evaluate(page, &format!("document.getElementById('{id}').click()"));
}
