//! Midge's network side: everything with a socket or a timer.
//!
//! # Layout
//! - [`config`]: the TOML configuration and the no-config defaults.
//! - [`bind`]: a listener's `bind` address: its forms, and resolving host names.
//! - [`listener`]: binding listeners, accepting connections under their limit, and the handle
//!   of a running listener.
//! - [`connection`]: the per-connection driver task.
//! - [`read_size`]: how much buffer each read is offered.
//! - [`server`]: starting everything, the housekeeping timer, and shutdown.
#![deny(missing_docs)]

pub mod bind;
pub mod config;
pub mod connection;
pub mod listener;
pub mod read_size;
pub mod server;

pub use config::{ListenerConfig, ServerConfig};
pub use listener::{ListenerCounters, ListenerHandle};
pub use server::{Server, ServerError};
