//! QMP and the human monitor on a QEMU running a real Linux guest (see
//! `tests/guest/mod.rs`).

mod common;
mod guest;

use guest::{Guest, Shared, shared};

fn main() {
    let vm = Shared::default();
    let trials = vec![shared("query_status_running", &vm, query_status_running)];
    guest::run(vm, trials);
}

/// The guest runs.
fn query_status_running(guest: &Guest) {
    let mut qmp = guest.qmp();
    let status: serde_json::Value = qmp.execute("query-status", ()).unwrap();
    assert_eq!(status["status"], "running", "{status}");
}
