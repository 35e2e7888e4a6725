//! QMP's operations: a command's reply, and the opening negotiation.

use super::{AsyncEvent, Client, Error, ErrorReply, Event, Greeting, Id};
use crate::buf::Storage;
use crate::json::Value;
use crate::op::{Finish, Offer, Operation};

/// How a command ended, as [`ReplyTo`] hands it to its caller.
#[derive(Debug, Clone)]
pub enum Answer<'a> {
    /// It succeeded: its `return` value.
    Return(Value<'a>),
    /// QEMU said no.
    Error(ErrorReply<'a>),
    /// A message with the command's id that is not a valid reply
    /// ([`Event::MalformedReply`]).
    Malformed(Error),
    /// The session closed before the reply came.
    Closed,
}

impl<'a> Answer<'a> {
    /// The command `event` answers, and how: or the event handed back, if it
    /// answers no command (an asynchronous event, a stale or unmatched
    /// reply, [`Event::Closed`]). What an adapter that waits for many
    /// commands at once routes by.
    pub fn of(event: Event<'a>) -> Result<(&'a Id, Answer<'a>), Event<'a>> {
        match event {
            Event::Return { id, value } => Ok((id, Answer::Return(value))),
            Event::Error { id, error } => Ok((id, Answer::Error(error))),
            Event::MalformedReply { id, error } => Ok((id, Answer::Malformed(error))),
            Event::Failed { id } => Ok((id, Answer::Closed)),
            other => Err(other),
        }
    }

    /// The event [`Answer::of`] took apart, whole again.
    fn into_event(self, id: &'a Id) -> Event<'a> {
        match self {
            Answer::Return(value) => Event::Return { id, value },
            Answer::Error(error) => Event::Error { id, error },
            Answer::Malformed(error) => Event::MalformedReply { id, error },
            Answer::Closed => Event::Failed { id },
        }
    }
}

/// Waits for the reply to command `id`, and makes `answer` of it.
#[derive(Debug)]
pub struct ReplyTo<F> {
    id: Id,
    answer: Finish<F>,
}

impl<F> ReplyTo<F> {
    /// The operation for command `id` (sent with [`Client::send`] or one of
    /// its kin), finished by `answer`.
    pub fn new(id: Id, answer: F) -> Self {
        ReplyTo { id, answer: Finish::new(answer) }
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
            Event::Closed => Answer::Closed,
            event => match Answer::of(event) {
                Ok((id, answer)) if *id == self.id => answer,
                Ok((id, answer)) => return Offer::Pass(answer.into_event(id)),
                Err(other) => return Offer::Pass(other),
            },
        };
        self.answer.with(answer)
    }

    fn request(&self) -> Option<&Id> {
        Some(&self.id)
    }
}

/// How the opening negotiation ended, as [`Negotiation`] hands it over.
#[derive(Debug, Clone)]
pub enum Negotiated<'a> {
    /// Capabilities negotiated; commands may go out.
    Ready {
        /// Whether out-of-band execution is on.
        oob: bool,
    },
    /// QEMU refused `qmp_capabilities`; the session is closed.
    Refused(ErrorReply<'a>),
    /// What came first was not a greeting ([`Event::NotGreeting`]).
    NotGreeting {
        /// What arrived instead, as far as it had.
        received: &'a [u8],
        /// Why it is not a greeting.
        error: Error,
    },
    /// The session closed before it was ready.
    Closed,
}

/// The greeting and capabilities negotiation of a fresh [`Client`]: hands
/// the greeting to `greeting`, and how it ended to `done`.
#[derive(Debug)]
pub struct Negotiation<G, F> {
    greeting: G,
    done: Finish<F>,
}

impl<G, F> Negotiation<G, F> {
    /// The negotiation, with what to do with the greeting and with the end.
    pub fn new(greeting: G, done: F) -> Self {
        Negotiation { greeting, done: Finish::new(done) }
    }
}

impl<S, T, G, F> Operation<Client<S>> for Negotiation<G, F>
where
    S: Storage,
    G: for<'a> FnMut(&Greeting<'a>),
    F: for<'a> FnOnce(Negotiated<'a>) -> T,
{
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let end = match event {
            Event::Greeting(g) => {
                (self.greeting)(&g);
                return Offer::Taken;
            }
            Event::Ready { oob } => Negotiated::Ready { oob },
            Event::NegotiationFailed(e) => Negotiated::Refused(e),
            Event::NotGreeting { received, error } => Negotiated::NotGreeting { received, error },
            Event::Closed => Negotiated::Closed,
            other => return Offer::Pass(other),
        };
        self.done.with(end)
    }

    /// The negotiation is the session's own: no caller's request.
    fn request(&self) -> Option<&Id> {
        None
    }
}

/// Waits for QEMU's next asynchronous event: hands it to `next`, or `None`
/// when the session closes first. Everything else goes to the inbox.
#[derive(Debug)]
pub struct NextEvent<F> {
    next: Finish<F>,
}

impl<F> NextEvent<F> {
    /// The operation, finished by `next`.
    pub fn new(next: F) -> Self {
        NextEvent { next: Finish::new(next) }
    }
}

impl<S, T, F> Operation<Client<S>> for NextEvent<F>
where
    S: Storage,
    F: for<'a> FnOnce(Option<AsyncEvent<'a>>) -> T,
{
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let next = match event {
            Event::Event(e) => Some(e),
            Event::Closed => None,
            other => return Offer::Pass(other),
        };
        self.next.with(next)
    }

    /// Waiting for an event asks nothing of QEMU.
    fn request(&self) -> Option<&Id> {
        None
    }
}
