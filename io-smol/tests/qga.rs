//! The async guest agent client against a real qemu-ga (`--method
//! unix-listen`, run here on the host as root), one agent per test, its
//! socket and state in a private temporary directory: the cases of
//! vmwire-std's `qga_interop`, and what only an async client has (a future
//! dropped mid-wait, another runtime's stream).

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use vmwire_proto::qga::Config;
use vmwire_smol::qga::{Agent, Error, ExitStatus, Options, Shutdown};

use common::qga::{Ga, returns, scripted_agent};

impl Ga {
    async fn connect(&self) -> Agent {
        Agent::connect_unix(self.socket(), Options::default()).await.expect("connect and sync")
    }

    /// Stops the agent (`SIGSTOP`) until the guard is dropped.
    fn stop(&self) -> Stopped {
        assert!(signal(self.child.id(), "-STOP"));
        Stopped(self.child.id())
    }
}

/// A stopped process, continued (`SIGCONT`) when this goes.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// Sends `signal` (`-STOP`, …) to `pid`; whether it went.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill").arg(signal).arg(pid.to_string()).status().is_ok_and(|s| s.success())
}

/// What `ready` yields, looked for every few milliseconds; a wait of more
/// than ten seconds fails the test (a guard against hangs, not a timing).
async fn eventually<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(std::time::Instant::now() < give_up, "gave up waiting: {what}");
        Timer::after(Duration::from_millis(5)).await;
    }
}

/// `work`'s output, or `None` once `after` has passed: `work` is then dropped where it waits.
async fn drop_after<T>(after: Duration, work: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(work.await) }, async {
        Timer::after(after).await;
        None
    })
    .await
}

#[test]
fn syncs_pings_and_describes_itself() {
    let ga = Ga::start(&[]);
    smol::block_on(async {
        let mut agent = ga.connect().await;
        agent.ping().await.unwrap();
        let info = agent.info().await.unwrap();
        assert!(info.version.starts_with("7."), "{}", info.version);
        let exec = info.supported_commands.iter().find(|c| c.name == "guest-exec").unwrap();
        assert!(exec.enabled && exec.success_response);
        let shutdown = info.supported_commands.iter().find(|c| c.name == "guest-shutdown").unwrap();
        assert!(!shutdown.success_response);
        // This host is the "guest": the agent reads its /etc/os-release.
        let os = agent.osinfo().await.unwrap();
        let release = std::fs::read_to_string("/etc/os-release").unwrap();
        let id = release.lines().find_map(|l| l.strip_prefix("ID=")).unwrap().trim_matches('"');
        assert_eq!(os.id.as_deref(), Some(id));
        assert_eq!(os.machine.as_deref(), Some(std::env::consts::ARCH));
        // A resync on demand, and typed and raw commands after it.
        agent.sync().await.unwrap();
        let time: u64 = agent.execute("guest-get-time", ()).await.unwrap();
        assert!(time > 1_600_000_000_000_000_000);
        assert_eq!(agent.execute_raw("guest-ping", None).await.unwrap(), "{}");
        match agent.execute_raw("no-such-command", None).await {
            Err(Error::Agent(e)) => assert_eq!(e.class, "CommandNotFound"),
            other => panic!("{other:?}"),
        }
        let host: serde_json::Value = agent.execute("guest-get-host-name", ()).await.unwrap();
        assert!(host["host-name"].is_string(), "{host}");
        assert!(agent.take_strays().is_empty());
    });
}

#[test]
fn sync_clears_a_request_left_half_written() {
    let ga = Ga::start(&[]);
    // An earlier client dies in the middle of a request.
    let mut earlier = std::os::unix::net::UnixStream::connect(ga.socket()).unwrap();
    earlier.write_all(b"{\"execute\": \"guest-sync\", \"arguments\": {\"id\": 1").unwrap();
    drop(earlier);
    // The agent's parser still holds it; the opening 0xFF clears it.
    smol::block_on(async {
        let mut agent = ga.connect().await;
        agent.ping().await.unwrap();
        let host: serde_json::Value = agent.execute("guest-get-host-name", ()).await.unwrap();
        assert!(host["host-name"].is_string());
    });
}

