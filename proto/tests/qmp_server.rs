//! The QMP server machine against QEMU 7.2.22's own transcripts: each
//! client write of a captured session is fed to the machine; the commands it
//! hands out are answered with what QEMU answered, its events are sent as
//! QEMU sent them; what the machine writes must be QEMU's bytes. The few
//! places where it knowingly differs are listed, and checked to differ.

mod common;

use common::{Record, transcript};
use vmwire_proto::Machine;
use vmwire_proto::buf::{Fixed, Heap, Storage};
use vmwire_proto::json::{Framer, Limits, Value};
use vmwire_proto::qmp::server::{Event, Server, ServerConfig};
use vmwire_proto::qmp::{State, Timestamp};

/// The greeting's parts, from QEMU's greeting.
fn greeting(bytes: &[u8]) -> ((u64, u64, u64), String, Vec<String>) {
    let v = Value::parse(bytes.trim_ascii()).unwrap().get("QMP").unwrap();
    let q = v.get("version").unwrap().get("qemu").unwrap();
    let n = |k| q.get(k).unwrap().as_u64().unwrap();
    let package = v.get("version").unwrap().get("package").unwrap().as_str().unwrap().to_string();
    let caps = v.get("capabilities").unwrap().as_array().unwrap().map(|c| c.as_str().unwrap().to_string()).collect();
    ((n("major"), n("minor"), n("micro")), package, caps)
}

/// Every message in `bytes`.
fn messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut framer =
        Framer::new(vmwire_proto::buf::Bounded::new(1 << 20), Limits { max_message: 1 << 20, max_depth: 128 });
    framer.receive(bytes);
    let mut out = Vec::new();
    while let Some(m) = framer.next() {
        // QEMU writes some ids that are not JSON (`inf`): such a reply is skipped.
        if let Ok(m) = m {
            out.push(m.raw().to_vec());
        }
    }
    out
}

/// A command handed out, waiting for QEMU's answer.
struct Pending {
    id: Option<Vec<u8>>,
    oob: bool,
}

