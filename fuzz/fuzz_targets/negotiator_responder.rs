//! The negotiator responder fed arbitrary requests: never panics, stays
//! within its fixed storage, hands out only the configured methods, answers
//! every frame it does not hand out, writes only ASCII, reports Closed
//! exactly once, and gives the same events and the same bytes out whatever
//! the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::negotiator::{BUILTIN_METHODS, Config, Responder, ResponderEvent};

/// Feeds `data` in pieces of `chunk` bytes, then the end: one line per
/// event, and every byte written.
fn run(rest: &[u8], chunk: usize) -> (Vec<String>, Vec<u8>) {
    let mut log = (Vec::new(), Vec::new());
    let mut responder = Responder::<Fixed<512, 4096, 1>>::new(Config::default());
    let mut closed = 0;
    let drain = |r: &mut Responder<Fixed<512, 4096, 1>>, closed: &mut u32, log: &mut (Vec<String>, Vec<u8>)| {
        loop {
            let event = r.poll();
            if let Ok(Some(e)) = &event {
                log.0.push(format!("{e:?}"));
            }
            let request = match event {
                Ok(Some(ResponderEvent::Request(req))) => {
                    assert!(BUILTIN_METHODS.contains(&req.method));
                    assert!(req.args.as_array().is_some() && req.kw.as_object().is_some());
                    Some(req.args().count())
                }
                Ok(Some(ResponderEvent::Closed)) => {
                    *closed += 1;
                    None
                }
                Ok(Some(_)) => None,
                Ok(None) => break,
                Err(e) => panic!("poll: {e}"),
            };
            if let Some(n) = request {
                // Answer with something that echoes non-ASCII text.
                let answered =
                    if n % 2 == 0 { r.respond_str("r\u{e9}sultat \u{1F600}") } else { r.respond_error("\u{2603}") };
                assert!(answered.is_ok());
            }
            assert!(r.transmit().is_ascii());
            log.1.extend_from_slice(r.transmit());
            let n = r.transmit().len();
            r.transmitted(n);
        }
    };
    for piece in rest.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = responder.receive(&piece[fed..]).expect("receive");
            fed += n;
            drain(&mut responder, &mut closed, &mut log);
            assert!(n > 0 || fed == piece.len(), "responder took nothing after being drained");
        }
    }
    responder.recv_eof();
    drain(&mut responder, &mut closed, &mut log);
    assert_eq!(closed, 1, "Closed is reported exactly once");
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 61) + 1);
    assert_eq!(whole.0, chunked.0, "the chunking changed the events");
    assert_eq!(whole.1, chunked.1, "the chunking changed the bytes written");
});
