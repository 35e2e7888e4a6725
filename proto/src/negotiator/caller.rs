//! The calling side: one request out, one response back, then the next.

use core::fmt;

use super::codec::{Decoder, MAX_LENGTH_LINE, Step, write_frame};
use super::{Config, Error, State, member, str_member};
use crate::Machine;
use crate::buf::{Full, Sink, Storage, TxBuf};
use crate::json::{ArrayWriter, Escape, JsonStr, Kind, Message, ObjectWriter, Separators, Value};

/// A call's outcome: the `result`, or the peer's `error` text.
pub type Reply<'a> = Result<Value<'a>, JsonStr<'a>>;

/// What the [`Caller`] reports.
#[derive(Debug)]
pub enum CallerEvent<'a> {
    /// The call succeeded: `{"success": true, "result": …}`.
    Result(Value<'a>),
    /// The remote method failed: `{"success": false, "error": "…"}` (what the
    /// Python peer raises as `RemoteMethodFailed`).
    Error(JsonStr<'a>),
    /// The call's response could not be understood; the call is over. If the
    /// error [breaks framing](Error::breaks_framing), [`CallerEvent::Closed`] follows.
    Invalid(Error),
    /// The response to a call that was [forgotten](Caller::forget), matched
    /// to nobody.
    Stale(Reply<'a>),
    /// A frame that arrived while no call was waiting (and was dropped).
    Unsolicited(Value<'a>),
    /// A bad frame that no call was waiting for (or a forgotten call's).
    Malformed(Error),
    /// The stream ended while the call was waiting for its response.
    Failed,
    /// The session is closed; nothing more will come. Reported once, last.
    Closed,
}

/// The calling side of a channel: `call_remote_method` as a sans-IO machine.
///
/// One call at a time: [`Caller::call`] again before the response (or
/// [`Caller::forget`]) is [`Error::WrongState`].
///
/// ```
/// use vmwire_proto::{Machine, buf::Heap, negotiator::{Caller, CallerEvent, Config}};
///
/// let mut caller = Caller::<Heap>::new(Config::default());
/// caller.call_with("execute", |args| { args.str("find-distributor-id")?; Ok(()) }, |_| Ok(()))?;
/// assert_eq!(caller.transmit(), &b"64\n{\"method\": \"execute\", \"args\": [\"find-distributor-id\"], \"kw\": {}}"[..]);
/// caller.receive(b"37\n{\"success\": true, \"result\": \"Debian\"}")?;
/// match caller.poll()? {
///     Some(CallerEvent::Result(v)) => assert!(v.as_str().unwrap() == "Debian"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), vmwire_proto::negotiator::Error>(())
/// ```
pub struct Caller<S: Storage> {
    decoder: Decoder<S::Rx>,
    core: Core<S>,
}

/// Everything but the receive side, so that events can borrow the decoder
/// while the rest of the machine changes.
struct Core<S: Storage> {
    tx: TxBuf<S::Tx>,
    state: State,
    /// Responses still to come for forgotten calls.
    stale: u64,
    /// The length of the frame of the call in progress.
    request_len: usize,
    eof: bool,
    /// The call pending when the session closed is still to be reported failed.
    owe_failed: bool,
    closed_reported: bool,
    /// The bad frame that broke the framing and closed the session between calls.
    broken_by: Option<Error>,
}

impl<S: Storage> fmt::Debug for Caller<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("state", &self.core.state)
            .field("stale", &self.core.stale)
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

/// Writes a request, exactly as Python's `json.dumps(dict(method=…, args=…, kw=…))` does.
fn write_request<S: Sink + ?Sized>(
    out: &mut S,
    method: &str,
    args: impl FnOnce(&mut ArrayWriter<'_, S>) -> Result<(), Full>,
    kw: impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full>,
) -> Result<(), Full> {
    let mut obj = ObjectWriter::with_escape(out, Escape::Ascii)?.separators(Separators::Python);
    obj.str("method", method)?.array("args", args)?.object("kw", kw)?;
    obj.finish()
}

impl<S: Storage> Caller<S> {
    /// A caller with no call in progress.
    pub fn new(config: Config) -> Self {
        let rx = S::rx(config.limits.max_frame.saturating_add(MAX_LENGTH_LINE + 1));
        Caller {
            decoder: Decoder::new(rx, config.limits),
            core: Core {
                tx: TxBuf::new(S::tx(config.max_transmit)),
                state: State::Idle,
                stale: 0,
                request_len: 0,
                eof: false,
                owe_failed: false,
                closed_reported: false,
                broken_by: None,
            },
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The bad frame that closed the session between calls, if one did (it
    /// broke the framing: a peer that is not negotiator's, such as QMP's
    /// greeting on the wrong socket): why the session is over, for whoever
    /// calls next. (A call waiting when it came was told, as
    /// [`CallerEvent::Invalid`].)
    pub fn broken_by(&self) -> Option<Error> {
        self.core.broken_by
    }

    /// The receive decoder (its limits, and the memory it holds).
    pub fn decoder(&self) -> &Decoder<S::Rx> {
        &self.decoder
    }

    /// Calls `method` with the positional arguments `args` (a JSON array) and
    /// keyword arguments `kw` (a JSON object), as `call_remote_method(method,
    /// *args, **kw)` does.
    pub fn call(&mut self, method: &str, args: Value<'_>, kw: Value<'_>) -> Result<(), Error> {
        let (Some(elements), Some(members)) = (args.as_array(), kw.as_object()) else {
            return Err(if args.kind() == Kind::Array { Error::KwNotObject } else { Error::ArgsNotArray });
        };
        self.call_with(
            method,
            |a| elements.clone().try_for_each(|e| a.value(e).map(drop)),
            |k| members.members().try_for_each(|(key, v)| write_member(k, key, v)),
        )
    }

    /// Calls `method` with arguments written by `args` and `kw` (strings are
    /// escaped to ASCII, members separated as Python does).
    pub fn call_with(
        &mut self,
        method: &str,
        args: impl FnOnce(&mut ArrayWriter<'_, dyn Sink + '_>) -> Result<(), Full>,
        kw: impl FnOnce(&mut ObjectWriter<'_, dyn Sink + '_>) -> Result<(), Full>,
    ) -> Result<(), Error> {
        let core = &mut self.core;
        if core.state != State::Idle {
            return Err(Error::WrongState { state: core.state, operation: "call" });
        }
        let queued = core.tx.pending().len();
        core.tx
            .encode(|out| write_frame(out, |out| write_request(out as &mut dyn Sink, method, args, kw)))
            .map_err(Error::TransmitFull)?;
        core.request_len = core.tx.pending().len().saturating_sub(queued);
        core.state = State::Busy;
        Ok(())
    }

    /// Gives up on the call in progress (its time ran out). Its response, if
    /// it ever comes, is reported as [`CallerEvent::Stale`]; a new call may be
    /// made at once (the peer answers in order). Returns whether a call was
    /// in progress.
    ///
    /// A request still wholly unsent (the peer was not there to take it) is
    /// withdrawn instead: no response will come, and it must not reach a
    /// peer that turns up later. A request cut short in the middle closes the
    /// session: the peer could not find the next frame's start.
    pub fn forget(&mut self) -> bool {
        if self.core.state != State::Busy {
            return false;
        }
        match self.core.tx.pending().len() {
            0 => {
                self.core.state = State::Idle;
                self.core.stale += 1;
            }
            unsent if unsent == self.core.request_len => {
                self.core.tx.clear();
                self.core.state = State::Idle;
            }
            _ => {
                // Forgotten, so not reported failed: only Closed follows.
                self.core.state = State::Idle;
                self.close();
            }
        }
        true
    }

    /// Ends the session from this side: a call in progress is reported
    /// failed, then [`CallerEvent::Closed`].
    pub fn close(&mut self) {
        self.core.close();
        self.core.tx.clear();
        self.decoder.stop();
    }
}

/// A kw member, key and value as given (the value's strings re-escaped).
fn write_member<S: Sink + ?Sized>(
    obj: &mut ObjectWriter<'_, S>,
    key: JsonStr<'_>,
    value: Value<'_>,
) -> Result<(), Full> {
    match key.as_str() {
        Some(plain) => obj.value(plain, value).map(drop),
        None => {
            // A key with escapes: decode it (keys are short; longer ones are refused).
            let mut buf = [0u8; 256];
            let decoded = key.unescape_into(&mut buf)?;
            obj.value(decoded, value).map(drop)
        }
    }
}

impl<S: Storage> Core<S> {
    fn close(&mut self) {
        if self.state == State::Busy {
            self.owe_failed = true;
        }
        self.state = State::Closed;
    }

    /// Turns a frame into an event.
    fn classify<'a>(&mut self, msg: Message<'a>) -> CallerEvent<'a> {
        if self.stale > 0 {
            self.stale -= 1;
            return match parse_response(msg) {
                Ok(reply) => CallerEvent::Stale(reply),
                Err(e) => CallerEvent::Malformed(e),
            };
        }
        if self.state != State::Busy {
            return CallerEvent::Unsolicited(msg.value());
        }
        self.state = State::Idle;
        match parse_response(msg) {
            Ok(Ok(result)) => CallerEvent::Result(result),
            Ok(Err(error)) => CallerEvent::Error(error),
            Err(e) => CallerEvent::Invalid(e),
        }
    }

    /// A bad frame: whose it was, and whether the session survives it.
    fn reject(&mut self, e: Error) -> CallerEvent<'static> {
        let event = if self.stale > 0 && !e.breaks_framing() {
            self.stale -= 1;
            CallerEvent::Malformed(e)
        } else if self.state == State::Busy {
            self.state = State::Idle;
            CallerEvent::Invalid(e)
        } else {
            CallerEvent::Malformed(e)
        };
        if e.breaks_framing() {
            // No call was told why (it came between calls): the next is.
            if matches!(event, CallerEvent::Malformed(_)) {
                self.broken_by.get_or_insert(e);
            }
            self.close();
        }
        event
    }

    /// After the session closed: `Failed` for a call left waiting, then `Closed`.
    fn wind_down(&mut self) -> Option<CallerEvent<'static>> {
        if core::mem::take(&mut self.owe_failed) {
            return Some(CallerEvent::Failed);
        }
        (!core::mem::replace(&mut self.closed_reported, true)).then_some(CallerEvent::Closed)
    }
}

/// Reads `{"success": true, "result": …}` or `{"success": false, "error": "…"}`.
fn parse_response(msg: Message<'_>) -> Result<Reply<'_>, Error> {
    let obj = msg.object().ok_or(Error::BadMessage { what: "response is not a JSON object" })?;
    match member(obj, "success").and_then(|s| s.as_bool()) {
        Some(true) => {
            member(obj, "result").map(Ok).ok_or(Error::BadMessage { what: "successful response without a \"result\"" })
        }
        Some(false) => str_member(obj, "error")
            .map(Err)
            .ok_or(Error::BadMessage { what: "failed response without an \"error\" string" }),
        None => Err(Error::BadMessage { what: "response without a boolean \"success\"" }),
    }
}

impl<S: Storage> Machine for Caller<S> {
    type Event<'a>
        = CallerEvent<'a>
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

    fn poll(&mut self) -> Result<Option<CallerEvent<'_>>, Error> {
        let Caller { decoder, core } = self;
        if core.state != State::Closed {
            match decoder.step() {
                Step::Frame { start, end } => return Ok(Some(core.classify(decoder.message(start, end)))),
                Step::Error(e) => return Ok(Some(core.reject(e))),
                Step::More if core.eof => {
                    if let Some(e) = decoder.finish() {
                        return Ok(Some(core.reject(e)));
                    }
                    core.close();
                }
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

    fn recv_eof(&mut self) {
        self.core.eof = true;
    }

    fn close(&mut self) {
        Caller::close(self);
    }

    /// Forgets the call ([`Caller::forget`]): its late response is dropped
    /// as stale; a call still wholly unsent is withdrawn.
    fn expire(&mut self, _call: &()) {
        self.forget();
    }
}

/// How a call ended, as [`Response`] hands it to its caller.
#[derive(Debug, Clone)]
pub enum Answer<'a> {
    /// It succeeded: its result.
    Result(Value<'a>),
    /// The remote method failed, with this message.
    Error(JsonStr<'a>),
    /// The response could not be understood.
    Invalid(Error),
    /// The stream ended (or the session closed) before the response.
    Closed,
}

/// Waits for the response to the call in progress, and makes `answer` of it.
#[derive(Debug)]
pub struct Response<F> {
    answer: crate::op::Finish<F>,
}

impl<F> Response<F> {
    /// The operation for the call just queued with [`Caller::call`].
    pub fn new(answer: F) -> Self {
        Response { answer: crate::op::Finish::new(answer) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Answer<'a>) -> T> crate::op::Operation<Caller<S>> for Response<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: CallerEvent<'a>) -> crate::op::Offer<CallerEvent<'a>, T>
    where
        S: 'a,
    {
        use crate::op::Offer;
        let answer = match event {
            CallerEvent::Result(value) => Answer::Result(value),
            CallerEvent::Error(message) => Answer::Error(message),
            CallerEvent::Invalid(e) => Answer::Invalid(e),
            CallerEvent::Failed | CallerEvent::Closed => Answer::Closed,
            other => return Offer::Pass(other),
        };
        self.answer.with(answer)
    }

    /// One call at a time: the call is the one in progress.
    fn request(&self) -> Option<&()> {
        Some(&())
    }
}
