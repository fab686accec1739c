//! The `"topic"` log destination, mosquitto's `log_dest topic`: each line published by the
//! broker at QoS 0, not retained, to `$SYS/broker/log/E`, `W`, `N`, `I` or `D` by its level, as
//! mosquitto's `src/logging.c` names them (`N`, notice, is what mosquitto logs its connects and
//! disconnects at: Midge's connection messages go there, its other info lines to `I`).
//!
//! # Layout
//! - [`LogTopics`]: the late-bound sink. The log is set up before the broker exists, so until
//!   [`LogTopics::start`] is given the broker, lines for the topics are dropped; from then on
//!   they go through a bounded channel to a task that publishes them
//!   ([`Broker::publish_own`], so the ACL decides who reads them).
//! - [`LogTopics::writer`]: the `MakeWriter` the destination's formatting layer writes to; one
//!   `write` is one formatted line.
//!
//! A log flood never blocks the thread that logs nor grows memory: a line that finds the channel
//! full ([`LOG_TOPIC_QUEUE`] lines) is dropped and counted, and the count is logged (not to the
//! topics) once the task catches up. Lines logged while the task publishes, on its thread or by
//! this module, are not published: publishing must not log its way into a loop.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use midge_broker::Broker;
use midge_codec::{QoS, TopicName};
use midge_server::config::CONNECTION_MESSAGES_TARGET;
use tokio::sync::mpsc;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How many lines may wait to be published. A line is a few hundred bytes, so the queue holds a
/// few hundred KiB at most; past it, lines are dropped (and counted) rather than block a worker.
pub const LOG_TOPIC_QUEUE: usize = 1024;

