//! Operations: a request in flight, as a value the adapter drives.
//!
//! A [`Machine`] turns bytes into events; an [`Operation`] is what one
//! caller waits for (a QMP command's reply, a negotiator call's response):
//! it is offered the machine's events, takes its own, and finishes with a
//! result. Events that belong to no operation go to an [`Inbox`] (for
//! the events nobody asked for: QMP's asynchronous events, late replies).
//! When the operation's deadline passes, the adapter calls
//! [`Operation::expire`], and the machine does what its protocol does then
//! ([`Machine::expire`]).
//!
//! An adapter's whole job, then (the blocking one in `vmwire-std`, and the
//! async one, are this loop over their own reads and writes):
//!
//! ```
//! use vmwire_proto::op::{self, Operation};
//! use vmwire_proto::{Machine, buf::Heap, qmp};
//!
//! /// Runs `operation` to its end; `None` if the deadline passed first
//! /// (here: the peer has nothing more to say).
//! fn run<O: Operation<qmp::Client<Heap>>>(
//!     machine: &mut qmp::Client<Heap>,
//!     operation: &mut O,
//!     inbox: &mut op::Bounded<String>,
//!     peer: &mut dyn Iterator<Item = &[u8]>,
//! ) -> Result<Option<O::Output>, qmp::Error> {
//!     loop {
//!         // 1. the machine's events to the operation, the rest to the inbox
//!         let mut keep = |e: qmp::Event<'_>| inbox.push(format!("{e:?}"));
//!         if let Some(output) = op::drive(machine, operation, &mut keep)? {
//!             return Ok(Some(output));
//!         }
//!         // 2. bytes out: write `transmit()`, then `transmitted(n)`
//!         let n = machine.transmit().len();
//!         machine.transmitted(n);
//!         // 3. bytes in (`recv_eof()` at end of stream), or: the deadline passed
//!         match peer.next() {
//!             Some(bytes) => {
//!                 machine.receive(bytes)?;
//!             }
//!             None => {
//!                 operation.expire(machine);
//!                 return Ok(None);
//!             }
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), qmp::Error> {
//! // The peer: its greeting, the answer to qmp_capabilities (id 0), an event, the answer to ours (1).
//! let mut peer = [
//!     &b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"[..],
//!     b"{\"return\": {}, \"id\": 0}\r\n{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n",
//!     b"{\"return\": {\"status\": \"paused\"}, \"id\": 1}\r\n",
//! ]
//! .into_iter();
//! let mut machine = qmp::Client::<Heap>::new(qmp::Config::default());
//! let mut inbox = op::Bounded::new(16);
//!
//! let mut opening = qmp::Negotiation::new(|_: &qmp::Greeting<'_>| {}, |end: qmp::Negotiated<'_>| {
//!     matches!(end, qmp::Negotiated::Ready { .. })
//! });
//! assert_eq!(run(&mut machine, &mut opening, &mut inbox, &mut peer)?, Some(true));
//!
//! let id = machine.execute("query-status", None)?;
//! let mut status = qmp::ReplyTo::new(id, |answer: qmp::Answer<'_>| match answer {
//!     qmp::Answer::Return(value) => Ok(String::from(value.raw_str())),
//!     other => Err(format!("{other:?}")),
//! });
//! let status = run(&mut machine, &mut status, &mut inbox, &mut peer)?;
//! assert_eq!(status, Some(Ok(r#"{"status": "paused"}"#.to_string())));
//! assert!(inbox.iter().any(|e| e.contains("STOP")));
//! # Ok(()) }
//! ```

use crate::Machine;

/// What an operation made of one event.
#[derive(Debug)]
pub enum Offer<E, T> {
    /// Not this operation's: it goes to the inbox.
    Pass(E),
    /// Taken; the operation goes on.
    Taken,
    /// The operation is finished, with this result.
    Done(T),
}

/// A request in flight over machine `M`: consumes the events that are its
/// own, and finishes with a result.
pub trait Operation<M: Machine> {
    /// What the operation finishes with.
    type Output;

    /// One event of the machine: taken, the last one it needed
    /// ([`Offer::Done`]), or handed back ([`Offer::Pass`]).
    fn offer<'a>(&mut self, event: M::Event<'a>) -> Offer<M::Event<'a>, Self::Output>
    where
        M: 'a;

    /// The request the machine knows it by (for [`Machine::expire`]);
    /// `None` before the machine has named it, or for no request at all.
    fn request(&self) -> Option<&M::Request>;

    /// After an event was taken ([`Offer::Taken`]), with the machine free:
    /// queue what comes next (a second request of the same operation), or
    /// finish (`Some`). `Err` is fatal.
    fn advance(&mut self, machine: &mut M) -> Result<Option<Self::Output>, M::Error> {
        let _ = machine;
        Ok(None)
    }

    /// Whether the operation waits for time now, not for the peer (a guest
    /// program polled until it ends, a XenAPI task until it finishes):
    /// `Some(d)` asks the adapter to wait `d` on its own timer, then call
    /// [`Operation::resume`]. Asked whenever the machine has no event left;
    /// a pause that would end past the deadline is the deadline passing.
    fn pause(&self) -> Option<core::time::Duration> {
        None
    }

    /// The pause asked for is over: queue what comes next, or finish
    /// (`Some`). `Err` is fatal.
    fn resume(&mut self, machine: &mut M) -> Result<Option<Self::Output>, M::Error> {
        let _ = machine;
        Ok(None)
    }

    /// The deadline passed: the machine does what its protocol does then.
    /// The operation is over; the adapter reports the timeout.
    fn expire(&mut self, machine: &mut M) {
        if let Some(request) = self.request() {
            machine.expire(request);
        }
    }
}

