//! The HMP machine fed arbitrary monitor bytes: never panics, never grows
//! past its fixed storage, reports `Closed` once, fails every command left
//! at the end, and gives the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::hmp::{Client, Config};

const COMMANDS: [&str; 4] = ["info status", "info version", "help", "x"];

/// Feeds `data` in pieces of `chunk` bytes, then the end; one line per event.
fn run(data: &[u8], chunk: usize) -> Vec<String> {
    let mut hmp = Client::<Fixed<1024, 256, 8>>::new(Config::default());
    for c in COMMANDS {
        hmp.command(c).unwrap();
    }
    let mut log = Vec::new();
    let drain = |hmp: &mut Client<Fixed<1024, 256, 8>>, log: &mut Vec<String>| loop {
        let n = hmp.transmit().len();
        hmp.transmitted(n);
        match hmp.poll().unwrap() {
            Some(e) => log.push(format!("{e:?}")),
            None => break,
        }
    };
    'feed: for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = hmp.receive(&piece[fed..]).unwrap();
            fed += n;
            drain(&mut hmp, &mut log);
            if log.iter().any(|l| l == "Closed") {
                // The session is over (a wrong peer, say): the rest is not read.
                break 'feed;
            }
            assert!(n > 0 || fed == piece.len(), "no room after polling");
            assert!(hmp.recv_buf().len() <= 1024);
        }
    }
    hmp.recv_eof();
    drain(&mut hmp, &mut log);
    assert_eq!(log.iter().filter(|l| *l == "Closed").count(), 1, "Closed is reported once");
    assert_eq!(log.last().map(String::as_str), Some("Closed"));
    assert_eq!(hmp.queued(), 0);
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 61) + 1);
    assert_eq!(whole, chunked, "the chunking changed the events");
});
