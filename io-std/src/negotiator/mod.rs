//! negotiator over std: the host and the guest sides of the channel.
//!
//! On the host, each channel of a guest is a UNIX socket of QEMU's chardev
//! (found with `virsh`, or given); in the guest, it is a character device
//! `/dev/vport*` (found through `/sys/class/virtio-ports/*/name`, or given).
//!
//! ```no_run
//! use vmwire_std::negotiator::{Commands, GuestAgent, GuestChannel, GUEST_TO_HOST_CHANNEL};
//!
//! // Host: call into a guest.
//! let mut guest = GuestChannel::connect("/var/lib/libvirt/qemu/channel/target/vm1.negotiator-host-to-guest.0")?;
//! println!("{:?}", guest.list_commands()?);
//! let output = guest.execute("reconfigure-network", &["eth0"], Some("address=10.0.0.2\n"))?;
//!
//! // Guest: call the host, or answer it.
//! let mut host = GuestAgent::open_channel(GUEST_TO_HOST_CHANNEL, Default::default())?;
//! let addresses = host.execute("find-ip-addresses", &[], None)?;
//! GuestAgent::open("/dev/vport0p1")?.serve(&Commands::default())?;
//! # Ok::<(), vmwire_std::negotiator::Error>(())
//! ```
//!
//! A responder here serves only `list_commands` and `execute`, and
//! `execute` runs only executables found by name in the [`Commands`]
//! directories, without a shell. The Python peer instead runs any public
//! method it is sent (including `raw_write`, which writes raw bytes to the
//! channel) and passes a single command to `bash -c`.

mod commands;
mod daemon;
mod discovery;

use std::fmt;
use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::json::Value;
use vmwire_proto::negotiator::{self as proto, Caller, CallerEvent, Request, Responder, ResponderEvent};
use vmwire_proto::op::{self, Idle, Offer, Operation};

use crate::text::escape;
use crate::transport::{Conn, DriveError, Stream, deadline, hung_up, nap, poll_until};

pub use commands::{CommandError, Commands, USER_COMMANDS_DIRECTORY};
pub use daemon::{DaemonHandle, HostDaemon};
pub use discovery::{
    VIRTIO_PORTS, channels_in_domain_xml, find_channels_of_guest, find_character_device, find_character_device_in,
    find_running_guests, find_supported_guests,
};
pub use vmwire_proto::negotiator::{Config, GUEST_TO_HOST_CHANNEL, HOST_TO_GUEST_CHANNEL};

/// The time limit for a call when none is given, as the original's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a channel.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time limit for each call, and for writing a response to a peer that
    /// does not read; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Limits on frames.
    pub config: Config,
}

impl Default for Options {
    /// [`DEFAULT_TIMEOUT`], default limits.
    fn default() -> Self {
        Options { timeout: Some(DEFAULT_TIMEOUT), config: Config::default() }
    }
}

