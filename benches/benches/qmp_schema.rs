//! Reading QEMU 7.2's `query-qmp-schema` reply (207 KB, 1,051 entries) into
//! the schema index, against serde_json parsing the same bytes into a
//! `Value`; and checking one `blockdev-add` call against the schema.
//!
//! `cargo bench -p vmwire-benches --bench qmp_schema`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vmwire_benches::{fixture, longest_line};
use vmwire_proto::json::Value;
use vmwire_proto::qmp::schema::{FixedSchema, HeapSchema, Schema};

fn read(c: &mut Criterion) {
    let reply = longest_line(&fixture("qmp/06_query_qmp_schema.s2c"));
    let mut g = c.benchmark_group("qmp_schema_read");
    g.throughput(Throughput::Bytes(reply.len() as u64));
    g.bench_function("vmwire_heap", |b| b.iter(|| HeapSchema::read_heap(black_box(&reply[..])).unwrap().view().len()));
    g.bench_function("vmwire_fixed", |b| {
        b.iter(|| {
            let s: FixedSchema<&[u8], 1100, 4500> =
                Schema::read(black_box(&reply[..]), heapless::Vec::new(), heapless::Vec::new()).unwrap();
            s.view().len()
        })
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&reply)).unwrap())
    });
    g.finish();
}

fn check(c: &mut Criterion) {
    let reply = longest_line(&fixture("qmp/06_query_qmp_schema.s2c"));
    let schema = HeapSchema::read_heap(&reply[..]).unwrap();
    let args = br#"{"driver": "qcow2", "node-name": "disk0", "read-only": false, "file": {"driver": "file", "filename": "/var/lib/vm/disk0.qcow2", "aio": "native"}}"#;
    let mut g = c.benchmark_group("qmp_schema_check");
    g.bench_function("blockdev_add", |b| {
        b.iter(|| {
            let args = Value::parse(black_box(args)).unwrap();
            schema.check("blockdev-add", Some(args)).unwrap().more
        })
    });
    let parsed = Value::parse(args).unwrap();
    g.bench_function("blockdev_add_prevalidated", |b| {
        b.iter(|| schema.check("blockdev-add", Some(black_box(parsed))).unwrap().more)
    });
    g.finish();
}

criterion_group!(benches, read, check);
criterion_main!(benches);
