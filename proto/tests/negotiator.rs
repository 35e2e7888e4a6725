//! The negotiator machines on transcripts captured from negotiator-common
//! 0.12.2, and against a hostile peer.

mod common;

use common::{Record, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Buf, Fixed, Heap, Storage};
use vmwire_proto::json::{self, ErrorKind, Value};
use vmwire_proto::negotiator::{
    Caller, CallerEvent, Config, Decoder, Error, Limits, MAX_LENGTH_LINE, Responder, ResponderEvent, State, encode,
};

macro_rules! fixture {
    ($name:literal, $ext:literal) => {
        include_bytes!(concat!("../../fixtures/negotiator/", $name, ".", $ext))
    };
}

/// One line per responder event.
fn describe_request(e: &ResponderEvent<'_>) -> String {
    match e {
        ResponderEvent::Request(r) => format!("request {} {} {}", r.method, r.args, r.kw),
        ResponderEvent::Unsupported(m) => format!("unsupported {m}"),
        ResponderEvent::Malformed(e) => format!("malformed {e}"),
        ResponderEvent::Closed => "closed".into(),
    }
}

/// One line per caller event.
fn describe_response(e: &CallerEvent<'_>) -> String {
    match e {
        CallerEvent::Result(v) => format!("result {v}"),
        CallerEvent::Error(s) => format!("error {s}"),
        CallerEvent::Invalid(e) => format!("invalid {e}"),
        CallerEvent::Stale(r) => format!("stale {r:?}"),
        CallerEvent::Unsolicited(v) => format!("unsolicited {v}"),
        CallerEvent::Malformed(e) => format!("malformed {e}"),
        CallerEvent::Failed => "failed".into(),
        CallerEvent::Closed => "closed".into(),
    }
}

/// Serves `bytes` (then end of stream) fed in pieces of `sizes` (cycled),
/// answering each request as the next of `answers` (responses as JSON text)
/// says, or with an error once they run out. Returns the event log and every byte
/// the responder wrote.
fn serve<S: Storage>(
    responder: &mut Responder<S>,
    bytes: &[u8],
    sizes: &[usize],
    answers: &[Vec<u8>],
) -> (Vec<String>, Vec<u8>) {
    let (mut log, mut out) = (Vec::new(), Vec::new());
    let mut answers = answers.iter();
    let mut drain = |r: &mut Responder<S>, log: &mut Vec<String>, out: &mut Vec<u8>| {
        while let Some(event) = r.poll().expect("poll") {
            log.push(describe_request(&event));
            if matches!(event, ResponderEvent::Request(_)) {
                let answer = answers.next().map(|raw| Value::parse(raw).unwrap());
                match answer.map(|a| (a.get("success").and_then(|s| s.as_bool()), a)) {
                    Some((Some(true), a)) => r.respond(a.get("result").unwrap()).unwrap(),
                    Some((_, a)) => r.respond_error(&a.get("error").unwrap().as_str().unwrap().to_string()).unwrap(),
                    None => r.respond_error("answered").unwrap(),
                }
            }
            out.extend_from_slice(r.transmit());
            let n = r.transmit().len();
            r.transmitted(n);
        }
    };
    let (mut fed, mut k) = (0, 0);
    while fed < bytes.len() {
        let want = sizes[k % sizes.len()].max(1).min(bytes.len() - fed);
        k += 1;
        let mut taken = 0;
        while taken < want {
            let n = responder.receive(&bytes[fed + taken..fed + want]).expect("receive");
            taken += n;
            drain(responder, &mut log, &mut out);
            assert!(n > 0 || taken == want, "responder took nothing after being drained");
        }
        fed += want;
    }
    responder.recv_eof();
    drain(responder, &mut log, &mut out);
    (log, out)
}

/// The frames of a stream, each as its whole bytes (length line and body).
fn frames(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(nl) = stream.iter().position(|&b| b == b'\n') {
        let Ok(len) = std::str::from_utf8(&stream[..nl]).unwrap_or("x").trim().parse::<usize>() else { break };
        let end = nl + 1 + len;
        if end > stream.len() {
            break;
        }
        frames.push(stream[..end].to_vec());
        stream = &stream[end..];
    }
    frames
}

