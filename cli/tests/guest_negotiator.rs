//! negotiator over virtio-serial, on a real Linux guest (see
//! `tests/guest/mod.rs`): the guest runs `vmwire negotiator-guest -d` on
//! `negotiator-host-to-guest.0` from init; the host reaches it through QEMU's
//! chardev socket with our library, our CLI and negotiator-common's own
//! `NegotiatorInterface`. Guest-side commands run through qemu-ga
//! (`guest-exec`).
//!
//! The topology differs from a plain socket: a port whose other end is not
//! connected polls as hung up and refuses writes, and a host that leaves
//! does not close anything in the guest.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;
mod guest;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use guest::{Guest, Shared, shared};
use vmwire_std::negotiator::{
    Commands, GUEST_TO_HOST_CHANNEL, GuestChannel, HOST_TO_GUEST_CHANNEL, HostDaemon, Options,
};
use vmwire_std::qga;

fn main() {
    let vm = Shared::default();
    let trials = vec![
        shared("library_host_calls_the_guest_daemon", &vm, library_host_calls_the_guest_daemon),
        shared("cli_host_calls_the_guest_daemon", &vm, cli_host_calls_the_guest_daemon),
        shared("python_host_calls_the_guest_daemon", &vm, python_host_calls_the_guest_daemon),
        shared("a_caller_that_leaves_gets_no_reply_the_next_gets_its_own", &vm, a_caller_that_leaves),
        shared("a_library_caller_that_gives_up_then_calls_again", &vm, a_library_caller_that_gives_up),
        shared("guest_call_with_no_host_fails_after_its_timeout_without_spinning", &vm, guest_call_with_no_host),
        shared("guest_calls_the_host_daemon", &vm, guest_calls_the_host_daemon),
        shared("non_ascii_input_and_output", &vm, non_ascii_input_and_output),
    ];
    guest::run(vm, trials);
}

/// The `vmwire` under test on the host.
const VMWIRE: &str = env!("CARGO_BIN_EXE_vmwire");

/// `vmwire` in the guest.
const GUEST_VMWIRE: &str = "/usr/local/bin/vmwire";

/// CPU ticks per second in `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS: u64 = 100;

/// A host call into the guest's daemon, with a time limit.
fn connect(guest: &Guest, timeout: Duration) -> GuestChannel {
    let options = Options { timeout: Some(timeout), ..Options::default() };
    GuestChannel::connect_with(guest.channel_path(HOST_TO_GUEST_CHANNEL), Some("test"), options)
        .unwrap_or_else(|e| panic!("connecting to the host-to-guest channel: {e}\n{}", guest.report()))
}

