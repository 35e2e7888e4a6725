//! A blocking client for minimega's command socket.
//!
//! ```no_run
//! use vmwire_std::minimega::{CommandLine, Minimega};
//!
//! let mut mm = Minimega::connect_default()?; // /tmp/minimega/minimega
//! println!("{}", mm.run("version")?.rendered());
//!
//! // Arguments that need quoting, built safely; a namespace per command.
//! let line = CommandLine::new("vm config disk").arg("/images/my disk.qcow2").finish()?;
//! let mut exp = mm.with_namespace("exp1")?;
//! exp.run(&line)?;
//! exp.run("vm launch kvm web[1-3]")?;
//! for vm in exp.run("vm info")?.table().sorted().records() {
//!     println!("{} {}", vm.get("name").unwrap_or(""), vm.get("state").unwrap_or(""));
//! }
//!
//! // A stream, frame by frame (`read` runs a script: one frame per command).
//! for frame in mm.stream("read /tmp/script.mm")? {
//!     println!("{}", frame?.rendered);
//! }
//! # Ok::<(), vmwire_std::minimega::Error>(())
//! ```
//!
//! Like the Python bindings' `raise_errors=True` (the default here too), a
//! command that fails on any host returns [`Error::Command`]: but only once
//! its whole reply has been read, so that the next command never reads a
//! frame of this one. With `raise_errors` off, errors are data in
//! [`Response::error`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use vmwire_proto::buf::Heap;
use vmwire_proto::minimega::{self as proto, Client, Config, Event, Part, State, Summary, Want};
use vmwire_proto::op;

use crate::text::escape;
use crate::transport::{Conn, DriveError, Stream, deadline};

pub use vmwire_proto::minimega::{CommandLine, DEFAULT_SOCKET, Namespace, Record, Table, quote};

/// Settings for a [`Minimega`] connection.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for each frame of a reply (`None`: forever). minimega
    /// has no request ids: after a timeout the rest of the reply could be
    /// taken for the next command's, so the connection is closed.
    pub timeout: Option<Duration>,
    /// Return [`Error::Command`] when any response carries an error (after
    /// the reply has been read to its end), like the bindings' `raise_errors`.
    pub raise_errors: bool,
    /// Run every command in this namespace (`namespace "NAME" …`).
    pub namespace: Option<String>,
    /// Status messages kept while nobody reads them; past this the oldest
    /// are dropped and counted ([`Minimega::dropped_status`]).
    pub max_status: usize,
    /// Limits on what the daemon may send. A frame over
    /// `config.limits.max_message` (64 MiB by default) fails its command with
    /// [`proto::Error::FrameTooLarge`] as soon as the limit is reached, and
    /// closes the connection (see [`vmwire_proto::minimega`]).
    pub config: Config,
}

impl Default for Options {
    /// A 60-second timeout (the bindings' default), errors raised, no namespace.
    fn default() -> Self {
        Options {
            timeout: Some(Duration::from_secs(60)),
            raise_errors: true,
            namespace: None,
            max_status: 1024,
            config: Config::default(),
        }
    }
}

/// One host's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The host that answered.
    pub host: String,
    /// The plain-text answer (`""` for tables and errors).
    pub response: String,
    /// Column names, when the answer is a table.
    pub header: Option<Vec<String>>,
    /// The table's rows, in the order the daemon sent them.
    pub tabular: Option<Vec<Vec<String>>>,
    /// The error, if the command failed on this host.
    pub error: Option<String>,
    /// The structured result (`Data`) as JSON text; `None` for `null`.
    pub data: Option<String>,
}

impl Response {
    /// The response, owned.
    pub fn from_proto(r: &proto::Response<'_>) -> Self {
        Response {
            host: r.host().to_cow().into_owned(),
            response: r.response().to_cow().into_owned(),
            header: r.header().map(|h| h.map(|c| c.to_cow().into_owned()).collect()),
            tabular: r
                .tabular()
                .map(|rows| rows.map(|row| row.cells().map(|c| c.to_cow().into_owned()).collect()).collect()),
            error: r.error().map(|e| e.to_cow().into_owned()),
            data: r.data().map(|d| d.raw_str().to_owned()),
        }
    }

