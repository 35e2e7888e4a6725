//! A real Linux guest for the tests: QEMU boots the kernel of Debian's
//! `linux-image-cloud-amd64` with the initramfs of `scripts/guest-initramfs`
//! (busybox, qemu-ga, the virtio modules; cached under `target/guest`) and a
//! second archive with the `vmwire` under test and the negotiator commands of
//! `tests/guest/commands/`. In the guest, init starts qemu-ga on the
//! `org.qemu.guest_agent.0` port and `vmwire negotiator-guest -d` on the
//! negotiator ports; on the host each port is a UNIX socket
//! (`-chardev socket,server=on,wait=off`) in the guest's private directory,
//! next to two QMP sockets (one for commands, one for an event listener), a
//! human monitor socket and the serial console's file.
//!
//! A test binary using it has `harness = false` and runs its trials with
//! [`run`], which shares one guest among the trials that do not end it
//! ([`shared`]) and boots one per trial for the others ([`own`]). Every
//! QEMU is killed and every directory removed when the trials are done, pass
//! or fail, and QEMU dies with the test process (`PR_SET_PDEATHSIG`). A
//! failing trial's message ends with the tail of the guest's console.
//!
//! KVM is used where it works, TCG otherwise; `VMWIRE_GUEST_ACCEL=tcg` (or
//! `kvm`) chooses. A guest that cannot be built or booted fails the trials;
//! nothing is skipped.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use vmwire_std::negotiator::{GUEST_TO_HOST_CHANNEL, HOST_TO_GUEST_CHANNEL};
use vmwire_std::{hmp, qga, qmp};

/// The longest a boot may take before the test fails (a hang guard: TCG on a
/// loaded machine is slow, a normal boot takes seconds).
pub const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// The guest's MAC address on its virtio-net NIC (QEMU user networking).
pub const MAC: &str = "52:54:00:12:34:56";
/// The guest's IPv4 address, set by its init.
pub const IPV4: &str = "10.0.2.15";

/// What the console shows once init has run.
const UP: &str = "vmwire-guest: up";

/// The kernel and base initramfs built by `scripts/guest-initramfs`.
#[derive(Debug)]
struct Base {
    dir: PathBuf,
    release: String,
}

/// Builds (or finds in the cache) the base image, once per process.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/guest-initramfs");
        let output = Command::new(&script)
            .arg(target_dir().join("guest"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(output.status.success(), "{} failed ({}); see its stderr above", script.display(), output.status);
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let release = std::fs::read_to_string(dir.join("release")).expect("the image's release file").trim().to_owned();
        Base { dir, release }
    })
}

/// Cargo's target directory: the one holding the `vmwire` under test.
fn target_dir() -> PathBuf {
    let vmwire = Path::new(env!("CARGO_BIN_EXE_vmwire"));
    vmwire.ancestors().nth(2).expect("target/<profile>/vmwire").to_owned()
}

/// The second archive: `vmwire` (without its debug sections) and the
/// commands, built once per process.
fn overlay() -> &'static [u8] {
    static OVERLAY: OnceLock<Vec<u8>> = OnceLock::new();
    OVERLAY.get_or_init(|| {
        let vmwire = env!("CARGO_BIN_EXE_vmwire");
        let stripped = tempfile::NamedTempFile::new().expect("a temporary file");
        let binary =
            match Command::new("strip").arg("--strip-debug").arg("-o").arg(stripped.path()).arg(vmwire).status() {
                Ok(status) if status.success() => std::fs::read(stripped.path()),
                _ => std::fs::read(vmwire),
            }
            .expect("the vmwire binary");
        let mut archive = Vec::new();
        cpio_file(&mut archive, "usr/local/bin/vmwire", 0o755, &binary);
        let commands = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/commands");
        let mut entries: Vec<_> = std::fs::read_dir(&commands)
            .expect("tests/guest/commands")
            .map(|e| e.expect("a directory entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).expect("a command");
            cpio_file(&mut archive, &format!("usr/lib/negotiator/commands/{name}"), 0o755, &bytes);
        }
        cpio_file(&mut archive, "TRAILER!!!", 0, &[]);
        archive
    })
}

