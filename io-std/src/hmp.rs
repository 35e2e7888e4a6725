//! A blocking client for QEMU's human monitor: the readline monitor over a
//! UNIX or TCP socket, or HMP over QMP (`human-monitor-command`).
//!
//! ```no_run
//! use vmwire_std::hmp::{Monitor, Options};
//!
//! let mut hmp = Monitor::connect_unix("/run/vm/hmp.sock", Options::default())?;
//! println!("{}", hmp.info("version")?);
//! if !hmp.status()?.running {
//!     hmp.command("cont")?;
//! }
//! hmp.sendkey("ctrl-alt-f1", None)?;
//! # Ok::<(), vmwire_std::hmp::Error>(())
//! ```
//!
//! The same commands run over a QMP connection with [`Monitor::via_qmp`]:
//! no echo and no prompt to read around, and no 4,095-byte line limit.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use vmwire_proto::buf::Heap;
use vmwire_proto::hmp::{self, Client, Config, Event};
use vmwire_proto::op;

use crate::qmp::{self, Qmp};
use crate::transport::{Conn, DriveError, Stream, deadline};

/// Settings for a [`Monitor`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Default time limit for connecting and for each command (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// Limits, and whether to turn QEMU's `\r\n` into `\n` (off: the output
    /// comes back as QEMU wrote it).
    pub config: Config,
}

impl Default for Options {
    fn default() -> Self {
        Options { timeout: Some(Duration::from_secs(10)), config: Config::default() }
    }
}

/// Everything that can go wrong, with "QEMU said no" ([`Error::Monitor`])
/// kept apart from I/O, timeouts and protocol errors.
#[derive(Debug)]
pub enum Error {
    /// A command that prints nothing when it works printed this instead
    /// (the convenience methods only; [`Monitor::command`] returns any text).
    Monitor(String),
    /// The socket failed.
    Io(io::Error),
    /// No prompt within the time limit (the command may still be running:
    /// later commands wait behind it).
    Timeout,
    /// QEMU closed the monitor before the command finished.
    Closed,
    /// The line was refused before it was sent: a line break, a control
    /// character, too long ([`hmp::check_line`], [`hmp::check_text`]).
    BadLine(hmp::Error),
    /// QEMU (or whatever answered) broke the protocol: an echo that was not
    /// the command sent ([`hmp::Error::EchoMismatch`]; the output is dropped).
    Protocol(hmp::Error),
    /// No prompt within the time limit after connecting.
    NoPrompt {
        /// What arrived (escaped, cut short): often nothing, when another
        /// client holds the monitor (QEMU serves one at a time) or the
        /// socket is a guest agent's (which never speaks first).
        got: String,
    },
    /// What came before the first prompt was not a monitor's banner (JSON
    /// from a QMP or guest agent socket, or more text than the limit).
    Banner {
        /// [`hmp::Error::NotHmp`] or [`hmp::Error::BannerTooLong`].
        error: hmp::Error,
        /// The start of what arrived, escaped and cut short.
        got: String,
    },
    /// The output was longer than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Running over QMP failed.
    Qmp(qmp::Error),
    /// The output was not what the command prints.
    Unexpected(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Monitor(text) => write!(f, "QEMU monitor: {}", text.trim_end()),
            Error::Io(e) => write!(f, "HMP I/O error: {e}"),
            Error::Timeout => f.write_str("HMP: timed out"),
            Error::Closed => f.write_str("HMP: monitor closed"),
            Error::BadLine(e) | Error::Protocol(e) => e.fmt(f),
            Error::Banner { error, got } => write!(f, "{error}: `{got}`"),
            Error::NoPrompt { got } if got.is_empty() => f.write_str(
                "HMP: no banner or `(qemu) ` prompt within the time limit; nothing arrived \
                 (another client holding the monitor? a guest agent's socket?)",
            ),
            Error::NoPrompt { got } => write!(f, "HMP: no `(qemu) ` prompt within the time limit; got `{got}`"),
            Error::TooLarge { limit } => write!(f, "HMP: output longer than {limit} bytes"),
            Error::Qmp(e) => e.fmt(f),
            Error::Unexpected(text) => write!(f, "HMP: unexpected output: {}", text.trim_end()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::BadLine(e) | Error::Protocol(e) | Error::Banner { error: e, .. } => Some(e),
            Error::Qmp(e) => Some(e),
            _ => None,
        }
    }
}