/// `"%d\n%s"`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = format!("{}\n", body.len()).into_bytes();
    f.extend_from_slice(body);
    f
}

fn body(frame: &[u8]) -> &[u8] {
    &frame[frame.iter().position(|&b| b == b'\n').unwrap() + 1..]
}

#[test]
fn responder_answers_the_captured_calls_byte_for_byte() {
    // The requests the Python client sent, and the responses the Python
    // server gave. Hand the responder the Python server's results for the
    // requests it hands out: what it writes must be the very same bytes. It
    // refuses itself what it does not serve, in the Python peer's own words.
    let requests = fixture!("01_interface_client", "c2s");
    let python = frames(fixture!("01_interface_client", "s2c"));
    assert_eq!(python.len(), 10, "the capture ends with the injected raw bytes");
    let results: Vec<Vec<u8>> = [0, 1, 2, 6, 7, 8].iter().map(|&i| body(&python[i]).to_vec()).collect();
    let mut responder = Responder::<Heap>::new(Config::default());
    let (log, out) = serve(&mut responder, requests, &[requests.len()], &results);
    assert_eq!(
        log,
        [
            r#"request list_commands [] {}"#,
            r#"request execute ["find-distributor-id"] {}"#,
            r#"request execute ["find-distribution-codename"] {"input": "caf\u00e9 \u2603\n"}"#,
            "unsupported nosuch",
            "unsupported méthode_☃",
            "unsupported _private",
            r#"request execute ["no-such-command"] {}"#,
            r#"request list_commands [1] {}"#,
            r#"request list_commands [] {"bogus": true}"#,
            "unsupported prepare_environment",
            "unsupported raw_write",
            "closed",
        ]
    );
    let ours = frames(&out);
    assert_eq!(ours.len(), 11);
    // Results echoed by the machine, and its own refusals, are Python's bytes.
    for i in 0..9 {
        assert_eq!(String::from_utf8_lossy(&ours[i]), String::from_utf8_lossy(&python[i]), "response {i}");
    }
    // Python ran prepare_environment and raw_write; we do not.
    assert_eq!(ours[9], b"71\n{\"success\": false, \"error\": \"Method prepare_environment not supported\"}");
    assert_eq!(ours[10], b"61\n{\"success\": false, \"error\": \"Method raw_write not supported\"}");
    assert!(!out.windows(8).any(|w| w == b"INJECTED"));
}

#[test]
fn caller_writes_the_captured_calls_byte_for_byte() {
    // Each call the Python client made, made by the machine, gives the very
    // bytes Python wrote; the Python server's responses give the outcomes the
    // Python client saw, up to the raw bytes `raw_write` injected, which
    // break the framing for both.
    let mut caller = Caller::<Heap>::new(Config::default());
    let mut log = Vec::new();
    for record in transcript(fixture!("01_interface_client", "txn")) {
        match record {
            Record::ClientToServer(bytes) => {
                let request: serde_json::Value = serde_json::from_slice(body(&bytes)).unwrap();
                let args = serde_json::to_vec(&request["args"]).unwrap();
                let kw = serde_json::to_vec(&request["kw"]).unwrap();
                caller
                    .call(request["method"].as_str().unwrap(), Value::parse(&args).unwrap(), Value::parse(&kw).unwrap())
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(caller.transmit()), String::from_utf8_lossy(&bytes));
                let n = caller.transmit().len();
                caller.transmitted(n);
            }
            Record::ServerToClient(bytes) => common::feed(&mut caller, &bytes, &[7, 1, 64], |e| {
                log.push(describe_response(&e));
            }),
            Record::Note(_) => {}
        }
    }
    assert_eq!(
        log,
        [
            r#"result ["find-disk-usage", "find-distribution-release", "find-ip-addresses", "find-distributor-id", "find-distribution-codename"]"#,
            r#"result "Debian""#,
            r#"result "bookworm""#,
            "error Method nosuch not supported",
            "error Method méthode_☃ not supported",
            "error Method _private not supported",
            "error External command isn't available!\n\nCommand:\nbash -c /tmp/vmwfx/venv/lib/python3.11/site-packages/negotiator_common/scripts/no-such-command\n\nSearch path:\n['/usr/sbin', '/usr/bin', '/sbin', '/bin']",
            "error NegotiatorInterface.list_commands() takes 1 positional argument but 2 were given",
            "error NegotiatorInterface.list_commands() got an unexpected keyword argument 'bogus'",
            "result null",
            "invalid negotiator: expected a length in decimal digits, found 'I' at byte 935",
            "closed",
        ]
    );
    assert_eq!(caller.state(), State::Closed);
}

