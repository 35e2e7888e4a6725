//! `vmwire_std::replay::Peer` and `vmwire replay`: the captures in
//! `fixtures/` served to vmwire's own clients, and every fault flag.
//!
//! Each client is driven by the recorded client messages (the command
//! names and arguments, as a program using the client would send them), so
//! a fixture replays when the client, behaving well, sends what the
//! recorded client sent. The client's results must be the recorded replies.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use vmwire_proto::transcript::{Direction, Reader};
use vmwire_std::replay::{Error, Fault, Peer, Protocol};

/// A hang guard: every client here gives up after this long (never reached
/// when things work: the replay answers at once).
const GUARD: Duration = Duration::from_secs(5);

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(path)
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(fixture(path)).unwrap()
}

/// The recorded bytes of one direction, cut into JSON messages.
fn json_messages(text: &[u8], direction: Direction) -> Vec<Json> {
    let mut stream = Vec::new();
    for record in Reader::new(text) {
        let record = record.unwrap();
        if record.direction == direction {
            stream.extend_from_slice(record.bytes);
        }
    }
    let stream: Vec<u8> = stream.into_iter().map(|b| if b == 0xFF { b' ' } else { b }).collect();
    serde_json::Deserializer::from_slice(&stream).into_iter::<Json>().map_while(Result::ok).collect()
}

/// What a client call gave: the value, or the peer's error class.
#[derive(Debug, PartialEq)]
enum Outcome {
    Return(Json),
    Error(String),
}

/// The recorded replies, in order (events and the greeting left out).
fn recorded_outcomes(text: &[u8]) -> Vec<Outcome> {
    json_messages(text, Direction::ServerToClient)
        .into_iter()
        .filter_map(|m| match (m.get("return"), m.get("error")) {
            (Some(v), _) => Some(Outcome::Return(v.clone())),
            (_, Some(e)) => Some(Outcome::Error(e["class"].as_str().unwrap_or_default().to_string())),
            _ => None,
        })
        .collect()
}

fn qmp_options() -> vmwire_std::qmp::Options {
    vmwire_std::qmp::Options { timeout: Some(GUARD), ..Default::default() }
}

/// Replays a QMP fixture against `vmwire_std::qmp::Qmp`: the handshake,
/// then every recorded command through `execute_raw`. Returns the client's
/// outcomes (the handshake's included) and the peer's verdict.
fn replay_qmp(name: &str, faults: &[Fault]) -> (Vec<Outcome>, Result<(), Error>) {
    let (outcomes, _, verdict) = replay_qmp_with(name, faults, qmp_options());
    (outcomes, verdict)
}

/// What the client saw besides its results: event names and strays.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<String>,
    strays: Vec<String>,
}

/// [`replay_qmp`] with client `options`; also returns what else the client saw.
fn replay_qmp_with(
    name: &str,
    faults: &[Fault],
    options: vmwire_std::qmp::Options,
) -> (Vec<Outcome>, Seen, Result<(), Error>) {
    let text = read(&format!("qmp/{name}.txn"));
    let commands = json_messages(&text, Direction::ClientToServer);
    let peer = Peer::start(Protocol::Qmp, &text, faults).unwrap();
    let oob = commands.first().is_some_and(|c| c["arguments"]["enable"].is_array());
    let mut outcomes = Vec::new();
    let mut seen = Seen::default();
    match vmwire_std::qmp::Qmp::connect_unix(peer.path(), vmwire_std::qmp::Options { oob, ..options }) {
        Ok(mut qmp) => {
            outcomes.push(Outcome::Return(serde_json::json!({})));
            for command in commands.iter().skip(1) {
                let args = command.get("arguments").map(|a| a.to_string());
                let result = match (command["execute"].as_str(), command["exec-oob"].as_str()) {
                    (Some(name), _) => qmp.execute_raw(name, args.as_deref()),
                    (_, Some(name)) => qmp.execute_oob_raw(name, args.as_deref()),
                    _ => {
                        outcomes.push(Outcome::Error(format!("not a command: {command}")));
                        break;
                    }
                };
                match result {
                    Ok(value) => outcomes.push(Outcome::Return(serde_json::from_str(&value).unwrap())),
                    Err(vmwire_std::qmp::Error::Qemu(e)) => outcomes.push(Outcome::Error(e.class)),
                    Err(e) => {
                        outcomes.push(Outcome::Error(format!("client: {e}")));
                        break;
                    }
                }
            }
            seen.strays = qmp.take_strays().iter().map(|s| format!("{s:?}")).collect();
            while let Ok(Some(event)) = qmp.next_event(Some(Duration::ZERO)) {
                seen.events.push(event.name);
            }
            qmp.close();
        }
        Err(e) => outcomes.push(Outcome::Error(format!("client: {e}"))),
    }
    (outcomes, seen, peer.finish())
}

