//! Pipelined `query-status` on one connection to a real QEMU: vmwire-smol's
//! shared handle with 1, 8 and 64 commands in flight, with and without
//! out-of-band capability negotiated, against the std client's sequential
//! round trips and the raw-socket floor (sequential, and 64 pipelined), in
//! the same run.
//!
//! `cargo bench -p vmwire-benches --bench qmp_pipelined` (needs QEMU).
//!
//! Without `oob` negotiated, QEMU reads one command, answers it, then reads
//! the next: commands in flight queue in its socket, and the gain is only
//! the client's own turn-around. With `oob`, its monitor reads ahead (up to
//! 8 requests queued) on its I/O thread while the main loop runs them. The
//! contenders take turns, a batch each per round (QEMU serves one client at
//! a time), and the report is each one's median over the rounds.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use vmwire_std::qemu::Qemu;

/// A raw QMP connection (negotiated by hand, with or without oob): request
/// bytes out, reply lines counted in.
struct Raw {
    socket: UnixStream,
    buf: Vec<u8>,
    len: usize,
}

impl Raw {
    fn connect(path: &Path, oob: bool) -> Raw {
        let mut raw = Raw { socket: UnixStream::connect(path).unwrap(), buf: vec![0; 1 << 16], len: 0 };
        raw.lines(1); // greeting
        let capabilities: &[u8] = if oob {
            b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\r\n"
        } else {
            b"{\"execute\":\"qmp_capabilities\"}\r\n"
        };
        raw.socket.write_all(capabilities).unwrap();
        raw.lines(1);
        raw
    }

    /// Reads `n` lines (to `\r\n`), keeping whatever follows the last.
    fn lines(&mut self, mut n: usize) {
        while n > 0 {
            match self.buf[..self.len].windows(2).position(|w| w == b"\r\n") {
                Some(end) => {
                    self.buf.copy_within(end + 2..self.len, 0);
                    self.len -= end + 2;
                    n -= 1;
                }
                None => {
                    let got = self.socket.read(&mut self.buf[self.len..]).unwrap();
                    assert!(got > 0, "QEMU closed");
                    self.len += got;
                }
            }
        }
    }
}

const REQUEST: &[u8] = b"{\"execute\":\"query-status\",\"id\":1000}\r\n";

/// `total` requests on a raw connection, 64 written at once, then their 64
/// replies read: QEMU's own ceiling.
fn raw_pipelined(path: &Path, oob: bool, total: usize) -> Duration {
    let mut raw = Raw::connect(path, oob);
    let burst = REQUEST.repeat(64);
    let start = Instant::now();
    for _ in 0..total / 64 {
        raw.socket.write_all(&burst).unwrap();
        raw.lines(64);
    }
    start.elapsed()
}

/// `total` calls through a shared handle, `in_flight` at a time (as many
/// tasks, each calling in turn).
fn smol_pipelined(path: &Path, oob: bool, in_flight: usize, total: usize) -> Duration {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let options = vmwire_smol::qmp::Options { oob, ..Default::default() };
        let qmp = vmwire_smol::qmp::Qmp::connect_unix(path, options).await.unwrap();
        assert_eq!(qmp.oob(), oob);
        let (qmp, driver) = qmp.share();
        let driver = ex.spawn(driver);
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let qmp = qmp.clone();
                ex.spawn(async move {
                    for _ in 0..total / in_flight {
                        qmp.execute_raw("query-status", None).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let elapsed = start.elapsed();
        drop(qmp);
        driver.await.unwrap();
        elapsed
    }))
}

type Contender<'a> = (String, Box<dyn FnMut(usize) -> Duration + 'a>);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, batch) = if quick { (3, 256) } else { (15, 1024) };
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU (apt-get install qemu-system-x86)");
    let path = qemu.qmp_path().unwrap().to_path_buf();
    let path = path.as_path();
    let mut contenders: Vec<Contender> = vec![
        (
            "raw socket, sequential (the floor)".into(),
            Box::new(|n| {
                let mut raw = Raw::connect(path, false);
                let start = Instant::now();
                for _ in 0..n {
                    raw.socket.write_all(REQUEST).unwrap();
                    raw.lines(1);
                }
                start.elapsed()
            }),
        ),
        ("raw socket, 64 pipelined".into(), Box::new(|n| raw_pipelined(path, false, n))),
        ("raw socket, 64 pipelined, oob".into(), Box::new(|n| raw_pipelined(path, true, n))),
        (
            "vmwire-std execute_raw, sequential".into(),
            Box::new(|n| {
                let mut qmp = vmwire_std::qmp::Qmp::connect_unix(path, Default::default()).unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    qmp.execute_raw("query-status", None).unwrap();
                }
                start.elapsed()
            }),
        ),
    ];
    for oob in [false, true] {
        for in_flight in [1, 8, 64] {
            let name = format!("vmwire-smol, {in_flight} in flight{}", if oob { ", oob" } else { "" });
            contenders.push((name, Box::new(move |n| smol_pipelined(path, oob, in_flight, n))));
        }
    }
    let mut per_op: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for round in 0..rounds {
        for k in 0..contenders.len() {
            let which = (round + k) % contenders.len();
            per_op[which].push((contenders[which].1)(batch) / batch as u32);
        }
    }
    let floor = median(per_op[0].clone());
    println!("qmp_pipelined: query-status on one connection, {rounds} rounds x {batch} commands, medians");
    println!("{:<40} {:>10} {:>12} {:>16}", "", "per op", "commands/s", "vs floor (speed)");
    for ((name, _), times) in contenders.iter().zip(per_op) {
        let m = median(times);
        println!(
            "{name:<40} {:>8.1}µs {:>12.0} {:>15.2}×",
            m.as_secs_f64() * 1e6,
            1.0 / m.as_secs_f64(),
            floor.as_secs_f64() / m.as_secs_f64()
        );
    }
}
