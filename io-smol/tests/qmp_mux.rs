//! The QMP multiplexer as a library, against a real QEMU (`-machine none
//! -S`): clients handed out in-process (`UnixStream::pair()`), with
//! colliding ids, events, a client that never reads, a client that leaves
//! mid-command, QEMU killed; and its refusals compared with QEMU's own.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use async_io::Async;
use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader as AsyncBufReader};
use smol::LocalExecutor;
use vmwire_smol::qmp::mux::{Ended, Mux, Options as MuxOptions, Served};
use vmwire_smol::qmp::{Options, Qmp, Stray};
use vmwire_std::qemu::{QEMU_BINARY, QEMU_PACKAGE, Qemu};

fn qemu() -> Qemu {
    common::qemu_builder().qmp().spawn().unwrap()
}

/// A mux over `qemu`'s monitor, its driver running on `ex`.
async fn mux(ex: &LocalExecutor<'_>, qemu: &Qemu, options: MuxOptions) -> Rc<Mux> {
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options { oob: true, ..Options::default() }).await.unwrap();
    let (handle, driver) = qmp.share();
    ex.spawn(driver).detach();
    Rc::new(Mux::new(handle, options))
}

/// A client handed out in-process: our end (async), and the mux's session.
fn client(ex: &LocalExecutor<'_>, mux: &Rc<Mux>) -> (Async<UnixStream>, smol::Task<std::io::Result<Served>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mux = mux.clone();
    let session = ex.spawn(async move { mux.serve_client(Async::new(theirs).unwrap()).await });
    (Async::new(ours).unwrap(), session)
}

/// Reads one line (one QMP message) as JSON.
async fn line<R: futures_lite::AsyncBufRead + Unpin>(r: &mut R) -> serde_json::Value {
    let mut s = String::new();
    assert!(r.read_line(&mut s).await.unwrap() > 0, "end of stream");
    serde_json::from_str(&s).unwrap()
}

/// The next reply (skipping events), as JSON.
async fn reply<R: futures_lite::AsyncBufRead + Unpin>(r: &mut R, events: &mut Vec<String>) -> serde_json::Value {
    loop {
        let v = line(r).await;
        match v.get("event") {
            Some(e) => events.push(e.as_str().unwrap().to_string()),
            None => return v,
        }
    }
}

#[test]
fn clients_with_the_same_ids_get_their_own_replies_and_every_event() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let mux = mux(&ex, &qemu, MuxOptions::default()).await;
        // vmwire's own client, through the mux.
        let (ours, _session) = client(&ex, &mux);
        let mut ours = Qmp::handshake(ours, Options::default()).await.unwrap();
        assert_eq!(ours.greeting(), mux.handle().greeting());
        // Two raw clients, pipelining with the same ids.
        let mut raws = Vec::new();
        for who in ["a", "b"] {
            let (stream, session) = client(&ex, &mux);
            let mut r = AsyncBufReader::new(stream);
            let greeting = line(&mut r).await;
            assert_eq!(greeting["QMP"]["capabilities"], serde_json::json!(["oob"]));
            let mut batch =
                String::from("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n");
            for i in 0..20 {
                let (cmd, arg) = match i % 3 {
                    0 => ("stop", String::new()),
                    1 => ("cont", String::new()),
                    _ => ("human-monitor-command", format!(", \"arguments\": {{\"command-line\": \"x{who}{i}\"}}")),
                };
                batch += &format!("{{\"execute\": \"{cmd}\"{arg}, \"id\": {{\"n\": {i}}}}}\n");
            }
            batch += "{\"execute\": \"query-name\"}\n";
            batch += "{\"exec-oob\": \"query-yank\", \"id\": \"oob\"}\n";
            r.get_mut().write_all(batch.as_bytes()).await.unwrap();
            raws.push((who, r, session));
        }
        for round in 0..5 {
            let status: serde_json::Value = ours.execute("query-status", ()).await.unwrap();
            assert!(status["status"].is_string(), "{round}: {status}");
        }
        for (who, r, _) in &mut raws {
            let mut events = Vec::new();
            assert_eq!(reply(r, &mut events).await, serde_json::json!({"return": {}}));
            let mut seen_oob = false;
            let mut i = 0;
            while i < 21 {
                let v = reply(r, &mut events).await;
                if v["id"] == "oob" {
                    assert!(v["return"].is_array(), "{v}");
                    seen_oob = true;
                    continue;
                }
                if i == 20 {
                    // No id: the reply all the same, in order.
                    assert!(v.get("id").is_none() && v["return"].is_object(), "{who}: {v}");
                } else {
                    assert_eq!(v["id"], serde_json::json!({"n": i}), "{who}: {v}");
                    if i % 3 == 2 {
                        assert_eq!(v["return"], format!("unknown command: 'x{who}{i}'\r\n"), "{who}: {v}");
                    }
                }
                i += 1;
            }
            if !seen_oob {
                let v = reply(r, &mut events).await;
                assert_eq!(v["id"], "oob", "{v}");
            }
            // Each stop/cont's event came to every negotiated client.
            assert!(events.iter().any(|e| e == "STOP") && events.iter().any(|e| e == "RESUME"), "{events:?}");
        }
        assert!(ours.take_strays().is_empty());
    }));
}

