//! Framing + validation + classification of real QMP traffic, against
//! serde_json on the same bytes: a full `Value` parse, and validation only
//! (`IgnoredAny`).
//!
//! `cargo bench -p vmwire-benches --bench qmp`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;
use std::hint::black_box;
use vmwire_benches::{fixture, longest_line};
use vmwire_proto::Machine;
use vmwire_proto::buf::{Bounded, Heap};
use vmwire_proto::json::{Framer, Limits};
use vmwire_proto::qmp::{Client, Config, Event};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// A negotiated client with nothing pending.
fn ready() -> Client<Heap> {
    let mut c = Client::<Heap>::new(Config::default());
    c.receive(GREETING).unwrap();
    while c.poll().unwrap().is_some() {}
    c.receive(b"{\"return\": {}, \"id\": 0}\r\n").unwrap();
    while c.poll().unwrap().is_some() {}
    let n = c.transmit().len();
    c.transmitted(n);
    c
}

/// Feeds `bytes` through the machine; counts the events.
fn run_machine(c: &mut Client<Heap>, bytes: &[u8]) -> usize {
    let mut fed = 0;
    let mut events = 0;
    while fed < bytes.len() {
        let buf = c.recv_buf();
        let n = buf.len().min(bytes.len() - fed);
        buf[..n].copy_from_slice(&bytes[fed..fed + n]);
        c.recv_commit(n).unwrap();
        fed += n;
        while let Some(e) = c.poll().unwrap() {
            black_box(&e);
            if !matches!(e, Event::Malformed(_)) {
                events += 1;
            }
        }
    }
    events
}

/// Frames and validates `bytes` with the bare JSON framer (no classification); counts the values.
fn run_framer(f: &mut Framer<Bounded<u8>>, bytes: &[u8]) -> usize {
    let (mut fed, mut values) = (0, 0);
    while fed < bytes.len() {
        fed += f.receive(&bytes[fed..]);
        while let Some(m) = f.next() {
            black_box(&m);
            values += 1;
        }
    }
    values
}

fn serde_stream<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
    let mut n = 0;
    for value in serde_json::Deserializer::from_slice(bytes).into_iter::<T>() {
        black_box(value.unwrap());
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    // The 207 KB `query-qmp-schema` reply.
    let schema = longest_line(&fixture("qmp/06_query_qmp_schema.s2c"));
    // A burst of small replies and events: every message QEMU sent in the
    // captured sessions after its greeting, back to back.
    let mut burst = Vec::new();
    for name in [
        "08_pipelined",
        "09_pipelined_oob",
        "10_cont_stop",
        "12_quit",
        "03_caps_oob",
        "02_caps_with_id",
        "16_two_qmp_sockets_A",
    ] {
        let s2c = fixture(&format!("qmp/{name}.s2c"));
        burst.extend(s2c.split_inclusive(|&b| b == b'\n').skip(1).flatten());
    }
    let burst_messages = burst.split_inclusive(|&b| b == b'\n').count();

    for (name, bytes, messages) in [("schema_207KB", &schema, 1), ("burst_small", &burst, burst_messages)] {
        let mut group = c.benchmark_group(format!("qmp/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut client = ready();
        assert_eq!(run_machine(&mut client, bytes), messages);
        group.bench_function(BenchmarkId::new("vmwire", "frame+validate+classify"), |b| {
            b.iter(|| run_machine(&mut client, black_box(bytes)))
        });
        let mut framer = Framer::new(Bounded::new(1 << 24), Limits { max_message: 1 << 24, max_depth: 128 });
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
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
