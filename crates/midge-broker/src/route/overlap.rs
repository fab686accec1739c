//! Overlapping subscriptions: one delivery per session however many of its filters match.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::delivery::Queued;
use crate::session::Session;

/// The sessions a message is delivered to, with the delivery each gets.
pub(crate) type Targets = SmallVec<[(Arc<Session>, Queued); 8]>;

/// Merges deliveries to the same session through overlapping ordinary subscriptions into one,
/// at the highest granted QoS with every subscription identifier (MQTT-3.3.4-2,
/// MQTT-3.3.4-3 / 3.1.1 MQTT-3.3.5-1).
pub(crate) fn merge_overlapping(targets: &mut Targets) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_by_key(|(session, item)| (session.id(), item.shared.is_some()));
    let mut merged = Targets::with_capacity(targets.len());
    for (session, item) in targets.drain(..) {
        if let Some((last_session, last)) = merged.last_mut() {
            if last_session.id() == session.id() && last.shared.is_none() && item.shared.is_none() {
                last.qos = last.qos.max(item.qos);
                last.retain |= item.retain;
                last.subscription_ids.extend(item.subscription_ids);
                continue;
            }
        }
        merged.push((session, item));
    }
    *targets = merged;
}
