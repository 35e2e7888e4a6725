//! A fake peer that serves a recorded transcript, for testing programs that
//! use vmwire (or any other client) without the real QEMU, qemu-ga or daemon.
//!
//! A [`Peer`] listens on a UNIX socket in a temporary directory, accepts one
//! client, and plays the server's side of a [`transcript`]:
//! it sends what the server sent and expects what the client sent, in the
//! recorded order. Events keep their recorded place relative to replies.
//!
//! How the client's bytes are compared depends on the [`Protocol`]:
//!
//! - QMP and QGA: message by message, as JSON values, with the `id` member
//!   left out. The id the client chose is remembered against the recorded
//!   one and written back into the reply, so a client that numbers its
//!   commands differently still replays (a reply whose recorded message had
//!   no id gets the client's, and the other way round). For QGA, the id of
//!   `guest-sync` / `guest-sync-delimited` is mapped the same way (it comes
//!   back as the reply's `return`), the client's `0xFF` resync bytes are not
//!   compared, and a sync the transcript does not expect is answered at once
//!   (every client opens with one, with a random id). The passwords and keys
//!   a command carries ([`vmwire_proto::qmp::secret_spans`]) are not compared:
//!   a recording has them blanked out.
//! - minimega: message by message, as JSON values (it has no ids).
//! - HMP, negotiator: byte for byte, as a stream (how the client cuts its
//!   writes does not matter).
//! - XML-RPC: request by request: the HTTP method and path, and the call's
//!   method name and params as values (not the XML text, which every client
//!   formats its own way, nor the headers: `Host`, `User-Agent`,
//!   `Content-Length`… vary with the client). A body that is not a
//!   `methodCall` is compared byte for byte. A XenAPI call's passwords
//!   ([`vmwire_proto::xenapi::secret_params`]) are not compared. A recorded HTTP/1.0 response (or
//!   one with `Connection: close`) ends its connection, as it did for the
//!   real server; the next request is expected on a new connection.
//!
//! A difference is an [`Error::Mismatch`] that shows the expected and the
//! actual message; the peer then closes the connection (so the client sees
//! the end of the stream, never a hang). [`Peer::finish`] says what went
//! wrong, if anything.
//!
//! [`Fault`]s change what the peer sends, to see how a client copes with
//! what real peers do now and then: replies split across reads, delays,
//! a connection closed mid-message, events before the greeting or before a
//! return, duplicate and unknown ids, garbage before a QGA resync, an
//! oversized reply.
//!
//! A test of a program's own code against a QMP session recorded with
//! `vmwire record qmp` (here one of vmwire's fixtures), its replies cut into
//! one-byte reads:
//!
//! ```
//! use vmwire_std::qmp::{Options, Qmp};
//! use vmwire_std::replay::{Fault, Peer, Protocol};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/qmp/01_greeting_caps_noid.txn");
//! let peer = Peer::start_file(Protocol::Qmp, file, &[Fault::Split(1)])?;
//!
//! // The code under test connects to `peer.path()` instead of QEMU's socket.
//! let mut qmp = Qmp::connect_unix(peer.path(), Options::default())?;
//! let status: serde_json::Value = qmp.execute("query-status", ())?;
//! assert_eq!(status["status"], "prelaunch");
//! let version: serde_json::Value = qmp.execute("query-version", ())?;
//! assert_eq!(version["qemu"]["major"], 7);
//! qmp.close();
//!
//! // Did the code send everything the recorded client sent, and nothing else?
//! peer.finish()?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use serde_json::Value as Json;
use vmwire_proto::buf::Bounded;
use vmwire_proto::json::{Framer, Limits, Value};
use vmwire_proto::transcript::{self, Direction, Reader};

use crate::record::{Address, Listener};
use crate::text::escape;
use crate::transport::{Stream, wait_ready};

/// The protocols a transcript can be replayed (and recorded) for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// QEMU Machine Protocol.
    Qmp,
    /// The QEMU guest agent.
    Qga,
    /// QEMU's human monitor (readline).
    Hmp,
    /// negotiator's host/guest channel.
    Negotiator,
    /// minimega's command socket.
    Minimega,
    /// XML-RPC (and XenAPI) over HTTP/1.x.
    Xmlrpc,
}

impl Protocol {
    /// Every protocol, in the order of [`Protocol::name`]'s list.
    pub const ALL: [Protocol; 6] =
        [Protocol::Qmp, Protocol::Qga, Protocol::Hmp, Protocol::Negotiator, Protocol::Minimega, Protocol::Xmlrpc];

    /// The name used on the command line and in `protocol:` notes: `qmp`,
    /// `qga`, `hmp`, `negotiator`, `minimega`, `xmlrpc`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Qmp => "qmp",
            Protocol::Qga => "qga",
            Protocol::Hmp => "hmp",
            Protocol::Negotiator => "negotiator",
            Protocol::Minimega => "minimega",
            Protocol::Xmlrpc => "xmlrpc",
        }
    }

    /// The protocol a transcript names in its `protocol: NAME` note.
    pub fn of_transcript(text: &[u8]) -> Option<Protocol> {
        let name = transcript::protocol(text)?;
        std::str::from_utf8(name).ok()?.parse().ok()
    }

    /// Whether messages are JSON values compared with ids mapped.
    fn is_qapi(self) -> bool {
        matches!(self, Protocol::Qmp | Protocol::Qga)
    }

    /// Whether messages are framed and compared as JSON values.
    fn is_json(self) -> bool {
        self.is_qapi() || self == Protocol::Minimega
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s || (s == "xenapi" && *p == Protocol::Xmlrpc))
            .ok_or_else(|| format!("unknown protocol {:?} (expected qmp, qga, hmp, negotiator, minimega or xmlrpc)", s))
    }
}

