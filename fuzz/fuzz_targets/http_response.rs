//! The HTTP client machine fed arbitrary bytes as responses, in pieces, on
//! fixed storage: never panics, never hands out a body over its limit (a
//! gzip body is inflated on the heap, up to `max_body`; any other lives in
//! the fixed receive buffer), and reports at most one outcome per request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Buf, Fixed};
use vmwire_proto::http::{Client, Config, Endpoint, Error, Event, Limits};

/// A decompression bomb stops here.
const MAX_BODY: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let endpoint = Endpoint { target: "/", host: "fuzz", headers: &[] };
    let config = Config { limits: Limits { max_body: MAX_BODY, ..Limits::default() }, ..Config::default() };
    let Ok(mut http) = Client::<Fixed<2048, 512, 4>>::new(config, &endpoint) else { return };
    let mut outcomes = 0;
    let mut requests = 0;
    let send = |http: &mut Client<Fixed<2048, 512, 4>>| {
        if http.post(&[], |b| Ok::<_, Error>(b.try_extend(b"<x/>")?)).is_ok() {
            if http.needs_connection() {
                http.connected();
            }
            let n = http.transmit().len();
            http.transmitted(n);
            return true;
        }
        false
    };
    requests += usize::from(send(&mut http));
    for piece in data.chunks(61) {
        let mut fed = 0;
        while fed < piece.len() {
            let Ok(n) = http.receive(&piece[fed..]) else { return };
            fed += n;
            while let Ok(Some(event)) = http.poll() {
                if let Event::Response(r) = &event {
                    assert!(r.body.len() <= MAX_BODY);
                }
                outcomes += 1;
                requests += usize::from(send(&mut http));
            }
            if n == 0 {
                break;
            }
        }
    }
    http.recv_eof();
    while let Ok(Some(_)) = http.poll() {
        outcomes += 1;
    }
    assert!(outcomes <= requests, "{outcomes} outcomes for {requests} requests");
});
