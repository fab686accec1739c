//! A listener's security: who may connect through it and what its clients may do, built from
//! its settings as the core's authentication and authorization ports (docs/architecture.md,
//! "Ports").
//!
//! Each listener has its own (mosquitto's `per_listener_settings true`): [`ListenerSecurity`] is
//! loaded when the listener is bound, so a bad file stops the start with an error naming the
//! file, before anything else is opened.

pub mod acl_file;
pub mod chain;
pub mod http;
pub mod jwt;
pub mod password_file;

use std::sync::Arc;

use midge_broker::ports::access::Authorizer;
use midge_broker::ports::auth::{AnonymousOnly, Authenticator};

use crate::config::ListenerConfig;
use password_file::{PasswordFile, PasswordFileAuthenticator, PasswordFileError};

/// Why a listener's security settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The `acl_file` cannot be read or parsed (the message names the file and line).
    #[error(transparent)]
    AclFile(#[from] acl_file::AclFileError),
    /// `[listener.jwt]` cannot be used (the message names the file or the key).
    #[error(transparent)]
    Jwt(#[from] jwt::JwtError),
    /// `[listener.http_auth]` cannot be used (the message names the key).
    #[error(transparent)]
    HttpAuth(#[from] http::HttpAuthError),
    /// The listener's `password_file` cannot be read or has a line Midge cannot use; the
    /// message names the file (and the line).
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
}

/// What a listener's connections are checked against.
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    /// Who may connect.
    pub authenticator: Arc<dyn Authenticator>,
    /// What its clients may do; `None` allows everything and asks nothing.
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

impl ListenerSecurity {
    /// Builds the listener's security from its settings, reading the files they name.
    pub fn load(config: &ListenerConfig) -> Result<Self, SecurityError> {
        Ok(Self { authenticator: authenticator(config)?, authorizer: authorizer(config)? })
    }
}

/// Who may connect: the listener's backends in turn ([`chain::Chain`]: its `password_file`,
/// then its JWT settings, then its HTTP service); anonymous clients where `allow_anonymous` is set. Without any
/// backend, anonymous clients where `allow_anonymous` is set and nobody else (mosquitto 2's rule
/// without a password file). Files are read now, once: again only when the listener is bound
/// again by a reload (SIGHUP, [`crate::ListenerHandle::reload`]).
fn authenticator(config: &ListenerConfig) -> Result<Arc<dyn Authenticator>, SecurityError> {
    let anonymous = AnonymousOnly { allow_anonymous: config.allow_anonymous };
    let mut backends: Vec<Arc<dyn Authenticator>> = Vec::new();
    if let Some(path) = &config.password_file {
        let file = PasswordFile::load(path)?;
        tracing::info!(bind = %config.bind, password_file = %path.display(), users = file.len(), "password file loaded");
        backends.push(Arc::new(PasswordFileAuthenticator::new(file, config.allow_anonymous)));
    }
    if let Some(jwt) = &config.jwt {
        backends.push(Arc::new(jwt::JwtAuthenticator::load(jwt)?));
    }
    if let Some(http_auth) = &config.http_auth {
        backends.push(Arc::new(http::HttpAuthenticator::new(http_auth)?));
    }
    if backends.is_empty() {
        return Ok(Arc::new(anonymous));
    }
    Ok(Arc::new(chain::Chain { anonymous, backends }))
}

/// What clients may do: what the `acl_file` grants, or everything without one.
fn authorizer(config: &ListenerConfig) -> Result<Option<Arc<dyn Authorizer>>, SecurityError> {
    let Some(path) = &config.acl_file else { return Ok(None) };
    Ok(Some(Arc::new(acl_file::AclFile::load(path)?)))
}
