//! Sockets and character devices, and the one loop that drives any
//! [`Machine`] over them with deadlines.
//!
//! Every blocking client in this crate is a [`Conn`] and the operations
//! ([`vmwire_proto::op`]) it runs on it with [`Conn::run`]: the I/O, the
//! deadlines, end of stream and reconnecting live here once; which event
//! answers what, and what a passed deadline means, live in `proto`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use vmwire_proto::Machine;
use vmwire_proto::op::{self, Inbox, Operation};

/// A byte stream to a peer: a UNIX socket, a TCP connection, or a character
/// device (the guest end of a virtio-serial port, `/dev/vport*`).
#[derive(Debug)]
pub enum Stream {
    /// A UNIX stream socket.
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
    /// A character device opened read-write.
    Device(File),
    /// TLS over TCP (rustls), for HTTPS.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// `e`, its message prefixed with the path it is about; its kind kept.
pub fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens the character device at `path` (such as `/dev/vport0p1`) for
/// reading and writing ([`Stream::open_device`]): a terminal (a serial
/// line, a pty from `-chardev pty`) is put in raw mode first: no echo, no
/// line editing, no CR/LF translation, so that every byte passes as it is.
/// An error names the path.
pub fn open_raw(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| at(path, e))?;
    if rustix::termios::isatty(&file) {
        let mut termios = rustix::termios::tcgetattr(&file)?;
        termios.make_raw();
        rustix::termios::tcsetattr(&file, rustix::termios::OptionalActions::Now, &termios)?;
    }
    Ok(file)
}

/// Writes `bytes` to `socket` in one `sendmsg` with `fds` attached as
/// `SCM_RIGHTS`; how many bytes were written. A socket that would block
/// (non-blocking) answers [`io::ErrorKind::WouldBlock`], an interrupted
/// call [`io::ErrorKind::Interrupted`].
pub fn send_fds(socket: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    Ok(sendmsg(socket, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?)
}

/// What passing descriptors over a stream that is not a UNIX socket fails with.
pub fn fds_unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "file descriptors can only be passed over a UNIX socket")
}

impl Stream {
    /// Connects to the UNIX socket at `path`. An error names the path
    /// (`/run/x.sock: No such file or directory`).
    pub fn connect_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        UnixStream::connect(path).map(Stream::Unix).map_err(|e| at(path, e))
    }

    /// Connects to the UNIX socket at `path`, waiting at most `timeout` (no
    /// limit if `None`) for the listener to take the connection. A listener
    /// whose queue is full (QEMU's chardev sockets serve one client and
    /// queue one or two more) would otherwise block `connect` until it
    /// accepts. Linux offers no readiness to wait for there: a non-blocking
    /// `connect` fails with `EAGAIN` and is tried again every 10 ms. An
    /// error names the path, as [`Stream::connect_unix`]'s does.
    pub fn connect_unix_timeout(path: impl AsRef<Path>, timeout: Option<Duration>) -> io::Result<Self> {
        if timeout.is_none() {
            return Self::connect_unix(path);
        }
        let connect = UnixConnect::new(path.as_ref(), timeout)?;
        while !connect.try_connect()? {
            std::thread::sleep(UnixConnect::RETRY);
        }
        let stream = connect.into_stream();
        stream.set_nonblocking(false)?;
        Ok(Stream::Unix(stream))
    }

    /// Connects to `addr` over TCP, trying each resolved address for at most
    /// `timeout` (no limit if `None`). Nagle's algorithm is turned off:
    /// these protocols send small requests and wait for the reply.
    pub fn connect_tcp(addr: impl ToSocketAddrs, timeout: Option<Duration>) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in addr.to_socket_addrs()? {
            let attempt = match timeout {
                Some(t) => TcpStream::connect_timeout(&addr, t),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(Stream::Tcp(s));
                }
                Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            }
        }
        Err(last)
    }

    /// Opens a character device (such as `/dev/vport0p1`) for reading and
    /// writing. A terminal (a serial line, a pty from `-chardev pty`) is put
    /// in raw mode first: no echo, no line editing, no CR/LF translation, so
    /// that every byte passes as it is.
    pub fn open_device(path: impl AsRef<Path>) -> io::Result<Self> {
        open_raw(path.as_ref()).map(Stream::Device)
    }

    /// Shuts down both directions (sockets only; devices are left as they are).
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Device(_) => Ok(()),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.shutdown(Shutdown::Both),
        }
    }

    /// Whether bytes already decrypted wait to be read (so that a read will
    /// not block although the socket has nothing new).
    pub fn has_buffered(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => !s.conn.wants_read(),
            _ => false,
        }
    }

    /// Writes `bytes` in one `sendmsg` with `fds` attached as `SCM_RIGHTS`
    /// (UNIX sockets only). Returns how many bytes were written.
    pub fn send_with_fds(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(socket) => send_fds(socket, bytes, fds),
            _ => Err(fds_unsupported()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Device(f) => f.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Device(f) => f.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
            Stream::Device(f) => f.as_fd(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.as_fd(),
        }
    }
}

