//! The XML-RPC server machine: HTTP requests in, calls out, responses and
//! faults back.

use core::fmt;

use super::client::SendError;
use super::grammar;
use super::text::XmlStr;
use super::write::{Options, ValueWriter, write_fault, write_response};
use super::{Error, ErrorKind, Limits, Params, WriteError};
use crate::Machine;
use crate::buf::{Sink, Storage};
use crate::http::{self, Headers};

/// Fault code for a request body that is not a well-formed `<methodCall>`
/// (the "specification for fault code interoperability").
pub const PARSE_ERROR: i64 = -32700;

/// Fault code for a server's own failure (the "specification for fault
/// code interoperability"): here, a response too large to send.
pub const INTERNAL_ERROR: i64 = -32603;

/// Settings for a [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerConfig {
    /// HTTP limits.
    pub http: http::ServerConfig,
    /// Limits on a call document.
    pub limits: Limits,
    /// What the writer may use (`<nil/>`, `<i8>`).
    pub options: Options,
}

/// A call to answer with [`Server::respond`] or [`Server::fault`].
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// `methodName`.
    pub method: XmlStr<'a>,
    /// The params.
    pub params: Params<'a>,
    /// The HTTP request target (`/`, `/RPC2`, …).
    pub target: &'a str,
    /// The HTTP header fields (`originator`, `traceparent`, …).
    pub headers: Headers<'a>,
}

/// What the [`Server`] reports.
#[derive(Debug)]
pub enum ServerEvent<'a> {
    /// A call to answer.
    Call(Call<'a>),
    /// A request that was not a call (not a POST, or not XML-RPC): the
    /// machine answered it itself (501, or a fault with code -32700).
    Rejected(Error),
    /// An HTTP request that could not be read; the machine answered with an
    /// HTTP error and closes the connection.
    Http(http::Error),
    /// The client closed the connection.
    Closed,
}

/// A shape found in a request, with no borrow held.
enum Found {
    Call(grammar::CallShape),
    NotPost,
    Bad(Error),
    Http(http::Error),
    Closed,
}

/// An XML-RPC server connection over HTTP/1.x.
///
/// ```
/// use vmwire_proto::{Machine, buf::Heap, xmlrpc::{Server, ServerConfig, ServerEvent}};
///
/// let mut rpc = Server::<Heap>::new(ServerConfig::default());
/// let body = b"<methodCall><methodName>VM.get_all</methodName><params/></methodCall>";
/// rpc.receive(format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())?;
/// rpc.receive(body)?;
/// match rpc.poll()? {
///     Some(ServerEvent::Call(call)) => assert!(call.method == "VM.get_all" && call.params.is_empty()),
///     other => panic!("{other:?}"),
/// }
/// rpc.respond(|v| v.array(|a| { a.string("OpaqueRef:1")?; Ok(()) }))?;
/// assert!(rpc.transmit().starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server<S: Storage> {
    http: http::Server<S>,
    config: ServerConfig,
}

impl<S: Storage> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("http", &self.http).finish_non_exhaustive()
    }
}

const XML: &[(&str, &str)] = &[("Content-Type", "text/xml")];

impl<S: Storage> Server<S> {
    /// A server end of a fresh connection.
    pub fn new(config: ServerConfig) -> Self {
        Server { http: http::Server::new(config.http), config }
    }

    /// Whether the adapter should close the connection now.
    pub fn wants_close(&self) -> bool {
        self.http.wants_close()
    }

