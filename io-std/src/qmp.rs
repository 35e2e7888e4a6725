//! A blocking QMP client.
//!
//! ```no_run
//! use vmwire_std::qmp::{Options, Qmp};
//!
//! #[derive(serde::Deserialize)]
//! struct Status { status: String, running: bool }
//!
//! let mut qmp = Qmp::connect_unix("/run/vm/qmp.sock", Options::default())?;
//! println!("QEMU {:?}", qmp.greeting().version);
//! let status: Status = qmp.execute("query-status", ())?;
//! qmp.execute::<serde_json::Value>("cont", ())?;
//! while let Some(event) = qmp.next_event(Some(std::time::Duration::from_secs(1)))? {
//!     println!("{} {}", event.name, event.data);
//! }
//! # Ok::<(), vmwire_std::qmp::Error>(())
//! ```

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::Heap;
use vmwire_proto::json::Value;
use vmwire_proto::op;
use vmwire_proto::qmp::{self, Client, Command, Config, Id, schema};

use crate::text::escape;
use crate::transport::{Conn, DriveError, Stream, With, deadline, wait_ready};

pub use vmwire_proto::qmp::Timestamp;

/// Settings for a [`Qmp`] client.
#[derive(Debug, Clone)]
pub struct Options {
    /// Default time limit for connecting and for each command (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// Negotiate out-of-band execution if QEMU offers it.
    pub oob: bool,
    /// Events kept while nobody reads them; past this the oldest are dropped
    /// and counted ([`Qmp::dropped_events`]).
    pub max_events: usize,
    /// Limits on what QEMU may send.
    pub config: Config,
    /// Fetch QEMU's schema (`query-qmp-schema`) when connecting, and check
    /// each command's arguments against it before sending: a command that
    /// does not match is [`Error::Refused`] and never reaches QEMU. Off by
    /// default; see also [`Qmp::set_schema`] and [`Qmp::set_check`].
    pub check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Some(Duration::from_secs(10)),
            oob: false,
            max_events: 1024,
            config: Config::default(),
            check: false,
        }
    }
}

/// A QAPI schema kept by a [`Qmp`] client: `query-qmp-schema`'s reply, owned.
pub type Schema = schema::HeapSchema<Vec<u8>>;

pub use vmwire_proto::qmp::owned::{Event, Greeting, QemuError, Stray};

/// Everything that can go wrong, with "QEMU said no" ([`Error::Qemu`]) kept
/// apart from I/O, timeouts and protocol errors.
#[derive(Debug)]
pub enum Error {
    /// QEMU answered the command with an error.
    Qemu(QemuError),
    /// The socket failed.
    Io(io::Error),
    /// No reply within the time limit (the command is forgotten: a late
    /// reply will not be mistaken for another's).
    Timeout,
    /// QEMU closed the connection (or was killed) before replying.
    Closed,
    /// QEMU broke the protocol, or the client was used wrongly.
    Protocol(qmp::Error),
    /// What arrived first was not a QMP greeting: the socket speaks
    /// another protocol (a human monitor's banner, say) or is not QEMU's.
    NotQmp {
        /// The start of what arrived (its first line, at most 64 characters).
        received: String,
        /// Whether more arrived than `received` shows.
        cut: bool,
        /// What was wrong with it.
        error: qmp::Error,
    },
    /// The socket took the connection, but no greeting came within the
    /// time limit. QEMU serves one QMP client at a time and greets the next
    /// only when the first has gone, so another client most likely holds
    /// this monitor.
    NoGreeting {
        /// How long the greeting was waited for.
        waited: Duration,
    },
    /// QEMU answered the command with a message that is not a valid reply
    /// (both `return` and `error`, an `error` without `desc`, …), or with
    /// one over the size limit, skipped unread.
    MalformedReply(qmp::Error),
    /// No reply came (time ran out, or the connection closed), and a message
    /// that could not be read was skipped meanwhile: most likely the reply
    /// itself (over the size limit, or not valid JSON).
    Skipped {
        /// What was wrong with the skipped message.
        error: qmp::Error,
        /// How the wait ended: [`Error::Timeout`] or [`Error::Closed`].
        then: Box<Error>,
    },
    /// The reply did not decode into the requested type, or the arguments
    /// did not encode.
    Json(serde_json::Error),
    /// The arguments do not match QEMU's schema: the command was not sent.
    /// The message names the command, the member and what was expected.
    Refused(String),
    /// QEMU's schema (`query-qmp-schema`, or a saved copy) could not be read.
    Schema(schema::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Qemu(e) => write!(f, "QEMU error: {e}"),
            Error::Io(e) => write!(f, "QMP I/O error: {e}"),
            Error::Timeout => f.write_str("QMP: timed out"),
            Error::Closed => f.write_str("QMP: connection closed"),
            Error::Protocol(e) => e.fmt(f),
            Error::NotQmp { received, cut, error } => {
                let why = match error {
                    qmp::Error::NotGreeting => String::new(),
                    e => format!(" ({})", unprefixed(e)),
                };
                if received.is_empty() {
                    // Nothing left to show: the framer skipped it (too large).
                    return write!(f, "QMP: expected a QMP greeting, got something else{why}");
                }
                let more = if *cut { "…" } else { "" };
                let (vnc, named) = vmwire_proto::hmp::VNC_GREETING;
                let what = if received.as_bytes().starts_with(vnc) { named } else { "" };
                let space = if what.is_empty() { "" } else { " " };
                write!(f, "QMP: expected a QMP greeting, got {what}{space}`{}{more}`{why}", escape(received))
            }
            Error::NoGreeting { waited } => write!(
                f,
                "QMP: no greeting within {:.1} s: QEMU serves one QMP client at a time, so another client \
                 most likely holds this socket (or it is not a QMP monitor: a guest agent's socket says \
                 nothing until asked)",
                waited.as_secs_f64()
            ),
            Error::MalformedReply(e) if e.kind() == vmwire_proto::ErrorKind::TooLarge => {
                write!(f, "QMP: the reply was skipped unread: {}", unprefixed(e))
            }
            Error::MalformedReply(e) => write!(f, "QMP: malformed reply: {}", unprefixed(e)),
            Error::Skipped { error, then } => {
                write!(f, "{then}; a message was skipped meanwhile, most likely the reply: {}", unprefixed(error))
            }
            Error::Json(e) => write!(f, "QMP: JSON: {e}"),
            Error::Refused(e) => write!(f, "not sent: {e}"),
            Error::Schema(e) => e.fmt(f),
        }
    }
}

