//! The async minimega client over a real UNIX socket, against the fake
//! daemon of io-std's tests (`io-std/tests/fake_minimega/`, proven there
//! faithful to the real daemon's captures): minimega is packaged in no
//! registry these machines reach.

#[path = "../../io-std/tests/fake_minimega/mod.rs"]
mod fake_minimega;

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use fake_minimega::{Fake, World};
use futures_lite::future;
use vmwire_smol::minimega::{CommandLine, Error, Minimega, Options};

/// The command files the tests' `read` commands read.
fn files(world: &mut World) {
    for (path, text) in [
        ("/tmp/mm-fixt/cmds_err.mm", "echo first\nvm kill nosuchvm\necho third\n"),
        ("/tmp/mm-fixt/cmds_raw.mm", "echo one\nvm kill nosuchvm\necho two\n.columns name,state vm info\nnamespace\n"),
        ("/tmp/mm-fixt/cmds_raw2.mm", "echo r1\necho r2\necho r3\n"),
    ] {
        world.files.insert(path.into(), text.into());
    }
}

fn options() -> Options {
    Options { timeout: Some(Duration::from_secs(20)), ..Options::default() }
}

async fn connect(fake: &Fake) -> Minimega {
    Minimega::connect_with(fake.path(), options()).await.unwrap()
}

#[test]
fn runs_commands_and_reads_responses() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        let version = mm.run("version").await.unwrap();
        assert_eq!(version.rendered(), format!("mmpeer: {}", fake_minimega::VERSION));
        let r = &version.frames[0].responses[0];
        assert_eq!(
            (r.host.as_str(), r.response.as_str(), r.error.as_deref()),
            ("mmpeer", fake_minimega::VERSION, None)
        );

        #[derive(serde::Deserialize)]
        struct Host {
            #[serde(rename = "MemTotal")]
            mem_total: u64,
        }
        let host = mm.run("host name").await.unwrap();
        let data: Host = host.frames[0].responses[0].decode_data().unwrap().unwrap();
        assert_eq!(data.mem_total, 24105);
        assert_eq!(fake.world().requests, ["{\"Command\":\"version\"}", "{\"Command\":\"host name\"}"]);
        assert!(mm.run("# nothing").await.unwrap().is_empty());
        // Arguments that need quoting, non-ASCII included, survive as one word each.
        let words = ["a b", "\"q\"", "it's", "#no comment", "back\\slash", "", "\u{e9}\u{2028}\u{1F600}"];
        let line = CommandLine::new("echo").args(words).finish().unwrap();
        assert_eq!(mm.run(&line).await.unwrap().frames[0].responses[0].response, words.join(" "));
    });
}

#[test]
fn errors_are_raised_after_the_whole_stream_is_read() {
    let fake = Fake::with(files);
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        match mm.run("read /tmp/mm-fixt/cmds_err.mm").await {
            Err(Error::Command(e)) => {
                assert_eq!(e.to_string(), "Error (mmpeer): vm not found: nosuchvm");
                let texts: Vec<&str> = e.responses.iter().map(|r| r.response.as_str()).collect();
                assert_eq!(texts, ["first", "", "third"]);
            }
            other => panic!("{other:?}"),
        }
        // The next command reads its own reply, not the rest of the last one.
        assert_eq!(mm.run("echo fresh").await.unwrap().rendered(), "mmpeer: fresh");

        mm.set_raise_errors(false);
        let r = mm.run("vm kill nosuchvm").await.unwrap();
        assert_eq!(r.errors().next().unwrap().error.as_deref(), Some("vm not found: nosuchvm"));
        let r = mm.run("echo \"oops").await.unwrap();
        assert_eq!(r.errors().next().unwrap().error.as_deref(), Some("missing terminal \""));
    });
}

