//! The server side of QMP: a sans-IO machine that speaks to a QMP client as
//! QEMU does, so that something other than QEMU (a multiplexer, a test
//! double) can stand where a monitor socket is.
//!
//! The [`Server`] writes a greeting it is given (QEMU's own version and
//! capabilities), handles `qmp_capabilities` and every refusal that QEMU
//! makes at the protocol level (a command before negotiation, negotiating
//! twice, input that is not JSON or not a command, `exec-oob` without `oob`)
//! with QEMU 7.2's own replies, byte for byte, and hands every other command
//! to its caller as [`Event::Command`]: the name, the raw `arguments`, the
//! client's raw `id` JSON text, and whether it came out of band. The caller
//! answers with [`Server::send_return`] or [`Server::send_error`], passing
//! the id back; events go out with [`Server::send_event`].
//!
//! Every message goes out on one line ending in `\r\n`, as QEMU's do:
//! line breaks between the tokens of a client's id (or of any value given
//! back) are written as spaces.
//!
//! Replies to in-band commands go out in the order the commands came, as
//! QEMU's do: a refusal the machine makes itself waits until the commands
//! before it have been answered (the machine stops reading until then).
//!
//! ```
//! use vmwire_proto::{Machine, buf::Heap, json::Value, qmp::server::{Event, Server, ServerConfig}};
//!
//! let mut server = Server::<Heap>::new(ServerConfig::default());
//! server.greet((7, 2, 22), "", &["oob"])?;
//! server.receive(br#"{"execute": "query-status", "id": 1}"#)?;
//! server.receive(b"\n{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"stop\", \"id\": {\"a\": [1]}}\n")?;
//! assert!(matches!(server.poll()?, Some(Event::Refused { .. })));
//! assert!(matches!(server.poll()?, Some(Event::Negotiated { oob: false })));
//! let Some(Event::Command(command)) = server.poll()? else { panic!() };
//! assert!(command.name == "stop");
//! let id = command.id.map(|id| id.raw().to_vec());
//! assert_eq!(server.poll()?.map(|_| ()), None);
//! let id = id.as_deref().map(Value::parse).transpose()?;
//! server.send_return(id, false, Value::parse(b"{}")?)?;
//! assert_eq!(
//!     std::str::from_utf8(server.transmit()).unwrap(),
//!     concat!(
//!         r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#, "\r\n",
//!         r#"{"id": 1, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"#, "\r\n",
//!         r#"{"return": {}}"#, "\r\n",
//!         r#"{"return": {}, "id": {"a": [1]}}"#, "\r\n",
//!     )
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use super::{Error, State, Timestamp};
use crate::Machine;
use crate::buf::{Full, Sink, Storage, TxBuf};
use crate::json::{self, Found, Framer, JsonStr, Kind, Limits, Message, ObjectWriter, Separators, Value};

/// Settings for a [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Size and depth limits for one message from the client (QEMU's own
    /// are 64 MiB and depth 1024).
    pub limits: Limits,
    /// Most bytes waiting to be written to the client (with
    /// [`Heap`](crate::buf::Heap) storage): room for the largest reply.
    pub max_transmit: usize,
    /// Most commands handed out and not yet answered: past it the machine
    /// reads nothing more until replies are sent.
    pub max_in_flight: usize,
}

impl Default for ServerConfig {
    /// 16 MiB messages at depth 128, 17 MiB to transmit, 64 commands in flight.
    fn default() -> Self {
        ServerConfig {
            limits: Limits { max_message: 16 << 20, max_depth: 128 },
            max_transmit: 17 << 20,
            max_in_flight: 64,
        }
    }
}

/// What [`Server::poll`] hands out.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The client negotiated (`qmp_capabilities` answered): from now on it
    /// gets events, and commands.
    Negotiated {
        /// Whether out-of-band execution was enabled.
        oob: bool,
    },
    /// A command for the caller to run and answer.
    Command(Request<'a>),
    /// A message the machine refused itself, as QEMU would (the reply is
    /// queued, or waits for the in-band replies before it).
    Refused {
        /// Its error class.
        class: &'static str,
    },
    /// The client's stream ended (or [`Server::close`]): the last event.
    Closed,
}

/// A command from the client.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The command's name (`execute` or `exec-oob`).
    pub name: JsonStr<'a>,
    /// Its `arguments` object as the client wrote it, if any.
    pub arguments: Option<Value<'a>>,
    /// Its `id` as the client wrote it (any JSON value), if any: give it back
    /// with the reply.
    pub id: Option<Value<'a>>,
    /// Whether it came as `exec-oob`.
    pub oob: bool,
}