/// A connection to a UNIX socket that the listener may not take at once,
/// tried until it does or the time limit passes: what both adapters'
/// connecting with a time limit decide ([`Stream::connect_unix_timeout`],
/// vmwire-smol's `Stream::connect_unix`), each waiting
/// [`UnixConnect::RETRY`] its own way between tries.
///
/// A listener whose queue is full (QEMU's chardev sockets serve one client
/// and queue one or two more) refuses a non-blocking `connect` with
/// `EAGAIN`, and Linux offers no readiness to wait for there.
#[derive(Debug)]
pub struct UnixConnect<'p> {
    path: &'p Path,
    addr: rustix::net::SocketAddrUnix,
    fd: std::os::fd::OwnedFd,
    /// When to give up, and the time limit (as errors say it).
    limit: Option<(Instant, Duration)>,
}

impl<'p> UnixConnect<'p> {
    /// How long to wait before trying again.
    pub const RETRY: Duration = Duration::from_millis(10);

    /// A non-blocking socket to connect to `path` within `timeout` (`None`:
    /// no limit). An error names the path.
    pub fn new(path: &'p Path, timeout: Option<Duration>) -> io::Result<Self> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let limit = timeout.map(|t| (Instant::now() + t, t));
        let addr = SocketAddrUnix::new(path).map_err(|e| at(path, e.into()))?;
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
        Ok(UnixConnect { path, addr, fd, limit })
    }

    /// One try: whether the listener took the connection (then
    /// [`UnixConnect::into_stream`]); false: its queue is full, try again
    /// after [`UnixConnect::RETRY`]. Past the time limit, a full queue is
    /// [`io::ErrorKind::TimedOut`]; any other error names the path.
    pub fn try_connect(&self) -> io::Result<bool> {
        loop {
            match rustix::net::connect(&self.fd, &self.addr) {
                Ok(()) => return Ok(true),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => match self.limit {
                    Some((give_up, timeout)) if Instant::now() >= give_up => {
                        let why = format!(
                            "{} took no connection within {timeout:?} (its queue is full)",
                            self.path.display()
                        );
                        return Err(io::Error::new(io::ErrorKind::TimedOut, why));
                    }
                    _ => return Ok(false),
                },
                Err(e) => return Err(at(self.path, e.into())),
            }
        }
    }

    /// The connected socket (non-blocking).
    pub fn into_stream(self) -> UnixStream {
        UnixStream::from(self.fd)
    }
}

/// Where to listen or connect: a UNIX socket path, or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A UNIX socket.
    Unix(PathBuf),
    /// A TCP address, `HOST:PORT`.
    Tcp(String),
}

impl FromStr for Address {
    type Err = String;

    /// `HOST:PORT` (the port a number, no `/`) is TCP; anything else is a
    /// UNIX socket path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty address".into());
        }
        let tcp = !s.contains('/')
            && s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        Ok(if tcp { Address::Tcp(s.to_string()) } else { Address::Unix(PathBuf::from(s)) })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A listening socket, UNIX or TCP; a UNIX socket's file is removed on drop.
