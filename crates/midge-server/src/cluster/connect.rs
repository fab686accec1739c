//! The NATS connections of a node, from `[cluster]`: names, credentials, TLS.

use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};

use super::ClusterError;
use crate::config::ClusterConfig;

/// How long the first connection may take before the start fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection is for, in its name (as the NATS monitoring pages show it).
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// Publishes this node's messages and receives others' for its unshared subscriptions,
    /// without its own back (no echo).
    Routes,
    /// Receives messages of shared groups, including this node's own: a group's member here
    /// may be the one NATS picks for a message published here.
    Shares,
}

/// Opens a connection to the cluster's NATS servers.
pub(super) async fn connect(
    config: &ClusterConfig,
    node: &str,
    role: Role,
) -> Result<async_nats::Client, ClusterError> {
    let addresses = config
        .urls
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>()
                .map_err(|error| ClusterError::Url { url: url.clone(), problem: error.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let suffix = match role {
        Role::Routes => "routes",
        Role::Shares => "shares",
    };
    let mut options = ConnectOptions::new()
        .name(format!("midge {node} {suffix}"))
        .connection_timeout(CONNECT_TIMEOUT)
        // Reconnect for ever: a node outlives its NATS servers' restarts.
        .max_reconnects(None)
        // A message is dropped (and counted by NATS as a slow consumer) only if this many wait
        // on one subscription: the node's router takes them as fast as it routes.
        .subscription_capacity(1 << 16);
    if matches!(role, Role::Routes) {
        options = options.no_echo();
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| ClusterError::Credentials { path: path.clone(), source })?;
    }
    if let Some(ca) = &config.ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options
        .connect(addresses)
        .await
        .map_err(|error| ClusterError::Connect { urls: config.urls.join(", "), problem: error.to_string() })
}
