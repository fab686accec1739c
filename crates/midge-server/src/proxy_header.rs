//! The PROXY protocol header a load balancer sends before anything of its client's (HAProxy's
//! proxy-protocol.txt, versions 1 and 2), checked without I/O: where it ends, and the client's
//! address it carries.
//!
//! A listener with `enable_proxy_protocol` takes one version, as mosquitto's option of that name
//! does: "The receiver MUST be configured to only receive the protocol described in this
//! specification and MUST not try to guess whether the protocol header is present or not"
//! (section 2), and a listener that took either would take what its proxy never sends. A
//! connection whose first bytes are not that version's start is refused as soon as they say so
//! (an MQTT CONNECT sent straight to the broker is refused on its first byte).
//!
//! The header is framed here (v1: its CRLF within [`PROXY_V1_MAX_HEADER`] bytes; v2: its 16-byte
//! start and the length it announces, at most [`PROXY_V2_MAX_HEADER`] in all), and only a whole
//! header is given to `ppp` to parse, so that a header split across reads is never judged by
//! its part. v2 TLVs are checked to fill the header exactly and otherwise skipped: Midge uses
//! none of them.
//!
//! Which address the connection then has:
//!
//! | header | address |
//! |---|---|
//! | v1 `TCP4`, `TCP6`; v2 `PROXY` over IPv4 or IPv6 | the source address and port it carries |
//! | v2 `LOCAL` (the proxy's own connection, a health check: section 2.2 says the receiver "MUST use the real connection endpoints") | the connection's own |
//! | v1 `UNKNOWN`; v2 `PROXY` with the `UNSPEC` or `UNIX` family (no IP address to use) | the connection's own |

use std::net::SocketAddr;

use serde::Deserialize;

use crate::limits::{PROXY_V1_MAX_HEADER, PROXY_V2_MAX_HEADER};

/// How a v1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";

/// How a v2 header starts (section 2.2).
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header's fixed part: the signature, the version and command, the family and transport,
/// and the length of what follows.
const V2_FIXED: usize = 16;

/// The PROXY protocol version a listener takes (`enable_proxy_protocol`, 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub enum ProxyVersion {
    /// The text header: `PROXY TCP4 192.0.2.1 198.51.100.1 51234 1883\r\n`.
    V1,
    /// The binary header, with optional TLVs.
    V2,
}

impl ProxyVersion {
    /// 1 or 2, as the config writes it.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

impl TryFrom<i64> for ProxyVersion {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, String> {
        match value {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            other => Err(format!(
                "enable_proxy_protocol = {other}: use 1 (PROXY protocol v1, text) or 2 (v2, binary), as in mosquitto"
            )),
        }
    }
}

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes it took: what follows is the client's own (its CONNECT, TLS ClientHello or HTTP
    /// request).
    pub len: usize,
    /// The client's address; `None` when the connection's own is to be used (the table in the
    /// module's documentation).
    pub source: Option<SocketAddr>,
}

/// Why a connection's first bytes are not the header its listener expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Neither version's start: a client that did not come through the proxy.
    #[error("no PROXY protocol header")]
    Missing,
    /// The other version's start.
    #[error("a PROXY protocol v{found} header where v{expected} is expected (enable_proxy_protocol = {expected})")]
    OtherVersion {
        /// The version the bytes start as.
        found: u8,
        /// The listener's.
        expected: u8,
    },
    /// A v1 header with no CRLF within its bound.
    #[error("no end of line within the {PROXY_V1_MAX_HEADER} bytes a PROXY v1 header may take")]
    V1TooLong,
    /// A v2 header that announces more than its bound.
    #[error("a PROXY v2 header of {0} bytes, over the {PROXY_V2_MAX_HEADER} accepted")]
    V2TooLong(usize),
    /// A header whose start is right and whose rest is not.
    #[error("malformed PROXY v{version} header: {reason}")]
    Malformed {
        /// 1 or 2.
        version: u8,
        /// What the parser says.
        reason: String,
    },
}

