//! One QMP connection shared by many tasks: a subscriber prints STOP and
//! RESUME events while eight tasks query the status and one stops and
//! continues the machine, all on one thread (smol's local executor).
//!
//! `cargo run -p vmwire-smol --example qmp_many_tasks -- /run/vm/qmp.sock`,
//! or with no argument against a throwaway QEMU (`-machine none -S`).

use std::path::{Path, PathBuf};

use smol::LocalExecutor;
use vmwire_smol::qmp::{Filter, Options, Qmp};
use vmwire_std::qemu::Qemu;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let given = std::env::args_os().nth(1).map(PathBuf::from);
    let qemu = if given.is_none() { Some(Qemu::builder().qmp().spawn()?) } else { None };
    let socket = given.or_else(|| qemu.as_ref()?.qmp_path().map(Path::to_path_buf)).ok_or("no QMP socket")?;
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = Qmp::connect_unix(&socket, Options::default()).await?.share();
        let driver = ex.spawn(driver);
        let mut events = qmp.subscribe(Filter::names(["STOP", "RESUME"]), 16);
        let printer = ex.spawn(async move {
            while let Some(event) = events.next().await {
                println!("event {} at {}.{:06}", event.name, event.timestamp.seconds, event.timestamp.microseconds);
            }
        });
        let queries: Vec<_> = (0..8)
            .map(|task| {
                let qmp = qmp.clone();
                ex.spawn(async move {
                    let status: serde_json::Value = qmp.execute("query-status", ()).await?;
                    println!("task {task}: {}", status["status"]);
                    Ok::<_, vmwire_smol::qmp::Error>(())
                })
            })
            .collect();
        qmp.execute::<serde_json::Value>("cont", ()).await?;
        qmp.execute::<serde_json::Value>("stop", ()).await?;
        for query in queries {
            query.await?;
        }
        // QEMU goes; the connection ends, and with it the subscription.
        qmp.quit().await?;
        printer.await;
        drop(qmp);
        let _ = driver.await;
        Ok::<_, vmwire_smol::qmp::Error>(())
    }))?;
    if let Some(mut qemu) = qemu {
        qemu.wait_exit(std::time::Duration::from_secs(5))?;
    }
    Ok(())
}
