//! Packet builders. Each one returns a whole frame (fixed header included) as bytes, so a test can
//! send it as is, cut it, or corrupt any byte first. Nothing here checks that the result is valid:
//! building invalid packets is half the point.

use super::Version;

/// Property identifiers (MQTT 5.0 section 2.2.2.2).
pub mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Subscription option bits (MQTT 5.0 section 3.8.3.1); the low two bits are the QoS.
pub mod opt {
    pub const NO_LOCAL: u8 = 0x04;
    pub const RETAIN_AS_PUBLISHED: u8 = 0x08;
    pub const RETAIN_HANDLING_IF_NEW: u8 = 0x10;
    pub const RETAIN_HANDLING_NEVER: u8 = 0x20;
}

/// One property value, in the wire type its identifier prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// Reads one property value of a given wire type.
pub type ReadValue = fn(&mut &[u8]) -> Option<Value>;

/// The reader for a property identifier's wire type, or `None` for an unknown identifier.
pub fn value_reader(id: u8) -> Option<ReadValue> {
    use prop::*;
    let read: ReadValue = match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => |b| take_u8(b).map(Value::Byte),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => |b| take_u16(b).map(Value::Two),
        MESSAGE_EXPIRY_INTERVAL | SESSION_EXPIRY_INTERVAL | WILL_DELAY_INTERVAL | MAXIMUM_PACKET_SIZE => {
            |b| take_u32(b).map(Value::Four)
        }
        SUBSCRIPTION_IDENTIFIER => |b| take_var(b).map(Value::Var),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => |b| take_str(b).map(Value::Str),
        CORRELATION_DATA | AUTHENTICATION_DATA => |b| take_bin(b).map(Value::Bin),
        USER_PROPERTY => |b| Some(Value::Pair(take_str(b)?, take_str(b)?)),
        _ => return None,
    };
    Some(read)
}

/// A property list in wire order (user properties keep their order, as the spec demands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Value)>);

