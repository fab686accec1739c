//! The input of the `core` target: a broker setup and a sequence of operations, built by
//! `arbitrary` from the fuzzer's bytes, and written back to bytes by [`Encode`] for the seed
//! corpus (`tests/seeds.rs`). Client, topic and filter numbers are taken modulo the target's
//! tables, so every byte value means something.

use arbitrary::Arbitrary;

use crate::encode::{variant, Encode};

/// One run: how the broker is set up, then what happens.
#[derive(Arbitrary, Debug, PartialEq, Eq)]
pub struct Input {
    pub setup: Setup,
    pub ops: Vec<Op>,
}

/// The broker's settings that change its paths; the bounds themselves are small and fixed.
#[derive(Arbitrary, Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// A store (in memory) with offline queues in it, or none.
    pub store: bool,
    pub pace_qos0: bool,
    pub queue_qos0_messages: bool,
    /// `max_offline_messages` is this modulo 24, plus 1.
    pub max_offline: u8,
    /// A byte bound of 64 on queues (and 256 offline), or none.
    pub byte_bounds: bool,
    /// `max_session_expiry_interval` of 30 s, or none.
    pub short_expiry: bool,
}

/// One thing that happens: a client sends something, its connection drops, time passes, the
/// broker restarts.
#[derive(Arbitrary, Debug, PartialEq, Eq)]
pub enum Op {
    Connect {
        client: u8,
        v5: bool,
        clean: bool,
        expiry: Expiry,
        keep_alive: bool,
        will: Option<WillSpec>,
        /// A v5 Receive Maximum of this modulo 8, plus 1.
        receive_maximum: Option<u8>,
        /// What the connection this one takes over does before it sees it was taken over.
        linger: Option<Linger>,
    },
    /// One SUBSCRIBE per (filter, QoS, No Local), so each has its own Subscription Identifier.
    Subscribe {
        client: u8,
        filters: Vec<(u8, u8, bool)>,
    },
    Unsubscribe {
        client: u8,
        filters: Vec<u8>,
    },
    Publish {
        client: u8,
        topic: u8,
        qos: u8,
        retain: bool,
        /// A v5 Message Expiry Interval of this modulo 30, plus 1, seconds.
        expiry: Option<u8>,
        /// An empty payload (clears a retained message).
        empty: bool,
    },
    /// `count` messages in one read, as a fast publisher's socket gives them.
    Burst {
        client: u8,
        topic: u8,
        qos: u8,
        count: u8,
    },
    /// The client acknowledges one message it was sent, in the step it is at.
    Ack {
        client: u8,
        which: u8,
    },
    /// The client releases (PUBREL) one of its QoS 2 messages.
    Release {
        client: u8,
        which: u8,
    },
    /// The client resends one of its unreleased QoS 2 messages with DUP set.
    Resend {
        client: u8,
        which: u8,
    },
    /// An acknowledgement for any packet id (0 is sent as 1).
    Bogus {
        client: u8,
        kind: AckKind,
        id: u16,
    },
    /// The client takes what is queued for it; with `ack`, acknowledging everything as it comes.
    Drain {
        client: u8,
        ack: bool,
    },
    Ping {
        client: u8,
    },
    Disconnect {
        client: u8,
        with_will: bool,
        expiry: Option<Expiry>,
    },
    /// The network connection drops.
    Drop {
        client: u8,
    },
    Advance(Step),
    /// The slow-consumer policy applies to the subscribers the last publish was paced for.
    Shed {
        disconnect: bool,
    },
    StoreFull(bool),
    /// The broker stops and starts again from its store (without a store: nothing).
    Restart,
}

/// A Session Expiry Interval.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Zero,
    Short,
    Long,
    Never,
}

/// A will.
#[derive(Arbitrary, Debug, PartialEq, Eq)]
pub struct WillSpec {
    pub topic: u8,
    pub qos: u8,
    pub retain: bool,
    /// A v5 Will Delay Interval of this modulo 40 seconds.
    pub delay: Option<u8>,
}

/// What a connection that was taken over does before it notices.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    Drain,
    AckAll,
    Publish { topic: u8, qos: u8 },
}