/// The QMP captures a well-behaved client reproduces: greeting,
/// `qmp_capabilities`, then one command at a time.
///
/// Left out, and why: 02 (ids of every JSON type, and negotiating twice:
/// `qmp_capabilities` is the handshake's, not a command to send again),
/// 03 and 04 (`exec-oob` of commands that do not allow it, commands before
/// negotiation), 07 (malformed JSON), 08 and 09 (pipelined writes: the
/// transcript's server answers only after the whole batch),
/// 19_second_client_2 and _3 (a client that talks before the greeting, or
/// before negotiating), 15 (invalid UTF-8 and ids a client does not choose).
const QMP_REPLAYABLE: &[&str] = &[
    "01_greeting_caps_noid",
    "05_query_commands",
    "06_query_qmp_schema",
    "10_cont_stop",
    "11_hmp_passthrough",
    "12_quit",
    "16_two_qmp_sockets_A",
    "16_two_qmp_sockets_B",
    "17_chardev_mon_control",
    "19_second_client_1",
];

#[test]
fn qmp_fixtures_replay_against_the_qmp_client() {
    for name in QMP_REPLAYABLE {
        let text = read(&format!("qmp/{name}.txn"));
        let (outcomes, verdict) = replay_qmp(name, &[]);
        verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcomes, recorded_outcomes(&text), "{name}");
    }
}

/// The recorded client bytes.
fn client_bytes(text: &[u8]) -> Vec<u8> {
    Reader::new(text)
        .map(Result::unwrap)
        .filter(|r| r.direction == Direction::ClientToServer)
        .flat_map(|r| r.bytes.to_vec())
        .collect()
}

fn is_sync(command: &Json) -> bool {
    matches!(command["execute"].as_str(), Some("guest-sync" | "guest-sync-delimited"))
}

/// Replays a QGA fixture against `vmwire_std::qga::Agent`: connecting (its
/// own `0xFF` + `guest-sync-delimited`, which the peer answers), then every
/// recorded command through `execute_raw` (`guest-sync-delimited` through
/// `sync`). Returns the outcomes of the commands that are not syncs.
fn replay_qga(name: &str, faults: &[Fault]) -> (Vec<Outcome>, Result<(), Error>) {
    let text = read(&format!("qga/{name}.txn"));
    let commands = json_messages(&text, Direction::ClientToServer);
    let peer = Peer::start(Protocol::Qga, &text, faults).unwrap();
    let options = vmwire_std::qga::Options { timeout: Some(GUARD), ..Default::default() };
    let mut outcomes = Vec::new();
    match vmwire_std::qga::Agent::connect_unix(peer.path(), options) {
        Ok(mut agent) => {
            for command in &commands {
                let name = command["execute"].as_str().unwrap_or_default();
                let args = command.get("arguments").map(|a| a.to_string());
                let result = match name {
                    "guest-sync-delimited" => agent.sync().map(|()| String::new()),
                    _ => agent.execute_raw(name, args.as_deref()),
                };
                match result {
                    Ok(_) if is_sync(command) => {}
                    Ok(value) => outcomes.push(Outcome::Return(serde_json::from_str(&value).unwrap())),
                    Err(vmwire_std::qga::Error::Agent(e)) => outcomes.push(Outcome::Error(e.class)),
                    Err(e) => {
                        outcomes.push(Outcome::Error(format!("client: {e}")));
                        break;
                    }
                }
            }
            agent.close();
        }
        Err(e) => outcomes.push(Outcome::Error(format!("client: {e}"))),
    }
    (outcomes, peer.finish())
}

/// The recorded replies of the commands that are not syncs.
fn qga_recorded_outcomes(text: &[u8]) -> Vec<Outcome> {
    let commands = json_messages(text, Direction::ClientToServer);
    commands.iter().zip(recorded_outcomes(text)).filter(|(c, _)| !is_sync(c)).map(|(_, o)| o).collect()
}

