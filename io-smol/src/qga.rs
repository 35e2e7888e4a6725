//! An async client for the QEMU guest agent: the twin of `vmwire_std::qga`,
//! with the same options, errors and values.
//!
//! ```no_run
//! use vmwire_smol::qga::{Agent, Options};
//!
//! smol::block_on(async {
//!     // The host end of the guest's org.qemu.guest_agent.0 port.
//!     let mut agent = Agent::connect_unix("/run/vm/qga.sock", Options::default()).await?;
//!     agent.ping().await?;
//!     let out = agent.exec("/bin/uname", &["-r"], &[], None).await?;
//!     println!("{} ({:?})", String::from_utf8_lossy(&out.stdout), out.status);
//!     agent.write_file("/tmp/hello", b"hello\n").await?;
//!     assert_eq!(agent.read_file("/tmp/hello").await?, b"hello\n");
//!     Ok::<(), vmwire_smol::qga::Error>(())
//! })
//! # .unwrap();
//! ```
//!
//! Any `AsyncRead + AsyncWrite` stream will do, such as a tokio socket
//! through tokio-util's compat layer (the timers are async-io's, whose
//! reactor runs on a thread of its own under another runtime):
//!
//! ```no_run
//! use tokio_util::compat::TokioAsyncReadCompatExt;
//! use vmwire_smol::qga::{Agent, Options};
//!
//! # async fn f() -> Result<(), vmwire_smol::qga::Error> {
//! let stream = tokio::net::UnixStream::connect("/run/vm/qga.sock").await?;
//! let mut agent = Agent::handshake(stream.compat(), Options::default()).await?;
//! agent.ping().await?;
//! # Ok(()) }
//! ```
//!
//! Opening a session resynchronises with the agent (`0xFF` and
//! `guest-sync-delimited` with a random id), and so does a command that
//! timed out or whose future was dropped before it ended, so that a late
//! reply can never be taken for the next one's.

use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::{Heap, Storage};
use vmwire_proto::json::Value;
use vmwire_proto::op::{Offer, Operation};
use vmwire_proto::qga::{self, Client, Event, Id};
use vmwire_std::qga::{
    Strays, exec_outcome, random_id, returned, send_json, synchronised, transfer_outcome, transferred,
};
use vmwire_std::qmp::arguments;

pub use vmwire_std::qga::{
    CommandInfo, Error, ExitStatus, Info, OUT_OF_RANGE, Options, OsInfo, Output, QemuError, Shutdown,
};

use crate::conn::{Conn, Stream, With, deadline};

/// A session with the guest agent, in step with it, over stream `S`.
///
/// Each method is a future that borrows the agent: one operation at a
/// time. A future dropped before it ends leaves the session usable: the
/// command is expired as a timed-out one is (the agent is resynchronised).
#[derive(Debug)]
pub struct Agent<S = Stream> {
    conn: Conn<S, Client<Heap>>,
    timeout: Option<Duration>,
    exec_timeout: Option<Duration>,
    chunk_size: usize,
    strays: Strays,
}

