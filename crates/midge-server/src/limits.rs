//! The server's own bounds, each named once with its reason (the broker core's are in
//! `midge_broker::Limits`).

use std::time::Duration;

/// Bytes pending to a client above which its connection stops producing more for it: it stops
/// reading the client and draining its queue, so a client that does not read cannot grow the
/// broker's memory; its messages wait in its bounded session queue instead.
pub const WRITE_HIGH_WATER: usize = 256 * 1024;

/// How long a closing connection may take to flush its last packets (DISCONNECT, CONNACK): a
/// client that stopped reading must not hold its task.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
