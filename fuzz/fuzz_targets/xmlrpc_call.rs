//! A `<methodCall>` document as the XML-RPC server parses it, arbitrary
//! bytes: never panics; a call that parses is written again with the
//! crate's writer, and the rewrite parses to the same method name and the
//! same values (decoded text, numbers, base64, nesting), and deserializes
//! with serde to the same thing. Its secrets (`xenapi::secret_spans`: the
//! password params, and string members that carry one down to
//! `SECRET_DEPTH`) blanked out with `*`s, it still parses, to the same name
//! and values but for those, each `*`s now.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::xenapi;
use vmwire_proto::xmlrpc::{self, Options, Value, WriteError};

#[path = "common/xmlrpc_canon.rs"]
mod xmlrpc_canon;
use xmlrpc_canon::{canon, canon_all};

fuzz_target!(|data: &[u8]| {
    let Ok(call) = xmlrpc::parse_call(data) else { return };
    let name = call.name.to_cow();
    let values = canon_all(&call.params);
    assert_eq!(values.len(), call.params.len());
    let _ = call.params.deserialize::<Vec<serde::de::IgnoredAny>>();

    let mut blanked = data.to_vec();
    for span in xenapi::secret_spans(data) {
        blanked[span].fill(b'*');
    }
    let after = xmlrpc::parse_call(&blanked).expect("a blanked call parses");
    assert_eq!(after.name.to_cow(), name);
    let secret = xenapi::secret_params(&name);
    assert_eq!(call.params.len(), after.params.len());
    for (n, (before, now)) in call.params.iter().zip(after.params.iter()).enumerate() {
        if !blanked_string(&before, &now, secret.contains(&n)) {
            same_but_secrets(&before, &now, &name, 0);
        }
    }

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
        // A reference to a character XML 1.0 has not (`&#1;`) parses, and is not written.
        Err(WriteError::NotXmlText { .. }) => return,
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

/// Whether `now` is `before`, a string that is a secret, as `*`s.
fn blanked_string(before: &Value<'_>, now: &Value<'_>, secret: bool) -> bool {
    match (before, now) {
        (Value::String(b), Value::String(a)) if secret => {
            assert!(a.raw().bytes().all(|c| c == b'*') && a.raw().len() == b.raw().len());
            true
        }
        _ => false,
    }
}

/// `now` is `before` (a param, or a value `level` containers down in one)
/// but for its secret members, down to `SECRET_DEPTH` containers, as `*`s.
fn same_but_secrets(before: &Value<'_>, now: &Value<'_>, method: &str, level: usize) {
    match (before, now) {
        (Value::Struct(b), Value::Struct(a)) if level < xenapi::SECRET_DEPTH => {
            assert_eq!(b.members().count(), a.members().count());
            for ((name, b), (after, a)) in b.members().zip(a.members()) {
                assert_eq!(name.to_cow(), after.to_cow());
                if !blanked_string(&b, &a, xenapi::secret_member(method, &name.to_cow())) {
                    same_but_secrets(&b, &a, method, level + 1);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if level < xenapi::SECRET_DEPTH => {
            assert_eq!(b.len(), a.len());
            for (b, a) in b.iter().zip(a.iter()) {
                same_but_secrets(&b, &a, method, level + 1);
            }
        }
        _ => {
            let (mut b, mut a) = (String::new(), String::new());
            canon(before, &mut b);
            canon(now, &mut a);
            assert_eq!(b, a, "changed where no secret is");
        }
    }
}
