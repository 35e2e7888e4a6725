//! Async negotiator: the host and the guest sides of the channel, the
//! twins of `vmwire_std::negotiator`'s, with the same options, errors and
//! operations (`negotiator::Response` for a call, [`Serving`] for a
//! responder's session).
//!
//! ```no_run
//! use vmwire_smol::negotiator::{Commands, GuestAgent, GuestChannel, Job, Answer, GUEST_TO_HOST_CHANNEL};
//!
//! # async fn example() -> Result<(), vmwire_smol::negotiator::Error> {
//! // Host: call into a guest.
//! let mut guest = GuestChannel::connect("/var/lib/libvirt/qemu/channel/target/vm1.negotiator-host-to-guest.0").await?;
//! println!("{:?}", guest.list_commands().await?);
//! let output = guest.execute("reconfigure-network", &["eth0"], Some("address=10.0.0.2\n")).await?;
//!
//! // Guest: call the host, or answer it (with the commands, or with a handler of its own).
//! let mut host = GuestAgent::open_channel(GUEST_TO_HOST_CHANNEL, Default::default()).await?;
//! let addresses = host.execute("find-ip-addresses", &[], None).await?;
//! GuestAgent::open("/dev/vport0p1").await?.serve(&Commands::default()).await?;
//! GuestAgent::open("/dev/vport0p2").await?.serve_with(&mut async |job: Job| match job {
//!     Job::List => Answer::Commands(vec!["hello".into()]),
//!     _ => Answer::Failed("not here".into()),
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! A responder serves one session with [`serve_session`]: an async daemon
//! is a loop that accepts a connection and serves it, in a task of its own.
//! A session's caller must be the one its response reaches: the stream is
//! asked whether the other end is still there ([`Peer`]), and a response
//! whose caller left is dropped, as the std responder does.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, future};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::negotiator::{Caller, Responder, ResponderEvent};
use vmwire_proto::op::{self, Idle};
use vmwire_std::negotiator::{Call, HostWait, Unasked, call_ended, host_left};

use crate::conn::{Conn, DriveError, RECHECK_HUNG_UP, Stream, deadline};

pub use vmwire_std::negotiator::{
    Answer, CommandError, Commands, Config, DEFAULT_TIMEOUT, Error, GUEST_TO_HOST_CHANNEL, HOST_TO_GUEST_CHANNEL, Job,
    Options, Serving, Turn, USER_COMMANDS_DIRECTORY,
};

/// What the negotiator asks of a stream besides its bytes: whether the
/// other end is there. A response must reach only the caller that asked
/// for it, and the host of a virtio-serial port comes and goes.
///
/// [`Stream`] and async-io's sockets tell. A stream of another runtime
/// can implement it on a wrapper with the defaults: its other end then
/// never looks gone.
pub trait Peer {
    /// Whether the other end has gone (a socket whose peer closed) or is
    /// not connected (a virtio-serial port without its host) now.
    fn hung_up(&self) -> bool {
        false
    }

    /// Wakes when the other end may have hung up, or there is something
    /// to read: a moment to ask [`Peer::hung_up`] again. A stream that
    /// cannot tell never wakes.
    fn poll_hang_up(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Pending
    }

    /// Whether the other end comes and goes over the stream's life (a
    /// virtio-serial port: its host connects and leaves), so that its
    /// leaving ends a session, not the stream.
    fn comes_and_goes(&self) -> bool {
        false
    }
}

/// Whether `fd` polls hung up now (an error is taken for no).
fn fd_hung_up(fd: BorrowedFd<'_>) -> bool {
    vmwire_std::transport::hung_up(fd).unwrap_or(false)
}

impl Peer for Stream {
    fn hung_up(&self) -> bool {
        fd_hung_up(match self {
            Stream::Unix(s) => s.get_ref().as_fd(),
            Stream::Tcp(s) => s.get_ref().as_fd(),
            Stream::Device(f) => f.get_ref().as_fd(),
        })
    }

