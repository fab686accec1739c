//! Decoding a property section: its length, then identifier/value pairs, each checked against
//! the packet it came in.

use crate::error::DecodeError;
use crate::properties::table::{self, id, Context};
use crate::properties::Properties;
use crate::reader::Reader;
use crate::types::{QoS, TopicName};

/// Reads a property section (length prefix included) for `context`.
///
/// An undefined identifier is Malformed (its value's length is unknown); a defined one that
/// `context` does not allow, a repeat of a property that may appear once, and a value out of
/// range are Protocol Errors (section 2.2.2.2).
pub(crate) fn read(reader: &mut Reader, context: Context) -> Result<Properties, DecodeError> {
    let len = reader.varint("missing property length")?;
    let section = reader.take(len as usize, "property length overruns the packet")?;
    let mut reader = Reader::new(section);
    let mut properties = Properties::default();
    // Identifiers seen so far, one bit each; every defined identifier is below 64.
    let mut seen = 0u64;
    while !reader.is_empty() {
        let identifier = reader.varint("missing property identifier")?;
        match table::allowed(identifier, context) {
            None => return Err(DecodeError::Malformed("unknown property identifier")),
            Some(false) => return Err(DecodeError::Protocol("property not allowed in this packet")),
            Some(true) => {}
        }
        let bit = 1u64 << identifier;
        if seen & bit != 0 && !table::may_repeat(identifier, context) {
            return Err(DecodeError::Protocol("property included more than once"));
        }
        seen |= bit;
        read_value(&mut reader, identifier, &mut properties)?;
    }
    Ok(properties)
}

/// Reads the value of a defined property into `properties`.
fn read_value(reader: &mut Reader, identifier: u32, properties: &mut Properties) -> Result<(), DecodeError> {
    let p = properties;
    match identifier {
        id::PAYLOAD_FORMAT_INDICATOR => {
            p.payload_format_indicator = Some(flag(reader, "payload format indicator above 1")?)
        }
        id::MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(reader.u32("missing message expiry interval")?),
        id::CONTENT_TYPE => p.content_type = Some(reader.string("missing content type")?),
        id::RESPONSE_TOPIC => {
            let text = reader.string("missing response topic")?;
            // MQTT-3.3.2-14: a topic name, without wildcards.
            p.response_topic = Some(TopicName::from_string(text).map_err(DecodeError::TopicName)?)
        }
        id::CORRELATION_DATA => p.correlation_data = Some(reader.binary("missing correlation data")?),
        id::SUBSCRIPTION_IDENTIFIER => {
            // Four varint bytes cannot exceed 268,435,455, so only 0 is out of range.
            let value = reader.varint("missing subscription identifier")?;
            if value == 0 {
                return Err(DecodeError::Protocol("subscription identifier 0"));
            }
            p.subscription_identifiers.push(value)
        }
        id::SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(reader.u32("missing session expiry interval")?),
        id::ASSIGNED_CLIENT_IDENTIFIER => {
            p.assigned_client_identifier = Some(reader.string("missing assigned client identifier")?)
        }
        id::SERVER_KEEP_ALIVE => p.server_keep_alive = Some(reader.u16("missing server keep alive")?),
        id::AUTHENTICATION_METHOD => p.authentication_method = Some(reader.string("missing authentication method")?),
        id::AUTHENTICATION_DATA => p.authentication_data = Some(reader.binary("missing authentication data")?),
        id::REQUEST_PROBLEM_INFORMATION => {
            p.request_problem_information = Some(flag(reader, "request problem information above 1")?)
        }
        id::WILL_DELAY_INTERVAL => p.will_delay_interval = Some(reader.u32("missing will delay interval")?),
        id::REQUEST_RESPONSE_INFORMATION => {
            p.request_response_information = Some(flag(reader, "request response information above 1")?)
        }
        id::RESPONSE_INFORMATION => p.response_information = Some(reader.string("missing response information")?),
        id::SERVER_REFERENCE => p.server_reference = Some(reader.string("missing server reference")?),
        id::REASON_STRING => p.reason_string = Some(reader.string("missing reason string")?),
        id::RECEIVE_MAXIMUM => p.receive_maximum = Some(non_zero_u16(reader, "receive maximum 0")?),
        id::TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(reader.u16("missing topic alias maximum")?),
        id::TOPIC_ALIAS => p.topic_alias = Some(non_zero_u16(reader, "topic alias 0")?),
        id::MAXIMUM_QOS => {
            let qos = match flag(reader, "maximum QoS above 1")? {
                0 => QoS::AtMostOnce,
                _ => QoS::AtLeastOnce,
            };
            p.maximum_qos = Some(qos)
        }
        id::RETAIN_AVAILABLE => p.retain_available = Some(boolean(reader, "retain available above 1")?),
        id::USER_PROPERTY => {
            let name = reader.string("missing user property name")?;
            let value = reader.string("missing user property value")?;
            p.user_properties.push((name, value))
        }
        id::MAXIMUM_PACKET_SIZE => {
            let value = reader.u32("missing maximum packet size")?;
            if value == 0 {
                return Err(DecodeError::Protocol("maximum packet size 0"));
            }
            p.maximum_packet_size = Some(value)
        }
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            p.wildcard_subscription_available = Some(boolean(reader, "wildcard subscription available above 1")?)
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            p.subscription_identifier_available = Some(boolean(reader, "subscription identifier available above 1")?)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            p.shared_subscription_available = Some(boolean(reader, "shared subscription available above 1")?)
        }
        // `read` only passes identifiers the table defines, and the arms above cover each.
        _ => return Err(DecodeError::Malformed("unknown property identifier")),
    }
    Ok(())
}

/// A byte that must be 0 or 1; `too_large` names the Protocol Error otherwise.
fn flag(reader: &mut Reader, too_large: &'static str) -> Result<u8, DecodeError> {
    match reader.u8("missing property value")? {
        value @ (0 | 1) => Ok(value),
        _ => Err(DecodeError::Protocol(too_large)),
    }
}

fn boolean(reader: &mut Reader, too_large: &'static str) -> Result<bool, DecodeError> {
    Ok(flag(reader, too_large)? == 1)
}

fn non_zero_u16(reader: &mut Reader, zero: &'static str) -> Result<u16, DecodeError> {
    match reader.u16("missing property value")? {
        0 => Err(DecodeError::Protocol(zero)),
        value => Ok(value),
    }
}
