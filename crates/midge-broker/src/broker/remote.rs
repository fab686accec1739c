//! Remote routing targets (see [`crate::ports::remote`]): registering one, and its
//! subscriptions in the router beside local sessions'.

use std::sync::Arc;

use midge_codec::{ReasonCode, SubscriptionOptions, TopicFilter};

use super::state::Broker;
use crate::ports::remote::RemoteTarget;
use crate::route::shared::parse_shared;
use crate::route::subscriber::{Remote, Subscriber, Target};

impl Broker {
    /// Registers a routing target that is not a local session; subscribe it with
    /// [`Broker::subscribe_remote`].
    pub fn remote_target(&self, target: Box<dyn RemoteTarget>) -> Arc<Remote> {
        Arc::new(Remote { key: self.next_id(), target })
    }

    /// Subscribes `remote` to `filter` (a `$share/{group}/` filter makes it a member of that
    /// group). Subscribing again replaces the options. Retained messages are not sent: the
    /// remote side has its own.
    pub fn subscribe_remote(
        &self,
        remote: &Arc<Remote>,
        filter: &TopicFilter,
        options: SubscriptionOptions,
    ) -> ReasonCode {
        let Ok(shared) = parse_shared(filter) else { return ReasonCode::TOPIC_FILTER_INVALID };
        let subscriber = Subscriber {
            target: Target::Remote(Arc::clone(remote)),
            options,
            id: None,
            shared: shared.map(|_| Arc::from(filter.as_str())),
        };
        self.router.write().subscribe(filter, remote.key, subscriber);
        ReasonCode(options.qos.as_u8())
    }

    /// Removes `remote`'s subscription to `filter`; returns whether it had one.
    pub fn unsubscribe_remote(&self, remote: &Arc<Remote>, filter: &TopicFilter) -> bool {
        self.router.write().unsubscribe(filter, &remote.key).is_some()
    }
}
