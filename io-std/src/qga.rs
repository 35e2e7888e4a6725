//! A blocking client for the QEMU guest agent.
//!
//! ```no_run
//! use vmwire_std::qga::{Agent, Options};
//!
//! // The host end of the guest's org.qemu.guest_agent.0 port.
//! let mut agent = Agent::connect_unix("/run/vm/qga.sock", Options::default())?;
//! agent.ping()?;
//! let out = agent.exec("/bin/uname", &["-r"], &[], None)?;
//! println!("{} ({:?})", String::from_utf8_lossy(&out.stdout), out.status);
//! agent.write_file("/tmp/hello", b"hello\n")?;
//! assert_eq!(agent.read_file("/tmp/hello")?, b"hello\n");
//! # Ok::<(), vmwire_std::qga::Error>(())
//! ```
//!
//! Opening a session resynchronises with the agent (`0xFF` and
//! `guest-sync-delimited` with a random id), and so does a command that
//! timed out, so that a late reply can never be taken for the next one's.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::{Bounded, Full, Heap};
use vmwire_proto::json::{ObjectWriter, Value};
use vmwire_proto::qga::{self, Client, Command, Config, Event, Id};
use vmwire_proto::{base64, op};

use crate::qmp::arguments;
use crate::transport::{Conn, DriveError, Stream, With, deadline};

pub use crate::qmp::QemuError;

/// Settings for an [`Agent`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Default time limit for connecting, syncing and each command (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// How long [`Agent::exec`] waits for the guest program to end.
    pub exec_timeout: Option<Duration>,
    /// Bytes of file data per `guest-file-read` / `guest-file-write`.
    pub chunk_size: usize,
    /// Limits on what the agent may send.
    pub config: Config,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Some(Duration::from_secs(10)),
            exec_timeout: Some(Duration::from_secs(60)),
            chunk_size: 64 << 10,
            config: Config::default(),
        }
    }
}

/// Everything that can go wrong, with "the agent said no" ([`Error::Agent`])
/// kept apart from I/O, timeouts and protocol errors.
#[derive(Debug)]
pub enum Error {
    /// The agent answered the command with an error.
    Agent(QemuError),
    /// The socket or device failed.
    Io(io::Error),
    /// No reply within the time limit (the session resynchronises before
    /// the next command).
    Timeout,
    /// The agent closed the connection (or died) before replying.
    Closed,
    /// The agent broke the protocol, or the client was used wrongly.
    Protocol(qga::Error),
    /// The reply did not decode into the requested type, or the arguments
    /// did not encode.
    Json(serde_json::Error),
    /// File or process data that is not base64.
    Base64(base64::Error),
    /// A reply not shaped as the command's reply is.
    Unexpected(String),
    /// The socket is another protocol's (QMP, the human monitor): it spoke first.
    WrongProtocol {
        /// [`qga::Error::NotAgent`].
        error: qga::Error,
        /// The start of what arrived, escaped and cut short.
        got: String,
    },
    /// [`Agent::exec`]'s time limit ([`Options::exec_timeout`]) passed, or
    /// the caller stopped waiting ([`Agent::exec_or_stop`]), with the
    /// program still running: it goes on in the guest (the agent cannot
    /// stop it), as process `pid` there.
    StillRunning {
        /// The program's process id in the guest.
        pid: i64,
        /// How long it was waited for: the time limit, or until the stop.
        limit: Duration,
    },
    /// The reply to `command` was longer than the limit
    /// ([`Options::config`]`.limits.max_message`); it was skipped, and the
    /// session goes on.
    ReplyTooLarge {
        /// The command.
        command: String,
        /// The limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Agent(e) => write!(f, "guest agent error: {e}"),
            Error::Io(e) => write!(f, "QGA I/O error: {e}"),
            Error::Timeout => f.write_str("QGA: timed out"),
            Error::Closed => f.write_str("QGA: connection closed"),
            Error::Protocol(e) => e.fmt(f),
            Error::Json(e) => write!(f, "QGA: JSON: {e}"),
            Error::Base64(e) => write!(f, "QGA: {e}"),
            Error::Unexpected(what) => write!(f, "QGA: unexpected reply: {what}"),
            Error::WrongProtocol { error, got } => write!(f, "{error}: `{got}`"),
            Error::StillRunning { pid, limit } => write!(
                f,
                "QGA: the program was still running after {} s; it goes on in the guest as process {pid}",
                limit.as_secs_f64()
            ),
            Error::ReplyTooLarge { command, limit } => {
                write!(f, "QGA: the reply to {command} is larger than the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) | Error::WrongProtocol { error: e, .. } => Some(e),
            Error::Json(e) => Some(e),
            Error::Base64(e) => Some(e),
            _ => None,
        }
    }
}

impl From<base64::Error> for Error {
    fn from(e: base64::Error) -> Self {
        Error::Base64(e)
    }
}

crate::transport::client_error!(Error, qga::Error, Error::Protocol);

/// The exit status [`ExitStatus::exit_status`] gives for an exit code
/// outside 0..=255.
pub const OUT_OF_RANGE: u8 = 255;

/// How a guest program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i64),
    /// A signal killed it.
    Signal(i64),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// An 8-bit exit status for this end, as a shell reports it, with no
    /// failure ever passing for success: 0 only for `Code(0)`; a code of
    /// 1..=255 as it is; any other code (256, 512, negative: it would wrap
    /// to 0 or go past 255) [`OUT_OF_RANGE`]; a signal n as 128 + n, kept
    /// within 129..=255 (a signal number the agent makes up cannot overflow).
    ///
    /// ```
    /// use vmwire_std::qga::ExitStatus::{Code, Signal};
    /// assert_eq!([Code(0), Code(3), Code(256), Code(-1)].map(|s| s.exit_status()), [0, 3, 255, 255]);
    /// assert_eq!([Signal(9), Signal(128), Signal(0), Signal(i64::MAX)].map(|s| s.exit_status()), [137, 255, 129, 255]);
    /// ```
    pub fn exit_status(&self) -> u8 {
        match *self {
            ExitStatus::Code(code) => u8::try_from(code).unwrap_or(OUT_OF_RANGE),
            ExitStatus::Signal(signal) => u8::try_from(signal.saturating_add(128).clamp(129, 255)).unwrap_or(u8::MAX),
        }
    }

