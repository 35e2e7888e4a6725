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
use crate::buf::{Buf, Full, Sink, Storage, TxBuf};
use crate::json::{self, Framer, JsonStr, Kind, Limits, Message, ObjectWriter, Step, Value};

/// Longest caller-chosen string id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A command's id, as sent and as echoed back in its reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A number; the ids the machine assigns itself are numbers.
    Number(u64),
    /// A string chosen by the caller (at most [`MAX_ID_LEN`] bytes).
    String(heapless::String<MAX_ID_LEN>),
}

impl Id {
    /// A string id; `None` if longer than [`MAX_ID_LEN`] bytes.
    pub fn string(s: &str) -> Option<Self> {
        heapless::String::try_from(s).ok().map(Id::String)
    }

    /// Whether the reply id `v` is this id. QEMU echoes an id as JSON it
    /// re-serialised itself (`"é"` comes back as `"\u00E9"`), so strings are
    /// compared after decoding.
    pub fn matches(&self, v: Value<'_>) -> bool {
        match self {
            Id::Number(n) => v.as_u64() == Some(*n),
            Id::String(s) => v.as_str().is_some_and(|j| j == s.as_str()),
        }
    }

    fn write<S: Sink + ?Sized>(&self, obj: &mut ObjectWriter<'_, S>) -> Result<(), Full> {
        match self {
            Id::Number(n) => obj.u64("id", *n)?,
            Id::String(s) => obj.str("id", s)?,
        };
        Ok(())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

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

/// The peer's own error reply: `{"class": …, "desc": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// Error class, such as `GenericError` or `CommandNotFound`.
    pub class: JsonStr<'a>,
    /// Human-readable description.
    pub desc: JsonStr<'a>,
}

impl ErrorReply<'_> {
    fn parse(v: Value<'_>) -> Option<ErrorReply<'_>> {
        let (mut class, mut desc) = (None, None);
        for (key, value) in v.as_object()?.members() {
            if key == "class" {
                class = value.as_str();
            } else if key == "desc" {
                desc = value.as_str();
            }
        }
        Some(ErrorReply { class: class?, desc: desc? })
    }
}

impl fmt::Display for ErrorReply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}

/// A command's outcome: its `return` value, or the peer's error.
pub type Reply<'a> = Result<Value<'a>, ErrorReply<'a>>;

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
    /// A command succeeded.
    Return {
        /// The command's id.
        id: Id,
        /// Its `return` value.
        value: Value<'a>,
    },
    /// A command failed: the peer said no.
    Error {
        /// The command's id.
        id: Id,
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
        id: Id,
        /// What it came back with.
        reply: Reply<'a>,
    },
    /// A reply whose id matches no command sent on this session (or a return
    /// without an id). Never matched to another caller.
    Unmatched(Message<'a>),
    /// A message that could not be understood, and was skipped. The session
    /// goes on.
    Malformed(Error),
    /// The session closed before this command's reply arrived. Reported once
    /// for every command still pending.
    Failed {
        /// The command's id.
        id: Id,
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
    /// The first message was not a `{"QMP": …}` greeting. Fatal.
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
    IdInUse(Id),
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
    CommitTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json(e) => write!(f, "QMP: {e}"),
            Error::NotGreeting => f.write_str("QMP: the first message was not a greeting"),
            Error::BadMessage { what } => write!(f, "QMP: bad message: {what}"),
            Error::WrongState { state, operation } => {
                write!(f, "QMP: {operation} is not allowed in state {state:?}")
            }
            Error::OobNotNegotiated => f.write_str("QMP: out-of-band execution was not negotiated"),
            Error::IdInUse(id) => write!(f, "QMP: command id {id} is already in use"),
            Error::ArgumentsNotObject => f.write_str("QMP: command arguments must be a JSON object"),
            Error::TooManyPending { limit } => {
                write!(f, "QMP: {limit} commands already in flight")
            }
            Error::TransmitFull(e) => write!(f, "QMP: transmit {e}"),
            Error::CommitTooLarge => f.write_str("QMP: committed more bytes than recv_buf offered"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Json(e) => Some(e),
            Error::TransmitFull(e) => Some(e),
            _ => None,
        }
    }
}

impl From<json::Error> for Error {
    fn from(e: json::Error) -> Self {
        Error::Json(e)
    }
}

/// A command in flight.
#[derive(Debug, Clone)]
struct Pending {
    id: Id,
    /// The caller gave up on it; its reply will be reported as stale.
    forgotten: bool,
    /// It is the `qmp_capabilities` the machine sent itself.
    negotiation: bool,
}

/// A command to send, for when [`Client::execute`] is not enough.
///
/// ```
/// use vmwire_proto::{json::Value, qmp::{Command, Id}};
/// let args = Value::parse(br#"{"fdname": "disk0"}"#)?;
/// let cmd = Command::new("getfd").arguments(args).id(Id::string("fd-1").unwrap());
/// # Ok::<(), vmwire_proto::json::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Command<'c> {
    name: &'c str,
    arguments: Option<Value<'c>>,
    id: Option<Id>,
    oob: bool,
}

