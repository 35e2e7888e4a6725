//! A `<methodCall>` document as the XML-RPC server parses it, arbitrary
//! bytes: never panics; a call that parses is written again with the
//! crate's writer, and the rewrite parses to the same method name and the
//! same values (decoded text, numbers, base64, nesting), and deserializes
//! with serde to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::xmlrpc::{self, Options, WriteError};

#[path = "common/xmlrpc_canon.rs"]
mod xmlrpc_canon;
use xmlrpc_canon::canon_all;

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