/// A fault the peer injects into what it sends. Each is also a
/// `vmwire replay` flag (named after the variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `--split N`: write every server message in pieces of `N` bytes
    /// (`1`: a byte at a time), one write each, with a pause of 200 µs
    /// between pieces so that the client reads them apart (a byte at a
    /// time, a 207 KB reply takes about 40 s).
    Split(usize),
    /// `--delay MS`: wait this long before every server message.
    Delay(Duration),
    /// `--close-after K`: close the connection after the `K`-th server
    /// message (counting from 1, the greeting or banner included).
    CloseAfter(usize),
    /// `--close-mid K`: send the first half of the `K`-th server message,
    /// then close.
    CloseMid(usize),
    /// `--event-before-greeting` (QMP): an event before the greeting.
    EventBeforeGreeting,
    /// `--event-before-return` (QMP, QGA): an event before every reply
    /// (QMP: after the reply to `qmp_capabilities`, as QEMU sends no event
    /// before it and clients such as `qemu.qmp` refuse one).
    EventBeforeReturn,
    /// `--duplicate-id` (QMP, QGA): every reply sent twice.
    DuplicateId,
    /// `--unknown-id` (QMP, QGA): before every reply, a reply with an id
    /// the client never used.
    UnknownId,
    /// `--garbage-before-resync` (QGA): bytes that are not JSON (a value cut
    /// short) before every `0xFF` the agent sends.
    GarbageBeforeResync,
    /// `--oversized N` (QMP, QGA): the first reply to a command (not the
    /// handshake's) is replaced by one whose `return` is a string of `N`
    /// bytes.
    Oversized(usize),
}

impl Fault {
    /// Whether the fault means anything for `protocol`.
    pub fn applies_to(self, protocol: Protocol) -> bool {
        match self {
            Fault::Split(_) | Fault::Delay(_) | Fault::CloseAfter(_) | Fault::CloseMid(_) => true,
            Fault::EventBeforeGreeting => protocol == Protocol::Qmp,
            Fault::GarbageBeforeResync => protocol == Protocol::Qga,
            Fault::EventBeforeReturn | Fault::DuplicateId | Fault::UnknownId | Fault::Oversized(_) => {
                protocol.is_qapi()
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Split(n) => write!(f, "--split {n}"),
            Fault::Delay(d) => write!(f, "--delay {}", d.as_millis()),
            Fault::CloseAfter(k) => write!(f, "--close-after {k}"),
            Fault::CloseMid(k) => write!(f, "--close-mid {k}"),
            Fault::EventBeforeGreeting => f.write_str("--event-before-greeting"),
            Fault::EventBeforeReturn => f.write_str("--event-before-return"),
            Fault::DuplicateId => f.write_str("--duplicate-id"),
            Fault::UnknownId => f.write_str("--unknown-id"),
            Fault::GarbageBeforeResync => f.write_str("--garbage-before-resync"),
            Fault::Oversized(n) => write!(f, "--oversized {n}"),
        }
    }
}

/// What went wrong in a replay.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transcript could not be read.
    Transcript(transcript::Error),
    /// A fault that does not apply to the protocol.
    Fault(Fault, Protocol),
    /// The socket failed.
    Io(io::Error),
    /// The client sent something else than the transcript says.
    Mismatch {
        /// Which client message (counting from 1).
        message: usize,
        /// What the transcript has (escaped for a terminal).
        expected: String,
        /// What the client sent (escaped for a terminal).
        actual: String,
    },
    /// The client sent more after the transcript's end.
    Unexpected {
        /// What the client sent (escaped for a terminal).
        actual: String,
    },
    /// The client closed the connection (or the peer was stopped) while
    /// the transcript still expected this message from it.
    Incomplete {
        /// What the transcript still expected (escaped for a terminal).
        expected: String,
    },
    /// No client connected before the peer was stopped.
    NoClient,
}

