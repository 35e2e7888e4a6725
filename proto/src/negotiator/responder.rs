//! The answering side: one request in, one response out, then the next.

use core::fmt::{self, Write as _};

use super::codec::{Decoder, MAX_LENGTH_LINE, Step, write_frame};
use super::{Config, Error, State, member};
use crate::Machine;
use crate::buf::{Full, Sink, Storage, TxBuf};
use crate::json::{ArrayWriter, Escape, JsonStr, Message, ObjectWriter, Separators, Value};

/// A request for one of the configured methods.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method: always one of [`Config::methods`].
    pub method: &'static str,
    /// The positional arguments: a JSON array (`[]` when the request had none).
    pub args: Value<'a>,
    /// The keyword arguments: a JSON object (`{}` when the request had none).
    pub kw: Value<'a>,
}

impl<'a> Request<'a> {
    /// The positional arguments, in order.
    pub fn args(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.args.as_array().into_iter().flatten()
    }

    /// The keyword arguments, in order, as `(name, value)`.
    pub fn kw(&self) -> impl Iterator<Item = (JsonStr<'a>, Value<'a>)> + use<'a> {
        self.kw.as_object().into_iter().flat_map(|o| o.members())
    }

    /// The keyword argument `name` (the last one, if the peer sent it twice,
    /// as Python keeps it).
    pub fn keyword(&self, name: &str) -> Option<Value<'a>> {
        self.kw.as_object().and_then(|o| member(o, name))
    }
}

/// What the [`Responder`] reports.
#[derive(Debug)]
pub enum ResponderEvent<'a> {
    /// A request for one of the configured methods. Answer it with one of
    /// the `respond` methods before anything else comes out.
    Request(Request<'a>),
    /// A request for a method not configured. The machine has queued
    /// `{"success": false, "error": "Method NAME not supported"}` itself
    /// (the Python peer's words).
    Unsupported(JsonStr<'a>),
    /// A bad request. Unless the error [breaks framing](Error::breaks_framing)
    /// (then [`ResponderEvent::Closed`] follows), the machine has answered it
    /// with an error response and the session goes on.
    Malformed(Error),
    /// The session is closed; nothing more will come. Reported once, last.
    Closed,
}

impl<'a> ResponderEvent<'a> {
    /// The request, if this is one.
    pub fn into_request(self) -> Option<Request<'a>> {
        match self {
            ResponderEvent::Request(r) => Some(r),
            _ => None,
        }
    }
}

/// The answering side of a channel: `enter_main_loop` as a sans-IO machine,
/// serving only the methods in [`Config::methods`].
///
/// Strictly one request at a time: after a [`ResponderEvent::Request`],
/// [`Machine::poll`] returns `None` until one of the `respond` methods has
/// answered it (bytes that arrive meanwhile wait in the receive buffer, up to
/// its limit).
///
/// ```
/// use vmwire_proto::{Machine, buf::Heap, negotiator::{Config, Responder, ResponderEvent}};
///
/// let mut responder = Responder::<Heap>::new(Config::default());
/// responder.receive(b"65\n{\"method\": \"raw_write\", \"args\": [\"INJECTED-BY-REMOTE\"], \"kw\": {}}")?;
/// assert!(matches!(responder.poll()?, Some(ResponderEvent::Unsupported(m)) if m == "raw_write"));
/// assert_eq!(responder.transmit(), &b"61\n{\"success\": false, \"error\": \"Method raw_write not supported\"}"[..]);
/// # Ok::<(), vmwire_proto::negotiator::Error>(())
/// ```
pub struct Responder<S: Storage> {
    decoder: Decoder<S::Rx>,
    core: Core<S>,
}

struct Core<S: Storage> {
    config: Config,
    tx: TxBuf<S::Tx>,
    state: State,
    eof: bool,
    closed_reported: bool,
}

impl<S: Storage> fmt::Debug for Responder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("state", &self.core.state)
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

/// What a request frame turned out to be.
enum Classified<'a> {
    Request(Request<'a>),
    Unsupported(JsonStr<'a>),
}

/// Reads `{"method": NAME, "args": [...], "kw": {...}}` (`args` and `kw` optional).
fn classify<'a>(msg: Message<'a>, methods: &'static [&'static str]) -> Result<Classified<'a>, Error> {
    let obj = msg.object().ok_or(Error::BadMessage { what: "request is not a JSON object" })?;
    let Some(name) = member(obj, "method").and_then(|m| m.as_str()) else {
        return Err(Error::BadMessage { what: "request without a \"method\" string" });
    };
    let Some(method) = methods.iter().copied().find(|m| name == *m) else {
        return Ok(Classified::Unsupported(name));
    };
    let args = match member(obj, "args") {
        None => Value::trusted(b"[]"),
        Some(a) if a.as_array().is_some() => a,
        Some(_) => return Err(Error::BadMessage { what: "request \"args\" is not an array" }),
    };
    let kw = match member(obj, "kw") {
        None => Value::trusted(b"{}"),
        Some(k) if k.as_object().is_some() => k,
        Some(_) => return Err(Error::BadMessage { what: "request \"kw\" is not an object" }),
    };
    Ok(Classified::Request(Request { method, args, kw }))
}

/// A `fmt::Write` into a fixed string that keeps what fits and drops the rest.
struct Clipped<const N: usize>(heapless::String<N>);

impl<const N: usize> fmt::Write for Clipped<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Writes a response, exactly as Python's `json.dumps(dict(success=…, …))` does.
fn write_response<S: Sink + ?Sized>(
    out: &mut S,
    outcome: impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full>,
) -> Result<(), Full> {
    let mut obj = ObjectWriter::with_escape(out, Escape::Ascii)?.separators(Separators::Python);
    outcome(&mut obj)?;
    obj.finish()
}

