//! What `vmwire qmp-mux` adds to a QMP round trip: one QEMU (`-machine
//! none -S`) with two monitors, one behind the multiplexer (vmwire-smol's
//! `Mux`, on a thread of its own) and one spoken to directly; the same
//! blocking client does `query-status` round trips on each, in alternating
//! batches, in the same run.
//!
//! `cargo run --release -p vmwire-benches --example qmp_mux_latency [ROUNDS]`

use std::time::{Duration, Instant};

use vmwire_smol::qmp::mux::{Listener, Mux, Options};
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Options as QmpOptions, Qmp};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let direct = dir.path().join("direct.sock");
    let muxed = dir.path().join("mux.sock");
    let qemu = Qemu::builder()
        .qmp()
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", direct.display()))
        .spawn()
        .expect("QEMU");
    let behind = qemu.qmp_path().expect("QMP socket").to_owned();
    let listener = Listener::bind_unix(&muxed).expect("the mux's socket");
    std::thread::spawn(move || {
        async_io::block_on(async {
            let qmp = vmwire_smol::qmp::Qmp::connect_unix(&behind, QmpOptions { oob: true, ..QmpOptions::default() })
                .await
                .expect("QEMU's monitor");
            let (handle, driver) = qmp.share();
            let mux = Mux::new(handle, Options::default());
            let _ = futures_lite::future::zip(driver, mux.serve(&listener)).await;
        })
    });
    let mut a = Qmp::connect_unix(&direct, QmpOptions::default()).expect("direct");
    let mut b = Qmp::connect_unix(&muxed, QmpOptions::default()).expect("through the mux");
    let trip = |qmp: &mut Qmp| {
        let start = Instant::now();
        qmp.execute::<serde_json::Value>("query-status", ()).expect("query-status");
        start.elapsed()
    };
    for _ in 0..1000 {
        trip(&mut a);
        trip(&mut b);
    }
    let (mut direct_times, mut mux_times) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for batch in 0..rounds / 100 {
        for _ in 0..100 {
            if batch % 2 == 0 {
                direct_times.push(trip(&mut a));
            } else {
                mux_times.push(trip(&mut b));
            }
        }
        for _ in 0..100 {
            if batch % 2 == 0 {
                mux_times.push(trip(&mut b));
            } else {
                direct_times.push(trip(&mut a));
            }
        }
    }
    let stats = |times: &mut Vec<Duration>| {
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        (times[times.len() / 2], times[times.len() * 99 / 100], mean)
    };
    let (d50, d99, dmean) = stats(&mut direct_times);
    let (m50, m99, mmean) = stats(&mut mux_times);
    println!("round trips: {} each", direct_times.len());
    println!("direct:   median {d50:?}  p99 {d99:?}  mean {dmean:?}");
    println!("mux:      median {m50:?}  p99 {m99:?}  mean {mmean:?}");
    println!("added:    median {:?}  mean {:?}", m50.saturating_sub(d50), mmean.saturating_sub(dmean));
    drop(qemu);
}