/// Everything that can go wrong, with "the other side's method failed"
/// ([`Error::Remote`]) kept apart from I/O, timeouts and protocol errors.
#[derive(Debug)]
pub enum Error {
    /// The remote method failed; its error text (`RemoteMethodFailed`).
    Remote(String),
    /// The socket or device failed.
    Io(io::Error),
    /// No response within the time limit. The call is forgotten: a late
    /// response is dropped, not mistaken for the next call's.
    Timeout,
    /// The other side closed the channel.
    Closed,
    /// The other side broke the protocol (or the channel was used wrongly).
    Protocol(proto::Error),
    /// The result did not decode into the requested type, or the arguments
    /// did not encode.
    Json(serde_json::Error),
    /// A guest, channel or device could not be found.
    Discovery(String),
    /// Nobody was connected to the other end of the channel within the time
    /// limit, so the call was not even sent: a virtio-serial port in a guest
    /// whose host side is not open (no host daemon).
    NotConnected {
        /// What the channel is (its [`Channel::label`]).
        channel: String,
        /// How long the call waited.
        waited: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(e) => write!(f, "remote method failed: {}", escape(e)),
            Error::Io(e) => write!(f, "negotiator I/O error: {e}"),
            Error::Timeout => f.write_str("negotiator: timed out waiting for a response"),
            Error::Closed => f.write_str("negotiator: the channel was closed"),
            Error::Protocol(e) => e.fmt(f),
            Error::Json(e) => write!(f, "negotiator: JSON: {e}"),
            Error::Discovery(e) => write!(f, "negotiator: {e}"),
            Error::NotConnected { channel, waited } => {
                write!(f, "negotiator: no host connected to {channel} within {}s", waited.as_secs_f64())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

crate::transport::client_error!(Error, proto::Error, Error::Protocol);

/// Opens `path`: a UNIX socket is connected to (within `timeout`, as a
/// busy QEMU chardev's queue can be full), anything else (a character
/// device) opened read-write.
fn open_path(path: &Path, timeout: Option<Duration>) -> io::Result<Stream> {
    if std::fs::metadata(path).map_err(|e| crate::transport::at(path, e))?.file_type().is_socket() {
        Stream::connect_unix_timeout(path, timeout)
    } else {
        Stream::open_device(path)
    }
}

/// The calling end of a channel: `call_remote_method`, one call at a time,
/// each with a time limit.
#[derive(Debug)]
pub struct Channel {
    conn: Conn<Caller<Heap>>,
    label: String,
    options: Options,
}

impl Channel {
    /// A channel over `stream`; `label` names it in messages.
    pub fn new(stream: Stream, label: impl Into<String>, options: Options) -> Self {
        let machine = Caller::new(options.config);
        Channel { conn: Conn::new(stream, machine), label: label.into(), options }
    }

    /// Connects to a UNIX socket (QEMU's end of a channel, on the host).
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        let stream = Stream::connect_unix_timeout(path, options.timeout).map_err(Error::Io)?;
        Ok(Channel::new(stream, format!("UNIX socket {}", path.display()), options))
    }

    /// What the channel is connected to.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sets the time limit for each call (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.options.timeout = timeout;
    }

    /// Calls `method` with `args` (anything that serialises to a JSON array,
    /// or `()` for none) and `kw` (to a JSON object, or `()`), and decodes
    /// its result into `T`.
    pub fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        args: impl Serialize,
        kw: impl Serialize,
    ) -> Result<T, Error> {
        let call = Call::new(self.ready()?, method, args, kw)?;
        self.response(call)
    }

    /// Calls `method` with arguments given as JSON text (an array and an
    /// object) and returns the result's JSON text.
    pub fn call_raw(&mut self, method: &str, args: &str, kw: &str) -> Result<String, Error> {
        let call = Call::raw(self.ready()?, method, args, kw)?;
        self.response(call)
    }

    /// The commands the other side offers.
    pub fn list_commands(&mut self) -> Result<Vec<String>, Error> {
        let call = Call::list_commands(self.ready()?)?;
        self.response(call)
    }

    /// Runs `command` with `args` on the other side, `input` on its standard
    /// input, and returns its output (one line: trimmed, as the original does).
    pub fn execute(&mut self, command: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
        let call = Call::execute(self.ready()?, command, args, input)?;
        self.response(call)
    }

    /// The machine, if the channel is still open, for a new call.
    fn ready(&mut self) -> Result<&mut Caller<Heap>, Error> {
        self.drop_unasked()?;
        still_open(self.conn.machine())?;
        Ok(self.conn.machine_mut())
    }

    /// Reads and drops what is there before a call is made: without request
    /// ids, nothing that came before a request can be its response (it is
    /// the response to a call whose caller gave up, say). A hung-up stream is
    /// left alone: a virtio-serial port reads as ended while it has no host.
    fn drop_unasked(&mut self) -> Result<(), Error> {
        let now = Some(Instant::now());
        // Bounded: a peer that never stops sending cannot hold the call back.
        for _ in 0..64 {
            let fd = self.conn.stream().as_fd();
            if self.conn.at_eof() || hung_up(fd)? || !crate::transport::wait_ready(fd, PollFlags::IN, now)? {
                break;
            }
            match self.conn.fill(now) {
                Ok(()) | Err(DriveError::Timeout | DriveError::Closed) => {}
                Err(e) => return Err(e.into()),
            }
            // No call in progress: every event is noted and dropped.
            op::drive(self.conn.machine_mut(), &mut Idle, &mut Unasked(&self.label))?;
        }
        Ok(())
    }

