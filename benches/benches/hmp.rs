//! HMP output extraction on captured readline traffic: the 131 KB echo of a
//! 256-character line (`05_long_line`) and the 15 KB of `help` and `info`
//! (`03_help`), through the machine (echo checked and dropped, output found
//! at the prompt), against what a client would otherwise do with the same
//! bytes: strip the escape sequences with `strip-ansi-escapes` (which keeps
//! the echo's text, every redraw of it), or cut at the first `\r\n` and the
//! next prompt without looking at the echo at all.
//!
//! `cargo bench -p vmwire-benches --bench hmp`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vmwire_benches::fixture;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::hmp::{Client, Config, Event, PROMPT};

const BANNER: &[u8] = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ";

/// Runs `lines` through a fresh machine fed `bytes` (the monitor's bytes
/// after the banner); returns the output bytes.
fn run_machine(lines: &[&[u8]], bytes: &[u8]) -> usize {
    let mut m = Client::<Heap>::new(Config::default());
    m.receive(BANNER).unwrap();
    while m.poll().unwrap().is_some() {}
    for line in lines {
        m.command(line).unwrap();
    }
    let (mut fed, mut out) = (0, 0);
    while fed < bytes.len() {
        let n = m.transmit().len();
        m.transmitted(n);
        let buf = m.recv_buf();
        let n = buf.len().min(bytes.len() - fed);
        buf[..n].copy_from_slice(&bytes[fed..fed + n]);
        m.recv_commit(n).unwrap();
        fed += n;
        while let Some(e) = m.poll().unwrap() {
            if let Event::Output { text, .. } = e {
                out += black_box(text).len();
            }
            let n = m.transmit().len();
            m.transmitted(n);
        }
    }
    out
}

/// The minimum: after each prompt, skip to the first `\r\n`, then take
/// everything up to the next `\r\n(qemu) `. No look at the echo.
fn cut_at_prompts(bytes: &[u8]) -> usize {
    let (mut at, mut out) = (0, 0);
    let end_marker = [&b"\r\n"[..], PROMPT].concat();
    while let Some(k) = memchr::memmem::find(&bytes[at..], b"\r\n") {
        let start = at + k + 2;
        let Some(end) = memchr::memmem::find(&bytes[start - 2..], &end_marker) else { break };
        out += black_box(&bytes[start..start - 2 + end + 2]).len();
        at = start - 2 + end + end_marker.len();
    }
    out
}

fn bench(c: &mut Criterion) {
    for (name, file) in [("long_line_131KB", "hmp/05_long_line.s2c"), ("help_15KB", "hmp/03_help.s2c")] {
        let s2c = fixture(file);
        let bytes = s2c.strip_prefix(BANNER).expect("the banner first");
        let c2s = fixture(&file.replace(".s2c", ".c2s"));
        let lines: Vec<&[u8]> = c2s.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let out = run_machine(&lines, bytes);
        assert!(out > 0);
        assert_eq!(cut_at_prompts(bytes), out, "both ways find the same output");
        let mut group = c.benchmark_group(format!("hmp/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("vmwire", "echo checked, output extracted"), |b| {
            b.iter(|| run_machine(&lines, black_box(bytes)))
        });
        group.bench_function(BenchmarkId::new("strip-ansi-escapes", "strip"), |b| {
            b.iter(|| strip_ansi_escapes::strip(black_box(bytes)).len())
        });
        group.bench_function(BenchmarkId::new("memmem", "cut at prompts, echo unchecked"), |b| {
            b.iter(|| cut_at_prompts(black_box(bytes)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
