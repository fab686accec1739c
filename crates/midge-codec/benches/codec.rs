//! Decode and encode throughput by packet kind and payload size.
//!
//! `cargo bench -p midge-codec --bench codec` (add `-- --quick` for a short run). Figures are
//! recorded in docs/benchmarks.md as ratios from one run.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use midge_codec::{
    decode_packet, encode_packet, encode_publish, MqttString, Packet, PacketId, Properties, ProtocolVersion,
    PubResponse, Publish, PublishHeader, QoS, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};

const TOPIC: &str = "site/42/building/7/floor/3/sensor/temperature";
const PAYLOAD_SIZES: [usize; 4] = [16, 64, 1024, 16 * 1024];
/// Frames decoded per iteration, as a read of a busy connection would hold.
const FRAMES: usize = 64;

fn publish(version: ProtocolVersion, qos: QoS, size: usize) -> Packet {
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.content_type = Some(MqttString::new("application/json").unwrap());
        properties.user_properties.push((MqttString::new("k").unwrap(), MqttString::new("v").unwrap()));
    }
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(TOPIC).unwrap(),
        packet_id: if qos == QoS::AtMostOnce { None } else { PacketId::new(7) },
        properties,
        payload: Bytes::from(vec![b'x'; size]),
    })
}

fn frames(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    for _ in 0..FRAMES {
        encode_packet(packet, version, &mut buf).unwrap();
    }
    buf
}

fn decode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for size in PAYLOAD_SIZES {
            let wire = frames(&publish(version, QoS::AtLeastOnce, size), version);
            group.throughput(Throughput::Elements(FRAMES as u64));
            group.bench_with_input(BenchmarkId::new(format!("{version:?}"), size), &wire, |b, wire| {
                b.iter(|| {
                    let mut buf = wire.clone();
                    while let Some(packet) = decode_packet(&mut buf, version, usize::MAX).unwrap() {
                        criterion::black_box(packet);
                    }
                })
            });
        }
    }
    group.finish();
}

fn decode_control(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_control");
    let version = ProtocolVersion::V5;
    let puback = Packet::PubAck(PubResponse::success(PacketId::new(9).unwrap()));
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(3).unwrap(),
        subscriptions: (0..4)
            .map(|i| Subscription {
                filter: TopicFilter::new(&format!("site/{i}/+/temperature")).unwrap(),
                options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
            })
            .collect(),
        properties: Properties::default(),
    });
    for (name, packet) in [("puback", puback), ("subscribe_4", subscribe), ("pingreq", Packet::PingReq)] {
        let wire = frames(&packet, version);
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                while let Some(packet) = decode_packet(&mut buf, version, usize::MAX).unwrap() {
                    criterion::black_box(packet);
                }
            })
        });
    }
    group.finish();
}

/// The fan-out path: one PUBLISH written per receiver from shared parts.
fn encode_publish_parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish_parts");
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for size in PAYLOAD_SIZES {
            let payload = vec![b'x'; size];
            let ids = [5u32];
            let header = PublishHeader {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: TOPIC,
                packet_id: PacketId::new(11),
                shared_properties: &[],
                message_expiry_interval: None,
                topic_alias: None,
                subscription_identifiers: if version.is_v5() { &ids } else { &[] },
            };
            let mut out = BytesMut::with_capacity(FRAMES * (size + 128));
            group.throughput(Throughput::Elements(FRAMES as u64));
            group.bench_function(BenchmarkId::new(format!("{version:?}"), size), |b| {
                b.iter(|| {
                    out.clear();
                    for _ in 0..FRAMES {
                        encode_publish(&mut out, version, &header, &payload).unwrap();
                    }
                    criterion::black_box(out.len());
                })
            });
        }
    }
    group.finish();
}

fn encode_packets(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_packet");
    let version = ProtocolVersion::V5;
    let cases = [
        ("publish_64", publish(version, QoS::AtLeastOnce, 64)),
        ("puback", Packet::PubAck(PubResponse::success(PacketId::new(9).unwrap()))),
    ];
    for (name, packet) in cases {
        let mut out = BytesMut::with_capacity(FRAMES * 256);
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..FRAMES {
                    encode_packet(&packet, version, &mut out).unwrap();
                }
                criterion::black_box(out.len());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_publish, decode_control, encode_publish_parts, encode_packets);
criterion_main!(benches);
