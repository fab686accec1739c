//! The header every bench message starts with, so a subscriber can count losses and
//! duplicates per publisher and measure end-to-end latency: publisher index (u32), sequence
//! number (u32, from 0), send time (u64, nanoseconds since the bench started), all little
//! endian. The rest of the payload, up to `--size`, is zeros.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header; the smallest `--size`.
pub const HEADER_LEN: usize = 16;

/// Capacity of a publisher's payload arena: payloads are cut from it, so a 64-byte message
/// costs no allocation of its own.
const ARENA: usize = 64 * 1024;

/// What a received payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Index of the publisher in the run.
    pub publisher: u32,
    /// Its sequence number, counting from 0.
    pub seq: u32,
    /// When it was published, in nanoseconds since [`now_ns`]'s origin.
    pub sent_ns: u64,
}

/// Nanoseconds since the bench's first call: one monotonic clock for every thread, so send
/// and receive times compare.
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Builds payloads of one size for one publisher, from a shared arena.
pub struct PayloadWriter {
    publisher: u32,
    size: usize,
    arena: BytesMut,
}

impl PayloadWriter {
    /// Payloads of `size` bytes (at least [`HEADER_LEN`]) from `publisher`.
    pub fn new(publisher: u32, size: usize) -> Self {
        let size = size.max(HEADER_LEN);
        Self { publisher, size, arena: BytesMut::with_capacity(ARENA.max(size)) }
    }

    /// The payload of message `seq`, stamped with the current time.
    pub fn next(&mut self, seq: u32) -> Bytes {
        if self.arena.capacity() < self.size {
            self.arena.reserve(ARENA.max(self.size));
        }
        self.arena.put_u32_le(self.publisher);
        self.arena.put_u32_le(seq);
        self.arena.put_u64_le(now_ns());
        self.arena.put_bytes(0, self.size - HEADER_LEN);
        self.arena.split().freeze()
    }
}

/// The header of a bench payload; `None` for anything shorter.
pub fn parse(payload: &[u8]) -> Option<Header> {
    let header: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    let (publisher, rest) = header.split_at(4);
    let (seq, sent) = rest.split_at(4);
    Some(Header {
        publisher: u32::from_le_bytes(publisher.try_into().ok()?),
        seq: u32::from_le_bytes(seq.try_into().ok()?),
        sent_ns: u64::from_le_bytes(sent.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_have_the_size_asked() {
        let mut writer = PayloadWriter::new(7, 64);
        let before = now_ns();
        let first = writer.next(0);
        let second = writer.next(1);
        assert_eq!(first.len(), 64);
        let header = parse(&second).unwrap();
        assert_eq!((header.publisher, header.seq), (7, 1));
        assert!(header.sent_ns >= before && header.sent_ns <= now_ns());
        assert_eq!(parse(&first).unwrap().seq, 0);
        assert!(second[HEADER_LEN..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn the_arena_is_refilled_and_sizes_below_the_header_are_raised() {
        let mut writer = PayloadWriter::new(1, 4);
        for seq in 0..10_000 {
            assert_eq!(parse(&writer.next(seq)).unwrap().seq, seq);
        }
        assert_eq!(writer.next(0).len(), HEADER_LEN);
        assert_eq!(parse(b"short"), None);
    }
}
