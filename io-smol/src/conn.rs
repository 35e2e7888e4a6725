//! Byte streams, and the one async loop that drives any [`Machine`] over
//! them with deadlines: the async twin of `vmwire_std::transport`.
//!
//! A [`Conn`] pairs a machine with anything that is `AsyncRead +
//! AsyncWrite` (futures-io): the [`Stream`] this crate opens, or another
//! runtime's socket through its compat layer. [`Conn::run`] runs an
//! operation ([`vmwire_proto::op`]) to its end; what to do next is
//! [`op::Progress`]'s decision, the loop here only waits, writes and reads.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use vmwire_proto::Machine;
use vmwire_proto::op::{self, Inbox, Operation};

use vmwire_std::transport;
use vmwire_std::transport::Deadlines;
pub use vmwire_std::transport::{Address, DriveError, Outcome, deadline};

/// A byte stream to a peer: a UNIX socket, a TCP connection, or a
/// character device (the guest end of a virtio-serial port), each
/// registered with async-io's reactor.
#[derive(Debug)]
pub enum Stream {
    /// A UNIX stream socket.
    Unix(Async<UnixStream>),
    /// A TCP connection.
    Tcp(Async<TcpStream>),
    /// A character device opened read-write.
    Device(Async<File>),
}

/// `work`, or [`io::ErrorKind::TimedOut`] saying `what` if `deadline` passes first.
async fn within<T>(
    deadline: Option<Instant>,
    what: impl FnOnce() -> String,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(deadline) = deadline else { return work.await };
    future::or(work, async {
        Timer::at(deadline).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, what()))
    })
    .await
}

impl Stream {
    /// Connects to the UNIX socket at `path`, waiting at most `timeout` (no
    /// limit if `None`) for the listener to take the connection: a listener
    /// whose queue is full (QEMU's chardev sockets serve one client and
    /// queue one or two more) refuses a non-blocking `connect` with
    /// `EAGAIN` and offers no readiness to wait for, so it is tried again
    /// every 10 ms. An error names the path.
    pub async fn connect_unix(path: impl AsRef<Path>, timeout: Option<Duration>) -> io::Result<Self> {
        let connect = transport::UnixConnect::new(path.as_ref(), timeout)?;
        while !connect.try_connect()? {
            Timer::after(transport::UnixConnect::RETRY).await;
        }
        Ok(Stream::Unix(Async::new(connect.into_stream())?))
    }

    /// Connects to `addr` over TCP, trying each resolved address for at
    /// most `timeout` (no limit if `None`). Nagle's algorithm is turned
    /// off: these protocols send small requests and wait for the reply.
    /// (Names are resolved with the blocking resolver.)
    pub async fn connect_tcp(addr: impl ToSocketAddrs, timeout: Option<Duration>) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in addr.to_socket_addrs()? {
            let what = move || format!("no connection within {timeout:?}");
            match within(deadline(timeout), what, Async::<TcpStream>::connect(addr)).await {
                Ok(s) => {
                    s.get_ref().set_nodelay(true)?;
                    return Ok(Stream::Tcp(s));
                }
                Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            }
        }
        Err(last)
    }

    /// Opens a character device (such as `/dev/vport0p1`) for reading and
    /// writing, non-blocking. A terminal is put in raw mode first, so that
    /// every byte passes as it is.
    pub fn open_device(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Stream::Device(Async::new(transport::open_raw(path.as_ref())?)?))
    }

    /// Shuts down both directions (sockets only; devices are left as they are).
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.get_ref().shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.get_ref().shutdown(std::net::Shutdown::Both),
            Stream::Device(_) => Ok(()),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Device(f) => poll_device(f, cx, Async::poll_readable, |f| rustix::io::read(f, &mut *buf)),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Device(f) => poll_device(f, cx, Async::poll_writable, |f| rustix::io::write(f, buf)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}

/// How often a device whose peer is not connected is looked at again.
///
/// A virtio-serial port whose host side is not connected polls as hung up
/// (`POLLHUP` is a level) and refuses I/O with `EAGAIN`: waiting for
/// readiness would wake at once, over and over. The port is tried again
/// after this long instead.
pub const RECHECK_HUNG_UP: Duration = vmwire_std::transport::RECHECK_HUNG_UP;

