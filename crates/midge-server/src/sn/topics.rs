//! Topic ids (MQTT-SN 1.2 sections 3, 5.3.11, 6.5, 6.7): the listener's predefined ids, and
//! each client's own registry of normal ids.
//!
//! A client names a topic three ways: a normal id it or the gateway REGISTERed (one registry
//! per client, kept by its task), a predefined id both sides know beforehand (the listener's
//! `[listener.sn_predefined_topics]`), or a short topic name of two characters carried in the
//! id's place. The gateway names a topic to the client the same three ways, preferring a
//! predefined id, then a short name, then a normal id, which it REGISTERs first if the client
//! has not learnt it yet.

use std::collections::HashMap;
use std::sync::Arc;

/// The listener's predefined topic ids, shared by its clients.
#[derive(Debug, Default)]
pub(crate) struct Predefined {
    by_id: HashMap<u16, Arc<str>>,
    by_name: HashMap<Arc<str>, u16>,
}

impl Predefined {
    /// The table of `(id, name)` pairs, checked when the config was read (no id or name twice).
    pub(crate) fn new(topics: &[(u16, String)]) -> Self {
        let mut table = Self::default();
        for (id, name) in topics {
            let name: Arc<str> = Arc::from(name.as_str());
            table.by_id.insert(*id, Arc::clone(&name));
            table.by_name.insert(name, *id);
        }
        table
    }

    /// The topic name of predefined id `id`.
    pub(crate) fn name(&self, id: u16) -> Option<&str> {
        self.by_id.get(&id).map(|name| &**name)
    }

    /// The predefined id of `name`.
    pub(crate) fn id(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    fn contains_id(&self, id: u16) -> bool {
        self.by_id.contains_key(&id)
    }
}

/// How the gateway names a topic in a PUBLISH to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboundTopic {
    /// A predefined id.
    Predefined(u16),
    /// A short topic name (the topic has exactly two octets).
    Short([u8; 2]),
    /// A normal id the client has accepted (its REGACK, or the REGACK or SUBACK the gateway sent
    /// it for its own REGISTER or SUBSCRIBE).
    Registered(u16),
    /// A normal id the client does not know yet: REGISTER it first.
    Unregistered(u16),
    /// None: the client's registry is full.
    Full,
}

/// One entry of a client's registry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u16,
    /// Whether the client knows the id (it asked for it, or accepted the gateway's REGISTER).
    known: bool,
}

/// A client's normal topic ids, both ways, at most `max` of them.
///
/// Assigning is idempotent: a topic keeps its id for as long as the client's session lives, so
/// a REGISTER or SUBSCRIBE the client sends again (its REGACK or SUBACK was lost) gets the same
/// id, and a topic the client has learnt is never renamed under it. Ids are never reused within
/// the session's life, and skip the listener's predefined ids, so a client that keeps both in
/// one table (as simple clients do) cannot confuse them. The session keeps the ids
/// (`ClientConnection::record_topic_id`, in the store for a persistent one): each id assigned
/// is [`take_new`](Self::take_new) for the client's task to record, and a connection that
/// resumes the session starts from them ([`resumed`](Self::resumed)).
#[derive(Debug)]
pub(crate) struct TopicRegistry {
    by_name: HashMap<Arc<str>, Entry>,
    by_id: HashMap<u16, Arc<str>>,
    /// The last id handed out; ids go up from 1 and stop at 0xFFFE (0xFFFF is reserved, 5.3.11).
    last: u16,
    max: usize,
    /// Ids assigned and not yet taken by [`take_new`](Self::take_new).
    new: Vec<(u16, Arc<str>)>,
}

impl TopicRegistry {
    /// An empty registry of at most `max` topics.
    pub(crate) fn new(max: usize) -> Self {
        Self { by_name: HashMap::new(), by_id: HashMap::new(), last: 0, max, new: Vec::new() }
    }

