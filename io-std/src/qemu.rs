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
//!
//! Its way out, in order: [`Qemu::shutdown`] quits it over the QMP
//! connection its owner holds (QEMU serves one QMP client at a time, so a
//! second connection would only wait behind the first), waits a bounded
//! time for it to exit, and kills it only as a last resort. QEMU also dies
//! with the program that launched it (the kernel sends it SIGTERM when its
//! parent goes, even by SIGKILL), and a [`SignalGuard`] turns
//! SIGTERM, SIGHUP and SIGINT into an orderly shutdown for a program that
//! launched QEMU on its user's behalf.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::qmp::{Options, Qmp};
use crate::transport::{deadline, wait_ready};

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
        die_with_parent(&mut cmd);
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

/// Makes the child get SIGTERM (QEMU's orderly shutdown) when the thread
/// that spawns it exits, whatever ends it (SIGKILL too): a launched QEMU
/// never outlives the program that launched it. Linux ties this to the
/// spawning *thread*, so spawn a [`Qemu`] on a thread that lives as long as
/// it should.
fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: `pre_exec` runs the closure in the child between fork and
    // exec, where only async-signal-safe work is allowed. It makes two
    // system calls (prctl, getppid) through rustix's direct syscalls, and
    // allocates nothing and takes no lock. The closure is the only unsafe
    // code in this crate; a parent death signal can only be set from
    // inside the child, so there is no safe way to do this.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            // The parent may have gone before the prctl: then nobody is left to stop us.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("the launching process exited"));
            }
            Ok(())
        });
    }
}

/// A running throwaway QEMU. Dropping it kills the process (if still
/// running) and removes its temporary directory; [`Qemu::shutdown`] is the
/// orderly way.
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

    /// Shuts QEMU down in order and returns how it exited; its temporary
    /// directory is removed. `qmp` is the QMP connection the owner holds:
    /// `quit` goes over it, since QEMU serves one QMP client at a time and
    /// would not greet a second connection while it is open. Without one,
    /// `quit` goes over a fresh connection to [`Qemu::qmp_path`], or else to
    /// [`Qemu::hmp_path`] (a monitor the owner holds must be closed first);
    /// without either (or if the fresh connection fails), QEMU gets SIGTERM,
    /// which it takes as an orderly shutdown once it has set up its signal
    /// handling (a QEMU signalled in its first moments dies of the signal:
    /// the monitors are the reliable way). Then QEMU has `grace` to exit, and
    /// is killed (SIGKILL) only if it has not.
    pub fn shutdown(mut self, qmp: Option<Qmp>, grace: Duration) -> io::Result<ExitStatus> {
        if self.child.try_wait()?.is_none() {
            let quit = match qmp {
                Some(qmp) => qmp.quit().is_ok(),
                None => self.quit_over_a_fresh_monitor(grace),
            };
            if !quit {
                let _ = rustix::process::kill_process(self.rustix_pid()?, Signal::TERM);
            }
        }
        match self.wait_exit(grace)? {
            Some(status) => Ok(status),
            None => {
                self.child.kill()?;
                self.child.wait()
            }
        }
    }

    /// `quit` over a fresh QMP connection, or else a fresh human monitor;
    /// whether one of them took it.
    fn quit_over_a_fresh_monitor(&self, timeout: Duration) -> bool {
        if let Some(path) = self.qmp_path() {
            let options = Options { timeout: Some(timeout), ..Options::default() };
            return Qmp::connect_unix(path, options).is_ok_and(|qmp| qmp.quit().is_ok());
        }
        if let Some(path) = self.hmp_path() {
            let options = crate::hmp::Options { timeout: Some(timeout), ..Default::default() };
            return crate::hmp::Monitor::connect_unix(path, options).is_ok_and(|hmp| hmp.quit().is_ok());
        }
        false
    }

    fn rustix_pid(&self) -> io::Result<Pid> {
        i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other("QEMU's process id is out of range"))
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

/// SIGTERM to the process behind `pidfd`, then SIGKILL if it has not
/// exited within 5 s. A pidfd names one process: never another that got
/// its number after it was reaped.
fn stop(pidfd: &OwnedFd) {
    let exited = |grace| wait_ready(pidfd.as_fd(), PollFlags::IN, deadline(Some(grace))).unwrap_or(true);
    let _ = rustix::process::pidfd_send_signal(pidfd, Signal::TERM);
    if !exited(Duration::from_secs(5)) {
        let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
        exited(Duration::from_secs(5));
    }
}