#[test]
fn streams_frame_by_frame_with_status_messages_in_the_middle() {
    let fake = Fake::with(|w| {
        files(w);
        w.status_mid_stream = Some("launching 1/3".into());
    });
    smol::block_on(async {
        let mut mm = Minimega::connect_with(fake.path(), Options { raise_errors: false, ..options() }).await.unwrap();
        let mut stream = mm.stream("read /tmp/mm-fixt/cmds_raw.mm").await.unwrap();
        let mut seen = Vec::new();
        while let Some(frame) = stream.next().await {
            let frame = frame.unwrap();
            seen.push((frame.more, frame.responses[0].response.clone(), frame.responses[0].error.clone()));
        }
        let summary = stream.summary().unwrap();
        assert_eq!((summary.frames, summary.errors), (5, 1));
        assert_eq!(seen[0], (true, "one".into(), None));
        assert_eq!(seen[1], (true, String::new(), Some("vm not found: nosuchvm".into())));
        assert!(!seen[4].0);
        assert_eq!(mm.take_status(), ["launching 1/3"]);

        // Raising errors, a stream yields the failed frame as an error and goes on.
        mm.set_raise_errors(true);
        let items = mm.stream("read /tmp/mm-fixt/cmds_err.mm").await.unwrap().collect().await;
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[1], Err(Error::Command(_))));
        assert_eq!(items[2].as_ref().unwrap().responses[0].response, "third");

        // A stream dropped half way: the next command reads the rest first.
        let mut stream = mm.stream("read /tmp/mm-fixt/cmds_raw2.mm").await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().responses[0].response, "r1");
        drop(stream);
        assert_eq!(mm.run("echo after-read").await.unwrap().rendered(), "mmpeer: after-read");
    });
}

/// A frame of one response from host `h` (`more`: more frames follow).
fn frame(response: &str, more: bool) -> String {
    let resp = format!(r#"{{"Host":"h","Response":"{response}","Header":null,"Tabular":null,"Error":"","Data":null}}"#);
    format!("{{\"Resp\":[{resp}],\"Rendered\":\"{response}\",\"More\":{more},\"Status\":false}}\n")
}

#[test]
// The lock is the fake daemon's, held to keep it from answering (in its own thread).
#[allow(clippy::await_holding_lock)]
fn a_command_dropped_half_way_leaves_the_client_usable() {
    // A daemon that sends the first frame of a reply, and its last only when told.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimega");
    let listener = UnixListener::bind(&path).unwrap();
    let (go, told) = std::sync::mpsc::channel::<()>();
    let daemon = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut requests = std::io::BufReader::new(&s);
        let mut request = String::new();
        requests.read_line(&mut request).unwrap();
        (&s).write_all(frame("one", true).as_bytes()).unwrap();
        told.recv().unwrap();
        (&s).write_all(frame("two", false).as_bytes()).unwrap();
        request.clear();
        requests.read_line(&mut request).unwrap();
        (&s).write_all(frame("after", false).as_bytes()).unwrap();
        request
    });
    smol::block_on(async {
        let mut mm = Minimega::connect_with(&path, options()).await.unwrap();
        // Polled once: the request is sent and the reply awaited; then the
        // command's future is dropped (its task cancelled) half way.
        assert!(future::poll_once(mm.run("read x.mm")).await.is_none());
        go.send(()).unwrap();
        // The next command reads the rest of that reply first, then its own.
        let after = mm.run("echo after").await.unwrap();
        assert_eq!(after.frames.len(), 1);
        assert_eq!(after.frames[0].responses[0].response, "after");
    });
    assert_eq!(daemon.join().unwrap(), "{\"Command\":\"echo after\"}\n");

    // The same against the fake daemon, which cannot answer while its state is locked.
    let fake = Fake::with(files);
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        {
            let _busy = fake.world();
            assert!(future::poll_once(mm.run("read /tmp/mm-fixt/cmds_raw2.mm")).await.is_none());
        }
        assert_eq!(mm.run("echo after").await.unwrap().rendered(), "mmpeer: after");
        {
            let _busy = fake.world();
            assert!(future::poll_once(mm.suggest("vm i")).await.is_none());
        }
        assert_eq!(mm.suggest("vm i").await.unwrap(), ["vm info "]);
    });
}

