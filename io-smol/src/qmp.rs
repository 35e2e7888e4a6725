//! Async QMP clients: [`Qmp`], one connection driven by the task that
//! holds it; and [`Handle`], one connection shared by many tasks.
//!
//! ```no_run
//! use vmwire_smol::qmp::{Filter, Options, Qmp};
//!
//! #[derive(serde::Deserialize)]
//! struct Status { status: String }
//!
//! # smol::block_on(async {
//! let qmp = Qmp::connect_unix("/run/vm/qmp.sock", Options::default()).await?;
//! // One connection, many tasks: the driver moves the bytes.
//! let (qmp, driver) = qmp.share();
//! smol::spawn(driver).detach();
//! let mut stops = qmp.subscribe(Filter::names(["STOP"]), 16);
//! let calls: Vec<_> = (0..8)
//!     .map(|_| {
//!         let qmp = qmp.clone();
//!         smol::spawn(async move { qmp.execute::<Status>("query-status", ()).await })
//!     })
//!     .collect();
//! for call in calls {
//!     println!("{}", call.await?.status);
//! }
//! qmp.execute::<serde_json::Value>("stop", ()).await?;
//! println!("{:?}", stops.next().await);
//! # Ok::<(), vmwire_smol::qmp::Error>(())
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::json::Value;
use vmwire_proto::op::Bounded;
use vmwire_proto::qmp::{self, Answer, Client, Command, Config, Id, owned::Kept};
use vmwire_std::qmp::{Checking, Inbox, add_fd_arguments, answer, arguments, negotiation, next_event, opened};

use crate::conn::{Conn, DriveError, PassFds, Stream, deadline};

pub use vmwire_std::qmp::{Error, Event, Greeting, Options, QemuError, Schema, Stray, check};

pub mod mux;

/// A QMP connection driven by the task that holds it: the async twin of
/// `vmwire_std::qmp::Qmp`, with the same methods. [`Qmp::share`] turns it
/// into a [`Handle`] for many tasks.
#[derive(Debug)]
pub struct Qmp<S = Stream> {
    conn: Conn<S, Client<Heap>>,
    greeting: Greeting,
    inbox: Inbox,
    timeout: Option<Duration>,
    checking: Checking,
}

