//! `vmwire qmp` as a process: against a real QEMU (launched by the test, or
//! by `--launch`), and against a scripted peer on a UNIX socket only where
//! QEMU cannot produce the bytes (an undecodable event, a malformed reply);
//! the library on the same scripted peer too.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use vmwire_std::qemu::{QEMU_BINARY, QEMU_PACKAGE};
use vmwire_std::qmp::{Error, Options, Qmp};

/// A guard against hangs, not a timing: a run that takes this long has hung.
const HANG: Duration = Duration::from_secs(120);

fn vmwire() -> Command {
    common::require_binary(QEMU_BINARY, QEMU_PACKAGE);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmwire"));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Waits for `child` to end (killing it if it hangs) and collects its output.
fn finish(mut child: Child) -> Output {
    let guard = KillOnDrop(child.id());
    common::eventually("vmwire to exit", HANG, || child.try_wait().unwrap());
    std::mem::forget(guard);
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    finish(vmwire().args(args).spawn().unwrap())
}

/// Kills a `vmwire` the test started if the test fails before it ends
/// (forgotten once it has been reaped, so that its number is never reused).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The README's run command: quits QEMU over the connection it holds, and
/// QEMU exits by itself (the CLI reports anything else on stderr).
#[test]
fn launch_quits_over_its_own_connection() {
    let out = run(&["qmp", "--launch", "query-status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"status\":\"prelaunch\""), "{}", text(&out.stdout));
    assert_eq!(text(&out.stderr), "");
}

/// An HMP monitor given to `vmwire qmp`: its banner is named at once. The
/// time limit is far away, so only recognising the banner ends the run.
#[test]
fn human_monitor_socket_is_named_at_once() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let socket = qemu.hmp_path().unwrap().to_str().unwrap().to_owned();
    let out = run(&["qmp", "--socket", &socket, "--timeout", "600", "query-status"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("vmwire: QMP: expected a QMP greeting, got `QEMU 7.")
            && stderr.contains(" monitor - type 'help' for more information"),
        "{stderr}"
    );
}

/// A QMP socket that another client holds: QEMU takes the connection and
/// says nothing, and the error says why that probably is.
#[test]
fn held_qmp_socket_is_explained() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let _holder = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options::default()).unwrap();
    let socket = qemu.qmp_path().unwrap().to_str().unwrap().to_owned();
    let out = run(&["qmp", "--socket", &socket, "--timeout", "0.5", "query-status"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no greeting within 0.5 s") && stderr.contains("another client"), "{stderr}");
}

/// A scripted QMP peer on a UNIX socket: QEMU 7.2's greeting (captured),
/// the reply to `qmp_capabilities`, then `after_negotiation`. Then, with
/// `answer`, each command gets the bytes `answer` makes of its id until the
/// client closes; without, the peer closes at once.
fn scripted_peer(
    dir: &Path,
    after_negotiation: &'static str,
    answer: Option<fn(&serde_json::Value) -> String>,
) -> PathBuf {
    let path = dir.join("peer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/qmp/10_cont_stop.s2c")).unwrap();
    let greeting_end = fixture.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let greeting = fixture[..greeting_end].to_vec();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(&greeting).unwrap();
        let mut lines = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        let mut negotiated = false;
        while lines.read_line(&mut line).unwrap() > 0 {
            let command: serde_json::Value = serde_json::from_str(&line).unwrap();
            line.clear();
            if !negotiated {
                negotiated = true;
                let reply = format!("{{\"return\": {{}}, \"id\": {}}}\r\n{after_negotiation}", command["id"]);
                stream.write_all(reply.as_bytes()).unwrap();
                if answer.is_none() {
                    break;
                }
            } else if let Some(answer) = answer {
                stream.write_all(answer(&command["id"]).as_bytes()).unwrap();
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    path
}

/// An event `serde_json` cannot decode (a number out of its range) is one
/// message lost, reported on stderr; the events before and after it still
/// arrive, and SHUTDOWN then the close is a clean end (exit 0).
#[test]
fn undecodable_event_is_one_message_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = scripted_peer(
        dir.path(),
        concat!(
            "{\"timestamp\": {\"seconds\": 1795234847, \"microseconds\": 944496}, \"event\": \"RESUME\"}\r\n",
            "{\"timestamp\": {\"seconds\": 1795234848, \"microseconds\": 1}, \"event\": \"BAD\", \"data\": {\"n\": 1e400}}\r\n",
            "{\"timestamp\": {\"seconds\": 1795234848, \"microseconds\": 848504}, \"event\": \"STOP\"}\r\n",
            "{\"timestamp\": {\"seconds\": 1795234849, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n",
        ),
        None,
    );
    let out = run(&["qmp", "--socket", path.to_str().unwrap(), "--events"]);
    let stdout = text(&out.stdout);
    let names: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["RESUME", "STOP", "SHUTDOWN"], "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("event BAD") && stderr.contains("number out of range"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A reply with both `return` and `error` fails the command with that
/// reason (exit 3), at once: not "timed out".
#[test]
fn malformed_reply_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = scripted_peer(
        dir.path(),
        "",
        Some(|id| {
            format!(
                "{{\"return\": {{}}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"x\"}}, \"id\": {id}}}\r\n"
            )
        }),
    );
    let out = run(&["qmp", "--socket", path.to_str().unwrap(), "--timeout", "600", "query-status"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "vmwire: QMP: malformed reply: both return and error\n");
}

/// `--events` when QEMU is killed: the connection closes without SHUTDOWN,
/// which is a failure (exit 3), said on stderr.
#[test]
fn events_exit_3_when_qemu_is_killed() {
    let mut qemu = common::qemu_builder().qmp().spawn().unwrap();
    let socket = qemu.qmp_path().unwrap().to_str().unwrap().to_owned();
    let mut child = vmwire().args(["qmp", "--socket", &socket, "--events"]).spawn().unwrap();
    let guard = KillOnDrop(child.id());
    held(&mut child, Path::new(&socket));
    qemu.kill().unwrap();
    std::mem::forget(guard);
    let out = finish(child);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "vmwire: QMP: the connection closed without a SHUTDOWN event\n");
}

/// Waits until `vmwire` holds the QMP socket at `path`: then QEMU greets
/// no second client.
fn held(vmwire: &mut Child, path: &Path) {
    common::eventually("vmwire to hold the QMP socket", HANG, || {
        if let Some(status) = vmwire.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut vmwire.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("vmwire ended early ({status}): {stderr}");
        }
        let options = Options { timeout: Some(Duration::from_millis(200)), ..Options::default() };
        matches!(Qmp::connect_unix(path, options), Err(Error::NoGreeting { .. })).then_some(())
    });
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.extend(entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()));
        }
    }
    found
}

