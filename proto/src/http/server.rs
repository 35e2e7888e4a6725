//! The server side of one HTTP/1.x connection: requests in, responses out.

use core::fmt;
use core::ops::Range;

use super::body::{Body, Framing};
use super::head::{self, Headers, RequestHead, Version};
use super::write::{encode_with_length, write_header, write_status_line};
use super::{Error, Limits};
use crate::Machine;
use crate::buf::{Full, RxBuf, Sink, Storage, TxBuf};

/// Settings for a [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// What a client may send.
    pub limits: Limits,
    /// Most bytes of responses queued (with [`Heap`](crate::buf::Heap) storage).
    pub max_response: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { limits: Limits::default(), max_response: 128 << 20 }
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the next request.
    Reading,
    /// A request was handed out; [`Server::respond`] must answer it before
    /// the next one is read.
    Responding,
    /// The connection ends once the queued bytes are written
    /// ([`Server::wants_close`]).
    Closing,
}

/// A complete request, borrowed from the machine until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// `POST`, `GET`, …
    pub method: &'a str,
    /// The request target, such as `/RPC2`.
    pub target: &'a str,
    /// The header fields.
    pub headers: Headers<'a>,
    /// The body, joined if it was chunked.
    pub body: &'a [u8],
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// What the [`Server`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// A request to answer with [`Server::respond`].
    Request(Request<'a>),
    /// A request that could not be read. The machine has queued the error
    /// response (400, 413, 431 or 501) and closes after it.
    Malformed(Error),
    /// The client closed the connection. Reported once.
    Closed,
}

#[derive(Debug, Clone)]
enum Reader {
    Head { scanned: usize },
    Body { head: RequestHead, body: Body, continued: bool },
}

enum Found {
    Nothing,
    Request { head: RequestHead, body: Range<usize> },
    Malformed(Error),
    Closed,
}

/// The server end of an HTTP/1.x connection. See the [module documentation](super).
///
/// ```
/// use vmwire_proto::{Machine, buf::Fixed, http::{Server, ServerConfig, ServerEvent}};
/// use vmwire_proto::buf::Buf;
///
/// let mut http = Server::<Fixed<4096, 4096>>::new(ServerConfig::default());
/// http.receive(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")?;
/// match http.poll()? {
///     Some(ServerEvent::Request(r)) => assert_eq!((r.method, r.target, r.body), ("POST", "/RPC2", &b"hi"[..])),
///     other => panic!("{other:?}"),
/// }
/// http.respond(200, "OK", &[("Content-Type", "text/xml")], |out| Ok::<_, vmwire_proto::http::Error>(out.try_extend(b"ok")?))?;
/// assert_eq!(http.transmit(), b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 2\r\n\r\nok");
/// # Ok::<(), vmwire_proto::http::Error>(())
/// ```
pub struct Server<S: Storage> {
    rx: RxBuf<S::Rx>,
    core: Core<S>,
}

struct Core<S: Storage> {
    config: ServerConfig,
    tx: TxBuf<S::Tx>,
    state: State,
    reader: Reader,
    /// The request being answered keeps the connection open.
    keep_alive: bool,
    /// …and was HTTP/1.0 (so keep-alive must be said out loud).
    http10: bool,
    eof: bool,
    closed_reported: bool,
    later: usize,
    /// The request handed out last, until it is answered.
    current: Option<(RequestHead, Range<usize>)>,
    #[cfg(feature = "gzip")]
    inflated: alloc::vec::Vec<u8>,
}