impl Agent {
    /// Connects to the agent's UNIX socket (the host end of the guest's
    /// virtio-serial port, or `qemu-ga --method unix-listen`) and syncs.
    pub async fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let stream = Stream::connect_unix(path, options.timeout).await?;
        Self::handshake(stream, options).await
    }

    /// Opens a character device that leads to the agent (a serial line or
    /// pty wired to the agent's port) and syncs.
    pub async fn open_device(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::handshake(Stream::open_device(path)?, options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Agent<S> {
    /// Syncs with the agent on `stream`.
    pub async fn handshake(stream: S, options: Options) -> Result<Self, Error> {
        let conn = Conn::new(stream, Client::<Heap>::new(options.config, random_id()));
        let mut agent = Agent {
            conn,
            timeout: options.timeout,
            exec_timeout: options.exec_timeout,
            chunk_size: options.chunk_size.max(1),
            strays: Strays::new(),
        };
        agent.wait_synced(deadline(options.timeout)).await?;
        Ok(agent)
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Resynchronises now: `0xFF`, `guest-sync-delimited` with a fresh
    /// random id, and everything the agent sent before its answer dropped.
    pub async fn sync(&mut self) -> Result<(), Error> {
        self.conn.machine_mut().resync(random_id())?;
        let deadline = deadline(self.timeout);
        self.wait_synced(deadline).await
    }

    async fn wait_synced(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let mut sync = qga::Synchronise::new(synchronised);
        self.conn.run(&mut sync, &mut self.strays, deadline).await?
    }

    /// `Err(Closed)` once the agent has gone.
    fn alive(&self) -> Result<(), Error> {
        match self.conn.machine().state() {
            qga::State::Closed => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Takes the messages that belonged to no waiting command.
    pub fn take_strays(&mut self) -> Vec<String> {
        self.strays.take()
    }

    /// Sends `name` without arguments, then waits for its reply;
    /// `on_return` turns the return value into the result.
    async fn request<T>(
        &mut self,
        name: &str,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.alive()?;
        let id = self.conn.machine_mut().execute(name, None)?;
        self.wait(name, id, on_return).await
    }

    /// Waits for command `id`'s reply (`name`, to say which command).
    async fn wait<T>(
        &mut self,
        name: &str,
        id: Id,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let answer = |answer: qga::Answer<'_>| returned(name, answer, on_return);
        let mut reply = qga::ReplyTo::new(self.conn.machine_mut(), name, id, answer)?;
        let deadline = deadline(self.timeout);
        self.conn.run(&mut reply, &mut self.strays, deadline).await?
    }

    /// Runs `name` with `args` (anything that serialises to a JSON object,
    /// or `()` for none) and decodes its return value into `T`.
    pub async fn execute<T: DeserializeOwned>(&mut self, name: &str, args: impl Serialize) -> Result<T, Error> {
        let args = arguments(args).map_err(Error::Json)?;
        self.execute_json(name, args.as_deref(), |v| v.deserialize().map_err(Error::Json)).await
    }

    /// Runs `name` with arguments given as JSON text (an object, or `None`)
    /// and returns the return value's JSON text as the agent sent it.
    pub async fn execute_raw(&mut self, name: &str, args: Option<&str>) -> Result<String, Error> {
        self.execute_json(name, args.map(str::as_bytes), |v| Ok(v.raw_str().to_owned())).await
    }

    async fn execute_json<T>(
        &mut self,
        name: &str,
        args: Option<&[u8]>,
        on_return: impl FnOnce(Value<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.alive()?;
        let id = send_json(self.conn.machine_mut(), name, args)?;
        self.wait(name, id, on_return).await
    }

    /// `guest-ping`: is the agent there?
    pub async fn ping(&mut self) -> Result<(), Error> {
        self.request("guest-ping", |_| Ok(())).await
    }

    /// `guest-info`: the agent's version and commands.
    pub async fn info(&mut self) -> Result<Info, Error> {
        self.request("guest-info", |v| v.deserialize().map_err(Error::Json)).await
    }

    /// `guest-get-osinfo`: the guest's operating system.
    pub async fn osinfo(&mut self) -> Result<OsInfo, Error> {
        self.request("guest-get-osinfo", |v| v.deserialize().map_err(Error::Json)).await
    }

    /// Runs `path` in the guest with `args` and `env` (`NAME=value`
    /// entries), feeding it `input`, and waits (up to
    /// [`Options::exec_timeout`]) for it to end: `guest-exec`, then
    /// `guest-exec-status` until it has exited.
    pub async fn exec(
        &mut self,
        path: &str,
        args: &[&str],
        env: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Output, Error> {
        self.alive()?;
        let mut exec = qga::Exec::new(self.conn.machine_mut(), path, args, env, input, Output::of)?;
        let with = With { step: self.timeout, ..With::default() };
        let outcome = self.conn.run_with(with, &mut exec, &mut self.strays, deadline(self.exec_timeout)).await;
        exec_outcome(outcome, exec.running(), self.exec_timeout)
    }

    /// Runs the transfer of `path` over `data`, whose chunks pass through
    /// `staging` to and from the caller's `side`: the guest's handle is
    /// closed in any case once open; the caller's own I/O error comes back
    /// when the transfer stopped for it.
    async fn transfer<D: qga::Direction>(
        &mut self,
        path: &str,
        data: D,
        staging: &Mutex<Staging>,
        side: &mut impl Side,
    ) -> Result<u64, Error> {
        self.alive()?;
        let chunk = self.chunk_size as u64;
        let transfer = qga::Transfer::new(self.conn.machine_mut(), path, data, chunk, transferred)?;
        let mut turns = Turns { conn: &mut self.conn, paced: Paced { transfer, staging }, caller: false };
        let outcome = loop {
            let with = With { step: self.timeout, ..With::default() };
            match turns.conn.run_with(with, &mut turns.paced, &mut self.strays, None).await? {
                Turn::Done(outcome) => break outcome,
                Turn::Caller => {}
            }
            // The caller's side, between two chunks: nothing is in flight.
            turns.caller = true;
            let mut buf = {
                let mut staged = lock(staging);
                staged.due = false;
                std::mem::take(&mut staged.buf)
            };
            let failed = side.turn(&mut buf).await.err();
            {
                let mut staged = lock(staging);
                staged.buf = buf;
                staged.error = staged.error.take().or(failed);
            }
            turns.caller = false;
            if let Some(outcome) = turns.paced.transfer.advance(turns.conn.machine_mut())? {
                break outcome;
            }
        };
        transfer_outcome(outcome, lock(staging).error.take())
    }

    /// Streams the guest file `path` into `out`, a chunk at a time, and
    /// flushes `out`; returns how many bytes the file had. The guest's
    /// handle is closed in any case.
    pub async fn read_file_to<W: AsyncWrite + Unpin>(&mut self, path: &str, out: &mut W) -> Result<u64, Error> {
        let staging = Mutex::new(Staging::default());
        let total = self.transfer(path, Fetch(&staging), &staging, &mut WriteOut(&mut *out)).await?;
        out.flush().await?;
        Ok(total)
    }

    /// Reads the guest file `path` whole.
    pub async fn read_file(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.read_file_to(path, &mut out).await?;
        Ok(out)
    }

    /// Streams `input` into the guest file `path` (created, or truncated),
    /// a chunk at a time; returns how many bytes were written. The guest's
    /// handle is closed in any case.
    pub async fn write_file_from<R: AsyncRead + Unpin>(&mut self, path: &str, input: &mut R) -> Result<u64, Error> {
        // The first chunk is read once the file is open.
        let staging = Mutex::new(Staging { due: true, ..Staging::default() });
        let feed = Feed(qga::Writing::new(Staged { staging: &staging, chunk: Vec::new() }));
        let mut side = ReadIn { input, chunk: self.chunk_size };
        self.transfer(path, feed, &staging, &mut side).await
    }

    /// Writes `bytes` to the guest file `path` (created, or truncated).
    pub async fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        self.write_file_from(path, &mut &bytes[..]).await.map(drop)
    }

    /// Shuts the guest down, halts or reboots it (`guest-shutdown`). The
    /// agent does not answer when it complies: this returns once a
    /// following `guest-ping` is answered or the agent goes away, and with
    /// the agent's error if it refuses (as `vmwire_std`'s `Agent::shutdown`).
    pub async fn shutdown(&mut self, how: Shutdown) -> Result<(), Error> {
        self.alive()?;
        let id = self.conn.machine_mut().execute_with("guest-shutdown", |a| a.str("mode", how.mode()).map(drop))?;
        self.wait("guest-shutdown", id, |_| Ok(())).await
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.close();
    }
}

/// A chunk on its way between a file transfer and the caller's reader or
/// writer, which are async: the transfer stops after each chunk's reply
/// ([`Turn::Caller`]) until the caller's side has had its turn.
#[derive(Debug, Default)]
struct Staging {
    /// Reading a file: a chunk's bytes, for the caller's writer. Writing
    /// one: the next chunk, from the caller's reader.
    buf: Vec<u8>,
    /// The caller's side has its turn before the transfer goes on.
    due: bool,
    /// The caller's side failed: the transfer stops (the handle is closed).
    error: Option<io::Error>,
}

fn lock(staging: &Mutex<Staging>) -> MutexGuard<'_, Staging> {
    staging.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the caller's side does in its turn, with the chunk's buffer.
trait Side {
    /// Writes the chunk out, or reads the next one in.
    async fn turn(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
}

/// The caller's writer, for a file read.
struct WriteOut<'w, W>(&'w mut W);

impl<W: AsyncWrite + Unpin> Side for WriteOut<'_, W> {
    async fn turn(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let written = self.0.write_all(buf).await;
        buf.clear();
        written
    }
}

/// The caller's reader, for a file written: a chunk at a time.
struct ReadIn<'r, R> {
    input: &'r mut R,
    chunk: usize,
}

impl<R: AsyncRead + Unpin> Side for ReadIn<'_, R> {
    async fn turn(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(self.chunk, 0);
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(buf.get_mut(n..).unwrap_or_default()).await {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    buf.clear();
                    return Err(e);
                }
            }
        }
        buf.truncate(n);
        Ok(())
    }
}

/// Reading a guest file: [`qga::Reading`] into the staging buffer, whose
/// chunk is then the caller's to write out; stopped once the caller's side failed.
struct Fetch<'s>(&'s Mutex<Staging>);

