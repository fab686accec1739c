//! A node's place in a cluster (`[cluster]`; issue 17, decision 0010, docs/cluster.md): its
//! name, the NATS servers it joins and how it authenticates to them. Without the section the
//! broker is a single node and nothing of the cluster runs.

use std::path::PathBuf;

use serde::Deserialize;

/// The longest node name: it is part of NATS subjects and key-value keys.
const MAX_NODE_LEN: usize = 64;

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster: letters, digits, `-` and `_`. Default: the
    /// host's name (with anything else replaced by `_`).
    #[serde(default)]
    pub node: Option<String>,
    /// The NATS servers, `nats://host:port` (or `tls://`), any of which will do; the client
    /// moves to another when one fails. At least one.
    pub urls: Vec<String>,
    /// The first token of every subject and the name of the key-value buckets, so that several
    /// clusters can share one NATS system. Default `midge`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Copies JetStream keeps of the cluster's state (retained messages, session owners):
    /// 1, 3 or 5, at most the NATS cluster's size. Default 1; a cluster that must survive a
    /// NATS node wants 3.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// User name at the NATS servers (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password at the NATS servers.
    #[serde(default)]
    pub password: Option<String>,
    /// A token for the NATS servers (instead of a user name and password).
    #[serde(default)]
    pub token: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM file of the CA that signed the NATS servers' certificates; setting it requires TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's client certificate (PEM), with `key_file`, for servers that verify clients.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Seconds a node's lease lasts without being renewed: a node that cannot renew it within
    /// this long drops its clients (it may be cut off from the rest), and the others take its
    /// clients' wills as due. Default 20: it must outlast a third of itself (the renewal
    /// period) plus JetStream's leader election after the loss of a NATS server (its Raft
    /// election timeout is 4 to 9 seconds), or losing a NATS server fences every node.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Seconds before JetStream sends a persistent session's message again when the node that
    /// took it has not acknowledged it: how long a message in flight to a node that died waits
    /// before the node its client moved to gets it. Default 10.
    #[serde(default = "default_redelivery")]
    pub redelivery_secs: u64,
    /// The most bytes the stream of QoS 1/2 messages holds for persistent sessions (their
    /// offline queues, cluster-wide); when full, publishers wait. JetStream reserves it on
    /// each of `replicas` servers when the stream is created. Default 0: no limit but the
    /// servers' storage (a session's messages go when it ends or expires).
    #[serde(default)]
    pub stream_max_bytes: u64,
}

fn default_redelivery() -> u64 {
    10
}

fn default_prefix() -> String {
    "midge".to_owned()
}

fn default_replicas() -> usize {
    1
}

fn default_lease() -> u64 {
    20
}

impl ClusterConfig {
    /// The node's name: the configured one, or the host's.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            let host = crate::config::hostname();
            host.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .take(MAX_NODE_LEN)
                .collect()
        })
    }

    /// What the types cannot check; the problem names the key.
    pub(super) fn check(&self) -> Result<(), String> {
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_NODE_LEN
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if let Some(node) = &self.node {
            if !name_ok(node) {
                return Err(format!("node {node:?}: 1 to {MAX_NODE_LEN} letters, digits, '-' or '_'"));
            }
        }
        if !name_ok(&self.prefix) {
            return Err(format!("prefix {:?}: 1 to {MAX_NODE_LEN} letters, digits, '-' or '_'", self.prefix));
        }
        if self.urls.is_empty() {
            return Err("urls: at least one NATS server is needed".to_owned());
        }
        for url in &self.urls {
            let rest = ["nats://", "tls://"].iter().find_map(|scheme| url.strip_prefix(scheme));
            if rest.is_none_or(|rest| rest.is_empty()) {
                return Err(format!("urls: {url:?} is not nats://host:port or tls://host:port"));
            }
        }
        if ![1, 3, 5].contains(&self.replicas) {
            return Err(format!("replicas = {}: 1, 3 or 5", self.replicas));
        }
        if self.password.is_some() != self.user.is_some() {
            return Err("user and password go together".to_owned());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("cert_file and key_file go together".to_owned());
        }
        if self.lease_secs < 2 {
            return Err(format!("lease_secs = {}: at least 2", self.lease_secs));
        }
        if !(1..=3600).contains(&self.redelivery_secs) {
            return Err(format!("redelivery_secs = {}: 1 to 3600", self.redelivery_secs));
        }
        if self.stream_max_bytes != 0 && self.stream_max_bytes < 1 << 20 {
            return Err(format!(
                "stream_max_bytes = {}: 0 (no limit) or at least 1 MiB (1048576)",
                self.stream_max_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterConfig;

    fn parse(text: &str) -> Result<ClusterConfig, String> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check().map(|()| config)
    }

    #[test]
    fn a_minimal_section_takes_the_defaults() {
        let config = parse("urls = [\"nats://127.0.0.1:4222\"]\nnode = \"a\"").unwrap();
        assert_eq!(config.prefix, "midge");
        assert_eq!(config.replicas, 1);
        assert_eq!(config.lease_secs, 20);
        assert_eq!(config.redelivery_secs, 10);
        assert_eq!(config.stream_max_bytes, 0);
        assert_eq!(config.node_name(), "a");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (text, key) in [
            ("urls = []", "urls"),
            ("urls = [\"127.0.0.1:4222\"]", "urls"),
            ("urls = [\"nats://h:1\"]\nnode = \"a.b\"", "node"),
            ("urls = [\"nats://h:1\"]\nprefix = \"a b\"", "prefix"),
            ("urls = [\"nats://h:1\"]\nreplicas = 2", "replicas"),
            ("urls = [\"nats://h:1\"]\nuser = \"u\"", "user"),
            ("urls = [\"nats://h:1\"]\ncert_file = \"c\"", "cert_file"),
            ("urls = [\"nats://h:1\"]\nlease_secs = 1", "lease_secs"),
            ("urls = [\"nats://h:1\"]\nredelivery_secs = 0", "redelivery_secs"),
            ("urls = [\"nats://h:1\"]\nstream_max_bytes = 1000", "stream_max_bytes"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
        assert!(parse("urls = [\"nats://h:1\"]\nnodes = \"a\"").unwrap_err().contains("unknown field"));
    }
}
