//! The guest agent's operations: a command's reply, and a sync.

use core::time::Duration;

use super::{Client, Error, ErrorReply, Event, ExecStatus, Id, QUIET_COMMANDS, State};
use crate::Machine;
use crate::buf::Storage;
use crate::json::{self, ObjectWriter, Value};
use crate::op::{Finish, Offer, Operation};

/// How a command ended, as [`ReplyTo`] hands it to its caller.
#[derive(Debug, Clone)]
pub enum Answer<'a> {
    /// It succeeded: its `return` value.
    Return(Value<'a>),
    /// A command that does not answer when it succeeds (see
    /// [`QUIET_COMMANDS`]) did: the agent answered what followed it.
    Accepted,
    /// The agent said no.
    Error(ErrorReply<'a>),
    /// The reply was over the size limit, and was skipped unread
    /// ([`Event::MalformedReply`] with a too-large [`Error::Json`]).
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A message with the command's id that is not a valid reply
    /// ([`Event::MalformedReply`]): what was wrong with it.
    Malformed(Error),
    /// The session closed before the reply came.
    Closed,
}

/// The answer to the command sent as `own`, or the event handed back if
/// it is not its own.
fn reply_to<'a>(own: &Id, event: Event<'a>) -> Result<Answer<'a>, Event<'a>> {
    Ok(match event {
        Event::Return { id, value } if id == own => Answer::Return(value),
        Event::Accepted { id } if id == own => Answer::Accepted,
        Event::Error { id, error } if id == own => Answer::Error(error),
        Event::MalformedReply { id, error } if id == own => match error {
            Error::Json(json::Error { kind: json::ErrorKind::TooLarge { limit }, .. }) => Answer::TooLarge { limit },
            error => Answer::Malformed(error),
        },
        Event::Failed { id } if id == own => Answer::Closed,
        Event::Closed => Answer::Closed,
        other => return Err(other),
    })
}

/// The answer to a sequence's command in flight (`own`), or the event
/// passed on.
fn step_answer<'a, T>(own: Option<&Id>, event: Event<'a>) -> Result<Answer<'a>, Offer<Event<'a>, T>> {
    let Some(own) = own else { return Err(Offer::Pass(event)) };
    reply_to(own, event).map_err(Offer::Pass)
}

/// Waits for the reply to one command, and makes `answer` of it.
#[derive(Debug)]
pub struct ReplyTo<F> {
    id: Id,
    answer: Finish<F>,
}

impl<F> ReplyTo<F> {
    /// The operation for command `name`, sent as `id`. A command that does
    /// not answer when it succeeds ([`QUIET_COMMANDS`]) gets a `guest-ping`
    /// queued behind it, whose reply shows that it did.
    pub fn new<S: Storage>(client: &mut Client<S>, name: &str, id: Id, answer: F) -> Result<Self, Error> {
        if QUIET_COMMANDS.contains(&name) {
            client.execute("guest-ping", None)?;
        }
        Ok(ReplyTo { id, answer: Finish::new(answer) })
    }

    /// The command's id.
    pub fn id(&self) -> &Id {
        &self.id
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Answer<'a>) -> T> Operation<Client<S>> for ReplyTo<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        match reply_to(&self.id, event) {
            Ok(answer) => self.answer.with(answer),
            Err(other) => Offer::Pass(other),
        }
    }

    fn request(&self) -> Option<&Id> {
        Some(&self.id)
    }
}

/// How a sync ended, as [`Synchronise`] hands it over.
#[derive(Debug, Clone)]
pub enum Synchronised<'a> {
    /// The agent answered the sync: replies from here on are this session's.
    Ready,
    /// Something else answers on this channel ([`Event::WrongProtocol`]).
    WrongProtocol {
        /// What it is ([`Error::NotAgent`]).
        error: Error,
        /// The first line of what it said.
        text: &'a [u8],
    },
    /// The session closed first.
    Closed,
}

/// Waits for the sync in progress (of a new [`Client`], or after
/// [`Client::resync`]) to be answered.
#[derive(Debug)]
pub struct Synchronise<F> {
    done: Finish<F>,
}

impl<F> Synchronise<F> {
    /// The operation, finished by `done`.
    pub fn new(done: F) -> Self {
        Synchronise { done: Finish::new(done) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Synchronised<'a>) -> T> Operation<Client<S>> for Synchronise<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let end = match event {
            Event::Synced => Synchronised::Ready,
            Event::WrongProtocol { error, text } => Synchronised::WrongProtocol { error, text },
            Event::Closed => Synchronised::Closed,
            other => return Offer::Pass(other),
        };
        self.done.with(end)
    }