#[derive(Debug)]
pub enum Listener {
    /// A UNIX socket, and its path.
    Unix(UnixListener, PathBuf),
    /// A TCP socket.
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on `address` (a UNIX socket path, or `HOST:PORT`). A file at
    /// the path is refused ([`io::ErrorKind::AddrInUse`]) unless it is a
    /// socket nobody listens on any more (a daemon killed before it could
    /// remove it), which is replaced. A UNIX socket is bound under a temporary name and
    /// renamed into place once it listens, so that a client that sees the
    /// path is never refused (bind and listen are two system calls).
    pub fn bind(address: &Address) -> io::Result<Listener> {
        Ok(match address {
            Address::Unix(path) => {
                if let Ok(meta) = path.symlink_metadata() {
                    use std::os::unix::fs::FileTypeExt;
                    if !meta.file_type().is_socket() {
                        let kind = io::ErrorKind::AlreadyExists;
                        return Err(at(
                            path,
                            io::Error::new(kind, "a file that is not a socket is there (left alone)"),
                        ));
                    }
                    if !stale(path) {
                        return Err(at(path, io::Error::from(io::ErrorKind::AddrInUse)));
                    }
                    // Left behind by a listener that is gone (killed): take its place.
                    let _ = std::fs::remove_file(path);
                }
                let mut staging = path.clone().into_os_string();
                staging.push(format!(".{}.binding", std::process::id()));
                let staging = PathBuf::from(staging);
                let listener = UnixListener::bind(&staging).map_err(|e| at(path, e))?;
                if let Err(e) = std::fs::rename(&staging, path) {
                    let _ = std::fs::remove_file(&staging);
                    return Err(at(path, e));
                }
                Listener::Unix(listener, path.clone())
            }
            Address::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr.as_str())?),
        })
    }

    /// The address bound (with the port the system chose for `:0`).
    pub fn address(&self) -> io::Result<Address> {
        Ok(match self {
            Listener::Unix(_, path) => Address::Unix(path.clone()),
            Listener::Tcp(l) => Address::Tcp(l.local_addr()?.to_string()),
        })
    }

    /// The next client (TCP: with Nagle's algorithm off).
    pub fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Listener::Unix(l, _) => Stream::Unix(l.accept()?.0),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        })
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix(l, _) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `path` is a UNIX socket that refuses connections: one whose
/// listener is gone.
fn stale(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_socket())
        && UnixStream::connect(path).is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Why driving a machine stopped.
#[derive(Debug)]
pub enum DriveError<E> {
    /// The socket or device failed.
    Io(io::Error),
    /// The deadline passed.
    Timeout,
    /// The peer closed the stream (and the machine has been told).
    Closed,
    /// The machine refused the bytes (a caller bug, not the peer's).
    Machine(E),
}

impl<E> DriveError<E> {
    /// Whether the operation being run is expired when driving stops with
    /// this: the deadline passed or the stream failed (`Timeout`, `Io`), so
    /// the machine does what its protocol does then. The end of the stream
    /// and the machine's own errors are the machine's to report.
    pub fn expires(&self) -> bool {
        matches!(self, DriveError::Timeout | DriveError::Io(_))
    }
}

/// The conversions every client's error type has: from the transport's
/// [`DriveError`] (its `Io`, `Timeout` and `Closed` variants mirror the
/// transport's), from `io::Error` (`Io`), and from the machine's own error
/// `$machine`, which `$wrap` turns into the client's.
macro_rules! client_error {
    ($error:ty, $machine:ty, $wrap:expr) => {
        impl From<$crate::transport::DriveError<$machine>> for $error {
            fn from(e: $crate::transport::DriveError<$machine>) -> Self {
                use $crate::transport::DriveError;
                match e {
                    DriveError::Io(e) => Self::Io(e),
                    DriveError::Timeout => Self::Timeout,
                    DriveError::Closed => Self::Closed,
                    DriveError::Machine(e) => $wrap(e),
                }
            }
        }

        impl From<std::io::Error> for $error {
            fn from(e: std::io::Error) -> Self {
                Self::Io(e)
            }
        }

        impl From<$machine> for $error {
            fn from(e: $machine) -> Self {
                $wrap(e)
            }
        }
    };
}
pub(crate) use client_error;

