//! Property identifiers and the packets each may appear in (section 2.2.2.2, table 2-4).

/// A place a property section appears; decides which identifiers are allowed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// CONNECT properties.
    Connect,
    /// Will properties in the CONNECT payload.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResponse,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl Context {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Identifier values, named as in the specification.
pub(crate) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
    pub(crate) const CONTENT_TYPE: u32 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u32 = 0x08;
    pub(crate) const CORRELATION_DATA: u32 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u32 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u32 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u32 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u32 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u32 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u32 = 0x1C;
    pub(crate) const REASON_STRING: u32 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u32 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub(crate) const TOPIC_ALIAS: u32 = 0x23;
    pub(crate) const MAXIMUM_QOS: u32 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u32 = 0x25;
    pub(crate) const USER_PROPERTY: u32 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u32 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;
}

const fn contexts(list: &[Context]) -> u16 {
    let mut mask = 0;
    let mut index = 0;
    while index < list.len() {
        mask |= list[index].bit();
        index += 1;
    }
    mask
}

use Context::*;

const MESSAGE: u16 = contexts(&[Publish, Will]);
const CONNACK_ONLY: u16 = contexts(&[ConnAck]);
const AUTHENTICATION: u16 = contexts(&[Connect, ConnAck, Auth]);
const SESSION: u16 = contexts(&[Connect, ConnAck]);
const REASON_STRING: u16 = contexts(&[ConnAck, PubResponse, SubAck, UnsubAck, Disconnect, Auth]);
const USER_PROPERTY: u16 = contexts(&[
    Connect,
    Will,
    ConnAck,
    Publish,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
]);

/// The contexts `identifier` may appear in, or `None` if the specification defines no such
/// property (a Malformed Packet, since its value's length is unknown).
fn allowed_contexts(identifier: u32) -> Option<u16> {
    let mask = match identifier {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => MESSAGE,
        id::SUBSCRIPTION_IDENTIFIER => contexts(&[Publish, Subscribe]),
        id::SESSION_EXPIRY_INTERVAL => contexts(&[Connect, ConnAck, Disconnect]),
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => AUTHENTICATION,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => contexts(&[Connect]),
        id::WILL_DELAY_INTERVAL => contexts(&[Will]),
        id::SERVER_REFERENCE => contexts(&[ConnAck, Disconnect]),
        id::REASON_STRING => REASON_STRING,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => SESSION,
        id::TOPIC_ALIAS => contexts(&[Publish]),
        id::USER_PROPERTY => USER_PROPERTY,
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => CONNACK_ONLY,
        _ => return None,
    };
    Some(mask)
}

/// Whether `identifier` is defined at all (`None` if not), and if so whether it may appear in
/// `context`.
pub(crate) fn allowed(identifier: u32, context: Context) -> Option<bool> {
    allowed_contexts(identifier).map(|mask| mask & context.bit() != 0)
}

/// Whether `identifier` may appear more than once in `context`: User Property anywhere, and
/// Subscription Identifier only in PUBLISH, which carries one per matching subscription
/// (section 3.3.2.3.8); SUBSCRIBE carries at most one (section 3.8.2.1.2).
pub(crate) fn may_repeat(identifier: u32, context: Context) -> bool {
    identifier == id::USER_PROPERTY || (identifier == id::SUBSCRIPTION_IDENTIFIER && context == Context::Publish)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn will_allows_will_delay_but_not_topic_alias() {
        assert_eq!(allowed(id::WILL_DELAY_INTERVAL, Will), Some(true));
        assert_eq!(allowed(id::WILL_DELAY_INTERVAL, Publish), Some(false));
        assert_eq!(allowed(id::TOPIC_ALIAS, Will), Some(false));
        assert_eq!(allowed(id::SUBSCRIPTION_IDENTIFIER, Will), Some(false));
    }

    #[test]
    fn undefined_identifiers_are_unknown() {
        for identifier in [0x00, 0x04, 0x0A, 0x14, 0x1B, 0x20, 0x2B, 0x7F, 0x80] {
            assert_eq!(allowed(identifier, Connect), None, "{identifier:#x}");
        }
    }

    #[test]
    fn unsubscribe_allows_only_user_property() {
        for identifier in 0..0x2B {
            let expected = allowed_contexts(identifier).map(|_| identifier == id::USER_PROPERTY);
            assert_eq!(allowed(identifier, Unsubscribe), expected, "{identifier:#x}");
        }
    }
}
