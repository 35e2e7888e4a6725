//! The client side of one HTTP/1.x connection at a time.

use core::fmt;
use core::ops::Range;

use super::body::{Body, Framing};
use super::head::{self, Headers, ResponseHead, Version};
use super::write::{check_field, encode_with_length, write_header, write_request_line};
use super::{Error, Limits};
use crate::Machine;
use crate::buf::{Buf, Full, RxBuf, Sink, Storage, TxBuf};

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// What the server may send.
    pub limits: Limits,
    /// Most bytes of one encoded request (with [`Heap`](crate::buf::Heap) storage).
    pub max_request: usize,
    /// Offer `Accept-Encoding: gzip` and decode gzip bodies. Needs the `gzip`
    /// feature; without it nothing is offered, whatever this says.
    pub accept_gzip: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { limits: Limits::default(), max_request: 16 << 20, accept_gzip: cfg!(feature = "gzip") }
    }
}

/// Where requests go: the request target, the `Host` field, and fields sent
/// with every request (such as `Content-Type`, `User-Agent`, `originator`).
/// A `User-Agent` is added unless one is given.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// The request target, such as `/` or `/RPC2`.
    pub target: &'a str,
    /// `host`, `host:port` or `[v6]:port`.
    pub host: &'a str,
    /// Fields for every request.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The `User-Agent` sent unless the endpoint names its own.
pub const USER_AGENT: &str = concat!("vmwire/", env!("CARGO_PKG_VERSION"));

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No usable connection. A queued request waits for [`Client::connected`].
    Disconnected,
    /// Connected, nothing outstanding: a request may be sent on this connection.
    Idle,
    /// A request is outstanding; its response has not all arrived.
    Waiting,
}

/// A complete response, borrowed from the machine until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The status code, such as 200.
    pub status: u16,
    /// The reason phrase (empty if absent or not UTF-8).
    pub reason: &'a str,
    /// The header fields.
    pub headers: Headers<'a>,
    /// The body: joined if it was chunked, decoded if it was gzipped.
    pub body: &'a [u8],
    /// Whether the connection stays open for the next request.
    pub keep_alive: bool,
}

/// What the [`Client`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// The response to the outstanding request.
    Response(Response<'a>),
    /// The response could not be read. The connection is dropped: the next
    /// request needs a new one.
    Malformed(Error),
    /// The connection ended before the response was complete (`received`
    /// bytes of it had arrived; 0 means the server closed without answering).
    ConnectionLost {
        /// Bytes of the response that had arrived.
        received: usize,
    },
}

#[derive(Debug, Clone)]
enum Reader {
    Head { scanned: usize },
    Body { head: ResponseHead, body: Body },
}

/// What one step of reading found (no borrows, so the machine can change
/// before the event is built).
#[derive(Debug, Clone)]
pub(crate) enum Found {
    Nothing,
    /// A response; [`Client::current`] shows it until the next call.
    Response,
    Malformed(Error),
    Lost(usize),
}

/// Where the response handed out last lies.
#[derive(Debug, Clone)]
struct Current {
    head: ResponseHead,
    body: Range<usize>,
    inflated: bool,
    keep_alive: bool,
}

/// The client end of an HTTP/1.x connection. See the [module documentation](super).
pub struct Client<S: Storage> {
    rx: RxBuf<S::Rx>,
    core: Core<S>,
}

