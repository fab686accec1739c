//! A listener's `bind` address: a string in the config, checked when the config is read and
//! resolved when the listener starts.
//!
//! The forms are mosquitto's `listener PORT [HOST]` written as one string:
//!
//! | `bind` | listens on |
//! |---|---|
//! | `"0.0.0.0:1884"`, `"[::1]:1884"` | that address and port |
//! | `"0.0.0.0"`, `"::"`, `"::1"`, `"[::1]"` | that address, port 1883 (mosquitto's default) |
//! | `"localhost:1884"`, `"broker.lan"` | every address the name resolves to, at start |
//!
//! An IPv6 address with a port needs brackets: `"::1:1884"` is the address `::1:1884` on port
//! 1883. A name is resolved once, when the listener starts; it binds one socket per address it
//! resolves to, as mosquitto does with what getaddrinfo returns, so `"localhost"` listens on
//! both 127.0.0.1 and ::1 where it names both. Every one of them must bind, or the listener does
//! not start. With port 0 the first address picks a free port and the others use the same one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// The port a `bind` without one listens on: MQTT's registered port, mosquitto's default.
pub const DEFAULT_PORT: u16 = 1883;

/// Where a listener listens, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BindAddr {
    /// The text as written, for messages.
    text: String,
    host: Host,
    port: u16,
    /// Whether the text gave the port (a WebSocket listener must: it has no default).
    port_given: bool,
}

/// The host part of a [`BindAddr`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// A host name, resolved at start.
    Name(String),
}

/// Why a `bind` string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bind = {text:?}: {problem}")]
pub struct InvalidBind {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl BindAddr {
    /// Parses one of the forms in the module documentation.
    pub fn parse(text: &str) -> Result<Self, InvalidBind> {
        let fail = |problem| Err(InvalidBind { text: text.to_owned(), problem });
        let bind = |host, port: Option<u16>| {
            Ok(Self { text: text.to_owned(), host, port: port.unwrap_or(DEFAULT_PORT), port_given: port.is_some() })
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return bind(Host::Ip(addr.ip()), Some(addr.port()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return bind(Host::Ip(ip), None);
        }
        if let Some(inner) = text.strip_prefix('[') {
            return match inner.strip_suffix(']').map(str::parse::<std::net::Ipv6Addr>) {
                Some(Ok(ip)) => bind(Host::Ip(IpAddr::V6(ip)), None),
                _ => fail("expected [IPV6] or [IPV6]:PORT, with a port from 0 to 65535"),
            };
        }
        let (name, port) = match text.split_once(':') {
            None => (text, None),
            Some((_, port)) if port.contains(':') => {
                return fail("an IPv6 address with a port is written in brackets: [::1]:1883")
            }
            Some((name, port)) => match port.parse::<u16>() {
                Ok(port) => (name, Some(port)),
                Err(_) => return fail("the port must be a number from 0 to 65535"),
            },
        };
        if !is_host_name(name) {
            return fail("expected ADDRESS, ADDRESS:PORT, NAME or NAME:PORT (e.g. \"0.0.0.0:1883\", \"localhost\")");
        }
        bind(Host::Name(name.to_owned()), port)
    }

    /// The address, when the text gives one rather than a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) => Some(ip),
            Host::Name(_) => None,
        }
    }

    /// The port (0: any free port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the text gave the port, rather than leaving it to [`DEFAULT_PORT`].
    pub fn port_given(&self) -> bool {
        self.port_given
    }

    /// The same address with `port` in place of [`DEFAULT_PORT`] when the text names no port:
    /// the default of a listener whose protocol has a port of its own (MQTT-SN's 1884).
    pub fn with_default_port(mut self, port: u16) -> Self {
        if !self.port_given {
            self.port = port;
        }
        self
    }

    /// The addresses to bind: the address itself, or every address the name resolves to, in
    /// the resolver's order and without repeats.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => name,
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in tokio::net::lookup_host((name.as_str(), self.port)).await? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} resolves to no address")));
        }
        Ok(addrs)
    }
}

impl TryFrom<String> for BindAddr {
    type Error = InvalidBind;

    fn try_from(text: String) -> Result<Self, InvalidBind> {
        Self::parse(&text)
    }
}

impl From<SocketAddr> for BindAddr {
    fn from(addr: SocketAddr) -> Self {
        Self { text: addr.to_string(), host: Host::Ip(addr.ip()), port: addr.port(), port_given: true }
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A DNS name as RFC 1123 allows it (letters, digits, hyphens, dots; at most 253 bytes), plus
/// `_`, which resolvers accept in local names.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Host {
        Host::Ip(text.parse().unwrap())
    }

    fn name(text: &str) -> Host {
        Host::Name(text.to_owned())
    }

    #[test]
    fn addresses_names_and_default_ports() {
        let cases = [
            ("0.0.0.0:1884", ip("0.0.0.0"), 1884),
            ("127.0.0.1:0", ip("127.0.0.1"), 0),
            ("0.0.0.0", ip("0.0.0.0"), 1883),
            ("::", ip("::"), 1883),
            ("::1", ip("::1"), 1883),
            ("[::1]", ip("::1"), 1883),
            ("[::1]:1884", ip("::1"), 1884),
            ("::1:1884", ip("::1:1884"), 1883),
            ("localhost", name("localhost"), 1883),
            ("localhost:1884", name("localhost"), 1884),
            ("broker.example.com:8883", name("broker.example.com"), 8883),
            ("my_host:0", name("my_host"), 0),
        ];
        for (text, host, port) in cases {
            let bind = BindAddr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((&bind.host, bind.port), (&host, port), "{text}");
            assert_eq!(bind.port_given(), text.contains("]:") || text.matches(':').count() == 1, "{text}");
            assert_eq!(bind.to_string(), text);
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_text() {
        for text in [
            "",
            "nonsense here",
            "localhost:",
            "localhost:http",
            "host:65536",
            ":1883",
            "[::1",
            "[::1]:",
            "[1.2.3.4]",
            "a..b",
            "-a",
        ] {
            let err = BindAddr::parse(text).unwrap_err();
            assert!(err.to_string().starts_with(&format!("bind = {text:?}: ")), "{err}");
        }
        let err = BindAddr::parse("fe80::1:2:1884x").unwrap_err();
        assert!(err.problem.contains("brackets"), "{err}");
    }

    #[tokio::test]
    async fn an_address_resolves_to_itself_and_a_name_to_its_addresses() {
        let bind = BindAddr::parse("127.0.0.1:1884").unwrap();
        assert_eq!(bind.resolve().await.unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 1884))]);
        let addrs = BindAddr::parse("localhost:1884").unwrap().resolve().await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 1884), "{addrs:?}");
        assert!(BindAddr::parse("no-such-host.invalid").unwrap().resolve().await.is_err());
    }

    #[test]
    fn a_protocol_default_port_replaces_1883_only_where_no_port_is_written() {
        for (text, port) in [("0.0.0.0", 1884), ("[::1]", 1884), ("localhost", 1884), ("0.0.0.0:1883", 1883)] {
            let bind = BindAddr::parse(text).unwrap().with_default_port(1884);
            assert_eq!(bind.port, port, "{text}");
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(BindAddr::from(addr).with_default_port(1884).port, 0);
    }
}
