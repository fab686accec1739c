//! Server-sent events (the WHATWG HTML standard, section 9.2): one event per message, and each
//! persistent subscriber's event ids, so that a reader that reconnects with `Last-Event-ID`
//! resumes where it was.
//!
//! An event's id is its session's sequence number, from 1. A persistent session (one with a
//! session expiry) keeps its messages in the core while its reader is away, and they go out on
//! its next stream, numbered on from the last; the listener also keeps the last events it sent
//! ([`HTTP_SSE_REPLAY_EVENTS`], [`HTTP_SSE_REPLAY_BYTES`]), so those after the reader's
//! `Last-Event-ID` (sent while its connection was dropping, never read) are sent again first.
//! The ids and kept events are in memory: after a restart the session's messages still come,
//! numbered on from the reader's `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use midge_broker::Queued;

use super::publish::Encoding;
use crate::limits::{HTTP_SSE_REPLAY_BYTES, HTTP_SSE_REPLAY_EVENTS, HTTP_SSE_SESSIONS};

/// Writes the event for `item` with `id` to `out`: `event: message`, and as data one line of
/// JSON with the topic, the QoS it is delivered with, the RETAIN flag and the payload, as text
/// when it is UTF-8 (unless `encoding` asks for base64) and base64 otherwise.
pub(super) fn write_event(out: &mut BytesMut, id: u64, item: &Queued, encoding: Option<Encoding>) {
    let message = &item.message;
    let text = match encoding {
        Some(Encoding::Base64) => None,
        _ => std::str::from_utf8(&message.payload).ok(),
    };
    let (payload, encoding) = match text {
        Some(text) => (text.to_owned(), "text"),
        None => (base64::engine::general_purpose::STANDARD.encode(&message.payload), "base64"),
    };
    let data = serde_json::json!({
        "topic": message.topic.as_str(),
        "qos": item.qos.as_u8(),
        "retain": item.retain,
        "payload": payload,
        "encoding": encoding,
    });
    // serde_json writes no newline, so the data is one `data:` line.
    out.put_slice(format!("id: {id}\nevent: message\ndata: {data}\n\n").as_bytes());
}

/// A comment line: ignored by readers, it keeps an idle connection open.
pub(super) fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// A session's event ids and its last events.
#[derive(Debug, Default)]
pub(super) struct Resume {
    /// The id of the last event sent.
    last: u64,
    /// The last events sent, oldest first, within the bounds.
    kept: VecDeque<(u64, Bytes)>,
    kept_bytes: usize,
}

impl Resume {
    /// A session's numbering when nothing is known of it: on from the reader's `Last-Event-ID`.
    pub(super) fn after(last_event_id: Option<u64>) -> Self {
        Self { last: last_event_id.unwrap_or(0), ..Self::default() }
    }

    /// The id of the next event.
    pub(super) fn next_id(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// Keeps the event `id`, `bytes`, to send again to a reader that did not get it.
    pub(super) fn keep(&mut self, id: u64, bytes: Bytes) {
        self.kept_bytes += bytes.len();
        self.kept.push_back((id, bytes));
        while self.kept.len() > HTTP_SSE_REPLAY_EVENTS || self.kept_bytes > HTTP_SSE_REPLAY_BYTES {
            let Some((_, dropped)) = self.kept.pop_front() else { break };
            self.kept_bytes -= dropped.len();
        }
    }

    /// The kept events after `last_event_id`, in order.
    pub(super) fn replay(&self, last_event_id: u64) -> impl Iterator<Item = &Bytes> {
        self.kept.iter().filter(move |(id, _)| *id > last_event_id).map(|(_, bytes)| bytes)
    }
}

/// A session's [`Resume`], shared by its streams: one that takes the session over from another
/// whose reader has gone numbers on from it.
pub(super) type SharedResume = Arc<Mutex<Resume>>;

/// The persistent subscribers' [`Resume`]s of one listener, by client id, at most
/// [`HTTP_SSE_SESSIONS`].
#[derive(Debug, Default)]
pub(super) struct ResumeTable {
    sessions: Mutex<HashMap<Arc<str>, SharedResume>>,
}

impl ResumeTable {
    /// The numbering of `client_id`'s session: the one kept when the session was resumed
    /// (`resumed`), a new one otherwise (on from `last_event_id`). Over the bound, another
    /// session's is forgotten.
    pub(super) fn session(&self, client_id: &Arc<str>, resumed: bool, last_event_id: Option<u64>) -> SharedResume {
        let mut sessions = lock(&self.sessions);
        if resumed {
            if let Some(known) = sessions.get(client_id) {
                return Arc::clone(known);
            }
        }
        if sessions.len() >= HTTP_SSE_SESSIONS && !sessions.contains_key(client_id) {
            if let Some(other) = sessions.keys().next().cloned() {
                sessions.remove(&other);
            }
        }
        let resume = Arc::new(Mutex::new(Resume::after(last_event_id)));
        sessions.insert(Arc::clone(client_id), Arc::clone(&resume));
        resume
    }
}

/// A lock that a panic while it was held left whole: each change under it is one step.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_on_and_kept_events_are_bounded() {
        let mut resume = Resume::after(Some(41));
        assert_eq!(resume.next_id(), 42);
        for _ in 0..HTTP_SSE_REPLAY_EVENTS + 10 {
            let id = resume.next_id();
            resume.keep(id, Bytes::from_static(b"e"));
        }
        assert_eq!(resume.kept.len(), HTTP_SSE_REPLAY_EVENTS);
        let last = resume.last;
        assert_eq!(resume.replay(last - 3).count(), 3);
        resume.keep(resume.last + 1, Bytes::from(vec![0; HTTP_SSE_REPLAY_BYTES]));
        assert_eq!(resume.kept.len(), 1, "one event as large as the bound leaves only itself");
    }
}