/// An acknowledgement packet a client sends.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// How far the clock moves.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One keep-alive sweep.
    Tick,
    Second,
    /// Past a keep alive of 10 s (15 s is when it runs out).
    KeepAlive,
    /// Past the short session expiry and the short Message Expiry Intervals.
    HalfMinute,
    /// Past the long session expiry.
    Hour,
}

impl Step {
    /// The time it moves the clock by.
    pub fn duration(self) -> std::time::Duration {
        let millis = match self {
            Step::Tick => 100,
            Step::Second => 1_000,
            Step::KeepAlive => 16_000,
            Step::HalfMinute => 31_000,
            Step::Hour => 3_601_000,
        };
        std::time::Duration::from_millis(millis)
    }
}

impl Expiry {
    /// The interval in seconds (`u32::MAX`: never).
    pub fn seconds(self) -> u32 {
        match self {
            Expiry::Zero => 0,
            Expiry::Short => 5,
            Expiry::Long => 3600,
            Expiry::Never => u32::MAX,
        }
    }
}

impl Encode for Input {
    fn encode(&self, out: &mut Vec<u8>) {
        self.setup.encode(out);
        self.ops.encode(out);
    }
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        let Setup { store, pace_qos0, queue_qos0_messages, max_offline, byte_bounds, short_expiry } = self;
        (store, pace_qos0, queue_qos0_messages).encode(out);
        (max_offline, byte_bounds, short_expiry).encode(out);
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 17;
        match self {
            Op::Connect { client, v5, clean, expiry, keep_alive, will, receive_maximum, linger } => {
                variant(out, 0, N);
                (client, v5, clean).encode(out);
                (expiry, keep_alive, will).encode(out);
                (receive_maximum, linger).encode(out);
            }
            Op::Subscribe { client, filters } => {
                variant(out, 1, N);
                (client, filters).encode(out);
            }
            Op::Unsubscribe { client, filters } => {
                variant(out, 2, N);
                (client, filters).encode(out);
            }
            Op::Publish { client, topic, qos, retain, expiry, empty } => {
                variant(out, 3, N);
                (client, topic, qos).encode(out);
                (retain, expiry, empty).encode(out);
            }
            Op::Burst { client, topic, qos, count } => {
                variant(out, 4, N);
                (client, topic, qos).encode(out);
                count.encode(out);
            }
            Op::Ack { client, which } => {
                variant(out, 5, N);
                (client, which).encode(out);
            }
            Op::Release { client, which } => {
                variant(out, 6, N);
                (client, which).encode(out);
            }
            Op::Resend { client, which } => {
                variant(out, 7, N);
                (client, which).encode(out);
            }
            Op::Bogus { client, kind, id } => {
                variant(out, 8, N);
                (client, kind, id).encode(out);
            }
            Op::Drain { client, ack } => {
                variant(out, 9, N);
                (client, ack).encode(out);
            }
            Op::Ping { client } => {
                variant(out, 10, N);
                client.encode(out);
            }
            Op::Disconnect { client, with_will, expiry } => {
                variant(out, 11, N);
                (client, with_will, expiry).encode(out);
            }
            Op::Drop { client } => {
                variant(out, 12, N);
                client.encode(out);
            }
            Op::Advance(step) => {
                variant(out, 13, N);
                step.encode(out);
            }
            Op::Shed { disconnect } => {
                variant(out, 14, N);
                disconnect.encode(out);
            }
            Op::StoreFull(full) => {
                variant(out, 15, N);
                full.encode(out);
            }
            Op::Restart => variant(out, 16, N),
        }
    }
}

impl Encode for Expiry {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(out, *self as u32, 4);
    }
}

impl Encode for WillSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        (&self.topic, &self.qos, &self.retain).encode(out);
        self.delay.encode(out);
    }
}

impl Encode for Linger {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Linger::Drain => variant(out, 0, 3),
            Linger::AckAll => variant(out, 1, 3),
            Linger::Publish { topic, qos } => {
                variant(out, 2, 3);
                (topic, qos).encode(out);
            }
        }
    }
}

impl Encode for AckKind {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(out, *self as u32, 4);
    }
}

impl Encode for Step {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(out, *self as u32, 5);
    }
}