struct Core<S: Storage> {
    config: Config,
    tx: TxBuf<S::Tx>,
    /// Request line and the endpoint's fields, rendered once.
    template: S::Tx,
    state: State,
    reader: Reader,
    eof: bool,
    /// Bytes of the last response handed out, dropped at the next call.
    later: usize,
    /// The last response handed out, until then.
    current: Option<Current>,
    #[cfg(feature = "gzip")]
    inflated: alloc::vec::Vec<u8>,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.core.state)
            .field("buffered", &self.rx.data().len())
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Client<S> {
    /// A client for `endpoint`, not yet connected.
    pub fn new(config: Config, endpoint: &Endpoint<'_>) -> Result<Self, Error> {
        let limits = config.limits;
        let mut template = S::tx(limits.max_head);
        write_request_line(&mut template, "POST", endpoint.target, endpoint.host)?;
        let mut agent = false;
        for (name, value) in endpoint.headers {
            agent |= name.eq_ignore_ascii_case("user-agent");
            check_field(name, value.as_bytes())?;
            write_header(&mut template, name, value.as_bytes())?;
        }
        if !agent {
            write_header(&mut template, "User-Agent", USER_AGENT.as_bytes())?;
        }
        if config.accept_gzip && cfg!(feature = "gzip") {
            write_header(&mut template, "Accept-Encoding", b"gzip")?;
        }
        // Room for the head, the body, and the framing of chunks not yet joined.
        let rx_limit = limits.max_head.saturating_mul(2).saturating_add(limits.max_body);
        Ok(Client {
            rx: RxBuf::new(S::rx(rx_limit)),
            core: Core {
                config,
                tx: TxBuf::new(S::tx(config.max_request)),
                template,
                state: State::Disconnected,
                reader: Reader::Head { scanned: 0 },
                eof: false,
                later: 0,
                current: None,
                #[cfg(feature = "gzip")]
                inflated: alloc::vec::Vec::new(),
            },
        })
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Whether a request is queued and there is no connection to send it on:
    /// the adapter should connect and call [`Client::connected`].
    pub fn needs_connection(&self) -> bool {
        self.core.state == State::Disconnected && !self.core.tx.pending().is_empty()
    }

    /// A new connection is up. Anything left from the old one is dropped.
    pub fn connected(&mut self) {
        let core = &mut self.core;
        let n = self.rx.data().len();
        self.rx.consume(n);
        core.later = 0;
        core.eof = false;
        core.reader = Reader::Head { scanned: 0 };
        core.state = if core.tx.pending().is_empty() { State::Idle } else { State::Waiting };
    }

    /// The adapter dropped the connection (an I/O error or a timeout): the
    /// outstanding request, if any, is abandoned.
    pub fn close(&mut self) {
        self.core.tx.clear();
        self.connected();
        self.core.state = State::Disconnected;
    }

    /// Queues a `POST` to the endpoint with the endpoint's fields, `extra`
    /// fields, and the body that `body` writes (its length is filled in).
    /// One request at a time: the previous response must have arrived.
    pub fn post<E: From<Error> + From<Full>>(
        &mut self,
        extra: &[(&str, &str)],
        body: impl FnOnce(&mut S::Tx) -> Result<(), E>,
    ) -> Result<(), E> {
        let core = &mut self.core;
        if core.state == State::Waiting || !core.tx.pending().is_empty() {
            return Err(Error::WrongState { operation: "post" }.into());
        }
        let template = core.template.as_slice();
        core.tx.encode(|out| {
            let head = |out: &mut S::Tx| -> Result<(), E> {
                out.put(template)?;
                for (name, value) in extra {
                    write_header(out, name, value.as_bytes())?;
                }
                Ok(())
            };
            encode_with_length(out, head, body)
        })?;
        if core.state == State::Idle {
            core.state = State::Waiting;
        }
        Ok(())
    }

    fn settle(&mut self) {
        self.core.current = None;
        let n = core::mem::take(&mut self.core.later);
        if n > 0 {
            self.rx.consume(n);
        }
    }

    /// The response [`Machine::poll`] (or `step`) handed out last, until the
    /// machine is next called.
    pub(crate) fn current(&self) -> Option<Response<'_>> {
        let Current { head, body, inflated, keep_alive } = self.core.current.as_ref()?;
        let data = self.rx.data();
        let reason = data.get(head.reason.clone()).and_then(|r| core::str::from_utf8(r).ok());
        #[cfg(feature = "gzip")]
        let body = if *inflated { &self.core.inflated[..] } else { data.get(body.clone()).unwrap_or_default() };
        #[cfg(not(feature = "gzip"))]
        let body = {
            let _ = inflated;
            data.get(body.clone()).unwrap_or_default()
        };
        Some(Response {
            version: head.version,
            status: head.status,
            reason: reason.unwrap_or_default(),
            headers: Headers::new(data.get(head.headers.clone()).unwrap_or_default()),
            body,
            keep_alive: *keep_alive,
        })
    }

    /// [`Machine::poll`] without the borrow: the response, if one was
    /// found, is then [`Client::current`].
    pub(crate) fn step(&mut self) -> Found {
        self.settle();
        self.read()
    }

    fn clear_rx(&mut self) {
        let n = self.rx.data().len();
        self.rx.consume(n);
    }

    /// Reads as far as the bytes allow.
    fn read(&mut self) -> Found {
        let core = &mut self.core;
        match core.state {
            State::Disconnected => {
                let n = self.rx.data().len();
                self.rx.consume(n);
                return Found::Nothing;
            }
            State::Idle => {
                if !self.rx.data().is_empty() {
                    return self.fail(Error::UnexpectedResponse);
                }
                if core.eof {
                    core.state = State::Disconnected;
                }
                return Found::Nothing;
            }
            State::Waiting => {}
        }
        let limits = core.config.limits;
        loop {
            let core = &mut self.core;
            match &mut core.reader {
                Reader::Head { scanned } => {
                    let data = self.rx.data();
                    if !head::may_begin_response(data) {
                        return self.fail(Error::BadHead { what: "not an HTTP response: it does not begin `HTTP/`" });
                    }
                    let Some(len) = head::head_end(data, scanned) else {
                        if data.len() > limits.max_head {
                            return self.fail(Error::HeadTooLarge { limit: limits.max_head });
                        }
                        return self.incomplete();
                    };
                    if len > limits.max_head {
                        return self.fail(Error::HeadTooLarge { limit: limits.max_head });
                    }
                    let head = match head::parse_response(data.get(..len).unwrap_or_default(), &limits) {
                        Ok(head) => head,
                        Err(e) => return self.fail(e),
                    };
                    if (100..200).contains(&head.status) && head.status != 101 {
                        // An interim response (100 Continue, 103 Early Hints): the real one follows.
                        self.rx.consume(len);
                        self.core.reader = Reader::Head { scanned: 0 };
                        continue;
                    }
                    let framing = match response_framing(&head, &limits) {
                        Ok(f) => f,
                        Err(e) => return self.fail(e),
                    };
                    self.core.reader = Reader::Body { head, body: Body::new(framing, len) };
                }
                Reader::Body { head, body } => {
                    let framed = match body.advance(self.rx.data_mut(), core.eof, &limits) {
                        Ok(Some(framed)) => framed,
                        Ok(None) => return self.incomplete(),
                        Err(e) => return self.fail(e),
                    };
                    let head = head.clone();
                    let f = &head.fields;
                    let keep_alive = !f.close
                        && (head.version == Version::Http11 || f.keep_alive)
                        && !matches!(body_framing(f), Framing::Close);
                    core.later = framed.end;
                    core.reader = Reader::Head { scanned: 0 };
                    core.state = if keep_alive { State::Idle } else { State::Disconnected };
                    if f.unknown_encoding {
                        return self.fail(Error::UnsupportedContentEncoding);
                    }
                    #[cfg_attr(not(feature = "gzip"), allow(unused_mut))]
                    let mut inflated = false;
                    if f.gzip && !framed.body.is_empty() {
                        #[cfg(feature = "gzip")]
                        {
                            let data = self.rx.data().get(framed.body.clone()).unwrap_or_default();
                            if let Err(e) = super::gzip::gunzip(data, &mut core.inflated, limits.max_body) {
                                return self.fail(e);
                            }
                            inflated = true;
                        }
                        #[cfg(not(feature = "gzip"))]
                        return self.fail(Error::UnsupportedContentEncoding);
                    }
                    self.core.current = Some(Current { head, body: framed.body, inflated, keep_alive });
                    return Found::Response;
                }
            }
        }
    }

    /// More bytes are needed: fine, unless the stream ended or the buffer is full.
    fn incomplete(&mut self) -> Found {
        let received = self.rx.data().len();
        if self.core.eof {
            self.clear_rx();
            self.core.reader = Reader::Head { scanned: 0 };
            self.core.state = State::Disconnected;
            return Found::Lost(received);
        }
        if received >= self.rx.limit() {
            let limit = self.rx.limit();
            return self.fail(Error::BodyTooLarge { limit });
        }
        Found::Nothing
    }

    /// The response cannot be read: drop the connection.
    fn fail(&mut self, e: Error) -> Found {
        self.clear_rx();
        self.core.later = 0;
        self.core.reader = Reader::Head { scanned: 0 };
        self.core.state = State::Disconnected;
        Found::Malformed(e)
    }
}

