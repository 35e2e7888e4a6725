//! vmwire-proto: sans-IO state machines for the wire protocols that drive
//! virtual machines.
//!
//! Every protocol here is a [`Machine`]: bytes in, events out, commands
//! encoded into a transmit buffer. No I/O, no clock, no threads, and no
//! allocation unless the `alloc` feature is on and the embedder picks
//! [`buf::Heap`] storage. Adapters (`vmwire-std`, `vmwire-smol`) own the
//! sockets and the timeouts; the machines own every byte of the protocol.
//!
//! | module | protocol |
//! | --- | --- |
//! | **QEMU** | (QMP and QGA share one QAPI core: commands, ids, replies) |
//! | [`qmp`] | QEMU Machine Protocol (client; [`qmp::Server`], the server side); [`qmp::schema`]: the live QAPI schema, path queries, checking arguments |
//! | [`qga`] | the QEMU guest agent (client) |
//! | [`hmp`] | QEMU's human monitor (readline monitor client), and HMP over QMP |
//! | **other peers** | |
//! | [`negotiator`] | negotiator's host/guest channel (caller and responder) |
//! | [`minimega`] | minimega's command socket (client) |
//! | [`http`] | HTTP/1.x framing (client and server) for XML-RPC |
//! | [`xmlrpc`] | XML-RPC: zero-copy parser, writer, serde, client and server machines |
//! | [`xenapi`] | the XenAPI (xapi) over XML-RPC: results, failures, tasks, a session machine |
//! | **shared** | |
//! | [`json`] | the shared JSON framer, zero-copy reader and writer |
//! | [`base64`] | base64 in and out of JSON strings (the guest agent's payloads) and XML-RPC |
//! | [`buf`] | bounded buffers: fixed (no allocator) or growable |
//! | [`op`] | operations: a request in flight, driven by its machine's events |
//! | [`transcript`] | the `.txn` transcript format of `vmwire record` / `vmwire replay`: reader and writer |
//!
//! [`op`] holds what every adapter runs over any of them: an operation (a
//! request in flight) driven by the machine's events, the rest to an inbox.
//! [`ErrorKind`] sorts every protocol's errors (`kind()`).
//!
//! # Features
//! - `alloc`: growable, bounded buffers ([`buf::Heap`]) and owned conversions.
//! - `std`: `alloc`, plus typed decoding with `serde_json`.
//! - `serde`: XML-RPC values to and from Rust types.
//! - `gzip`: decoding gzip-encoded HTTP bodies (needs `alloc`).
//!
//! With no features the crate needs neither `std` nor an allocator.
#![no_std]
#![forbid(unsafe_code)]
// Links to `alloc`-only items (`buf::Heap`, …) resolve in the documented
// build (all features, as docs.rs builds it); without `alloc` they cannot.
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod base64;
pub mod buf;
pub mod hmp;
pub mod http;
pub mod json;
pub mod minimega;
pub mod negotiator;
pub mod op;
mod qapi;
pub mod qga;
pub mod qmp;
pub mod text;
pub mod transcript;
pub mod xenapi;
pub mod xmlrpc;

/// Where `part`, a sub-slice of `whole` (a token a parser found in it),
/// lies in `whole`; `None` if it does not lie there.
pub(crate) fn span_in(whole: &[u8], part: &[u8]) -> Option<core::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// What kind of thing went wrong, across every protocol's `Error` (each
/// has a `kind()`), in the spirit of `embedded-io`'s `ErrorKind`: enough
/// for an adapter or a caller to decide what to do without matching every
/// protocol's variants.
///
/// ```
/// use vmwire_proto::{ErrorKind, Machine, buf::Heap, hmp, qmp};
/// assert_eq!(qmp::Error::ArgumentsNotObject.kind(), ErrorKind::InvalidInput);
/// assert_eq!(hmp::check_line(b"info\rstatus").map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
/// let mut client = qmp::Client::<Heap>::new(qmp::Config::default());
/// let too_many = client.recv_buf().len() + 1;
/// assert_eq!(client.recv_commit(too_many).map_err(|e| e.kind()), Err(ErrorKind::Misuse));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer sent something that is not this protocol: invalid JSON or
    /// framing, a message of the wrong shape, another protocol's opening.
    InvalidData,
    /// The peer sent more than a limit allows (a message, a head, a frame,
    /// a banner); the limit is in the error.
    TooLarge,
    /// The caller's own request cannot be sent as it is (its arguments, an
    /// id already in use, a line readline would split).
    InvalidInput,
    /// A table or queue of the caller's requests is full: wait for replies first.
    Busy,
    /// The transmit buffer is full: write out what is queued first.
    TransmitFull,
    /// A method called in a state that does not allow it.
    WrongState,
    /// The machine was misused (`recv_commit` told of more bytes than
    /// `recv_buf` offered): a bug in the adapter.
    Misuse,
    /// The peer does not offer what was asked (out-of-band execution, a
    /// content encoding).
    Unsupported,
}

