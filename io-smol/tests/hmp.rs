//! The async HMP client against a real QEMU (`-machine none -S`): the
//! readline monitor over `-monitor unix:`, `-mon chardev=…,mode=readline`
//! and `-monitor tcp:`, one QEMU per test: the cases of vmwire-std's
//! `hmp_interop`, and a command whose future is dropped mid-wait.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use async_io::Timer;
use futures_lite::future;
use vmwire_proto::hmp::{Config, MAX_LINE};
use vmwire_smol::hmp::{Error, Migrate, Monitor, Options, Status};
use vmwire_std::qemu::Qemu;

fn prelaunch() -> Status {
    Status { running: false, state: "prelaunch".into(), single_step: false }
}

async fn connect(qemu: &Qemu) -> Monitor {
    Monitor::connect_unix(qemu.hmp_path().unwrap(), Options::default()).await.unwrap()
}

/// What every monitor form must do alike.
async fn exercise(hmp: &mut Monitor) {
    assert!(hmp.version().is_some_and(|v| v.0 >= 7), "{:?}", hmp.version());
    assert_eq!(hmp.status().await.unwrap(), prelaunch());
    assert_eq!(hmp.command("nosuch").await.unwrap(), "unknown command: 'nosuch'\r\n");
    assert_eq!(hmp.command("").await.unwrap(), "");
    let version = hmp.info("version").await.unwrap();
    assert!(version.starts_with(&format!("{}.", hmp.version().unwrap().0)), "{version:?}");
    hmp.cont().await.unwrap();
    assert!(hmp.status().await.unwrap().running);
    hmp.stop().await.unwrap();
    assert_eq!(hmp.status().await.unwrap(), Status { running: false, state: "paused".into(), single_step: false });
}

#[test]
fn readline_monitor_on_a_unix_socket() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        assert!(hmp.banner().starts_with("QEMU "), "{:?}", hmp.banner());
        exercise(&mut hmp).await;
        assert!(hmp.take_unsolicited().is_empty());
    });
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
    smol::block_on(async {
        let mut hmp = Monitor::connect_unix(qemu.dir().join("h.sock"), Options::default()).await.unwrap();
        exercise(&mut hmp).await;
    });
}

/// The same commands over a shared QMP connection give the readline
/// monitor's text; a QMP task runs beside them on the same connection.
#[test]
fn hmp_over_a_shared_qmp_connection_gives_the_same_text() {
    let qemu = common::qemu_builder().qmp().hmp().spawn().unwrap();
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let qmp = vmwire_smol::qmp::Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default()).await.unwrap();
        let (qmp, driver) = qmp.share();
        ex.spawn(driver).detach();
        let mut over_qmp = Monitor::via_qmp(qmp.clone(), Options::default());
        exercise(&mut over_qmp).await;
        let mut readline = connect(&qemu).await;
        for line in ["info version", "info status", "help", "info nosuch", "info qtree"] {
            assert_eq!(readline.command(line).await.unwrap(), over_qmp.command(line).await.unwrap(), "{line}");
        }
        let status: serde_json::Value = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!(status["status"], "paused");
        let lf = Options { config: Config { lf_newlines: true, ..Config::default() }, ..Options::default() };
        let help = Monitor::via_qmp(qmp.clone(), lf).command("help").await.unwrap();
        assert!(help.lines().count() > 100 && !help.contains('\r'));
        // quit over QMP: QEMU goes, and that is the command's success.
        over_qmp.quit().await.unwrap();
    }));
}

#[test]
fn readline_monitor_on_tcp() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _qemu =
        common::qemu_builder().arg("-monitor").arg(format!("tcp:127.0.0.1:{port},server=on,wait=off")).spawn().unwrap();
    // The port is listening once QEMU is up; wait for that, not a fixed time.
    let mut hmp = common::eventually("QEMU to listen on TCP", Duration::from_secs(10), || {
        smol::block_on(Monitor::connect_tcp(("127.0.0.1", port), Options::default())).ok()
    });
    smol::block_on(exercise(&mut hmp));
}

#[test]
fn output_with_lf_newlines_on_request() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let options = Options { config: Config { lf_newlines: true, ..Config::default() }, ..Options::default() };
    smol::block_on(async {
        let mut readline = Monitor::connect_unix(qemu.hmp_path().unwrap(), options).await.unwrap();
        let help = readline.command("help").await.unwrap();
        assert!(help.lines().count() > 100 && !help.contains('\r'));
    });
}

