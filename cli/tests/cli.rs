//! `vmwire` as a user runs it, for what every subcommand shares: `--version`,
//! connection errors that name what they tried to reach, `--tcp` checked as
//! a usage error; and peer text on the terminal and in logs, escaped (a
//! hostile negotiator peer or QMP server, scripted here: real peers do not
//! send such text unless a guest makes them).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

/// What a guest chose to send: a forged log line and a clear-screen escape.
const HOSTILE: &str = "x\nERROR host: fake line\u{1b}[2J";
/// The same, as `vmwire_std::text::escape` shows it.
const ESCAPED: &str = "x\\nERROR host: fake line\\u{1b}[2J";

fn vmwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmwire")).args(args).stdin(Stdio::null()).output().expect("run vmwire")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmwire")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

/// Nothing raw reached the terminal: no ESC, and no line that a peer forged.
fn assert_clean(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(!stream.contains(&0x1b), "raw ESC: {}", String::from_utf8_lossy(stream));
        let forged = text(stream).lines().any(|l| l.starts_with("ERROR host"));
        assert!(!forged, "forged line: {}", text(stream));
    }
}

#[test]
fn every_subcommand_has_version() {
    let version = env!("CARGO_PKG_VERSION");
    for sub in ["qmp", "hmp", "qga", "minimega", "xmlrpc", "xenapi", "negotiator-host", "negotiator-guest"] {
        let out = vmwire(&[sub, "--version"]);
        assert_eq!(out.status.code(), Some(0), "{sub}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("vmwire-{sub} {version}\n"));
    }
    assert_eq!(text(&vmwire(&["--version"]).stdout), format!("vmwire {version}\n"));
}

#[test]
fn connection_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x.sock");
    let path = missing.to_str().unwrap();
    let url = format!("unix:{path}");
    for (args, code, prefix) in [
        (&["qmp", "--socket", path, "query-status"][..], 3, "vmwire: QMP I/O error: "),
        (&["hmp", "--socket", path, "info status"], 3, "vmwire: HMP I/O error: "),
        (&["qga", "--socket", path, "guest-ping"], 3, "vmwire: QGA I/O error: "),
        (&["qga", "--device", path, "guest-ping"], 3, "vmwire: QGA I/O error: "),
        (&["minimega", "--socket", path, "version"], 3, "vmwire: minimega: cannot connect to "),
        (&["xmlrpc", &url, "system.listMethods"], 3, "vmwire: XML-RPC I/O error: "),
        (&["negotiator-host", "--socket", path, "-c"], 1, "vmwire negotiator-host: negotiator I/O error: "),
        (&["negotiator-guest", "-c", path, "-l"], 1, "vmwire negotiator-guest: negotiator I/O error: "),
    ] {
        let out = vmwire(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out.stderr));
        let expected = format!("{prefix}{path}: No such file or directory (os error 2)");
        assert!(text(&out.stderr).starts_with(&expected), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn tcp_without_a_port_is_a_usage_error() {
    for sub in [&["qmp", "--tcp", "localhost", "query-status"][..], &["hmp", "--tcp", "localhost", "info status"]] {
        let out = vmwire(sub);
        assert_eq!(out.status.code(), Some(2), "{sub:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("expected HOST:PORT"), "{}", text(&out.stderr));
    }
    // With a port, a refused connection is a connection failure that names
    // the address tried.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    for sub in ["qmp", "hmp"] {
        let out = vmwire(&[sub, "--tcp", &address, "x"]);
        assert_eq!(out.status.code(), Some(3), "{sub}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("{address}: Connection refused")), "{}", text(&out.stderr));
    }
}

/// Values no command could use are usage errors (status 2), before any
/// connection: a time limit that is not one, an `--env` entry with no `=`.
#[test]
fn unusable_values_are_usage_errors() {
    for (args, said) in [
        (&["qmp", "--socket", "/nonexistent", "--timeout", "inf", "query-status"][..], "longer than can be waited"),
        (&["hmp", "--socket", "/nonexistent", "--timeout", "NaN", "info status"], "is not a time limit"),
        (&["xenapi", "--url", "http://localhost:1", "--timeout", "1e30", "VM.get_all"], "longer than"),
        (&["qga", "--socket", "/nonexistent", "--env", "FOO", "exec", "--", "true"], "is not NAME=VALUE"),
    ] {
        let out = vmwire(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(said), "{args:?}: {}", text(&out.stderr));
    }
}

/// Writes one negotiator frame: its length in decimal, `\n`, the JSON.
fn send_frame(stream: &mut UnixStream, body: &serde_json::Value) {
    let body = body.to_string();
    stream.write_all(format!("{}\n{body}", body.len()).as_bytes()).unwrap();
}

/// Reads one negotiator frame.
fn read_frame(stream: &mut UnixStream) -> serde_json::Value {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let len: usize = text(&line).parse().unwrap();
    let mut body = vec![0; len];
    stream.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// A listener in a fresh directory, accepting with a hang guard.
fn listen(dir: &Path) -> (UnixListener, String) {
    let path = dir.join("peer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    (listener, path.to_str().unwrap().to_string())
}

fn accept(listener: &UnixListener) -> UnixStream {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

#[test]
fn a_negotiator_guest_logs_a_hostile_method_name_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, path) = listen(dir.path());
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    // The guest daemon connects to its channel (QEMU's chardev listens on the host).
    let daemon = spawn(&["negotiator-guest", "-d", "-c", &path, "--commands-dir", commands.to_str().unwrap()]);
    let mut host = accept(&listener);
    for method in [HOSTILE, "execute"] {
        let args = if method == "execute" { serde_json::json!([HOSTILE]) } else { serde_json::json!([]) };
        send_frame(&mut host, &serde_json::json!({"method": method, "args": args, "kw": {}}));
        let answer = read_frame(&mut host);
        assert_eq!(answer["success"], false, "{answer}");
    }
    send_frame(&mut host, &serde_json::json!({"method": "execute", "args": ["x"], "kw": {HOSTILE: 1}}));
    assert_eq!(read_frame(&mut host)["success"], false);
    drop(host);
    let out = daemon.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_clean(&out);
    let log = text(&out.stderr);
    assert!(log.contains(&format!("refused to call method {ESCAPED}\n")), "{log}");
    assert!(log.contains(&format!("keyword argument '{ESCAPED}'")), "{log}");
}

#[test]
fn negotiator_host_escapes_what_the_guest_says() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, path) = listen(dir.path());
    let guest = thread::spawn(move || {
        // list_commands: names chosen by the guest.
        let mut s = accept(&listener);
        let request = read_frame(&mut s);
        assert_eq!(request["method"], "list_commands");
        send_frame(&mut s, &serde_json::json!({"success": true, "result": ["ok", HOSTILE]}));
        // execute: an error chosen by the guest.
        let mut s = accept(&listener);
        read_frame(&mut s);
        send_frame(&mut s, &serde_json::json!({"success": false, "error": HOSTILE}));
    });
    let out = vmwire(&["negotiator-host", "--socket", &path, "-c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_clean(&out);
    assert_eq!(text(&out.stdout), format!("ok\n{ESCAPED}\n"));
    let out = vmwire(&["negotiator-host", "--socket", &path, "-e", "anything"]);
    assert_eq!(out.status.code(), Some(1));
    assert_clean(&out);
    assert_eq!(text(&out.stderr), format!("vmwire negotiator-host: remote method failed: {ESCAPED}\n"));
    guest.join().unwrap();
}

#[test]
fn a_qmp_capabilities_error_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, path) = listen(dir.path());
    let qemu = thread::spawn(move || {
        let s = accept(&listener);
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut s = s;
        s.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(request["execute"], "qmp_capabilities");
        let mut reply = serde_json::json!({"error": {"class": "GenericError", "desc": HOSTILE}});
        if let Some(id) = request.get("id") {
            reply["id"] = id.clone();
        }
        s.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
    });
    let out = vmwire(&["qmp", "--socket", &path, "query-status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_clean(&out);
    assert!(text(&out.stderr).contains(&format!("GenericError: {ESCAPED}")), "{}", text(&out.stderr));
    qemu.join().unwrap();
}

/// `vmwire qmp --launch query-qmp-schema | head -c 1`: the reader goes away
/// early. vmwire ends with SIGPIPE's shell status (141), says nothing (no
/// panic message), and still shuts its QEMU down and removes its directory.
#[test]
fn a_reader_that_goes_away_ends_vmwire_quietly() {
    // A temporary directory of its own: other tests' QEMUs come and go in the shared one.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["qmp", "--launch", "--pretty", "query-qmp-schema"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmwire");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "a launched QEMU's directory was left behind: {left:?}");
}
