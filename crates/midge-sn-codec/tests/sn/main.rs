//! Wire-level tests of the MQTT-SN codec through its public API, named by the section of the
//! MQTT-SN 1.2 specification they check.
//!
//! # Layout
//! - `support`: helpers that build, decode and encode raw datagrams, and the canonical form the
//!   encoder gives a decoded datagram; `samples`: one valid datagram per message type, also the
//!   fuzz seed corpus; `strategies`: arbitrary valid messages.
//! - `messages`: every message of 5.4 and the Encapsulated message of 5.5, as exact octets
//!   laid out as the specification's tables, decoded and encoded back.
//! - `header`: the 1- and 3-octet Length field (5.2.1).
//! - `flags`: every value of the Flags octet (5.3.4) in every message that has one.
//! - `errors`: every decode and encode error.
//! - `roundtrip`: property tests: any message survives encoding and decoding, and any octets
//!   decode to a message or an error without a panic.

mod errors;
mod flags;
mod header;
mod messages;
mod roundtrip;
mod samples;
mod strategies;
mod support;