impl Props {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.push((id, Value::Byte(v)));
        self
    }

    pub fn two(mut self, id: u8, v: u16) -> Self {
        self.0.push((id, Value::Two(v)));
        self
    }

    pub fn four(mut self, id: u8, v: u32) -> Self {
        self.0.push((id, Value::Four(v)));
        self
    }

    pub fn var(mut self, id: u8, v: u32) -> Self {
        self.0.push((id, Value::Var(v)));
        self
    }

    pub fn string(mut self, id: u8, v: &str) -> Self {
        self.0.push((id, Value::Str(v.to_owned())));
        self
    }

    pub fn binary(mut self, id: u8, v: &[u8]) -> Self {
        self.0.push((id, Value::Bin(v.to_vec())));
        self
    }

    pub fn user(mut self, key: &str, value: &str) -> Self {
        self.0.push((prop::USER_PROPERTY, Value::Pair(key.to_owned(), value.to_owned())));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value with this identifier.
    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    /// The first value with this identifier, if it is an integer of any width.
    pub fn int(&self, id: u8) -> Option<u32> {
        self.ints(id).into_iter().next()
    }

    /// Every integer value with this identifier (subscription identifiers may repeat).
    pub fn ints(&self, id: u8) -> Vec<u32> {
        self.0
            .iter()
            .filter(|(i, _)| *i == id)
            .filter_map(|(_, v)| match v {
                Value::Byte(b) => Some(u32::from(*b)),
                Value::Two(n) => Some(u32::from(*n)),
                Value::Four(n) | Value::Var(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// The first string value with this identifier.
    pub fn text(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The first binary value with this identifier.
    pub fn bytes(&self, id: u8) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// Every user property, in order.
    pub fn user_properties(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Appends the property length and the properties.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for (id, value) in &self.0 {
            put_var(&mut body, u32::from(*id));
            match value {
                Value::Byte(b) => body.push(*b),
                Value::Two(n) => body.extend_from_slice(&n.to_be_bytes()),
                Value::Four(n) => body.extend_from_slice(&n.to_be_bytes()),
                Value::Var(n) => put_var(&mut body, *n),
                Value::Str(s) => put_str(&mut body, s),
                Value::Bin(b) => put_bin(&mut body, b),
                Value::Pair(k, v) => {
                    put_str(&mut body, k);
                    put_str(&mut body, v);
                }
            }
        }
        put_var(out, body.len() as u32);
        out.extend_from_slice(&body);
    }

    /// Parses a property length and the properties that follow.
    pub fn decode(buf: &mut &[u8]) -> Result<Self, String> {
        let len = take_var(buf).ok_or("truncated property length")? as usize;
        if buf.len() < len {
            return Err(format!("property length {len} exceeds the {} bytes left", buf.len()));
        }
        let (mut props, rest) = buf.split_at(len);
        *buf = rest;
        let mut out = Vec::new();
        while !props.is_empty() {
            let id = take_var(&mut props).ok_or("truncated property identifier")?;
            let id = u8::try_from(id).map_err(|_| format!("property identifier {id}"))?;
            let read = value_reader(id).ok_or(format!("unknown property identifier {id:#04x}"))?;
            let value = read(&mut props).ok_or(format!("truncated property {id:#04x}"))?;
            out.push((id, value));
        }
        Ok(Self(out))
    }
}

/// A CONNECT packet. [`Connect::new`] gives a valid one for the version; the public fields let a
/// test bend any part of it.
#[derive(Debug, Clone)]
pub struct Connect {
    pub version: Version,
    pub protocol_name: String,
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub props: Props,
    /// ORed into the connect flags byte (e.g. 0x01, the reserved bit).
    pub extra_flags: u8,
}

/// The will part of a CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8]) -> Self {
        Self { topic: topic.into(), payload: payload.into(), qos: 0, retain: false, props: Props::new() }
    }

    pub fn qos(mut self, qos: u8) -> Self {
        self.qos = qos;
        self
    }

    pub fn retain(mut self) -> Self {
        self.retain = true;
        self
    }

    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }
}

impl Connect {
    /// A clean-session CONNECT with keep alive 60 s and no will, user or properties.
    pub fn new(version: Version, client_id: &str) -> Self {
        let (name, level) = match version {
            Version::V3_1 => ("MQIsdp", 3),
            Version::V3_1_1 => ("MQTT", 4),
            Version::V5 => ("MQTT", 5),
        };
        Self {
            version,
            protocol_name: name.into(),
            level,
            client_id: client_id.into(),
            clean: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            props: Props::new(),
            extra_flags: 0,
        }
    }

    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    pub fn will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }

    pub fn user(mut self, username: &str, password: Option<&[u8]>) -> Self {
        self.username = Some(username.into());
        self.password = password.map(<[u8]>::to_vec);
        self
    }

    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }

    /// A persistent session: clean session 0 for v3; clean start 0 with this Session Expiry
    /// Interval for v5.
    pub fn persistent(self, expiry_seconds: u32) -> Self {
        let v5 = self.version == Version::V5;
        let mut connect = self.clean(false);
        if v5 {
            connect.props = connect.props.four(prop::SESSION_EXPIRY_INTERVAL, expiry_seconds);
        }
        connect
    }

    pub fn encode(&self) -> Vec<u8> {
        let v5 = self.version == Version::V5;
        let mut flags = self.extra_flags;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        let mut body = Vec::new();
        put_str(&mut body, &self.protocol_name);
        body.push(self.level);
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if v5 {
            self.props.encode(&mut body);
        }
        put_str(&mut body, &self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                will.props.encode(&mut body);
            }
            put_str(&mut body, &will.topic);
            put_bin(&mut body, &will.payload);
        }
        if let Some(username) = &self.username {
            put_str(&mut body, username);
        }
        if let Some(password) = &self.password {
            put_bin(&mut body, password);
        }
        frame(0x10, &body)
    }
}

/// A PUBLISH, as sent by a test or as parsed from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// The packet identifier; 0 (absent) for QoS 0.
    pub id: u16,
    pub props: Props,
}