/// `vmwire negotiator-host --socket <host-to-guest> ARGS`, run to its end (a
/// hang guard kills it after a minute).
fn host_cli(guest: &Guest, args: &[&str]) -> Output {
    let socket = guest.channel_path(HOST_TO_GUEST_CHANNEL);
    let mut child = Command::new(VMWIRE)
        .arg("negotiator-host")
        .arg("--socket")
        .arg(&socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vmwire");
    // A hang guard, not a timing.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waiting for vmwire").is_none() {
        if std::time::Instant::now() > give_up {
            let _ = child.kill();
            panic!("vmwire negotiator-host {args:?} did not end within a minute\n{}", guest.report());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("waiting for vmwire")
}

/// Runs a shell command line in the guest through qemu-ga; returns its
/// exit code, standard output and standard error.
fn guest_sh(guest: &Guest, script: &str) -> (i64, String, String) {
    let options = qga::Options { exec_timeout: Some(Duration::from_secs(90)), ..qga::Options::default() };
    let mut agent = qga::Agent::connect_unix(guest.qga_path(), options)
        .unwrap_or_else(|e| panic!("connecting to qemu-ga: {e}\n{}", guest.report()));
    let output = agent
        .exec("/bin/sh", &["-c", script], &[], None)
        .unwrap_or_else(|e| panic!("guest-exec {script:?}: {e}\n{}", guest.report()));
    agent.close();
    let code = match output.status {
        qga::ExitStatus::Code(code) => code,
        qga::ExitStatus::Signal(signal) => panic!("{script:?} was killed by signal {signal}"),
    };
    (code, String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// CPU time (user + system, in ticks) the guest's negotiator daemon has used.
fn daemon_cpu_ticks(guest: &Guest) -> u64 {
    // Anchored at the program's path: this very script's command line holds
    // the words `negotiator-guest -d` too.
    let script = "for p in /proc/[0-9]*; do \
                  if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/usr/local/bin/vmwire negotiator-guest -d'; \
                  then cat $p/stat; fi; done";
    let (code, stat, stderr) = guest_sh(guest, script);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stat.lines().count(), 1, "one negotiator daemon expected in the guest: {stat:?}");
    // Fields after the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    assert!(fields.len() > 13, "no negotiator daemon found in the guest: {stat:?}\n{}", guest.report());
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn library_host_calls_the_guest_daemon(guest: &Guest) {
    let mut channel = connect(guest, Duration::from_secs(30));
    let commands = channel.list_commands().unwrap();
    for name in ["fail", "hello", "slow", "unicode"] {
        assert!(commands.iter().any(|c| c == name), "{name} missing from {commands:?}");
    }
    assert_eq!(channel.execute("hello", &["a b", "c"], None).unwrap(), "hello a b c");
    assert_eq!(channel.execute("hello", &["with"], Some("some input\n")).unwrap(), "hello with\nsome input\n");
    match channel.execute("fail", &["5"], None) {
        Err(vmwire_std::negotiator::Error::Remote(message)) => assert!(message.contains('5'), "{message}"),
        other => panic!("fail 5 gave {other:?}"),
    }
    // The session goes on after a failed command.
    assert_eq!(channel.execute("hello", &["again"], None).unwrap(), "hello again");
    channel.close();
}

fn cli_host_calls_the_guest_daemon(guest: &Guest) {
    let out = host_cli(guest, &["-e", "hello from the cli"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the cli\n");
    let out = host_cli(guest, &["-c"]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.lines().any(|l| l == "slow"), "{listed}");
    let out = host_cli(guest, &["-e", "fail 4"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("remote method failed"), "{out:?}");
}

/// negotiator-common's own interface, connecting to the channel's socket:
/// makes the calls given (JSON) and prints their outcomes as JSON.
const PYTHON_HOST: &str = r#"
import json, logging, socket, sys
logging.disable(logging.CRITICAL)
from negotiator_common import NegotiatorInterface, RemoteMethodFailed
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(sys.argv[1])
interface = NegotiatorInterface(conn.makefile("rw", encoding="utf-8"), "test")
def call(*args, **kw):
    try:
        return {"result": interface.call_remote_method(*args, **kw)}
    except RemoteMethodFailed as e:
        return {"error": str(e)}
print(json.dumps([call(*c["args"], **c.get("kw", {})) for c in json.loads(sys.argv[2])]), flush=True)
conn.close()
"#;

/// Runs [`PYTHON_HOST`] against the guest with `calls`; returns its outcomes.
fn python_host(guest: &Guest, calls: serde_json::Value) -> serde_json::Value {
    let python = common::require_python_module("negotiator_common");
    let out = Command::new(python)
        .arg("-c")
        .arg(PYTHON_HOST)
        .arg(guest.channel_path(HOST_TO_GUEST_CHANNEL))
        .arg(calls.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("running Python");
    assert!(out.status.success(), "Python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn python_host_calls_the_guest_daemon(guest: &Guest) {
    let outcomes = python_host(
        guest,
        serde_json::json!([
            {"args": ["execute", "hello", "python"]},
            {"args": ["execute", "hello", "in"], "kw": {"input": "put"}},
            {"args": ["list_commands"]},
            {"args": ["execute", "fail"]},
        ]),
    );
    assert_eq!(outcomes[0], serde_json::json!({"result": "hello python"}));
    assert_eq!(outcomes[1], serde_json::json!({"result": "hello in\nput"}));
    assert!(outcomes[2]["result"].as_array().unwrap().contains(&serde_json::json!("unicode")), "{outcomes}");
    assert!(outcomes[3]["error"].is_string(), "{outcomes}");
}

/// Defect 20: the host caller gives up on `slow 4` after 2 s and leaves; the
/// guest daemon must drop that reply, not hand it to the next caller.
/// Defect 19 on the daemon's side: meanwhile it must not spin on the port
/// (hung up, refusing writes) — its CPU time is the spin detector (a busy
/// loop burns seconds of CPU in those seconds; a sleeping daemon, ticks).
fn a_caller_that_leaves(guest: &Guest) {
    let before = daemon_cpu_ticks(guest);
    let out = host_cli(guest, &["-t", "2", "-e", "slow 4"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // At once, while `slow 4` still runs in the guest: this caller waits
    // behind it and must get its own reply.
    let out = host_cli(guest, &["-e", "hello next"]);
    assert!(out.status.success(), "{out:?}\n{}", guest.report());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello next\n", "{}", guest.report());

    // And after it, negotiator-common's own client gets its own too.
    let outcomes = python_host(guest, serde_json::json!([{"args": ["execute", "hello", "python", "next"]}]));
    assert_eq!(outcomes[0], serde_json::json!({"result": "hello python next"}));
    let out = host_cli(guest, &["-e", "hello last"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello last\n", "{out:?}");

    // Spin detector, not a timing: under a second of CPU for all of the above.
    let used = daemon_cpu_ticks(guest).checked_sub(before).expect("the guest daemon restarted");
    assert!(used < TICKS, "the guest daemon used {used} ticks of CPU: it spins\n{}", guest.report());
    assert!(guest.console().contains("the caller left before its response; dropped"), "{}", guest.report());
}

/// The library's own caller on one connection: a call that times out is
/// forgotten, and its late response is not taken for the next call's.
fn a_library_caller_that_gives_up(guest: &Guest) {
    let mut channel = connect(guest, Duration::from_secs(2));
    assert!(matches!(channel.execute("slow", &["3"], None), Err(vmwire_std::negotiator::Error::Timeout)));
    channel.set_timeout(Some(Duration::from_secs(30)));
    assert_eq!(channel.execute("hello", &["after"], None).unwrap(), "hello after");
    channel.close();
}

/// Defect 19 in a guest caller: with no host daemon on
/// `negotiator-guest-to-host.0`, `-t 3` fails after its 3 s with a clear
/// error, sleeping meanwhile. The shell's `cutime`/`cstime` (fields 16 and
/// 17 of its /proc stat) hold the CPU time of the vmwire it waited for: the
/// spin detector (a busy loop burns most of those 3 s; a sleeping caller, a
/// few ticks). qemu-ga's own time limit is the hang guard.
fn guest_call_with_no_host(guest: &Guest) {
    let script = format!(
        "timeout 60 {GUEST_VMWIRE} negotiator-guest -t 3 -e 'hello x'; echo \"status=$?\"; \
         cut -d' ' -f16,17 /proc/$$/stat"
    );
    let (code, stdout, stderr) = guest_sh(guest, &script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("status=1"), "{stdout}{stderr}");
    let ticks: u64 = lines.next().unwrap_or("").split_whitespace().map(|t| t.parse::<u64>().unwrap()).sum();
    assert!(stderr.contains("no host connected to character device /dev/") && stderr.contains("within 3s"), "{stderr}");
    assert!(ticks < TICKS, "vmwire negotiator-guest used {ticks} ticks of CPU waiting for the host: it spins");
}

/// The host daemon (`HostDaemon`, and `vmwire negotiator-host -d` as a
/// process) on `negotiator-guest-to-host.0`, called from the guest with
/// `vmwire negotiator-guest -e`.
fn guest_calls_the_host_daemon(guest: &Guest) {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    write_command(&commands, "where", "printf 'host %s:%s' \"$NEGOTIATOR_GUEST\" \"$*\"");
    write_command(&commands, "shout", "printf 'É %s ✓' \"$(cat)\"");
    let socket = guest.channel_path(GUEST_TO_HOST_CHANNEL);

    let daemon = HostDaemon::new(Commands::in_directory(&commands))
        .socket("vm1", &socket)
        .interval(Duration::from_millis(200))
        .spawn();
    let (code, stdout, stderr) = guest_sh(guest, &format!("{GUEST_VMWIRE} negotiator-guest -t 20 -e 'where a b'"));
    assert_eq!((code, stdout.as_str()), (0, "host vm1:a b\n"), "{stderr}");
    let (code, stdout, stderr) = guest_sh(guest, &format!("{GUEST_VMWIRE} negotiator-guest -t 20 -l"));
    assert_eq!((code, stdout.as_str()), (0, "shout\nwhere\n"), "{stderr}");
    daemon.stop();

    // The CLI's daemon, as a process.
    let mut cli = Command::new(VMWIRE)
        .args(["negotiator-host", "-d", "--socket"])
        .arg(&socket)
        .arg("--commands-dir")
        .arg(&commands)
        .arg("vm2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let script = format!("echo 'ça' > /tmp/in; {GUEST_VMWIRE} negotiator-guest -t 20 --input /tmp/in -e shout");
    let (code, stdout, stderr) = guest_sh(guest, &script);
    let _ = cli.kill();
    let _ = cli.wait();
    assert_eq!((code, stdout.as_str()), (0, "É ça ✓\n"), "{stderr}");
}

fn write_command(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Non-ASCII arguments, input and output, both ways through the port (the
/// frames themselves are ASCII: every non-ASCII character is escaped).
fn non_ascii_input_and_output(guest: &Guest) {
    let mut channel = connect(guest, Duration::from_secs(30));
    assert_eq!(channel.execute("unicode", &[], None).unwrap(), "Grüße, 世界 ✓");
    assert_eq!(channel.execute("hello", &["ünï 𝄞"], Some("çà ✓\n")).unwrap(), "hello ünï 𝄞\nçà ✓\n");
    channel.close();
    let out = host_cli(guest, &["-e", "hello 'Grüße 世界'"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello Grüße 世界\n");
    let outcomes = python_host(guest, serde_json::json!([{"args": ["execute", "unicode"]}]));
    assert_eq!(outcomes[0], serde_json::json!({"result": "Grüße, 世界 ✓"}));
}
