//! What `vmwire qmp --launch query-status` costs, in the library: launch a
//! throwaway QEMU (`-machine none -S`), read its greeting, negotiate, run
//! `query-status`, `quit` over the same connection, and wait until QEMU has
//! exited by itself (its directory removed). Nearly all of it is QEMU
//! starting up and shutting down.
//!
//! `cargo bench -p vmwire-benches --bench qmp_launch` (needs QEMU).

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

fn launch_round_trip() {
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU (apt-get install qemu-system-x86)");
    let mut qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options::default()).unwrap();
    let status: Status = qmp.execute("query-status", ()).unwrap();
    assert_eq!(status.status, "prelaunch");
    let exit = qemu.shutdown(Some(qmp), Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "QEMU did not exit by itself: {exit:?}");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("qmp_launch");
    // Each iteration starts a process: few samples, enough time for them.
    group.sample_size(20).measurement_time(Duration::from_secs(15));
    group.bench_function("launch, greeting, negotiate, query-status, quit, exited", |b| b.iter(launch_round_trip));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