    /// The sync is the session's own: no command's id.
    fn request(&self) -> Option<&Id> {
        None
    }

    /// Syncs again, as after any command's deadline.
    fn expire(&mut self, client: &mut Client<S>) {
        if client.state() != State::Closed {
            client.expire(&Id::Number(client.sync_id()));
        }
    }
}

/// How a guest program's run ended, as [`Exec`] hands it over.
#[derive(Debug, Clone)]
pub enum Ran<'a> {
    /// The program ended: the `guest-exec-status` that said so.
    Exited(ExecStatus<'a>),
    /// `command` (`guest-exec` or `guest-exec-status`) did not answer as
    /// it does: its error, the session's end, an over-limit reply, or a
    /// return value not shaped as its own ([`Answer::Return`]).
    Failed {
        /// The command.
        command: &'static str,
        /// How it answered.
        answer: Answer<'a>,
    },
}

/// Where an [`Exec`] is.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `guest-exec` in flight.
    Starting(Id),
    /// The program runs: ask for its status now (in `advance`).
    Due(i64),
    /// The program runs: ask for its status after a pause.
    Paused(i64),
    /// `guest-exec-status` in flight.
    Polling(i64, Id),
}

impl Step {
    /// The id of the command in flight.
    fn id(&self) -> Option<&Id> {
        match self {
            Step::Starting(id) | Step::Polling(_, id) => Some(id),
            Step::Due(_) | Step::Paused(_) => None,
        }
    }
}

/// The first pause between two `guest-exec-status`; each next one doubles, up to [`EXEC_POLL_MAX`].
pub const EXEC_POLL_FIRST: Duration = Duration::from_millis(2);
/// The longest pause between two `guest-exec-status`.
pub const EXEC_POLL_MAX: Duration = Duration::from_millis(100);

/// Runs a program in the guest to its end: `guest-exec` (with
/// `capture-output`), then `guest-exec-status` until it has exited, after
/// a pause ([`Operation::pause`]) that doubles from [`EXEC_POLL_FIRST`] up
/// to [`EXEC_POLL_MAX`]; `done` makes the caller's value of how it ended.
#[derive(Debug)]
pub struct Exec<F> {
    step: Step,
    pause: Duration,
    done: Finish<F>,
}

impl<F> Exec<F> {
    /// Queues `guest-exec` of `path` with `args`, `env` (`NAME=value`
    /// entries) and `input` (its standard input).
    pub fn new<S: Storage>(
        client: &mut Client<S>,
        path: &str,
        args: &[&str],
        env: &[&str],
        input: Option<&[u8]>,
        done: F,
    ) -> Result<Self, Error> {
        let id = client.execute_with("guest-exec", |a: &mut ObjectWriter<'_, S::Tx>| {
            a.str("path", path)?;
            if !args.is_empty() {
                a.array("arg", |arr| args.iter().try_for_each(|s| arr.str(s).map(drop)))?;
            }
            if !env.is_empty() {
                a.array("env", |arr| env.iter().try_for_each(|s| arr.str(s).map(drop)))?;
            }
            if let Some(input) = input {
                a.base64("input-data", input)?;
            }
            a.bool("capture-output", true).map(drop)
        })?;
        Ok(Exec { step: Step::Starting(id), pause: EXEC_POLL_FIRST, done: Finish::new(done) })
    }

    /// The id of the command in flight.
    fn in_flight(&self) -> Option<&Id> {
        self.step.id()
    }

    /// The program's pid while the agent's last word is that it runs and
    /// no `guest-exec-status` is in flight (between two looks): a deadline
    /// that passes now leaves the program running in the guest, where it
    /// goes on (the agent has no command to stop it).
    pub fn running(&self) -> Option<i64> {
        match self.step {
            Step::Due(pid) | Step::Paused(pid) => Some(pid),
            Step::Starting(_) | Step::Polling(..) => None,
        }
    }

    /// The command in flight.
    fn command(&self) -> &'static str {
        match self.step {
            Step::Starting(_) => "guest-exec",
            _ => "guest-exec-status",
        }
    }

    /// Queues `guest-exec-status` for `pid`.
    fn ask<S: Storage>(&mut self, client: &mut Client<S>, pid: i64) -> Result<(), Error> {
        let id =
            client.execute_with("guest-exec-status", |a: &mut ObjectWriter<'_, S::Tx>| a.i64("pid", pid).map(drop))?;
        self.step = Step::Polling(pid, id);
        Ok(())
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Ran<'a>) -> T> Operation<Client<S>> for Exec<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let command = self.command();
        let ran = match step_answer(self.step.id(), event) {
            Err(offer) => return offer,
            Ok(Answer::Return(value)) => match &self.step {
                Step::Starting(_) => match value.get("pid").and_then(|p| p.as_i64()) {
                    Some(pid) => {
                        self.step = Step::Due(pid);
                        return Offer::Taken;
                    }
                    None => Ran::Failed { command, answer: Answer::Return(value) },
                },
                Step::Polling(pid, _) => match ExecStatus::parse(value) {
                    Some(status) if status.exited => Ran::Exited(status),
                    Some(_) => {
                        self.step = Step::Paused(*pid);
                        return Offer::Taken;
                    }
                    None => Ran::Failed { command, answer: Answer::Return(value) },
                },
                Step::Due(_) | Step::Paused(_) => return Offer::Taken,
            },
            Ok(answer) => Ran::Failed { command, answer },
        };
        self.done.with(ran)
    }

    fn advance(&mut self, client: &mut Client<S>) -> Result<Option<T>, Error> {
        if let Step::Due(pid) = self.step {
            self.ask(client, pid)?;
        }
        Ok(None)
    }

    fn request(&self) -> Option<&Id> {
        self.in_flight()
    }

    fn pause(&self) -> Option<Duration> {
        matches!(self.step, Step::Paused(_)).then_some(self.pause)
    }

    fn resume(&mut self, client: &mut Client<S>) -> Result<Option<T>, Error> {
        if let Step::Paused(pid) = self.step {
            self.pause = (self.pause * 2).min(EXEC_POLL_MAX);
            self.ask(client, pid)?;
        }
        Ok(None)
    }
}

