//! QMP, the QEMU Machine Protocol: a sans-IO client.
//!
//! The [`Client`] machine reads QEMU's greeting, negotiates capabilities
//! (`qmp_capabilities`, with `oob` when asked for and offered), encodes
//! commands with ids, and matches replies to them by id, with asynchronous
//! events interleaved anywhere (QEMU sends an event before the return of the
//! command that caused it).
//!
//! ```
//! use vmwire_proto::{Machine, buf::Fixed, qmp::{Client, Config, Event, State}};
//!
//! let mut qmp = Client::<Fixed<4096>>::new(Config::default());
//! qmp.receive(br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#)?;
//! qmp.receive(b"\r\n")?;
//! assert!(matches!(qmp.poll()?, Some(Event::Greeting(g)) if g.version() == Some((7, 2, 22))));
//! // The machine queued qmp_capabilities; commands may follow at once.
//! let id = qmp.execute("query-status", None)?;
//! assert_eq!(qmp.transmit(), b"{\"execute\":\"qmp_capabilities\",\"id\":0}\r\n{\"execute\":\"query-status\",\"id\":1}\r\n");
//! let n = qmp.transmit().len();
//! qmp.transmitted(n);
//!
//! qmp.receive(b"{\"return\": {}, \"id\": 0}\r\n{\"return\": {\"status\": \"prelaunch\", \"running\": false}, \"id\": 1}\r\n")?;
//! assert!(matches!(qmp.poll()?, Some(Event::Ready { oob: false })));
//! assert_eq!(qmp.state(), State::Ready);
//! match qmp.poll()? {
//!     Some(Event::Return { id: got, value }) => {
//!         assert_eq!(got, id);
//!         assert_eq!(value.get("running").and_then(|r| r.as_bool()), Some(false));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), vmwire_proto::qmp::Error>(())
//! ```

use core::fmt;

use crate::Machine;
use crate::buf::{Full, Sink, Storage, TxBuf};
use crate::json::{self, Found, Framer, JsonStr, Kind, Limits, Message, ObjectWriter, Value};
use crate::qapi::{self, Members, Pending, Settled, Table};

pub use crate::qapi::{Command, ErrorReply, Id, MAX_ID_LEN, Reply, blank_secrets, secret_spans};
pub use op::{Answer, Negotiated, Negotiation, NextEvent, ReplyTo};

mod op;
#[cfg(feature = "std")]
pub mod owned;

pub mod schema;
pub mod server;
pub use server::{Server, ServerConfig};

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Ask for out-of-band execution (`exec-oob`) if the server offers it.
    pub oob: bool,
    /// Size and depth limits for one message from QEMU. QEMU's own limits are
    /// depth 1024 and 64 MiB; the default is 16 MiB and depth 128, which fits
    /// everything QEMU sends (`query-qmp-schema` is about 200 KB).
    pub limits: Limits,
    /// Most commands in flight (with [`Heap`](crate::buf::Heap) storage; fixed
    /// storage has its own table size).
    pub max_pending: usize,
    /// Most bytes of encoded commands waiting to be written (with `Heap` storage).
    pub max_transmit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            oob: false,
            limits: Limits { max_message: 16 << 20, max_depth: 128 },
            max_pending: 4096,
            max_transmit: 1 << 20,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for `{"QMP": …}`.
    AwaitingGreeting,
    /// `qmp_capabilities` sent; commands may already be queued behind it.
    Negotiating,
    /// Capabilities negotiated.
    Ready,
    /// The stream ended, or the peer broke the protocol.
    Closed,
}

/// When an event happened, as QEMU stamped it (seconds and microseconds since
/// the Unix epoch; both `-1` if QEMU could not read its clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// An asynchronous event.
#[derive(Debug, Clone, Copy)]
pub struct AsyncEvent<'a> {
    /// The event's name, such as `STOP` or `SHUTDOWN`.
    pub name: JsonStr<'a>,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Its `data` member, if any.
    pub data: Option<Value<'a>>,
}

