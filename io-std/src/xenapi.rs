//! A blocking XenAPI session (xapi: XenServer, XCP-ng), over HTTP, HTTPS or
//! xapi's local UNIX socket.
//!
//! ```no_run
//! use vmwire_std::xenapi::Session;
//!
//! let mut xapi = Session::connect("https://xenserver.example")?;
//! xapi.login_with_password("root", "secret", "1.0", "my-tool")?;
//! for vm in xapi.vm().get_all()? {
//!     let record = xapi.vm().get_record(&vm)?;
//!     println!("{} {} {:?}", vm, record.name_label, record.power_state);
//! }
//! let records: serde_json::Value = xapi.call_json("VM.get_all_records", ())?;
//! xapi.logout()?;
//! # Ok::<(), vmwire_std::xenapi::Error>(())
//! ```
//!
//! A XenAPI failure is [`Error::Failure`] (its code and params); when xapi
//! says `SESSION_INVALID` the session logs in again with the credentials it
//! was given and retries (three tries in all, as the Python SDK), and counts
//! it ([`Session::relogins`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vmwire_proto::buf::Heap;
use vmwire_proto::http as proto_http;
use vmwire_proto::xenapi::{self as proto, Config, Event};
use vmwire_proto::xmlrpc::{self, Value, de, ser};

use crate::http::{Link, OpenError, TlsOptions, Url, UrlError};
use crate::transport::DriveError;
use crate::xmlrpc::{Fault, to_json};

/// xapi's local socket, as the Python SDK's `xapi_local()` uses.
pub const XAPI_LOCAL: &str = "/var/lib/xcp/xapi";

/// Settings for a [`Session`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Time limit for connecting and for each call (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// How HTTPS certificates are checked (xapi's own certificate is
    /// self-signed: trust it, or turn verification off knowingly).
    pub tls: TlsOptions,
    /// Fields sent with every request, such as `originator` or `traceparent`.
    pub headers: Vec<(String, String)>,
    /// Limits, the number of tries on `SESSION_INVALID`, writer options.
    pub config: Config,
}

impl Options {
    /// The defaults with a 60-second time limit.
    pub fn new() -> Self {
        Options { timeout: Some(Duration::from_secs(60)), ..Options::default() }
    }
}

/// A XenAPI failure: the error code and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The code, such as `VM_BAD_POWER_STATE`.
    pub code: String,
    /// Its parameters.
    pub params: Vec<String>,
}