#[test]
fn hand_written_frames_the_peer_accepts_and_one_it_dies_on() {
    let (log, out) = serve(&mut Responder::<Heap>::new(Config::default()), fixture!("02_raw_frames", "c2s"), &[3], &[]);
    assert_eq!(
        log,
        [
            "request list_commands [] {}",
            "request list_commands [] {}",
            "request list_commands [] {}",
            r#"request execute ["find-distributor-id"] {"input":null}"#,
            "request execute [] {}",
            "malformed negotiator: request is not a JSON object",
            "request list_commands [] {}",
            "closed",
        ]
    );
    // The Python peer died on the array; the session goes on here, and the
    // array got an answer.
    let ours = frames(&out);
    assert_eq!(ours.len(), 7);
    assert_eq!(ours[5], b"71\n{\"success\": false, \"error\": \"negotiator: request is not a JSON object\"}");
}

#[test]
fn documented_keys_are_refused_with_an_answer() {
    let (log, out) =
        serve(&mut Responder::<Heap>::new(Config::default()), fixture!("03_documented_keys", "c2s"), &[5], &[]);
    assert_eq!(log, ["malformed negotiator: request without a \"method\" string", "closed"]);
    assert!(out.ends_with(b"\"error\": \"negotiator: request without a \\\"method\\\" string\"}"));
}

#[test]
fn framing_errors_of_the_captures() {
    let run = |bytes: &[u8]| serve(&mut Responder::<Heap>::new(Config::default()), bytes, &[1], &[]);
    // Invalid JSON and an empty body keep the framing: answered, session on.
    let (log, out) = run(fixture!("06_bad_json", "c2s"));
    assert_eq!(log[0], "malformed negotiator: frame body: invalid JSON at byte 3: expected '\"' or '}', found 'n'");
    assert_eq!(frames(&out).len(), 1);
    let (log, out) = run(fixture!("06_empty_payload", "c2s"));
    assert_eq!(log, ["malformed negotiator: frame body: invalid JSON at byte 2: no value", "closed"]);
    assert_eq!(frames(&out).len(), 1);
    // A bad length line loses the framing: no answer, the session ends.
    let (log, out) = run(fixture!("06_bad_length_line", "c2s"));
    assert_eq!(log, ["malformed negotiator: expected a length in decimal digits, found 'a' at byte 0", "closed"]);
    assert!(out.is_empty());
    let (log, out) = run(fixture!("06_unicode_digit_length", "c2s"));
    assert_eq!(log, ["malformed negotiator: expected a length in decimal digits, found byte 0xc2 at byte 0", "closed"]);
    assert!(out.is_empty());
}