/// Replays an HMP fixture against `vmwire_std::hmp::Monitor`: the banner,
/// then every recorded line through `command`. Returns the outputs.
fn replay_hmp(name: &str, faults: &[Fault]) -> (Vec<Result<String, String>>, Result<(), Error>) {
    let text = read(&format!("hmp/{name}.txn"));
    let input = String::from_utf8_lossy(&client_bytes(&text)).into_owned();
    let peer = Peer::start(Protocol::Hmp, &text, faults).unwrap();
    let options = vmwire_std::hmp::Options { timeout: Some(GUARD), ..Default::default() };
    let mut outputs = Vec::new();
    match vmwire_std::hmp::Monitor::connect_unix(peer.path(), options) {
        Ok(mut monitor) => {
            for line in input.lines() {
                if line == "quit" {
                    outputs.push(monitor.quit().map(|()| String::new()).map_err(|e| e.to_string()));
                    break;
                }
                let result = monitor.command(line).map_err(|e| e.to_string());
                let failed = result.is_err();
                outputs.push(result);
                if failed {
                    break;
                }
            }
        }
        Err(e) => outputs.push(Err(e.to_string())),
    }
    (outputs, peer.finish())
}

/// Replays a negotiator fixture against `vmwire_std::negotiator::Channel`:
/// every recorded request through `call_raw`.
fn replay_negotiator(name: &str, faults: &[Fault]) -> (Vec<Result<String, String>>, Result<(), Error>) {
    let text = read(&format!("negotiator/{name}.txn"));
    let bytes = client_bytes(&text);
    let mut decoder = vmwire_proto::negotiator::Decoder::new(
        vmwire_proto::buf::Bounded::new(1 << 20),
        vmwire_proto::negotiator::Limits::default(),
    );
    decoder.receive(&bytes);
    let mut requests = Vec::new();
    while let Some(frame) = decoder.next() {
        match frame {
            Ok(message) => requests.push(serde_json::from_slice::<Json>(message.raw()).unwrap()),
            Err(_) => break,
        }
    }
    let peer = Peer::start(Protocol::Negotiator, &text, faults).unwrap();
    let options = vmwire_std::negotiator::Options { timeout: Some(GUARD), ..Default::default() };
    let mut outputs = Vec::new();
    match vmwire_std::negotiator::Channel::connect_unix(peer.path(), options) {
        Ok(mut channel) => {
            for request in &requests {
                let method = request["method"].as_str().unwrap_or_default();
                let result = channel
                    .call_raw(method, &request["args"].to_string(), &request["kw"].to_string())
                    .map_err(|e| e.to_string());
                let failed = result.as_ref().is_err_and(|e| !e.contains("remote"));
                outputs.push(result);
                if failed {
                    break;
                }
            }
        }
        Err(e) => outputs.push(Err(e.to_string())),
    }
    (outputs, peer.finish())
}

/// The XML-RPC calls of a transcript: method name and params as JSON.
fn xmlrpc_calls(text: &[u8]) -> Vec<(String, Vec<Json>)> {
    let mut calls = Vec::new();
    let mut run = Vec::new();
    let mut records = Reader::new(text).map(Result::unwrap).peekable();
    while let Some(record) = records.next() {
        if record.direction == Direction::ClientToServer {
            run.extend_from_slice(record.bytes);
        }
        let run_ends = records.peek().is_none_or(|r| r.direction == Direction::ServerToClient);
        if record.direction == Direction::ClientToServer && run_ends {
            let body = &run[run.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
            if let Ok(call) = vmwire_proto::xmlrpc::parse_call(body) {
                let params = call.params.iter().map(vmwire_std::xmlrpc::to_json).collect();
                calls.push((call.name.to_string(), params));
            }
            run.clear();
        }
    }
    calls
}

/// Replays an XML-RPC fixture against `vmwire_std::xmlrpc::Client`: every
/// recorded call through `call_json`.
fn replay_xmlrpc(name: &str, faults: &[Fault]) -> (Vec<Result<Json, String>>, Result<(), Error>) {
    let text = read(&format!("xenapi/{name}.txn"));
    let peer = Peer::start(Protocol::Xmlrpc, &text, faults).unwrap();
    let url = format!("unix:{}", peer.path().display());
    let mut options = vmwire_std::xmlrpc::Options::new();
    options.timeout = Some(GUARD);
    let mut outputs = Vec::new();
    match vmwire_std::xmlrpc::Client::connect_with(&url, options) {
        Ok(mut client) => {
            for (method, params) in xmlrpc_calls(&text) {
                outputs.push(client.call_json(&method, params).map_err(|e| e.to_string()));
            }
        }
        Err(e) => outputs.push(Err(e.to_string())),
    }
    (outputs, peer.finish())
}

/// The QGA captures the agent client reproduces. Left out: 01 (plain
/// `guest-sync` with ids a client does not choose, and a hand-made resync),
/// 05 (`exec-oob` and requests that are not commands), 06 (pipelined),
/// 08_reconnect_2 (opens with a `guest-ping` before its sync: the
/// connection's first bytes are another client's leftovers).
const QGA_REPLAYABLE: &[&str] = &["02_ping_info_osinfo", "03_exec", "04_file", "07_blocked_rpc", "08_reconnect_1"];

#[test]
fn qga_fixtures_replay_against_the_agent_client() {
    for name in QGA_REPLAYABLE {
        let text = read(&format!("qga/{name}.txn"));
        let (outcomes, verdict) = replay_qga(name, &[]);
        verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcomes, qga_recorded_outcomes(&text), "{name}");
    }
}

