//! A QMP multiplexer: one connection to QEMU's monitor ([`Handle`]), any
//! number of clients, each of which sees a QEMU monitor of its own.
//!
//! Each client gets QEMU's own greeting (`oob` offered only if the shared
//! connection has it) and negotiates with the mux; the protocol itself
//! (negotiation, QEMU's refusals, ids, the order of replies) is
//! [`vmwire_proto::qmp::Server`]'s. Every command becomes a call on the
//! [`Handle`], which puts an id of its own on it: the client's id (any
//! JSON value, or none) is kept here and given back with the reply, so
//! clients using the same ids never see each other's replies. Replies to
//! in-band commands go back in order; `exec-oob` replies as they come.
//!
//! Events go to every negotiated client through a queue of its own
//! ([`Options::events`]) and at most [`Options::max_buffered`] bytes waiting
//! for the client's socket: a client that stops reading loses the oldest
//! events (counted in [`Served::missed_events`]) or, with
//! [`Slow::Disconnect`], is disconnected; QEMU and the other clients never
//! wait for it. A client that leaves with commands in flight: their
//! replies are discarded when they come. QEMU going away: every pending
//! command fails (an error reply with the reason) and every client is
//! disconnected.
//!
//! ```no_run
//! use vmwire_smol::qmp::{Options as QmpOptions, Qmp, mux::{Listener, Mux, Options}};
//!
//! # smol::block_on(async {
//! let qmp = Qmp::connect_unix("/run/vm/qmp.sock", QmpOptions { oob: true, ..QmpOptions::default() }).await?;
//! let (handle, driver) = qmp.share();
//! let mux = Mux::new(handle, Options::default());
//! // Hand out a connection in-process...
//! let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
//! let theirs = async_io::Async::new(theirs)?;
//! # drop(ours);
//! // ... or serve a socket, until QEMU goes away.
//! let listener = Listener::bind_unix("/run/vm/qmp-mux.sock")?;
//! futures_lite::future::zip(driver, futures_lite::future::zip(mux.serve(&listener), mux.serve_client(theirs))).await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use vmwire_proto::Machine;
use vmwire_proto::buf::Heap;
use vmwire_proto::json::Value;
use vmwire_proto::qmp::server::{Event as ServerEvent, Server, ServerConfig};

use super::{Error, Handle, RawEvent, Subscription};
pub use crate::conn::Listener;

/// What a client that stops reading gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Slow {
    /// Its queue keeps the newest events; the oldest are dropped and counted.
    #[default]
    DropEvents,
    /// It is disconnected as soon as one event is dropped.
    Disconnect,
}

/// Settings for a [`Mux`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Events queued per client while it does not read.
    pub events: usize,
    /// What happens to a client whose event queue overflows.
    pub slow: Slow,
    /// Most bytes of replies and events waiting for a client's socket before
    /// the mux stops taking more for it (a single larger reply still goes).
    pub max_buffered: usize,
    /// The protocol machine's limits for each client.
    pub server: ServerConfig,
    /// How long a client has to take its last replies once QEMU has gone.
    pub linger: Duration,
}

impl Default for Options {
    /// 256 events, dropped when a client is slow; 64 KiB buffered; QEMU's
    /// limits; one second to linger.
    fn default() -> Self {
        Options {
            events: 256,
            slow: Slow::DropEvents,
            max_buffered: 64 << 10,
            server: ServerConfig::default(),
            linger: Duration::from_secs(1),
        }
    }
}

/// How a client's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed its connection.
    Left,
    /// QEMU went away.
    QemuGone,
    /// The client stopped reading and lost an event ([`Slow::Disconnect`]).
    TooSlow,
}

/// What [`Mux::serve_client`] reports of a client's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// How it ended.
    pub ended: Ended,
    /// Commands passed on to QEMU.
    pub commands: u64,
    /// Events dropped because the client did not read them in time.
    pub missed_events: u64,
}

/// The multiplexer: see the [module documentation](self).
#[derive(Debug)]
pub struct Mux {
    handle: Handle,
    options: Options,
    missed: AtomicU64,
}

/// A call on the shared connection, for one client's command.
type Call<'h> = Pin<Box<dyn Future<Output = Result<String, Error>> + 'h>>;

/// A command in flight: the client's id as it wrote it, and the call.
struct InFlight<'h> {
    id: Option<String>,
    oob: bool,
    call: Call<'h>,
}