impl<'c> Command<'c> {
    /// A command named `name`, without arguments.
    pub fn new(name: &'c str) -> Self {
        Command { name, arguments: None, id: None, oob: false }
    }

    /// With these arguments (a JSON object).
    pub fn arguments(mut self, arguments: Value<'c>) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// With this id instead of one the machine assigns.
    pub fn id(mut self, id: Id) -> Self {
        self.id = Some(id);
        self
    }

    /// Out of band (`exec-oob`).
    pub fn oob(mut self) -> Self {
        self.oob = true;
        self
    }
}

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
    pending: S::Table<Pending>,
    next_id: u64,
    oob: bool,
    eof: bool,
    closed_reported: bool,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.core.state)
            .field("pending", &self.core.pending.as_slice().len())
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
                pending: S::table(config.max_pending),
                next_id: 0,
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
        self.core.pending.as_slice().iter().filter(|p| !p.forgotten).count()
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

    /// Sends `command`. Commands may be sent from the greeting on: they queue
    /// behind `qmp_capabilities`, which QEMU handles first.
    pub fn send(&mut self, command: Command<'_>) -> Result<Id, Error> {
        let core = &mut self.core;
        match core.state {
            State::Negotiating | State::Ready => {}
            state => {
                return Err(Error::WrongState { state, operation: "execute" });
            }
        }
        if command.oob && !(core.oob && core.state == State::Ready) {
            return Err(Error::OobNotNegotiated);
        }
        if command.arguments.is_some_and(|a| a.kind() != Kind::Object) {
            return Err(Error::ArgumentsNotObject);
        }
        let id = match command.id {
            Some(id) if core.position(|p| p.id == id).is_some() => return Err(Error::IdInUse(id)),
            Some(id) => id,
            None => core.fresh_id(),
        };
        core.encode(&id, command.name, command.arguments, command.oob, false)?;
        Ok(id)
    }

    /// Gives up on command `id` (its timeout ran out). Its reply, if it ever
    /// comes, is reported as [`Event::Stale`] and matched to nobody. Returns
    /// whether `id` was pending.
    pub fn forget(&mut self, id: &Id) -> bool {
        let slots = self.core.pending.as_mut_slice();
        match slots.iter_mut().find(|p| p.id == *id && !p.forgotten) {
            Some(p) => {
                p.forgotten = true;
                true
            }
            None => false,
        }
    }

    /// Ends the session from this side (the adapter saw an I/O error, or is
    /// done): pending commands are reported failed, then [`Event::Closed`].
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.core.tx.clear();
    }
}

impl<S: Storage> Core<S> {
    fn position(&self, f: impl Fn(&Pending) -> bool) -> Option<usize> {
        self.pending.as_slice().iter().position(f)
    }

