//! The HTTP client machine fed arbitrary bytes as responses, in pieces, on
//! fixed storage: never panics, never hands out a body over its limit (a
//! gzip body is inflated on the heap, up to `max_body`; any other lives in
//! the fixed receive buffer), reports at most one outcome per request, and
//! gives the same outcomes whatever the chunking (the bytes of one
//! connection: once it is over, the rest of the input is not fed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Buf, Fixed};
use vmwire_proto::http::{Client, Config, Endpoint, Error, Event, Limits, State};

/// A decompression bomb stops here.
const MAX_BODY: usize = 1 << 16;

type Http = Client<Fixed<2048, 512, 4>>;

/// Posts a request if the machine takes one; whether it did.
fn send(http: &mut Http) -> bool {
    if http.post(&[], |b| Ok::<_, Error>(b.try_extend(b"<x/>")?)).is_ok() {
        if http.needs_connection() {
            http.connected();
        }
        let n = http.transmit().len();
        http.transmitted(n);
        return true;
    }
    false
}

/// Feeds `data` in pieces of `chunk` bytes, then the end; one line per outcome.
fn run(data: &[u8], chunk: usize) -> Vec<String> {
    let endpoint = Endpoint { target: "/", host: "fuzz", headers: &[] };
    let config = Config { limits: Limits { max_body: MAX_BODY, ..Limits::default() }, ..Config::default() };
    let mut http = Http::new(config, &endpoint).expect("a client");
    let mut log = Vec::new();
    let mut requests = usize::from(send(&mut http));
    let mut dropped = false;
    let drain = |http: &mut Http, log: &mut Vec<String>, requests: &mut usize, dropped: &mut bool| {
        loop {
            match http.poll() {
                Ok(Some(event)) => {
                    if let Event::Response(r) = &event {
                        assert!(r.body.len() <= MAX_BODY);
                    }
                    log.push(format!("{event:?}"));
                    if http.state() == State::Disconnected {
                        // That connection is over (a response that closes
                        // it, or one that could not be read): what else it
                        // carried is gone. One connection's bytes per run.
                        *dropped = true;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log.push(format!("error {e}"));
                    break;
                }
            }
            *requests += usize::from(send(http));
        }
    };
    'feed: for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = match http.receive(&piece[fed..]) {
                Ok(n) => n,
                Err(e) => {
                    log.push(format!("receive error {e}"));
                    break 'feed;
                }
            };
            fed += n;
            drain(&mut http, &mut log, &mut requests, &mut dropped);
            if n == 0 || dropped {
                break 'feed;
            }
        }
    }
    http.recv_eof();
    drain(&mut http, &mut log, &mut requests, &mut dropped);
    let outcomes = log.iter().filter(|l| !l.starts_with("error") && !l.starts_with("receive error")).count();
    assert!(outcomes <= requests, "{outcomes} outcomes for {requests} requests");
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 61) + 1);
    assert_eq!(whole, chunked, "the chunking changed the outcomes");
});
