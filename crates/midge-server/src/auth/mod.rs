//! A listener's security: who may connect through it and what its clients may do, built from
//! its settings as the core's authentication and authorization ports (docs/architecture.md,
//! "Ports").
//!
//! Each listener has its own (mosquitto's `per_listener_settings true`): [`ListenerSecurity`] is
//! loaded when the listener is bound, so a bad file stops the start with an error naming the
//! file, before anything else is opened.

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

/// Who may connect (mosquitto 2's rules): with a `password_file`, clients with a user name and
/// its password, and anonymous clients where `allow_anonymous` is set; without one, anonymous
/// clients where `allow_anonymous` is set and nobody else. The file is read now, once: it is
/// read again only when the listener is bound again (no reload on SIGHUP yet).
fn authenticator(config: &ListenerConfig) -> Result<Arc<dyn Authenticator>, SecurityError> {
    match &config.password_file {
        Some(path) => {
            let file = PasswordFile::load(path)?;
            tracing::info!(bind = %config.bind, password_file = %path.display(), users = file.len(), "password file loaded");
            Ok(Arc::new(PasswordFileAuthenticator::new(file, config.allow_anonymous)))
        }
        None => Ok(Arc::new(AnonymousOnly { allow_anonymous: config.allow_anonymous })),
    }
}

/// What clients may do: everything, without an ACL file.
fn authorizer(_config: &ListenerConfig) -> Result<Option<Arc<dyn Authorizer>>, SecurityError> {
    Ok(None)
}