#[test]
fn a_forgotten_call_never_sent_is_withdrawn() {
    // No peer took the request (a virtio-serial port with no host): it must
    // not go out later, to a peer that never asked, and no response is owed.
    let mut caller = Caller::<Heap>::new(Config::default());
    caller.call_with("execute", |a| a.str("slow").map(drop), |_| Ok(())).unwrap();
    assert!(caller.forget());
    assert!(caller.transmit().is_empty());
    caller.call_with("list_commands", |_| Ok(()), |_| Ok(())).unwrap();
    assert_eq!(caller.transmit(), b"49\n{\"method\": \"list_commands\", \"args\": [], \"kw\": {}}");
    let sent = caller.transmit().len();
    caller.transmitted(sent);
    let mut log = Vec::new();
    common::feed(&mut caller, &frame(b"{\"success\": true, \"result\": []}"), &[7], |e| {
        log.push(describe_response(&e))
    });
    assert_eq!(log, ["result []"]);

    // Cut short in the middle of its frame: the peer has lost the framing,
    // so the session ends rather than send the next request after it.
    caller.call_with("execute", |a| a.str("slow").map(drop), |_| Ok(())).unwrap();
    caller.transmitted(5);
    assert!(caller.forget());
    assert_eq!(caller.state(), State::Closed);
    assert!(caller.transmit().is_empty());
    assert!(matches!(caller.poll(), Ok(Some(CallerEvent::Closed))));
    assert!(matches!(caller.poll(), Ok(None)));
    assert_eq!(
        caller.call_with("x", |_| Ok(()), |_| Ok(())),
        Err(Error::WrongState { state: State::Closed, operation: "call" })
    );
}

#[test]
fn one_call_at_a_time() {
    let mut caller = Caller::<Heap>::new(Config::default());
    let none = || Value::parse(b"[]").unwrap();
    caller.call("list_commands", none(), Value::parse(b"{}").unwrap()).unwrap();
    assert_eq!(
        caller.call("list_commands", none(), Value::parse(b"{}").unwrap()),
        Err(Error::WrongState { state: State::Busy, operation: "call" })
    );
    assert_eq!(
        caller.call_with("x", |_| Ok(()), |_| Ok(())),
        Err(Error::WrongState { state: State::Busy, operation: "call" })
    );
    // Sent, then forgotten: its late response is stale; the next call gets its own.
    let sent = caller.transmit().len();
    caller.transmitted(sent);
    assert!(caller.forget());
    caller.call_with("execute", |a| a.str("x").map(drop), |_| Ok(())).unwrap();
    let mut log = Vec::new();
    let mut stream = frame(b"{\"success\": true, \"result\": null}");
    stream.extend(frame(b"{\"success\": true, \"result\": \"late?\"}"));
    stream.extend(frame(b"{}"));
    common::feed(&mut caller, &stream, &[5], |e| log.push(describe_response(&e)));
    assert_eq!(log, ["stale Ok(Value(null))", "result \"late?\"", "unsolicited {}"]);
    // Arguments must be an array and an object.
    assert_eq!(caller.call("x", Value::parse(b"{}").unwrap(), Value::parse(b"{}").unwrap()), Err(Error::ArgsNotArray));
    assert_eq!(caller.call("x", none(), none()), Err(Error::KwNotObject));

    let mut responder = Responder::<Heap>::new(Config::default());
    assert_eq!(responder.respond_str("x"), Err(Error::WrongState { state: State::Idle, operation: "respond" }));
    // Two requests in one write: the second waits until the first is answered.
    responder.receive(b"27\n{\"method\": \"list_commands\"}27\n{\"method\": \"list_commands\"}").unwrap();
    assert!(matches!(responder.poll(), Ok(Some(ResponderEvent::Request(_)))));
    assert!(matches!(responder.poll(), Ok(None)));
    assert_eq!(responder.state(), State::Busy);
    responder.respond_array(|_| Ok(())).unwrap();
    assert_eq!(responder.transmit(), b"31\n{\"success\": true, \"result\": []}");
    assert!(matches!(responder.poll(), Ok(Some(ResponderEvent::Request(_)))));
}

