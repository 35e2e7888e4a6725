//! Waiting for a XenAPI task: `task.get_status` until it has finished,
//! then its result or its error, then `task.destroy`.

use core::time::Duration;

use super::{Event, Session, TaskStatus};
use crate::buf::Storage;
use crate::http;
use crate::op::{Finish, Offer, Operation};
use crate::xmlrpc::{Value, XmlStr};

/// How a task ended, as [`WaitTask`] hands it over.
#[derive(Debug)]
pub enum TaskEnded<'a> {
    /// It succeeded: `task.get_result`'s value (the method's result as an
    /// XML-RPC `<value>` document, see [`super::task_result`]).
    Success(Value<'a>),
    /// It failed or was cancelled: `task.get_error_info`'s value (xapi's
    /// error code and its params; empty when cancelled).
    Failure(Value<'a>),
    /// `task.get_status` answered a word that is not a task status.
    UnknownStatus,
    /// `method` could not be queued (the session is not logged in any more).
    NotQueued {
        /// The method.
        method: &'static str,
        /// Why.
        error: super::Error,
    },
    /// `method` did not answer with a value: the session's event (xapi's
    /// failure, a fault, an HTTP status, a lost connection…).
    Failed {
        /// The method.
        method: &'static str,
        /// What came instead.
        event: Event<'a>,
    },
}

/// Where a [`WaitTask`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `task.get_status` in flight.
    Status,
    /// The task runs: ask again after the interval.
    Paused,
    /// The task has finished: ask how (in `advance`).
    Finished(TaskStatus),
    /// `task.get_result` or `task.get_error_info` in flight.
    Outcome(TaskStatus),
    /// Ended: destroy the task (in `advance`).
    Destroy,
    /// `task.destroy` in flight (its answer does not matter).
    Destroying,
}

impl TaskStatus {
    /// Reads xapi's word for it, as it stands in a response.
    fn from_xml(s: XmlStr<'_>) -> Option<Self> {
        let words = [
            ("pending", TaskStatus::Pending),
            ("success", TaskStatus::Success),
            ("failure", TaskStatus::Failure),
            ("cancelling", TaskStatus::Cancelling),
            ("cancelled", TaskStatus::Cancelled),
        ];
        words.into_iter().find(|(word, _)| s == *word).map(|(_, status)| status)
    }
}

/// Waits for task `task` to finish: `task.get_status` every `interval`
/// (a pause, [`Operation::pause`]), then `task.get_result` (it succeeded)
/// or `task.get_error_info` (it failed or was cancelled), made into the
/// caller's value by `done`, then `task.destroy`. A call that fails ends
/// it at once, the task left as it is.
#[derive(Debug)]
pub struct WaitTask<'t, F, T> {
    task: &'t str,
    interval: Duration,
    step: Step,
    done: Finish<F>,
    ended: Option<T>,
}

impl<'t, F, T> WaitTask<'t, F, T> {
    /// Queues the first `task.get_status` of `task` on `session`.
    pub fn new<S: Storage>(
        session: &mut Session<S>,
        task: &'t str,
        interval: Duration,
        done: F,
    ) -> Result<Self, super::Error> {
        let mut wait = WaitTask { task, interval, step: Step::Status, done: Finish::new(done), ended: None };
        wait.ask(session, "task.get_status", Step::Status)?;
        Ok(wait)
    }

    fn ask<S: Storage>(&mut self, session: &mut Session<S>, method: &str, step: Step) -> Result<(), super::Error> {
        let task = self.task;
        session.call(method, |p| p.string(task).map(drop))?;
        self.step = step;
        Ok(())
    }

    /// Hands over the ending kept while the task was destroyed.
    fn finish<E>(&mut self) -> Offer<E, T> {
        match self.ended.take() {
            Some(output) => Offer::Done(output),
            None => Offer::Taken,
        }
    }

    /// The method in flight.
    fn method(&self) -> &'static str {
        match self.step {
            Step::Outcome(TaskStatus::Success) => "task.get_result",
            Step::Outcome(_) => "task.get_error_info",
            Step::Destroying => "task.destroy",
            _ => "task.get_status",
        }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(TaskEnded<'a>) -> T> Operation<Session<S>> for WaitTask<'_, F, T> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, T>
    where
        S: 'a,
    {
        let method = self.method();
        let value = match event {
            Event::Relogin { .. } => return Offer::Pass(event),
            Event::Result(value) => value,
            _ if self.step == Step::Destroying => return self.finish(),
            event => return self.done.with(TaskEnded::Failed { method, event }),
        };
        match self.step {
            Step::Status => match value.as_str().and_then(TaskStatus::from_xml) {
                Some(status) if status.is_finished() => {
                    self.step = Step::Finished(status);
                    Offer::Taken
                }
                Some(_) => {
                    self.step = Step::Paused;
                    Offer::Taken
                }
                None => self.done.with(TaskEnded::UnknownStatus),
            },
            Step::Outcome(status) => {
                let ended = match status {
                    TaskStatus::Success => TaskEnded::Success(value),
                    _ => TaskEnded::Failure(value),
                };
                if let Offer::Done(output) = self.done.with::<_, Event<'a>, T>(ended) {
                    self.ended = Some(output);
                }
                self.step = Step::Destroy;
                Offer::Taken
            }
            Step::Destroying => self.finish(),
            Step::Paused | Step::Finished(_) | Step::Destroy => Offer::Taken,
        }
    }

    fn advance(&mut self, session: &mut Session<S>) -> Result<Option<T>, http::Error> {
        let (method, step) = match self.step {
            Step::Finished(status @ TaskStatus::Success) => ("task.get_result", Step::Outcome(status)),
            Step::Finished(status) => ("task.get_error_info", Step::Outcome(status)),
            Step::Destroy => ("task.destroy", Step::Destroying),
            _ => return Ok(None),
        };
        Ok(self.queue(session, method, step))
    }

    /// One request at a time: the one outstanding.
    fn request(&self) -> Option<&()> {
        matches!(self.step, Step::Status | Step::Outcome(_) | Step::Destroying).then_some(&())
    }

    fn pause(&self) -> Option<Duration> {
        (self.step == Step::Paused).then_some(self.interval)
    }

    fn resume(&mut self, session: &mut Session<S>) -> Result<Option<T>, http::Error> {
        Ok(self.queue(session, "task.get_status", Step::Status))
    }
}

impl<'t, T, F: for<'a> FnOnce(TaskEnded<'a>) -> T> WaitTask<'t, F, T> {
    /// Queues `method`; if it cannot be, the wait ends (with what it
    /// ended with already, if the task was being destroyed).
    fn queue<S: Storage>(&mut self, session: &mut Session<S>, method: &'static str, step: Step) -> Option<T> {
        let error = self.ask(session, method, step).err()?;
        match self.ended.take() {
            Some(output) => Some(output),
            None => match self.done.with::<_, Event<'_>, T>(TaskEnded::NotQueued { method, error }) {
                Offer::Done(output) => Some(output),
                _ => None,
            },
        }
    }
}