/// The deadline `timeout` from now; `None` (no deadline) for `None`.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// Waits until `fd` is ready for `flags`, or the deadline passes.
pub fn wait_ready(fd: BorrowedFd<'_>, flags: PollFlags, deadline: Option<Instant>) -> io::Result<bool> {
    poll_until(fd, flags, deadline).map(|ready| !ready.is_empty())
}

/// How often a stream whose peer is not connected is looked at again. A
/// virtio-serial port whose host side is not connected polls as hung up at
/// once, for as long as that lasts (`POLLHUP` is a level, not an edge), and
/// refuses writes with `EAGAIN`: poll(2) cannot wait for the host to come.
pub const RECHECK_HUNG_UP: Duration = Duration::from_millis(100);

/// Whether `fd` polls as hung up right now: the peer has gone (a socket), or
/// is not connected (a virtio-serial port, whose host may connect later).
pub fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let now = Some(Instant::now());
    Ok(poll_until(fd, PollFlags::empty(), now)?.contains(PollFlags::HUP))
}

/// Sleeps [`RECHECK_HUNG_UP`], or until the deadline if that is sooner;
/// false (without sleeping) if the deadline has passed.
pub fn nap(deadline: Option<Instant>) -> bool {
    let left = deadline.map_or(RECHECK_HUNG_UP, |d| d.saturating_duration_since(Instant::now()));
    if left.is_zero() {
        return false;
    }
    std::thread::sleep(left.min(RECHECK_HUNG_UP));
    true
}

/// Polls `fd` for `flags` until something is reported or the deadline passes,
/// and returns what was reported (empty: the deadline passed). `POLLHUP` and
/// `POLLERR` are reported whatever `flags` asks for.
pub fn poll_until(fd: BorrowedFd<'_>, flags: PollFlags, deadline: Option<Instant>) -> io::Result<PollFlags> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                Some(Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 }))
            }
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(PollFlags::empty()),
            Ok(_) => return Ok(fds[0].revents()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The earlier of two deadlines (`None`: no deadline).
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What is left of the time until `deadline`, for a system call that takes
/// a timeout (`None`: no deadline): at least 1 ms once the deadline has
/// passed, since a zero timeout is no limit at all to socket calls.
pub fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))
}

/// The time limits of one run of an operation, as every adapter's loop
/// keeps them (this crate's [`Conn::run_with`], vmwire-smol's): the whole
/// by `deadline`; each wait for the peer (connecting, writing, reading)
/// also within `step` of the operation's last event, started again
/// whenever it takes one ([`op::Progress::took`]). A pause that would end
/// past the deadline is cut short to end at it, and the operation takes
/// one last look (a guest program, a XenAPI task may have ended meanwhile),
/// its waits bounded by `step` alone; a pause asked for after that is the
/// deadline passing.
///
/// ```
/// use std::time::{Duration, Instant};
/// use vmwire_std::transport::{Deadlines, DriveError};
/// let deadline = Instant::now() + Duration::from_secs(60);
/// let mut limits = Deadlines::new(Some(deadline), Some(Duration::from_secs(5)));
/// assert_eq!(limits.wait(), Some(deadline)); // until the operation takes an event
/// assert!(limits.took(true)); // it took one: 5 s from now
/// assert!(limits.wait().is_some_and(|w| w < deadline));
/// assert!(!limits.took(false));
/// assert_eq!(limits.pause::<()>(Duration::from_secs(1)).ok(), Some(Duration::from_secs(1)));
///
/// // A pause past the deadline ends at it; then one last look, bounded by `step` alone.
/// let mut limits = Deadlines::new(Some(Instant::now() + Duration::from_millis(10)), Some(Duration::from_secs(5)));
/// let pause = limits.pause::<()>(Duration::from_millis(100)).unwrap();
/// assert!(pause <= Duration::from_millis(10));
/// std::thread::sleep(pause);
/// assert!(limits.took(true)); // the operation resumed: it asks once more
/// assert!(limits.wait().is_some_and(|w| w > Instant::now() + Duration::from_secs(4)));
/// assert!(matches!(limits.pause::<()>(Duration::from_millis(100)), Err(DriveError::Timeout)));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    deadline: Option<Instant>,
    step: Option<Duration>,
    wait: Option<Instant>,
    /// The deadline came during a pause: the operation's last look.
    last_look: bool,
}