/// Runs session `name`; returns the notes of the exchanges whose bytes
/// differed from QEMU's (and checks every other one).
fn replay<S: Storage>(name: &str) -> Vec<String> {
    let txn = std::fs::read(format!("{}/../fixtures/qmp/{name}.txn", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let records = transcript(&txn);
    let mut server = Server::<S>::new(ServerConfig { max_transmit: 1 << 20, ..ServerConfig::default() });
    let mut note = String::new();
    let mut differ = Vec::new();
    let mut greeted = false;
    // Commands handed out and not yet answered (QEMU may answer after a later write).
    let mut handed: Vec<Pending> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        match &records[i] {
            Record::Note(n) => note = String::from_utf8_lossy(n).into_owned(),
            Record::ServerToClient(bytes) if !greeted => {
                greeted = true;
                let (version, package, caps) = greeting(bytes);
                let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
                server.greet(version, &package, &caps).unwrap();
                assert_eq!(server.transmit(), &bytes[..], "{name}: greeting");
                let n = server.transmit().len();
                server.transmitted(n);
            }
            Record::ServerToClient(_) => {}
            Record::ClientToServer(input) => {
                // The client's write, and everything QEMU wrote until the next one.
                let mut expected = Vec::new();
                while let Some(Record::ServerToClient(bytes)) = records.get(i + 1) {
                    expected.extend_from_slice(bytes);
                    i += 1;
                }
                server.receive(input).unwrap();
                let next_event = |server: &mut Server<S>, handed: &mut Vec<Pending>| match server.poll().unwrap() {
                    Some(Event::Command(c)) => {
                        handed.push(Pending { id: c.id.map(|id| id.raw().to_vec()), oob: c.oob });
                        true
                    }
                    Some(_) => true,
                    None => false,
                };
                for message in messages(&expected) {
                    let v = Value::parse(&message).unwrap();
                    if let Some(event) = v.get("event") {
                        let t = v.get("timestamp").unwrap();
                        let ts = Timestamp {
                            seconds: t.get("seconds").unwrap().as_i64().unwrap(),
                            microseconds: t.get("microseconds").unwrap().as_i64().unwrap(),
                        };
                        server.send_event(&event.as_str().unwrap().to_string(), ts, v.get("data")).unwrap();
                        continue;
                    }
                    // A reply: to the next message the machine takes.
                    if handed.is_empty() {
                        next_event(&mut server, &mut handed);
                    }
                    if !handed.is_empty() {
                        let p = handed.remove(0);
                        let id = p.id.as_deref().map(|id| Value::parse(id).unwrap());
                        match (v.get("return"), v.get("error")) {
                            (Some(ret), _) => server.send_return(id, p.oob, ret).unwrap(),
                            (_, Some(err)) => {
                                let s = |k| err.get(k).unwrap().as_str().unwrap().to_string();
                                server.send_error(id, p.oob, &s("class"), &s("desc")).unwrap();
                            }
                            _ => panic!("{name}: not a reply"),
                        }
                    }
                }
                while next_event(&mut server, &mut handed) {}
                if server.transmit() != &expected[..] {
                    differ.push(note.clone());
                }
                let n = server.transmit().len();
                server.transmitted(n);
            }
        }
        i += 1;
    }
    differ
}

#[test]
fn before_negotiation_and_capabilities_are_qemus() {
    // Every refusal before and after negotiation, byte for byte.
    assert_eq!(replay::<Heap>("04_before_negotiation"), Vec::<String>::new());
    assert_eq!(replay::<Fixed<4096, 4096, 8>>("04_before_negotiation"), Vec::<String>::new());
}

#[test]
fn ids_of_every_type_come_back() {
    // QEMU re-writes a number id in its own form (-1.5e3 as -1500); the
    // machine gives the client its own text back.
    assert_eq!(replay::<Heap>("02_caps_with_id"), ["id may be any JSON value"]);
}

#[test]
fn oob_and_pipelining_are_qemus() {
    assert_eq!(replay::<Heap>("03_caps_oob"), Vec::<String>::new());
    assert_eq!(replay::<Heap>("08_pipelined"), Vec::<String>::new());
    assert_eq!(replay::<Heap>("09_pipelined_oob"), Vec::<String>::new());
    assert_eq!(replay::<Heap>("10_cont_stop"), Vec::<String>::new());
    assert_eq!(replay::<Heap>("01_greeting_caps_noid"), Vec::<String>::new());
}

#[test]
fn protocol_errors_are_qemus() {
    // What differs: QEMU's parser and ours see bad JSON differently (its
    // words for the error, where it resumes), QEMU takes single quotes, and
    // QEMU re-writes ids in its own form.
    // Everything else (unknown commands, bad arguments, a non-object,
    // missing or non-string `execute`, `arguments` not an object, unexpected
    // members, a trailing comma, duplicate keys, an object split over two
    // writes) is QEMU's byte for byte.
    let differ = replay::<Heap>("07_errors");
    let known = [
        "malformed: bare word",                   // QEMU: "invalid keyword 'bad'"; here "expecting value"
        "malformed: lone close brace",            // the framer skips a stray `}` to the next line
        "single-quoted strings (QEMU extension)", // not JSON: refused
        "trailing garbage after object",          // "expecting value" for `junk`
        "comment",                                // not JSON: refused
        "huge number",                            // QEMU echoes 1e400 as `inf`; the client's text comes back
        "integer > u64",                          // QEMU echoes it as a float; the client's text comes back
        "raw control char in string",             // one refusal where QEMU makes two
        "escapes in id echoed back",              // QEMU re-escapes `\/`; the client's text comes back
    ];
    assert_eq!(differ, known);
}

#[test]
fn commands_wait_in_order_behind_the_ones_in_flight() {
    let mut server = Server::<Heap>::new(ServerConfig::default());
    server.greet((7, 2, 22), "", &[]).unwrap();
    server.receive(b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"stop\"}[]{\"execute\": \"cont\"}").unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Negotiated { oob: false })));
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(c)) if c.name == "stop" && c.id.is_none()));
    // The refusal of `[]` waits for stop's reply, and holds up cont.
    assert!(matches!(server.poll().unwrap(), Some(Event::Refused { class: "GenericError" })));
    assert!(server.poll().unwrap().is_none());
    let n = server.transmit().len();
    server.transmitted(n);
    server.send_return(None, false, Value::parse(b"{}").unwrap()).unwrap();
    assert_eq!(
        server.transmit(),
        b"{\"return\": {}}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n"
    );
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(c)) if c.name == "cont"));
    server.recv_eof();
    assert!(matches!(server.poll().unwrap(), Some(Event::Closed)));
    assert!(server.poll().unwrap().is_none());
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn in_flight_limit_stops_reading() {
    let mut server = Server::<Heap>::new(ServerConfig { max_in_flight: 2, ..ServerConfig::default() });
    server.greet((7, 2, 22), "", &[]).unwrap();
    server.receive(b"{\"execute\": \"qmp_capabilities\"}\n").unwrap();
    server.receive(&b"{\"execute\": \"query-status\"}\n".repeat(3)).unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Negotiated { .. })));
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(_))));
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(_))));
    assert!(server.poll().unwrap().is_none());
    server.send_return(None, false, Value::parse(b"{}").unwrap()).unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(_))));
}

#[test]
fn events_only_after_negotiation() {
    let mut server = Server::<Heap>::new(ServerConfig::default());
    server.greet((7, 2, 22), "", &["oob"]).unwrap();
    let n = server.transmit().len();
    server.transmitted(n);
    let ts = Timestamp { seconds: 1, microseconds: 2 };
    assert!(!server.send_event("STOP", ts, None).unwrap());
    server.receive(b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}").unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Negotiated { oob: true })));
    assert!(server.send_event("STOP", ts, Some(Value::parse(b"{\"a\": 1}").unwrap())).unwrap());
    assert_eq!(
        server.transmit(),
        b"{\"return\": {}}\r\n{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\", \"data\": {\"a\": 1}}\r\n"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Every byte chunk of every captured client stream, then noise.
    for name in ["04_before_negotiation", "07_errors", "15_utf8"] {
        let c2s = std::fs::read(format!("{}/../fixtures/qmp/{name}.c2s", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for size in [1, 7, 4096] {
            let mut server = Server::<Fixed<512, 1024, 4>>::new(ServerConfig::default());
            server.greet((7, 2, 22), "", &["oob"]).unwrap();
            for chunk in c2s.chunks(size) {
                let mut fed = 0;
                while fed < chunk.len() {
                    let took = server.receive(&chunk[fed..]).unwrap();
                    fed += took;
                    loop {
                        match server.poll().unwrap() {
                            Some(Event::Command(c)) => {
                                let id = c.id.map(|i| i.raw().to_vec());
                                let oob = c.oob;
                                let id = id.as_deref().map(|i| Value::parse(i).unwrap());
                                let _ = server.send_error(id, oob, "GenericError", "x");
                            }
                            Some(_) => {}
                            None => break,
                        }
                        let n = server.transmit().len();
                        server.transmitted(n);
                    }
                    if took == 0 && server.recv_buf().is_empty() {
                        break;
                    }
                }
            }
        }
    }
}