    fn fresh_id(&mut self) -> Id {
        loop {
            let id = Id::Number(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if self.position(|p| p.id == id).is_none() {
                return id;
            }
        }
    }

    /// Encodes a command and records it as pending, all or nothing.
    fn encode(
        &mut self,
        id: &Id,
        name: &str,
        args: Option<Value<'_>>,
        oob: bool,
        negotiation: bool,
    ) -> Result<(), Error> {
        if self.pending.as_slice().len() >= self.pending.limit() {
            // Make room by dropping the oldest forgotten command, if any.
            match self.position(|p| p.forgotten) {
                Some(i) => {
                    self.pending.remove_at(i);
                }
                None => {
                    return Err(Error::TooManyPending { limit: self.pending.limit() });
                }
            }
        }
        self.tx
            .encode(|out| {
                let mut obj = ObjectWriter::new(out)?;
                obj.str(if oob { "exec-oob" } else { "execute" }, name)?;
                if let Some(args) = args {
                    obj.value("arguments", args)?;
                }
                id.write(&mut obj)?;
                obj.finish()?;
                out.put(b"\r\n")
            })
            .map_err(Error::TransmitFull)?;
        let entry = Pending { id: id.clone(), forgotten: false, negotiation };
        self.pending.try_push(entry).map_err(|full| Error::TooManyPending { limit: full.limit })
    }

    /// Turns one framed message into an event.
    fn classify<'a>(&mut self, msg: Message<'a>) -> Result<Event<'a>, Error> {
        if self.state == State::AwaitingGreeting {
            let Some(greeting) = Greeting::parse(&msg) else {
                self.state = State::Closed;
                return Err(Error::NotGreeting);
            };
            self.oob = self.config.oob && greeting.offers("oob");
            let id = self.fresh_id();
            self.state = State::Negotiating;
            let enable = if self.oob { Some(Value::trusted(br#"{"enable":["oob"]}"#)) } else { None };
            self.encode(&id, "qmp_capabilities", enable, false, true)?;
            return Ok(Event::Greeting(greeting));
        }
        let Some(obj) = msg.object() else {
            return Ok(Event::Malformed(Error::BadMessage { what: "not a JSON object" }));
        };
        // One pass over the (indexed) members finds everything classification needs.
        let (mut ret, mut err, mut event, mut id, mut timestamp, mut data, mut greeting) =
            (None, None, None, None, None, None, false);
        for (key, value) in obj.members() {
            // QEMU never escapes its keys; only a key that matches nothing
            // as it stands is worth decoding.
            let mut unescaped = [0u8; 16];
            let mut name = key.raw();
            loop {
                match name {
                    b"return" => ret = Some(value),
                    b"error" => err = Some(value),
                    b"event" => event = Some(value),
                    b"id" => id = Some(value),
                    b"timestamp" => timestamp = Some(value),
                    b"data" => data = Some(value),
                    b"QMP" => greeting = true,
                    _ if name == key.raw() && key.has_escapes() => {
                        name = key.unescape_into(&mut unescaped).map_or(&b""[..], str::as_bytes);
                        continue;
                    }
                    _ => {}
                }
                break;
            }
        }
        if let Some(name) = event {
            let (Some(name), Some(timestamp)) = (name.as_str(), timestamp.and_then(parse_timestamp)) else {
                return Ok(Event::Malformed(Error::BadMessage { what: "event without a name or timestamp" }));
            };
            return Ok(Event::Event(AsyncEvent { name, timestamp, data }));
        }
        let reply = match (ret, err) {
            (Some(value), None) => Ok(value),
            (None, Some(error)) => match ErrorReply::parse(error) {
                Some(error) => Err(error),
                None => {
                    return Ok(Event::Malformed(Error::BadMessage { what: "error without class and desc" }));
                }
            },
            (Some(_), Some(_)) => {
                return Ok(Event::Malformed(Error::BadMessage { what: "both return and error" }));
            }
            (None, None) if greeting => {
                return Ok(Event::Malformed(Error::BadMessage { what: "a second greeting" }));
            }
            (None, None) => {
                return Ok(Event::Malformed(Error::BadMessage { what: "neither return, error nor event" }));
            }
        };
        let Some(id_value) = id else {
            return Ok(match reply {
                Err(error) => Event::UntaggedError(error),
                Ok(_) => Event::Unmatched(msg),
            });
        };
        // Read the reply's id once, then compare it with each pending one.
        let number = id_value.as_u64();
        let string = id_value.as_str();
        let Some(slot) = self.position(|p| match &p.id {
            Id::Number(n) => number == Some(*n),
            Id::String(s) => string.is_some_and(|j| j == s.as_str()),
        }) else {
            return Ok(Event::Unmatched(msg));
        };
        let Some(pending) = self.pending.remove_at(slot) else {
            return Ok(Event::Unmatched(msg));
        };
        Ok(match (pending.negotiation, pending.forgotten, reply) {
            (true, _, Ok(_)) => {
                self.state = State::Ready;
                Event::Ready { oob: self.oob }
            }
            (true, _, Err(error)) => {
                self.state = State::Closed;
                Event::NegotiationFailed(error)
            }
            (false, true, reply) => Event::Stale { id: pending.id, reply },
            (false, false, Ok(value)) => Event::Return { id: pending.id, value },
            (false, false, Err(error)) => Event::Error { id: pending.id, error },
        })
    }

    /// After the session closed: one `Failed` per pending command, then `Closed`.
    fn wind_down(&mut self) -> Option<Event<'static>> {
        while let Some(p) = self.pending.remove_at(0) {
            if !p.forgotten && !p.negotiation {
                return Some(Event::Failed { id: p.id });
            }
        }
        (!core::mem::replace(&mut self.closed_reported, true)).then_some(Event::Closed)
    }
}

fn parse_timestamp(v: Value<'_>) -> Option<Timestamp> {
    let (mut seconds, mut microseconds) = (None, None);
    for (key, value) in v.as_object()?.members() {
        if key == "seconds" {
            seconds = value.as_i64();
        } else if key == "microseconds" {
            microseconds = value.as_i64();
        }
    }
    Some(Timestamp { seconds: seconds?, microseconds: microseconds? })
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;

    fn recv_buf(&mut self) -> &mut [u8] {
        self.framer.recv_buf()
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        if n == 0 {
            self.core.eof = true;
            return Ok(());
        }
        if !self.framer.recv_commit(n) {
            return Err(Error::CommitTooLarge);
        }
        if self.core.state == State::Closed {
            // Nothing is listening any more: whatever still arrives is dropped.
            let all = self.framer.buffered().len();
            self.framer.discard(all);
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        let core = &mut self.core;
        if core.state != State::Closed {
            let step = match self.framer.step() {
                Step::More if core.eof => self.framer.step_finish().unwrap_or(Step::More),
                step => step,
            };
            match step {
                Step::Message(span) => return core.classify(self.framer.message(span)).map(Some),
                Step::Error(e) => return Ok(Some(Event::Malformed(Error::Json(e)))),
                Step::More if core.eof => core.state = State::Closed,
                Step::More => return Ok(None),
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
}
