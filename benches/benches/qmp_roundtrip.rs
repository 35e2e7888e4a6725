//! Sequential `query-status` round trips against a real QEMU: the std client
//! against a raw-socket floor (the same request bytes pre-encoded, reading to
//! `\r\n`, no parsing), and QEMU's own Python client (PyPI `qemu.qmp`), in
//! the same run.
//!
//! The floor sends what the client sends, id included: QEMU 7.2 itself takes
//! measurably longer (tens of µs here) to answer a command that carries an id,
//! so an id-less floor would not be the same work.
//!
//! `cargo bench -p vmwire-benches --bench qmp_roundtrip` (needs QEMU, and
//! `.venv` from `scripts/test` or `$VMWIRE_PYTHON` for the Python client).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
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

fn bench(c: &mut Criterion) {
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU (apt-get install qemu-system-x86)");
    let path = qemu.qmp_path().unwrap().to_path_buf();
    let mut group = c.benchmark_group("qmp_roundtrip/query-status");
    group.measurement_time(Duration::from_secs(5));

    {
        let mut raw = Raw::connect(&path);
        // Byte for byte what the client writes for its 1000th command.
        let request = b"{\"execute\":\"query-status\",\"id\":1000}\r\n";
        group.bench_function("raw socket floor", |b| b.iter(|| raw.round_trip(request)));
    }
    {
        let mut qmp = Qmp::connect_unix(&path, Options::default()).unwrap();
        group.bench_function("vmwire-std execute::<Status>", |b| {
            b.iter(|| qmp.execute::<Status>("query-status", ()).unwrap())
        });
        group.bench_function("vmwire-std execute_raw", |b| b.iter(|| qmp.execute_raw("query-status", None).unwrap()));
    }
    match python() {
        Some(python) => {
            group.sample_size(10);
            group.bench_function("python qemu.qmp", |b| {
                b.iter_custom(|iters| {
                    let out = Command::new(&python)
                        .args(["-c", PYTHON_LOOP])
                        .arg(&path)
                        .arg(iters.to_string())
                        .output()
                        .expect("python");
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    Duration::from_nanos(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
                })
            });
        }
        None => eprintln!("no Python with qemu.qmp (run scripts/test to create .venv): skipping its loop"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