    fn poll_hang_up(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A hang-up is reported as readiness to read.
        match self {
            Stream::Unix(s) => s.poll_readable(cx),
            Stream::Tcp(s) => s.poll_readable(cx),
            Stream::Device(f) => f.poll_readable(cx),
        }
    }

    /// A character device: the guest end of a virtio-serial port.
    fn comes_and_goes(&self) -> bool {
        matches!(self, Stream::Device(_))
    }
}

impl<T: AsFd> Peer for Async<T> {
    fn hung_up(&self) -> bool {
        fd_hung_up(self.get_ref().as_fd())
    }

    fn poll_hang_up(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_readable(cx)
    }
}

/// Opens `path`: a UNIX socket is connected to (within `timeout`),
/// anything else (a character device) opened read-write.
async fn open_path(path: &Path, timeout: Option<Duration>) -> io::Result<Stream> {
    let metadata = std::fs::metadata(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if metadata.file_type().is_socket() { Stream::connect_unix(path, timeout).await } else { Stream::open_device(path) }
}

/// The calling end of a channel: `call_remote_method`, one call at a time,
/// each with a time limit. A call's future dropped before its response
/// (cancelled) forgets the call: its late response is dropped, and the
/// channel is ready for the next one.
#[derive(Debug)]
pub struct Channel<S = Stream> {
    conn: Conn<S, Caller<Heap>>,
    label: String,
    options: Options,
}

impl Channel<Stream> {
    /// Connects to a UNIX socket (QEMU's end of a channel, on the host).
    pub async fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        let stream = Stream::connect_unix(path, options.timeout).await.map_err(Error::Io)?;
        Ok(Channel::new(stream, format!("UNIX socket {}", path.display()), options))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Peer> Channel<S> {
    /// A channel over `stream`; `label` names it in messages.
    pub fn new(stream: S, label: impl Into<String>, options: Options) -> Self {
        let machine = Caller::new(options.config);
        Channel { conn: Conn::new(stream, machine), label: label.into(), options }
    }

    /// What the channel is connected to.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sets the time limit for each call (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.options.timeout = timeout;
    }

    /// Calls `method` with `args` (anything that serialises to a JSON array,
    /// or `()` for none) and `kw` (to a JSON object, or `()`), and decodes
    /// its result into `T`.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        args: impl Serialize,
        kw: impl Serialize,
    ) -> Result<T, Error> {
        let call = Call::new(self.ready().await?, method, args, kw)?;
        self.response(call).await
    }

    /// Calls `method` with arguments given as JSON text (an array and an
    /// object) and returns the result's JSON text.
    pub async fn call_raw(&mut self, method: &str, args: &str, kw: &str) -> Result<String, Error> {
        let call = Call::raw(self.ready().await?, method, args, kw)?;
        self.response(call).await
    }

    /// The commands the other side offers.
    pub async fn list_commands(&mut self) -> Result<Vec<String>, Error> {
        let call = Call::list_commands(self.ready().await?)?;
        self.response(call).await
    }

    /// Runs `command` with `args` on the other side, `input` on its standard
    /// input, and returns its output (one line: trimmed, as the original does).
    pub async fn execute(&mut self, command: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
        let call = Call::execute(self.ready().await?, command, args, input)?;
        self.response(call).await
    }

    /// Closes the channel; later calls fail with [`Error::Closed`].
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// The machine, if the channel is still open, for a new call.
    async fn ready(&mut self) -> Result<&mut Caller<Heap>, Error> {
        self.drop_unasked().await?;
        vmwire_std::negotiator::still_open(self.conn.machine())?;
        Ok(self.conn.machine_mut())
    }

    /// Reads and drops what is there before a call is made: without request
    /// ids, nothing that came before a request can be its response. A
    /// hung-up stream is left alone: a virtio-serial port reads as ended
    /// while it has no host.
    async fn drop_unasked(&mut self) -> Result<(), Error> {
        if self.conn.at_eof() || self.conn.stream().hung_up() {
            return Ok(());
        }
        // No call in progress: every event is noted and dropped, until nothing more is there now.
        match self.conn.wait(&mut Idle, &mut Unasked(&self.label), Some(Instant::now())).await {
            Ok(never) => match never {},
            Err(DriveError::Timeout | DriveError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends the call, then waits for its response, within the time limit.
    /// Unlike [`Conn::run`], nothing is read while the request is unsent:
    /// a virtio-serial port without its host reads as ended, but the call
    /// waits for the host until its time is up.
    async fn response<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        let deadline = deadline(self.options.timeout);
        let mut response = call.response();
        let in_flight = InFlight(&mut self.conn);
        let outcome = match in_flight.0.flush(deadline).await {
            Ok(()) => in_flight.0.wait(&mut response, &mut Unasked(&self.label), deadline).await,
            Err(e) => Err(e),
        };
        // Looked at before the call is forgotten, which withdraws a request never sent.
        let unsent = !in_flight.0.machine().transmit().is_empty();
        let gone = in_flight.0.stream().hung_up();
        drop(in_flight);
        call_ended(outcome, unsent, || gone, &self.label, self.options.timeout)
    }

    /// Answers the other side's calls until it closes (a stream whose
    /// other end comes and goes: for ever, waiting for it).
    async fn serve(self, handler: &mut (impl Handler + ?Sized)) -> Result<(), Error> {
        let (stream, _) = self.conn.into_parts();
        serve_stream(stream, &self.label, handler, &self.options).await
    }
}

/// A call in flight: when it is dropped, the call is forgotten unless its
/// response came (a call cut short, its future dropped, its time up), so
/// that a late response is dropped, never taken for the next call's.
struct InFlight<'c, S: AsyncRead + AsyncWrite + Unpin>(&'c mut Conn<S, Caller<Heap>>);

impl<S: AsyncRead + AsyncWrite + Unpin> Drop for InFlight<'_, S> {
    fn drop(&mut self) {
        // Nothing happens if the call is over.
        self.0.machine_mut().forget();
    }
}

