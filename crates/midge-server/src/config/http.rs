//! The keys of an HTTP API listener (`protocol = "http"`, docs/http-api.md): checked when the
//! file is read; `http_tokens` and `metrics_anonymous` are refused on any other listener.

use super::{ListenerConfig, ListenerProtocol};

/// Checks what the types cannot; returns what is wrong, naming the key.
pub(super) fn check(listener: &ListenerConfig) -> Result<(), String> {
    if listener.protocol != ListenerProtocol::Http {
        if listener.http_tokens.is_some() {
            return Err(format!(
                "http_tokens is a setting of protocol = \"http\" listeners, and this one is \"{}\"",
                listener.protocol
            ));
        }
        if listener.metrics_anonymous {
            return Err(format!(
                "metrics_anonymous is a setting of protocol = \"http\" listeners, and this one is \"{}\"",
                listener.protocol
            ));
        }
        return Ok(());
    }
    if !listener.bind.port_given() {
        return Err(format!(
            "bind = \"{}\" has no port: an http listener has no default one (8080 and 8443 are common)",
            listener.bind
        ));
    }
    if listener.enable_proxy_protocol.is_some() {
        return Err("enable_proxy_protocol is not supported on an http listener yet".to_owned());
    }
    if listener.use_identity_as_username || listener.use_subject_as_username {
        return Err("use_identity_as_username and use_subject_as_username are not supported on an http \
                    listener yet: callers authenticate with a bearer token or Basic credentials"
            .to_owned());
    }
    if let Some(tokens) = &listener.http_tokens {
        let mut seen = std::collections::BTreeSet::new();
        for (user, token) in tokens {
            if token.trim().is_empty() || token.contains(char::is_whitespace) {
                return Err(format!("http_tokens: the token of {user:?} is empty or has spaces"));
            }
            if !seen.insert(token.as_str()) {
                return Err(format!("http_tokens: {user:?} has the token of another user: give each its own"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ListenerProtocol, ServerConfig};

    fn parse(listener: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(&format!("[[listener]]\n{listener}\n"), Path::new("h.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_http_listener_and_its_tokens() {
        let config =
            parse("protocol = \"http\"\nbind = \"127.0.0.1:8080\"\n[listener.http_tokens]\nops = \"s3cret\"").unwrap();
        let listener = &config.listener[0];
        assert_eq!(listener.protocol, ListenerProtocol::Http);
        assert_eq!(listener.http_tokens.as_ref().unwrap()["ops"], "s3cret");
        assert!(!listener.metrics_anonymous, "scrapes take a token unless the key says otherwise");
        let config = parse("protocol = \"http\"\nbind = \"127.0.0.1:8080\"\nmetrics_anonymous = true").unwrap();
        assert!(config.listener[0].metrics_anonymous);
    }

    #[test]
    fn wrong_keys_and_values_are_refused_naming_the_key() {
        for (listener, expected) in [
            (
                "bind = \"127.0.0.1:1883\"\n[listener.http_tokens]\nops = \"t\"",
                "http_tokens is a setting of protocol = \"http\" listeners, and this one is \"mqtt\"",
            ),
            (
                "bind = \"127.0.0.1:1883\"\nmetrics_anonymous = true",
                "metrics_anonymous is a setting of protocol = \"http\" listeners, and this one is \"mqtt\"",
            ),
            ("protocol = \"http\"\nbind = \"127.0.0.1\"", "has no port: an http listener has no default one"),
            ("protocol = \"http\"\nbind = \"127.0.0.1:80\"\nenable_proxy_protocol = 2", "enable_proxy_protocol"),
            ("protocol = \"http\"\nbind = \"127.0.0.1:80\"\nuse_identity_as_username = true", "not supported"),
            ("protocol = \"http\"\nbind = \"127.0.0.1:80\"\n[listener.http_tokens]\nops = \"\"", "is empty"),
            ("protocol = \"http\"\nbind = \"127.0.0.1:80\"\n[listener.http_tokens]\na = \"t\"\nb = \"t\"", "own"),
        ] {
            let error = parse(listener).unwrap_err();
            assert!(error.contains("h.toml") && error.contains(expected), "{listener}: {error}");
        }
    }
}
