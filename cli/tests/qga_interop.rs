//! The blocking guest agent client against a real qemu-ga
//! (`--method unix-listen`, run here on the host as root), one agent per
//! test, its socket and state in a private temporary directory.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::qga::{Client, Config, Event};
use vmwire_std::qga::{Agent, Error, ExitStatus, Options, Shutdown};
use vmwire_std::transport::{Conn, Stream, deadline};

use common::qga::{Ga, returns, scripted_agent};

impl Ga {
    fn connect(&self) -> Agent {
        Agent::connect_unix(self.socket(), Options::default()).expect("connect and sync")
    }
}

#[test]
fn syncs_pings_and_describes_itself() {
    let ga = Ga::start(&[]);
    let mut agent = ga.connect();
    agent.ping().unwrap();
    let info = agent.info().unwrap();
    assert!(info.version.starts_with("7."), "{}", info.version);
    let exec = info.supported_commands.iter().find(|c| c.name == "guest-exec").unwrap();
    assert!(exec.enabled && exec.success_response);
    let shutdown = info.supported_commands.iter().find(|c| c.name == "guest-shutdown").unwrap();
    assert!(!shutdown.success_response);
    // This host is the "guest": the agent reads its /etc/os-release.
    let os = agent.osinfo().unwrap();
    let release = std::fs::read_to_string("/etc/os-release").unwrap();
    let id = release.lines().find_map(|l| l.strip_prefix("ID=")).unwrap().trim_matches('"');
    assert_eq!(os.id.as_deref(), Some(id));
    assert_eq!(os.machine.as_deref(), Some(std::env::consts::ARCH));
    // A resync on demand, and typed and raw commands after it.
    agent.sync().unwrap();
    let time: u64 = agent.execute("guest-get-time", ()).unwrap();
    assert!(time > 1_600_000_000_000_000_000);
    assert_eq!(agent.execute_raw("guest-ping", None).unwrap(), "{}");
    match agent.execute_raw("no-such-command", None) {
        Err(Error::Agent(e)) => assert_eq!(e.class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sync_clears_a_request_left_half_written() {
    let ga = Ga::start(&[]);
    // An earlier client dies in the middle of a request.
    let mut earlier = UnixStream::connect(ga.socket()).unwrap();
    earlier.write_all(b"{\"execute\": \"guest-sync\", \"arguments\": {\"id\": 1").unwrap();
    drop(earlier);
    // The agent's parser still holds it; the opening 0xFF clears it.
    let mut agent = ga.connect();
    agent.ping().unwrap();
    assert!(agent.execute::<serde_json::Value>("guest-get-host-name", ()).unwrap()["host-name"].is_string());
}

#[test]
fn exec_reports_exit_codes_signals_and_output() {
    let ga = Ga::start(&[]);
    let mut agent = ga.connect();
    let out = agent.exec("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"], &[], None).unwrap();
    assert_eq!(
        (out.status, out.stdout.as_slice(), out.stderr.as_slice()),
        (ExitStatus::Code(3), &b"out\n"[..], &b"err\n"[..])
    );
    assert!(!out.status.success() && !out.stdout_truncated);

    let input: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let out = agent.exec("/bin/cat", &[], &[], Some(&input)).unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, input);

    let out = agent.exec("/bin/sh", &["-c", "echo \"$GREETING\""], &["GREETING=hello from the host"], None).unwrap();
    assert_eq!(out.stdout, b"hello from the host\n");

    let out = agent.exec("/bin/sh", &["-c", "sleep 0.2; kill -9 $$"], &[], None).unwrap();
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert_eq!(out.status.code(), None);

    match agent.exec("/nonexistent/program", &[], &[], None) {
        Err(Error::Agent(e)) => assert!(e.desc.contains("/nonexistent/program"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_program_past_the_time_limit_is_named_and_the_session_goes_on() {
    let ga = Ga::start(&[]);
    // No limit on each reply: the deadline alone bounds it (and the last look).
    let options = Options { exec_timeout: Some(Duration::from_millis(300)), timeout: None, ..Options::default() };
    let mut agent = Agent::connect_unix(ga.socket(), options).unwrap();
    let marker = ga.path("pid");
    let script = format!("echo $$ > '{marker}'; exec sleep 30");
    let pid = match agent.exec("/bin/sh", &["-c", &script], &[], None) {
        Err(Error::StillRunning { pid, limit }) => {
            assert_eq!(limit, Duration::from_millis(300));
            pid
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), pid.to_string());
    // The agent still knows it, and the session goes on.
    let status = agent.execute_raw("guest-exec-status", Some(&format!("{{\"pid\": {pid}}}"))).unwrap();
    assert!(status.contains("\"exited\": false"), "{status}");
    assert!(Command::new("kill").arg(pid.to_string()).status().unwrap().success());
    assert!(agent.exec("/bin/true", &[], &[], None).unwrap().status.success());
    drop(agent); // the agent serves one client at a time

    // The command-line tool says the same, with the limit.
    let (code, _, stderr) = vmwire_qga(&ga.socket(), &["--exec-timeout", "0.3", "exec", "--", "/bin/sleep", "30"]);
    assert_eq!(code, Some(3), "{stderr}");
    let pid = stderr.trim_end().rsplit(' ').next().unwrap();
    assert!(
        stderr
            .starts_with("vmwire: QGA: the program was still running after 0.3 s; it goes on in the guest as process "),
        "{stderr}"
    );
    assert!(Command::new("kill").arg(pid).status().unwrap().success(), "{stderr}");
}

#[test]
fn files_round_trip_in_chunks_and_handles_are_closed() {
    let ga = Ga::start(&[]);
    let mut agent = ga.connect();
    let fds = ga.open_fds();
    // Larger than one 64 KiB chunk, and not a multiple of it or of 3.
    let data: Vec<u8> = (0..200_017u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let path = ga.path("round trip.bin");
    agent.write_file(&path, &data).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(agent.read_file(&path).unwrap(), data);
    // Small chunks: many reads and writes.
    // (The agent takes one client at a time.)
    agent.close();
    let mut small = Agent::connect_unix(ga.socket(), Options { chunk_size: 1000, ..Options::default() }).unwrap();
    let path2 = ga.path("small chunks.bin");
    small.write_file(&path2, &data[..4321]).unwrap();
    assert_eq!(small.read_file(&path2).unwrap(), &data[..4321]);
    small.write_file(&path2, b"").unwrap();
    assert_eq!(small.read_file(&path2).unwrap(), b"");
    assert_eq!(ga.open_fds(), fds, "every guest file handle was closed");

    // Failures: open fails (nothing to close), or a read fails (closed anyway).
    match small.read_file(&ga.path("missing")) {
        Err(Error::Agent(e)) => assert!(e.desc.contains("No such file"), "{e}"),
        other => panic!("{other:?}"),
    }
    match small.read_file(ga.dir.path().to_str().unwrap()) {
        Err(Error::Agent(e)) => assert!(e.desc.contains("Is a directory"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The caller's writer or reader fails: its error (never a success),
    // and the handle closed; also when it fails on a file's last chunk.
    small.write_file(&path2, &data[..4321]).unwrap();
    let mut full = Full { taken: Vec::new(), limit: 2500 };
    match small.read_file_to(&path2, &mut full) {
        Err(Error::Io(e)) => assert_eq!(e.to_string(), "the disk is full"),
        other => panic!("{other:?}"),
    }
    assert_eq!(full.taken, &data[..2500]);
    small.write_file(&path2, &data[..500]).unwrap();
    let mut full = Full { taken: Vec::new(), limit: 100 };
    match small.read_file_to(&path2, &mut full) {
        Err(Error::Io(e)) => assert_eq!(e.to_string(), "the disk is full"),
        other => panic!("{other:?}"),
    }
    let mut broken = std::io::Read::chain(&data[..3000], Broken);
    match small.write_file_from(&ga.path("broken.bin"), &mut broken) {
        Err(Error::Io(e)) => assert_eq!(e.to_string(), "the source went away"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ga.open_fds(), fds, "the handles of the failed transfers were closed");
    small.ping().unwrap();
}

/// A writer that takes `limit` bytes, then fails.
struct Full {
    taken: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.limit - self.taken.len());
        if n == 0 {
            return Err(std::io::Error::other("the disk is full"));
        }
        self.taken.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader that fails.
struct Broken;

impl std::io::Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("the source went away"))
    }
}

#[test]
fn blocked_commands_are_the_agents_error() {
    let ga = Ga::start(&["guest-exec", "guest-file-open", "guest-shutdown"]);
    let mut agent = ga.connect();
    let disabled = |r: Result<(), Error>| match r {
        Err(Error::Agent(e)) => e.class == "CommandNotFound" && e.desc.contains("disabled"),
        _ => false,
    };
    assert!(disabled(agent.exec("/bin/true", &[], &[], None).map(drop)));
    assert!(disabled(agent.read_file("/etc/hostname").map(drop)));
    // guest-shutdown answers only when it refuses: here it does (safely).
    assert!(disabled(agent.shutdown(Shutdown::Powerdown)));
    let info = agent.info().unwrap();
    assert!(!info.supported_commands.iter().find(|c| c.name == "guest-exec").unwrap().enabled);
    agent.ping().unwrap();
}

#[test]
fn agent_killed_mid_command() {
    let mut ga = Ga::start(&[]);
    // A guest program that runs until the test is over; exec waits for it.
    let marker = ga.path("started");
    let script = format!("echo $$ > '{marker}'; exec sleep 60");
    let socket = ga.socket();
    let running = std::thread::spawn(move || {
        let mut agent = Agent::connect_unix(socket, Options::default()).unwrap();
        agent.exec("/bin/sh", &["-c", &script], &[], None)
    });
    common::eventually("the guest program to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&marker).is_ok_and(|pid| pid.ends_with('\n')).then_some(())
    });
    ga.kill();
    let outcome = running.join().unwrap();
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    let sleeper = std::fs::read_to_string(&marker).unwrap();
    let _ = Command::new("kill").arg("-9").arg(sleeper.trim()).status();

    // A command in flight when the agent dies: the machine fails it, then closes.
    ga.restart();
    let stream = Stream::connect_unix(ga.socket()).unwrap();
    let mut conn = Conn::new(stream, Client::<Heap>::new(Config::default(), 77));
    let deadline = deadline(Some(Duration::from_secs(10)));
    loop {
        match conn.machine_mut().poll().unwrap() {
            Some(Event::Synced) => break,
            Some(_) => {}
            None => conn.pump(deadline).unwrap(),
        }
    }
    let stop = Command::new("kill").arg("-STOP").arg(ga.child.id().to_string()).status().unwrap();
    assert!(stop.success());
    let ping = conn.machine_mut().execute("guest-ping", None).unwrap();
    conn.flush(deadline).unwrap();
    ga.kill();
    let mut events = Vec::new();
    while !events.contains(&"closed".to_string()) {
        match conn.machine_mut().poll().unwrap() {
            Some(Event::Failed { id }) => events.push(format!("failed {id}")),
            Some(Event::Closed) => events.push("closed".into()),
            Some(other) => panic!("{other:?}"),
            None => conn.pump(deadline).unwrap(),
        }
    }
    assert_eq!(events, [format!("failed {ping}"), "closed".into()]);

    // A new agent on the same path: a new session syncs as usual.
    ga.restart();
    ga.connect().ping().unwrap();
}

#[test]
fn a_timeout_resyncs_before_the_next_command() {
    let mut ga = Ga::start(&[]);
    let mut agent = ga.connect();
    // A stopped agent answers nothing: the command times out...
    let pid = ga.child.id().to_string();
    assert!(Command::new("kill").arg("-STOP").arg(&pid).status().unwrap().success());
    agent.set_timeout(Some(Duration::from_millis(200)));
    assert!(matches!(agent.ping(), Err(Error::Timeout)));
    // ... and once it runs again, its late reply is not taken for the next command's.
    assert!(Command::new("kill").arg("-CONT").arg(&pid).status().unwrap().success());
    agent.set_timeout(Some(Duration::from_secs(10)));
    assert!(agent.execute_raw("guest-get-timezone", None).unwrap().contains("zone"));
    agent.ping().unwrap();
    ga.kill();
}

#[test]
fn the_command_line_tool() {
    let ga = Ga::start(&[]);
    let vmwire = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
            .arg("qga")
            .arg("--socket")
            .arg(ga.socket())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = vmwire(&["guest-ping"], b"");
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(0), &b"{\"return\":{}}\n"[..]));
    let out = vmwire(&["guest-file-open", "path=/nonexistent/file"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.starts_with(b"{\"error\":{\"class\":\"GenericError\""));
    let out = vmwire(&["exec", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"], b"");
    assert_eq!(
        (out.status.code(), out.stdout.as_slice(), out.stderr.as_slice()),
        (Some(7), &b"out\n"[..], &b"err\n"[..])
    );
    let out = vmwire(&["--stdin", "exec", "--", "/usr/bin/wc", "-c"], &[7; 5000]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5000");
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let path = ga.path("put");
    assert!(vmwire(&["put", &path], &data).status.success());
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let out = vmwire(&["cat", &path], b"");
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
    // With a local path: `put GUEST_PATH LOCAL_PATH`, `cat GUEST_PATH LOCAL_PATH`.
    let local = ga.path("local");
    std::fs::write(&local, b"from a local file").unwrap();
    assert!(vmwire(&["put", &path, &local], b"").status.success());
    assert_eq!(std::fs::read(&path).unwrap(), b"from a local file");
    let copy = ga.path("copy");
    assert!(vmwire(&["cat", &path, &copy], b"").status.success());
    assert_eq!(std::fs::read(&copy).unwrap(), b"from a local file");
    let out = vmwire(&["put", &path, &ga.path("missing")], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing: No such file"));
    // A directory for LOCAL_PATH is said first, with its path; no guest file is made.
    let dir = ga.path("");
    let out = vmwire(&["put", &ga.path("not-made"), &dir], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{dir}: is a directory")));
    assert!(!std::path::Path::new(&ga.path("not-made")).exists());
}

#[test]
fn over_a_character_device() {
    // qemu-ga on one terminal (it makes its end raw), the client on another
    // (open_device must make its end raw too, or the terminal would echo
    // and line-edit the JSON), the two wired back to back like a serial cable.
    let cable = common::pty::Cable::new();
    let ga = Ga::serial(&cable.peer);
    cable.wait_raw("qemu-ga");
    let mut agent = Agent::open_device(&cable.client, Options::default()).unwrap();
    agent.ping().unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let path = ga.path("over the wire");
    agent.write_file(&path, &data).unwrap();
    assert_eq!(agent.read_file(&path).unwrap(), data);
    let out = agent.exec("/bin/echo", &["over", "a", "tty"], &[], None).unwrap();
    assert_eq!(out.stdout, b"over a tty\n");
    agent.close();
    drop(ga);
    cable.finish();
}

/// Runs `vmwire qga --socket SOCKET ARGS…`; its exit status, standard output and standard error.
fn vmwire_qga(socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_vmwire")).arg("qga").arg("--socket").arg(socket).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn exec_never_turns_a_guest_failure_into_success() {
    // As qemu-ga reports them (Linux keeps 8 bits of a code: 256 is 0 there).
    let ga = Ga::start(&[]);
    for (script, status) in
        [("exit 3", 3), ("exit 255", 255), ("exit 256", 0), ("kill -9 $$", 137), ("kill -15 $$", 143)]
    {
        let (code, _, stderr) = vmwire_qga(&ga.socket(), &["exec", "--", "/bin/sh", "-c", script]);
        assert_eq!(code, Some(status), "{script}: {stderr}");
    }
    // What another agent (or a hostile one) may report: nothing wraps to 0 or overflows.
    for (status, expected) in [
        (r#"{"exited": true, "exitcode": 256}"#, 255),
        (r#"{"exited": true, "exitcode": 512}"#, 255),
        (r#"{"exited": true, "exitcode": -1}"#, 255),
        (r#"{"exited": true, "exitcode": 9223372036854775807}"#, 255),
        (r#"{"exited": true, "signal": 128}"#, 255),
        (r#"{"exited": true, "signal": 9223372036854775807}"#, 255),
        (r#"{"exited": true, "signal": -9223372036854775808}"#, 129),
        (r#"{"exited": true, "signal": 0}"#, 129),
        (r#"{"exited": true, "exitcode": 0}"#, 0),
    ] {
        let (_dir, socket, agent) = scripted_agent(move |name, id| match name {
            "guest-exec" => returns(br#"{"pid": 1}"#, id),
            _ => returns(status.as_bytes(), id),
        });
        let (code, _, stderr) = vmwire_qga(&socket, &["exec", "--", "/bin/true"]);
        assert_eq!(code, Some(expected), "{status}: {stderr}");
        agent.join().unwrap();
    }
}

#[test]
fn a_reply_over_the_limit_says_so() {
    // 100 MB of return value: over the 64 MiB default.
    let (_dir, socket, agent) = scripted_agent(|name, id| match name {
        "guest-get-osinfo" => returns(&[&b"\""[..], &vec![b'a'; 100 << 20], b"\""].concat(), id),
        _ => returns(b"{}", id),
    });
    let (code, stdout, stderr) = vmwire_qga(&socket, &["guest-get-osinfo"]);
    assert_eq!((code, stdout.as_str()), (Some(3), ""), "{stderr}");
    assert_eq!(stderr, "vmwire: QGA: the reply to guest-get-osinfo is larger than the limit of 67108864 bytes\n");
    agent.join().unwrap();

    // The library goes on with the session after it.
    let (_dir, socket, agent) = scripted_agent(|name, id| match name {
        "guest-get-osinfo" => returns(&[&b"\""[..], &vec![b'a'; 2000], b"\""].concat(), id),
        _ => returns(b"{}", id),
    });
    let mut config = Config::default();
    config.limits.max_message = 1000;
    let mut ga = Agent::connect_unix(&socket, Options { config, ..Options::default() }).unwrap();
    match ga.execute_raw("guest-get-osinfo", None) {
        Err(Error::ReplyTooLarge { command, limit: 1000 }) => assert_eq!(command, "guest-get-osinfo"),
        other => panic!("{other:?}"),
    }
    ga.ping().unwrap();
    ga.close();
    agent.join().unwrap();
}

#[test]
fn a_monitor_socket_is_not_an_agent() {
    let qemu = common::qemu_builder().qmp().hmp().arg("-vnc").arg("unix:{dir}/vnc.sock").wait_for("vnc.sock");
    let qemu = qemu.spawn().unwrap();
    let vnc = qemu.dir().join("vnc.sock");
    for (socket, said) in [
        (qemu.qmp_path().unwrap(), r#"got QMP's greeting: `{"QMP": {"version": {"qemu": "#),
        (qemu.hmp_path().unwrap(), "got the human monitor's banner: `QEMU 7."),
        (&vnc, "got a VNC server's greeting: `RFB 003.008\\n`"),
    ] {
        let (code, stdout, stderr) = vmwire_qga(socket, &["guest-ping"]);
        assert_eq!((code, stdout.as_str()), (Some(3), ""), "{stderr}");
        assert!(
            stderr.starts_with("vmwire: QGA: expected the guest agent's answer to guest-sync-delimited, ")
                && stderr.contains(said),
            "{stderr}"
        );
    }
}

/// `vmwire xmlrpc` pointed at a guest agent's socket: qemu-ga answers the
/// request's every stray byte with a line of JSON and never an HTTP head;
/// the first byte tells (before, the call waited out its time limit).
#[test]
fn an_agent_socket_is_not_an_xmlrpc_server() {
    let ga = Ga::start(&[]);
    let url = format!("unix:{}", ga.socket().display());
    let out = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["xmlrpc", "--timeout", "120", &url, "system.listMethods"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr, "vmwire: HTTP: malformed head: not an HTTP response: it does not begin `HTTP/`\n");
}