crate::transport::client_error!(Error, hmp::Error, Error::Protocol);

impl From<qmp::Error> for Error {
    fn from(e: qmp::Error) -> Self {
        match e {
            qmp::Error::Io(e) => Error::Io(e),
            qmp::Error::Timeout => Error::Timeout,
            qmp::Error::Closed => Error::Closed,
            e => Error::Qmp(e),
        }
    }
}

/// What `info status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether the guest's CPUs are running.
    pub running: bool,
    /// QEMU's run state: `running`, `paused`, or why it is not running
    /// (`prelaunch`, `inmigrate`, `postmigrate`, `shutdown`, …).
    pub state: String,
    /// Single-step mode is on.
    pub single_step: bool,
}

impl Status {
    /// What `info status` printed (`text`), read; [`Error::Unexpected`] if it is not that.
    pub fn parse(text: &str) -> Result<Status, Error> {
        let status = hmp::Status::parse(text.as_bytes()).ok_or_else(|| Error::Unexpected(text.to_owned()))?;
        Ok(Status { running: status.running, state: status.state.to_owned(), single_step: status.single_step })
    }
}

/// Flags for [`Monitor::migrate`] (`migrate [-d] [-b] [-i] [-r] uri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrate {
    /// Return at once (`-d`) rather than when the migration is over.
    pub detach: bool,
    /// Copy the disks too (`-b`, block migration).
    pub block: bool,
    /// With shared base images, copy only what differs (`-i`).
    pub incremental: bool,
    /// Resume a paused postcopy migration (`-r`).
    pub resume: bool,
}

impl Migrate {
    /// The command line that migrates to `uri` with these flags.
    pub fn command_line(&self, uri: &str) -> String {
        let mut line = String::from("migrate");
        for (on, flag) in [(self.detach, " -d"), (self.block, " -b"), (self.incremental, " -i"), (self.resume, " -r")] {
            if on {
                line.push_str(flag);
            }
        }
        line.push(' ');
        line.push_str(&quote(uri));
        line
    }
}

impl Default for Migrate {
    /// Detached: the command returns at once; watch it with `info migrate`.
    fn default() -> Self {
        Migrate { detach: true, block: false, incremental: false, resume: false }
    }
}

#[derive(Debug)]
enum Backend {
    Readline { conn: Box<Conn<Client<Heap>>>, banner: String },
    Qmp(Box<Qmp>),
}

/// A connection to QEMU's human monitor.
#[derive(Debug)]
pub struct Monitor {
    backend: Backend,
    timeout: Option<Duration>,
    lf_newlines: bool,
    unsolicited: Unsolicited,
}

/// What came of a command line.
#[derive(Debug)]
pub enum Finished {
    /// Its prompt came back after this output.
    Output(String),
    /// QEMU ran it and closed the monitor (`quit`).
    RanThenClosed,
}

impl Finished {
    /// What [`Monitor::command`] returns of it: the output; a monitor that
    /// closed after the line is [`Error::Closed`].
    pub fn output(self) -> Result<String, Error> {
        match self {
            Finished::Output(text) => Ok(text),
            Finished::RanThenClosed => Err(Error::Closed),
        }
    }

    /// What a command that prints nothing when it works ([`Monitor::stop`],
    /// [`Monitor::sendkey`], …) returns of it: its output, if any, is the
    /// error ([`Error::Monitor`]).
    pub fn quiet(self) -> Result<(), Error> {
        let text = self.output()?;
        if text.trim().is_empty() { Ok(()) } else { Err(Error::Monitor(text)) }
    }