/// The function an operation finishes with: called once, with what the
/// operation waited for.
pub struct Finish<F>(Option<F>);

impl<F> Finish<F> {
    /// Finishes with `f`.
    pub fn new(f: F) -> Self {
        Finish(Some(f))
    }

    /// [`Offer::Done`] with `f(value)` the first time; [`Offer::Taken`] after.
    pub fn with<A, E, T>(&mut self, value: A) -> Offer<E, T>
    where
        F: FnOnce(A) -> T,
    {
        match self.0.take() {
            Some(f) => Offer::Done(f(value)),
            None => Offer::Taken,
        }
    }
}

impl<F> core::fmt::Debug for Finish<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.0.is_some() { "Finish(pending)" } else { "Finish(done)" })
    }
}

/// Where events that belong to no operation go.
pub trait Inbox<M: Machine> {
    /// Keeps (or drops) one event.
    fn keep(&mut self, event: M::Event<'_>);
}

/// Any function of an event is an inbox.
impl<M: Machine, F: FnMut(M::Event<'_>)> Inbox<M> for F {
    fn keep(&mut self, event: M::Event<'_>) {
        self(event);
    }
}

/// Hands the machine's events to `operation` (those it passes to `inbox`)
/// until it finishes (`Some`) or the machine has nothing more (`None`: read,
/// write, and call again). Events after the last one the operation needed
/// stay in the machine, for the next operation. `Err` is fatal.
pub fn drive<M, O, I>(machine: &mut M, operation: &mut O, inbox: &mut I) -> Result<Option<O::Output>, M::Error>
where
    M: Machine,
    O: Operation<M>,
    I: Inbox<M> + ?Sized,
{
    Ok(match Progress::new(operation).next(machine, inbox)? {
        Next::Done(output) => Some(output),
        _ => None,
    })
}

/// What an adapter does next for an operation ([`Progress::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<T> {
    /// The operation is finished.
    Done(T),
    /// Wait this long on the adapter's own timer, then [`Progress::resume`].
    Pause(core::time::Duration),
    /// Open a new connection (if the adapter can), then tell the machine
    /// ([`Machine::connected`]); see [`Machine::needs_connection`].
    Connect,
    /// Write what the machine has queued and read what comes: the
    /// operation waits for the peer.
    Transfer,
}

