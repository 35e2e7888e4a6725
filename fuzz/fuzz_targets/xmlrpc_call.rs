//! A `<methodCall>` document as the XML-RPC server parses it, arbitrary
//! bytes: never panics; a call that parses is written again with the
//! crate's writer, and the rewrite parses to the same method name and the
//! same values (decoded text, numbers, base64, nesting), and deserializes
//! with serde to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::xmlrpc::{self, Options, Value, WriteError};

/// A value's meaning, spelt out: what a rewrite must keep.
fn canon(v: &Value<'_>, out: &mut String) {
    match v {
        Value::Int(n) => out.push_str(&format!("i{n};")),
        Value::Boolean(b) => out.push_str(&format!("b{b};")),
        Value::Double(d) => out.push_str(&format!("d{:x};", d.to_bits())),
        Value::Nil => out.push_str("nil;"),
        Value::String(s) => out.push_str(&format!("s{:?};", s.to_cow())),
        Value::DateTime(t) => out.push_str(&format!("t{:?};", t.text().to_cow())),
        Value::Base64(b) => match b.to_vec() {
            Ok(bytes) => out.push_str(&format!("b64{bytes:?};")),
            Err(_) => out.push_str(&format!("b64?{:?};", b.text())),
        },
        Value::Struct(s) => {
            out.push('{');
            for (name, value) in s.members() {
                out.push_str(&format!("{:?}=", name.to_cow()));
                canon(&value, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for value in a.iter() {
                canon(&value, out);
            }
            out.push(']');
        }
    }
}

fn canon_all(params: &xmlrpc::Params<'_>) -> Vec<String> {
    params
        .iter()
        .map(|v| {
            let mut s = String::new();
            canon(&v, &mut s);
            s
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(call) = xmlrpc::parse_call(data) else { return };
    let name = call.name.to_cow();
    let values = canon_all(&call.params);
    assert_eq!(values.len(), call.params.len());
    let _ = call.params.deserialize::<Vec<serde::de::IgnoredAny>>();

    let mut doc = Vec::new();
    let written = xmlrpc::write_call(&mut doc, &name, Options::default(), |p| {
        for v in call.params.iter() {
            p.param(|w| w.value(&v))?;
        }
        Ok(())
    });
    match written {
        Ok(()) => {}
        // A double the parser read as infinite ("1e400") cannot be written.
        Err(WriteError::NonFiniteDouble) => return,
        Err(e) => panic!("cannot write back what was read: {e}"),
    }
    let again = match xmlrpc::parse_call(&doc) {
        Ok(again) => again,
        Err(e) => panic!("our own call does not parse: {e}\n{}", String::from_utf8_lossy(&doc)),
    };
    assert_eq!(again.name.to_cow(), name, "the method name changed");
    assert_eq!(canon_all(&again.params), values, "the values changed\n{}", String::from_utf8_lossy(&doc));
    if let (Ok(a), Ok(b)) =
        (call.params.deserialize::<serde_json::Value>(), again.params.deserialize::<serde_json::Value>())
    {
        assert_eq!(a, b, "serde reads the rewrite differently");
    }
});
