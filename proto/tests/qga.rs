//! The guest agent machine on transcripts captured from a real qemu-ga 7.2.22.

mod common;

use common::{Record, feed, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::base64;
use vmwire_proto::buf::{Bounded, Fixed, Heap};
use vmwire_proto::json::{Framer, Limits, Value};
use vmwire_proto::qga::{Client, Command, Config, Error, Event, ExecStatus, FileRead, Id, State};

/// One line per event, for comparing whole sessions.
fn describe(e: Event<'_>) -> String {
    match e {
        Event::Synced => "synced".into(),
        Event::Return { id, value } => format!("return {id} {value}"),
        Event::Error { id, error } => format!("error {id} {}", error.class),
        Event::Accepted { id } => format!("accepted {id}"),
        Event::UntaggedError(e) => format!("untagged {}: {}", e.class, e.desc),
        Event::Stale { id, .. } => format!("stale {id}"),
        Event::Unmatched(m) => format!("unmatched {}", m.value()),
        Event::Malformed(e) => format!("malformed {e}"),
        Event::MalformedReply { id, error } => format!("malformed reply {id}: {error}"),
        Event::WrongProtocol { error, text } => format!("wrong protocol {error}: {}", String::from_utf8_lossy(text)),
        Event::Failed { id } => format!("failed {id}"),
        Event::Closed => "closed".into(),
    }
}

/// Does what the captured client did: a `guest-sync-delimited` becomes a
/// resync with its id, a command with an id is sent under that id (the
/// bytes go nowhere; the replies are what counts).
fn register(client: &mut Client<Heap>, c2s: &[u8]) {
    let mut framer = Framer::new(Bounded::new(1 << 20), Limits::default()).with_delimiter(0xFF);
    framer.receive(c2s);
    while let Some(msg) = framer.next() {
        let Ok(msg) = msg else { continue };
        let Some(name) = msg.get("execute").and_then(|n| n.as_str()) else { continue };
        let name = name.to_string();
        if name == "guest-sync-delimited" {
            let sync = msg.get("arguments").and_then(|a| a.get("id")).and_then(|id| id.as_u64()).unwrap();
            if client.state() != State::Syncing || client.sync_id() != sync {
                client.resync(sync).unwrap();
            }
            continue;
        }
        let id = match msg.get("id") {
            Some(v) if v.as_u64().is_some() => Id::Number(v.as_u64().unwrap()),
            Some(v) if v.as_str().is_some() => Id::string(&v.as_str().unwrap().to_string()).unwrap(),
            _ => continue,
        };
        client.send(Command::new(&name).id(id)).unwrap();
    }
    let n = client.transmit().len();
    client.transmitted(n);
}

/// A client in step with the agent, as if an earlier sync had been answered.
fn synced() -> Client<Heap> {
    let mut client = Client::<Heap>::new(Config::default(), 1);
    let mut log = Vec::new();
    feed(&mut client, b"\xff{\"return\": 1}\n", &[usize::MAX], |e| log.push(describe(e)));
    assert_eq!(log, ["synced"]);
    let n = client.transmit().len();
    client.transmitted(n);
    client
}

fn replay_on(mut client: Client<Heap>, txn: &[u8], sizes: &[usize]) -> Vec<String> {
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

fn replay(txn: &[u8], sizes: &[usize]) -> Vec<String> {
    replay_on(synced(), txn, sizes)
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../fixtures/qga/", $name, ".txn"))
    };
    ($name:literal, $ext:literal) => {
        include_bytes!(concat!("../../fixtures/qga/", $name, ".", $ext))
    };
}

#[test]
fn opening_sync_discards_what_came_before_and_resyncs_on_demand() {
    let client = Client::<Heap>::new(Config::default(), 5678);
    let log = replay_on(client, fixture!("01_sync"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            // The plain guest-sync reply before it was stale: dropped.
            "synced",
            "unmatched {\"return\": 9223372036854775807}",
            "unmatched {\"return\": -1}",
            "untagged GenericError: Invalid parameter type for 'id', expected: integer",
            "untagged GenericError: Parameter 'id' is missing",
            "return \"outer\" 1",
            // 0xFF + sync 42: the agent's complaint about the 0xFF is dropped.
            "synced",
            // A broken request cut by 0xFF, then sync 43.
            "synced",
        ]
    );
}

#[test]
fn pings_and_info() {
    let log = replay(fixture!("02_ping_info_osinfo"), &[usize::MAX]);
    assert_eq!(log[0], "unmatched {\"return\": {}}");
    assert_eq!(log[1], "return \"p1\" {}");
    assert_eq!(log[2], "return 2 {}");
    assert!(log[3].starts_with("unmatched {\"return\": {\"version\": \"7.2.22\", \"supported_commands\": ["));
    assert_eq!(log.len(), 8);
}

#[test]
fn errors_are_the_agents() {
    let log = replay(fixture!("05_errors"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            "untagged CommandNotFound: The command nosuch has not been found",
            "error 7 CommandNotFound",
            "untagged CommandNotFound: The command qmp_capabilities has not been found",
            "untagged GenericError: Parameter 'x' is unexpected",
            "untagged GenericError: Invalid parameter type for 'handle', expected: integer",
            // exec-oob is refused locally; the captured client sent it anyway.
            "unmatched {\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec-oob' is unexpected\"}}",
            "untagged GenericError: JSON parse error, invalid keyword 'bad'",
            "untagged GenericError: QMP input must be a JSON object",
            "untagged GenericError: QMP input lacks member 'execute'",
            "untagged GenericError: QMP input must be a JSON object",
            "return \"café\" {}",
            "untagged GenericError: JSON parse error, invalid UTF-8 sequence in string",
            "unmatched {\"return\": {}}",
            "return \"still-alive\" {}",
        ]
    );
}

#[test]
fn a_sync_among_pipelined_commands_fails_those_before_it() {
    let log = replay(fixture!("06_pipelined"), &[usize::MAX]);
    assert_eq!(log, ["failed 2", "failed 3", "synced", "return 5 1795236324572093000"]);
}

#[test]
fn blocked_commands_are_refused_by_the_agent() {
    let log = replay(fixture!("07_blocked_rpc"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            "untagged CommandNotFound: Command guest-exec has been disabled",
            "untagged CommandNotFound: Command guest-file-open has been disabled",
            "unmatched {\"return\": {}}",
        ]
    );
}

#[test]
fn a_request_left_half_written_is_cleared_by_the_resync() {
    assert_eq!(replay(fixture!("08_reconnect_1"), &[usize::MAX]), ["return \"c1\" {}"]);
    // The second client's ping vanished into the old request; the resync
    // fails it and brings the session back in step.
    assert_eq!(replay(fixture!("08_reconnect_2"), &[usize::MAX]), ["failed \"c2\"", "synced"]);
}

/// Every `return` value in a captured reply stream.
fn returns(s2c: &[u8]) -> Vec<String> {
    let mut framer = Framer::new(Bounded::new(1 << 20), Limits::default()).with_delimiter(0xFF);
    framer.receive(s2c);
    let mut out = Vec::new();
    while let Some(msg) = framer.next() {
        if let Some(v) = msg.unwrap().get("return") {
            out.push(v.raw_str().to_string());
        }
    }
    out
}

#[test]
fn exec_status_replies_decode() {
    let statuses: Vec<String> = returns(fixture!("03_exec", "s2c"))
        .iter()
        .filter_map(|r| {
            let v = Value::parse(r.as_bytes()).unwrap();
            let s = ExecStatus::parse(v)?;
            let decode = |d: Option<_>| {
                d.map(|d| {
                    let mut out = Vec::new();
                    base64::decode_json(&mut out, d).unwrap();
                    out
                })
            };
            Some(format!(
                "exited={} code={:?} signal={:?} out={:?} err={:?}",
                s.exited,
                s.exit_code,
                s.signal,
                decode(s.out_data),
                decode(s.err_data)
            ))
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "exited=true code=Some(3) signal=None out=Some([104, 101, 108, 108, 111, 10]) err=Some([101, 114, 114, 10])",
            "exited=true code=Some(0) signal=None out=Some([99, 97, 102, 233, 10, 0, 255]) err=None",
            "exited=false code=None signal=None out=None err=None",
            "exited=true code=Some(0) signal=None out=None err=None",
            "exited=true code=None signal=Some(9) out=None err=None",
        ]
    );
}

#[test]
fn file_reads_decode_to_the_file() {
    let mut file = Vec::new();
    for r in returns(fixture!("04_file", "s2c")).iter().take(3) {
        let v = Value::parse(r.as_bytes()).unwrap();
        if let Some(read) = FileRead::parse(v) {
            let before = file.len();
            base64::decode_json(&mut file, read.data).unwrap();
            assert_eq!((file.len() - before) as u64, read.count);
        }
    }
    let mut expected = b"line one\nline two caf\xc3\xa9\n".to_vec();
    expected.extend(0..=255u8);
    assert_eq!(file, expected);
}

#[test]
fn a_sync_reply_with_another_id_is_rejected() {
    let mut c = Client::<Fixed<1024, 256, 4>>::new(Config::default(), 7);
    let mut log = Vec::new();
    feed(&mut c, b"{\"return\": 7}\n\xff{\"return\": 6}\n\xff{\"return\": 7}\n", &[1], |e| log.push(describe(e)));
    assert_eq!(log, ["unmatched {\"return\": 6}", "synced"]);
    assert_eq!(c.state(), State::Ready);
}

#[test]
fn sync_ids_are_signed_64_bit() {
    let c = Client::<Fixed<64, 128>>::new(Config::default(), u64::MAX);
    assert_eq!(c.sync_id(), i64::MAX as u64);
    assert_eq!(
        c.transmit(),
        b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":9223372036854775807}}\n"
    );
}

#[test]
fn stray_0xff_ends_what_it_cuts_and_is_skipped_between_replies() {
    let bytes: &[u8] = b"\xff\xff {\"return\": {}, \"id\": 0}\n{\"return\": {\"cut\xff  \xff{\"return\": {}, \"id\": 1}\n{\"return\": \"caf\xc3\xff\n";
    // Stream offsets: the sync reply `synced()` fed came first.
    let at = |needle: &[u8]| 15 + bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let expected = [
        "return 0 {}".to_string(),
        format!("malformed QGA: invalid JSON at byte {}: invalid UTF-8", at(b"\xff  ")),
        "return 1 {}".into(),
        // Placed at the byte that makes the sequence invalid, the 0xFF after 0xC3.
        format!("malformed QGA: invalid JSON at byte {}: invalid UTF-8", at(b"\xc3") + 1),
    ];
    for piece in [1, 2, 5, bytes.len()] {
        let mut c = synced();
        c.execute("guest-ping", None).unwrap();
        c.execute("guest-ping", None).unwrap();
        let mut log = Vec::new();
        feed(&mut c, bytes, &[piece], |e| log.push(describe(e)));
        assert_eq!(log, expected, "pieces of {piece}");
    }
}

#[test]
fn commands_without_a_success_response_are_accepted_by_what_follows() {
    let mut c = synced();
    let shutdown = c.execute("guest-shutdown", None).unwrap();
    let ping = c.execute("guest-ping", None).unwrap();
    let mut log = Vec::new();
    feed(&mut c, format!("{{\"return\": {{}}, \"id\": {ping}}}\n").as_bytes(), &[usize::MAX], |e| {
        log.push(describe(e))
    });
    assert_eq!(log, [format!("return {ping} {{}}"), format!("accepted {shutdown}")]);

    // Refused: the agent does answer.
    let refused = c.execute("guest-shutdown", None).unwrap();
    let mut log = Vec::new();
    let reply = format!(
        "{{\"id\": {refused}, \"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"Command guest-shutdown has been disabled\"}}}}\n"
    );
    feed(&mut c, reply.as_bytes(), &[usize::MAX], |e| log.push(describe(e)));
    assert_eq!(log, [format!("error {refused} CommandNotFound")]);

    // Closed from this side: no telling what the agent did.
    let mut closed = synced();
    let suspend = closed.execute("guest-suspend-ram", None).unwrap();
    closed.close();
    let mut log = Vec::new();
    while let Some(e) = closed.poll().unwrap() {
        log.push(describe(e));
    }
    assert_eq!(log, [format!("failed {suspend}"), "closed".into()]);

    // The guest went down after it: accepted too.
    let last = c.execute("guest-suspend-ram", None).unwrap();
    let mut log = Vec::new();
    feed(&mut c, b"", &[1], |e| log.push(describe(e)));
    assert_eq!(log, [format!("accepted {last}"), "closed".into()]);
}

#[test]
fn end_of_stream_while_syncing_fails_the_queued_commands() {
    let mut c = Client::<Heap>::new(Config::default(), 3);
    let id = c.execute("guest-info", None).unwrap();
    assert!(c.transmit().ends_with(b"{\"execute\":\"guest-info\",\"id\":0}\n"));
    let mut log = Vec::new();
    feed(&mut c, b"{\"return\": 3}\n", &[usize::MAX], |e| log.push(describe(e)));
    feed(&mut c, b"", &[1], |e| log.push(describe(e)));
    assert_eq!(log, [format!("failed {id}"), "closed".into()]);
    assert!(matches!(c.execute("guest-ping", None), Err(Error::WrongState { .. })));
    assert!(matches!(c.resync(4), Err(Error::WrongState { .. })));
}

#[test]
fn forgotten_and_resynced_commands() {
    let mut c = synced();
    let slow = c.execute("guest-fsfreeze-status", None).unwrap();
    assert!(c.forget(&slow));
    // The late reply is stale.
    let mut log = Vec::new();
    feed(&mut c, format!("{{\"return\": \"thawed\", \"id\": {slow}}}\n").as_bytes(), &[3], |e| log.push(describe(e)));
    assert_eq!(log, [format!("stale {slow}")]);
    // A resync drops what is not yet written and fails what waits.
    let waiting = c.execute("guest-ping", None).unwrap();
    c.resync(99).unwrap();
    assert_eq!(c.transmit(), b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":99}}\n");
    let after = c.execute("guest-ping", None).unwrap();
    let mut log = Vec::new();
    let mut bytes = format!("{{\"return\": {{}}, \"id\": {waiting}}}\n").into_bytes();
    bytes.extend(b"\xff{\"return\": 99}\n");
    bytes.extend(format!("{{\"return\": {{}}, \"id\": {after}}}\n").as_bytes());
    feed(&mut c, &bytes, &[4], |e| log.push(describe(e)));
    assert_eq!(log, [format!("failed {waiting}"), "synced".into(), format!("return {after} {{}}")]);
}

#[test]
fn arguments_are_checked_and_written_in_place() {
    let mut c = Client::<Fixed<256, 512, 4>>::new(Config::default(), 1);
    let n = c.transmit().len();
    c.transmitted(n);
    assert_eq!(c.send(Command::new("guest-ping").oob()), Err(Error::OobNotSupported));
    assert_eq!(c.execute("guest-ping", Some(Value::parse(b"[1]").unwrap())), Err(Error::ArgumentsNotObject));
    let id = c
        .execute_with("guest-file-write", |a| {
            a.i64("handle", 1000)?.base64("buf-b64", b"written by qga\n")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(id, Id::Number(0));
    assert_eq!(
        c.transmit(),
        b"{\"execute\":\"guest-file-write\",\"arguments\":{\"handle\":1000,\"buf-b64\":\"d3JpdHRlbiBieSBxZ2EK\"},\"id\":0}\n"
    );
    assert_eq!(c.send(Command::new("guest-ping").id(Id::Number(0))), Err(Error::IdInUse));
    // The transmit buffer is bounded: too much file data at once is refused whole.
    let big = [0u8; 400];
    let before = c.transmit().len();
    assert!(matches!(
        c.execute_with("guest-file-write", |a| {
            a.base64("buf-b64", &big)?;
            Ok(())
        }),
        Err(Error::TransmitFull(_))
    ));
    assert_eq!(c.transmit().len(), before);
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(sizes in proptest::collection::vec(1usize..200, 1..20)) {
        let client = || Client::<Heap>::new(Config::default(), 5678);
        prop_assert_eq!(replay_on(client(), fixture!("01_sync"), &sizes), replay_on(client(), fixture!("01_sync"), &[usize::MAX]));
        for txn in [&fixture!("05_errors")[..], fixture!("06_pipelined"), fixture!("08_reconnect_2")] {
            prop_assert_eq!(replay(txn, &sizes), replay(txn, &[usize::MAX]));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overflow(
        junk in proptest::collection::vec(prop_oneof![any::<u8>(), Just(0xFFu8), Just(b'{'), Just(b'\n')], 0..2000),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut c = Client::<Fixed<512, 256, 4>>::new(Config::default(), 9);
        let n = c.transmit().len();
        c.transmitted(n);
        let _ = c.execute("guest-ping", None);
        let mut closed = 0;
        feed(&mut c, &junk, &sizes, |e| closed += matches!(e, Event::Closed) as usize);
        prop_assert!(c.recv_buf().len() <= 512);
        let _ = c.resync(10);
        feed(&mut c, b"\xff{\"return\": 10}\n", &[3], |_| {});
        feed(&mut c, b"", &[1], |e| closed += matches!(e, Event::Closed) as usize);
        prop_assert_eq!(closed, 1);
        prop_assert_eq!(c.in_flight(), 0);
    }
}

#[test]
fn a_monitor_socket_is_not_an_agent() {
    let qmp = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";
    let hmp = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ";
    let cases: [(&[u8], &str); 3] =
        [(qmp, "QMP's greeting"), (hmp, "the human monitor's banner"), (b"(qemu) ", "the human monitor's prompt")];
    for (opening, found) in cases {
        for sizes in [&[usize::MAX][..], &[1]] {
            let mut client = Client::<Heap>::new(Config::default(), 7);
            let ping = client.execute("guest-ping", None).unwrap();
            let mut log = Vec::new();
            feed(&mut client, opening, sizes, |e| log.push(describe(e)));
            if found.ends_with("prompt") {
                // No line end after a prompt: decided at the end of the stream.
                assert!(log.is_empty(), "{log:?}");
                feed(&mut client, b"", &[1], |e| log.push(describe(e)));
            }
            let said =
                format!("wrong protocol QGA: expected the guest agent's answer to guest-sync-delimited, got {found}: ");
            assert!(log[0].starts_with(&said), "{log:?}");
            // Its first line, whatever the chunking.
            let line = opening.iter().position(|&b| b == b'\n').map_or(opening.len(), |k| k + 1);
            assert_eq!(&log[0].as_bytes()[said.len()..], &opening[..line], "{log:?}");
            assert_eq!(log[1..], [format!("failed {ping}"), "closed".into()]);
            assert_eq!(client.state(), State::Closed);
        }
    }
    // What an agent (or an earlier client's stale reply) opens with is not refused.
    let mut client = Client::<Heap>::new(Config::default(), 7);
    let mut log = Vec::new();
    feed(&mut client, b"{\"return\": {}}\n\xff{\"return\": 7}\n", &[1], |e| log.push(describe(e)));
    assert_eq!(log, ["synced"]);
}

/// Runs `operation` against a scripted agent: `answer` gives the return
/// value (JSON) of each command sent, by name. Returns the output, the
/// commands in the order sent, and the pauses asked for.
fn run_scripted<O: vmwire_proto::op::Operation<Client<Heap>>>(
    client: &mut Client<Heap>,
    operation: &mut O,
    mut answer: impl FnMut(&str) -> String,
) -> (O::Output, Vec<String>, Vec<std::time::Duration>) {
    let (mut sent, mut pauses) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let mut stray = |e: Event<'_>| panic!("stray {}", describe(e));
        if let Some(output) = vmwire_proto::op::drive(client, operation, &mut stray).unwrap() {
            return (output, sent, pauses);
        }
        if let Some(pause) = operation.pause() {
            pauses.push(pause);
            if let Some(output) = operation.resume(client).unwrap() {
                return (output, sent, pauses);
            }
            continue;
        }
        let tx = client.transmit().to_vec();
        client.transmitted(tx.len());
        let mut replies = Vec::new();
        for line in tx.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let request = Value::parse(line).unwrap();
            let name = request.get("execute").unwrap().as_str().unwrap().to_string();
            let id = request.get("id").unwrap().raw_str().to_string();
            replies.extend_from_slice(format!("{{\"return\": {}, \"id\": {id}}}\n", answer(&name)).as_bytes());
            sent.push(name);
        }
        client.receive(&replies).unwrap();
    }
    panic!("no end");
}

#[test]
fn exec_polls_the_status_with_growing_pauses_until_the_program_exits() {
    use vmwire_proto::qga::{EXEC_POLL_FIRST, Exec, Ran};
    let mut client = synced();
    let mut polls = 0;
    let mut exec = Exec::new(&mut client, "/bin/true", &["-x"], &[], Some(b"in"), |ran: Ran<'_>| match ran {
        Ran::Exited(s) => Ok((s.exit_code, s.out_data.map(|d| d.to_string()))),
        Ran::Failed { command, answer } => Err(format!("{command}: {answer:?}")),
    })
    .unwrap();
    let (output, sent, pauses) = run_scripted(&mut client, &mut exec, |name| match name {
        "guest-exec" => r#"{"pid": 7}"#.into(),
        _ if polls < 2 => {
            polls += 1;
            r#"{"exited": false}"#.into()
        }
        _ => r#"{"exited": true, "exitcode": 3, "out-data": "aGk="}"#.into(),
    });
    assert_eq!(output, Ok((Some(3), Some("aGk=".into()))));
    assert_eq!(sent, ["guest-exec", "guest-exec-status", "guest-exec-status", "guest-exec-status"]);
    assert_eq!(pauses, [EXEC_POLL_FIRST, EXEC_POLL_FIRST * 2]);
}

#[test]
fn exec_names_the_running_program_only_between_two_looks() {
    use vmwire_proto::op::{Operation, drive};
    use vmwire_proto::qga::{Exec, Ran};
    let mut client = synced();
    let mut exec = Exec::new(&mut client, "/bin/sleep", &["9"], &[], None, |_: Ran<'_>| ()).unwrap();
    let mut stray = |e: Event<'_>| panic!("stray {}", describe(e));
    let answer = |client: &mut Client<Heap>, value: &str| {
        let tx = client.transmit().to_vec();
        client.transmitted(tx.len());
        let id = Value::parse(tx.trim_ascii_end()).unwrap().get("id").unwrap().raw_str().to_string();
        client.receive(format!("{{\"return\": {value}, \"id\": {id}}}\n").as_bytes()).unwrap();
    };
    assert_eq!(exec.running(), None, "guest-exec in flight");
    answer(&mut client, r#"{"pid": 7}"#);
    assert_eq!(drive(&mut client, &mut exec, &mut stray).unwrap(), None);
    assert_eq!(exec.running(), None, "guest-exec-status in flight");
    answer(&mut client, r#"{"exited": false}"#);
    assert_eq!(drive(&mut client, &mut exec, &mut stray).unwrap(), None);
    assert!(Operation::<Client<Heap>>::pause(&exec).is_some());
    assert_eq!(exec.running(), Some(7), "paused: the agent said it runs");
    assert_eq!(exec.resume(&mut client).unwrap(), None);
    assert_eq!(exec.running(), None);
}

#[test]
fn a_transfer_closes_the_handle_whatever_happened() {
    use vmwire_proto::qga::{Reading, Source, Transfer, Transferred, Writing};
    let describe = |t: Transferred<'_>| format!("{t:?}");

    // Read: two chunks, the second the last; the bytes reach the sink.
    let mut client = synced();
    let mut reads = 0;
    let mut read = Transfer::new(&mut client, "/f", Reading(Vec::new()), 2, describe).unwrap();
    let (output, sent, _) = run_scripted(&mut client, &mut read, |name| match name {
        "guest-file-open" => "5".into(),
        "guest-file-read" => {
            reads += 1;
            let eof = reads == 2;
            format!(r#"{{"count": 2, "buf-b64": "aGk=", "eof": {eof}}}"#)
        }
        _ => "{}".into(),
    });
    assert_eq!(output, "Done(4)");
    assert_eq!(sent, ["guest-file-open", "guest-file-read", "guest-file-read", "guest-file-close"]);
    assert_eq!(read.into_data().0, b"hihi");

    // Write: the caller's reader fails at the second chunk; the handle is closed all the same.
    struct Failing(u8);
    impl Source for Failing {
        fn chunk(&mut self, _max: usize) -> Option<&[u8]> {
            self.0 += 1;
            (self.0 == 1).then_some(&b"ab"[..])
        }
    }
    let mut client = synced();
    let mut write = Transfer::new(&mut client, "/f", Writing::new(Failing(0)), 2, describe).unwrap();
    let (output, sent, _) = run_scripted(&mut client, &mut write, |name| match name {
        "guest-file-open" => "5".into(),
        "guest-file-write" => r#"{"count": 2, "eof": false}"#.into(),
        _ => "{}".into(),
    });
    assert_eq!(output, "Stopped");
    assert_eq!(sent, ["guest-file-open", "guest-file-write", "guest-file-close"]);

    // A chunk's count that disagrees with its data: the handle is closed, the mismatch reported.
    let mut client = synced();
    let mut read = Transfer::new(&mut client, "/f", Reading(Vec::new()), 2, describe).unwrap();
    let (output, sent, _) = run_scripted(&mut client, &mut read, |name| match name {
        "guest-file-open" => "5".into(),
        "guest-file-read" => r#"{"count": 3, "buf-b64": "aGk=", "eof": true}"#.into(),
        _ => "{}".into(),
    });
    assert_eq!(output, "Miscounted { said: 3, got: 2 }");
    assert_eq!(sent, ["guest-file-open", "guest-file-read", "guest-file-close"]);
}

/// A client with `limits`, in step with the agent.
fn synced_with(limits: Limits) -> Client<Heap> {
    let mut client = Client::<Heap>::new(Config { limits, ..Config::default() }, 1);
    let mut log = Vec::new();
    feed(&mut client, b"\xff{\"return\": 1}\n", &[usize::MAX], |e| log.push(describe(e)));
    assert_eq!(log, ["synced"]);
    client
}

/// A reply over the size limit fails the oldest command in flight, which
/// the agent answers first, at once: whole or byte by byte; a forgotten
/// command's ends silently; with a quiet command in flight (it answers only
/// when it fails) nobody can tell whose it is, and it is reported alone.
#[test]
fn reply_over_the_limit_fails_the_oldest_command() {
    let limits = Limits { max_message: 64, max_depth: 8 };
    let big = |id: &Id| format!("{{\"return\": \"{}\", \"id\": {id}}}\n", "x".repeat(100));
    for whole in [true, false] {
        let sizes = [if whole { usize::MAX } else { 1 }];
        let mut c = synced_with(limits);
        let forgotten = c.execute("guest-get-osinfo", None).unwrap();
        let first = c.execute("guest-get-fsinfo", None).unwrap();
        let second = c.execute("guest-ping", None).unwrap();
        c.forget(&forgotten);
        let input = big(&forgotten) + &big(&first) + &format!("{{\"return\": {{}}, \"id\": {second}}}\n");
        let mut events = Vec::new();
        feed(&mut c, input.as_bytes(), &sizes, |e| events.push(describe(e)));
        let too_large = |e: &str| e.ends_with("value larger than the limit of 64 bytes");
        assert!(events[0].starts_with("malformed QGA:") && too_large(&events[0]), "{events:?}");
        assert!(
            events[1].starts_with(&format!("malformed reply {first}: QGA:")) && too_large(&events[1]),
            "{events:?}"
        );
        assert_eq!(events[2], format!("return {second} {{}}"), "{events:?}");
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(c.in_flight(), 0);

        // Behind a quiet command: its error or the next one's reply.
        c.execute("guest-shutdown", None).unwrap();
        let after = c.execute("guest-get-fsinfo", None).unwrap();
        let mut events = Vec::new();
        feed(&mut c, big(&after).as_bytes(), &sizes, |e| events.push(describe(e)));
        assert!(events.len() == 1 && events[0].starts_with("malformed QGA:"), "{events:?}");
        assert_eq!(c.in_flight(), 2);
    }
}

/// A reply with the id of a waiting command that is not a valid reply fails
/// that command, saying how; the session goes on.
#[test]
fn malformed_reply_fails_its_command_and_the_session_goes_on() {
    let mut c = synced();
    let both = c.execute("guest-info", None).unwrap();
    let neither = c.execute("guest-get-host-name", None).unwrap();
    let fine = c.execute("guest-ping", None).unwrap();
    let input = format!(
        "{{\"return\": {{}}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"x\"}}, \"id\": {both}}}\n\
         {{\"id\": {neither}}}\n{{\"return\": {{}}, \"error\": {{}}, \"id\": 999}}\n{{\"return\": {{}}, \"id\": {fine}}}\n"
    );
    let mut log = Vec::new();
    feed(&mut c, input.as_bytes(), &[usize::MAX], |e| log.push(describe(e)));
    assert_eq!(
        log,
        [
            format!("malformed reply {both}: QGA: bad message: both return and error"),
            format!("malformed reply {neither}: QGA: bad message: neither return nor error"),
            "malformed QGA: bad message: both return and error".to_string(),
            format!("return {fine} {{}}"),
        ]
    );
    assert_eq!(c.in_flight(), 0);
}