/// One read or write on a device: at once if it can; else waits for
/// readiness, and when readiness is only a hang-up (the host is not
/// connected), for [`RECHECK_HUNG_UP`].
fn poll_device(
    f: &mut Async<File>,
    cx: &mut Context<'_>,
    readiness: fn(&Async<File>, &mut Context<'_>) -> Poll<io::Result<()>>,
    mut io: impl FnMut(&File) -> rustix::io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        match io(f.get_ref()) {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Poll::Ready(Err(e.into())),
        }
        if vmwire_std::transport::hung_up(f.as_fd())? {
            // Woken by a timer: a hang-up reported by the reactor would spin.
            let mut nap = Timer::after(RECHECK_HUNG_UP);
            return match Pin::new(&mut nap).poll(cx) {
                Poll::Ready(_) => continue,
                Poll::Pending => Poll::Pending,
            };
        }
        ready!(readiness(f, cx))?;
    }
}

/// A listening socket, UNIX or TCP: vmwire-std's
/// [`Listener`](vmwire_std::transport::Listener) (a UNIX socket bound under
/// a temporary name and renamed into place, one left by a killed listener
/// replaced, its file removed on drop), registered with the reactor.
#[derive(Debug)]
pub struct Listener(Async<vmwire_std::transport::Listener>);

impl Listener {
    /// Listens on `address`: a UNIX socket path, or `HOST:PORT`.
    pub fn bind(address: &Address) -> io::Result<Self> {
        Ok(Listener(Async::new(vmwire_std::transport::Listener::bind(address)?)?))
    }

    /// Listens on a UNIX socket at `path`.
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::bind(&Address::Unix(path.as_ref().to_path_buf()))
    }

    /// Listens on TCP `addr` (port 0: one the system picks, see [`Listener::tcp_addr`]).
    pub fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        Ok(Listener(Async::new(vmwire_std::transport::Listener::Tcp(listener))?))
    }

    /// The TCP address listened on (`None` for a UNIX socket).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self.0.get_ref() {
            vmwire_std::transport::Listener::Tcp(l) => l.local_addr().ok(),
            vmwire_std::transport::Listener::Unix(..) => None,
        }
    }

    /// The next client (TCP: with Nagle's algorithm off).
    pub async fn accept(&self) -> io::Result<Stream> {
        match self.0.read_with(|l| l.accept()).await? {
            vmwire_std::transport::Stream::Unix(s) => Ok(Stream::Unix(Async::new(s)?)),
            vmwire_std::transport::Stream::Tcp(s) => Ok(Stream::Tcp(Async::new(s)?)),
            _ => Err(io::Error::other("a listener accepted something that is not a socket")),
        }
    }
}