/// The HMP captures the monitor client reproduces. Left out: 06 (four
/// commands in one write), 07 (bare CR line ends), 08 (line editing keys),
/// 09 (bytes that are not UTF-8), 12_reconnect_1 (a line left without its
/// newline): the client refuses to send control characters and line breaks
/// inside a command, and sends one command at a time.
const HMP_REPLAYABLE: &[&str] = &[
    "01_banner_info_status",
    "02_info_version",
    "03_help",
    "04_bad_command",
    "05_long_line",
    "10_quit",
    "11_chardev_mon_readline",
    "12_reconnect_2",
    "13_two_monitors_A",
    "13_two_monitors_B",
];

#[test]
fn hmp_fixtures_replay_against_the_monitor_client() {
    for name in HMP_REPLAYABLE {
        let (outputs, verdict) = replay_hmp(name, &[]);
        verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(outputs.iter().all(Result::is_ok), "{name}: {outputs:?}");
    }
    let (outputs, _) = replay_hmp("01_banner_info_status", &[]);
    assert_eq!(outputs, [Ok("VM status: paused (prelaunch)\r\n".to_string())]);
}

/// negotiator: only 01 is a real client's session; 02, 03 and 06 are
/// hand-written frames (spaces and CR in the length, the documented keys,
/// framing errors) that a correct client never sends.
#[test]
fn negotiator_fixture_replays_against_the_channel() {
    let (outputs, verdict) = replay_negotiator("01_interface_client", &[]);
    verdict.unwrap();
    assert_eq!(outputs.len(), 11, "{outputs:?}");
    assert_eq!(outputs[1], Ok("\"Debian\"".to_string()));
    assert!(outputs[3].as_ref().is_err_and(|e| e.contains("Method nosuch not supported")), "{outputs:?}");
    // The last call's reply comes after bytes the peer's method wrote to the
    // channel: the client reports them, as negotiator's own client does.
    assert!(outputs[10].as_ref().is_err_and(|e| e.contains("found 'I'")), "{outputs:?}");
}

/// The XenAPI captures the XML-RPC client reproduces, call by call. Left
/// out: 03 and 04 (the SDK's own re-login after SESSION_INVALID: which
/// calls follow depends on the client's session logic, not on the wire),
/// 08 (GET, wrong paths, malformed XML: not what a client sends).
const XMLRPC_REPLAYABLE: &[&str] = &[
    "01_login_get_all_get_record",
    "02_vm_start_failure",
    "05_nil_base64_datetime",
    "06_xmlrpc_faults",
    "07_logout",
    "09_gzip_response",
    "10_keepalive_http11",
];

#[test]
fn xenapi_fixtures_replay_against_the_xmlrpc_client() {
    for name in XMLRPC_REPLAYABLE {
        let (outputs, verdict) = replay_xmlrpc(name, &[]);
        verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!outputs.is_empty(), "{name}");
        assert!(
            outputs.iter().all(|o| o.is_ok() || o.as_ref().is_err_and(|e| e.contains("fault"))),
            "{name}: {outputs:?}"
        );
    }
    let (outputs, _) = replay_xmlrpc("01_login_get_all_get_record", &[]);
    assert_eq!(outputs[0].as_ref().unwrap()["Value"], "OpaqueRef:00000000-0000-0000-0000-00005e550001");
}

