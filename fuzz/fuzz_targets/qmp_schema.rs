//! The QMP schema reader and checker on arbitrary input: `SCHEMA \0 PATH \0
//! COMMAND \0 ARGUMENTS`. Reading never panics and never takes more than its
//! tables hold; path queries, descriptions and checks of whatever was read
//! never panic either.
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use vmwire_proto::json::Value;
use vmwire_proto::qmp::schema::{FixedSchema, HeapSchema, Schema, SchemaRef};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let text = parts.next().unwrap_or_default();
    let path = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or_default();
    let command = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or_default();
    let args = parts.next().and_then(|a| Value::parse_limited(a, 64).ok());

    let fixed: Result<FixedSchema<&[u8], 16, 64>, _> = Schema::read(text, heapless::Vec::new(), heapless::Vec::new());
    let heap = HeapSchema::read_heap(text);
    if let (Ok(fixed), Ok(heap)) = (&fixed, &heap) {
        // What fits in the small tables reads the same into the big ones.
        assert_eq!(fixed.view().len(), heap.view().len());
    }
    if let Ok(schema) = heap {
        exercise(schema.view(), path, command, args);
    }
});

fn exercise(schema: SchemaRef<'_>, path: &str, command: &str, args: Option<Value<'_>>) {
    let _ = schema.has(path);
    let mut out = String::new();
    for ty in schema.entries() {
        let _ = write!(out, "{:?} {}", ty, ty.expected());
        for m in ty.members().chain(ty.variants()).chain(ty.values()).chain(ty.branches()) {
            let _ = write!(out, "{m:?} {} {:?}", m.optional(), m.default());
        }
        let _ = (ty.tag(), ty.element(), ty.arguments(), ty.returns(), ty.json_type(), ty.features().count());
    }
    for c in schema.commands() {
        let name = c.name().to_string();
        if let Err(e) = schema.check(&name, args) {
            let _ = write!(out, "{e}");
        }
    }
    match schema.check(command, args) {
        Ok(w) => w.first.iter().for_each(|w| {
            let _ = write!(out, "{w}");
        }),
        Err(e) => {
            let _ = write!(out, "{e}");
        }
    }
}