/// Whether some [`SignalGuard`] caught its signal: it is shutting its QEMU
/// down and will end the program ([`ending_by_signal`]).
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a [`SignalGuard`] caught its signal and is ending the program
/// (after stopping its QEMU and removing its directory): a program whose
/// own work ends meanwhile (QEMU's connection closing under it) leaves the
/// ending to the guard, so that it ends as the signal would have.
pub fn ending_by_signal() -> bool {
    ENDING.load(Ordering::SeqCst)
}

/// What the signal thread and the program share.
#[derive(Debug, Default)]
struct Shared {
    /// The signal that arrived (0: none yet).
    caught: AtomicI32,
    /// Whether the program has finished with QEMU.
    finished: Mutex<bool>,
    changed: Condvar,
}

impl Shared {
    /// Waits up to `limit` for the program to finish with QEMU; whether it has.
    fn wait_finished(&self, limit: Duration) -> bool {
        let Ok(finished) = self.finished.lock() else { return false };
        self.changed.wait_timeout_while(finished, limit, |f| !*f).is_ok_and(|(f, _)| *f)
    }
}

/// For a program that launches QEMU on its user's behalf (`vmwire …
/// --launch`): turns SIGTERM, SIGHUP and SIGINT into an orderly shutdown.
///
/// From [`SignalGuard::new`] on, these signals do not end the program at
/// once; they are held until [`SignalGuard::watch`] is given the launched
/// QEMU (so that none slips in while it starts). Then QEMU gets SIGTERM, its
/// own orderly shutdown (the `SHUTDOWN` event, then its monitors close), so
/// whatever the program waits for on QEMU ends and the program takes its
/// normal way out: [`Qemu::shutdown`], then [`SignalGuard::finish`], which
/// ends it as the signal would have. Where the program does not notice (it
/// waits on a terminal), the guard does that itself after a few seconds:
/// QEMU killed if it has not exited, the directory removed, the program
/// ended by the signal.
///
/// ```no_run
/// use vmwire_std::qemu::{Qemu, SignalGuard};
/// let mut guard = SignalGuard::new()?;
/// let qemu = Qemu::builder().qmp().spawn()?;
/// guard.watch(&qemu)?;
/// // … use QEMU …
/// qemu.shutdown(None, std::time::Duration::from_secs(5))?;
/// guard.finish();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SignalGuard {
    signals: Option<signal_hook::iterator::Signals>,
    handle: signal_hook::iterator::Handle,
    shared: Arc<Shared>,
}

impl SignalGuard {
    /// Starts catching SIGTERM, SIGHUP and SIGINT (held until [`SignalGuard::watch`]).
    pub fn new() -> io::Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
        Ok(SignalGuard { handle: signals.handle(), signals: Some(signals), shared: Arc::default() })
    }

    /// Shuts `qemu` down when one of the signals comes (or has come since
    /// [`SignalGuard::new`]). Once only: a second call does nothing.
    pub fn watch(&mut self, qemu: &Qemu) -> io::Result<()> {
        let Some(mut signals) = self.signals.take() else { return Ok(()) };
        let pidfd = rustix::process::pidfd_open(qemu.rustix_pid()?, PidfdFlags::empty())?;
        let (shared, dir) = (Arc::clone(&self.shared), qemu.dir().to_path_buf());
        std::thread::Builder::new().name("qemu-signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                ENDING.store(true, Ordering::SeqCst);
                shared.caught.store(signal, Ordering::SeqCst);
                stop(&pidfd);
                if !shared.wait_finished(Duration::from_secs(2)) {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
            }
        })?;
        Ok(())
    }

    /// The program is done with QEMU (shut down, directory removed). If one
    /// of the signals arrived meanwhile, ends the program as that signal
    /// would have (its parent sees it killed by the signal); otherwise
    /// returns, and the signals are caught and ignored from now on.
    pub fn finish(self) {
        self.handle.close();
        if let Ok(mut finished) = self.shared.finished.lock() {
            *finished = true;
            self.shared.changed.notify_all();
        }
        let signal = self.shared.caught.load(Ordering::SeqCst);
        if signal != 0 {
            let _ = signal_hook::low_level::emulate_default_handler(signal);
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