/// Checks the header at the start of `bytes` (the connection's first bytes) for a listener
/// that takes `version`: `Ok(None)` while it is incomplete, in which case every byte of `bytes`
/// is the header's.
pub fn parse(bytes: &[u8], version: ProxyVersion) -> Result<Option<ProxyHeader>, HeaderError> {
    let (own, other) = match version {
        ProxyVersion::V1 => (V1_PREFIX, V2_SIGNATURE),
        ProxyVersion::V2 => (V2_SIGNATURE, V1_PREFIX),
    };
    let seen = bytes.len().min(own.len());
    if bytes[..seen] != own[..seen] {
        let seen = bytes.len().min(other.len());
        return Err(if bytes[..seen] == other[..seen] {
            HeaderError::OtherVersion { found: 3 - version.number(), expected: version.number() }
        } else {
            HeaderError::Missing
        });
    }
    match version {
        ProxyVersion::V1 => v1(bytes),
        ProxyVersion::V2 => v2(bytes),
    }
}

/// A v1 header: one line of text, ended by the first CRLF.
fn v1(bytes: &[u8]) -> Result<Option<ProxyHeader>, HeaderError> {
    let window = &bytes[..bytes.len().min(PROXY_V1_MAX_HEADER)];
    let Some(cr) = window.iter().position(|&byte| byte == b'\r') else {
        return if bytes.len() >= PROXY_V1_MAX_HEADER { Err(HeaderError::V1TooLong) } else { Ok(None) };
    };
    let len = match window.get(cr + 1) {
        Some(b'\n') => cr + 2,
        Some(_) => return Err(malformed(1, "a CR not followed by LF")),
        None if window.len() == PROXY_V1_MAX_HEADER => return Err(HeaderError::V1TooLong),
        None => return Ok(None),
    };
    let header = ppp::v1::Header::try_from(&bytes[..len]).map_err(|error| malformed(1, error))?;
    let source = match header.addresses {
        ppp::v1::Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v1::Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some(ProxyHeader { len, source }))
}

