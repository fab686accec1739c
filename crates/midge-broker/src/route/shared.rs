//! Shared subscriptions (MQTT 5.0 section 4.8.2): `$share/{group}/{filter}`, each message to one
//! member of the group.

use std::sync::atomic::{AtomicUsize, Ordering};

use midge_codec::TopicFilter;

use super::subscriber::Subscriber;

/// Splits `$share/{group}/{filter}`; `Ok(None)` for an ordinary filter, `Err` for a malformed
/// shared one (MQTT-4.8.2-1: the group name has no `+`, `#` or `/`; MQTT-4.8.2-2: a filter
/// follows).
pub(crate) fn parse_shared(filter: &TopicFilter) -> Result<Option<(&str, &str)>, ()> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return if filter.as_str() == "$share" { Err(()) } else { Ok(None) };
    };
    let (group, inner) = rest.split_once('/').ok_or(())?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(());
    }
    Ok(Some((group, inner)))
}

/// Picks the next member of a shared group round-robin, preferring connected members.
pub(crate) fn pick_member<'a>(members: &'a [(u64, Subscriber)], cursor: &AtomicUsize) -> Option<&'a (u64, Subscriber)> {
    if members.is_empty() {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    (0..members.len())
        .map(|i| &members[(start + i) % members.len()])
        .find(|(_, m)| m.target.is_connected())
        .or_else(|| members.get(start % members.len()))
}