#[test]
fn a_client_that_differs_is_shown_what_was_expected() {
    let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/01_greeting_caps_noid.txn"), &[]).unwrap();
    let mut qmp = vmwire_std::qmp::Qmp::connect_unix(peer.path(), qmp_options()).unwrap();
    // The transcript has query-status next.
    let result = qmp.execute_raw("query-version", None);
    assert!(matches!(result, Err(vmwire_std::qmp::Error::Closed)), "{result:?}");
    match peer.finish() {
        Err(Error::Mismatch { message, expected, actual }) => {
            assert_eq!(message, 2);
            assert_eq!(expected, r#"{"execute": "query-status"}"#);
            assert!(actual.contains(r#""execute":"query-version""#), "{actual}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_that_stops_early_is_incomplete() {
    let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/01_greeting_caps_noid.txn"), &[]).unwrap();
    let qmp = vmwire_std::qmp::Qmp::connect_unix(peer.path(), qmp_options()).unwrap();
    qmp.close();
    let error = peer.finish().unwrap_err();
    assert!(matches!(error, Error::Incomplete { .. }), "{error}");
    assert!(error.to_string().contains("query-status"), "{error}");
}

/// A client that connects and closes without a byte (what another
/// `vmwire replay` does to see whether the path is served) is no session:
/// the transcript goes to the next client.
#[test]
fn a_client_that_sends_nothing_is_no_session() {
    let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/01_greeting_caps_noid.txn"), &[]).unwrap();
    for _ in 0..2 {
        drop(std::os::unix::net::UnixStream::connect(peer.path()).unwrap());
    }
    let mut qmp = vmwire_std::qmp::Qmp::connect_unix(peer.path(), qmp_options()).unwrap();
    for name in ["query-status", "query-version"] {
        qmp.execute_raw(name, None).unwrap();
    }
    qmp.close();
    peer.finish().unwrap();

    // Nobody else came: the transcript's first message is still missing.
    let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/01_greeting_caps_noid.txn"), &[]).unwrap();
    drop(std::os::unix::net::UnixStream::connect(peer.path()).unwrap());
    let error = peer.finish().unwrap_err();
    assert!(matches!(&error, Error::Incomplete { expected } if expected.contains("qmp_capabilities")), "{error}");
}

#[test]
fn a_fault_for_another_protocol_is_refused() {
    let error = Peer::start(Protocol::Hmp, b"", &[Fault::EventBeforeGreeting]).unwrap_err();
    assert!(matches!(error, Error::Fault(Fault::EventBeforeGreeting, Protocol::Hmp)), "{error}");
    let error = Peer::start(Protocol::Qmp, b"> 5\nab\n", &[]).unwrap_err();
    assert_eq!(error.to_string(), "transcript line 1 (byte 0): payload shorter than its length");
}

// --- Faults: each against the std clients, which must cope or report it.

#[test]
fn fault_split_into_single_bytes() {
    let text = read("qmp/10_cont_stop.txn");
    let (outcomes, verdict) = replay_qmp("10_cont_stop", &[Fault::Split(1)]);
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
    let text = read("qga/02_ping_info_osinfo.txn");
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::Split(1)]);
    verdict.unwrap();
    assert_eq!(outcomes, qga_recorded_outcomes(&text));
    let (outputs, verdict) = replay_hmp("01_banner_info_status", &[Fault::Split(1)]);
    verdict.unwrap();
    assert_eq!(outputs, [Ok("VM status: paused (prelaunch)\r\n".to_string())]);
    let (outputs, verdict) = replay_negotiator("01_interface_client", &[Fault::Split(1)]);
    verdict.unwrap();
    assert_eq!(outputs[1], Ok("\"Debian\"".to_string()));
}

#[test]
fn fault_split_into_pieces() {
    let text = read("qmp/05_query_commands.txn");
    let (outcomes, verdict) = replay_qmp("05_query_commands", &[Fault::Split(100)]);
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
    let (outputs, verdict) = replay_xmlrpc("09_gzip_response", &[Fault::Split(64)]);
    verdict.unwrap();
    assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
}

#[test]
fn fault_delay() {
    let text = read("qmp/01_greeting_caps_noid.txn");
    let (outcomes, verdict) = replay_qmp("01_greeting_caps_noid", &[Fault::Delay(Duration::from_millis(20))]);
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
}

#[test]
fn fault_close_after_message() {
    // Greeting, the handshake's return, query-status's return: then closed.
    let (outcomes, verdict) = replay_qmp("01_greeting_caps_noid", &[Fault::CloseAfter(3)]);
    verdict.unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert_eq!(outcomes[2], Outcome::Error("client: QMP: connection closed".into()), "{outcomes:?}");
    // HMP: the banner only.
    let (outputs, verdict) = replay_hmp("01_banner_info_status", &[Fault::CloseAfter(1)]);
    verdict.unwrap();
    assert!(outputs[0].as_ref().is_err_and(|e| e.contains("closed")), "{outputs:?}");
    // QGA: the agent goes away after its first recorded reply (the sync
    // the peer answers by itself is not a message of the transcript).
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::CloseAfter(1)]);
    verdict.unwrap();
    assert_eq!(outcomes[0], Outcome::Return(serde_json::json!({})));
    assert_eq!(outcomes[1], Outcome::Error("client: QGA: connection closed".into()), "{outcomes:?}");
}

#[test]
fn fault_close_mid_message() {
    let (outcomes, verdict) = replay_qmp("05_query_commands", &[Fault::CloseMid(3)]);
    verdict.unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    // The half message is named as what most likely was the reply.
    assert!(
        matches!(&outcomes[1], Outcome::Error(e) if e.starts_with("client: QMP: connection closed; a message was skipped meanwhile, most likely the reply: input ended inside a value")),
        "{outcomes:?}"
    );
    let (outputs, verdict) = replay_xmlrpc("01_login_get_all_get_record", &[Fault::CloseMid(1)]);
    verdict.unwrap();
    assert!(outputs[0].is_err(), "{outputs:?}");
}

#[test]
fn fault_event_before_greeting() {
    // QEMU always greets first: the client refuses the session at once (no
    // wait), and the peer says the client never negotiated.
    let (outcomes, _, verdict) = replay_qmp_with("01_greeting_caps_noid", &[Fault::EventBeforeGreeting], qmp_options());
    assert!(
        matches!(&outcomes[..], [Outcome::Error(e)] if e.starts_with("client: QMP: expected a QMP greeting, got `{\"timestamp\"")),
        "{outcomes:?}"
    );
    assert!(matches!(verdict, Err(Error::Incomplete { .. })), "{verdict:?}");
}

#[test]
fn fault_event_before_every_return() {
    let text = read("qmp/10_cont_stop.txn");
    let (outcomes, seen, verdict) = replay_qmp_with("10_cont_stop", &[Fault::EventBeforeReturn], qmp_options());
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
    // Before every reply but the one to qmp_capabilities (QEMU sends no
    // event before it, and qemu.qmp refuses one).
    assert_eq!(seen.events.iter().filter(|e| *e == "VMWIRE_REPLAY").count(), outcomes.len() - 1, "{seen:?}");
}

#[test]
fn fault_duplicate_id() {
    let text = read("qmp/01_greeting_caps_noid.txn");
    let (outcomes, seen, verdict) = replay_qmp_with("01_greeting_caps_noid", &[Fault::DuplicateId], qmp_options());
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
    assert!(seen.strays.len() >= 2, "{seen:?}");
    let text = read("qga/02_ping_info_osinfo.txn");
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::DuplicateId]);
    verdict.unwrap();
    assert_eq!(outcomes, qga_recorded_outcomes(&text));
}