/// A machine error in words, without the `QMP: ` that its `Display` starts with.
fn unprefixed(e: &qmp::Error) -> String {
    match e {
        qmp::Error::Json(e) => format!("{}, at byte {}", e.kind, e.offset),
        qmp::Error::BadMessage { what } => (*what).to_string(),
        e => e.to_string().trim_start_matches("QMP: ").to_string(),
    }
}

/// The start of what a peer sent instead of a greeting, for a message: its
/// first line, at most 64 characters (and whether that cut anything off).
fn excerpt(received: &[u8]) -> (String, bool) {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(received);
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    let shown: String = line.chars().take(MAX).collect();
    let cut = shown.len() < text.trim_end().len();
    (shown, cut)
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Json(e) => Some(e),
            Error::Schema(e) => Some(e),
            _ => None,
        }
    }
}

crate::transport::client_error!(Error, qmp::Error, Error::Protocol);

/// The opening negotiation as the clients run it: the greeting kept in
/// `greeting`, the end as the client's result.
pub fn negotiation(
    greeting: &mut Option<Greeting>,
) -> impl op::Operation<Client<Heap>, Output = Result<(), Error>> + '_ {
    qmp::Negotiation::new(
        |g: &qmp::Greeting<'_>| *greeting = Some(Greeting::from(g)),
        |end: qmp::Negotiated<'_>| match end {
            qmp::Negotiated::Ready { .. } => Ok(()),
            qmp::Negotiated::Refused(e) => Err(Error::Qemu(e.into())),
            qmp::Negotiated::NotGreeting { received, error } => {
                let (received, cut) = excerpt(received);
                Err(Error::NotQmp { received, cut, error })
            }
            qmp::Negotiated::Closed => Err(Error::Closed),
        },
    )
}

/// How running [`negotiation`] ended, as the client's result: time running
/// out before any greeting is [`Error::NoGreeting`]; a wait that ended
/// without an answer says what was skipped meanwhile.
pub fn opened(
    outcome: Result<Result<(), Error>, DriveError<qmp::Error>>,
    machine: &Client<Heap>,
    options: &Options,
    inbox: &mut Inbox,
) -> Result<(), Error> {
    let outcome = match outcome {
        Err(DriveError::Timeout) if machine.state() == qmp::State::AwaitingGreeting => {
            return Err(Error::NoGreeting { waited: options.timeout.unwrap_or_default() });
        }
        outcome => outcome.map_err(Error::from).and_then(|negotiated| negotiated),
    };
    outcome.map_err(|e| inbox.explain(e))
}

