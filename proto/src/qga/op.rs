//! The guest agent's operations: a command's reply, and a sync.

use super::{Client, Error, ErrorReply, Event, Id, QUIET_COMMANDS, State};
use crate::Machine;
use crate::buf::Storage;
use crate::json::{self, Value};
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
        let answer = match event {
            Event::Return { id, value } if id == self.id => Answer::Return(value),
            Event::Accepted { id } if id == self.id => Answer::Accepted,
            Event::Error { id, error } if id == self.id => Answer::Error(error),
            Event::Failed { id } if id == self.id => Answer::Closed,
            Event::Closed => Answer::Closed,
            Event::Malformed(Error::Json(json::Error { kind: json::ErrorKind::TooLarge { limit }, .. })) => {
                // Forgotten (in `advance`, with the machine free), then finished.
                self.too_large = Some(limit);
                return Offer::Taken;
            }
            other => return Offer::Pass(other),
        };
        self.answer.with(answer)
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