impl Qmp<Stream> {
    /// Connects to QEMU's QMP UNIX socket and negotiates.
    pub async fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::connect_unix(path, options.timeout).await?, options).await
    }

    /// Connects to QEMU's QMP TCP socket and negotiates.
    pub async fn connect_tcp(addr: impl std::net::ToSocketAddrs, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::connect_tcp(addr, options.timeout).await?, options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Qmp<S> {
    /// Reads the greeting from `stream` (any futures-io stream: another
    /// runtime's socket through its compat layer) and negotiates.
    pub async fn handshake(stream: S, options: Options) -> Result<Self, Error> {
        let config = Config { oob: options.oob, ..options.config };
        let mut conn = Conn::new(stream, Client::<Heap>::new(config));
        let mut inbox = Inbox::new(options.max_events);
        let mut greeting = None;
        let outcome = conn.run(&mut negotiation(&mut greeting), &mut inbox, deadline(options.timeout)).await;
        opened(outcome, conn.machine(), &options, &mut inbox)?;
        let greeting = greeting.unwrap_or_default();
        let mut qmp = Qmp { conn, greeting, inbox, timeout: options.timeout, checking: Checking::default() };
        if options.check {
            qmp.fetch_schema().await?;
            qmp.set_check(true);
        }
        Ok(qmp)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Whether out-of-band execution was negotiated.
    pub fn oob(&self) -> bool {
        self.conn.machine().oob()
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Runs `name` with `args` (anything that serialises to a JSON object,
    /// or `()` for none) and decodes its return value into `T`.
    pub async fn execute<T: DeserializeOwned>(&mut self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let timeout = self.timeout;
        self.execute_timeout(name, args, timeout).await
    }

    /// [`Qmp::execute`] with its own time limit.
    pub async fn execute_timeout<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        let args = arguments(args).map_err(Error::Json)?;
        let id = self.checking.send(self.conn.machine_mut(), name, args.as_deref(), false)?;
        self.wait(id, deadline(timeout), |v| v.deserialize().map_err(Error::Json)).await
    }

    /// Runs `name` with arguments given as JSON text and returns the return
    /// value's JSON text as QEMU sent it.
    pub async fn execute_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.raw(name, args, false).await
    }

    /// Like [`Qmp::execute_raw`], out of band (`exec-oob`): needs `oob` negotiated.
    pub async fn execute_oob_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.raw(name, args, true).await
    }

    async fn raw(&mut self, name: &str, args: Option<&str>, oob: bool) -> Result<String, Error> {
        let id = self.checking.send(self.conn.machine_mut(), name, args.map(str::as_bytes), oob)?;
        let timeout = self.timeout;
        self.wait(id, deadline(timeout), |v| Ok(v.raw_str().to_owned())).await
    }

    /// Sends `command` as built without waiting; returns its id, for
    /// [`Qmp::reply_raw`].
    pub fn send_command(&mut self, command: Command<'_>) -> Result<Id, Error> {
        if self.conn.machine().state() == qmp::State::Closed {
            return Err(Error::Closed);
        }
        self.checking.check(command.name(), command.args())?;
        Ok(self.conn.machine_mut().send(command)?)
    }

    /// Waits up to `timeout` for the reply to `id`: its return value's JSON
    /// text, or `Ok(None)` when the time is up and the command is still
    /// pending (wait again, or [`Qmp::forget`] it).
    pub async fn reply_raw(&mut self, id: &Id, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        let mut reply = qmp::ReplyTo::new(id.clone(), answer(|v| Ok(v.raw_str().to_owned())));
        match self.conn.wait(&mut reply, &mut self.inbox, deadline(timeout)).await {
            Err(DriveError::Timeout) => Ok(None),
            other => other.map_err(Error::from).and_then(|reply| reply).map(Some),
        }
    }

    /// Gives up on command `id`: its reply, if it ever comes, is kept as a
    /// [`Stray::Stale`]. Whether `id` was pending.
    pub fn forget(&mut self, id: &Id) -> bool {
        self.conn.machine_mut().forget(id)
    }

    /// Fetches QEMU's schema (`query-qmp-schema`) and keeps it.
    pub async fn fetch_schema(&mut self) -> Result<&Schema, Error> {
        let text = self.execute_raw("query-qmp-schema", None).await?;
        self.set_schema(Schema::read_heap(text.into_bytes()).map_err(Error::Schema)?);
        self.schema().ok_or(Error::Closed)
    }

    /// Keeps `schema` to check commands against.
    pub fn set_schema(&mut self, schema: Schema) {
        self.checking.schema = Some(schema);
    }

    /// The schema kept, if any.
    pub fn schema(&self) -> Option<&Schema> {
        self.checking.schema.as_ref()
    }

    /// Turns checking before sending on or off (it needs a schema).
    pub fn set_check(&mut self, on: bool) {
        self.checking.on = on;
    }

    /// Runs command `id` until it is answered; `on_return` turns its return
    /// value into the result.
    async fn wait<T>(
        &mut self,
        id: Id,
        deadline: Option<Instant>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.inbox.skipped = None;
        let mut reply = qmp::ReplyTo::new(id, answer(on_return));
        let outcome = self.conn.run(&mut reply, &mut self.inbox, deadline).await;
        outcome.map_err(Error::from).and_then(|reply| reply).map_err(|e| self.inbox.explain(e))
    }

    /// The next event: a queued one, or one read within `timeout` (`None`:
    /// wait forever). `Ok(None)` when the time is up.
    pub async fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, Error> {
        let deadline = deadline(timeout);
        loop {
            if let Some(event) = self.inbox.queued_event()? {
                return Ok(Some(event));
            }
            let outcome = self.conn.run(&mut next_event(), &mut self.inbox, deadline).await;
            if let Some(event) = self.inbox.waited_event(outcome) {
                return event;
            }
        }
    }

    /// How many events were dropped because nobody read them in time.
    pub fn dropped_events(&self) -> u64 {
        self.inbox.events.dropped()
    }

    /// Takes the messages that belonged to no waiting command.
    pub fn take_strays(&mut self) -> Vec<Stray> {
        self.inbox.strays.drain().collect()
    }

    /// Asks QEMU to exit (`quit`) over this connection, and closes it. The
    /// connection closing before the reply counts as done.
    pub async fn quit(mut self) -> Result<(), Error> {
        let outcome = match self.execute_raw("quit", None).await {
            Ok(_) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        self.conn.close();
        outcome
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.close();
    }

    /// Shares the connection among many tasks, passing no file
    /// descriptors (for streams that cannot: [`Qmp::share`] for those that can).
    pub fn share_without_fds(self) -> (Handle, Driver<S>) {
        self.into_shared(None)
    }

    fn into_shared(self, pass_fds: Option<SendFds<S>>) -> (Handle, Driver<S>) {
        let Qmp { conn, greeting, mut inbox, timeout, checking } = self;
        let state = State {
            requests: VecDeque::new(),
            calls: HashMap::new(),
            cancelled: Vec::new(),
            subscribers: Vec::new(),
            raw_subscribers: Vec::new(),
            strays: std::mem::replace(&mut inbox.strays, Bounded::new(1)),
            driver: None,
            end: None,
            handles: 1,
            quit: false,
            next_ticket: 0,
            checking,
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), greeting, oob: conn.machine().oob() });
        let handle = Handle { shared: shared.clone(), timeout };
        let driver = Driver { conn, shared, sent: HashMap::new(), attach: Vec::new(), fd_call: None, pass_fds };
        (handle, driver)
    }
}