/// How a file transfer ended, as [`Transfer`] hands it over. The guest's
/// handle is closed in every case but a failed `guest-file-open`.
#[derive(Debug, Clone)]
pub enum Transferred<'a> {
    /// Every byte went: how many.
    Done(u64),
    /// The caller's side (its writer or reader) failed: the caller knows why.
    Stopped,
    /// `command` did not answer as it does: its error, the session's end,
    /// an over-limit reply, or a return value not shaped as its own.
    Failed {
        /// The command.
        command: &'static str,
        /// How it answered.
        answer: Answer<'a>,
    },
    /// A chunk's data is not base64.
    Base64(crate::base64::Error),
    /// A chunk's count disagrees with its data.
    Miscounted {
        /// The count the agent gave.
        said: u64,
        /// The bytes there were.
        got: u64,
    },
}

/// What a chunk's reply said.
#[derive(Debug)]
pub enum Chunked {
    /// This many bytes went; more may follow.
    More(u64),
    /// This many bytes went, the last.
    Last(u64),
    /// See [`Transferred::Stopped`].
    Stopped,
    /// Not shaped as the command's reply.
    Unexpected,
    /// See [`Transferred::Base64`].
    Base64(crate::base64::Error),
    /// See [`Transferred::Miscounted`].
    Miscounted {
        /// The count the agent gave.
        said: u64,
        /// The bytes there were.
        got: u64,
    },
}

/// The next chunk's request.
#[derive(Debug)]
pub enum Next {
    /// Queued, under this id.
    Sent(Id),
    /// Nothing more to send.
    End,
    /// See [`Transferred::Stopped`].
    Stopped,
}

/// Which way a [`Transfer`] goes: the mode it opens the file in, and its chunks.
pub trait Direction {
    /// `guest-file-open`'s mode.
    const MODE: &'static str;
    /// The command that carries one chunk.
    const COMMAND: &'static str;
    /// Queues the next chunk's command on `handle`, of at most `chunk` bytes.
    fn next<S: Storage>(&mut self, client: &mut Client<S>, handle: i64, chunk: u64) -> Result<Next, Error>;
    /// The chunk's return value.
    fn answered(&mut self, value: Value<'_>) -> Chunked;
}

/// A guest file read into the caller's sink (a `put` that fails stops the
/// transfer: [`Transferred::Stopped`]).
#[derive(Debug)]
pub struct Reading<W>(pub W);

/// A sink that counts what it is given.
struct Counted<'w, W> {
    sink: &'w mut W,
    count: u64,
}