#[test]
fn long_lines_and_lines_that_cannot_be_sent() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        // QEMU's whole line: its echo is 33 MB of redraws.
        let line = format!("info {}", "x".repeat(MAX_LINE - 5));
        let long = hmp.command_timeout(&line, Some(Duration::from_secs(120))).await.unwrap();
        assert_eq!(long, format!("unknown command: '{line}'\r\n"));
        for bad in ["stop\ncont", "stop\r", "info\tstatus", "x\u{1b}[A"] {
            assert!(matches!(hmp.command(bad).await, Err(Error::BadLine(_))), "{bad:?}");
        }
        assert!(matches!(hmp.command(&"x".repeat(MAX_LINE + 1)).await, Err(Error::BadLine(_))));
        // None of them reached QEMU: the VM still waits to be started.
        assert_eq!(hmp.status().await.unwrap(), prelaunch());
        // Non-ASCII goes through as it is.
        assert_eq!(hmp.command("info café").await.unwrap(), "unknown command: 'info café'\r\n");
    });
}

#[test]
fn input_devices_and_migration() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        hmp.sendkey("ctrl-alt-f1", None).await.unwrap();
        hmp.sendkey("a", Some(10)).await.unwrap();
        hmp.mouse_move(10, -5).await.unwrap();
        hmp.mouse_button(1).await.unwrap();
        match hmp.sendkey("nosuchkey", None).await {
            Err(Error::Monitor(text)) => assert!(text.contains("nosuchkey"), "{text}"),
            other => panic!("{other:?}"),
        }
        hmp.migrate_set_speed(12_345_678).await.unwrap();
        assert!(hmp.info("migrate_parameters").await.unwrap().contains("max-bandwidth: 12345678 bytes/second"));
        let file = qemu.dir().join("vm.migration");
        hmp.migrate(&format!("exec:cat > {}", file.display()), Migrate::default()).await.unwrap();
        // Detached: wait for QEMU to say it is done, then the VM is "postmigrate".
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while !hmp.info("migrate").await.unwrap().contains("Migration status: completed") {
            assert!(std::time::Instant::now() < give_up, "gave up waiting: the migration to complete");
            Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(hmp.status().await.unwrap().state, "postmigrate");
        assert!(std::fs::metadata(&file).unwrap().len() > 0);
    });
}

#[test]
fn screendump_writes_the_screen_or_says_why_not() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    let with_vga = common::qemu_builder().arg("-machine").arg("pc").arg("-device").arg("VGA").hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        match hmp.screendump(qemu.dir().join("none.ppm")).await {
            Err(Error::Monitor(text)) => assert!(text.starts_with("Error: "), "{text}"),
            other => panic!("{other:?}"),
        }
        // With a display device (and a space in the file name, quoted for QEMU's parser).
        let mut hmp = connect(&with_vga).await;
        let file = with_vga.dir().join("the screen.ppm");
        hmp.screendump(&file).await.unwrap();
        let ppm = std::fs::read(&file).unwrap();
        assert!(ppm.starts_with(b"P6\n640 480\n255\n"), "{:?}", &ppm[..16]);
    });
}

#[test]
fn quit_ends_qemu() {
    let mut qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async { connect(&qemu).await.quit().await.unwrap() });
    assert!(qemu.wait_exit(Duration::from_secs(10)).unwrap().is_some_and(|s| s.success()));
}

#[test]
fn qemu_killed_mid_session() {
    let mut qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        assert_eq!(hmp.status().await.unwrap(), prelaunch());
        qemu.kill().unwrap();
        assert!(matches!(hmp.command("info status").await, Err(Error::Closed)));
        assert!(matches!(hmp.command("info status").await, Err(Error::Closed)));
    });
}

/// Sends `signal` (`-STOP`, …) to `pid`.
fn signal(pid: u32, signal: &str) {
    assert!(Command::new("kill").arg(signal).arg(pid.to_string()).status().unwrap().success());
}

