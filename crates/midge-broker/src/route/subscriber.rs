//! What the router stores for each subscription, and the delivery it makes of a message.

use std::sync::Arc;

use midge_codec::SubscriptionOptions;

use crate::delivery::Queued;
use crate::message::Message;
use crate::session::Session;

/// One subscription as the router holds it.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// The session it delivers to.
    pub(crate) session: Arc<Session>,
    /// Its options, with the QoS granted.
    pub(crate) options: SubscriptionOptions,
    /// Its v5 subscription identifier.
    pub(crate) id: Option<u32>,
    /// The full `$share/...` filter for shared subscriptions.
    pub(crate) shared: Option<Arc<str>>,
}

impl Subscriber {
    /// The delivery of `message` through this subscription.
    pub(crate) fn delivery(&self, message: &Arc<Message>) -> Queued {
        Queued {
            message: Arc::clone(message),
            qos: message.qos.min(self.options.qos),
            // MQTT-3.3.1-12/13: RETAIN is kept only with Retain As Published.
            retain: message.retain && self.options.retain_as_published,
            subscription_ids: self.id.into_iter().collect(),
            shared: self.shared.clone(),
        }
    }
}