/// Streams that can carry file descriptors (`SCM_RIGHTS`) with bytes:
/// UNIX sockets.
pub trait PassFds {
    /// Writes some of `bytes` in one `sendmsg` with `fds` attached; the
    /// kernel passes the descriptors with the first byte written.
    fn poll_send_with_fds(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>>;
}

impl PassFds for Async<UnixStream> {
    fn poll_send_with_fds(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match transport::send_fds(self.get_ref(), bytes, fds) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.poll_writable(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl PassFds for Stream {
    fn poll_send_with_fds(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Unix(s) => s.poll_send_with_fds(cx, bytes, fds),
            _ => Poll::Ready(Err(transport::fds_unsupported())),
        }
    }
}

/// Opens a new stream by the deadline given, for a machine that
/// [needs one](Machine::needs_connection) (HTTP). `Send`, so that an
/// operation run with it is a future that can move between threads.
pub type Connect<'c, S, E> =
    dyn FnMut(Option<Instant>) -> Pin<Box<dyn Future<Output = Result<S, DriveError<E>>> + Send + 'c>> + Send + 'c;

/// What [`Conn::run_with`] does besides reading and writing.
pub struct With<'a, 'c, S, E> {
    /// Opens a new stream whenever the machine needs one; a failure to
    /// open one fails the operation.
    pub connect: Option<&'a mut Connect<'c, S, E>>,
    /// A limit on each wait for the peer besides the deadline, started
    /// again whenever the operation takes an event.
    pub step: Option<Duration>,
}

impl<S, E> Default for With<'_, '_, S, E> {
    fn default() -> Self {
        With { connect: None, step: None }
    }
}

/// A machine and the stream it speaks over, driven by one task.
#[derive(Debug)]
pub struct Conn<S, M> {
    stream: S,
    machine: M,
    eof: bool,
}

/// An operation being run on a [`Conn`]: if the future running it is
/// dropped before it ends (cancelled), or its deadline passes, the
/// operation is expired, so the machine stays in step for the next one.
struct Running<'a, S, M: Machine, O: Operation<M>> {
    conn: &'a mut Conn<S, M>,
    progress: op::Progress<'a, O>,
    ended: bool,
}

impl<S, M: Machine, O: Operation<M>> Drop for Running<'_, S, M, O> {
    fn drop(&mut self) {
        if !self.ended {
            self.progress.expire(&mut self.conn.machine);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, M: Machine> Conn<S, M> {
    /// Pairs `machine` with `stream`.
    pub fn new(stream: S, machine: M) -> Self {
        Conn { stream, machine, eof: false }
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, to poll it or queue requests.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The stream and the machine, both borrowed.
    pub fn parts_mut(&mut self) -> (&mut S, &mut M) {
        (&mut self.stream, &mut self.machine)
    }

    /// The stream, to look at it between operations (what is read from it
    /// here never reaches the machine).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream and the machine, apart.
    pub fn into_parts(self) -> (S, M) {
        (self.stream, self.machine)
    }

    /// Carries on over a new stream.
    pub fn replace_stream(&mut self, stream: S) {
        self.stream = stream;
        self.eof = false;
    }

    /// Whether the peer has closed its end.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Tells the machine the stream ended (it then reports what was pending).
    fn end(&mut self) {
        if !self.eof {
            self.eof = true;
            self.machine.recv_eof();
        }
    }

    /// Tells the machine the stream is closed (the stream itself closes
    /// when dropped).
    pub fn close(&mut self) {
        self.end();
    }

    /// Writes some of what the machine has queued, and flushes the stream
    /// when all of it is written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DriveError<M::Error>>> {
        while !self.machine.transmit().is_empty() {
            match ready!(Pin::new(&mut self.stream).poll_write(cx, self.machine.transmit())) {
                Ok(0) => return Poll::Ready(Err(DriveError::Closed)),
                Ok(n) => self.machine.transmitted(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(self.write_failed(e))),
            }
        }
        Pin::new(&mut self.stream).poll_flush(cx).map_err(|e| self.write_failed(e))
    }

    /// A write failed: a peer that went away is the end of the stream.
    fn write_failed(&mut self, e: io::Error) -> DriveError<M::Error> {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                self.end();
                DriveError::Closed
            }
            _ => DriveError::Io(e),
        }
    }

    /// Reads once straight into the machine.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DriveError<M::Error>>> {
        if self.eof {
            return Poll::Ready(Err(DriveError::Closed));
        }
        let buf = self.machine.recv_buf();
        if buf.is_empty() {
            let full = io::Error::other("receive buffer full: poll the machine before reading");
            return Poll::Ready(Err(DriveError::Io(full)));
        }
        let n = match ready!(Pin::new(&mut self.stream).poll_read(cx, buf)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Poll::Ready(Ok(())),
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof) => 0,
            Err(e) => return Poll::Ready(Err(DriveError::Io(e))),
        };
        if n == 0 {
            self.end();
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.machine.recv_commit(n).map_err(DriveError::Machine))
    }

    /// Writes what is queued; then reads once (the reply may come before the
    /// whole request is written: both are waited for). For an adapter that
    /// polls by hand (a driver shared by many tasks); poll the machine
    /// until it has nothing before calling this again.
    pub fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DriveError<M::Error>>> {
        let _written_or_waiting = self.poll_flush(cx)?;
        self.poll_fill(cx)
    }

    /// Writes everything the machine has queued, until `deadline`.
    pub async fn flush(&mut self, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>> {
        let mut timer = deadline.map(Timer::at);
        future::poll_fn(|cx| timed(&mut timer, cx, |cx| self.poll_flush(cx))).await
    }

    /// Writes the queued bytes in one `sendmsg` with `fds` attached, then the
    /// rest (if the kernel took only part) normally.
    pub async fn flush_with_fds(
        &mut self,
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), DriveError<M::Error>>
    where
        S: PassFds,
    {
        let mut timer = deadline.map(Timer::at);
        let sent = future::poll_fn(|cx| {
            timed(&mut timer, cx, |cx| {
                let n = ready!(self.stream.poll_send_with_fds(cx, self.machine.transmit(), fds));
                Poll::Ready(n.map_err(|e| self.write_failed(e)))
            })
        })
        .await?;
        self.machine.transmitted(sent);
        self.flush(deadline).await
    }

    /// Runs `operation` until it finishes: the machine's events to it (the
    /// rest to `inbox`), queued bytes written, bytes read, until `deadline`.
    /// When the deadline passes, the stream fails, or this future is
    /// dropped before the end, the operation is expired (the machine does
    /// what its protocol does then).
    pub async fn run<O, I>(&mut self, operation: &mut O, inbox: &mut I, deadline: Option<Instant>) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        self.run_with(With::default(), operation, inbox, deadline).await
    }