impl qga::Direction for Fetch<'_> {
    const MODE: &'static str = <qga::Reading<Vec<u8>> as qga::Direction>::MODE;
    const COMMAND: &'static str = <qga::Reading<Vec<u8>> as qga::Direction>::COMMAND;

    fn next<T: Storage>(&mut self, client: &mut Client<T>, handle: i64, chunk: u64) -> Result<qga::Next, qga::Error> {
        if lock(self.0).error.is_some() {
            return Ok(qga::Next::Stopped);
        }
        qga::Reading(Vec::new()).next(client, handle, chunk)
    }

    fn answered(&mut self, value: Value<'_>) -> qga::Chunked {
        let mut staged = lock(self.0);
        let mut reading = qga::Reading(std::mem::take(&mut staged.buf));
        let chunked = reading.answered(value);
        staged.buf = reading.0;
        staged.due = !staged.buf.is_empty();
        chunked
    }
}

/// Writing a guest file: [`qga::Writing`] from the staged chunk; the
/// next chunk is the caller's to read in after each one that went.
struct Feed<'s>(qga::Writing<Staged<'s>>);

/// The chunk the caller's side read in, taken from the staging buffer.
struct Staged<'s> {
    staging: &'s Mutex<Staging>,
    chunk: Vec<u8>,
}