    /// The registry of a connection that resumes a session with `ids` (ascending, from
    /// `ClientConnection::topic_ids`): every topic keeps its id, and new ones follow the
    /// highest. None is taken as known: the client may have lost its table (it restarted, or
    /// it never kept ids across connections, which MQTT-SN 1.2 does not ask of it), so a topic
    /// is REGISTERed again, with its id, before the gateway first PUBLISHes on it in this
    /// connection (6.10). The client's own PUBLISHes on an id it kept are taken at once.
    pub(crate) fn resumed(ids: Vec<(u16, Arc<str>)>, max: usize) -> Self {
        let mut registry = Self::new(max);
        for (id, name) in ids {
            if id == 0 || id == u16::MAX || registry.by_name.contains_key(&name) {
                continue; // not an id this registry hands out, or a second id of one topic
            }
            registry.last = registry.last.max(id);
            registry.by_id.insert(id, Arc::clone(&name));
            registry.by_name.insert(name, Entry { id, known: false });
        }
        registry
    }

    /// The ids assigned since the last call, to record with the session.
    pub(crate) fn take_new(&mut self) -> Vec<(u16, Arc<str>)> {
        std::mem::take(&mut self.new)
    }

    /// The id of `name`, assigned now if it has none; `None` when the registry is full.
    pub(crate) fn assign(&mut self, name: &str, predefined: &Predefined) -> Option<u16> {
        if let Some(entry) = self.by_name.get(name) {
            return Some(entry.id);
        }
        if self.by_name.len() >= self.max {
            return None;
        }
        let mut id = self.last;
        loop {
            id = id.checked_add(1).filter(|&id| id != u16::MAX)?;
            if !predefined.contains_id(id) {
                break;
            }
        }
        self.last = id;
        let name: Arc<str> = Arc::from(name);
        self.by_id.insert(id, Arc::clone(&name));
        self.by_name.insert(Arc::clone(&name), Entry { id, known: false });
        self.new.push((id, name));
        Some(id)
    }

    /// Assigns `name` an id (see [`assign`](Self::assign)) that the client knows from now on:
    /// the answer to its REGISTER or SUBSCRIBE carries it.
    pub(crate) fn assign_known(&mut self, name: &str, predefined: &Predefined) -> Option<u16> {
        let id = self.assign(name, predefined)?;
        self.set_known(id, true);
        Some(id)
    }

    /// The topic name of normal id `id`.
    pub(crate) fn name(&self, id: u16) -> Option<&str> {
        self.by_id.get(&id).map(|name| &**name)
    }

    /// Records whether the client knows `id`: it accepted the gateway's REGISTER, or refused it
    /// or said the id was invalid (a PUBACK "invalid topic ID"), after which the topic is
    /// REGISTERed again before its next PUBLISH.
    pub(crate) fn set_known(&mut self, id: u16, known: bool) {
        if let Some(name) = self.by_id.get(&id) {
            if let Some(entry) = self.by_name.get_mut(name) {
                entry.known = known;
            }
        }
    }

    /// How to name `topic` in a PUBLISH to the client, assigning a normal id if it needs one.
    pub(crate) fn outbound(&mut self, topic: &str, predefined: &Predefined) -> OutboundTopic {
        if let Some(id) = predefined.id(topic) {
            return OutboundTopic::Predefined(id);
        }
        if let [a, b] = *topic.as_bytes() {
            return OutboundTopic::Short([a, b]);
        }
        match self.by_name.get(topic) {
            Some(Entry { id, known: true }) => OutboundTopic::Registered(*id),
            Some(Entry { id, known: false }) => OutboundTopic::Unregistered(*id),
            None => match self.assign(topic, predefined) {
                Some(id) => OutboundTopic::Unregistered(id),
                None => OutboundTopic::Full,
            },
        }
    }

