//! What the server sends, parsed just far enough to assert on. Parsing is strict about what a
//! server must never send (reserved fixed-header flags, QoS 3, packet id 0, client-only packet
//! types), so every test checks those for free.

use super::build::{take_str, take_u16, take_u8, take_var, Props, Publish};
use super::Version;

/// A packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connack(Connack),
    Publish(Publish),
    Puback(Ack),
    Pubrec(Ack),
    Pubrel(Ack),
    Pubcomp(Ack),
    Suback(Suback),
    Unsuback(Suback),
    Pingresp,
    Disconnect(Disconnect),
    Auth(Disconnect),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connack {
    pub session_present: bool,
    /// The 3.1.1 return code or the 5.0 reason code.
    pub code: u8,
    pub props: Props,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: u16,
    /// 0 for v3, and for a v5 acknowledgement that leaves the reason code out.
    pub reason: u8,
    pub props: Props,
}

/// SUBACK or UNSUBACK (a 3.1.1 UNSUBACK has no codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suback {
    pub id: u16,
    pub props: Props,
    pub codes: Vec<u8>,
}

/// DISCONNECT or AUTH (v5 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub props: Props,
}

/// One whole frame at the front of a buffer.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The first byte: packet type and flags.
    pub first: u8,
    /// What the Remaining Length covers.
    pub body: &'a [u8],
    /// Bytes the frame takes, fixed header included.
    pub len: usize,
}

/// The whole frame at the front of `buf`, or `None` when more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, String> {
    let Some((&first, mut rest)) = buf.split_first() else {
        return Ok(None);
    };
    let before = rest.len();
    let remaining = match take_var(&mut rest) {
        Some(n) => n as usize,
        None if rest.len() >= 4 || buf.len() > 5 => {
            return Err("Remaining Length longer than four bytes (MQTT-1.5.5-1)".into())
        }
        None => return Ok(None),
    };
    let header = 1 + before - rest.len();
    if rest.len() < remaining {
        return Ok(None);
    }
    Ok(Some(Frame { first, body: &rest[..remaining], len: header + remaining }))
}

/// Parses a frame the server sent to a client of this version.
pub fn parse(version: Version, first: u8, body: &[u8]) -> Result<Packet, String> {
    let v5 = version == Version::V5;
    let kind = first >> 4;
    let flags = first & 0x0F;
    let expect_flags = |want: u8, name: &str| {
        if flags == want {
            Ok(())
        } else {
            Err(format!("server sent {name} with fixed-header flags {flags:#06b} (MQTT-2.2.2-1)"))
        }
    };
    let mut buf = body;
    let packet = match kind {
        2 => {
            expect_flags(0, "CONNACK")?;
            let ack_flags = take_u8(&mut buf).ok_or("short CONNACK")?;
            let code = take_u8(&mut buf).ok_or("short CONNACK")?;
            if ack_flags & 0xFE != 0 {
                return Err(format!("CONNACK reserved flags {ack_flags:#04x} (MQTT-3.2.2-1)"));
            }
            let props = if v5 && !buf.is_empty() { Props::decode(&mut buf)? } else { Props::new() };
            Packet::Connack(Connack { session_present: ack_flags & 1 == 1, code, props })
        }
        3 => {
            let qos = (flags >> 1) & 3;
            let dup = flags & 0x08 != 0;
            if qos == 3 {
                return Err("server sent a PUBLISH with QoS 3 (MQTT-3.3.1-4)".into());
            }
            if qos == 0 && dup {
                return Err("server sent a QoS 0 PUBLISH with DUP set (MQTT-3.3.1-2)".into());
            }
            let topic = take_str(&mut buf).ok_or("PUBLISH topic")?;
            let id = if qos > 0 { take_u16(&mut buf).ok_or("PUBLISH packet id")? } else { 0 };
            if qos > 0 && id == 0 {
                return Err("server sent a QoS > 0 PUBLISH with packet id 0 (MQTT-2.2.1-4)".into());
            }
            let props = if v5 { Props::decode(&mut buf)? } else { Props::new() };
            Packet::Publish(Publish { topic, payload: buf.to_vec(), qos, retain: flags & 1 == 1, dup, id, props })
        }
        4..=7 => {
            let (name, want) = match kind {
                4 => ("PUBACK", 0),
                5 => ("PUBREC", 0),
                6 => ("PUBREL", 2),
                _ => ("PUBCOMP", 0),
            };
            expect_flags(want, name)?;
            let id = take_u16(&mut buf).ok_or(format!("short {name}"))?;
            let mut ack = Ack { id, reason: 0, props: Props::new() };
            if v5 && !buf.is_empty() {
                ack.reason = take_u8(&mut buf).unwrap_or(0);
                if !buf.is_empty() {
                    ack.props = Props::decode(&mut buf)?;
                }
            }
            match kind {
                4 => Packet::Puback(ack),
                5 => Packet::Pubrec(ack),
                6 => Packet::Pubrel(ack),
                _ => Packet::Pubcomp(ack),
            }
        }
        9 | 11 => {
            let name = if kind == 9 { "SUBACK" } else { "UNSUBACK" };
            expect_flags(0, name)?;
            let id = take_u16(&mut buf).ok_or(format!("short {name}"))?;
            let props = if v5 { Props::decode(&mut buf)? } else { Props::new() };
            let ack = Suback { id, props, codes: buf.to_vec() };
            if kind == 9 {
                Packet::Suback(ack)
            } else {
                Packet::Unsuback(ack)
            }
        }
        13 => {
            expect_flags(0, "PINGRESP")?;
            Packet::Pingresp
        }
        14 | 15 if v5 => {
            let name = if kind == 14 { "DISCONNECT" } else { "AUTH" };
            expect_flags(0, name)?;
            let mut d = Disconnect { reason: 0, props: Props::new() };
            if !buf.is_empty() {
                d.reason = take_u8(&mut buf).unwrap_or(0);
                if !buf.is_empty() {
                    d.props = Props::decode(&mut buf)?;
                }
            }
            if kind == 14 {
                Packet::Disconnect(d)
            } else {
                Packet::Auth(d)
            }
        }
        _ => return Err(format!("server sent packet type {kind}, which only a client may send")),
    };
    if !buf.is_empty() && !matches!(packet, Packet::Publish(_) | Packet::Suback(_) | Packet::Unsuback(_)) {
        return Err(format!("{} bytes left over after {packet:?}", buf.len()));
    }
    Ok(packet)
}
