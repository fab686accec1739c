//! One client connection's protocol state, without I/O: the server feeds it decoded packets
//! and a clock value, and it writes the response bytes into the connection's write buffer.
//!
//! # Layout
//! - `state`: the connection's state and what its operations tell the server.
//! - `connect`: the connection's start, from an authenticator's verdict.
//! - `packets`: one handler per packet kind; `publish`: inbound PUBLISH.
//! - `egress`: messages out, through an [`crate::ports::egress::Egress`] (MQTT's first).
//! - `read_back`: a spilled session's queue read back from the store in batches.
//! - `close`: the will, and detaching from the session.

mod close;
mod connect;
mod egress;
mod packets;
mod publish;
mod read_back;
mod state;

pub use connect::{ConnectContext, ConnectOutcome};
pub use read_back::{ReadBack, ReadBackBatch};
pub use state::{ClientConnection, CloseKind, Flow, Violation};