    /// Topics it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predefined() -> Predefined {
        Predefined::new(&[(1, "sensors/temperature".to_owned()), (3, "p".to_owned())])
    }

    /// 6.5: a topic keeps its id (a REGISTER or SUBSCRIBE sent again gets the same one), and
    /// ids skip the predefined ones.
    #[test]
    fn ids_are_assigned_once_per_topic_and_skip_predefined_ids() {
        let table = predefined();
        let mut topics = TopicRegistry::new(10);
        assert_eq!(topics.assign("a/b", &table), Some(2), "1 is predefined");
        assert_eq!(topics.assign("a/c", &table), Some(4), "3 is predefined");
        assert_eq!(topics.assign_known("a/b", &table), Some(2), "the same topic, the same id");
        assert_eq!(topics.name(2), Some("a/b"));
        assert_eq!(topics.name(1), None, "predefined ids are not in the registry");
        assert_eq!(topics.len(), 2);
    }

    /// 6.7, 6.10: predefined ids first, then short names, then normal ids, REGISTERed until the
    /// client has accepted them.
    #[test]
    fn outbound_topics_prefer_predefined_then_short_then_registered() {
        let table = predefined();
        let mut topics = TopicRegistry::new(10);
        assert_eq!(topics.outbound("sensors/temperature", &table), OutboundTopic::Predefined(1));
        assert_eq!(topics.outbound("ab", &table), OutboundTopic::Short(*b"ab"));
        assert_eq!(topics.outbound("p", &table), OutboundTopic::Predefined(3));
        let OutboundTopic::Unregistered(id) = topics.outbound("x/y", &table) else { panic!() };
        assert_eq!(topics.outbound("x/y", &table), OutboundTopic::Unregistered(id), "still not accepted");
        topics.set_known(id, true);
        assert_eq!(topics.outbound("x/y", &table), OutboundTopic::Registered(id));
        topics.set_known(id, false);
        assert_eq!(topics.outbound("x/y", &table), OutboundTopic::Unregistered(id), "the same id again");
    }

    #[test]
    fn a_full_registry_assigns_nothing_more_but_keeps_its_ids() {
        let table = Predefined::default();
        let mut topics = TopicRegistry::new(2);
        assert_eq!(topics.assign("a", &table), Some(1));
        assert_eq!(topics.assign("b", &table), Some(2));
        assert_eq!(topics.assign("c", &table), None);
        assert_eq!(topics.outbound("c/d", &table), OutboundTopic::Full);
        assert_eq!(topics.assign("a", &table), Some(1));
    }

    /// 6.5, decision 0008: a resumed registry keeps every topic's id, assigns new ones after
    /// the highest, and takes none as known, so each is REGISTERed (with its id) before the
    /// gateway's first PUBLISH on it; what is assigned is handed out once for recording.
    #[test]
    fn a_resumed_registry_keeps_the_ids_registers_them_again_and_continues_after_them() {
        let table = predefined();
        let ids = vec![(2, Arc::from("a/b")), (9, Arc::from("c/d"))];
        let mut topics = TopicRegistry::resumed(ids, 10);
        assert_eq!(topics.name(9), Some("c/d"), "the client may publish on an id it kept");
        assert_eq!(topics.assign("a/b", &table), Some(2), "the same topic, the same id");
        assert_eq!(topics.outbound("c/d", &table), OutboundTopic::Unregistered(9), "REGISTERed again first");
        assert!(topics.take_new().is_empty(), "nothing new to record");
        assert_eq!(topics.assign("e/f", &table), Some(10), "after the highest id");
        assert_eq!(topics.take_new(), vec![(10, Arc::from("e/f"))]);
        assert!(topics.take_new().is_empty(), "taken once");
    }

    #[test]
    fn ids_stop_before_the_reserved_0xffff() {
        let table = Predefined::default();
        let mut topics = TopicRegistry::new(usize::MAX);
        topics.last = 0xFFFD;
        assert_eq!(topics.assign("a", &table), Some(0xFFFE));
        assert_eq!(topics.assign("b", &table), None);
    }
}
