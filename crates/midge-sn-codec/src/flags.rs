//! The Flags octet (5.3.4).
//!
//! | bit | 7   | 6 5 | 4      | 3    | 2            | 1 0         |
//! |-----|-----|-----|--------|------|--------------|-------------|
//! |     | DUP | QoS | Retain | Will | CleanSession | TopicIdType |
//!
//! Each message uses some of the flags and lists the others as "not used" (CONNECT: Will and
//! CleanSession; WILLTOPIC and WILLTOPICUPD: QoS and Retain; PUBLISH: DUP, QoS, Retain and
//! TopicIdType; SUBSCRIBE: DUP, QoS and TopicIdType; SUBACK: QoS; UNSUBSCRIBE: TopicIdType).
//! The specification does not require a sender to clear unused flags, so the decoder ignores
//! them, the reserved TopicIdType `0b11` included where TopicIdType is not used, and the
//! encoder writes them as 0.

use crate::error::DecodeError;
use crate::types::{MsgType, QoS, TopicIdType};

const DUP: u8 = 0b1000_0000;
const QOS_SHIFT: u32 = 5;
const RETAIN: u8 = 0b0001_0000;
const WILL: u8 = 0b0000_1000;
const CLEAN_SESSION: u8 = 0b0000_0100;

/// A Flags octet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Flags(pub(crate) u8);

impl Flags {
    pub(crate) fn dup(self) -> bool {
        self.0 & DUP != 0
    }

    pub(crate) fn qos(self) -> QoS {
        QoS::from_bits(self.0 >> QOS_SHIFT)
    }

    pub(crate) fn retain(self) -> bool {
        self.0 & RETAIN != 0
    }

    pub(crate) fn will(self) -> bool {
        self.0 & WILL != 0
    }

    pub(crate) fn clean_session(self) -> bool {
        self.0 & CLEAN_SESSION != 0
    }

    /// The TopicIdType of a message that uses it; the reserved `0b11` is an error.
    pub(crate) fn topic_id_type(self, msg_type: MsgType) -> Result<TopicIdType, DecodeError> {
        TopicIdType::from_bits(self.0).ok_or(DecodeError::ReservedTopicIdType { msg_type })
    }

    /// Sets DUP.
    pub(crate) fn with_dup(self, on: bool) -> Self {
        self.with(DUP, on)
    }

    /// Sets the QoS bits.
    pub(crate) fn with_qos(self, qos: QoS) -> Self {
        Self(self.0 | qos.bits() << QOS_SHIFT)
    }

    /// Sets Retain.
    pub(crate) fn with_retain(self, on: bool) -> Self {
        self.with(RETAIN, on)
    }

    /// Sets Will.
    pub(crate) fn with_will(self, on: bool) -> Self {
        self.with(WILL, on)
    }

    /// Sets CleanSession.
    pub(crate) fn with_clean_session(self, on: bool) -> Self {
        self.with(CLEAN_SESSION, on)
    }

    /// Sets the TopicIdType bits.
    pub(crate) fn with_topic_id_type(self, kind: TopicIdType) -> Self {
        Self(self.0 | kind.bits())
    }

    fn with(self, bit: u8, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_has_its_bits() {
        let all = Flags::default()
            .with_dup(true)
            .with_qos(QoS::MinusOne)
            .with_retain(true)
            .with_will(true)
            .with_clean_session(true)
            .with_topic_id_type(TopicIdType::Short);
        assert_eq!(all, Flags(0b1111_1110));
        assert!(all.dup() && all.retain() && all.will() && all.clean_session());
        assert_eq!(all.qos(), QoS::MinusOne);
        assert_eq!(all.topic_id_type(MsgType::Publish), Ok(TopicIdType::Short));
        assert_eq!(Flags(0b0100_0000).qos(), QoS::ExactlyOnce);
        assert_eq!(
            Flags(0b11).topic_id_type(MsgType::Subscribe),
            Err(DecodeError::ReservedTopicIdType { msg_type: MsgType::Subscribe })
        );
    }
}