impl qga::Source for Staged<'_> {
    fn chunk(&mut self, max: usize) -> Option<&[u8]> {
        let mut staged = lock(self.staging);
        if staged.error.is_some() {
            return None;
        }
        std::mem::swap(&mut self.chunk, &mut staged.buf);
        self.chunk.truncate(max);
        Some(&self.chunk)
    }
}

impl qga::Direction for Feed<'_> {
    const MODE: &'static str = <qga::Writing<Staged<'_>> as qga::Direction>::MODE;
    const COMMAND: &'static str = <qga::Writing<Staged<'_>> as qga::Direction>::COMMAND;

    fn next<T: Storage>(&mut self, client: &mut Client<T>, handle: i64, chunk: u64) -> Result<qga::Next, qga::Error> {
        self.0.next(client, handle, chunk)
    }

    fn answered(&mut self, value: Value<'_>) -> qga::Chunked {
        let chunked = self.0.answered(value);
        lock(self.0.source.staging).due = matches!(chunked, qga::Chunked::More(_));
        chunked
    }
}

/// Whose turn it is in a transfer.
enum Turn<T> {
    /// The caller's side: a chunk to write out or to read in.
    Caller,
    /// The transfer ended.
    Done(T),
}

/// A transfer that gives the caller's side its turn ([`Turn::Caller`])
/// rather than queue the next chunk's command while a chunk is staged.
struct Paced<'s, O> {
    transfer: O,
    staging: &'s Mutex<Staging>,
}

impl<O: Operation<Client<Heap>>> Operation<Client<Heap>> for Paced<'_, O> {
    type Output = Turn<O::Output>;

    fn offer<'a>(&mut self, event: Event<'a>) -> Offer<Event<'a>, Self::Output>
    where
        Client<Heap>: 'a,
    {
        match self.transfer.offer(event) {
            Offer::Pass(event) => Offer::Pass(event),
            Offer::Taken => Offer::Taken,
            Offer::Done(output) => Offer::Done(Turn::Done(output)),
        }
    }

    fn request(&self) -> Option<&Id> {
        self.transfer.request()
    }

    fn advance(&mut self, client: &mut Client<Heap>) -> Result<Option<Self::Output>, qga::Error> {
        if lock(self.staging).due {
            return Ok(Some(Turn::Caller));
        }
        Ok(self.transfer.advance(client)?.map(Turn::Done))
    }

    fn expire(&mut self, client: &mut Client<Heap>) {
        self.transfer.expire(client);
    }
}

/// A paced transfer and its connection: dropped during the caller's turn
/// (cancelled there), the transfer is expired as the connection's loop
/// expires it when dropped while it runs.
struct Turns<'c, 's, S: AsyncRead + AsyncWrite + Unpin, O: Operation<Client<Heap>>> {
    conn: &'c mut Conn<S, Client<Heap>>,
    paced: Paced<'s, O>,
    caller: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin, O: Operation<Client<Heap>>> Drop for Turns<'_, '_, S, O> {
    fn drop(&mut self) {
        if self.caller {
            self.paced.expire(self.conn.machine_mut());
        }
    }
}
