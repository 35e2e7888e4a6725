//! Decoding a `vm info` reply for 10,000 VMs: one frame in the shape of the
//! captured `vm info` frames (`fixtures/minimega/*vm_info*.s2c`: the same 44
//! columns, a `Data` array, the daemon's aligned `Rendered` table), against
//! serde_json on the same bytes.
//!
//! `cargo bench -p vmwire-benches --bench minimega`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::hint::black_box;
use vmwire_benches::fixture;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::minimega::{Client, Config, Event, Table};

const VMS: usize = 10_000;

/// The `Header` of the captured `vm info` frames.
fn captured_header() -> Vec<String> {
    let s2c = fixture("minimega/pybind_vm_info.c1.s2c");
    let frame: serde_json::Value = serde_json::from_slice(&s2c).unwrap();
    frame["Resp"][0]["Header"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
}

/// A cell of VM `i` in `column`, as minimega's `vm info` fills it.
fn cell(column: &str, i: usize) -> String {
    let (a, b) = (i / 250, i % 250);
    match column {
        "id" => i.to_string(),
        "name" => format!("vm-{i}"),
        "state" => ["RUNNING", "PAUSED", "BUILDING"][i % 3].into(),
        "uptime" => format!("{}h{}m{}s", i % 24, i % 60, i % 59),
        "type" => "kvm".into(),
        "uuid" => format!("{i:08x}-7c2e-4d3b-9a51-{:012x}", i * 7919),
        "cc_active" => i.is_multiple_of(2).to_string(),
        "pid" => (20_000 + i).to_string(),
        "vlan" => format!("[{}]", 101 + i % 8),
        "bridge" => "[mega_bridge]".into(),
        "tap" => format!("[mega_tap{i}]"),
        "mac" => format!("[00:16:3e:{:02x}:{:02x}:{:02x}]", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff),
        "ip" => format!("[10.0.{a}.{b}]"),
        "ip6" => format!("[fe80::216:3eff:fe{:02x}:{:04x}]", i >> 16 & 0xff, i & 0xffff),
        "qos" | "save" | "bond" => "[]".into(),
        "qinq" => "[false]".into(),
        "memory" => "2048".into(),
        "vcpus" => "1".into(),
        "disks" => "[/images/ubuntu-22.04.qcow2]".into(),
        "snapshot" => "true".into(),
        "serial-ports" | "virtio-ports" | "fifo" => "0".into(),
        "vnc_port" => (5900 + i).to_string(),
        "usb-use-xhci" | "bidirectional-copy-paste" => "false".into(),
        "tags" => format!("{{\"group\":\"g{}\"}}", i % 10),
        _ => String::new(),
    }
}

/// The frame, as the daemon would send it (Go's encoder: compact, `\n`).
fn vm_info_frame(n: usize) -> (Vec<u8>, usize) {
    let header = captured_header();
    let rows: Vec<Vec<String>> = (0..n).map(|i| header.iter().map(|c| cell(c, i)).collect()).collect();
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "ID": row[0].parse::<u64>().unwrap(), "Name": row[1], "State": row[2], "Type": row[4],
                "UUID": row[5], "Memory": row[17], "VCPUs": row[18], "VLANs": [row[8]], "Tags": {}
            })
        })
        .collect();
    // The daemon's rendering: host column, ` | ` separators, aligned.
    let mut lines: Vec<Vec<String>> = vec![std::iter::once("host".into()).chain(header.iter().cloned()).collect()];
    lines.extend(rows.iter().map(|r| std::iter::once("mmpeer".to_string()).chain(r.iter().cloned()).collect()));
    let mut widths = vec![5; header.len() + 1];
    for line in &lines {
        for (j, c) in line.iter().enumerate() {
            widths[j] = widths[j].max(c.chars().count() + 3);
        }
    }
    let rendered: Vec<String> = lines
        .iter()
        .map(|l| {
            l.iter().enumerate().map(|(j, c)| format!("{c:<w$}", w = widths[j] - 2)).collect::<Vec<_>>().join("| ")
        })
        .collect();
    let frame = serde_json::json!({
        "Resp": [{"Host": "mmpeer", "Response": "", "Header": header, "Tabular": rows, "Error": "", "Data": data}],
        "Rendered": rendered.join("\n").trim(),
        "More": false,
        "Status": false,
    });
    let mut bytes = serde_json::to_vec(&frame).unwrap();
    bytes.push(b'\n');
    (bytes, n)
}

