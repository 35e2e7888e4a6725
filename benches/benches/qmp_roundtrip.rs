//! Sequential `query-status` round trips against a real QEMU: the std client
//! against a raw-socket floor (the same request bytes pre-encoded, reading to
//! `\r\n`, no parsing), and QEMU's own Python client (PyPI `qemu.qmp`), in
//! the same run.
//!
//! `cargo bench -p vmwire-benches --bench qmp_roundtrip` (needs QEMU, and
//! `.venv` from `scripts/test` or `$VMWIRE_PYTHON` for the Python client).
//!
//! A round trip is mostly QEMU's own latency, which drifts with whatever else
//! the machine does; so the contenders take turns, a batch each per round,
//! and the report is each one's median over the rounds and its ratio to the
//! floor's. The floor sends what the client sends, id included: QEMU 7.2
//! itself takes measurably longer to answer a command that carries an id, so
//! an id-less floor would not be the same work.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Options, Qmp};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Status {
    status: String,
    running: bool,
}

/// A raw QMP connection: negotiated by hand, then request bytes out and
/// reply bytes in up to `\r\n`.
struct Raw {
    socket: UnixStream,
    buf: Vec<u8>,
    len: usize,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let mut raw = Raw { socket: UnixStream::connect(path).unwrap(), buf: vec![0; 65536], len: 0 };
        raw.line(); // greeting
        raw.round_trip(b"{\"execute\":\"qmp_capabilities\"}\r\n");
        raw
    }

    /// Reads one line (to `\r\n`), keeping whatever follows it.
    fn line(&mut self) {
        loop {
            if let Some(end) = self.buf[..self.len].windows(2).position(|w| w == b"\r\n") {
                self.buf.copy_within(end + 2..self.len, 0);
                self.len -= end + 2;
                return;
            }
            let n = self.socket.read(&mut self.buf[self.len..]).unwrap();
            assert!(n > 0, "QEMU closed");
            self.len += n;
        }
    }

    fn round_trip(&mut self, request: &[u8]) {
        self.socket.write_all(request).unwrap();
        self.line();
    }
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("VMWIRE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3"));
    path.exists().then_some(path)
}

/// `n` round trips with `qemu.qmp`, timed inside Python (start-up excluded).
const PYTHON_LOOP: &str = r#"
import asyncio, sys, time
from qemu.qmp import QMPClient
async def main(path, n):
    qmp = QMPClient('bench')
    await qmp.connect(path)
    await qmp.execute('query-status')
    start = time.perf_counter_ns()
    for _ in range(n):
        await qmp.execute('query-status')
    elapsed = time.perf_counter_ns() - start
    await qmp.disconnect()
    print(elapsed)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;

type Contender<'a> = (&'static str, Box<dyn FnMut(u32) -> Duration + 'a>);

fn timed(n: u32, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from a harness-less run is ignored.
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, batch) = if quick { (5, 200) } else { (25, 400) };
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU (apt-get install qemu-system-x86)");
    let path = qemu.qmp_path().unwrap().to_path_buf();
    let python = python();
    // QEMU serves one QMP client per socket at a time: each contender takes
    // the socket for its batch and gives it back.
    let request: &[u8] = b"{\"execute\":\"query-status\",\"id\":1000}\r\n";
    let mut contenders: Vec<Contender> = vec![
        (
            "raw socket floor",
            Box::new(|n| {
                let mut raw = Raw::connect(&path);
                timed(n, || raw.round_trip(request))
            }),
        ),
        (
            "vmwire-std execute::<Status>",
            Box::new(|n| {
                let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
                timed(n, || drop(qmp.execute::<Status>("query-status", ()).unwrap()))
            }),
        ),
        (
            "vmwire-std execute_raw",
            Box::new(|n| {
                let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
                timed(n, || drop(qmp.execute_raw("query-status", None).unwrap()))
            }),
        ),
    ];
    match &python {
        Some(python) => contenders.push((
            "python qemu.qmp",
            Box::new({
                let (python, path) = (python.as_path(), path.as_path());
                move |n| {
                    let out =
                        Command::new(python).args(["-c", PYTHON_LOOP]).arg(path).arg(n.to_string()).output().unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    Duration::from_nanos(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
                }
            }),
        )),
        None => eprintln!("no Python with qemu.qmp (scripts/test creates .venv): its loop is left out"),
    }
    let mut per_op: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for round in 0..rounds {
        // Rotate who goes first, so that no one always follows the same neighbour.
        for k in 0..contenders.len() {
            let which = (round + k) % contenders.len();
            let elapsed = (contenders[which].1)(batch);
            per_op[which].push(elapsed / batch);
        }
    }
    let floor = median(per_op[0].clone());
    println!("qmp_roundtrip: sequential query-status, {rounds} rounds x {batch} round trips, medians");
    println!("{:<32} {:>12} {:>14} {:>16}", "", "per op", "round trips/s", "vs floor (speed)");
    for ((name, _), times) in contenders.iter().zip(per_op) {
        let m = median(times);
        let ratio = floor.as_secs_f64() / m.as_secs_f64();
        println!(
            "{name:<32} {:>10.1}µs {:>14.0} {:>15.1}%",
            m.as_secs_f64() * 1e6,
            1.0 / m.as_secs_f64(),
            ratio * 100.0
        );
    }
}
