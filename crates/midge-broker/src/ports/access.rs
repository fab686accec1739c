//! The authorization port: what a client may publish, subscribe to and receive.
//!
//! An [`Authorizer`] answers for an [`Identity`] and a topic (or filter). The connection asks it
//! on every inbound PUBLISH (v5: PUBACK/PUBREC 0x87; 3.x: acknowledged and not routed, as
//! mosquitto does), every SUBSCRIBE filter (v5 SUBACK 0x87, 3.x 0x80), every message it is
//! about to send (so retained, shared and queued messages are checked against the reader's
//! rights when they are sent), and a will when it is published. Answers are cached per
//! connection ([`AccessCache`]) and dropped when the authorizer's [`Authorizer::generation`]
//! moves (a reload).
//!
//! A listener without one allows everything, at no cost on the message path: the connection
//! keeps no cache and asks nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::filters::{covers, matches};
use crate::hash::ProcessSeeded;
use crate::limits::ACCESS_CACHE_ANSWERS;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a topic name (its will included).
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
    /// Receive a message published to a topic name.
    Receive,
}

/// Who a connected client is, as authorization sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user name the client is known by (its User Name, or one a backend chose); `None`
    /// for an anonymous client.
    pub username: Option<Arc<str>>,
    /// Topic filters the client's own credentials limit it to (a token's claims); `None` when
    /// they name none. Checked on top of the listener's authorizer.
    pub grants: Option<Arc<Grants>>,
}

/// What a client's credentials allow it, as topic filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Filters it may publish to.
    pub publish: Vec<String>,
    /// Filters it may subscribe to and receive from.
    pub subscribe: Vec<String>,
}

impl Grants {
    /// Whether these grants allow `action` on `topic` (a filter for subscribing): publishing to
    /// a topic some publish filter matches, receiving what some subscribe filter matches, and
    /// subscribing to a filter some subscribe filter covers.
    pub fn allows(&self, action: Action, topic: &str) -> bool {
        match action {
            Action::Publish => self.publish.iter().any(|f| matches(f, topic)),
            Action::Receive => self.subscribe.iter().any(|f| matches(f, topic)),
            Action::Subscribe => self.subscribe.iter().any(|f| covers(f, topic)),
        }
    }
}

/// Decides what an identity may do.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// Whether `identity`, connected as `client_id`, may do `action` on `topic` (a filter for
    /// [`Action::Subscribe`], a topic name otherwise).
    fn allows(&self, identity: &Identity, client_id: &str, action: Action, topic: &str) -> bool;

    /// Changes whenever the rules change, so connections drop what they cached.
    fn generation(&self) -> u64 {
        0
    }
}

/// Cached answers held per connection: at most [`ACCESS_CACHE_ANSWERS`], then it starts over.
/// An answer is the listener's authorizer's and the client's own grants' (a token's claims),
/// both of which must allow.
#[derive(Debug)]
pub struct AccessCache {
    authorizer: Option<Arc<dyn Authorizer>>,
    identity: Identity,
    client_id: Arc<str>,
    generation: u64,
    /// Answers by action ([`Action`] as index) and topic.
    answers: [HashMap<Box<str>, bool, ProcessSeeded>; 3],
    /// Answers held in all three maps.
    held: usize,
}

impl AccessCache {
    /// A cache of `authorizer`'s answers for `identity`, limited by the identity's own grants.
    /// `None` when there is nothing to ask (no authorizer, no grants).
    pub fn new(authorizer: Option<Arc<dyn Authorizer>>, identity: Identity, client_id: Arc<str>) -> Option<Self> {
        if authorizer.is_none() && identity.grants.is_none() {
            return None;
        }
        let generation = authorizer.as_ref().map_or(0, |a| a.generation());
        Some(Self { authorizer, identity, client_id, generation, answers: Default::default(), held: 0 })
    }

    /// Whether the client may do `action` on `topic`.
    pub fn allows(&mut self, action: Action, topic: &str) -> bool {
        let generation = self.authorizer.as_ref().map_or(0, |a| a.generation());
        if generation != self.generation || self.held >= ACCESS_CACHE_ANSWERS {
            self.generation = generation;
            self.answers.iter_mut().for_each(HashMap::clear);
            self.held = 0;
        }
        let answers = &mut self.answers[action as usize];
        if let Some(&answer) = answers.get(topic) {
            return answer;
        }
        let granted = self.identity.grants.as_ref().is_none_or(|grants| grants.allows(action, topic));
        let answer = granted
            && self.authorizer.as_ref().is_none_or(|a| a.allows(&self.identity, &self.client_id, action, topic));
        answers.insert(topic.into(), answer);
        self.held += 1;
        answer
    }
}