impl From<proto::Failure<'_>> for Failure {
    fn from(f: proto::Failure<'_>) -> Self {
        let text = |v: Value<'_>| v.as_str().map(|s| s.to_string()).unwrap_or_else(|| to_json(v).to_string());
        Failure { code: f.code().to_string(), params: f.params().map(text).collect() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.params.is_empty() {
            write!(f, ": {}", self.params.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Everything that can go wrong, xapi's own failures kept apart.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// xapi answered with a failure (`ErrorDescription`).
    Failure(Failure),
    /// Every try met `SESSION_INVALID`, re-login notwithstanding.
    SessionInvalid {
        /// How many tries were made.
        tries: u8,
    },
    /// An XML-RPC fault instead of a XenAPI result.
    Fault(Fault),
    /// An HTTP status other than 200.
    HttpStatus {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The socket failed.
    Io(io::Error),
    /// No answer within the time limit.
    Timeout,
    /// xapi closed the connection before answering.
    Closed,
    /// The answer could not be read (or the session was used wrongly).
    Protocol(proto::Error),
    /// The params could not be encoded.
    Encode(xmlrpc::WriteError),
    /// The result did not decode into the type asked for.
    Decode(de::Error),
    /// The URL is not usable.
    Url(UrlError),
    /// A task did not finish within the time allowed.
    TaskTimeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failure(e) => write!(f, "XenAPI failure: {e}"),
            Error::SessionInvalid { tries } => write!(f, "XenAPI: tried {tries} times to get a valid session"),
            Error::Fault(e) => e.fmt(f),
            Error::HttpStatus { status, reason } => write!(f, "XenAPI: HTTP {status} {reason}"),
            Error::Io(e) => write!(f, "XenAPI I/O error: {e}"),
            Error::Timeout => f.write_str("XenAPI: timed out"),
            Error::Closed => f.write_str("XenAPI: connection closed before the response"),
            Error::Protocol(e) => e.fmt(f),
            Error::Encode(e) => e.fmt(f),
            Error::Decode(e) => e.fmt(f),
            Error::Url(e) => e.fmt(f),
            Error::TaskTimeout => f.write_str("XenAPI: the task did not finish in time"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Failure(e) => Some(e),
            Error::Fault(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
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
            OpenError::Machine(e) => Error::Protocol(proto::Error::Http(e)),
            OpenError::Io(e) => Error::Io(e),
        }
    }
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        match e {
            proto::Error::Send(xmlrpc::SendError::Write(e)) => Error::Encode(e),
            e => Error::Protocol(e),
        }
    }
}

crate::transport::client_error!(Error, proto_http::Error, |e| Error::Protocol(proto::Error::Http(e)));

/// A XenAPI object reference (`OpaqueRef:…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ref(pub String);

impl Ref {
    /// xapi's null reference.
    pub const NULL: &'static str = "OpaqueRef:NULL";

    /// The reference text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `OpaqueRef:NULL`.
    pub fn is_null(&self) -> bool {
        self.0 == Self::NULL
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Ref {
    fn from(s: &str) -> Self {
        Ref(s.to_string())
    }
}

/// What happened on its own during calls: kept (the last 64) for whoever asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// xapi said `SESSION_INVALID`; the session logged in again and retried.
    Relogin {
        /// The try that failed.
        attempt: u8,
        /// The new session reference.
        session: String,
    },
}

/// A blocking XenAPI session. See the [module documentation](self).
#[derive(Debug)]
pub struct Session {
    link: Link<proto::Session<Heap>>,
    url: Url,
    relogins: u64,
    events: Vec<SessionEvent>,
}

/// What one exchange ended with, owned: see [`answer`].
#[derive(Debug)]
pub enum Answer<T> {
    /// A call's result, as read.
    Value(T),
    /// A login's session reference.
    LoggedIn(String),
    /// A logout went through.
    LoggedOut,
}

impl<T> Answer<T> {
    /// The session reference of a login.
    pub fn logged_in(self) -> Result<String, Error> {
        match self {
            Answer::LoggedIn(session) => Ok(session),
            _ => Err(Error::Protocol(proto::Error::NotAResult { what: "a login answered with a value" })),
        }
    }

    /// A logout's end.
    pub fn logged_out(self) -> Result<(), Error> {
        match self {
            Answer::LoggedOut => Ok(()),
            _ => Err(Error::Protocol(proto::Error::NotAResult { what: "a logout answered with a value" })),
        }
    }

    /// A call's result.
    pub fn value(self) -> Result<T, Error> {
        match self {
            Answer::Value(t) => Ok(t),
            _ => Err(Error::Protocol(proto::Error::NotAResult { what: "a call answered as a login" })),
        }
    }
}

/// What the event that ends an exchange ([`proto::Exchange`]) comes to: a
/// call's value handed to `read`, a login or logout, or the error. Shared
/// with vmwire-smol's session.
pub fn answer<T>(event: Event<'_>, read: impl FnOnce(Value<'_>) -> Result<T, Error>) -> Result<Answer<T>, Error> {
    match event {
        Event::LoggedIn { session } => Ok(Answer::LoggedIn(session.to_string())),
        Event::LoggedOut => Ok(Answer::LoggedOut),
        Event::Result(v) => read(v).map(Answer::Value),
        event => Err(event_error(event)),
    }
}

/// What a finished task ([`proto::WaitTask`]) comes to: `task.get_result`
/// decoded into `R`, or the failure from `task.get_error_info`. Shared with
/// vmwire-smol's session.
pub fn task_ended<R: DeserializeOwned>(ended: proto::TaskEnded<'_>) -> Result<R, Error> {
    match ended {
        proto::TaskEnded::Success(v) => {
            let text: String = v.deserialize().map_err(Error::Decode)?;
            proto::task_result(&text)
                .map_err(|e| Error::Protocol(proto::Error::Xml(e)))
                .and_then(|v| v.deserialize::<R>().map_err(Error::Decode))
        }
        proto::TaskEnded::Failure(v) => {
            let info: Vec<String> = v.deserialize().map_err(Error::Decode)?;
            let mut info = info.into_iter();
            let code = info.next().unwrap_or_else(|| "TASK_CANCELLED".into());
            Err(Error::Failure(Failure { code, params: info.collect() }))
        }
        proto::TaskEnded::UnknownStatus => {
            Err(Error::Protocol(proto::Error::NotAResult { what: "an unknown task status" }))
        }
        proto::TaskEnded::NotQueued { error, .. } => Err(Error::Protocol(error)),
        proto::TaskEnded::Failed { event, .. } => Err(event_error(event)),
    }
}

/// A task wait's result: what [`task_ended`] made of the task, or the
/// driving error, a time-out that leaves no room for another poll being
/// [`Error::TaskTimeout`]. Shared with vmwire-smol's session.
pub fn task_waited<R>(
    waited: Result<Result<R, Error>, DriveError<proto_http::Error>>,
    deadline: Option<Instant>,
    interval: Duration,
) -> Result<R, Error> {
    match waited {
        Ok(outcome) => outcome,
        Err(DriveError::Timeout) if deadline.is_some_and(|d| Instant::now() + interval > d) => Err(Error::TaskTimeout),
        Err(e) => Err(e.into()),
    }
}

impl Session {
    /// Connects to `url` ([`Url`]: `https://host`, `http://host:port`,
    /// `unix:/var/lib/xcp/xapi`) with [`Options::new`].
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, Options::new())
    }

    /// Connects to `url` with `options`.
    pub fn connect_with(url: &str, options: Options) -> Result<Self, Error> {
        let (link, url) = Link::connect(url, &options.headers, &options.tls, options.timeout, |endpoint| {
            proto::Session::new(options.config, endpoint)
        })?;
        Ok(Session { link, url, relogins: 0, events: Vec::new() })
    }

    /// Connects to xapi's local socket ([`XAPI_LOCAL`]), as the SDK's `xapi_local()`.
    pub fn xapi_local() -> Result<Self, Error> {
        Self::connect(&format!("unix:{XAPI_LOCAL}"))
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The session reference, while logged in.
    pub fn session(&mut self) -> Option<String> {
        self.link.machine().session().map(str::to_string)
    }

    /// The call that ends the session, while logged in: its method and the
    /// session, its one param (see the machine's `logout_call`): for a
    /// signal's thread that logs out on a connection of its own.
    pub fn logout_call(&mut self) -> Option<(&'static str, String)> {
        self.link.machine().logout_call().map(|(method, session)| (method, session.to_string()))
    }

    /// How many times the session logged in again after `SESSION_INVALID`.
    pub fn relogins(&self) -> u64 {
        self.relogins
    }

    /// What happened on its own since the last call of this.
    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    /// `session.login_with_password`: returns the session reference.
    pub fn login_with_password(
        &mut self,
        user: &str,
        password: &str,
        version: &str,
        originator: &str,
    ) -> Result<String, Error> {
        self.link.machine().login_with_password(user, password, version, originator)?;
        self.finish_login()
    }

    /// `session.slave_local_login_with_password`: returns the session reference.
    pub fn slave_local_login_with_password(&mut self, user: &str, password: &str) -> Result<String, Error> {
        self.link.machine().slave_local_login_with_password(user, password)?;
        self.finish_login()
    }

    fn finish_login(&mut self) -> Result<String, Error> {
        self.exchange(|_| Ok(()))?.logged_in()
    }

    /// `session.logout` (`session.local_logout` after a slave-local login).
    pub fn logout(&mut self) -> Result<(), Error> {
        self.link.machine().logout()?;
        self.exchange(|_| Ok(()))?.logged_out()
    }

    /// Calls `method` (such as `VM.get_record`) with the session and then
    /// `params` (a tuple: one param each; `()`: none), and decodes the
    /// `Value` into `R`.
    pub fn call<P: Serialize, R: DeserializeOwned>(&mut self, method: &str, params: P) -> Result<R, Error> {
        self.call_with(method, params, |v| v.deserialize::<R>().map_err(Error::Decode))
    }

    /// Calls `method` and hands the `Value`, borrowed where it lies in the
    /// response, to `read`.
    pub fn call_with<P: Serialize, T>(
        &mut self,
        method: &str,
        params: P,
        read: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.link.machine().call(method, |p| ser::to_params(p, &params))?;
        self.exchange(read)?.value()
    }

    /// Calls `method` and returns the `Value` as JSON (see [`to_json`]).
    pub fn call_json<P: Serialize>(&mut self, method: &str, params: P) -> Result<serde_json::Value, Error> {
        self.call_with(method, params, |v| Ok(to_json(v)))
    }

    /// Calls `Async.<method>`: returns the task's reference.
    pub fn call_async<P: Serialize>(&mut self, method: &str, params: P) -> Result<Ref, Error> {
        self.call(&format!("Async.{method}"), params)
    }

    /// Polls `task.get_status` every `interval` until the task finishes
    /// (within `timeout`), then returns `task.get_result` decoded into `R`,
    /// or the failure from `task.get_error_info`. The task is destroyed
    /// afterwards.
    pub fn wait_task<R: DeserializeOwned>(
        &mut self,
        task: &Ref,
        interval: Duration,
        timeout: Option<Duration>,
    ) -> Result<R, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut wait = proto::WaitTask::new(self.link.machine(), &task.0, interval, task_ended::<R>)?;
        let mut relogin = relogin_inbox(&mut self.relogins, &mut self.events);
        task_waited(self.link.run_within(&mut wait, &mut relogin, deadline), deadline, interval)
    }

    /// `VM.*` calls.
    pub fn vm(&mut self) -> Vm<'_> {
        Vm(self)
    }

    /// `VM_metrics.*` calls.
    pub fn vm_metrics(&mut self) -> VmMetrics<'_> {
        VmMetrics(self)
    }

    /// Drives the machine to the end of the outstanding operation.
    fn exchange<T>(&mut self, read: impl FnOnce(Value<'_>) -> Result<T, Error>) -> Result<Answer<T>, Error> {
        let mut relogin = relogin_inbox(&mut self.relogins, &mut self.events);
        let mut exchange = proto::Exchange::new(|event: Event<'_>| answer(event, read));
        self.link.run(&mut exchange, &mut relogin).map_err(Error::from)?
    }
}

/// The inbox of a session's operations: re-logins, counted into `relogins`
/// and kept in `events` (the last 64). Shared with vmwire-smol's session.
pub fn relogin_inbox<'s>(relogins: &'s mut u64, events: &'s mut Vec<SessionEvent>) -> impl FnMut(Event<'_>) + 's {
    move |event: Event<'_>| {
        if let Event::Relogin { attempt, session } = event {
            *relogins += 1;
            if events.len() >= 64 {
                events.remove(0);
            }
            events.push(SessionEvent::Relogin { attempt, session: session.to_string() });
        }
    }
}