/// Appends one entry of a `newc` cpio archive (a regular file, or the
/// trailer) to `archive`.
fn cpio_file(archive: &mut Vec<u8>, name: &str, permissions: u32, data: &[u8]) {
    static INODE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1 << 20);
    let inode = INODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mode = if name == "TRAILER!!!" { 0 } else { 0o100000 | permissions };
    let nlink = u32::from(name != "TRAILER!!!");
    let fields = [inode, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
    archive.extend_from_slice(b"070701");
    for field in fields {
        archive.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    archive.extend_from_slice(name.as_bytes());
    archive.push(0);
    archive.resize(archive.len().next_multiple_of(4), 0);
    archive.extend_from_slice(data);
    archive.resize(archive.len().next_multiple_of(4), 0);
}

/// The accelerator: `VMWIRE_GUEST_ACCEL`, else KVM until a boot shows it
/// does not work (then TCG for the rest of the process).
fn accel() -> String {
    if let Ok(accel) = std::env::var("VMWIRE_GUEST_ACCEL") {
        return accel;
    }
    let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if kvm_usable && !KVM_FAILED.load(std::sync::atomic::Ordering::Relaxed) { "kvm".into() } else { "tcg".into() }
}

static KVM_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A running guest. Dropping it kills QEMU and removes its directory.
#[derive(Debug)]
pub struct Guest {
    child: Mutex<Child>,
    dir: tempfile::TempDir,
    accel: String,
}

impl Guest {
    /// Boots a guest and waits until its agent answers; panics (with the
    /// console's tail) if it does not come up within [`BOOT_LIMIT`].
    pub fn boot() -> Guest {
        let base = base();
        let dir = tempfile::Builder::new().prefix("vmwire-guest-").tempdir().expect("a temporary directory");
        let initrd = dir.path().join("initrd");
        let mut file = std::fs::File::create(&initrd).expect("the initrd file");
        let base_image = std::fs::read(base.dir.join("initramfs.cpio.gz")).expect("the base initramfs");
        file.write_all(&base_image).and_then(|()| file.write_all(overlay())).expect("writing the initrd");
        drop(file);
        let mut accel = accel();
        let mut child = spawn(dir.path(), base, &accel);
        if accel == "kvm" && std::env::var_os("VMWIRE_GUEST_ACCEL").is_none() && !kvm_boots(&mut child, dir.path()) {
            // Nested KVM that stops the guest (no console output at all, or
            // an abort): TCG works everywhere.
            let _ = child.kill();
            let _ = child.wait();
            KVM_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
            eprintln!("guest: KVM did not start the guest; using TCG");
            accel = "tcg".into();
            child = spawn(dir.path(), base, &accel);
        }
        let guest = Guest { child: Mutex::new(child), dir, accel };
        guest.wait_ready();
        guest
    }

    /// Waits until init has run and the agent answers.
    pub fn wait_ready(&self) {
        self.wait_rebooted(0);
    }

    /// How many times init has come up (a reset boots the guest again).
    pub fn boots(&self) -> usize {
        self.console().matches(UP).count()
    }

    /// Waits until init has come up more than `boots_before` times and the
    /// agent answers.
    pub fn wait_rebooted(&self, boots_before: usize) {
        let give_up = Instant::now() + BOOT_LIMIT;
        while self.boots() <= boots_before {
            self.check_running(give_up, "init to run");
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            let options = qga::Options { timeout: Some(Duration::from_secs(2)), ..Default::default() };
            match qga::Agent::connect_unix(self.qga_path(), options) {
                Ok(agent) => return agent.close(),
                Err(e) => self.check_running(give_up, &format!("qemu-ga to answer (last: {e})")),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics, with the console's tail, if QEMU has exited or `give_up` has passed.
    fn check_running(&self, give_up: Instant, what: &str) {
        if let Some(status) = self.exit_status() {
            panic!("QEMU exited ({status}) while waiting for {what}\n{}", self.report());
        }
        if Instant::now() > give_up {
            panic!("gave up waiting {} s for {what}\n{}", BOOT_LIMIT.as_secs(), self.report());
        }
    }

    /// The guest's private directory (sockets, console, initrd).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The accelerator it runs on: `kvm` or `tcg`.
    pub fn accel(&self) -> &str {
        &self.accel
    }

    /// The kernel release it runs (`uname -r` in the guest).
    pub fn kernel_release(&self) -> &'static str {
        &base().release
    }

    /// The host end of `org.qemu.guest_agent.0`.
    pub fn qga_path(&self) -> PathBuf {
        self.dir().join("qga.sock")
    }

    /// The QMP socket for commands.
    pub fn qmp_path(&self) -> PathBuf {
        self.dir().join("qmp.sock")
    }

    /// A second QMP socket, for an event listener.
    pub fn qmp_events_path(&self) -> PathBuf {
        self.dir().join("qmp-events.sock")
    }

    /// The human monitor socket.
    pub fn hmp_path(&self) -> PathBuf {
        self.dir().join("hmp.sock")
    }

    /// The host end of the negotiator port `name`
    /// ([`HOST_TO_GUEST_CHANNEL`] or [`GUEST_TO_HOST_CHANNEL`]).
    pub fn channel_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.sock"))
    }

    /// The serial console's file.
    pub fn console_path(&self) -> PathBuf {
        self.dir().join("console")
    }

    /// Everything the console has shown so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.console_path()).unwrap_or_default()).into_owned()
    }

    /// Waits (up to `limit`, a hang guard) until the console shows `text`.
    pub fn wait_console(&self, text: &str, limit: Duration) {
        let give_up = Instant::now() + limit;
        while !self.console().contains(text) {
            assert!(Instant::now() < give_up, "the console did not show {text:?}\n{}", self.report());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A session with the guest agent (10 s per command).
    pub fn qga(&self) -> qga::Agent {
        self.qga_with(qga::Options::default())
    }

    /// A session with the guest agent with these options.
    pub fn qga_with(&self, options: qga::Options) -> qga::Agent {
        qga::Agent::connect_unix(self.qga_path(), options)
            .unwrap_or_else(|e| panic!("connecting to qemu-ga: {e}\n{}", self.report()))
    }

    /// A QMP session on the command socket.
    pub fn qmp(&self) -> qmp::Qmp {
        qmp::Qmp::connect_unix(self.qmp_path(), qmp::Options::default())
            .unwrap_or_else(|e| panic!("connecting to QMP: {e}\n{}", self.report()))
    }

    /// A QMP session on the event listener's socket.
    pub fn qmp_events(&self) -> qmp::Qmp {
        qmp::Qmp::connect_unix(self.qmp_events_path(), qmp::Options::default())
            .unwrap_or_else(|e| panic!("connecting to the second QMP socket: {e}\n{}", self.report()))
    }

    /// A human monitor session.
    pub fn hmp(&self) -> hmp::Monitor {
        hmp::Monitor::connect_unix(self.hmp_path(), hmp::Options::default())
            .unwrap_or_else(|e| panic!("connecting to the human monitor: {e}\n{}", self.report()))
    }

    /// Waits up to `limit` (a hang guard) for QEMU to exit by itself.
    pub fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() > give_up {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How QEMU exited, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        child.try_wait().expect("waiting for QEMU")
    }

    /// What a failing test shows: the accelerator, QEMU's stderr and the
    /// console's last lines (escaped: the guest wrote them).
    pub fn report(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..]
            .iter()
            .map(|line| vmwire_std::text::escape(line).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let stderr = std::fs::read_to_string(self.dir().join("stderr")).unwrap_or_default();
        format!(
            "--- guest ({}), QEMU stderr:\n{}\n--- last lines of its console ({}):\n{tail}\n---",
            self.accel,
            vmwire_std::text::escape(stderr.trim()),
            self.console_path().display()
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts QEMU for a guest in `dir`, dying with this process.
fn spawn(dir: &Path, base: &Base, accel: &str) -> Child {
    let _ = std::fs::remove_file(dir.join("console"));
    let path = |name: &str| dir.join(name).display().to_string();
    let mut cmd = Command::new(vmwire_std::qemu::QEMU_BINARY);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "pc", "-accel", accel, "-m", "384", "-smp", "1"])
        .arg("-kernel")
        .arg(base.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("initrd"))
        .args(["-append", "console=ttyS0"])
        .args(["-serial", &format!("file:{}", path("console"))])
        .args(["-qmp", &format!("unix:{},server=on,wait=off", path("qmp.sock"))])
        .args(["-qmp", &format!("unix:{},server=on,wait=off", path("qmp-events.sock"))])
        .args(["-monitor", &format!("unix:{},server=on,wait=off", path("hmp.sock"))])
        .args(["-nic", &format!("user,model=virtio-net-pci,mac={MAC}")])
        .args(["-device", "virtio-serial-pci,id=virtio-serial"]);
    for (id, port) in
        [("qga", "org.qemu.guest_agent.0"), ("h2g", HOST_TO_GUEST_CHANNEL), ("g2h", GUEST_TO_HOST_CHANNEL)]
    {
        let socket = if id == "qga" { path("qga.sock") } else { path(&format!("{port}.sock")) };
        cmd.args(["-chardev", &format!("socket,id={id},path={socket},server=on,wait=off")])
            .args(["-device", &format!("virtserialport,bus=virtio-serial.0,chardev={id},name={port}")]);
    }
    let stderr = std::fs::File::create(dir.join("stderr")).expect("QEMU's stderr file");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}): apt-get install qemu-system-x86 (scripts/test does)",
            vmwire_std::qemu::QEMU_BINARY
        )
    })
}

