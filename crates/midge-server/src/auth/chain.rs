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

#[cfg(test)]
mod tests {
    use midge_broker::ports::auth::Identity;
    use midge_codec::ReasonCode;

    use super::*;

    /// Allows `user` (now or later), refuses everyone else with `reason`.
    #[derive(Debug)]
    struct One {
        user: &'static str,
        later: bool,
        reason: ReasonCode,
    }

    impl Authenticator for One {
        fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
            let verdict = if credentials.username == Some(self.user) {
                Verdict::Allow(Identity { username: Some(Arc::from(self.user)), grants: None })
            } else {
                Verdict::Deny { reason: self.reason, detail: "not mine".into() }
            };
            if self.later {
                Decision::Later(Box::pin(async move { verdict }))
            } else {
                Decision::Now(verdict)
            }
        }
    }

    fn chain(allow_anonymous: bool) -> Chain {
        Chain {
            anonymous: AnonymousOnly { allow_anonymous },
            backends: vec![
                Arc::new(One { user: "now", later: false, reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD }),
                Arc::new(One { user: "later", later: true, reason: ReasonCode::NOT_AUTHORIZED }),
            ],
        }
    }

    fn verdict(chain: &Chain, username: Option<&str>) -> Verdict {
        let credentials =
            Credentials { client_id: "c", username, password: None, peer: "p", certificate_subject: None };
        match chain.authenticate(&credentials) {
            Decision::Now(verdict) => verdict,
            Decision::Later(later) => {
                tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(later)
            }
        }
    }

    fn allowed(verdict: &Verdict) -> Option<&str> {
        match verdict {
            Verdict::Allow(identity) => identity.username.as_deref(),
            Verdict::Deny { .. } => None,
        }
    }

    #[test]
    fn the_first_backend_that_allows_decides_now_or_later() {
        assert_eq!(allowed(&verdict(&chain(false), Some("now"))), Some("now"));
        assert_eq!(allowed(&verdict(&chain(false), Some("later"))), Some("later"), "awaited after a refusal");
    }

    #[test]
    fn when_none_allows_the_first_refusal_is_the_answer() {
        match verdict(&chain(true), Some("stranger")) {
            Verdict::Deny { reason, .. } => assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            Verdict::Allow(_) => panic!("a stranger was let in"),
        }
    }

    #[test]
    fn a_client_without_credentials_is_anonymous() {
        assert!(matches!(verdict(&chain(false), None), Verdict::Deny { .. }));
        assert!(matches!(verdict(&chain(true), None), Verdict::Allow(_)));
    }
}