/// The error of an event that is not the answer waited for.
fn event_error(event: Event<'_>) -> Error {
    match event {
        Event::Failure(f) => Error::Failure(f.into()),
        Event::SessionInvalid { tries } => Error::SessionInvalid { tries },
        Event::Fault(f) => Error::Fault(f.into()),
        Event::HttpStatus { status, reason, .. } => Error::HttpStatus { status, reason: reason.to_string() },
        Event::Malformed(e) => Error::Protocol(e),
        Event::ConnectionLost { .. } => Error::Closed,
        Event::LoggedIn { .. } | Event::LoggedOut | Event::Result(_) => {
            Error::Protocol(proto::Error::NotAResult { what: "an answer of another kind" })
        }
        // Passed to the inbox by the operations: never here.
        Event::Relogin { .. } => Error::Closed,
    }
}

/// A VM's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    /// Stopped.
    Halted,
    /// Paused.
    Paused,
    /// Running.
    Running,
    /// Suspended to disk.
    Suspended,
}

/// The commonly used fields of a VM record (`VM.get_record`); ask for your
/// own type with [`Session::call`] for more.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmRecord {
    /// The VM's UUID.
    pub uuid: String,
    /// Its name.
    pub name_label: String,
    /// Its description.
    pub name_description: String,
    /// Its power state.
    pub power_state: Option<PowerState>,
    /// Whether it is a template.
    pub is_a_template: bool,
    /// Whether it is a control domain (dom0).
    pub is_control_domain: bool,
    /// Static memory maximum, bytes.
    pub memory_static_max: i64,
    /// Dynamic memory minimum, bytes.
    pub memory_dynamic_min: i64,
    /// Most virtual CPUs.
    #[serde(rename = "VCPUs_max")]
    pub vcpus_max: i64,
    /// Virtual CPUs at start.
    #[serde(rename = "VCPUs_at_startup")]
    pub vcpus_at_startup: i64,
    /// The host it runs on (`OpaqueRef:NULL` if none).
    pub resident_on: Option<Ref>,
    /// Its metrics object.
    pub metrics: Option<Ref>,
    /// Free-form settings.
    pub other_config: HashMap<String, String>,
    /// Its network interfaces.
    #[serde(rename = "VIFs")]
    pub vifs: Vec<Ref>,
    /// Its block devices.
    #[serde(rename = "VBDs")]
    pub vbds: Vec<Ref>,
    /// Tags.
    pub tags: Vec<String>,
}

