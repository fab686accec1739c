//! What the crate's unit tests share.

use std::error::Error;

/// The error and its causes as `midge serve` prints them (anyhow's `{:#}`), to check that each
/// cause is printed once.
pub(crate) fn report(error: &dyn Error) -> String {
    crate::error_chain(error)
}

/// A listener's context for a connection under test (anonymous clients allowed, no ACL, no
/// store), and the shutdown sender that must outlive it.
pub(crate) fn listener_context() -> (crate::conn::ListenerContext, tokio::sync::watch::Sender<bool>) {
    let (sender, shutdown) = tokio::sync::watch::channel(false);
    let context = crate::conn::ListenerContext {
        broker: midge_broker::Broker::new(midge_broker::Limits::default()),
        authenticator: std::sync::Arc::new(midge_broker::ports::auth::AnonymousOnly { allow_anonymous: true }),
        authorizer: None,
        store: None,
        shutdown,
        roster: Default::default(),
        use_username_as_clientid: false,
        cluster: None,
    };
    (context, sender)
}