/// The server's greeting: `{"QMP": {"version": …, "capabilities": […]}}`.
#[derive(Debug, Clone, Copy)]
pub struct Greeting<'a> {
    /// The `version` member: `{"qemu": {"major", "minor", "micro"}, "package"}`.
    pub version: Value<'a>,
    /// The `capabilities` array.
    pub capabilities: Value<'a>,
}

impl<'a> Greeting<'a> {
    fn parse(msg: &Message<'a>) -> Option<Self> {
        let qmp = msg.get("QMP")?;
        let version = qmp.get("version").filter(|v| v.kind() == Kind::Object)?;
        let capabilities = qmp.get("capabilities").filter(|c| c.kind() == Kind::Array)?;
        Some(Greeting { version, capabilities })
    }

    /// QEMU's version as `(major, minor, micro)`.
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        let qemu = self.version.get("qemu")?;
        let part = |k| qemu.get(k).and_then(|v| v.as_u64());
        Some((part("major")?, part("minor")?, part("micro")?))
    }

    /// The distribution's package string, such as `Debian 1:7.2+dfsg-7`.
    pub fn package(&self) -> Option<JsonStr<'a>> {
        self.version.get("package")?.as_str()
    }

    /// The capabilities offered, such as `oob`.
    pub fn capabilities(&self) -> impl Iterator<Item = JsonStr<'a>> + use<'a> {
        self.capabilities.as_array().into_iter().flatten().filter_map(|c| c.as_str())
    }

    /// Whether capability `name` is offered.
    pub fn offers(&self, name: &str) -> bool {
        self.capabilities().any(|c| c == name)
    }
}