/// Whether process `pid` still exists (a zombie counts as gone: it has exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// The launched QEMU and its directory, once vmwire (`vmwire_pid`) holds
/// its QMP socket.
fn launched_qemu(vmwire: &mut Child) -> (u32, PathBuf) {
    let qemu = common::eventually("vmwire to launch QEMU", HANG, || children(vmwire.id()).first().copied());
    // Its directory, from its command line (`-qmp unix:DIR/qmp.sock,…`).
    let dir = common::eventually("QEMU's command line", HANG, || {
        let cmdline = cmdline_of(qemu);
        let start = cmdline.find("unix:")? + "unix:".len();
        let sock = &cmdline[start..start + cmdline[start..].find(",server")?];
        Some(PathBuf::from(sock).parent()?.to_path_buf())
    });
    // `-qmp unix:…` for `vmwire qmp`, `-monitor unix:…` for `vmwire hmp`.
    if cmdline_of(qemu).contains("-qmp") {
        held(vmwire, &dir.join("qmp.sock"));
    } else {
        held_monitor(vmwire, &dir.join("hmp.sock"));
    }
    (qemu, dir)
}

/// The command line of process `pid` (empty once it has gone).
fn cmdline_of(pid: u32) -> String {
    text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
}

/// Waits until `vmwire` holds the human monitor at `path` (a second client
/// gets no prompt).
fn held_monitor(vmwire: &mut Child, path: &Path) {
    common::eventually("vmwire to hold the monitor", HANG, || {
        assert!(vmwire.try_wait().unwrap().is_none(), "vmwire ended early");
        let options = vmwire_std::hmp::Options { timeout: Some(Duration::from_millis(200)), ..Default::default() };
        matches!(vmwire_std::hmp::Monitor::connect_unix(path, options), Err(vmwire_std::hmp::Error::NoPrompt { .. }))
            .then_some(())
    });
}