/// `VM.*` calls on a [`Session`].
#[derive(Debug)]
pub struct Vm<'s>(&'s mut Session);

impl Vm<'_> {
    /// `VM.get_all`.
    pub fn get_all(&mut self) -> Result<Vec<Ref>, Error> {
        self.0.call("VM.get_all", ())
    }

    /// `VM.get_all_records`.
    pub fn get_all_records(&mut self) -> Result<HashMap<Ref, VmRecord>, Error> {
        self.0.call("VM.get_all_records", ())
    }

    /// `VM.get_record`.
    pub fn get_record(&mut self, vm: &Ref) -> Result<VmRecord, Error> {
        self.0.call("VM.get_record", (vm,))
    }

    /// `VM.get_by_name_label`.
    pub fn get_by_name_label(&mut self, label: &str) -> Result<Vec<Ref>, Error> {
        self.0.call("VM.get_by_name_label", (label,))
    }

    /// `VM.get_name_label`.
    pub fn get_name_label(&mut self, vm: &Ref) -> Result<String, Error> {
        self.0.call("VM.get_name_label", (vm,))
    }

    /// `VM.get_power_state`.
    pub fn get_power_state(&mut self, vm: &Ref) -> Result<PowerState, Error> {
        self.0.call("VM.get_power_state", (vm,))
    }

    /// `VM.get_metrics`.
    pub fn get_metrics(&mut self, vm: &Ref) -> Result<Ref, Error> {
        self.0.call("VM.get_metrics", (vm,))
    }

    /// `VM.start(vm, start_paused, force)`.
    pub fn start(&mut self, vm: &Ref, start_paused: bool, force: bool) -> Result<(), Error> {
        self.0.call("VM.start", (vm, start_paused, force))
    }

    /// `VM.pause`.
    pub fn pause(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.pause", (vm,))
    }

    /// `VM.unpause`.
    pub fn unpause(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.unpause", (vm,))
    }

    /// `VM.clean_shutdown`.
    pub fn clean_shutdown(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.clean_shutdown", (vm,))
    }

    /// `VM.hard_shutdown`.
    pub fn hard_shutdown(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.hard_shutdown", (vm,))
    }

    /// `VM.clean_reboot`.
    pub fn clean_reboot(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.clean_reboot", (vm,))
    }

    /// `Async.VM.start`: the task's reference (see [`Session::wait_task`]).
    pub fn start_async(&mut self, vm: &Ref, start_paused: bool, force: bool) -> Result<Ref, Error> {
        self.0.call_async("VM.start", (vm, start_paused, force))
    }
}