impl Error {
    /// Whether the client went away: it closed its end, or a write found it gone.
    fn client_left(&self) -> bool {
        match self {
            Error::Incomplete { .. } => true,
            Error::Io(e) => matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transcript(e) => write!(f, "{e}"),
            Error::Fault(fault, protocol) => write!(f, "{fault} does not apply to {protocol}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Mismatch { message, expected, actual } => {
                write!(f, "client message {message} differs from the transcript: expected {expected}, got {actual}")
            }
            Error::Unexpected { actual } => write!(f, "the client sent more than the transcript has: {actual}"),
            Error::Incomplete { expected } => {
                write!(f, "the session ended before the client sent what the transcript has next: {expected}")
            }
            Error::NoClient => f.write_str("no client connected"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Shows peer or client bytes on one line, escaped, cut at 300 bytes.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(bytes.get(..MAX).unwrap_or(bytes));
    let more = if bytes.len() > MAX { format!("… ({} bytes)", bytes.len()) } else { String::new() };
    format!("{}{more}", escape(&text))
}

/// The largest JSON message or HTTP message read from a transcript or a client.
const MAX_MESSAGE: usize = 64 << 20;

/// What the server does next, or what it waits for.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Send these bytes; `message` is where a complete JSON message lies in
    /// them (QMP/QGA), to be read and rewritten.
    Send { bytes: Vec<u8>, message: Option<(usize, usize)> },
    /// Wait for the client's next message (QMP/QGA: one JSON value; HTTP:
    /// one request), or for these bytes of its stream (the others).
    Expect(Vec<u8>),
    /// The client closed its end (before the server did): wait for that,
    /// as the recorded server did, rather than close under a client that
    /// still reads.
    ClientCloses,
    /// The server closed the connection.
    Close,
}

/// The steps of `text` for `protocol`.
fn script(protocol: Protocol, text: &[u8]) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    let mut server = Splitter::new(protocol);
    let mut client = Splitter::new(protocol);
    // The first bytes of the HTTP response being recorded.
    let mut response: Option<&[u8]> = None;
    let end_response = |steps: &mut Vec<Step>, response: &mut Option<&[u8]>| {
        if response.take().is_some_and(http_closes) && steps.last() != Some(&Step::Close) {
            steps.push(Step::Close);
        }
    };
    for record in Reader::new(text) {
        let record = record.map_err(Error::Transcript)?;
        match record.direction {
            Direction::Note => {}
            Direction::ClientToServer => {
                server.flush(&mut steps, true);
                end_response(&mut steps, &mut response);
                client.client(record.bytes, &mut steps);
                // (A close after the server's own ends nothing more.)
                if record.bytes.is_empty() && steps.last() != Some(&Step::Close) {
                    client.flush(&mut steps, false);
                    steps.push(Step::ClientCloses);
                }
            }
            Direction::ServerToClient => {
                client.flush(&mut steps, false);
                if record.bytes.is_empty() {
                    server.flush(&mut steps, true);
                    response = None;
                    if steps.last() != Some(&Step::Close) {
                        steps.push(Step::Close);
                    }
                } else {
                    if protocol == Protocol::Xmlrpc && response.is_none() {
                        response = Some(record.bytes);
                    }
                    server.server(record.bytes, &mut steps);
                }
            }
        }
    }
    server.flush(&mut steps, true);
    client.flush(&mut steps, false);
    end_response(&mut steps, &mut response);
    Ok(steps)
}

/// Cuts one direction of a transcript into messages, with the protocol's own framer.
struct Splitter {
    protocol: Protocol,
    framer: Framer<Bounded<u8>>,
    /// Bytes not yet in a step.
    pending: Vec<u8>,
    /// Where the last complete message lies in `pending`.
    message: Option<(usize, usize)>,
}

impl Splitter {
    fn new(protocol: Protocol) -> Self {
        Splitter { protocol, framer: json_framer(protocol), pending: Vec::new(), message: None }
    }

    /// Server bytes: QMP/QGA cut after each message and the white space after
    /// it; the other protocols keep the recorded writes.
    fn server(&mut self, bytes: &[u8], steps: &mut Vec<Step>) {
        if !self.protocol.is_json() {
            steps.push(Step::Send { bytes: bytes.to_vec(), message: None });
            return;
        }
        for &b in bytes {
            if self.message.is_some() && !b.is_ascii_whitespace() {
                self.flush(steps, true);
            }
            self.pending.push(b);
            self.framer.receive(&[b]);
            if let Some(Ok(m)) = self.framer.next() {
                let end = self.pending.len();
                self.message = Some((end.saturating_sub(m.raw().len()), end));
            }
        }
    }

    /// Client bytes: QMP/QGA one step per message; the others one step per
    /// run of client records.
    fn client(&mut self, bytes: &[u8], steps: &mut Vec<Step>) {
        if !self.protocol.is_json() {
            self.pending.extend_from_slice(bytes);
            return;
        }
        for &b in bytes {
            self.framer.receive(&[b]);
            match self.framer.next() {
                Some(Ok(m)) => steps.push(Step::Expect(m.raw().to_vec())),
                // Invalid JSON in the recording is not expected of the client.
                Some(Err(_)) => {}
                None => {}
            }
        }
    }

    /// Ends the current step (`server`: a send; else an expectation).
    fn flush(&mut self, steps: &mut Vec<Step>, server: bool) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let message = self.message.take();
        steps.push(if server { Step::Send { bytes, message } } else { Step::Expect(bytes) });
    }
}

/// The JSON framer for one direction of `protocol` (QGA: `0xFF` delimits).
pub(crate) fn json_framer(protocol: Protocol) -> Framer<Bounded<u8>> {
    let framer = Framer::new(Bounded::new(MAX_MESSAGE), Limits { max_message: MAX_MESSAGE, max_depth: 1024 });
    if protocol == Protocol::Qga { framer.with_delimiter(0xFF) } else { framer }
}

/// A fake peer serving one transcript on a UNIX socket; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct Peer {
    address: Address,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), Error>>>,
    /// The temporary directory that holds the socket (none for [`Peer::listen`]).
    _dir: Option<tempfile::TempDir>,
}

impl Peer {
    /// Serves `transcript` (the text of a `.txn` file) for one client on a
    /// socket in a new temporary directory ([`Peer::path`]).
    pub fn start(protocol: Protocol, transcript: &[u8], faults: &[Fault]) -> Result<Peer, Error> {
        let dir = tempfile::Builder::new().prefix("vmwire-replay").tempdir()?;
        let path = dir.path().join(format!("{protocol}.sock"));
        let mut peer = Peer::listen_at(protocol, transcript, faults, &Address::Unix(path))?;
        peer._dir = Some(dir);
        Ok(peer)
    }

    /// Serves the transcript in the file at `file`; see [`Peer::start`].
    pub fn start_file(protocol: Protocol, file: impl AsRef<Path>, faults: &[Fault]) -> Result<Peer, Error> {
        let file = file.as_ref();
        let text = std::fs::read(file).map_err(|e| crate::transport::at(file, e))?;
        Peer::start(protocol, &text, faults)
    }

    /// Serves `transcript` for one client on a UNIX socket bound at `path`
    /// (not in use, see [`Listener::bind`]; it is removed when the peer is dropped).
    pub fn listen(protocol: Protocol, transcript: &[u8], faults: &[Fault], path: &Path) -> Result<Peer, Error> {
        Peer::listen_at(protocol, transcript, faults, &Address::Unix(path.to_path_buf()))
    }