#[test]
fn fault_unknown_id() {
    let text = read("qmp/01_greeting_caps_noid.txn");
    let (outcomes, seen, verdict) = replay_qmp_with("01_greeting_caps_noid", &[Fault::UnknownId], qmp_options());
    verdict.unwrap();
    assert_eq!(outcomes, recorded_outcomes(&text));
    assert!(seen.strays.iter().any(|s| s.contains("vmwire-replay-unknown")), "{seen:?}");
    let text = read("qga/02_ping_info_osinfo.txn");
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::UnknownId]);
    verdict.unwrap();
    assert_eq!(outcomes, qga_recorded_outcomes(&text));
}

#[test]
fn fault_garbage_before_resync() {
    let text = read("qga/02_ping_info_osinfo.txn");
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::GarbageBeforeResync]);
    verdict.unwrap();
    assert_eq!(outcomes, qga_recorded_outcomes(&text));
}

#[test]
fn fault_oversized_reply() {
    // The client skips the oversized reply unread; QEMU answers in-band
    // commands in order, so it can only be the one command in flight's,
    // which fails at once naming the limit (a wait for the time limit, ten
    // minutes here, would end in "timed out; a message was skipped").
    let mut options = qmp_options();
    options.config.limits.max_message = 64 << 10;
    options.timeout = Some(Duration::from_secs(600));
    let (outcomes, seen, verdict) = replay_qmp_with("01_greeting_caps_noid", &[Fault::Oversized(100_000)], options);
    assert!(
        matches!(&outcomes[..], [Outcome::Return(r), Outcome::Error(e)] if *r == serde_json::json!({})
            && e == "client: QMP: the reply was skipped unread: value larger than the limit of 65536 bytes, at byte 65703"),
        "{outcomes:?}"
    );
    assert!(seen.strays.is_empty(), "{seen:?}");
    // This harness stops at a client error, short of the transcript's last
    // command (that the session goes on: proto's and io-std's QMP tests).
    assert!(matches!(verdict, Err(Error::Incomplete { .. })), "{verdict:?}");
    // The guest agent's limit is 64 MiB by default: the same reply fits.
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::Oversized(100_000)]);
    verdict.unwrap();
    assert_eq!(outcomes[0], Outcome::Return(Json::String("x".repeat(100_000))));
}

// --- The command line.

fn vmwire() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_vmwire"))
}

