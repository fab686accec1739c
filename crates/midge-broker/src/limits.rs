//! Every capability and bound of the broker core, with its default and the reason for it, and
//! every bound derived from them, named once here.
//!
//! [`Limits`] is what the server's `[mqtt]` config table becomes (the TOML schema lives in the
//! server). Every capability announced in CONNACK comes from here, and the broker enforces what
//! it announces.

use std::time::Duration;

/// Largest packet MQTT can express: a 4-byte remaining length of 268,435,455 plus the header.
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_455 + 5;

/// The broker's capabilities and bounds (the server fills them from `[mqtt]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Highest QoS granted or accepted; announced as Maximum QoS (v5 CONNACK). A v5 PUBLISH
    /// above it is a protocol violation (0x9B, MQTT-3.2.2-11).
    pub max_qos: u8,
    /// Whether retained messages are supported; announced as Retain Available. A retained
    /// PUBLISH when off is refused with 0x9A (MQTT-3.2.2-14).
    pub retain_available: bool,
    /// Largest packet accepted from or sent to a client, in bytes (whole packet). Default: what
    /// the protocol allows; lower it to bound per-connection memory.
    pub max_packet_size: u32,
    /// How many topic aliases a v5 client may set towards the broker. Default 10, like
    /// mosquitto's `max_topic_alias`: each alias pins one topic string per connection.
    pub topic_alias_maximum: u16,
    /// Inbound QoS 1/2 PUBLISHes a client may have unacknowledged (CONNACK Receive Maximum).
    /// Default 100: enough for a fast publisher, small enough to bound pending QoS 2 state.
    pub receive_maximum: u16,
    /// Largest keep alive a client may use, in seconds (mosquitto's `max_keepalive`): a v5
    /// client asking for more, or for 0, is told this value as Server Keep Alive; a 3.x client
    /// asking for more is refused with "identifier rejected", as mosquitto does. 65535 (the
    /// default) places no limit.
    pub max_keepalive: u16,
    /// Whether wildcard subscriptions are allowed (Wildcard Subscription Available).
    pub wildcard_subscription_available: bool,
    /// Whether `$share/{group}/{filter}` subscriptions are allowed.
    pub shared_subscription_available: bool,
    /// Whether subscription identifiers are supported.
    pub subscription_identifier_available: bool,
    /// Outbound QoS 1/2 messages in flight per client, further bounded by the client's Receive
    /// Maximum. Default 20, as mosquitto's `max_inflight_messages`.
    pub max_inflight_messages: u16,
    /// Messages queued in memory per connected session beyond those in flight. A connected
    /// subscriber over it paces the publishers feeding it (see `pace_qos0`). Default 1000, as
    /// mosquitto's `max_queued_messages` (docs/decisions/0005-pace-qos0.md gives why it
    /// stays). With a store, an offline persistent session's queue lives on disk and
    /// `max_offline_messages` bounds it instead; without one, this bounds it too.
    pub max_queued_messages: usize,
    /// Bytes of payload queued per connected session; 0 means no byte bound (the message bound
    /// applies).
    pub max_queued_bytes: usize,
    /// Messages an offline persistent session keeps, on disk (a store is configured): beyond
    /// it new messages for the session are dropped and counted (`drop_new`, mosquitto's
    /// policy). Default 100,000: sized for an outage, not for memory, since the queue costs
    /// the broker about a byte of memory per message while its client is away (decision 0006). A
    /// device publishing a 64-byte reading every second on each of 25 topics fills it in
    /// about 67 minutes, with 6.4 MB of disk. The config file sets it to
    /// `max_queued_messages` when only that is given, keeping mosquitto's meaning for users
    /// who set it.
    pub max_offline_messages: usize,
    /// Bytes of payload an offline persistent session keeps on disk; 0: no byte bound.
    /// Default 64 MiB: one 1 KB message a second for about 18 hours, and a bound on the disk
    /// one forgotten device can take.
    pub max_offline_bytes: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions (mosquitto's
    /// `queue_qos0_messages`).
    pub queue_qos0_messages: bool,
    /// Whether a connected subscriber's full queue paces the publishers of its QoS 0 messages
    /// too (they are not read until it has room), as it does for QoS 1/2. Default true: a
    /// subscriber that keeps consuming gets a whole burst, and the broker does not spend its CPU
    /// reading messages only to drop them (docs/decisions/0005-pace-qos0.md). False: a QoS 0
    /// message beyond the bound is dropped at once and counted, as mosquitto does.
    pub pace_qos0: bool,
    /// How long publishers are paced (their sockets not read) for a connected subscriber whose
    /// queue is full before the slow-consumer policy applies to it: when it has taken nothing
    /// for this long, or when the publisher has been held up this long, every pause of it for
    /// a full subscriber while another of its subscribers sat idle. A subscriber that keeps
    /// consuming and holds up nobody else is never shed. Pacing keeps every message while the
    /// subscriber is connected (DESIGN.md, "Bounds and back-pressure"; decisions 0003, 0005).
    pub slow_consumer_timeout_ms: u64,
    /// What happens to a connected subscriber still full after `slow_consumer_timeout_ms`:
    /// `"drop"` (further messages beyond the bound are dropped and counted, as mosquitto does) or
    /// `"disconnect"` (the subscriber is disconnected with 0x97 Quota exceeded, as NATS does).
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Milliseconds a new connection may take to send CONNECT before it is closed. Default
    /// 10 s: a socket that never speaks must not hold a file descriptor for long.
    pub connect_timeout_ms: u64,
    /// Largest session expiry interval granted, in seconds; u32::MAX means never expire.
    pub max_session_expiry_interval: u32,
    /// mosquitto's `persistent_client_expiration`, in seconds: a session that asked never to
    /// expire (MQTT 3.x clean session 0, v5 Session Expiry Interval 0xFFFFFFFF) is granted this
    /// much instead, so one whose client does not come back is removed in the end (v5 clients
    /// are told in CONNACK). 0 (the default): such sessions never expire. The broker's own
    /// sessions (a bridge's local session, [`Broker::check_own_connect`](crate::Broker::check_own_connect))
    /// are not capped: their queues must outlast any outage of the remote.
    pub persistent_client_expiration: u32,
    /// Whether a client may connect with an empty client identifier and be assigned one.
    pub allow_zero_length_clientid: bool,
    /// Subscriptions one session may hold; beyond it SUBSCRIBE is refused with Quota exceeded
    /// (0x97). Bounds the memory one client can make the index hold.
    pub max_subscriptions_per_client: usize,
    /// Largest number of levels in a topic name or filter; deeper ones are refused. Bounds the
    /// cost of matching an untrusted topic.
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes; longer ones are refused (a PUBLISH with 0x90
    /// Topic Name invalid, a subscription with 0x8F Topic Filter invalid). Default 65,535, what
    /// the protocol can express: the packet size bounds it too; lower it where devices use
    /// short topics, since every retained message, subscription and alias keeps its topic.
    pub max_topic_length: usize,
    /// Sessions the broker holds at once, connected and offline (persistent ones wait for
    /// their client until they expire). A CONNECT that would create one more is refused with
    /// 0x97 Quota exceeded (3.x: "server unavailable") and counted; a client resuming its
    /// session, or replacing it with a clean start, is not refused. Default 1,000,000: above
    /// any one machine's connections, so it bounds only offline sessions left behind by clients
    /// that never return, at about 1 KB each while they are empty (docs/limits.md).
    pub max_sessions: usize,
    /// Retained messages held at once. A retained PUBLISH to a topic without one beyond it is
    /// refused: not retained and not delivered, acknowledged with 0x97 Quota exceeded in v5
    /// (3.x has no way to say so and is acknowledged as an ACL refusal is) and counted.
    /// Replacing or clearing a retained message is never refused. Default 1,000,000: they
    /// live in memory, and a million topics is far more than a fleet's state.
    pub max_retained_messages: usize,
    /// Bytes of retained topics and payloads held at once (0: no byte bound); a retained PUBLISH
    /// that would go over it is refused as at `max_retained_messages`. Default 1 GiB.
    pub max_retained_bytes: usize,
    /// PUBLISHes a client may send a second, averaged over a second with bursts of as many
    /// (a token bucket); 0: no limit (the default). Over it the client is paced: its socket is
    /// not read until it is within its rate again, as a publisher to a full queue is paced, and
    /// it is never disconnected for it; TCP carries the back-pressure to it. Off by default
    /// because one fast publisher is a legitimate use (a pipeline, a gateway for many devices):
    /// fairness between clients does not depend on it, since each read is bounded.
    pub max_inbound_messages_per_second: u32,
    /// Bytes a client may send a second (packets whole), as `max_inbound_messages_per_second`;
    /// 0: no limit (the default).
    pub max_inbound_bytes_per_second: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_qos: 2,
            retain_available: true,
            max_packet_size: PROTOCOL_MAX_PACKET_SIZE,
            topic_alias_maximum: 10,
            receive_maximum: 100,
            max_keepalive: 65535,
            wildcard_subscription_available: true,
            shared_subscription_available: true,
            subscription_identifier_available: true,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            max_offline_messages: 100_000,
            max_offline_bytes: 64 << 20,
            queue_qos0_messages: false,
            pace_qos0: true,
            slow_consumer_timeout_ms: 5_000,
            slow_consumer_policy: SlowConsumerPolicy::Drop,
            connect_timeout_ms: 10_000,
            max_session_expiry_interval: u32::MAX,
            persistent_client_expiration: 0,
            allow_zero_length_clientid: true,
            max_subscriptions_per_client: 10_000,
            max_topic_levels: 128,
            max_topic_length: 65_535,
            max_sessions: 1_000_000,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 1 << 30,
            max_inbound_messages_per_second: 0,
            max_inbound_bytes_per_second: 0,
        }
    }
}