impl Deadlines {
    /// The whole run by `deadline`, each wait also within `step` of the
    /// operation's last event (`None`: no limit).
    pub fn new(deadline: Option<Instant>, step: Option<Duration>) -> Self {
        Deadlines { deadline, step, wait: deadline, last_look: false }
    }

    /// Whether the operation `took` an event (or resumed) since the last
    /// step ([`op::Progress::took`]); if so, and there is a step limit, the
    /// limit on waits starts again, and the answer is true (a timer armed
    /// for the old limit is stale).
    pub fn took(&mut self, took: bool) -> bool {
        let restart = took && self.step.is_some();
        if restart {
            self.wait = earliest(self.deadline, deadline(self.step));
        }
        restart
    }

    /// The limit on the present wait for the peer.
    pub fn wait(&self) -> Option<Instant> {
        self.wait
    }

    /// How long to pause when the operation asks for `pause`
    /// ([`op::Next::Pause`]): all of it, or what is left before the
    /// deadline (the last look follows); [`DriveError::Timeout`] once the
    /// deadline has passed or the last look was taken.
    pub fn pause<E>(&mut self, pause: Duration) -> Result<Duration, DriveError<E>> {
        let Some(d) = self.deadline else {
            return if self.last_look { Err(DriveError::Timeout) } else { Ok(pause) };
        };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DriveError::Timeout);
        }
        if left <= pause {
            (self.deadline, self.wait, self.last_look) = (None, None, true);
        }
        Ok(pause.min(left))
    }
}

/// Opens a new stream by the deadline given (see [`With::connect`]).
pub type Connect<'c, E> = dyn FnMut(Option<Instant>) -> Result<Stream, DriveError<E>> + 'c;

/// What running an operation ends with: its output, or why driving stopped.
pub type Outcome<O, M> = Result<<O as Operation<M>>::Output, DriveError<<M as Machine>::Error>>;

/// What [`Conn::run_with`] does besides reading and writing.
pub struct With<'a, 'c, E> {
    /// Descriptors attached (`SCM_RIGHTS`) to the bytes queued now (QMP's `getfd`).
    pub fds: &'a [BorrowedFd<'a>],
    /// Opens a new stream whenever the machine [needs one](Machine::needs_connection)
    /// (HTTP); a failure to open one fails the operation.
    pub connect: Option<&'a mut Connect<'c, E>>,
    /// A limit on each wait for the peer besides the deadline, started
    /// again whenever the operation takes an event (each request of a
    /// sequence, such as a file's chunks, gets the whole of it).
    pub step: Option<Duration>,
    /// Asked after every pause the operation takes (a guest program's
    /// status looked at again): `true` gives the operation up as its
    /// deadline passing does ([`DriveError::Timeout`]; it is expired). For
    /// a shell whose user pressed Ctrl-C.
    pub stop: Option<&'a dyn Fn() -> bool>,
}

impl<E> Default for With<'_, '_, E> {
    fn default() -> Self {
        With { fds: &[], connect: None, step: None, stop: None }
    }
}

/// A machine and the stream it speaks over.
#[derive(Debug)]
pub struct Conn<M> {
    stream: Stream,
    machine: M,
    eof: bool,
}