/// `vmwire hmp --launch` (its shell waiting for input) also shuts its QEMU
/// down in order and removes its directory when a signal ends it.
#[test]
fn sigterm_shuts_qemu_launched_for_hmp_down() {
    let mut child = vmwire().args(["hmp", "--launch"]).stdin(Stdio::piped()).spawn().unwrap();
    let vmwire_pid = child.id();
    let guard = KillOnDrop(vmwire_pid);
    let (qemu, dir) = launched_qemu(&mut child);
    let pid = rustix::process::Pid::from_raw(vmwire_pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    std::mem::forget(guard);
    let out = finish(child);
    assert_eq!(out.status.signal(), Some(rustix::process::Signal::TERM.as_raw()), "{}", text(&out.stderr));
    assert!(!alive(qemu), "QEMU {qemu} outlived vmwire");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// `vmwire` killed outright (SIGKILL, which it cannot catch): the kernel
/// still ends its QEMU (the parent death signal). Only the directory is
/// left behind, as nobody is left to remove it.
#[test]
fn sigkill_still_ends_launched_qemu() {
    let mut child = vmwire().args(["qmp", "--launch", "--events"]).spawn().unwrap();
    let guard = KillOnDrop(child.id());
    let (qemu, dir) = launched_qemu(&mut child);
    drop(guard); // SIGKILL

    let out = finish(child);
    assert_eq!(out.status.signal(), Some(rustix::process::Signal::KILL.as_raw()));
    common::eventually("QEMU to exit after vmwire was killed", HANG, || (!alive(qemu)).then_some(()));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `vmwire qmp --launch --events` sent `signal`: its QEMU is shut down and
/// reaped, its temporary directory removed, and vmwire ends as the signal
/// would have ended it.
fn signal_shuts_launched_qemu_down(signal: rustix::process::Signal) {
    let mut child = vmwire().args(["qmp", "--launch", "--events"]).spawn().unwrap();
    let vmwire_pid = child.id();
    let guard = KillOnDrop(vmwire_pid);
    let (qemu, dir) = launched_qemu(&mut child);
    assert!(dir.exists());
    rustix::process::kill_process(rustix::process::Pid::from_raw(vmwire_pid as i32).unwrap(), signal).unwrap();
    std::mem::forget(guard);
    let out = finish(child);
    assert_eq!(out.status.signal(), Some(signal.as_raw()), "{:?} {}", out.status, text(&out.stderr));
    assert!(!alive(qemu), "QEMU {qemu} outlived vmwire");
    assert!(!dir.exists(), "{} left behind", dir.display());
    // QEMU shut down in order: it reported its SHUTDOWN.
    assert!(text(&out.stdout).contains("\"reason\":\"host-signal\""), "{}", text(&out.stdout));
}

#[test]
fn sigterm_shuts_launched_qemu_down() {
    signal_shuts_launched_qemu_down(rustix::process::Signal::TERM);
}

#[test]
fn sighup_shuts_launched_qemu_down() {
    signal_shuts_launched_qemu_down(rustix::process::Signal::HUP);
}

#[test]
fn sigint_shuts_launched_qemu_down() {
    signal_shuts_launched_qemu_down(rustix::process::Signal::INT);
}

/// The library on the same scripted peer: an event that cannot be decoded,
/// arriving while a command waits, is one stray; the command still gets its
/// reply, and the good event after it arrives.
#[test]
fn undecodable_event_does_not_fail_the_pending_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = scripted_peer(
        dir.path(),
        "",
        Some(|id| {
            format!(
                "{{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 2}}, \"event\": \"BAD\", \"data\": {{\"n\": 1e400}}}}\r\n\
                 {{\"return\": {{\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}, \"id\": {id}}}\r\n\
                 {{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 3}}, \"event\": \"GOOD\"}}\r\n"
            )
        }),
    );
    let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
    let status: serde_json::Value = qmp.execute("query-status", ()).unwrap();
    assert_eq!(status["status"], "prelaunch");
    assert_eq!(qmp.next_event(Some(HANG)).unwrap().unwrap().name, "GOOD");
    match &qmp.take_strays()[..] {
        [vmwire_std::qmp::Stray::Malformed(what)] => {
            assert!(what.contains("event BAD: data: number out of range"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

/// Replies that are not valid replies fail their command with the reason;
/// the session goes on.
#[test]
fn malformed_replies_fail_their_command_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = scripted_peer(
        dir.path(),
        "",
        Some(|id| match id.as_u64().unwrap() {
            1 => format!(
                "{{\"return\": {{}}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"x\"}}, \"id\": {id}}}\r\n"
            ),
            2 => format!("{{\"error\": {{\"class\": \"GenericError\"}}, \"id\": {id}}}\r\n"),
            _ => format!("{{\"return\": {{}}, \"id\": {id}}}\r\n"),
        }),
    );
    let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
    for expected in
        ["QMP: malformed reply: both return and error", "QMP: malformed reply: error without class and desc"]
    {
        match qmp.execute_raw("query-status", None) {
            Err(e @ Error::MalformedReply(_)) => assert_eq!(e.to_string(), expected),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(qmp.execute_raw("query-status", None).unwrap(), "{}");
}
