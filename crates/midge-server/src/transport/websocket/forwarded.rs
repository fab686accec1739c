//! The client's address behind an HTTP proxy: the `X-Forwarded-For` (or RFC 7239 `Forwarded`)
//! header of a WebSocket upgrade request, believed only when it comes from a trusted proxy
//! (`websocket_trusted_proxies`), checked without I/O.
//!
//! Each proxy appends the address it got the request from to the list, so the list's right end
//! is written by the proxies nearest the broker and its left end by whoever sent the request
//! first, which may be anyone. The walk is the usual safe one: from the right, past every
//! address that is itself a trusted proxy, to the first that is not; that is the client. Left of
//! it the list is the client's own to write, and is not read. Several header lines are one list,
//! in their order.
//!
//! - The connection's own peer (or its PROXY protocol address) must be trusted, or the header
//!   is ignored whatever it says: anyone can send one.
//! - Every address in the list trusted: the left-most is the client.
//! - `unknown` (and RFC 7239's obfuscated `_names`, or a `Forwarded` element without `for=`):
//!   the proxy that wrote it did not know; the address is that proxy's own, the walk's last.
//! - No header, or an empty one: the trusted proxy's own address.
//! - Anything else the walk reaches that is not an address: the header is malformed, and the
//!   upgrade is refused (400), since a trusted proxy that writes nonsense is misconfigured.
//!
//! Entries may carry a port (`192.0.2.7:51234`, `[2001:db8::7]:51234`); most proxies write none
//! (HAProxy's `option forwardfor` does not), and the client's port is then unknown: 0.
//!
//! Only the header the listener names (`websocket_forwarded_header`) is read: a proxy that
//! writes `X-Forwarded-For` passes a client's own `Forwarded` through untouched, so believing
//! both would believe the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;

/// Which header a listener's trusted proxies write (`websocket_forwarded_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (HAProxy's `option forwardfor`, nginx's
    /// `$proxy_add_x_forwarded_for`, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lowercase.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl TryFrom<String> for ForwardedHeader {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(format!("unknown header {name:?}: expected \"X-Forwarded-For\" or \"Forwarded\"")),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XForwardedFor => "X-Forwarded-For",
            Self::Forwarded => "Forwarded",
        })
    }
}

/// A range of addresses in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address
/// (`127.0.0.1`, `::1`). Bits set past the prefix are refused, as they are a typo more often
/// than not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the range (an IPv4 address is not in an IPv6 range, and the other way
    /// round: [`TrustedProxies`] unmaps IPv4-mapped IPv6 addresses first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), 32, self.prefix) == u128::from(u32::from(network))
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => masked(u128::from(ip), 128, self.prefix) == u128::from(network),
            _ => false,
        }
    }
}