impl<S: Storage> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.core.state)
            .field("buffered", &self.rx.data().len())
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Server<S> {
    /// A server end of a fresh connection.
    pub fn new(config: ServerConfig) -> Self {
        let limits = config.limits;
        Server {
            rx: RxBuf::new(S::rx(limits.max_head.saturating_mul(2).saturating_add(limits.max_body))),
            core: Core {
                config,
                tx: TxBuf::new(S::tx(config.max_response)),
                state: State::Reading,
                reader: Reader::Head { scanned: 0 },
                keep_alive: false,
                http10: false,
                eof: false,
                closed_reported: false,
                later: 0,
                current: None,
                #[cfg(feature = "gzip")]
                inflated: alloc::vec::Vec::new(),
            },
        }
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Whether the adapter should close the connection now: the machine is
    /// closing and everything queued has been written.
    pub fn wants_close(&self) -> bool {
        self.core.state == State::Closing && self.core.tx.pending().is_empty()
    }

    /// Answers the request last handed out: status line, `fields`,
    /// `Content-Length`, `Connection` as needed, and the body `body` writes.
    pub fn respond<E: From<Error> + From<Full>>(
        &mut self,
        status: u16,
        reason: &str,
        fields: &[(&str, &str)],
        body: impl FnOnce(&mut S::Tx) -> Result<(), E>,
    ) -> Result<(), E> {
        let core = &mut self.core;
        if core.state != State::Responding {
            return Err(Error::WrongState { operation: "respond" }.into());
        }
        core.write_response(status, reason, fields, body)?;
        core.state = if core.keep_alive { State::Reading } else { State::Closing };
        core.current = None;
        Ok(())
    }

    /// The request being answered (the one [`Machine::poll`] handed out
    /// last), until [`Server::respond`] answers it.
    pub fn current(&self) -> Option<Request<'_>> {
        let (head, body) = self.core.current.as_ref()?;
        let data = self.rx.data();
        let text =
            |r: &Range<usize>| data.get(r.clone()).and_then(|t| core::str::from_utf8(t).ok()).unwrap_or_default();
        #[cfg(feature = "gzip")]
        let body = if head.fields.gzip { &self.core.inflated[..] } else { data.get(body.clone()).unwrap_or_default() };
        #[cfg(not(feature = "gzip"))]
        let body = data.get(body.clone()).unwrap_or_default();
        Some(Request {
            version: head.version,
            method: text(&head.method),
            target: text(&head.target),
            headers: Headers::new(data.get(head.headers.clone()).unwrap_or_default()),
            body,
            keep_alive: self.core.keep_alive,
        })
    }

    fn settle(&mut self) {
        let n = core::mem::take(&mut self.core.later);
        if n > 0 {
            self.rx.consume(n);
        }
    }

    fn step(&mut self) -> Found {
        let limits = self.core.config.limits;
        loop {
            let core = &mut self.core;
            match core.state {
                State::Reading => {}
                State::Responding => return Found::Nothing,
                State::Closing => {
                    let n = self.rx.data().len();
                    self.rx.consume(n);
                    return if core.eof && !core.closed_reported { Found::Closed } else { Found::Nothing };
                }
            }
            match &mut core.reader {
                Reader::Head { scanned } => {
                    let data = self.rx.data();
                    // Empty lines before a request line are to be ignored (RFC 9112, 2.2).
                    let blank = data.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                    if blank > 0 {
                        *scanned = 0;
                        self.rx.consume(blank);
                        continue;
                    }
                    let Some(len) = head::head_end(data, scanned) else {
                        if data.len() > limits.max_head {
                            return self.reject(Error::HeadTooLarge { limit: limits.max_head });
                        }
                        return self.incomplete();
                    };
                    if len > limits.max_head {
                        return self.reject(Error::HeadTooLarge { limit: limits.max_head });
                    }
                    let head = match head::parse_request(data.get(..len).unwrap_or_default(), &limits) {
                        Ok(head) => head,
                        Err(e) => return self.reject(e),
                    };
                    let f = &head.fields;
                    let framing = if f.transfer_encoding {
                        if !f.chunked || f.other_coding {
                            return self.reject(Error::UnsupportedTransferEncoding);
                        }
                        Framing::Chunked
                    } else {
                        match f.content_length.map(usize::try_from) {
                            None => Framing::Empty,
                            Some(Ok(n)) if n <= limits.max_body => Framing::Length(n),
                            Some(_) => return self.reject(Error::BodyTooLarge { limit: limits.max_body }),
                        }
                    };
                    self.core.reader = Reader::Body { head, body: Body::new(framing, len), continued: false };
                }
                Reader::Body { head, body, continued } => {
                    let framed = match body.advance(self.rx.data_mut(), core.eof, &limits) {
                        Ok(Some(framed)) => framed,
                        Ok(None) => {
                            if head.fields.expect_continue && head.version == Version::Http11 && !*continued {
                                *continued = true;
                                if let Err(full) = core.tx.encode(|out| out.put(b"HTTP/1.1 100 Continue\r\n\r\n")) {
                                    return self.reject(Error::TransmitFull(full));
                                }
                            }
                            return self.incomplete();
                        }
                        Err(e) => return self.reject(e),
                    };
                    let head = head.clone();
                    let f = &head.fields;
                    core.keep_alive = !f.close && (head.version == Version::Http11 || f.keep_alive);
                    core.http10 = head.version == Version::Http10;
                    core.later = framed.end;
                    core.reader = Reader::Head { scanned: 0 };
                    core.state = State::Responding;
                    if f.unknown_encoding || (f.gzip && !cfg!(feature = "gzip")) {
                        return self.reject(Error::UnsupportedContentEncoding);
                    }
                    #[cfg(feature = "gzip")]
                    if f.gzip {
                        let data = self.rx.data().get(framed.body.clone()).unwrap_or_default();
                        if let Err(e) = super::gzip::gunzip(data, &mut core.inflated, limits.max_body) {
                            return self.reject(e);
                        }
                        return Found::Request { head, body: 0..0 };
                    }
                    #[cfg(feature = "gzip")]
                    core.inflated.clear();
                    return Found::Request { head, body: framed.body };
                }
            }
        }
    }

    fn incomplete(&mut self) -> Found {
        if self.core.eof {
            // Whatever part of a request there was, the client gave up on it.
            let n = self.rx.data().len();
            self.rx.consume(n);
            self.core.state = State::Closing;
            self.core.closed_reported = true;
            return Found::Closed;
        }
        if self.rx.data().len() >= self.rx.limit() {
            let limit = self.rx.limit();
            return self.reject(Error::BodyTooLarge { limit });
        }
        Found::Nothing
    }

    /// Queues the error response a bad request deserves, and closes after it.
    fn reject(&mut self, e: Error) -> Found {
        let (status, reason) = match e {
            Error::HeadTooLarge { .. } | Error::TooManyHeaders { .. } => (431, "Request Header Fields Too Large"),
            Error::BodyTooLarge { .. } => (413, "Content Too Large"),
            Error::UnsupportedTransferEncoding => (501, "Not Implemented"),
            Error::UnsupportedContentEncoding => (415, "Unsupported Media Type"),
            _ => (400, "Bad Request"),
        };
        let core = &mut self.core;
        core.keep_alive = false;
        core.current = None;
        core.later = 0;
        core.reader = Reader::Head { scanned: 0 };
        // If even this does not fit, the connection just closes.
        let _ = core.write_response(status, reason, &[], |out| out.put(reason.as_bytes()).map_err(Error::from));
        core.state = State::Closing;
        let n = self.rx.data().len();
        self.rx.consume(n);
        Found::Malformed(e)
    }
}

