//! The XenAPI (xapi: XenServer, XCP-ng) over XML-RPC: results, failures,
//! tasks, and a session machine.
//!
//! Every XenAPI method returns a struct: `{"Status": "Success", "Value": …}`
//! or `{"Status": "Failure", "ErrorDescription": [code, params…]}`. A failure
//! is the method's answer, not a transport error: [`decode`] hands it out as
//! [`Outcome::Failure`], and the [`Session`] machine as [`Event::Failure`].
//! Integers travel as strings (`"4294967296"`): [`Value::as_i64`] and the
//! serde deserializer read them as 64-bit integers.
//!
//! The [`Session`] machine logs in (`session.login_with_password` or
//! `session.slave_local_login_with_password`), puts the session reference in
//! front of every call's params, and when xapi answers `SESSION_INVALID` logs
//! in again with the remembered credentials and retries, at most three tries
//! in all, as the official Python SDK does ([`Event::Relogin`] reports each
//! re-login, [`Event::SessionInvalid`] the last straw). `Async.*` calls
//! return a task reference; [`TaskStatus`] and [`task_result`] read what
//! `task.get_status` and `task.get_result` return.
//!
//! ```
//! use vmwire_proto::{Machine, buf::Heap, http::Endpoint, xenapi::{Config, Event, Session}};
//!
//! let endpoint = Endpoint { target: "/", host: "xapi.example", headers: &[] };
//! let mut xapi = Session::<Heap>::new(Config::default(), &endpoint)?;
//! xapi.login_with_password("root", "secret", "2.21", "docs")?;
//! # let reply = |xapi: &mut Session<Heap>, body: &str| {
//! #     if xapi.needs_connection() { xapi.connected(); }
//! #     let n = xapi.transmit().len();
//! #     xapi.transmitted(n);
//! #     xapi.receive(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).unwrap();
//! # };
//! # reply(&mut xapi, "<methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value>OpaqueRef:s1</value></member></struct></value></param></params></methodResponse>");
//! assert!(matches!(xapi.poll()?, Some(Event::LoggedIn { session: "OpaqueRef:s1" })));
//! xapi.call("VM.get_all", |_| Ok(()))?;  // the session goes first by itself
//! # reply(&mut xapi, "<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>VM_BAD_POWER_STATE</value><value>halted</value></data></array></value></member></struct></value></param></params></methodResponse>");
//! match xapi.poll()? {
//!     Some(Event::Failure(f)) => {
//!         assert!(f.code() == "VM_BAD_POWER_STATE");
//!         assert!(f.params().next().unwrap().as_str().unwrap() == "halted");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::Machine;
use crate::buf::{Buf, Storage};
use crate::http;
use crate::xmlrpc::{self, Array, MethodResponse, ParamsWriter, SendError, Value, WriteError, XmlStr, client::Step};

mod task;
pub use task::{TaskEnded, WaitTask};

/// Longest session reference the machine keeps (xapi's are 46 bytes).
pub const MAX_REF_LEN: usize = 256;
/// Longest method name.
pub const MAX_METHOD_LEN: usize = 128;

/// What a XenAPI method answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    /// `{"Status": "Success", "Value": …}`: the value.
    Success(Value<'a>),
    /// `{"Status": "Failure", "ErrorDescription": […]}`.
    Failure(Failure<'a>),
}

/// A XenAPI failure: an error code (such as `VM_BAD_POWER_STATE`) and its
/// parameters, as data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    description: Array<'a>,
}

impl<'a> Failure<'a> {
    /// The error code (empty if the description was empty).
    pub fn code(&self) -> XmlStr<'a> {
        self.description.iter().next().and_then(|v| v.as_str()).unwrap_or_default()
    }

    /// The parameters after the code.
    pub fn params(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.description.iter().skip(1)
    }

    /// The whole `ErrorDescription`.
    pub fn description(&self) -> Array<'a> {
        self.description
    }

    /// Whether the code is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }
}

impl fmt::Display for Failure<'_> {
    /// `CODE: param, param` (strings decoded).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())?;
        for (i, p) in self.params().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            match p.as_str() {
                Some(s) => write!(f, "{s}")?,
                None => write!(f, "{p:?}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({self})")
    }
}