/// The QMP server machine. See the [module documentation](self).
pub struct Server<S: Storage> {
    framer: Framer<S::Rx>,
    core: Core<S>,
}

struct Core<S: Storage> {
    config: ServerConfig,
    state: State,
    tx: TxBuf<S::Tx>,
    /// A refusal waiting for the in-band replies ahead of it.
    held: TxBuf<S::Tx>,
    offers_oob: bool,
    oob: bool,
    in_band: usize,
    out_of_band: usize,
    eof: bool,
    closed_reported: bool,
    /// [`Server::close`] was called: nothing more is written.
    shut: bool,
}

impl<S: Storage> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.core.state)
            .field("in_band", &self.core.in_band)
            .field("out_of_band", &self.core.out_of_band)
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

/// An error reply's text: `pre`, a piece of the client's input (raw JSON
/// string contents), `post`.
#[derive(Debug, Clone, Copy)]
struct Refusal<'a> {
    class: &'static str,
    pre: &'static str,
    word: &'a [u8],
    post: &'static str,
}

const GENERIC: &str = "GenericError";
const NOT_FOUND: &str = "CommandNotFound";

impl<'a> Refusal<'a> {
    fn generic(desc: &'static str) -> Self {
        Refusal { class: GENERIC, pre: desc, word: b"", post: "" }
    }

    fn quoting(pre: &'static str, word: &'a [u8], post: &'static str) -> Self {
        Refusal { class: GENERIC, pre, word, post }
    }

    /// The reply to a message that is not JSON (QEMU's parser's words where
    /// they can be matched).
    fn parse(e: json::Error) -> Refusal<'static> {
        use json::ErrorKind as K;
        Refusal::generic(match e.kind {
            K::TooLarge { .. } => "JSON parse error, message too large",
            K::TooDeep { .. } => "JSON parse error, nesting too deep",
            K::ControlInString => "JSON parse error, control character in string",
            K::InvalidEscape => "JSON parse error, invalid escape sequence in string",
            K::LoneSurrogate => "JSON parse error, lone surrogate in string",
            K::InvalidUtf8 => "JSON parse error, invalid UTF-8 sequence in string",
            _ => "JSON parse error, expecting value",
        })
    }
}

impl<S: Storage> Server<S> {
    /// A server that has said nothing yet: [`Server::greet`] first.
    pub fn new(config: ServerConfig) -> Self {
        Server {
            framer: Framer::new(S::rx(config.limits.max_message), config.limits),
            core: Core {
                config,
                state: State::AwaitingGreeting,
                tx: TxBuf::new(S::tx(config.max_transmit)),
                held: TxBuf::new(S::tx(config.max_transmit)),
                offers_oob: false,
                oob: false,
                in_band: 0,
                out_of_band: 0,
                eof: false,
                closed_reported: false,
                shut: false,
            },
        }
    }

    /// Queues the greeting, `{"QMP": {"version": …, "capabilities": […]}}`,
    /// as QEMU writes it; `oob` may be enabled by the client only if it is
    /// among `capabilities`.
    pub fn greet(&mut self, version: (u64, u64, u64), package: &str, capabilities: &[&str]) -> Result<(), Error> {
        let core = &mut self.core;
        if core.state != State::AwaitingGreeting {
            return Err(Error::WrongState { state: core.state, operation: "greet" });
        }
        core.tx
            .encode(|out| {
                qemu_object(out, |qmp| {
                    qmp.object("QMP", |inner| {
                        inner.object("version", |v| {
                            v.object("qemu", |q| {
                                q.u64("micro", version.2)?.u64("minor", version.1)?.u64("major", version.0).map(drop)
                            })?;
                            v.str("package", package).map(drop)
                        })?;
                        inner.array("capabilities", |caps| {
                            capabilities.iter().try_for_each(|c| caps.str(c).map(drop))
                        })?;
                        Ok(())
                    })
                    .map(drop)
                })
            })
            .map_err(Error::TransmitFull)?;
        core.offers_oob = capabilities.contains(&"oob");
        core.state = State::Negotiating;
        Ok(())
    }

    /// Where the session stands: [`State::AwaitingGreeting`] until
    /// [`Server::greet`], [`State::Negotiating`] until the client's
    /// `qmp_capabilities`, then [`State::Ready`].
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Whether the client enabled out-of-band execution.
    pub fn oob(&self) -> bool {
        self.core.oob
    }