    /// Its exit code, if it exited.
    pub fn code(&self) -> Option<i64> {
        match *self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }
}

/// What a guest program did ([`Agent::exec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// The agent kept only the first 16 MiB of standard output.
    pub stdout_truncated: bool,
    /// The agent kept only the first 16 MiB of standard error.
    pub stderr_truncated: bool,
}

/// `guest-info`: the agent's version and commands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Info {
    /// The agent's version, such as `7.2.22`.
    pub version: String,
    /// Every command it knows.
    pub supported_commands: Vec<CommandInfo>,
}

/// One command in [`Info`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CommandInfo {
    /// Its name.
    pub name: String,
    /// Whether it may be used (`qemu-ga -b` disables commands).
    pub enabled: bool,
    /// Whether it answers when it succeeds.
    #[serde(rename = "success-response")]
    pub success_response: bool,
}

/// `guest-get-osinfo`: what the guest runs (members the guest does not know are `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsInfo {
    /// `id` of os-release, such as `debian`.
    pub id: Option<String>,
    /// `NAME` of os-release.
    pub name: Option<String>,
    /// `PRETTY_NAME` of os-release.
    pub pretty_name: Option<String>,
    /// `VERSION`.
    pub version: Option<String>,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `VARIANT`.
    pub variant: Option<String>,
    /// `VARIANT_ID`.
    pub variant_id: Option<String>,
    /// The kernel release (`uname -r`).
    pub kernel_release: Option<String>,
    /// The kernel version (`uname -v`).
    pub kernel_version: Option<String>,
    /// The machine (`uname -m`).
    pub machine: Option<String>,
}

/// How [`Agent::shutdown`] ends the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Power off.
    Powerdown,
    /// Halt.
    Halt,
    /// Reboot.
    Reboot,
}

impl Shutdown {
    /// `guest-shutdown`'s `mode` argument.
    pub fn mode(self) -> &'static str {
        match self {
            Shutdown::Powerdown => "powerdown",
            Shutdown::Halt => "halt",
            Shutdown::Reboot => "reboot",
        }
    }
}