#[test]
fn exec_reports_exit_codes_signals_and_output() {
    let ga = Ga::start(&[]);
    smol::block_on(async {
        let mut agent = ga.connect().await;
        let out = agent.exec("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"], &[], None).await.unwrap();
        assert_eq!(
            (out.status, out.stdout.as_slice(), out.stderr.as_slice()),
            (ExitStatus::Code(3), &b"out\n"[..], &b"err\n"[..])
        );
        assert!(!out.status.success() && !out.stdout_truncated);

        let input: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let out = agent.exec("/bin/cat", &[], &[], Some(&input)).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, input);

        let env = ["GREETING=hello from the host"];
        let out = agent.exec("/bin/sh", &["-c", "echo \"$GREETING\""], &env, None).await.unwrap();
        assert_eq!(out.stdout, b"hello from the host\n");

        let out = agent.exec("/bin/sh", &["-c", "sleep 0.2; kill -9 $$"], &[], None).await.unwrap();
        assert_eq!(out.status, ExitStatus::Signal(9));
        assert_eq!(out.status.code(), None);

        match agent.exec("/nonexistent/program", &[], &[], None).await {
            Err(Error::Agent(e)) => assert!(e.desc.contains("/nonexistent/program"), "{e}"),
            other => panic!("{other:?}"),
        }

        // Past the time limit: named by its pid, and the session goes on.
        drop(agent); // the agent serves one client at a time
        // No limit on each reply: the deadline alone bounds it (and the last look).
        let options = Options { exec_timeout: Some(Duration::from_millis(300)), timeout: None, ..Options::default() };
        let mut agent = Agent::connect_unix(ga.socket(), options).await.unwrap();
        match agent.exec("/bin/sleep", &["30"], &[], None).await {
            Err(Error::StillRunning { pid, limit }) => {
                assert_eq!(limit, Duration::from_millis(300));
                assert!(Command::new("kill").arg(pid.to_string()).status().unwrap().success());
            }
            other => panic!("{other:?}"),
        }
        agent.ping().await.unwrap();
    });
}

/// A writer that takes `limit` bytes, then fails (`fail`) or never takes another (not `fail`).
struct Stalling {
    taken: Vec<u8>,
    limit: usize,
    fail: bool,
}

