//! The async QMP clients against a real QEMU (`-machine none -S`), one QEMU
//! per test, sockets in a private temporary directory: the blocking
//! client's interop cases, and one connection shared by many tasks.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use smol::LocalExecutor;
use vmwire_smol::qmp::{Error, Filter, Handle, Options, Qmp};
use vmwire_std::qemu::Qemu;

#[derive(Debug, Deserialize)]
struct Status {
    status: String,
    running: bool,
}

fn qemu() -> Qemu {
    common::qemu_builder().qmp().spawn().unwrap()
}

async fn connect(qemu: &Qemu, options: Options) -> Qmp {
    Qmp::connect_unix(qemu.qmp_path().unwrap(), options).await.expect("connect")
}

/// Sends `signal` to QEMU (SIGSTOP: it answers nothing until SIGCONT).
fn signal(qemu: &Qemu, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(qemu.pid() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[test]
fn negotiates_and_runs_commands() {
    let qemu = qemu();
    smol::block_on(async {
        let mut qmp = connect(&qemu, Options::default()).await;
        assert!(qmp.greeting().version.0 >= 7, "{:?}", qmp.greeting());
        assert!(!qmp.oob());
        let status: Status = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!((status.status.as_str(), status.running), ("prelaunch", false));
        match qmp.execute::<serde_json::Value>("no-such-command", ()).await {
            Err(Error::Qemu(e)) => assert_eq!(e.class, "CommandNotFound"),
            other => panic!("{other:?}"),
        }
        qmp.execute::<serde_json::Value>("cont", ()).await.unwrap();
        let event = qmp.next_event(Some(Duration::from_secs(5))).await.unwrap().expect("RESUME");
        assert_eq!(event.name, "RESUME");
        qmp.quit().await.unwrap();
    });
}

#[test]
fn out_of_band_and_file_descriptors() {
    let qemu = qemu();
    smol::block_on(async {
        let mut qmp = connect(&qemu, Options { oob: true, ..Options::default() }).await;
        assert!(qmp.oob());
        assert!(qmp.execute_oob_raw("query-yank", None).await.unwrap().starts_with('['));
        let file = std::fs::File::open("/dev/null").unwrap();
        qmp.send_fd("vmwire-fd", file.as_fd()).await.unwrap();
        qmp.execute::<serde_json::Value>("closefd", serde_json::json!({"fdname": "vmwire-fd"})).await.unwrap();
        let added = qmp.add_fd(file.as_fd(), None, Some("null device")).await.unwrap();
        assert!(added["fdset-id"].as_u64().is_some(), "{added}");
    });
}

#[test]
fn a_human_monitor_socket_is_named_at_once() {
    let qemu = common::qemu_builder().hmp().spawn().unwrap();
    smol::block_on(async {
        match Qmp::connect_unix(qemu.hmp_path().unwrap(), Options::default()).await {
            Err(Error::NotQmp { received, .. }) => assert!(received.starts_with("QEMU "), "{received}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_cancelled_call_leaves_the_connection_usable() {
    let qemu = qemu();
    smol::block_on(async {
        let mut qmp = connect(&qemu, Options::default()).await;
        // QEMU stopped: the call waits; its future is dropped at the timer.
        signal(&qemu, rustix::process::Signal::STOP);
        let call = qmp.execute::<serde_json::Value>("query-name", ());
        let gave_up = smol::future::or(async { Some(call.await) }, async {
            smol::Timer::after(Duration::from_millis(100)).await;
            None
        });
        assert!(gave_up.await.is_none());
        signal(&qemu, rustix::process::Signal::CONT);
        // The late reply to query-name is not taken for query-status's.
        let status: Status = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!(status.status, "prelaunch");
        let strays = qmp.take_strays();
        assert_eq!(strays.len(), 1, "{strays:?}");
    });
}

/// Distinct answers to tell callers apart: `query-command-line-options`
/// for one option names the option asked for.
async fn option_names(qmp: &Handle) -> Vec<String> {
    let options: Vec<serde_json::Value> = qmp.execute("query-command-line-options", ()).await.unwrap();
    let mut names: Vec<String> = options.iter().map(|o| o["option"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn fifty_tasks_share_one_connection() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = connect(&qemu, Options::default()).await.share();
        let driver = ex.spawn(driver);
        let names = Rc::new(option_names(&qmp).await);
        assert!(names.len() > 20, "{names:?}");
        let tasks: Vec<_> = (0..50)
            .map(|task| {
                let (qmp, names) = (qmp.clone(), names.clone());
                ex.spawn(async move {
                    for call in 0..50 {
                        let name = &names[(task * 7 + call) % names.len()];
                        let args = serde_json::json!({ "option": name });
                        let answer: Vec<serde_json::Value> =
                            qmp.execute("query-command-line-options", args).await.unwrap();
                        assert_eq!(answer[0]["option"], name.as_str(), "task {task} call {call}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        assert_eq!(qmp.pending(), 0);
        assert!(qmp.take_strays().is_empty());
        qmp.quit().await.unwrap();
        drop(qmp);
        driver.await.unwrap();
    }));
}

#[test]
fn events_reach_every_subscriber_that_wants_them() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = connect(&qemu, Options::default()).await.share();
        ex.spawn(driver).detach();
        let mut stops = qmp.subscribe(Filter::names(["STOP"]), 64);
        let mut all = qmp.subscribe(Filter::predicate(|e| e.name == "STOP" || e.name == "RESUME"), 64);
        // Never read: it fills and drops, and holds up nobody.
        let idle = qmp.subscribe(Filter::All, 2);
        for _ in 0..10 {
            qmp.execute::<serde_json::Value>("cont", ()).await.unwrap();
            qmp.execute::<serde_json::Value>("stop", ()).await.unwrap();
        }
        for _ in 0..10 {
            assert_eq!(all.next().await.unwrap().name, "RESUME");
            assert_eq!(all.next().await.unwrap().name, "STOP");
            assert_eq!(stops.next().await.unwrap().name, "STOP");
        }
        assert_eq!((all.missed(), stops.missed()), (0, 0));
        assert_eq!(idle.missed(), 18);
        assert!(stops.try_next().is_none());
    }));
}

#[test]
fn qemu_going_away_fails_every_pending_call() {
    let mut qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = connect(&qemu, Options::default()).await.share();
        let driver = ex.spawn(driver);
        let mut events = qmp.subscribe(Filter::All, 8);
        signal(&qemu, rustix::process::Signal::STOP);
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let qmp = qmp.clone();
                ex.spawn(async move { qmp.execute::<serde_json::Value>("query-status", ()).await })
            })
            .collect();
        while qmp.pending() < 10 {
            smol::future::yield_now().await;
        }
        qemu.kill().unwrap();
        for call in calls {
            assert!(matches!(call.await, Err(Error::Closed)));
        }
        assert!(events.next().await.is_none());
        assert!(matches!(qmp.execute::<serde_json::Value>("query-status", ()).await, Err(Error::Closed)));
        assert!(matches!(driver.await, Err(Error::Closed)));
    }));
}

#[test]
fn a_dropped_call_is_forgotten_and_its_reply_goes_to_nobody() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = connect(&qemu, Options::default()).await.share();
        ex.spawn(driver).detach();
        signal(&qemu, rustix::process::Signal::STOP);
        let impatient = qmp.clone().with_timeout(Some(Duration::from_millis(100)));
        assert!(matches!(impatient.execute::<serde_json::Value>("query-name", ()).await, Err(Error::Timeout)));
        signal(&qemu, rustix::process::Signal::CONT);
        let status: Status = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!(status.status, "prelaunch");
        let strays = qmp.take_strays();
        assert!(matches!(&strays[..], [vmwire_smol::qmp::Stray::Stale { .. }]), "{strays:?}");
    }));
}