    /// Decodes `Data` into `T` (`None` when it is `null`).
    pub fn decode_data<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.data.as_deref().map(serde_json::from_str).transpose().map_err(Error::Json)
    }

    /// The answer as a table (`None` when it is not one).
    pub fn table(&self) -> Option<Table> {
        Some(Table::new(self.header.clone()?, self.tabular.clone().unwrap_or_default()))
    }

    /// The response as the daemon sends it:
    /// `{"Host","Response","Header","Tabular","Error","Data"}`.
    pub fn to_json(&self) -> String {
        fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
            serde_json::to_string(value).unwrap_or_else(|_| "null".into())
        }
        format!(
            "{{\"Host\":{},\"Response\":{},\"Header\":{},\"Tabular\":{},\"Error\":{},\"Data\":{}}}",
            json(&self.host),
            json(&self.response),
            json(&self.header),
            json(&self.tabular),
            json(self.error.as_deref().unwrap_or_default()),
            self.data.as_deref().unwrap_or("null")
        )
    }
}

/// One frame of a reply: the responses of a batch of hosts, and the daemon's
/// rendering of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// The responses, one per host.
    pub responses: Vec<Response>,
    /// The daemon's rendering (tables aligned and sorted, `host: ` annotations;
    /// in its current output mode). Errors are never in it.
    pub rendered: String,
    /// Whether more frames of the same reply follow.
    pub more: bool,
}

impl Frame {
    /// The frame, owned.
    pub fn from_proto(f: &proto::Frame<'_>) -> Self {
        Frame {
            responses: f.responses().map(|r| Response::from_proto(&r)).collect(),
            rendered: f.rendered().to_cow().into_owned(),
            more: f.more(),
        }
    }

    /// The responses that carry an error.
    pub fn errors(&self) -> impl Iterator<Item = &Response> {
        self.responses.iter().filter(|r| r.error.is_some())
    }

    /// A part of `command`'s reply as a stream hands it on: the frame (with
    /// `raise`, [`Error::Command`] if a response in it carries an error), or
    /// [`Error::Protocol`] for a frame that could not be read.
    pub fn checked(part: Result<Frame, proto::Error>, command: &str, raise: bool) -> Result<Self, Error> {
        match part {
            Ok(frame) if raise && frame.errors().next().is_some() => {
                let responses = Responses { frames: vec![frame], malformed: Vec::new() };
                Err(Error::Command(CommandError { command: command.to_string(), responses }))
            }
            Ok(frame) => Ok(frame),
            Err(malformed) => Err(Error::Protocol(malformed)),
        }
    }

    /// The responses as the daemon sends them: a JSON array (what
    /// `.json true` renders).
    pub fn to_json(&self) -> String {
        let items: Vec<String> = self.responses.iter().map(Response::to_json).collect();
        format!("[{}]", items.join(","))
    }
}

/// A whole reply: every frame of it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Responses {
    /// The frames.
    pub frames: Vec<Frame>,
    /// Frames that could not be read (and were skipped), described.
    pub malformed: Vec<String>,
}

impl Responses {
    /// Every response of every frame.
    pub fn iter(&self) -> impl Iterator<Item = &Response> {
        self.frames.iter().flat_map(|f| &f.responses)
    }

    /// The responses that carry an error.
    pub fn errors(&self) -> impl Iterator<Item = &Response> {
        self.iter().filter(|r| r.error.is_some())
    }

    /// Whether no response carries an error and every frame could be read.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none() && self.malformed.is_empty()
    }

    /// Adds a part of the reply: a frame, or one that could not be read.
    pub fn add(&mut self, part: Result<Frame, proto::Error>) {
        match part {
            Ok(frame) => self.frames.push(frame),
            Err(malformed) => self.malformed.push(malformed.to_string()),
        }
    }

    /// `command`'s whole reply; with `raise` ([`Options::raise_errors`]),
    /// [`Error::Command`] unless it [is ok](Responses::is_ok).
    pub fn checked(self, command: &str, raise: bool) -> Result<Self, Error> {
        match raise && !self.is_ok() {
            false => Ok(self),
            true => Err(Error::Command(CommandError { command: command.to_string(), responses: self })),
        }
    }

    /// The daemon's rendering of the whole reply: each frame's, one per line.
    pub fn rendered(&self) -> String {
        let parts: Vec<&str> = self.frames.iter().map(|f| f.rendered.as_str()).filter(|r| !r.is_empty()).collect();
        parts.join("\n")
    }

    /// Every table in the reply, merged, each row prefixed with its host
    /// under a `host` column, as minimega displays it (call
    /// [`Table::sorted`] for its display order).
    pub fn table(&self) -> Table {
        let mut table = Table::default();
        for r in self.iter() {
            let Some(header) = &r.header else { continue };
            if table.header.is_empty() {
                table.header = std::iter::once("host".to_string()).chain(header.iter().cloned()).collect();
            }
            for row in r.tabular.iter().flatten() {
                table.rows.push(std::iter::once(r.host.clone()).chain(row.iter().cloned()).collect());
            }
        }
        table
    }

    /// How many responses there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no responses at all (a blank line, a comment).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'r> IntoIterator for &'r Responses {
    type Item = &'r Response;
    type IntoIter = Box<dyn Iterator<Item = &'r Response> + 'r>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// A command that failed on at least one host (with `raise_errors`). The