/// A blocking QMP connection, negotiated and ready for commands.
#[derive(Debug)]
pub struct Qmp {
    conn: Conn<Client<Heap>>,
    greeting: Greeting,
    inbox: Inbox,
    timeout: Option<Duration>,
    checking: Checking,
}

/// The schema a client checks commands against, and whether it does
/// (shared by the blocking and the async clients).
#[derive(Debug, Default)]
pub struct Checking {
    /// The schema kept, if any.
    pub schema: Option<Schema>,
    /// Whether commands are checked before they are sent.
    pub on: bool,
}

impl Checking {
    /// Checks a command against the kept schema when checking is on;
    /// warnings (`deprecated`, `unstable`) go to the log.
    pub fn check(&self, name: &str, args: Option<Value<'_>>) -> Result<(), Error> {
        match (&self.schema, self.on) {
            (Some(schema), true) => {
                for warning in check(schema, name, args)? {
                    log::warn!("QMP: {}", crate::text::escape(&warning));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Checks, then queues on `machine`, command `name` with `args` (JSON
    /// text of an object, or `None`), out of band if `oob`; returns its id.
    pub fn send(&self, machine: &mut Client<Heap>, name: &str, args: Option<&[u8]>, oob: bool) -> Result<Id, Error> {
        if machine.state() == qmp::State::Closed {
            return Err(Error::Closed);
        }
        let command = command(name, args, oob)?;
        self.check(name, command.args())?;
        Ok(machine.send(command)?)
    }
}

/// Command `name` with `args` (JSON text of an object, or `None`), out of
/// band if `oob`: the text is checked to be JSON here.
pub fn command<'a>(name: &'a str, args: Option<&'a [u8]>, oob: bool) -> Result<Command<'a>, Error> {
    let mut command = Command::new(name);
    if let Some(args) = args {
        command = command.arguments(Value::parse(args).map_err(|e| Error::Protocol(e.into()))?);
    }
    if oob {
        command = command.oob();
    }
    Ok(command)
}

/// What arrives while no command waits for it (shared by the blocking and
/// the async clients).
#[derive(Debug)]
pub struct Inbox {
    /// Events nobody has read yet.
    pub events: op::Bounded<Event>,
    /// Messages that belonged to no command.
    pub strays: op::Bounded<Stray>,
    /// The last message skipped as unreadable (since [`Inbox::skipped`] was
    /// last taken), to say why a reply never came.
    pub skipped: Option<qmp::Error>,
    /// The session is over.
    pub closed: bool,
}

impl Inbox {
    /// An empty inbox keeping at most `max` events and `max` strays.
    pub fn new(max: usize) -> Self {
        Inbox { events: op::Bounded::new(max), strays: op::Bounded::new(max), skipped: None, closed: false }
    }

    /// A wait for a reply that ended without one (`Timeout`, `Closed`) says
    /// so with the message skipped meanwhile, if there was one.
    pub fn explain(&mut self, e: Error) -> Error {
        match (e, self.skipped.take()) {
            (then @ (Error::Timeout | Error::Closed), Some(error)) => Error::Skipped { error, then: Box::new(then) },
            (e, skipped) => {
                self.skipped = skipped;
                e
            }
        }
    }
}

impl Inbox {
    /// What waiting for the next event ([`Qmp::next_event`], and
    /// vmwire-smol's) finds before it waits: the oldest event kept
    /// (`Ok(Some)`), the session's end ([`Error::Closed`]), or nothing yet
    /// (`Ok(None)`: run [`next_event`] to wait for one).
    pub fn queued_event(&mut self) -> Result<Option<Event>, Error> {
        if let Some(event) = self.events.pop() {
            return Ok(Some(event));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(None)
    }

    /// What running [`next_event`] came to, as waiting for the next event
    /// returns it: an event, the time running out (`Ok(None)`), or an
    /// error; `None` when there is no event yet (a message that is none
    /// kept as a stray, or the session's end noted): look again
    /// ([`Inbox::queued_event`]).
    pub fn waited_event(
        &mut self,
        outcome: Result<Option<Result<Event, Stray>>, DriveError<qmp::Error>>,
    ) -> Option<Result<Option<Event>, Error>> {
        match outcome {
            Ok(Some(Ok(event))) => Some(Ok(Some(event))),
            Ok(Some(Err(stray))) => {
                self.strays.push(stray);
                None
            }
            Ok(None) => {
                self.closed = true;
                None
            }
            Err(DriveError::Timeout) => Some(Ok(None)),
            Err(e) => Some(Err(e.into())),
        }
    }
}

/// The operation that waits for QEMU's next event, owned (`Err`: one whose
/// data could not be decoded, a stray), or `None` when the session ends
/// first; see [`Inbox::waited_event`].
pub fn next_event() -> qmp::NextEvent<impl for<'a> FnOnce(Option<qmp::AsyncEvent<'a>>) -> Option<Result<Event, Stray>>>
{
    qmp::NextEvent::new(|e: Option<qmp::AsyncEvent<'_>>| e.map(Event::of))
}

/// Keeps whatever the machine reports that no operation took.
impl op::Inbox<Client<Heap>> for Inbox {
    fn keep(&mut self, event: qmp::Event<'_>) {
        match qmp::owned::Kept::of(event) {
            qmp::owned::Kept::Event(event) => self.events.push(event),
            qmp::owned::Kept::Stray(stray) => self.strays.push(stray),
            qmp::owned::Kept::Skipped(stray, error) => {
                self.skipped = Some(error);
                self.strays.push(stray);
            }
            qmp::owned::Kept::Closed => self.closed = true,
            qmp::owned::Kept::Nothing => {}
        }
    }
}

/// A command's arguments as JSON text, from anything that serialises to a
/// JSON object; `None` (no `arguments` member) for `()` or anything else
/// that serialises to `null`. Shared by the QMP and guest agent clients,
/// these and vmwire-smol's.
pub fn arguments(args: impl Serialize) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let args = serde_json::to_vec(&args)?;
    Ok((args != b"null").then_some(args))
}

/// `add-fd`'s arguments: the set to add to, if given, and its `opaque` text.
pub fn add_fd_arguments(fdset_id: Option<u64>, opaque: Option<&str>) -> serde_json::Value {
    let mut args = serde_json::Map::new();
    if let Some(set) = fdset_id {
        args.insert("fdset-id".into(), set.into());
    }
    if let Some(opaque) = opaque {
        args.insert("opaque".into(), opaque.into());
    }
    args.into()
}

/// How a command's answer becomes the caller's value: `on_return` makes it
/// of the return value.
pub fn answer<T>(
    on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
) -> impl for<'a> FnOnce(qmp::Answer<'a>) -> Result<T, Error> {
    move |answer: qmp::Answer<'_>| match answer {
        qmp::Answer::Return(value) => on_return(value),
        qmp::Answer::Error(error) => Err(Error::Qemu(error.into())),
        qmp::Answer::Malformed(error) => Err(Error::MalformedReply(error)),
        qmp::Answer::Closed => Err(Error::Closed),
    }
}

impl Qmp {
    /// Connects to QEMU's QMP UNIX socket and negotiates.
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::connect_unix_timeout(path, options.timeout)?, options)
    }

    /// Connects to QEMU's QMP TCP socket (`-qmp tcp:HOST:PORT,server=on`) and negotiates.
    pub fn connect_tcp(addr: impl std::net::ToSocketAddrs, options: Options) -> Result<Self, Error> {
        let timeout = options.timeout;
        Self::handshake(Stream::connect_tcp(addr, timeout)?, options)
    }

    /// Waits for QEMU to connect to `listener` (QEMU started with
    /// `-qmp unix:PATH,server=off`) and negotiates.
    pub fn accept(listener: &UnixListener, options: Options) -> Result<Self, Error> {
        use std::os::fd::AsFd;
        if !wait_ready(listener.as_fd(), rustix::event::PollFlags::IN, deadline(options.timeout))? {
            return Err(Error::Timeout);
        }
        let (stream, _) = listener.accept()?;
        Self::handshake(Stream::Unix(stream), options)
    }

    /// Reads the greeting from `stream` and negotiates capabilities.
    pub fn handshake(stream: Stream, options: Options) -> Result<Self, Error> {
        let config = Config { oob: options.oob, ..options.config };
        let mut conn = Conn::new(stream, Client::<Heap>::new(config));
        let mut inbox = Inbox::new(options.max_events);
        let mut greeting = None;
        let outcome = conn.run(&mut negotiation(&mut greeting), &mut inbox, deadline(options.timeout));
        opened(outcome, conn.machine(), &options, &mut inbox)?;
        let greeting = greeting.unwrap_or_default();
        let mut qmp = Qmp { conn, greeting, inbox, timeout: options.timeout, checking: Checking::default() };
        if options.check {
            qmp.fetch_schema()?;
            qmp.set_check(true);
        }
        Ok(qmp)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Whether out-of-band execution was negotiated.
    pub fn oob(&self) -> bool {
        self.conn.machine().oob()
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Runs `name` with `args` (anything that serialises to a JSON object,
    /// or `()` for none) and decodes its return value into `T`.
    pub fn execute<T: DeserializeOwned>(&mut self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let timeout = self.timeout;
        self.execute_timeout(name, args, timeout)
    }

    /// [`Qmp::execute`] with its own time limit.
    pub fn execute_timeout<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        let args = arguments(args).map_err(Error::Json)?;
        let id = self.send(name, args.as_deref(), false)?;
        self.wait(id, deadline(timeout), |v| v.deserialize().map_err(Error::Json), None)
    }

    /// Runs `name` with arguments given as JSON text (a JSON object, or
    /// `None`) and returns the return value's JSON text as QEMU sent it.
    pub fn execute_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        let id = self.send(name, args.map(str::as_bytes), false)?;
        let timeout = self.timeout;
        self.wait(id, deadline(timeout), |v| Ok(v.raw_str().to_owned()), None)
    }

    /// Like [`Qmp::execute_raw`], out of band (`exec-oob`): needs `oob` negotiated.
    pub fn execute_oob_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        let id = self.send(name, args.map(str::as_bytes), true)?;
        let timeout = self.timeout;
        self.wait(id, deadline(timeout), |v| Ok(v.raw_str().to_owned()), None)
    }

    /// Sends `command` as built (its own id if it has one, `exec-oob` if
    /// marked) without waiting; returns its id, for [`Qmp::reply_raw`].
    pub fn send_command(&mut self, command: Command<'_>) -> Result<Id, Error> {
        if self.conn.machine().state() == qmp::State::Closed {
            return Err(Error::Closed);
        }
        self.checking.check(command.name(), command.args())?;
        Ok(self.conn.machine_mut().send(command)?)
    }

    /// Waits up to `timeout` for the reply to `id` (sent by
    /// [`Qmp::send_command`]): its return value's JSON text as QEMU sent it,
    /// or `Ok(None)` when the time is up and the command is still pending
    /// (wait again, or [`Qmp::forget`] it).
    pub fn reply_raw(&mut self, id: &Id, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        let mut reply = qmp::ReplyTo::new(id.clone(), answer(|v| Ok(v.raw_str().to_owned())));
        match self.conn.wait(&mut reply, &mut self.inbox, deadline(timeout)) {
            Err(DriveError::Timeout) => Ok(None),
            other => other.map_err(Error::from).and_then(|reply| reply).map(Some),
        }
    }

    /// Gives up on command `id`: its reply, if it ever comes, is kept as a
    /// [`Stray::Stale`] and matched to nobody. Whether `id` was pending.
    pub fn forget(&mut self, id: &Id) -> bool {
        self.conn.machine_mut().forget(id)
    }

    /// Passes `fd` to QEMU under the name `fdname` (`getfd`, with the
    /// descriptor attached as `SCM_RIGHTS`). UNIX sockets only.
    pub fn send_fd(&mut self, fdname: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let args = arguments(serde_json::json!({ "fdname": fdname })).map_err(Error::Json)?;
        let id = self.send("getfd", args.as_deref(), false)?;
        let timeout = self.timeout;
        self.wait(id, deadline(timeout), |_| Ok(()), Some(fd))
    }

    /// Adds `fd` to a file descriptor set (`add-fd`, the descriptor attached
    /// as `SCM_RIGHTS`); returns QEMU's `{"fdset-id", "fd"}` reply.
    pub fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let args = arguments(add_fd_arguments(fdset_id, opaque)).map_err(Error::Json)?;
        let id = self.send("add-fd", args.as_deref(), false)?;
        let timeout = self.timeout;
        self.wait(id, deadline(timeout), |v| v.deserialize().map_err(Error::Json), Some(fd))
    }

