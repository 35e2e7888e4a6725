//! The `vmwire` shells (`vmwire qmp`, `vmwire qga` without a command), run
//! as a process against the real peers: a QEMU started per test
//! (`-machine none -S`, QMP on a UNIX socket) and a qemu-ga
//! (`--method unix-listen`). Lines are fed on a pipe, or typed on a
//! pseudo-terminal that is the shell's controlling terminal (so that Ctrl-C
//! is what it is for a user).

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmwire_std::qemu::Qemu;

/// Generous: a guard against a hang, not a timing.
const HANG_GUARD: Duration = Duration::from_secs(20);

fn qemu() -> Qemu {
    Qemu::builder().qmp().spawn().expect("QEMU starts (apt-get install qemu-system-x86)")
}

fn socket(qemu: &Qemu) -> &Path {
    qemu.qmp_path().expect("a QMP socket")
}

/// `vmwire SUBCOMMAND --timeout 30 ARGS…`: a generous limit for each reply,
/// for a loaded machine (no test waits for a timeout).
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vmwire"));
    command.args(&args[..1]).args(["--timeout", "30"]).args(&args[1..]);
    command
}

/// Runs `vmwire ARGS` with `input` on its standard input (a pipe).
fn vmwire(args: &[&str], input: &str) -> Output {
    let mut child = command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    finish(child)
}

/// Waits (with a hang guard) for `child` to exit, and collects its output.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(HANG_GUARD) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("vmwire did not exit");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON lines of standard output; every line must be one.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}")))
        .collect()
}

