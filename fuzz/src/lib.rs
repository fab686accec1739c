//! Pieces the fuzz targets share (the targets themselves are in `fuzz_targets/`).
//!
//! # Layout
//! - [`core_ops`]: the `core` target's input, the operations it drives the broker core with.
//! - [`durability`]: a store in memory behind the broker core's durability port, with the checks
//!   the `core` target makes of what the core wrote to it.
//! - [`encode`]: writing a target's input back to the bytes `arbitrary` reads it from, for seeds.
//! - [`store_damage`]: the `store_recovery` target's input, the damages done to a store.

pub mod core_ops;
pub mod durability;
pub mod encode;
pub mod store_damage;
