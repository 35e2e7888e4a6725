//! The XML-RPC parser on arbitrary documents: never panics; whatever passes
//! validation can be walked to the end, decoded with serde, written again,
//! and the rewrite parses to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use vmwire_proto::xmlrpc::{self, MethodResponse, Options, Value};

/// Visits everything; returns how many values there were.
fn walk(v: Value<'_>) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(walk).sum::<usize>(),
        Value::Struct(s) => 1 + s.members().map(|(k, v)| k.to_string().len() * 0 + walk(v)).sum::<usize>(),
        Value::String(s) => s.to_string().len() * 0 + 1,
        Value::Base64(b) => b.to_vec().map_or(1, |_| 1),
        Value::DateTime(t) => t.parse().map_or(1, |_| 1),
        _ => 1,
    }
}

fn rewrite(v: &Value<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    xmlrpc::write_response(&mut out, Options::default(), |w| w.value(v)).ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = xmlrpc::parse_response(data) {
        if let MethodResponse::Params(params) = response {
            for v in params.iter() {
                let n = walk(v);
                let _ = v.deserialize::<IgnoredAny>();
                let _ = v.deserialize::<serde_json::Value>();
                if let Some(again) = rewrite(&v) {
                    let back = xmlrpc::parse_response(&again).expect("our own output parses");
                    let w = back.result().expect("a value");
                    assert_eq!(walk(w), n, "the rewrite holds as many values");
                }
            }
            let _ = params.deserialize::<Vec<IgnoredAny>>();
        }
    }
    if let Ok(call) = xmlrpc::parse_call(data) {
        let _ = call.name.to_string();
        for v in call.params.iter() {
            walk(v);
        }
    }
    let _ = xmlrpc::parse_value(data).map(walk);
});
