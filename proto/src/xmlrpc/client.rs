//! The XML-RPC client machine: calls encoded into HTTP requests, responses
//! parsed as they complete.

use core::fmt;

use super::grammar::Shape;
use super::write::{Options, ParamsWriter, write_call};
use super::{Error, Limits, MethodResponse, WriteError, response_from_shape, validate_response};
use crate::Machine;
use crate::buf::Storage;
use crate::http::{self, client::Found};

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// HTTP limits and options.
    pub http: http::Config,
    /// Limits on a response document.
    pub limits: Limits,
    /// What the writer may use (`<nil/>`, `<i8>`).
    pub options: Options,
}

/// What the [`Client`] reports: one event per call.
#[derive(Debug)]
pub enum Event<'a> {
    /// The method's response: its params, or a fault.
    Response(MethodResponse<'a>),
    /// The server answered with an HTTP status other than 200.
    HttpStatus {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: &'a str,
        /// The body, as sent.
        body: &'a [u8],
    },
    /// A 200 response whose body is not a valid `<methodResponse>`.
    Malformed(Error),
    /// The HTTP response could not be read; the connection was dropped.
    Http(http::Error),
    /// The connection ended before the response was complete.
    ConnectionLost {
        /// Bytes of the response that had arrived.
        received: usize,
    },
}

/// Why a call could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The params could not be written.
    Write(WriteError),
    /// The request could not be queued (a call is outstanding, a header is invalid, …).
    Http(http::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Write(e) => e.fmt(f),
            SendError::Http(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SendError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SendError::Write(e) => Some(e),
            SendError::Http(e) => Some(e),
        }
    }
}

impl From<WriteError> for SendError {
    fn from(e: WriteError) -> Self {
        SendError::Write(e)
    }
}

impl From<http::Error> for SendError {
    fn from(e: http::Error) -> Self {
        SendError::Http(e)
    }
}

impl From<crate::buf::Full> for SendError {
    fn from(e: crate::buf::Full) -> Self {
        SendError::Write(WriteError::Full(e))
    }
}

/// An XML-RPC client over HTTP/1.x, one call at a time.
///
/// ```
/// use vmwire_proto::{Machine, buf::Heap, http::Endpoint, xmlrpc::{Client, Config, Event}};
///
/// let endpoint = Endpoint { target: "/", host: "127.0.0.1:8080", headers: &[] };
/// let mut rpc = Client::<Heap>::new(Config::default(), &endpoint)?;
/// rpc.call("VM.get_all", |p| { p.string("OpaqueRef:1")?; Ok(()) })?;
/// if rpc.needs_connection() { rpc.connected(); }         // the adapter connected
/// let n = rpc.transmit().len();                           // … and wrote the request
/// rpc.transmitted(n);
/// let body = "<methodResponse><params><param><value>OpaqueRef:9</value></param></params></methodResponse>";
/// rpc.receive(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())?;
/// match rpc.poll()? {
///     Some(Event::Response(r)) => assert!(r.result().unwrap().as_str().unwrap() == "OpaqueRef:9"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client<S: Storage> {
    http: http::Client<S>,
    config: Config,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("http", &self.http).finish_non_exhaustive()
    }
}