/// Reads a XenAPI result struct.
///
/// ```
/// use vmwire_proto::{xmlrpc, xenapi::{self, Outcome}};
/// let doc = b"<methodResponse><params><param><value><struct>\
///   <member><name>Status</name><value>Success</value></member>\
///   <member><name>Value</name><value><string>268435456</string></value></member>\
///   </struct></value></param></params></methodResponse>";
/// let response = xmlrpc::parse_response(doc)?;
/// let Outcome::Success(v) = xenapi::decode(response.result().unwrap())? else { panic!() };
/// assert_eq!(v.as_i64(), Some(268435456)); // XenAPI integers are strings
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(result: Value<'_>) -> Result<Outcome<'_>, Error> {
    let fields = result.as_struct().ok_or(Error::NotAResult { what: "the result is not a struct" })?;
    let (mut status, mut value, mut description) = (None, None, None);
    for (name, v) in fields.members() {
        match name.as_str() {
            Some("Status") => status = Some(v),
            Some("Value") => value = Some(v),
            Some("ErrorDescription") => description = Some(v),
            _ => {}
        }
    }
    let status = status.and_then(|s| s.as_str()).ok_or(Error::NotAResult { what: "no Status" })?;
    if status == "Success" {
        return value.map(Outcome::Success).ok_or(Error::NotAResult { what: "Success without a Value" });
    }
    let description = description
        .and_then(|d| d.as_array())
        .ok_or(Error::NotAResult { what: "Failure without an ErrorDescription" })?;
    Ok(Outcome::Failure(Failure { description }))
}

/// A task's `status`, as `task.get_status` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Still running.
    Pending,
    /// Finished: `task.get_result` has the result.
    Success,
    /// Finished: `task.get_error_info` has the failure.
    Failure,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Reads xapi's word for it (`pending`, `success`, …).
    pub fn from_text(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => TaskStatus::Pending,
            "success" => TaskStatus::Success,
            "failure" => TaskStatus::Failure,
            "cancelling" => TaskStatus::Cancelling,
            "cancelled" => TaskStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the task has finished (succeeded, failed or been cancelled).
    pub fn is_finished(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Cancelling)
    }
}

/// The XenAPI methods that take a password, and which of their params
/// carry one (counted from 0 as sent, the session reference first where
/// the method takes one).
const SECRET_PARAMS: [(&str, &[usize]); 6] = [
    ("session.login_with_password", &[1]),
    ("session.slave_local_login_with_password", &[1]),
    ("session.change_password", &[1, 2]),
    ("pool.join", &[3]),
    ("pool.join_force", &[3]),
    ("pool.initialize_wlb", &[3, 5]),
];

/// Which params of a call to `method` carry a password (counted from 0, as
/// sent): what a recording or a log must not keep. Empty for a method that
/// takes none.
///
/// ```
/// use vmwire_proto::xenapi::secret_params;
/// assert_eq!(secret_params("session.login_with_password"), &[1]);
/// assert_eq!(secret_params("session.change_password"), &[1, 2]);
/// assert_eq!(secret_params("Session.Login_With_Password"), &[1]);
/// assert!(secret_params("VM.get_all").is_empty());
/// ```
pub fn secret_params(method: &str) -> &'static [usize] {
    // Whatever the case: a recording errs on the side of blanking.
    SECRET_PARAMS.iter().find(|(name, _)| name.eq_ignore_ascii_case(method)).map_or(&[], |(_, params)| params)
}

/// Whether a struct member named `name`, anywhere in the params of a call to
/// `method`, carries a secret: one whose name ends in `password` (a storage
/// repository's `device_config` holds the CIFS `password` and the iSCSI
/// `chappassword`), external authentication's `pass`, and `secret.create`'s
/// `value`. Names and methods match in any case. (Members whose name ends in
/// `_secret` hold the reference of a secret, not the secret.)
///
/// ```
/// use vmwire_proto::xenapi::secret_member;
/// assert!(secret_member("SR.create", "chappassword"));
/// assert!(secret_member("pool.enable_external_auth", "pass"));
/// assert!(secret_member("secret.create", "value"));
/// assert!(!secret_member("SR.create", "password_secret"));
/// assert!(!secret_member("VM.set_other_config", "value"));
/// ```
pub fn secret_member(method: &str, name: &str) -> bool {
    let tail = &name.as_bytes()[name.len().saturating_sub(8)..];
    secret_name(name.len(), tail, method.eq_ignore_ascii_case("secret.create"))
}

