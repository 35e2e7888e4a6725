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
    let text = read(&format!("qmp/{name}.txn"));
    let commands = json_messages(&text, Direction::ClientToServer);
    let peer = Peer::start(Protocol::Qmp, &text, faults).unwrap();
    let oob = commands.first().is_some_and(|c| c["arguments"]["enable"].is_array());
    let mut outcomes = Vec::new();
    match vmwire_std::qmp::Qmp::connect_unix(peer.path(), vmwire_std::qmp::Options { oob, ..qmp_options() }) {
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
            qmp.close();
        }
        Err(e) => outcomes.push(Outcome::Error(format!("client: {e}"))),
    }
    (outcomes, peer.finish())
}

/// The QMP captures a well-behaved client reproduces: greeting,
/// `qmp_capabilities`, then one command at a time.
///
/// Left out, and why: 02 (ids of every JSON type, and negotiating twice:
/// `qmp_capabilities` is the handshake's, not a command to send again),
/// 03 and 04 (`exec-oob` of commands that do not allow it, commands before
/// negotiation), 07 (malformed JSON), 08 and 09 (pipelined writes: the
/// transcript's server answers only after the whole batch), 16/19 (a second
/// monitor or client on the same QEMU: the other session's events), 15 (ids
/// that are not valid UTF-8 and bytes QEMU rejects).
const QMP_REPLAYABLE: &[&str] = &[
    "01_greeting_caps_noid",
    "05_query_commands",
    "06_query_qmp_schema",
    "10_cont_stop",
    "11_hmp_passthrough",
    "12_quit",
    "17_chardev_mon_control",
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

#[test]
fn explore() {
    for dir in ["qmp"] {
        for entry in std::fs::read_dir(fixture(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "txn") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let (outcomes, verdict) = replay_qmp(&name, &[]);
            let text = std::fs::read(&path).unwrap();
            eprintln!("{name}: {:?} same={}", verdict.as_ref().map_err(|e| e.to_string()), outcomes == recorded_outcomes(&text));
        }
    }
}