/// Deliveries a read batch defers before it enqueues them anyway, so a batch to many
/// subscribers stays bounded in memory: 4,096 × about 48 bytes (`route::read_batch`).
pub const DEFERRED_DELIVERIES: usize = 4_096;

/// Deliveries a read batch defers to one session before it enqueues them anyway: a queue that
/// crosses its bound is seen crossing it after at most this many more messages, and the
/// publisher is paced from the next packet on. Overshoot is then at most this per worker
/// thread feeding the session (plus one message per paced publisher), well inside
/// [`Limits::hard_queued_messages`]'s 1,024 of headroom; one lock per 64 messages keeps most
/// of what the read batch saves (`route::read_batch`).
pub const DEFERRED_PER_SESSION: usize = 64;

/// Most messages moved from a session's queue under one hold of its lock, so publishers
/// enqueueing to a busy subscriber are not held up for long.
pub const DRAIN_BATCH: usize = 32;

/// Deliveries read back from the store at a time for a session whose queue is on disk
/// (decision 0006): the next read is asked for when fewer than half of these wait in memory,
/// so the connection always has the next batch in hand while one is read. 256 small messages
/// is one read of a few tens of KiB, well under a millisecond, and bounds the memory a
/// draining session holds.
pub const READ_BACK_BATCH: usize = 256;