/// reply was read to its end; all of it is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command line as sent.
    pub command: String,
    /// The reply, errors and all.
    pub responses: Responses,
}

impl fmt::Display for CommandError {
    /// minimega's own form: `Error (HOST): MESSAGE`, one per line, the
    /// daemon's text escaped ([`escape`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for r in self.responses.errors() {
            if !std::mem::take(&mut first) {
                f.write_str("\n")?;
            }
            write!(f, "Error ({}): {}", escape(&r.host), escape(r.error.as_deref().unwrap_or_default()))?;
        }
        for m in &self.responses.malformed {
            if !std::mem::take(&mut first) {
                f.write_str("\n")?;
            }
            write!(f, "Error: {m}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong, with "minimega said no" ([`Error::Command`])
/// kept apart from I/O, timeouts and protocol errors.
#[derive(Debug)]
pub enum Error {
    /// The command failed on some host (with `raise_errors`).
    Command(CommandError),
    /// The socket could not be reached.
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The socket failed (the connection is closed).
    Io(io::Error),
    /// No frame within the time limit (the connection is closed: without
    /// request ids, the rest of the reply could not be told from the next).
    Timeout,
    /// The daemon closed the connection.
    Closed {
        /// The request whose reply was being read, if any.
        request: Option<String>,
        /// How many frames of its reply had arrived.
        frames: u32,
    },
    /// The daemon broke the protocol, or the client was used wrongly (an
    /// invalid namespace, a command line that would change daemon-wide state).
    Protocol(proto::Error),
    /// `Data` did not decode into the requested type.
    Json(serde_json::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Command(e) => e.fmt(f),
            Error::Connect { source, .. } => {
                write!(f, "minimega: cannot connect to {source} (is the daemon running with this -base?)")
            }
            Error::Io(e) => write!(f, "minimega: I/O error: {e}"),
            Error::Timeout => f.write_str("minimega: timed out waiting for a reply (connection closed)"),
            Error::Closed { request: Some(request), frames: 0 } => write!(
                f,
                "minimega closed the connection without replying to `{request}` (it does so after `quit`, and on a request it cannot decode)"
            ),
            Error::Closed { request: Some(request), frames } => {
                write!(f, "minimega closed the connection after {frames} frame(s) of the reply to `{request}`")
            }
            Error::Closed { request: None, .. } => f.write_str("minimega: connection closed"),
            Error::Protocol(e) => e.fmt(f),
            Error::Json(e) => write!(f, "minimega: JSON: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        Error::Protocol(e)
    }
}

impl Error {
    /// Why driving the connection stopped, as the client says it; `request`
    /// is the request whose reply was awaited, if any.
    pub fn from_drive(e: DriveError<proto::Error>, request: Option<String>) -> Self {
        match e {
            DriveError::Io(e) => Error::Io(e),
            DriveError::Timeout => Error::Timeout,
            DriveError::Closed => Error::Closed { request, frames: 0 },
            DriveError::Machine(e) => Error::Protocol(e),
        }
    }
}

/// Status messages received while nobody waited for one (bounded: the
/// oldest goes, and is counted): the inbox of a client's operations.
#[derive(Debug)]
pub struct Status(op::Bounded<String>);

impl Status {
    /// An empty inbox that keeps at most `max` messages.
    pub fn new(max: usize) -> Self {
        Status(op::Bounded::new(max))
    }

    /// The oldest message kept.
    pub fn pop(&mut self) -> Option<String> {
        self.0.pop()
    }

    /// Takes every message kept, oldest first.
    pub fn take(&mut self) -> Vec<String> {
        self.0.drain().collect()
    }

    /// How many messages were dropped because nobody read them.
    pub fn dropped(&self) -> u64 {
        self.0.dropped()
    }
}

impl op::Inbox<Client<Heap>> for Status {
    fn keep(&mut self, event: Event<'_>) {
        if let Event::Status(text) = event {
            self.0.push(text.to_cow().into_owned());
        }
    }
}

/// What waiting for the next part of a reply got ([`reply_part`]).
#[derive(Debug)]
pub enum Got<T> {
    /// A part, made something of (`None`: one the caller skips).
    Part(Option<T>),
    /// The machine failed the reply and closed.
    Fatal(proto::Error),
    /// The session closed in the middle of the reply, after these frames.
    Failed(u32),
    /// The session is closed.
    Closed,
}

/// The operation that waits for the next part of the reply in progress;
/// `take` makes something of it (`None`: a part the caller skips). What
/// running it comes to is read with [`Got::part`].
pub fn reply_part<T>(
    take: impl for<'a> FnOnce(Part<'a>) -> Option<T>,
) -> proto::Next<impl for<'a> FnOnce(Part<'a>) -> Got<T>> {
    proto::Next::new(Want::Reply, |part: Part<'_>| match part {
        Part::Fatal(e) => Got::Fatal(e),
        Part::Failed(summary) => Got::Failed(summary.frames),
        Part::Closed => Got::Closed,
        part => Got::Part(take(part)),
    })
}