#[test]
fn eof_fails_the_call_in_progress() {
    let mut caller = Caller::<Heap>::new(Config::default());
    caller.call_with("list_commands", |_| Ok(()), |_| Ok(())).unwrap();
    let mut log = Vec::new();
    common::feed(&mut caller, b"", &[1], |e| log.push(describe_response(&e)));
    assert_eq!(log, ["failed", "closed"]);

    // A short body, then the end: a typed error for the call, then closed.
    let mut caller = Caller::<Heap>::new(Config::default());
    caller.call_with("list_commands", |_| Ok(()), |_| Ok(())).unwrap();
    let mut log = Vec::new();
    common::feed(&mut caller, b"40\n{\"success\": tr", &[4], |e| log.push(describe_response(&e)));
    common::feed(&mut caller, b"", &[1], |e| log.push(describe_response(&e)));
    assert_eq!(log, ["invalid negotiator: the stream ended 14 bytes into a frame of 40 bytes", "closed"]);
}

#[test]
fn hostile_length_of_ten_to_the_eighteenth() {
    // The length is refused before one byte of body is buffered, answered at
    // once, and the body is skipped as it streams in: memory stays flat.
    let mut responder = Responder::<Heap>::new(Config::default());
    responder.receive(b"1000000000000000000\n").unwrap();
    match responder.poll().unwrap() {
        Some(ResponderEvent::Malformed(e)) => {
            assert_eq!(e, Error::TooLarge { length: 1_000_000_000_000_000_000, limit: 16 << 20 });
            assert!(!e.breaks_framing());
        }
        other => panic!("{other:?}"),
    }
    let answer = String::from_utf8_lossy(responder.transmit()).into_owned();
    assert!(answer.ends_with("{\"success\": false, \"error\": \"negotiator: a frame of 1000000000000000000 bytes is over the limit of 16777216 bytes\"}"), "{answer}");
    let junk = vec![b'x'; 1 << 16];
    for _ in 0..256 {
        let mut fed = 0;
        while fed < junk.len() {
            fed += responder.receive(&junk[fed..]).unwrap();
            assert!(responder.poll().unwrap().is_none());
        }
    }
    assert!(responder.decoder().capacity() <= 1 << 16, "{}", responder.decoder().capacity());
    assert_eq!(responder.state(), State::Idle);
}

#[test]
fn oversized_frame_is_skipped_and_the_session_goes_on() {
    let mut frame = b"300\n".to_vec();
    frame.extend_from_slice(&[b' '; 300]);
    frame.extend_from_slice(b"27\n{\"method\": \"list_commands\"}");
    for sizes in [&[1][..], &[7, 300], &[frame.len()]] {
        let mut responder = Responder::<Fixed<256, 256, 1>>::new(Config::default());
        let (log, out) = serve(&mut responder, &frame, sizes, &[]);
        assert_eq!(
            log,
            [
                "malformed negotiator: a frame of 300 bytes is over the limit of 256 bytes",
                "request list_commands [] {}",
                "closed"
            ]
        );
        assert_eq!(frames(&out).len(), 2);
    }
}