fn node_names(qemu: &Qemu) -> Vec<String> {
    let out = vmwire(&["qmp", "--socket", socket(qemu).to_str().unwrap(), "query-named-block-nodes"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    v["return"].as_array().unwrap().iter().map(|n| n["node-name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn key_value_and_json_values_reach_qemu_as_typed() {
    let qemu = qemu();
    let sock = socket(&qemu).to_str().unwrap();
    let lines = concat!(
        "blockdev-add driver=raw node-name=k file={\"driver\":\"null-co\"}\n",
        "blockdev-add {\"driver\":\"null-co\",\"node-name\":\"j\"}\n",
        // With spaces inside the JSON value, and a JSON string value.
        "blockdev-add driver=raw node-name=\"sp\" file={\"driver\": \"null-co\", \"size\": 4096}\n",
        // Dotted keys nest; numbers and booleans are JSON; 'x' is a string.
        "blockdev-add driver=null-co node-name='d' size=8192 read-only=true\n",
    );
    let out = vmwire(&["qmp", "--socket", sock], lines);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(json_lines(&out), vec![serde_json::json!({"return": {}}); 4]);
    let names = node_names(&qemu);
    for name in ["k", "j", "sp", "d"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
}

#[test]
fn a_value_that_looks_like_json_but_is_not_is_refused() {
    let qemu = qemu();
    let sock = socket(&qemu).to_str().unwrap();
    let out = vmwire(&["qmp", "--socket", sock], "blockdev-add driver=raw node-name=z file={\"driver\":null-co}\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("file: {\"driver\":null-co} is not valid JSON"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing sent, nothing printed: {}", text(&out.stdout));
    for bad in ["x=[1,", "x=\"unterminated"] {
        let out = vmwire(&["qmp", "--socket", sock, "query-status", bad], "");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is not valid JSON"), "{}", text(&out.stderr));
    }
    assert!(!node_names(&qemu).iter().any(|n| n == "z"));
}

#[test]
fn quit_ends_the_shell_with_status_0_and_reads_no_further() {
    let qemu = qemu();
    let out = vmwire(&["qmp", "--socket", socket(&qemu).to_str().unwrap()], "quit\nquery-status\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "the reply to quit and SHUTDOWN, nothing for query-status: {lines:?}");
    assert_eq!(lines[0], serde_json::json!({"return": {}}));
    assert_eq!(lines[1]["event"], "SHUTDOWN");
    assert!(stderr.contains("QEMU quit; the shell ends"), "{stderr}");
}

#[test]
fn the_peer_going_away_ends_the_shell_with_status_3() {
    let mut qemu = qemu();
    // Standard input stays open: the shell must not wait for another line.
    let mut child = command(&["qmp", "--socket", socket(&qemu).to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"query-status\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"{\"return\":");
    qemu.kill().unwrap();
    let out = finish(child);
    drop(stdin);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("QEMU closed the connection; the shell ends"), "{stderr}");
}

#[test]
fn a_raw_json_command_keeps_its_id_in_the_shell_and_one_shot() {
    let qemu = qemu();
    let sock = socket(&qemu).to_str().unwrap();
    let lines = concat!(
        "{\"execute\": \"query-status\", \"id\": \"mine\"}\n",
        "{\"execute\": \"query-status\", \"id\": 7}\n",
        "{\"execute\": \"query-status\"}\n",
        "{\"execute\": \"nope\", \"id\": \"x\"}\n",
        "{\"execute\": \"query-status\", \"id\": -1}\n",
    );
    // QEMU's own error for `nope` (with checking on, the schema refuses it first).
    let out = vmwire(&["qmp", "--no-check", "--socket", sock], lines);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a command failed; stderr: {stderr}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["id"], "mine");
    assert_eq!(lines[0]["return"]["status"], "prelaunch");
    assert_eq!(lines[1]["id"], 7);
    assert!(lines[2].get("id").is_none());
    assert_eq!(
        lines[3],
        serde_json::json!({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": "x"})
    );
    assert!(stderr.contains("\"id\" must be a string"), "{stderr}");

    let out = vmwire(&["qmp", "--socket", sock, r#"{"execute":"query-status","id":"one-shot"}"#], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["id"], "one-shot");
    // QEMU's error keeps the id too (sent unchecked); checked, the schema
    // refuses the stray member before it is sent: a usage error.
    let bad = r#"{"execute":"stop","arguments":{"x":1},"id":2}"#;
    let out = vmwire(&["qmp", "--no-check", "--socket", sock, bad], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["id"], 2);
    let out = vmwire(&["qmp", "--socket", sock, bad], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stop: x: no such member; not sent"), "{}", text(&out.stderr));
    let out = vmwire(&["qmp", "--socket", sock, r#"{"execute":"stop","bogus":1}"#], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown member \"bogus\""), "{}", text(&out.stderr));
}

#[test]
fn help_is_local_verbose_and_log_show_every_message() {
    let qemu = qemu();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qmp.log");
    let args = ["qmp", "--socket", socket(&qemu).to_str().unwrap(), "-v", "--log", log.to_str().unwrap()];
    let out = vmwire(&args, "help\nquery-status\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("transaction("), "{stdout}");
    assert!(stdout.contains("help [COMMAND]"), "{stdout}");
    let json: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    // -v: the command as sent, then the reply with its id.
    let sent: serde_json::Value = serde_json::from_str(json[json.len() - 2]).unwrap();
    let got: serde_json::Value = serde_json::from_str(json[json.len() - 1]).unwrap();
    assert_eq!(sent["execute"], "query-status");
    assert_eq!(got["id"], sent["id"]);
    // The log has the same two messages, and `help` never went to QEMU.
    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<serde_json::Value> = logged.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(logged, vec![sent, got]);
    // help NAME: the command's arguments or the event's data, from QEMU's schema.
    let out = vmwire(&args[..3], "help blockdev-del\nhelp SHUTDOWN\nhelp no-such-command\n");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("blockdev-del (command)") && stdout.contains("node-name"), "{stdout}");
    assert!(stdout.contains("SHUTDOWN (event)") && stdout.contains("guest"), "{stdout}");
    assert!(text(&out.stderr).contains("no-such-command: QEMU has no such command or event"));
    assert_eq!(out.status.code(), Some(1));
}

/// A secret's key goes to QEMU, not to the log: `*`s in its place.
#[test]
fn the_log_keeps_no_password() {
    let qemu = qemu();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qmp.log");
    let args = ["qmp", "--no-check", "--socket", socket(&qemu).to_str().unwrap(), "--log", log.to_str().unwrap()];
    let out =
        vmwire(&args, "object-add qom-type=secret id=key0 data=s3cret\nqom-get path=/objects/key0 property=type\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0], serde_json::json!({"return": {}}));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("s3cret") && logged.contains(r#""data":"******""#), "{logged}");
}

#[test]
fn transaction_groups_actions_into_one_command() {
    let qemu = qemu();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qmp.log");
    let sock = socket(&qemu).to_str().unwrap();
    let lines = concat!(
        "blockdev-add driver=null-co node-name=n0\n",
        "transaction(\n",
        "block-dirty-bitmap-add node=n0 name=bm0\n",
        "block-dirty-bitmap-add node=n0 name=bm1 persistent=false\n",
        ")\n",
        "query-named-block-nodes flat=true\n",
    );
    let out = vmwire(&["qmp", "--socket", sock, "--log", log.to_str().unwrap()], lines);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1], serde_json::json!({"return": {}}));
    let bitmaps: Vec<&str> = lines[2]["return"][0]["dirty-bitmaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(bitmaps.len(), 2, "{bitmaps:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let transaction: serde_json::Value =
        serde_json::from_str(logged.lines().find(|l| l.contains("\"transaction\"")).unwrap()).unwrap();
    assert_eq!(
        transaction["arguments"]["actions"],
        serde_json::json!([
            {"type": "block-dirty-bitmap-add", "data": {"node": "n0", "name": "bm0"}},
            {"type": "block-dirty-bitmap-add", "data": {"node": "n0", "name": "bm1", "persistent": false}},
        ])
    );
}

#[test]
fn a_piped_shell_prints_only_replies_and_exits_1_when_a_command_failed() {
    let qemu = qemu();
    let sock = socket(&qemu).to_str().unwrap();
    let input = "query-status\nno-such-command\nquery-status\n";
    let out = vmwire(&["qmp", "--no-check", "--socket", sock], input);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "no banner, no prompt: {lines:?}");
    assert_eq!(lines[1]["error"]["class"], "CommandNotFound");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // Checked against the schema (the default), the command is refused
    // before it is sent: said on stderr, and the status is the same.
    let out = vmwire(&["qmp", "--socket", sock], input);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out).len(), 2);
    assert!(text(&out.stderr).contains("no-such-command: no such command"), "{}", text(&out.stderr));
    let out = vmwire(&["qmp", "--socket", sock], "query-status\n");
    assert_eq!(out.status.code(), Some(0));
}

/// A pseudo-terminal whose other side is `vmwire`'s controlling terminal,
/// `vmwire` run with a private `HOME` (its shell history there).
struct Terminal {
    home: tempfile::TempDir,
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
    /// How much of `seen` [`Terminal::expect`] has gone past.
    mark: usize,
    child: Option<Child>,
}

impl Terminal {
    fn spawn(args: &[&str]) -> Terminal {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let home = tempfile::tempdir().unwrap();
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = PathBuf::from(ptsname(&master, Vec::new()).unwrap().to_str().unwrap());
        let size = rustix::termios::Winsize { ws_row: 40, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&master, size).unwrap();
        let master = File::from(master);
        let tty = || std::fs::OpenOptions::new().read(true).write(true).open(&name).unwrap();
        // setsid -c: a session of its own, the terminal its controlling one.
        let child = Command::new("setsid")
            .arg("-c")
            .arg(env!("CARGO_BIN_EXE_vmwire"))
            .args(&args[..1])
            .args(["--timeout", "30"])
            .args(&args[1..])
            .env("HOME", home.path())
            .env("TERM", "xterm")
            .stdin(tty())
            .stdout(tty())
            .stderr(tty())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { home, master, seen, mark: 0, child: Some(child) }
    }

    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until `text` appears past the mark, and moves the mark past it.
    fn expect(&mut self, text: &str) {
        let give_up = std::time::Instant::now() + HANG_GUARD;
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if let Some(i) = seen[self.mark..].windows(text.len()).position(|w| w == text.as_bytes()) {
                self.mark += i + text.len();
                return;
            }
            let rest = String::from_utf8_lossy(&seen[self.mark..]).into_owned();
            assert!(std::time::Instant::now() < give_up, "gave up waiting for {text:?}; after the mark: {rest:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the shell waits for a reply: the terminal as the line
    /// editor leaves it between prompts (canonical, Ctrl-C a SIGINT), not
    /// in the editor's raw mode.
    fn expect_pending(&self) {
        use rustix::termios::LocalModes;
        common::eventually("the shell waiting for a reply", HANG_GUARD, || {
            let t = rustix::termios::tcgetattr(&self.master).unwrap();
            t.local_modes.contains(LocalModes::ICANON | LocalModes::ISIG).then_some(())
        });
    }

    fn output(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.take().unwrap();
        finish(child).status.code()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(qemu: &Qemu, signal: &str) {
    assert!(Command::new("kill").arg(signal).arg(qemu.pid().to_string()).status().unwrap().success());
}

#[test]
fn ctrl_c_abandons_a_pending_command_and_history_is_kept() {
    let qemu = qemu();
    let mut term = Terminal::spawn(&["qmp", "--socket", socket(&qemu).to_str().unwrap()]);
    // The banner, with QEMU's version.
    term.expect("Connected to QEMU 7.");
    term.expect("(QMP) ");
    // Ctrl-C at the prompt, as in bash: the line is dropped, a new prompt.
    term.type_keys("query-sta\x03");
    term.expect("(QMP) ");
    // QEMU stopped: the command waits for its reply; Ctrl-C abandons it.
    signal(&qemu, "-STOP");
    term.type_keys("query-name\r");
    term.expect_pending();
    term.type_keys("\x03");
    term.expect("interrupted");
    term.expect("(QMP) ");
    // QEMU goes on: its late reply is discarded, the next command gets its own.
    signal(&qemu, "-CONT");
    term.type_keys("{\"execute\": \"query-status\", \"id\": \"after\"}\r");
    term.expect("\"id\":\"after\"}");
    term.expect("(QMP) ");
    // The history is written as lines are entered: there before the shell ends.
    let history = term.home.path().join(".vmwire_qmp_history");
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("query-name\n") && saved.contains("\"id\": \"after\"}"), "{saved}");
    // Ctrl-D leaves, status 0.
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
    let output = term.output();
    assert!(!output.contains("{\"return\":{}}"), "the abandoned reply was discarded: {output}");
}

/// A one-shot `vmwire hmp` on a terminal escapes what QEMU printed (here a
/// chardev id with a title-setting sequence), as the shell does.
#[test]
fn one_shot_hmp_output_is_escaped_on_a_terminal() {
    let qemu = Qemu::builder().qmp().hmp().spawn().expect("QEMU starts");
    let mut qmp = vmwire_std::qmp::Qmp::connect_unix(socket(&qemu), Default::default()).unwrap();
    let id = r#"{"id": "ev\u001b]0;PWNED\u0007il", "backend": {"type": "null", "data": {}}}"#;
    qmp.execute_raw("chardev-add", Some(id)).unwrap();
    let hmp = qemu.hmp_path().unwrap().to_str().unwrap();
    let mut term = Terminal::spawn(&["hmp", "--socket", hmp, "info", "chardev"]);
    term.expect("il: filename=null");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
    let output = term.output();
    assert!(output.contains(r"ev\u{1b}]0;PWNED\u{7}il: filename=null") && !output.contains('\u{1b}'), "{output}");
}

/// Lines that arrive together at an idle prompt (pasted) all run, in turn.
#[test]
fn lines_pasted_at_the_prompt_all_run() {
    let qemu = qemu();
    let mut term = Terminal::spawn(&["qmp", "--socket", socket(&qemu).to_str().unwrap()]);
    term.expect("(QMP) ");
    term.type_keys("query-status\rquery-name\rquery-kvm\r");
    term.expect("\"singlestep\"");
    term.expect("{\"return\":{}}");
    term.expect("\"present\"");
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
}

/// A line that carries a password is run but not kept in the history.
#[test]
fn the_history_keeps_no_password() {
    let qemu = qemu();
    let mut term = Terminal::spawn(&["qmp", "--socket", socket(&qemu).to_str().unwrap()]);
    term.expect("(QMP) ");
    term.type_keys("object-add qom-type=secret id=key0 data=s3cret\r");
    term.expect("{\"return\":{}}");
    term.expect("(QMP) ");
    term.type_keys("qom-get path=/objects/key0 property=type\r");
    term.expect("(QMP) ");
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
    let saved = std::fs::read_to_string(term.home.path().join(".vmwire_qmp_history")).unwrap();
    assert!(saved.contains("qom-get path=/objects/key0") && !saved.contains("s3cret"), "{saved}");
}

#[test]
fn a_dead_peer_ends_the_shell_at_the_prompt_and_restores_the_terminal() {
    let mut qemu = qemu();
    let mut term = Terminal::spawn(&["qmp", "--socket", socket(&qemu).to_str().unwrap()]);
    term.expect("(QMP) ");
    term.type_keys("query-st");
    qemu.kill().unwrap();
    term.expect("QEMU closed the connection; the shell ends");
    let settings = rustix::termios::tcgetattr(&term.master).unwrap();
    assert_eq!(term.exit_code(), Some(3), "{}", term.output());
    use rustix::termios::LocalModes;
    assert!(settings.local_modes.contains(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG));
}

/// The HMP and guest agent shells notice at once, at the prompt, that
/// their peer has gone (they read while the user is idle, as the QMP shell does).
#[test]
fn the_hmp_and_qga_shells_notice_a_dead_peer_at_the_prompt() {
    let mut qemu = Qemu::builder().hmp().spawn().expect("QEMU starts");
    let mut term = Terminal::spawn(&["hmp", "--socket", qemu.hmp_path().unwrap().to_str().unwrap()]);
    term.expect("(qemu) ");
    qemu.kill().unwrap();
    term.expect("monitor closed; the shell ends");
    assert_eq!(term.exit_code(), Some(3), "{}", term.output());

    let mut ga = Ga::start(&[]);
    let mut term = Terminal::spawn(&["qga", "--socket", ga.dir.path().join("qga.sock").to_str().unwrap()]);
    term.expect("(QGA) ");
    ga.kill();
    term.expect("connection closed; the shell ends");
    assert_eq!(term.exit_code(), Some(3), "{}", term.output());
}

use common::qga::Ga;

#[test]
fn the_qga_shell_runs_exec_cat_and_put() {
    let ga = Ga::start(&[]);
    let dir = ga.dir.path();
    let local = dir.join("local.txt");
    std::fs::write(&local, "from the host\n").unwrap();
    let guest = dir.join("guest file.txt");
    let lines = format!(
        "exec -- /bin/sh -c 'echo out; echo err >&2'\nput '{guest}' {local}\ncat '{guest}'\nexec /bin/sh -c 'exit 3'\nguest-ping\n",
        guest = guest.display(),
        local = local.display()
    );
    let out = vmwire(&["qga", "--socket", dir.join("qga.sock").to_str().unwrap()], &lines);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout, "out\nfrom the host\n{\"return\":{}}\n", "stderr: {stderr}");
    assert!(stderr.contains("err\n"), "{stderr}");
    assert!(stderr.contains("/bin/sh exited with status 3"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "the program that exited 3 failed");
    assert_eq!(std::fs::read_to_string(&guest).unwrap(), "from the host\n");
    // `cat GUEST LOCAL` copies to a local file.
    let copy = dir.join("copy.txt");
    let line = format!("cat '{}' {}\n", guest.display(), copy.display());
    let out = vmwire(&["qga", "--socket", dir.join("qga.sock").to_str().unwrap()], &line);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "from the host\n");
    // Into a pipe a file and a program's output go byte for byte: no line end added.
    std::fs::write(&local, "no line end").unwrap();
    let line = format!("cat {}\nexec -- /usr/bin/printf abc\nguest-ping\n", local.display());
    let out = vmwire(&["qga", "--socket", dir.join("qga.sock").to_str().unwrap()], &line);
    assert_eq!(text(&out.stdout), "no line endabc{\"return\":{}}\n", "{}", text(&out.stderr));
}

#[test]
fn the_hmp_shell_ends_after_quit_and_reads_no_further() {
    let qemu = Qemu::builder().hmp().spawn().expect("QEMU starts");
    let sock = qemu.hmp_path().unwrap().to_str().unwrap();
    let out = vmwire(&["hmp", "--socket", sock], "info status\nquit\ninfo status\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "VM status: paused (prelaunch)\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn ctrl_c_in_the_qga_shell_discards_the_late_reply() {
    let ga = Ga::start(&[]);
    let sock = ga.dir.path().join("qga.sock");
    let mut term = Terminal::spawn(&["qga", "--socket", sock.to_str().unwrap()]);
    term.expect("QEMU guest agent ");
    term.expect("(QGA) ");
    assert!(Command::new("kill").arg("-STOP").arg(ga.child.id().to_string()).status().unwrap().success());
    term.type_keys("guest-info\r");
    term.expect_pending();
    term.type_keys("\x03");
    term.expect("interrupted");
    term.expect("(QGA) ");
    assert!(Command::new("kill").arg("-CONT").arg(ga.child.id().to_string()).status().unwrap().success());
    term.type_keys("guest-ping\r");
    term.expect("{\"return\":{}}");
    // Keys typed while a reply is pending are not the line editor's: wait.
    term.expect("(QGA) ");
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
    assert!(!term.output().contains("supported_commands"), "the late reply was discarded: {}", term.output());
}

/// Ctrl-C during `exec` gives the program up (it goes on in the guest):
/// the next line runs at once, not when the program ends.
#[test]
fn ctrl_c_in_the_qga_shell_gives_up_a_guest_program() {
    let ga = Ga::start(&[]);
    let sock = ga.dir.path().join("qga.sock");
    let marker = ga.path("pid");
    let mut term = Terminal::spawn(&["qga", "--socket", sock.to_str().unwrap()]);
    term.expect("(QGA) ");
    // Longer than the test's guard on every wait: only giving it up lets the next line run.
    term.type_keys(&format!("exec sh -c 'echo $$ > {marker}; exec sleep 600'\r"));
    common::eventually("the program's pid", HANG_GUARD, || {
        std::fs::read_to_string(&marker).ok().filter(|p| p.ends_with('\n'))
    });
    term.type_keys("\x03");
    term.expect("interrupted");
    term.expect("(QGA) ");
    term.type_keys("guest-ping\r");
    term.expect("{\"return\":{}}");
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
    let pid = std::fs::read_to_string(&marker).unwrap();
    assert!(Command::new("kill").arg(pid.trim()).status().unwrap().success(), "the program went on");
}

#[test]
fn an_overlong_or_invalid_line_is_skipped_and_the_next_runs() {
    let qemu = qemu();
    let long = format!("query-status x={}\n", "a".repeat(2 << 20));
    let mut input = long.into_bytes();
    input.extend_from_slice(b"\xff\xfe\nquery-status\n");
    let mut child = command(&["qmp", "--socket", socket(&qemu).to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(&input));
    let out = finish(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line longer than 1048576 bytes, skipped"), "{stderr}");
    assert!(stderr.contains("line is not UTF-8, skipped"), "{stderr}");
    assert_eq!(json_lines(&out).len(), 1);
}

#[test]
fn keys_typed_while_a_reply_is_pending_are_kept() {
    let qemu = qemu();
    let mut term = Terminal::spawn(&["qmp", "--socket", socket(&qemu).to_str().unwrap()]);
    term.expect("(QMP) ");
    signal(&qemu, "-STOP");
    term.type_keys("query-name\r");
    term.expect_pending();
    // A whole line and the start of another, typed before the reply comes.
    term.type_keys("{\"execute\": \"query-status\", \"id\": \"typed\"}\rquery-sta");
    signal(&qemu, "-CONT");
    term.expect("{\"return\":{}}");
    term.expect("\"id\":\"typed\"}");
    term.expect("query-sta");
    term.type_keys("tus\r");
    term.expect("{\"return\":{\"status\":\"prelaunch\",\"singlestep\":false,\"running\":false}}");
    term.expect("(QMP) ");
    term.type_keys("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.output());
}
