//! Async minimega client: the twin of `vmwire_std::minimega`'s, with the
//! same options, errors and owned values, over the same operation
//! (`minimega::Next`).
//!
//! ```no_run
//! use vmwire_smol::minimega::{CommandLine, Minimega};
//!
//! # async fn example() -> Result<(), vmwire_smol::minimega::Error> {
//! let mut mm = Minimega::connect_default().await?; // /tmp/minimega/minimega
//! println!("{}", mm.run("version").await?.rendered());
//!
//! let line = CommandLine::new("vm config disk").arg("/images/my disk.qcow2").finish()?;
//! let mut exp = mm.with_namespace("exp1")?;
//! exp.run(&line).await?;
//!
//! // A stream, frame by frame (`read` runs a script: one frame per command).
//! let mut frames = mm.stream("read /tmp/script.mm").await?;
//! while let Some(frame) = frames.next().await {
//!     println!("{}", frame?.rendered);
//! }
//! # Ok(()) }
//! ```
//!
//! A command's future dropped before its reply has been read (cancelled)
//! leaves the connection usable: the next request reads the rest of that
//! reply to its end first, as it does after a [`FrameStream`] dropped
//! half way. Only a timeout closes the connection (without request ids,
//! a late reply could be taken for the next command's).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::minimega::{self as proto, Client, Event, Part, State, Summary};
use vmwire_proto::op::{self, Offer, Operation};
use vmwire_std::minimega::{
    Got, Status, StreamPart, pipe_next, pipe_string, queue_command, reply_part, status_message, status_string,
};

use crate::conn::{Conn, DriveError, Stream, deadline};

pub use vmwire_proto::minimega::{CommandLine, Config, DEFAULT_SOCKET, Namespace, Record, Table, quote};
pub use vmwire_std::minimega::{CommandError, Error, Frame, Options, Response, Responses};

/// An operation whose expiry is left to the client: its future dropped
/// early leaves the reply to be read to its end by the next request
/// (expiring a minimega operation closes the connection); a timeout is
/// closed by the client itself.
struct Resumable<O>(O);

impl<M: Machine, O: Operation<M>> Operation<M> for Resumable<O> {
    type Output = O::Output;

    fn offer<'a>(&mut self, event: M::Event<'a>) -> Offer<M::Event<'a>, O::Output>
    where
        M: 'a,
    {
        self.0.offer(event)
    }

    fn request(&self) -> Option<&M::Request> {
        self.0.request()
    }

    fn advance(&mut self, machine: &mut M) -> Result<Option<O::Output>, M::Error> {
        self.0.advance(machine)
    }

    fn pause(&self) -> Option<Duration> {
        self.0.pause()
    }

    fn resume(&mut self, machine: &mut M) -> Result<Option<O::Output>, M::Error> {
        self.0.resume(machine)
    }

    fn expire(&mut self, _: &mut M) {}
}

/// A connection to minimega's command socket.
#[derive(Debug)]
pub struct Minimega<S = Stream> {
    conn: Conn<S, Client<Heap>>,
    path: PathBuf,
    options: Options,
    status: Status,
    /// The request whose reply is being read.
    request: Option<String>,
}

/// Connects to the UNIX socket at `path` within `timeout`.
async fn connect(path: &Path, timeout: Option<Duration>) -> Result<Stream, Error> {
    Stream::connect_unix(path, timeout).await.map_err(|source| Error::Connect { path: path.to_path_buf(), source })
}