    /// Sends the call and waits for its response within the time limit.
    fn response<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        let deadline = deadline(self.options.timeout);
        let mut response = call.response();
        let outcome = self.conn.wait(&mut response, &mut Unasked(&self.label), deadline);
        // Looked at before the call is expired, which withdraws a request never sent.
        let unsent = !self.conn.machine().transmit().is_empty();
        if outcome.as_ref().is_err_and(DriveError::expires) {
            response.expire(self.conn.machine_mut());
        }
        call_ended(outcome, unsent, || caller_gone(&self.conn), &self.label, self.options.timeout)
    }

    /// Closes the channel; later calls fail with [`Error::Closed`].
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// Answers the other side's calls on this channel until it closes (for
    /// a character device: forever, waiting for the host whenever it is not
    /// connected). `env` goes into every command's environment.
    fn serve(self, commands: &Commands, env: &[(&str, &str)]) -> Result<(), Error> {
        let (stream, _) = self.conn.into_parts();
        serve_stream(stream, &self.label, commands, env, &self.options)
    }
}

/// A call queued on a [`Caller`], and how its result is read: what a
/// [`Channel`] does before and after waiting for the response (and what
/// the async channel of `vmwire-smol` does).
#[derive(Debug)]
pub struct Call<T> {
    read: fn(Value<'_>) -> Result<T, Error>,
}

impl<T: DeserializeOwned> Call<T> {
    /// Queues a call of `method` with `args` (anything that serialises to
    /// a JSON array, or `()` for none) and `kw` (to a JSON object, or `()`);
    /// its result decodes into `T`.
    pub fn new(
        machine: &mut Caller<Heap>,
        method: &str,
        args: impl Serialize,
        kw: impl Serialize,
    ) -> Result<Self, Error> {
        let args = serde_json::to_vec(&args).map_err(Error::Json)?;
        let kw = serde_json::to_vec(&kw).map_err(Error::Json)?;
        let args =
            if args == b"null" { Value::parse(b"[]") } else { Value::parse(&args) }.map_err(proto::Error::from)?;
        let kw = if kw == b"null" { Value::parse(b"{}") } else { Value::parse(&kw) }.map_err(proto::Error::from)?;
        machine.call(method, args, kw)?;
        Ok(Call { read: |v| v.deserialize().map_err(Error::Json) })
    }
}

impl Call<String> {
    /// Queues a call of `method` with arguments given as JSON text (an
    /// array and an object); its result is read as JSON text.
    pub fn raw(machine: &mut Caller<Heap>, method: &str, args: &str, kw: &str) -> Result<Self, Error> {
        let args = Value::parse(args.as_bytes()).map_err(proto::Error::from)?;
        let kw = Value::parse(kw.as_bytes()).map_err(proto::Error::from)?;
        machine.call(method, args, kw)?;
        Ok(Call { read: |v| Ok(v.raw_str().to_owned()) })
    }

    /// Queues `execute(command, *args, input=input)`; its result is the
    /// command's output, a string.
    pub fn execute(
        machine: &mut Caller<Heap>,
        command: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Self, Error> {
        machine.call_with(
            "execute",
            |a| {
                a.str(command)?;
                args.iter().try_for_each(|arg| a.str(arg).map(drop))
            },
            |kw| input.map_or(Ok(()), |i| kw.str("input", i).map(drop)),
        )?;
        Ok(Call {
            read: |v| {
                v.as_str().map(|s| s.to_string()).ok_or(Error::Protocol(proto::Error::BadMessage {
                    what: "execute returned something other than a string",
                }))
            },
        })
    }
}

impl Call<Vec<String>> {
    /// Queues `list_commands()`; its result is the names.
    pub fn list_commands(machine: &mut Caller<Heap>) -> Result<Self, Error> {
        machine.call_with("list_commands", |_| Ok(()), |_| Ok(()))?;
        Ok(Call { read: |v| v.deserialize().map_err(Error::Json) })
    }
}

impl<T> Call<T> {
    /// The operation that waits for the call's response, and makes the
    /// call's value of it: its result read, or the remote method's error
    /// ([`Error::Remote`]), a bad response, the end of the channel.
    pub fn response(self) -> proto::Response<impl for<'a> FnOnce(proto::Answer<'a>) -> Result<T, Error>> {
        let read = self.read;
        proto::Response::new(move |answer: proto::Answer<'_>| match answer {
            proto::Answer::Result(value) => read(value),
            proto::Answer::Error(message) => Err(Error::Remote(message.to_string())),
            proto::Answer::Invalid(e) => Err(Error::Protocol(e)),
            proto::Answer::Closed => Err(Error::Closed),
        })
    }
}

