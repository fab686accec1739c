//! What `MqttString::as_str` costs: a borrowed `&str` from bytes that were checked when the
//! string was built, against `std::str::from_utf8(..).expect(..)` checking them again.
//!
//! `cargo bench -p midge-codec --bench mqtt_string` (add `-- --quick` for a short run).
//!
//! - `as_str/*`: one call. `as_bytes` is the floor (no conversion at all, which is what an
//!   unchecked conversion compiles to), `as_str` the library's, `from_utf8` a checked one.
//! - `decode_and_route/*`: 64 PUBLISH frames (MQTT 5, QoS 1, 64-byte payload) decoded and each
//!   topic taken as a `&str` [`ROUTING_CALLS`] times, as the broker does on its way to the
//!   subscribers (level check, match, message build, retained lookup): the same work with the
//!   library's `as_str` and with a checked conversion.
//! - `fan_out/*`: one message written to 64 subscribers with `encode_publish`, the topic taken
//!   as a `&str` for each (the broker passes `&message.topic` per delivery): the same two ways.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use midge_codec::{
    decode_packet, encode_packet, encode_publish, MqttString, Packet, PacketId, Properties, ProtocolVersion, Publish,
    PublishHeader, QoS, TopicName,
};

/// An ASCII topic of 46 bytes, the codec bench's.
const ASCII_TOPIC: &str = "site/42/building/7/floor/3/sensor/temperature";
/// A topic with non-ASCII letters, which a check validates on its slower path.
const UTF8_TOPIC: &str = "site/Zürich/bâtiment/7/étage/3/capteur/température";
/// Frames decoded per iteration.
const FRAMES: usize = 64;
/// How many times a routed PUBLISH's topic is taken as a `&str`.
const ROUTING_CALLS: usize = 4;

/// A checked conversion: what `as_str` would be without `from_utf8_unchecked`.
fn checked(text: &MqttString) -> &str {
    std::str::from_utf8(text.as_bytes()).expect("checked when built")
}

fn as_str(c: &mut Criterion) {
    let mut group = c.benchmark_group("as_str");
    for (name, topic) in [("ascii_46B", ASCII_TOPIC), ("utf8_55B", UTF8_TOPIC), ("ascii_8B", "a/b/c/de")] {
        let text = MqttString::new(topic).unwrap();
        group.bench_with_input(BenchmarkId::new("as_bytes", name), &text, |b, text| {
            b.iter(|| black_box(text).as_bytes().len())
        });
        group.bench_with_input(BenchmarkId::new("as_str", name), &text, |b, text| {
            b.iter(|| black_box(text).as_str().len())
        });
        group.bench_with_input(BenchmarkId::new("from_utf8", name), &text, |b, text| {
            b.iter(|| checked(black_box(text)).len())
        });
    }
    group.finish();
}

/// Routing-like use of a topic: the level count, the `$` test and the length, each on a fresh
/// `&str` as separate call sites would take it.
fn route(topic: &TopicName, to_str: impl Fn(&MqttString) -> &str) -> usize {
    let mut work = 0;
    for _ in 0..ROUTING_CALLS {
        let text = to_str(black_box(topic.as_mqtt_string()));
        work += text.split('/').count() + usize::from(text.starts_with('$')) + text.len();
    }
    work
}

fn decode_and_route(c: &mut Criterion) {
    let version = ProtocolVersion::V5;
    let mut group = c.benchmark_group("decode_and_route");
    for (name, topic) in [("ascii_46B", ASCII_TOPIC), ("utf8_55B", UTF8_TOPIC)] {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new(topic).unwrap(),
            packet_id: PacketId::new(7),
            properties: Properties::default(),
            payload: Bytes::from(vec![b'x'; 64]),
        });
        let mut wire = BytesMut::new();
        for _ in 0..FRAMES {
            encode_packet(&publish, version, &mut wire).unwrap();
        }
        group.throughput(Throughput::Elements(FRAMES as u64));
        for (variant, to_str) in [("as_str", MqttString::as_str as fn(&MqttString) -> &str), ("from_utf8", checked)] {
            group.bench_with_input(BenchmarkId::new(variant, name), &wire, |b, wire| {
                b.iter(|| {
                    let mut buf = wire.clone();
                    let mut work = 0;
                    while let Some(packet) = decode_packet(&mut buf, version, usize::MAX).unwrap() {
                        if let Packet::Publish(publish) = packet {
                            work += route(&publish.topic, to_str);
                        }
                    }
                    work
                })
            });
        }
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let version = ProtocolVersion::V311;
    let payload = vec![b'x'; 64];
    let mut group = c.benchmark_group("fan_out");
    for (name, topic) in [("ascii_46B", ASCII_TOPIC), ("utf8_55B", UTF8_TOPIC)] {
        let topic = TopicName::new(topic).unwrap();
        let mut out = BytesMut::with_capacity(FRAMES * 256);
        group.throughput(Throughput::Elements(FRAMES as u64));
        for (variant, to_str) in [("as_str", MqttString::as_str as fn(&MqttString) -> &str), ("from_utf8", checked)] {
            group.bench_function(BenchmarkId::new(variant, name), |b| {
                b.iter(|| {
                    out.clear();
                    for _ in 0..FRAMES {
                        let header = PublishHeader {
                            dup: false,
                            qos: QoS::AtLeastOnce,
                            retain: false,
                            topic: to_str(black_box(topic.as_mqtt_string())),
                            packet_id: PacketId::new(11),
                            shared_properties: &[],
                            message_expiry_interval: None,
                            topic_alias: None,
                            subscription_identifiers: &[],
                        };
                        encode_publish(&mut out, version, &header, &payload).unwrap();
                    }
                    out.len()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, as_str, decode_and_route, fan_out);
criterion_main!(benches);
