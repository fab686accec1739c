//! The core's ports: what the server plugs in to decide, keep or carry what the core itself does
//! not (DESIGN.md, "The house as it grows").
//!
//! - [`durability`]: a store for sessions, queued messages and retained messages.
//! - [`auth`]: who a connecting client is ([`auth::Authenticator`]), decided before CONNACK.
//! - [`access`]: what a client may publish, subscribe to and receive ([`access::Authorizer`]).
//! - [`egress`]: a session's messages taken as values by a sink that is not an MQTT socket.
//! - [`remote`]: a routing target other than a local session.
//! - [`fabric`]: the other nodes of a cluster.

pub mod access;
pub mod auth;
pub mod durability;
pub mod egress;
pub mod fabric;
pub mod remote;