/// What answers a session's requests: a [`Job`] in, its [`Answer`] out.
///
/// [`RunCommands`] runs [`Commands`]; an `async` closure that takes a
/// `Job` and returns an `Answer` is a handler too.
pub trait Handler {
    /// Does what `job` asks. A [`Job::Refused`] is answered with
    /// [`Answer::Failed`] and its message.
    fn answer(&mut self, job: Job) -> impl Future<Output = Answer>;
}

impl<F: AsyncFnMut(Job) -> Answer> Handler for F {
    fn answer(&mut self, job: Job) -> impl Future<Output = Answer> {
        self(job)
    }
}

/// The [`Handler`] that offers [`Commands`], as the std responder does.
/// Each job runs on a thread of its own (a command's run blocks); the
/// session's task waits for it without blocking.
#[derive(Debug, Clone)]
pub struct RunCommands {
    commands: Arc<Commands>,
    label: Arc<str>,
    env: Arc<[(String, String)]>,
}

impl RunCommands {
    /// Runs `commands`, logging each job under `label`; `env` goes into
    /// every command's environment.
    pub fn new(commands: &Commands, label: &str, env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RunCommands { commands: Arc::new(commands.clone()), label: label.into(), env }
    }
}

impl Handler for RunCommands {
    fn answer(&mut self, job: Job) -> impl Future<Output = Answer> {
        let this = self.clone();
        on_thread(move || {
            let env: Vec<(&str, &str)> = this.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            job.run(&this.label, &this.commands, &env)
        })
    }
}

/// Runs `work` on a thread of its own, and waits for it without blocking.
/// (If the future is dropped, the thread still runs to its end.)
async fn on_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let Ok((done, finished)) = UnixStream::pair() else { return work() };
    let worker = std::thread::spawn(move || {
        // Closed when the work ends (or panics): `finished` then reads as ended.
        let _done = done;
        work()
    });
    if let Ok(finished) = Async::new(finished) {
        let _ = finished.readable().await;
    }
    match worker.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Serves one session on `conn`: answers its requests in turn with