/// [`secret_member`] for a name `len` bytes long that ends in `tail` (its
/// last eight bytes, or all of it if shorter), in a call to `secret.create`
/// or not.
fn secret_name(len: usize, tail: &[u8], secret_create: bool) -> bool {
    let is = |word: &str| len == word.len() && tail.eq_ignore_ascii_case(word.as_bytes());
    (len >= 8 && tail.eq_ignore_ascii_case(b"password")) || is("pass") || (secret_create && is("value"))
}

/// How deep in a param [`secret_spans`] looks for members that carry a
/// secret (XenAPI's, as `device_config`, are one level down).
pub const SECRET_DEPTH: usize = 16;

/// Where, in `call` (the body of an XML-RPC `<methodCall>`), the text of
/// each secret stands, as it is written (escaped): the password params
/// ([`secret_params`]) and, in any param down to [`SECRET_DEPTH`] levels, the
/// string members that carry one ([`secret_member`]). These are the byte
/// ranges a recorder blanks out. None for a body that is not a call.
///
/// ```
/// use vmwire_proto::xenapi::secret_spans;
/// let call = b"<methodCall><methodName>session.login_with_password</methodName><params>\
///     <param><value>root</value></param><param><value><string>p&amp;ss</string></value></param>\
///     </params></methodCall>";
/// let spans: Vec<_> = secret_spans(call).collect();
/// assert_eq!(spans.len(), 1);
/// assert_eq!(&call[spans[0].clone()], b"p&amp;ss");
///
/// let call = b"<methodCall><methodName>SR.create</methodName><params>\
///     <param><value>OpaqueRef:s</value></param><param><value>OpaqueRef:h</value></param>\
///     <param><value><struct><member><name>username</name><value>u</value></member>\
///     <member><name>password</name><value>pw</value></member></struct></value></param>\
///     </params></methodCall>";
/// let texts: Vec<_> = secret_spans(call).map(|s| &call[s]).collect();
/// assert_eq!(texts, [b"pw"]);
/// ```
pub fn secret_spans(call: &[u8]) -> SecretSpans<'_> {
    let parsed = xmlrpc::parse_call(call).ok();
    let mut name = [0u8; MAX_METHOD_LEN];
    let method = parsed.and_then(|c| c.name.unescape_into(&mut name).ok()).unwrap_or_default();
    SecretSpans {
        call,
        params: parsed.map(|c| c.params.iter().enumerate()),
        secret_params: secret_params(method),
        secret_create: method.eq_ignore_ascii_case("secret.create"),
        stack: [const { None }; SECRET_DEPTH],
        depth: 0,
    }
}

/// Iterator over the secrets of a call: see [`secret_spans`].
#[derive(Debug, Clone)]
pub struct SecretSpans<'a> {
    call: &'a [u8],
    params: Option<core::iter::Enumerate<xmlrpc::ParamIter<'a>>>,
    secret_params: &'static [usize],
    /// A call to `secret.create`, whose `value` members are secrets.
    secret_create: bool,
    /// The containers being walked, outermost first.
    stack: [Option<Nested<'a>>; SECRET_DEPTH],
    depth: usize,
}

