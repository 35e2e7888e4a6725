//! Framing + validation + classification of real QMP traffic, against
//! serde_json on the same bytes (a full `Value` parse, and validation only
//! with `IgnoredAny`) and against qapi-rs's `QmpMessageAny`, what a Rust user
//! would otherwise pick.
//!
//! `cargo bench -p vmwire-benches --bench qmp`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;
use std::hint::black_box;
use vmwire_benches::qmp::{burst, framer, ready, run_framer, run_machine, run_qapi, schema, serde_stream};

fn bench(c: &mut Criterion) {
    let schema = schema();
    let (burst, burst_messages) = burst();
    for (name, bytes, messages) in [("schema_207KB", &schema, 1), ("burst_small", &burst, burst_messages)] {
        let mut group = c.benchmark_group(format!("qmp/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut client = ready();
        assert_eq!(run_machine(&mut client, bytes), messages);
        group.bench_function(BenchmarkId::new("vmwire", "frame+validate+classify"), |b| {
            b.iter(|| run_machine(&mut client, black_box(bytes)))
        });
        let mut framer = framer();
        assert_eq!(run_framer(&mut framer, bytes), messages);
        group.bench_function(BenchmarkId::new("vmwire", "json::Framer frame+validate"), |b| {
            b.iter(|| run_framer(&mut framer, black_box(bytes)))
        });
        group.bench_function(BenchmarkId::new("serde_json", "Value"), |b| {
            b.iter(|| serde_stream::<serde_json::Value>(black_box(bytes)))
        });
        group.bench_function(BenchmarkId::new("serde_json", "IgnoredAny"), |b| {
            b.iter(|| serde_stream::<IgnoredAny>(black_box(bytes)))
        });
        group.bench_function(BenchmarkId::new("qapi-rs", "QmpMessageAny"), |b| b.iter(|| run_qapi(black_box(bytes))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
