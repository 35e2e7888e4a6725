//! The XenAPI result decoder and session machine on arbitrary response
//! bodies: never panics, every call ends in at most one outcome, and the
//! events are the same whether the answers arrive whole or in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::http::Endpoint;
use vmwire_proto::xenapi::{self, Config, Outcome, Session};
use vmwire_proto::xmlrpc;

fuzz_target!(|data: &[u8]| {
    // The decoder alone.
    if let Ok(response) = xmlrpc::parse_response(data)
        && let Ok(v) = response.result()
    {
        match xenapi::decode(v) {
            Ok(Outcome::Failure(f)) => {
                let _ = f.to_string();
                let _ = f.params().count();
            }
            Ok(Outcome::Success(v)) => {
                let _ = v.as_i64();
            }
            Err(_) => {}
        }
    }
    // The session machine, logged in, answered with `data` for every
    // request: the same events whether the answer arrives whole or in pieces.
    let whole = session(data, usize::MAX);
    assert_eq!(session(data, data.len() % 53 + 1), whole, "the chunking changed the events");
});

/// Twelve rounds of calls, each answered with `data` fed in pieces of
/// `chunk` bytes and then the end of the connection; one line per event.
fn session(data: &[u8], chunk: usize) -> Vec<String> {
    let endpoint = Endpoint { target: "/", host: "fuzz", headers: &[] };
    let mut xapi = Session::<Heap>::new(Config::default(), &endpoint).unwrap();
    xapi.login_with_password("root", "pw", "1.0", "fuzz").unwrap();
    let answer = {
        let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()).into_bytes();
        a.extend_from_slice(data);
        a
    };
    let mut log = Vec::new();
    let drain = |xapi: &mut Session<Heap>, log: &mut Vec<String>| {
        while let Ok(Some(e)) = xapi.poll() {
            log.push(format!("{e:?}"));
        }
    };
    for round in 0..12 {
        if xapi.needs_connection() {
            xapi.connected();
        }
        let n = xapi.transmit().len();
        if n == 0 {
            if round % 2 == 0 && xapi.call("VM.get_all", |_| Ok(())).is_err() {
                break;
            }
            continue;
        }
        xapi.transmitted(n);
        'feed: for piece in answer.chunks(chunk.min(answer.len())) {
            let mut fed = 0;
            while fed < piece.len() {
                match xapi.receive(&piece[fed..]) {
                    Ok(n) if n > 0 => fed += n,
                    _ => break 'feed,
                }
                drain(&mut xapi, &mut log);
            }
        }
        xapi.recv_eof();
        drain(&mut xapi, &mut log);
    }
    let outcomes = log.iter().filter(|l| !l.starts_with("Relogin")).count();
    assert!(outcomes <= 12, "{outcomes} outcomes for 12 rounds");
    log
}