    /// What [`Monitor::quit`] returns of running `quit`: done when QEMU has
    /// read the line and closed the monitor (or closed it first).
    pub fn quit(ran: Result<Finished, Error>) -> Result<(), Error> {
        match ran {
            Ok(_) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The command lines of [`Monitor`]'s typed commands (and vmwire-smol's):
/// HMP's syntax for them, written once.
pub mod line {
    use std::path::Path;

    use super::{Error, quote};

    /// `info WHAT`.
    pub fn info(what: &str) -> String {
        format!("info {what}")
    }

    /// `screendump FILE`, the file name quoted if it needs it.
    pub fn screendump(file: &Path) -> Result<String, Error> {
        let file = file.to_str().ok_or_else(|| Error::Unexpected("the file name is not UTF-8".into()))?;
        Ok(format!("screendump {}", quote(file)))
    }

    /// `sendkey KEYS [HOLD_MS]`.
    pub fn sendkey(keys: &str, hold_ms: Option<u32>) -> String {
        match hold_ms {
            Some(ms) => format!("sendkey {keys} {ms}"),
            None => format!("sendkey {keys}"),
        }
    }

    /// `mouse_move DX DY`.
    pub fn mouse_move(dx: i32, dy: i32) -> String {
        format!("mouse_move {dx} {dy}")
    }

    /// `mouse_button STATE`.
    pub fn mouse_button(state: u32) -> String {
        format!("mouse_button {state}")
    }

    /// `migrate_set_parameter max-bandwidth NB`: the old `migrate_set_speed`
    /// is gone from QEMU; the bandwidth is given in bytes (without a suffix
    /// QEMU would read MiB).
    pub fn migrate_set_speed(bytes_per_second: u64) -> String {
        format!("migrate_set_parameter max-bandwidth {bytes_per_second}B")
    }
}

const MAX_UNSOLICITED: usize = 256;

/// Characters of a peer's unexpected text shown in an error.
const EXCERPT: usize = 80;

/// Text that came while no command ran (bounded: the oldest goes first):
/// the inbox of a [`Monitor`] (and of the async client's).
#[derive(Debug)]
pub struct Unsolicited(op::Bounded<String>);

impl Unsolicited {
    /// An empty inbox.
    pub fn new() -> Self {
        Unsolicited(op::Bounded::new(MAX_UNSOLICITED))
    }

    /// Takes what it kept, oldest first.
    pub fn take(&mut self) -> Vec<String> {
        self.0.drain().collect()
    }
}

impl Default for Unsolicited {
    fn default() -> Self {
        Self::new()
    }
}

/// How the wait for the first prompt ([`hmp::Opening`]) ended, as the
/// client reports it: the banner, or why there is none.
pub fn opened(end: hmp::Opened<'_>) -> Result<String, Error> {
    match end {
        hmp::Opened::Banner(b) => Ok(String::from_utf8_lossy(b.text).into_owned()),
        hmp::Opened::BadBanner { error, text } => {
            Err(Error::Banner { error, got: crate::text::excerpt(text, EXCERPT) })
        }
        hmp::Opened::Closed => Err(Error::Closed),
    }
}

/// What came of a command line, from how it ended ([`hmp::ReplyTo`]).
pub fn finished(answer: hmp::Answer<'_>) -> Result<Finished, Error> {
    match answer {
        hmp::Answer::Output(text) => Ok(Finished::Output(String::from_utf8_lossy(text).into_owned())),
        hmp::Answer::TooLarge { limit } => Err(Error::TooLarge { limit }),
        hmp::Answer::Mismatch(e) => Err(Error::Protocol(e)),
        hmp::Answer::RanThenClosed(_) => Ok(Finished::RanThenClosed),
        hmp::Answer::Closed => Err(Error::Closed),
    }
}

/// [`Error::NoPrompt`] for a monitor that sent `buffered` and no prompt in time.
pub fn no_prompt(buffered: &[u8]) -> Error {
    Error::NoPrompt { got: crate::text::excerpt(buffered, EXCERPT) }
}

impl op::Inbox<Client<Heap>> for Unsolicited {
    fn keep(&mut self, event: Event<'_>) {
        if let Event::Unsolicited(text) = event {
            self.0.push(String::from_utf8_lossy(text).into_owned());
        }
    }
}

impl Monitor {
    /// Connects to a readline monitor's UNIX socket (`-monitor unix:PATH,server=on`
    /// or `-mon chardev=…,mode=readline`) and waits for the prompt.
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::connect_unix_timeout(path, options.timeout)?, options)
    }

    /// Connects to a readline monitor on TCP (`-monitor tcp:HOST:PORT,server=on`).
    pub fn connect_tcp(addr: impl std::net::ToSocketAddrs, options: Options) -> Result<Self, Error> {
        let timeout = options.timeout;
        Self::handshake(Stream::connect_tcp(addr, timeout)?, options)
    }