    /// Serves `transcript` for one client on `address`: a UNIX socket (not in
    /// use, see [`Listener::bind`]; removed when the peer is dropped) or `HOST:PORT` (port
    /// `0`: one the system picks, see [`Peer::address`]), for clients that
    /// only speak TCP.
    pub fn listen_at(
        protocol: Protocol,
        transcript: &[u8],
        faults: &[Fault],
        address: &Address,
    ) -> Result<Peer, Error> {
        if let Some(&fault) = faults.iter().find(|f| !f.applies_to(protocol)) {
            return Err(Error::Fault(fault, protocol));
        }
        let steps = script(protocol, transcript)?;
        let listener = Listener::bind(address)?;
        let address = listener.address()?;
        let stop = Arc::new(AtomicBool::new(false));
        let session = Session::new(protocol, faults, stop.clone());
        let thread = std::thread::Builder::new()
            .name("vmwire-replay".into())
            .spawn(move || session.accept_and_serve(&listener, steps))?;
        Ok(Peer { address, stop, thread: Some(thread), _dir: None })
    }

    /// The UNIX socket to connect to (empty for a TCP peer: see [`Peer::address`]).
    pub fn path(&self) -> &Path {
        match &self.address {
            Address::Unix(path) => path,
            Address::Tcp(_) => Path::new(""),
        }
    }

    /// The address to connect to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Stops the peer once it has nothing left to send on its own (it stops
    /// waiting for the client) and says whether the client replayed the
    /// whole transcript.
    pub fn finish(mut self) -> Result<(), Error> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits until the session ends by itself: the transcript is done and the
    /// client has closed its end, or something went wrong.
    pub fn wait(mut self) -> Result<(), Error> {
        self.join()
    }

    fn join(&mut self) -> Result<(), Error> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Io(io::Error::other("the replay thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join();
    }
}

/// How often a waiting peer looks at its stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Pause between the pieces of a split message, so that the client reads
/// them one by one.
const SPLIT_PAUSE: Duration = Duration::from_micros(200);

/// An id mapping: a client message's id and the recorded one.
#[derive(Debug)]
struct Mapped {
    recorded: Option<Json>,
    client: Option<Json>,
    /// The command's name, to tell the handshake from the rest.
    command: String,
}

/// One connection being served.
struct Session {
    protocol: Protocol,
    faults: Vec<Fault>,
    stop: Arc<AtomicBool>,
    /// The client's bytes not yet matched (byte protocols) or framed (JSON).
    inbox: Vec<u8>,
    framer: Framer<Bounded<u8>>,
    /// XML-RPC: the client's request in `inbox`, read as it comes.
    requests: HttpRequests,
    eof: bool,
    /// Whether this connection's client has sent a byte.
    heard: bool,
    /// Whether a client came and went without a byte (see [`Session::accept_and_serve`]).
    probed: bool,
    /// Client messages seen.
    received: usize,
    /// Server messages sent.
    sent: usize,
    ids: Vec<Mapped>,
    /// QGA syncs: recorded id, the client's id.
    syncs: Vec<(Json, Json)>,
    oversized_done: bool,
    unknown: u64,
    /// Whether an event may come now: QEMU sends none on a QMP connection
    /// before its reply to `qmp_capabilities` (the first reply).
    events_allowed: bool,
}

/// Why serving a connection stopped before the transcript's end.
enum Halt {
    /// The transcript's server closed the connection here (`< 0`).
    Closed,
    /// A fault closed the connection: the replay ends.
    Fault,
    /// Something went wrong.
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Failed(e)
    }
}

