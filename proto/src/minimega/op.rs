//! minimega's operations: the next part of a reply, of a pipe, or of the
//! daemon's status messages.

use super::{Client, Error, Event, Frame, Strings, Summary};
use crate::buf::Storage;
use crate::json::JsonStr;
use crate::op::{Finish, Offer, Operation};

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The next part of the reply in progress (a frame, its end, or the
    /// completions asked for).
    Reply,
    /// The next status message, while no command runs.
    Status,
    /// The next string of a plumbing pipe.
    Pipe,
}

/// What came, as [`Next`] hands it over.
#[derive(Debug, Clone)]
pub enum Part<'a> {
    /// A frame of the reply.
    Frame(Frame<'a>),
    /// A frame (or a pipe's message) that could not be read; the reply goes on.
    Malformed(Error),
    /// The reply's end.
    End(Summary),
    /// The completions asked for.
    Suggestions(Strings<'a>),
    /// A status message.
    Status(JsonStr<'a>),
    /// A pipe's string.
    Pipe(JsonStr<'a>),
    /// The reply cannot go on ([`Error::closes`]): the machine has
    /// failed it and closed; the adapter closes its stream too.
    Fatal(Error),
    /// The session closed in the middle of the reply.
    Failed(Summary),
    /// The session is closed.
    Closed,
}

/// Waits for the next part of what `want` names, and makes `part` of it.
/// Status messages that come meanwhile go to the inbox.
#[derive(Debug)]
pub struct Next<F> {
    want: Want,
    part: Finish<F>,
}

impl<F> Next<F> {
    /// The operation.
    pub fn new(want: Want, part: F) -> Self {
        Next { want, part: Finish::new(part) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Part<'a>) -> T> Operation<Client<S>> for Next<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let part = match (self.want, event) {
            (Want::Reply, Event::Malformed(e)) if e.closes() => Part::Fatal(e),
            (Want::Reply, Event::Frame(f)) => Part::Frame(f),
            (Want::Reply | Want::Pipe, Event::Malformed(e)) => Part::Malformed(e),
            (Want::Reply, Event::End(summary)) => Part::End(summary),
            (Want::Reply, Event::Suggestions(s)) => Part::Suggestions(s),
            (Want::Status, Event::Status(text)) => Part::Status(text),
            (Want::Pipe, Event::Pipe(text)) => Part::Pipe(text),
            (_, Event::Failed(summary)) => Part::Failed(summary),
            (_, Event::Closed) => Part::Closed,
            (_, other) => return Offer::Pass(other),
        };
        self.part.with(part)
    }

    /// A reply is the request's; a status message or a pipe's string asks
    /// nothing (waiting for one in vain changes nothing).
    fn request(&self) -> Option<&()> {
        (self.want == Want::Reply).then_some(&())
    }
}
