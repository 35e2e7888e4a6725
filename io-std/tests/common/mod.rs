//! Shared by the interop tests of vmwire-std, the `vmwire` tool (cli/tests)
//! and vmwire-smol (each includes this module by path): finding the real
//! peers, and in the submodules starting them and scripting fake ones. A
//! missing peer fails the test with what to install; nothing is skipped.
//! Each test crate uses a part of it: what it leaves is not dead code.
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

/// A QEMU to configure and start; fails the test (it does not skip) when
/// QEMU is not installed.
pub fn qemu_builder() -> vmwire_std::qemu::Builder {
    require_binary(vmwire_std::qemu::QEMU_BINARY, vmwire_std::qemu::QEMU_PACKAGE);
    vmwire_std::qemu::Qemu::builder()
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

pub mod negotiator;
pub mod pty;
pub mod qga;
pub mod xenapi;

/// A child process killed when the guard goes (also when a test fails).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scripted peer on a UNIX socket `name` in a temporary directory:
/// `script` gets the first connection, in a thread. The directory (the
/// socket goes with it), the socket's path, and the thread (join it to see
/// the script finished).
pub fn scripted_peer(
    name: &str,
    script: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static,
) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        script(stream);
    });
    (dir, path, thread)
}