/// `bits` (an address of `width` bits) with everything past `prefix` cleared.
fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    bits.checked_shr(host_bits).and_then(|network| network.checked_shl(host_bits)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a range (\"10.0.0.0/8\", \"127.0.0.1\", \"::1\")"))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&prefix| prefix <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        let bits = match network {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        if masked(bits, width, prefix) != bits {
            return Err(format!("{text:?} has bits set past its /{prefix}: write the range's first address"));
        }
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose forwarded header a listener believes (`websocket_trusted_proxies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// The proxies in `ranges`.
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    /// Whether `ip` is a trusted proxy's. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how
    /// a socket bound to `::` sees an IPv4 peer) is taken as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.0.iter().any(|range| range.contains(ip))
    }
}

/// A trusted proxy's header that the walk cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub ForwardedHeader);

impl Malformed {
    /// Why, for the 400's body and the log.
    pub fn reason(self) -> &'static str {
        match self.0 {
            ForwardedHeader::XForwardedFor => "malformed X-Forwarded-For from a trusted proxy",
            ForwardedHeader::Forwarded => "malformed Forwarded from a trusted proxy",
        }
    }
}

/// The client's address for a request that `peer`, a trusted proxy, sent with `values`, the
/// values of every `header` line in order (the walk in the module's documentation).
pub fn client_address<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    header: ForwardedHeader,
    peer: SocketAddr,
    trusted: &TrustedProxies,
) -> Result<SocketAddr, Malformed> {
    let mut elements = Vec::new();
    for value in values {
        let value = std::str::from_utf8(value).map_err(|_| Malformed(header))?;
        elements.extend(split_unquoted(value, ',').into_iter().map(str::trim).filter(|element| !element.is_empty()));
    }
    let mut nearest = peer;
    for element in elements.into_iter().rev() {
        let hop = match header {
            ForwardedHeader::XForwardedFor => node(element),
            ForwardedHeader::Forwarded => forwarded_for(element),
        };
        match hop.ok_or(Malformed(header))? {
            Hop::Unknown => return Ok(nearest),
            Hop::Address(address) if trusted.contains(address.ip()) => nearest = address,
            Hop::Address(address) => return Ok(address),
        }
    }
    Ok(nearest)
}

/// One entry of the list.
enum Hop {
    Address(SocketAddr),
    /// `unknown`, or an obfuscated name: the proxy that wrote it did not know or would not say.
    Unknown,
}

/// An entry: an address with or without a port, `unknown`, or an RFC 7239 obfuscated name
/// (`_hidden`); `None` for anything else.
fn node(text: &str) -> Option<Hop> {
    if text.eq_ignore_ascii_case("unknown") || text.starts_with('_') {
        return Some(Hop::Unknown);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(Hop::Address(address));
    }
    // An obfuscated port (RFC 7239 section 6.3): the address, its port unknown.
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.starts_with('_') && (host.starts_with('[') || !host.contains(':')) => host,
        _ => text,
    };
    let bare = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    bare.parse::<IpAddr>().ok().map(|ip| Hop::Address(SocketAddr::new(ip, 0)))
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.7;proto=https;by=...`): its node, or
/// [`Hop::Unknown`] when it has none.
fn forwarded_for(element: &str) -> Option<Hop> {
    for pair in split_unquoted(element, ';') {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            return node(&unquote(value.trim())?);
        }
    }
    Some(Hop::Unknown)
}

/// A token as it is, or a quoted string's content with its escapes undone; `None` for a quote
/// that does not close.
fn unquote(value: &str) -> Option<String> {
    let Some(quoted) = value.strip_prefix('"') else { return Some(value.to_owned()) };
    let quoted = quoted.strip_suffix('"')?;
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        text.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(text)
}