#[test]
fn hostile_endless_digit_line() {
    let mut responder = Responder::<Heap>::new(Config::default());
    let digits = [b'9'; 4096];
    responder.receive(&digits[..100]).unwrap();
    match responder.poll().unwrap() {
        Some(ResponderEvent::Malformed(e)) => {
            assert_eq!(e, Error::LengthLineTooLong { limit: MAX_LENGTH_LINE, offset: 0 });
            assert!(e.breaks_framing());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(responder.poll(), Ok(Some(ResponderEvent::Closed))));
    // Whatever else comes is dropped as it arrives.
    for _ in 0..1000 {
        assert_eq!(responder.receive(&digits).unwrap(), digits.len());
        assert!(responder.poll().unwrap().is_none());
    }
    assert!(responder.decoder().capacity() <= 8192);
    assert!(responder.transmit().is_empty());
}

#[test]
fn hostile_deep_nesting_and_bad_json_keep_the_session() {
    let mut stream = Vec::new();
    let deep = "[".repeat(100_000);
    stream.extend_from_slice(format!("{}\n{deep}", deep.len()).as_bytes());
    stream.extend(frame(b"{\"id\": 1"));
    stream.extend(frame(b"{\"method\": \"m\xc3\xa9thode\", \"kw\": 1}"));
    stream.extend(frame(b"{\"method\": \"execute\", \"args\": {}}"));
    stream.extend(frame(b"{\"method\": \"execute\", \"method\": \"raw_write\", \"args\": [\"x\"]}"));
    stream.extend(frame(b"{\"method\": \"list_commands\", \"kw\": {}}"));
    let (log, out) = serve(&mut Responder::<Heap>::new(Config::default()), &stream, &[4096], &[]);
    assert_eq!(
        log,
        [
            "malformed negotiator: frame body: JSON at byte 135: nesting deeper than the limit of 128",
            "malformed negotiator: frame body: invalid JSON at byte 100017: input ended inside a value",
            "malformed negotiator: non-ASCII byte at byte 100033 (frames are ASCII: the peer counts characters, not bytes)",
            "malformed negotiator: request \"args\" is not an array",
            // Python keeps the last of duplicate keys: so does the responder.
            "unsupported raw_write",
            "request list_commands [] {}",
            "closed",
        ]
    );
    assert_eq!(frames(&out).len(), 6);
}

#[test]
fn tiny_fixed_storage_still_refuses_long_lines() {
    let mut responder = Responder::<Fixed<8, 128, 1>>::new(Config::default());
    let (log, _) = serve(&mut responder, b"123456789\n{}", &[1], &[]);
    assert_eq!(log, ["malformed negotiator: length line at byte 0 is longer than 7 bytes", "closed"]);
}

#[test]
fn frame_split_anywhere() {
    let stream = fixture!("02_raw_frames", "c2s");
    let (reference, reference_out) =
        serve(&mut Responder::<Heap>::new(Config::default()), stream, &[stream.len()], &[]);
    for split in 1..stream.len() {
        let (log, out) = serve(&mut Responder::<Heap>::new(Config::default()), stream, &[split, stream.len()], &[]);
        assert_eq!(log, reference, "split at {split}");
        assert_eq!(out, reference_out, "split at {split}");
    }
}

fn decode_all<B: vmwire_proto::buf::Buf<u8>>(decoder: &mut Decoder<B>, bytes: &[u8]) -> Vec<Result<String, Error>> {
    let mut got = decode_all_partial(decoder, bytes);
    got.extend(decoder.finish().map(Err));
    got
}

/// Arbitrary JSON: any text (non-ASCII, astral, control characters), integers,
/// floats that print exactly, nesting.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-1000i32..1000).prop_map(|n| serde_json::Value::from(f64::from(n) / 8.0)),
        any::<String>().prop_map(serde_json::Value::String),
        "[a-z\u{e9}\u{2603}\u{1F600}\u{0}-\u{1f}\"\\\\]{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(values in prop::collection::vec(json_value(), 1..4), sizes in prop::collection::vec(1usize..64, 1..8)) {
        let mut stream = Vec::new();
        for v in &values {
            let text = serde_json::to_vec(v).unwrap();
            let mut frame = vmwire_proto::buf::Bounded::new(usize::MAX);
            encode(&mut frame, Value::parse(&text).unwrap()).unwrap();
            let frame = frame.as_slice();
            // Pure ASCII, so the length holds in characters as in bytes,
            // and exactly `"%d\n%s"`.
            prop_assert!(frame.is_ascii());
            let nl = frame.iter().position(|&b| b == b'\n').unwrap();
            let len: usize = std::str::from_utf8(&frame[..nl]).unwrap().parse().unwrap();
            prop_assert_eq!(len, frame.len() - nl - 1);
            stream.extend_from_slice(frame);
        }
        // Decoded in arbitrary pieces, each frame is the value again.
        let mut decoder = Decoder::new(vmwire_proto::buf::Bounded::new(1 << 20), Limits::default());
        let mut decoded = Vec::new();
        let (mut fed, mut k) = (0, 0);
        while fed < stream.len() {
            let end = (fed + sizes[k % sizes.len()]).min(stream.len());
            k += 1;
            let mut at = fed;
            while at < end {
                at += decoder.receive(&stream[at..end]);
                while let Some(frame) = decoder.next() {
                    decoded.push(frame.unwrap().value().deserialize::<serde_json::Value>().unwrap());
                }
            }
            fed = end;
        }
        prop_assert!(decoder.finish().is_none());
        prop_assert_eq!(decoded, values);
    }

    #[test]
    fn chunking_never_changes_the_session(sizes in prop::collection::vec(1usize..200, 1..10)) {
        let requests = fixture!("01_interface_client", "c2s");
        let reference = serve(&mut Responder::<Heap>::new(Config::default()), requests, &[requests.len()], &[]);
        let chunked = serve(&mut Responder::<Heap>::new(Config::default()), requests, &sizes, &[]);
        prop_assert_eq!(chunked, reference);

        let responses = fixture!("01_interface_client", "s2c");
        let mut whole = Decoder::new(vmwire_proto::buf::Bounded::new(4096), Limits::default());
        let reference = decode_all(&mut whole, responses);
        let mut pieces = Decoder::new(vmwire_proto::buf::Bounded::new(4096), Limits::default());
        let mut got = Vec::new();
        let (mut fed, mut k) = (0, 0);
        while fed < responses.len() {
            let end = (fed + sizes[k % sizes.len()]).min(responses.len());
            k += 1;
            got.extend(decode_all_partial(&mut pieces, &responses[fed..end]));
            fed = end;
        }
        if let Some(e) = pieces.finish() {
            got.push(Err(e));
        }
        prop_assert_eq!(got, reference);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), sizes in prop::collection::vec(1usize..64, 1..6)) {
        let mut responder = Responder::<Fixed<512, 512, 1>>::new(Config::default());
        let (log, _) = serve(&mut responder, &bytes, &sizes, &[]);
        prop_assert_eq!(log.iter().filter(|l| *l == "closed").count(), 1);
        prop_assert_eq!(log.last().map(String::as_str), Some("closed"));

        let mut caller = Caller::<Fixed<512, 512, 1>>::new(Config::default());
        caller.call_with("list_commands", |_| Ok(()), |_| Ok(())).unwrap();
        let mut closed = 0;
        common::feed(&mut caller, &bytes, &sizes, |e| closed += matches!(e, CallerEvent::Closed) as usize);
        common::feed(&mut caller, b"", &[1], |e| closed += matches!(e, CallerEvent::Closed) as usize);
        prop_assert_eq!(closed, 1);
    }
}

