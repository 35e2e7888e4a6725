//! An async XenAPI session (xapi: XenServer, XCP-ng), over HTTP, HTTPS or
//! xapi's local UNIX socket: the twin of `vmwire_std::xenapi::Session`,
//! with its options, errors, records and names.
//!
//! ```no_run
//! use vmwire_smol::xenapi::Session;
//!
//! # smol::block_on(async {
//! let mut xapi = Session::connect("https://xenserver.example").await?;
//! xapi.login_with_password("root", "secret", "1.0", "my-tool").await?;
//! for vm in xapi.vm().get_all().await? {
//!     let record = xapi.vm().get_record(&vm).await?;
//!     println!("{} {} {:?}", vm, record.name_label, record.power_state);
//! }
//! xapi.logout().await?;
//! # Ok::<(), vmwire_smol::xenapi::Error>(())
//! # });
//! ```
//!
//! A XenAPI failure is [`Error::Failure`]; when xapi says `SESSION_INVALID`
//! the session logs in again with the credentials it was given and retries
//! (three tries in all, as the Python SDK), and counts it
//! ([`Session::relogins`]). A call or a task wait whose future is dropped
//! before the end abandons its connection; the session is kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::Heap;
use vmwire_proto::xenapi::{self as proto, Event};
use vmwire_proto::xmlrpc::{Value, ser};
use vmwire_std::xenapi::{Answer, answer, relogin_inbox, task_ended, task_waited};
pub use vmwire_std::xenapi::{Error, Failure, Options, PowerState, Ref, SessionEvent, VmRecord, XAPI_LOCAL, XenResult};
use vmwire_std::xmlrpc::to_json;

use crate::http::{Link, Url};

/// An async XenAPI session. See the [module documentation](self).
#[derive(Debug)]
pub struct Session {
    link: Link<proto::Session<Heap>>,
    url: Url,
    relogins: u64,
    events: Vec<SessionEvent>,
}