/// How a response body is framed (RFC 9112, section 6.3), before knowing
/// whether the request was a HEAD or the status forbids a body.
fn body_framing(f: &head::Fields) -> Framing {
    if f.transfer_encoding {
        if f.chunked { Framing::Chunked } else { Framing::Close }
    } else {
        match f.content_length {
            Some(n) => Framing::Length(usize::try_from(n).unwrap_or(usize::MAX)),
            None => Framing::Close,
        }
    }
}

fn response_framing(head: &ResponseHead, limits: &Limits) -> Result<Framing, Error> {
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let f = &head.fields;
    if f.transfer_encoding && f.chunked && f.other_coding {
        return Err(Error::UnsupportedTransferEncoding);
    }
    let framing = body_framing(f);
    if let Framing::Length(n) = framing {
        if n > limits.max_body {
            return Err(Error::BodyTooLarge { limit: limits.max_body });
        }
    }
    Ok(framing)
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = ();

    fn recv_buf(&mut self) -> &mut [u8] {
        self.settle();
        self.rx.spare()
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        crate::commit_or_eof(self, n, |m, n| m.rx.commit(n), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        Ok(match self.step() {
            Found::Nothing => None,
            Found::Malformed(e) => Some(Event::Malformed(e)),
            Found::Lost(received) => Some(Event::ConnectionLost { received }),
            Found::Response => self.current().map(Event::Response),
        })
    }

    fn transmit(&self) -> &[u8] {
        match self.core.state {
            State::Disconnected => &[],
            _ => self.core.tx.pending(),
        }
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

    /// Closes and abandons the request: HTTP/1.x has no way to skip a
    /// response, so the next request goes out on a new connection.
    fn expire(&mut self, _request: &()) {
        self.close();
    }

    fn needs_connection(&self) -> bool {
        Client::needs_connection(self)
    }

    fn connected(&mut self) {
        Client::connected(self);
    }

    fn reusable_idle(&self) -> bool {
        self.core.state == State::Idle
    }
}
