//! The XML-RPC server machine, and the HTTP server under it, fed arbitrary
//! bytes from a network client (pipelined requests, chunked bodies, gzip,
//! `Expect: 100-continue`, garbage): never panics, stays within its limits,
//! answers every request it reads (a call, a fault, or an HTTP error),
//! reports nothing after an HTTP error but `Closed`, reports `Closed`
//! exactly once, and gives the same events and the same response bytes
//! whatever the chunking. What it writes reads back: the HTTP client reads
//! one response per request answered, and every 200's body is an XML-RPC
//! `<methodResponse>` that the parser reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Buf;
use vmwire_proto::buf::Heap;
use vmwire_proto::http::{self, Endpoint, Limits};
use vmwire_proto::xmlrpc::{self, Server, ServerConfig, ServerEvent};

const MAX_BODY: usize = 2048;

fn config() -> ServerConfig {
    ServerConfig {
        http: http::ServerConfig {
            limits: Limits { max_head: 1024, max_headers: 16, max_body: MAX_BODY },
            max_response: 8192,
        },
        limits: xmlrpc::Limits { max_depth: 32, max_size: MAX_BODY },
        ..ServerConfig::default()
    }
}

/// Feeds `data` in pieces of `chunk` bytes, then the end: the events, one
/// line each, and every byte the server sent.
fn run(data: &[u8], chunk: usize) -> (Vec<String>, Vec<u8>) {
    let mut rpc = Server::<Heap>::new(config());
    let mut log = Vec::new();
    let mut sent = Vec::new();
    let drain = |rpc: &mut Server<Heap>, log: &mut Vec<String>, sent: &mut Vec<u8>| loop {
        let line = match rpc.poll().expect("poll") {
            None => break,
            Some(ServerEvent::Call(call)) => {
                assert!(call.params.iter().count() == call.params.len());
                let line = format!("call {} {:?} {:?} {:?}", call.method, call.params, call.target, call.headers);
                let n = call.params.len();
                let answered =
                    if n % 2 == 0 { rpc.respond(|v| v.int(n as i64)) } else { rpc.fault(-1, "odd number of params") };
                assert!(answered.is_ok(), "cannot answer: {answered:?}");
                line
            }
            Some(ServerEvent::Rejected(e)) => format!("rejected {e}"),
            Some(ServerEvent::Http(e)) => format!("http {e}"),
            Some(ServerEvent::Closed) => "Closed".to_string(),
        };
        log.push(line);
        let out = rpc.transmit();
        sent.extend_from_slice(out);
        let n = out.len();
        rpc.transmitted(n);
    };
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = rpc.receive(&piece[fed..]).expect("receive");
            fed += n;
            drain(&mut rpc, &mut log, &mut sent);
            if n == 0 {
                // Nothing taken: after draining there must be room (or the
                // machine is closing and discards what comes).
                let again = rpc.receive(&piece[fed..]).expect("receive");
                assert!(again > 0, "no room after polling");
                fed += again;
                drain(&mut rpc, &mut log, &mut sent);
            }
        }
    }
    rpc.recv_eof();
    drain(&mut rpc, &mut log, &mut sent);
    // The 100-continue interim responses depend on where the head ended in
    // a read; everything else must not.
    let sent = String::from_utf8_lossy(&sent).replace("HTTP/1.1 100 Continue\r\n\r\n", "").into_bytes();
    assert_eq!(log.iter().filter(|l| *l == "Closed").count(), 1, "Closed is reported once: {log:?}");
    assert_eq!(log.last().map(String::as_str), Some("Closed"));
    if let Some(i) = log.iter().position(|l| l.starts_with("http ")) {
        assert_eq!(i + 2, log.len(), "events after an HTTP error: {log:?}");
    }
    (log, sent)
}

/// Reads `sent` back with the HTTP client, one request at a time: how many
/// responses it holds.
fn read_back(sent: &[u8]) -> usize {
    let endpoint = Endpoint { target: "/", host: "fuzz", headers: &[] };
    let mut client = http::Client::<Heap>::new(http::Config::default(), &endpoint).expect("a client");
    let (mut rest, mut count) = (sent, 0);
    'request: loop {
        client.post(&[], |b| Ok::<_, http::Error>(b.try_extend(b"x")?)).expect("post");
        if client.needs_connection() {
            client.connected();
        }
        let n = client.transmit().len();
        client.transmitted(n);
        loop {
            match client.poll().expect("poll") {
                Some(http::Event::Response(r)) => {
                    assert!(matches!(r.status, 200 | 400 | 413 | 415 | 431 | 501), "status {}", r.status);
                    if r.status == 200
                        && let Err(e) = xmlrpc::parse_response(r.body)
                    {
                        panic!("the server's answer does not parse: {e}\n{}", String::from_utf8_lossy(r.body));
                    }
                    count += 1;
                    continue 'request;
                }
                Some(other) => panic!("the server's bytes do not read back: {other:?}"),
                None if rest.is_empty() => break 'request,
                None => {
                    let n = client.receive(rest).expect("receive");
                    assert!(n > 0, "the client takes no more");
                    rest = &rest[n..];
                }
            }
        }
    }
    count
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 61) + 1);
    assert_eq!(whole.0, chunked.0, "the chunking changed the events");
    assert_eq!(whole.1, chunked.1, "the chunking changed the responses");
    let answered = whole.0.iter().filter(|l| !l.starts_with("Closed")).count();
    assert_eq!(read_back(&whole.1), answered, "one response per request");
});