impl<T> Got<T> {
    /// What running [`reply_part`]'s operation came to, the reply being
    /// `request`'s: the part (`None`: one skipped), or the error that ends
    /// the connection (the client closes it).
    pub fn part(
        outcome: Result<Got<T>, DriveError<proto::Error>>,
        request: &Option<String>,
    ) -> Result<Option<T>, Error> {
        match outcome {
            Ok(Got::Part(t)) => Ok(t),
            // The machine has failed the reply and closed.
            Ok(Got::Fatal(e)) => Err(Error::Protocol(e)),
            Ok(Got::Failed(frames)) => Err(Error::Closed { request: request.clone(), frames }),
            Ok(Got::Closed) => Err(Error::Closed { request: None, frames: 0 }),
            Err(e) => Err(Error::from_drive(e, request.clone())),
        }
    }
}

/// Queues `command` on `machine`, in namespace `ns` if given; returns the
/// request as the daemon reads it (for messages).
pub fn queue_command(machine: &mut Client<Heap>, ns: Option<&str>, command: &str) -> Result<String, Error> {
    match ns {
        Some(ns) => machine.command_in(&Namespace::new(ns)?, command)?,
        None => machine.command(command)?,
    }
    Ok(match ns {
        Some(ns) => format!("namespace \"{ns}\" {command}"),
        None => command.to_string(),
    })
}

/// The operation that waits for the next status message, while no
/// command runs; what running it comes to is read with [`status_string`].
pub fn status_message() -> proto::Next<impl for<'a> FnOnce(Part<'a>) -> Option<String>> {
    proto::Next::new(Want::Status, |part: Part<'_>| match part {
        Part::Status(text) => Some(text.to_cow().into_owned()),
        _ => None,
    })
}

/// What waiting for a status message ([`status_message`]) came to: the
/// message, `None` when the time is up, or the error that ends the
/// connection (the client closes it); `request` is the last request.
pub fn status_string(
    outcome: Result<Option<String>, DriveError<proto::Error>>,
    request: &Option<String>,
) -> Result<Option<String>, Error> {
    match outcome {
        Ok(Some(text)) => Ok(Some(text)),
        Ok(None) => Err(Error::Closed { request: None, frames: 0 }),
        Err(DriveError::Timeout) => Ok(None),
        Err(e) => Err(Error::from_drive(e, request.clone())),
    }
}

/// The operation that waits for a pipe's next string; what running it
/// comes to is read with [`pipe_string`].
pub fn pipe_next() -> proto::Next<impl for<'a> FnOnce(Part<'a>) -> Result<Option<String>, Error>> {
    proto::Next::new(Want::Pipe, |part: Part<'_>| match part {
        Part::Pipe(s) => Ok(Some(s.to_cow().into_owned())),
        Part::Malformed(e) => Err(Error::Protocol(e)),
        _ => Ok(None),
    })
}

