//! The HTTP request that opens a WebSocket (RFC 6455 section 4.2), checked without I/O, and the
//! responses to it: `101 Switching Protocols`, or a plain refusal with a short reason.
//!
//! A request is accepted when it is a `GET` over HTTP/1.1 with a `Host`, `Upgrade: websocket`,
//! a `Connection` that includes `upgrade` (case-insensitive, in a comma list),
//! `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 bytes in base64; when the
//! listener sets them, its path must match (`websocket_path`) and its `Origin` must be one of
//! the listener's (`websocket_origins`). The subprotocol answered is the first the client offers
//! of `mqtt` and `mqttv3.1` (MQTT-6.0.0-3, -4): a client that offers only others is refused,
//! and one that offers none is answered without one. When the request comes from one of the
//! listener's trusted proxies, the client's address is read from the header they write
//! ([`forwarded`](super::forwarded)).
//!
//! | refusal | status |
//! |---|---|
//! | not HTTP, HTTP/1.0, no `Host`, no `Connection: upgrade`, no key or a bad one, no version, only other subprotocols | 400 |
//! | headers over [`WEBSOCKET_MAX_REQUEST`] or [`WEBSOCKET_MAX_HEADERS`] lines | 431 |
//! | not `GET` | 405, with `Allow: GET` |
//! | no `Upgrade: websocket` | 426, with `Upgrade: websocket` (RFC 9110 section 15.5.22) |
//! | a version other than 13 | 426, with `Sec-WebSocket-Version: 13` (RFC 6455 section 4.4) |
//! | another path than `websocket_path` | 404 |
//! | an `Origin` not in `websocket_origins`, or none | 403 |
//! | a trusted proxy's `X-Forwarded-For` (or `Forwarded`) that is not a list of addresses | 400 |

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::forwarded::{self, ForwardedHeader, TrustedProxies};
use crate::limits::{WEBSOCKET_MAX_HEADERS, WEBSOCKET_MAX_REQUEST};

/// The subprotocols that mean MQTT: `mqtt` for 3.1.1 and 5.0 (MQTT-6.0.0-3), `mqttv3.1` as
/// MQTT 3.1 clients name it.
const MQTT_SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The GUID RFC 6455 section 1.3 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a listener asks of an upgrade request beyond RFC 6455.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// The only path served (`websocket_path`); `None`: any.
    pub path: Option<String>,
    /// The `Origin` values allowed (`websocket_origins`); `None`: any, or none.
    pub origins: Option<Vec<String>>,
    /// Whose forwarded header gives the client's address (`websocket_trusted_proxies`); `None`:
    /// nobody's.
    pub forwarded: Option<Forwarding>,
}

/// The proxies whose forwarded header is believed, and which header they write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// `websocket_trusted_proxies`.
    pub trusted: TrustedProxies,
    /// `websocket_forwarded_header`.
    pub header: ForwardedHeader,
}

/// An accepted upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Bytes the request took; what follows is the start of the client's frames.
    pub request_len: usize,
    /// `Sec-WebSocket-Accept`: the client's key, hashed (RFC 6455 section 4.2.2).
    pub accept: String,
    /// The subprotocol chosen, spelt as the client offered it.
    pub subprotocol: Option<String>,
    /// The client's address when the request came from a trusted proxy: what its forwarded
    /// header says (its own address when it sent none). `None` when it came from anyone else,
    /// who is the client.
    pub client: Option<SocketAddr>,
}

impl Upgrade {
    /// The `101 Switching Protocols` response.
    pub fn response(&self) -> String {
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(subprotocol) = &self.subprotocol {
            response.push_str(&format!("Sec-WebSocket-Protocol: {subprotocol}\r\n"));
        }
        response.push_str("\r\n");
        response
    }
}

