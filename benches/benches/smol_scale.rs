//! Many QMP sessions in one process: vmwire-smol's shared QMP connections
//! (a handle and a driver task each) on one thread, against a peer that
//! replays QEMU's captured greeting and replies over UNIX socket pairs.
//!
//! `cargo bench -p vmwire-benches --bench smol_scale` (no QEMU needed).
//!
//! For 1,000 and 10,000 sessions it reports the heap each idle session
//! holds once negotiated (every buffer, the driver task, the reactor's
//! registration; counted by a counting allocator, so exact), the resident
//! memory it adds (a cross-check, pages included), and the time to send
//! `query-status` to every session at once and collect every reply.
//!
//! The peer runs in a child process (this same program, re-run): both ends
//! of 10,000 socket pairs would need 20,000 descriptors in one process,
//! more than this machine's limit per process allows. Its ends go to it
//! over a UNIX socket (`SCM_RIGHTS`); it answers from the captured bytes in
//! `fixtures/qmp/08_pipelined.s2c`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use async_io::Async;
use smol::LocalExecutor;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use vmwire_smol::Stream;
use vmwire_smol::qmp::{Handle, Options, Qmp};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident memory, in bytes (`/proc/self/statm`).
fn resident() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: isize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * rustix::param::page_size() as isize
}

/// The captured greeting, and the reply to `query-status` (its id replaced).
fn captured() -> (Vec<u8>, String) {
    let s2c = vmwire_benches::fixture("qmp/08_pipelined.s2c");
    let mut lines = s2c.split_inclusive(|&b| b == b'\n');
    let greeting = lines.next().unwrap().to_vec();
    let status = lines.map(String::from_utf8_lossy).find(|l| l.contains("\"status\"")).unwrap().into_owned();
    (greeting, status)
}

/// The peer: answers every session whose end arrives on `control`.
fn peer(control: &str) {
    let (greeting, status) = captured();
    let (prefix, _) = status.rsplit_once("\"id\"").unwrap();
    let prefix = prefix.to_owned();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let control = Async::new(UnixStream::connect(control).unwrap()).unwrap();
        loop {
            let fds = control.read_with(receive_fds).await.unwrap();
            if fds.is_empty() {
                return;
            }
            for fd in fds {
                let (greeting, prefix) = (greeting.clone(), prefix.clone());
                ex.spawn(async move { serve(UnixStream::from(fd), &greeting, &prefix).await }).detach();
            }
        }
    }));
}

/// One session: the greeting, then an answer to each command, with its id.
async fn serve(socket: UnixStream, greeting: &[u8], status: &str) {
    let mut socket = Async::new(socket).unwrap();
    let _ = socket.write_all(greeting).await;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        match socket.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        while let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            let command: serde_json::Value = serde_json::from_slice(&buf[..end]).unwrap();
            let id = command.get("id").map(|id| id.to_string());
            let reply = match (command["execute"].as_str(), id) {
                (Some("qmp_capabilities"), Some(id)) => format!("{{\"return\": {{}}, \"id\": {id}}}\r\n"),
                (Some("qmp_capabilities"), None) => "{\"return\": {}}\r\n".to_owned(),
                (_, Some(id)) => format!("{status}\"id\": {id}}}\r\n"),
                (_, None) => format!("{}}}\r\n", status.trim_end_matches(", ")),
            };
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            buf.copy_within(end + 1..len, 0);
            len -= end + 1;
        }
    }
}

/// Up to 128 descriptors from one message (none: the sender is done).
fn receive_fds(control: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(128))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = recvmsg(control, &mut [std::io::IoSliceMut::new(&mut byte)], &mut ancillary, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if got.bytes == 0 && fds.is_empty() {
        return Ok(Vec::new());
    }
    Ok(fds)
}

fn send_fds(control: &UnixStream, fds: &[OwnedFd]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    assert!(ancillary.push(SendAncillaryMessage::ScmRights(&borrowed)));
    sendmsg(control, &[IoSlice::new(b"x")], &mut ancillary, SendFlags::empty()).unwrap();
}

/// What one round measured.
struct Figures {
    sessions: usize,
    heap_per_session: isize,
    resident_per_session: isize,
    fan_out: Duration,
}

/// Opens `n` sessions (their peer ends to the peer over `control`),
/// measures them idle, sends one command to all, and closes them.
fn round(ex: &LocalExecutor<'_>, control: &UnixStream, n: usize) -> Figures {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.div_ceil(128) {
        let mut batch = Vec::new();
        for _ in 0..128.min(n - clients.len()) {
            let (ours, theirs) = UnixStream::pair().unwrap();
            clients.push(ours);
            batch.push(OwnedFd::from(theirs));
        }
        send_fds(control, &batch);
    }
    let mut handles: Vec<Handle> = Vec::with_capacity(n);
    let (heap, rss) = (live(), resident());
    smol::block_on(ex.run(async {
        let opening: Vec<_> = clients
            .drain(..)
            .map(|socket| {
                ex.spawn(async move {
                    let stream = Stream::Unix(Async::new(socket).unwrap());
                    Qmp::handshake(stream, Options::default()).await.unwrap()
                })
            })
            .collect();
        for qmp in opening {
            let (handle, driver) = qmp.await.share();
            ex.spawn(driver).detach();
            handles.push(handle);
        }
        // Every driver has run once, and waits.
        while ex.try_tick() {}
    }));
    let heap_per_session = (live() - heap) / n as isize;
    let resident_per_session = (resident() - rss) / n as isize;
    let fan_out = smol::block_on(ex.run(async {
        let start = Instant::now();
        let calls: Vec<_> = handles
            .iter()
            .map(|handle| {
                let handle = handle.clone();
                ex.spawn(async move { handle.execute::<serde_json::Value>("query-status", ()).await.unwrap() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await["status"], "prelaunch");
        }
        start.elapsed()
    }));
    drop(handles);
    smol::block_on(ex.run(async { while ex.try_tick() {} }));
    Figures { sessions: n, heap_per_session, resident_per_session, fan_out }
}

fn main() {
    if let Ok(control) = std::env::var("VMWIRE_SCALE_PEER") {
        return peer(&control);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut child =
        std::process::Command::new(std::env::current_exe().unwrap()).env("VMWIRE_SCALE_PEER", &path).spawn().unwrap();
    let (control, _) = listener.accept().unwrap();
    let ex = LocalExecutor::new();
    // A warm-up round: the executor's and the reactor's own tables grow once.
    round(&ex, &control, 100);
    let figures: Vec<Figures> = [1_000, 10_000].into_iter().map(|n| round(&ex, &control, n)).collect();
    control.shutdown(std::net::Shutdown::Both).unwrap();
    child.wait().unwrap();
    println!("smol_scale: shared QMP sessions on one thread, a replaying peer over UNIX socket pairs");
    println!(
        "{:>9} {:>16} {:>20} {:>14} {:>14}",
        "sessions", "heap / session", "resident / session", "fan-out", "per session"
    );
    for f in figures {
        println!(
            "{:>9} {:>14} B {:>18} B {:>11.1} ms {:>11.2} µs",
            f.sessions,
            f.heap_per_session,
            f.resident_per_session,
            f.fan_out.as_secs_f64() * 1e3,
            f.fan_out.as_secs_f64() * 1e6 / f.sessions as f64
        );
    }
}