/// Whether a KVM guest shows signs of life: console output within a few
/// seconds (a working KVM prints the kernel's banner at once).
fn kvm_boots(child: &mut Child, dir: &Path) -> bool {
    let give_up = Instant::now() + Duration::from_secs(3);
    while Instant::now() < give_up {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if std::fs::metadata(dir.join("console")).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One guest shared by the trials of a test binary, booted by the first
/// trial that needs it (a boot that failed fails the others at once).
pub type Shared = Arc<OnceLock<Result<Guest, String>>>;

/// A trial on the shared guest.
pub fn shared(name: &str, guest: &Shared, test: fn(&Guest)) -> Trial {
    let guest = Arc::clone(guest);
    Trial::test(name, move || {
        let booted = guest.get_or_init(|| {
            catch_unwind(Guest::boot).map_err(|panic| format!("the shared guest did not boot: {}", message(&*panic)))
        });
        let guest = booted.as_ref().map_err(|e| Failed::from(e.as_str()))?;
        reporting(guest, || test(guest))
    })
}

/// A trial with a guest of its own (for tests that end the guest).
pub fn own(name: &str, test: fn(&Guest)) -> Trial {
    Trial::test(name, move || {
        let guest = Guest::boot();
        reporting(&guest, || test(&guest))
    })
}

/// Runs `test`, turning a panic into a failure that shows the console.
fn reporting(guest: &Guest, test: impl FnOnce()) -> Result<(), Failed> {
    catch_unwind(AssertUnwindSafe(test)).map_err(|panic| failure(guest, panic))
}

/// A failed trial's message: the panic's, then [`Guest::report`].
fn failure(guest: &Guest, panic: Box<dyn std::any::Any + Send>) -> Failed {
    format!("{}\n{}", message(&*panic), guest.report()).into()
}

/// The text a panic was raised with.
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// The `main` of a guest test binary: runs `trials` one at a time (they share
/// one guest with one vCPU), then ends every guest and exits with the
/// outcome. `shared` is the guest that [`shared`] trials were given.
pub fn run(shared: Shared, trials: Vec<Trial>) -> ! {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials (and their clones of `shared`) are gone: this drop kills QEMU.
    drop(shared);
    conclusion.exit()
}