/// What a call's wait came to (its response's value, or why driving
/// stopped), as a channel returns it, this crate's and vmwire-smol's.
/// `unsent`: whether the request was still queued when the wait ended;
/// `gone`: whether the stream polls hung up. A time-out with the request
/// never sent on a stream whose other end is not there (a virtio-serial
/// port without its host) is [`Error::NotConnected`], naming the channel
/// `label` and the time waited, `timeout`.
pub fn call_ended<T>(
    outcome: Result<Result<T, Error>, DriveError<proto::Error>>,
    unsent: bool,
    gone: impl FnOnce() -> bool,
    label: &str,
    timeout: Option<Duration>,
) -> Result<T, Error> {
    match outcome {
        Err(DriveError::Timeout) if unsent && gone() => {
            Err(Error::NotConnected { channel: label.to_owned(), waited: timeout.unwrap_or_default() })
        }
        other => other?,
    }
}

/// Whether `machine` takes a new call: once its session is over,
/// [`Error::Closed`], or the bad frame that ended it (a peer that is not
/// negotiator's names itself so, not as a closed channel).
pub fn still_open(machine: &Caller<Heap>) -> Result<(), Error> {
    match (machine.state(), machine.broken_by()) {
        (proto::State::Closed, Some(e)) => Err(Error::Protocol(e)),
        (proto::State::Closed, None) => Err(Error::Closed),
        _ => Ok(()),
    }
}

/// The inbox of a channel's calls: logs (and drops) a caller's event that
/// is no call's outcome (a late response, a frame nobody asked for, a bad
/// frame), naming the channel.
#[derive(Debug, Clone, Copy)]
pub struct Unasked<'l>(pub &'l str);

impl op::Inbox<Caller<Heap>> for Unasked<'_> {
    fn keep(&mut self, event: CallerEvent<'_>) {
        let label = self.0;
        match event {
            CallerEvent::Stale(reply) => {
                log::debug!("{label}: late response dropped: {}", escape(&format!("{reply:?}")))
            }
            CallerEvent::Unsolicited(v) => log::warn!("{label}: unsolicited frame dropped: {}", escape(v.raw_str())),
            CallerEvent::Malformed(e) => log::warn!("{label}: {e}"),
            _ => {}
        }
    }
}

/// What a request asks for, owned, so that the machine is free to answer
/// it while the job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `list_commands()`.
    List,
    /// `execute(*argv, input=input)`.
    Execute {
        /// The command's name, then its arguments.
        argv: Vec<String>,
        /// Its standard input.
        input: Option<String>,
    },
    /// A request refused before anything ran (bad arguments): answer it
    /// with [`Answer::Failed`] and this message.
    Refused(String),
}

impl Job {
    /// What `request` asks for (refused when its arguments are not what
    /// the method takes).
    pub fn of(request: &Request<'_>) -> Job {
        match request.method {
            "list_commands" => match (request.args().next(), request.kw().next()) {
                (None, None) => Job::List,
                _ => Job::Refused("list_commands() takes no arguments".into()),
            },
            "execute" => {
                let mut argv = Vec::new();
                for (i, arg) in request.args().enumerate() {
                    match arg.as_str() {
                        Some(s) => argv.push(s.to_string()),
                        None => return Job::Refused(CommandError::BadArgument(i).to_string()),
                    }
                }
                let mut input = None;
                for (key, value) in request.kw() {
                    if key == "input" {
                        input = match (value.as_str(), value.is_null()) {
                            (Some(s), _) => Some(s.to_string()),
                            (None, true) => None,
                            (None, false) => return Job::Refused("execute() input must be a string or null".into()),
                        };
                    } else if key != "capture" {
                        // `capture` is what the original command-line tools send; it changes nothing.
                        return Job::Refused(CommandError::UnexpectedKeyword(key.to_string()).to_string());
                    }
                }
                Job::Execute { argv, input }
            }
            other => Job::Refused(format!("Method {other} not supported")),
        }
    }
}