#[test]
fn status_messages_between_commands() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        assert_eq!(mm.next_status(Some(Duration::ZERO)).await.unwrap(), None);
        mm.run("version").await.unwrap();
        // The daemon sends status to the connection that last ran a command.
        assert!(fake.status("3 VMs launched"));
        assert_eq!(mm.next_status(None).await.unwrap().as_deref(), Some("3 VMs launched"));
        assert!(fake.status("again"));
        // A status message that arrives before a reply is kept, not taken for it.
        assert_eq!(mm.run("echo x").await.unwrap().rendered(), "mmpeer: x");
        assert_eq!(mm.take_status(), ["again"]);
    });
}

#[test]
fn suggestions() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        assert_eq!(mm.suggest("vm i").await.unwrap(), ["vm info "]);
        assert_eq!(mm.suggest("zzz").await.unwrap(), Vec::<String>::new());
        assert_eq!(mm.suggest("vm ").await.unwrap().len(), 17);
        assert_eq!(fake.world().requests[0], "{\"Suggest\":\"vm i\"}");
    });
}

#[test]
fn a_namespace_handle_prefixes_every_command_and_never_switches() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        {
            let mut ns = mm.with_namespace("exp1").unwrap();
            assert!(ns.run("vm info").await.unwrap().is_ok());
            assert_eq!(ns.run("echo hi").await.unwrap().rendered(), "mmpeer: hi");
        }
        assert_eq!(fake.world().requests[0], "{\"Command\":\"namespace \\\"exp1\\\" vm info\"}");
        assert_eq!(fake.world().active, "minimega");
        let table = mm.run("namespace").await.unwrap().table().sorted();
        let names: Vec<&str> = table.records().map(|r| r.get("namespace").unwrap()).collect();
        assert_eq!(names, ["exp1", "minimega"]);
        assert!(matches!(mm.with_namespace("bad/name"), Err(Error::Protocol(_))));
        let with = Options { namespace: Some("exp2".into()), ..options() };
        Minimega::connect_with(fake.path(), with).await.unwrap().run("echo x").await.unwrap();
        assert!(fake.world().namespaces.iter().any(|(n, _)| n == "exp2"));
    });
}

#[test]
fn pipes_carry_lines_both_ways() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        let mut pipe = mm.pipe("minimega//p1").await.unwrap();
        pipe.write_line("hello").await.unwrap();
        assert_eq!(pipe.read(None).await.unwrap().as_deref(), Some("hello\n"));
        mm.run("pipe p1 from-a-command").await.unwrap();
        assert_eq!(pipe.next().await.unwrap().unwrap(), "from-a-command");
        assert_eq!(pipe.read(Some(Duration::ZERO)).await.unwrap(), None);
        let ns = mm.with_namespace("minimega").unwrap();
        let mut same = ns.pipe("p1").await.unwrap();
        same.write("x").await.unwrap();
        assert_eq!(same.name(), "minimega//p1");
        assert_eq!(same.read(None).await.unwrap().as_deref(), Some("x"));
        assert_eq!(pipe.read(None).await.unwrap().as_deref(), Some("x"));
    });
}

#[test]
fn the_daemon_closing_without_a_reply_is_reported_clearly() {
    let fake = Fake::start();
    smol::block_on(async {
        let mut mm = connect(&fake).await;
        let e = mm.run("quit").await.unwrap_err();
        assert!(matches!(&e, Error::Closed { request: Some(r), frames: 0 } if r == "quit"), "{e:?}");
        assert_eq!(
            e.to_string(),
            "minimega closed the connection without replying to `quit` (it does so after `quit`, and on a request it cannot decode)"
        );
        assert!(matches!(mm.run("version").await, Err(Error::Closed { .. })));
        assert!(fake.stopped());
        assert!(matches!(Minimega::connect(fake.path()).await, Err(Error::Connect { .. })));
    });
}

