//! qemu-ga for the guest agent tests, and a scripted agent.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A qemu-ga with its state in a private temporary directory, killed on
/// drop: listening on `dir/qga.sock` ([`Ga::start`]), or on a terminal
/// ([`Ga::serial`]).
pub struct Ga {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Ga {
    /// A qemu-ga (`--method unix-listen`) with the commands `blocked`
    /// blocked (`-b`), once it listens.
    pub fn start(blocked: &[&str]) -> Ga {
        let dir = tempfile::Builder::new().prefix("vmwire-qga-").tempdir().unwrap();
        let child = Self::spawn(dir.path(), blocked);
        Ga { child, dir }
    }

    /// A qemu-ga on the terminal `tty` (`--method isa-serial`); it is there
    /// once it has made the terminal raw ([`super::pty::Cable::wait_raw`]).
    pub fn serial(tty: &Path) -> Ga {
        let dir = tempfile::Builder::new().prefix("vmwire-qga-").tempdir().unwrap();
        let child = Self::command(dir.path()).arg("--method").arg("isa-serial").arg("--path").arg(tty).spawn().unwrap();
        Ga { child, dir }
    }

    /// `qemu-ga` with its state, pid and log files in `dir`, and no standard streams.
    fn command(dir: &Path) -> Command {
        let mut cmd = Command::new(super::require_binary("qemu-ga", "qemu-guest-agent"));
        cmd.arg("--statedir").arg(dir).arg("--pidfile").arg(dir.join("pid")).arg("--logfile").arg(dir.join("log"));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    fn spawn(dir: &Path, blocked: &[&str]) -> Child {
        let socket = dir.join("qga.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Self::command(dir);
        cmd.arg("--method").arg("unix-listen").arg("--path").arg(&socket);
        if !blocked.is_empty() {
            cmd.arg("-b").arg(blocked.join(","));
        }
        let mut child = cmd.spawn().unwrap();
        super::eventually("qemu-ga to listen", Duration::from_secs(10), || {
            assert!(child.try_wait().unwrap().is_none(), "qemu-ga exited: {}", log(dir));
            socket.exists().then_some(())
        });
        child
    }

    /// Where it listens.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("qga.sock")
    }

    /// A file `name` in its directory, as text.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// The agent's open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).unwrap().count()
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Kills it and starts another (nothing blocked) on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.dir.path(), &[]);
    }
}

impl Drop for Ga {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What qemu-ga logged in `dir`.
pub fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

/// A hostile agent on a UNIX socket: answers the sync as qemu-ga does,
/// then each command with `reply(name, id)` (whole lines, [`returns`] for
/// a plain answer), for one connection. Its directory, its socket, and the
/// thread.
pub fn scripted_agent(
    reply: impl Fn(&str, &serde_json::Value) -> Vec<u8> + Send + 'static,
) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
    super::scripted_peer("qga.sock", move |stream| {
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_start_matches('\u{fffd}').to_string();
            line.clear();
            let request: serde_json::Value = serde_json::from_str(&text).unwrap();
            let name = request["execute"].as_str().unwrap();
            // The sync's answer opens with a raw 0xFF byte.
            let answer = if name == "guest-sync-delimited" {
                [&[0xff][..], format!("{{\"return\": {}}}\n", request["arguments"]["id"]).as_bytes()].concat()
            } else {
                reply(name, &request["id"])
            };
            if out.write_all(&answer).is_err() {
                return; // the client hung up
            }
        }
    })
}

/// `{"return": VALUE, "id": ID}` and a line break.
pub fn returns(value: &[u8], id: &serde_json::Value) -> Vec<u8> {
    [&b"{\"return\": "[..], value, format!(", \"id\": {id}}}\n").as_bytes()].concat()
}
