//! XML-RPC values spelt out, for comparing a document with its rewrite
//! (shared by the XML-RPC targets).

use vmwire_proto::xmlrpc::{Params, Value};

/// A value's meaning, spelt out: what a rewrite must keep.
pub fn canon(v: &Value<'_>, out: &mut String) {
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

/// Each param spelt out.
pub fn canon_all(params: &Params<'_>) -> Vec<String> {
    params
        .iter()
        .map(|v| {
            let mut s = String::new();
            canon(&v, &mut s);
            s
        })
        .collect()
}
