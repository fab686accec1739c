//! proptest strategies for arbitrary valid packets of each version.
//!
//! Fields a version cannot carry are generated empty for it (3.x: no properties, reason codes
//! only where 3.x has codes), so a round trip must reproduce every packet exactly. Properties
//! are restricted to those the spec allows in each packet (table 2-4), written out here apart
//! from the codec's own table so that the two check each other.

use bytes::Bytes;
use midge_codec::{
    Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, Properties, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;

/// Where a property section appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
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
}

pub fn mqtt_string() -> impl Strategy<Value = MqttString> {
    prop_oneof![
        "[a-z0-9/ ]{0,8}".prop_map(|text| MqttString::new(&text).unwrap()),
        "[^\u{0}]{0,6}".prop_map(|text| MqttString::new(&text).unwrap()),
    ]
}

pub fn topic_name() -> impl Strategy<Value = TopicName> {
    prop_oneof![
        "[a-z0-9$/]{1,12}".prop_map(|text| TopicName::new(&text).unwrap()),
        "[^\u{0}+#]{1,6}".prop_map(|text| TopicName::new(&text).unwrap()),
    ]
}

pub fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof!["[a-z0-9é]{0,4}", Just("+".to_string())];
    (vec(level, 1..4), any::<bool>()).prop_map(|(levels, multi)| {
        let mut text = levels.join("/");
        if multi {
            text.push_str(if text.is_empty() { "#" } else { "/#" });
        }
        TopicFilter::new(if text.is_empty() { "+" } else { &text }).unwrap()
    })
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|value| PacketId::new(value).unwrap())
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn reason() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode)
}