/// An operation being run: the one loop every adapter runs, as decisions.
///
/// The adapter asks [`Progress::next`] what to do, does it (waits, opens a
/// connection, writes and reads, each bounded by its deadline), and asks
/// again; when its deadline passes it calls [`Progress::expire`].
///
/// ```
/// use vmwire_proto::op::{Next, Progress};
/// use vmwire_proto::{Machine, buf::Heap, qmp};
///
/// let mut machine = qmp::Client::<Heap>::new(qmp::Config::default());
/// let mut opening = qmp::Negotiation::new(|_: &qmp::Greeting<'_>| {}, |_: qmp::Negotiated<'_>| "done");
/// let mut progress = Progress::new(&mut opening);
/// let mut inbox = |_: qmp::Event<'_>| {};
/// assert_eq!(progress.next(&mut machine, &mut inbox)?, Next::Transfer);
/// machine.receive(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")?;
/// assert_eq!(progress.next(&mut machine, &mut inbox)?, Next::Transfer); // qmp_capabilities sent
/// assert!(progress.took()); // the greeting: a step was made
/// machine.receive(b"{\"return\": {}, \"id\": 0}\r\n")?;
/// assert_eq!(progress.next(&mut machine, &mut inbox)?, Next::Done("done"));
/// # Ok::<(), vmwire_proto::qmp::Error>(())
/// ```
#[derive(Debug)]
pub struct Progress<'o, O> {
    operation: &'o mut O,
    took: bool,
}

impl<'o, O> Progress<'o, O> {
    /// Starts running `operation`.
    pub fn new(operation: &'o mut O) -> Self {
        Progress { operation, took: true }
    }

    /// Whether the operation took an event (or resumed) since this was last
    /// asked (at first: true): an adapter that bounds each step of a long
    /// operation (each chunk of a file) starts that limit again then.
    pub fn took(&mut self) -> bool {
        core::mem::take(&mut self.took)
    }

    /// The machine's events to the operation (the rest to `inbox`), then
    /// what the adapter does next. `Err` is fatal.
    pub fn next<M, I>(&mut self, machine: &mut M, inbox: &mut I) -> Result<Next<O::Output>, M::Error>
    where
        M: Machine,
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        loop {
            let Some(event) = machine.poll()? else { break };
            match self.operation.offer(event) {
                Offer::Pass(event) => {
                    inbox.keep(event);
                    continue;
                }
                Offer::Done(output) => return Ok(Next::Done(output)),
                Offer::Taken => self.took = true,
            }
            if let Some(output) = self.operation.advance(machine)? {
                return Ok(Next::Done(output));
            }
        }
        Ok(match self.operation.pause() {
            Some(pause) => Next::Pause(pause),
            None if machine.needs_connection() => Next::Connect,
            None => Next::Transfer,
        })
    }

    /// The pause [`Next::Pause`] asked for is over: the operation goes on
    /// (`None`: ask [`Progress::next`] again) or finishes. `Err` is fatal.
    pub fn resume<M: Machine>(&mut self, machine: &mut M) -> Result<Option<O::Output>, M::Error>
    where
        O: Operation<M>,
    {
        self.took = true;
        self.operation.resume(machine)
    }

    /// The deadline passed (or the adapter gave up): the machine does what
    /// its protocol does then ([`Operation::expire`]).
    pub fn expire<M: Machine>(&mut self, machine: &mut M)
    where
        O: Operation<M>,
    {
        self.operation.expire(machine);
    }
}

/// No request in flight: every event goes to the inbox (waiting for what
/// nobody asked for, such as QMP's asynchronous events). Never finishes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Idle;

impl<M: Machine> Operation<M> for Idle {
    type Output = core::convert::Infallible;

    fn offer<'a>(&mut self, event: M::Event<'a>) -> Offer<M::Event<'a>, Self::Output>
    where
        M: 'a,
    {
        Offer::Pass(event)
    }

    fn request(&self) -> Option<&M::Request> {
        None
    }
}

/// A bounded queue for what nobody has asked for yet: past its limit the
/// oldest goes, and is counted.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct Bounded<T> {
    items: alloc::collections::VecDeque<T>,
    max: usize,
    dropped: u64,
}

#[cfg(feature = "alloc")]
impl<T> Bounded<T> {
    /// An empty queue that keeps at most `max` items (at least one).
    pub fn new(max: usize) -> Self {
        Bounded { items: alloc::collections::VecDeque::new(), max: max.max(1), dropped: 0 }
    }

    /// Adds `item`, dropping the oldest if the queue is full.
    pub fn push(&mut self, item: T) {
        if self.items.len() >= self.max {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    /// The oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The queued items, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Takes every queued item, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.items.drain(..)
    }

    /// How many items were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