/// The face every protocol machine shows its adapter.
///
/// An adapter's whole job, for any protocol: events out until there are none,
/// queued bytes written, bytes read straight into the machine, and end of
/// stream told with [`Machine::recv_eof`] (whose events are drained too):
///
/// ```
/// use std::io::{Read, Write};
/// use vmwire_proto::{Machine, buf::Fixed, qmp};
///
/// fn run(socket: &mut (impl Read + Write)) -> Result<Vec<String>, qmp::Error> {
///     let mut machine = qmp::Client::<Fixed<65536>>::new(qmp::Config::default());
///     let mut seen = Vec::new();
///     loop {
///         while let Some(event) = machine.poll()? {      // 1. events out (Err: fatal)
///             seen.push(format!("{event:?}"));
///             if matches!(event, qmp::Event::Closed) {   //    the last one
///                 return Ok(seen);
///             }
///         }
///         while !machine.transmit().is_empty() {         // 2. bytes the machine queued
///             let Ok(n) = socket.write(machine.transmit()) else { machine.close(); break };
///             machine.transmitted(n);
///         }
///         match socket.read(machine.recv_buf()) {        // 3. bytes in, straight into its buffer
///             Ok(0) | Err(_) => machine.recv_eof(),      //    end of stream: drained next round
///             Ok(n) => machine.recv_commit(n)?,
///         }
///     }
/// }
///
/// // A peer that greets, then hangs up: the greeting, a command that fails, the end.
/// let mut peer = std::io::Cursor::new(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n".to_vec());
/// let seen = run(&mut peer)?;
/// assert!(seen[0].starts_with("Greeting"));
/// assert_eq!(seen.last().map(String::as_str), Some("Closed"));
/// # Ok::<(), qmp::Error>(())
/// ```
///
/// # Errors and error events
///
/// An `Err` from [`Machine::poll`] or [`Machine::recv_commit`] is fatal: the
/// machine was misused (more bytes committed than offered) or cannot go on
/// (its reply does not fit its own transmit buffer), and the adapter closes
/// the connection. Whatever the peer does wrong that the session survives (a
/// malformed message, an error reply, a message nobody asked for) is an
/// event, and the session goes on.
///
/// # Requests and deadlines
///
/// The machine, not the adapter, decides what a passed deadline means for
/// its protocol: the adapter calls [`Machine::expire`] with the request
/// whose time ran out, and carries on with whatever the machine queued or
/// reports (QMP forgets the id, QGA resynchronises, minimega closes, the
/// negotiator caller forgets its call, HTTP closes and abandons).
pub trait Machine {
    /// What [`Machine::poll`] hands out; borrows the machine's receive buffer.
    type Event<'a>
    where
        Self: 'a;
    /// What goes wrong with the machine itself (not the peer's own errors,
    /// which are events). Fatal: see [the trait's documentation](Machine).
    type Error: core::error::Error;
    /// What names one request to [`Machine::expire`]: the command id where
    /// several may be in flight (QMP, QGA, HMP's line number), `()` where
    /// one request at a time is all there is.
    type Request;

    /// Room to read into. Not empty once [`Machine::poll`] has returned `Ok(None)`.
    fn recv_buf(&mut self) -> &mut [u8];

    /// `n` bytes of [`Machine::recv_buf`] were filled. (`0` is taken as
    /// [`Machine::recv_eof`], for callers written before it.)
    fn recv_commit(&mut self, n: usize) -> Result<(), Self::Error>;

    /// The stream ended: no more bytes will come. The machine fails whatever
    /// is pending, through events that [`Machine::poll`] still hands out.
    fn recv_eof(&mut self);

    /// The next event, or `None` until more bytes arrive. `Err` is fatal.
    fn poll(&mut self) -> Result<Option<Self::Event<'_>>, Self::Error>;

    /// Bytes waiting to be written to the peer.
    fn transmit(&self) -> &[u8];

    /// `n` bytes of [`Machine::transmit`] were written.
    fn transmitted(&mut self, n: usize);

    /// Ends the session from this side (the adapter is done, or its stream
    /// failed): nothing more is written, and what is pending is failed
    /// through events. A machine that reconnects (HTTP) abandons what is
    /// outstanding and waits for [`Machine::connected`].
    fn close(&mut self);

    /// The deadline of `request` passed: the protocol's answer to that
    /// (forget it, resynchronise, close). The adapter then reports the
    /// timeout to its caller.
    fn expire(&mut self, request: &Self::Request);