impl<S: Storage> Core<S> {
    fn write_response<E: From<Error> + From<Full>>(
        &mut self,
        status: u16,
        reason: &str,
        fields: &[(&str, &str)],
        body: impl FnOnce(&mut S::Tx) -> Result<(), E>,
    ) -> Result<(), E> {
        let connection = match (self.keep_alive, self.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        self.tx.encode(|out| {
            let head = |out: &mut S::Tx| -> Result<(), E> {
                write_status_line(out, status, reason)?;
                for (name, value) in fields {
                    write_header(out, name, value.as_bytes())?;
                }
                if let Some(c) = connection {
                    write_header(out, "Connection", c.as_bytes())?;
                }
                Ok(())
            };
            encode_with_length(out, head, body)
        })
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
        self.settle();
        self.rx.spare()
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        crate::commit_or_eof(self, n, |m, n| m.rx.commit(n), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        self.settle();
        Ok(match self.step() {
            Found::Nothing => None,
            Found::Malformed(e) => Some(Event::Malformed(e)),
            Found::Closed => {
                self.core.closed_reported = true;
                Some(Event::Closed)
            }
            Found::Request { head, body } => {
                self.core.current = Some((head, body));
                self.current().map(Event::Request)
            }
        })
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

    /// Nothing more is read or written; [`Event::Closed`] is reported.
    fn close(&mut self) {
        self.core.tx.clear();
        self.core.state = State::Closing;
        self.core.eof = true;
    }

    /// Closes: a client that stops halfway through its request leaves the
    /// connection unusable.
    fn expire(&mut self, _request: &()) {
        self.close();
    }
}