/// `VM_metrics.*` calls on a [`Session`].
#[derive(Debug)]
pub struct VmMetrics<'s>(&'s mut Session);

impl VmMetrics<'_> {
    /// `VM_metrics.get_memory_actual`: bytes.
    pub fn get_memory_actual(&mut self, metrics: &Ref) -> Result<i64, Error> {
        self.0.call("VM_metrics.get_memory_actual", (metrics,))
    }

    /// `VM_metrics.get_VCPUs_number`.
    pub fn get_vcpus_number(&mut self, metrics: &Ref) -> Result<i64, Error> {
        self.0.call("VM_metrics.get_VCPUs_number", (metrics,))
    }

    /// `VM_metrics.get_VCPUs_utilisation`: per virtual CPU, 0.0 to 1.0.
    pub fn get_vcpus_utilisation(&mut self, metrics: &Ref) -> Result<HashMap<i64, f64>, Error> {
        self.0.call("VM_metrics.get_VCPUs_utilisation", (metrics,))
    }
}

/// A XenAPI result, for servers that play xapi (mocks in tests): encodes as
/// `{"Status": "Success", "Value": …}` or `{"Status": "Failure",
/// "ErrorDescription": […]}`.
///
/// ```
/// use vmwire_std::xenapi::XenResult;
/// use vmwire_std::xmlrpc::{Fault, Server};
/// let mut server = Server::bind("127.0.0.1:0")?;
/// server.method("VM.get_all", |(_session,): (String,)| Ok::<_, Fault>(XenResult::Success(vec!["OpaqueRef:1"])));
/// server.method("VM.start", |(_s, vm, _, _): (String, String, bool, bool)| {
///     Ok::<_, Fault>(XenResult::<()>::failure("VM_BAD_POWER_STATE", [vm.as_str(), "halted", "running"]))
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum XenResult<T> {
    /// The method's value.
    Success(T),
    /// The error code and its parameters.
    Failure(Vec<String>),
}

impl<T> XenResult<T> {
    /// A failure with `code` and `params`.
    pub fn failure<'a>(code: &'a str, params: impl IntoIterator<Item = &'a str>) -> Self {
        XenResult::Failure(std::iter::once(code).chain(params).map(str::to_string).collect())
    }
}

impl<T: Serialize> Serialize for XenResult<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("XenResult", 2)?;
        match self {
            XenResult::Success(v) => {
                s.serialize_field("Status", "Success")?;
                s.serialize_field("Value", v)?;
            }
            XenResult::Failure(description) => {
                s.serialize_field("Status", "Failure")?;
                s.serialize_field("ErrorDescription", description)?;
            }
        }
        s.end()
    }
}