    /// How many commands were handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.core.in_band + self.core.out_of_band
    }

    /// Answers a command with its return value: `{"return": value, "id": id}`,
    /// `id` being the command's [`Request::id`] (`None`: no id member).
    /// [`Error::TransmitFull`] if the reply does not fit beside what waits
    /// to be written: nothing is queued, and the command is still in flight.
    /// After [`Server::close`] the answer is dropped.
    pub fn send_return(&mut self, id: Option<Value<'_>>, oob: bool, value: Value<'_>) -> Result<(), Error> {
        let core = &mut self.core;
        if core.shut {
            core.answered(oob);
            return Ok(());
        }
        core.tx
            .encode(|out| {
                qemu_object(out, |obj| {
                    obj.value("return", value)?;
                    match id {
                        Some(id) => obj.value("id", id).map(drop),
                        None => Ok(()),
                    }
                })
            })
            .map_err(Error::TransmitFull)?;
        core.answered(oob);
        Ok(())
    }

    /// Answers a command with an error: `{"id": id, "error": {"class": …,
    /// "desc": …}}` (without `id` when the command had none).
    /// [`Error::TransmitFull`] as for [`Server::send_return`]; dropped after
    /// [`Server::close`].
    pub fn send_error(&mut self, id: Option<Value<'_>>, oob: bool, class: &str, desc: &str) -> Result<(), Error> {
        let core = &mut self.core;
        if core.shut {
            core.answered(oob);
            return Ok(());
        }
        core.tx
            .encode(|out| write_error(out, id, class, |out| json::write_str(out, desc, json::Escape::Ascii)))
            .map_err(Error::TransmitFull)?;
        core.answered(oob);
        Ok(())
    }

    /// Sends an event as QEMU writes it, `{"timestamp": {"seconds": …,
    /// "microseconds": …}, "event": name, "data": data}`, if the client has
    /// negotiated (QEMU sends events only then). Whether it was queued.
    pub fn send_event(&mut self, name: &str, timestamp: Timestamp, data: Option<Value<'_>>) -> Result<bool, Error> {
        let core = &mut self.core;
        if core.state != State::Ready {
            return Ok(false);
        }
        core.tx
            .encode(|out| {
                qemu_object(out, |obj| {
                    obj.object("timestamp", |t| {
                        t.i64("seconds", timestamp.seconds)?.i64("microseconds", timestamp.microseconds).map(drop)
                    })?;
                    obj.str("event", name)?;
                    match data {
                        Some(data) => obj.value("data", data).map(drop),
                        None => Ok(()),
                    }
                })
            })
            .map_err(Error::TransmitFull)?;
        Ok(true)
    }

    /// Ends the session from this side: nothing more is read or written
    /// (answers to the commands still in flight are dropped).
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.core.shut = true;
        self.core.tx.clear();
        self.core.held.clear();
    }
}

/// A sink that writes line breaks as spaces. A client's id (or any value
/// given back to it) may break lines between its tokens, but a QMP message
/// is one line, as QEMU writes it: clients read a line at a time. Inside
/// JSON strings line breaks are escaped, so only white space changes.
struct OneLine<'s, S: ?Sized>(&'s mut S);

impl<S: Sink + ?Sized> Sink for OneLine<'_, S> {
    fn put(&mut self, mut bytes: &[u8]) -> Result<(), Full> {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = bytes.split_at(i);
            self.0.put(line)?;
            self.0.put(b" ")?;
            bytes = rest.get(1..).unwrap_or_default();
        }
        self.0.put(bytes)
    }
}

/// Writes an object with QEMU's separators (`, ` and `: `) on one line, and
/// its `\r\n`.
fn qemu_object<S: Sink + ?Sized>(
    out: &mut S,
    members: impl FnOnce(&mut ObjectWriter<'_, OneLine<'_, S>>) -> Result<(), Full>,
) -> Result<(), Full> {
    let mut line = OneLine(out);
    let mut obj = ObjectWriter::with_escape(&mut line, json::Escape::Ascii)?.separators(Separators::Python);
    members(&mut obj)?;
    obj.finish()?;
    out.put(b"\r\n")
}