    /// [`Conn::run`] without expiring the operation when the deadline
    /// passes: the caller may wait for it again. (Dropped early, it is
    /// expired all the same.)
    pub async fn wait<O, I>(&mut self, operation: &mut O, inbox: &mut I, deadline: Option<Instant>) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        let mut running = Running { conn: self, progress: op::Progress::new(operation), ended: false };
        let outcome = running.drive(&mut None, None, inbox, deadline).await;
        running.ended = true;
        outcome
    }

    /// [`Conn::run`], doing [`With`] besides.
    pub async fn run_with<O, I>(
        &mut self,
        with: With<'_, '_, S, M::Error>,
        operation: &mut O,
        inbox: &mut I,
        deadline: Option<Instant>,
    ) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        let mut running = Running { conn: self, progress: op::Progress::new(operation), ended: false };
        let mut connect = with.connect;
        let outcome = running.drive(&mut connect, with.step, inbox, deadline).await;
        running.ended = !outcome.as_ref().is_err_and(DriveError::expires);
        outcome
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, M: Machine, O: Operation<M>> Running<'_, S, M, O> {
    /// The loop: what [`op::Progress`] says, done, each wait bounded by
    /// `deadline` and by `step` since the operation last took an event.
    async fn drive<I: Inbox<M> + ?Sized>(
        &mut self,
        connect: &mut Option<&mut Connect<'_, S, M::Error>>,
        step: Option<Duration>,
        inbox: &mut I,
        deadline: Option<Instant>,
    ) -> Outcome<O, M> {
        let mut limits = Deadlines::new(deadline, step);
        let mut timer: Option<Timer> = None;
        loop {
            let next = self.progress.next(&mut self.conn.machine, inbox).map_err(DriveError::Machine)?;
            if limits.took(self.progress.took()) {
                timer = None;
            }
            let reconnect = matches!(next, op::Next::Connect);
            match next {
                op::Next::Done(output) => return Ok(output),
                op::Next::Pause(pause) => {
                    Timer::after(limits.pause(pause)?).await;
                    // The limits may have changed (the last look before a deadline).
                    timer = None;
                    if let Some(output) = self.progress.resume(&mut self.conn.machine).map_err(DriveError::Machine)? {
                        return Ok(output);
                    }
                }
                op::Next::Connect | op::Next::Transfer => match connect.as_mut().filter(|_| reconnect) {
                    Some(connect) => {
                        let stream = connect(limits.wait()).await?;
                        self.conn.replace_stream(stream);
                        self.conn.machine.connected();
                    }
                    None => {
                        if timer.is_none() {
                            timer = limits.wait().map(Timer::at);
                        }
                        future::poll_fn(|cx| timed(&mut timer, cx, |cx| self.conn.poll_pump(cx))).await?;
                    }
                },
            }
        }
    }
}

/// `work`, or [`DriveError::Timeout`] once `timer` has fired.
fn timed<T, E>(
    timer: &mut Option<Timer>,
    cx: &mut Context<'_>,
    work: impl FnOnce(&mut Context<'_>) -> Poll<Result<T, E>>,
) -> Poll<Result<T, E>>
where
    E: From<TimedOut>,
{
    if let Poll::Ready(done) = work(cx) {
        return Poll::Ready(done);
    }
    match timer.as_mut().map(|t| Pin::new(t).poll(cx)) {
        Some(Poll::Ready(_)) => Poll::Ready(Err(TimedOut.into())),
        _ => Poll::Pending,
    }
}

/// A timer fired.
struct TimedOut;

impl<E> From<TimedOut> for DriveError<E> {
    fn from(_: TimedOut) -> Self {
        DriveError::Timeout
    }
}
