//! Starting a throwaway QEMU: for `vmwire … --launch` and for tests.
//!
//! ```no_run
//! let qemu = vmwire_std::qemu::Qemu::builder().qmp().hmp().spawn()?;
//! let mut qmp = vmwire_std::qmp::Qmp::connect_unix(qemu.qmp_path().unwrap(), Default::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The VM is `-machine none -nodefaults -display none -S`: no guest, no disk,
//! nothing to boot; every monitor socket sits in a private temporary
//! directory that is removed, with the process killed if still running, when
//! the [`Qemu`] is dropped.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary looked for on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The Debian package that provides it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Why QEMU could not be started.
#[derive(Debug)]
pub enum LaunchError {
    /// The binary is not installed.
    NotInstalled {
        /// The binary looked for.
        binary: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// QEMU exited before its sockets appeared.
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Its sockets did not appear in time.
    Timeout,
    /// Spawning or the temporary directory failed.
    Io(io::Error),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::NotInstalled { binary, package } => {
                write!(f, "{binary} is not installed (on Debian: apt-get install {package})")
            }
            LaunchError::Exited { status, stderr } => write!(f, "QEMU exited ({status}): {}", stderr.trim()),
            LaunchError::Timeout => f.write_str("QEMU's monitor sockets did not appear within 10 s"),
            LaunchError::Io(e) => write!(f, "starting QEMU: {e}"),
        }
    }
}

impl std::error::Error for LaunchError {}

impl From<io::Error> for LaunchError {
    fn from(e: io::Error) -> Self {
        LaunchError::Io(e)
    }
}

/// Finds `binary` on `PATH` (or takes it as a path if it has a `/`).
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).is_file().then(|| PathBuf::from(binary));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(binary)).find(|p| p.is_file())
}

/// Whether a UNIX socket is bound at `path` and listening: its line in
/// `/proc/net/unix` has the `__SO_ACCEPTCON` flag (0x10000).
fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else { return path.exists() };
    let path = path.to_string_lossy();
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7] == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
}

/// How to start QEMU; see [`Qemu::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    binary: String,
    qmp: bool,
    hmp: bool,
    args: Vec<OsString>,
    sockets: Vec<String>,
}

impl Builder {
    /// Use this binary instead of `qemu-system-x86_64`.
    pub fn binary(mut self, binary: impl Into<String>) -> Self {
        self.binary = binary.into();
        self
    }

    /// A QMP server socket, `qmp.sock` ([`Qemu::qmp_path`]).
    pub fn qmp(mut self) -> Self {
        self.qmp = true;
        self
    }

    /// A human monitor server socket, `hmp.sock` ([`Qemu::hmp_path`]).
    pub fn hmp(mut self) -> Self {
        self.hmp = true;
        self
    }

    /// Extra arguments. `{dir}` in an argument is replaced by the private
    /// temporary directory, so that tests can add their own sockets.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// A socket (by file name, in the temporary directory) that QEMU creates
    /// and that [`Builder::spawn`] waits for.
    pub fn wait_for(mut self, name: impl Into<String>) -> Self {
        self.sockets.push(name.into());
        self
    }

    /// Starts QEMU and waits until its server sockets exist.
    pub fn spawn(self) -> Result<Qemu, LaunchError> {
        let binary = find_binary(&self.binary)
            .ok_or_else(|| LaunchError::NotInstalled { binary: self.binary.clone(), package: QEMU_PACKAGE })?;
        let dir = tempfile::Builder::new().prefix("vmwire-qemu-").tempdir()?;
        let mut cmd = Command::new(binary);
        cmd.args(["-machine", "none", "-nodefaults", "-display", "none", "-S"]);
        let mut sockets = self.sockets.clone();
        let path_of = |name: &str| dir.path().join(name);
        if self.qmp {
            cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", path_of("qmp.sock").display()));
            sockets.push("qmp.sock".into());
        }
        if self.hmp {
            cmd.arg("-monitor").arg(format!("unix:{},server=on,wait=off", path_of("hmp.sock").display()));
            sockets.push("hmp.sock".into());
        }
        let dir_str = dir.path().to_string_lossy().into_owned();
        for arg in &self.args {
            cmd.arg(arg.to_string_lossy().replace("{dir}", &dir_str));
        }
        let stderr = std::fs::File::create(path_of("stderr"))?;
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn()?;
        let mut qemu =
            Qemu { child, qmp: self.qmp.then(|| path_of("qmp.sock")), hmp: self.hmp.then(|| path_of("hmp.sock")), dir };
        let start = Instant::now();
        // The file appears at bind(); connecting works only after listen().
        while !sockets.iter().all(|s| listening(&qemu.dir.path().join(s))) {
            if let Some(status) = qemu.child.try_wait()? {
                let stderr = std::fs::read_to_string(qemu.dir.path().join("stderr")).unwrap_or_default();
                return Err(LaunchError::Exited { status, stderr });
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(LaunchError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(qemu)
    }
}

/// A running throwaway QEMU. Dropping it kills the process (if still
/// running) and removes its temporary directory.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    dir: tempfile::TempDir,
    qmp: Option<PathBuf>,
    hmp: Option<PathBuf>,
}

impl Qemu {
    /// How to start one: `Qemu::builder().qmp().spawn()`.
    pub fn builder() -> Builder {
        Builder { binary: QEMU_BINARY.into(), qmp: false, hmp: false, args: Vec::new(), sockets: Vec::new() }
    }

    /// The QMP socket, if one was asked for.
    pub fn qmp_path(&self) -> Option<&Path> {
        self.qmp.as_deref()
    }

    /// The human monitor socket, if one was asked for.
    pub fn hmp_path(&self) -> Option<&Path> {
        self.hmp.as_deref()
    }

    /// The private temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills QEMU with SIGKILL (for testing what a dying peer does).
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Waits up to `timeout` for QEMU to exit by itself (after `quit`).
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