/// What waiting for a pipe's next string ([`pipe_next`]) came to: the
/// string, `None` when the time is up, [`Error::Closed`] when the daemon
/// closed the pipe.
pub fn pipe_string(
    outcome: Result<Result<Option<String>, Error>, DriveError<proto::Error>>,
) -> Result<Option<String>, Error> {
    match outcome {
        Ok(Ok(Some(s))) => Ok(Some(s)),
        Ok(Ok(None)) | Err(DriveError::Closed) => Err(Error::Closed { request: None, frames: 0 }),
        Ok(Err(e)) => Err(e),
        Err(DriveError::Timeout) => Ok(None),
        Err(e) => Err(Error::from_drive(e, None)),
    }
}

/// What a reply's stream hands on next ([`StreamPart::of`]).
#[derive(Debug)]
pub enum StreamPart {
    /// A frame.
    Frame(Frame),
    /// A frame that could not be read (the reply goes on).
    Malformed(proto::Error),
    /// The reply's end.
    End(Summary),
}

impl StreamPart {
    /// What a stream of frames makes of a part of the reply (`None`: a part
    /// it skips).
    pub fn of(part: Part<'_>) -> Option<Self> {
        match part {
            Part::Frame(f) => Some(StreamPart::Frame(Frame::from_proto(&f))),
            Part::Malformed(e) => Some(StreamPart::Malformed(e)),
            Part::End(summary) => Some(StreamPart::End(summary)),
            _ => None,
        }
    }
}

/// A connection to minimega's command socket.
#[derive(Debug)]
pub struct Minimega {
    conn: Conn<Client<Heap>>,
    path: PathBuf,
    options: Options,
    status: Status,
    /// The request whose reply is being read.
    request: Option<String>,
}