impl Session {
    /// Connects to `url` ([`Url`]: `https://host`, `http://host:port`,
    /// `unix:/var/lib/xcp/xapi`) with [`Options::new`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, Options::new()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, Error> {
        let (link, url) = Link::connect(url, &options.headers, &options.tls, options.timeout, |endpoint| {
            proto::Session::new(options.config, endpoint)
        })
        .await?;
        Ok(Session { link, url, relogins: 0, events: Vec::new() })
    }

    /// Connects to xapi's local socket ([`XAPI_LOCAL`]), as the SDK's `xapi_local()`.
    pub async fn xapi_local() -> Result<Self, Error> {
        Self::connect(&format!("unix:{XAPI_LOCAL}")).await
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The session reference, while logged in.
    pub fn session(&mut self) -> Option<String> {
        self.link.machine().session().map(str::to_string)
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
    pub async fn login_with_password(
        &mut self,
        user: &str,
        password: &str,
        version: &str,
        originator: &str,
    ) -> Result<String, Error> {
        self.link.machine().login_with_password(user, password, version, originator)?;
        self.exchange(|_| Ok(())).await?.logged_in()
    }

    /// `session.slave_local_login_with_password`: returns the session reference.
    pub async fn slave_local_login_with_password(&mut self, user: &str, password: &str) -> Result<String, Error> {
        self.link.machine().slave_local_login_with_password(user, password)?;
        self.exchange(|_| Ok(())).await?.logged_in()
    }

    /// `session.logout` (`session.local_logout` after a slave-local login).
    pub async fn logout(&mut self) -> Result<(), Error> {
        self.link.machine().logout()?;
        self.exchange(|_| Ok(())).await?.logged_out()
    }

    /// Calls `method` (such as `VM.get_record`) with the session and then
    /// `params` (a tuple: one param each; `()`: none), and decodes the
    /// `Value` into `R`.
    pub async fn call<P: Serialize, R: DeserializeOwned>(&mut self, method: &str, params: P) -> Result<R, Error> {
        self.call_with(method, params, |v| v.deserialize::<R>().map_err(Error::Decode)).await
    }

    /// Calls `method` and hands the `Value`, borrowed where it lies in the
    /// response, to `read`.
    pub async fn call_with<P: Serialize, T>(
        &mut self,
        method: &str,
        params: P,
        read: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.link.machine().call(method, |p| ser::to_params(p, &params))?;
        self.exchange(read).await?.value()
    }

    /// Calls `method` and returns the `Value` as JSON (see [`to_json`]).
    pub async fn call_json<P: Serialize>(&mut self, method: &str, params: P) -> Result<serde_json::Value, Error> {
        self.call_with(method, params, |v| Ok(to_json(v))).await
    }

    /// Calls `Async.<method>`: returns the task's reference.
    pub async fn call_async<P: Serialize>(&mut self, method: &str, params: P) -> Result<Ref, Error> {
        self.call(&format!("Async.{method}"), params).await
    }

    /// Polls `task.get_status` every `interval` (on an async timer) until
    /// the task finishes (within `timeout`), then returns `task.get_result`
    /// decoded into `R`, or the failure from `task.get_error_info`. The task
    /// is destroyed afterwards.
    pub async fn wait_task<R: DeserializeOwned>(
        &mut self,
        task: &Ref,
        interval: Duration,
        timeout: Option<Duration>,
    ) -> Result<R, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut wait = proto::WaitTask::new(self.link.machine(), &task.0, interval, task_ended::<R>)?;
        let mut relogin = relogin_inbox(&mut self.relogins, &mut self.events);
        task_waited(self.link.run(&mut wait, &mut relogin, deadline).await, deadline, interval)
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
    async fn exchange<T>(&mut self, read: impl FnOnce(Value<'_>) -> Result<T, Error>) -> Result<Answer<T>, Error> {
        let mut relogin = relogin_inbox(&mut self.relogins, &mut self.events);
        let mut exchange = proto::Exchange::new(|event: Event<'_>| answer(event, read));
        self.link.run(&mut exchange, &mut relogin, None).await.map_err(Error::from)?
    }
}

/// `VM.*` calls on a [`Session`].
#[derive(Debug)]
pub struct Vm<'s>(&'s mut Session);

impl Vm<'_> {
    /// `VM.get_all`.
    pub async fn get_all(&mut self) -> Result<Vec<Ref>, Error> {
        self.0.call("VM.get_all", ()).await
    }

    /// `VM.get_all_records`.
    pub async fn get_all_records(&mut self) -> Result<HashMap<Ref, VmRecord>, Error> {
        self.0.call("VM.get_all_records", ()).await
    }

    /// `VM.get_record`.
    pub async fn get_record(&mut self, vm: &Ref) -> Result<VmRecord, Error> {
        self.0.call("VM.get_record", (vm,)).await
    }

    /// `VM.get_by_name_label`.
    pub async fn get_by_name_label(&mut self, label: &str) -> Result<Vec<Ref>, Error> {
        self.0.call("VM.get_by_name_label", (label,)).await
    }

    /// `VM.get_name_label`.
    pub async fn get_name_label(&mut self, vm: &Ref) -> Result<String, Error> {
        self.0.call("VM.get_name_label", (vm,)).await
    }

    /// `VM.get_power_state`.
    pub async fn get_power_state(&mut self, vm: &Ref) -> Result<PowerState, Error> {
        self.0.call("VM.get_power_state", (vm,)).await
    }

    /// `VM.get_metrics`.
    pub async fn get_metrics(&mut self, vm: &Ref) -> Result<Ref, Error> {
        self.0.call("VM.get_metrics", (vm,)).await
    }

    /// `VM.start(vm, start_paused, force)`.
    pub async fn start(&mut self, vm: &Ref, start_paused: bool, force: bool) -> Result<(), Error> {
        self.0.call("VM.start", (vm, start_paused, force)).await
    }

    /// `VM.pause`.
    pub async fn pause(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.pause", (vm,)).await
    }

    /// `VM.unpause`.
    pub async fn unpause(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.unpause", (vm,)).await
    }

    /// `VM.clean_shutdown`.
    pub async fn clean_shutdown(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.clean_shutdown", (vm,)).await
    }

    /// `VM.hard_shutdown`.
    pub async fn hard_shutdown(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.hard_shutdown", (vm,)).await
    }

    /// `VM.clean_reboot`.
    pub async fn clean_reboot(&mut self, vm: &Ref) -> Result<(), Error> {
        self.0.call("VM.clean_reboot", (vm,)).await
    }

    /// `Async.VM.start`: the task's reference (see [`Session::wait_task`]).
    pub async fn start_async(&mut self, vm: &Ref, start_paused: bool, force: bool) -> Result<Ref, Error> {
        self.0.call_async("VM.start", (vm, start_paused, force)).await
    }
}

/// `VM_metrics.*` calls on a [`Session`].
#[derive(Debug)]
pub struct VmMetrics<'s>(&'s mut Session);

impl VmMetrics<'_> {
    /// `VM_metrics.get_memory_actual`: bytes.
    pub async fn get_memory_actual(&mut self, metrics: &Ref) -> Result<i64, Error> {
        self.0.call("VM_metrics.get_memory_actual", (metrics,)).await
    }

    /// `VM_metrics.get_VCPUs_number`.
    pub async fn get_vcpus_number(&mut self, metrics: &Ref) -> Result<i64, Error> {
        self.0.call("VM_metrics.get_VCPUs_number", (metrics,)).await
    }

    /// `VM_metrics.get_VCPUs_utilisation`: per virtual CPU, 0.0 to 1.0.
    pub async fn get_vcpus_utilisation(&mut self, metrics: &Ref) -> Result<HashMap<i64, f64>, Error> {
        self.0.call("VM_metrics.get_VCPUs_utilisation", (metrics,)).await
    }
}
