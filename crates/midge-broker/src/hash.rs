//! The hasher of the maps keyed by what clients send (client ids, topics, packet ids).
//!
//! Those keys are chosen by clients, so the hash must be seeded with a secret, or a client could
//! pick keys that collide. `ahash::RandomState` carries its seed in every map: 32 bytes, and an
//! idle session has two such maps and its connection a third. One seed per process is as secret
//! to clients and costs nothing per map.

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// Builds hashers from one random seed drawn once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSeeded;

impl BuildHasher for ProcessSeeded {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> Self::Hasher {
        static SEED: OnceLock<ahash::RandomState> = OnceLock::new();
        SEED.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_fixed_for_the_process_and_costs_no_space() {
        assert_eq!(std::mem::size_of::<ProcessSeeded>(), 0);
        assert_eq!(ProcessSeeded.hash_one("client-1"), ProcessSeeded.hash_one("client-1"));
        assert_ne!(ProcessSeeded.hash_one("client-1"), ProcessSeeded.hash_one("client-2"));
    }
}
