//! The blocking HMP client against a real QEMU (`-machine none -S`): the
//! readline monitor over `-monitor unix:`, `-mon chardev=…,mode=readline`
//! and `-monitor tcp:`, and HMP over QMP. One QEMU per test.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::time::Duration;

use vmwire_proto::hmp::{Config, MAX_LINE};
use vmwire_std::hmp::{Error, Migrate, Monitor, Options, Status};
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::Qmp;

fn prelaunch() -> Status {
    Status { running: false, state: "prelaunch".into(), single_step: false }
}

/// What every monitor form must do alike.
fn exercise(hmp: &mut Monitor) {
    assert!(hmp.version().is_some_and(|v| v.0 >= 7), "{:?}", hmp.version());
    assert_eq!(hmp.status().unwrap(), prelaunch());
    assert_eq!(hmp.command("nosuch").unwrap(), "unknown command: 'nosuch'\r\n");
    assert_eq!(hmp.command("").unwrap(), "");
    let version = hmp.info("version").unwrap();
    assert!(version.starts_with(&format!("{}.", hmp.version().unwrap().0)), "{version:?}");
    hmp.cont().unwrap();
    assert!(hmp.status().unwrap().running);
    hmp.stop().unwrap();
    assert_eq!(hmp.status().unwrap(), Status { running: false, state: "paused".into(), single_step: false });
}

#[test]
fn readline_monitor_on_a_unix_socket() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    assert!(hmp.banner().starts_with("QEMU "), "{:?}", hmp.banner());
    exercise(&mut hmp);
    assert!(hmp.take_unsolicited().is_empty());
}

#[test]
fn readline_monitor_on_a_chardev() {
    let qemu = common::qemu_builder()
        .arg("-chardev")
        .arg("socket,id=h,path={dir}/h.sock,server=on,wait=off")
        .arg("-mon")
        .arg("chardev=h,mode=readline")
        .wait_for("h.sock")
        .spawn()
        .unwrap();
    let mut hmp = Monitor::connect_unix(qemu.dir().join("h.sock"), Options::default()).unwrap();
    exercise(&mut hmp);
}

#[test]
fn readline_monitor_on_tcp() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _qemu =
        common::qemu_builder().arg("-monitor").arg(format!("tcp:127.0.0.1:{port},server=on,wait=off")).spawn().unwrap();
    // The port is listening once QEMU is up; wait for that, not a fixed time.
    let mut hmp = common::eventually("QEMU to listen on TCP", Duration::from_secs(10), || {
        Monitor::connect_tcp(("127.0.0.1", port), Options::default()).ok()
    });
    exercise(&mut hmp);
}

#[test]
fn hmp_over_qmp_gives_the_same_text() {
    let qemu = common::qemu_builder().qmp().hmp().spawn().unwrap();
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).unwrap();
    let mut over_qmp = Monitor::via_qmp(qmp, Options::default());
    exercise(&mut over_qmp);
    let mut readline = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    for line in ["info version", "info status", "help", "info nosuch", "info qtree", "info mtree"] {
        assert_eq!(readline.command(line).unwrap(), over_qmp.command(line).unwrap(), "{line}");
    }
    // The plain function, for a QMP connection kept as it is (QEMU takes
    // one client per QMP socket: the first goes first).
    over_qmp.close();
    let mut qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).unwrap();
    assert_eq!(vmwire_std::hmp::via_qmp(&mut qmp, "info status").unwrap(), "VM status: paused\r\n");
}

#[test]
fn output_with_lf_newlines_on_request() {
    let qemu = common::qemu_builder().qmp().hmp().spawn().unwrap();
    let options = Options { config: Config { lf_newlines: true, ..Config::default() }, ..Options::default() };
    let mut readline = Monitor::connect_unix(qemu.hmp_path().unwrap(), options.clone()).unwrap();
    let help = readline.command("help").unwrap();
    assert!(help.lines().count() > 100 && !help.contains('\r'));
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).unwrap();
    assert_eq!(Monitor::via_qmp(qmp, options).command("help").unwrap(), help);
}

#[test]
fn long_lines_and_lines_that_cannot_be_sent() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    // QEMU's whole line: its echo is 33 MB of redraws.
    let line = format!("info {}", "x".repeat(MAX_LINE - 5));
    hmp.set_timeout(Some(Duration::from_secs(120)));
    assert_eq!(hmp.command(&line).unwrap(), format!("unknown command: '{line}'\r\n"));
    hmp.set_timeout(Some(Duration::from_secs(10)));
    for bad in ["stop\ncont", "stop\r", "info\tstatus", "x\u{1b}[A"] {
        assert!(matches!(hmp.command(bad), Err(Error::BadLine(_))), "{bad:?}");
    }
    assert!(matches!(hmp.command(&"x".repeat(MAX_LINE + 1)), Err(Error::BadLine(_))));
    // None of them reached QEMU: the VM still waits to be started.
    assert_eq!(hmp.status().unwrap(), prelaunch());
    // Non-ASCII goes through as it is.
    assert_eq!(hmp.command("info café").unwrap(), "unknown command: 'info café'\r\n");
}

