//! `vmwire minimega` against the fake daemon (see `fake_minimega/`: no real
//! minimega can run here).

#[path = "../../io-std/tests/common/mod.rs"]
mod common;
#[path = "../../io-std/tests/fake_minimega/mod.rs"]
mod fake_minimega;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::eventually;
use fake_minimega::{Fake, World};

fn vmwire(fake: &Fake, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .arg("minimega")
        .arg("--socket")
        .arg(fake.path())
        .args(args)
        .output()
        .expect("run vmwire")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

fn files(world: &mut World) {
    world.files.insert("/s.mm".into(), "echo one\nvm kill nosuchvm\necho two\nnamespace\n".into());
}

#[test]
fn prints_the_rendering_like_minimega_e() {
    let fake = Fake::start();
    let out = vmwire(&fake, &["version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("mmpeer: {}\n", fake_minimega::VERSION));
    assert!(out.stderr.is_empty());
    // Tables come aligned and sorted, as the daemon renders them.
    fake.world().namespaces.push(("b".into(), String::new()));
    let out = vmwire(&fake, &["namespace"]);
    assert_eq!(
        text(&out.stdout),
        "host   | namespace | vlans    | active\nmmpeer | b         |          | false\nmmpeer | minimega  | 101-4096 | true\n"
    );
}

#[test]
fn errors_go_to_stderr_and_the_status_is_not_zero() {
    let fake = Fake::with(files);
    let out = vmwire(&fake, &["vm", "kill", "nosuchvm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "Error (mmpeer): vm not found: nosuchvm\n");
    // An error mid-stream: the rest of the stream is printed all the same.
    let out = vmwire(&fake, &["read", "/s.mm"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("mmpeer: one\nmmpeer: two\nhost   | namespace"), "{stdout}");
    assert_eq!(text(&out.stderr), "Error (mmpeer): vm not found: nosuchvm\n");
}

#[test]
fn arguments_are_quoted_and_namespaced() {
    let fake = Fake::start();
    let out = vmwire(&fake, &["--namespace", "exp", "echo", "a b", "#c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "mmpeer: a b #c\n");
    assert_eq!(fake.world().requests, ["{\"Command\":\"namespace \\\"exp\\\" echo \\\"a b\\\" \\\"#c\\\"\"}"]);
    // One word: a whole command line, as written.
    let out = vmwire(&fake, &["echo \"x y\" z"]);
    assert_eq!(text(&out.stdout), "mmpeer: x y z\n");
    let out = vmwire(&fake, &["--namespace", "bad/name", "version"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_output_is_the_daemons_shape() {
    let fake = Fake::start();
    let out = vmwire(&fake, &["--json", "host", "name"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Host"], "mmpeer");
    assert_eq!(v[0]["Data"]["MemTotal"], 24105);
    assert_eq!(v[0]["Header"], serde_json::Value::Null);
    // A header and no rows: `Tabular` stays null, as the daemon sends it.
    let out = vmwire(&fake, &["--json", "vm", "info"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Header"].as_array().unwrap().len(), 44);
    assert_eq!(v[0]["Tabular"], serde_json::Value::Null);
    assert_eq!(v[0]["Data"], serde_json::json!([]));
}

#[test]
fn quit_and_unreachable_daemons() {
    let fake = Fake::start();
    let out = vmwire(&fake, &["quit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(fake.stopped());
    let out = vmwire(&fake, &["version"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot connect to"), "{}", text(&out.stderr));
}

/// `vmwire minimega` (the shell) on the fake's socket, `input` on its
/// standard input (a pipe): how it ended.
fn shell(fake: &Fake, input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .arg("minimega")
        .arg("--socket")
        .arg(fake.path())
        .env("HOME", fake.path().parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_shell_runs_lines_from_stdin() {
    let fake = Fake::start();
    let out = shell(&fake, b"version\nvm kill x\necho \"a b\"\n");
    // `vm kill x` fails, and a shell fed from a pipe says so in its status.
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("mmpeer: {}\n", fake_minimega::VERSION)), "{stdout}");
    assert!(stdout.contains("mmpeer: a b\n"), "{stdout}");
    assert!(text(&out.stderr).contains("Error (mmpeer): vm not found: x"));
}

/// A mistyped option is a usage error, not a command sent to the daemon
/// (`--bogus` went as `invalid command: --bogus`); options after the
/// command's first word are its arguments, as with `minimega -e`.
#[test]
fn options_are_checked_and_command_words_are_not() {
    let fake = Fake::start();
    for args in [&["--bogus", "version"][..], &["--max-frame", "0", "version"]] {
        let out = vmwire(&fake, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty() && text(&out.stderr).starts_with("error: "), "{}", text(&out.stderr));
    }
    let out = vmwire(&fake, &["echo", "-n", "--x"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "mmpeer: -n --x\n"));
}

#[test]
fn daemon_wide_state_is_refused_unless_allowed() {
    let fake = Fake::start();
    for args in [
        &["--namespace", "exp1", "namespace", "exp2"][..],
        &["namespace exp2"],
        &[".annotate", "false"],
        &[".json true"],
        &[".alias", "v=vm"],
        &["NameSpace 'exp2' # comment"],
    ] {
        let out = vmwire(&fake, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("vmwire: minimega: ") && stderr.contains("--allow-daemon-state"), "{stderr}");
    }
    assert!(fake.world().requests.is_empty(), "nothing reached the daemon");
    assert_eq!(fake.world().active, "minimega");
    // One-shot modes and namespaced commands go through.
    let out = vmwire(&fake, &[".annotate", "false", "version"]);
    assert_eq!(text(&out.stdout), format!("{}\n", fake_minimega::VERSION));
    let out = vmwire(&fake, &["namespace", "exp2", "echo", "x"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fake.world().active, "minimega");
    // Asked for explicitly.
    let out = vmwire(&fake, &["--allow-daemon-state", "namespace", "exp2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fake.world().active, "exp2");
}

#[test]
fn the_shell_refuses_daemon_wide_state_too() {
    let fake = Fake::start();
    let out = shell(&fake, b"namespace exp2\n.csv true\necho still here\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bare `namespace NAME`") && stderr.contains("bare `.csv`"), "{stderr}");
    assert!(text(&out.stdout).contains("mmpeer: still here\n"));
    assert_eq!(fake.world().requests, ["{\"Command\":\"echo still here\"}"]);
    assert_eq!(fake.world().active, "minimega");
}

#[test]
fn an_oversized_frame_fails_at_once_naming_the_limit() {
    let fake = Fake::start();
    // `--timeout 0` waits forever: only failing at once ends this command.
    // (Its real size: `shell seq 1 5000000` makes one frame of about 78 MB.)
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["minimega", "--socket"])
        .arg(fake.path())
        .args(["--timeout", "0", "--max-frame", "4096", "shell", "seq", "1", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("vmwire to give up on the oversized frame", std::time::Duration::from_secs(120), || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "vmwire: minimega: a frame of the reply is larger than the limit of 4096 bytes; the connection is closed, \
         as the rest of the reply could not be told from the next (--max-frame raises the limit)\n"
    );
    // Raised, the limit lets it through.
    let out = vmwire(&fake, &["--max-frame", "2000000", "shell", "seq", "1", "100000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("\n99999\n100000\n"));
}

#[test]
fn peer_text_is_escaped() {
    let fake = Fake::with(|world| {
        files(world);
        world.status_mid_stream = Some("VM 3\nERROR host: fake line\u{1b}[2J".into());
    });
    let raw = |out: &Output| {
        let all = [&out.stdout[..], &out.stderr[..]].concat();
        assert!(!all.contains(&0x1b), "a raw ESC reached the terminal: {}", String::from_utf8_lossy(&all));
    };
    // An error the daemon words with the guest's (here: the user's) text.
    let out = vmwire(&fake, &["vm", "kill", "x\nERROR host: fake line\u{1b}[2J"]);
    raw(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error (mmpeer): vm not found: x\\nERROR host: fake line\\u{1b}[2J\n");
    // A status message in the middle of a stream.
    let out = vmwire(&fake, &["read", "/s.mm"]);
    raw(&out);
    assert!(text(&out.stderr).contains("VM 3\\nERROR host: fake line\\u{1b}[2J\n"), "{}", text(&out.stderr));
    // Table cells: escaped in place; one that holds a line break would forge
    // a row of the rendering, so that frame is shown as JSON.
    let out = vmwire(&fake, &["pipe", "p", "a\u{1b}]0;title\u{7}b"]);
    assert_eq!(out.status.code(), Some(0));
    let out = vmwire(&fake, &["pipe"]);
    raw(&out);
    assert!(text(&out.stdout).contains("| a\\u{1b}]0;title\\u{7}b\n"), "{}", text(&out.stdout));
    vmwire(&fake, &["pipe", "p", "x\nmmpeer | forged"]);
    let out = vmwire(&fake, &["pipe"]);
    raw(&out);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    assert_eq!(v[0]["Tabular"][0][6], "x\nmmpeer | forged");
}

/// Pointed at QEMU's monitors by mistake, `vmwire minimega` says at once
/// that the peer is not minimega (the QMP greeting was taken for a reply
/// and exited 0; HMP's banner waited for the time limit).
#[test]
fn a_socket_that_is_not_minimegas_is_named_at_once() {
    let qemu = common::qemu_builder().qmp().hmp().spawn().unwrap();
    for socket in [qemu.qmp_path().unwrap(), qemu.hmp_path().unwrap()] {
        let out = Command::new(env!("CARGO_BIN_EXE_vmwire"))
            .args(["minimega", "--socket", socket.to_str().unwrap(), "version"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("the peer is not a minimega daemon"), "{stderr}");
    }
}
