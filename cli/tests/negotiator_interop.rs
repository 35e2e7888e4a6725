//! negotiator against negotiator-common's own Python code (0.12.2), both
//! ways, over UNIX sockets in a private temporary directory; the host daemon
//! against Python guests that come and go; and a hostile peer.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use vmwire_std::negotiator::{
    Channel, Commands, Error, GuestAgent, GuestChannel, HostDaemon, Options, find_character_device_in,
};
use vmwire_std::transport::Stream;

use common::negotiator::{CALLER as PYTHON_CALLER, Fixture, Hostile, SERVER as PYTHON_SERVER, read_line};

#[test]
fn vmwire_calls_a_python_interface() {
    let fx = Fixture::new();
    let socket = fx.path("h2g.sock");
    let commands = fx.path("commands");
    let (mut python, mut out) = fx.python(PYTHON_SERVER, &[socket.to_str().unwrap(), commands.to_str().unwrap()], true);
    let mut guest = GuestChannel::connect(&socket).unwrap();

    let listed = guest.list_commands().unwrap();
    for name in ["echo-input", "echo-args", "fail", "find-distributor-id"] {
        assert!(listed.contains(&name.to_string()), "{name} not in {listed:?}");
    }
    assert!(!listed.contains(&"README".to_string()));

    // Input with text beyond ASCII and beyond the BMP; one line comes back trimmed.
    let text = "caf\u{e9} \u{2603} \u{1F600}\tend";
    assert_eq!(guest.execute("echo-input", &[], Some(&format!("  {text}\n"))).unwrap(), text);
    assert_eq!(guest.execute("echo-args", &["\u{e9}", "a b", "--x"], None).unwrap(), "\u{e9}|a b|--x|");
    assert_eq!(guest.execute("lines", &[], None).unwrap(), "one\ntwo\n");

    // A failing command: the peer's error, naming the exit status.
    match guest.execute("fail", &[], None) {
        Err(Error::Remote(e)) => assert!(e.contains("exit code 3"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Unknown methods, in the peer's words, non-ASCII included.
    for method in ["nosuch", "m\u{e9}thode_\u{2603}"] {
        match guest.call::<serde_json::Value>(method, (), ()) {
            Err(Error::Remote(e)) => assert_eq!(e, format!("Method {method} not supported")),
            other => panic!("{other:?}"),
        }
    }
    // Typed calls and raw calls.
    let id: String = guest.call("execute", ["echo-args", "x"], serde_json::json!({"input": null})).unwrap();
    assert_eq!(id, "x|");
    assert_eq!(guest.call_raw("execute", r#"["echo-input"]"#, r#"{"input": "\u00e9"}"#).unwrap(), r#""\u00e9""#);
    // The session is still good.
    assert_eq!(guest.list_commands().unwrap().len(), listed.len());
    guest.close();
    assert_eq!(read_line(&mut out).trim(), "ended ProtocolError");
    python.wait().unwrap();
}

/// Serves one connection accepted on `listener` with `commands`, as guest `guest`.
fn serve_one(
    listener: UnixListener,
    commands: Commands,
    guest: Option<&'static str>,
) -> thread::JoinHandle<Result<(), Error>> {
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let channel = Channel::new(Stream::Unix(stream), "test socket", Options::default());
        match guest {
            Some(name) => GuestChannel::new(channel, Some(name)).serve(&commands),
            None => GuestAgent::new(channel).serve(&commands),
        }
    })
}

#[test]
fn a_python_interface_calls_the_vmwire_responder() {
    let fx = Fixture::new();
    let socket = fx.path("g2h.sock");
    let server = serve_one(UnixListener::bind(&socket).unwrap(), fx.commands(), Some("vm-\u{e9}"));
    let calls = serde_json::json!([
        {"args": ["list_commands"]},
        {"args": ["execute", "echo-input"], "kw": {"input": "caf\u{e9} \u{2603} \u{1F600}\n"}},
        {"args": ["execute", "echo-env"]},
        {"args": ["execute", "echo-args", "\u{e9}", "a b"], "kw": {"capture": true}},
        {"args": ["execute", "fail"]},
        {"args": ["execute", "sleepy"]},
        {"args": ["nosuch"]},
        {"args": ["m\u{e9}thode_\u{2603}"]},
        {"args": ["raw_write", "INJECTED-BY-REMOTE"]},
        {"args": ["enter_main_loop"]},
        {"args": ["execute", "../commands/echo-input"]},
        {"args": ["execute", "/bin/sh", "-c", "id"]},
        {"args": ["execute", ".."]},
        {"args": ["execute", "README"]},
        {"args": ["execute"]},
        {"args": ["execute", "echo-input"], "kw": {"shell": true}},
        {"args": ["list_commands", 1]},
        {"args": ["list_commands"]},
    ]);
    let (mut python, mut out) =
        fx.python(PYTHON_CALLER, &[socket.to_str().unwrap(), "connect", &calls.to_string()], false);
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&read_line(&mut out)).unwrap();
    assert!(python.wait().unwrap().success());
    server.join().unwrap().unwrap();

    let result = |i: usize| outcomes[i].get("result").cloned().unwrap_or_else(|| panic!("{i}: {}", outcomes[i]));
    let error = |i: usize| outcomes[i]["error"].as_str().unwrap_or_else(|| panic!("{i}: {}", outcomes[i])).to_string();
    assert_eq!(
        result(0),
        serde_json::json!(["echo-args", "echo-env", "echo-input", "fail", "lines", "sleepy", "slow"])
    );
    assert_eq!(result(1), "caf\u{e9} \u{2603} \u{1F600}");
    assert_eq!(result(2), "vm-\u{e9}");
    assert_eq!(result(3), "\u{e9}|a b|");
    assert_eq!(error(4), "External command \"fail\" failed with exit code 3!");
    assert_eq!(error(5), "External command \"sleepy\" ran longer than 2 s and was killed!");
    assert_eq!(error(6), "Method nosuch not supported");
    assert_eq!(error(7), "Method m\u{e9}thode_\u{2603} not supported");
    assert_eq!(error(8), "Method raw_write not supported");
    assert_eq!(error(9), "Method enter_main_loop not supported");
    assert_eq!(error(10), "Command name \"../commands/echo-input\" is not a plain file name (paths are not run)");
    assert_eq!(error(11), "Command name \"/bin/sh\" is not a plain file name (paths are not run)");
    assert_eq!(error(12), "Command name \"..\" is not a plain file name (paths are not run)");
    assert_eq!(error(13), "No command named \"README\" is available");
    assert_eq!(error(14), "execute() needs a command name");
    assert_eq!(error(15), "execute() got an unexpected keyword argument 'shell'");
    assert_eq!(error(16), "list_commands() takes no arguments");
    assert_eq!(result(17), result(0));
}

impl Hostile {
    fn new() -> Self {
        Self::serving(|listener, commands| serve_one(listener, commands, None))
    }
}

#[test]
fn hostile_length_of_ten_to_the_eighteenth() {
    let mut peer = Hostile::new();
    peer.send(b"1000000000000000000\n");
    let answer = peer.response();
    assert_eq!(answer["error"], "negotiator: a frame of 1000000000000000000 bytes is over the limit of 16777216 bytes");
    // Its body is skipped as it comes, without being kept.
    peer.send(&vec![b'{'; 1 << 20]);
    match peer.finish() {
        Err(Error::Protocol(e)) => {
            assert_eq!(
                e,
                vmwire_proto::negotiator::Error::TruncatedBody { length: 1_000_000_000_000_000_000, received: 1 << 20 }
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_endless_digit_line() {
    let mut peer = Hostile::new();
    peer.send(&[b'7'; 4096]);
    // The framing is lost: no answer, the responder ends the session.
    let mut rest = Vec::new();
    (&peer.stream).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    match peer.server.join().unwrap() {
        Err(Error::Protocol(vmwire_proto::negotiator::Error::LengthLineTooLong { limit: 24, offset: 0 })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_short_body_then_end() {
    let mut peer = Hostile::new();
    peer.works();
    peer.send(b"100\n{\"method\": ");
    match peer.finish() {
        Err(Error::Protocol(vmwire_proto::negotiator::Error::TruncatedBody { length: 100, received: 11 })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_requests_are_answered_and_the_session_goes_on() {
    let mut peer = Hostile::new();
    assert_eq!(peer.error("{nope"), "negotiator: frame body: invalid JSON at byte 3: expected '\"' or '}', found 'n'");
    peer.works();
    assert_eq!(peer.error(""), "negotiator: frame body: invalid JSON at byte 83: no value");
    peer.works();
    assert_eq!(peer.error("[1, 2]"), "negotiator: request is not a JSON object");
    assert_eq!(peer.error(r#"{"command": "list_commands"}"#), "negotiator: request without a \"method\" string");
    assert_eq!(peer.error(r#"{"method": "raw_write", "args": ["x"]}"#), "Method raw_write not supported");
    assert_eq!(peer.error(r#"{"method": "_private"}"#), "Method _private not supported");
    assert_eq!(
        peer.error(r#"{"method": "execute", "args": ["../../bin/sh"]}"#),
        "Command name \"../../bin/sh\" is not a plain file name (paths are not run)"
    );
    assert_eq!(
        peer.error(r#"{"method": "execute", "args": ["commands/echo-input"]}"#),
        "Command name \"commands/echo-input\" is not a plain file name (paths are not run)"
    );
    assert_eq!(
        peer.error(r#"{"method": "execute", "args": [["echo-input"]]}"#),
        "execute() argument 0 is not a string"
    );
    assert_eq!(
        peer.error(&format!("{}1{}", "[".repeat(200), "]".repeat(200))),
        "negotiator: frame body: JSON at byte 551: nesting deeper than the limit of 128"
    );
    peer.works();
    assert!(peer.finish().is_ok());
}

#[test]
fn caller_against_a_hostile_responder() {
    let fx = Fixture::new();
    let socket = fx.path("evil.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let evil = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(b"1000000000000000000\n").unwrap();
        let _ = s.read(&mut buf);
        s.write_all(&[b'x'; 64]).unwrap();
        let _ = s.read(&mut buf);
    });
    let options = Options { timeout: Some(Duration::from_secs(30)), ..Options::default() };
    let mut guest = GuestChannel::connect_with(&socket, None, options).unwrap();
    match guest.list_commands() {
        Err(Error::Protocol(vmwire_proto::negotiator::Error::TooLarge { length, limit })) => {
            assert_eq!((length, limit), (1_000_000_000_000_000_000, 16 << 20));
        }
        other => panic!("{other:?}"),
    }
    // The peer's next bytes are the oversized body, skipped; the session can
    // only end by the timeout or the peer closing.
    guest.set_timeout(Some(Duration::from_millis(200)));
    assert!(matches!(guest.list_commands(), Err(Error::Timeout)));
    drop(guest);
    evil.join().unwrap();
}

#[test]
fn host_daemon_serves_guests_that_come_and_go() {
    let fx = Fixture::new();
    let socket = fx.path("vm-a.g2h.sock");
    let daemon = HostDaemon::new(fx.commands()).socket("vm-a", &socket).interval(Duration::from_millis(50)).spawn();
    let calls = serde_json::json!([
        {"args": ["execute", "echo-env"]},
        {"args": ["execute", "echo-input"], "kw": {"input": "\u{1F600}"}},
        {"args": ["raw_write", "x"]},
    ])
    .to_string();
    // The guest comes, calls, goes, comes back: a new worker answers it.
    for round in 0..2 {
        let (mut python, mut out) = fx.python(PYTHON_CALLER, &[socket.to_str().unwrap(), "listen", &calls], true);
        let outcomes: serde_json::Value = serde_json::from_str(&read_line(&mut out)).unwrap();
        assert_eq!(
            outcomes,
            serde_json::json!([
                {"result": "vm-a"},
                {"result": "\u{1F600}"},
                {"error": "Method raw_write not supported"},
            ]),
            "round {round}"
        );
        assert!(python.wait().unwrap().success());
    }
    daemon.stop();
}

#[test]
fn guest_port_discovery_reads_sysfs_layout() {
    let sys = tempfile::tempdir().unwrap();
    std::fs::create_dir(sys.path().join("vport2p1")).unwrap();
    std::fs::write(sys.path().join("vport2p1/name"), "negotiator-guest-to-host.0\n").unwrap();
    assert_eq!(find_character_device_in(sys.path(), "negotiator-guest-to-host.0").unwrap(), Path::new("/dev/vport2p1"));
}

// --- the vmwire command-line tools, against Python peers and a real virsh ---

fn vmwire(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cli_exit_statuses_are_the_originals() {
    // No action: usage, status 0. A bad option: status 1 (not clap's 2).
    let (code, out, _) = vmwire(&["negotiator-host"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--list-guests"), "{out}");
    assert_eq!(vmwire(&["negotiator-host", "--bogus"], &[]).0, 1);
    assert_eq!(vmwire(&["negotiator-guest", "-t", "soon", "-l"], &[]).0, 1);
    assert_eq!(vmwire(&["negotiator-guest", "--help"], &[]).0, 0);
    // A target is needed for -c.
    assert_eq!(vmwire(&["negotiator-host", "-c"], &[]).0, 1);
}

#[test]
fn cli_against_a_python_interface() {
    let fx = Fixture::new();
    let commands = fx.path("commands");
    for (args, code, expect) in [
        (&["-c"][..], 0, "echo-args\necho-env\necho-input\nfail\n"),
        (&["-e", "echo-args 'a b' c\\ d"], 0, "a b|c d|\n"),
        (&["-e", "fail"], 1, ""),
    ] {
        let socket = fx.path("cli.sock");
        let _ = std::fs::remove_file(&socket);
        let (mut python, _) = fx.python(PYTHON_SERVER, &[socket.to_str().unwrap(), commands.to_str().unwrap()], true);
        let mut argv = vec!["negotiator-host", "--socket", socket.to_str().unwrap()];
        argv.extend_from_slice(args);
        let (got, out, err) = vmwire(&argv, &[]);
        assert_eq!(got, code, "{args:?}: {err}");
        if code == 0 {
            assert!(out.starts_with(expect) || args[0] == "-c", "{args:?}: {out}");
            if args[0] == "-c" {
                for name in expect.lines() {
                    assert!(out.lines().any(|l| l == name), "{name} in {out}");
                }
            }
        } else {
            assert!(err.contains("exit code 3"), "{err}");
        }
        let _ = python.kill();
        let _ = python.wait();
    }
}

#[test]
fn cli_guest_daemon_answers_a_python_host() {
    let fx = Fixture::new();
    let socket = fx.path("h2g.sock");
    let calls =
        serde_json::json!([{"args": ["list_commands"]}, {"args": ["execute", "echo-args", "\u{2603}"]}]).to_string();
    let (mut python, mut out) = fx.python(PYTHON_CALLER, &[socket.to_str().unwrap(), "listen", &calls], true);
    let commands = fx.path("commands");
    let daemon = thread::spawn(move || {
        vmwire(
            &["negotiator-guest", "-d", "-c", socket.to_str().unwrap(), "--commands-dir", commands.to_str().unwrap()],
            &[],
        )
    });
    let outcomes: serde_json::Value = serde_json::from_str(&read_line(&mut out)).unwrap();
    assert_eq!(outcomes[1], serde_json::json!({"result": "\u{2603}|"}));
    assert_eq!(outcomes[0]["result"].as_array().unwrap().len(), 7);
    assert!(python.wait().unwrap().success());
    // The host closed the socket: the daemon (on a socket, not a device) ends well.
    assert_eq!(daemon.join().unwrap().0, 0);
}

#[test]
fn cli_finds_guests_and_channels_with_virsh() {
    common::require_binary("virsh", "libvirt-clients");
    let fx = Fixture::new();
    let h2g = fx.path("vm1.h2g.sock");
    let node = fx.path("node.xml");
    // libvirt's test driver: a real virsh, guests defined by this file.
    std::fs::write(
        &node,
        format!(
            "<node>
  <domain type='test'><name>vm one</name><memory>65536</memory><os><type>hvm</type></os>
    <devices>
      <channel type='unix'><source mode='bind' path='{}'/><target type='virtio' name='negotiator-host-to-guest.0'/></channel>
      <channel type='unix'><source mode='bind' path='/nonexistent/g2h'/><target type='virtio' name='negotiator-guest-to-host.0'/></channel>
    </devices>
  </domain>
  <domain type='test'><name>plain</name><memory>65536</memory><os><type>hvm</type></os></domain>
</node>",
            h2g.display()
        ),
    )
    .unwrap();
    let uri = PathBuf::from(format!("test://{}", node.display()));
    let env = [("LIBVIRT_DEFAULT_URI", uri.as_path())];
    let (code, out, err) = vmwire(&["negotiator-host", "-g"], &env);
    assert_eq!((code, out.as_str()), (0, "vm one\n"), "{err}");

    let commands = fx.path("commands");
    let (mut python, _) = fx.python(PYTHON_SERVER, &[h2g.to_str().unwrap(), commands.to_str().unwrap()], true);
    let (code, out, err) = vmwire(&["negotiator-host", "vm one", "-e", "echo-args x"], &env);
    assert_eq!((code, out.as_str()), (0, "x|\n"), "{err}");
    let _ = python.kill();
    let _ = python.wait();

    // A guest without the channel, and one that does not exist.
    let (code, _, err) = vmwire(&["negotiator-host", "plain", "-c"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("has no negotiator-host-to-guest.0 channel"), "{err}");
    assert_eq!(vmwire(&["negotiator-host", "nobody", "-c"], &env).0, 1);
}

#[test]
fn without_virsh_the_error_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = vmwire(&["negotiator-host", "-g"], &[("PATH", empty.path())]);
    assert_eq!(code, 1);
    assert!(err.contains("virsh is not installed"), "{err}");
}

use common::pty::thread_cpu_ticks;

#[test]
fn a_call_on_a_hung_up_device_waits_for_its_deadline_without_spinning() {
    // A virtio-serial port with no host polls as hung up at once and refuses
    // writes (EAGAIN). So does a pseudo-terminal whose slave side was
    // closed, once its buffer is full: the same test without a guest.
    let master = common::pty::hung_up_and_full();

    let options = Options { timeout: Some(Duration::from_secs(2)), ..Options::default() };
    let mut channel = Channel::new(Stream::Device(master), "the pty", options);
    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let before = thread_cpu_ticks();
        let error = channel.list_commands().unwrap_err();
        let _ = done.send((error, thread_cpu_ticks() - before));
    });
    // A hang guard: a transport that ignores its deadline never returns.
    let (error, used) = outcome.recv_timeout(Duration::from_secs(60)).expect("the call ignored its 2 s deadline");
    assert!(matches!(error, Error::NotConnected { .. }), "{error:?}");
    assert_eq!(error.to_string(), "negotiator: no host connected to the pty within 2s");
    // A spin detector, not a timing: a busy loop burns most of the 2 s.
    assert!(used < 50, "{used} ticks of CPU in 2 s: the transport spins on a hung-up device");
}

/// A host daemon given a socket that is not there (yet), and a commands
/// directory that is not there, says so once each and keeps looking (it
/// printed nothing, and the debug line left the path out).
#[test]
fn a_daemon_says_what_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, commands) = (dir.path().join("h2g.sock"), dir.path().join("commands"));
    // `timeout`: a daemon that said nothing would end, and the test fail, not hang.
    let mut daemon = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_vmwire"))
        .arg("negotiator-host")
        .arg("-d")
        .arg("--socket")
        .arg(&socket)
        .arg("--commands-dir")
        .arg(&commands)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(daemon.stderr.take().unwrap());
    let mut said = String::new();
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
    }
    // SIGTERM to `timeout` reaches the daemon too (SIGKILL would leave it running).
    assert!(Command::new("kill").arg(daemon.id().to_string()).status().unwrap().success());
    daemon.wait().unwrap();
    assert!(said.contains(&format!("commands directory {}: No such file", commands.display())), "{said}");
    assert!(said.contains(&format!("cannot connect to {}: No such file", socket.display())), "{said}");
}

/// Pointed at QEMU's QMP socket, the tool says what came (its greeting is
/// no negotiator frame), not that the channel was closed.
#[test]
fn a_qmp_socket_is_no_negotiator_channel() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let socket = qemu.qmp_path().unwrap().to_str().unwrap().to_owned();
    let (code, out, err) = vmwire(&["negotiator-host", "--socket", &socket, "-c"], &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.ends_with("negotiator: expected a length in decimal digits, found '{' at byte 0\n"), "{err}");
}