/// A fresh id for `guest-sync-delimited`: the machine has no random numbers
/// of its own. std's hasher keys are drawn from the OS at random per
/// process; the clock, the pid and a counter make each id differ.
pub fn random_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    RandomState::new().hash_one((std::process::id(), now, COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// A session with the guest agent, in step with it.
#[derive(Debug)]
pub struct Agent {
    conn: Conn<Client<Heap>>,
    timeout: Option<Duration>,
    exec_timeout: Option<Duration>,
    chunk_size: usize,
    strays: Strays,
}

/// What belonged to no waiting command, in words (bounded: the oldest goes):
/// the inbox of an [`Agent`] (and of the async client's).
#[derive(Debug)]
pub struct Strays(op::Bounded<String>);

const MAX_STRAYS: usize = 256;

impl Strays {
    /// An empty inbox.
    pub fn new() -> Self {
        Strays(op::Bounded::new(MAX_STRAYS))
    }

    /// Takes what it kept, oldest first.
    pub fn take(&mut self) -> Vec<String> {
        self.0.drain().collect()
    }
}

impl Default for Strays {
    fn default() -> Self {
        Self::new()
    }
}

impl op::Inbox<Client<Heap>> for Strays {
    fn keep(&mut self, event: Event<'_>) {
        let text = match event {
            Event::UntaggedError(e) => format!("error without id: {e}"),
            Event::Unmatched(m) => format!("unmatched reply: {}", m.value()),
            Event::Stale { id, .. } => format!("late reply to {id}"),
            Event::Malformed(e) => e.to_string(),
            Event::MalformedReply { id, error } => format!("reply to {id}: {error}"),
            _ => return,
        };
        self.0.push(text);
    }
}

/// The arguments of a request, written straight into the machine's buffer.
type Args<'f> = &'f mut dyn FnMut(&mut ObjectWriter<'_, Bounded<u8>>) -> Result<(), Full>;

impl Agent {
    /// Connects to the agent's UNIX socket (the host end of the guest's
    /// virtio-serial port, or `qemu-ga --method unix-listen`) and syncs.
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::connect_unix_timeout(path, options.timeout)?, options)
    }

    /// Opens a character device that leads to the agent (a serial line or
    /// pty wired to the agent's port) and syncs.
    pub fn open_device(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::open_device(path)?, options)
    }

    /// Syncs with the agent on `stream`.
    pub fn handshake(stream: Stream, options: Options) -> Result<Self, Error> {
        let conn = Conn::new(stream, Client::<Heap>::new(options.config, random_id()));
        let mut agent = Agent {
            conn,
            timeout: options.timeout,
            exec_timeout: options.exec_timeout,
            chunk_size: options.chunk_size.max(1),
            strays: Strays::new(),
        };
        agent.wait_synced(deadline(options.timeout))?;
        Ok(agent)
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Resynchronises now: `0xFF`, `guest-sync-delimited` with a fresh
    /// random id, and everything the agent sent before its answer dropped.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.conn.machine_mut().resync(random_id())?;
        let deadline = deadline(self.timeout);
        self.wait_synced(deadline)
    }

    fn wait_synced(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let mut sync = qga::Synchronise::new(synchronised);
        self.conn.run(&mut sync, &mut self.strays, deadline)?
    }

    /// `Err(Closed)` once the agent has gone.
    fn alive(&self) -> Result<(), Error> {
        match self.conn.machine().state() {
            qga::State::Closed => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Takes the messages that belonged to no waiting command.
    pub fn take_strays(&mut self) -> Vec<String> {
        self.strays.take()
    }

    /// Reads what comes while no command waits (a late reply, kept for
    /// [`Agent::take_strays`]), waiting at most `timeout`
    /// (`Some(Duration::ZERO)`: what has arrived): what a shell does while
    /// its user is idle, so that it learns at once that the agent's socket
    /// has closed ([`Error::Closed`]: QEMU has gone).
    pub fn wait_strays(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.alive()?;
        Ok(self.conn.idle(&mut self.strays, deadline(timeout))?)
    }

    /// Sends `name` with arguments written by `args`, then waits for its
    /// reply; `on_return` turns the return value into the result.
    fn request<T>(
        &mut self,
        name: &str,
        args: Option<Args<'_>>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.alive()?;
        let machine = self.conn.machine_mut();
        let id = match args {
            Some(args) => machine.execute_with(name, args)?,
            None => machine.execute(name, None)?,
        };
        self.wait(name, id, on_return)
    }

    /// Waits for command `id`'s reply (`name`, to say which command).
    fn wait<T>(
        &mut self,
        name: &str,
        id: Id,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let answer = |answer: qga::Answer<'_>| returned(name, answer, on_return);
        let mut reply = qga::ReplyTo::new(self.conn.machine_mut(), name, id, answer)?;
        let deadline = deadline(self.timeout);
        self.conn.run(&mut reply, &mut self.strays, deadline)?
    }

    /// Runs `name` with `args` (anything that serialises to a JSON object,
    /// or `()` for none) and decodes its return value into `T`.
    pub fn execute<T: DeserializeOwned>(&mut self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let args = arguments(args).map_err(Error::Json)?;
        self.execute_json(name, args.as_deref(), |v| v.deserialize().map_err(Error::Json))
    }

    /// Runs `name` with arguments given as JSON text (an object, or `None`)
    /// and returns the return value's JSON text as the agent sent it.
    pub fn execute_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.execute_json(name, args.map(str::as_bytes), |v| Ok(v.raw_str().to_owned()))
    }

    fn execute_json<T>(
        &mut self,
        name: &str,
        args: Option<&[u8]>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.alive()?;
        let id = send_json(self.conn.machine_mut(), name, args)?;
        self.wait(name, id, on_return)
    }

    /// `guest-ping`: is the agent there?
    pub fn ping(&mut self) -> Result<(), Error> {
        self.request("guest-ping", None, |_| Ok(()))
    }

    /// `guest-info`: the agent's version and commands.
    pub fn info(&mut self) -> Result<Info, Error> {
        self.request("guest-info", None, |v| v.deserialize().map_err(Error::Json))
    }

    /// `guest-get-osinfo`: the guest's operating system.
    pub fn osinfo(&mut self) -> Result<OsInfo, Error> {
        self.request("guest-get-osinfo", None, |v| v.deserialize().map_err(Error::Json))
    }

    /// Runs `path` in the guest with `args` and `env` (`NAME=value`
    /// entries), feeding it `input`, and waits (up to
    /// [`Options::exec_timeout`]) for it to end: `guest-exec`, then
    /// `guest-exec-status` until it has exited.
    pub fn exec(&mut self, path: &str, args: &[&str], env: &[&str], input: Option<&[u8]>) -> Result<Output, Error> {
        self.exec_or_stop(path, args, env, input, &|| false)
    }

    /// [`Agent::exec`], given up when `stop` says so (asked each time the
    /// program's status is looked at, every tenth of a second at most, as a
    /// shell asks whether its user pressed Ctrl-C): then
    /// [`Error::StillRunning`], with the time it ran.
    pub fn exec_or_stop(
        &mut self,
        path: &str,
        args: &[&str],
        env: &[&str],
        input: Option<&[u8]>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Output, Error> {
        self.alive()?;
        let started = Instant::now();
        let mut exec = qga::Exec::new(self.conn.machine_mut(), path, args, env, input, Output::of)?;
        let with = With { step: self.timeout, stop: Some(stop), ..With::default() };
        let outcome = self.conn.run_with(with, &mut exec, &mut self.strays, deadline(self.exec_timeout));
        let limit = if stop() { Some(started.elapsed()) } else { self.exec_timeout };
        exec_outcome(outcome, exec.running(), limit)
    }

    /// Runs the transfer of `path` over `data`: the guest's handle is
    /// closed in any case once open; the caller's own I/O error comes back
    /// from `data` when the transfer stopped for it.
    fn transfer<D: qga::Direction>(
        &mut self,
        path: &str,
        data: D,
        failure: impl FnOnce(D) -> Option<io::Error>,
    ) -> Result<u64, Error> {
        self.alive()?;
        let chunk = self.chunk_size as u64;
        let mut transfer = qga::Transfer::new(self.conn.machine_mut(), path, data, chunk, transferred)?;
        let with = With { step: self.timeout, ..With::default() };
        let outcome = self.conn.run_with(with, &mut transfer, &mut self.strays, None)?;
        transfer_outcome(outcome, failure(transfer.into_data()))
    }

    /// Streams the guest file `path` into `out`, a chunk at a time; returns
    /// how many bytes it had. The guest's handle is closed in any case.
    pub fn read_file_to(&mut self, path: &str, out: &mut impl Write) -> Result<u64, Error> {
        let sink = qga::Reading(WriteSink { out, taken: 0, error: None });
        self.transfer(path, sink, |qga::Reading(sink)| sink.error)
    }

    /// Reads the guest file `path` whole.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.read_file_to(path, &mut out)?;
        Ok(out)
    }

    /// Streams `input` into the guest file `path` (created, or truncated),
    /// a chunk at a time; returns how many bytes were written. The guest's
    /// handle is closed in any case.
    pub fn write_file_from(&mut self, path: &str, input: &mut impl Read) -> Result<u64, Error> {
        let source = ReadSource { input, buf: Vec::new(), error: None };
        self.transfer(path, qga::Writing::new(source), |writing| writing.source.error)
    }

    /// Writes `bytes` to the guest file `path` (created, or truncated).
    pub fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        self.write_file_from(path, &mut &bytes[..]).map(drop)
    }

    /// Shuts the guest down, halts or reboots it (`guest-shutdown`). The
    /// agent does not answer when it complies: this returns once a
    /// following `guest-ping` is answered or the agent goes away, and with
    /// the agent's error if it refuses. Through a virtio-serial port the
    /// agent's going away shows only when QEMU exits: a reboot whose
    /// shutdown command never returns (so the agent dies before it answers)
    /// ends in [`Error::Timeout`] although the guest reboots.
    pub fn shutdown(&mut self, how: Shutdown) -> Result<(), Error> {
        let mut args = |a: &mut ObjectWriter<'_, Bounded<u8>>| a.str("mode", how.mode()).map(drop);
        self.request("guest-shutdown", Some(&mut args), |_| Ok(()))
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.close();
    }
}

