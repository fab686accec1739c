//! CONNECT and CONNACK.

use crate::error::DecodeError;
use crate::packet::{ConnAck, Connect, Will};
use crate::properties::{self, Context, Properties};
use crate::reader::Reader;
use crate::reason::ReasonCode;
use crate::types::{ProtocolVersion, QoS, TopicName};

/// Decodes CONNECT, whose protocol name and level decide the version of the rest.
pub(super) fn connect(mut reader: Reader) -> Result<Connect, DecodeError> {
    let name = reader.binary("missing protocol name")?;
    let level = reader.u8("missing protocol level")?;
    // mosquitto's bridges set the level's top bit (`try_private`); 3.x only.
    let bridge = level & 0x80 != 0 && matches!(level & 0x7f, 3 | 4);
    let protocol = match (&name[..], if bridge { level & 0x7f } else { level }) {
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (known, _) => {
            return Err(DecodeError::UnsupportedProtocol {
                name: String::from_utf8_lossy(known).into_owned(),
                level,
                known_name: known == b"MQTT" || known == b"MQIsdp",
            })
        }
    };
    let v5 = protocol.is_v5();

    let flags = reader.u8("missing connect flags")?;
    // MQTT-3.1.2-3: the reserved flag is 0.
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag is set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    // MQTT-3.1.2-14 (3.1.1), MQTT-3.1.2-12 (5.0): Will QoS 3 is malformed.
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::Malformed("will QoS 3"))?;
    // MQTT-3.1.2-11/13/15 (3.1.1), MQTT-3.1.2-11/13 (5.0): without a will, its QoS and
    // retain are 0.
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain set without the will flag"));
    }
    // MQTT-3.1.2-22 (3.1.1), and likewise in 3.1: no password without a user name. MQTT 5
    // allows it (section 3.1.2.9).
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::Malformed("password flag set without the user name flag"));
    }
    let keep_alive = reader.u16("missing keep alive")?;
    let properties = if v5 { properties::read(&mut reader, Context::Connect)? } else { Properties::default() };

    let client_id = reader.string("missing client identifier")?;
    let will = if will_flag {
        let properties = if v5 { properties::read(&mut reader, Context::Will)? } else { Properties::default() };
        let topic = reader.string("missing will topic")?;
        let topic = TopicName::from_string(topic).map_err(DecodeError::TopicName)?;
        let payload = reader.binary("missing will payload")?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if username_flag { Some(reader.string("missing user name")?) } else { None };
    let password = if password_flag { Some(reader.binary("missing password")?) } else { None };
    reader.finish("bytes after the CONNECT payload")?;

    Ok(Connect { protocol, clean_start, keep_alive, client_id, will, username, password, properties, bridge })
}

/// Decodes CONNACK. A 3.x return code becomes its v5 equivalent.
pub(super) fn connack(mut reader: Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = reader.u8("missing connect acknowledge flags")?;
    let session_present = match version {
        // 3.1 reserves the whole byte and has no Session Present.
        ProtocolVersion::V31 => false,
        // MQTT-3.2.2-1: bits 7-1 are reserved and 0.
        _ if flags & 0xFE != 0 => return Err(DecodeError::Malformed("CONNACK reserved flags are set")),
        _ => flags & 0x01 != 0,
    };
    let code = reader.u8("missing CONNACK return code")?;
    let (reason, properties) = if version.is_v5() {
        (ReasonCode(code), properties::read(&mut reader, Context::ConnAck)?)
    } else {
        (reason_of_return_code(code)?, Properties::default())
    };
    reader.finish("bytes after the CONNACK properties")?;
    Ok(ConnAck { session_present, reason, properties })
}

/// The v5 reason code equivalent to a 3.x CONNACK return code (3.1.1 table 3.1).
fn reason_of_return_code(code: u8) -> Result<ReasonCode, DecodeError> {
    Ok(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return Err(DecodeError::Protocol("CONNACK return code 6-255 is reserved")),
    })
}