    /// Waits on `stream` for the banner and the first prompt.
    pub fn handshake(stream: Stream, options: Options) -> Result<Self, Error> {
        let mut conn = Box::new(Conn::new(stream, Client::<Heap>::new(options.config)));
        let mut unsolicited = Unsolicited::new();
        let mut opening = hmp::Opening::new(opened);
        let banner = match conn.run(&mut opening, &mut unsolicited, deadline(options.timeout)) {
            Err(DriveError::Timeout) => return Err(no_prompt(conn.machine().buffered())),
            other => other??,
        };
        Ok(Monitor {
            backend: Backend::Readline { conn, banner },
            timeout: options.timeout,
            lf_newlines: options.config.lf_newlines,
            unsolicited,
        })
    }

    /// Runs the same commands over an open QMP connection, with
    /// `human-monitor-command`. The QMP client's own time limit applies.
    pub fn via_qmp(qmp: Qmp, options: Options) -> Self {
        let mut qmp = Box::new(qmp);
        qmp.set_timeout(options.timeout);
        Monitor {
            backend: Backend::Qmp(qmp),
            timeout: options.timeout,
            lf_newlines: options.config.lf_newlines,
            unsolicited: Unsolicited::new(),
        }
    }

    /// The banner before the first prompt (empty over QMP).
    pub fn banner(&self) -> &str {
        match &self.backend {
            Backend::Readline { banner, .. } => banner,
            Backend::Qmp(_) => "",
        }
    }

    /// QEMU's version as `(major, minor, micro)`: from the banner, or the QMP greeting.
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        match &self.backend {
            Backend::Readline { banner, .. } => hmp::Banner { text: banner.as_bytes() }.version(),
            Backend::Qmp(qmp) => Some(qmp.greeting().version),
        }
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
        if let Backend::Qmp(qmp) = &mut self.backend {
            qmp.set_timeout(timeout);
        }
    }

    /// Runs `line` and returns what QEMU printed, error messages included
    /// (HMP has no error replies: `unknown command: 'x'` is output too).
    pub fn command(&mut self, line: &str) -> Result<String, Error> {
        self.run(line, self.timeout)?.output()
    }

    /// [`Monitor::command`] with its own time limit.
    pub fn command_timeout(&mut self, line: &str, timeout: Option<Duration>) -> Result<String, Error> {
        self.run(line, timeout)?.output()
    }

    fn run(&mut self, line: &str, timeout: Option<Duration>) -> Result<Finished, Error> {
        // One guard for both ways of running a line (readline adds its length limit).
        hmp::check_text(line.as_bytes()).map_err(Error::BadLine)?;
        let (lf, default_timeout) = (self.lf_newlines, self.timeout);
        let conn = match &mut self.backend {
            Backend::Qmp(qmp) => {
                qmp.set_timeout(timeout);
                let result = via_qmp(qmp, line);
                qmp.set_timeout(default_timeout);
                return over_qmp(result, line, lf);
            }
            Backend::Readline { conn, .. } => conn,
        };
        if conn.machine().state() == hmp::State::Closed {
            return Err(Error::Closed);
        }
        let id = conn.machine_mut().command(line).map_err(Error::BadLine)?;
        let mut reply = hmp::ReplyTo::new(conn.machine(), id, finished);
        conn.run(&mut reply, &mut self.unsolicited, deadline(timeout))?
    }

    /// Text QEMU printed while no command was running (bounded: the oldest goes first).
    pub fn take_unsolicited(&mut self) -> Vec<String> {
        self.unsolicited.take()
    }

    /// Reads what QEMU prints while no command runs, waiting at most
    /// `timeout` (`Some(Duration::ZERO)`: what has arrived), and keeps it for
    /// [`Monitor::take_unsolicited`]: what a shell does while its user is
    /// idle, so that it learns at once that QEMU has gone ([`Error::Closed`]).
    /// Over QMP the connection is read the same way (QMP's events are not
    /// the monitor's, and are dropped).
    pub fn wait_unsolicited(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        let conn = match &mut self.backend {
            Backend::Qmp(qmp) => {
                if qmp.next_event(timeout)?.is_some() {
                    while qmp.next_event(Some(Duration::ZERO))?.is_some() {}
                }
                return Ok(());
            }
            Backend::Readline { conn, .. } => conn,
        };
        if conn.machine().state() == hmp::State::Closed {
            return Err(Error::Closed);
        }
        Ok(conn.idle(&mut self.unsolicited, deadline(timeout))?)
    }

    /// Runs a command that prints nothing when it works.
    fn quiet(&mut self, line: &str) -> Result<(), Error> {
        self.run(line, self.timeout)?.quiet()
    }

    /// `info WHAT`: `info status`, `info block`, `info qtree`, …
    pub fn info(&mut self, what: &str) -> Result<String, Error> {
        self.command(&line::info(what))
    }

    /// The VM's run state, from `info status`.
    pub fn status(&mut self) -> Result<Status, Error> {
        Status::parse(&self.info("status")?)
    }

    /// Stops the guest's CPUs (`stop`).
    pub fn stop(&mut self) -> Result<(), Error> {
        self.quiet("stop")
    }

    /// Resumes the guest's CPUs (`cont`).
    pub fn cont(&mut self) -> Result<(), Error> {
        self.quiet("cont")
    }

    /// Saves the screen to `file` on QEMU's side (`screendump FILE`, PPM).
    pub fn screendump(&mut self, file: impl AsRef<Path>) -> Result<(), Error> {
        self.quiet(&line::screendump(file.as_ref())?)
    }

    /// Presses `keys` together, such as `ctrl-alt-f1` (`sendkey KEYS [HOLD_MS]`;
    /// QEMU's default hold time is 100 ms).
    pub fn sendkey(&mut self, keys: &str, hold_ms: Option<u32>) -> Result<(), Error> {
        self.quiet(&line::sendkey(keys, hold_ms))
    }

    /// Moves the mouse by `dx`, `dy` (`mouse_move`).
    pub fn mouse_move(&mut self, dx: i32, dy: i32) -> Result<(), Error> {
        self.quiet(&line::mouse_move(dx, dy))
    }

    /// Sets the mouse buttons: a mask of 1 (left), 2 (middle), 4 (right) (`mouse_button`).
    pub fn mouse_button(&mut self, state: u32) -> Result<(), Error> {
        self.quiet(&line::mouse_button(state))
    }

    /// Migrates to `uri` (`tcp:HOST:PORT`, `unix:PATH`, `exec:CMD`, …).
    pub fn migrate(&mut self, uri: &str, flags: Migrate) -> Result<(), Error> {
        self.quiet(&flags.command_line(uri))
    }

    /// Caps migration bandwidth at `bytes_per_second`. (The old
    /// `migrate_set_speed` is gone from QEMU; this is its replacement,
    /// `migrate_set_parameter max-bandwidth`, given in bytes: without a
    /// suffix QEMU would read MiB.)
    pub fn migrate_set_speed(&mut self, bytes_per_second: u64) -> Result<(), Error> {
        self.quiet(&line::migrate_set_speed(bytes_per_second))
    }

    /// Quits QEMU (`quit`): done when QEMU has read the line and closed the monitor.
    pub fn quit(mut self) -> Result<(), Error> {
        Finished::quit(self.run("quit", self.timeout))
    }

    /// Closes the connection.
    pub fn close(self) {
        match self.backend {
            Backend::Readline { mut conn, .. } => conn.close(),
            Backend::Qmp(qmp) => qmp.close(),
        }
    }
}