/// Queues `name` with arguments given as JSON text (an object, or `None`);
/// the id it goes under.
pub fn send_json(client: &mut Client<Heap>, name: &str, args: Option<&[u8]>) -> Result<Id, Error> {
    let args = match args {
        None => None,
        Some(a) => Some(Value::parse(a).map_err(qga::Error::from)?),
    };
    let mut command = Command::new(name);
    if let Some(args) = args {
        command = command.arguments(args);
    }
    Ok(client.send(command)?)
}

/// What command `name` came to from its `answer`: its return value made
/// into the caller's value by `on_return` (a quiet command's acceptance
/// as `null`), or its error.
pub fn returned<T>(
    name: &str,
    answer: qga::Answer<'_>,
    on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    match answer {
        qga::Answer::Return(value) => on_return(value),
        qga::Answer::Accepted => Value::parse(b"null").map_err(|e| Error::Protocol(e.into())).and_then(on_return),
        other => Err(answer_error(name, other)),
    }
}

/// How a sync ended ([`qga::Synchronise`]), as the client reports it.
pub fn synchronised(end: qga::Synchronised<'_>) -> Result<(), Error> {
    match end {
        qga::Synchronised::Ready => Ok(()),
        qga::Synchronised::WrongProtocol { error, text } => {
            Err(Error::WrongProtocol { error, got: crate::text::excerpt(text, 80) })
        }
        qga::Synchronised::Closed => Err(Error::Closed),
    }
}

