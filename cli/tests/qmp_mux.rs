//! `vmwire qmp-mux` as a process, in front of a real QEMU (`-machine none
//! -S`): vmwire's own client, QEMU's Python `qemu.qmp` and a raw socket at
//! once, pipelining with colliding ids while stop/cont events flow; a client
//! that never reads; a client gone mid-command; QEMU killed.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Options, Qmp};

/// QEMU, and the mux in front of it (its socket, its process).
struct Setup {
    qemu: Qemu,
    mux: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn setup(extra: &[&str]) -> Setup {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mux.sock");
    let mux = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .arg("qmp-mux")
        .arg("--socket")
        .arg(qemu.qmp_path().unwrap())
        .arg("--listen")
        .arg(&socket)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::eventually("the mux's socket", Duration::from_secs(30), || socket.exists().then_some(()));
    Setup { qemu, mux, socket, _dir: dir }
}

/// A raw client: negotiated, with a line reader.
fn raw(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(socket).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let greeting = line(&mut r);
    assert!(greeting["QMP"]["version"]["qemu"]["major"].as_u64().unwrap() >= 7, "{greeting}");
    (&s).write_all(b"{\"execute\": \"qmp_capabilities\"}\r\n").unwrap();
    assert_eq!(line(&mut r), serde_json::json!({"return": {}}));
    (s, r)
}

fn line(r: &mut impl BufRead) -> serde_json::Value {
    let mut s = String::new();
    assert!(r.read_line(&mut s).unwrap() > 0, "end of stream");
    serde_json::from_str(&s).unwrap()
}

/// The next reply, skipping events (counted in `events`).
fn reply(r: &mut impl BufRead, events: &mut Vec<String>) -> serde_json::Value {
    loop {
        let v = line(r);
        match v.get("event") {
            Some(e) => events.push(e.as_str().unwrap().to_string()),
            None => return v,
        }
    }
}

/// HMP's answer to an unknown command `word`: tells whose command it was.
fn unknown(word: &str) -> String {
    format!("unknown command: '{word}'\r\n")
}

const PYTHON_CLIENT: &str = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient

async def main(path):
    qmp = QMPClient("py")
    events = []
    async def listen():
        async for event in qmp.events:
            events.append(event["event"])
    await qmp.connect(path)
    task = asyncio.create_task(listen())
    calls = []
    for i in range(20):
        if i % 5 == 0:
            calls.append(qmp.execute("stop" if i % 10 == 0 else "cont"))
        else:
            calls.append(qmp.execute("human-monitor-command", {"command-line": f"xpy{i}"}))
    results = await asyncio.gather(*calls)
    await qmp.execute("stop")
    await qmp.execute("cont")
    while not ("STOP" in events and "RESUME" in events):
        await asyncio.sleep(0.01)
    task.cancel()
    await qmp.disconnect()
    print(json.dumps({"results": results, "events": sorted(set(events))}))

asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn three_kinds_of_client_at_once_with_colliding_ids() {
    let mut setup = setup(&[]);
    let python = common::require_python_module("qemu.qmp");
    let py = Command::new(python)
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(&setup.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The raw client uses qemu.qmp's own ids, and numbers.
    let (s, mut r) = raw(&setup.socket);
    let mut batch = String::new();
    for i in 1..=20 {
        let id = if i % 2 == 0 { format!("\"__qmp#{i:05}\"") } else { i.to_string() };
        match i % 5 {
            0 => {
                batch +=
                    &format!("{{\"execute\": \"{}\", \"id\": {id}}}\r\n", if i % 10 == 0 { "cont" } else { "stop" })
            }
            _ => {
                batch += &format!(
                    "{{\"execute\": \"human-monitor-command\", \"arguments\": {{\"command-line\": \"xraw{i}\"}}, \"id\": {id}}}\r\n"
                )
            }
        }
    }
    (&s).write_all(batch.as_bytes()).unwrap();
    // vmwire's own client, numbering from 0 as its machine does.
    let std_client = {
        let socket = setup.socket.clone();
        std::thread::spawn(move || {
            let mut qmp = Qmp::connect_unix(&socket, Options::default()).unwrap();
            for i in 0..20 {
                let out: String = qmp
                    .execute("human-monitor-command", serde_json::json!({"command-line": format!("xstd{i}")}))
                    .unwrap();
                assert_eq!(out, unknown(&format!("xstd{i}")));
                qmp.execute::<serde_json::Value>(if i % 2 == 0 { "stop" } else { "cont" }, ()).unwrap();
            }
            assert!(qmp.take_strays().is_empty());
        })
    };
    let mut events = Vec::new();
    for i in 1..=20 {
        let v = reply(&mut r, &mut events);
        let id = if i % 2 == 0 { serde_json::json!(format!("__qmp#{i:05}")) } else { serde_json::json!(i) };
        assert_eq!(v["id"], id, "{v}");
        if i % 5 != 0 {
            assert_eq!(v["return"], unknown(&format!("xraw{i}")), "{v}");
        } else {
            assert_eq!(v["return"], serde_json::json!({}), "{v}");
        }
    }
    std_client.join().unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, result) in out["results"].as_array().unwrap().iter().enumerate() {
        if i % 5 != 0 {
            assert_eq!(result, &serde_json::json!(unknown(&format!("xpy{i}"))), "{out}");
        }
    }
    assert_eq!(out["events"], serde_json::json!(["RESUME", "STOP"]));
    // The raw client saw the others' stop/cont as events too.
    (&s).write_all(b"{\"execute\": \"query-status\", \"id\": \"last\"}\r\n").unwrap();
    assert_eq!(reply(&mut r, &mut events)["id"], "last");
    assert!(events.contains(&"STOP".to_string()) && events.contains(&"RESUME".to_string()));
    drop((s, r));
    setup.qemu.kill().unwrap();
    let status = setup.mux.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn slow_and_vanished_clients_hold_nobody_up_and_qemu_gone_ends_it_all() {
    let mut setup = setup(&["--event-queue", "4"]);
    // A client that negotiates and never reads again.
    let (slow, _slow_reader) = raw(&setup.socket);
    rustix::net::sockopt::set_socket_recv_buffer_size(&slow, 1).unwrap();
    // A client that sends a command and leaves at once.
    {
        let (s, _r) = raw(&setup.socket);
        (&s).write_all(b"{\"execute\": \"query-status\", \"id\": 1}\r\n").unwrap();
    }
    // vmwire's client makes 4,000 events (360 KB: more than the socket
    // buffers hold); none of it waits for the others.
    let mut qmp = Qmp::connect_unix(&setup.socket, Options::default()).unwrap();
    for i in 0..4000 {
        qmp.execute::<serde_json::Value>(if i % 2 == 0 { "stop" } else { "cont" }, ()).unwrap();
    }
    assert!(qmp.take_strays().is_empty());
    // QEMU stopped with a command pending on a client, then killed: the
    // command fails, the client is disconnected, the mux exits.
    let (s, mut r) = raw(&setup.socket);
    let pid = rustix::process::Pid::from_raw(setup.qemu.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    (&s).write_all(b"{\"execute\": \"query-status\", \"id\": \"pending\"}\r\n").unwrap();
    setup.qemu.kill().unwrap();
    let mut events = Vec::new();
    let v = reply(&mut r, &mut events);
    assert_eq!(v["id"], "pending", "{v}");
    assert_eq!(v["error"]["class"], "GenericError", "{v}");
    let mut rest = String::new();
    assert_eq!(r.read_line(&mut rest).unwrap(), 0, "{rest}");
    let out = setup.mux.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The slow client's loss is said, once it is gone.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty() && stderr.starts_with("WARN  a client lost "), "{out:?}");
    assert!(stderr.trim_end().ends_with("events: it did not read them in time (its queue holds 4)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!setup.socket.exists());
    drop(slow);
}

/// A socket left by a mux that was killed is taken over; SIGTERM ends the
/// mux at once with its socket removed, and QEMU's monitor is free again.
#[test]
fn a_stale_socket_is_replaced_and_sigterm_cleans_up() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mux.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mux = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["qmp-mux", "--socket"])
        .arg(qemu.qmp_path().unwrap())
        .arg("--listen")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _client = common::eventually("the mux serving", Duration::from_secs(30), || {
        UnixStream::connect(&socket).ok().map(|_| raw(&socket))
    });
    let pid = rustix::process::Pid::from_raw(mux.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = mux.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b""[..], &b""[..]));
    assert!(!socket.exists());
    // The mux has let go of QEMU's one QMP client slot.
    let mut qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options::default()).unwrap();
    let status: serde_json::Value = qmp.execute("query-status", ()).unwrap();
    assert_eq!(status["status"], "prelaunch");
    // A file that is not a socket is never taken over.
    std::fs::write(&socket, "data").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["qmp-mux", "--socket"])
        .arg(qemu.qmp_path().unwrap())
        .arg("--listen")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("a file that is not a socket is there"), "{out:?}");
    assert_eq!(std::fs::read(&socket).unwrap(), b"data");
}

/// `--listen-tcp HOST:0`: the port the system chose is printed, and serves.
#[test]
fn a_tcp_port_the_system_chose_is_printed() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let mut mux = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["qmp-mux", "--socket", qemu.qmp_path().unwrap().to_str().unwrap(), "--listen-tcp", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(mux.stderr.take().unwrap()).read_line(&mut said).unwrap();
    let address = said.trim_end().strip_prefix("vmwire: serving QMP on ").unwrap_or_else(|| panic!("{said}"));
    assert!(!address.ends_with(":0"), "{said}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_vmwire")).args(["qmp", "--tcp", address, "query-status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\""));
    mux.kill().unwrap();
    mux.wait().unwrap();
}
