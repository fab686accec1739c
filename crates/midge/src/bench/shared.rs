//! What the clients of a run share: its [`Phase`], per-client counters each on its own cache
//! line, the subscribers' progress that QoS 0 publishers pace themselves by, and the errors.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Where a run is. Tasks and threads read it; the run's orchestration alone sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Clients connecting.
    Setup,
    /// Publishers publishing (warm-up and measurement).
    Running,
    /// Publishers stopping: no new messages, outstanding acknowledgements awaited.
    Stopping,
    /// Subscribers stop reading.
    Done,
}

/// The current [`Phase`], readable without a lock and awaitable.
#[derive(Debug, Default)]
pub struct Phases {
    value: AtomicU8,
    changed: Notify,
}

impl Phases {
    /// The current phase.
    pub fn get(&self) -> Phase {
        match self.value.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Done,
        }
    }

    /// Moves the run to `phase`.
    pub fn set(&self, phase: Phase) {
        self.value.store(phase as u8, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Completes once the run has reached `phase`.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn reached(&self, phase: Phase) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() >= phase {
                return;
            }
            notified.await;
        }
    }
}

/// A count written by one task and read by the progress line, alone on its cache line so
/// clients on different cores do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Sets the count (only its owner writes it).
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where a QoS 0 publisher held back by its window wants to be woken.
#[derive(Debug)]
pub struct Wake {
    /// The progress (see [`Shared::progress`]) each of its subscribers must reach;
    /// `u64::MAX` while it is not waiting.
    pub at: AtomicU64,
    /// Signalled by a subscriber whose progress crosses `at`.
    pub notify: Notify,
}

impl Default for Wake {
    fn default() -> Self {
        Self { at: AtomicU64::new(u64::MAX), notify: Notify::new() }
    }
}

/// What the clients of a run share.
#[derive(Debug)]
pub struct Shared {
    /// The phase.
    pub phases: Phases,
    /// Set during the measurement window: subscribers record latencies.
    pub measuring: AtomicBool,
    /// Per publisher: messages handed to the client.
    pub sent: Vec<Counter>,
    /// Per publisher: QoS 1/2 messages acknowledged by the broker.
    pub acked: Vec<Counter>,
    /// Per subscriber: messages received.
    pub delivered: Vec<Counter>,
    /// Per subscriber and publisher it hears (one slot each, subscriber after subscriber): the
    /// next sequence number it expects. QoS 0 publishers read it to stay within their window.
    pub progress: Vec<Counter>,
    /// Per publisher: its wake-up mark.
    pub wakes: Vec<Wake>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    /// The state of a run with these many publishers, subscribers and progress slots.
    pub fn new(publishers: usize, subscribers: usize, slots: usize) -> Self {
        let counters = |n| (0..n).map(|_| Counter::default()).collect();
        Self {
            phases: Phases::default(),
            measuring: AtomicBool::new(false),
            sent: counters(publishers),
            acked: counters(publishers),
            delivered: counters(subscribers),
            progress: counters(slots),
            wakes: (0..publishers).map(|_| Wake::default()).collect(),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Counts a client failure; the first is kept for the report.
    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(what);
    }

    /// Client failures so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first of them.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// What one publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// QoS 1/2 acknowledgements with a failure reason code.
    pub refused: u64,
    /// QoS 1/2 messages still unacknowledged when it stopped waiting.
    pub unacknowledged: u64,
    /// Their sequence numbers, where the link can tell them apart from the last ones sent
    /// (MQTT-SN: a datagram lost mid-stream leaves a gap that is not a loss of the broker's).
    pub unacknowledged_seqs: Vec<u32>,
    /// Worst lateness against its schedule in the window, microseconds (paced publishers).
    pub late_max_us: Option<u64>,
}
