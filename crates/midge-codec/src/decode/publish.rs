//! PUBLISH, and PUBACK, PUBREC, PUBREL, PUBCOMP.

use crate::decode::packet_id;
use crate::error::DecodeError;
use crate::packet::{PubResponse, Publish};
use crate::properties::{self, Context, Properties};
use crate::reader::Reader;
use crate::reason::ReasonCode;
use crate::types::{ProtocolVersion, QoS, TopicName};

/// Decodes PUBLISH. `flags` passed `check_type_and_flags` (QoS below 3, no DUP at QoS 0).
pub(super) fn publish(mut reader: Reader, flags: u8, version: ProtocolVersion) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let topic = reader.string("missing topic name")?;
    // MQTT-2.3.1-5: a packet identifier exactly when QoS > 0.
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(&mut reader)?),
    };
    let properties =
        if version.is_v5() { properties::read(&mut reader, Context::Publish)? } else { Properties::default() };
    // Section 3.3.2.3.4: an empty topic is allowed only when a Topic Alias names it.
    let topic = if topic.is_empty() && properties.topic_alias.is_some() {
        TopicName::empty_for_alias()
    } else {
        // MQTT-3.3.2-2: no wildcards; MQTT-4.7.3-1: not empty.
        TopicName::from_string(topic).map_err(DecodeError::TopicName)?
    };
    let payload = reader.rest();
    Ok(Publish { dup, qos, retain, topic, packet_id, properties, payload })
}

/// Decodes PUBACK, PUBREC, PUBREL or PUBCOMP. In v5 a remaining length of 2 means Success
/// without properties and 3 a reason code without properties (section 3.4.2.1).
pub(super) fn response(mut reader: Reader, version: ProtocolVersion) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(&mut reader)?;
    let mut response = PubResponse::success(packet_id);
    if version.is_v5() && !reader.is_empty() {
        response.reason = ReasonCode(reader.u8("missing reason code")?);
        if !reader.is_empty() {
            response.properties = properties::read(&mut reader, Context::PubResponse)?;
        }
    }
    reader.finish("bytes after the acknowledgement")?;
    Ok(response)
}
