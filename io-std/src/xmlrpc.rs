//! A blocking XML-RPC client (HTTP over TCP, HTTPS with rustls, HTTP over a
//! UNIX socket) and a small blocking XML-RPC server with method
//! registration, handy as a mock peer in tests.
//!
//! ```no_run
//! use vmwire_std::xmlrpc::Client;
//!
//! let mut rpc = Client::connect("http://127.0.0.1:8000/RPC2")?;
//! let sum: i64 = rpc.call("add", (2, 3))?;
//! let methods: Vec<String> = rpc.call("system.listMethods", ())?;
//! // Or read the result in place, without decoding it into a type:
//! let n = rpc.call_with("VM.get_all_records", ("OpaqueRef:…",), |v| v.get("Value").and_then(|v| v.as_struct()).map(|s| s.members().count()))?;
//! # Ok::<(), vmwire_std::xmlrpc::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::Heap;
use vmwire_proto::http as proto_http;
use vmwire_proto::xmlrpc::{
    self, Config, Event, MethodResponse, Params, SendError, ServerConfig, ServerEvent, Value, ValueWriter, WriteError,
    de, ser,
};

use crate::http::{Link, OpenError, TlsOptions, Url, UrlError};
use crate::transport::{Address, Conn, Listener, Stream, deadline};

/// Settings for a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Time limit for connecting and for each call (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// How HTTPS certificates are checked.
    pub tls: TlsOptions,
    /// Fields sent with every request (such as `originator` or `traceparent`).
    pub headers: Vec<(String, String)>,
    /// Limits, and what the writer may use (`<nil/>`, `<i8>`).
    pub config: Config,
}

impl Options {
    /// The defaults with a 60-second time limit.
    pub fn new() -> Self {
        Options { timeout: Some(Duration::from_secs(60)), ..Options::default() }
    }
}

/// An XML-RPC fault: the server's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `faultCode`.
    pub code: i64,
    /// `faultString`.
    pub string: String,
}

impl Fault {
    /// A fault with this code and string.
    pub fn new(code: i64, string: impl Into<String>) -> Self {
        Fault { code, string: string.into() }
    }
}

impl From<xmlrpc::Fault<'_>> for Fault {
    fn from(f: xmlrpc::Fault<'_>) -> Self {
        Fault { code: f.code, string: f.string.to_string() }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XML-RPC fault {}: {}", self.code, self.string)
    }
}

impl std::error::Error for Fault {}

/// Everything that can go wrong with a call, the server's own fault kept
/// apart from transport and protocol errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a fault.
    Fault(Fault),
    /// The server answered with an HTTP status other than 200.
    HttpStatus {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The body (lossily as text).
        body: String,
    },
    /// The socket failed.
    Io(io::Error),
    /// No answer within the time limit.
    Timeout,
    /// The server closed the connection before answering.
    Closed,
    /// The HTTP response could not be read.
    Http(proto_http::Error),
    /// The response is not XML-RPC.
    Xml(xmlrpc::Error),
    /// The params could not be encoded.
    Encode(WriteError),
    /// The result did not decode into the type asked for.
    Decode(de::Error),
    /// The URL is not usable.
    Url(UrlError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Fault(e) => e.fmt(f),
            Error::HttpStatus { status, reason, .. } => write!(f, "XML-RPC: HTTP {status} {reason}"),
            Error::Io(e) => write!(f, "XML-RPC I/O error: {e}"),
            Error::Timeout => f.write_str("XML-RPC: timed out"),
            Error::Closed => f.write_str("XML-RPC: connection closed before the response"),
            Error::Http(e) => e.fmt(f),
            Error::Xml(e) => e.fmt(f),
            Error::Encode(e) => e.fmt(f),
            Error::Decode(e) => e.fmt(f),
            Error::Url(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Fault(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Http(e) => Some(e),
            Error::Xml(e) => Some(e),
            Error::Encode(e) => Some(e),
            Error::Decode(e) => Some(e),
            Error::Url(e) => Some(e),
            _ => None,
        }
    }
}

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Url(e) => Error::Url(e),
            OpenError::Machine(e) => Error::Http(e),
            OpenError::Io(e) => Error::Io(e),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Write(e) => Error::Encode(e),
            SendError::Http(e) => Error::Http(e),
            _ => Error::Http(proto_http::Error::WrongState { operation: "call" }),
        }
    }
}

crate::transport::client_error!(Error, proto_http::Error, Error::Http);

/// A blocking XML-RPC client. Calls go one at a time; the HTTP connection is
/// kept alive when the server allows it and reopened when it does not.
#[derive(Debug)]
pub struct Client {
    link: Link<xmlrpc::Client<Heap>>,
    url: Url,
}