/// A refused upgrade request: the HTTP status and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code.
    pub status: u16,
    /// Why, in a few words: the response's body and the log's.
    pub reason: &'static str,
    /// A header line the status calls for (`Allow`, `Upgrade`, `Sec-WebSocket-Version`).
    header: Option<&'static str>,
}

impl Refusal {
    const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason, header: None }
    }

    const fn with_header(status: u16, reason: &'static str, header: &'static str) -> Self {
        Self { status, reason, header: Some(header) }
    }

    /// The HTTP response: the status, `Connection: close`, and the reason as a line of text.
    pub fn response(&self) -> String {
        let phrase = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let header = self.header.map(|line| format!("{line}\r\n")).unwrap_or_default();
        format!(
            "HTTP/1.1 {} {phrase}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n{header}\r\n{}\n",
            self.status,
            self.reason.len() + 1,
            self.reason
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// Checks the upgrade request at the start of `bytes`, sent by `peer` (the socket's peer, or
/// the address its PROXY header gave): `Ok(None)` while it is incomplete (and shorter than
/// [`WEBSOCKET_MAX_REQUEST`]).
pub fn check_request(bytes: &[u8], policy: &UpgradePolicy, peer: SocketAddr) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; WEBSOCKET_MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let request_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= WEBSOCKET_MAX_REQUEST => {
            return Err(Refusal::new(431, "request headers over 8 KiB"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::new(431, "more than 64 header lines")),
        Err(_) => return Err(Refusal::new(400, "not an HTTP request")),
    };
    if request.method != Some("GET") {
        return Err(Refusal::with_header(405, "a WebSocket upgrade is a GET request", "Allow: GET"));
    }
    if request.version != Some(1) {
        return Err(Refusal::new(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    if let Some(path) = &policy.path {
        let target = request.path.unwrap_or_default();
        let requested = target.split_once('?').map_or(target, |(path, _query)| path);
        if requested != path {
            return Err(Refusal::new(404, "no WebSocket at this path"));
        }
    }
    let headers = request.headers;
    if value(headers, "host").is_none() {
        return Err(Refusal::new(400, "no Host header"));
    }
    if !has_token(headers, "upgrade", "websocket") {
        return Err(Refusal::with_header(426, "not a WebSocket upgrade request", "Upgrade: websocket"));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(Refusal::new(400, "Connection does not include upgrade"));
    }
    match value(headers, "sec-websocket-version") {
        None => return Err(Refusal::new(400, "no Sec-WebSocket-Version")),
        Some(b"13") => {}
        Some(_) => {
            return Err(Refusal::with_header(426, "only WebSocket version 13 is spoken", "Sec-WebSocket-Version: 13"))
        }
    }
    let mut keys = headers.iter().filter(|header| header.name.eq_ignore_ascii_case("sec-websocket-key"));
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.value.trim_ascii(),
        _ => return Err(Refusal::new(400, "not one Sec-WebSocket-Key")),
    };
    if BASE64.decode(key).map_or(true, |nonce| nonce.len() != 16) {
        return Err(Refusal::new(400, "Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    if let Some(origins) = &policy.origins {
        let allowed = value(headers, "origin")
            .is_some_and(|origin| origins.iter().any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin)));
        if !allowed {
            return Err(Refusal::new(403, "Origin not allowed"));
        }
    }
    let mut offered = tokens(headers, "sec-websocket-protocol").peekable();
    let subprotocol = match offered.peek() {
        None => None,
        Some(_) => match offered.find(|token| MQTT_SUBPROTOCOLS.iter().any(|mqtt| mqtt.eq_ignore_ascii_case(token))) {
            Some(token) => Some(token.to_owned()),
            None => return Err(Refusal::new(400, "no MQTT subprotocol offered (mqtt, mqttv3.1)")),
        },
    };
    let client = match &policy.forwarded {
        Some(forwarding) if forwarding.trusted.contains(peer.ip()) => {
            let name = forwarding.header.name();
            let values = headers.iter().filter(|header| header.name.eq_ignore_ascii_case(name)).map(|h| h.value);
            let client = forwarded::client_address(values, forwarding.header, peer, &forwarding.trusted)
                .map_err(|malformed| Refusal::new(400, malformed.reason()))?;
            Some(client)
        }
        _ => None,
    };
    Ok(Some(Upgrade { request_len, accept: accept_key(key), subprotocol, client }))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: the key and RFC 6455's GUID,
/// SHA-1, in base64 (RFC 6455 section 4.2.2, item 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// The value of the first header called `name` (lowercase), trimmed.
fn value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value.trim_ascii())
}

/// Every comma-separated token of every header called `name`, trimmed, empty ones left out.
fn tokens<'a>(headers: &'a [httparse::Header<'a>], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |header| header.name.eq_ignore_ascii_case(name))
        .filter_map(|header| std::str::from_utf8(header.value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Whether a header called `name` lists `token` (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    tokens(headers, name).any(|found| found.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid upgrade request with `extra` header lines, and its `Connection` and `Upgrade`
    /// headers replaced when `extra` gives them.
    fn request(path: &str, extra: &[&str]) -> String {
        let mut lines = vec![format!("GET {path} HTTP/1.1"), "Host: broker.example".to_owned()];
        let given = |name: &str| extra.iter().any(|line| line.to_ascii_lowercase().starts_with(name));
        for (name, line) in [
            ("upgrade:", "Upgrade: websocket"),
            ("connection:", "Connection: Upgrade"),
            ("sec-websocket-version:", "Sec-WebSocket-Version: 13"),
            ("sec-websocket-key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            if !given(name) {
                lines.push(line.to_owned());
            }
        }
        lines.extend(extra.iter().filter(|line| !line.is_empty()).map(|line| (*line).to_owned()));
        format!("{}\r\n\r\n", lines.join("\r\n"))
    }

    /// The client the tests' requests come from.
    fn peer() -> SocketAddr {
        "192.0.2.1:50000".parse().expect("an address")
    }

    fn check(text: &str) -> Result<Option<Upgrade>, Refusal> {
        check_request(text.as_bytes(), &UpgradePolicy::default(), peer())
    }

    fn status(text: &str, policy: &UpgradePolicy) -> u16 {
        match check_request(text.as_bytes(), policy, peer()) {
            Err(refusal) => refusal.status,
            Ok(upgrade) => panic!("accepted: {upgrade:?}\n{text}"),
        }
    }

    /// RFC 6455 section 1.3's example: this key gives this accept value.
    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_valid_request_is_accepted_with_the_first_mqtt_subprotocol_the_client_offered() {
        let text = request("/mqtt", &["Sec-WebSocket-Protocol: chat, mqttv3.1", "Sec-WebSocket-Protocol: mqtt"]);
        let upgrade = check(&text).expect("valid").expect("complete");
        assert_eq!(upgrade.request_len, text.len());
        assert_eq!(upgrade.subprotocol.as_deref(), Some("mqttv3.1"));
        assert_eq!(
            upgrade.response(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqttv3.1\r\n\r\n"
        );
    }

    /// MQTT-6.0.0-4: the server picks one of the subprotocols the client offered, never another.
    #[test]
    fn the_subprotocol_answered_is_one_the_client_offered() {
        let upgrade = |offer: &str| check(&request("/", &[offer])).expect("valid").expect("complete");
        assert_eq!(upgrade("Sec-WebSocket-Protocol: mqtt").subprotocol.as_deref(), Some("mqtt"));
        assert_eq!(upgrade("Sec-WebSocket-Protocol: MQTT").subprotocol.as_deref(), Some("MQTT"));
        assert_eq!(upgrade("Sec-WebSocket-Protocol: mqtt, mqttv3.1").subprotocol.as_deref(), Some("mqtt"));
        assert_eq!(upgrade("").subprotocol, None);
        assert!(!upgrade("").response().contains("Sec-WebSocket-Protocol"));
        assert_eq!(status(&request("/", &["Sec-WebSocket-Protocol: chat, soap"]), &UpgradePolicy::default()), 400);
    }

    #[test]
    fn upgrade_and_connection_are_token_lists_of_any_case() {
        let text = request("/", &["Connection: keep-alive, UPGRADE", "Upgrade: WebSocket"]);
        assert!(check(&text).expect("valid").is_some());
    }

    #[test]
    fn what_follows_the_request_is_not_part_of_it() {
        let text = request("/", &[]);
        let mut bytes = text.clone().into_bytes();
        bytes.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
        let upgrade = check_request(&bytes, &UpgradePolicy::default(), peer()).expect("valid").expect("complete");
        assert_eq!(upgrade.request_len, text.len());
    }

    #[test]
    fn an_incomplete_request_waits_for_more_until_8_kib() {
        let text = request("/", &[]);
        for end in 0..text.len() - 1 {
            assert_eq!(check(&text[..end]), Ok(None), "{end} bytes");
        }
        let long = format!("GET / HTTP/1.1\r\nX-Padding: {}", "a".repeat(WEBSOCKET_MAX_REQUEST));
        assert_eq!(status(&long, &UpgradePolicy::default()), 431);
        let many: Vec<String> = (0..WEBSOCKET_MAX_HEADERS).map(|i| format!("X-Header-{i}: x")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(status(&request("/", &many), &UpgradePolicy::default()), 431);
    }

    /// Every way a request can fail RFC 6455 section 4.2.1, and its status.
    #[test]
    fn bad_requests_are_refused_with_their_status() {
        let policy = UpgradePolicy::default();
        let without = |name: &str| {
            request("/", &[]).split("\r\n").filter(|line| !line.starts_with(name)).collect::<Vec<_>>().join("\r\n")
        };
        for (text, expected) in [
            ("hello\r\n\r\n".to_owned(), 400),
            (request("/", &[]).replacen("GET", "POST", 1), 405),
            (request("/", &[]).replacen("HTTP/1.1", "HTTP/1.0", 1), 400),
            (without("Host:"), 400),
            (without("Upgrade:"), 426),
            (request("/", &["Upgrade: h2c"]), 426),
            (without("Connection:"), 400),
            (request("/", &["Connection: keep-alive"]), 400),
            (without("Sec-WebSocket-Version:"), 400),
            (request("/", &["Sec-WebSocket-Version: 8"]), 426),
            (without("Sec-WebSocket-Key:"), 400),
            (request("/", &["Sec-WebSocket-Key: c2hvcnQ="]), 400),
            (request("/", &["Sec-WebSocket-Key: not base64!"]), 400),
            (format!("{}Sec-WebSocket-Key: {KEY}\r\n\r\n", request("/", &[]).trim_end_matches("\r\n")), 400),
        ] {
            assert_eq!(status(&text, &policy), expected, "{text}");
        }
    }

    #[test]
    fn refusals_say_what_the_status_calls_for() {
        let response = |text: &str| check(text).expect_err("refused").response();
        let version = response(&request("/", &["Sec-WebSocket-Version: 8"]));
        assert!(version.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{version}");
        assert!(version.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{version}");
        assert!(version.ends_with("\r\n\r\nonly WebSocket version 13 is spoken\n"), "{version}");
        let plain_get = response("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(plain_get.contains("\r\nUpgrade: websocket\r\n"), "{plain_get}");
        let post = response(&request("/", &[]).replacen("GET", "PUT", 1));
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("\r\nAllow: GET\r\n"));
        let body = "no WebSocket at this path\n";
        let policy = UpgradePolicy { path: Some("/mqtt".to_owned()), ..UpgradePolicy::default() };
        let not_found = check_request(request("/", &[]).as_bytes(), &policy, peer()).expect_err("refused").response();
        assert!(not_found.contains(&format!("Content-Length: {}\r\n", body.len())), "{not_found}");
        assert!(not_found.contains("\r\nConnection: close\r\n") && not_found.ends_with(body), "{not_found}");
    }

    #[test]
    fn websocket_path_is_matched_without_the_query() {
        let policy = UpgradePolicy { path: Some("/mqtt".to_owned()), ..UpgradePolicy::default() };
        assert!(check_request(request("/mqtt", &[]).as_bytes(), &policy, peer()).expect("valid").is_some());
        assert!(check_request(request("/mqtt?token=x", &[]).as_bytes(), &policy, peer()).expect("valid").is_some());
        for path in ["/", "/mqtt/", "/MQTT", "/other"] {
            assert_eq!(status(&request(path, &[]), &policy), 404, "{path}");
        }
        assert!(check(&request("/anything/at/all", &[])).expect("valid").is_some(), "no websocket_path: any path");
    }

    #[test]
    fn websocket_origins_is_an_allow_list() {
        let policy =
            UpgradePolicy { origins: Some(vec!["https://app.example".to_owned()]), ..UpgradePolicy::default() };
        let accepted = |origin: &str| check_request(request("/", &[origin]).as_bytes(), &policy, peer());
        assert!(accepted("Origin: https://app.example").expect("valid").is_some());
        assert!(accepted("Origin: HTTPS://APP.EXAMPLE").expect("valid").is_some());
        assert_eq!(status(&request("/", &["Origin: https://evil.example"]), &policy), 403);
        assert_eq!(status(&request("/", &[]), &policy), 403, "no Origin at all");
        assert!(check(&request("/", &["Origin: https://evil.example"])).expect("valid").is_some(), "no list: any");
    }

    /// A trusted proxy's header gives the client's address; anyone else's is ignored; a
    /// malformed one from a trusted proxy is refused with 400.
    #[test]
    fn a_trusted_proxys_forwarded_header_gives_the_client() {
        let forwarding = |header| Forwarding {
            trusted: TrustedProxies::new(vec!["192.0.2.0/24".parse().expect("a range")]),
            header,
        };
        let policy =
            UpgradePolicy { forwarded: Some(forwarding(ForwardedHeader::XForwardedFor)), ..Default::default() };
        let client = |text: &str, peer: &str| {
            let upgrade = check_request(text.as_bytes(), &policy, peer.parse().expect("an address"));
            upgrade.expect("valid").expect("complete").client
        };
        let via_proxy = request("/", &["X-Forwarded-For: 6.6.6.6, 203.0.113.7", "Forwarded: for=6.6.6.7"]);
        assert_eq!(client(&via_proxy, "192.0.2.1:50000"), Some("203.0.113.7:0".parse().unwrap()));
        assert_eq!(client(&via_proxy, "198.51.100.1:50000"), None, "not a trusted proxy: ignored");
        assert_eq!(client(&request("/", &[]), "192.0.2.1:50000"), Some(peer()), "no header: the proxy itself");
        let malformed = request("/", &["X-Forwarded-For: 203.0.113.7, not-an-address"]);
        let refusal = check_request(malformed.as_bytes(), &policy, peer()).expect_err("refused");
        assert_eq!((refusal.status, refusal.reason), (400, "malformed X-Forwarded-For from a trusted proxy"));
        assert!(check_request(malformed.as_bytes(), &policy, "198.51.100.1:1".parse().unwrap()).is_ok());
        // Only the header the listener names is read.
        let policy = UpgradePolicy { forwarded: Some(forwarding(ForwardedHeader::Forwarded)), ..Default::default() };
        let upgrade = check_request(via_proxy.as_bytes(), &policy, peer()).expect("valid").expect("complete");
        assert_eq!(upgrade.client, Some("6.6.6.7:0".parse().unwrap()));
    }
}