/// Starts `vmwire replay` and waits (a hang guard) for its socket.
fn replay_process(args: &[&str], socket: &std::path::Path) -> std::process::Child {
    let child = vmwire()
        .arg("replay")
        .args(args)
        .arg("--listen")
        .arg(socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = std::time::Instant::now() + GUARD;
    while !socket.exists() {
        assert!(std::time::Instant::now() < give_up, "vmwire replay never listened");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn cli_replays_a_fixture_to_the_qmp_command() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let file = fixture("qmp/10_cont_stop.txn");
    let replay = replay_process(&[file.to_str().unwrap(), "--protocol", "qmp", "--split", "3"], &socket);
    let mut qmp = vmwire_std::qmp::Qmp::connect_unix(&socket, qmp_options()).unwrap();
    for command in ["query-status", "cont", "query-status", "cont", "stop", "stop", "query-status", "cont"] {
        qmp.execute_raw(command, None).unwrap();
    }
    qmp.close();
    let out = replay.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // The client sends something else: exit status 3, both messages shown.
    let replay = replay_process(&[file.to_str().unwrap(), "--protocol", "qmp"], &socket);
    // (--no-check: the transcript has no schema request.)
    let args = ["qmp", "--no-check", "--socket", socket.to_str().unwrap(), "query-version"];
    let status = vmwire().args(args).output().unwrap();
    assert_eq!(status.status.code(), Some(3));
    let out = replay.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // On one line: a line break in what a client sent shows escaped.
    assert!(
        stderr.contains(
            r#"differs from the transcript: expected {"execute": "query-status", "id": 1}, got {"execute":"query-version","id":1}"#
        ),
        "{stderr}"
    );
}

#[test]
fn cli_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("x.sock");
    let file = fixture("hmp/01_banner_info_status.txn");
    let out = vmwire()
        .args(["replay", file.to_str().unwrap(), "--protocol", "hmp", "--event-before-greeting", "--listen"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "vmwire: --event-before-greeting does not apply to hmp\n");
    // No protocol: the fixtures have no `protocol:` note.
    let out = vmwire().args(["replay", file.to_str().unwrap(), "--listen"]).arg(&socket).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--protocol"));
    // A socket someone listens on: the path is the command line's to change, as for `record`.
    let _live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = vmwire()
        .args(["replay", file.to_str().unwrap(), "--protocol", "hmp", "--listen"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("address in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn finish_does_not_wait_for_a_client_that_stopped_reading() {
    // A server message far larger than a socket buffer, to a client that
    // never reads it.
    let big = format!("{{\"QMP\": {{\"x\": \"{}\"}}}}\r\n", "y".repeat(8 << 20));
    let mut text = Vec::new();
    let record = vmwire_proto::transcript::Record::new(Direction::ServerToClient, big.as_bytes());
    vmwire_proto::transcript::write_record(&mut text, &record).unwrap();
    let peer = Peer::start(Protocol::Qmp, &text, &[]).unwrap();
    let _client = std::os::unix::net::UnixStream::connect(peer.path()).unwrap();
    let error = peer.finish().unwrap_err();
    assert!(error.to_string().contains("the client stopped reading"), "{error}");
}

/// A minimega capture (`.c2s` and `.s2c`, no `.txn`: the daemon's
/// fixtures keep no chunking) as a transcript: the request, then the reply.
/// Only a session of one request can be put in order this way.
fn minimega_transcript(name: &str) -> Option<(String, Vec<u8>)> {
    let c2s = read(&format!("minimega/{name}.c2s"));
    let requests: Vec<Json> = serde_json::Deserializer::from_slice(&c2s).into_iter().map_while(Result::ok).collect();
    let [request] = &requests[..] else { return None };
    let command = request.get("Command")?.as_str()?.to_string();
    let mut text = Vec::new();
    let records =
        [(Direction::ClientToServer, c2s), (Direction::ServerToClient, read(&format!("minimega/{name}.s2c")))];
    for (direction, bytes) in &records {
        vmwire_proto::transcript::write_record(&mut text, &vmwire_proto::transcript::Record::new(*direction, bytes))
            .unwrap();
    }
    Some((command, text))
}

/// The minimega captures of one request (the only ones whose order can be
/// rebuilt from `.c2s` and `.s2c`) that vmwire's client sends alike. Left
/// out: the Go client's (`"Suggest":"","PlumbPipe":""` with every request:
/// other JSON values than the client's `{"Command": …}`), hand-written
/// requests with extra or other fields, and every session of several
/// requests.
const MINIMEGA_REPLAYABLE: &[&str] = &[
    "pybind_error_raise.c1",
    "pybind_help_escaping.c1",
    "pybind_host.c1",
    "pybind_multi_read.c1",
    "pybind_namespace.c2",
    "pybind_null_resp.c1",
    "pybind_vm_info.c1",
    "raw_half_close",
    "raw_multi_read_stop_on_invalid",
    "raw_newline_terminated",
    "raw_no_newline",
    "raw_quit",
    "raw_quit_delay",
    "raw_split_request",
    "raw_trailing_garbage",
];

#[test]
fn minimega_fixtures_replay_against_the_minimega_client() {
    for name in MINIMEGA_REPLAYABLE {
        let (command, text) = minimega_transcript(name).unwrap();
        let peer = Peer::start(Protocol::Minimega, &text, &[]).unwrap();
        let options = vmwire_std::minimega::Options { timeout: Some(GUARD), ..Default::default() };
        let mut minimega = vmwire_std::minimega::Minimega::connect_with(peer.path(), options).unwrap();
        let result = minimega.run(&command).map(|r| r.rendered());
        drop(minimega);
        peer.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
        match *name {
            "raw_quit" => assert!(matches!(result, Err(vmwire_std::minimega::Error::Closed { .. })), "{result:?}"),
            "pybind_error_raise.c1" | "raw_multi_read_stop_on_invalid" => {
                assert!(matches!(result, Err(vmwire_std::minimega::Error::Command(_))), "{name}: {result:?}")
            }
            "raw_newline_terminated" => assert_eq!(
                result.unwrap(),
                "mmpeer: minimega 3.1.0 04636ffde53212479924deaaed3819065b144976 2026-11-21"
            ),
            _ => assert!(result.is_ok(), "{name}: {result:?}"),
        }
    }
}

#[test]
fn fault_split_minimega() {
    let (command, text) = minimega_transcript("pybind_multi_read.c1").unwrap();
    let peer = Peer::start(Protocol::Minimega, &text, &[Fault::Split(1)]).unwrap();
    let options = vmwire_std::minimega::Options { timeout: Some(GUARD), ..Default::default() };
    let mut minimega = vmwire_std::minimega::Minimega::connect_with(peer.path(), options).unwrap();
    let rendered = minimega.run(&command).unwrap().rendered();
    assert!(rendered.ends_with("mmpeer: <b>&"), "{rendered}");
    drop(minimega);
    peer.finish().unwrap();
}

#[test]
fn fault_event_before_return_to_the_guest_agent() {
    // The agent has no events: the client keeps what it cannot match aside
    // and still gets its replies.
    let text = read("qga/02_ping_info_osinfo.txn");
    let (outcomes, verdict) = replay_qga("02_ping_info_osinfo", &[Fault::EventBeforeReturn]);
    verdict.unwrap();
    assert_eq!(outcomes, qga_recorded_outcomes(&text));
}

#[test]
fn fault_close_mid_message_negotiator_and_hmp() {
    let (outputs, verdict) = replay_negotiator("01_interface_client", &[Fault::CloseMid(2)]);
    verdict.unwrap();
    assert!(outputs[0].is_ok(), "{outputs:?}");
    assert_eq!(outputs[1], Err("negotiator: the stream ended 17 bytes into a frame of 37 bytes".into()));
    let (outputs, verdict) = replay_hmp("02_info_version", &[Fault::CloseMid(2)]);
    verdict.unwrap();
    assert!(outputs[0].as_ref().is_err_and(|e| e.contains("closed")), "{outputs:?}");
}

/// A transcript in which the client closed first (`> 0`, then `< 0`) is
/// replayed that way: the peer keeps the connection open after its last
/// message until the client closes (Python's `qemu.qmp` reads on while it
/// disconnects, and took an early close as an error), then closes.
#[test]
fn the_peer_waits_for_a_client_that_closed_first() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let greeting =
        r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
    let mut text = String::new();
    for (dir, line) in [('<', greeting), ('>', r#"{"execute": "qmp_capabilities"}"#), ('<', r#"{"return": {}}"#)] {
        text.push_str(&format!("{dir} {}\n{line}\n\n", line.len() + 1));
    }
    text.push_str("> 0\n\n< 0\n\n");
    let peer = Peer::start(Protocol::Qmp, text.as_bytes(), &[]).unwrap();
    let mut client = UnixStream::connect(peer.path()).unwrap();
    client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    client.write_all(b"{\"execute\": \"qmp_capabilities\"}\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"return": {}}"#);
    // The connection stays open: a read waits (and times out), no end of stream.
    line.clear();
    let early = reader.read_line(&mut line);
    assert!(early.is_err(), "the peer closed before the client did: {early:?}");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client.set_read_timeout(Some(GUARD)).unwrap();
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap(), 0, "then the peer closes: {line:?}");
    peer.wait().unwrap();
}
