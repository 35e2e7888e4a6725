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
    /// The reply was over the size limit, and was skipped (one command is
    /// in flight: it was this one's). The command is forgotten.
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The session closed before the reply came.
    Closed,
}

/// What an event is to the command sent as `id`.
enum Reply<'a> {
    /// Its answer.
    Answer(Answer<'a>),
    /// Its reply, over the size limit (one command is in flight: it was this one's).
    TooLarge(usize),
    /// Not its own.
    Pass(Event<'a>),
}

fn reply_to<'a>(own: &Id, event: Event<'a>) -> Reply<'a> {
    Reply::Answer(match event {
        Event::Return { id, value } if id == *own => Answer::Return(value),
        Event::Accepted { id } if id == *own => Answer::Accepted,
        Event::Error { id, error } if id == *own => Answer::Error(error),
        Event::Failed { id } if id == *own => Answer::Closed,
        Event::Closed => Answer::Closed,
        Event::Malformed(Error::Json(json::Error { kind: json::ErrorKind::TooLarge { limit }, .. })) => {
            return Reply::TooLarge(limit);
        }
        other => return Reply::Pass(other),
    })
}

/// Waits for the reply to one command, and makes `answer` of it.
#[derive(Debug)]
pub struct ReplyTo<F> {
    id: Id,
    answer: Finish<F>,
    too_large: Option<usize>,
}

impl<F> ReplyTo<F> {
    /// The operation for command `name`, sent as `id`. A command that does
    /// not answer when it succeeds ([`QUIET_COMMANDS`]) gets a `guest-ping`
    /// queued behind it, whose reply shows that it did.
    pub fn new<S: Storage>(client: &mut Client<S>, name: &str, id: Id, answer: F) -> Result<Self, Error> {
        if QUIET_COMMANDS.contains(&name) {
            client.execute("guest-ping", None)?;
        }
        Ok(ReplyTo { id, answer: Finish::new(answer), too_large: None })
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
            Reply::Answer(answer) => self.answer.with(answer),
            Reply::TooLarge(limit) => {
                // Forgotten (in `advance`, with the machine free), then finished.
                self.too_large = Some(limit);
                Offer::Taken
            }
            Reply::Pass(other) => Offer::Pass(other),
        }
    }

    fn advance(&mut self, client: &mut Client<S>) -> Result<Option<T>, Error> {
        let Some(limit) = self.too_large.take() else { return Ok(None) };
        client.forget(&self.id);
        Ok(match self.answer.with::<_, Event<'_>, T>(Answer::TooLarge { limit }) {
            Offer::Done(output) => Some(output),
            _ => None,
        })
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
    too_large: Option<usize>,
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
        Ok(Exec { step: Step::Starting(id), pause: EXEC_POLL_FIRST, too_large: None, done: Finish::new(done) })
    }

    /// The id of the command in flight.
    fn in_flight(&self) -> Option<&Id> {
        match &self.step {
            Step::Starting(id) | Step::Polling(_, id) => Some(id),
            Step::Due(_) | Step::Paused(_) => None,
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
        let Some(own) = self.in_flight() else { return Offer::Pass(event) };
        let command = self.command();
        let ran = match reply_to(own, event) {
            Reply::Pass(other) => return Offer::Pass(other),
            Reply::TooLarge(limit) => {
                self.too_large = Some(limit);
                return Offer::Taken;
            }
            Reply::Answer(Answer::Return(value)) => match &self.step {
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
            Reply::Answer(answer) => Ran::Failed { command, answer },
        };
        self.done.with(ran)
    }

    fn advance(&mut self, client: &mut Client<S>) -> Result<Option<T>, Error> {
        if let Some(limit) = self.too_large.take() {
            let command = self.command();
            if let Some(id) = self.in_flight() {
                client.forget(id);
            }
            return Ok(
                match self.done.with::<_, Event<'_>, T>(Ran::Failed { command, answer: Answer::TooLarge { limit } }) {
                    Offer::Done(output) => Some(output),
                    _ => None,
                },
            );
        }
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
