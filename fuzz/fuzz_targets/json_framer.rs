//! The JSON framer on arbitrary bytes in arbitrary chunks: never panics,
//! never holds more than its buffer, and agrees with serde_json on what is
//! valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::json::{Framer, Limits, Value};

fuzz_target!(|data: &[u8]| {
    // One-shot validation agrees with serde_json on every input it accepts
    // (serde_json allows depth 128; so do we here).
    if let Ok(v) = Value::parse(data) {
        if data.len() < 4096 {
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(v.raw()).is_ok() || nesting(v.raw()) > 127);
        }
    } else if data.len() < 4096 && std::str::from_utf8(data).is_ok() {
        // serde_json accepts lone surrogate escapes into IgnoredAny; we do not.
        if let Ok(s) = std::str::from_utf8(data) {
            if !s.contains("\\u") && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
                panic!("serde_json accepts what the framer rejects: {s:?}");
            }
        }
    }
    // Streaming: the first byte picks the chunk size.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk % 31) + 1;
    let mut framer = Framer::new(heapless::Vec::<u8, 256>::new(), Limits { max_message: 200, max_depth: 16 });
    for piece in rest.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            fed += framer.receive(&piece[fed..]);
            while let Some(msg) = framer.next() {
                if let Ok(msg) = msg {
                    assert!(Value::parse(msg.raw()).is_ok());
                    assert!(msg.raw().len() <= 200);
                }
            }
            assert!(framer.buffered().len() <= 256);
        }
    }
    let _ = framer.finish();
});

fn nesting(raw: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0, false, false);
    for &b in raw {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (false, _, b'"') => in_str = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b']' | b'}') => depth -= 1,
            _ => {}
        }
    }
    max
}
