//! The blocking QMP client against a real QEMU (`-machine none -S`), one
//! QEMU per test, sockets in a private temporary directory.

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use serde::Deserialize;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::qmp::{Client, Config, Event as MachineEvent};
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Error, Options, Qmp};
use vmwire_std::transport::{Conn, Stream, deadline};

#[derive(Debug, Deserialize)]
struct Status {
    status: String,
    running: bool,
}

fn qemu() -> vmwire_std::qemu::Builder {
    common::qemu_builder()
}

fn connect(qemu: &Qemu, options: Options) -> Qmp {
    Qmp::connect_unix(qemu.qmp_path().unwrap(), options).expect("connect")
}

#[test]
fn negotiates_without_oob_and_runs_commands() {
    let qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    assert!(qmp.greeting().version.0 >= 7, "{:?}", qmp.greeting());
    assert!(qmp.greeting().capabilities.contains(&"oob".to_string()));
    assert!(!qmp.oob());
    let status: Status = qmp.execute("query-status", ()).unwrap();
    assert_eq!((status.status.as_str(), status.running), ("prelaunch", false));
    let version: serde_json::Value = qmp.execute("query-version", ()).unwrap();
    assert_eq!(version["qemu"]["major"], qmp.greeting().version.0);
}

#[test]
fn negotiates_oob_and_runs_out_of_band() {
    let qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options { oob: true, ..Options::default() });
    assert!(qmp.oob());
    let yank = qmp.execute_oob_raw("query-yank", None).unwrap();
    assert!(yank.starts_with('['), "{yank}");
    // A command that does not allow out-of-band execution is QEMU's error, not ours.
    match qmp.execute_oob_raw("query-status", None) {
        Err(Error::Qemu(e)) => assert_eq!(e.class, "GenericError"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_command_is_qemus_error() {
    let qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    match qmp.execute::<serde_json::Value>("no-such-command", ()) {
        Err(Error::Qemu(e)) => {
            assert_eq!(e.class, "CommandNotFound");
            assert!(e.desc.contains("no-such-command"));
        }
        other => panic!("{other:?}"),
    }
    // Wrong arguments too; the session goes on.
    assert!(matches!(
        qmp.execute::<serde_json::Value>("query-status", serde_json::json!({"x": 1})),
        Err(Error::Qemu(_))
    ));
    let _: Status = qmp.execute("query-status", ()).unwrap();
}

#[test]
fn pipelined_commands_are_matched_by_id() {
    let qemu = qemu().qmp().spawn().unwrap();
    let stream = Stream::connect_unix(qemu.qmp_path().unwrap()).unwrap();
    let mut conn = Conn::new(stream, Client::<Heap>::new(Config::default()));
    let deadline = deadline(Some(Duration::from_secs(10)));
    // Greeting.
    loop {
        if let Some(MachineEvent::Greeting(_)) = conn.machine_mut().poll().unwrap() {
            break;
        }
        conn.pump(deadline).unwrap();
    }
    // 200 commands in one write, behind qmp_capabilities, before any reply.
    let names = ["query-status", "query-name", "no-such", "query-version"];
    let ids: Vec<_> = (0..200).map(|i| (conn.machine_mut().execute(names[i % 4], None).unwrap(), i % 4)).collect();
    conn.flush(deadline).unwrap();
    let mut answered = vec![false; ids.len()];
    let (mut ready, mut left) = (false, ids.len());
    while left > 0 {
        while let Some(event) = conn.machine_mut().poll().unwrap() {
            let (id, ok) = match event {
                MachineEvent::Ready { .. } => {
                    ready = true;
                    continue;
                }
                MachineEvent::Return { id, .. } => (id, true),
                MachineEvent::Error { id, error } => {
                    assert_eq!(error.class.to_string(), "CommandNotFound");
                    (id, false)
                }
                other => panic!("unexpected {other:?}"),
            };
            let k = ids.iter().position(|(i, _)| *i == *id).expect("a reply to a command we sent");
            assert!(!answered[k], "answered twice");
            assert_eq!(ok, ids[k].1 != 2, "the right reply for command {k}");
            answered[k] = true;
            left -= 1;
        }
        if left > 0 {
            conn.fill(deadline).unwrap();
        }
    }
    assert!(ready);
}

#[test]
fn cont_resumes_with_an_event() {
    let qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    qmp.execute::<serde_json::Value>("cont", ()).unwrap();
    let event = qmp.next_event(Some(Duration::from_secs(5))).unwrap().expect("RESUME");
    assert_eq!(event.name, "RESUME");
    assert!(event.timestamp.seconds > 1_600_000_000);
    let status: Status = qmp.execute("query-status", ()).unwrap();
    assert!(status.running);
    qmp.execute::<serde_json::Value>("stop", ()).unwrap();
    assert_eq!(qmp.next_event(Some(Duration::from_secs(5))).unwrap().unwrap().name, "STOP");
    assert_eq!(qmp.dropped_events(), 0);
}

#[test]
fn pretty_printed_monitor() {
    let qemu = qemu()
        .arg("-chardev")
        .arg("socket,id=mon0,path={dir}/pretty.sock,server=on,wait=off")
        .arg("-mon")
        .arg("chardev=mon0,mode=control,pretty=on")
        .wait_for("pretty.sock")
        .spawn()
        .unwrap();
    let mut qmp = Qmp::connect_unix(qemu.dir().join("pretty.sock"), Options::default()).unwrap();
    let status: Status = qmp.execute("query-status", ()).unwrap();
    assert_eq!(status.status, "prelaunch");
    let schema: Vec<serde_json::Value> = qmp.execute("query-qmp-schema", ()).unwrap();
    assert!(schema.len() > 500);
    qmp.execute::<serde_json::Value>("cont", ()).unwrap();
    assert_eq!(qmp.next_event(Some(Duration::from_secs(5))).unwrap().unwrap().name, "RESUME");
}

#[test]
fn over_tcp_on_loopback() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _qemu = qemu().arg("-qmp").arg(format!("tcp:127.0.0.1:{port},server=on,wait=off")).spawn().unwrap();
    let mut qmp = None;
    for _ in 0..500 {
        match Qmp::connect_tcp(("127.0.0.1", port), Options::default()) {
            Ok(q) => {
                qmp = Some(q);
                break;
            }
            Err(Error::Io(_)) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
    let mut qmp = qmp.expect("QEMU listening on TCP");
    let _: Status = qmp.execute("query-status", ()).unwrap();
}

#[test]
fn qemu_connects_to_us() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listen.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let _qemu = qemu().arg("-qmp").arg(format!("unix:{},server=off", path.display())).spawn().unwrap();
    let mut qmp = Qmp::accept(&listener, Options::default()).unwrap();
    let _: Status = qmp.execute("query-status", ()).unwrap();
}

#[test]
fn passes_file_descriptors() {
    let qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    let file = std::fs::File::open("/dev/null").unwrap();
    qmp.send_fd("vmwire-fd", file.as_fd()).unwrap();
    qmp.execute::<serde_json::Value>("closefd", serde_json::json!({"fdname": "vmwire-fd"})).unwrap();
    // It was really there: closing it twice is QEMU's error.
    assert!(matches!(
        qmp.execute::<serde_json::Value>("closefd", serde_json::json!({"fdname": "vmwire-fd"})),
        Err(Error::Qemu(_))
    ));
    let added = qmp.add_fd(file.as_fd(), None, Some("null device")).unwrap();
    let set = added["fdset-id"].as_u64().unwrap();
    let sets: serde_json::Value = qmp.execute("query-fdsets", ()).unwrap();
    assert!(sets.as_array().unwrap().iter().any(|s| s["fdset-id"] == set), "{sets}");
}

#[test]
fn quit_reports_shutdown_then_closes() {
    let mut qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    qmp.execute::<serde_json::Value>("quit", ()).unwrap();
    let event = qmp.next_event(Some(Duration::from_secs(5))).unwrap().expect("SHUTDOWN");
    assert_eq!(event.name, "SHUTDOWN");
    assert_eq!(event.data["reason"], "host-qmp-quit");
    assert!(matches!(qmp.next_event(Some(Duration::from_secs(5))), Err(Error::Closed)));
    assert!(qemu.wait_exit(Duration::from_secs(5)).unwrap().is_some_and(|s| s.success()));
}

#[test]
fn killed_qemu_fails_the_pending_command_promptly() {
    let mut qemu = qemu().qmp().spawn().unwrap();
    let mut qmp = connect(&qemu, Options::default());
    let pid = qemu.pid() as i32;
    // Stopped, QEMU cannot answer; then it dies with the command pending.
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::STOP).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        qemu.kill().unwrap();
    });
    // The time limit is far away: only the connection closing ends the wait.
    let outcome = qmp.execute_timeout::<serde_json::Value>("query-status", (), Some(Duration::from_secs(600)));
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    killer.join().unwrap();
    assert!(matches!(qmp.execute::<serde_json::Value>("query-status", ()), Err(Error::Closed)));
}