/// `handler` until the stream ends, the caller breaks the framing
/// ([`Error::Protocol`]), or the caller leaves (its response then dropped).
///
/// A response goes only to the caller that asked: when the stream hangs
/// up while a job runs, or before its response is written, the response
/// is dropped and the session ends. On a stream whose other end comes and
/// goes (a virtio-serial port), what a host that has left still has in the
/// port is not read: the session ends. `options.timeout` bounds writing a
/// response to a caller that does not read.
///
/// An async daemon is a loop that accepts a connection and serves it,
/// each session in a task of its own:
///
/// ```no_run
/// use std::os::unix::net::UnixListener;
/// use async_io::Async;
/// use vmwire_proto::{buf::Heap, negotiator::Responder};
/// use vmwire_smol::{Conn, Stream, negotiator::{Commands, Options, RunCommands, serve_session}};
///
/// # async fn daemon() -> std::io::Result<()> {
/// let listener = Async::<UnixListener>::bind("/run/negotiator.sock")?;
/// let options = Options::default();
/// loop {
///     let (socket, _) = listener.accept().await?;
///     let mut conn = Conn::new(Stream::Unix(socket), Responder::<Heap>::new(options.config));
///     let mut handler = RunCommands::new(&Commands::default(), "a caller", &[]);
///     // (spawn this on the executor to serve many callers at once)
///     if let Err(e) = serve_session(&mut conn, "a caller", &mut handler, &options).await {
///         eprintln!("{e}");
///     }
/// }
/// # }
/// ```
pub async fn serve_session<S, H>(
    conn: &mut Conn<S, Responder<Heap>>,
    label: &str,
    handler: &mut H,
    options: &Options,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Peer,
    H: Handler + ?Sized,
{
    let comes_and_goes = conn.stream().comes_and_goes();
    let mut serving = Serving::new(label);
    let mut nobody = |_: ResponderEvent<'_>| {};
    let left = |label: &str| log::info!("{label}: the caller left before its response; dropped");
    loop {
        let turn = match op::drive(conn.machine_mut(), &mut serving, &mut nobody)? {
            Some(turn) => turn,
            None => {
                if !conn.machine().transmit().is_empty() && conn.stream().hung_up() {
                    left(label);
                    return Ok(());
                }
                conn.flush(deadline(options.timeout)).await?;
                // A port that polls hung up has no host: what it holds is not a caller's
                // that could get a response (it reads as ended once emptied).
                if comes_and_goes && host_gone(conn.stream()).await? {
                    return Ok(());
                }
                match conn.wait(&mut serving, &mut nobody, None).await {
                    Ok(turn) => turn,
                    // The session's end was reported already.
                    Err(DriveError::Closed) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let job = match turn {
            Turn::Job(job) => job,
            Turn::End(outcome) => {
                if !conn.stream().hung_up() {
                    let _ = conn.flush(deadline(options.timeout)).await;
                }
                return outcome;
            }
        };
        let (answer, stayed) = watch_caller(conn.stream(), handler.answer(job)).await;
        if !stayed {
            left(label);
            return Ok(());
        }
        answer.respond(conn.machine_mut())?;
    }
}

/// Waits until `port` has something to read or hangs up; whether it hung
/// up (its host has gone).
async fn host_gone(port: &impl Peer) -> Result<bool, Error> {
    future::poll_fn(|cx| port.poll_hang_up(cx)).await?;
    Ok(port.hung_up())
}

/// Runs `work` while watching `peer` for the caller's leaving. Returns what
/// `work` returned, and whether the caller stayed throughout: a stream
/// that hung up at any moment meanwhile means the caller that asked has
/// gone, even if another one has connected since. A wake that is no
/// hang-up (the next request already there) is followed by a look every
/// [`RECHECK_HUNG_UP`] instead.
async fn watch_caller<T>(peer: &impl Peer, work: impl Future<Output = T>) -> (T, bool) {
    let mut work = pin!(work);
    let watch = async {
        loop {
            if future::poll_fn(|cx| peer.poll_hang_up(cx)).await.is_err() {
                // Cannot watch: wait for the work alone.
                future::pending::<()>().await;
            }
            if peer.hung_up() {
                return;
            }
            Timer::after(RECHECK_HUNG_UP).await;
        }
    };
    match future::or(async { Some(work.as_mut().await) }, async {
        watch.await;
        None
    })
    .await
    {
        Some(out) => (out, !peer.hung_up()),
        None => (work.await, false),
    }
}

/// Answers calls on `stream` until it closes; a stream whose other end
/// comes and goes (a virtio-serial port) is waited on whenever its host
/// has gone, for ever.
async fn serve_stream<S, H>(mut stream: S, label: &str, handler: &mut H, options: &Options) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Peer,
    H: Handler + ?Sized,
{
    let comes_and_goes = stream.comes_and_goes();
    loop {
        let early = if comes_and_goes { wait_for_host(&mut stream, label).await? } else { Vec::new() };
        let mut conn = Conn::new(stream, Responder::<Heap>::new(options.config));
        conn.machine_mut().receive(&early)?;
        let outcome = serve_session(&mut conn, label, handler, options).await;
        // The session's machine goes with it: a request half read, a response not sent.
        stream = conn.into_parts().0;
        if !(comes_and_goes && host_left(&outcome)) {
            return outcome;
        }
    }
}

/// Waits (looking again every [`RECHECK_HUNG_UP`]) until a host is
/// connected to the virtio-serial port `stream`, and returns the bytes it
/// sent that were read meanwhile; which of them are kept is
/// [`HostWait`]'s decision.
async fn wait_for_host<S: AsyncRead + Unpin + Peer>(stream: &mut S, label: &str) -> Result<Vec<u8>, Error> {
    let mut wait = HostWait::new(label);
    let mut scrap = [0u8; 4096];
    while wait.looked(stream.hung_up()) {
        loop {
            match future::poll_once(stream.read(&mut scrap)).await {
                Some(Ok(n)) if n > 0 => wait.read(&scrap[..n]),
                // Ended (no host), or nothing now.
                Some(Ok(_)) | None => break,
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(Error::Io(e)),
            }
        }
        Timer::after(RECHECK_HUNG_UP).await;
        wait.rechecked(stream.hung_up());
    }
    Ok(wait.connected())
}

/// The host's side of a guest's channel: calls into the guest on
/// [`HOST_TO_GUEST_CHANNEL`], or answers it on [`GUEST_TO_HOST_CHANNEL`].
#[derive(Debug)]
pub struct GuestChannel<S = Stream> {
    channel: Channel<S>,
    guest_name: Option<String>,
}

impl GuestChannel<Stream> {
    /// Connects to a channel's UNIX socket, with default options.
    pub async fn connect(socket_path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with(socket_path, None, Options::default()).await
    }

    /// Connects to a channel's UNIX socket; `guest_name` is the guest's name
    /// when known (commands then see it in `$NEGOTIATOR_GUEST`).
    pub async fn connect_with(
        socket_path: impl AsRef<Path>,
        guest_name: Option<&str>,
        options: Options,
    ) -> Result<Self, Error> {
        Ok(GuestChannel::new(Channel::connect_unix(socket_path, options).await?, guest_name))
    }

    /// Connects to guest `guest_name`'s [`HOST_TO_GUEST_CHANNEL`], found with
    /// `virsh` (which runs to its end on this thread).
    pub async fn connect_guest(guest_name: &str, options: Options) -> Result<Self, Error> {
        let channels = vmwire_std::negotiator::find_channels_of_guest(guest_name)?;
        let path = channels
            .get(HOST_TO_GUEST_CHANNEL)
            .ok_or_else(|| Error::Discovery(format!("guest {guest_name:?} has no {HOST_TO_GUEST_CHANNEL} channel")))?;
        Self::connect_with(path, Some(guest_name), options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Peer> GuestChannel<S> {
    /// The host's side over `channel` (a connection made some other way);
    /// `guest_name` as for [`GuestChannel::connect_with`].
    pub fn new(channel: Channel<S>, guest_name: Option<&str>) -> Self {
        GuestChannel { channel, guest_name: guest_name.map(str::to_owned) }
    }

    /// The guest's name, when known.
    pub fn guest_name(&self) -> Option<&str> {
        self.guest_name.as_deref()
    }

    /// Answers the guest's calls (this should be its [`GUEST_TO_HOST_CHANNEL`])
    /// until it closes, with `$NEGOTIATOR_GUEST` set to the guest's name.
    pub async fn serve(self, commands: &Commands) -> Result<(), Error> {
        let env = self.guest_name.as_deref().map(|name| ("NEGOTIATOR_GUEST", name));
        let mut run = RunCommands::new(commands, &self.channel.label, env.as_slice());
        self.channel.serve(&mut run).await
    }

    /// Answers the guest's calls with `handler` until it closes.
    pub async fn serve_with(self, handler: &mut (impl Handler + ?Sized)) -> Result<(), Error> {
        self.channel.serve(handler).await
    }
}

impl<S> std::ops::Deref for GuestChannel<S> {
    type Target = Channel<S>;
    fn deref(&self) -> &Channel<S> {
        &self.channel
    }
}

impl<S> std::ops::DerefMut for GuestChannel<S> {
    fn deref_mut(&mut self) -> &mut Channel<S> {
        &mut self.channel
    }
}

/// The guest's side: calls the host on [`GUEST_TO_HOST_CHANNEL`], or answers
/// it on [`HOST_TO_GUEST_CHANNEL`] (the guest daemon).
#[derive(Debug)]
pub struct GuestAgent<S = Stream> {
    channel: Channel<S>,
}

impl GuestAgent<Stream> {
    /// Opens a channel's character device (or, for tests and for the host,
    /// a UNIX socket), with default options.
    pub async fn open(device_or_socket: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(device_or_socket, Options::default()).await
    }

    /// [`GuestAgent::open`] with options. A device another process holds
    /// (`EBUSY`) is tried again until the time limit.
    pub async fn open_with(device_or_socket: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = device_or_socket.as_ref();
        let give_up = deadline(options.timeout);
        let stream = loop {
            match open_path(path, options.timeout).await {
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy && give_up.is_none_or(|d| Instant::now() < d) => {
                    Timer::after(Duration::from_millis(100)).await;
                }
                opened => break opened.map_err(Error::Io)?,
            }
        };
        let kind = if stream.comes_and_goes() { "character device" } else { "UNIX socket" };
        Ok(GuestAgent { channel: Channel::new(stream, format!("{kind} {}", path.display()), options) })
    }

    /// Opens the character device of the virtio-serial port `channel_name`,
    /// found through [`VIRTIO_PORTS`](vmwire_std::negotiator::VIRTIO_PORTS).
    pub async fn open_channel(channel_name: &str, options: Options) -> Result<Self, Error> {
        Self::open_with(vmwire_std::negotiator::find_character_device(channel_name)?, options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Peer> GuestAgent<S> {
    /// The guest's side over `channel` (a connection made some other way).
    pub fn new(channel: Channel<S>) -> Self {
        GuestAgent { channel }
    }

    /// Answers the host's calls: the guest daemon. On a character device it
    /// never returns unless the device fails: while the host is not
    /// connected it waits for it. On a socket it returns when the socket closes.
    pub async fn serve(self, commands: &Commands) -> Result<(), Error> {
        let mut run = RunCommands::new(commands, &self.channel.label, &[]);
        self.channel.serve(&mut run).await
    }

    /// [`GuestAgent::serve`], answering with `handler`.
    pub async fn serve_with(self, handler: &mut (impl Handler + ?Sized)) -> Result<(), Error> {
        self.channel.serve(handler).await
    }
}

impl<S> std::ops::Deref for GuestAgent<S> {
    type Target = Channel<S>;
    fn deref(&self) -> &Channel<S> {
        &self.channel
    }
}

impl<S> std::ops::DerefMut for GuestAgent<S> {
    fn deref_mut(&mut self) -> &mut Channel<S> {
        &mut self.channel
    }
}
