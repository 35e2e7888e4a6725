//! negotiator: decoding the responses of a captured session, and a large
//! `execute` result, with the caller machine (framing, ASCII check, JSON
//! validation, response classification), against what a user would write
//! with serde_json (read the length line, `from_slice` the body) on the same
//! bytes; and encoding an `execute` call with non-ASCII input.
//!
//! `cargo bench -p vmwire-benches --bench negotiator`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;
use std::hint::black_box;
use vmwire_benches::fixture;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::negotiator::{Caller, CallerEvent, Config, Decoder, Limits};

/// The frames of a stream that precede anything unframed (the capture ends
/// with raw bytes that `raw_write` injected).
fn framed(mut bytes: &[u8]) -> (Vec<u8>, usize) {
    let (mut out, mut frames) = (Vec::new(), 0);
    while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
        let Some(len) = std::str::from_utf8(&bytes[..nl]).ok().and_then(|l| l.trim().parse::<usize>().ok()) else {
            break;
        };
        out.extend_from_slice(&bytes[..nl + 1 + len]);
        bytes = &bytes[nl + 1 + len..];
        frames += 1;
    }
    (out, frames)
}

/// The caller machine answering `frames` calls from `bytes`.
fn run_caller(bytes: &[u8], frames: usize) -> usize {
    let mut caller = Caller::<Heap>::new(Config::default());
    let (mut fed, mut answered) = (0, 0);
    while answered < frames {
        caller.call_with("list_commands", |_| Ok(()), |_| Ok(())).unwrap();
        let n = caller.transmit().len();
        caller.transmitted(n);
        loop {
            if let Some(event) = caller.poll().unwrap() {
                black_box(&event);
                assert!(matches!(event, CallerEvent::Result(_) | CallerEvent::Error(_)));
                answered += 1;
                break;
            }
            let buf = caller.recv_buf();
            let n = buf.len().min(bytes.len() - fed);
            buf[..n].copy_from_slice(&bytes[fed..fed + n]);
            caller.recv_commit(n).unwrap();
            fed += n;
        }
    }
    answered
}

/// The frame decoder alone: framing, ASCII check, JSON validation, member index.
fn run_decoder(bytes: &[u8]) -> usize {
    let mut decoder = Decoder::new(vmwire_proto::buf::Bounded::new(1 << 24), Limits::default());
    let (mut fed, mut frames) = (0, 0);
    while fed < bytes.len() {
        let buf = decoder.recv_buf();
        let n = buf.len().min(bytes.len() - fed);
        buf[..n].copy_from_slice(&bytes[fed..fed + n]);
        decoder.recv_commit(n);
        fed += n;
        while let Some(frame) = decoder.next() {
            black_box(frame.unwrap().get("result"));
            frames += 1;
        }
    }
    frames
}

/// What a user would write with serde_json: the length line, then the body.
fn serde_frames<T: serde::de::DeserializeOwned>(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
        let len: usize = std::str::from_utf8(&bytes[..nl]).unwrap().trim().parse().unwrap();
        black_box(serde_json::from_slice::<T>(&bytes[nl + 1..nl + 1 + len]).unwrap());
        bytes = &bytes[nl + 1 + len..];
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let (session, frames) = framed(&fixture("negotiator/01_interface_client.s2c"));
    // A 256 KiB command output, as the Python peer sends it (ASCII-escaped).
    let output: String = (0..4096).map(|i| format!("{i:05} caf\u{e9} \u{2603} line of output\n")).collect();
    let body = serde_json::json!({"success": true, "result": output}).to_string();
    let body = body.replace('\u{e9}', "\\u00e9").replace('\u{2603}', "\\u2603");
    let big = format!("{}\n{body}", body.len()).into_bytes();

    let mut group = c.benchmark_group("negotiator/decode");
    for (name, bytes, n) in [("01_session", &session, frames), ("execute_256k", &big, 1)] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("vmwire Decoder", name), bytes, |b, bytes| {
            b.iter(|| assert_eq!(run_decoder(bytes), n))
        });
        // The whole caller: each call encoded, each response decoded and classified.
        group.bench_with_input(BenchmarkId::new("vmwire Caller", name), bytes, |b, bytes| {
            b.iter(|| assert_eq!(run_caller(bytes, n), n))
        });
        group.bench_with_input(BenchmarkId::new("serde_json::Value", name), bytes, |b, bytes| {
            b.iter(|| assert_eq!(serde_frames::<serde_json::Value>(bytes), n))
        });
        group.bench_with_input(BenchmarkId::new("serde_json::IgnoredAny", name), bytes, |b, bytes| {
            b.iter(|| assert_eq!(serde_frames::<IgnoredAny>(bytes), n))
        });
    }
    group.finish();

    // Encoding a call: escaped to ASCII and framed, Python's separators.
    let input: String = output.chars().take(16 * 1024).collect();
    let mut group = c.benchmark_group("negotiator/encode");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("vmwire", |b| {
        let mut caller = Caller::<Heap>::new(Config::default());
        b.iter(|| {
            caller
                .call_with("execute", |a| a.str("import-data").map(drop), |kw| kw.str("input", &input).map(drop))
                .unwrap();
            black_box(caller.transmit());
            caller.forget();
            let n = caller.transmit().len();
            caller.transmitted(n);
        })
    });
    // serde_json writes UTF-8 (it has no ASCII mode): not what the Python
    // peer needs, but the cost a user would compare against.
    group.bench_function("serde_json (UTF-8, not ASCII)", |b| {
        b.iter(|| {
            let body = serde_json::to_vec(
                &serde_json::json!({"method": "execute", "args": ["import-data"], "kw": {"input": &input}}),
            )
            .unwrap();
            let mut frame = format!("{}\n", body.len()).into_bytes();
            frame.extend_from_slice(&body);
            black_box(frame)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