/// What the [`Client`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// The server's greeting. The machine has queued `qmp_capabilities`.
    Greeting(Greeting<'a>),
    /// Capabilities negotiated; `oob` tells whether out-of-band execution is on.
    Ready {
        /// Whether `exec-oob` may be used.
        oob: bool,
    },
    /// `qmp_capabilities` was refused; the session is closed.
    NegotiationFailed(ErrorReply<'a>),
    /// What arrived first is not a QMP greeting: the peer speaks another
    /// protocol (a human monitor, whose banner `QEMU 7.2.22 monitor - type
    /// 'help' for more information` comes at once; a guest agent) or is not
    /// QEMU at all. The session is closed.
    NotGreeting {
        /// The bytes that arrived instead, as far as they had arrived (cut
        /// anywhere: show them escaped, and as much as is useful). Empty
        /// when the framer had already skipped them (a value over the size limit).
        received: &'a [u8],
        /// Why they are not a greeting: [`Error::NotGreeting`] for JSON of
        /// another shape, [`Error::Json`] for bytes that are not JSON, or too large.
        error: Error,
    },
    /// A command succeeded.
    Return {
        /// The command's id.
        id: &'a Id,
        /// Its `return` value.
        value: Value<'a>,
    },
    /// A command failed: the peer said no.
    Error {
        /// The command's id.
        id: &'a Id,
        /// The peer's error.
        error: ErrorReply<'a>,
    },
    /// An error reply with no id: QEMU's answer to input it could not parse
    /// (or to a command sent without an id).
    UntaggedError(ErrorReply<'a>),
    /// An asynchronous event.
    Event(AsyncEvent<'a>),
    /// The reply to a command the caller [forgot](Client::forget); it is
    /// reported here and matched to nobody.
    Stale {
        /// The forgotten command's id.
        id: &'a Id,
        /// What it came back with.
        reply: Reply<'a>,
    },
    /// A reply whose id matches no command sent on this session (or a return
    /// without an id). Never matched to another caller.
    Unmatched(Message<'a>),
    /// A message with the id of command `id` that is not a valid reply (both
    /// `return` and `error`, an `error` without `class` or `desc`, neither),
    /// or a reply over the size limit (skipped unread) that can only be this
    /// command's: the oldest in flight, when every command in flight went in
    /// band, which QEMU answers in order. The command failed, and `error`
    /// says how its reply was malformed ([`Error::BadMessage`], or
    /// [`Error::Json`] too large). The session goes on.
    MalformedReply {
        /// The command's id.
        id: &'a Id,
        /// What was wrong with the reply ([`Error::BadMessage`], or
        /// [`Error::Json`] for one over the size limit).
        error: Error,
    },
    /// A message that could not be understood, and was skipped. The session
    /// goes on.
    Malformed(Error),
    /// The session closed before this command's reply arrived. Reported once
    /// for every command still pending.
    Failed {
        /// The command's id.
        id: &'a Id,
    },
    /// The session is closed; nothing more will come. Reported once, last.
    Closed,
}

/// What went wrong in the [`Client`] itself (not the peer's error replies, which are events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A message that is not valid JSON, or too large or too deep.
    Json(json::Error),
    /// What arrived first was not a `{"QMP": …}` greeting (see
    /// [`Event::NotGreeting`]). Fatal.
    NotGreeting,
    /// Valid JSON, but not a QMP message (`what` says how).
    BadMessage {
        /// What was wrong.
        what: &'static str,
    },
    /// A method called in a state that does not allow it.
    WrongState {
        /// The state the machine was in.
        state: State,
        /// The method.
        operation: &'static str,
    },
    /// `exec-oob` without out-of-band execution negotiated.
    OobNotNegotiated,
    /// A caller-supplied id is already pending (or forgotten and unanswered).
    IdInUse,
    /// Command arguments must be a JSON object.
    ArgumentsNotObject,
    /// The table of commands in flight is full.
    TooManyPending {
        /// Its limit.
        limit: usize,
    },
    /// The transmit buffer is full: write out what is queued first.
    TransmitFull(Full),
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::Json(e) if e.is_too_large() => K::TooLarge,
            Error::Json(_) | Error::NotGreeting | Error::BadMessage { .. } => K::InvalidData,
            Error::WrongState { .. } => K::WrongState,
            Error::OobNotNegotiated => K::Unsupported,
            Error::IdInUse | Error::ArgumentsNotObject => K::InvalidInput,
            Error::TooManyPending { .. } => K::Busy,
            Error::TransmitFull(_) => K::TransmitFull,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json(e) => write!(f, "QMP: {e}"),
            Error::NotGreeting => f.write_str("QMP: what arrived first was not a greeting"),
            Error::BadMessage { what } => write!(f, "QMP: bad message: {what}"),
            Error::WrongState { state, operation } => {
                write!(f, "QMP: {operation} is not allowed in state {state:?}")
            }
            Error::OobNotNegotiated => f.write_str("QMP: out-of-band execution was not negotiated"),
            Error::IdInUse => {
                f.write_str("QMP: the command's id is already in use (a command sent under it is unanswered)")
            }
            Error::ArgumentsNotObject => f.write_str("QMP: command arguments must be a JSON object"),
            Error::TooManyPending { limit } => {
                write!(f, "QMP: {limit} commands already in flight")
            }
            Error::TransmitFull(e) => write!(f, "QMP: transmit {e}"),
            Error::CommitTooLarge(e) => write!(f, "QMP: {e}"),
        }
    }
}

crate::qapi::client_error!(Error);

/// The QMP client machine. See the [module documentation](self).
pub struct Client<S: Storage> {
    framer: Framer<S::Rx>,
    core: Core<S>,
}

/// Everything but the receive side, so that events can borrow the framer
/// while the rest of the machine changes.
struct Core<S: Storage> {
    config: Config,
    state: State,
    tx: TxBuf<S::Tx>,
    table: Table<S::Table<Pending>>,
    oob: bool,
    eof: bool,
    closed_reported: bool,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.core.state)
            .field("pending", &self.core.table.len())
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Client<S> {
    /// A client waiting for QEMU's greeting.
    pub fn new(config: Config) -> Self {
        Client {
            framer: Framer::new(S::rx(config.limits.max_message), config.limits),
            core: Core {
                config,
                state: State::AwaitingGreeting,
                tx: TxBuf::new(S::tx(config.max_transmit)),
                table: Table::new(S::table(config.max_pending)),
                oob: false,
                eof: false,
                closed_reported: false,
            },
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Whether out-of-band execution was negotiated.
    pub fn oob(&self) -> bool {
        self.core.oob
    }

    /// How many commands are waiting for a reply (forgotten ones excluded).
    pub fn in_flight(&self) -> usize {
        self.core.table.in_flight()
    }

    /// Sends `name` with `arguments` (a JSON object), under an id the machine
    /// assigns and returns.
    pub fn execute(&mut self, name: &str, arguments: Option<Value<'_>>) -> Result<Id, Error> {
        self.send(Command { name, arguments, id: None, oob: false })
    }

    /// Like [`Client::execute`], out of band (`exec-oob`): only once `oob` is negotiated.
    pub fn execute_oob(&mut self, name: &str, arguments: Option<Value<'_>>) -> Result<Id, Error> {
        self.send(Command { name, arguments, id: None, oob: true })
    }

    /// Like [`Client::execute`], with the arguments written by `arguments`
    /// straight into the transmit buffer (no JSON text to build first).
    ///
    /// ```
    /// use vmwire_proto::{Machine, buf::Fixed, qmp::{Client, Config}};
    /// # let mut qmp = Client::<Fixed<4096>>::new(Config::default());
    /// # qmp.receive(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")?;
    /// # qmp.poll()?;
    /// # let n = qmp.transmit().len();
    /// # qmp.transmitted(n);
    /// qmp.execute_with("human-monitor-command", |args| {
    ///     args.str("command-line", "info status")?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(qmp.transmit(), br#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"},"id":1}"#.iter().chain(b"\r\n").copied().collect::<Vec<u8>>());
    /// # Ok::<(), vmwire_proto::qmp::Error>(())
    /// ```
    pub fn execute_with(
        &mut self,
        name: &str,
        arguments: impl FnOnce(&mut ObjectWriter<'_, S::Tx>) -> Result<(), Full>,
    ) -> Result<Id, Error> {
        self.core.ready_for("execute")?;
        let id = self.core.table.fresh_id();
        let args = |obj: &mut ObjectWriter<'_, S::Tx>| obj.object("arguments", arguments).map(drop);
        self.core.encode(Pending::new(id.clone()), "execute", name, args)?;
        Ok(id)
    }

    /// Sends `command`. Commands may be sent from the greeting on: they queue
    /// behind `qmp_capabilities`, which QEMU handles first.
    pub fn send(&mut self, command: Command<'_>) -> Result<Id, Error> {
        let core = &mut self.core;
        core.ready_for("execute")?;
        if command.oob && !(core.oob && core.state == State::Ready) {
            return Err(Error::OobNotNegotiated);
        }
        let id = core.table.admit(&command)?;
        let verb = if command.oob { "exec-oob" } else { "execute" };
        let pending = Pending { oob: command.oob, ..Pending::new(id.clone()) };
        core.encode(pending, verb, command.name, arguments(command.arguments))?;
        Ok(id)
    }

    /// Gives up on command `id` (its timeout ran out). Its reply, if it ever
    /// comes, is reported as [`Event::Stale`] and matched to nobody. Returns
    /// whether `id` was pending.
    pub fn forget(&mut self, id: &Id) -> bool {
        self.core.table.forget(id)
    }

    /// Ends the session from this side (the adapter saw an I/O error, or is
    /// done): pending commands are reported failed, then [`Event::Closed`].
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.core.tx.clear();
    }
}

/// Writes `"arguments": value` if there is a value.
fn arguments<S: Sink + ?Sized>(value: Option<Value<'_>>) -> impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full> {
    move |obj| match value {
        Some(value) => obj.value("arguments", value).map(drop),
        None => Ok(()),
    }
}

impl<S: Storage> Core<S> {
    fn ready_for(&self, operation: &'static str) -> Result<(), Error> {
        match self.state {
            State::Negotiating | State::Ready => Ok(()),
            state => Err(Error::WrongState { state, operation }),
        }
    }

    /// Encodes a command and records it as pending, all or nothing.
    fn encode(
        &mut self,
        pending: Pending,
        verb: &str,
        name: &str,
        args: impl FnOnce(&mut ObjectWriter<'_, S::Tx>) -> Result<(), Full>,
    ) -> Result<(), Error> {
        let id = pending.id.clone();
        self.table
            .send(&mut self.tx, pending, |out| qapi::write_command(out, verb, name, args, Some(&id), b"\r\n"))
            .map_err(Error::from)
    }

    /// Turns one framed message into an event (in `poll`'s own type: a
    /// conversion from `Result<Event, _>` copied each event through the
    /// stack, a 16-byte load over narrower stores).
    fn classify<'a>(&'a mut self, msg: Message<'a>) -> Result<Option<Event<'a>>, Error> {
        if self.state == State::AwaitingGreeting {
            let Some(greeting) = Greeting::parse(&msg) else {
                return Ok(Some(self.not_greeting(msg.raw(), Error::NotGreeting)));
            };
            self.oob = self.config.oob && greeting.offers("oob");
            let id = self.table.fresh_id();
            self.state = State::Negotiating;
            let enable = if self.oob { Some(Value::trusted(br#"{"enable":["oob"]}"#)) } else { None };
            let negotiation = Pending { own: true, ..Pending::new(id) };
            self.encode(negotiation, "execute", "qmp_capabilities", arguments(enable))?;
            return Ok(Some(Event::Greeting(greeting)));
        }
        let Some(obj) = msg.object() else {
            return Ok(Some(bad_message("not a JSON object")));
        };
        let m = Members::of(obj);
        if let Some(name) = m.event {
            let (Some(name), Some(timestamp)) = (name.as_str(), m.timestamp.and_then(parse_timestamp)) else {
                return Ok(Some(Event::Malformed(Error::BadMessage { what: "event without a name or timestamp" })));
            };
            return Ok(Some(Event::Event(AsyncEvent { name, timestamp, data: m.data })));
        }
        let reply = match m.reply() {
            Ok(reply) => reply,
            Err(what) => {
                let what = match (m.ret.is_none() && m.err.is_none(), m.greeting) {
                    (true, true) => "a second greeting",
                    (true, false) => "neither return, error nor event",
                    (false, _) => what,
                };
                let answered = m.id.and_then(|id| self.table.answered(id));
                return Ok(Some(self.malformed_reply(answered, Error::BadMessage { what })));
            }
        };
        Ok(Some(match self.table.settle(m.id, reply) {
            Settled::Own(Ok(_)) => {
                self.state = State::Ready;
                Event::Ready { oob: self.oob }
            }
            Settled::Own(Err(error)) => {
                self.state = State::Closed;
                Event::NegotiationFailed(error)
            }
            Settled::Stale { id, reply } => Event::Stale { id: self.table.keep(id), reply },
            Settled::Return { id, value } => Event::Return { id: self.table.keep(id), value },
            Settled::Error { id, error } => Event::Error { id: self.table.keep(id), error },
            Settled::Untagged(error) => Event::UntaggedError(error),
            Settled::Unmatched => Event::Unmatched(msg),
        }))
    }

    /// The first bytes were not a greeting: the session is over.
    fn not_greeting<'a>(&mut self, received: &'a [u8], error: Error) -> Event<'a> {
        self.state = State::Closed;
        Event::NotGreeting { received, error }
    }

    /// A message that is not JSON (`error`) was skipped. One over the size
    /// limit that can only be the reply to the oldest command in flight
    /// ([`Table::take_skipped`]) fails that command; otherwise the message is
    /// reported and the session goes on.
    #[cold]
    #[inline(never)]
    fn skipped(&mut self, head: &[u8], error: json::Error) -> Event<'_> {
        let answered = self.table.take_skipped(head, &error);
        self.malformed_reply(answered, Error::Json(error))
    }

    /// A message that is not a valid reply, to the command `answered` (taken
    /// out of the table), if any: if a caller waits for that command, it
    /// failed; otherwise the message is skipped. A malformed answer to
    /// `qmp_capabilities` ends the session.
    fn malformed_reply(&mut self, answered: Option<Pending>, error: Error) -> Event<'_> {
        if answered.as_ref().is_some_and(|p| p.own) {
            self.state = State::Closed;
            return Event::Malformed(error);
        }
        match self.table.failed(answered) {
            Some(id) => Event::MalformedReply { id, error },
            None => Event::Malformed(error),
        }
    }

    /// After the session closed: one `Failed` per pending command, then `Closed`.
    fn wind_down(&mut self) -> Option<Event<'_>> {
        if let Some((id, _)) = self.table.close_next(self.eof) {
            return Some(Event::Failed { id: self.table.keep(id) });
        }
        (!core::mem::replace(&mut self.closed_reported, true)).then_some(Event::Closed)
    }
}

/// [`Event::Malformed`] for a message QMP does not send. Out of line and
/// cold: built in place, its constants took registers on every message's
/// path (15 instructions a message on the QMP burst).
#[cold]
#[inline(never)]
fn bad_message<'a>(what: &'static str) -> Event<'a> {
    Event::Malformed(Error::BadMessage { what })
}