impl Publish {
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            dup: false,
            id: 0,
            props: Props::new(),
        }
    }

    pub fn retain(mut self) -> Self {
        self.retain = true;
        self
    }

    pub fn dup(mut self) -> Self {
        self.dup = true;
        self
    }

    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }

    /// The frame; the packet identifier is written whenever the QoS bits are not 0.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let first = 0x30 | (u8::from(self.dup) << 3) | ((self.qos & 3) << 1) | u8::from(self.retain);
        let mut body = Vec::new();
        put_str(&mut body, &self.topic);
        if self.qos != 0 {
            body.extend_from_slice(&self.id.to_be_bytes());
        }
        if version == Version::V5 {
            self.props.encode(&mut body);
        }
        body.extend_from_slice(&self.payload);
        frame(first, &body)
    }
}

/// A SUBSCRIBE with one options byte per filter (for v3 only the QoS bits are meaningful).
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub id: u16,
    pub filters: Vec<(String, u8)>,
    pub props: Props,
    /// The low nibble of the fixed header; the spec demands 0b0010.
    pub header_flags: u8,
}

impl Subscribe {
    pub fn new(id: u16, filters: &[(&str, u8)]) -> Self {
        let filters = filters.iter().map(|(f, o)| ((*f).to_owned(), *o)).collect();
        Self { id, filters, props: Props::new(), header_flags: 0x02 }
    }

    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }

    pub fn encode(&self, version: Version) -> Vec<u8> {
        let mut body = self.id.to_be_bytes().to_vec();
        if version == Version::V5 {
            self.props.encode(&mut body);
        }
        for (filter, options) in &self.filters {
            put_str(&mut body, filter);
            body.push(*options);
        }
        frame(0x80 | self.header_flags, &body)
    }
}

/// An UNSUBSCRIBE for these filters.
pub fn unsubscribe(version: Version, id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if version == Version::V5 {
        Props::new().encode(&mut body);
    }
    for filter in filters {
        put_str(&mut body, filter);
    }
    frame(0xA2, &body)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70). A v5 reason code is written
/// only when it is not 0 (section 3.4.2.1 lets a success omit it).
pub fn ack(first_byte: u8, version: Version, id: u16, reason: u8) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if version == Version::V5 && reason != 0 {
        body.push(reason);
    }
    frame(first_byte, &body)
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// PINGREQ.
pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0x00]
}

/// DISCONNECT; for v5 with this reason code and properties.
pub fn disconnect(version: Version, reason: u8, props: &Props) -> Vec<u8> {
    let mut body = Vec::new();
    if version == Version::V5 && (reason != 0 || !props.is_empty()) {
        body.push(reason);
        props.encode(&mut body);
    }
    frame(0xE0, &body)
}

/// A fixed header (first byte and remaining length) followed by `body`.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_var(&mut out, body.len() as u32);
    out.extend_from_slice(body);
    out
}

/// A Variable Byte Integer (section 1.5.5 of 5.0, the Remaining Length of 3.1.1).
pub fn put_var(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bin(out, s.as_bytes());
}

pub fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

pub fn take_u8(buf: &mut &[u8]) -> Option<u8> {
    let (&first, rest) = buf.split_first()?;
    *buf = rest;
    Some(first)
}

pub fn take_u16(buf: &mut &[u8]) -> Option<u16> {
    let bytes = take_n(buf, 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

pub fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let bytes = take_n(buf, 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A Variable Byte Integer of at most four bytes.
pub fn take_var(buf: &mut &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for i in 0..4 {
        let byte = take_u8(buf)?;
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub fn take_bin(buf: &mut &[u8]) -> Option<Vec<u8>> {
    let len = take_u16(buf)? as usize;
    Some(take_n(buf, len)?.to_vec())
}

pub fn take_str(buf: &mut &[u8]) -> Option<String> {
    String::from_utf8(take_bin(buf)?).ok()
}

pub fn take_n<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}