impl<S: Storage> Client<S> {
    /// A client for `endpoint` (a `Content-Type: text/xml` field is added).
    pub fn new(config: Config, endpoint: &http::Endpoint<'_>) -> Result<Self, http::Error> {
        let mut fields: heapless::Vec<(&str, &str), { http::MAX_HEADERS }> = heapless::Vec::new();
        fields
            .push(("Content-Type", "text/xml"))
            .map_err(|_| http::Error::TooManyHeaders { limit: http::MAX_HEADERS })?;
        for field in endpoint.headers {
            fields.push(*field).map_err(|_| http::Error::TooManyHeaders { limit: http::MAX_HEADERS })?;
        }
        let endpoint = http::Endpoint { headers: &fields, ..*endpoint };
        Ok(Client { http: http::Client::new(config.http, &endpoint)?, config })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues a call of `method` with the params `params` writes.
    pub fn call(
        &mut self,
        method: &str,
        params: impl FnOnce(&mut ParamsWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), SendError> {
        self.call_with(method, &[], params)
    }

    /// [`Client::call`] with extra HTTP fields for this request only (such as `traceparent`).
    pub fn call_with(
        &mut self,
        method: &str,
        fields: &[(&str, &str)],
        params: impl FnOnce(&mut ParamsWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), SendError> {
        let options = self.config.options;
        self.http.post(fields, |out| write_call(out, method, options, params).map_err(SendError::from))
    }

    /// Whether a call is queued with no connection to send it on: connect,
    /// then call [`Client::connected`].
    pub fn needs_connection(&self) -> bool {
        self.http.needs_connection()
    }

    /// A new connection is up.
    pub fn connected(&mut self) {
        self.http.connected();
    }

    /// The adapter dropped the connection; an outstanding call is abandoned.
    pub fn close(&mut self) {
        self.http.close();
    }

    /// Where the HTTP connection stands.
    pub fn state(&self) -> http::State {
        self.http.state()
    }
}

/// What one step found, with no borrow held (see [`Client::event`]).
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A valid response; its shape in the body.
    Response(Shape),
    /// A status other than 200.
    HttpStatus,
    Malformed(Error),
    Http(http::Error),
    Lost(usize),
}

impl<S: Storage> Client<S> {
    /// [`Machine::poll`] without the borrow: what was found, to be made an
    /// event by [`Client::event`] (or looked at with [`Client::response`]).
    pub(crate) fn step(&mut self) -> Option<Step> {
        let limits = self.config.limits;
        Some(match self.http.step() {
            Found::Nothing => return None,
            Found::Malformed(e) => Step::Http(e),
            Found::Lost(n) => Step::Lost(n),
            Found::Response => match self.http.current() {
                Some(r) if r.status != 200 => Step::HttpStatus,
                Some(r) => match validate_response(r.body, &limits) {
                    Ok(shape) => Step::Response(shape),
                    Err(e) => Step::Malformed(e),
                },
                None => return None,
            },
        })
    }

    /// The response found by the last step.
    pub(crate) fn response(&self, shape: Shape) -> Option<MethodResponse<'_>> {
        response_from_shape(self.http.current()?.body, shape).ok()
    }

    /// The event for what the last step found.
    pub(crate) fn event(&self, step: Step) -> Option<Event<'_>> {
        Some(match step {
            Step::Response(shape) => Event::Response(self.response(shape)?),
            Step::HttpStatus => {
                let r = self.http.current()?;
                Event::HttpStatus { status: r.status, reason: r.reason, body: r.body }
            }
            Step::Malformed(e) => Event::Malformed(e),
            Step::Http(e) => Event::Http(e),
            Step::Lost(received) => Event::ConnectionLost { received },
        })
    }
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = http::Error;
    type Request = ();

    crate::delegate_bytes!(http, http::Error);

    fn close(&mut self) {
        Client::close(self);
    }

    /// Closes and abandons the call (see [`http::Client`]'s).
    fn expire(&mut self, _call: &()) {
        self.close();
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, http::Error> {
        Ok(match self.step() {
            None => None,
            Some(step) => self.event(step),
        })
    }
}

/// Waits for the response to the call in progress (every event of the
/// client is that call's), and makes `answer` of it.
#[derive(Debug)]
pub struct Response<F> {
    answer: crate::op::Finish<F>,
}

impl<F> Response<F> {
    /// The operation for the call just queued with [`Client::call`].
    pub fn new(answer: F) -> Self {
        Response { answer: crate::op::Finish::new(answer) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Event<'a>) -> T> crate::op::Operation<Client<S>> for Response<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> crate::op::Offer<Event<'a>, T>
    where
        S: 'a,
    {
        self.answer.with(event)
    }

    /// One call at a time: the call is the one in progress.
    fn request(&self) -> Option<&()> {
        Some(&())
    }
}