impl Minimega {
    /// Connects to the daemon's socket at `path`, with default [`Options`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with(path, Options::default())
    }

    /// Connects to the default socket, [`DEFAULT_SOCKET`] (`/tmp/minimega/minimega`).
    pub fn connect_default() -> Result<Self, Error> {
        Self::connect(DEFAULT_SOCKET)
    }

    /// Connects to the daemon's socket at `path`.
    pub fn connect_with(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(ns) = &options.namespace {
            Namespace::new(ns)?;
        }
        let stream = Stream::connect_unix(&path).map_err(|source| Error::Connect { path: path.clone(), source })?;
        Ok(Minimega {
            conn: Conn::new(stream, Client::new(options.config)),
            status: Status::new(options.max_status),
            path,
            options,
            request: None,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the time allowed for each frame of a reply.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.options.timeout = timeout;
    }

    /// Sets the error policy (see [`Options::raise_errors`]).
    pub fn set_raise_errors(&mut self, raise: bool) {
        self.options.raise_errors = raise;
    }

    /// Runs `command` (a command line, as minimega's CLI reads it: build it
    /// with [`CommandLine`] when it has arguments) and reads its whole reply.
    pub fn run(&mut self, command: &str) -> Result<Responses, Error> {
        let ns = self.options.namespace.clone();
        self.run_in(ns.as_deref(), command)
    }

    /// Runs `command` and returns its frames as they arrive. Dropping the
    /// stream before its end discards the rest of the reply: the next
    /// request reads it to its end first.
    pub fn stream(&mut self, command: &str) -> Result<FrameStream<'_>, Error> {
        let ns = self.options.namespace.clone();
        self.stream_in(ns.as_deref(), command)
    }

    /// Completions for `prefix`: whole command lines, each ending in a space.
    pub fn suggest(&mut self, prefix: &str) -> Result<Vec<String>, Error> {
        self.settle()?;
        self.request = Some(prefix.to_string());
        self.conn.machine_mut().suggest(prefix)?;
        self.flush()?;
        let lines = loop {
            let lines = self.next_part(|part| match part {
                Part::Suggestions(s) => Some(s.map(|s| s.to_cow().into_owned()).collect()),
                _ => None,
            })?;
            if let Some(lines) = lines {
                break lines;
            }
        };
        self.request = None;
        Ok(lines)
    }

    /// A handle whose commands all run in namespace `name` (each carries the
    /// prefix `namespace "NAME"`; the daemon's active namespace, which every
    /// client shares, is never switched).
    pub fn with_namespace(&mut self, name: &str) -> Result<Namespaced<'_>, Error> {
        Namespace::new(name)?;
        Ok(Namespaced { mm: self, name: name.to_string() })
    }

    /// Opens plumbing pipe `name` on a new connection to the same socket (a
    /// pipe takes over its connection for good). Within a namespace (from
    /// [`Options::namespace`] or [`Minimega::with_namespace`]) the pipe is
    /// `NAMESPACE//NAME`, as minimega's own client names it.
    pub fn pipe(&self, name: &str) -> Result<Pipe, Error> {
        let full = match &self.options.namespace {
            Some(ns) => format!("{ns}//{name}"),
            None => name.to_string(),
        };
        Pipe::open(&self.path, &full, self.options.timeout, self.options.config)
    }

    /// The next status message: one already received, or one that arrives
    /// within `timeout` while no command runs (`None`: wait forever).
    /// `Ok(None)` when the time is up.
    pub fn next_status(&mut self, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        self.settle()?;
        if let Some(s) = self.status.pop() {
            return Ok(Some(s));
        }
        let outcome = self.conn.wait(&mut status_message(), &mut self.status, deadline(timeout));
        status_string(outcome, &self.request).map_err(|e| self.closed(e))
    }

    /// Takes the status messages received while commands ran.
    pub fn take_status(&mut self) -> Vec<String> {
        self.status.take()
    }

    /// How many status messages were dropped because nobody read them.
    pub fn dropped_status(&self) -> u64 {
        self.status.dropped()
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.close();
    }

    fn run_in(&mut self, ns: Option<&str>, command: &str) -> Result<Responses, Error> {
        let mut stream = self.stream_in(ns, command)?;
        let mut responses = Responses::default();
        while let Some(part) = stream.next_frame()? {
            responses.add(part);
        }
        responses.checked(command, stream.mm.options.raise_errors)
    }

    fn stream_in(&mut self, ns: Option<&str>, command: &str) -> Result<FrameStream<'_>, Error> {
        self.settle()?;
        if self.conn.machine().state() == State::Closed {
            return Err(Error::Closed { request: None, frames: 0 });
        }
        self.request = Some(queue_command(self.conn.machine_mut(), ns, command)?);
        self.flush()?;
        Ok(FrameStream { mm: self, command: command.to_string(), summary: None })
    }

    /// Reads what is left of an abandoned reply, and takes what is buffered.
    fn settle(&mut self) -> Result<(), Error> {
        match self.conn.machine().state() {
            State::Command | State::Suggest => {
                while self
                    .next_part(|part| matches!(part, Part::End(_) | Part::Suggestions(_)).then_some(()))?
                    .is_none()
                {}
            }
            State::Closed => return Err(Error::Closed { request: None, frames: 0 }),
            _ => {}
        }
        // No operation: whatever is buffered goes to the inbox.
        op::drive(self.conn.machine_mut(), &mut op::Idle, &mut self.status)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let deadline = deadline(self.options.timeout);
        self.conn.flush(deadline).map_err(|e| self.fail(e))
    }

    /// The connection cannot go on: close it, and say why.
    fn fail(&mut self, e: DriveError<proto::Error>) -> Error {
        let error = Error::from_drive(e, self.request.clone());
        self.closed(error)
    }

    /// Closes the connection (if the session has not closed already), for `error`.
    fn closed(&mut self, error: Error) -> Error {
        self.conn.machine_mut().close();
        self.conn.close();
        error
    }

    /// The next part of the reply in progress, made something of by `take`
    /// (`None`: a part the caller skips). Status messages are kept; the end
    /// of the connection is an error.
    fn next_part<T>(&mut self, take: impl for<'a> FnOnce(Part<'a>) -> Option<T>) -> Result<Option<T>, Error> {
        let outcome = self.conn.run(&mut reply_part(take), &mut self.status, deadline(self.options.timeout));
        // The session is over (the machine has closed): close the socket too.
        Got::part(outcome, &self.request).map_err(|e| self.closed(e))
    }
}

/// A command's reply, frame by frame as it arrives (see [`Minimega::stream`]).
///
/// With `raise_errors`, a frame that carries an error is an
/// [`Error::Command`] item, and the stream goes on to its end.
#[derive(Debug)]
pub struct FrameStream<'m> {
    mm: &'m mut Minimega,
    command: String,
    summary: Option<Summary>,
}

impl FrameStream<'_> {
    /// The next frame, or a frame that could not be read; `None` at the end.
    fn next_frame(&mut self) -> Result<Option<Result<Frame, proto::Error>>, Error> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let next = loop {
            if let Some(next) = self.mm.next_part(StreamPart::of)? {
                break next;
            }
        };
        Ok(match next {
            StreamPart::Frame(frame) => Some(Ok(frame)),
            StreamPart::Malformed(e) => Some(Err(e)),
            StreamPart::End(summary) => {
                self.summary = Some(summary);
                self.mm.request = None;
                None
            }
        })
    }

    /// What the reply came to, once it has been read to its end.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }
}

