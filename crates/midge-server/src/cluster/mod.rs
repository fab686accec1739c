//! Several Midge nodes as one broker, on NATS (issue 17; decision 0010). Built so far: the
//! mapping of MQTT topics and filters to NATS subjects (`subject`), without I/O.

pub mod subject;