impl Mux {
    /// A multiplexer over `handle` (share the connection with `oob` asked
    /// for, so that clients may have it). Its calls have no time limit: a
    /// client's slow command is not failed by the mux.
    pub fn new(handle: Handle, options: Options) -> Self {
        Mux { handle: handle.with_timeout(None), options, missed: AtomicU64::new(0) }
    }

    /// The shared connection.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Events dropped for slow clients so far, over all clients.
    pub fn missed_events(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Serves one client on `stream` (any futures-io stream: an accepted
    /// socket, one end of `UnixStream::pair()` handed out in-process) until
    /// it leaves or QEMU goes away. `Err` when its socket fails.
    pub async fn serve_client<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> io::Result<Served> {
        let mut server = Server::<Heap>::new(self.options.server);
        let greeting = self.handle.greeting();
        let oob = self.handle.oob();
        let capabilities: Vec<&str> =
            greeting.capabilities.iter().map(String::as_str).filter(|c| *c != "oob" || oob).collect();
        server.greet(greeting.version, &greeting.package, &capabilities).map_err(io::Error::other)?;
        let events = self.handle.subscribe_raw(self.options.events.max(1));
        let mut client = Client {
            mux: self,
            stream,
            server,
            in_band: VecDeque::new(),
            out_of_band: Vec::new(),
            events,
            eof: false,
            gone: None,
            commands: 0,
        };
        let result = future::poll_fn(|cx| client.poll(cx)).await;
        let missed = client.events.missed();
        self.missed.fetch_add(missed, Ordering::Relaxed);
        result.map(|ended| Served { ended, commands: client.commands, missed_events: missed })
    }

    /// Accepts clients on `listener` and serves each (on an executor of its
    /// own inside this future: nothing needs to be `Send`), until QEMU goes
    /// away; then waits for the clients to be told and returns `Ok`. `Err`
    /// when accepting fails (the clients are dropped).
    pub async fn serve(&self, listener: &Listener) -> io::Result<()> {
        let executor = async_executor::LocalExecutor::new();
        let mut gone = self.handle.subscribe_raw(1);
        executor
            .run(async {
                let mut clients = Vec::new();
                loop {
                    let next = future::or(async { Some(listener.accept().await) }, async {
                        while gone.next().await.is_some() {}
                        None
                    });
                    match next.await {
                        Some(Ok(stream)) => {
                            clients.retain(|c: &async_executor::Task<()>| !c.is_finished());
                            clients.push(executor.spawn(async move {
                                // A client's socket failing ends that client only.
                                if let Ok(served) = self.serve_client(stream).await
                                    && served.missed_events > 0
                                {
                                    log::warn!(
                                        "a client lost {} events: it did not read them in time (its queue holds {})",
                                        served.missed_events,
                                        self.options.events.max(1)
                                    );
                                }
                            }));
                        }
                        Some(Err(e)) if transient(&e) => {}
                        Some(Err(e)) => return Err(e),
                        None => break,
                    }
                }
                for client in clients {
                    client.await;
                }
                Ok(())
            })
            .await
    }
}

/// Accept errors that concern one connection, not the listener.
fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

/// One client's session.
struct Client<'m, S> {
    mux: &'m Mux,
    stream: S,
    server: Server<Heap>,
    /// In-band commands in flight, in the order they came: answered in it.
    in_band: VecDeque<InFlight<'m>>,
    out_of_band: Vec<InFlight<'m>>,
    events: Subscription<RawEvent>,
    eof: bool,
    /// QEMU has gone: the time left for the last replies.
    gone: Option<Timer>,
    commands: u64,
}

/// Passes over the sources before letting other tasks run.
const ROUNDS_PER_POLL: usize = 32;

impl<'m, S: AsyncRead + AsyncWrite + Unpin> Client<'m, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Ended>> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            // The client's messages: commands out, refusals queued.
            while let Some(event) = self.server.poll().map_err(io::Error::other)? {
                progress = true;
                match event {
                    ServerEvent::Command(request) => {
                        let name = request.name.to_string();
                        let args = request.arguments.map(|a| a.raw_str().to_owned());
                        let id = request.id.map(|id| id.raw_str().to_owned());
                        let oob = request.oob;
                        let handle = &self.mux.handle;
                        let call: Call<'m> = Box::pin(async move {
                            match oob {
                                true => handle.execute_oob_raw(&name, args.as_deref()).await,
                                false => handle.execute_raw(&name, args.as_deref()).await,
                            }
                        });
                        self.commands += 1;
                        let in_flight = InFlight { id, oob, call };
                        match oob {
                            true => self.out_of_band.push(in_flight),
                            false => self.in_band.push_back(in_flight),
                        }
                    }
                    ServerEvent::Closed => return Poll::Ready(Ok(Ended::Left)),
                    ServerEvent::Negotiated { .. } | ServerEvent::Refused { .. } => {}
                }
            }
            // Replies: in-band ones in order, out-of-band ones as they come.
            while self.has_room() {
                let Some(head) = self.in_band.front_mut() else { break };
                let Poll::Ready(result) = head.call.as_mut().poll(cx) else { break };
                if let Some(InFlight { id, oob, .. }) = self.in_band.pop_front() {
                    self.reply(id, oob, result)?;
                }
                progress = true;
            }
            let mut i = 0;
            while i < self.out_of_band.len() && self.has_room() {
                if let Poll::Ready(result) = self.out_of_band[i].call.as_mut().poll(cx) {
                    let InFlight { id, oob, .. } = self.out_of_band.swap_remove(i);
                    self.reply(id, oob, result)?;
                    progress = true;
                } else {
                    i += 1;
                }
            }
            // Events (dropped before negotiation, as QEMU sends none then).
            while self.gone.is_none() && self.has_room() {
                match self.events.poll_event(cx) {
                    Poll::Ready(Some(event)) => {
                        let data = event.data.as_deref().map(|d| Value::parse(d.as_bytes())).transpose();
                        let data = data.map_err(io::Error::other)?;
                        self.server.send_event(&event.name, event.timestamp, data).map_err(io::Error::other)?;
                        progress = true;
                    }
                    Poll::Ready(None) => {
                        self.gone = Some(Timer::after(self.mux.options.linger));
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            // QEMU gone while the client has no room for its events: the
            // end is learnt all the same, so that the time left bounds it.
            if self.gone.is_none() && !self.has_room() && self.events.poll_closed(cx).is_ready() {
                self.gone = Some(Timer::after(self.mux.options.linger));
                progress = true;
            }
            if self.mux.options.slow == Slow::Disconnect && self.events.missed() > 0 {
                return Poll::Ready(Ok(Ended::TooSlow));
            }
            // Bytes to the client.
            while !self.server.transmit().is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, self.server.transmit()) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.server.transmitted(n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) if gone(&e) => return Poll::Ready(Ok(Ended::Left)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            // Bytes from the client (none while the machine waits for
            // replies); after QEMU has gone too, so that what the client
            // sent before it learnt of that gets its failed reply, not a
            // connection reset over its unread command.
            let mut read = false;
            if !self.eof {
                let buf = self.server.recv_buf();
                if !buf.is_empty() {
                    match Pin::new(&mut self.stream).poll_read(cx, buf) {
                        Poll::Ready(Ok(0)) => {
                            self.eof = true;
                            self.server.recv_eof();
                            progress = true;
                        }
                        Poll::Ready(Ok(n)) => {
                            self.server.recv_commit(n).map_err(io::Error::other)?;
                            progress = true;
                            read = true;
                        }
                        Poll::Ready(Err(e)) if gone(&e) => return Poll::Ready(Ok(Ended::Left)),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
            }
            if let Some(linger) = &mut self.gone {
                // QEMU has gone: the calls fail at once; once their replies are
                // written (or the time is up), the client is disconnected.
                let answered = !read && self.in_band.is_empty() && self.out_of_band.is_empty();
                if (answered && self.server.transmit().is_empty()) || Pin::new(linger).poll(cx).is_ready() {
                    return Poll::Ready(Ok(Ended::QemuGone));
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy: let the other clients run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether the client's buffer may take another reply or event.
    fn has_room(&self) -> bool {
        self.server.transmit().len() < self.mux.options.max_buffered
    }

    /// The reply to a command, under the client's own id.
    fn reply(&mut self, id: Option<String>, oob: bool, result: Result<String, Error>) -> io::Result<()> {
        let id = id.as_deref().map(|id| Value::parse(id.as_bytes())).transpose().map_err(io::Error::other)?;
        let sent = match result {
            Ok(value) => {
                let value = Value::parse(value.as_bytes()).map_err(io::Error::other)?;
                self.server.send_return(id, oob, value)
            }
            Err(Error::Qemu(e)) => self.server.send_error(id, oob, &e.class, &e.desc),
            Err(e) => self.server.send_error(id, oob, "GenericError", &format!("vmwire qmp-mux: {e}")),
        };
        sent.map_err(io::Error::other)
    }
}

/// Errors that mean the client has gone.
fn gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}