impl Output {
    /// What a guest program did, from how [`qga::Exec`] ended.
    pub fn of(ran: qga::Ran<'_>) -> Result<Output, Error> {
        match ran {
            qga::Ran::Exited(s) => {
                let decode = |data| -> Result<Vec<u8>, Error> {
                    let mut out = Vec::new();
                    if let Some(data) = data {
                        base64::decode_json(&mut out, data)?;
                    }
                    Ok(out)
                };
                let status = match (s.exit_code, s.signal) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(signal)) => ExitStatus::Signal(signal),
                    (None, None) => return Err(Error::Unexpected("exited with neither exitcode nor signal".into())),
                };
                Ok(Output {
                    status,
                    stdout: decode(s.out_data)?,
                    stderr: decode(s.err_data)?,
                    stdout_truncated: s.out_truncated,
                    stderr_truncated: s.err_truncated,
                })
            }
            qga::Ran::Failed { command, answer } => Err(answer_error(command, answer)),
        }
    }
}

/// How a file transfer ([`qga::Transfer`]) ended: the bytes it moved, or
/// its error; `Err(None)` when the caller's side (its reader or writer)
/// stopped it, whose own error the caller has.
pub fn transferred(ended: qga::Transferred<'_>) -> Result<u64, Option<Error>> {
    match ended {
        qga::Transferred::Done(total) => Ok(total),
        qga::Transferred::Stopped => Err(None),
        qga::Transferred::Failed { command, answer } => Err(Some(answer_error(command, answer))),
        qga::Transferred::Base64(e) => Err(Some(Error::Base64(e))),
        qga::Transferred::Miscounted { said, got } => {
            Err(Some(Error::Unexpected(format!("{said} bytes said, {got} sent"))))
        }
    }
}

