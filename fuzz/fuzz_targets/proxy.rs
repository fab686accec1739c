//! Feeds arbitrary bytes to what reads a connection's first bytes behind a proxy: the PROXY
//! protocol header parser (`midge_server::proxy_header::parse`, as v1 and as v2), and the walk
//! of a trusted proxy's `X-Forwarded-For` / `Forwarded` lines (the input's lines, up to a NUL)
//! and address ranges as `websocket_trusted_proxies` gives them.
//!
//! Required: no panic; a whole header is no longer than the input or its version's bound, and
//! parses the same on its own; every shorter prefix of it is incomplete, never refused (a header
//! split across reads is judged whole); a refusal stays a refusal whatever follows; an
//! incomplete input is shorter than the bound; a range that parses prints as text that parses
//! back to it.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use midge_server::limits::{PROXY_V1_MAX_HEADER, PROXY_V2_MAX_HEADER};
use midge_server::proxy_header::{parse, ProxyVersion};
use midge_server::transport::websocket::forwarded::{client_address, ForwardedHeader, IpNet, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    for (version, bound) in [(ProxyVersion::V1, PROXY_V1_MAX_HEADER), (ProxyVersion::V2, PROXY_V2_MAX_HEADER)] {
        header(data, version, bound);
    }
    let (lines, rest) = match data.iter().position(|&byte| byte == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
    let peer: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    for kind in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let walked = client_address(lines.split(|&byte| byte == b'\n'), kind, peer, &trusted);
        if std::env::var_os("MIDGE_FUZZ_TRACE").is_some() {
            eprintln!("{kind}: {walked:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(range) = text.parse::<IpNet>() {
            let printed = range.to_string();
            assert_eq!(printed.parse::<IpNet>(), Ok(range), "{text:?} printed as {printed:?}");
        }
    }
});

fn header(data: &[u8], version: ProxyVersion, bound: usize) {
    let parsed = parse(data, version);
    if std::env::var_os("MIDGE_FUZZ_TRACE").is_some() {
        eprintln!("{version:?}: {parsed:?}");
    }
    match parsed {
        Ok(Some(header)) => {
            assert!(header.len <= data.len() && header.len <= bound, "{header:?} from {} bytes", data.len());
            assert_eq!(parse(&data[..header.len], version), Ok(Some(header)), "the header alone");
            for end in 0..header.len {
                assert_eq!(parse(&data[..end], version), Ok(None), "a prefix of {end} bytes of {header:?}");
            }
        }
        Ok(None) => assert!(data.len() < bound, "incomplete at {} bytes", data.len()),
        Err(error) => {
            let longer = [data, b"\r\n\r\n\0\r\nQUIT\n PROXY \r\n"].concat();
            assert!(parse(&longer, version).is_err(), "{error} became acceptable with more bytes");
        }
    }
}