impl<M: Machine> Conn<M> {
    /// Pairs `machine` with `stream`, which is put in non-blocking mode: every
    /// wait goes through `poll(2)` with the caller's deadline, and a write
    /// that fits costs one system call.
    pub fn new(stream: Stream, machine: M) -> Self {
        // Failure leaves the stream blocking: writes then block, reads still wait in poll first.
        let _ = rustix::io::ioctl_fionbio(&stream, true);
        Conn { stream, machine, eof: false }
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, to poll it or queue commands.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Takes the stream and the machine apart (to drive the stream with
    /// another machine, or the same machine over another stream).
    pub fn into_parts(self) -> (Stream, M) {
        (self.stream, self.machine)
    }

    /// The stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The stream and the machine, both borrowed (to look at the stream
    /// while telling the machine).
    pub fn parts_mut(&mut self) -> (&Stream, &mut M) {
        (&self.stream, &mut self.machine)
    }

    /// Carries on over a new stream (the machine's own state is its
    /// business: HTTP machines are told with their `connected()`).
    pub fn replace_stream(&mut self, stream: Stream) {
        let _ = self.stream.shutdown();
        self.stream = stream;
        self.eof = false;
    }

    /// Whether the peer has closed its end.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Writes everything the machine has queued.
    pub fn flush(&mut self, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>> {
        while !self.machine.transmit().is_empty() {
            match self.stream.write(self.machine.transmit()) {
                Ok(0) => return Err(DriveError::Closed),
                Ok(n) => self.machine.transmitted(n),
                Err(e) => self.write_failed(e, deadline)?,
            }
        }
        Ok(())
    }

    /// Writes the queued bytes in one `sendmsg` with `fds` attached, then the
    /// rest (if the kernel took only part) normally.
    pub fn flush_with_fds(
        &mut self,
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), DriveError<M::Error>> {
        loop {
            match self.stream.send_with_fds(self.machine.transmit(), fds) {
                Ok(n) => {
                    self.machine.transmitted(n);
                    return self.flush(deadline);
                }
                Err(e) => self.write_failed(e, deadline)?,
            }
        }
    }

    /// A write failed: waits if the peer is merely slow, else says why.
    fn write_failed(&mut self, e: io::Error, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>> {
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::WouldBlock => match poll_until(self.stream.as_fd(), PollFlags::OUT, deadline) {
                Ok(ready) if ready.intersects(PollFlags::OUT | PollFlags::ERR) => Ok(()),
                // Hung up but not closed: a virtio-serial port whose host is not
                // connected. Poll(2) would report that at once, over and over:
                // look again in a while instead, until the deadline.
                Ok(ready) if ready.contains(PollFlags::HUP) && nap(deadline) => Ok(()),
                Ok(_) => Err(DriveError::Timeout),
                Err(e) => Err(DriveError::Io(e)),
            },
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                self.end();
                Err(DriveError::Closed)
            }
            _ => Err(DriveError::Io(e)),
        }
    }

    /// Reads once (waiting until the deadline) straight into the machine.
    /// Poll the machine until it has nothing before calling this again.
    pub fn fill(&mut self, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>> {
        if self.eof {
            return Err(DriveError::Closed);
        }
        if !self.stream.has_buffered()
            && !wait_ready(self.stream.as_fd(), PollFlags::IN, deadline).map_err(DriveError::Io)?
        {
            return Err(DriveError::Timeout);
        }
        let buf = self.machine.recv_buf();
        if buf.is_empty() {
            return Err(DriveError::Io(io::Error::other("receive buffer full: poll the machine before reading")));
        }
        let n = loop {
            match self.stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Woken with nothing to read after all: the caller polls again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break 0,
                // A TLS peer that closes without close_notify: the end of the stream
                // (HTTP frames its own messages, so nothing is cut short unseen).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break 0,
                Err(e) => return Err(DriveError::Io(e)),
            }
        };
        if n == 0 {
            self.end();
            return Ok(());
        }
        self.machine.recv_commit(n).map_err(DriveError::Machine)
    }

    /// Runs `operation` until it finishes: the machine's events to it (the
    /// rest to `inbox`), queued bytes written, bytes read, until `deadline`.
    /// When the deadline passes, or the stream fails, the operation is
    /// expired (the machine does what its protocol does then).
    pub fn run<O, I>(&mut self, operation: &mut O, inbox: &mut I, deadline: Option<Instant>) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        self.run_with(With::default(), operation, inbox, deadline)
    }

    /// [`Conn::run`], doing [`With`] besides.
    pub fn run_with<O, I>(
        &mut self,
        with: With<'_, '_, M::Error>,
        operation: &mut O,
        inbox: &mut I,
        deadline: Option<Instant>,
    ) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        let sent = if with.fds.is_empty() { Ok(()) } else { self.flush_with_fds(with.fds, deadline) };
        let outcome = sent.and_then(|()| self.drive(with.connect, with.step, with.stop, operation, inbox, deadline));
        if outcome.as_ref().is_err_and(DriveError::expires) {
            operation.expire(&mut self.machine);
        }
        outcome
    }