/// Authorization answers a connection caches before it empties its cache and starts over:
/// bounds a connection's memory whatever topics it uses, while a device's handful of topics
/// stays cached (`ports::access`).
pub const ACCESS_CACHE_ANSWERS: usize = 256;

/// How many times a shared-subscription message is handed on to another member of its group
/// because the member it was given to may not read it: a group none of whose members may read a
/// message must not pass it round for ever (`connection/egress.rs`).
pub const SHARED_HAND_ONS: u8 = 8;

/// Keep alive deadlines are rounded up to this granularity and swept this often, so a silent
/// client is closed between 1.5 times its keep alive and that plus one slot (`keep_alive`).
pub const KEEP_ALIVE_SWEEP: Duration = Duration::from_millis(100);

/// How far ahead a connection's keep alive is filed at most: an ended connection's entry lasts
/// at most this long, whatever its keep alive (`keep_alive`).
pub const KEEP_ALIVE_FILE_AHEAD: Duration = Duration::from_secs(10);

/// Bounds derived from the settings, each computed in one place.
impl Limits {
    /// The queue length no message goes beyond, even one a paced publisher may still add.
    /// Pacing stops each publisher after the message that found the queue full, so the
    /// overshoot is about one message per publisher; this is the safety net behind it: twice
    /// the bound, and at least 1,024 more, for many publishers at a small bound.
    pub fn hard_queued_messages(&self) -> usize {
        (2 * self.max_queued_messages).max(self.max_queued_messages + 1024)
    }