/// Any property with any valid value.
fn any_properties() -> impl Strategy<Value = Properties> {
    let message = (
        option::of(0u8..=1),
        option::of(any::<u32>()),
        option::of(mqtt_string()),
        option::of(topic_name()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
    );
    let session = (
        option::of(any::<u32>()),
        option::of(mqtt_string()),
        option::of(any::<u16>()),
        option::of(mqtt_string()),
        option::of(binary()),
        option::of(0u8..=1),
        option::of(any::<u32>()),
        option::of(0u8..=1),
        option::of(mqtt_string()),
        option::of(mqtt_string()),
        option::of(mqtt_string()),
    );
    let limits = (
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        vec((mqtt_string(), mqtt_string()), 0..3),
        option::of(1..=u32::MAX),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (message, session, limits).prop_map(|(m, s, l)| Properties {
        payload_format_indicator: m.0,
        message_expiry_interval: m.1,
        content_type: m.2,
        response_topic: m.3,
        correlation_data: m.4,
        subscription_identifiers: m.5,
        session_expiry_interval: s.0,
        assigned_client_identifier: s.1,
        server_keep_alive: s.2,
        authentication_method: s.3,
        authentication_data: s.4,
        request_problem_information: s.5,
        will_delay_interval: s.6,
        request_response_information: s.7,
        response_information: s.8,
        server_reference: s.9,
        reason_string: s.10,
        receive_maximum: l.0,
        topic_alias_maximum: l.1,
        topic_alias: l.2,
        maximum_qos: l.3,
        retain_available: l.4,
        user_properties: l.5,
        maximum_packet_size: l.6,
        wildcard_subscription_available: l.7,
        subscription_identifier_available: l.8,
        shared_subscription_available: l.9,
    })
}

/// Clears the properties `place` does not allow (section 2.2.2.2, table 2-4).
pub fn restrict(mut p: Properties, place: Place) -> Properties {
    use Place::*;
    let message = matches!(place, Publish | Will);
    if !message {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    match place {
        Publish => {}
        Subscribe => p.subscription_identifiers.truncate(1),
        _ => p.subscription_identifiers.clear(),
    }
    if !matches!(place, Connect | ConnAck | Disconnect) {
        p.session_expiry_interval = None;
    }
    if place != ConnAck {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !matches!(place, Connect | ConnAck | Auth) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if place != Connect {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if place != Will {
        p.will_delay_interval = None;
    }
    if !matches!(place, ConnAck | Disconnect) {
        p.server_reference = None;
    }
    if !matches!(place, ConnAck | PubResponse | SubAck | UnsubAck | Disconnect | Auth) {
        p.reason_string = None;
    }
    if !matches!(place, Connect | ConnAck) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
    if place != Publish {
        p.topic_alias = None;
    }
    p
}

/// Properties allowed at `place`, or none for 3.x.
pub fn properties(place: Place, version: ProtocolVersion) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        any_properties().prop_map(move |p| restrict(p, place)).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (topic_name(), binary(), qos(), any::<bool>(), properties(Place::Will, version))
        .prop_map(|(topic, payload, qos, retain, properties)| Will { topic, payload, qos, retain, properties });
    (
        any::<bool>(),
        any::<u16>(),
        mqtt_string(),
        option::of(will),
        option::of(mqtt_string()),
        option::of(binary()),
        properties(Place::Connect, version),
    )
        .prop_map(move |(clean_start, keep_alive, client_id, will, mut username, password, properties)| {
            // MQTT-3.1.2-22: 3.x has no password without a user name.
            if !version.is_v5() && password.is_some() && username.is_none() {
                username = Some(MqttString::new("user").unwrap());
            }
            Packet::Connect(Box::new(Connect {
                protocol: version,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
                bridge: false,
            }))
        })
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason().boxed()
    } else {
        prop::sample::select(vec![
            ReasonCode::SUCCESS,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ])
        .boxed()
    };
    (any::<bool>(), reason, properties(Place::ConnAck, version)).prop_map(move |(present, reason, properties)| {
        let session_present = present && version != ProtocolVersion::V31;
        Packet::ConnAck(ConnAck { session_present, reason, properties })
    })
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties(Place::Publish, version),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(dup, qos, retain, topic, by_alias, packet_id, properties, payload)| {
            let topic = if by_alias && properties.topic_alias.is_some() { TopicName::empty_for_alias() } else { topic };
            Publish {
                // MQTT-3.3.1-2: no DUP at QoS 0; MQTT-2.3.1-5: a packet id exactly above it.
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
                properties,
                payload: Bytes::from(payload),
            }
        })
}

fn pub_response(version: ProtocolVersion) -> impl Strategy<Value = PubResponse> {
    let reason = if version.is_v5() { reason().boxed() } else { Just(ReasonCode::SUCCESS).boxed() };
    (packet_id(), reason, properties(Place::PubResponse, version))
        .prop_map(|(packet_id, reason, properties)| PubResponse { packet_id, reason, properties })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if !v5 {
            return SubscriptionOptions { qos, ..SubscriptionOptions::default() };
        }
        let retain_handling = match rh {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        };
        SubscriptionOptions { qos, no_local: nl, retain_as_published: rap, retain_handling }
    });
    let subscription = (topic_filter(), options).prop_map(|(filter, options)| Subscription { filter, options });
    (packet_id(), vec(subscription, 1..4), properties(Place::Subscribe, version)).prop_map(
        |(packet_id, subscriptions, properties)| Packet::Subscribe(Subscribe { packet_id, subscriptions, properties }),
    )
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason().boxed()
    } else {
        prop::sample::select(vec![0x00, 0x01, 0x02, 0x80]).prop_map(ReasonCode).boxed()
    };
    (packet_id(), vec(reason, 1..4), properties(Place::SubAck, version))
        .prop_map(|(packet_id, reasons, properties)| Packet::SubAck(SubAck { packet_id, reasons, properties }))
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (packet_id(), vec(topic_filter(), 1..4), properties(Place::Unsubscribe, version)).prop_map(
        |(packet_id, filters, properties)| Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }),
    )
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = if version.is_v5() { vec(reason(), 1..4).boxed() } else { Just(Vec::new()).boxed() };
    (packet_id(), reasons, properties(Place::UnsubAck, version))
        .prop_map(|(packet_id, reasons, properties)| Packet::UnsubAck(UnsubAck { packet_id, reasons, properties }))
}

/// Any packet `version` has, valid in every field.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = version.is_v5();
    let mut kinds = vec![
        connect(version).boxed(),
        connack(version).boxed(),
        publish(version).prop_map(Packet::Publish).boxed(),
        pub_response(version).prop_map(Packet::PubAck).boxed(),
        pub_response(version).prop_map(Packet::PubRec).boxed(),
        pub_response(version).prop_map(Packet::PubRel).boxed(),
        pub_response(version).prop_map(Packet::PubComp).boxed(),
        subscribe(version).boxed(),
        suback(version).boxed(),
        unsubscribe(version).boxed(),
        unsuback(version).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
    ];
    if v5 {
        kinds.push(
            (reason(), properties(Place::Disconnect, version))
                .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
                .boxed(),
        );
        kinds.push(
            (reason(), properties(Place::Auth, version))
                .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
                .boxed(),
        );
    } else {
        kinds.push(Just(Packet::Disconnect(Disconnect::default())).boxed());
    }
    Union::new(kinds).boxed()
}

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V31), Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}
