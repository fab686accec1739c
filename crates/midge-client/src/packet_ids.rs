//! Packet identifiers in use, one bit each: the client's side of MQTT-2.3.1-2 (a new
//! SUBSCRIBE, UNSUBSCRIBE or QoS > 0 PUBLISH takes an identifier not currently in use) and of
//! duplicate detection for inbound QoS 2 (an identifier awaiting PUBREL).

use midge_codec::PacketId;

/// Words of 64 bits covering identifiers 0..=65535 (0 is never used).
const WORDS: usize = 65536 / 64;

/// A set of packet identifiers: 8 KiB, allocated once per client, so marking and clearing an
/// identifier never allocates.
pub(crate) struct PacketIdSet {
    /// Bit `id % 64` of word `id / 64` is set when `id` is in the set.
    bits: Box<[u64; WORDS]>,
    /// How many identifiers are in the set.
    len: usize,
}

impl PacketIdSet {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self { bits: Box::new([0; WORDS]), len: 0 }
    }

    /// Whether `id` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: PacketId) -> bool {
        let id = usize::from(id.get());
        self.bits[id / 64] & (1 << (id % 64)) != 0
    }

    /// Adds `id`; returns false if it was already there.
    pub(crate) fn insert(&mut self, id: PacketId) -> bool {
        let id = usize::from(id.get());
        let word = &mut self.bits[id / 64];
        let bit = 1 << (id % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.len += 1;
        true
    }

    /// Removes `id`; returns false if it was not there.
    pub(crate) fn remove(&mut self, id: PacketId) -> bool {
        let id = usize::from(id.get());
        let word = &mut self.bits[id / 64];
        let bit = 1 << (id % 64);
        if *word & bit == 0 {
            return false;
        }
        *word &= !bit;
        self.len -= 1;
        true
    }

    /// How many identifiers are in the set.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Empties the set.
    pub(crate) fn clear(&mut self) {
        self.bits.fill(0);
        self.len = 0;
    }
}

/// Hands out identifiers not in use, in increasing order with wrap-around, so an identifier
/// just released is not reused at once (a late acknowledgement for it is then ignored, not
/// mistaken for the new packet's).
pub(crate) struct PacketIdAllocator {
    /// Identifiers in use.
    used: PacketIdSet,
    /// Where the next search starts.
    next: u16,
}

impl PacketIdAllocator {
    /// No identifier in use; the first one handed out is 1.
    pub(crate) fn new() -> Self {
        Self { used: PacketIdSet::new(), next: 1 }
    }

    /// An identifier not in use, now marked used; `None` when all 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<PacketId> {
        if self.used.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let candidate = PacketId::new(self.next);
            self.next = self.next.checked_add(1).unwrap_or(1);
            if let Some(id) = candidate {
                if self.used.insert(id) {
                    return Some(id);
                }
            }
        }
    }

    /// Marks `id` free again.
    pub(crate) fn release(&mut self, id: PacketId) {
        self.used.remove(id);
    }

    /// How many identifiers are in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    #[test]
    fn allocates_in_order_skipping_ids_in_use_and_wraps_past_65535() {
        let mut ids = PacketIdAllocator::new();
        assert_eq!(ids.allocate(), Some(id(1)));
        assert_eq!(ids.allocate(), Some(id(2)));
        ids.release(id(1));
        // Not reused at once: the search goes on from 3.
        assert_eq!(ids.allocate(), Some(id(3)));
        ids.next = u16::MAX;
        assert_eq!(ids.allocate(), Some(id(u16::MAX)));
        // 0 is skipped (MQTT-2.3.1-1), 1 is free again, 2 and 3 are in use.
        assert_eq!(ids.allocate(), Some(id(1)));
        assert_eq!(ids.allocate(), Some(id(4)));
        assert_eq!(ids.in_use(), 5);
    }

    #[test]
    fn exhaustion_is_reported_not_looped_on() {
        let mut ids = PacketIdAllocator::new();
        for expected in 1..=u16::MAX {
            assert_eq!(ids.allocate(), Some(id(expected)));
        }
        assert_eq!(ids.allocate(), None);
        ids.release(id(300));
        assert_eq!(ids.allocate(), Some(id(300)));
    }

    #[test]
    fn set_counts_and_clears() {
        let mut set = PacketIdSet::new();
        assert!(set.insert(id(7)));
        assert!(!set.insert(id(7)));
        assert!(set.contains(id(7)));
        assert!(!set.contains(id(8)));
        assert_eq!(set.len(), 1);
        assert!(set.remove(id(7)));
        assert!(!set.remove(id(7)));
        set.insert(id(65535));
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(!set.contains(id(65535)));
    }
}