    /// Answers the current call with one value, written by `value`.
    pub fn respond(
        &mut self,
        value: impl FnOnce(ValueWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), SendError> {
        let options = self.config.options;
        self.http.respond(200, "OK", XML, |out| write_response(out, options, value).map_err(SendError::from))
    }

    /// Answers the current call with a whole `<methodResponse>` document
    /// written by `document` (for responses made elsewhere).
    pub fn respond_raw(
        &mut self,
        document: impl FnOnce(&mut S::Tx) -> Result<(), WriteError>,
    ) -> Result<(), SendError> {
        self.http.respond(200, "OK", XML, |out| document(out).map_err(SendError::from))
    }

    /// Answers the current call with a fault.
    pub fn fault(&mut self, code: i64, string: &str) -> Result<(), SendError> {
        self.http.respond(200, "OK", XML, |out| write_fault(out, code, string).map_err(SendError::from))
    }

    /// Answers the current call with its result (a `<value>` already
    /// written as XML-RPC) or its fault (code and string); a response that
    /// does not fit the transmit buffer, or a fault string XML cannot carry
    /// ([`WriteError::NotXmlText`]), becomes the fault [`INTERNAL_ERROR`]
    /// saying which.
    pub fn answer(&mut self, outcome: Result<&[u8], (i64, &str)>) -> Result<(), SendError> {
        let sent = match outcome {
            Ok(value) => self.respond(|w| w.raw(value)),
            Err((code, string)) => self.fault(code, string),
        };
        sent.or_else(|e| {
            let why = match e {
                SendError::Write(WriteError::NotXmlText { .. }) => "the fault string holds text XML 1.0 cannot carry",
                _ => "the response does not fit",
            };
            self.fault(INTERNAL_ERROR, why)
        })
    }

    fn find(&mut self) -> Result<Option<Found>, http::Error> {
        let max_depth = self.config.limits.max_depth;
        let limits = self.config.limits;
        Ok(Some(match self.http.poll()? {
            None => return Ok(None),
            Some(http::ServerEvent::Closed) => Found::Closed,
            Some(http::ServerEvent::Malformed(e)) => Found::Http(e),
            Some(http::ServerEvent::Request(r)) if r.method != "POST" => Found::NotPost,
            Some(http::ServerEvent::Request(r)) => {
                let body = r.body;
                match super::text_of(body, &limits) {
                    Err(e) => Found::Bad(e),
                    Ok(_) => match grammar::method_call(body, max_depth) {
                        Ok(shape) => Found::Call(shape),
                        Err(e) => Found::Bad(super::located(body, e)),
                    },
                }
            }
        }))
    }
}

impl<S: Storage> Machine for Server<S> {
    type Event<'a>
        = ServerEvent<'a>
    where
        Self: 'a;
    type Error = http::Error;
    type Request = ();

    crate::delegate_bytes!(http, http::Error);

    fn close(&mut self) {
        self.http.close();
    }

    /// Closes (see [`http::Server`]'s).
    fn expire(&mut self, _request: &()) {
        self.close();
    }

    fn poll(&mut self) -> Result<Option<ServerEvent<'_>>, http::Error> {
        let shape = match self.find()? {
            None => return Ok(None),
            Some(Found::Closed) => return Ok(Some(ServerEvent::Closed)),
            Some(Found::Http(e)) => return Ok(Some(ServerEvent::Http(e))),
            Some(Found::NotPost) => {
                let _ = self.http.respond(501, "Not Implemented", &[], |out| {
                    out.put(b"XML-RPC takes POST requests only").map_err(http::Error::from)
                });
                let e = Error { kind: ErrorKind::Syntax { expected: "a POST request" }, offset: 0 };
                return Ok(Some(ServerEvent::Rejected(e)));
            }
            Some(Found::Bad(e)) => {
                let mut message = heapless::String::<160>::new();
                let _ = fmt::write(&mut message, format_args!("parse error: {e}"));
                let _ = self.fault(PARSE_ERROR, &message);
                return Ok(Some(ServerEvent::Rejected(e)));
            }
            Some(Found::Call(shape)) => shape,
        };
        let Some(request) = self.http.current() else { return Ok(None) };
        let text = core::str::from_utf8(request.body).unwrap_or_default();
        let (start, end, len) = shape.params;
        Ok(Some(ServerEvent::Call(Call {
            method: XmlStr::new(text.get(shape.name.0..shape.name.1).unwrap_or_default()),
            params: Params {
                body: text.get(start..end).unwrap_or_default(),
                len,
                markup: super::value::has_markup(text),
            },
            target: request.target,
            headers: request.headers,
        })))
    }
}

/// What [`NextCall`] finished with.
#[derive(Debug)]
pub enum Incoming<T> {
    /// A call, made into the caller's value (its answer, to give with
    /// [`Server::answer`]).
    Call(T),
    /// A request that was not a call, answered by the machine itself: the
    /// adapter writes the answer (and closes if [`Server::wants_close`]).
    Answered,
    /// The connection ended.
    Closed,
}

/// Waits for the server's next call, and makes `call` of it.
#[derive(Debug)]
pub struct NextCall<F> {
    call: crate::op::Finish<F>,
}

impl<F> NextCall<F> {
    /// The operation, finished by `call`.
    pub fn new(call: F) -> Self {
        NextCall { call: crate::op::Finish::new(call) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Call<'a>) -> T> crate::op::Operation<Server<S>> for NextCall<F> {
    type Output = Incoming<T>;

    fn offer<'a>(&mut self, event: ServerEvent<'a>) -> crate::op::Offer<ServerEvent<'a>, Incoming<T>>
    where
        S: 'a,
    {
        use crate::op::Offer;
        match event {
            ServerEvent::Call(call) => match self.call.with::<_, ServerEvent<'a>, T>(call) {
                Offer::Done(output) => Offer::Done(Incoming::Call(output)),
                _ => Offer::Taken,
            },
            ServerEvent::Rejected(_) | ServerEvent::Http(_) => Offer::Done(Incoming::Answered),
            ServerEvent::Closed => Offer::Done(Incoming::Closed),
        }
    }

    /// A server waits for no request of its own.
    fn request(&self) -> Option<&()> {
        None
    }
}