    fn send(&mut self, name: &str, args: Option<&[u8]>, oob: bool) -> Result<Id, Error> {
        self.checking.send(self.conn.machine_mut(), name, args, oob)
    }

    /// Fetches QEMU's schema (`query-qmp-schema`) and keeps it, replacing
    /// any schema kept before.
    pub fn fetch_schema(&mut self) -> Result<&Schema, Error> {
        let text = self.execute_raw("query-qmp-schema", None)?;
        self.set_schema(Schema::read_heap(text.into_bytes()).map_err(Error::Schema)?);
        self.schema().ok_or(Error::Closed)
    }

    /// Keeps `schema` (a saved one, say) to check commands against.
    pub fn set_schema(&mut self, schema: Schema) {
        self.checking.schema = Some(schema);
    }

    /// The schema kept, if any.
    pub fn schema(&self) -> Option<&Schema> {
        self.checking.schema.as_ref()
    }

    /// Turns checking before sending on or off (it needs a schema:
    /// [`Qmp::fetch_schema`] or [`Qmp::set_schema`]).
    pub fn set_check(&mut self, on: bool) {
        self.checking.on = on;
    }

    /// Runs the command `id` until it is answered; `on_return` turns its
    /// return value into the result. `fd` is attached to the command's bytes.
    fn wait<T>(
        &mut self,
        id: Id,
        deadline: Option<Instant>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<T, Error> {
        self.inbox.skipped = None;
        let mut reply = qmp::ReplyTo::new(id, answer(on_return));
        let fds: &[BorrowedFd<'_>] = match &fd {
            Some(fd) => std::slice::from_ref(fd),
            None => &[],
        };
        let outcome = self.conn.run_with(With { fds, ..With::default() }, &mut reply, &mut self.inbox, deadline);
        outcome.map_err(Error::from).and_then(|reply| reply).map_err(|e| self.inbox.explain(e))
    }

    /// The next event: a queued one, or one read within `timeout` (`None`:
    /// wait forever). `Ok(None)` when the time is up.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, Error> {
        let deadline = deadline(timeout);
        loop {
            if let Some(event) = self.inbox.queued_event()? {
                return Ok(Some(event));
            }
            let outcome = self.conn.run(&mut next_event(), &mut self.inbox, deadline);
            if let Some(event) = self.inbox.waited_event(outcome) {
                return event;
            }
        }
    }