/// A struct or array being walked for secrets.
#[derive(Debug, Clone)]
enum Nested<'a> {
    Members(xmlrpc::Members<'a>),
    Elements(xmlrpc::Elements<'a>),
}

impl<'a> SecretSpans<'a> {
    /// Where a secret's text stands in the call (`None` if it is not a string).
    fn span(&self, value: Value<'a>) -> Option<core::ops::Range<usize>> {
        match value {
            Value::String(text) => crate::span_in(self.call, text.raw().as_bytes()),
            _ => None,
        }
    }

    /// Walks into `value` next, if it is a container and not too deep.
    fn enter(&mut self, value: Value<'a>) {
        let nested = match value {
            Value::Struct(s) => Nested::Members(s.members()),
            Value::Array(a) => Nested::Elements(a.iter()),
            _ => return,
        };
        if let Some(slot) = self.stack.get_mut(self.depth) {
            *slot = Some(nested);
            self.depth += 1;
        }
    }

    /// [`secret_member`] for a member's name as written: decoded, its length
    /// and last eight bytes, however long it is.
    fn is_secret(&self, name: XmlStr<'_>) -> bool {
        let (mut tail, mut len) = ([0u8; 8], 0);
        let mut push = |bytes: &[u8]| {
            for &b in bytes {
                tail.copy_within(1.., 0);
                tail[7] = b;
                len += 1;
            }
        };
        for chunk in name.chunks() {
            match chunk {
                xmlrpc::Chunk::Str(s) => push(s.as_bytes()),
                xmlrpc::Chunk::Char(c) => push(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        secret_name(len, &tail[8 - len.min(8)..], self.secret_create)
    }
}

impl Iterator for SecretSpans<'_> {
    type Item = core::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The next value, a param or one in the innermost container, and
            // whether it is a secret.
            let (secret, value) = match self.depth.checked_sub(1) {
                None => {
                    let (n, param) = self.params.as_mut()?.next()?;
                    (self.secret_params.contains(&n), param)
                }
                Some(inner) => {
                    let found = match self.stack.get_mut(inner).and_then(Option::as_mut) {
                        Some(Nested::Members(members)) => members.next().map(|(name, value)| (Some(name), value)),
                        Some(Nested::Elements(elements)) => elements.next().map(|value| (None, value)),
                        None => None,
                    };
                    let Some((name, value)) = found else {
                        self.depth = inner;
                        continue;
                    };
                    (name.is_some_and(|name| self.is_secret(name)), value)
                }
            };
            // A secret that is a string is one to blank; anything else may hold some.
            if secret {
                if let Some(span) = self.span(value) {
                    return Some(span);
                }
            }
            self.enter(value);
        }
    }
}

/// Reads a task's result: xapi puts the method's result in `task.result` as
/// an XML-RPC `<value>` document (`""` for methods that return nothing).
///
/// ```
/// use vmwire_proto::xenapi::task_result;
/// let v = task_result("<value>OpaqueRef:1f2e</value>")?;
/// assert!(v.as_str().unwrap() == "OpaqueRef:1f2e");
/// assert!(task_result("")?.is_nil());
/// # Ok::<(), vmwire_proto::xmlrpc::Error>(())
/// ```
pub fn task_result(text: &str) -> Result<Value<'_>, xmlrpc::Error> {
    if text.trim().is_empty() {
        return Ok(Value::Nil);
    }
    xmlrpc::parse_value(text.as_bytes())
}

/// What went wrong in the [`Session`] (not xapi's failures, which are events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A valid XML-RPC response that is not a XenAPI result.
    NotAResult {
        /// What was missing or wrong.
        what: &'static str,
    },
    /// A response body that is not valid XML-RPC.
    Xml(xmlrpc::Error),
    /// An HTTP response that could not be read.
    Http(http::Error),
    /// A call needs a session: log in first.
    NotLoggedIn,
    /// A call, login or logout is still outstanding.
    Busy,
    /// A method name, a session reference or the params are longer than the
    /// machine keeps.
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request could not be queued.
    Send(SendError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAResult { what } => write!(f, "XenAPI: not a XenAPI result: {what}"),
            Error::Xml(e) => write!(f, "XenAPI: {e}"),
            Error::Http(e) => write!(f, "XenAPI: {e}"),
            Error::NotLoggedIn => f.write_str("XenAPI: not logged in"),
            Error::Busy => f.write_str("XenAPI: a call is still outstanding"),
            Error::TooLong { what, limit } => write!(f, "XenAPI: {what} longer than {limit} bytes"),
            Error::Send(e) => write!(f, "XenAPI: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Xml(e) => Some(e),
            Error::Http(e) => Some(e),
            Error::Send(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Error::Send(e)
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        Error::Send(SendError::Write(e))
    }
}

/// Settings for a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// XML-RPC (and HTTP) settings.
    pub rpc: xmlrpc::Config,
    /// Tries of a call whose session xapi calls invalid, re-logging in
    /// between (the SDK's 3).
    pub tries: u8,
    /// Most bytes of a call's params kept for a retry (with
    /// [`Heap`](crate::buf::Heap) storage).
    pub max_params: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { rpc: xmlrpc::Config::default(), tries: 3, max_params: 16 << 20 }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No session.
    LoggedOut,
    /// A login is outstanding.
    LoggingIn,
    /// A session is held; calls may be made.
    LoggedIn,
    /// A logout is outstanding.
    LoggingOut,
}

