//! The human monitor's operations: a command line's output, and the banner.

use super::{Banner, Client, Error, Event};
use crate::buf::Storage;
use crate::op::{Finish, Offer, Operation};

/// How a command line ended, as [`ReplyTo`] hands it to its caller.
#[derive(Debug, Clone)]
pub enum Answer<'a> {
    /// Its prompt came back after this output.
    Output(&'a [u8]),
    /// Its output was over the limit, and was dropped.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The echo before its output was not this line ([`Event::Malformed`]):
    /// what QEMU ran, and so printed, is not known to be this line's.
    Mismatch(Error),
    /// QEMU had read the whole line, ran it, and closed the monitor (as
    /// `quit` does); what it printed before.
    RanThenClosed(&'a [u8]),
    /// The session closed before the line finished (it may not have run).
    Closed,
}

/// Waits for one command line's output, and makes `answer` of it. Lines
/// queued before it (earlier ones whose caller gave up) finish first: what
/// they print is theirs.
#[derive(Debug)]
pub struct ReplyTo<F> {
    id: u64,
    ahead: usize,
    mismatch: Option<Error>,
    answer: Finish<F>,
}

impl<F> ReplyTo<F> {
    /// The operation for line `id`, just queued on `client` with
    /// [`Client::command`].
    pub fn new<S: Storage>(client: &Client<S>, id: u64, answer: F) -> Self {
        ReplyTo { id, ahead: client.queued().saturating_sub(1), mismatch: None, answer: Finish::new(answer) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Answer<'a>) -> T> Operation<Client<S>> for ReplyTo<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let answer = match event {
            Event::Output { id, text } if id == self.id => match self.mismatch.take() {
                Some(e) => Answer::Mismatch(e),
                None => Answer::Output(text),
            },
            Event::TooLarge { id, limit } if id == self.id => match self.mismatch.take() {
                Some(e) => Answer::Mismatch(e),
                None => Answer::TooLarge { limit },
            },
            Event::Output { .. } | Event::TooLarge { .. } | Event::Failed { .. } if self.ahead > 0 => {
                self.ahead -= 1;
                return Offer::Taken;
            }
            Event::Malformed(e) if self.ahead == 0 => {
                self.mismatch = Some(e);
                return Offer::Taken;
            }
            Event::Failed { id, output } if id == self.id => match output {
                Some(text) => Answer::RanThenClosed(text),
                None => Answer::Closed,
            },
            Event::Closed => Answer::Closed,
            // Unsolicited text, or an earlier line's output or echo: not this line's.
            other => return Offer::Pass(other),
        };
        self.answer.with(answer)
    }

    fn request(&self) -> Option<&u64> {
        Some(&self.id)
    }
}

/// How the wait for the first prompt ended, as [`Opening`] hands it over.
#[derive(Debug, Clone)]
pub enum Opened<'a> {
    /// The banner, and the first prompt after it.
    Banner(Banner<'a>),
    /// Not a monitor's banner ([`Event::BadBanner`]).
    BadBanner {
        /// [`Error::NotHmp`] or [`Error::BannerTooLong`].
        error: Error,
        /// The first bytes received.
        text: &'a [u8],
    },
    /// The session closed first.
    Closed,
}

/// Waits for the banner and the first prompt of a fresh [`Client`].
#[derive(Debug)]
pub struct Opening<F> {
    done: Finish<F>,
}

impl<F> Opening<F> {
    /// The operation, finished by `done`.
    pub fn new(done: F) -> Self {
        Opening { done: Finish::new(done) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Opened<'a>) -> T> Operation<Client<S>> for Opening<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let end = match event {
            Event::Banner(b) => Opened::Banner(b),
            Event::BadBanner { error, text } => Opened::BadBanner { error, text },
            Event::Closed => Opened::Closed,
            other => return Offer::Pass(other),
        };
        self.done.with(end)
    }

    /// The banner is the session's own: no line's.
    fn request(&self) -> Option<&u64> {
        None
    }
}