/// `{"id": id, "error": {"class": class, "desc": <desc>}}`, QEMU's order,
/// on one line.
fn write_error<S: Sink + ?Sized>(
    out: &mut S,
    id: Option<Value<'_>>,
    class: &str,
    desc: impl FnOnce(&mut S) -> Result<(), Full>,
) -> Result<(), Full> {
    out.put(b"{")?;
    if let Some(id) = id {
        out.put(b"\"id\": ")?;
        json::write_value(&mut OneLine(&mut *out), id, json::Escape::Ascii)?;
        out.put(b", ")?;
    }
    out.put(b"\"error\": {\"class\": ")?;
    json::write_str(out, class, json::Escape::Ascii)?;
    out.put(b", \"desc\": ")?;
    desc(out)?;
    out.put(b"}}\r\n")
}

impl<S: Storage> Core<S> {
    /// A reply went out: in-band replies all sent, a held refusal follows.
    fn answered(&mut self, oob: bool) {
        if oob {
            self.out_of_band = self.out_of_band.saturating_sub(1);
        } else {
            self.in_band = self.in_band.saturating_sub(1);
        }
        self.release_held();
    }

    /// Queues the held refusal once no in-band command is in flight, if
    /// there is room for it beside what waits to be written; if not, it
    /// stays held, and [`Machine::poll`] tries again (the reply just queued
    /// went out all the same).
    fn release_held(&mut self) {
        if self.in_band == 0 && !self.held.pending().is_empty() {
            let held = &self.held;
            if self.tx.encode(|out| out.put(held.pending())).is_ok() {
                self.held.clear();
            }
        }
    }

    /// Queues the refusal (behind the in-band commands in flight, if any).
    fn refuse(&mut self, id: Option<Value<'_>>, r: Refusal<'_>) -> Result<Event<'static>, Error> {
        let buf = if self.in_band > 0 { &mut self.held } else { &mut self.tx };
        buf.encode(|out| {
            write_error(out, id, r.class, |out| {
                out.put(b"\"")?;
                json::write_str_contents(out, r.pre, json::Escape::Ascii)?;
                out.put(r.word)?;
                json::write_str_contents(out, r.post, json::Escape::Ascii)?;
                out.put(b"\"")
            })
        })
        .map_err(Error::TransmitFull)?;
        Ok(Event::Refused { class: r.class })
    }

    /// Turns one framed message into an event.
    fn classify<'a>(&mut self, msg: Message<'a>) -> Result<Event<'a>, Error> {
        let Some(obj) = msg.object() else {
            return self.refuse(None, Refusal::generic("QMP input must be a JSON object"));
        };
        if has_duplicate_key(msg.value(), self.config.limits.max_depth) {
            return self.refuse(None, Refusal::generic("JSON parse error, duplicate key"));
        }
        let id = obj.get("id");
        let allow_oob = self.state == State::Ready && self.oob;
        let (mut name, mut oob, mut arguments) = (None::<JsonStr<'a>>, false, None);
        for (key, value) in obj.members() {
            let is_exec = key == "execute" || (allow_oob && key == "exec-oob");
            if is_exec {
                let Some(text) = value.as_str() else {
                    return self.refuse(id, Refusal::quoting("QMP input member '", key.raw(), "' must be a string"));
                };
                if name.is_some() {
                    return self.refuse(id, Refusal::generic("QMP input member 'execute' clashes with 'exec-oob'"));
                }
                name = Some(text);
                oob = key == "exec-oob";
            } else if key == "arguments" {
                if value.kind() != Kind::Object {
                    return self.refuse(id, Refusal::generic("QMP input member 'arguments' must be an object"));
                }
                arguments = Some(value);
            } else if key != "id" {
                return self.refuse(id, Refusal::quoting("QMP input member '", key.raw(), "' is unexpected"));
            }
        }
        let Some(name) = name else {
            return self.refuse(id, Refusal::generic("QMP input lacks member 'execute'"));
        };
        let negotiating = name == "qmp_capabilities" && !oob;
        match self.state {
            State::Negotiating if !negotiating => {
                let r = Refusal::generic("Expecting capabilities negotiation with 'qmp_capabilities'");
                self.refuse(id, Refusal { class: NOT_FOUND, ..r })
            }
            State::Negotiating | State::Ready if negotiating => self.negotiate(id, arguments),
            _ => {
                if oob {
                    self.out_of_band += 1;
                } else {
                    self.in_band += 1;
                }
                Ok(Event::Command(Request { name, arguments, id, oob }))
            }
        }
    }

    /// `qmp_capabilities`: its arguments checked as QEMU's visitor does.
    fn negotiate<'a>(&mut self, id: Option<Value<'_>>, arguments: Option<Value<'_>>) -> Result<Event<'a>, Error> {
        let mut enable_oob = false;
        for (key, value) in arguments.and_then(|a| a.as_object()).into_iter().flat_map(|a| a.members()) {
            if key != "enable" {
                return self.refuse(id, Refusal::quoting("Parameter '", key.raw(), "' is unexpected"));
            }
            let Some(elements) = value.as_array() else {
                return self.refuse(id, Refusal::generic("Invalid parameter type for 'enable', expected: array"));
            };
            for (i, element) in elements.enumerate() {
                let Some(capability) = element.as_str() else {
                    let mut digits = heapless::Vec::<u8, 20>::new();
                    let _ = json::write_u64(&mut digits, i as u64);
                    let r = Refusal::quoting("Invalid parameter type for 'enable[", &digits, "]', expected: string");
                    return self.refuse(id, r);
                };
                if capability != "oob" {
                    let r = Refusal::quoting("Parameter 'null' does not accept value '", capability.raw(), "'");
                    return self.refuse(id, r);
                }
                enable_oob = true;
            }
        }
        if self.state == State::Ready {
            let r = Refusal::generic("Capabilities negotiation is already complete, command ignored");
            return self.refuse(id, Refusal { class: NOT_FOUND, ..r });
        }
        if enable_oob && !self.offers_oob {
            return self.refuse(id, Refusal::generic("Capability oob not available"));
        }
        self.tx
            .encode(|out| {
                qemu_object(out, |obj| {
                    obj.object("return", |_| Ok(()))?;
                    match id {
                        Some(id) => obj.value("id", id).map(drop),
                        None => Ok(()),
                    }
                })
            })
            .map_err(Error::TransmitFull)?;
        self.state = State::Ready;
        self.oob = enable_oob;
        Ok(Event::Negotiated { oob: enable_oob })
    }
}