/// A v2 header: 16 bytes, then as many as they announce.
fn v2(bytes: &[u8]) -> Result<Option<ProxyHeader>, HeaderError> {
    let Some(announced) = bytes.get(V2_FIXED - 2..V2_FIXED) else { return Ok(None) };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([announced[0], announced[1]]));
    if len > PROXY_V2_MAX_HEADER {
        return Err(HeaderError::V2TooLong(len));
    }
    let Some(whole) = bytes.get(..len) else { return Ok(None) };
    let header = ppp::v2::Header::try_from(whole).map_err(|error| malformed(2, error))?;
    if let Some(Err(error)) = header.tlvs().find(Result::is_err) {
        return Err(malformed(2, error));
    }
    let source = match (header.command, header.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(ip)) => {
            Some(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(ip)) => {
            Some(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => None,
    };
    Ok(Some(ProxyHeader { len, source }))
}

fn malformed(version: u8, reason: impl std::fmt::Display) -> HeaderError {
    HeaderError::Malformed { version, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header built byte by byte (section 2.2), independent of the parser's crate:
    /// `command` 0 LOCAL or 1 PROXY, `family` the family and transport byte, then `payload`.
    fn v2_header(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(payload.len()).expect("short").to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// An IPv4 PROXY header from `source` to 127.0.0.1:1883, with `tlvs` after the addresses.
    fn v2_ipv4(source: &str, tlvs: &[u8]) -> Vec<u8> {
        let source: std::net::SocketAddrV4 = source.parse().expect("an IPv4 address and port");
        let mut payload = source.ip().octets().to_vec();
        payload.extend_from_slice(&[127, 0, 0, 1]);
        payload.extend_from_slice(&source.port().to_be_bytes());
        payload.extend_from_slice(&1883u16.to_be_bytes());
        payload.extend_from_slice(tlvs);
        v2_header(1, 0x11, &payload)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    const CONNECT: &[u8] = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c";

    #[test]
    fn a_v1_header_gives_its_source_and_leaves_what_follows() {
        for (line, source) in [
            ("PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883\r\n", "203.0.113.7:51234"),
            ("PROXY TCP6 2001:db8::7 ::1 51234 1883\r\n", "[2001:db8::7]:51234"),
        ] {
            let bytes = [line.as_bytes(), CONNECT].concat();
            let header = parse(&bytes, ProxyVersion::V1).expect("valid").expect("complete");
            assert_eq!(header, ProxyHeader { len: line.len(), source: Some(addr(source)) }, "{line}");
        }
        let unknown = parse(b"PROXY UNKNOWN\r\n", ProxyVersion::V1).expect("valid").expect("complete");
        assert_eq!(unknown, ProxyHeader { len: 15, source: None }, "UNKNOWN: the connection's own address");
        let unknown = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyVersion::V1).expect("valid");
        assert_eq!(unknown.expect("complete").source, None, "UNKNOWN's addresses are ignored");
    }

    /// Every prefix of a header is incomplete, never refused: a header split across reads is
    /// judged whole (the parser's own view of a part can be wrong, e.g. at a space).
    #[test]
    fn every_part_of_a_header_waits_for_the_rest() {
        let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883\r\n".to_vec();
        let v2 = v2_ipv4("203.0.113.7:51234", &[0x04, 0x00, 0x02, 0, 0]);
        for (header, version) in [(v1, ProxyVersion::V1), (v2, ProxyVersion::V2)] {
            for end in 0..header.len() {
                assert_eq!(parse(&header[..end], version), Ok(None), "{version:?}, {end} bytes");
            }
            assert!(parse(&header, version).expect("valid").is_some());
        }
    }

    #[test]
    fn a_v2_header_gives_its_source_and_skips_its_tlvs() {
        let tlvs = [
            &[0x01, 0x00, 0x04][..], // ALPN "mqtt"
            b"mqtt",
            &[0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0], // SSL: client used TLS, verified
            &[0x04, 0x00, 0x00],                   // NOOP, empty
        ]
        .concat();
        let header = v2_ipv4("203.0.113.7:51234", &tlvs);
        let bytes = [&header[..], CONNECT].concat();
        let parsed = parse(&bytes, ProxyVersion::V2).expect("valid").expect("complete");
        assert_eq!(parsed, ProxyHeader { len: header.len(), source: Some(addr("203.0.113.7:51234")) });

        let mut v6 = "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0xc8, 0x22, 0x07, 0x5b]);
        let parsed = parse(&v2_header(1, 0x21, &v6), ProxyVersion::V2).expect("valid").expect("complete");
        assert_eq!(parsed.source, Some(addr("[2001:db8::7]:51234")));
    }

    /// LOCAL (a health check from the proxy itself), and families with no IP address, keep the
    /// connection's own address.
    #[test]
    fn local_and_addressless_v2_headers_keep_the_connections_address() {
        let local = v2_header(0, 0x00, &[]);
        assert_eq!(parse(&local, ProxyVersion::V2), Ok(Some(ProxyHeader { len: 16, source: None })));
        let local_with_addresses = {
            let mut header = v2_ipv4("203.0.113.7:51234", &[]);
            header[12] = 0x20;
            header
        };
        assert_eq!(parse(&local_with_addresses, ProxyVersion::V2).expect("valid").expect("complete").source, None);
        let unspec = v2_header(1, 0x00, &[]);
        assert_eq!(parse(&unspec, ProxyVersion::V2).expect("valid").expect("complete").source, None);
        let unix = v2_header(1, 0x31, &[0u8; 216]);
        assert_eq!(parse(&unix, ProxyVersion::V2).expect("valid").expect("complete").source, None);
    }

    #[test]
    fn a_connection_without_the_header_is_refused_on_its_first_byte() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            assert_eq!(parse(&CONNECT[..1], version), Err(HeaderError::Missing));
            assert_eq!(parse(b"GET / HTTP/1.1\r\n", version), Err(HeaderError::Missing));
            assert_eq!(parse(&[0x16, 0x03, 0x01], version), Err(HeaderError::Missing), "a TLS ClientHello");
        }
        assert_eq!(parse(b"PROXZ", ProxyVersion::V1), Err(HeaderError::Missing));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT\r", ProxyVersion::V2), Err(HeaderError::Missing));
    }

    #[test]
    fn the_other_versions_header_is_refused_and_named() {
        let v2 = v2_ipv4("203.0.113.7:51234", &[]);
        assert_eq!(parse(&v2[..1], ProxyVersion::V1), Err(HeaderError::OtherVersion { found: 2, expected: 1 }));
        assert_eq!(parse(b"PROXY TCP4", ProxyVersion::V2), Err(HeaderError::OtherVersion { found: 1, expected: 2 }));
        let message = parse(b"P", ProxyVersion::V2).unwrap_err().to_string();
        assert_eq!(message, "a PROXY protocol v1 header where v2 is expected (enable_proxy_protocol = 2)");
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        let long = format!("PROXY TCP4 {}", "1".repeat(PROXY_V1_MAX_HEADER));
        assert_eq!(parse(long.as_bytes(), ProxyVersion::V1), Err(HeaderError::V1TooLong));
        // The CR as the 107th byte leaves no room for the LF.
        let cr_last = format!("PROXY UNKNOWN {}\r", "x".repeat(PROXY_V1_MAX_HEADER - 15));
        assert_eq!(cr_last.len(), PROXY_V1_MAX_HEADER);
        assert_eq!(parse(cr_last.as_bytes(), ProxyVersion::V1), Err(HeaderError::V1TooLong));
        // The longest a v1 header may be is fine.
        let longest = format!("PROXY UNKNOWN {}\r\n", "x".repeat(PROXY_V1_MAX_HEADER - 16));
        assert_eq!(longest.len(), PROXY_V1_MAX_HEADER);
        assert!(parse(longest.as_bytes(), ProxyVersion::V1).expect("valid").is_some());
        // v2: refused from its 16 bytes when what they announce is over the bound.
        let mut fixed = v2_header(1, 0x11, &[]);
        fixed[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&fixed, ProxyVersion::V2), Err(HeaderError::V2TooLong(V2_FIXED + 65_535)));
        let largest = v2_ipv4("203.0.113.7:1", &[[0x04, 0x0f, 0xe1].as_slice(), &[0; 0xfe1]].concat());
        assert_eq!(largest.len(), PROXY_V2_MAX_HEADER);
        assert!(parse(&largest, ProxyVersion::V2).expect("valid").is_some());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for line in [
            "PROXY TCP4 203.0.113.7 127.0.0.1 51234\r\n",
            "PROXY TCP4 2001:db8::7 ::1 51234 1883\r\n",
            "PROXY TCP4 203.0.113.7 127.0.0.1 51234 99999\r\n",
            "PROXY TCP5 203.0.113.7 127.0.0.1 51234 1883\r\n",
            "PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883 extra\r\n",
            "PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883\rX",
        ] {
            let error = parse(line.as_bytes(), ProxyVersion::V1).expect_err(line);
            assert!(matches!(error, HeaderError::Malformed { version: 1, .. }), "{line}: {error:?}");
        }
        let mut bad_version = v2_ipv4("203.0.113.7:1", &[]);
        bad_version[12] = 0x11;
        let mut bad_command = v2_ipv4("203.0.113.7:1", &[]);
        bad_command[12] = 0x22;
        let mut bad_family = v2_ipv4("203.0.113.7:1", &[]);
        bad_family[13] = 0x41;
        let short_addresses = v2_header(1, 0x21, &[0; 12]);
        let torn_tlv = v2_ipv4("203.0.113.7:1", &[0x04, 0x00, 0x05, 0]);
        let leftover = v2_ipv4("203.0.113.7:1", &[0x04]);
        for header in [bad_version, bad_command, bad_family, short_addresses, torn_tlv, leftover] {
            let error = parse(&header, ProxyVersion::V2).expect_err("malformed");
            assert!(matches!(error, HeaderError::Malformed { version: 2, .. }), "{header:?}: {error:?}");
        }
    }
}