impl<S: Storage> Core<S> {
    /// Queues a response written by `outcome`, all or nothing.
    fn respond(
        &mut self,
        outcome: impl FnOnce(&mut ObjectWriter<'_, dyn Sink + '_>) -> Result<(), Full>,
    ) -> Result<(), Error> {
        self.tx
            .encode(|out| write_frame(out, |out| write_response(out as &mut dyn Sink, outcome)))
            .map_err(Error::TransmitFull)
    }

    fn respond_error(&mut self, message: &str) -> Result<(), Error> {
        self.respond(|obj| obj.bool("success", false)?.str("error", message).map(drop))
    }

    /// The machine's own answer to a request it will not hand out.
    fn refuse(&mut self, message: fmt::Arguments<'_>) -> Result<(), Error> {
        let mut text = Clipped::<512>(heapless::String::new());
        let _ = text.write_fmt(message);
        self.respond_error(&text.0)
    }

    fn answering(&self, operation: &'static str) -> Result<(), Error> {
        match self.state {
            State::Busy => Ok(()),
            state => Err(Error::WrongState { state, operation }),
        }
    }
}

impl<S: Storage> Responder<S> {
    /// A responder waiting for a request.
    pub fn new(config: Config) -> Self {
        let rx = S::rx(config.limits.max_frame.saturating_add(MAX_LENGTH_LINE + 1));
        Responder {
            decoder: Decoder::new(rx, config.limits),
            core: Core {
                config,
                tx: TxBuf::new(S::tx(config.max_transmit)),
                state: State::Idle,
                eof: false,
                closed_reported: false,
            },
        }
    }

    /// Where the session stands: [`State::Busy`] from a request until its response.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The receive decoder (its limits, and the memory it holds).
    pub fn decoder(&self) -> &Decoder<S::Rx> {
        &self.decoder
    }

    /// Answers the request with `{"success": true, "result": RESULT}` (its
    /// strings re-escaped to ASCII).
    pub fn respond(&mut self, result: Value<'_>) -> Result<(), Error> {
        self.core.answering("respond")?;
        self.core.respond(|obj| obj.bool("success", true)?.value("result", result).map(drop))?;
        self.core.state = State::Idle;
        Ok(())
    }

    /// Answers with a string result (such as a command's output).
    pub fn respond_str(&mut self, result: &str) -> Result<(), Error> {
        self.core.answering("respond")?;
        self.core.respond(|obj| obj.bool("success", true)?.str("result", result).map(drop))?;
        self.core.state = State::Idle;
        Ok(())
    }

    /// Answers with an array result whose elements `build` writes.
    pub fn respond_array(
        &mut self,
        build: impl FnOnce(&mut ArrayWriter<'_, dyn Sink + '_>) -> Result<(), Full>,
    ) -> Result<(), Error> {
        self.core.answering("respond")?;
        self.core.respond(|obj| obj.bool("success", true)?.array("result", build).map(drop))?;
        self.core.state = State::Idle;
        Ok(())
    }

    /// Answers with `{"success": false, "error": MESSAGE}`: the method failed.
    pub fn respond_error(&mut self, message: &str) -> Result<(), Error> {
        self.core.answering("respond")?;
        self.core.respond_error(message)?;
        self.core.state = State::Idle;
        Ok(())
    }

    /// Ends the session from this side; [`ResponderEvent::Closed`] follows.
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.core.tx.clear();
        self.decoder.stop();
    }
}

impl<S: Storage> Machine for Responder<S> {
    type Event<'a>
        = ResponderEvent<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = ();

    fn recv_buf(&mut self) -> &mut [u8] {
        self.decoder.recv_buf()
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        crate::commit_or_eof(self, n, |m, n| m.decoder.recv_commit(n), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<ResponderEvent<'_>>, Error> {
        let Responder { decoder, core } = self;
        match core.state {
            // The request handed out holds the floor until it is answered.
            State::Busy => return Ok(None),
            State::Idle => {
                let step = match decoder.step() {
                    Step::More if core.eof => match decoder.finish() {
                        Some(e) => Step::Error(e),
                        None => Step::More,
                    },
                    step => step,
                };
                match step {
                    Step::Frame { start, end } => {
                        return match classify(decoder.message(start, end), core.config.methods) {
                            Ok(Classified::Request(request)) => {
                                core.state = State::Busy;
                                Ok(Some(ResponderEvent::Request(request)))
                            }
                            Ok(Classified::Unsupported(name)) => {
                                core.refuse(format_args!("Method {name} not supported"))?;
                                Ok(Some(ResponderEvent::Unsupported(name)))
                            }
                            Err(e) => {
                                core.refuse(format_args!("{e}"))?;
                                Ok(Some(ResponderEvent::Malformed(e)))
                            }
                        };
                    }
                    Step::Error(e) if e.breaks_framing() => {
                        core.state = State::Closed;
                        return Ok(Some(ResponderEvent::Malformed(e)));
                    }
                    Step::Error(e) => {
                        core.refuse(format_args!("{e}"))?;
                        return Ok(Some(ResponderEvent::Malformed(e)));
                    }
                    Step::More if core.eof => core.state = State::Closed,
                    Step::More => return Ok(None),
                }
            }
            State::Closed => {}
        }
        Ok((!core::mem::replace(&mut core.closed_reported, true)).then_some(ResponderEvent::Closed))
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
        Responder::close(self);
    }

    /// Closes: a caller that stops halfway through its request leaves no
    /// way to find the next one's start.
    fn expire(&mut self, _request: &()) {
        self.close();
    }
}