impl<S: AsyncRead + AsyncWrite + PassFds + Unpin> Qmp<S> {
    /// Passes `fd` to QEMU under the name `fdname` (`getfd`, the descriptor
    /// attached as `SCM_RIGHTS`). UNIX sockets only.
    pub async fn send_fd(&mut self, fdname: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let args = arguments(serde_json::json!({ "fdname": fdname })).map_err(Error::Json)?;
        let id = self.checking.send(self.conn.machine_mut(), "getfd", args.as_deref(), false)?;
        self.wait_with_fd(id, fd, |_| Ok(())).await
    }

    /// Adds `fd` to a file descriptor set (`add-fd`, the descriptor attached
    /// as `SCM_RIGHTS`); returns QEMU's `{"fdset-id", "fd"}` reply.
    pub async fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let args = arguments(add_fd_arguments(fdset_id, opaque)).map_err(Error::Json)?;
        let id = self.checking.send(self.conn.machine_mut(), "add-fd", args.as_deref(), false)?;
        self.wait_with_fd(id, fd, |v| v.deserialize().map_err(Error::Json)).await
    }

    async fn wait_with_fd<T>(
        &mut self,
        id: Id,
        fd: BorrowedFd<'_>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let deadline = deadline(self.timeout);
        if let Err(e) = self.conn.flush_with_fds(&[fd], deadline).await {
            self.forget(&id);
            return Err(e.into());
        }
        self.wait(id, deadline, on_return).await
    }

    /// Shares the connection among many tasks: a [`Handle`] for them (clone
    /// it), and the [`Driver`] that moves the bytes, to spawn on any
    /// executor (or to poll alongside the tasks).
    pub fn share(self) -> (Handle, Driver<S>) {
        self.into_shared(Some(S::poll_send_with_fds))
    }
}

/// Writes bytes with descriptors attached ([`PassFds::poll_send_with_fds`]).
type SendFds<S> = fn(&mut S, &mut Context<'_>, &[u8], &[BorrowedFd<'_>]) -> Poll<io::Result<usize>>;

/// A call's number, before (and besides) the id the machine gives it.
type Ticket = u64;

