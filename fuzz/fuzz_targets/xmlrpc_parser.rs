//! The XML-RPC parser on arbitrary documents (responses, calls, lone
//! values): never panics; whatever passes validation can be walked to the
//! end and decoded with serde; a response's values written again with the
//! crate's writer parse to the same values (decoded text, numbers, base64,
//! nesting), and a fault written again reads as the same fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use vmwire_proto::xmlrpc::{self, MethodResponse, Options, Value, WriteError};

#[path = "common/xmlrpc_canon.rs"]
mod xmlrpc_canon;
use xmlrpc_canon::{canon, canon_all};

/// Visits everything, text decoded.
fn walk(v: Value<'_>) {
    canon(&v, &mut String::new());
    if let Value::DateTime(t) = v {
        let _ = t.parse();
    }
}

fuzz_target!(|data: &[u8]| {
    match xmlrpc::parse_response(data) {
        Ok(MethodResponse::Params(params)) => {
            let _ = params.deserialize::<Vec<IgnoredAny>>();
            for (v, want) in params.iter().zip(canon_all(&params)) {
                walk(v);
                let _ = v.deserialize::<serde_json::Value>();
                let mut again = Vec::new();
                match xmlrpc::write_response(&mut again, Options::default(), |w| w.value(&v)) {
                    Ok(()) => {}
                    Err(WriteError::NonFiniteDouble) => continue,
                    // A reference to a character XML 1.0 has not (`&#1;`) parses, and is not written.
                    Err(WriteError::NotXmlText { .. }) => continue,
                    Err(e) => panic!("cannot write back what was read: {e}"),
                }
                let back = match xmlrpc::parse_response(&again) {
                    Ok(back) => back,
                    Err(e) => panic!("our own response does not parse: {e}\n{}", String::from_utf8_lossy(&again)),
                };
                let got = back.params().map(|p| canon_all(&p)).unwrap_or_default();
                assert_eq!(got, [want], "the rewrite reads differently\n{}", String::from_utf8_lossy(&again));
            }
        }
        Ok(MethodResponse::Fault(fault)) => {
            let string = fault.string.to_cow();
            let mut again = Vec::new();
            match xmlrpc::write_fault(&mut again, fault.code, &string) {
                Ok(()) => {}
                // A reference to a character XML 1.0 has not (`&#1;`) parses, and is not written.
                Err(WriteError::NotXmlText { .. }) => return,
                Err(e) => panic!("a fault is not written: {e}"),
            }
            let back = xmlrpc::parse_response(&again).expect("our own fault parses").fault().expect("a fault");
            assert_eq!((back.code, back.string.to_cow()), (fault.code, string), "the fault changed");
        }
        Err(_) => {}
    }
    if let Ok(call) = xmlrpc::parse_call(data) {
        let _ = call.name.to_string();
        call.params.iter().for_each(walk);
    }
    let _ = xmlrpc::parse_value(data).map(walk);
});