impl Session {
    fn new(protocol: Protocol, faults: &[Fault], stop: Arc<AtomicBool>) -> Self {
        Session {
            protocol,
            faults: faults.to_vec(),
            stop,
            inbox: Vec::new(),
            framer: json_framer(protocol),
            requests: HttpRequests::new(),
            eof: false,
            heard: false,
            probed: false,
            received: 0,
            sent: 0,
            ids: Vec::new(),
            syncs: Vec::new(),
            oversized_done: false,
            events_allowed: protocol != Protocol::Qmp,
            unknown: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Serves `steps`, one connection after another: a `Close` step ends a
    /// connection, and the steps after it go to the next client. A client
    /// that closes without sending a byte where the transcript expects one
    /// (a look at whether the path is served, such as another `vmwire
    /// replay`'s before it binds) is no session: its steps go to the next.
    fn accept_and_serve(mut self, listener: &Listener, steps: Vec<Step>) -> Result<(), Error> {
        let mut rest = &steps[..];
        loop {
            let mut stream = loop {
                if wait_ready(listener.as_fd(), PollFlags::IN, Some(Instant::now() + TICK))? {
                    break listener.accept()?;
                }
                if self.stopped() {
                    if rest.len() == steps.len() && !self.probed {
                        return Err(Error::NoClient);
                    }
                    return match rest.iter().find_map(|s| if let Step::Expect(e) = s { Some(e) } else { None }) {
                        Some(expected) => Err(Error::Incomplete { expected: show(expected) }),
                        None => Ok(()),
                    };
                }
            };
            match &stream {
                Stream::Unix(s) => s.set_write_timeout(Some(TICK))?,
                Stream::Tcp(s) => s.set_write_timeout(Some(TICK))?,
                _ => {}
            }
            let (start, sent) = (rest, self.sent);
            let result = self.serve(&mut stream, &mut rest);
            let _ = stream.shutdown();
            match result {
                Ok(()) => return Ok(()),
                Err(Halt::Failed(e)) if !self.heard && e.client_left() => {
                    (rest, self.sent, self.probed) = (start, sent, true);
                }
                Err(Halt::Closed) if !rest.is_empty() => {}
                Err(Halt::Fault) | Err(Halt::Closed) => return Ok(()),
                Err(Halt::Failed(e)) => return Err(e),
            }
            self.heard = false;
            self.inbox.clear();
            self.framer = json_framer(self.protocol);
            self.requests = HttpRequests::new();
            self.eof = false;
            self.events_allowed = self.protocol != Protocol::Qmp;
        }
    }

    /// Serves steps from the front of `steps` on one connection.
    fn serve(&mut self, stream: &mut Stream, steps: &mut &[Step]) -> Result<(), Halt> {
        while let Some((step, rest)) = steps.split_first() {
            *steps = rest;
            match step {
                Step::Send { bytes, message } => self.send(stream, bytes, *message)?,
                Step::Expect(expected) => self.expect(stream, expected)?,
                Step::ClientCloses => self.client_closes(stream)?,
                Step::Close => return Err(Halt::Closed),
            }
        }
        // The transcript is done: the client may only close.
        self.client_closes(stream)
    }

    /// Waits for the end of the client's stream (or the peer's stop):
    /// anything but white space before it is an error.
    fn client_closes(&mut self, stream: &mut Stream) -> Result<(), Halt> {
        loop {
            let Some(actual) = self.next_client_message(stream)? else { return Ok(()) };
            if !actual.iter().all(u8::is_ascii_whitespace) {
                return Err(Halt::Failed(Error::Unexpected { actual: show(&actual) }));
            }
        }
    }

    /// Reads more from the client; `false` at the end of its stream or when stopped.
    fn read_more(&mut self, stream: &mut Stream) -> Result<bool, Error> {
        loop {
            if self.eof {
                return Ok(false);
            }
            if !wait_ready(stream.as_fd(), PollFlags::IN, Some(Instant::now() + TICK))? {
                if self.stopped() {
                    return Ok(false);
                }
                continue;
            }
            let mut buf = [0u8; 65536];
            match stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if self.inbox.len() + n > MAX_MESSAGE {
                        let what = format!("the client sent more than {MAX_MESSAGE} bytes without a complete message");
                        return Err(io::Error::new(io::ErrorKind::InvalidData, what).into());
                    }
                    self.inbox.extend_from_slice(buf.get(..n).unwrap_or_default());
                    self.heard = true;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The client's next message (QMP/QGA: a JSON value; XML-RPC: a request,
    /// as `METHOD PATH\n` + body; others: whatever arrived), or `None` at the end.
    fn next_client_message(&mut self, stream: &mut Stream) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(message) = self.frame_client()? {
                return Ok(Some(message));
            }
            if !self.read_more(stream)? {
                return Ok(if self.inbox.is_empty() { None } else { Some(std::mem::take(&mut self.inbox)) });
            }
        }
    }

    /// A complete client message out of what has arrived, if there is one.
    fn frame_client(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.protocol.is_json() {
            let n = self.framer.receive(&self.inbox);
            self.inbox.drain(..n);
            return match self.framer.next() {
                Some(Ok(m)) => Ok(Some(m.raw().to_vec())),
                Some(Err(e)) => Ok(Some(format!("(invalid JSON: {e})").into_bytes())),
                None => Ok(None),
            };
        }
        if self.protocol == Protocol::Xmlrpc {
            let Cut::Request { taken, .. } = self.requests.next(&self.inbox, describe_request) else { return Ok(None) };
            // One request at a time: an XML-RPC client waits for each response.
            (self.inbox, self.requests) = (Vec::new(), HttpRequests::new());
            return Ok(Some(taken));
        }
        Ok((!self.inbox.is_empty()).then(|| std::mem::take(&mut self.inbox)))
    }

    fn expect(&mut self, stream: &mut Stream, expected: &[u8]) -> Result<(), Halt> {
        let http = self.protocol == Protocol::Xmlrpc;
        if !self.protocol.is_json() && !http {
            return self.expect_bytes(stream, expected);
        }
        let expected =
            if http { http_request(expected).unwrap_or_else(|| expected.to_vec()) } else { expected.to_vec() };
        loop {
            let incomplete = || Halt::Failed(Error::Incomplete { expected: show(&expected) });
            let Some(actual) = self.next_client_message(stream)? else { return Err(incomplete()) };
            self.received += 1;
            if http {
                if actual != expected {
                    return Err(Halt::Failed(self.mismatch(&expected, &actual)));
                }
                return Ok(());
            }
            if self.answer_unrecorded_sync(stream, &actual, &expected)? {
                self.received -= 1;
                continue;
            }
            return self.match_json(&expected, &actual);
        }
    }

    fn mismatch(&self, expected: &[u8], actual: &[u8]) -> Error {
        Error::Mismatch { message: self.received, expected: show(expected), actual: show(actual) }
    }

    /// Byte protocols: the client's stream must go on with `expected`.
    fn expect_bytes(&mut self, stream: &mut Stream, expected: &[u8]) -> Result<(), Halt> {
        let mut matched = 0;
        self.received += 1;
        while matched < expected.len() {
            if self.inbox.is_empty() && !self.read_more(stream)? {
                return Err(Halt::Failed(Error::Incomplete {
                    expected: show(expected.get(matched..).unwrap_or_default()),
                }));
            }
            let want = expected.get(matched..).unwrap_or_default();
            let n = want.len().min(self.inbox.len());
            let (got, want) = (self.inbox.get(..n).unwrap_or_default(), want.get(..n).unwrap_or_default());
            if got != want {
                let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                let from = at.saturating_sub(40);
                let expected = expected.get(matched + from..).unwrap_or_default();
                let actual = self.inbox.get(from..).unwrap_or_default();
                return Err(Halt::Failed(self.mismatch(expected, actual)));
            }
            self.inbox.drain(..n);
            matched += n;
        }
        Ok(())
    }

    /// QMP/QGA/minimega: the client's message must be the expected one as
    /// JSON, ids aside (QMP/QGA: remembered, to map the replies).
    fn match_json(&mut self, expected: &[u8], actual: &[u8]) -> Result<(), Halt> {
        let (expected, actual) = (&without_secrets(expected)[..], &without_secrets(actual)[..]);
        let (Ok(mut want), Ok(mut got)) =
            (serde_json::from_slice::<Json>(expected), serde_json::from_slice::<Json>(actual))
        else {
            return if expected == actual { Ok(()) } else { Err(Halt::Failed(self.mismatch(expected, actual))) };
        };
        let recorded = take_id(&mut want);
        let client = take_id(&mut got);
        let (want_sync, got_sync) = (take_sync_id(&mut want), take_sync_id(&mut got));
        if want != got {
            return Err(Halt::Failed(self.mismatch(expected, actual)));
        }
        if let (Some(r), Some(c)) = (want_sync, got_sync) {
            self.syncs.push((r, c));
        }
        if self.protocol.is_qapi() {
            let command = command_name(&got);
            self.ids.push(Mapped { recorded, client, command });
        }
        Ok(())
    }

    /// QGA: a sync from the client that the transcript does not expect here
    /// is answered at once. Returns whether `actual` was such a sync.
    fn answer_unrecorded_sync(&mut self, stream: &mut Stream, actual: &[u8], expected: &[u8]) -> Result<bool, Halt> {
        if self.protocol != Protocol::Qga {
            return Ok(false);
        }
        let Ok(mut got) = serde_json::from_slice::<Json>(actual) else { return Ok(false) };
        let name = command_name(&got);
        let expected_name = serde_json::from_slice::<Json>(expected).map(|v| command_name(&v)).unwrap_or_default();
        let Some(id) = take_sync_id(&mut got).filter(|_| name != expected_name) else { return Ok(false) };
        let mut reply = Vec::new();
        if name == "guest-sync-delimited" {
            reply.push(0xFF);
        }
        reply.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
        self.garbage_before_resync(stream, &reply)?;
        self.write_message(stream, &reply)?;
        Ok(true)
    }

    /// Sends one server step, with the faults applied.
    fn send(&mut self, stream: &mut Stream, bytes: &[u8], message: Option<(usize, usize)>) -> Result<(), Halt> {
        let raw = message.and_then(|(s, e)| bytes.get(s..e));
        let value = raw.and_then(|raw| serde_json::from_slice::<Json>(raw).ok());
        let is_reply = value.as_ref().is_some_and(|v| v.get("return").is_some() || v.get("error").is_some());
        let is_greeting = value.as_ref().is_some_and(|v| v.get("QMP").is_some());
        if is_greeting && self.has(Fault::EventBeforeGreeting) {
            self.write_message(stream, EVENT)?;
        }
        let mut out = bytes.to_vec();
        if let (true, Some((start, end)), Some(raw)) = (is_reply, message, raw) {
            let mapped = self.map_reply(raw, value.as_ref());
            if let Some((rewritten, oversized)) = mapped {
                let mut o = bytes.get(..start).unwrap_or_default().to_vec();
                o.extend_from_slice(&rewritten);
                o.extend_from_slice(bytes.get(end..).unwrap_or_default());
                out = o;
                if oversized && !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            if self.has(Fault::EventBeforeReturn) && self.events_allowed {
                self.write_message(stream, EVENT)?;
            }
            self.events_allowed = true;
            if self.has(Fault::UnknownId) {
                self.unknown += 1;
                let stray = format!("{{\"return\": {{}}, \"id\": \"vmwire-replay-unknown-{}\"}}\r\n", self.unknown);
                self.write_message(stream, stray.as_bytes())?;
            }
        }
        self.garbage_before_resync(stream, &out)?;
        self.sent += 1;
        let k = self.sent;
        if self.faults.contains(&Fault::CloseMid(k)) {
            let half = out.get(..out.len() / 2).unwrap_or_default();
            self.write_message(stream, half)?;
            return Err(Halt::Fault);
        }
        self.write_message(stream, &out)?;
        if is_reply && self.has(Fault::DuplicateId) {
            self.write_message(stream, &out)?;
        }
        if self.faults.contains(&Fault::CloseAfter(k)) {
            return Err(Halt::Fault);
        }
        Ok(())
    }

    /// With [`Fault::GarbageBeforeResync`], a value cut short before `bytes`
    /// if they hold a `0xFF`.
    fn garbage_before_resync(&mut self, stream: &mut Stream, bytes: &[u8]) -> Result<(), Error> {
        if self.has(Fault::GarbageBeforeResync) && bytes.contains(&0xFF) {
            self.write_message(stream, b"{\"return\": {\"garbage\": [1, 2")?;
        }
        Ok(())
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// A recorded reply with the client's id (and, for a QGA sync, the
    /// client's sync id) in place of the recorded ones; `None` if the bytes
    /// can go as recorded. The flag says the oversized fault replaced it.
    fn map_reply(&mut self, raw: &[u8], value: Option<&Json>) -> Option<(Vec<u8>, bool)> {
        let sync = value.and_then(|v| v.get("return")).and_then(|r| {
            let at = self.syncs.iter().position(|(rec, _)| rec == r)?;
            Some(self.syncs.remove(at).1)
        });
        let recorded = value.and_then(|v| v.get("id")).cloned();
        let Some(at) = self.ids.iter().position(|m| m.recorded == recorded) else {
            // A reply to nothing the client sent (a stray in the recording too).
            return sync.map(|sync| (rewrite(raw, recorded.as_ref(), Some(&sync)), false));
        };
        let mapped = self.ids.remove(at);
        let handshake = matches!(mapped.command.as_str(), "qmp_capabilities" | "guest-sync" | "guest-sync-delimited");
        if let Some(n) = self.faults.iter().find_map(|f| if let Fault::Oversized(n) = f { Some(*n) } else { None })
            && !handshake
            && !self.oversized_done
        {
            self.oversized_done = true;
            let mut out = b"{\"return\": \"".to_vec();
            out.resize(out.len() + n, b'x');
            out.extend_from_slice(b"\"");
            if let Some(id) = &mapped.client {
                out.extend_from_slice(format!(", \"id\": {id}").as_bytes());
            }
            out.extend_from_slice(b"}");
            return Some((out, true));
        }
        if mapped.client == mapped.recorded && sync.is_none() {
            return None;
        }
        Some((rewrite(raw, mapped.client.as_ref(), sync.as_ref()), false))
    }

    /// Writes one server message, with the split and delay faults.
    fn write_message(&mut self, stream: &mut Stream, bytes: &[u8]) -> Result<(), Error> {
        if let Some(delay) = self.faults.iter().find_map(|f| if let Fault::Delay(d) = f { Some(*d) } else { None }) {
            std::thread::sleep(delay);
        }
        let split = self.faults.iter().find_map(|f| if let Fault::Split(n) = f { Some(*n) } else { None });
        let mut result = Ok(());
        for (i, piece) in bytes.chunks(split.unwrap_or(bytes.len()).max(1)).enumerate() {
            if i > 0 {
                std::thread::sleep(SPLIT_PAUSE);
            }
            result = self.write_all(stream, piece);
            if result.is_err() {
                break;
            }
        }
        match result {
            // The client went away: what it did not read is its business;
            // what it did not send shows up as Incomplete.
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.eof = true;
                Ok(())
            }
            other => other.map_err(Error::Io),
        }
    }
}

impl Session {
    /// Writes all of `bytes`, giving up when the peer is stopped while the
    /// client does not read (so that [`Peer::finish`] and drop never hang).
    fn write_all(&self, stream: &mut Stream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.stopped() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An event to inject (QMP's shape; the guest agent has none of its own).
const EVENT: &[u8] = b"{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, \"event\": \"VMWIRE_REPLAY\"}\r\n";

/// Removes and returns a message's `id`.
fn take_id(value: &mut Json) -> Option<Json> {
    value.as_object_mut()?.remove("id")
}

/// Removes and returns the `arguments.id` of a `guest-sync`/`guest-sync-delimited`.
fn take_sync_id(value: &mut Json) -> Option<Json> {
    if !matches!(command_name(value).as_str(), "guest-sync" | "guest-sync-delimited") {
        return None;
    }
    value.get_mut("arguments")?.as_object_mut()?.remove("id")
}

/// The `execute` or `exec-oob` of a command.
fn command_name(value: &Json) -> String {
    let name = value.get("execute").or_else(|| value.get("exec-oob"));
    name.and_then(Json::as_str).unwrap_or_default().to_string()
}

/// `raw` (an object) with its `id` member replaced by `id` (removed if
/// `None`) and, if `ret` is given, its `return` member replaced. Other members
/// keep their text and order; the id goes last, as QEMU writes it.
fn rewrite(raw: &[u8], id: Option<&Json>, ret: Option<&Json>) -> Vec<u8> {
    let Some(object) = Value::parse(raw).ok().and_then(|v| v.as_object()) else { return raw.to_vec() };
    let mut out = b"{".to_vec();
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &[u8], value: &[u8]| {
        if !std::mem::take(&mut first) {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\": ");
        out.extend_from_slice(value);
    };
    for (key, value) in object.members() {
        if key == *"id" {
            continue;
        }
        match ret {
            Some(ret) if key == *"return" => member(&mut out, key.raw(), ret.to_string().as_bytes()),
            _ => member(&mut out, key.raw(), value.raw()),
        }
    }
    if let Some(id) = id {
        member(&mut out, b"id", id.to_string().as_bytes());
    }
    out.push(b'}');
    out
}

/// Cuts a client's stream into HTTP requests as it comes. Each byte is read
/// once (twice where a request ends inside a read), so that a large request
/// arriving in many reads costs linear time (where reading the whole stream
/// again at each read was quadratic).
pub(crate) struct HttpRequests {
    /// Where the request in progress begins in the stream.
    at: usize,
    /// How much of it `reader` has read.
    fed: usize,
    /// `None` once the stream was found not to be HTTP.
    reader: Option<Box<vmwire_proto::http::Server<vmwire_proto::buf::Heap>>>,
}

/// What [`HttpRequests::next`] found.
pub(crate) enum Cut<T> {
    /// A whole request at `stream[at..]`, its head `head` bytes long, and
    /// what the caller took of it. `end`: where it ends in the stream;
    /// `None` when its body is not in its bytes as it came (chunked or
    /// compressed), so there is no telling.
    Request { at: usize, head: usize, end: Option<usize>, taken: T },
    /// The stream ends inside a request.
    Partial,
    /// Nothing after the last request.
    Nothing,
    /// Not an HTTP request (or one over the size limit).
    NotHttp,
}

impl HttpRequests {
    pub(crate) fn new() -> Self {
        use vmwire_proto::http::{Limits, Server, ServerConfig};
        let limits = Limits { max_body: MAX_MESSAGE, ..Limits::default() };
        let reader = Server::new(ServerConfig { limits, ..ServerConfig::default() });
        HttpRequests { at: 0, fed: 0, reader: Some(Box::new(reader)) }
    }

    /// The next request in `stream` (all of it since this began: the same
    /// bytes as last time and any new ones), handed to `f` once it is whole.
    /// After a request whose end is unknown, it has nothing more to say;
    /// once the stream is not HTTP, it stays so.
    pub(crate) fn next<T>(&mut self, stream: &[u8], f: impl FnOnce(&vmwire_proto::http::Request<'_>) -> T) -> Cut<T> {
        use vmwire_proto::Machine;
        use vmwire_proto::http::ServerEvent;
        let Some(bytes) = stream.get(self.at..).filter(|rest| !rest.is_empty()) else { return Cut::Nothing };
        let mut new = bytes.get(self.fed..).unwrap_or_default();
        while !new.is_empty() {
            let Some(reader) = self.reader.as_mut() else { return Cut::NotHttp };
            let Ok(n) = reader.receive(new) else {
                self.reader = None;
                return Cut::NotHttp;
            };
            new = &new[n..];
            match reader.poll() {
                Ok(Some(ServerEvent::Request(r))) => {
                    // The head ends at its first empty line.
                    let head = vmwire_proto::http::head_len(bytes).unwrap_or_default();
                    let end = head + r.body.len();
                    let end = (bytes.get(head..end) == Some(r.body)).then_some(self.at + end);
                    let (at, taken) = (self.at, f(&r));
                    if let Some(end) = end {
                        *self = HttpRequests { at: end, ..HttpRequests::new() };
                    }
                    return Cut::Request { at, head, end, taken };
                }
                Ok(None) if n > 0 => {}
                _ => {
                    self.reader = None;
                    return Cut::NotHttp;
                }
            }
        }
        self.fed = bytes.len();
        Cut::Partial
    }
}

/// What a password stands as in a compared or summarised call: a
/// recording has it blanked out ([`crate::record`]), and a replay takes any.
pub(crate) const NOT_RECORDED: &str = "(not recorded)";

/// A QMP or guest agent command with each password or key it carries
/// ([`vmwire_proto::qmp::secret_spans`]) as [`NOT_RECORDED`].
fn without_secrets(command: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut spans: Vec<_> = vmwire_proto::qmp::secret_spans(command).collect();
    if spans.is_empty() {
        return command.into();
    }
    spans.sort_by_key(|span| span.start);
    let mut out = Vec::with_capacity(command.len());
    let mut at = 0;
    for span in spans {
        out.extend_from_slice(command.get(at..span.start).unwrap_or_default());
        out.extend_from_slice(NOT_RECORDED.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(command.get(at..).unwrap_or_default());
    out.into()
}

/// A whole HTTP request as replay compares it: its method and target, then
/// the XML-RPC call's method name and params as JSON (clients format the
/// XML differently), each password the call carries as [`NOT_RECORDED`]
/// (see [`xenapi::secret_spans`](vmwire_proto::xenapi::secret_spans)).
/// `None` until `bytes` hold a whole request (or if they are not HTTP).
pub(crate) fn http_request(bytes: &[u8]) -> Option<Vec<u8>> {
    match HttpRequests::new().next(bytes, describe_request) {
        Cut::Request { taken, .. } => Some(taken),
        _ => None,
    }
}

/// A whole HTTP request as [`http_request`] gives it.
pub(crate) fn describe_request(r: &vmwire_proto::http::Request<'_>) -> Vec<u8> {
    let mut out = format!("{} {}\n", r.method, r.target).into_bytes();
    match vmwire_proto::xmlrpc::parse_call(r.body) {
        Ok(call) => {
            let method = call.name.to_cow();
            let secret = vmwire_proto::xenapi::secret_params(&method);
            let params: Vec<Json> = (call.params.iter().enumerate())
                .map(
                    |(n, v)| {
                        if secret.contains(&n) { Json::from(NOT_RECORDED) } else { json_without_secrets(v, &method) }
                    },
                )
                .collect();
            out.extend_from_slice(format!("{}{}", call.name, Json::from(params)).as_bytes());
        }
        Err(_) => out.extend_from_slice(r.body),
    }
    out
}

/// An XML-RPC param as JSON, each struct member that carries a secret
/// ([`xenapi::secret_member`](vmwire_proto::xenapi::secret_member)), at any
/// depth, as [`NOT_RECORDED`].
fn json_without_secrets(v: vmwire_proto::xmlrpc::Value<'_>, method: &str) -> Json {
    use vmwire_proto::xmlrpc::Value as X;
    match v {
        X::Struct(s) => Json::Object(
            s.members()
                .map(|(name, v)| {
                    let name = name.to_string();
                    let secret = vmwire_proto::xenapi::secret_member(method, &name);
                    let v = if secret { Json::from(NOT_RECORDED) } else { json_without_secrets(v, method) };
                    (name, v)
                })
                .collect(),
        ),
        X::Array(a) => Json::Array(a.iter().map(|v| json_without_secrets(v, method)).collect()),
        other => crate::xmlrpc::to_json(other),
    }
}

/// Whether a recorded HTTP response ends its connection: HTTP/1.0 without
/// `keep-alive`, or `Connection: close` (Python's server closes after every
/// HTTP/1.0 response).
fn http_closes(response: &[u8]) -> bool {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(response.get(..head_end).unwrap_or_default()).to_ascii_lowercase();
    (head.starts_with("http/1.0") && !head.contains("keep-alive")) || head.contains("connection: close")
}