/// Feeds the frame through the machine and reads every cell of every row.
fn run_machine(mm: &mut Client<Heap>, bytes: &[u8]) -> (usize, usize) {
    mm.command("vm info").unwrap();
    let n = mm.transmit().len();
    mm.transmitted(n);
    let (mut rows, mut cells) = (0, 0);
    let mut fed = 0;
    while fed < bytes.len() {
        fed += mm.receive(&bytes[fed..]).unwrap();
        while let Some(event) = mm.poll().unwrap() {
            if let Event::Frame(frame) = event {
                for response in frame.responses() {
                    for row in response.rows() {
                        rows += 1;
                        for c in row.cells() {
                            cells += c.raw().len();
                        }
                    }
                }
            }
        }
    }
    (rows, cells)
}

/// The same, collecting the table into owned strings.
fn run_machine_owned(mm: &mut Client<Heap>, bytes: &[u8]) -> usize {
    mm.command("vm info").unwrap();
    let n = mm.transmit().len();
    mm.transmitted(n);
    let mut rows = 0;
    let mut fed = 0;
    while fed < bytes.len() {
        fed += mm.receive(&bytes[fed..]).unwrap();
        while let Some(event) = mm.poll().unwrap() {
            if let Event::Frame(frame) = event {
                let table = Table::annotated(frame.responses());
                rows += table.rows.len();
                black_box(table);
            }
        }
    }
    rows
}

#[allow(non_snake_case, dead_code)]
#[derive(Deserialize)]
struct WireFrame {
    Resp: Option<Vec<WireResponse>>,
    Rendered: String,
    More: bool,
    #[serde(default)]
    Status: bool,
}

#[allow(non_snake_case, dead_code)]
#[derive(Deserialize)]
struct WireResponse {
    Host: String,
    Response: String,
    Header: Option<Vec<String>>,
    Tabular: Option<Vec<Vec<String>>>,
    Error: String,
    Data: IgnoredAny,
}

fn serde_typed(bytes: &[u8]) -> usize {
    let frame: WireFrame = serde_json::from_slice(bytes).unwrap();
    frame.Resp.unwrap_or_default().iter().map(|r| r.Tabular.as_ref().map_or(0, Vec::len)).sum()
}

fn serde_value(bytes: &[u8]) -> usize {
    let frame: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    frame["Resp"][0]["Tabular"].as_array().map_or(0, Vec::len)
}

fn bench(c: &mut Criterion) {
    let (bytes, vms) = vm_info_frame(VMS);
    let mut mm = Client::<Heap>::new(Config::default());
    assert_eq!(run_machine(&mut mm, &bytes).0, vms);
    assert_eq!(run_machine_owned(&mut mm, &bytes), vms);
    assert_eq!(serde_typed(&bytes), vms);
    assert_eq!(serde_value(&bytes), vms);
    eprintln!("vm info frame: {} VMs, {} bytes", vms, bytes.len());
    for (unit, throughput) in
        [("bytes", Throughput::Bytes(bytes.len() as u64)), ("rows", Throughput::Elements(vms as u64))]
    {
        let mut group = c.benchmark_group(format!("minimega/vm_info_10k/{unit}"));
        group.throughput(throughput);
        group.bench_function(BenchmarkId::new("vmwire", "frame+check+every cell (borrowed)"), |b| {
            b.iter(|| run_machine(&mut mm, black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::new("vmwire", "frame+check+owned Table"), |b| {
            b.iter(|| run_machine_owned(&mut mm, black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::new("serde_json", "typed frame (owned)"), |b| {
            b.iter(|| serde_typed(black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::new("serde_json", "Value"), |b| b.iter(|| serde_value(black_box(&bytes))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