fn parse_timestamp(v: Value<'_>) -> Option<Timestamp> {
    let (seconds, microseconds) = v.pair("seconds", "microseconds", json::read_i64)?;
    Some(Timestamp { seconds, microseconds })
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = Id;

    fn recv_buf(&mut self) -> &mut [u8] {
        self.framer.recv_buf_dropping(self.core.state == State::Closed)
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        // A closed machine still takes bytes, and drops them: nothing is listening.
        crate::commit_or_eof(self, n, |m, n| m.framer.commit(n, m.core.state == State::Closed), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        let core = &mut self.core;
        if core.state == State::AwaitingGreeting {
            // A greeting is a JSON object: anything else that arrives first
            // (a banner, a prompt) is another protocol, said at once.
            if self.framer.buffered().trim_ascii_start().first().is_some_and(|&b| b != b'{') {
                let text = self.framer.buffered().trim_ascii_start();
                return Ok(Some(core.not_greeting(text, Error::NotGreeting)));
            }
        }
        if core.state != State::Closed {
            match self.framer.take(core.eof) {
                Found::Message(msg) => return core.classify(msg),
                Found::Error { error, buffered, .. } if core.state == State::AwaitingGreeting => {
                    return Ok(Some(core.not_greeting(buffered, Error::Json(error))));
                }
                Found::Error { error, skipped, .. } => return Ok(Some(core.skipped(skipped, error))),
                Found::More if core.eof => core.state = State::Closed,
                Found::More => return Ok(None),
            }
        }
        Ok(core.wind_down())
    }

    fn transmit(&self) -> &[u8] {
        self.core.tx.pending()
    }

    fn transmitted(&mut self, n: usize) {
        self.core.tx.drained(n);
    }

    fn recv_eof(&mut self) {
        self.core.eof = true;
    }

    fn close(&mut self) {
        Client::close(self);
    }

    /// Forgets the command: its reply, if it ever comes, is [`Event::Stale`].
    fn expire(&mut self, id: &Id) {
        self.forget(id);
    }
}
