//! The XenAPI result decoder and session machine on arbitrary response
//! bodies: never panics, and every call ends in exactly one outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::http::Endpoint;
use vmwire_proto::xenapi::{self, Config, Event, Outcome, Session};
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
    // The session machine, logged in, answered with `data` for every request.
    let endpoint = Endpoint { target: "/", host: "fuzz", headers: &[] };
    let mut xapi = Session::<Heap>::new(Config::default(), &endpoint).unwrap();
    xapi.login_with_password("root", "pw", "1.0", "fuzz").unwrap();
    let answer = {
        let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()).into_bytes();
        a.extend_from_slice(data);
        a
    };
    let mut outcomes = 0;
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
        let _ = xapi.receive(&answer);
        while let Ok(Some(e)) = xapi.poll() {
            if !matches!(e, Event::Relogin { .. }) {
                outcomes += 1;
            }
        }
        let _ = xapi.recv_commit(0);
        while let Ok(Some(e)) = xapi.poll() {
            if !matches!(e, Event::Relogin { .. }) {
                outcomes += 1;
            }
        }
    }
    assert!(outcomes <= 12);
});
