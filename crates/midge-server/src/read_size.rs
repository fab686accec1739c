//! How much buffer to offer each read: adaptive, as NATS's read loop does (PEERS.md §2).
//!
//! A fixed large read buffer costs every connection that much whenever a few bytes arrive, and
//! the freed buffers fragment the heap: with 4 KiB per read, idle connections that send a
//! PINGREQ now and then cost several KiB each in resident memory. So the offer starts small,
//! doubles whenever a read fills it (a busy publisher soon reads 64 KiB at a time), and halves
//! after a run of reads that used less than half. A frame that has announced a large length
//! gets room as its bytes arrive, at most as much again as has arrived: a client that announces
//! 256 MB and sends nothing costs a read's worth, not the 256 MB (hostile clients, issue 13).

use midge_codec::check_frame;

/// The first offer, and the smallest: a CONNECT, SUBSCRIBE or small PUBLISH fits.
pub const MIN_READ: usize = 256;
/// The largest offer: about 700 small PUBLISHes per read, as in NATS.
pub const MAX_READ: usize = 64 * 1024;
/// Short reads in a row before the offer halves.
const SHORT_READS_TO_SHRINK: u8 = 4;

/// The read size of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ReadSize {
    /// At most [`MAX_READ`]: 32 bits keep this in every connection at 8 bytes.
    offer: u32,
    short_reads: u8,
}

impl Default for ReadSize {
    fn default() -> Self {
        Self { offer: MIN_READ as u32, short_reads: 0 }
    }
}

impl ReadSize {
    /// How many free bytes to have in `buffered` before the next read: the current offer, or
    /// more of a frame whose header has arrived (bounded by `max_packet_size`, which the
    /// decoder enforces anyway): the rest of it, but no more than has arrived already, so the
    /// buffer grows by doubling with what the client really sends.
    pub fn room_for_next_read(&self, buffered: &[u8], max_packet_size: usize) -> usize {
        match check_frame(buffered) {
            Ok(Some(header)) if header.total_len() <= max_packet_size => {
                let rest = header.total_len().saturating_sub(buffered.len());
                rest.min(buffered.len().max(MAX_READ)).max(self.offer as usize)
            }
            _ => self.offer as usize,
        }
    }

    /// Adapts the offer to a read of `got` bytes into `offered` free bytes.
    pub fn observe(&mut self, got: usize, offered: usize) {
        if got >= offered {
            self.offer = (self.offer * 2).min(MAX_READ as u32);
            self.short_reads = 0;
        } else if got < offered / 2 {
            self.short_reads += 1;
            if self.short_reads >= SHORT_READS_TO_SHRINK {
                self.offer = (self.offer / 2).max(MIN_READ as u32);
                self.short_reads = 0;
            }
        } else {
            self.short_reads = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_reads_fill_the_buffer_and_shrinks_after_short_reads() {
        let mut size = ReadSize::default();
        assert_eq!(size.room_for_next_read(&[], 1 << 20), MIN_READ);
        for _ in 0..20 {
            let offered = size.offer as usize;
            size.observe(offered, offered);
        }
        assert_eq!(size.offer as usize, MAX_READ);
        for _ in 0..(SHORT_READS_TO_SHRINK as usize * 20) {
            size.observe(2, size.offer as usize);
        }
        assert_eq!(size.offer as usize, MIN_READ);
    }

    #[test]
    fn a_frame_with_a_known_length_gets_room_for_all_of_it() {
        let size = ReadSize::default();
        // PUBLISH header announcing 10,000 bytes (remaining length 0x90 0x4E), 3 bytes in.
        let partial = [0x30, 0x90, 0x4E];
        assert_eq!(size.room_for_next_read(&partial, 1 << 20), 10_003 - 3);
        // Beyond the maximum packet size the decoder will refuse it: no special room.
        assert_eq!(size.room_for_next_read(&partial, 1000), MIN_READ);
    }

    #[test]
    fn a_huge_announced_frame_gets_room_only_as_its_bytes_arrive() {
        let size = ReadSize::default();
        // PUBLISH announcing the protocol's largest remaining length, 268,435,455.
        let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
        let max = 268_435_455 + 5;
        assert_eq!(size.room_for_next_read(&header, max), MAX_READ, "a read's worth, not 256 MB");
        let mut arrived = header.to_vec();
        arrived.resize(1 << 20, 0);
        assert_eq!(size.room_for_next_read(&arrived, max), 1 << 20, "as much again as has arrived");
    }
}