impl AsyncWrite for Stalling {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let room = self.limit - self.taken.len();
        match (room, self.fail) {
            (0, true) => Poll::Ready(Err(std::io::Error::other("the disk is full"))),
            (0, false) => Poll::Pending,
            _ => {
                let n = room.min(buf.len());
                self.taken.extend_from_slice(&buf[..n]);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A reader of `data` that hands out at most 777 bytes a read, and fails once it is done if `fail`.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    fail: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let left = self.data.len() - self.at;
        if left == 0 && self.fail {
            return Poll::Ready(Err(std::io::Error::other("the source went away")));
        }
        let n = left.min(buf.len()).min(777);
        let at = self.at;
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

#[test]
fn files_round_trip_in_chunks_and_handles_are_closed() {
    let ga = Ga::start(&[]);
    // Larger than one 64 KiB chunk, and not a multiple of it or of 3.
    let data: Vec<u8> = (0..200_017u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    smol::block_on(async {
        let mut agent = ga.connect().await;
        let fds = ga.open_fds();
        let path = ga.path("round trip.bin");
        agent.write_file(&path, &data).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(agent.read_file(&path).await.unwrap(), data);
        // Streamed, from a reader that gives little at a time, to any writer.
        let path = ga.path("streamed.bin");
        let mut source = Trickle { data: data.clone(), at: 0, fail: false };
        assert_eq!(agent.write_file_from(&path, &mut source).await.unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mut sink = futures_lite::io::Cursor::new(Vec::new());
        assert_eq!(agent.read_file_to(&path, &mut sink).await.unwrap(), data.len() as u64);
        assert_eq!(sink.into_inner(), data);
        // (The agent takes one client at a time.)
        agent.close();

        // Small chunks: many reads and writes.
        let options = Options { chunk_size: 1000, ..Options::default() };
        let mut small = Agent::connect_unix(ga.socket(), options).await.unwrap();
        let path2 = ga.path("small chunks.bin");
        small.write_file(&path2, &data[..4321]).await.unwrap();
        assert_eq!(small.read_file(&path2).await.unwrap(), &data[..4321]);
        small.write_file(&path2, b"").await.unwrap();
        assert_eq!(small.read_file(&path2).await.unwrap(), b"");
        assert_eq!(ga.open_fds(), fds, "every guest file handle was closed");

        // Failures: open fails (nothing to close), or a read fails (closed anyway).
        match small.read_file(&ga.path("missing")).await {
            Err(Error::Agent(e)) => assert!(e.desc.contains("No such file"), "{e}"),
            other => panic!("{other:?}"),
        }
        match small.read_file(ga.dir.path().to_str().unwrap()).await {
            Err(Error::Agent(e)) => assert!(e.desc.contains("Is a directory"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The caller's writer or reader fails: its error, and the handle closed.
        let mut full = Stalling { taken: Vec::new(), limit: 2500, fail: true };
        match small.read_file_to(&path, &mut full).await {
            Err(Error::Io(e)) => assert_eq!(e.to_string(), "the disk is full"),
            other => panic!("{other:?}"),
        }
        assert_eq!(full.taken, &data[..2500]);
        let mut broken = Trickle { data: data[..3000].to_vec(), at: 0, fail: true };
        match small.write_file_from(&ga.path("broken.bin"), &mut broken).await {
            Err(Error::Io(e)) => assert_eq!(e.to_string(), "the source went away"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(ga.path("broken.bin")).unwrap(), &data[..3000], "the whole chunks went");
        assert_eq!(ga.open_fds(), fds, "the handles of the failed transfers were closed");
        small.ping().await.unwrap();
    });
}

#[test]
fn blocked_commands_are_the_agents_error() {
    let ga = Ga::start(&["guest-exec", "guest-file-open", "guest-shutdown"]);
    smol::block_on(async {
        let mut agent = ga.connect().await;
        let disabled = |r: Result<(), Error>| match r {
            Err(Error::Agent(e)) => e.class == "CommandNotFound" && e.desc.contains("disabled"),
            _ => false,
        };
        assert!(disabled(agent.exec("/bin/true", &[], &[], None).await.map(drop)));
        assert!(disabled(agent.read_file("/etc/hostname").await.map(drop)));
        // guest-shutdown answers only when it refuses: here it does (safely).
        assert!(disabled(agent.shutdown(Shutdown::Powerdown).await));
        let info = agent.info().await.unwrap();
        assert!(!info.supported_commands.iter().find(|c| c.name == "guest-exec").unwrap().enabled);
        agent.ping().await.unwrap();
    });
}

#[test]
fn agent_killed_mid_command() {
    let mut ga = Ga::start(&[]);
    // A guest program that runs until the test is over; exec waits for it.
    let marker = ga.path("started");
    let script = format!("echo $$ > '{marker}'; exec sleep 60");
    let socket = ga.socket();
    let running = std::thread::spawn(move || {
        smol::block_on(async {
            let mut agent = Agent::connect_unix(socket, Options::default()).await.unwrap();
            agent.exec("/bin/sh", &["-c", &script], &[], None).await
        })
    });
    common::eventually("the guest program to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&marker).is_ok_and(|pid| pid.ends_with('\n')).then_some(())
    });
    ga.kill();
    let outcome = running.join().unwrap();
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    let sleeper = std::fs::read_to_string(&marker).unwrap();
    let _ = Command::new("kill").arg("-9").arg(sleeper.trim()).status();

    // A command in flight when the agent dies: closed, and closed after.
    ga.restart();
    smol::block_on(async {
        let mut agent = ga.connect().await;
        // Stopped, the agent cannot answer before it dies.
        assert!(signal(ga.child.id(), "-STOP"));
        let ping = future::or(agent.ping(), async {
            Timer::after(Duration::from_millis(100)).await;
            ga.kill();
            future::pending().await
        });
        assert!(matches!(ping.await, Err(Error::Closed)));
        assert!(matches!(agent.ping().await, Err(Error::Closed)));
    });

    // A new agent on the same path: a new session syncs as usual.
    ga.restart();
    smol::block_on(async { ga.connect().await.ping().await.unwrap() });
}

#[test]
fn a_timeout_resyncs_before_the_next_command() {
    let ga = Ga::start(&[]);
    smol::block_on(async {
        let mut agent = ga.connect().await;
        // A stopped agent answers nothing: the command times out...
        let stopped = ga.stop();
        agent.set_timeout(Some(Duration::from_millis(200)));
        assert!(matches!(agent.ping().await, Err(Error::Timeout)));
        // ... and once it runs again, its late reply is not taken for the next command's.
        drop(stopped);
        agent.set_timeout(Some(Duration::from_secs(10)));
        assert!(agent.execute_raw("guest-get-timezone", None).await.unwrap().contains("zone"));
        agent.ping().await.unwrap();
    });
}

#[test]
fn a_command_dropped_mid_wait_leaves_the_session_in_step() {
    let ga = Ga::start(&[]);
    smol::block_on(async {
        let mut agent = ga.connect().await;
        // Dropped while the reply is awaited (the agent stopped: it cannot come first).
        let stopped = ga.stop();
        assert!(drop_after(Duration::from_millis(200), agent.ping()).await.is_none());
        drop(stopped);
        // The late reply is not taken for the next command's.
        assert!(agent.execute_raw("guest-get-timezone", None).await.unwrap().contains("zone"));
        agent.ping().await.unwrap();

        // Dropped while a guest program runs (between polls or during one).
        let marker = ga.path("sleeper");
        let script = format!("echo $$ > '{marker}'; exec sleep 60");
        let args = ["-c", script.as_str()];
        let exec = agent.exec("/bin/sh", &args, &[], None);
        // Dropped once the guest program started and some polls went.
        let dropped = future::or(async { Some(exec.await) }, async {
            let started = || std::fs::read_to_string(&marker).ok().filter(|pid| pid.ends_with('\n'));
            let pid = eventually("the guest program to start", started).await;
            Timer::after(Duration::from_millis(300)).await;
            assert!(signal(pid.trim().parse().unwrap(), "-9"));
            None
        });
        assert!(dropped.await.is_none());
        let out = agent.exec("/bin/echo", &["next"], &[], None).await.unwrap();
        assert_eq!((out.status, out.stdout.as_slice()), (ExitStatus::Code(0), &b"next\n"[..]));

        // Dropped in the middle of a file read: the caller's writer takes
        // the first chunk, then never another.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let path = ga.path("dropped mid-read.bin");
        std::fs::write(&path, &data).unwrap();
        let mut stalling = Stalling { taken: Vec::new(), limit: 64 << 10, fail: false };
        assert!(drop_after(Duration::from_millis(500), agent.read_file_to(&path, &mut stalling)).await.is_none());
        assert_eq!(stalling.taken, &data[..64 << 10]);
        assert_eq!(agent.read_file(&path).await.unwrap(), data);

        // Dropped in the middle of a file write: the reader gives one chunk, then never another.
        let path = ga.path("dropped mid-write.bin");
        let mut stalled = futures_lite::io::AsyncReadExt::chain(&data[..64 << 10], Never);
        assert!(drop_after(Duration::from_millis(500), agent.write_file_from(&path, &mut stalled)).await.is_none());
        agent.write_file(&path, b"whole").await.unwrap();
        assert_eq!(agent.read_file(&path).await.unwrap(), b"whole");
        assert!(agent.take_strays().is_empty(), "{:?}", agent.take_strays());
    });
}

/// A reader that never has anything.
struct Never;

impl AsyncRead for Never {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Poll::Pending
    }
}

#[test]
fn over_a_character_device() {
    // qemu-ga on one terminal (it makes its end raw), the client on another
    // (open_device makes its end raw too), wired back to back like a serial cable.
    let cable = common::pty::Cable::new();
    let ga = Ga::serial(&cable.peer);
    cable.wait_raw("qemu-ga");
    smol::block_on(async {
        let mut agent = Agent::open_device(&cable.client, Options::default()).await.unwrap();
        agent.ping().await.unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let path = ga.path("over the wire");
        agent.write_file(&path, &data).await.unwrap();
        assert_eq!(agent.read_file(&path).await.unwrap(), data);
        let out = agent.exec("/bin/echo", &["over", "a", "tty"], &[], None).await.unwrap();
        assert_eq!(out.stdout, b"over a tty\n");
        agent.close();
    });
    drop(ga);
    cable.finish();
}

#[test]
fn a_reply_over_the_limit_says_so_and_the_session_goes_on() {
    let (_dir, socket, agent) = scripted_agent(|name, id| match name {
        "guest-get-osinfo" => returns(&[&b"\""[..], &vec![b'a'; 2000], b"\""].concat(), id),
        _ => returns(b"{}", id),
    });
    smol::block_on(async {
        let mut config = Config::default();
        config.limits.max_message = 1000;
        let mut ga = Agent::connect_unix(&socket, Options { config, ..Options::default() }).await.unwrap();
        match ga.execute_raw("guest-get-osinfo", None).await {
            Err(Error::ReplyTooLarge { command, limit: 1000 }) => assert_eq!(command, "guest-get-osinfo"),
            other => panic!("{other:?}"),
        }
        ga.ping().await.unwrap();
        ga.close();
    });
    agent.join().unwrap();
}

#[test]
fn what_belongs_to_no_command_is_kept_as_strays() {
    // Before each reply, one to a command nobody sent.
    let (_dir, socket, agent) =
        scripted_agent(|_, id| [returns(b"{\"nobody\": 1}", &serde_json::json!(424242)), returns(b"{}", id)].concat());
    smol::block_on(async {
        let mut ga = Agent::connect_unix(&socket, Options::default()).await.unwrap();
        ga.ping().await.unwrap();
        ga.ping().await.unwrap();
        let strays = ga.take_strays();
        assert_eq!(strays.len(), 2, "{strays:?}");
        assert!(strays.iter().all(|s| s.starts_with("unmatched reply: ") && s.contains("nobody")), "{strays:?}");
        assert!(ga.take_strays().is_empty());
        ga.close();
    });
    agent.join().unwrap();
}

#[test]
fn a_monitor_socket_is_not_an_agent_said_at_once() {
    let qemu = common::qemu_builder().qmp().hmp().spawn().unwrap();
    smol::block_on(async {
        for (socket, got) in
            [(qemu.qmp_path().unwrap(), r#"{"QMP": {"version": {"qemu": "#), (qemu.hmp_path().unwrap(), "QEMU 7.")]
        {
            // Said with what came, rather than a timeout.
            let e = Agent::connect_unix(socket, Options::default()).await.unwrap_err();
            assert!(matches!(&e, Error::WrongProtocol { got: text, .. } if text.starts_with(got)), "{e:?}");
            let said = e.to_string();
            assert!(said.starts_with("QGA: expected the guest agent's answer to guest-sync-delimited, "), "{said}");
        }
    });
}

#[test]
fn over_a_tokio_stream_through_compat() {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let ga = Ga::start(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(ga.socket()).await.unwrap();
        let mut agent = Agent::handshake(stream.compat(), Options::default()).await.unwrap();
        agent.ping().await.unwrap();
        let out = agent.exec("/bin/sh", &["-c", "cat; exit 5"], &[], Some(b"through tokio")).await.unwrap();
        assert_eq!((out.status, out.stdout.as_slice()), (ExitStatus::Code(5), &b"through tokio"[..]));
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let path = ga.path("tokio.bin");
        agent.write_file(&path, &data).await.unwrap();
        assert_eq!(agent.read_file(&path).await.unwrap(), data);
    });
}