/// Like [`decode_all`] without finishing the stream.
fn decode_all_partial<B: vmwire_proto::buf::Buf<u8>>(
    decoder: &mut Decoder<B>,
    bytes: &[u8],
) -> Vec<Result<String, Error>> {
    let mut got = Vec::new();
    let mut fed = 0;
    while fed < bytes.len() {
        fed += decoder.receive(&bytes[fed..]);
        while let Some(frame) = decoder.next() {
            got.push(frame.map(|m| m.value().raw_str().to_owned()));
        }
    }
    got
}

#[test]
fn decoder_reports_errors_by_kind() {
    let mut d = Decoder::new(heapless::Vec::<u8, 64>::new(), Limits { max_frame: 32, max_depth: 2 });
    let got = decode_all(&mut d, b"3\n[1]3\n[[[4\n\"\\u\"33\n");
    assert_eq!(got[0], Ok("[1]".into()));
    assert!(matches!(got[1], Err(Error::Json(json::Error { kind: ErrorKind::TooDeep { limit: 2 }, offset: 9 }))));
    assert!(matches!(got[2], Err(Error::Json(json::Error { kind: ErrorKind::InvalidEscape, .. }))));
    assert_eq!(got[3], Err(Error::TooLarge { length: 33, limit: 32 }));
    assert_eq!(got[4], Err(Error::TruncatedBody { length: 33, received: 0 }));
    assert_eq!(got.len(), 5);
}