/// Answers calls on `stream` until it closes; a character device whose
/// host goes away is waited on until it comes back.
///
/// A response goes only to the caller that asked: when the stream hangs up
/// while a command runs (the caller gave up and left, even if another
/// caller has connected since), or before the response is written, the
/// response is dropped and a new session begins. On a virtio-serial port
/// the host side's leaving shows as `POLLHUP` in the guest; what it sent
/// and that was not read yet is dropped too, as long as no host is connected.
fn serve_stream(
    mut stream: Stream,
    label: &str,
    commands: &Commands,
    env: &[(&str, &str)],
    options: &Options,
) -> Result<(), Error> {
    let device = matches!(stream, Stream::Device(_));
    loop {
        let early = if device { wait_for_host(&mut stream, label)? } else { Vec::new() };
        let mut conn = Conn::new(stream, Responder::<Heap>::new(options.config));
        conn.machine_mut().receive(&early)?;
        let outcome = serve_session(&mut conn, label, commands, env, options);
        // The session's machine goes with it: a request half read, a response not sent.
        stream = conn.into_parts().0;
        if !(device && host_left(&outcome)) {
            return outcome;
        }
    }
}

/// Waits (looking again every [`RECHECK_HUNG_UP`](crate::transport::RECHECK_HUNG_UP)) until a host is connected
/// to the virtio-serial port `stream`, and returns the bytes it sent that
/// were read meanwhile; which of them are kept is [`HostWait`]'s decision.
fn wait_for_host(stream: &mut Stream, label: &str) -> Result<Vec<u8>, Error> {
    // Reads must not block: a host may connect between a look and a read.
    rustix::io::ioctl_fionbio(&*stream, true).map_err(io::Error::from)?;
    let mut wait = HostWait::new(label);
    let mut scrap = [0u8; 4096];
    while wait.looked(hung_up(stream.as_fd())?) {
        loop {
            match stream.read(&mut scrap) {
                Ok(0) => break,
                Ok(n) => wait.read(&scrap[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        nap(None);
        wait.rechecked(hung_up(stream.as_fd())?);
    }
    Ok(wait.connected())
}

/// Whether a session on a stream whose host comes and goes (a
/// virtio-serial port) ended the way its host's leaving ends it: the
/// session over (`Ok`), or its response not written in time or at all
/// (the host left while it was being written). The port is then waited on
/// for the next host ([`HostWait`]); any other end ends serving it.
pub fn host_left(outcome: &Result<(), Error>) -> bool {
    matches!(outcome, Ok(()) | Err(Error::Timeout | Error::Closed))
}

/// A guest's wait for its host on a virtio-serial port, between sessions:
/// what becomes of the bytes the port holds meanwhile. The adapter does
/// the I/O around it (this crate's responder, and vmwire-smol's):
///
/// 1. looks whether the port polls hung up, and tells [`HostWait::looked`]
///    (false: a host is connected, go to 4);
/// 2. reads what the port holds, without waiting, into [`HostWait::read`];
/// 3. waits [`RECHECK_HUNG_UP`](crate::transport::RECHECK_HUNG_UP), looks
///    again, tells [`HostWait::rechecked`], and goes back to 1;
/// 4. serves the host, starting with [`HostWait::connected`]'s bytes.
///
/// Bytes are a departed host's, and dropped (its caller is not there to
/// get a response), only if the port still polls hung up a whole recheck
/// after they were read. A port that stopped polling hung up meanwhile has
/// a new host, whose first bytes can be seen before its coming is (QEMU's
/// data and control queues are separate): they are kept.
///
/// ```
/// use vmwire_std::negotiator::HostWait;
/// let mut wait = HostWait::new("port");
/// assert!(wait.looked(true));         // no host
/// wait.read(b"old");                  // a departed host's leftovers...
/// wait.rechecked(true);               // ...for the port is still hung up: dropped
/// assert!(wait.looked(true));
/// wait.read(b"{\"new");              // read while the port polled hung up...
/// wait.rechecked(false);              // ...but a host came meanwhile: kept
/// assert!(!wait.looked(false));
/// assert_eq!(wait.connected(), b"{\"new");
/// ```
#[derive(Debug)]
pub struct HostWait<'l> {
    label: &'l str,
    held: Vec<u8>,
    dropped: usize,
    waiting: bool,
}

impl<'l> HostWait<'l> {
    /// A wait on the port named `label` (in the log).
    pub fn new(label: &'l str) -> Self {
        HostWait { label, held: Vec::new(), dropped: 0, waiting: false }
    }

    /// The port polled `hung_up` (or not) at a look; whether to go on
    /// waiting (read what it holds, then recheck). The first look that
    /// finds no host is logged.
    pub fn looked(&mut self, hung_up: bool) -> bool {
        if hung_up && !std::mem::replace(&mut self.waiting, true) {
            log::debug!("{}: the host is not connected; waiting", self.label);
        }
        hung_up
    }

    /// Bytes read from the port while it polled hung up: held until the
    /// recheck says whose they are.
    pub fn read(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// The port polled `hung_up` (or not) a recheck after the bytes held
    /// were read: still hung up, they were a departed host's, and are
    /// dropped; else they are a new host's, and kept.
    pub fn rechecked(&mut self, hung_up: bool) {
        if hung_up {
            self.dropped += self.held.len();
            self.held.clear();
        }
    }

    /// A host is connected: the bytes it sent that were read meanwhile
    /// (what was dropped is logged).
    pub fn connected(self) -> Vec<u8> {
        if self.dropped > 0 {
            log::info!("{}: dropped {} bytes sent by a host that has gone", self.label, self.dropped);
        }
        self.held
    }
}

/// Whether the other side of `conn` has gone (or, on a virtio-serial port,
/// is not connected): the caller of any request answered now is not there.
fn caller_gone<M: Machine>(conn: &Conn<M>) -> bool {
    hung_up(conn.stream().as_fd()).unwrap_or(false)
}

/// One session: requests answered in turn until the stream ends, or until
/// the caller leaves (its response then dropped).
fn serve_session(
    conn: &mut Conn<Responder<Heap>>,
    label: &str,
    commands: &Commands,
    env: &[(&str, &str)],
    options: &Options,
) -> Result<(), Error> {
    let device = matches!(conn.stream(), Stream::Device(_));
    let mut serving = Serving::new(label);
    loop {
        while let Some(turn) = op::drive(conn.machine_mut(), &mut serving, &mut |_: ResponderEvent<'_>| {})? {
            let job = match turn {
                Turn::Job(job) => job,
                Turn::End(outcome) => {
                    if !caller_gone(conn) {
                        let _ = conn.flush(deadline(options.timeout));
                    }
                    return outcome;
                }
            };
            let (answer, stayed) = watch_caller(conn.stream().as_fd(), || job.run(label, commands, env));
            if !stayed {
                log::info!("{label}: the caller left before its response; dropped");
                return Ok(());
            }
            answer.respond(conn.machine_mut())?;
        }
        if !conn.machine().transmit().is_empty() && caller_gone(conn) {
            log::info!("{label}: the caller left before its response; dropped");
            return Ok(());
        }
        conn.flush(deadline(options.timeout))?;
        // A port that polls hung up has no host: what it holds is not a caller's
        // that could get a response (it reads as ended once emptied).
        if device && poll_until(conn.stream().as_fd(), PollFlags::IN, None)?.contains(PollFlags::HUP) {
            return Ok(());
        }
        match conn.fill(None) {
            Ok(()) | Err(DriveError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `work` while watching `fd` for the caller's leaving. Returns what
/// `work` returned, and whether the caller stayed throughout: a stream that
/// hung up at any moment meanwhile means the caller that asked has gone,
/// even if another one has connected since (`POLLHUP` is a level: only
/// watching all along catches a leaving followed by a coming).
fn watch_caller<T: Send>(fd: BorrowedFd<'_>, work: impl FnOnce() -> T + Send) -> (T, bool) {
    let Ok((done, finished)) = std::os::unix::net::UnixStream::pair() else {
        // No socket pair to wake on: only the level after the fact can be seen.
        let out = work();
        return (out, !hung_up(fd).unwrap_or(false));
    };
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let out = work();
            drop(done);
            out
        });
        let mut stayed = true;
        loop {
            // With no events asked for, poll(2) waits for POLLHUP (or POLLERR) alone.
            let mut fds = [PollFd::new(&finished, PollFlags::IN), PollFd::from_borrowed_fd(fd, PollFlags::empty())];
            let watched = if stayed { &mut fds[..] } else { &mut fds[..1] };
            match rustix::event::poll(watched, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // Cannot watch: wait for the work alone.
                Err(_) => break,
            }
            if !fds[0].revents().is_empty() {
                break;
            }
            if !fds[1].revents().is_empty() {
                stayed = false;
            }
        }
        match worker.join() {
            Ok(out) => (out, stayed),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What a responder's session comes to next ([`Serving`]).
#[derive(Debug)]
pub enum Turn {
    /// A request to answer: do the job, then queue its [`Answer`].
    Job(Job),
    /// The session is over: the stream ended, or its framing was lost
    /// (the caller's fault: [`Error::Protocol`]).
    End(Result<(), Error>),
}

/// The responder's side of a session, as an operation: each run finishes
/// with the next request to answer, or the session's end. What the machine
/// answers itself (methods not offered, bad requests) is logged, naming
/// the channel, and the run goes on.
#[derive(Debug)]
pub struct Serving<'l> {
    label: &'l str,
    /// The framing error that will end the session.
    broken: Option<proto::Error>,
}

impl<'l> Serving<'l> {
    /// A session on the channel named `label`.
    pub fn new(label: &'l str) -> Self {
        Serving { label, broken: None }
    }
}

impl Operation<Responder<Heap>> for Serving<'_> {
    type Output = Turn;

    fn offer<'a>(&mut self, event: ResponderEvent<'a>) -> Offer<ResponderEvent<'a>, Turn>
    where
        Heap: 'a,
    {
        let label = self.label;
        match event {
            ResponderEvent::Request(request) => return Offer::Done(Turn::Job(Job::of(&request))),
            ResponderEvent::Unsupported(method) => {
                log::warn!("{label}: refused to call method {}", escape(&method.to_cow()))
            }
            ResponderEvent::Malformed(e) => {
                log::warn!("{label}: {e}");
                if e.breaks_framing() {
                    self.broken = Some(e);
                }
            }
            ResponderEvent::Closed => {
                return Offer::Done(Turn::End(self.broken.take().map_or(Ok(()), |e| Err(Error::Protocol(e)))));
            }
        }
        Offer::Taken
    }

    /// Nothing to expire: a session stopped halfway is dropped with its machine.
    fn request(&self) -> Option<&()> {
        None
    }
}

/// What a job came to, owned, so that it can be made while the machine waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `list_commands()`'s names.
    Commands(Vec<String>),
    /// The command's output.
    Output(String),
    /// Why the job failed: the error text the caller gets.
    Failed(String),
}

impl Job {
    /// Does what the job asks with `commands` (blocking while a command
    /// runs), logging it under `label`; `env` goes into the command's
    /// environment.
    pub fn run(self, label: &str, commands: &Commands, env: &[(&str, &str)]) -> Answer {
        match self {
            Job::List => {
                log::info!("{label}: list_commands()");
                Answer::Commands(commands.list())
            }
            Job::Execute { argv, input } => {
                log::info!("{label}: execute({argv:?})");
                match commands.execute(&argv, input.as_deref(), env) {
                    Ok(output) => Answer::Output(output),
                    Err(e) => {
                        log::warn!("{label}: {}", escape(&e.to_string()));
                        Answer::Failed(e.to_string())
                    }
                }
            }
            Job::Refused(message) => {
                log::warn!("{label}: {}", escape(&message));
                Answer::Failed(message)
            }
        }
    }
}

impl Answer {
    /// Queues the response to the request in progress (one too large to
    /// send is an error response saying so).
    pub fn respond(self, machine: &mut Responder<Heap>) -> Result<(), Error> {
        let answered = match &self {
            Answer::Commands(names) => machine.respond_array(|a| names.iter().try_for_each(|n| a.str(n).map(drop))),
            Answer::Output(output) => machine.respond_str(output),
            Answer::Failed(message) => machine.respond_error(message),
        };
        match answered {
            // Too large to send once escaped: say so instead.
            Err(proto::Error::TransmitFull(full)) => {
                machine.respond_error(&format!("the result is larger than the limit of {} bytes", full.limit))?
            }
            other => other?,
        }
        Ok(())
    }
}

/// The host's side of a guest's channel: calls into the guest on
/// [`HOST_TO_GUEST_CHANNEL`], or answers it on [`GUEST_TO_HOST_CHANNEL`].
#[derive(Debug)]
pub struct GuestChannel {
    channel: Channel,
    guest_name: Option<String>,
}

impl GuestChannel {
    /// The host's side over `channel` (a connection made some other way);
    /// `guest_name` as for [`GuestChannel::connect_with`].
    pub fn new(channel: Channel, guest_name: Option<&str>) -> Self {
        GuestChannel { channel, guest_name: guest_name.map(str::to_owned) }
    }

    /// Connects to a channel's UNIX socket, with default options.
    pub fn connect(socket_path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with(socket_path, None, Options::default())
    }

    /// Connects to a channel's UNIX socket; `guest_name` is the guest's name
    /// when known (commands then see it in `$NEGOTIATOR_GUEST`).
    pub fn connect_with(
        socket_path: impl AsRef<Path>,
        guest_name: Option<&str>,
        options: Options,
    ) -> Result<Self, Error> {
        Ok(GuestChannel::new(Channel::connect_unix(socket_path, options)?, guest_name))
    }

    /// Connects to guest `guest_name`'s [`HOST_TO_GUEST_CHANNEL`], found with `virsh`.
    pub fn connect_guest(guest_name: &str, options: Options) -> Result<Self, Error> {
        let channels = find_channels_of_guest(guest_name)?;
        let path = channels
            .get(HOST_TO_GUEST_CHANNEL)
            .ok_or_else(|| Error::Discovery(format!("guest {guest_name:?} has no {HOST_TO_GUEST_CHANNEL} channel")))?;
        Self::connect_with(path, Some(guest_name), options)
    }

    /// The guest's name, when known.
    pub fn guest_name(&self) -> Option<&str> {
        self.guest_name.as_deref()
    }

    /// Answers the guest's calls (this should be its [`GUEST_TO_HOST_CHANNEL`])
    /// until it closes, with `$NEGOTIATOR_GUEST` set to the guest's name.
    pub fn serve(self, commands: &Commands) -> Result<(), Error> {
        let env = self.guest_name.as_deref().map(|name| ("NEGOTIATOR_GUEST", name));
        self.channel.serve(commands, env.as_slice())
    }
}

impl Deref for GuestChannel {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.channel
    }
}

impl DerefMut for GuestChannel {
    fn deref_mut(&mut self) -> &mut Channel {
        &mut self.channel
    }
}

/// The guest's side: calls the host on [`GUEST_TO_HOST_CHANNEL`], or answers
/// it on [`HOST_TO_GUEST_CHANNEL`] (the guest daemon).
#[derive(Debug)]
pub struct GuestAgent {
    channel: Channel,
}

impl GuestAgent {
    /// The guest's side over `channel` (a connection made some other way).
    pub fn new(channel: Channel) -> Self {
        GuestAgent { channel }
    }

    /// Opens a channel's character device (or, for tests and for the host,
    /// a UNIX socket), with default options.
    pub fn open(device_or_socket: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(device_or_socket, Options::default())
    }

    /// [`GuestAgent::open`] with options. A device another process holds
    /// (`EBUSY`) is tried again until the time limit.
    pub fn open_with(device_or_socket: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = device_or_socket.as_ref();
        let deadline = deadline(options.timeout);
        let stream = loop {
            match open_path(path, options.timeout) {
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Error::Io(e));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::Io(e)),
                Ok(stream) => break stream,
            }
        };
        let label = match stream {
            Stream::Device(_) => format!("character device {}", path.display()),
            _ => format!("UNIX socket {}", path.display()),
        };
        Ok(GuestAgent { channel: Channel::new(stream, label, options) })
    }

    /// Opens the character device of the virtio-serial port `channel_name`,
    /// found through [`VIRTIO_PORTS`].
    pub fn open_channel(channel_name: &str, options: Options) -> Result<Self, Error> {
        Self::open_with(find_character_device(channel_name)?, options)
    }

    /// Answers the host's calls: the guest daemon. On a character device it
    /// never returns unless the device fails: while the host is not
    /// connected it waits for it. On a socket it returns when the socket closes.
    pub fn serve(self, commands: &Commands) -> Result<(), Error> {
        self.channel.serve(commands, &[])
    }
}

impl Deref for GuestAgent {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.channel
    }
}

impl DerefMut for GuestAgent {
    fn deref_mut(&mut self) -> &mut Channel {
        &mut self.channel
    }
}

/// Serves one connected socket for the host daemon.
fn serve_guest(stream: Stream, guest_name: &str, commands: &Commands, options: &Options) -> Result<(), Error> {
    let label = format!("guest {guest_name}");
    serve_stream(stream, &label, commands, &[("NEGOTIATOR_GUEST", guest_name)], options)
}
