//! The QMP machine on transcripts captured from a real QEMU 7.2.22.

mod common;

use common::{Record, feed, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Fixed, Heap};
use vmwire_proto::json::{Framer, Limits, Value};
use vmwire_proto::qmp::{Client, Command, Config, Error, Event, Id, State};

/// One line per event, for comparing whole sessions.
fn describe(e: Event<'_>) -> String {
    match e {
        Event::Greeting(g) => format!("greeting {:?} oob={}", g.version().unwrap(), g.offers("oob")),
        Event::Ready { oob } => format!("ready oob={oob}"),
        Event::NegotiationFailed(e) => format!("negotiation failed {e}"),
        Event::NotGreeting { received, error } => {
            format!("not a greeting {:?}: {error}", received.escape_ascii().to_string())
        }
        Event::Return { id, value } => format!("return {id} {value}"),
        Event::Error { id, error } => format!("error {id} {}", error.class),
        Event::UntaggedError(e) => format!("untagged {}: {}", e.class, e.desc),
        Event::Event(ev) => format!("event {}{}", ev.name, ev.data.map(|d| format!(" {d}")).unwrap_or_default()),
        Event::Stale { id, .. } => format!("stale {id}"),
        Event::Unmatched(m) => format!("unmatched {}", m.value()),
        Event::MalformedReply { id, error } => format!("malformed reply {id}: {error}"),
        Event::Malformed(e) => format!("malformed {e}"),
        Event::Failed { id } => format!("failed {id}"),
        Event::Closed => "closed".into(),
    }
}

/// Sends (to be matched; the bytes go nowhere) every command the captured
/// client sent with an id, under the same id.
fn register(client: &mut Client<Heap>, c2s: &[u8]) {
    let mut framer = Framer::new(vmwire_proto::buf::Bounded::new(1 << 20), Limits::default());
    framer.receive(c2s);
    while let Some(msg) = framer.next() {
        let Ok(msg) = msg else { continue };
        let Some(name) = msg.get("execute").or(msg.get("exec-oob")).and_then(|n| n.as_str()) else {
            continue;
        };
        let id = match msg.get("id") {
            Some(v) if v.as_u64().is_some() => Id::Number(v.as_u64().unwrap()),
            Some(v) if v.as_str().is_some() => Id::string(&v.as_str().unwrap().to_string()).unwrap(),
            _ => continue,
        };
        let name = name.to_string();
        if name == "qmp_capabilities" {
            continue; // the machine negotiates by itself
        }
        let _ = client.send(Command::new(&name).id(id));
    }
    let n = client.transmit().len();
    client.transmitted(n);
}

fn replay(txn: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut client = Client::<Heap>::new(Config { oob: true, ..Config::default() });
    let mut log = Vec::new();
    for record in transcript(txn) {
        match record {
            Record::ClientToServer(bytes) => register(&mut client, &bytes),
            Record::ServerToClient(bytes) => feed(&mut client, &bytes, sizes, |e| log.push(describe(e))),
            Record::Note(_) => {}
        }
    }
    log
}

const GREETING: &str = "greeting (7, 2, 22) oob=true";
const STATUS: &str = r#"{"status": "prelaunch", "singlestep": false, "running": false}"#;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../fixtures/qmp/", $name, ".txn"))
    };
}

#[test]
fn greeting_and_untagged_negotiation() {
    // The captured client negotiated without an id: QEMU's reply has none,
    // so it cannot be the machine's own (tagged) qmp_capabilities.
    let log = replay(fixture!("01_greeting_caps_noid"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            GREETING,
            "unmatched {\"return\": {}}",
            "unmatched {\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}",
            "unmatched {\"return\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}}"
        ]
    );
}

