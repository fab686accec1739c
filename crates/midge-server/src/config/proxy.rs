//! The keys of a listener behind a proxy (docs/security.md, "Behind a proxy"):
//! `enable_proxy_protocol` on TCP listeners, `websocket_trusted_proxies` and
//! `websocket_forwarded_header` on WebSocket ones (the latter two are refused on other
//! listeners with the other `websocket_*` keys, by [`ListenerConfig::check`]).

use super::{ListenerConfig, ListenerProtocol};

/// Checks what the types cannot; returns what is wrong, naming the key.
pub(super) fn check(listener: &ListenerConfig) -> Result<(), String> {
    if listener.protocol == ListenerProtocol::MqttSn && listener.enable_proxy_protocol.is_some() {
        return Err("enable_proxy_protocol is a key of TCP listeners (mqtt, websockets): an mqtt-sn listener \
                    is UDP, which has no stream for the header to start"
            .to_owned());
    }
    match (&listener.websocket_trusted_proxies, listener.websocket_forwarded_header) {
        (Some(proxies), _) if proxies.is_empty() => Err("websocket_trusted_proxies = []: no proxy would be \
                                                           trusted; leave the key out to ignore forwarded headers"
            .to_owned()),
        (None, Some(header)) => Err(format!(
            "websocket_forwarded_header = \"{header}\" without websocket_trusted_proxies: no proxy's header would \
             be believed; list the proxies that write it"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::ServerConfig;
    use crate::proxy_header::ProxyVersion;
    use crate::transport::websocket::forwarded::ForwardedHeader;

    fn parse(listener: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(&format!("[[listener]]\n{listener}\n"), Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn enable_proxy_protocol_is_1_or_2_as_in_mosquitto() {
        let config = parse("bind = \"0.0.0.0\"\nenable_proxy_protocol = 2").expect("valid");
        assert_eq!(config.listener[0].enable_proxy_protocol, Some(ProxyVersion::V2));
        let config = parse("bind = \"0.0.0.0:9001\"\nprotocol = \"websockets\"\nenable_proxy_protocol = 1");
        assert_eq!(config.expect("valid").listener[0].enable_proxy_protocol, Some(ProxyVersion::V1));
        assert_eq!(parse("bind = \"0.0.0.0\"").expect("valid").listener[0].enable_proxy_protocol, None);
        for (value, expected) in [
            ("0", "enable_proxy_protocol = 0: use 1 (PROXY protocol v1, text) or 2 (v2, binary)"),
            ("3", "enable_proxy_protocol = 3: use 1"),
            ("true", "enable_proxy_protocol"),
        ] {
            let error = parse(&format!("bind = \"0.0.0.0\"\nenable_proxy_protocol = {value}")).unwrap_err();
            assert!(error.contains("p.toml") && error.contains(expected), "{value}: {error}");
        }
        let error = parse("bind = \"0.0.0.0\"\nprotocol = \"mqtt-sn\"\nenable_proxy_protocol = 2").unwrap_err();
        assert!(error.contains("listener 1: enable_proxy_protocol is a key of TCP listeners"), "{error}");
    }

    #[test]
    fn trusted_proxies_are_ranges_on_websocket_listeners() {
        let websockets = "bind = \"0.0.0.0:9001\"\nprotocol = \"websockets\"\n";
        let config =
            parse(&format!("{websockets}websocket_trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]"))
                .expect("valid");
        let listener = &config.listener[0];
        let ranges: Vec<String> =
            listener.websocket_trusted_proxies.iter().flatten().map(ToString::to_string).collect();
        assert_eq!(ranges, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert_eq!(listener.websocket_forwarded_header, None, "X-Forwarded-For by default");
        let config = parse(&format!(
            "{websockets}websocket_trusted_proxies = [\"10.0.0.0/8\"]\nwebsocket_forwarded_header = \"Forwarded\""
        ));
        assert_eq!(config.expect("valid").listener[0].websocket_forwarded_header, Some(ForwardedHeader::Forwarded));
        for (keys, expected) in [
            ("websocket_trusted_proxies = [\"10.0.0.1/8\"]", "has bits set past its /8"),
            ("websocket_trusted_proxies = [\"proxy.lan\"]", "is not an address or a range"),
            ("websocket_trusted_proxies = []", "websocket_trusted_proxies = []: no proxy would be trusted"),
            ("websocket_forwarded_header = \"Forwarded\"", "without websocket_trusted_proxies"),
            (
                "websocket_trusted_proxies = [\"10.0.0.0/8\"]\nwebsocket_forwarded_header = \"X-Real-IP\"",
                "unknown header \"X-Real-IP\"",
            ),
        ] {
            let error = parse(&format!("{websockets}{keys}")).unwrap_err();
            assert!(error.contains("p.toml") && error.contains(expected), "{keys}: {error}");
        }
        let error = parse("bind = \"0.0.0.0\"\nwebsocket_trusted_proxies = [\"10.0.0.0/8\"]").unwrap_err();
        assert!(
            error.contains("websocket_trusted_proxies is a setting of protocol = \"websockets\" listeners"),
            "{error}"
        );
    }
}
