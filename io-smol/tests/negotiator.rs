//! The async negotiator against negotiator-common's own Python code
//! (0.12.2), both ways, over UNIX sockets in a private temporary
//! directory; an async daemon serving Python callers at once; hostile
//! peers; a call cancelled half way. The Python peers are the very
//! programs `io-std/tests/negotiator_interop.rs` runs.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use async_io::Async;
use futures_lite::future;
use vmwire_proto::buf::Heap;
use vmwire_proto::negotiator::{Error as Violation, Responder};
use vmwire_smol::negotiator::{
    Answer, Channel, Commands, Error, GuestAgent, GuestChannel, Handler, Job, Options, RunCommands, serve_session,
};
use vmwire_smol::{Conn, Stream};

use common::negotiator::{CALLER as PYTHON_CALLER, Fixture, Hostile, SERVER as PYTHON_SERVER, read_line};

fn options(timeout: Duration) -> Options {
    Options { timeout: Some(timeout), ..Options::default() }
}

#[test]
fn calls_a_python_interface() {
    let fx = Fixture::new();
    let socket = fx.path("h2g.sock");
    let commands = fx.path("commands");
    let args = [socket.to_str().unwrap(), commands.to_str().unwrap()];
    let (mut python, mut out) = fx.python(PYTHON_SERVER, &args, true);
    smol::block_on(async {
        let mut guest = GuestChannel::connect(&socket).await.unwrap();
        let listed = guest.list_commands().await.unwrap();
        for name in ["echo-input", "echo-args", "fail", "find-distributor-id"] {
            assert!(listed.contains(&name.to_string()), "{name} not in {listed:?}");
        }
        assert!(!listed.contains(&"README".to_string()));

        // Text beyond ASCII and beyond the BMP, both ways; one line comes back trimmed.
        let text = "caf\u{e9} \u{2603} \u{1F600}\tend";
        assert_eq!(guest.execute("echo-input", &[], Some(&format!("  {text}\n"))).await.unwrap(), text);
        assert_eq!(guest.execute("echo-args", &["\u{e9}", "a b", "--x"], None).await.unwrap(), "\u{e9}|a b|--x|");

        // A failing command: the peer's error, naming the exit status.
        match guest.execute("fail", &[], None).await {
            Err(Error::Remote(e)) => assert!(e.contains("exit code 3"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Unknown methods, in the peer's words, non-ASCII included.
        for method in ["nosuch", "m\u{e9}thode_\u{2603}"] {
            match guest.call::<serde_json::Value>(method, (), ()).await {
                Err(Error::Remote(e)) => assert_eq!(e, format!("Method {method} not supported")),
                other => panic!("{other:?}"),
            }
        }
        // Typed calls and raw calls.
        let id: String = guest.call("execute", ["echo-args", "x"], serde_json::json!({"input": null})).await.unwrap();
        assert_eq!(id, "x|");
        let raw = guest.call_raw("execute", r#"["echo-input"]"#, r#"{"input": "\u00e9"}"#).await.unwrap();
        assert_eq!(raw, r#""\u00e9""#);
        assert_eq!(guest.list_commands().await.unwrap().len(), listed.len());
        guest.close();
    });
    assert_eq!(read_line(&mut out).trim(), "ended ProtocolError");
    python.wait().unwrap();
}

/// Serves the first connection on `listener` with `commands` (as the host
/// of guest `guest`, if named), in a thread of its own.
fn serve_one(
    listener: UnixListener,
    commands: Commands,
    guest: Option<&'static str>,
) -> thread::JoinHandle<Result<(), Error>> {
    thread::spawn(move || {
        smol::block_on(async {
            let (stream, _) = Async::new(listener).unwrap().accept().await.unwrap();
            let channel = Channel::new(Stream::Unix(stream), "test socket", Options::default());
            match guest {
                Some(name) => GuestChannel::new(channel, Some(name)).serve(&commands).await,
                None => GuestAgent::new(channel).serve(&commands).await,
            }
        })
    })
}

#[test]
fn a_python_interface_calls_the_async_responder() {
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
        {"args": ["m\u{e9}thode_\u{2603}"]},
        {"args": ["raw_write", "INJECTED-BY-REMOTE"]},
        {"args": ["execute", "../commands/echo-input"]},
        {"args": ["execute", "README"]},
        {"args": ["execute", "echo-input"], "kw": {"shell": true}},
        {"args": ["list_commands", 1]},
        {"args": ["list_commands"]},
    ]);
    let (mut python, mut out) =
        fx.python(PYTHON_CALLER, &[socket.to_str().unwrap(), "connect", &calls.to_string()], false);
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&read_line(&mut out)).unwrap();
    assert!(python.wait().unwrap().success());
    // The caller closed its end: the session, on a socket, is over and well.
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
    assert_eq!(error(6), "Method m\u{e9}thode_\u{2603} not supported");
    assert_eq!(error(7), "Method raw_write not supported");
    assert_eq!(error(8), "Command name \"../commands/echo-input\" is not a plain file name (paths are not run)");
    assert_eq!(error(9), "No command named \"README\" is available");
    assert_eq!(error(10), "execute() got an unexpected keyword argument 'shell'");
    assert_eq!(error(11), "list_commands() takes no arguments");
    assert_eq!(result(12), result(0));
}

#[test]
fn an_async_daemon_serves_python_callers_at_once_with_a_handler_of_its_own() {
    let fx = Fixture::new();
    let socket = fx.path("daemon.sock");
    let listener = Async::new(UnixListener::bind(&socket).unwrap()).unwrap();
    // Two callers, each holding its session open while the other calls.
    let calls = serde_json::json!([
        {"args": ["list_commands"]},
        {"args": ["execute", "who", "\u{1F600}"]},
        {"args": ["execute", "nosuch"]},
        {"args": ["raw_write", "x"]},
    ])
    .to_string();
    let callers: Vec<_> =
        (0..2).map(|_| fx.python(PYTHON_CALLER, &[socket.to_str().unwrap(), "connect", &calls], false)).collect();
    // The daemon: a loop of accept and serve, every session a task on one thread.
    let daemon = thread::spawn(move || {
        let executor = smol::LocalExecutor::new();
        smol::block_on(executor.run(async {
            let mut sessions = Vec::new();
            for n in 0..2 {
                let (socket, _) = listener.accept().await.unwrap();
                sessions.push(executor.spawn(async move {
                    let mut conn = Conn::new(Stream::Unix(socket), Responder::<Heap>::new(Default::default()));
                    let label = format!("caller {n}");
                    let mut handler = async |job: Job| match job {
                        Job::List => Answer::Commands(vec!["who".into()]),
                        Job::Execute { argv, .. } if argv[0] == "who" => Answer::Output(argv[1..].join(" ")),
                        Job::Execute { argv, .. } => Answer::Failed(format!("no {}", argv[0])),
                        Job::Refused(message) => Answer::Failed(message),
                    };
                    serve_session(&mut conn, &label, &mut handler, &Options::default()).await
                }));
            }
            for session in sessions {
                session.await.unwrap();
            }
        }));
    });
    for (mut python, mut out) in callers {
        let outcomes: serde_json::Value = serde_json::from_str(&read_line(&mut out)).unwrap();
        assert_eq!(
            outcomes,
            serde_json::json!([
                {"result": ["who"]},
                {"result": "\u{1F600}"},
                {"error": "no nosuch"},
                {"error": "Method raw_write not supported"},
            ])
        );
        assert!(python.wait().unwrap().success());
    }
    daemon.join().unwrap();
}

impl Hostile {
    fn new() -> Self {
        Self::serving(|listener, commands| serve_one(listener, commands, None))
    }
}

#[test]
fn hostile_requests_are_answered_and_errors_named() {
    let mut peer = Hostile::new();
    assert_eq!(peer.error("{nope"), "negotiator: frame body: invalid JSON at byte 3: expected '\"' or '}', found 'n'");
    assert_eq!(peer.error("[1, 2]"), "negotiator: request is not a JSON object");
    assert_eq!(peer.error(r#"{"method": "_private"}"#), "Method _private not supported");
    assert_eq!(
        peer.error(r#"{"method": "execute", "args": [["echo-input"]]}"#),
        "execute() argument 0 is not a string"
    );
    // A body cut short by the end of the stream: the framing is lost, and named.
    peer.send(b"100\n{\"method\": ");
    match peer.finish() {
        Err(Error::Protocol(Violation::TruncatedBody { length: 100, received: 11 })) => {}
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
        Err(Error::Protocol(Violation::LengthLineTooLong { limit: 24, offset: 0 })) => {}
        other => panic!("{other:?}"),
    }
}

/// A responder of raw bytes: after each request it reads, the next of
/// `replies`; then it waits for the caller to close (if `stay`), or closes.
fn raw_responder(socket: &PathBuf, replies: Vec<&'static [u8]>, stay: bool) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        for reply in replies {
            let _ = s.read(&mut buf);
            s.write_all(reply).unwrap();
        }
        if stay {
            let _ = s.read(&mut buf);
        }
    })
}

#[test]
fn caller_against_a_hostile_responder() {
    let fx = Fixture::new();
    let socket = fx.path("evil.sock");
    let evil = raw_responder(&socket, vec![b"1000000000000000000\n", &[b'x'; 64]], true);
    smol::block_on(async {
        let mut guest = GuestChannel::connect_with(&socket, None, options(Duration::from_secs(30))).await.unwrap();
        match guest.list_commands().await {
            Err(Error::Protocol(Violation::TooLarge { length, limit })) => {
                assert_eq!((length, limit), (1_000_000_000_000_000_000, 16 << 20));
            }
            other => panic!("{other:?}"),
        }
        // The peer's next bytes are the oversized body, skipped; the session
        // can only end by the timeout or the peer closing.
        guest.set_timeout(Some(Duration::from_millis(200)));
        assert!(matches!(guest.list_commands().await, Err(Error::Timeout)));
    });
    evil.join().unwrap();
}

#[test]
fn a_responder_that_closes_in_the_middle_of_its_response() {
    let fx = Fixture::new();
    let socket = fx.path("cut.sock");
    let cut = raw_responder(&socket, vec![b"100\n{\"success\": tr"], false);
    smol::block_on(async {
        let mut guest = GuestChannel::connect_with(&socket, None, options(Duration::from_secs(30))).await.unwrap();
        match guest.list_commands().await {
            Err(Error::Protocol(Violation::TruncatedBody { length: 100, received: 14 })) => {}
            other => panic!("{other:?}"),
        }
        // The channel is over, and says so.
        assert!(matches!(guest.list_commands().await, Err(Error::Closed)));
    });
    cut.join().unwrap();
}

#[test]
fn a_call_dropped_while_it_waits_leaves_the_channel_usable() {
    let fx = Fixture::new();
    let socket = fx.path("cancel.sock");
    let commands = fx.path("commands");
    let args = [socket.to_str().unwrap(), commands.to_str().unwrap()];
    let (mut python, _out) = fx.python(PYTHON_SERVER, &args, true);
    let flag = fx.path("slow");
    let flag = flag.to_str().unwrap();
    smol::block_on(async {
        let mut guest = GuestChannel::connect(&socket).await.unwrap();
        {
            // Polled once: the request is written and the call waits for its
            // response; then the call's future is dropped (its task cancelled).
            let args = [flag];
            let call = guest.execute("slow", &args, None);
            assert!(future::poll_once(call).await.is_none(), "the response came at once");
        }
        // (The Python peer loses a request that comes before it has answered
        // the one it runs: its text file drops what it read ahead when it writes.)
        common::eventually("the slow command", Duration::from_secs(30), || {
            std::path::Path::new(&format!("{flag}.started")).exists().then_some(())
        });
        // The next call, sent before the late response of the call dropped
        // comes, gets its own response: the late one is dropped when it comes.
        let after = guest.execute("echo-args", &["after"], None);
        let go = async { std::fs::write(format!("{flag}.go"), "").unwrap() };
        assert_eq!(future::zip(after, go).await.0.unwrap(), "after|");
        assert_eq!(guest.execute("echo-args", &["again"], None).await.unwrap(), "again|");
    });
    let _ = python.kill();
    let _ = python.wait();
}

#[test]
fn a_client_over_another_stream_type() {
    // The caller and the responder over async-io's sockets, not `Stream`.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (ours, theirs) = (Async::new(ours).unwrap(), Async::new(theirs).unwrap());
    smol::block_on(async {
        let mut channel = Channel::new(ours, "pair", options(Duration::from_secs(30)));
        let mut conn = Conn::new(theirs, Responder::<Heap>::new(Default::default()));
        let mut handler = async |job: Job| match job {
            Job::Execute { argv, input } => Answer::Output(format!("{argv:?} {input:?}")),
            _ => Answer::Failed("only execute".into()),
        };
        let defaults = Options::default();
        let serving = serve_session(&mut conn, "pair", &mut handler, &defaults);
        let calling = async {
            let out = channel.execute("x", &["\u{e9}"], Some("in")).await;
            match channel.list_commands().await {
                Err(Error::Remote(e)) => assert_eq!(e, "only execute"),
                other => panic!("{other:?}"),
            }
            // Our end closes: the session ends well.
            drop(channel);
            out
        };
        let (served, out) = future::zip(serving, calling).await;
        assert_eq!(out.unwrap(), "[\"x\", \"\u{e9}\"] Some(\"in\")");
        served.unwrap();
    });
}

#[test]
fn a_response_whose_caller_left_is_dropped() {
    let (caller, ours) = UnixStream::pair().unwrap();
    let request = br#"{"method": "execute", "args": ["x"], "kw": {}}"#;
    (&caller).write_all(format!("{}\n", request.len()).as_bytes()).unwrap();
    (&caller).write_all(request).unwrap();
    let caller = std::cell::RefCell::new(Some(caller));
    smol::block_on(async {
        let mut conn = Conn::new(Stream::Unix(Async::new(ours).unwrap()), Responder::<Heap>::new(Default::default()));
        // The caller leaves while its job runs.
        let mut handler = async |_: Job| {
            drop(caller.borrow_mut().take());
            Answer::Output("too late".into())
        };
        serve_session(&mut conn, "leaving", &mut handler, &Options::default()).await.unwrap();
        // The answer was never queued: the request is still the machine's last word.
        assert_eq!(conn.machine().state(), vmwire_proto::negotiator::State::Busy);
    });
}

#[test]
fn run_commands_is_the_std_responders_handler() {
    let fx = Fixture::new();
    let mut run = RunCommands::new(&fx.commands(), "test", &[("NEGOTIATOR_GUEST", "vm-\u{2603}")]);
    smol::block_on(async {
        let job = Job::Execute { argv: vec!["echo-env".into()], input: None };
        assert_eq!(run.answer(job).await, Answer::Output("vm-\u{2603}".into()));
        assert_eq!(run.answer(Job::Refused("no".into())).await, Answer::Failed("no".into()));
    });
}

use common::pty::thread_cpu_ticks;

#[test]
fn a_call_on_a_hung_up_device_waits_for_its_deadline_without_spinning() {
    // A virtio-serial port with no host polls as hung up at once and refuses
    // writes (EAGAIN). So does a pseudo-terminal whose slave side was
    // closed, once its buffer is full: the same test without a guest.
    let master = common::pty::hung_up_and_full();

    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut channel =
            Channel::new(Stream::Device(Async::new(master).unwrap()), "the pty", options(Duration::from_secs(2)));
        let before = thread_cpu_ticks();
        let error = smol::block_on(channel.list_commands()).unwrap_err();
        let _ = done.send((error, thread_cpu_ticks() - before));
    });
    // A hang guard: a transport that ignores its deadline never returns.
    let (error, used) = outcome.recv_timeout(Duration::from_secs(60)).expect("the call ignored its 2 s deadline");
    assert!(matches!(error, Error::NotConnected { .. }), "{error:?}");
    assert_eq!(error.to_string(), "negotiator: no host connected to the pty within 2s");
    // A spin detector, not a timing: a busy loop burns most of the 2 s.
    assert!(used < 50, "{used} ticks of CPU in 2 s: the transport spins on a hung-up device");
}