/// `quit` over the connection the owner holds: QEMU exits by itself, with
/// a normal exit status (not a signal), and its directory is removed.
#[test]
fn shutdown_quits_over_the_held_connection() {
    let qemu = qemu().qmp().spawn().unwrap();
    let dir = qemu.dir().to_path_buf();
    let mut qmp = connect(&qemu, Options::default());
    let _: Status = qmp.execute("query-status", ()).unwrap();
    let status = qemu.shutdown(Some(qmp), Duration::from_secs(60)).unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!dir.exists());
}

/// With no connection held, `quit` goes over a fresh QMP connection, or a
/// fresh human monitor; QEMU exits by itself, at once after it started too
/// (SIGTERM in its first moments would kill it).
#[test]
fn shutdown_without_a_held_connection() {
    let with_qmp = qemu().qmp().spawn().unwrap();
    assert_eq!(with_qmp.shutdown(None, Duration::from_secs(60)).unwrap().code(), Some(0));
    let without = qemu().hmp().spawn().unwrap();
    assert_eq!(without.shutdown(None, Duration::from_secs(60)).unwrap().code(), Some(0));
}

/// QEMU's own greeting over a small size limit: the handshake fails at
/// once, naming the limit (not "timed out").
#[test]
fn oversized_greeting_names_the_limit() {
    let qemu = qemu().qmp().spawn().unwrap();
    let limits = vmwire_proto::json::Limits { max_message: 64, max_depth: 16 };
    let options = Options {
        timeout: Some(Duration::from_secs(600)),
        config: Config { limits, ..Config::default() },
        ..Options::default()
    };
    match Qmp::connect_unix(qemu.qmp_path().unwrap(), options) {
        Err(e @ Error::NotQmp { .. }) => {
            assert_eq!(
                e.to_string(),
                "QMP: expected a QMP greeting, got something else (value larger than the limit of 64 bytes, at byte 64)"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// QEMU's 207 KB schema over a 64 KiB limit: the reply is skipped unread,
/// and since QEMU answers in-band commands in order it can only be this
/// command's, which fails at once, naming the limit (with time to spare: a
/// wait for the time limit would end in `Error::Skipped`). The session goes on.
#[test]
fn oversized_reply_fails_its_command_at_once_and_the_session_goes_on() {
    let qemu = qemu().qmp().spawn().unwrap();
    let limits = vmwire_proto::json::Limits { max_message: 64 << 10, max_depth: 128 };
    let options = Options { config: Config { limits, ..Config::default() }, ..Options::default() };
    let mut qmp = connect(&qemu, options);
    match qmp.execute_timeout::<serde_json::Value>("query-qmp-schema", (), Some(Duration::from_secs(600))) {
        Err(e @ Error::MalformedReply(_)) => {
            let text = e.to_string();
            assert!(
                text.starts_with("QMP: the reply was skipped unread: value larger than the limit of 65536 bytes"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let _: Status = qmp.execute("query-status", ()).unwrap();
}