/// One line to publish: its topic and its text.
type Line = (&'static str, Bytes);

/// The topics' sink, shared by every `"topic"` layer the log has had (a reload builds new ones).
#[derive(Debug, Default)]
pub struct LogTopics {
    /// Set once, when the broker has started: until then lines are dropped.
    sender: OnceLock<mpsc::Sender<Line>>,
    /// Lines dropped because the queue was full, since the start.
    dropped: Arc<AtomicU64>,
}

thread_local! {
    /// Whether this thread is publishing a line: what it logs meanwhile is not published.
    static PUBLISHING: Cell<bool> = const { Cell::new(false) };
}

impl LogTopics {
    /// Starts publishing to `broker`: spawns the task that publishes queued lines on the current
    /// tokio runtime (it ends with the runtime). Called once; a second call does nothing.
    pub fn start(&self, broker: Arc<Broker>) {
        let (sender, receiver) = mpsc::channel(LOG_TOPIC_QUEUE);
        if self.sender.set(sender).is_ok() {
            tokio::spawn(publish_lines(broker, receiver, Arc::clone(&self.dropped)));
        }
    }

    /// The writer of a `"topic"` destination's layer.
    pub fn writer(self: &Arc<Self>) -> TopicWriter {
        TopicWriter(Arc::clone(self))
    }

    /// Queues `line` for `topic`, or drops it (counted) if the queue is full.
    fn send(&self, topic: &'static str, line: &[u8]) {
        let Some(sender) = self.sender.get() else { return };
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if sender.try_send((topic, Bytes::copy_from_slice(text))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Publishes the queued lines, one at a time, until the runtime ends; after each, logs (at warn,
/// to the other destinations) how many lines were dropped since the last report, if any.
async fn publish_lines(broker: Arc<Broker>, mut lines: mpsc::Receiver<Line>, dropped: Arc<AtomicU64>) {
    let mut reported = 0;
    while let Some((topic, payload)) = lines.recv().await {
        // Built from the constants of `topic`, which are valid topic names.
        let Ok(topic) = TopicName::new(topic) else { continue };
        PUBLISHING.with(|publishing| publishing.set(true));
        // QoS 0 and not retained: nothing to refuse.
        let _ = broker.publish_own(topic, payload, QoS::AtMostOnce, false, Instant::now());
        PUBLISHING.with(|publishing| publishing.set(false));
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            tracing::warn!(
                dropped = now - reported,
                "log lines not published to $SYS/broker/log: more than {LOG_TOPIC_QUEUE} were waiting"
            );
            reported = now;
        }
    }
}

/// The `MakeWriter` of a `"topic"` destination: a writer per line, which knows the line's topic.
#[derive(Debug, Clone)]
pub struct TopicWriter(Arc<LogTopics>);

impl<'a> MakeWriter<'a> for TopicWriter {
    type Writer = TopicLine<'a>;

    /// Without the line's level there is no topic: nothing is published.
    fn make_writer(&'a self) -> Self::Writer {
        TopicLine { topics: &self.0, topic: None }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let own = meta.target().starts_with(module_path!()) || PUBLISHING.with(Cell::get);
        let topic = (!own).then(|| topic(*meta.level(), meta.target()));
        TopicLine { topics: &self.0, topic }
    }
}

/// One line on its way to its topic (none: dropped).
pub struct TopicLine<'a> {
    topics: &'a LogTopics,
    topic: Option<&'static str>,
}

impl io::Write for TopicLine<'_> {
    /// The formatting layer writes each line whole, with one `write_all`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(topic) = self.topic {
            self.topics.send(topic, buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The topic of a line at `level` with `target`, as mosquitto names them.
fn topic(level: Level, target: &str) -> &'static str {
    match level {
        Level::ERROR => "$SYS/broker/log/E",
        Level::WARN => "$SYS/broker/log/W",
        Level::INFO if target == CONNECTION_MESSAGES_TARGET => "$SYS/broker/log/N",
        Level::INFO => "$SYS/broker/log/I",
        _ => "$SYS/broker/log/D",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn levels_map_to_mosquittos_topics() {
        assert_eq!(topic(Level::ERROR, "midge_server"), "$SYS/broker/log/E");
        assert_eq!(topic(Level::WARN, "midge_server"), "$SYS/broker/log/W");
        assert_eq!(topic(Level::INFO, CONNECTION_MESSAGES_TARGET), "$SYS/broker/log/N");
        assert_eq!(topic(Level::INFO, "midge_server::listener"), "$SYS/broker/log/I");
        assert_eq!(topic(Level::DEBUG, "midge_server"), "$SYS/broker/log/D");
        assert_eq!(topic(Level::TRACE, "midge_server"), "$SYS/broker/log/D");
    }

    #[test]
    fn lines_before_the_start_are_dropped_and_a_full_queue_drops_and_counts() {
        let topics = Arc::new(LogTopics::default());
        topics.send("$SYS/broker/log/I", b"before the broker\n");
        assert_eq!(topics.dropped.load(Ordering::Relaxed), 0);

        let (sender, mut receiver) = mpsc::channel(2);
        topics.sender.set(sender).unwrap();
        let writer = topics.writer();
        for n in 0..5 {
            let mut line = TopicLine { topics: &writer.0, topic: Some("$SYS/broker/log/N") };
            line.write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        assert_eq!(topics.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(receiver.try_recv().unwrap(), ("$SYS/broker/log/N", Bytes::from_static(b"line 0")));
        assert_eq!(receiver.try_recv().unwrap().1, Bytes::from_static(b"line 1"));
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn formatted_lines_go_to_their_topic_but_not_the_publishers_own() {
        use tracing_subscriber::layer::SubscriberExt;

        let topics = Arc::new(LogTopics::default());
        let (sender, mut receiver) = mpsc::channel(8);
        topics.sender.set(sender).unwrap();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(topics.writer())
            .with_ansi(false)
            .without_time()
            .with_level(false);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "midge_server::conn::log", client_id = "c1", "New client connected");
            tracing::warn!("about this module's own work");
            PUBLISHING.with(|publishing| publishing.set(true));
            tracing::error!(target: "midge_broker", "logged while publishing");
            PUBLISHING.with(|publishing| publishing.set(false));
        });
        let (topic, line) = receiver.try_recv().unwrap();
        assert_eq!(topic, "$SYS/broker/log/N");
        assert_eq!(line, Bytes::from_static(b"midge_server::conn::log: New client connected client_id=\"c1\""));
        assert!(receiver.try_recv().is_err(), "only the first line is published");
    }
}