/// What the tasks and the driver share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    greeting: Greeting,
    oob: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A task that panicked while holding the lock left the state whole
        // (no method here panics midway): go on with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A command asked for, not yet given to the machine.
#[derive(Debug)]
struct Request {
    ticket: Ticket,
    name: String,
    args: Option<Vec<u8>>,
    oob: bool,
    fds: Vec<OwnedFd>,
}

/// A call, from the moment it is asked for until its caller takes the answer.
#[derive(Debug)]
enum Call {
    Waiting(Option<Waker>),
    Answered(Result<String, Error>),
}

/// Why the connection ended, for every call still pending and every call after.
#[derive(Debug, Clone)]
enum End {
    Closed,
    Io(io::ErrorKind, String),
    Protocol(qmp::Error),
}

impl End {
    fn error(&self) -> Error {
        match self {
            End::Closed => Error::Closed,
            End::Io(kind, message) => Error::Io(io::Error::new(*kind, message.clone())),
            End::Protocol(e) => Error::Protocol(e.clone()),
        }
    }

    fn of(e: &Error) -> End {
        match e {
            Error::Io(e) => End::Io(e.kind(), e.to_string()),
            Error::Protocol(e) => End::Protocol(e.clone()),
            _ => End::Closed,
        }
    }
}

#[derive(Debug)]
struct State {
    requests: VecDeque<Request>,
    calls: HashMap<Ticket, Call>,
    cancelled: Vec<Ticket>,
    subscribers: Vec<Weak<Mutex<Queue<Event>>>>,
    raw_subscribers: Vec<Weak<Mutex<Queue<RawEvent>>>>,
    strays: Bounded<Stray>,
    driver: Option<Waker>,
    end: Option<End>,
    handles: usize,
    /// `quit` was asked for: QEMU closing the connection is the end it asked for.
    quit: bool,
    next_ticket: Ticket,
    checking: Checking,
}

impl State {
    fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    fn answer(&mut self, ticket: Ticket, result: Result<String, Error>) {
        if let Some(call @ Call::Waiting(_)) = self.calls.get_mut(&ticket) {
            if let Call::Waiting(Some(waker)) = std::mem::replace(call, Call::Answered(result)) {
                waker.wake();
            }
        }
    }

    /// The connection is over: every call still pending fails with why,
    /// every subscription ends.
    fn end(&mut self, end: End) {
        let waiting: Vec<Ticket> =
            self.calls.iter().filter(|(_, call)| matches!(call, Call::Waiting(_))).map(|(t, _)| *t).collect();
        for ticket in waiting {
            self.answer(ticket, Err(end.error()));
        }
        self.requests.clear();
        close_all(&mut self.subscribers);
        close_all(&mut self.raw_subscribers);
        self.end = Some(end);
    }

    /// Whether nobody can use the connection any more: no handle, no
    /// subscription, no call.
    fn unused(&self) -> bool {
        self.handles == 0
            && self.calls.is_empty()
            && self.subscribers.iter().all(|q| q.strong_count() == 0)
            && self.raw_subscribers.iter().all(|q| q.strong_count() == 0)
    }
}

/// Ends every subscription in `queues`.
fn close_all<T>(queues: &mut Vec<Weak<Mutex<Queue<T>>>>) {
    for queue in queues.drain(..).filter_map(|q| q.upgrade()) {
        let mut queue = lock(&queue);
        queue.closed = true;
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One QMP connection shared by many tasks: clone it freely. Commands from
/// all of them are pipelined on the wire and matched to their callers by
/// id; events go to every [`Subscription`] whose filter wants them.
///
/// Nothing moves unless the [`Driver`] runs. Dropping a call's future
/// forgets its command: a late reply is discarded, never given to another
/// caller. When QEMU goes away, every pending call fails at once with the
/// reason.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Shared>,
    timeout: Option<Duration>,
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        Handle { shared: self.shared.clone(), timeout: self.timeout }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.handles -= 1;
        if state.handles == 0 {
            state.wake_driver();
        }
    }
}

