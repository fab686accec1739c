//! What the router stores for each subscription: where its messages go, and the delivery it
//! makes of a message.

use std::num::NonZeroU32;
use std::sync::Arc;

use midge_codec::SubscriptionOptions;

use crate::delivery::Queued;
use crate::message::Message;
use crate::ports::remote::RemoteTarget;
use crate::session::Session;

/// One subscription as the router holds it. 40 bytes, as before remote targets existed: the
/// subscription identifier's niche pays for the target's tag (see the test below).
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// Where its messages go.
    pub(crate) target: Target,
    /// Its options, with the QoS granted.
    pub(crate) options: SubscriptionOptions,
    /// Its v5 subscription identifier (never 0: MQTT-3.8.2.1.2 makes 0 a protocol error).
    pub(crate) id: Option<NonZeroU32>,
    /// The full `$share/...` filter for shared subscriptions.
    pub(crate) shared: Option<Arc<str>>,
}

/// Where a subscription's messages go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A session of this broker.
    Local(Arc<Session>),
    /// A routing target elsewhere (see [`crate::ports::remote`]).
    Remote(Arc<Remote>),
}

/// A registered remote target: its key in the router and where its messages go.
#[derive(Debug)]
pub struct Remote {
    /// The router's key for it, from the broker's id space (never a session's id).
    pub(crate) key: u64,
    pub(crate) target: Box<dyn RemoteTarget>,
}

impl Target {
    /// Whether messages sent there now reach a consumer: a local session with a connection, or
    /// a remote target (which keeps its own state). Shared groups prefer such members.
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Target::Local(session) => session.lock().is_attached(),
            Target::Remote(_) => true,
        }
    }
}

impl Subscriber {
    /// A subscription of a local session.
    pub(crate) fn local(
        session: Arc<Session>,
        options: SubscriptionOptions,
        id: Option<u32>,
        shared: Option<Arc<str>>,
    ) -> Self {
        Self { target: Target::Local(session), options, id: id.and_then(NonZeroU32::new), shared }
    }

    /// The delivery of `message` through this subscription.
    pub(crate) fn delivery(&self, message: &Arc<Message>) -> Queued {
        Queued {
            message: Arc::clone(message),
            qos: message.qos.min(self.options.qos),
            // MQTT-3.3.1-12/13: RETAIN is kept only with Retain As Published.
            retain: message.retain && self.options.retain_as_published,
            subscription_ids: self.id.map(NonZeroU32::get).into_iter().collect(),
            shared: self.shared.clone(),
            handed_on: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_costs_the_router_no_more_for_remote_targets() {
        // Target (16) + options (4) + Option<NonZeroU32> (4) + Option<Arc<str>> (16). It was
        // Arc<Session> (8) + options (4) + Option<u32> (8) + Option<Arc<str>> (16), padded: 40.
        assert_eq!(std::mem::size_of::<Subscriber>(), 40);
    }
}
