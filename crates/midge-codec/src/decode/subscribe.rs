//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.

use crate::decode::packet_id;
use crate::error::DecodeError;
use crate::packet::{RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe};
use crate::properties::{self, Context, Properties};
use crate::reader::Reader;
use crate::reason::ReasonCode;
use crate::types::{ProtocolVersion, QoS, TopicFilter};

/// Decodes SUBSCRIBE.
pub(super) fn subscribe(mut reader: Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(&mut reader)?;
    let properties = read_properties(&mut reader, version, Context::Subscribe)?;
    let mut subscriptions = Vec::new();
    while !reader.is_empty() {
        let filter = filter(&mut reader)?;
        let options = options(reader.u8("missing subscription options")?, version)?;
        subscriptions.push(Subscription { filter, options });
    }
    // MQTT-3.8.3-3 (3.1.1), MQTT-3.8.3-2 (5.0).
    if subscriptions.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without a topic filter"));
    }
    Ok(Subscribe { packet_id, subscriptions, properties })
}

/// Decodes SUBACK. 3.x allows only granted QoS 0-2 and failure 0x80 (MQTT-3.9.3-2, 3.1.1).
pub(super) fn suback(mut reader: Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(&mut reader)?;
    let properties = read_properties(&mut reader, version, Context::SubAck)?;
    let reasons = reader.rest().iter().map(|&code| ReasonCode(code)).collect::<Vec<_>>();
    if !version.is_v5() && reasons.iter().any(|reason| !matches!(reason.0, 0 | 1 | 2 | 0x80)) {
        return Err(DecodeError::Protocol("reserved SUBACK return code"));
    }
    // One code per filter of the SUBSCRIBE, which has at least one.
    if reasons.is_empty() {
        return Err(DecodeError::Protocol("SUBACK without a return code"));
    }
    Ok(SubAck { packet_id, reasons, properties })
}

/// Decodes UNSUBSCRIBE.
pub(super) fn unsubscribe(mut reader: Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(&mut reader)?;
    let properties = read_properties(&mut reader, version, Context::Unsubscribe)?;
    let mut filters = Vec::new();
    while !reader.is_empty() {
        filters.push(filter(&mut reader)?);
    }
    // MQTT-3.10.3-2.
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}

/// Decodes UNSUBACK: in 3.x just the packet identifier; in v5 one reason code per filter.
pub(super) fn unsuback(mut reader: Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(&mut reader)?;
    if !version.is_v5() {
        reader.finish("bytes after the UNSUBACK packet identifier")?;
        return Ok(UnsubAck { packet_id, reasons: Vec::new(), properties: Properties::default() });
    }
    let properties = properties::read(&mut reader, Context::UnsubAck)?;
    let reasons = reader.rest().iter().map(|&code| ReasonCode(code)).collect::<Vec<_>>();
    if reasons.is_empty() {
        return Err(DecodeError::Protocol("UNSUBACK without a reason code"));
    }
    Ok(UnsubAck { packet_id, reasons, properties })
}

fn read_properties(reader: &mut Reader, version: ProtocolVersion, context: Context) -> Result<Properties, DecodeError> {
    if version.is_v5() {
        properties::read(reader, context)
    } else {
        Ok(Properties::default())
    }
}

fn filter(reader: &mut Reader) -> Result<TopicFilter, DecodeError> {
    let text = reader.string("missing topic filter")?;
    TopicFilter::from_string(text).map_err(DecodeError::TopicFilter)
}

/// Decodes a subscription options byte (3.x: the requested QoS byte).
fn options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    if !version.is_v5() {
        // MQTT-3-8.3-4 (3.1.1): reserved bits 7-2 are 0 and QoS is 0, 1 or 2, else malformed.
        if byte & 0xFC != 0 {
            return Err(DecodeError::Malformed("reserved bits of the requested QoS are set"));
        }
        let qos = QoS::from_u8(byte).ok_or(DecodeError::Malformed("requested QoS 3"))?;
        return Ok(SubscriptionOptions { qos, ..SubscriptionOptions::default() });
    }
    // MQTT-3.8.3-5: bits 7-6 are reserved and 0.
    if byte & 0xC0 != 0 {
        return Err(DecodeError::Malformed("reserved bits of the subscription options are set"));
    }
    // Section 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3".
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::Protocol("maximum QoS 3"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        // Section 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3".
        _ => return Err(DecodeError::Protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions { qos, no_local: byte & 0x04 != 0, retain_as_published: byte & 0x08 != 0, retain_handling })
}
