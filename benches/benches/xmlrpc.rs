//! Decoding `VM.get_all_records` for 1,000 VMs (the 2.3 MB
//! `fixtures/xenapi/11_get_all_records_1000.response.xml`), against dxr,
//! serde_xmlrpc and xmlrpc on the same bytes:
//! - `tree`: each library's own decoded form (theirs build an owned value
//!   tree; ours validates the whole document and hands out borrowed values);
//! - `walk` (ours): the same, then every value visited (ours reads lazily,
//!   so this is what "decoded" costs when all of it is used);
//! - `typed`: straight into `HashMap<String, VmRecord>` with serde (ours and
//!   serde_xmlrpc), every string an owned `String`;
//! - `typed_borrowed` (ours): the same with `Cow<str>` fields, which borrow
//!   from the document unless a string has references to decode.
//!
//! `cargo bench -p vmwire-benches --bench xmlrpc`

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use vmwire_benches::fixture;
use vmwire_proto::xmlrpc::{self, Value};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct VmRecord {
    uuid: String,
    name_label: String,
    name_description: String,
    power_state: String,
    is_a_template: bool,
    is_control_domain: bool,
    memory_static_max: String,
    memory_dynamic_min: String,
    #[serde(rename = "VCPUs_max")]
    vcpus_max: String,
    #[serde(rename = "VCPUs_at_startup")]
    vcpus_at_startup: String,
    actions_after_crash: String,
    resident_on: String,
    other_config: HashMap<String, String>,
    #[serde(rename = "VIFs")]
    vifs: Vec<String>,
    #[serde(rename = "VBDs")]
    vbds: Vec<String>,
    tags: Vec<String>,
    user_version: String,
    start_delay: String,
    #[serde(rename = "HVM_shadow_multiplier")]
    hvm_shadow_multiplier: f64,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Records {
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Value")]
    value: HashMap<String, VmRecord>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct VmRecordRef<'a> {
    #[serde(borrow)]
    uuid: Cow<'a, str>,
    #[serde(borrow)]
    name_label: Cow<'a, str>,
    #[serde(borrow)]
    name_description: Cow<'a, str>,
    #[serde(borrow)]
    power_state: Cow<'a, str>,
    is_a_template: bool,
    is_control_domain: bool,
    memory_static_max: i64,
    memory_dynamic_min: i64,
    #[serde(rename = "VCPUs_max")]
    vcpus_max: i64,
    #[serde(rename = "VCPUs_at_startup")]
    vcpus_at_startup: i64,
    #[serde(borrow)]
    actions_after_crash: Cow<'a, str>,
    #[serde(borrow)]
    resident_on: Cow<'a, str>,
    #[serde(borrow)]
    other_config: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(rename = "VIFs", borrow)]
    vifs: Vec<Cow<'a, str>>,
    #[serde(rename = "VBDs", borrow)]
    vbds: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    tags: Vec<Cow<'a, str>>,
    user_version: i64,
    start_delay: i64,
    #[serde(rename = "HVM_shadow_multiplier")]
    hvm_shadow_multiplier: f64,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RecordsRef<'a> {
    #[serde(rename = "Status", borrow)]
    status: Cow<'a, str>,
    #[serde(rename = "Value", borrow)]
    value: HashMap<Cow<'a, str>, VmRecordRef<'a>>,
}

/// Visits every value; returns how many scalars there were.
fn walk(v: Value<'_>) -> usize {
    match v {
        Value::Struct(s) => s
            .members()
            .map(|(name, v)| {
                black_box(name.as_str());
                walk(v)
            })
            .sum(),
        Value::Array(a) => a.iter().map(walk).sum(),
        Value::String(s) => {
            black_box(s.as_str());
            1
        }
        other => {
            black_box(other);
            1
        }
    }
}

/// The `xmlrpc` crate only decodes what a transport hands back.
struct Canned<'a>(&'a [u8]);

impl<'a> ::xmlrpc::Transport for Canned<'a> {
    type Stream = &'a [u8];
    fn transmit(self, _: &::xmlrpc::Request<'_>) -> Result<&'a [u8], Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0)
    }
}

fn bench(c: &mut Criterion) {
    // dxr rejects xapi's dates (`19700101T00:00:00Z`: it does not accept the
    // `Z`), so every library reads the capture with the `Z`s removed; the
    // bytes are otherwise the capture's.
    let capture = fixture("xenapi/11_get_all_records_1000.response.xml");
    let text = String::from_utf8(capture).unwrap().replace("Z</dateTime.iso8601>", "</dateTime.iso8601>");
    let bytes = text.as_bytes().to_vec();
    let text = text.as_str();
    let mut g = c.benchmark_group("xmlrpc_get_all_records_1000");
    g.throughput(Throughput::Bytes(bytes.len() as u64));

    g.bench_function("vmwire/tree", |b| b.iter(|| black_box(xmlrpc::parse_response(black_box(&bytes)).unwrap())));
    g.bench_function("dxr/tree", |b| b.iter(|| black_box(dxr::MethodResponse::from_xml(black_box(text)).unwrap())));
    g.bench_function("serde_xmlrpc/tree", |b| {
        b.iter(|| black_box(serde_xmlrpc::response_from_str::<serde_xmlrpc::Value>(black_box(text)).unwrap()))
    });
    g.bench_function("xmlrpc/tree", |b| {
        b.iter(|| black_box(::xmlrpc::Request::new("VM.get_all_records").call(Canned(black_box(&bytes))).unwrap()))
    });

    g.bench_function("vmwire/walk", |b| {
        b.iter(|| walk(xmlrpc::parse_response(black_box(&bytes)).unwrap().result().unwrap()))
    });

    g.bench_function("vmwire/typed", |b| {
        b.iter(|| {
            let r = xmlrpc::parse_response(black_box(&bytes)).unwrap();
            black_box(r.params().unwrap().deserialize_first::<Records>().unwrap())
        })
    });
    g.bench_function("vmwire/typed_borrowed", |b| {
        b.iter(|| {
            let r = xmlrpc::parse_response(black_box(&bytes)).unwrap();
            black_box(r.params().unwrap().deserialize_first::<RecordsRef>().unwrap().value.len())
        })
    });
    g.bench_function("serde_xmlrpc/typed", |b| {
        b.iter(|| black_box(serde_xmlrpc::response_from_str::<Records>(black_box(text)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