    /// Whether something is queued with no connection to send it on: the
    /// adapter connects, then calls [`Machine::connected`]. Only machines
    /// that outlive their connections (HTTP) ever say yes.
    fn needs_connection(&self) -> bool {
        false
    }

    /// A new connection is up (after [`Machine::needs_connection`]).
    fn connected(&mut self) {}

    /// Whether the connection is up with nothing outstanding, so that
    /// anything arriving now answers nothing: a kept-alive HTTP connection
    /// the server may have closed, which the adapter drops (with
    /// [`Machine::close`]) before queueing the next request
    /// ([`Machine::drop_stale`]). Machines whose session is their
    /// connection say no.
    fn reusable_idle(&self) -> bool {
        false
    }

    /// Before a request is queued: drops the connection ([`Machine::close`])
    /// if it is [reusable and idle](Machine::reusable_idle) yet has
    /// something to say although nothing was asked (`unasked`: the server
    /// closed it, or wrote unasked), so that the request goes out on a
    /// fresh connection ([`Machine::needs_connection`]) instead of failing
    /// on a stale one. `unasked` looks at the connection without waiting,
    /// and is asked only then. Whether the connection was dropped.
    ///
    /// ```
    /// use vmwire_proto::{Machine, buf::Fixed, http::{Client, Config, Endpoint, Error}};
    /// let endpoint = Endpoint { target: "/", host: "h", headers: &[] };
    /// let mut http = Client::<Fixed<4096, 1024>>::new(Config::default(), &endpoint)?;
    /// http.post(&[], |_| Ok::<_, Error>(()))?;
    /// http.connected();
    /// assert!(!http.drop_stale(|| unreachable!())); // a request is outstanding: not asked
    /// let n = http.transmit().len();
    /// http.transmitted(n);
    /// http.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    /// while http.poll()?.is_some() {}
    /// assert!(!http.drop_stale(|| false)); // kept alive, nothing unasked: kept
    /// assert!(http.drop_stale(|| true)); // the server closed it meanwhile: dropped
    /// http.post(&[], |_| Ok::<_, Error>(()))?;
    /// assert!(http.needs_connection());
    /// # Ok::<(), Error>(())
    /// ```
    fn drop_stale(&mut self, unasked: impl FnOnce() -> bool) -> bool {
        let stale = self.reusable_idle() && unasked();
        if stale {
            self.close();
        }
        stale
    }

    /// Copies in as much of `bytes` as fits and returns how many were taken
    /// (fewer than all: poll, then offer the rest). Never signals end of stream.
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, Self::Error> {
        let buf = self.recv_buf();
        let n = buf.len().min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&bytes[..n]);
        self.recv_commit(n)?;
        Ok(n)
    }
}

/// What every machine's [`Machine::recv_commit`] does first: `n == 0` is
/// [`Machine::recv_eof`]; otherwise `commit` takes the `n` bytes into the
/// machine's receive buffer, and says `false` (the caller's misuse,
/// `too_large`: its `CommitTooLarge`) when that is more than
/// [`Machine::recv_buf`] offered.
pub(crate) fn commit_or_eof<M: Machine>(
    machine: &mut M,
    n: usize,
    commit: impl FnOnce(&mut M, usize) -> bool,
    too_large: impl FnOnce(buf::CommitTooLarge) -> M::Error,
) -> Result<(), M::Error> {
    if n == 0 {
        machine.recv_eof();
        Ok(())
    } else if commit(machine, n) {
        Ok(())
    } else {
        Err(too_large(buf::CommitTooLarge { committed: n }))
    }
}

/// The byte half of [`Machine`] (and `close`, the connection's lifecycle),
/// passed through to the inner machine `$inner` of a layered one (XML-RPC
/// over HTTP, the XenAPI over XML-RPC).
macro_rules! delegate_bytes {
    ($inner:ident, $error:ty) => {
        fn recv_buf(&mut self) -> &mut [u8] {
            self.$inner.recv_buf()
        }

        fn recv_commit(&mut self, n: usize) -> Result<(), $error> {
            self.$inner.recv_commit(n)
        }

        fn recv_eof(&mut self) {
            self.$inner.recv_eof();
        }

        fn transmit(&self) -> &[u8] {
            self.$inner.transmit()
        }

        fn transmitted(&mut self, n: usize) {
            self.$inner.transmitted(n);
        }

        fn needs_connection(&self) -> bool {
            self.$inner.needs_connection()
        }

        fn connected(&mut self) {
            self.$inner.connected();
        }

        fn reusable_idle(&self) -> bool {
            self.$inner.reusable_idle()
        }
    };
}
pub(crate) use delegate_bytes;