    /// The queued payload bytes no message goes beyond (0: no byte bound), for the same reason
    /// as [`Limits::hard_queued_messages`].
    pub fn hard_queued_bytes(&self) -> usize {
        2 * self.max_queued_bytes
    }

    /// Where a congested queue lets its paced publishers go again: half the bound, so they are
    /// not released and stopped again on every message.
    pub fn low_water(&self) -> usize {
        self.max_queued_messages / 2
    }

    /// The outbound in-flight window of a client with Receive Maximum `client_maximum`.
    pub fn outbound_window(&self, client_maximum: u16) -> usize {
        usize::from(client_maximum.min(self.max_inflight_messages))
    }

    /// How long a paced publisher waits for a subscriber that takes nothing.
    pub fn slow_consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_consumer_timeout_ms)
    }

    /// How long a new connection may take to send CONNECT.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// What to do with a connected subscriber that stays behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Drop (and count) messages beyond the queue's hard bound.
    #[default]
    Drop,
    /// Disconnect the subscriber (v5: DISCONNECT 0x97).
    Disconnect,
}

/// A setting that is out of its valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct LimitError {
    /// The setting's key.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Limits {
    /// The Session Expiry Interval granted for `requested`: at most
    /// `max_session_expiry_interval`, and "never" capped at `persistent_client_expiration` (when
    /// set) unless the session is the broker's `own`.
    pub(crate) fn granted_expiry(&self, requested: u32, own: bool) -> u32 {
        let granted = requested.min(self.max_session_expiry_interval);
        if requested == u32::MAX && !own && self.persistent_client_expiration > 0 {
            granted.min(self.persistent_client_expiration)
        } else {
            granted
        }
    }

    /// Checks ranges that the types do not express.
    pub fn validate(&self) -> Result<(), LimitError> {
        let fail = |key, problem| Err(LimitError { key, problem });
        if self.max_qos > 2 {
            return fail("max_qos", "must be 0, 1 or 2");
        }
        if self.max_packet_size < 16 || self.max_packet_size > PROTOCOL_MAX_PACKET_SIZE {
            return fail("max_packet_size", "must be between 16 and 268435460");
        }
        if self.receive_maximum == 0 {
            return fail("receive_maximum", "must be at least 1");
        }
        if self.max_inflight_messages == 0 {
            return fail("max_inflight_messages", "must be at least 1");
        }
        if self.max_queued_messages == 0 {
            return fail("max_queued_messages", "must be at least 1");
        }
        if self.max_offline_messages == 0 {
            return fail("max_offline_messages", "must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            return fail("connect_timeout_ms", "must be at least 1");
        }
        if self.max_topic_levels == 0 {
            return fail("max_topic_levels", "must be at least 1");
        }
        if self.max_topic_length == 0 || self.max_topic_length > 65_535 {
            return fail("max_topic_length", "must be between 1 and 65535");
        }
        if self.max_sessions == 0 {
            return fail("max_sessions", "must be at least 1");
        }
        if self.max_retained_messages == 0 {
            return fail(
                "max_retained_messages",
                "must be at least 1 (retain_available = false turns retained messages off)",
            );
        }
        Ok(())
    }
}
