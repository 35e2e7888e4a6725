//! `vmwire`: talk to the programs that drive virtual machines, by hand.
//!
//! Exit status: 0 on success, 1 when the peer answered with an error, 2 on a
//! usage error, 3 when the connection or the protocol failed.

mod hmp;
mod minimega;
mod negotiator;
mod qga;
mod qmp;
mod qmp_mux;
mod record;
mod replay;
mod schema;
mod shell;
mod xmlrpc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vmwire_std::text::escape;

#[derive(Debug, Parser)]
#[command(
    name = "vmwire",
    version,
    propagate_version = true,
    about = "Speak the wire protocols that drive virtual machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// QEMU Machine Protocol: one command, `--events`, or an interactive shell.
    Qmp(qmp::QmpArgs),
    /// Many clients on one QEMU monitor: serve QMP on a socket of its own.
    #[command(name = "qmp-mux")]
    QmpMux(qmp_mux::QmpMuxArgs),
    /// QEMU's human monitor: one command, or a shell.
    Hmp(hmp::HmpArgs),
    /// The QEMU guest agent: a command, `exec`, `cat`, `put`, or a shell.
    Qga(qga::QgaArgs),
    /// minimega's command socket: one command like `minimega -e`, or a shell like `-attach`.
    Minimega(minimega::MinimegaArgs),
    /// negotiator, host side: list guests, call a guest, or answer them all (the host daemon).
    #[command(name = "negotiator-host", disable_help_flag = true)]
    NegotiatorHost(negotiator::Raw),
    /// negotiator, guest side: call the host, or answer it (the guest daemon).
    #[command(name = "negotiator-guest", disable_help_flag = true)]
    NegotiatorGuest(negotiator::Raw),
    /// XML-RPC: call one method on any server, print the reply as JSON.
    Xmlrpc(xmlrpc::XmlrpcArgs),
    /// XenAPI (xapi): log in, make one call, print the Value as JSON.
    Xenapi(xmlrpc::XenapiArgs),
    /// Record a session through a transparent proxy (a transcript, and a summary).
    Record(record::RecordArgs),
    /// Serve a recorded transcript as a fake peer, with faults on request.
    Replay(replay::ReplayArgs),
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(_) if BROKEN_PIPE.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::from(141),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Qmp(args) => qmp::run(args),
        Commands::QmpMux(args) => qmp_mux::run(args),
        Commands::Hmp(args) => hmp::run(args),
        Commands::Qga(args) => qga::run(args),
        Commands::Minimega(args) => minimega::run(args),
        Commands::NegotiatorHost(args) => negotiator::host(args),
        Commands::NegotiatorGuest(args) => negotiator::guest(args),
        Commands::Xmlrpc(args) => xmlrpc::run_xmlrpc(args),
        Commands::Xenapi(args) => xmlrpc::run_xenapi(args),
        Commands::Record(args) => record::run(args),
        Commands::Replay(args) => replay::run(args),
    }
}

/// Reports a connection or protocol failure; exit status 3. The message is
/// escaped: it can quote what a peer sent.
pub fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vmwire: {}", escape(&error.to_string()));
    ExitCode::from(3)
}

/// Reports a usage error; exit status 2 (escaped like [`fail`]).
pub fn usage(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vmwire: {}", escape(&error.to_string()));
    ExitCode::from(2)
}

/// A time limit as every `--timeout` takes it: seconds, fractions allowed,
/// `0` for none. NaN, a negative number, infinity or one past what a
/// `Duration` holds is a usage error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Option<std::time::Duration>);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
        if seconds == 0.0 {
            return Ok(Seconds(None));
        }
        if seconds.is_nan() || seconds < 0.0 {
            return Err(format!("{text} is not a time limit: give seconds, more than 0 (0: no limit)"));
        }
        std::time::Duration::try_from_secs_f64(seconds)
            .map(|d| Seconds(Some(d)))
            .map_err(|_| format!("{text} seconds is longer than can be waited for (0: no limit)"))
    }
}

