//! Midge's network side: everything with a socket or a timer.
//!
//! # Layout
//! - [`config`]: the TOML configuration and the no-config defaults; `[mqtt]` becomes the core's
//!   `Limits`.
//! - [`auth`]: a listener's security (who may connect, what its clients may do).
//! - [`bind`]: a listener's `bind` address: its forms, and resolving host names.
//! - [`listener`]: binding listeners, accepting connections under their limit, and the handle
//!   of a running listener.
//! - [`gate`]: the connection limits every listener shares (`[connections]`).
//! - [`proxy_header`]: the PROXY protocol header (v1, v2) a load balancer sends first, checked
//!   without I/O.
//! - [`rate`]: token buckets for the rate limits.
//! - [`transport`]: what a connection's bytes travel over (TCP, TLS, WebSocket over either).
//! - [`tls`]: a TLS listener's certificates, keys, CAs and CRLs, loaded into rustls.
//! - [`conn`]: the per-connection driver task: CONNECT phase, connected phase, held
//!   acknowledgements, pacing.
//! - `sn`: the MQTT-SN 1.2 gateway of a `protocol = "mqtt-sn"` listener: its UDP reader, and
//!   a task per client that drives a session of the broker.
//! - [`http`]: the HTTP API of a `protocol = "http"` listener: publish, subscribe as
//!   server-sent events, health; its clients are sessions of the broker.
//! - [`read_size`]: how much buffer each read is offered.
//! - [`store`]: the embedded store behind the core's durability port.
//! - [`sys`]: the `$SYS` topics, published every `[sys] interval` seconds.
//! - [`metrics`]: the same figures and more for Prometheus, served as an HTTP listener's
//!   `/metrics`.
//! - [`roster`]: a listener's connected clients, for a reload that removes it.
//! - [`limits`]: the server's own bounds.
//! - [`reload`]: what a reload changes (old config and new -> a plan), without I/O.
//! - [`server`]: starting everything, the housekeeping timer, and shutdown; `reloader`: a
//!   reload carried out (the config read and checked whole, then the plan applied).
#![deny(missing_docs)]

pub mod auth;
pub mod bind;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod gate;
pub mod http;
pub mod interface;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod proxy_header;
pub mod rate;
pub mod read_size;
pub mod reload;
mod reloader;
pub mod roster;
pub mod server;
mod sn;
pub mod store;
pub mod sys;
pub mod tls;
pub mod transport;

#[cfg(test)]
mod test_support;

pub use config::{ListenerConfig, ServerConfig};
pub use listener::{ListenerCounters, ListenerHandle};
pub use server::{LogControl, ReloadError, ReloadOptions, ReloadReport, ReloadRequests, Reloader, Server, ServerError};
pub use sn::SnDrops;

/// An error and its causes on one line, as `midge serve` prints a startup error: for errors
/// that are logged rather than returned to the binary's edge.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    text
}
