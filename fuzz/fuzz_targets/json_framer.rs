//! The JSON validator and framer on arbitrary bytes: never panic, never
//! hold more than their buffer, agree with serde_json on every input
//! (accepted or rejected), and frame the same values and errors whatever
//! the chunking (a value that arrives whole takes the framer's one-pass
//! path, one cut by a read the resumable scan), with a member index that
//! reads as the members do; what the writers write (a framed value, escaped to ASCII;
//! the input as a string) reads back as the same value; a framed value with
//! the passwords a QMP command carries blanked out (`qmp::secret_spans`)
//! still validates.
//!
//! The differences allowed are the documented ones: nesting (serde_json
//! stops at 128; here the validator is held to 100 and deeper input is
//! not compared) and numbers out of `f64`'s range (`1e400`: valid JSON
//! grammar, which QEMU sends; serde_json refuses it). Both check UTF-8 and
//! surrogate escapes when reading into `serde_json::Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::json::{ErrorKind, Escape, Framer, Limits, Value, write_str, write_value};

/// Whether serde_json refuses `text` only for a reason this crate documents.
fn documented_difference(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("number out of range")
}

/// Every outcome of framing `data` fed in pieces of `chunk` bytes: the
/// value's bytes, or the error's kind.
fn frame(data: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, ErrorKind>> {
    let mut framer = Framer::new(heapless::Vec::<u8, 256>::new(), Limits { max_message: 200, max_depth: 16 });
    let mut out = Vec::new();
    let mut record = |msg: Result<vmwire_proto::json::Message<'_>, vmwire_proto::json::Error>| {
        out.push(
            msg.map(|m| {
                // The member index the framer recorded reads as the members do.
                let members = |o: vmwire_proto::json::Object<'_>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    o.members().map(|(k, v)| (k.raw().to_vec(), v.raw().to_vec())).collect()
                };
                assert_eq!(m.object().map(members), m.value().as_object().map(members), "the member index is wrong");
                m.raw().to_vec()
            })
            .map_err(|e| e.kind),
        );
    };
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = framer.receive(&piece[fed..]);
            fed += n;
            while let Some(msg) = framer.next() {
                record(msg);
            }
            assert!(framer.buffered().len() <= 256);
            assert!(n > 0 || fed == piece.len(), "no room after draining");
        }
    }
    if let Some(msg) = framer.finish() {
        record(msg);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // One-shot validation against serde_json, on every input.
    let ours = Value::parse_limited(data, 100);
    if !matches!(&ours, Err(e) if matches!(e.kind, ErrorKind::TooDeep { .. })) {
        let theirs = serde_json::from_slice::<serde_json::Value>(data);
        match (&ours, &theirs) {
            (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) if documented_difference(e) => {}
            (Ok(_), Err(e)) => panic!("serde_json refuses what the validator accepts: {e}"),
            (Err(e), Ok(_)) => panic!("the validator refuses what serde_json accepts: {e}"),
        }
    }

    // Streaming: the first byte picks the chunk size.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunked = frame(rest, usize::from(chunk % 31) + 1);
    let whole = frame(rest, rest.len().max(1));
    assert_eq!(chunked, whole, "the chunking changed the values");
    for raw in chunked.iter().filter_map(|m| m.as_ref().ok()) {
        assert!(raw.len() <= 200);
        assert!(Value::parse_limited(raw, 16).is_ok(), "a framed value does not validate");
        let theirs = serde_json::from_slice::<serde_json::Value>(raw);
        if let Err(e) = &theirs {
            assert!(documented_difference(e), "serde_json refuses a framed value: {e}");
        }
        // Blanked out as a recorder does, a command's passwords leave JSON.
        let mut blanked = raw.clone();
        vmwire_proto::qmp::blank_secrets(&mut blanked);
        assert!(Value::parse(&blanked).is_ok(), "a blanked command does not validate");
        // The writer, escaping to ASCII: serde_json reads the same value back.
        let mut out = Vec::new();
        write_value(&mut out, Value::parse(raw).unwrap(), Escape::Ascii).unwrap();
        assert!(out.is_ascii());
        assert!(Value::parse(&out).is_ok(), "the writer's output does not validate");
        if let Ok(v) = theirs {
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).ok(), Some(v), "the writer changed the value");
        }
    }
    // The string writer: any text, written either way, reads back as itself.
    if let Ok(text) = std::str::from_utf8(rest) {
        for escape in [Escape::Ascii, Escape::Minimal] {
            let mut out = Vec::new();
            write_str(&mut out, text, escape).unwrap();
            let back = Value::parse(&out).expect("a written string validates");
            assert_eq!(back.as_str().map(|s| s.to_string()).as_deref(), Some(text));
            assert_eq!(serde_json::from_slice::<String>(&out).ok().as_deref(), Some(text));
        }
    }
});
