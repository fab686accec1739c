//! One valid packet of each kind per version: inputs for the incomplete-input tests and the
//! fuzz corpus.

use bytes::Bytes;
use midge_codec::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

use crate::support::{encode, filter, pid, s, topic};

/// Representative packets of every kind `version` has, with v5 fields set only for v5.
pub fn packets(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let props = |properties: Properties| {
        if v5 {
            properties
        } else {
            Properties::default()
        }
    };
    let reason = |code: ReasonCode| if v5 { code } else { ReasonCode::SUCCESS };
    let mut packets = vec![
        Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            client_id: s("client-1"),
            will: Some(Will {
                topic: topic("clients/1/status"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: props(Properties { will_delay_interval: Some(5), ..Properties::default() }),
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"secret")),
            properties: props(Properties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                user_properties: vec![(s("k"), s("v"))],
                ..Properties::default()
            }),
            bridge: false,
        })),
        Packet::ConnAck(ConnAck {
            session_present: version != ProtocolVersion::V31,
            reason: ReasonCode::SUCCESS,
            properties: props(Properties {
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                ..Properties::default()
            }),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("sensors/kitchen/temperature"),
            packet_id: Some(pid(7)),
            properties: props(Properties {
                payload_format_indicator: Some(1),
                topic_alias: Some(3),
                subscription_identifiers: vec![1, 200_000],
                ..Properties::default()
            }),
            payload: Bytes::from_static(b"21.5"),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic("a/b"),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::new(),
        }),
        Packet::PubAck(PubResponse::success(pid(1))),
        Packet::PubRec(PubResponse {
            packet_id: pid(2),
            reason: reason(ReasonCode::NO_MATCHING_SUBSCRIBERS),
            properties: Properties::default(),
        }),
        Packet::PubRel(PubResponse {
            packet_id: pid(3),
            reason: reason(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
            properties: props(Properties { reason_string: Some(s("gone")), ..Properties::default() }),
        }),
        Packet::PubComp(PubResponse::success(pid(4))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(5),
            subscriptions: vec![
                Subscription {
                    filter: filter("a/+/c"),
                    options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                },
                Subscription {
                    filter: filter("$share/g/d/#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: if v5 { RetainHandling::DoNotSend } else { RetainHandling::SendAtSubscribe },
                    },
                },
            ],
            properties: props(Properties { subscription_identifiers: vec![42], ..Properties::default() }),
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(5),
            reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
            properties: Properties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(6),
            filters: vec![filter("a/+/c"), filter("#")],
            properties: Properties::default(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(6),
            reasons: if v5 { vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED] } else { Vec::new() },
            properties: Properties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v5 {
        packets.push(Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: Properties { session_expiry_interval: Some(0), ..Properties::default() },
        }));
        packets.push(Packet::Auth(Auth::default()));
        packets.push(Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"n,,n=user,r=abc")),
                ..Properties::default()
            },
        }));
    }
    packets
}

/// The packets of [`packets`], encoded.
pub fn frames(version: ProtocolVersion) -> Vec<(Packet, Vec<u8>)> {
    packets(version)
        .into_iter()
        .map(|packet| {
            let bytes = encode(&packet, version);
            (packet, bytes)
        })
        .collect()
}

/// Writes the samples to `fuzz/corpus/decode/` as the fuzzer's seed corpus, one file per
/// packet. Rerun by hand when the samples change:
/// `cargo test -p midge-codec --test codec -- --ignored write_fuzz_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/decode; run by hand"]
fn write_fuzz_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).unwrap();
    for version in crate::support::ALL {
        for (index, (packet, bytes)) in frames(version).into_iter().enumerate() {
            let name = format!("{version:?}-{index:02}-{}", packet.kind()).to_lowercase();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