#[test]
fn ids_of_every_type_are_echoed() {
    let log = replay(fixture!("02_caps_with_id"), &[usize::MAX]);
    assert_eq!(log[0], GREETING);
    assert_eq!(log[1], r#"unmatched {"return": {}, "id": "caps-1"}"#);
    assert_eq!(log[2], format!("return 1 {STATUS}"));
    // Object, null and negative ids are nobody's: the machine only sends
    // numbers and strings.
    assert!(log[3].starts_with("unmatched"));
    assert!(log[4].starts_with("unmatched"));
    assert!(log[5].starts_with("unmatched"));
    assert_eq!(log[6], format!("return \"before\" {STATUS}"));
    // A second qmp_capabilities: the machine never sends one, so the reply is nobody's.
    assert!(log[7].starts_with(r#"unmatched {"id": "again", "error""#));
    assert_eq!(log.len(), 8);
}

#[test]
fn errors_without_ids_and_malformed_replies() {
    let log = replay(fixture!("07_errors"), &[usize::MAX]);
    let expected = [
        GREETING,
        "unmatched {\"return\": {}}",
        "untagged CommandNotFound: The command nosuch has not been found",
        "error 7 CommandNotFound",
        "error 8 GenericError",
        "error 9 GenericError",
        "error 10 GenericError",
        "error 11 GenericError",
        // `{"execute": 1, "id": 12}` is no command the machine could have sent.
        "unmatched {\"id\": 12, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' must be a string\"}}",
        "error 13 GenericError",
        "untagged GenericError: QMP input lacks member 'execute'",
        "untagged GenericError: QMP input must be a JSON object",
        "untagged GenericError: QMP input must be a JSON object",
        "untagged GenericError: QMP input must be a JSON object",
        "untagged GenericError: JSON parse error, invalid keyword 'bad'",
        "untagged GenericError: JSON parse error, expecting value",
        "untagged GenericError: JSON parse error, expecting value",
        &format!("unmatched {{\"return\": {STATUS}}}"),
        // Single quotes are not JSON: the harness could not register "sq".
        &format!("unmatched {{\"return\": {STATUS}, \"id\": \"sq\"}}"),
        &format!("return \"esc\" {STATUS}"),
        &format!("return 1 {STATUS}"),
        // The captured client reused id 1: the second reply is nobody's.
        &format!("unmatched {{\"return\": {STATUS}, \"id\": 1}}"),
        "untagged GenericError: JSON parse error, duplicate key",
        &format!("return \"x\" {STATUS}"),
        "untagged GenericError: JSON parse error, invalid keyword 'junk'",
        "untagged GenericError: JSON parse error, stray '/'",
        // Nor the request behind a `/* comment */`.
        &format!("unmatched {{\"return\": {STATUS}, \"id\": \"c\"}}"),
        // QEMU echoes 1e400 as `inf`: not JSON. Reported, skipped, and the
        // session goes on with the next line.
        "malformed QMP: invalid JSON at byte 2457: expected a value, found 'i'",
        &format!("unmatched {{\"return\": {STATUS}, \"id\": 1.8446744073709552e+19}}"),
        "untagged GenericError: JSON parse error, stray '\"\u{1}'",
        "untagged GenericError: JSON parse error, expecting value",
        &format!("return \"tab\\t\\u{{1}}/\" {STATUS}"),
        &format!("return \"still-alive\" {STATUS}"),
    ];
    assert_eq!(log, expected);
}

#[test]
fn events_arrive_before_the_return_that_caused_them() {
    let log = replay(fixture!("10_cont_stop"), &[usize::MAX]);
    let expected = [
        GREETING,
        "unmatched {\"return\": {}}",
        &format!("return 1 {STATUS}"),
        "event RESUME",
        "return 2 {}",
        "return 3 {\"status\": \"running\", \"singlestep\": false, \"running\": true}",
        "return 4 {}",
        "event STOP",
        "return 5 {}",
        "return 6 {}",
        "return 7 {\"status\": \"paused\", \"singlestep\": false, \"running\": false}",
        "event RESUME",
        "unmatched {\"return\": {}}",
    ];
    assert_eq!(log, expected);
}

#[test]
fn quit_then_eof_closes() {
    let mut log = replay(fixture!("12_quit"), &[usize::MAX]);
    assert_eq!(
        log.split_off(2),
        ["event SHUTDOWN {\"guest\": false, \"reason\": \"host-qmp-quit\"}", "return \"bye\" {}", "closed",]
    );
}

#[test]
fn non_ascii_ids_are_compared_decoded() {
    let log = replay(fixture!("15_utf8"), &[usize::MAX]);
    assert!(log.contains(&format!("return \"café € 😀\" {STATUS}")), "{log:#?}");
    assert!(log.contains(&format!("return \"é😀\" {STATUS}")));
    assert!(log.contains(&format!("return \"\\0\" {STATUS}")));
    // The captured client wrote a raw 0xFF before this request; QEMU skips
    // it, the harness's strict framer does not, so the reply is nobody's.
    assert!(log.contains(&format!("unmatched {{\"return\": {STATUS}, \"id\": \"after-ff\"}}")));
    assert!(log.contains(&"return \"hmp\" \"unknown command: 'echo'\\r\\n\"".to_string()));
    assert_eq!(log.last().unwrap(), &format!("return \"still-alive\" {STATUS}"));
    assert!(!log.iter().any(|l| l.starts_with("malformed")));
}

#[test]
fn pipelined_replies_match_in_any_order() {
    for name in [&fixture!("08_pipelined")[..], fixture!("09_pipelined_oob"), fixture!("03_caps_oob")] {
        let log = replay(name, &[usize::MAX]);
        assert!(!log.iter().any(|l| l.starts_with("malformed")), "{log:#?}");
        let returns = log.iter().filter(|l| l.starts_with("return ")).count();
        assert!(returns >= 10 || name == fixture!("03_caps_oob"), "{returns}");
    }
}

#[test]
fn schema_reply_and_query_commands() {
    let log = replay(fixture!("06_query_qmp_schema"), &[4096]);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[2].starts_with("return \"schema\" [{\"name\": \"query-status\""), "{}", &log[2][..80]);
}

#[test]
fn every_transcript_frames_without_error_whatever_the_chunking() {
    let all: &[(&str, &[u8])] = &[
        ("01", fixture!("01_greeting_caps_noid")),
        ("02", fixture!("02_caps_with_id")),
        ("03", fixture!("03_caps_oob")),
        ("04", fixture!("04_before_negotiation")),
        ("05", fixture!("05_query_commands")),
        ("06", fixture!("06_query_qmp_schema")),
        ("07", fixture!("07_errors")),
        ("08", fixture!("08_pipelined")),
        ("09", fixture!("09_pipelined_oob")),
        ("10", fixture!("10_cont_stop")),
        ("11", fixture!("11_hmp_passthrough")),
        ("12", fixture!("12_quit")),
        ("15", fixture!("15_utf8")),
        ("16A", fixture!("16_two_qmp_sockets_A")),
        ("16B", fixture!("16_two_qmp_sockets_B")),
        ("17", fixture!("17_chardev_mon_control")),
        ("19a", fixture!("19_second_client_1")),
        ("19b", fixture!("19_second_client_2")),
        ("19c", fixture!("19_second_client_3_reconnect")),
    ];
    for (name, txn) in all {
        let whole = replay(txn, &[usize::MAX]);
        for sizes in [&[1][..], &[2, 3, 5, 7], &[13, 1, 64]] {
            assert_eq!(replay(txn, sizes), whole, "{name} {sizes:?}");
        }
    }
}

fn ready_client() -> Client<Heap> {
    let mut c = Client::<Heap>::new(Config { oob: true, ..Config::default() });
    c.receive(br#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 9}, "package": ""}, "capabilities": ["oob"]}}"#).unwrap();
    c.receive(b"\r\n").unwrap();
    assert!(matches!(c.poll().unwrap(), Some(Event::Greeting(_))));
    assert_eq!(c.transmit(), b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]},\"id\":0}\r\n");
    let n = c.transmit().len();
    c.transmitted(n);
    c.receive(b"{\"return\": {}, \"id\": 0}\r\n").unwrap();
    assert!(matches!(c.poll().unwrap(), Some(Event::Ready { oob: true })));
    c
}

#[test]
fn oob_and_caller_ids() {
    let mut c = ready_client();
    let args = Value::parse(br#"{"instances": []}"#).unwrap();
    let id = c.execute_oob("yank", Some(args)).unwrap();
    assert_eq!(id, Id::Number(1));
    let mine = Id::string("mine-é").unwrap();
    c.send(Command::new("query-status").id(mine.clone())).unwrap();
    assert_eq!(c.send(Command::new("query-status").id(mine.clone())), Err(vmwire_proto::qmp::Error::IdInUse));
    assert_eq!(
        c.send(Command::new("x").arguments(Value::parse(b"[]").unwrap())),
        Err(vmwire_proto::qmp::Error::ArgumentsNotObject)
    );
    assert_eq!(
        c.transmit(),
        "{\"exec-oob\":\"yank\",\"arguments\":{\"instances\": []},\"id\":1}\r\n{\"execute\":\"query-status\",\"id\":\"mine-é\"}\r\n".as_bytes()
    );
    c.receive(b"{\"return\": {}, \"id\": \"mine-\\u00E9\"}\r\n").unwrap();
    assert!(matches!(c.poll().unwrap(), Some(Event::Return { id, .. }) if id == mine));
}

#[test]
fn escaped_keys_classify_as_their_decoded_names() {
    let mut c = ready_client();
    let id = c.execute("x", None).unwrap();
    c.receive(b"{\"\\u0072eturn\": 5, \"i\\u0064\": 1}\r\n{\"ev\\u0065nt\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"micro\\u0073econds\": 2}}\r\n").unwrap();
    assert!(
        matches!(c.poll().unwrap(), Some(Event::Return { id: got, value }) if got == id && value.as_u64() == Some(5))
    );
    assert!(matches!(c.poll().unwrap(), Some(Event::Event(e)) if e.name == "STOP" && e.timestamp.microseconds == 2));
}

#[test]
fn oob_refused_unless_negotiated() {
    let mut c = Client::<Fixed<1024>>::new(Config::default());
    assert!(matches!(
        c.execute("query-status", None),
        Err(vmwire_proto::qmp::Error::WrongState { state: State::AwaitingGreeting, .. })
    ));
    c.receive(b"{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\n").unwrap();
    c.poll().unwrap();
    assert_eq!(c.execute_oob("query-yank", None), Err(vmwire_proto::qmp::Error::OobNotNegotiated));
}

#[test]
fn forgotten_commands_come_back_stale_and_eof_fails_the_rest() {
    let mut c = ready_client();
    let a = c.execute("a", None).unwrap();
    let b = c.execute("b", None).unwrap();
    let d = c.execute("d", None).unwrap();
    assert!(c.forget(&a));
    assert!(!c.forget(&a));
    c.receive(b"{\"return\": 5, \"id\": 1}\r\n{\"return\": 6, \"id\": 2}\r\n{\"return\": 7, \"id\": 99}\r\n{\"return\": 8, \"id\": 2}\r\n").unwrap();
    let mut log = Vec::new();
    feed(&mut c, b"", &[1], |e| log.push(describe(e)));
    while let Some(e) = c.poll().unwrap() {
        log.push(describe(e));
    }
    let _ = (b, d);
    assert_eq!(
        log,
        [
            "stale 1",
            "return 2 6",
            "unmatched {\"return\": 7, \"id\": 99}",
            "unmatched {\"return\": 8, \"id\": 2}",
            "failed 3",
            "closed"
        ]
    );
    assert_eq!(c.state(), State::Closed);
    assert!(c.poll().unwrap().is_none());
}

#[test]
fn not_a_greeting_is_fatal() {
    let mut c = Client::<Fixed<256>>::new(Config::default());
    c.receive(b"{\"return\": {}}\r\n").unwrap();
    match c.poll().unwrap() {
        Some(Event::NotGreeting { received, error }) => {
            assert_eq!(received, b"{\"return\": {}}");
            assert_eq!(error, Error::NotGreeting);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.poll().unwrap(), Some(Event::Closed)));
    assert!(c.poll().unwrap().is_none());
}

/// QEMU's human monitor writes its banner at once: said at once, with the
/// bytes, not after a time limit.
#[test]
fn a_human_monitor_banner_is_not_a_greeting() {
    let banner = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ";
    let mut c = Client::<Fixed<256>>::new(Config::default());
    c.receive(banner).unwrap();
    match c.poll().unwrap() {
        Some(Event::NotGreeting { received, error }) => {
            assert_eq!(received, banner);
            assert_eq!(error, Error::NotGreeting);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.state(), State::Closed);
    assert!(matches!(c.poll().unwrap(), Some(Event::Closed)));
    // Even one byte is enough to tell.
    let mut c = Client::<Fixed<256>>::new(Config::default());
    c.receive(b"\r\nQ").unwrap();
    assert!(matches!(c.poll().unwrap(), Some(Event::NotGreeting { received: b"Q", .. })));
}

#[test]
fn invalid_or_oversized_greeting_is_fatal_and_says_why() {
    let mut c = Client::<Fixed<256>>::new(Config::default());
    c.receive(b"{\"QMP\": x}\r\n").unwrap();
    match c.poll().unwrap() {
        Some(Event::NotGreeting { error: Error::Json(e), .. }) => assert_eq!(e.offset, 8),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.poll().unwrap(), Some(Event::Closed)));

    let limits = Limits { max_message: 64, max_depth: 8 };
    let mut c = Client::<Heap>::new(Config { limits, ..Config::default() });
    let greeting =
        format!("{{\"QMP\": {{\"version\": {{}}, \"capabilities\": [], \"pad\": \"{}\"}}}}\r\n", "x".repeat(100));
    c.receive(greeting.as_bytes()).unwrap();
    match c.poll().unwrap() {
        Some(Event::NotGreeting { error: Error::Json(e), .. }) => {
            assert_eq!(e.kind, vmwire_proto::json::ErrorKind::TooLarge { limit: 64 })
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.state(), State::Closed);
}

/// A reply over the size limit is skipped unread; QEMU answers in-band
/// commands in order, so it fails the oldest command in flight (a
/// forgotten one ends silently), and the session goes on. An event over
/// the limit, or a reply while an out-of-band command is in flight (it may
/// overtake), answers no one: reported, and the commands wait on.
#[test]
fn reply_over_the_limit_fails_the_oldest_in_band_command() {
    let limits = Limits { max_message: 64, max_depth: 8 };
    let greeting = br#"{"QMP": {"version": {}, "capabilities": ["oob"]}}"#;
    let big = |head: &str| format!("{{{head}: \"{}\", \"id\": 1}}\r\n", "x".repeat(100));
    for whole in [true, false] {
        let mut c = Client::<Heap>::new(Config { limits, oob: true, ..Config::default() });
        let mut ready = false;
        feed(&mut c, greeting, &[64], |_| {});
        feed(&mut c, b"\r\n{\"return\": {}, \"id\": 0}\r\n", &[64], |e| {
            ready |= matches!(e, Event::Ready { oob: true })
        });
        assert!(ready);
        let forgotten = c.execute("query-a", None).unwrap();
        let first = c.execute("query-schema", None).unwrap();
        let second = c.execute("query-status", None).unwrap();
        c.forget(&forgotten);
        let mut input = big("\"return\"") + &big("\"timestamp\"") + &big("\"return\"");
        input += &format!("{{\"return\": {{}}, \"id\": {second}}}\r\n");
        let mut events = Vec::new();
        // As much as the buffer takes, or a byte at a time.
        feed(&mut c, input.as_bytes(), &[if whole { input.len() } else { 1 }], |e| events.push(describe(e)));
        let too_large = |e: &str| e.ends_with("value larger than the limit of 64 bytes");
        let malformed = |e: &str| e.starts_with("malformed QMP:") && too_large(e);
        assert!(malformed(&events[0]), "the forgotten command's reply, to no one: {events:?}");
        assert!(malformed(&events[1]), "an event, to no one: {events:?}");
        assert!(
            events[2].starts_with(&format!("malformed reply {first}: QMP:")) && too_large(&events[2]),
            "{events:?}"
        );
        assert_eq!(events[3], format!("return {second} {{}}"), "{events:?}");
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(c.in_flight(), 0);

        // An out-of-band command in flight: nobody can tell whose it is.
        let waiting = c.execute("query-schema", None).unwrap();
        c.execute_oob("migrate-pause", None).unwrap();
        let mut events = Vec::new();
        feed(&mut c, big("\"return\"").as_bytes(), &[64], |e| events.push(describe(e)));
        assert!(events.len() == 1 && malformed(&events[0]), "{events:?}");
        assert_eq!(c.in_flight(), 2, "{waiting} still waits");
    }
}

/// A reply with the id of a waiting command that is not a valid reply fails
/// that command, saying how; the session goes on.
#[test]
fn malformed_reply_fails_its_command_and_the_session_goes_on() {
    let mut c = ready_client();
    let both = c.execute("query-status", None).unwrap();
    let no_desc = c.execute("query-name", None).unwrap();
    let neither = c.execute("query-uuid", None).unwrap();
    let fine = c.execute("query-kvm", None).unwrap();
    let n = c.transmit().len();
    c.transmitted(n);
    c.receive(
        format!(
            "{{\"return\": {{}}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"x\"}}, \"id\": {both}}}\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    c.receive(format!("{{\"error\": {{\"class\": \"GenericError\"}}, \"id\": {no_desc}}}\r\n").as_bytes()).unwrap();
    c.receive(format!("{{\"id\": {neither}}}\r\n").as_bytes()).unwrap();
    c.receive(b"{\"return\": {}, \"error\": {}, \"id\": 999}\r\n").unwrap();
    c.receive(format!("{{\"return\": {{}}, \"id\": {fine}}}\r\n").as_bytes()).unwrap();
    let mut log = Vec::new();
    while let Some(e) = c.poll().unwrap() {
        log.push(describe(e));
    }
    assert_eq!(
        log,
        [
            format!("malformed reply {both}: QMP: bad message: both return and error"),
            format!("malformed reply {no_desc}: QMP: bad message: error without class and desc"),
            format!("malformed reply {neither}: QMP: bad message: neither return, error nor event"),
            "malformed QMP: bad message: both return and error".to_string(),
            format!("return {fine} {{}}"),
        ]
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn truncated_message_at_eof_is_reported() {
    let mut c = ready_client();
    let id = c.execute("x", None).unwrap();
    c.receive(b"{\"return\": {\"a\": ").unwrap();
    assert!(c.poll().unwrap().is_none());
    c.recv_eof();
    let mut log = Vec::new();
    while let Some(e) = c.poll().unwrap() {
        log.push(describe(e));
    }
    assert_eq!(
        log,
        [
            "malformed QMP: invalid JSON at byte 152: input ended inside a value".to_string(),
            format!("failed {id}"),
            "closed".into()
        ]
    );
}

#[test]
fn pretty_printed_messages_frame() {
    // Bytes as QEMU writes them with `-mon mode=control,pretty=on`.
    let mut c = Client::<Fixed<2048>>::new(Config::default());
    let pretty = b"{\r\n    \"QMP\": {\r\n        \"version\": {\r\n            \"qemu\": {\r\n                \"micro\": 22,\r\n                \"minor\": 2,\r\n                \"major\": 7\r\n            },\r\n            \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"\r\n        },\r\n        \"capabilities\": [\r\n            \"oob\"\r\n        ]\r\n    }\r\n}\r\n{\r\n    \"return\": {\r\n    },\r\n    \"id\": 0\r\n}\r\n{\r\n    \"timestamp\": {\r\n        \"seconds\": 1795238286,\r\n        \"microseconds\": 389085\r\n    },\r\n    \"event\": \"RESUME\"\r\n}\r\n";
    let mut log = Vec::new();
    feed(&mut c, pretty, &[3], |e| log.push(describe(e)));
    assert_eq!(log, [GREETING.to_string(), "ready oob=false".into(), "event RESUME".into()]);
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(sizes in proptest::collection::vec(1usize..300, 1..20)) {
        let txn = fixture!("10_cont_stop");
        prop_assert_eq!(replay(txn, &sizes), replay(txn, &[usize::MAX]));
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overflow(junk in proptest::collection::vec(any::<u8>(), 0..2000), sizes in proptest::collection::vec(1usize..64, 1..8)) {
        let mut c = Client::<Fixed<512, 256, 4>>::new(Config::default());
        feed(&mut c, br#"{"QMP": {"version": {}, "capabilities": []}}"#, &[usize::MAX], |_| {});
        feed(&mut c, b"\n", &[1], |_| {});
        feed(&mut c, &junk, &sizes, |_| {});
        prop_assert!(c.recv_buf().len() <= 512);
    }
}

/// Committing more bytes than `recv_buf` offered is the caller's misuse,
/// named with the count; the machine took none of them and goes on.
#[test]
fn committing_more_than_offered_is_misuse_and_takes_nothing() {
    let mut c = ready_client();
    let offered = c.recv_buf().len();
    let error = c.recv_commit(offered + 1).unwrap_err();
    assert_eq!(error, Error::CommitTooLarge(vmwire_proto::buf::CommitTooLarge { committed: offered + 1 }));
    assert_eq!(error.kind(), vmwire_proto::ErrorKind::Misuse);
    assert_eq!(error.to_string(), format!("QMP: {} bytes committed, more than recv_buf offered", offered + 1));
    let id = c.execute("query-status", None).unwrap();
    c.receive(format!("{{\"return\": {{}}, \"id\": {id}}}\r\n").as_bytes()).unwrap();
    assert!(matches!(c.poll().unwrap(), Some(Event::Return { id: got, .. }) if got == id), "the session goes on");
}

/// The passwords and keys a command carries, between their quotes, escapes
/// and all: blanked out with `*`s, the command is still JSON, with only
/// those strings changed.
#[test]
fn secret_spans_are_the_passwords_and_keys() {
    use vmwire_proto::qmp::secret_spans;
    let cases: [(&str, &[&str]); 10] = [
        (
            r#"{"execute": "human-monitor-command", "arguments": {"command-line": "set_password vnc p\"w keep"}}"#,
            &[r#"p\"w"#],
        ),
        (r#"{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}"#, &[]),
        (r#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "s3cret"}}"#, &["s3cret"]),
        (
            r#"{"exec-oob": "change-vnc-password", "arguments": {"password": "a\"b\\c\u00e9"}, "id": 4}"#,
            &[r#"a\"b\\c\u00e9"#],
        ),
        (
            r#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"sec0","data":"a2V5","format":"base64"}}"#,
            &["a2V5"],
        ),
        (
            r#"{"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s", "props": {"data": "k"}}}"#,
            &["k"],
        ),
        (
            r#"{"execute": "guest-set-user-password", "arguments": {"username": "root", "password": "cHc=", "crypted": false}}"#,
            &["cHc="],
        ),
        (r#"{"execute": "object-add", "arguments": {"qom-type": "memory-backend-ram", "id": "m", "data": "x"}}"#, &[]),
        (r#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": 7}}"#, &[]),
        (r#"{"execute": "query-status", "arguments": {"password": "not one"}}"#, &[]),
    ];
    for (command, secrets) in cases {
        let spans: Vec<_> = secret_spans(command.as_bytes()).collect();
        let found: Vec<&str> = spans.iter().map(|s| &command[s.clone()]).collect();
        assert_eq!(found, secrets, "{command}");
        let mut blanked = command.as_bytes().to_vec();
        for span in spans {
            blanked[span].fill(b'*');
        }
        let (before, after): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(command).unwrap(), serde_json::from_slice(&blanked).unwrap());
        let mut expected = before.to_string();
        for secret in secrets {
            let decoded: String = serde_json::from_str(&format!("\"{secret}\"")).unwrap();
            let encoded = serde_json::Value::from(decoded).to_string();
            let encoded = &encoded[1..encoded.len() - 1];
            expected = expected.replace(encoded, &"*".repeat(secret.len()));
        }
        assert_eq!(after.to_string(), expected, "{command}");
    }
}