impl Minimega<Stream> {
    /// Connects to the daemon's socket at `path`, with default [`Options`].
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with(path, Options::default()).await
    }

    /// Connects to the default socket, [`DEFAULT_SOCKET`] (`/tmp/minimega/minimega`).
    pub async fn connect_default() -> Result<Self, Error> {
        Self::connect(DEFAULT_SOCKET).await
    }

    /// Connects to the daemon's socket at `path` (within the time limit).
    pub async fn connect_with(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        if let Some(ns) = &options.namespace {
            Namespace::new(ns)?;
        }
        let stream = connect(path, options.timeout).await?;
        Minimega::new(stream, path, options)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Minimega<S> {
    /// A client over `stream`, a connection to the daemon's socket at
    /// `path` made some other way (pipes open their own connections to
    /// `path`).
    pub fn new(stream: S, path: impl Into<PathBuf>, options: Options) -> Result<Self, Error> {
        if let Some(ns) = &options.namespace {
            Namespace::new(ns)?;
        }
        Ok(Minimega {
            conn: Conn::new(stream, Client::new(options.config)),
            status: Status::new(options.max_status),
            path: path.into(),
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
    pub async fn run(&mut self, command: &str) -> Result<Responses, Error> {
        let ns = self.options.namespace.clone();
        self.run_in(ns.as_deref(), command).await
    }

    /// Runs `command` and returns its frames as they arrive. Dropping the
    /// stream before its end discards the rest of the reply: the next
    /// request reads it to its end first.
    pub async fn stream(&mut self, command: &str) -> Result<FrameStream<'_, S>, Error> {
        let ns = self.options.namespace.clone();
        self.stream_in(ns.as_deref(), command).await
    }

    /// Completions for `prefix`: whole command lines, each ending in a space.
    pub async fn suggest(&mut self, prefix: &str) -> Result<Vec<String>, Error> {
        self.settle().await?;
        self.request = Some(prefix.to_string());
        self.conn.machine_mut().suggest(prefix)?;
        self.flush().await?;
        let lines = self
            .first_part(|part| match part {
                Part::Suggestions(s) => Some(s.map(|s| s.to_cow().into_owned()).collect()),
                _ => None,
            })
            .await?;
        self.request = None;
        Ok(lines)
    }

    /// A handle whose commands all run in namespace `name` (each carries the
    /// prefix `namespace "NAME"`; the daemon's active namespace, which every
    /// client shares, is never switched).
    pub fn with_namespace(&mut self, name: &str) -> Result<Namespaced<'_, S>, Error> {
        Namespace::new(name)?;
        Ok(Namespaced { mm: self, name: name.to_string() })
    }

    /// Opens plumbing pipe `name` on a new connection to the same socket (a
    /// pipe takes over its connection for good). Within a namespace (from
    /// [`Options::namespace`]) the pipe is `NAMESPACE//NAME`, as minimega's
    /// own client names it.
    pub async fn pipe(&self, name: &str) -> Result<Pipe, Error> {
        let full = match &self.options.namespace {
            Some(ns) => format!("{ns}//{name}"),
            None => name.to_string(),
        };
        Pipe::open(&self.path, &full, self.options.timeout, self.options.config).await
    }

    /// The next status message: one already received, or one that arrives
    /// within `timeout` while no command runs (`None`: wait forever).
    /// `Ok(None)` when the time is up.
    pub async fn next_status(&mut self, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        self.settle().await?;
        if let Some(s) = self.status.pop() {
            return Ok(Some(s));
        }
        let outcome = self.conn.wait(&mut status_message(), &mut self.status, deadline(timeout)).await;
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

    async fn run_in(&mut self, ns: Option<&str>, command: &str) -> Result<Responses, Error> {
        let mut stream = self.stream_in(ns, command).await?;
        let mut responses = Responses::default();
        while let Some(part) = stream.next_frame().await? {
            responses.add(part);
        }
        responses.checked(command, stream.mm.options.raise_errors)
    }

    async fn stream_in(&mut self, ns: Option<&str>, command: &str) -> Result<FrameStream<'_, S>, Error> {
        self.settle().await?;
        if self.conn.machine().state() == State::Closed {
            return Err(Error::Closed { request: None, frames: 0 });
        }
        self.request = Some(queue_command(self.conn.machine_mut(), ns, command)?);
        self.flush().await?;
        Ok(FrameStream { mm: self, command: command.to_string(), summary: None })
    }

    /// Reads what is left of an abandoned reply (a stream dropped half way,
    /// a command cancelled), and takes what is buffered.
    async fn settle(&mut self) -> Result<(), Error> {
        match self.conn.machine().state() {
            State::Command | State::Suggest => {
                self.first_part(|part| matches!(part, Part::End(_) | Part::Suggestions(_)).then_some(())).await?;
            }
            State::Closed => return Err(Error::Closed { request: None, frames: 0 }),
            _ => {}
        }
        // No operation: whatever is buffered goes to the inbox.
        op::drive(self.conn.machine_mut(), &mut op::Idle, &mut self.status)?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let deadline = deadline(self.options.timeout);
        match self.conn.flush(deadline).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
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
    async fn next_part<T>(&mut self, take: impl for<'a> FnOnce(Part<'a>) -> Option<T>) -> Result<Option<T>, Error> {
        let mut next = Resumable(reply_part(take));
        let outcome = self.conn.run(&mut next, &mut self.status, deadline(self.options.timeout)).await;
        // The session is over (the machine has closed): close the socket too.
        Got::part(outcome, &self.request).map_err(|e| self.closed(e))
    }

    /// The first part of the reply in progress that `take` makes something of.
    async fn first_part<T>(&mut self, take: impl for<'a> Fn(Part<'a>) -> Option<T>) -> Result<T, Error> {
        loop {
            if let Some(t) = self.next_part(&take).await? {
                return Ok(t);
            }
        }
    }
}

/// A command's reply, frame by frame as it arrives (see [`Minimega::stream`]).
///
/// With `raise_errors`, a frame that carries an error is an
/// [`Error::Command`] item, and the stream goes on to its end.
#[derive(Debug)]
pub struct FrameStream<'m, S = Stream> {
    mm: &'m mut Minimega<S>,
    command: String,
    summary: Option<Summary>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameStream<'_, S> {
    /// The next frame, or a frame that could not be read; `None` at the end.
    async fn next_frame(&mut self) -> Result<Option<Result<Frame, proto::Error>>, Error> {
        if self.summary.is_some() {
            return Ok(None);
        }
        Ok(match self.mm.first_part(StreamPart::of).await? {
            StreamPart::Frame(frame) => Some(Ok(frame)),
            StreamPart::Malformed(e) => Some(Err(e)),
            StreamPart::End(summary) => {
                self.summary = Some(summary);
                self.mm.request = None;
                None
            }
        })
    }

    /// The next frame as it arrives; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Frame, Error>> {
        match self.next_frame().await {
            Ok(part) => part.map(|part| Frame::checked(part, &self.command, self.mm.options.raise_errors)),
            Err(e) => {
                // The connection is gone: nothing more will come.
                self.summary = Some(Summary::default());
                Some(Err(e))
            }
        }
    }

    /// Every frame that is left, in order.
    pub async fn collect(mut self) -> Vec<Result<Frame, Error>> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item);
        }
        items
    }

    /// What the reply came to, once it has been read to its end.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }
}