impl Client {
    /// Connects to `url` (see [`Url`]) with [`Options::new`].
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, Options::new())
    }

    /// Connects to `url` with `options`.
    pub fn connect_with(url: &str, options: Options) -> Result<Self, Error> {
        let (link, url) = Link::connect(url, &options.headers, &options.tls, options.timeout, |endpoint| {
            xmlrpc::Client::new(options.config, endpoint)
        })?;
        Ok(Client { link, url })
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Calls `method` with `params` (a tuple or a `Vec`: one param each;
    /// `()`: none; anything else: one param) and decodes the result into `R`.
    pub fn call<P: Serialize, R: DeserializeOwned>(&mut self, method: &str, params: P) -> Result<R, Error> {
        self.call_with(method, params, |v| v.deserialize::<R>())?.map_err(Error::Decode)
    }

    /// Calls `method` and hands the result, borrowed where it lies in the
    /// response, to `read`.
    pub fn call_with<P: Serialize, T>(
        &mut self,
        method: &str,
        params: P,
        read: impl FnOnce(Value<'_>) -> T,
    ) -> Result<T, Error> {
        self.link.machine().call(method, |p| ser::to_params(p, &params))?;
        let mut response = xmlrpc::Response::new(|event: Event<'_>| answer(event, read));
        self.link.run(&mut response, &mut |_: Event<'_>| {}).map_err(Error::from)?
    }

    /// Calls `method` and returns the result as JSON ([`to_json`]).
    pub fn call_json<P: Serialize>(&mut self, method: &str, params: P) -> Result<serde_json::Value, Error> {
        self.call_with(method, params, to_json)
    }
}

/// What the event that answers a call comes to: the result (the first
/// param, `<nil/>` if none) handed to `read`, or the error. Shared with
/// vmwire-smol's client.
pub fn answer<T>(event: Event<'_>, read: impl FnOnce(Value<'_>) -> T) -> Result<T, Error> {
    match event {
        Event::Response(MethodResponse::Params(p)) => Ok(read(p.first().unwrap_or(Value::Nil))),
        Event::Response(MethodResponse::Fault(f)) => Err(Error::Fault(f.into())),
        Event::HttpStatus { status, reason, body } => {
            Err(Error::HttpStatus { status, reason: reason.into(), body: String::from_utf8_lossy(body).into() })
        }
        Event::Malformed(e) => Err(Error::Xml(e)),
        Event::Http(e) => Err(Error::Http(e)),
        Event::ConnectionLost { .. } => Err(Error::Closed),
    }
}

/// An XML-RPC value as JSON: structs as objects (members in order), arrays
/// as arrays, `<nil/>` as `null`, dates and base64 as their text.
pub fn to_json(v: Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Int(n) => J::from(n),
        Value::Boolean(b) => J::Bool(b),
        Value::String(s) => J::String(s.to_string()),
        Value::Double(d) => serde_json::Number::from_f64(d).map_or(J::Null, J::Number),
        Value::DateTime(t) => J::String(t.text().to_string()),
        Value::Base64(b) => J::String(b.text().split_ascii_whitespace().collect()),
        Value::Nil => J::Null,
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Struct(s) => J::Object(s.members().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

// ---------------------------------------------------------------------------
// The server.

type Handler = Box<dyn Fn(Params<'_>, ValueWriter<'_, Vec<u8>>) -> Result<(), Fault> + Send + Sync>;

/// Fault code for a method that is not registered.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Fault code for params that do not decode into what the method takes.
pub const INVALID_PARAMS: i64 = -32602;

/// A small blocking XML-RPC server: register methods, then serve (a thread
/// per connection, HTTP/1.1 keep-alive, over TCP or a UNIX socket).
///
/// ```no_run
/// use vmwire_std::xmlrpc::{Client, Fault, Server};
///
/// let mut server = Server::bind("127.0.0.1:0")?;
/// server.method("add", |(a, b): (i64, i64)| Ok::<_, Fault>(a + b));
/// server.method("fail", |(): ()| Err::<(), _>(Fault::new(4, "no")));
/// let running = server.spawn()?;
/// let mut rpc = Client::connect(&format!("http://{}/", running.addr().unwrap()))?;
/// assert_eq!(rpc.call::<_, i64>("add", (2, 3))?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    listener: Listener,
    methods: HashMap<String, Handler>,
    config: ServerConfig,
    idle_timeout: Option<Duration>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Server").field("listener", &self.listener).field("methods", &names).finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `addr` over TCP (port 0: any free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::on(Listener::Tcp(TcpListener::bind(addr)?)))
    }

    /// Listens on a UNIX socket at `path` (removed again when the server
    /// stops; one left by a server that was killed is replaced).
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::on(Listener::bind(&Address::Unix(path.as_ref().to_path_buf()))?))
    }

    fn on(listener: Listener) -> Self {
        Server {
            listener,
            methods: HashMap::new(),
            config: ServerConfig::default(),
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Limits and writer options.
    pub fn config(&mut self, config: ServerConfig) -> &mut Self {
        self.config = config;
        self
    }

    /// How long a kept-alive connection may sit idle before it is closed.
    pub fn idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.idle_timeout = timeout;
        self
    }

    /// Registers `name`: its params decode into `A` (a tuple: one element
    /// per param), its result is `R` encoded.
    pub fn method<A, R, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> Result<R, Fault> + Send + Sync + 'static,
    {
        self.method_raw(name, move |params, out| {
            let args: A = params.deserialize().map_err(|e| Fault::new(INVALID_PARAMS, e.to_string()))?;
            let result = f(args)?;
            let mut value = Vec::new();
            ser::to_value(&mut value, &result, xmlrpc::Options::default())
                .map_err(|e| Fault::new(INVALID_PARAMS, format!("result: {e}")))?;
            out.raw(&value).map_err(|e| Fault::new(INVALID_PARAMS, e.to_string()))
        })
    }

    /// Registers `name` with a handler that reads the params where they lie
    /// and writes its result with a [`ValueWriter`].
    pub fn method_raw<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Params<'_>, ValueWriter<'_, Vec<u8>>) -> Result<(), Fault> + Send + Sync + 'static,
    {
        self.methods.insert(name.to_string(), Box::new(f));
        self
    }

    /// Serves until the process ends.
    pub fn serve(self) -> io::Result<()> {
        self.run(&AtomicBool::new(false))
    }

    /// Serves on a background thread until the returned handle is dropped.
    pub fn spawn(self) -> io::Result<Running> {
        let addr = self.local_addr();
        let path = match &self.listener {
            Listener::Unix(_, p) => Some(p.clone()),
            Listener::Tcp(_) => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("xmlrpc-server".into()).spawn(move || {
            let _ = self.run(&flag);
        })?;
        Ok(Running { addr, path, stop, thread: Some(thread) })
    }

    fn run(self, stop: &AtomicBool) -> io::Result<()> {
        let shared = Arc::new(Shared { methods: self.methods, config: self.config, idle: self.idle_timeout });
        loop {
            let stream = self.listener.accept();
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = shared.clone();
            let _ =
                std::thread::Builder::new().name("xmlrpc-conn".into()).spawn(move || serve_connection(stream, &shared));
        }
        Ok(())
    }
}

struct Shared {
    methods: HashMap<String, Handler>,
    config: ServerConfig,
    idle: Option<Duration>,
}

impl Shared {
    /// Runs the method: its result as an encoded `<value>`, or its fault.
    fn dispatch(&self, method: &str, params: Params<'_>) -> Result<Vec<u8>, Fault> {
        let handler = self
            .methods
            .get(method)
            .ok_or_else(|| Fault::new(METHOD_NOT_FOUND, format!("method {method:?} is not supported")))?;
        let mut out = Vec::new();
        handler(params, ValueWriter::new(&mut out, self.config.options))?;
        Ok(out)
    }
}

fn serve_connection(stream: Stream, shared: &Shared) {
    let mut conn = Conn::new(stream, xmlrpc::Server::<Heap>::new(shared.config));
    loop {
        let mut next =
            xmlrpc::NextCall::new(|call: xmlrpc::Call<'_>| shared.dispatch(&call.method.to_string(), call.params));
        match conn.run(&mut next, &mut |_: ServerEvent<'_>| {}, deadline(shared.idle)) {
            Ok(xmlrpc::Incoming::Call(answer)) => {
                let _ = conn.machine_mut().answer(answer.as_deref().map_err(|f| (f.code, f.string.as_str())));
            }
            Ok(xmlrpc::Incoming::Answered) => {}
            Ok(xmlrpc::Incoming::Closed) => return,
            Err(_) => {
                // Idle too long, or gone: done with this connection.
                let _ = conn.flush(deadline(Some(Duration::from_secs(1))));
                conn.close();
                return;
            }
        }
        if conn.flush(deadline(shared.idle)).is_err() || conn.machine().wants_close() {
            conn.close();
            return;
        }
    }
}

/// A server running on a background thread; dropping it stops the server
/// (connections already open finish on their own).
#[derive(Debug)]
pub struct Running {
    addr: Option<SocketAddr>,
    path: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// The TCP address served.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The UNIX socket served.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Stops accepting connections and waits for the accepting thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() up.
        if let Some(addr) = self.addr {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        if let Some(path) = &self.path {
            let _ = std::os::unix::net::UnixStream::connect(path);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}