#[test]
fn input_devices_and_migration() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    hmp.sendkey("ctrl-alt-f1", None).unwrap();
    hmp.sendkey("a", Some(10)).unwrap();
    hmp.mouse_move(10, -5).unwrap();
    hmp.mouse_button(1).unwrap();
    match hmp.sendkey("nosuchkey", None) {
        Err(Error::Monitor(text)) => assert!(text.contains("nosuchkey"), "{text}"),
        other => panic!("{other:?}"),
    }
    hmp.migrate_set_speed(12_345_678).unwrap();
    assert!(hmp.info("migrate_parameters").unwrap().contains("max-bandwidth: 12345678 bytes/second"));
    let file = qemu.dir().join("vm.migration");
    hmp.migrate(&format!("exec:cat > {}", file.display()), Migrate::default()).unwrap();
    // Detached: wait for QEMU to say it is done, then the VM is "postmigrate".
    common::eventually("the migration to complete", Duration::from_secs(30), || {
        hmp.info("migrate").unwrap().contains("Migration status: completed").then_some(())
    });
    assert_eq!(hmp.status().unwrap().state, "postmigrate");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
}

#[test]
fn screendump_writes_the_screen_or_says_why_not() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    match hmp.screendump(qemu.dir().join("none.ppm")) {
        Err(Error::Monitor(text)) => assert!(text.starts_with("Error: "), "{text}"),
        other => panic!("{other:?}"),
    }
    // With a display device (and a space in the file name, quoted for QEMU's parser).
    let qemu = qemu_with_vga();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    let file = qemu.dir().join("the screen.ppm");
    hmp.screendump(&file).unwrap();
    let ppm = std::fs::read(&file).unwrap();
    assert!(ppm.starts_with(b"P6\n640 480\n255\n"), "{:?}", &ppm[..16]);
}

fn qemu_with_vga() -> Qemu {
    common::qemu_builder().arg("-machine").arg("pc").arg("-device").arg("VGA").hmp().spawn().unwrap()
}

#[test]
fn quit_ends_qemu() {
    let mut qemu = common::qemu_builder().hmp().spawn().unwrap();
    let hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    hmp.quit().unwrap();
    assert!(qemu.wait_exit(Duration::from_secs(10)).unwrap().is_some_and(|s| s.success()));

    let mut qemu = common::qemu_builder().qmp().spawn().unwrap();
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).unwrap();
    Monitor::via_qmp(qmp, Options::default()).quit().unwrap();
    assert!(qemu.wait_exit(Duration::from_secs(10)).unwrap().is_some_and(|s| s.success()));

    // The one-shot command line: the monitor closing is `quit`'s success.
    let mut qemu = common::qemu_builder().hmp().spawn().unwrap();
    let socket = qemu.hmp_path().unwrap().to_str().unwrap().to_owned();
    let (code, _, stderr) = vmwire(&["hmp", "--socket", &socket, "quit"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(qemu.wait_exit(Duration::from_secs(10)).unwrap().is_some_and(|s| s.success()));
}

#[test]
fn qemu_killed_mid_session() {
    let mut qemu = common::qemu_builder().hmp().spawn().unwrap();
    let mut hmp = Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).unwrap();
    assert_eq!(hmp.status().unwrap(), prelaunch());
    qemu.kill().unwrap();
    assert!(matches!(hmp.command("info status"), Err(Error::Closed)));
    assert!(matches!(hmp.command("info status"), Err(Error::Closed)));
}