#[test]
fn a_client_that_never_reads_loses_events_and_stalls_nobody() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let options = MuxOptions { events: 4, max_buffered: 512, ..MuxOptions::default() };
        let mux = mux(&ex, &qemu, options).await;
        let (slow, slow_session) = client(&ex, &mux);
        // It negotiates, then reads nothing more (its socket buffers kept small).
        rustix::net::sockopt::set_socket_recv_buffer_size(slow.get_ref(), 1).unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(slow.get_ref(), 1).unwrap();
        slow.get_ref().write_all(b"{\"execute\": \"qmp_capabilities\"}\n").unwrap();
        let (ours, _session) = client(&ex, &mux);
        let mut ours = Qmp::handshake(ours, Options::default()).await.unwrap();
        // 2,000 events: far more than its queue, buffer and socket hold.
        let i = 2000;
        for i in 0..i {
            ours.execute::<serde_json::Value>(if i % 2 == 0 { "stop" } else { "cont" }, ()).await.unwrap();
        }
        drop(slow);
        let served = slow_session.await.unwrap();
        assert_eq!(served.ended, Ended::Left);
        assert!(served.missed_events > 0, "{served:?} after {i} commands");
        assert_eq!(mux.missed_events(), served.missed_events);
        // The other client lost nothing of its own.
        let status: serde_json::Value = ours.execute("query-status", ()).await.unwrap();
        assert!(status["status"].is_string());
    }));
}

#[test]
fn a_client_gone_mid_command_has_its_reply_discarded() {
    let qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let mux = mux(&ex, &qemu, MuxOptions::default()).await;
        let (gone, gone_session) = client(&ex, &mux);
        let mut r = AsyncBufReader::new(gone);
        line(&mut r).await;
        r.get_mut().write_all(b"{\"execute\": \"qmp_capabilities\"}\n").await.unwrap();
        assert_eq!(line(&mut r).await, serde_json::json!({"return": {}}));
        r.get_mut().write_all(b"{\"execute\": \"query-status\", \"id\": 1}\n").await.unwrap();
        drop(r);
        assert_eq!(gone_session.await.unwrap().ended, Ended::Left);
        // Another client's command, answered after it: the other reply, if it
        // was still to come, went to nobody.
        let (ours, _session) = client(&ex, &mux);
        let mut ours = Qmp::handshake(ours, Options::default()).await.unwrap();
        let status: serde_json::Value = ours.execute("query-status", ()).await.unwrap();
        assert!(status["status"].is_string());
        assert!(ours.take_strays().is_empty());
        for stray in mux.handle().take_strays() {
            assert!(matches!(stray, Stray::Stale { .. }), "{stray:?}");
        }
    }));
}

