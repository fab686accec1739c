//! An application message as the broker holds it: built once when it arrives, shared by
//! every receiver through an `Arc`.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_codec::{encode_properties, Properties, Publish, QoS, TopicName, Will};

/// A message in flight through the broker.
#[derive(Debug)]
pub struct Message {
    /// Unique within the broker's store: the key of its record when it is persisted.
    pub id: u64,
    /// The topic it was published to (never an alias).
    pub topic: TopicName,
    /// Its payload, in an allocation of its own (see [`Message::new`]).
    pub payload: Bytes,
    /// The QoS it was published with; each receiver gets at most its granted QoS.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// The v5 properties every receiver gets unchanged (payload format indicator, content type,
    /// response topic, correlation data, user properties), encoded once for all of them
    /// (MQTT-3.3.2-4, MQTT-3.3.2-15, MQTT-3.3.2-16, MQTT-3.3.2-17, MQTT-3.3.2-20).
    pub shared_properties: Bytes,
    /// When it expires, from the v5 Message Expiry Interval; `None` never.
    pub expires_at: Option<Instant>,
    /// The session that published it, for No Local (MQTT-3.8.3-3); `None` for wills from
    /// sessions that are gone and for broker-made messages.
    pub publisher: Option<u64>,
}

impl Message {
    /// Builds a message from a PUBLISH whose topic alias has been resolved. The topic and payload
    /// are copied into one new allocation, so a message that waits in a queue or the retained
    /// store does not pin the (much larger) read buffer it arrived in.
    pub fn new(id: u64, publish: &Publish, publisher: Option<u64>, now: Instant) -> Self {
        Self::build(
            id,
            &publish.topic,
            &publish.payload,
            publish.qos,
            publish.retain,
            &publish.properties,
            publisher,
            now,
        )
    }

    /// Builds the message a will stands for.
    pub fn from_will(id: u64, will: &Will, publisher: Option<u64>, now: Instant) -> Self {
        Self::build(id, &will.topic, &will.payload, will.qos, will.retain, &will.properties, publisher, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        id: u64,
        topic: &TopicName,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        properties: &Properties,
        publisher: Option<u64>,
        now: Instant,
    ) -> Self {
        let mut storage = BytesMut::with_capacity(topic.len() + payload.len());
        storage.extend_from_slice(topic.as_bytes());
        storage.extend_from_slice(payload);
        let mut storage = storage.freeze();
        let topic_bytes = storage.split_to(topic.len());
        let topic = TopicName::from_string(
            midge_codec::MqttString::from_bytes(topic_bytes).expect("copied from a valid topic"),
        )
        .expect("copied from a valid topic");
        Self {
            id,
            topic,
            payload: storage,
            qos,
            retain,
            shared_properties: encode_shared_properties(properties),
            expires_at: properties.message_expiry_interval.map(|secs| now + Duration::from_secs(u64::from(secs))),
            publisher,
        }
    }

    /// A message restored from its stored record (or from a stored will).
    #[allow(clippy::too_many_arguments)]
    pub fn restored(
        id: u64,
        topic: TopicName,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        shared_properties: Bytes,
        expires_at: Option<Instant>,
        publisher: Option<u64>,
    ) -> Self {
        Self { id, topic, payload, qos, retain, shared_properties, expires_at, publisher }
    }

    /// A QoS 1 message on topic `t` with `payload`, published now by nobody. For unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64, payload: &'static [u8]) -> Self {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("t").expect("valid"),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        };
        Self::new(id, &publish, None, Instant::now())
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The Message Expiry Interval to forward: the received value minus the time the message
    /// has waited in the broker (MQTT-3.3.2-6), rounded up so a live message never says 0.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }
}

/// Encodes the properties that pass through the broker unchanged. Message expiry, topic alias
/// and subscription identifiers are per receiver and written at send time.
fn encode_shared_properties(properties: &Properties) -> Bytes {
    let none_shared = properties.payload_format_indicator.is_none()
        && properties.content_type.is_none()
        && properties.response_topic.is_none()
        && properties.correlation_data.is_none()
        && properties.user_properties.is_empty();
    if none_shared {
        return Bytes::new(); // every 3.x message, and most v5 ones: no struct built or compared
    }
    let shared = Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
        ..Properties::default()
    };
    let mut out = BytesMut::new();
    encode_properties(&shared, &mut out);
    out.freeze()
}

/// Whether `topic` is in the broker's `$SYS` tree, which only the broker publishes to.
pub(crate) fn is_sys_topic(topic: &str) -> bool {
    topic.strip_prefix("$SYS").is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a client may not publish to `topic`: the broker's own `$SYS` tree, except
/// `$SYS/broker/connection/+/state`, where bridges (mosquitto's and Midge's) publish their
/// link's state at the remote broker (`notifications`); mosquitto allows that topic alone.
pub(crate) fn is_reserved_for_the_broker(topic: &str) -> bool {
    let bridge_state = topic
        .strip_prefix("$SYS/broker/connection/")
        .and_then(|rest| rest.strip_suffix("/state"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    is_sys_topic(topic) && !bridge_state
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    /// Every message costs its allocation: `Arc<Message>` (the two counts and the message)
    /// stays within jemalloc's 160-byte size class (the next is 192). Reference counts for the
    /// store live in the journal, not here.
    #[test]
    fn a_message_stays_within_its_allocator_size_class() {
        assert!(16 + std::mem::size_of::<super::Message>() <= 160, "{} bytes", std::mem::size_of::<super::Message>());
    }
}

#[cfg(test)]
mod sys_tests {
    use super::{is_reserved_for_the_broker, is_sys_topic};

    #[test]
    fn the_sys_tree_is_sys_and_its_look_alikes_are_not() {
        assert!(is_sys_topic("$SYS"));
        assert!(is_sys_topic("$SYS/broker/uptime"));
        assert!(!is_sys_topic("$SYSTEM/x"));
        assert!(!is_sys_topic("SYS/x"));
        assert!(!is_sys_topic("x/$SYS"));
        assert!(is_reserved_for_the_broker("$SYS/broker/uptime"));
        assert!(!is_reserved_for_the_broker("$SYS/broker/connection/edge.cloud/state"));
        // Only a bridge's state, as in mosquitto.
        assert!(is_reserved_for_the_broker("$SYS/broker/connection/edge.cloud/other"));
        assert!(is_reserved_for_the_broker("$SYS/broker/connection/a/b/state"));
        assert!(is_reserved_for_the_broker("$SYS/broker/connection//state"));
        assert!(is_reserved_for_the_broker("$SYS/broker/connection/"));
    }
}
