//! Parses the QMP benchmark's inputs N times with one contender, for
//! instruction counts under callgrind (one process per contender):
//!
//! `valgrind --tool=callgrind target/release/examples/qmp_count <contender> <input> <rounds>`
//!
//! contender: `vmwire` (the whole `qmp::Client`), `framer` (`json::Framer`
//! alone), `ignored` (serde_json `IgnoredAny`), `value` (serde_json `Value`),
//! `qapi` (qapi-rs `QmpMessageAny`);
//! input: `schema`, `burst` or the path of a file of messages. Setup is the same for every contender, so the
//! difference between two round counts is the parsing alone.

use std::hint::black_box;

use vmwire_benches::qmp::{burst, ready, run_framer, run_machine, run_qapi, schema, serde_stream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (contender, input) = (args[1].as_str(), args[2].as_str());
    let rounds: usize = args[3].parse().unwrap();
    let bytes = match input {
        "schema" => schema(),
        "burst" => burst().0,
        path => std::fs::read(path).unwrap_or_else(|e| panic!("input {path}: {e}")),
    };
    let mut client = ready();
    let mut framer = vmwire_benches::qmp::framer();
    let mut total = 0;
    for _ in 0..rounds {
        total += match contender {
            "vmwire" => run_machine(&mut client, black_box(&bytes)),
            "framer" => run_framer(&mut framer, black_box(&bytes)),
            "ignored" => serde_stream::<serde::de::IgnoredAny>(black_box(&bytes)),
            "value" => serde_stream::<serde_json::Value>(black_box(&bytes)),
            "qapi" => run_qapi(black_box(&bytes)),
            other => panic!("contender {other}"),
        };
    }
    println!("{contender} {input}: {} bytes, {total} messages", bytes.len() * rounds);
}