#[test]
fn qemu_killed_fails_pending_commands_and_disconnects_everyone() {
    let mut qemu = qemu();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let mux = mux(&ex, &qemu, MuxOptions::default()).await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (stream, session) = client(&ex, &mux);
            let mut r = AsyncBufReader::new(stream);
            line(&mut r).await;
            r.get_mut().write_all(b"{\"execute\": \"qmp_capabilities\"}\n").await.unwrap();
            assert_eq!(line(&mut r).await, serde_json::json!({"return": {}}));
            clients.push((r, session));
        }
        // QEMU stopped (it answers nothing), a command pending on each client.
        let pid = rustix::process::Pid::from_raw(qemu.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        for (r, _) in &mut clients {
            r.get_mut().write_all(b"{\"execute\": \"query-status\", \"id\": \"pending\"}\n").await.unwrap();
        }
        qemu.kill().unwrap();
        for (mut r, session) in clients {
            let v = line(&mut r).await;
            assert_eq!(v["id"], "pending", "{v}");
            assert_eq!(v["error"]["class"], "GenericError", "{v}");
            let mut rest = String::new();
            assert_eq!(r.read_line(&mut rest).await.unwrap(), 0, "disconnected: {rest}");
            assert_eq!(session.await.unwrap().ended, Ended::QemuGone);
        }
    }));
}

#[test]
fn refusals_are_the_same_as_qemus() {
    // QEMU with two monitors: one behind the mux, one spoken to directly.
    common::require_binary(QEMU_BINARY, QEMU_PACKAGE);
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct.sock");
    let qemu = Qemu::builder().qmp().arg("-qmp").arg(format!("unix:{},server=on,wait=off", direct.display())).spawn();
    let qemu = qemu.unwrap();
    const INPUTS: &[&str] = &[
        r#"{"execute": "query-status", "id": 1}"#,
        r#"{"exec-oob": "query-yank", "id": 2}"#,
        r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["nosuch"]}, "id": 3}"#,
        r#"{"execute": "qmp_capabilities", "arguments": {"enable": [1]}, "id": 4}"#,
        r#"{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}, "id": {"o": [1, "x", null]}}"#,
        r#"{"execute": "qmp_capabilities", "arguments": {"x": 1}, "id": 5}"#,
        r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 6}"#,
        r#"{"execute": "qmp_capabilities", "id": 7}"#,
        r#"{"execute": "query-status", "exec-oob": "query-yank", "id": 8}"#,
        r#"{"execute": "nosuch", "id": [true]}"#,
        r#"{"id": 9, "foo": 1}"#,
        r#"{"execute": 1, "id": 10}"#,
        r#"{"execute": "query-status", "arguments": [], "id": 11}"#,
        r#"{}"#,
        r#"[]"#,
        r#"42"#,
        r#"{"execute": "query-status",}"#,
        r#"{"execute": "query-status", "id": "dup", "id": "dup2"}"#,
        r#"{"execute": "query-status", "arguments": {"a": 1, "a": 2}, "id": 12}"#,
        r#"{"exec-oob": "query-yank", "id": "oob"}"#,
        r#"{"exec-oob": "query-status", "id": "not-oob"}"#,
        r#"{"execute": "query-name", "id": null}"#,
    ];
    let ask = |path: &std::path::Path| -> Vec<String> {
        let inputs = INPUTS;
        let s = UnixStream::connect(path).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut out = Vec::new();
        let mut greeting = String::new();
        r.read_line(&mut greeting).unwrap();
        out.push(greeting);
        for input in inputs {
            (&s).write_all(format!("{input}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            r.read_line(&mut reply).unwrap();
            out.push(reply);
        }
        out
    };
    let expected = ask(&direct);
    let ex = LocalExecutor::new();
    let mux_path = dir.path().join("mux.sock");
    let listener = vmwire_smol::qmp::mux::Listener::bind_unix(&mux_path).unwrap();
    let got = smol::block_on(ex.run(async {
        let mux = mux(&ex, &qemu, MuxOptions::default()).await;
        let serving = {
            let mux = mux.clone();
            ex.spawn(async move { mux.serve(&listener).await })
        };
        let got = smol::unblock(move || ask(&mux_path)).await;
        drop(serving);
        got
    }));
    assert_eq!(got, expected);
}