impl Handle {
    /// The server's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.shared.greeting
    }

    /// Whether out-of-band execution was negotiated.
    pub fn oob(&self) -> bool {
        self.shared.oob
    }

    /// This handle with its own time limit for each command (clones made
    /// from it share it).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `name` with `args` and decodes its return value into `T`.
    pub async fn execute<T: DeserializeOwned>(&self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let text = self.call(name, arguments(args).map_err(Error::Json)?, false, Vec::new()).await?;
        serde_json::from_str(&text).map_err(Error::Json)
    }

    /// Runs `name` with arguments given as JSON text; returns the return
    /// value's JSON text as QEMU sent it.
    pub async fn execute_raw(&self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.call(name, args.map(|a| a.as_bytes().to_vec()), false, Vec::new()).await
    }

    /// Like [`Handle::execute_raw`], out of band (`exec-oob`; needs `oob`
    /// negotiated): what a multiplexer passes a client's `exec-oob` on with.
    pub async fn execute_oob_raw(&self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.call(name, args.map(|a| a.as_bytes().to_vec()), true, Vec::new()).await
    }

    /// Runs `name` out of band (`exec-oob`; needs `oob` negotiated), and
    /// decodes its return value into `T`. QEMU answers it at once, ahead of
    /// commands queued before it.
    pub async fn execute_oob<T: DeserializeOwned>(&self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let text = self.call(name, arguments(args).map_err(Error::Json)?, true, Vec::new()).await?;
        serde_json::from_str(&text).map_err(Error::Json)
    }

    /// Passes `fd` to QEMU under the name `fdname` (`getfd`). Needs a
    /// connection shared with [`Qmp::share`] over a UNIX socket.
    pub async fn send_fd(&self, fdname: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let args = arguments(serde_json::json!({ "fdname": fdname })).map_err(Error::Json)?;
        self.call("getfd", args, false, vec![fd.try_clone_to_owned()?]).await.map(drop)
    }

    /// Adds `fd` to a file descriptor set (`add-fd`); returns QEMU's
    /// `{"fdset-id", "fd"}` reply.
    pub async fn add_fd(
        &self,
        fd: impl AsFd,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let args = arguments(add_fd_arguments(fdset_id, opaque)).map_err(Error::Json)?;
        let fd = fd.as_fd().try_clone_to_owned()?;
        let text = self.call("add-fd", args, false, vec![fd]).await?;
        serde_json::from_str(&text).map_err(Error::Json)
    }

    /// Asks QEMU to exit (`quit`). The connection closing before the reply
    /// counts as done, and the driver then ends with `Ok(())`.
    pub async fn quit(&self) -> Result<(), Error> {
        self.shared.lock().quit = true;
        match self.execute_raw("quit", None).await {
            Ok(_) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Events from now on that `filter` wants, in a queue of at most
    /// `capacity`: past it the oldest are dropped and counted
    /// ([`Subscription::missed`]), so a slow reader never holds up replies
    /// or other subscribers.
    pub fn subscribe(&self, filter: Filter, capacity: usize) -> Subscription {
        self.subscribe_to(filter, capacity, |state| &mut state.subscribers)
    }

    /// Every event from now on as QEMU wrote it ([`RawEvent`]: its `data`
    /// as JSON text, not decoded), in a queue of at most `capacity` like
    /// [`Handle::subscribe`]'s: what a multiplexer passes on to its clients.
    pub fn subscribe_raw(&self, capacity: usize) -> Subscription<RawEvent> {
        self.subscribe_to(Filter::All, capacity, |state| &mut state.raw_subscribers)
    }

    fn subscribe_to<T>(
        &self,
        filter: Filter,
        capacity: usize,
        list: impl FnOnce(&mut State) -> &mut Vec<Weak<Mutex<Queue<T>>>>,
    ) -> Subscription<T> {
        let queue = Arc::new(Mutex::new(Queue { events: Bounded::new(capacity), filter, waker: None, closed: false }));
        let mut state = self.shared.lock();
        match state.end {
            Some(_) => lock(&queue).closed = true,
            None => list(&mut state).push(Arc::downgrade(&queue)),
        }
        Subscription { queue }
    }

    /// Takes the messages that belonged to no command (late replies to
    /// forgotten commands, untagged errors, messages skipped as unreadable).
    pub fn take_strays(&self) -> Vec<Stray> {
        self.shared.lock().strays.drain().collect()
    }

    /// How many commands are asked for and not yet answered.
    pub fn pending(&self) -> usize {
        self.shared.lock().calls.values().filter(|c| matches!(c, Call::Waiting(_))).count()
    }

    /// Queues a call and waits for its answer (the return value's JSON text).
    async fn call(&self, name: &str, args: Option<Vec<u8>>, oob: bool, fds: Vec<OwnedFd>) -> Result<String, Error> {
        if oob && !self.shared.oob {
            return Err(Error::Protocol(qmp::Error::OobNotNegotiated));
        }
        let ticket = {
            let mut state = self.shared.lock();
            if let Some(end) = &state.end {
                return Err(end.error());
            }
            let command = vmwire_std::qmp::command(name, args.as_deref(), oob)?;
            state.checking.check(name, command.args())?;
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.requests.push_back(Request { ticket, name: name.to_owned(), args, oob, fds });
            state.calls.insert(ticket, Call::Waiting(None));
            state.wake_driver();
            ticket
        };
        let reply = Reply { shared: &self.shared, ticket, taken: false };
        match self.timeout {
            None => reply.await,
            Some(limit) => {
                future::or(reply, async {
                    Timer::after(limit).await;
                    Err(Error::Timeout)
                })
                .await
            }
        }
    }
}

/// The answer to one call; dropped before it comes, the call is forgotten.
struct Reply<'h> {
    shared: &'h Shared,
    ticket: Ticket,
    taken: bool,
}

