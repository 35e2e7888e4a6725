//! The guest agent machine fed arbitrary bytes (stray 0xFF delimiters and
//! all) while syncing, with commands and a resync in flight: never panics,
//! never grows past its fixed storage, accounts for every command once,
//! reports `Closed` once, and gives the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::qga::{Client, Config, Event, Id};

type Qga = Client<Fixed<1024, 512, 8>>;

/// One line for an event: its Debug, but a message's bytes as text (the
/// derived Debug of a `Message` lists every byte and the member index).
fn describe(e: &Event<'_>) -> String {
    match e {
        Event::Unmatched(m) => format!("Unmatched({:?})", String::from_utf8_lossy(m.raw())),
        other => format!("{other:?}"),
    }
}

fn run(data: &[u8], chunk: usize, resync_at: usize) -> Vec<String> {
    let mut qga = Qga::new(Config::default(), 42);
    let mut sent: Vec<Id> =
        ["guest-ping", "guest-shutdown", "guest-info"].iter().map(|c| qga.execute(c, None).unwrap()).collect();
    let mut log = Vec::new();
    let mut ended = Vec::new();
    let drain = |qga: &mut Qga, log: &mut Vec<String>, ended: &mut Vec<Id>| {
        let n = qga.transmit().len();
        qga.transmitted(n);
        while let Some(e) = qga.poll().unwrap() {
            match &e {
                Event::Return { id, .. }
                | Event::Error { id, .. }
                | Event::MalformedReply { id, .. }
                | Event::Accepted { id }
                | Event::Failed { id } => ended.push((*id).clone()),
                _ => {}
            }
            log.push(describe(&e));
        }
    };
    'feed: for (k, piece) in data.chunks(chunk).enumerate() {
        if k == resync_at {
            qga.resync(43).unwrap();
            sent.push(qga.execute("guest-ping", None).unwrap());
        }
        let mut fed = 0;
        while fed < piece.len() {
            let n = qga.receive(&piece[fed..]).unwrap();
            fed += n;
            drain(&mut qga, &mut log, &mut ended);
            if log.iter().any(|l| l == "Closed") {
                // The session is over (a wrong peer, say): the rest is not read.
                break 'feed;
            }
            assert!(n > 0 || fed == piece.len(), "no room after polling");
            assert!(qga.recv_buf().len() <= 1024);
        }
    }
    qga.recv_eof();
    drain(&mut qga, &mut log, &mut ended);
    assert_eq!(log.iter().filter(|l| *l == "Closed").count(), 1, "Closed is reported once");
    assert_eq!(qga.in_flight(), 0);
    // Every command ended exactly once.
    ended.sort_by_key(|id| id.to_string());
    sent.sort_by_key(|id| id.to_string());
    assert_eq!(ended, sent);
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&param, rest)) = data.split_first() else { return };
    let chunk = usize::from(param % 31) + 1;
    let whole = run(rest, rest.len().max(1), usize::MAX);
    let chunked = run(rest, chunk, usize::MAX);
    assert_eq!(whole, chunked, "the chunking changed the events");
    if param & 0x80 != 0 {
        // A resync half way through: the invariants hold there too.
        run(rest, chunk, rest.len() / chunk / 2);
    }
});