/// `text` split at every `separator` outside a quoted string.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|range| range.parse().expect("a range")).collect())
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    /// The walk over `lines` (X-Forwarded-For) from the proxy at 10.0.0.1:40000.
    fn xff(lines: &[&str]) -> Result<SocketAddr, Malformed> {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        client_address(
            lines.iter().map(|line| line.as_bytes()),
            ForwardedHeader::XForwardedFor,
            addr("10.0.0.1:40000"),
            &proxies,
        )
    }

    fn forwarded(lines: &[&str]) -> Result<SocketAddr, Malformed> {
        let proxies = trusted(&["10.0.0.0/8"]);
        client_address(
            lines.iter().map(|line| line.as_bytes()),
            ForwardedHeader::Forwarded,
            addr("10.0.0.1:40000"),
            &proxies,
        )
    }

    #[test]
    fn ranges_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()), "mapped addresses: TrustedProxies' job");
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::7".parse().unwrap()) && !v6.contains("2001:db9::".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.7".parse().unwrap()));
        let all6: IpNet = "::/0".parse().unwrap();
        assert!(all6.contains("2001:db8::1".parse().unwrap()));
        for (text, problem) in [
            ("10.0.0.1/8", "has bits set past its /8"),
            ("10.0.0.0/33", "the prefix length must be 0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("localhost", "is not an address or a range"),
            ("10.0.0.0/8/8", "prefix length"),
        ] {
            let error = text.parse::<IpNet>().unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
        assert!(trusted(&["10.0.0.0/8"]).contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped");
    }

    #[test]
    fn the_client_is_the_right_most_address_that_is_not_a_trusted_proxy() {
        assert_eq!(xff(&["203.0.113.7"]), Ok(addr("203.0.113.7:0")));
        // What the client wrote itself, left of it, is not read, however it is spelt.
        assert_eq!(xff(&["6.6.6.6, not an address, 203.0.113.7, 10.0.0.2"]), Ok(addr("203.0.113.7:0")));
        // Several lines are one list, in order.
        assert_eq!(xff(&["6.6.6.6", "203.0.113.7", "10.0.0.2, 127.0.0.1"]), Ok(addr("203.0.113.7:0")));
        // Every address trusted: the left-most.
        assert_eq!(xff(&["10.0.0.3, 10.0.0.2"]), Ok(addr("10.0.0.3:0")));
        // None, or nothing in it: the proxy's own.
        assert_eq!(xff(&[]), Ok(addr("10.0.0.1:40000")));
        assert_eq!(xff(&[" , "]), Ok(addr("10.0.0.1:40000")));
        // Ports and IPv6, as proxies write them.
        assert_eq!(xff(&["203.0.113.7:51234"]), Ok(addr("203.0.113.7:51234")));
        assert_eq!(xff(&["2001:db8::7"]), Ok(addr("[2001:db8::7]:0")));
        assert_eq!(xff(&["[2001:db8::7]:51234"]), Ok(addr("[2001:db8::7]:51234")));
        assert_eq!(xff(&["[2001:db8::7]"]), Ok(addr("[2001:db8::7]:0")));
    }

    #[test]
    fn unknown_ends_the_walk_at_the_proxy_that_wrote_it() {
        assert_eq!(xff(&["203.0.113.7, unknown"]), Ok(addr("10.0.0.1:40000")));
        assert_eq!(xff(&["203.0.113.7, unknown, 10.0.0.2"]), Ok(addr("10.0.0.2:0")));
    }

    #[test]
    fn what_a_trusted_proxy_wrote_must_be_addresses() {
        for line in ["203.0.113", "203.0.113.7 10.0.0.2", "example.com", "203.0.113.7:port", "[2001:db8::7"] {
            assert_eq!(xff(&[line]), Err(Malformed(ForwardedHeader::XForwardedFor)), "{line}");
        }
        assert_eq!(xff(&["203.0.113.7, 10.0.0.2;"]), Err(Malformed(ForwardedHeader::XForwardedFor)));
        let invalid_utf8: &[u8] = b"203.0.113.7\xff";
        let proxies = trusted(&["10.0.0.0/8"]);
        let walked =
            client_address([invalid_utf8].into_iter(), ForwardedHeader::XForwardedFor, addr("10.0.0.1:1"), &proxies);
        assert_eq!(walked, Err(Malformed(ForwardedHeader::XForwardedFor)));
        assert_eq!(
            Malformed(ForwardedHeader::XForwardedFor).reason(),
            "malformed X-Forwarded-For from a trusted proxy"
        );
    }

    /// RFC 7239's own examples (sections 4, 6 and 7.1).
    #[test]
    fn forwarded_for_is_read_as_rfc_7239_writes_it() {
        assert_eq!(forwarded(&["for=\"_gazonk\""]), Ok(addr("10.0.0.1:40000")));
        assert_eq!(forwarded(&["For=\"[2001:db8:cafe::17]:4711\""]), Ok(addr("[2001:db8:cafe::17]:4711")));
        assert_eq!(forwarded(&["for=192.0.2.60;proto=http;by=203.0.113.43"]), Ok(addr("192.0.2.60:0")));
        assert_eq!(forwarded(&["for=192.0.2.43, for=198.51.100.17"]), Ok(addr("198.51.100.17:0")));
        assert_eq!(forwarded(&["for=192.0.2.43, for=10.0.0.2;by=10.0.0.1"]), Ok(addr("192.0.2.43:0")));
        assert_eq!(forwarded(&["for=unknown, for=10.0.0.2"]), Ok(addr("10.0.0.2:0")));
        assert_eq!(forwarded(&["for=192.0.2.43:_port"]), Ok(addr("192.0.2.43:0")));
        // A quoted comma is not a separator; an element without for= is a proxy that did not say.
        assert_eq!(forwarded(&["for=192.0.2.43;host=\"a,b\""]), Ok(addr("192.0.2.43:0")));
        assert_eq!(forwarded(&["for=192.0.2.43, proto=https"]), Ok(addr("10.0.0.1:40000")));
        for line in ["for=\"192.0.2.43", "for=example.com", "for"] {
            assert_eq!(forwarded(&[line]), Err(Malformed(ForwardedHeader::Forwarded)), "{line}");
        }
    }

    #[test]
    fn header_names_parse_in_any_case() {
        assert_eq!(ForwardedHeader::try_from("x-forwarded-for".to_owned()), Ok(ForwardedHeader::XForwardedFor));
        assert_eq!(ForwardedHeader::try_from("Forwarded".to_owned()), Ok(ForwardedHeader::Forwarded));
        assert!(ForwardedHeader::try_from("X-Real-IP".to_owned()).unwrap_err().contains("\"X-Forwarded-For\""));
    }
}