/// Log records (negotiator's tools, the mux's warnings) to standard error,
/// at a level moved by -v and -q (INFO by default, as negotiator's
/// coloredlogs).
pub fn init_logging(verbose: u8, quiet: u8) {
    static LOGGER: Stderr = Stderr;
    let levels = [
        log::LevelFilter::Off,
        log::LevelFilter::Error,
        log::LevelFilter::Warn,
        log::LevelFilter::Info,
        log::LevelFilter::Debug,
        log::LevelFilter::Trace,
    ];
    let level = (3 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5) as usize;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(levels[level]);
    }
}

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            // Whatever a record quotes of a peer, it stays one line, with no
            // control characters.
            eprintln!("{:<5} {}", record.level(), escape(&record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

/// Checks a `--tcp` address: `HOST:PORT`, the port a number (`localhost`
/// alone is a usage error, not a connection that fails).
pub fn tcp_address(address: &str) -> Result<String, String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(address.to_string()),
        _ => Err("expected HOST:PORT, such as localhost:4444 or [::1]:4444".into()),
    }
}

/// Removes the UNIX socket this process listens on at `address` (if it is
/// one) when SIGTERM, SIGHUP or SIGINT comes, then ends as that signal would
/// have: `record` and `replay` stopped by Ctrl-C leave no socket behind.
/// Called once the socket is bound, so that it can only remove its own.
pub fn remove_on_signal(address: &vmwire_std::record::Address) {
    let vmwire_std::record::Address::Unix(path) = address else { return };
    let path = path.clone();
    on_signal(move || {
        let _ = std::fs::remove_file(&path);
    });
}

/// When SIGTERM, SIGHUP or SIGINT (Ctrl-C) comes, runs `then` (on a thread
/// of its own, while the main thread may be waiting on a peer), and ends
/// as the signal would have.
pub fn on_signal(then: impl FnOnce() + Send + 'static) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT]) else { return };
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            then();
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        }
    });
}

/// A QEMU started by `--launch`, with the signal guard that shuts it down
/// in order (and removes its directory) if SIGTERM, SIGHUP or SIGINT ends
/// vmwire first.
pub struct Launched {
    /// The QEMU started.
    pub qemu: vmwire_std::qemu::Qemu,
    guard: vmwire_std::qemu::SignalGuard,
}

/// How long a launched QEMU has to exit after `quit` before it is stopped.
const QUIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Launched {
    /// Catches the signals, then starts QEMU as `builder` says.
    pub fn start(builder: vmwire_std::qemu::Builder) -> Result<Self, ExitCode> {
        let mut guard = vmwire_std::qemu::SignalGuard::new().map_err(|e| fail(&format!("catching signals: {e}")))?;
        let qemu = builder.spawn().map_err(|e| fail(&e))?;
        if let Err(e) = guard.watch(&qemu) {
            eprintln!("vmwire: catching signals: {e}");
        }
        Ok(Launched { qemu, guard })
    }

    /// Quits QEMU (over `qmp`, the connection still open, if any: QEMU
    /// would not greet a second one), waits for it, and ends as a caught
    /// signal would have.
    pub fn finish(self, qmp: Option<vmwire_std::qmp::Qmp>) {
        match self.qemu.shutdown(qmp, QUIT_GRACE) {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("vmwire: QEMU did not exit cleanly ({status})"),
            Err(e) => eprintln!("vmwire: shutting QEMU down: {e}"),
        }
        self.guard.finish();
    }
}

/// Set when standard output's reader went away (see [`quiet_on_broken_pipe`]).
static BROKEN_PIPE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `vmwire … | head`: when the reader of standard output goes away, the
/// program ends quietly with the status a shell gives a program killed by
/// SIGPIPE (141), as a C tool would, instead of `println!`'s panic message
/// ("failed printing to stdout: Broken pipe"; Rust ignores SIGPIPE, so the
/// write fails instead). The panic still unwinds, so a launched QEMU is
/// shut down and its directory removed on the way out.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            BROKEN_PIPE.store(true, std::sync::atomic::Ordering::SeqCst);
        } else {
            default(info)
        }
    }));
}

#[cfg(test)]
mod seconds_tests {
    use super::Seconds;
    use std::time::Duration;

    #[test]
    fn time_limits() {
        assert_eq!("0".parse(), Ok(Seconds(None)));
        assert_eq!("2.5".parse(), Ok(Seconds(Some(Duration::from_millis(2500)))));
        assert_eq!("1e10".parse(), Ok(Seconds(Some(Duration::from_secs(10_000_000_000)))));
        for bad in ["inf", "1e30", "NaN", "-1", "-0.5", "abc", ""] {
            assert!(bad.parse::<Seconds>().is_err(), "{bad}");
        }
    }
}
