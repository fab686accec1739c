//! A message as it crosses between nodes, without I/O: the NATS payload of a routed message
//! and the value of a retained one in the key-value bucket. The topic travels as the subject
//! (or the key); the rest is this compact binary form, versioned so nodes of different
//! releases can refuse what they cannot read rather than misread it.
//!
//! ```text
//! version u8 (1) | flags u8 (QoS: bits 0-1, RETAIN: bit 2, expiry: bit 3, publisher: bit 4,
//! expiry is a Unix time: bit 5)
//! origin u64 | sequence u64 | [expiry ms u64] | [publisher u64] | properties length u32 |
//! properties | payload
//! ```
//! The publisher is the publishing session's id on its origin node, for No Local when the
//! message comes back to that node through JetStream (the durable path, `cluster::durable`).
//! The origin is the sending node's random id and the sequence its count of messages sent, so
//! a node can put back in order what arrived on several subscriptions (`link::Ordered`).
//! Properties are the v5 ones every receiver gets unchanged, in MQTT's own encoding
//! ([`midge_broker::Message::shared_properties`]). The expiry is the milliseconds left when
//! the message was sent (routed messages, so clocks need not agree) or a Unix time in
//! milliseconds (retained values and messages on the durable path, which wait in JetStream;
//! the latter say so with bit 5).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use midge_codec::QoS;

const VERSION: u8 = 1;
const RETAIN: u8 = 0b100;
const EXPIRY: u8 = 0b1000;
const PUBLISHER: u8 = 0b1_0000;
const EXPIRY_UNIX: u8 = 0b10_0000;
/// Version, flags, origin, sequence, properties length.
const FIXED: usize = 1 + 1 + 8 + 8 + 4;

/// A message's fields other than its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    /// Its QoS as published.
    pub qos: QoS,
    /// Its RETAIN flag as published.
    pub retain: bool,
    /// The id of the node it was published on.
    pub origin: u64,
    /// Its place in what `origin` sent.
    pub sequence: u64,
    /// Milliseconds left, or the Unix time it expires at, in milliseconds (see the module).
    pub expiry_ms: Option<u64>,
    /// Whether `expiry_ms` is a Unix time (set on the durable path).
    pub expiry_unix: bool,
    /// The publishing session's id on the origin node.
    pub publisher: Option<u64>,
    /// Its v5 properties that pass unchanged, MQTT-encoded.
    pub properties: Bytes,
    /// Its payload.
    pub payload: Bytes,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than their own fields say.
    #[error("a cluster message cut short")]
    Short,
    /// Another version of the format.
    #[error("a cluster message of format version {0}, this node reads {VERSION}")]
    Version(u8),
    /// QoS 3.
    #[error("a cluster message with QoS 3")]
    QoS,
}

impl WireMessage {
    /// The bytes of this message.
    pub fn encode(&self) -> Bytes {
        let expiry = if self.expiry_ms.is_some() { 8 } else { 0 } + if self.publisher.is_some() { 8 } else { 0 };
        let mut out = BytesMut::with_capacity(FIXED + expiry + self.properties.len() + self.payload.len());
        out.put_u8(VERSION);
        let mut flags = self.qos.as_u8();
        if self.retain {
            flags |= RETAIN;
        }
        if self.expiry_ms.is_some() {
            flags |= EXPIRY;
            if self.expiry_unix {
                flags |= EXPIRY_UNIX;
            }
        }
        if self.publisher.is_some() {
            flags |= PUBLISHER;
        }
        out.put_u8(flags);
        out.put_u64(self.origin);
        out.put_u64(self.sequence);
        if let Some(ms) = self.expiry_ms {
            out.put_u64(ms);
        }
        if let Some(publisher) = self.publisher {
            out.put_u64(publisher);
        }
        // Properties come from a packet whose length fits in a varint of 256 MB.
        out.put_u32(u32::try_from(self.properties.len()).unwrap_or(u32::MAX));
        out.put_slice(&self.properties);
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Reads a message from `bytes` (sharing their allocation).
    pub fn decode(mut bytes: Bytes) -> Result<Self, WireError> {
        if bytes.len() < FIXED {
            return Err(WireError::Short);
        }
        let version = bytes.get_u8();
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let flags = bytes.get_u8();
        let qos = QoS::from_u8(flags & 0b11).ok_or(WireError::QoS)?;
        let origin = bytes.get_u64();
        let sequence = bytes.get_u64();
        let expiry_ms = if flags & EXPIRY != 0 {
            if bytes.remaining() < 8 + 4 {
                return Err(WireError::Short);
            }
            Some(bytes.get_u64())
        } else {
            None
        };
        let publisher = if flags & PUBLISHER != 0 {
            if bytes.remaining() < 8 + 4 {
                return Err(WireError::Short);
            }
            Some(bytes.get_u64())
        } else {
            None
        };
        let length = bytes.get_u32() as usize;
        if bytes.remaining() < length {
            return Err(WireError::Short);
        }
        let properties = bytes.split_to(length);
        Ok(Self {
            qos,
            retain: flags & RETAIN != 0,
            origin,
            sequence,
            expiry_unix: expiry_ms.is_some() && flags & EXPIRY_UNIX != 0,
            expiry_ms,
            publisher,
            properties,
            payload: bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use midge_codec::QoS;
    use proptest::prelude::*;

    use super::{WireError, WireMessage};

    proptest! {
        #[test]
        fn every_message_round_trips(
            qos in 0u8..3,
            retain: bool,
            origin: u64,
            sequence: u64,
            expiry_ms: Option<u64>,
            expiry_unix: bool,
            publisher: Option<u64>,
            properties in proptest::collection::vec(any::<u8>(), 0..64),
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let message = WireMessage {
                qos: QoS::from_u8(qos).unwrap(),
                retain,
                origin,
                sequence,
                expiry_unix: expiry_unix && expiry_ms.is_some(),
                expiry_ms,
                publisher,
                properties: Bytes::from(properties),
                payload: Bytes::from(payload),
            };
            prop_assert_eq!(WireMessage::decode(message.encode()), Ok(message));
        }

        #[test]
        fn no_bytes_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = WireMessage::decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn cut_short_other_versions_and_qos_3_are_refused() {
        let message = WireMessage {
            qos: QoS::AtLeastOnce,
            retain: false,
            origin: 1,
            sequence: 2,
            expiry_ms: Some(3),
            expiry_unix: false,
            publisher: Some(4),
            properties: Bytes::from_static(b"pp"),
            payload: Bytes::from_static(b"x"),
        };
        let bytes = message.encode();
        // Every proper prefix that cuts into the fixed fields, the expiry, the publisher or the
        // properties.
        for cut in 0..bytes.len() - 1 {
            assert_eq!(WireMessage::decode(bytes.slice(..cut)), Err(WireError::Short), "cut at {cut}");
        }
        let mut other = bytes.to_vec();
        other[0] = 2;
        assert_eq!(WireMessage::decode(Bytes::from(other)), Err(WireError::Version(2)));
        let mut qos3 = bytes.to_vec();
        qos3[1] |= 0b11;
        assert_eq!(WireMessage::decode(Bytes::from(qos3)), Err(WireError::QoS));
    }
}
