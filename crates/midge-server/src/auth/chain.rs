//! Several authentication backends on one listener, tried in turn (mosquitto's plugins chain
//! the same way): the first that allows the client decides; when none does, the first refusal
//! is the answer. A client that presents no credentials at all is anonymous, and the listener's
//! `allow_anonymous` decides for it without asking any backend.

use std::sync::Arc;

use midge_broker::ports::auth::{AnonymousOnly, Authenticator, Credentials, Decision, Verdict};

/// The backends of a listener, in order.
#[derive(Debug)]
pub struct Chain {
    /// For clients without a user name or password.
    pub anonymous: AnonymousOnly,
    /// Tried in order for every other client.
    pub backends: Vec<Arc<dyn Authenticator>>,
}

impl Authenticator for Chain {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
        if credentials.username.is_none() && credentials.password.is_none() {
            return self.anonymous.authenticate(credentials);
        }
        let mut first_refusal = None;
        let mut pending = Vec::new();
        for backend in &self.backends {
            match backend.authenticate(credentials) {
                Decision::Now(Verdict::Allow(identity)) if pending.is_empty() => {
                    return Decision::Now(Verdict::Allow(identity));
                }
                Decision::Now(refusal @ Verdict::Deny { .. }) if pending.is_empty() => {
                    first_refusal.get_or_insert(refusal);
                }
                // From the first backend that answers later on, the rest are awaited in order.
                decision => pending.push(decision),
            }
        }
        let no_backend = || Verdict::Deny {
            reason: midge_codec::ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            detail: "no authentication backend knows this client".into(),
        };
        if pending.is_empty() {
            return Decision::Now(first_refusal.unwrap_or_else(no_backend));
        }
        Decision::Later(Box::pin(async move {
            let mut refusal = first_refusal;
            for decision in pending {
                let verdict = match decision {
                    Decision::Now(verdict) => verdict,
                    Decision::Later(later) => later.await,
                };
                match verdict {
                    allowed @ Verdict::Allow(_) => return allowed,
                    denied => {
                        refusal.get_or_insert(denied);
                    }
                }
            }
            refusal.unwrap_or_else(no_backend)
        }))
    }
}