#[test]
fn a_daemon_that_closes_in_the_middle_of_a_reply() {
    // One frame of two, then the connection closes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimega");
    let listener = UnixListener::bind(&path).unwrap();
    let daemon = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = s.read(&mut request).unwrap();
        s.write_all(frame("one", true).as_bytes()).unwrap();
    });
    smol::block_on(async {
        let mut mm = Minimega::connect_with(&path, options()).await.unwrap();
        let e = mm.run("read x.mm").await.unwrap_err();
        assert!(matches!(&e, Error::Closed { request: Some(r), frames: 1 } if r == "read x.mm"), "{e:?}");
        assert_eq!(e.to_string(), "minimega closed the connection after 1 frame(s) of the reply to `read x.mm`");
        assert!(matches!(mm.run("version").await, Err(Error::Closed { request: None, .. })));
    });
    daemon.join().unwrap();
}

#[test]
// The lock is the fake daemon's, held to keep it from answering (in its own thread).
#[allow(clippy::await_holding_lock)]
fn a_timeout_closes_the_connection() {
    let fake = Fake::start();
    smol::block_on(async {
        let with = Options { timeout: Some(Duration::from_millis(50)), ..options() };
        let mut mm = Minimega::connect_with(fake.path(), with).await.unwrap();
        {
            // The daemon cannot answer while its state is locked.
            let _busy = fake.world();
            assert!(matches!(mm.run("version").await, Err(Error::Timeout)));
        }
        // Without ids, the late reply could be taken for the next command's.
        assert!(matches!(mm.run("version").await, Err(Error::Closed { .. })));
    });
}

#[test]
fn an_oversized_frame_fails_the_command_at_once_and_closes_the_connection() {
    let fake = Fake::start();
    let mut config = Options::default().config;
    config.limits.max_message = 4096;
    let path = fake.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    // No timeout: the command must fail on its own. The thread only guards against a hang.
    std::thread::spawn(move || {
        smol::block_on(async {
            let mut mm = Minimega::connect_with(&path, Options { timeout: None, config, ..options() }).await.unwrap();
            let first = mm.run("shell seq 1 100000").await.map(|r| r.len());
            let after = mm.run("version").await.map(|r| r.len());
            tx.send((first, after)).unwrap();
        })
    });
    let (first, after) = rx.recv_timeout(Duration::from_secs(120)).expect("the command hangs");
    let e = first.unwrap_err();
    assert!(matches!(e, Error::Protocol(vmwire_proto::minimega::Error::FrameTooLarge { limit: 4096 })), "{e:?}");
    assert!(matches!(after, Err(Error::Closed { .. })), "{after:?}");
    smol::block_on(async {
        let mut mm = Minimega::connect_with(fake.path(), Options { config, ..options() }).await.unwrap();
        assert_eq!(mm.run("shell seq 3").await.unwrap().iter().next().unwrap().response, "1\n2\n3\n");
    });
}

#[test]
fn under_tokio_through_its_compat_layer() {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let fake = Fake::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(fake.path()).await.unwrap().compat();
        let mut mm = Minimega::new(stream, fake.path(), options()).unwrap();
        assert_eq!(mm.run("echo \u{2603}").await.unwrap().rendered(), "mmpeer: \u{2603}");
        assert_eq!(mm.suggest("vm i").await.unwrap(), ["vm info "]);
    });
}

#[test]
fn connecting_to_a_missing_socket_says_where() {
    let e = smol::block_on(Minimega::connect("/nonexistent/minimega")).unwrap_err();
    assert!(e.to_string().starts_with("minimega: cannot connect to /nonexistent/minimega: "), "{e}");
}
