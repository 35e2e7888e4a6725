//! The QMP client fed arbitrary bytes after a valid greeting, with commands
//! in flight: never panics, never grows past its fixed storage, keeps its
//! id bookkeeping sound, reports `Closed` exactly once, and gives the same
//! events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::qmp::{Client, Config, Event};

type Qmp = Client<Fixed<1024, 512, 8>>;

/// One line for an event: its Debug, but a message's bytes as text (the
/// derived Debug of a `Message` lists every byte and the member index).
fn describe(e: &Event<'_>) -> String {
    match e {
        Event::Unmatched(m) => format!("Unmatched({:?})", String::from_utf8_lossy(m.raw())),
        other => format!("{other:?}"),
    }
}

/// Feeds `data` in pieces of `chunk` bytes, then the end; one line per event.
fn run(data: &[u8], chunk: usize) -> Vec<String> {
    let mut qmp = Qmp::new(Config::default());
    let _ = qmp.receive(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n");
    while let Ok(Some(_)) = qmp.poll() {}
    for name in ["query-status", "cont", "stop"] {
        let _ = qmp.execute(name, None);
    }
    let mut log = Vec::new();
    let drain = |qmp: &mut Qmp, log: &mut Vec<String>| {
        loop {
            match qmp.poll() {
                Ok(Some(e)) => log.push(describe(&e)),
                Ok(None) => break,
                Err(e) => {
                    log.push(format!("error {e}"));
                    break;
                }
            }
        }
        let n = qmp.transmit().len();
        qmp.transmitted(n);
    };
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            match qmp.receive(&piece[fed..]) {
                Ok(n) => fed += n,
                Err(e) => {
                    log.push(format!("receive error {e}"));
                    break;
                }
            }
            drain(&mut qmp, &mut log);
            assert!(qmp.recv_buf().len() <= 1024);
        }
    }
    qmp.recv_eof();
    drain(&mut qmp, &mut log);
    assert_eq!(
        log.iter().filter(|l| l.as_str() == format!("{:?}", Event::Closed)).count(),
        1,
        "Closed is reported exactly once"
    );
    assert_eq!(qmp.in_flight(), 0);
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 97) + 1);
    assert_eq!(whole, chunked, "the chunking changed the events");
});