impl Future for Reply<'_> {
    type Output = Result<String, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        let ticket = self.ticket;
        match state.calls.remove(&ticket) {
            Some(Call::Answered(result)) => {
                drop(state);
                self.taken = true;
                Poll::Ready(result)
            }
            Some(Call::Waiting(_)) => {
                state.calls.insert(ticket, Call::Waiting(Some(cx.waker().clone())));
                Poll::Pending
            }
            None => Poll::Ready(Err(Error::Closed)),
        }
    }
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut state = self.shared.lock();
        if let Some(Call::Waiting(_)) = state.calls.remove(&self.ticket) {
            state.cancelled.push(self.ticket);
            state.wake_driver();
        }
    }
}

/// Which events a [`Subscription`] wants.
pub enum Filter {
    /// Every event.
    All,
    /// Events with one of these names (such as `STOP`).
    Names(Vec<String>),
    /// Events for which the function says yes.
    Predicate(Box<dyn Fn(&Event) -> bool + Send + Sync>),
}

impl Filter {
    /// Events with one of `names`.
    pub fn names<N: Into<String>>(names: impl IntoIterator<Item = N>) -> Self {
        Filter::Names(names.into_iter().map(Into::into).collect())
    }

    /// Events for which `wants` says yes.
    pub fn predicate(wants: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Self {
        Filter::Predicate(Box::new(wants))
    }

    /// Whether `event` passes.
    pub fn wants(&self, event: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Names(names) => names.contains(&event.name),
            Filter::Predicate(wants) => wants(event),
        }
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::All => f.write_str("All"),
            Filter::Names(names) => f.debug_tuple("Names").field(names).finish(),
            Filter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// An event as QEMU wrote it: what [`Handle::subscribe_raw`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// Its name, such as `STOP`.
    pub name: String,
    /// When QEMU says it happened.
    pub timestamp: qmp::Timestamp,
    /// Its `data` member's JSON text, exactly as QEMU wrote it, if any.
    pub data: Option<String>,
}

impl RawEvent {
    fn of(e: &qmp::AsyncEvent<'_>) -> Self {
        RawEvent { name: e.name.to_string(), timestamp: e.timestamp, data: e.data.map(|d| d.raw_str().to_owned()) }
    }
}

#[derive(Debug)]
struct Queue<T> {
    events: Bounded<T>,
    filter: Filter,
    waker: Option<Waker>,
    closed: bool,
}

/// Events for one reader, filtered, in a bounded queue: see
/// [`Handle::subscribe`] (and [`Handle::subscribe_raw`] for
/// `Subscription<RawEvent>`). Also a `Stream` of events (futures-lite's).
#[derive(Debug)]
pub struct Subscription<T = Event> {
    queue: Arc<Mutex<Queue<T>>>,
}

impl<T> Subscription<T> {
    /// The next event, or `None` once the connection has ended and the
    /// queue is empty.
    pub async fn next(&mut self) -> Option<T> {
        future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<T> {
        lock(&self.queue).events.pop()
    }

    /// How many events were dropped because this queue was full.
    pub fn missed(&self) -> u64 {
        lock(&self.queue).events.dropped()
    }

    /// The next event, or `Ready(None)` once the connection has ended and
    /// the queue is empty: [`Subscription::next`] for a hand-written `poll`.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut queue = lock(&self.queue);
        match queue.events.pop() {
            Some(event) => Poll::Ready(Some(event)),
            None if queue.closed => Poll::Ready(None),
            None => {
                queue.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// `Ready` once the connection has ended, whether or not events are
    /// still queued: a reader with no room for them (a client that stopped
    /// reading) learns of the end all the same.
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut queue = lock(&self.queue);
        if queue.closed {
            return Poll::Ready(());
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> futures_lite::Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_event(cx)
    }
}

/// Moves the bytes of a shared connection ([`Qmp::share`]): spawn it on
/// your executor, or poll it beside the tasks. It finishes with `Ok(())`
/// when no handle, subscription or call is left (and closes the
/// connection) or QEMU closed it after [`Handle::quit`], or with why the
/// connection ended.
#[must_use = "a shared connection makes no progress unless its driver is polled: spawn it"]
pub struct Driver<S> {
    conn: Conn<S, Client<Heap>>,
    shared: Arc<Shared>,
    /// The calls on the wire, by the id the machine gave them.
    sent: HashMap<Id, Ticket>,
    /// Descriptors to attach to the next bytes written.
    attach: Vec<OwnedFd>,
    /// The command in flight that carried descriptors.
    fd_call: Option<Id>,
    pass_fds: Option<SendFds<S>>,
}

impl<S> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("sent", &self.sent.len()).finish_non_exhaustive()
    }
}

/// How many reads a driver makes before it lets other tasks run.
const READS_PER_POLL: usize = 32;

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// Gives queued requests to the machine, and forgets cancelled calls.
    fn take_requests(&mut self, state: &mut State) {
        for ticket in state.cancelled.drain(..) {
            if let Some(at) = state.requests.iter().position(|r| r.ticket == ticket) {
                state.requests.remove(at);
            } else if let Some(id) = self.sent.iter().find(|(_, t)| **t == ticket).map(|(id, _)| id.clone()) {
                // A command that carried descriptors is waited for all the
                // same (the next one waits for its reply); its answer goes
                // to nobody, the call being gone.
                if self.fd_call.as_ref() != Some(&id) {
                    self.sent.remove(&id);
                    self.conn.machine_mut().forget(&id);
                }
            }
        }
        let machine = self.conn.machine_mut();
        let mut held = VecDeque::new();
        while let Some(request) = state.requests.pop_front() {
            // Descriptors go with the first byte of their command's sendmsg,
            // and one such command at a time: QEMU keeps only the last
            // descriptors received, for the next command that takes one.
            let carries = !request.fds.is_empty();
            if carries && (self.fd_call.is_some() || !machine.transmit().is_empty()) {
                held.push_back(request);
                continue;
            }
            let sent = match (&self.pass_fds, carries) {
                (None, true) => Err(Error::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this connection passes no file descriptors (shared with share_without_fds)",
                ))),
                _ => vmwire_std::qmp::command(&request.name, request.args.as_deref(), request.oob)
                    .and_then(|command| machine.send(command).map_err(Error::from)),
            };
            match sent {
                Ok(id) => {
                    if carries {
                        self.fd_call = Some(id.clone());
                        self.attach = request.fds;
                    }
                    self.sent.insert(id, request.ticket);
                }
                Err(e) => state.answer(request.ticket, Err(e)),
            }
        }
        state.requests = held;
    }

    /// The machine's events: answers to their calls, events to the
    /// subscribers that want them, the rest to the strays.
    fn route(&mut self, state: &mut State) -> Result<(), qmp::Error> {
        while let Some(event) = self.conn.machine_mut().poll()? {
            let event = match Answer::of(event) {
                Ok((id, answer)) => {
                    if self.fd_call.as_ref() == Some(id) {
                        self.fd_call = None;
                    }
                    if let Some(ticket) = self.sent.remove(id) {
                        state.answer(ticket, vmwire_std::qmp::answer(|v| Ok(v.raw_str().to_owned()))(answer));
                    }
                    continue;
                }
                Err(event) => event,
            };
            if let (qmp::Event::Event(e), false) = (&event, state.raw_subscribers.is_empty()) {
                deliver_raw(state, RawEvent::of(e));
            }
            match Kept::of(event) {
                Kept::Event(event) => deliver(state, event),
                Kept::Stray(stray) | Kept::Skipped(stray, _) => state.strays.push(stray),
                Kept::Closed => state.end(End::Closed),
                Kept::Nothing => {}
            }
        }
        Ok(())
    }

    /// Writes what is queued (the first bytes with the descriptors to
    /// attach), and reads once.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DriveError<qmp::Error>>> {
        if let (false, Some(pass)) = (self.attach.is_empty(), self.pass_fds) {
            let (stream, machine) = self.conn.parts_mut();
            let fds: Vec<BorrowedFd<'_>> = self.attach.iter().map(|fd| fd.as_fd()).collect();
            match pass(stream, cx, machine.transmit(), &fds) {
                Poll::Ready(Ok(n)) => {
                    machine.transmitted(n);
                    self.attach.clear();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(DriveError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.conn.poll_pump(cx)
    }
}

/// `event` to every subscriber that wants it.
fn deliver(state: &mut State, event: Event) {
    push_to(&mut state.subscribers, &event, |filter, event| filter.wants(event));
}

/// `event` to every raw subscriber.
fn deliver_raw(state: &mut State, event: RawEvent) {
    push_to(&mut state.raw_subscribers, &event, |_, _| true);
}

/// `event` to the queues in `list` that `wants` it (dropping the queues
/// whose subscription is gone).
fn push_to<T: Clone>(list: &mut Vec<Weak<Mutex<Queue<T>>>>, event: &T, wants: impl Fn(&Filter, &T) -> bool) {
    list.retain(|queue| {
        let Some(queue) = queue.upgrade() else { return false };
        let mut queue = lock(&queue);
        if wants(&queue.filter, event) {
            queue.events.push(event.clone());
            if let Some(waker) = queue.waker.take() {
                waker.wake();
            }
        }
        true
    });
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for _ in 0..READS_PER_POLL {
            let shared = this.shared.clone();
            let mut state = shared.lock();
            state.driver = Some(cx.waker().clone());
            this.take_requests(&mut state);
            if let Err(e) = this.route(&mut state) {
                this.conn.close();
                state.end(End::Protocol(e));
            }
            if let Some(end) = &state.end {
                return Poll::Ready(match end {
                    End::Closed if state.handles == 0 || state.quit => Ok(()),
                    end => Err(end.error()),
                });
            }
            if state.unused() {
                this.conn.close();
                state.end(End::Closed);
                return Poll::Ready(Ok(()));
            }
            drop(state);
            match this.poll_io(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    this.conn.close();
                    let e = Error::from(e);
                    let mut state = shared.lock();
                    // The machine reports the pending commands failed; the reason is the stream's.
                    if !matches!(e, Error::Closed) {
                        state.end(End::of(&e));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        // Busy: let the executor run the others, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