/// Whether an object anywhere in `value` has a key twice (QEMU's parser
/// refuses that; `"a"` and `"\u0061"` count as different here).
fn has_duplicate_key(value: Value<'_>, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    match value.kind() {
        Kind::Object => {
            let Some(obj) = value.as_object() else { return false };
            repeats(obj.members().map(|(k, _)| k.raw())) || obj.members().any(|(_, v)| has_duplicate_key(v, depth - 1))
        }
        Kind::Array => value.as_array().into_iter().flatten().any(|v| has_duplicate_key(v, depth - 1)),
        _ => false,
    }
}

/// Whether `keys` has a repeat: sorted with `alloc`, pairwise without (where
/// fixed storage keeps objects small).
fn repeats<'a>(keys: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
    #[cfg(feature = "alloc")]
    {
        let mut keys: alloc::vec::Vec<&[u8]> = keys.collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
    #[cfg(not(feature = "alloc"))]
    {
        let mut outer = keys;
        while let Some(key) = outer.next() {
            if outer.clone().any(|other| other == key) {
                return true;
            }
        }
        false
    }
}

impl<S: Storage> Machine for Server<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = ();

    fn recv_buf(&mut self) -> &mut [u8] {
        self.framer.recv_buf_dropping(self.core.state == State::Closed)
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        crate::commit_or_eof(self, n, |m, n| m.framer.commit(n, m.core.state == State::Closed), Error::CommitTooLarge)
    }

    /// The next event; `None` until more bytes arrive, and also while
    /// commands wait for replies (a refusal waiting its turn, or
    /// [`ServerConfig::max_in_flight`] reached) or a refusal waits for room
    /// in the transmit buffer: [`Machine::recv_buf`] may then be empty.
    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        let core = &mut self.core;
        match core.state {
            State::AwaitingGreeting => return Ok(None),
            State::Closed => {
                return Ok((!core::mem::replace(&mut core.closed_reported, true)).then_some(Event::Closed));
            }
            _ => {}
        }
        core.release_held();
        if !core.held.pending().is_empty() || core.in_band + core.out_of_band >= core.config.max_in_flight {
            return Ok(None);
        }
        match self.framer.take(core.eof) {
            Found::Message(msg) => core.classify(msg).map(Some),
            Found::Error { error, .. } => core.refuse(None, Refusal::parse(error)).map(Some),
            Found::More if core.eof => {
                core.state = State::Closed;
                core.closed_reported = true;
                Ok(Some(Event::Closed))
            }
            Found::More => Ok(None),
        }
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
        Server::close(self);
    }

    /// Nothing to do: the client's commands have no deadline here.
    fn expire(&mut self, _: &()) {}
}
