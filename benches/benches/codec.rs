//! Codec benches: encode and decode of the standard frame
//! (`{"type":"message","data":"<64 ASCII chars>"}` + 0x0C), a 1000-frame
//! buffer, and `serde_json::from_slice` on the same frame as the ceiling
//! for a JSON-parsing decoder.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipc_benches::{standard_frame, STANDARD_PAYLOAD};
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound};
use serde::Deserialize;

#[derive(Deserialize)]
struct Borrowed<'a> {
    #[serde(rename = "type")]
    _ty: &'a str,
    #[serde(borrow)]
    _data: &'a serde_json::value::RawValue,
}

fn bench(c: &mut Criterion) {
    let frame = standard_frame();
    let json = &frame[..frame.len() - 1];
    let now = Instant::now();

    let mut g = c.benchmark_group("standard_frame");
    g.throughput(Throughput::Elements(1));

    g.bench_function("serde_json_from_slice_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(json)).ok()))
    });
    g.bench_function("serde_json_from_slice_borrowed_struct", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Borrowed<'_>>(black_box(json)).is_ok()))
    });

    for (name, cfg) in [
        ("fast", CodecConfig::fast()),
        ("guarded", CodecConfig::guarded()),
    ] {
        let enc = FrameEncoder::new(cfg.clone()).unwrap();
        let mut dst = BytesMut::with_capacity(256);
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                dst.clear();
                enc.encode("message", Some(black_box(STANDARD_PAYLOAD)), &mut dst)
                    .unwrap();
                black_box(dst.len())
            })
        });
        let mut check = BytesMut::new();
        enc.encode("message", Some(STANDARD_PAYLOAD), &mut check)
            .unwrap();
        assert_eq!(&check[..], &frame[..]);

        let mut dec = FrameDecoder::new(cfg.clone()).unwrap();
        let mut buf = BytesMut::with_capacity(4096);
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| {
                buf.extend_from_slice(black_box(&frame));
                let item = dec.decode(&mut buf, now).unwrap();
                black_box(item)
            })
        });
        g.bench_function(format!("decode_{name}_presplit"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&frame[..]),
                |buf| black_box(dec.decode(buf, now).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("decode_fast_and_data_string", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(&frame));
            let Some(Inbound::Message(m)) = dec.decode(&mut buf, now).unwrap() else {
                unreachable!()
            };
            black_box(m.data::<String>().unwrap())
        })
    });
    g.finish();

    let mut many = Vec::with_capacity(frame.len() * 1000);
    for _ in 0..1000 {
        many.extend_from_slice(&frame);
    }
    let mut g = c.benchmark_group("buffer_1000_frames");
    g.throughput(Throughput::Elements(1000));
    for (name, cfg) in [
        ("fast", CodecConfig::fast()),
        ("guarded", CodecConfig::guarded()),
    ] {
        let mut dec = FrameDecoder::new(cfg).unwrap();
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&many[..]),
                |buf| {
                    let mut n = 0;
                    while let Some(item) = dec.decode(buf, now).unwrap() {
                        black_box(&item);
                        n += 1;
                    }
                    assert_eq!(n, 1000);
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