#[test]
fn file_descriptors_through_a_shared_connection() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = connect(&qemu, Options::default()).await.share();
        ex.spawn(driver).detach();
        let file = std::fs::File::open("/dev/null").unwrap();
        let calls: Vec<_> = (0..4)
            .map(|i| {
                let qmp = qmp.clone();
                let fd = file.as_fd().try_clone_to_owned().unwrap();
                ex.spawn(async move {
                    qmp.send_fd(&format!("fd{i}"), fd.as_fd()).await.unwrap();
                    qmp.execute::<serde_json::Value>("query-status", ()).await.unwrap();
                })
            })
            .collect();
        for call in calls {
            call.await;
        }
        for i in 0..4 {
            qmp.execute::<serde_json::Value>("closefd", serde_json::json!({ "fdname": format!("fd{i}") }))
                .await
                .unwrap();
        }
        let added = qmp.add_fd(&file, None, None).await.unwrap();
        assert!(added["fd"].as_u64().is_some(), "{added}");
    }));
}

/// Nothing is tied to smol: the client over a tokio socket (tokio-util's
/// compat layer), its driver a tokio task, its timers async-io's.
#[test]
fn runs_under_tokio() {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let qemu = qemu();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    runtime.block_on(async {
        let socket = tokio::net::UnixStream::connect(qemu.qmp_path().unwrap()).await.unwrap();
        let qmp = Qmp::handshake(socket.compat(), Options::default()).await.unwrap();
        let (qmp, driver) = qmp.share_without_fds();
        let driver = tokio::spawn(driver);
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let qmp = qmp.clone();
                tokio::spawn(async move { qmp.execute::<Status>("query-status", ()).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().status, "prelaunch");
        }
        let short = qmp.clone().with_timeout(Some(Duration::from_millis(50)));
        signal(&qemu, rustix::process::Signal::STOP);
        assert!(matches!(short.execute::<Status>("query-status", ()).await, Err(Error::Timeout)));
        signal(&qemu, rustix::process::Signal::CONT);
        drop((qmp, short));
        driver.await.unwrap().unwrap();
    });
}

/// A peer that floods events while nobody reads them: the subscriber's
/// queue stays at its bound (the rest counted as missed), and calls are
/// answered all the while.
#[test]
fn a_flood_of_events_stays_within_the_bounds() {
    use std::io::{BufRead, BufReader, Write};
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || {
        let mut reader = BufReader::new(theirs.try_clone().unwrap());
        let mut writer = theirs;
        writer.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n").unwrap();
        let event = b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n".repeat(1000);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            let command: serde_json::Value = serde_json::from_str(&line).unwrap();
            for _ in 0..20 {
                writer.write_all(&event).unwrap();
            }
            let id = command["id"].to_string();
            writer.write_all(format!("{{\"return\": {{}}, \"id\": {id}}}\r\n").as_bytes()).unwrap();
            line.clear();
        }
    });
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let stream = vmwire_smol::Stream::Unix(async_io::Async::new(ours).unwrap());
        let (qmp, driver) = Qmp::handshake(stream, Options::default()).await.unwrap().share();
        let driver = ex.spawn(driver);
        let idle = qmp.subscribe(Filter::All, 8);
        for _ in 0..5 {
            qmp.execute::<serde_json::Value>("query-status", ()).await.unwrap();
        }
        // 20,000 events for each of the 5 calls, 8 kept.
        assert_eq!(idle.missed(), 5 * 20_000 - 8);
        // Nobody left to use it: the driver closes the connection and ends.
        drop((qmp, idle));
        driver.await.unwrap();
    }));
    peer.join().unwrap();
}