impl<W: crate::buf::Sink> crate::buf::Sink for Counted<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), crate::buf::Full> {
        self.sink.put(bytes)?;
        self.count += bytes.len() as u64;
        Ok(())
    }
}

impl<W: crate::buf::Sink> Direction for Reading<W> {
    const MODE: &'static str = "rb";
    const COMMAND: &'static str = "guest-file-read";

    fn next<S: Storage>(&mut self, client: &mut Client<S>, handle: i64, chunk: u64) -> Result<Next, Error> {
        client
            .execute_with(Self::COMMAND, |a: &mut ObjectWriter<'_, S::Tx>| {
                a.i64("handle", handle)?.u64("count", chunk).map(drop)
            })
            .map(Next::Sent)
    }

    fn answered(&mut self, value: Value<'_>) -> Chunked {
        let Some(read) = super::FileRead::parse(value) else { return Chunked::Unexpected };
        let mut out = Counted { sink: &mut self.0, count: 0 };
        match crate::base64::decode_json(&mut out, read.data) {
            Ok(()) if out.count != read.count => Chunked::Miscounted { said: read.count, got: out.count },
            Ok(()) if read.eof || read.count == 0 => Chunked::Last(read.count),
            Ok(()) => Chunked::More(read.count),
            Err(crate::base64::Error::Full(_)) => Chunked::Stopped,
            Err(e) => Chunked::Base64(e),
        }
    }
}

/// Where a written file's bytes come from (the caller's reader).
pub trait Source {
    /// The next chunk, of at most `max` bytes (empty at the end), or `None`
    /// if the reader failed (the transfer stops: [`Transferred::Stopped`]).
    fn chunk(&mut self, max: usize) -> Option<&[u8]>;
}

/// A guest file written from the caller's [`Source`].
#[derive(Debug)]
pub struct Writing<R> {
    /// The source.
    pub source: R,
    sent: u64,
}

impl<R> Writing<R> {
    /// Writes what `source` gives.
    pub fn new(source: R) -> Self {
        Writing { source, sent: 0 }
    }
}

impl<R: Source> Direction for Writing<R> {
    const MODE: &'static str = "wb";
    const COMMAND: &'static str = "guest-file-write";

    fn next<S: Storage>(&mut self, client: &mut Client<S>, handle: i64, chunk: u64) -> Result<Next, Error> {
        let max = usize::try_from(chunk).unwrap_or(usize::MAX);
        let Some(bytes) = self.source.chunk(max) else { return Ok(Next::Stopped) };
        if bytes.is_empty() {
            return Ok(Next::End);
        }
        self.sent = bytes.len() as u64;
        client
            .execute_with(Self::COMMAND, |a: &mut ObjectWriter<'_, S::Tx>| {
                a.i64("handle", handle)?.base64("buf-b64", bytes).map(drop)
            })
            .map(Next::Sent)
    }

    fn answered(&mut self, value: Value<'_>) -> Chunked {
        match value.get("count").and_then(|c| c.as_u64()) {
            None => Chunked::Unexpected,
            Some(said) if said != self.sent => Chunked::Miscounted { said, got: self.sent },
            Some(said) => Chunked::More(said),
        }
    }
}

/// Where a [`Transfer`] is.
#[derive(Debug)]
enum FileStep {
    /// `guest-file-open` in flight.
    Opening(Id),
    /// Open: queue the next chunk (in `advance`).
    Due(i64),
    /// A chunk's command in flight.
    Chunk(i64, Id),
    /// Over: close the handle (in `advance`).
    Closing(i64),
    /// `guest-file-close` in flight.
    Closed(Id),
    /// Finished.
    Over,
}

impl FileStep {
    /// The id of the command in flight.
    fn id(&self) -> Option<&Id> {
        match self {
            FileStep::Opening(id) | FileStep::Chunk(_, id) | FileStep::Closed(id) => Some(id),
            _ => None,
        }
    }
}

/// A file transfer: `guest-file-open`, a chunk's command at a time until
/// the file or the source ends, and `guest-file-close` whatever happened
/// once the file is open; `done` makes the caller's value of how it ended.
/// A chunk's failure is made into the caller's value at once (its reply is
/// borrowed), and handed over once the handle is closed.
#[derive(Debug)]
pub struct Transfer<D, F, T> {
    data: D,
    chunk: u64,
    step: FileStep,
    total: u64,
    done: Finish<F>,
    failed: Option<T>,
}

