//! Asks QEMU for its status over QMP, with the blocking client.
//!
//! `cargo run -p vmwire-std --example qmp_status -- /run/vm/qmp.sock`, or
//! with no argument against a throwaway QEMU (`-machine none -S`) that it
//! starts and quits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Options, Qmp};

#[derive(Debug, serde::Deserialize)]
struct Status {
    status: String,
    running: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let given = std::env::args_os().nth(1).map(PathBuf::from);
    let qemu = if given.is_none() { Some(Qemu::builder().qmp().spawn()?) } else { None };
    let socket = given.or_else(|| qemu.as_ref()?.qmp_path().map(Path::to_path_buf)).ok_or("no QMP socket")?;
    let mut qmp = Qmp::connect_unix(socket, Options::default())?;
    let (major, minor, micro) = qmp.greeting().version;
    let status: Status = qmp.execute("query-status", ())?;
    println!("QEMU {major}.{minor}.{micro}: {} (running: {})", status.status, status.running);
    if let Some(qemu) = qemu {
        // Quit over the same connection; QEMU exits by itself.
        qemu.shutdown(Some(qmp), Duration::from_secs(5))?;
    }
    Ok(())
}