/// What a file transfer comes to, given how it ended ([`transferred`]) and
/// whether the caller's own reader or writer failed: that failure wins over
/// a transfer that went on to its end, so that bytes lost on the caller's
/// side never pass for success.
pub fn transfer_outcome(outcome: Result<u64, Option<Error>>, failure: Option<io::Error>) -> Result<u64, Error> {
    match (outcome, failure) {
        (Ok(total), None) => Ok(total),
        (Ok(_) | Err(None), Some(e)) => Err(Error::Io(e)),
        (Err(None), None) => Err(Error::Closed),
        (Err(Some(e)), _) => Err(e),
    }
}

/// What [`Agent::exec`] ends with: a time limit that passed between two
/// looks at a program still `running` (its pid, [`qga::Exec::running`]) is
/// [`Error::StillRunning`]; anything else is what it was.
pub fn exec_outcome(
    outcome: Result<Result<Output, Error>, DriveError<qga::Error>>,
    running: Option<i64>,
    limit: Option<Duration>,
) -> Result<Output, Error> {
    match (outcome, running, limit) {
        (Err(DriveError::Timeout), Some(pid), Some(limit)) => Err(Error::StillRunning { pid, limit }),
        (outcome, ..) => outcome?,
    }
}

/// The error of a command (`name`) that did not answer as it does.
pub fn answer_error(name: &str, answer: qga::Answer<'_>) -> Error {
    match answer {
        qga::Answer::Return(value) => Error::Unexpected(value.raw_str().into()),
        qga::Answer::Accepted => Error::Unexpected(format!("{name} answered nothing")),
        qga::Answer::Error(error) => Error::Agent(error.into()),
        qga::Answer::TooLarge { limit } => Error::ReplyTooLarge { command: name.to_owned(), limit },
        qga::Answer::Malformed(error) => Error::Protocol(error),
        qga::Answer::Closed => Error::Closed,
    }
}

/// The caller's writer as the sink of a guest file's bytes: a write that
/// fails takes no more (its limit is what it took) and keeps its error.
struct WriteSink<'w, W> {
    out: &'w mut W,
    taken: usize,
    error: Option<io::Error>,
}

impl<W: Write> vmwire_proto::buf::Sink for WriteSink<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        match self.out.write_all(bytes) {
            Ok(()) => {
                self.taken += bytes.len();
                Ok(())
            }
            Err(e) => {
                self.error = Some(e);
                Err(Full { limit: self.taken })
            }
        }
    }
}

/// The caller's reader as the source of a guest file's bytes: a chunk at a
/// time into one buffer; a read that fails keeps its error.
struct ReadSource<'r, R> {
    input: &'r mut R,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl<R: Read> qga::Source for ReadSource<'_, R> {
    fn chunk(&mut self, max: usize) -> Option<&[u8]> {
        self.buf.resize(max, 0);
        match read_full(self.input, &mut self.buf) {
            Ok(n) => self.buf.get(..n),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