    /// Events as they come, until none arrives within `timeout` (`None`:
    /// until the connection closes).
    pub fn events(&mut self, timeout: Option<Duration>) -> impl Iterator<Item = Result<Event, Error>> + '_ {
        std::iter::from_fn(move || match self.next_event(timeout) {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) | Err(Error::Closed) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// How many events were dropped because nobody read them in time.
    pub fn dropped_events(&self) -> u64 {
        self.inbox.events.dropped()
    }

    /// Takes the messages that belonged to no waiting command.
    pub fn take_strays(&mut self) -> Vec<Stray> {
        self.inbox.strays.drain().collect()
    }

    /// Asks QEMU to exit (`quit`) over this connection, and closes it. The
    /// connection closing before the reply counts as done: QEMU may go first.
    pub fn quit(mut self) -> Result<(), Error> {
        let outcome = match self.execute_raw("quit", None) {
            Ok(_) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        self.close();
        outcome
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.close();
    }
}

/// Checks `name` with `args` against `schema`: the warnings (`deprecated`,
/// `unstable` members and values) if it passes, [`Error::Refused`] if not.
pub fn check(schema: &Schema, name: &str, args: Option<Value<'_>>) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    schema
        .view()
        .check_with(name, args, &mut |w| warnings.push(w.to_string()))
        .map_err(|e| Error::Refused(e.to_string()))?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmwire_proto::Machine;
    use vmwire_proto::op::Inbox as _;

    /// A late error reply is kept as JSON that parses back to what QEMU
    /// said, whatever its text holds (a `"` or a `\` in `desc`).
    #[test]
    fn a_late_error_reply_is_kept_as_valid_json() {
        let mut machine = Client::<Heap>::new(Config::default());
        machine
            .receive(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n{\"return\": {}, \"id\": 0}\r\n")
            .unwrap();
        while machine.poll().unwrap().is_some() {}
        let id = machine.execute("x", None).unwrap();
        machine.expire(&id);
        let reply = format!(r#"{{"error": {{"class": "GenericError", "desc": "a \"quoted\" \\ word"}}, "id": {id}}}"#);
        machine.receive(format!("{reply}\r\n").as_bytes()).unwrap();
        let mut inbox = Inbox::new(4);
        while let Some(event) = machine.poll().unwrap() {
            inbox.keep(event);
        }
        let strays: Vec<Stray> = inbox.strays.drain().collect();
        let [Stray::Stale { reply, .. }] = &strays[..] else { panic!("{strays:?}") };
        let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
        assert_eq!(reply, serde_json::json!({ "class": "GenericError", "desc": "a \"quoted\" \\ word" }));
    }
}
