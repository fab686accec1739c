//! Decode and encode of an MQTT-SN PUBLISH by data size, the message a gateway handles most.
//!
//! `cargo bench -p midge-sn-codec --bench sn_codec` (add `-- --quick` for a short run).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use midge_sn_codec::{decode, encode, Message, MsgId, Publish, PublishTopic, QoS, TopicId};

/// Data sizes: a sensor reading, a small JSON document, and one that needs the 3-octet Length.
const DATA_SIZES: [usize; 3] = [16, 128, 1024];

fn publish(size: usize) -> Message {
    Message::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(TopicId(42)),
        msg_id: MsgId(7),
        data: Bytes::from(vec![b'x'; size]),
    })
}

fn decode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("sn_decode_publish");
    for size in DATA_SIZES {
        let mut datagram = BytesMut::new();
        encode(&publish(size), &mut datagram).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &datagram[..], |b, datagram| {
            b.iter(|| decode(criterion::black_box(datagram)).unwrap())
        });
    }
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("sn_encode_publish");
    for size in DATA_SIZES {
        let message = publish(size);
        let mut out = BytesMut::with_capacity(message.encoded_len());
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &message, |b, message| {
            b.iter(|| {
                out.clear();
                encode(criterion::black_box(message), &mut out).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_publish, encode_publish);
criterion_main!(benches);
