//! `vmwire record` between a client and the real peer (QEMU, qemu-ga,
//! negotiator-common, Python's XML-RPC server), then `vmwire replay` of
//! what it wrote: the same client gets the same output from the replay as
//! from the real peer.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A hang guard for processes that must end on their own.
const GUARD: Duration = Duration::from_secs(60);

fn vmwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmwire"))
}

/// Kills a child on drop (pass or fail), unless taken back.
struct Killed(Option<Child>);

impl Killed {
    fn new(child: Child) -> Killed {
        Killed(Some(child))
    }

    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit by itself; kills it and fails after [`GUARD`].
fn wait(mut child: Child, what: &str) -> Output {
    let give_up = Instant::now() + GUARD;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("{what} did not end");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn wait_for_socket(path: &Path) {
    common::eventually(&format!("{} to appear", path.display()), GUARD, || path.exists().then_some(()));
}

/// Records `client` talking to `real` through `vmwire record PROTOCOL`
/// (`connections` of them, after which the recorder exits), then replays
/// the transcript to the same client. Returns the client's output (the same
/// both times), the summary and the transcript.
fn record_then_replay(
    protocol: &str,
    real: &str,
    connections: usize,
    client: impl Fn(&Path) -> String,
) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, txn, summary) = (dir.path().join("proxy.sock"), dir.path().join("s.txn"), dir.path().join("s.sum"));
    let mut record = vmwire();
    record.args(["record", protocol, "--connect", real]).arg("--listen").arg(&proxy);
    record.arg("--out").arg(&txn).arg("--summary").arg(&summary);
    record.args(["--connections", &connections.to_string()]);
    let recorder = Killed::new(record.stderr(Stdio::piped()).spawn().unwrap());
    wait_for_socket(&proxy);
    let recorded = client(&proxy);
    let out = wait(recorder.take(), "vmwire record");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let socket = dir.path().join("replay.sock");
    let replay = vmwire().arg("replay").arg(&txn).arg("--listen").arg(&socket).stderr(Stdio::piped()).spawn().unwrap();
    let replay = Killed::new(replay);
    wait_for_socket(&socket);
    let replayed = client(&socket);
    let out = wait(replay.take(), "vmwire replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&std::fs::read(&txn).unwrap()));
    assert_eq!(replayed, recorded);
    (recorded, std::fs::read_to_string(&summary).unwrap(), std::fs::read(&txn).unwrap())
}

/// Runs the `vmwire` command line; its standard output (exit status 0).
fn run(args: &[&str], socket: &Path) -> String {
    let out =
        vmwire().args(args.iter().map(|a| if *a == "SOCKET" { socket.to_str().unwrap() } else { a })).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn qemu_qmp_and_hmp() {
    common::require_binary("qemu-system-x86_64", "qemu-system-x86");
    let qemu = vmwire_std::qemu::Qemu::builder().qmp().hmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap().to_string();
    let (output, summary, _) =
        // --no-check: the one command alone on the wire (checking would fetch the schema first).
        record_then_replay("qmp", &qmp, 1, |socket| {
            run(&["qmp", "--no-check", "--socket", "SOCKET", "query-status"], socket)
        });
    assert_eq!(output, "{\"return\":{\"status\":\"prelaunch\",\"singlestep\":false,\"running\":false}}\n");
    // One message per line, with its time.
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 7, "{summary}");
    assert!(lines[0].starts_with("< +") && lines[0].contains(r#"{"QMP":{"version""#), "{summary}");
    assert!(lines[3].ends_with(r#"{"execute":"query-status","id":1}"#), "{summary}");

    // Events in their place: cont then stop, through the library client.
    let (output, _, _) = record_then_replay("qmp", &qmp, 1, |socket| {
        let mut client = vmwire_std::qmp::Qmp::connect_unix(socket, Default::default()).unwrap();
        let mut seen = Vec::new();
        for command in ["cont", "stop", "query-status"] {
            seen.push(client.execute_raw(command, None).unwrap());
        }
        while let Ok(Some(event)) = client.next_event(Some(Duration::ZERO)) {
            seen.push(event.name);
        }
        client.close();
        seen.join("\n")
    });
    assert!(output.ends_with("RESUME\nSTOP"), "{output}");

    let hmp = qemu.hmp_path().unwrap().to_str().unwrap().to_string();
    let (output, summary, _) =
        record_then_replay("hmp", &hmp, 1, |socket| run(&["hmp", "--socket", "SOCKET", "info", "status"], socket));
    // The second QMP session left it stopped.
    assert_eq!(output, "VM status: paused\n");
    assert!(summary.contains("> +") && summary.contains("info status"), "{summary}");
}

#[test]
fn qemu_guest_agent() {
    let ga = common::qga::Ga::start(&[]);
    let socket = ga.socket();
    // The client opens with a random sync id: the replay maps it.
    let (output, summary, _) = record_then_replay("qga", socket.to_str().unwrap(), 1, |socket| {
        run(&["qga", "--socket", "SOCKET", "guest-get-host-name"], socket)
    });
    assert!(output.contains("host-name"), "{output}");
    assert!(summary.contains(r#"{"execute":"guest-sync-delimited","arguments":{"id":"#), "{summary}");
}

#[test]
fn negotiator_common() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("negotiator.sock");
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    let args = [socket.to_str().unwrap(), commands.to_str().unwrap()];
    let (child, _) = common::negotiator::python(common::negotiator::SERVER, &args, true);
    let _peer = Killed::new(child);
    let (output, summary, _) = record_then_replay("negotiator", socket.to_str().unwrap(), 1, |socket| {
        let options = vmwire_std::negotiator::Options::default();
        let mut channel = vmwire_std::negotiator::Channel::connect_unix(socket, options).unwrap();
        let list = channel.list_commands().map_err(|e| e.to_string());
        let nosuch = channel.call_raw("nosuch", "[]", "{}").map_err(|e| e.to_string());
        format!("{list:?}\n{nosuch:?}")
    });
    assert!(output.starts_with("Ok([\"find-") && output.contains("\"find-disk-usage\""), "{output}");
    assert!(output.ends_with("Err(\"remote method failed: Method nosuch not supported\")"), "{output}");
    assert!(
        summary.contains(r#"> +"#) && summary.contains(r#"{"method":"list_commands","args":[],"kw":{}}"#),
        "{summary}"
    );
}

#[test]
fn xenapi_over_python_xmlrpc_server() {
    let peer = common::xenapi::Peer::start(&[]);
    let port = peer.port;
    // Python's server speaks HTTP/1.0: a connection per call (login, the
    // call, logout). The recorder stops after the third, once it has written
    // it all (killed when the client is done, it could lose the last reply:
    // it forwards a read before it writes it down).
    let (output, summary, transcript) = record_then_replay("xmlrpc", &format!("127.0.0.1:{port}"), 3, |socket| {
        let url = format!("unix:{}", socket.display());
        let out = vmwire()
            .args(["xenapi", "--url", &url, "--password-env", "PW", "VM.get_all"])
            .env("PW", "secret")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    });
    assert!(output.contains("OpaqueRef:"), "{output}");
    // The password is not written down: `*`s in its place (byte for byte,
    // so that `Content-Length` holds), `(not recorded)` in the summary; the
    // replay above took the real one.
    assert!(summary.contains(r#"POST / session.login_with_password["root","(not recorded)","#), "{summary}");
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(!transcript.contains("secret") && transcript.contains("******<"), "{transcript}");
    assert!(summary.contains("< +") && summary.contains("HTTP/1.0 200 OK"), "{summary}");
}

/// A password in a struct (a storage repository's `device_config`) is not
/// written down either; the server got it, and the replay takes it again.
#[test]
fn xenapi_passwords_in_structs_are_not_written_down() {
    let peer = common::xenapi::Peer::start(&[]);
    let real = format!("127.0.0.1:{}", peer.port);
    let device_config = r#"{"server": "//nas/share", "username": "u", "password": "s3cret"}"#;
    // Three connections, as above.
    let (output, summary, transcript) = record_then_replay("xmlrpc", &real, 3, |socket| {
        let url = format!("unix:{}", socket.display());
        let args = ["xenapi", "--url", &url, "--password-env", "PW", "SR.create", "OpaqueRef:host", device_config];
        let out = vmwire().args(args).env("PW", "secret").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    });
    assert!(output.contains("OpaqueRef:sr-ok"), "{output}");
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(!transcript.contains("s3cret") && transcript.contains(">******<"), "{transcript}");
    assert!(summary.contains(r#""password":"(not recorded)","server":"//nas/share""#), "{summary}");
}

/// A secret object's key and an HMP password are not written down: `*`s in
/// their place, byte for byte; the replay takes them again (any) and
/// answers as QEMU did.
#[test]
fn secrets_sent_to_qemu_are_not_written_down() {
    common::require_binary("qemu-system-x86_64", "qemu-system-x86");
    let qemu = vmwire_std::qemu::Qemu::builder().qmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap().to_string();
    let (output, summary, transcript) = record_then_replay("qmp", &qmp, 1, |socket| {
        let mut client = vmwire_std::qmp::Qmp::connect_unix(socket, Default::default()).unwrap();
        let added = client.execute_raw("object-add", Some(r#"{"qom-type": "secret", "id": "k", "data": "s3cret"}"#));
        client.close();
        format!("{added:?}")
    });
    assert_eq!(output, "Ok(\"{}\")");
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(!transcript.contains("s3cret") && transcript.contains(r#""data": "******""#), "{transcript}");
    assert!(!summary.contains("s3cret") && summary.contains(r#""data":"******""#), "{summary}");

    // HMP's set_password through QMP: the password word, not the line.
    let (_, _, transcript) = record_then_replay("qmp", &qmp, 1, |socket| {
        run(&["hmp", "--via-qmp", "SOCKET", "set_password vnc s3cret"], socket)
    });
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(!transcript.contains("s3cret") && transcript.contains("set_password vnc ******"), "{transcript}");
}

#[test]
fn file_descriptors_pass_through_the_proxy() {
    common::require_binary("qemu-system-x86_64", "qemu-system-x86");
    let qemu = vmwire_std::qemu::Qemu::builder().qmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, txn) = (dir.path().join("proxy.sock"), dir.path().join("s.txn"));
    let mut record = vmwire();
    record.args(["record", "qmp", "--connect", &qmp, "--connections", "1"]).arg("--listen").arg(&proxy);
    let recorder = Killed::new(record.arg("--out").arg(&txn).spawn().unwrap());
    wait_for_socket(&proxy);
    let mut client = vmwire_std::qmp::Qmp::connect_unix(&proxy, Default::default()).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    // QEMU refuses `getfd` without a descriptor: success means it got one.
    client.send_fd("recorded", std::os::fd::AsFd::as_fd(&file)).unwrap();
    client.execute_raw("closefd", Some(r#"{"fdname": "recorded"}"#)).unwrap();
    client.close();
    let out = wait(recorder.take(), "vmwire record");
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read(&txn).unwrap();
    let passed: Vec<_> =
        vmwire_proto::transcript::Reader::new(&text).map(Result::unwrap).filter(|r| r.fds > 0).collect();
    assert_eq!(passed.len(), 1);
    assert_eq!(passed[0].direction, vmwire_proto::transcript::Direction::ClientToServer);
    assert!(String::from_utf8_lossy(passed[0].bytes).contains("getfd"));
}

/// The address a `vmwire record` or `vmwire replay` prints on its first
/// line of standard error (`… on tcp:HOST:PORT …`).
fn printed_address(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let tcp = line.split_whitespace().find_map(|w| w.strip_prefix("tcp:")).unwrap_or_else(|| panic!("{line:?}"));
    tcp.to_string()
}

/// Runs the official XenAPI SDK (`tests/peers/sdk_client.py`) against
/// `http://ADDRESS/`: one JSON line per step.
fn sdk_client(python: &Path, address: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../io-std/tests/peers/sdk_client.py");
    let out = Command::new(python).arg(script).arg(format!("http://{address}/")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_xenapi_sdk_over_tcp() {
    let python = common::require_python_module("XenAPI");
    let peer = common::xenapi::Peer::start(&[]);
    let port = peer.port;
    let dir = tempfile::tempdir().unwrap();
    let txn = dir.path().join("sdk.txn");

    // The SDK, through the proxy on a TCP port, to Python's server.
    let mut record = vmwire();
    record.args(["record", "xmlrpc", "--listen", "127.0.0.1:0", "--connect", &format!("127.0.0.1:{port}")]);
    let mut recorder = record.arg("--out").arg(&txn).stderr(Stdio::piped()).spawn().unwrap();
    let proxy = printed_address(&mut recorder);
    let recorder = Killed::new(recorder);
    let recorded = sdk_client(&python, &proxy);
    drop(recorder);
    assert!(recorded.contains(r#"{"step": "after invalidation", "ok": 3}"#), "{recorded}");

    // The SDK again, against the replay on a TCP port: the same output.
    let mut replay =
        vmwire().arg("replay").arg(&txn).args(["--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn().unwrap();
    let address = printed_address(&mut replay);
    let replay = Killed::new(replay);
    let replayed = sdk_client(&python, &address);
    let out = wait(replay.take(), "vmwire replay");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(replayed, recorded);
    // Neither the password nor the wrong one was written down (each is
    // `*`s), yet the replay, given them again, served both logins as recorded.
    let transcript = String::from_utf8_lossy(&std::fs::read(&txn).unwrap()).into_owned();
    assert!(!transcript.contains("secret") && !transcript.contains("wrong"), "{transcript}");
    assert!(transcript.contains("******<") && transcript.contains("*****<"), "{transcript}");
}

/// Stopped by a signal (Ctrl-C, SIGTERM), record and replay remove their
/// socket and end as the signal would have.
#[test]
fn a_signal_leaves_no_socket_behind() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (peer, listen, txn) = (dir.path().join("peer.sock"), dir.path().join("proxy.sock"), dir.path().join("s.txn"));
    let _peer = std::os::unix::net::UnixListener::bind(&peer).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/qmp/01_greeting_caps_noid.txn");
    let mut record = vmwire();
    record.args(["record", "qmp", "--listen"]).arg(&listen).arg("--connect").arg(&peer).arg("--out").arg(&txn);
    let mut replay = vmwire();
    replay.args(["replay", fixture, "--protocol", "qmp", "--listen"]).arg(&listen);
    for (mut command, signal) in [(record, "-INT"), (replay, "-TERM")] {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        // The line it prints once the socket is bound and the signals caught.
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(listen.to_str().unwrap()), "{line}");
        assert!(Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap().success());
        let out = wait(child, "vmwire");
        assert_eq!(out.status.signal(), Some(if signal == "-INT" { 2 } else { 15 }), "{signal}");
        assert!(!listen.exists(), "{signal}: the socket is still there");
    }
}

/// A peer socket that is not there is an error at once (status 3, naming
/// it), before anything listens or the transcript file is made.
#[test]
fn a_missing_peer_socket_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, out) = (dir.path().join("proxy.sock"), dir.path().join("s.txn"));
    let missing = dir.path().join("qmp.sock");
    let output = vmwire()
        .args(["record", "qmp", "--listen"])
        .arg(&listen)
        .arg("--connect")
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("{}: No such file or directory", missing.display())), "{stderr}");
    assert!(!listen.exists() && !out.exists());
}
