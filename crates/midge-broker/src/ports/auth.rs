//! The authentication port: who a connecting client is, decided before its CONNACK.
//!
//! Connecting takes two steps (see [`crate::ConnectRequest`]): the broker first checks the
//! CONNECT against the protocol and its limits, then an [`Authenticator`] decides on the
//! client's [`Credentials`]. The decision may come at once ([`Decision::Now`]) or later
//! ([`Decision::Later`]: a password hash computed off the runtime's worker threads, an HTTP
//! call); the server waits for it, within the connect timeout, before it answers. The verdict
//! carries the [`Identity`] that authorization later asks about.
//!
//! [`AnonymousOnly`] is the first implementation: today's rule of `allow_anonymous` with no
//! password file. Password files, HTTP and JWT backends implement the same trait.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use midge_codec::ReasonCode;

pub use super::access::{Grants, Identity};

/// What a client presents when it connects.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The client identifier (assigned by the broker when the client sent none).
    pub client_id: &'a str,
    /// The User Name, if any.
    pub username: Option<&'a str>,
    /// The Password, if any.
    pub password: Option<&'a [u8]>,
    /// The peer's address, for logs and address-based rules.
    pub peer: &'a str,
    /// The subject of the certificate the client presented over TLS (RFC 2253, as OpenSSL
    /// prints it), verified in the handshake; `None` without one.
    pub certificate_subject: Option<&'a str>,
}

/// An authenticator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The client may connect, as this identity.
    Allow(Identity),
    /// The client is refused with `reason` (CONNACK; 3.x clients get the matching return code).
    Deny {
        /// The CONNACK reason code: Not Authorized (0x87) or Bad User Name or Password (0x86).
        reason: ReasonCode,
        /// Why, for the log and the v5 Reason String.
        detail: Cow<'static, str>,
    },
}

/// A verdict now, or one that is still being worked out.
pub enum Decision {
    /// Decided.
    Now(Verdict),
    /// To be decided: the server awaits this within the connect timeout.
    Later(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Now(verdict) => f.debug_tuple("Now").field(verdict).finish(),
            Decision::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// Decides whether a client may connect, and as whom.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Decides on `credentials`. Must not block: slow work belongs in [`Decision::Later`].
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision;
}

/// Today's rule: anonymous clients are let in where `allow_anonymous` is set, and nobody else is
/// (there is no password file yet), as mosquitto 2 does without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousOnly {
    /// Whether clients may connect without a user name (or, with it set, with any).
    pub allow_anonymous: bool,
}

impl Authenticator for AnonymousOnly {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
        let verdict = match (credentials.username, self.allow_anonymous) {
            (username, true) => Verdict::Allow(Identity { username: username.map(Arc::from), grants: None }),
            (None, false) => Verdict::Deny {
                reason: ReasonCode::NOT_AUTHORIZED,
                detail: "anonymous clients are not allowed on this listener".into(),
            },
            (Some(_), false) => Verdict::Deny {
                reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                detail: "no password file is configured".into(),
            },
        };
        Decision::Now(verdict)
    }
}
