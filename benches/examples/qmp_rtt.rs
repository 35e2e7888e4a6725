//! `n` sequential `query-status` round trips against a QEMU it starts, with
//! one contender, to count system calls and client CPU per round trip:
//!
//! `strace -c -e trace=!wait4 target/release/examples/qmp_rtt <raw|typed|execute_raw> <n>`
//!
//! `raw` is the floor of `benches/qmp_roundtrip.rs` (the same request bytes
//! written, the reply read to `\r\n`); `raw+poll` waits in `ppoll(2)` with a
//! 10 s timeout before each read, as `vmwire_std`'s transport does, and
//! `raw+poll-untimed` in `ppoll(2)` without a timeout: they tell what the
//! wait itself costs. The QEMU child is not traced (no `-f`).
//! Prints the wall time per round trip and the client thread's CPU time per round trip.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Options, Qmp};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Status {
    status: String,
    running: bool,
}

/// CPU time of this thread so far (user and system, from the scheduler's
/// nanosecond count), in microseconds.
fn cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (contender, n) = (args[1].as_str(), args[2].parse::<u32>().unwrap());
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU");
    let path = qemu.qmp_path().unwrap().to_path_buf();
    let (start, cpu) = match contender {
        "raw" | "raw+poll" | "raw+poll-untimed" => {
            let timeout = match contender {
                "raw+poll" => Some(Some(rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 })),
                "raw+poll-untimed" => Some(None),
                _ => None,
            };
            let mut socket = UnixStream::connect(&path).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut line = |socket: &mut UnixStream, request: &[u8]| {
                socket.write_all(request).unwrap();
                let mut len = 0;
                loop {
                    if let Some(timeout) = timeout {
                        let mut fds = [rustix::event::PollFd::new(&*socket, rustix::event::PollFlags::IN)];
                        rustix::event::poll(&mut fds, timeout.as_ref()).unwrap();
                    }
                    let got = socket.read(&mut buf[len..]).unwrap();
                    assert!(got > 0);
                    len += got;
                    if buf[..len].ends_with(b"\r\n") {
                        return;
                    }
                }
            };
            line(&mut socket, b"");
            line(&mut socket, b"{\"execute\":\"qmp_capabilities\"}\r\n");
            let (start, cpu) = (Instant::now(), cpu_us());
            for _ in 0..n {
                line(&mut socket, b"{\"execute\":\"query-status\",\"id\":1000}\r\n");
            }
            (start, cpu)
        }
        "typed" | "execute_raw" => {
            let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
            let (start, cpu) = (Instant::now(), cpu_us());
            for _ in 0..n {
                if contender == "typed" {
                    drop(qmp.execute::<Status>("query-status", ()).unwrap());
                } else {
                    drop(qmp.execute_raw("query-status", None).unwrap());
                }
            }
            (start, cpu)
        }
        other => panic!("contender {other}"),
    };
    let (wall, cpu) = (start.elapsed().as_secs_f64() * 1e6 / f64::from(n), (cpu_us() - cpu) / f64::from(n));
    eprintln!("{contender}: {wall:.1} µs per round trip, client CPU {cpu:.1} µs per round trip");
}