    /// With no request in flight: reads until `deadline`, every event to
    /// `inbox` (what a peer says on its own, late replies). `Ok` at the
    /// deadline; [`DriveError::Closed`] once the stream has ended.
    pub fn idle<I>(&mut self, inbox: &mut I, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>>
    where
        I: Inbox<M> + ?Sized,
    {
        match self.drive(None, None, None, &mut op::Idle, inbox, deadline) {
            Ok(never) => match never {},
            Err(DriveError::Timeout) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Conn::run`] without expiring the operation when the deadline
    /// passes: the caller may wait for it again.
    pub fn wait<O, I>(&mut self, operation: &mut O, inbox: &mut I, deadline: Option<Instant>) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        self.drive(None, None, None, operation, inbox, deadline)
    }

    /// The one loop: the machine's events to the operation until it
    /// finishes; then the pause it asks for (and it resumes); then a new
    /// connection if the machine needs one, queued bytes written, and bytes
    /// read, each wait bounded by `deadline` and by `step` since the
    /// operation last took an event.
    fn drive<O, I>(
        &mut self,
        mut connect: Option<&mut Connect<'_, M::Error>>,
        step: Option<Duration>,
        stop: Option<&dyn Fn() -> bool>,
        operation: &mut O,
        inbox: &mut I,
        deadline: Option<Instant>,
    ) -> Outcome<O, M>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        let mut progress = op::Progress::new(operation);
        let mut limits = Deadlines::new(deadline, step);
        loop {
            let next = progress.next(&mut self.machine, inbox).map_err(DriveError::Machine)?;
            limits.took(progress.took());
            let reconnect = matches!(next, op::Next::Connect);
            match next {
                op::Next::Done(output) => return Ok(output),
                op::Next::Pause(pause) => {
                    std::thread::sleep(limits.pause(pause)?);
                    if stop.is_some_and(|stop| stop()) {
                        return Err(DriveError::Timeout);
                    }
                    if let Some(output) = progress.resume(&mut self.machine).map_err(DriveError::Machine)? {
                        return Ok(output);
                    }
                }
                op::Next::Connect | op::Next::Transfer => match connect.as_mut().filter(|_| reconnect) {
                    Some(connect) => {
                        let stream = connect(limits.wait())?;
                        self.replace_stream(stream);
                        self.machine.connected();
                    }
                    None => self.pump(limits.wait())?,
                },
            }
        }
    }

    /// Flushes, then reads once.
    pub fn pump(&mut self, deadline: Option<Instant>) -> Result<(), DriveError<M::Error>> {
        self.flush(deadline)?;
        self.fill(deadline)
    }

    /// Tells the machine the stream ended (it then reports what was pending).
    fn end(&mut self) {
        if !self.eof {
            self.eof = true;
            self.machine.recv_eof();
        }
    }

    /// Shuts the stream down and tells the machine.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown();
        self.end();
    }
}