/// What the [`Session`] reports. Every login, call and logout ends with
/// exactly one of the events other than [`Event::Relogin`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A login succeeded: the session reference.
    LoggedIn {
        /// The session reference (`OpaqueRef:…`).
        session: &'a str,
    },
    /// xapi said `SESSION_INVALID`; the machine logged in again with the
    /// remembered credentials and is retrying the call.
    Relogin {
        /// The try that failed (1, 2, …).
        attempt: u8,
        /// The new session reference.
        session: &'a str,
    },
    /// The call succeeded: its `Value`.
    Result(Value<'a>),
    /// The call (or login, or logout) failed: xapi's `ErrorDescription`.
    Failure(Failure<'a>),
    /// Every try of the call met `SESSION_INVALID` (the SDK's "Tried 3 times
    /// to get a valid session, but failed"). The last re-login's session is kept.
    SessionInvalid {
        /// How many tries were made.
        tries: u8,
    },
    /// The logout went through (or failed: the session is forgotten either way).
    LoggedOut,
    /// An XML-RPC fault instead of a XenAPI result.
    Fault(xmlrpc::Fault<'a>),
    /// An HTTP status other than 200.
    HttpStatus {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: &'a str,
        /// The body.
        body: &'a [u8],
    },
    /// The response could not be read.
    Malformed(Error),
    /// The connection ended before the response was complete.
    ConnectionLost {
        /// Bytes of the response that had arrived.
        received: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Login,
    Relogin,
    Call,
    Logout,
}

/// What a response said, seen before anything is borrowed for the event.
enum Seen {
    /// Success; for a login, the session has been stored.
    Success,
    SessionInvalid,
    /// Any other answer: handed out as it is.
    Other,
    NotAResult(Error),
}

/// A XenAPI session over XML-RPC. See the [module documentation](self).
pub struct Session<S: Storage> {
    rpc: xmlrpc::Client<S>,
    core: Core<S>,
}

struct Core<S: Storage> {
    config: Config,
    state: State,
    pending: Pending,
    session: heapless::String<MAX_REF_LEN>,
    login_method: heapless::String<MAX_METHOD_LEN>,
    /// The login's params, kept to log in again.
    login_params: S::Tx,
    call_method: heapless::String<MAX_METHOD_LEN>,
    /// The call's params after the session, kept to retry it.
    call_params: S::Tx,
    tries: u8,
}

impl<S: Storage> fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The credentials are not shown.
        f.debug_struct("Session")
            .field("state", &self.core.state)
            .field("pending", &self.core.pending)
            .field("rpc", &self.rpc)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Session<S> {
    /// A session machine for `endpoint`, logged out.
    pub fn new(config: Config, endpoint: &http::Endpoint<'_>) -> Result<Self, http::Error> {
        Ok(Session {
            rpc: xmlrpc::Client::new(config.rpc, endpoint)?,
            core: Core {
                config,
                state: State::LoggedOut,
                pending: Pending::None,
                session: heapless::String::new(),
                login_method: heapless::String::new(),
                login_params: S::tx(config.max_params),
                call_method: heapless::String::new(),
                call_params: S::tx(config.max_params),
                tries: 0,
            },
        })
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The session reference, while logged in.
    pub fn session(&self) -> Option<&str> {
        matches!(self.core.state, State::LoggedIn | State::LoggingOut).then_some(self.core.session.as_str())
    }

    /// The call that ends this session, while logged in: its method
    /// (`session.logout`, or `session.local_logout` after a slave-local
    /// login) and the session, its one param. For a process that must log
    /// out from elsewhere (a signal's thread, on a connection of its own)
    /// while this machine waits on a call.
    pub fn logout_call(&self) -> Option<(&'static str, &str)> {
        Some((self.core.logout_method(), self.session()?))
    }

    /// `session.login_with_password(user, password, version, originator)`.
    /// The credentials are kept (in the machine's storage) to log in again
    /// when xapi says the session is invalid, until logout.
    pub fn login_with_password(
        &mut self,
        user: &str,
        password: &str,
        version: &str,
        originator: &str,
    ) -> Result<(), Error> {
        self.login("login_with_password", |p| {
            p.string(user)?.string(password)?.string(version)?.string(originator)?;
            Ok(())
        })
    }

    /// `session.slave_local_login_with_password(user, password)`: a login
    /// that a pool member accepts even when it cannot reach the pool master.
    pub fn slave_local_login_with_password(&mut self, user: &str, password: &str) -> Result<(), Error> {
        self.login("slave_local_login_with_password", |p| {
            p.string(user)?.string(password)?;
            Ok(())
        })
    }

    /// Any `session.login*` method (`method` with or without `session.`),
    /// its params written by `params` and kept for re-logins.
    pub fn login(
        &mut self,
        method: &str,
        params: impl FnOnce(&mut ParamsWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), Error> {
        let core = &mut self.core;
        if core.pending != Pending::None {
            return Err(Error::Busy);
        }
        let method = method.strip_prefix("session.").unwrap_or(method);
        let mut full = heapless::String::new();
        if full.push_str("session.").and_then(|()| full.push_str(method)).is_err() {
            return Err(Error::TooLong { what: "the method name", limit: MAX_METHOD_LEN });
        }
        core.forget_login();
        let options = core.config.rpc.options;
        if let Err(e) = params(&mut ParamsWriter::new(&mut core.login_params, options)) {
            core.forget_login();
            return Err(e.into());
        }
        core.login_method = full;
        if let Err(e) = self.rpc.call(&core.login_method, |p| p.raw(core.login_params.as_slice()).map(|_| ())) {
            core.forget_login();
            return Err(e.into());
        }
        core.pending = Pending::Login;
        core.state = State::LoggingIn;
        Ok(())
    }

    /// Calls `method` with the session reference, then the params `params`
    /// writes.
    pub fn call(
        &mut self,
        method: &str,
        params: impl FnOnce(&mut ParamsWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), Error> {
        let core = &mut self.core;
        if core.pending != Pending::None {
            return Err(Error::Busy);
        }
        if core.state != State::LoggedIn {
            return Err(Error::NotLoggedIn);
        }
        core.call_method = heapless::String::try_from(method)
            .map_err(|_| Error::TooLong { what: "the method name", limit: MAX_METHOD_LEN })?;
        core.call_params.truncate(0);
        let options = core.config.rpc.options;
        params(&mut ParamsWriter::new(&mut core.call_params, options))?;
        core.tries = 0;
        core.send_call(&mut self.rpc)?;
        core.pending = Pending::Call;
        Ok(())
    }

    /// Calls `Async.<method>`: the result is a task reference.
    pub fn call_async(
        &mut self,
        method: &str,
        params: impl FnOnce(&mut ParamsWriter<'_, S::Tx>) -> Result<(), WriteError>,
    ) -> Result<(), Error> {
        let mut name = heapless::String::<MAX_METHOD_LEN>::new();
        if name.push_str("Async.").and_then(|()| name.push_str(method)).is_err() {
            return Err(Error::TooLong { what: "the method name", limit: MAX_METHOD_LEN });
        }
        self.call(&name, params)
    }

    /// `session.logout` (`session.local_logout` after a slave-local login).
    /// The session and the credentials are forgotten whatever xapi answers.
    pub fn logout(&mut self) -> Result<(), Error> {
        let core = &mut self.core;
        if core.pending != Pending::None {
            return Err(Error::Busy);
        }
        if core.state != State::LoggedIn {
            return Err(Error::NotLoggedIn);
        }
        let method = core.logout_method();
        let session = core.session.as_str();
        self.rpc.call(method, |p| p.string(session).map(|_| ()))?;
        core.pending = Pending::Logout;
        core.state = State::LoggingOut;
        Ok(())
    }

    /// Where the HTTP connection stands.
    pub fn connection_state(&self) -> http::State {
        self.rpc.state()
    }

    /// Whether a request is queued with no connection to send it on:
    /// connect, then call [`Session::connected`].
    pub fn needs_connection(&self) -> bool {
        self.rpc.needs_connection()
    }

    /// A new connection is up.
    pub fn connected(&mut self) {
        self.rpc.connected();
    }

    /// The adapter dropped the connection (an I/O error or a timeout): the
    /// outstanding call, login or logout is abandoned. The session, if any,
    /// is kept.
    pub fn close(&mut self) {
        self.rpc.close();
        self.core.abandon();
    }

    /// Looks at the response the last step found, acting on what it says.
    fn see(&mut self, shape: Option<xmlrpc::grammar::Shape>) -> Seen {
        let core = &mut self.core;
        let response = shape.and_then(|s| self.rpc.response(s));
        let Some(MethodResponse::Params(params)) = response else { return Seen::Other };
        match decode(params.first().unwrap_or(Value::Nil)) {
            Err(e) => Seen::NotAResult(e),
            Ok(Outcome::Failure(f)) if f.is("SESSION_INVALID") => Seen::SessionInvalid,
            Ok(Outcome::Failure(_)) => Seen::Other,
            Ok(Outcome::Success(v)) => {
                if matches!(core.pending, Pending::Login | Pending::Relogin) {
                    let Some(session) = v.as_str().and_then(|s| s.as_str()) else {
                        return Seen::NotAResult(Error::NotAResult { what: "the session reference is not a string" });
                    };
                    match heapless::String::try_from(session) {
                        Ok(s) => core.session = s,
                        Err(_) => {
                            return Seen::NotAResult(Error::TooLong {
                                what: "the session reference",
                                limit: MAX_REF_LEN,
                            });
                        }
                    }
                }
                Seen::Success
            }
        }
    }

    /// The event for the response as it stands (a success's value or a
    /// failure's description, a fault, …).
    fn answer(&self, step: Step) -> Option<Event<'_>> {
        Some(match self.rpc.event(step)? {
            xmlrpc::Event::Response(MethodResponse::Fault(f)) => Event::Fault(f),
            xmlrpc::Event::Response(MethodResponse::Params(p)) => match decode(p.first().unwrap_or(Value::Nil)) {
                Ok(Outcome::Success(v)) => Event::Result(v),
                Ok(Outcome::Failure(f)) => Event::Failure(f),
                Err(e) => Event::Malformed(e),
            },
            xmlrpc::Event::HttpStatus { status, reason, body } => Event::HttpStatus { status, reason, body },
            xmlrpc::Event::Malformed(e) => Event::Malformed(Error::Xml(e)),
            xmlrpc::Event::Http(e) => Event::Malformed(Error::Http(e)),
            xmlrpc::Event::ConnectionLost { received } => Event::ConnectionLost { received },
        })
    }
}

impl<S: Storage> Core<S> {
    /// How this session is ended: `session.local_logout` after a slave-local login.
    fn logout_method(&self) -> &'static str {
        if self.login_method.starts_with("session.slave_local") { "session.local_logout" } else { "session.logout" }
    }

    fn send_call(&self, rpc: &mut xmlrpc::Client<S>) -> Result<(), Error> {
        let (session, params) = (self.session.as_str(), self.call_params.as_slice());
        rpc.call(&self.call_method, |p| {
            p.string(session)?.raw(params)?;
            Ok(())
        })?;
        Ok(())
    }

    fn send_login(&self, rpc: &mut xmlrpc::Client<S>) -> Result<(), Error> {
        rpc.call(&self.login_method, |p| p.raw(self.login_params.as_slice()).map(|_| ()))?;
        Ok(())
    }

    /// Overwrites and drops the remembered credentials.
    fn forget_login(&mut self) {
        self.login_params.as_mut_slice().fill(0);
        self.login_params.truncate(0);
        self.login_method.clear();
    }

    /// The outstanding request will get no answer.
    fn abandon(&mut self) {
        self.state = match (self.pending, self.state) {
            (Pending::Login, _) => {
                self.forget_login();
                State::LoggedOut
            }
            (Pending::Logout, _) => {
                self.forget_login();
                self.session.clear();
                State::LoggedOut
            }
            (_, state) => state,
        };
        self.pending = Pending::None;
    }
}

impl<S: Storage> Drop for Session<S> {
    fn drop(&mut self) {
        self.core.forget_login();
    }
}

impl<S: Storage> Machine for Session<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = http::Error;
    type Request = ();

    crate::delegate_bytes!(rpc, http::Error);

    fn close(&mut self) {
        Session::close(self);
    }

    /// Closes and abandons the call, login or logout; the session is kept.
    fn expire(&mut self, _call: &()) {
        self.close();
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, http::Error> {
        let Some(step) = self.rpc.step() else { return Ok(None) };
        let shape = match &step {
            Step::Response(shape) => Some(*shape),
            _ => None,
        };
        let seen = self.see(shape);
        let pending = core::mem::replace(&mut self.core.pending, Pending::None);
        let core = &mut self.core;
        match (pending, seen) {
            (_, Seen::NotAResult(e)) => {
                core.pending = pending;
                core.abandon();
                Ok(Some(Event::Malformed(e)))
            }
            (Pending::Login, Seen::Success) => {
                core.state = State::LoggedIn;
                Ok(Some(Event::LoggedIn { session: self.core.session.as_str() }))
            }
            (Pending::Login, _) => {
                core.forget_login();
                core.state = State::LoggedOut;
                Ok(self.answer(step))
            }
            (Pending::Call, Seen::SessionInvalid) if !core.login_method.is_empty() => {
                core.tries = core.tries.saturating_add(1);
                match core.send_login(&mut self.rpc) {
                    Ok(()) => {
                        core.pending = Pending::Relogin;
                        Ok(None)
                    }
                    // The retry cannot be queued: the call fails as xapi answered it.
                    Err(_) => Ok(self.answer(step)),
                }
            }
            (Pending::Relogin, Seen::Success) => {
                if core.tries >= core.config.tries {
                    return Ok(Some(Event::SessionInvalid { tries: core.tries }));
                }
                if core.send_call(&mut self.rpc).is_err() {
                    return Ok(Some(Event::SessionInvalid { tries: core.tries }));
                }
                core.pending = Pending::Call;
                let attempt = core.tries;
                Ok(Some(Event::Relogin { attempt, session: self.core.session.as_str() }))
            }
            (Pending::Relogin, Seen::SessionInvalid | Seen::Other) => {
                // The credentials no longer work: xapi's answer to the
                // login is the call's answer.
                if shape.is_some() {
                    core.forget_login();
                    core.state = State::LoggedOut;
                }
                Ok(self.answer(step))
            }
            (Pending::Logout, seen) => {
                core.forget_login();
                core.session.clear();
                core.state = State::LoggedOut;
                match seen {
                    Seen::Success => Ok(Some(Event::LoggedOut)),
                    _ => Ok(self.answer(step)),
                }
            }
            _ => Ok(self.answer(step)),
        }
    }
}

/// Waits for the end of the session's outstanding call, login or logout
/// (every event but [`Event::Relogin`], which goes to the inbox: the call
/// goes on), and makes `answer` of it.
#[derive(Debug)]
pub struct Exchange<F> {
    answer: crate::op::Finish<F>,
}

impl<F> Exchange<F> {
    /// The operation for what was just queued on the [`Session`].
    pub fn new(answer: F) -> Self {
        Exchange { answer: crate::op::Finish::new(answer) }
    }
}

impl<S: Storage, T, F: for<'a> FnOnce(Event<'a>) -> T> crate::op::Operation<Session<S>> for Exchange<F> {
    type Output = T;

    fn offer<'a>(&mut self, event: Event<'a>) -> crate::op::Offer<Event<'a>, T>
    where
        S: 'a,
    {
        match event {
            Event::Relogin { .. } => crate::op::Offer::Pass(event),
            event => self.answer.with(event),
        }
    }

    /// One request at a time: the one outstanding.
    fn request(&self) -> Option<&()> {
        Some(&())
    }
}
