//! Wire-level tests of the codec through its public API, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! # Layout
//! - `support`: helpers that frame, decode and encode raw bytes; `samples`: one valid packet
//!   of each kind per version.
//! - `framing`: fixed header, size limit, incomplete input, zero-copy.
//! - `connect`, `publish`, `subscribe`, `control`: each packet kind, with exact bytes and every
//!   validation rule named by its normative statement id.
//! - `properties`: v5 property rules.
//! - `fanout`: `encode_publish` and `publish_len`.
//! - `roundtrip`: property tests: arbitrary packets survive encode and decode, and arbitrary
//!   bytes never make the decoder panic.

mod connect;
mod control;
mod fanout;
mod framing;
mod properties;
mod publish;
mod roundtrip;
mod samples;
mod strategies;
mod subscribe;
mod support;