#[test]
fn a_command_dropped_mid_wait_leaves_the_monitor_in_step() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        let mut hmp = connect(&qemu).await;
        // QEMU stopped: no prompt can come before the futures are dropped.
        signal(qemu.pid(), "-STOP");
        for line in ["info status", "info version", "info name"] {
            let dropped = future::or(async { Some(hmp.command(line).await) }, async {
                Timer::after(Duration::from_millis(100)).await;
                None
            });
            assert!(dropped.await.is_none(), "{line}");
        }
        signal(qemu.pid(), "-CONT");
        // The lines sent ran; what they printed is skipped: each answer is its own line's.
        assert_eq!(hmp.command("nosuch").await.unwrap(), "unknown command: 'nosuch'\r\n");
        assert_eq!(hmp.status().await.unwrap(), prelaunch());
        let version = hmp.info("version").await.unwrap();
        assert!(version.starts_with(&format!("{}.", hmp.version().unwrap().0)), "{version:?}");
        // A time limit passing is the same.
        signal(qemu.pid(), "-STOP");
        assert!(matches!(
            hmp.command_timeout("info version", Some(Duration::from_millis(100))).await,
            Err(Error::Timeout)
        ));
        signal(qemu.pid(), "-CONT");
        assert_eq!(hmp.status().await.unwrap(), prelaunch());
        assert!(hmp.take_unsolicited().is_empty(), "{:?}", hmp.take_unsolicited());
    });
}

#[test]
fn a_qmp_socket_is_not_a_monitor_said_at_once() {
    let qemu = common::qemu_builder().qmp().spawn().unwrap();
    smol::block_on(async {
        match Monitor::connect_unix(qemu.qmp_path().unwrap(), Options::default()).await {
            Err(e @ Error::Banner { error: vmwire_proto::hmp::Error::NotHmp { .. }, .. }) => {
                let said = e.to_string();
                assert!(
                    said.starts_with("HMP: expected the monitor's banner and `(qemu) ` prompt, got JSON"),
                    "{said}"
                );
                assert!(said.contains(r#"`{"QMP": {"version": {"qemu": "#) && said.ends_with("…`"), "{said}");
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn text_without_a_prompt_is_refused_past_the_banner_limit() {
    // A gigabyte with no `(qemu) ` would be held whole; the client stops at the limit.
    let (_dir, path, monitor) = common::scripted_peer("hmp.sock", |mut s| {
        use std::io::Write;
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            if s.write_all(&junk).is_err() {
                return; // the client hung up
            }
        }
        panic!("the client read a gigabyte without a prompt");
    });
    smol::block_on(async {
        let options = Options { timeout: None, ..Options::default() };
        match Monitor::connect_unix(&path, options).await {
            Err(e @ Error::Banner { error: vmwire_proto::hmp::Error::BannerTooLong { .. }, .. }) => {
                let said = e.to_string();
                assert!(
                    said.starts_with("HMP: more than 65536 bytes came before the first `(qemu) ` prompt: `xxx"),
                    "{said}"
                );
            }
            other => panic!("{other:?}"),
        }
    });
    monitor.join().unwrap();
}

#[test]
fn an_echo_of_another_command_fails_the_command() {
    let (_dir, path, monitor) = common::scripted_peer("hmp.sock", |mut s| {
        use std::io::{BufRead, BufReader, Write};
        s.write_all(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, "info status\n");
        // Not the line sent: something else ran.
        s.write_all(b"system_reset\x1b[K\r\n(qemu) ").unwrap();
        let _ = BufReader::new(&s).read_line(&mut line);
    });
    smol::block_on(async {
        let mut hmp = Monitor::connect_unix(&path, Options::default()).await.unwrap();
        match hmp.command("info status").await {
            Err(e @ Error::Protocol(_)) => {
                assert_eq!(e.to_string(), "HMP: the echo at byte 63 is not the command sent")
            }
            other => panic!("{other:?}"),
        }
        hmp.close();
    });
    monitor.join().unwrap();
}

#[test]
fn no_prompt_in_time_says_what_came() {
    for (sent, said) in [
        (&b""[..], "HMP: no banner or `(qemu) ` prompt within the time limit; nothing arrived"),
        (
            b"QEMU 7.2.22 monitor\r\n\x1b]0;x",
            r"HMP: no `(qemu) ` prompt within the time limit; got `QEMU 7.2.22 monitor\r\n\u{1b}]0;x`",
        ),
    ] {
        let (_dir, path, monitor) = common::scripted_peer("hmp.sock", move |mut s| {
            use std::io::{Read, Write};
            s.write_all(sent).unwrap();
            let _ = s.read(&mut [0; 1]); // until the client gives up
        });
        smol::block_on(async {
            let options = Options { timeout: Some(Duration::from_millis(200)), ..Options::default() };
            match Monitor::connect_unix(&path, options).await {
                Err(e @ Error::NoPrompt { .. }) => assert!(e.to_string().starts_with(said), "{e}"),
                other => panic!("{other:?}"),
            }
        });
        monitor.join().unwrap();
    }
}