impl Iterator for FrameStream<'_> {
    type Item = Result<Frame, Error>;

    fn next(&mut self) -> Option<Result<Frame, Error>> {
        match self.next_frame() {
            Ok(part) => part.map(|part| Frame::checked(part, &self.command, self.mm.options.raise_errors)),
            Err(e) => {
                // The connection is gone: nothing more will come.
                self.summary = Some(Summary::default());
                Some(Err(e))
            }
        }
    }
}

/// A handle whose commands all run in one namespace (see [`Minimega::with_namespace`]).
#[derive(Debug)]
pub struct Namespaced<'m> {
    mm: &'m mut Minimega,
    name: String,
}

impl Namespaced<'_> {
    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// [`Minimega::run`] in this namespace.
    pub fn run(&mut self, command: &str) -> Result<Responses, Error> {
        self.mm.run_in(Some(&self.name), command)
    }

    /// [`Minimega::stream`] in this namespace.
    pub fn stream(&mut self, command: &str) -> Result<FrameStream<'_>, Error> {
        self.mm.stream_in(Some(&self.name), command)
    }

    /// [`Minimega::suggest`] (completions are not namespaced, as with
    /// minimega's own `-attach`).
    pub fn suggest(&mut self, prefix: &str) -> Result<Vec<String>, Error> {
        self.mm.suggest(prefix)
    }

    /// Pipe `NAMESPACE//name` (see [`Minimega::pipe`]).
    pub fn pipe(&self, name: &str) -> Result<Pipe, Error> {
        Pipe::open(&self.mm.path, &format!("{}//{name}", self.name), self.mm.options.timeout, self.mm.options.config)
    }

    /// A handle for another namespace (the innermost wins).
    pub fn with_namespace(&mut self, name: &str) -> Result<Namespaced<'_>, Error> {
        self.mm.with_namespace(name)
    }
}

/// A plumbing pipe: strings written to it reach its readers, strings others
/// write arrive here. It holds a connection of its own.
#[derive(Debug)]
pub struct Pipe {
    conn: Conn<Client<Heap>>,
    name: String,
    timeout: Option<Duration>,
}

impl Pipe {
    fn open(path: &Path, name: &str, timeout: Option<Duration>, config: Config) -> Result<Self, Error> {
        let stream =
            Stream::connect_unix(path).map_err(|source| Error::Connect { path: path.to_path_buf(), source })?;
        let mut conn = Conn::new(stream, Client::<Heap>::new(config));
        conn.machine_mut().plumb_pipe(name)?;
        let mut pipe = Pipe { conn, name: name.to_string(), timeout };
        pipe.flush()?;
        Ok(pipe)
    }

    /// The pipe's name as sent.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn flush(&mut self) -> Result<(), Error> {
        let request = || Some(format!("PlumbPipe {}", self.name));
        self.conn.flush(deadline(self.timeout)).map_err(|e| Error::from_drive(e, request()))
    }

    /// Writes `data` to the pipe as one string (the daemon drops empty ones).
    pub fn write(&mut self, data: &str) -> Result<(), Error> {
        self.conn.machine_mut().pipe_write(data)?;
        self.flush()
    }

    /// Writes `line` and a newline, as minimega's own client writes each line
    /// of its input.
    pub fn write_line(&mut self, line: &str) -> Result<(), Error> {
        self.write(&format!("{line}\n"))
    }

    /// The next string from the pipe, waiting up to `timeout` (`None`:
    /// forever); `Ok(None)` when the time is up, [`Error::Closed`] when the
    /// daemon closed the pipe.
    pub fn read(&mut self, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        pipe_string(self.conn.wait(&mut pipe_next(), &mut |_: Event<'_>| {}, deadline(timeout)))
    }

    /// Closes the pipe's connection.
    pub fn close(mut self) {
        self.conn.close();
    }
}

impl Iterator for Pipe {
    type Item = Result<String, Error>;

    /// Strings as they come, until the daemon closes the pipe.
    fn next(&mut self) -> Option<Result<String, Error>> {
        match self.read(None) {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) | Err(Error::Closed { .. }) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