impl<D: Direction, F, T> Transfer<D, F, T> {
    /// Queues `guest-file-open` of `path`; chunks of `chunk` bytes.
    pub fn new<S: Storage>(client: &mut Client<S>, path: &str, data: D, chunk: u64, done: F) -> Result<Self, Error> {
        let id = client.execute_with("guest-file-open", |a: &mut ObjectWriter<'_, S::Tx>| {
            a.str("path", path)?.str("mode", D::MODE).map(drop)
        })?;
        let step = FileStep::Opening(id);
        Ok(Transfer { data, chunk: chunk.max(1), step, total: 0, done: Finish::new(done), failed: None })
    }

    /// The caller's side, back (its writer, its reader).
    pub fn into_data(self) -> D {
        self.data
    }

    fn in_flight(&self) -> Option<&Id> {
        self.step.id()
    }

    fn command(&self) -> &'static str {
        match self.step {
            FileStep::Opening(_) => "guest-file-open",
            FileStep::Closed(_) => "guest-file-close",
            _ => D::COMMAND,
        }
    }

    /// Finishes now, or (the handle open) keeps the ending for after the close.
    fn end<E>(&mut self, ended: Transferred<'_>) -> Offer<E, T>
    where
        F: FnOnce(Transferred<'_>) -> T,
    {
        let handle = match self.step {
            FileStep::Due(handle) | FileStep::Chunk(handle, _) => handle,
            _ => {
                // The close's own failure counts only if nothing failed before it.
                self.step = FileStep::Over;
                return match self.failed.take() {
                    Some(output) => Offer::Done(output),
                    None => self.done.with(ended),
                };
            }
        };
        if !matches!(ended, Transferred::Done(_)) {
            if let Offer::Done(output) = self.done.with::<_, E, T>(ended) {
                self.failed = Some(output);
            }
        }
        self.step = FileStep::Closing(handle);
        Offer::Taken
    }
}

impl<S: Storage, D: Direction, T, F: for<'a> FnOnce(Transferred<'a>) -> T> Operation<Client<S>> for Transfer<D, F, T> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let command = self.command();
        let value = match step_answer(self.step.id(), event) {
            Err(offer) => return offer,
            Ok(Answer::Return(value)) => value,
            Ok(answer) => {
                if matches!(answer, Answer::Closed) {
                    self.step = FileStep::Over; // no closing over a closed session
                }
                return self.end(Transferred::Failed { command, answer });
            }
        };
        match self.step {
            FileStep::Opening(_) => match value.as_i64() {
                Some(handle) => {
                    self.step = FileStep::Due(handle);
                    Offer::Taken
                }
                None => self.end(Transferred::Failed { command, answer: Answer::Return(value) }),
            },
            FileStep::Chunk(handle, _) => match self.data.answered(value) {
                Chunked::More(n) => {
                    self.total += n;
                    self.step = FileStep::Due(handle);
                    Offer::Taken
                }
                Chunked::Last(n) => {
                    self.total += n;
                    self.end(Transferred::Done(self.total))
                }
                Chunked::Stopped => self.end(Transferred::Stopped),
                Chunked::Unexpected => self.end(Transferred::Failed { command, answer: Answer::Return(value) }),
                Chunked::Base64(e) => self.end(Transferred::Base64(e)),
                Chunked::Miscounted { said, got } => self.end(Transferred::Miscounted { said, got }),
            },
            FileStep::Closed(_) => {
                self.step = FileStep::Over;
                match self.failed.take() {
                    Some(output) => Offer::Done(output),
                    None => self.done.with(Transferred::Done(self.total)),
                }
            }
            _ => Offer::Taken,
        }
    }

    fn advance(&mut self, client: &mut Client<S>) -> Result<Option<T>, Error> {
        if let FileStep::Due(handle) = self.step {
            match self.data.next(client, handle, self.chunk)? {
                Next::Sent(id) => self.step = FileStep::Chunk(handle, id),
                Next::End => self.step = FileStep::Closing(handle),
                Next::Stopped => {
                    if let Offer::Done(output) = self.done.with::<_, Event<'_>, T>(Transferred::Stopped) {
                        self.failed = Some(output);
                    }
                    self.step = FileStep::Closing(handle);
                }
            }
        }
        if let FileStep::Closing(handle) = self.step {
            let id = client.execute_with("guest-file-close", |a: &mut ObjectWriter<'_, S::Tx>| {
                a.i64("handle", handle).map(drop)
            })?;
            self.step = FileStep::Closed(id);
        }
        Ok(None)
    }

    fn request(&self) -> Option<&Id> {
        self.in_flight()
    }
}