#[test]
fn the_command_line_tool() {
    let vmwire = env!("CARGO_BIN_EXE_vmwire");
    let out = std::process::Command::new(vmwire).args(["hmp", "--launch", "info", "status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"VM status: paused (prelaunch)\n");
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap();
    let out = std::process::Command::new(vmwire)
        .args(["hmp", "--via-qmp", qmp, "--crlf", "info", "status"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"VM status: paused (prelaunch)\r\n");
    // A line QEMU's readline cannot take is a usage error.
    let out = std::process::Command::new(vmwire).args(["hmp", "--launch", "info\tstatus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `vmwire ARGS…`; its exit status, standard output and standard error.
fn vmwire(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmwire")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A scripted monitor: [`common::scripted_peer`] on `hmp.sock`, with its path as text.
fn scripted_monitor(
    script: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static,
) -> (tempfile::TempDir, String, std::thread::JoinHandle<()>) {
    let (dir, path, thread) = common::scripted_peer("hmp.sock", script);
    (dir, path.to_str().unwrap().to_owned(), thread)
}

#[test]
fn a_qmp_socket_is_not_a_monitor() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap();
    let (code, stdout, stderr) = vmwire(&["hmp", "--socket", qmp, "info", "status"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stdout, "");
    // Said at once, with what came (escaped, cut short), rather than a timeout.
    assert!(
        stderr.starts_with("vmwire: HMP: expected the monitor's banner and `(qemu) ` prompt, got JSON")
            && stderr.contains(r#"`{"QMP": {"version": {"qemu": "#)
            && stderr.trim_end().ends_with("…`"),
        "{stderr}"
    );
    // The library says the same, typed.
    match Monitor::connect_unix(qemu.qmp_path().unwrap(), Options::default()) {
        Err(Error::Banner { error: vmwire_proto::hmp::Error::NotHmp { .. }, got }) => {
            assert!(got.starts_with(r#"{"QMP""#))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_vnc_socket_is_named_at_once() {
    let qemu = common::qemu_builder().arg("-vnc").arg("unix:{dir}/vnc.sock").wait_for("vnc.sock").spawn().unwrap();
    let vnc = qemu.dir().join("vnc.sock");
    let (code, stdout, stderr) = vmwire(&["hmp", "--socket", vnc.to_str().unwrap(), "info", "status"]);
    assert_eq!((code, stdout.as_str()), (Some(3), ""), "{stderr}");
    assert_eq!(
        stderr,
        "vmwire: HMP: expected the monitor's banner and `(qemu) ` prompt, got a VNC server's greeting: `RFB 003.008\\n`\n"
    );
    let (code, _, stderr) = vmwire(&["qmp", "--socket", vnc.to_str().unwrap(), "query-status"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stderr, "vmwire: QMP: expected a QMP greeting, got a VNC server's greeting `RFB 003.008`\n");
}

#[test]
fn text_without_a_prompt_is_refused_past_the_banner_limit() {
    // A gigabyte with no `(qemu) ` would be held whole; the client stops at the limit.
    let (_dir, path, monitor) = scripted_monitor(|mut s| {
        use std::io::Write;
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            if s.write_all(&junk).is_err() {
                return; // the client hung up
            }
        }
        panic!("the client read a gigabyte without a prompt");
    });
    let (code, stdout, stderr) = vmwire(&["hmp", "--socket", &path, "--timeout", "0", "info", "status"]);
    assert_eq!((code, stdout.as_str()), (Some(3), ""), "{stderr}");
    assert!(
        stderr.starts_with("vmwire: HMP: more than 65536 bytes came before the first `(qemu) ` prompt: `xxx"),
        "{stderr}"
    );
    monitor.join().unwrap();
}

#[test]
fn an_echo_of_another_command_fails_the_command() {
    let (_dir, path, monitor) = scripted_monitor(|mut s| {
        use std::io::{BufRead, BufReader, Write};
        s.write_all(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, "info status\n");
        // Not the line sent: something else ran.
        s.write_all(b"system_reset\x1b[K\r\n(qemu) ").unwrap();
        let _ = BufReader::new(&s).read_line(&mut line);
    });
    let (code, stdout, stderr) = vmwire(&["hmp", "--socket", &path, "info", "status"]);
    assert_eq!((code, stdout.as_str()), (Some(3), ""), "{stderr}");
    assert_eq!(stderr, "vmwire: HMP: the echo at byte 63 is not the command sent\n");
    monitor.join().unwrap();
}

#[test]
fn line_breaks_and_escapes_are_refused_over_qmp_too() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    let qmp = qemu.qmp_path().unwrap().to_str().unwrap();
    for bad in ["cont\nstop", "cont\r", "info status\x1b[A"] {
        let (code, stdout, stderr) = vmwire(&["hmp", "--via-qmp", qmp, bad]);
        assert_eq!((code, stdout.as_str()), (Some(2), ""), "{bad:?}: {stderr}");
        assert!(stderr.starts_with("vmwire: HMP: "), "{stderr}");
    }
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).unwrap();
    let mut hmp = Monitor::via_qmp(qmp, Options::default());
    assert!(matches!(hmp.command("cont\nstop"), Err(Error::BadLine(_))));
    // None of them ran: the VM still waits to be started.
    assert_eq!(hmp.status().unwrap(), prelaunch());
}

#[test]
fn no_prompt_in_time_says_what_came() {
    for (sent, said) in [
        (&b""[..], "vmwire: HMP: no banner or `(qemu) ` prompt within the time limit; nothing arrived"),
        (
            b"QEMU 7.2.22 monitor\r\n\x1b]0;x",
            r"vmwire: HMP: no `(qemu) ` prompt within the time limit; got `QEMU 7.2.22 monitor\r\n\u{1b}]0;x`",
        ),
    ] {
        let (_dir, path, monitor) = scripted_monitor(move |mut s| {
            use std::io::{Read, Write};
            s.write_all(sent).unwrap();
            let _ = s.read(&mut [0; 1]); // until the client gives up
        });
        let (code, _, stderr) = vmwire(&["hmp", "--socket", &path, "--timeout", "0.2", "info", "status"]);
        assert_eq!(code, Some(3), "{stderr}");
        assert!(stderr.starts_with(said), "{stderr}");
        monitor.join().unwrap();
    }
}
