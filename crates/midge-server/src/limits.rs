//! The server's own bounds and intervals, each named once with its reason (the broker core's
//! are in `midge_broker::Limits`; the adaptive read sizes are in `read_size`).

use std::time::Duration;

/// Bytes pending to a client above which its connection stops producing more for it: it stops
/// reading the client and draining its queue, so a client that does not read cannot grow the
/// broker's memory; its messages wait in its bounded session queue instead.
pub const WRITE_HIGH_WATER: usize = 256 * 1024;

/// How long a closing connection may take to flush its last packets (DISCONNECT, CONNACK): a
/// client that stopped reading must not hold its task.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a closed connection's input is still read and discarded after its last packet
/// (DISCONNECT, CONNACK) and the end of its stream were sent, so that closing it does not
/// reset it and make the client's stack discard the reason it was sent (`conn/close.rs`).
/// Ends as soon as the client closes its side, as clients do on reading a DISCONNECT; bounded
/// so a client that never does holds its connection this long at most.
pub const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes a WebSocket upgrade request may take, request line and headers: browsers
/// send well under 2 KiB. A client that sends more before the blank line is answered 431, so a
/// connection that never finishes its request costs at most this (within the connect timeout).
pub const WEBSOCKET_MAX_REQUEST: usize = 8 * 1024;

/// The most header lines a WebSocket upgrade request may have (browsers send about 15); more
/// is answered 431.
pub const WEBSOCKET_MAX_HEADERS: usize = 64;

/// Reads one WebSocket read makes while they bring no data (only frame headers and control
/// frames) before it gives way, so that a client sending nothing but pings cannot hold its
/// task in one call.
pub const WEBSOCKET_READS_WITHOUT_DATA: usize = 8;

/// How long accepting pauses after an error (out of file descriptors and the like), so that a
/// persistent error does not spin the accept loop.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often expiries and delayed wills are checked; their resolution is one second in the
/// protocol, so a finer tick buys nothing.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// How often the store's size is measured against `[store] max_size_mb`: a walk of its
/// directory (a few dozen files), off the async workers.
pub const STORE_SIZE_CHECK: Duration = Duration::from_secs(5);

/// How long shutdown waits for connections to say goodbye before the store is closed anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// File descriptors kept back from connections when `[connections] max_connections` is left
/// out: the store's files (a few dozen), the listeners, the log, and the blocking threads'
/// reads, with room to spare.
pub const FILE_RESERVE: usize = 256;

/// Source addresses `[connections] max_connection_rate` tracks at most. An address whose bucket
/// is full again is forgotten; when this many are in use at once, addresses beyond them are not
/// limited (counted as untracked) rather than the map growing: 65,536 × about 64 bytes.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// The largest datagram an MQTT-SN listener sends or takes: the most a UDP datagram over IPv4
/// carries (65,535 less the IP and UDP headers). A message for a client whose data does not fit
/// is dropped and counted, as one over a client's Maximum Packet Size is on MQTT.
pub const SN_MAX_DATAGRAM: usize = 65_507;

/// Messages an MQTT-SN client's task takes from its session ahead of sending them: one drain
/// batch's worth. Every one of them but the first waits while a message awaits the client's
/// answer (one at a time, MQTT-SN 1.2 section 6.13), so the rest stay in the session's
/// bounded queue, where pacing and the slow-consumer rules see them.
pub const SN_PENDING: usize = 32;

/// Datagrams from one MQTT-SN client that wait for its task: a client that sends faster than
/// its task handles them has the rest dropped and counted, as a lossy network would; its
/// retransmissions (QoS 1 and 2, REGISTER, SUBSCRIBE) bring them again.
pub const SN_INBOX: usize = 16;

/// Normal topic ids one MQTT-SN client holds (its REGISTERs, its subscriptions to topic names,
/// and the topics the gateway REGISTERed to it for wildcard subscriptions): about 100 bytes
/// each, so at most about 100 KiB a client. Beyond it a REGISTER is refused with "congestion",
/// and a message on a new topic for the client is dropped and counted.
pub const SN_TOPIC_IDS: usize = 1_024;

/// GWINFOs one MQTT-SN socket sends a second at most, in answer to SEARCHGW (a token bucket
/// with a burst of as many). SEARCHGW needs no connection, so its source address may be forged:
/// a GWINFO is never longer than the SEARCHGW it answers (3 octets each, encapsulated alike),
/// so the gateway amplifies nothing, and this bound keeps it from reflecting a flood at a
/// victim's address all the same. One bucket for the socket, not one per address: per-address
/// state would grow with forged addresses. Clients search rarely (at start, or after losing
/// their gateway) and retry with a growing delay (6.1), so 10 a second serves a busy network;
/// the SEARCHGWs beyond it are dropped and counted.
pub const SN_GWINFO_PER_SECOND: u64 = 10;

/// The most bytes a PROXY protocol v1 header may take, CRLF included: the specification's own
/// bound (the longest TCP6 line), so a receiver can read it into a fixed buffer. A listener with
/// `enable_proxy_protocol = 1` refuses a connection whose first 107 bytes hold no CRLF.
pub const PROXY_V1_MAX_HEADER: usize = 107;

/// The most bytes a PROXY protocol v2 header may take, its 16-byte start and what its length
/// announces (addresses and TLVs). The format allows 16 + 65,535; HAProxy's largest, with
/// every TLV it sends (SSL details, the unique id of at most 128 bytes, the authority, ALPN),
/// stays well under 1 KiB, so 4 KiB leaves room for a load balancer's own TLVs while a
/// connection that announces more is refused before its bytes are read.
pub const PROXY_V2_MAX_HEADER: usize = 4 * 1024;

/// Bytes of events an HTTP subscriber's stream holds ahead of its socket: what the session's
/// drain puts in one go, and (with [`HTTP_SSE_CHUNKS`]) what waits for a slow reader. Beyond it
/// the session is not drained, so its own queue bound, pacing and slow-consumer policy apply
/// to the reader as to an MQTT subscriber.
pub const HTTP_SSE_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks of events waiting between an HTTP subscriber's session and its socket (hyper takes
/// one at a time): with [`HTTP_SSE_CHUNK_BYTES`], at most 256 KiB a reader.
pub const HTTP_SSE_CHUNKS: usize = 4;

/// How often an idle event stream is sent a comment (`: keep-alive`): under the 30 to 60 s
/// after which proxies and load balancers commonly close an idle connection, and often enough
/// that a reader that has gone is noticed (its write fails) within it.
pub const HTTP_SSE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Events of a persistent HTTP subscriber's session kept after they were sent, so that a
/// reader that reconnects with a `Last-Event-ID` behind them gets them again (what it had not
/// read when its connection dropped): a few seconds of a busy stream. Also bounded by
/// [`HTTP_SSE_REPLAY_BYTES`].
pub const HTTP_SSE_REPLAY_EVENTS: usize = 256;

/// Bytes of kept events per session (see [`HTTP_SSE_REPLAY_EVENTS`]).
pub const HTTP_SSE_REPLAY_BYTES: usize = 64 * 1024;

/// Persistent HTTP subscribers whose event ids and kept events a listener remembers, so at most
/// 64 MiB of kept events (with [`HTTP_SSE_REPLAY_BYTES`]). One more forgets another's: its ids
/// then go on after the client's `Last-Event-ID`, with nothing to replay.
pub const HTTP_SSE_SESSIONS: usize = 1_000;
