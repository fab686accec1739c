//! An async MQTT client for 3.1, 3.1.1 and 5.0, built on `midge-codec`: the library behind
//! `midge pub`, `midge sub` and `midge shell`, and later the bridges and `midge bench`.
//!
//! ```no_run
//! # async fn example() -> Result<(), midge_client::Error> {
//! use midge_client::{Client, ConnectOptions, Event};
//! use midge_client::codec::{QoS, Subscription, SubscriptionOptions, TopicFilter, TopicName};
//!
//! let mut client = Client::connect(ConnectOptions::new("127.0.0.1", 1883)).await?;
//! let filter = TopicFilter::new("sensors/#").unwrap();
//! let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
//! client.subscribe(vec![Subscription { filter, options }], Default::default())?;
//! client.publish(&TopicName::new("sensors/1").unwrap(), "21.5", QoS::AtLeastOnce, false)?;
//! while let Ok(event) = client.poll().await {
//!     if let Event::Message(message) = event {
//!         println!("{} {:?}", message.topic, message.payload);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`options`]: [`ConnectOptions`], everything CONNECT carries plus the client's limits and
//!   its reconnection [`Backoff`].
//! - `transport`: how bytes reach the broker ([`Transport`]: TCP today; TLS and WebSocket are
//!   new variants behind the same API).
//! - `session`: the protocol state machine without I/O — packet identifiers, the in-flight
//!   window and its queue, resending on reconnect, inbound QoS 2 and topic aliases — producing
//!   bytes to write and [`Event`]s.
//! - `client`: [`Client`], the async driver that owns the socket, the buffers and the keep alive
//!   timer. No background task: [`Client::poll`] does the I/O, so writes are batched and a
//!   message is never copied through a channel.
//! - [`error`]: [`Error`], which carries what the broker answered (reason code and string).
//!
//! Private: `packet_ids` (identifier allocation and sets, a bit per identifier).
#![deny(missing_docs)]

mod client;
pub mod error;
pub mod options;
mod packet_ids;
mod session;
pub mod tls;
mod transport;
mod websocket;

pub use client::Client;
pub use error::Error;
pub use options::{Backoff, ConnectOptions, ServerAddress, DEFAULT_PORT, MAX_PACKET_SIZE};
pub use session::{Event, Trace, Tracer};
pub use tls::{Tls, TlsError, TlsOptions, TlsVersion};
pub use transport::Transport;

/// The codec's packet types, re-exported so users need no second dependency.
pub use midge_codec as codec;