/// A handle whose commands all run in one namespace (see [`Minimega::with_namespace`]).
#[derive(Debug)]
pub struct Namespaced<'m, S = Stream> {
    mm: &'m mut Minimega<S>,
    name: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Namespaced<'_, S> {
    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// [`Minimega::run`] in this namespace.
    pub async fn run(&mut self, command: &str) -> Result<Responses, Error> {
        self.mm.run_in(Some(&self.name), command).await
    }

    /// [`Minimega::stream`] in this namespace.
    pub async fn stream(&mut self, command: &str) -> Result<FrameStream<'_, S>, Error> {
        self.mm.stream_in(Some(&self.name), command).await
    }

    /// [`Minimega::suggest`] (completions are not namespaced, as with
    /// minimega's own `-attach`).
    pub async fn suggest(&mut self, prefix: &str) -> Result<Vec<String>, Error> {
        self.mm.suggest(prefix).await
    }

    /// Pipe `NAMESPACE//name` (see [`Minimega::pipe`]).
    pub async fn pipe(&self, name: &str) -> Result<Pipe, Error> {
        let options = &self.mm.options;
        Pipe::open(&self.mm.path, &format!("{}//{name}", self.name), options.timeout, options.config).await
    }

    /// A handle for another namespace (the innermost wins).
    pub fn with_namespace(&mut self, name: &str) -> Result<Namespaced<'_, S>, Error> {
        self.mm.with_namespace(name)
    }
}

/// A plumbing pipe: strings written to it reach its readers, strings others
/// write arrive here. It holds a connection of its own.
#[derive(Debug)]
pub struct Pipe {
    conn: Conn<Stream, Client<Heap>>,
    name: String,
    timeout: Option<Duration>,
}

impl Pipe {
    async fn open(path: &Path, name: &str, timeout: Option<Duration>, config: Config) -> Result<Self, Error> {
        let mut conn = Conn::new(connect(path, timeout).await?, Client::<Heap>::new(config));
        conn.machine_mut().plumb_pipe(name)?;
        let mut pipe = Pipe { conn, name: name.to_string(), timeout };
        pipe.flush().await?;
        Ok(pipe)
    }

    /// The pipe's name as sent.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let request = || Some(format!("PlumbPipe {}", self.name));
        self.conn.flush(deadline(self.timeout)).await.map_err(|e| Error::from_drive(e, request()))
    }

    /// Writes `data` to the pipe as one string (the daemon drops empty ones).
    pub async fn write(&mut self, data: &str) -> Result<(), Error> {
        self.conn.machine_mut().pipe_write(data)?;
        self.flush().await
    }

    /// Writes `line` and a newline, as minimega's own client writes each line
    /// of its input.
    pub async fn write_line(&mut self, line: &str) -> Result<(), Error> {
        self.write(&format!("{line}\n")).await
    }

    /// The next string from the pipe, waiting up to `timeout` (`None`:
    /// forever); `Ok(None)` when the time is up, [`Error::Closed`] when the
    /// daemon closed the pipe.
    pub async fn read(&mut self, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        pipe_string(self.conn.wait(&mut pipe_next(), &mut |_: Event<'_>| {}, deadline(timeout)).await)
    }

    /// The next string, until the daemon closes the pipe (`None`).
    pub async fn next(&mut self) -> Option<Result<String, Error>> {
        match self.read(None).await {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) | Err(Error::Closed { .. }) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Closes the pipe's connection.
    pub fn close(mut self) {
        self.conn.close();
    }
}