/// What running `line` over QMP came to, as a readline monitor reports
/// it: the output (with `\n` line ends if `lf`), or for `quit`, the
/// connection closing before the answer.
pub fn over_qmp(result: Result<String, qmp::Error>, line: &str, lf: bool) -> Result<Finished, Error> {
    match result {
        Ok(mut text) => {
            if lf {
                let mut bytes = text.into_bytes();
                let n = hmp::lf_newlines(&mut bytes);
                bytes.truncate(n);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Ok(Finished::Output(text))
        }
        Err(qmp::Error::Closed) if is_quit(line) => Ok(Finished::RanThenClosed),
        Err(e) => Err(e.into()),
    }
}

fn is_quit(line: &str) -> bool {
    matches!(line.split_whitespace().next(), Some("quit" | "q"))
}

/// Quotes an argument for HMP's parser when it has spaces or quotes.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '"', '\'', '\\', '\t']) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Runs `line` through QMP's `human-monitor-command` and returns its output
/// (as QEMU wrote it, `\r\n` and all). It sends `line` as it is:
/// [`Monitor::command`] refuses line breaks and escapes first ([`hmp::check_text`]).
pub fn via_qmp(qmp: &mut Qmp, line: &str) -> Result<String, qmp::Error> {
    qmp.execute("human-monitor-command", serde_json::json!({ "command-line": line }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_spaces_are_quoted() {
        assert_eq!(quote("/tmp/shot.ppm"), "/tmp/shot.ppm");
        assert_eq!(quote("/tmp/my shot.ppm"), "\"/tmp/my shot.ppm\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
