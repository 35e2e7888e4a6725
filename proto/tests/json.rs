//! Property tests of the JSON core: the writer and the framer agree on every
//! string, the framer agrees with serde_json on what is valid, and any
//! chunking frames the same values.

mod common;

use proptest::prelude::*;
use vmwire_proto::buf::Bounded;
use vmwire_proto::json::{Escape, Framer, Limits, ObjectWriter, Value, write_str};

/// Frames `bytes` fed in pieces of the given sizes; returns each value's text or error.
fn frame_all(bytes: &[u8], sizes: &[usize], limits: Limits) -> Vec<Result<Vec<u8>, String>> {
    let mut framer = Framer::new(Bounded::new(limits.max_message), limits);
    let mut out = Vec::new();
    let (mut fed, mut k) = (0, 0);
    while fed < bytes.len() {
        let end = (fed + sizes[k % sizes.len()].max(1)).min(bytes.len());
        k += 1;
        while fed < end {
            fed += framer.receive(&bytes[fed..end]);
            while let Some(m) = framer.next() {
                out.push(m.map(|m| m.raw().to_vec()).map_err(|e| e.to_string()));
            }
        }
    }
    if let Some(m) = framer.finish() {
        out.push(m.map(|m| m.raw().to_vec()).map_err(|e| e.to_string()));
    }
    out
}

/// Arbitrary JSON values as serde_json builds them (including non-ASCII, control characters, deep nesting).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| n.into()),
        any::<u64>().prop_map(|n| n.into()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.into()),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn writer_then_framer_round_trips_every_string(s in any::<String>(), ascii in any::<bool>()) {
        let escape = if ascii { Escape::Ascii } else { Escape::Minimal };
        let mut out = Vec::new();
        let mut obj = ObjectWriter::with_escape(&mut out, escape).unwrap();
        obj.str(&s, &s).unwrap();
        obj.finish().unwrap();
        if ascii {
            prop_assert!(out.is_ascii());
        }
        let v = Value::parse(&out).unwrap();
        let (key, value) = v.as_object().unwrap().members().next().unwrap();
        prop_assert!(key == s.as_str());
        prop_assert_eq!(value.as_str().unwrap().to_string(), s.clone());
        // serde_json reads what we wrote as the same string.
        let back: std::collections::BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(back.get(&s), Some(&s));
        // And we read what serde_json writes.
        let theirs = serde_json::to_vec(&s).unwrap();
        prop_assert!(Value::parse(&theirs).unwrap().as_str().unwrap() == s.as_str());
        let mut single = Vec::new();
        write_str(&mut single, &s, escape).unwrap();
        prop_assert_eq!(serde_json::from_slice::<String>(&single).unwrap(), s);
    }

    #[test]
    fn any_chunking_frames_the_same_values(
        values in prop::collection::vec(json_value(), 1..6),
        sizes in prop::collection::vec(1usize..40, 1..10),
        separator in prop_oneof![Just(""), Just("\n"), Just("\r\n"), Just("  \t")],
        pretty in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        let mut texts = Vec::new();
        for v in &values {
            // Top-level scalars need a delimiter; containers and strings do not.
            let text = if pretty { serde_json::to_vec_pretty(v) } else { serde_json::to_vec(v) }.unwrap();
            stream.extend_from_slice(&text);
            texts.push(text);
            stream.extend_from_slice(if separator.is_empty() && matches!(v, serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null) { b" " } else { separator.as_bytes() });
        }
        let limits = Limits { max_message: 1 << 20, max_depth: 128 };
        let whole = frame_all(&stream, &[usize::MAX], limits);
        prop_assert_eq!(frame_all(&stream, &sizes, limits), whole.clone());
        prop_assert_eq!(whole.len(), values.len());
        for (framed, text) in whole.iter().zip(&texts) {
            prop_assert_eq!(framed.as_ref().unwrap(), text);
        }
    }

    #[test]
    fn validation_agrees_with_serde_json(bytes in prop::collection::vec(prop_oneof![
        // Mostly JSON-ish bytes, so that valid texts come up.
        Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','), Just(b' '),
        Just(b'1'), Just(b'0'), Just(b'-'), Just(b'.'), Just(b'e'), Just(b'\\'), Just(b'u'), Just(b'n'),
        any::<u8>(),
    ], 0..24)) {
        let ours = Value::parse(&bytes).is_ok();
        // serde_json reading into IgnoredAny does not check UTF-8 or surrogates; into Value it does.
        let theirs = serde_json::from_slice::<serde_json::Value>(&bytes).is_ok();
        let lone_surrogate = std::str::from_utf8(&bytes).is_ok_and(|s| s.contains("\\u"));
        if !lone_surrogate {
            prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(bytes in prop::collection::vec(any::<u8>(), 0..4000), sizes in prop::collection::vec(1usize..100, 1..5)) {
        let limits = Limits { max_message: 256, max_depth: 8 };
        let mut framer = Framer::new(heapless::Vec::<u8, 256>::new(), limits);
        let (mut fed, mut k) = (0, 0);
        while fed < bytes.len() {
            let end = (fed + sizes[k % sizes.len()]).min(bytes.len());
            k += 1;
            while fed < end {
                let n = framer.receive(&bytes[fed..end]);
                fed += n;
                while let Some(m) = framer.next() {
                    if let Ok(m) = m {
                        prop_assert!(m.raw().len() <= 256);
                    }
                }
                prop_assert!(n > 0 || fed == end, "framer wedged");
            }
        }
    }
}

#[test]
fn the_captured_traffic_frames_alike_in_every_chunking() {
    for name in ["06_query_qmp_schema", "07_errors", "15_utf8", "11_hmp_passthrough"] {
        let s2c = std::fs::read(format!("{}/../fixtures/qmp/{name}.s2c", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let limits = Limits { max_message: 1 << 20, max_depth: 64 };
        let whole = frame_all(&s2c, &[usize::MAX], limits);
        for sizes in [&[1][..], &[7, 1, 300], &[4096]] {
            assert_eq!(frame_all(&s2c, sizes, limits), whole, "{name} {sizes:?}");
        }
    }
}
