//! Shared by the interop tests: finding the real peers. A missing peer fails
//! the test with what to install; nothing is skipped.
#![allow(dead_code)]

use std::path::PathBuf;

/// The Python with the peers' packages: `$VMWIRE_PYTHON`, else the
/// workspace's `.venv` that `scripts/test` creates.
pub fn python() -> PathBuf {
    let path = std::env::var_os("VMWIRE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3"));
    assert!(
        path.exists(),
        "Python peers missing: {} does not exist; run scripts/test (it creates .venv from scripts/requirements.txt)",
        path.display()
    );
    path
}

/// Asserts `module` imports in [`python`].
pub fn require_python_module(module: &str) -> PathBuf {
    let python = python();
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "Python module {module} missing from {}; run scripts/test", python.display());
    python
}

/// Fails the test (it does not skip) when `binary` is not installed.
pub fn require_binary(binary: &str, package: &str) -> PathBuf {
    vmwire_std::qemu::find_binary(binary)
        .or_else(|| {
            ["/usr/sbin", "/usr/bin", "/sbin"].iter().map(|d| PathBuf::from(d).join(binary)).find(|p| p.exists())
        })
        .unwrap_or_else(|| panic!("{binary} is not installed: apt-get install {package} (scripts/test does)"))
}

/// Polls `ready` every few milliseconds until it yields a value; a peer
/// that never gets there fails the test (saying `what` it was waiting for)
/// after `limit` instead of hanging it. A guard against hangs, not a timing.
pub fn eventually<T>(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let give_up = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(std::time::Instant::now() < give_up, "gave up waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
