//! The negotiator responder fed arbitrary requests: never panics, stays
//! within its fixed storage, hands out only the configured methods, answers
//! every frame it does not hand out, writes only ASCII, and reports Closed
//! exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::negotiator::{BUILTIN_METHODS, Config, Responder, ResponderEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk % 61) + 1;
    let mut responder = Responder::<Fixed<512, 4096, 1>>::new(Config::default());
    let mut closed = 0;
    let drain = |r: &mut Responder<Fixed<512, 4096, 1>>, closed: &mut u32| {
        loop {
            let request = match r.poll() {
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
            let n = r.transmit().len();
            r.transmitted(n);
        }
    };
    for piece in rest.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = responder.receive(&piece[fed..]).expect("receive");
            fed += n;
            drain(&mut responder, &mut closed);
            assert!(n > 0 || fed == piece.len(), "responder took nothing after being drained");
        }
    }
    responder.recv_eof();
    drain(&mut responder, &mut closed);
    assert_eq!(closed, 1, "Closed is reported exactly once");
});
