//! minimega's command socket: a sans-IO client.
//!
//! minimega (a Go daemon that drives VMs across a cluster) listens on a UNIX
//! socket, `/tmp/minimega/minimega` by default. A client writes JSON
//! requests, `{"Command": "vm info"}`, `{"Suggest": "vm i"}` or
//! `{"PlumbPipe": "NAME"}`, and the daemon answers each command with a
//! stream of frames, one JSON object per line:
//! `{"Resp": [...], "Rendered": "...", "More": bool, "Status": bool}`. Every
//! frame of a reply but the last has `More: true`. The daemon writes the
//! whole stream and only then reads the next request, so a client must read
//! a reply to its end before the next command's frames can be told apart:
//! there are no request ids.
//!
//! The [`Client`] machine keeps that stream state:
//! - after [`Client::command`], frames up to `More: false` are the command's
//!   ([`Event::Frame`]), then [`Event::End`] sums the reply up (frames,
//!   responses, errors). A new command before then is refused
//!   ([`Error::Busy`]).
//! - an error inside a stream is an ordinary frame with `More` still true:
//!   it is counted and the stream is read on to its end, so the next command
//!   never reads a stale frame (the bug of minimega's PyPI bindings, which
//!   stop at the first error).
//! - `Status: true` frames are status messages that the daemon sends while a
//!   command runs, or between commands: [`Event::Status`], never part of a reply.
//! - a daemon older than 2.8 sends no `Status` member: its frames read the same.
//! - the daemon closes the connection without a word when it cannot decode a
//!   request (and after `quit`): a pending reply then ends in [`Event::Failed`].
//! - a frame over the size limit is skipped, not buffered. Outside a reply
//!   the session goes on; inside one, the skipped bytes held its `More`, so
//!   the end of the reply cannot be known: the machine reports
//!   [`Error::FrameTooLarge`] as soon as the limit is reached, fails the
//!   reply and closes, rather than wait for an end it could not recognise.
//!
//! Command lines are built with [`CommandLine`], which quotes arguments the
//! way minimega's lexer reads them and never produces a line that changes
//! daemon-wide state; [`Client::command_in`] runs a line in a
//! [`Namespace`]. Frames are read in place ([`Frame`], [`Response`],
//! [`Row`]); tables sort for display with [`sort_rows`] or, with `alloc`,
//! [`Table`].
//!
//! ```
//! use vmwire_proto::{Machine, buf::Heap, minimega::{Client, Config, Event}};
//!
//! let mut mm = Client::<Heap>::new(Config::default());
//! mm.command("read /tmp/script.mm")?;
//! assert_eq!(mm.transmit(), b"{\"Command\":\"read /tmp/script.mm\"}\n");
//! let n = mm.transmit().len();
//! mm.transmitted(n);
//!
//! mm.receive(br#"{"Resp":[{"Host":"mmpeer","Response":"one","Header":null,"Tabular":null,"Error":"","Data":null}],"Rendered":"mmpeer: one","More":true,"Status":false}
//! {"Resp":null,"Rendered":"launching 5 VMs","More":false,"Status":true}
//! {"Resp":[{"Host":"mmpeer","Response":"","Header":null,"Tabular":null,"Error":"vm not found: x","Data":null}],"Rendered":"","More":false,"Status":false}
//! "#)?;
//! let mut log = Vec::new();
//! while let Some(event) = mm.poll()? {
//!     log.push(match event {
//!         Event::Frame(f) => format!("frame more={} errors={}", f.more(), f.error_count()),
//!         Event::Status(text) => format!("status {text}"),
//!         Event::End(summary) => format!("end frames={} errors={}", summary.frames, summary.errors),
//!         other => format!("{other:?}"),
//!     });
//! }
//! assert_eq!(log, ["frame more=true errors=0", "status launching 5 VMs", "frame more=false errors=1", "end frames=2 errors=1"]);
//! # Ok::<(), vmwire_proto::minimega::Error>(())
//! ```

mod frame;
mod line;
mod op;
mod table;

pub use frame::{Frame, Response, ResponseIter, Row, Rows, Strings};
#[cfg(feature = "alloc")]
pub use line::quote;
pub use line::{CommandLine, LineBuf, Namespace, check_line, needs_quotes, write_word};
pub use op::{Next, Part, Want};
#[cfg(feature = "alloc")]
pub use table::{Record, Table};
pub use table::{compare_cells, compare_rows, sort_rows};

use core::fmt;

use crate::Machine;
use crate::buf::{Buf, Full, Sink, Storage, TxBuf};
use crate::json::{self, Escape, Found, Framer, JsonStr, Limits, Message, Value, write_str, write_str_contents};
use frame::{Fields, Spans, read_frame};

/// The daemon's command socket when it runs with the default `-base`.
pub const DEFAULT_SOCKET: &str = "/tmp/minimega/minimega";

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Size and depth limits for one frame. A frame holds a whole reply from
    /// one host batch, rendered text included: `vm info` for 10,000 VMs is
    /// tens of megabytes. The default is 64 MiB and depth 64. A frame of a
    /// reply over the size limit ends the session ([`Error::FrameTooLarge`]).
    pub limits: Limits,
    /// Most responses in one frame (one per host that answered; with
    /// [`Heap`](crate::buf::Heap) storage, fixed storage has its own table size).
    pub max_responses: usize,
    /// Most bytes of requests waiting to be written (with `Heap` storage).
    pub max_transmit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { limits: Limits { max_message: 64 << 20, max_depth: 64 }, max_responses: 4096, max_transmit: 1 << 20 }
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing asked: a request may be sent.
    Idle,
    /// A command's reply is being read.
    Command,
    /// A suggestion request's reply is awaited.
    Suggest,
    /// The connection is a plumbing pipe (after [`Client::plumb_pipe`]), for
    /// the rest of its life.
    Pipe,
    /// The stream ended, or the client closed it.
    Closed,
}

/// What a reply came to, reported by [`Event::End`] (and by
/// [`Event::Failed`] for a reply cut short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Frames of the reply (status messages not counted).
    pub frames: u32,
    /// Responses in them (one per host per frame).
    pub responses: u32,
    /// Responses that carry an error.
    pub errors: u32,
    /// Frames that could not be read, and were skipped.
    pub malformed: u32,
}

impl Summary {
    /// Whether the command failed anywhere: an error response, or a frame
    /// that could not be read.
    pub fn failed(&self) -> bool {
        self.errors > 0 || self.malformed > 0
    }
}

/// What the [`Client`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// A frame of the current command's reply; [`Frame::more`] tells whether
    /// more follow. Error responses come here too: the command failed on
    /// some host, the connection is fine.
    Frame(Frame<'a>),
    /// The current command's reply has been read to its end (this follows its
    /// last frame). A new request may be sent.
    End(Summary),
    /// A status message (a `Status: true` frame): not part of any reply.
    Status(JsonStr<'a>),
    /// The reply to [`Client::suggest`]: whole lines, each ending in a space.
    Suggestions(Strings<'a>),
    /// A string read from the pipe (after [`Client::plumb_pipe`]).
    Pipe(JsonStr<'a>),
    /// A frame that belongs to no request (not a status message): nothing
    /// was asked when it arrived.
    Unsolicited(Frame<'a>),
    /// Something that could not be read as a frame, and was skipped. Inside a
    /// reply it is counted in the reply's [`Summary`].
    Malformed(Error),
    /// The connection closed before the reply to the pending request ended;
    /// what had arrived of it. Reported once, before [`Event::Closed`].
    Failed(Summary),
    /// The connection is closed; nothing more will come. Reported once, last.
    Closed,
}

/// What went wrong in the [`Client`] or a [`CommandLine`] (not the daemon's
/// own errors, which are data in [`Response::error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A frame that is not valid JSON, or too large or too deep.
    Json(json::Error),
    /// Valid JSON, but not a frame (`what` says how).
    BadFrame {
        /// What was wrong.
        what: &'static str,
    },
    /// A frame of a reply over the size limit ([`Config::limits`]). Its
    /// `More` member was among the bytes skipped, so the reply's end cannot
    /// be told from the next reply's frames: the reply is failed and the
    /// connection closed ([`Event::Failed`], then [`Event::Closed`], follow).
    FrameTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The peer is not a minimega daemon: the first message of the first
    /// reply is not a frame (as another program's greeting or banner is).
    /// The reply is failed and the connection closed ([`Event::Failed`],
    /// then [`Event::Closed`], follow).
    NotMinimega,
    /// A frame with more responses than the table of them holds.
    TooManyResponses {
        /// The limit.
        limit: usize,
    },
    /// A reply is still being read: read it to its end ([`Event::End`]) first.
    Busy {
        /// What is being read.
        state: State,
    },
    /// A method called in a state that does not allow it.
    WrongState {
        /// The state the machine was in.
        state: State,
        /// The method.
        operation: &'static str,
    },
    /// An empty command, suggestion prefix or pipe name (the daemon answers
    /// an empty request with an error, or turns a connection into a pipe).
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A namespace name that minimega refuses (it allows letters, digits,
    /// `-`, `_` and `.`).
    InvalidNamespace,
    /// The command words given to a [`CommandLine`] hold quotes, backslashes
    /// or `#`: pass such text as an argument.
    NotPlain,
    /// A bare `namespace NAME`: it would switch the active namespace of every client.
    BareNamespace,
    /// A bare output mode (`.json true`, `.csv true`, …): it would change the
    /// output of every client.
    BareOutputMode {
        /// The mode.
        mode: &'static str,
    },
    /// A command that changes state shared by every client (`.alias`, `.unalias`).
    DaemonWide {
        /// The command.
        command: &'static str,
    },
    /// A [`CommandLine`]'s buffer is full.
    LineFull(Full),
    /// The transmit buffer is full: write out what is queued first.
    TransmitFull(Full),
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
}

impl Error {
    /// Whether the machine closed the connection on this error: the reply
    /// could not go on ([`Error::FrameTooLarge`], [`Error::NotMinimega`]).
    pub fn closes(&self) -> bool {
        matches!(self, Error::FrameTooLarge { .. } | Error::NotMinimega)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::Json(e) if e.is_too_large() => K::TooLarge,
            Error::FrameTooLarge { .. } | Error::TooManyResponses { .. } => K::TooLarge,
            Error::Json(_) | Error::BadFrame { .. } | Error::NotMinimega => K::InvalidData,
            Error::Busy { .. } => K::Busy,
            Error::WrongState { .. } => K::WrongState,
            Error::Empty { .. }
            | Error::InvalidNamespace
            | Error::NotPlain
            | Error::BareNamespace
            | Error::BareOutputMode { .. }
            | Error::DaemonWide { .. }
            | Error::LineFull(_) => K::InvalidInput,
            Error::TransmitFull(_) => K::TransmitFull,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json(e) => write!(f, "minimega: {e}"),
            Error::BadFrame { what } => write!(f, "minimega: bad frame: {what}"),
            Error::FrameTooLarge { limit } => write!(
                f,
                "minimega: a frame of the reply is larger than the limit of {limit} bytes; the connection is closed, as the rest of the reply could not be told from the next"
            ),
            Error::NotMinimega => f.write_str(
                "minimega: the peer is not a minimega daemon: the first message of its reply is not a minimega frame",
            ),
            Error::TooManyResponses { limit } => write!(f, "minimega: a frame with more than {limit} responses"),
            Error::Busy { state: State::Suggest } => {
                f.write_str("minimega: the reply to the last suggestion request is still being read")
            }
            Error::Busy { .. } => f.write_str("minimega: the reply to the last command is still being read"),
            Error::WrongState { state, operation } => {
                write!(f, "minimega: {operation} is not allowed in state {state:?}")
            }
            Error::Empty { what } => write!(f, "minimega: empty {what}"),
            Error::InvalidNamespace => {
                f.write_str("minimega: a namespace name holds only letters, digits, '-', '_' and '.'")
            }
            Error::NotPlain => f.write_str(
                "minimega: command words must not hold quotes, backslashes or '#' (pass such text as an argument)",
            ),
            Error::BareNamespace => f.write_str(
                "minimega: a bare `namespace NAME` switches the active namespace of every client; run commands in a namespace instead",
            ),
            Error::BareOutputMode { mode } => write!(
                f,
                "minimega: a bare `{mode}` changes the output of every client; put the command it is for after it"
            ),
            Error::DaemonWide { command } => {
                write!(f, "minimega: `{command}` changes state that every client shares")
            }
            Error::LineFull(e) => write!(f, "minimega: command line {e}"),
            Error::TransmitFull(e) => write!(f, "minimega: transmit {e}"),
            Error::CommitTooLarge(e) => write!(f, "minimega: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Json(e) => Some(e),
            Error::LineFull(e) | Error::TransmitFull(e) => Some(e),
            _ => None,
        }
    }
}

impl From<json::Error> for Error {
    fn from(e: json::Error) -> Self {
        Error::Json(e)
    }
}

/// The minimega client machine. See the [module documentation](self).
pub struct Client<S: Storage> {
    framer: Framer<S::Rx>,
    core: Core<S>,
}

/// Everything but the receive side, so that events can borrow the framer
/// while the rest of the machine changes.
struct Core<S: Storage> {
    state: State,
    tx: TxBuf<S::Tx>,
    /// Where the responses of the last frame are.
    spans: S::Table<Spans>,
    /// The reply being read.
    summary: Summary,
    /// The last frame of a reply was reported: `End` comes next.
    end_pending: bool,
    /// The stream closed with a request pending: `Failed` comes next.
    failed_pending: bool,
    eof: bool,
    closed_reported: bool,
    /// A message has been read as minimega's (a frame or a pipe's string).
    spoken: bool,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.core.state)
            .field("summary", &self.core.summary)
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

/// What a message turned out to be, before the event borrows it.
enum Outcome {
    Frame(Fields),
    Status(Fields),
    Suggestions(Fields),
    Unsolicited(Fields),
    Pipe,
    Malformed(Error),
}

impl<S: Storage> Client<S> {
    /// A client with nothing asked yet.
    pub fn new(config: Config) -> Self {
        Client {
            framer: Framer::new(S::rx(config.limits.max_message), config.limits),
            core: Core {
                state: State::Idle,
                tx: TxBuf::new(S::tx(config.max_transmit)),
                spans: S::table(config.max_responses),
                summary: Summary::default(),
                end_pending: false,
                failed_pending: false,
                eof: false,
                closed_reported: false,
                spoken: false,
            },
        }
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Sends command `line` (`{"Command": line}`), as written: build it with
    /// [`CommandLine`] when it has arguments.
    pub fn command(&mut self, line: &str) -> Result<(), Error> {
        self.core.request("Command", None, line, State::Command, "command")
    }

    /// Sends command `line` to run in namespace `ns`:
    /// `{"Command": "namespace \"NAME\" line"}`. This never changes the
    /// active namespace, which every client shares.
    pub fn command_in(&mut self, ns: &Namespace<'_>, line: &str) -> Result<(), Error> {
        self.core.request("Command", Some(ns), line, State::Command, "command")
    }

    /// Asks for completions of `prefix` (`{"Suggest": prefix}`); the reply is
    /// [`Event::Suggestions`].
    pub fn suggest(&mut self, prefix: &str) -> Result<(), Error> {
        self.core.request("Suggest", None, prefix, State::Suggest, "suggest")
    }

    /// Turns the connection into a plumbing pipe named `name`
    /// (`{"PlumbPipe": name}`), for the rest of its life: strings read from
    /// the pipe arrive as [`Event::Pipe`], [`Client::pipe_write`] writes to
    /// it. minimega's own client names pipes `NAMESPACE//NAME`.
    pub fn plumb_pipe(&mut self, name: &str) -> Result<(), Error> {
        self.core.request("PlumbPipe", None, name, State::Pipe, "plumb_pipe")
    }

    /// Writes `data` to the pipe (a JSON string; the daemon drops empty ones).
    pub fn pipe_write(&mut self, data: &str) -> Result<(), Error> {
        if self.core.state != State::Pipe {
            return Err(Error::WrongState { state: self.core.state, operation: "pipe_write" });
        }
        self.core
            .tx
            .encode(|out| {
                write_str(out, data, Escape::Minimal)?;
                out.put(b"\n")
            })
            .map_err(Error::TransmitFull)
    }

    /// Ends the session from this side (the adapter saw an I/O error or a
    /// timeout, or is done): a pending reply is reported failed, then
    /// [`Event::Closed`].
    pub fn close(&mut self) {
        self.core.close();
        self.core.tx.clear();
    }
}

impl<S: Storage> Core<S> {
    fn request(
        &mut self,
        key: &str,
        ns: Option<&Namespace<'_>>,
        text: &str,
        next: State,
        operation: &'static str,
    ) -> Result<(), Error> {
        match self.state {
            State::Idle if !self.end_pending => {}
            // The last frame is in, its End not yet reported.
            State::Idle => return Err(Error::Busy { state: State::Command }),
            State::Command | State::Suggest => return Err(Error::Busy { state: self.state }),
            state => return Err(Error::WrongState { state, operation }),
        }
        if text.is_empty() {
            return Err(Error::Empty {
                what: match next {
                    State::Suggest => "suggestion prefix",
                    State::Pipe => "pipe name",
                    _ => "command",
                },
            });
        }
        self.tx
            .encode(|out| {
                out.put(b"{\"")?;
                out.put(key.as_bytes())?;
                out.put(b"\":\"")?;
                if let Some(ns) = ns {
                    write_str_contents(out, "namespace \"", Escape::Minimal)?;
                    write_str_contents(out, ns.as_str(), Escape::Minimal)?;
                    write_str_contents(out, "\" ", Escape::Minimal)?;
                }
                write_str_contents(out, text, Escape::Minimal)?;
                out.put(b"\"}\n")
            })
            .map_err(Error::TransmitFull)?;
        self.state = next;
        self.summary = Summary::default();
        Ok(())
    }

    /// Turns one framed message into an outcome.
    fn classify(&mut self, msg: Message<'_>) -> Outcome {
        if self.state == State::Pipe && msg.value().as_str().is_some() {
            self.spoken = true;
            return Outcome::Pipe;
        }
        let fields = match read_frame(&msg, &mut self.spans) {
            Ok(fields) => fields,
            Err(e) => return self.malformed(e),
        };
        self.spoken = true;
        if fields.status == Some(true) {
            return Outcome::Status(fields);
        }
        match self.state {
            State::Command => {
                let s = &mut self.summary;
                s.frames = s.frames.saturating_add(1);
                s.responses = s.responses.saturating_add(fields.responses);
                s.errors = s.errors.saturating_add(fields.errors);
                if !fields.more {
                    self.state = State::Idle;
                    self.end_pending = true;
                }
                Outcome::Frame(fields)
            }
            State::Suggest => {
                self.state = State::Idle;
                Outcome::Suggestions(fields)
            }
            State::Pipe => self.malformed(Error::BadFrame { what: "a frame on a pipe" }),
            State::Idle | State::Closed => Outcome::Unsolicited(fields),
        }
    }

    fn malformed(&mut self, e: Error) -> Outcome {
        // The daemon speaks only when asked, and in frames: a reply whose
        // first message is not JSON, or not an object with any of a frame's
        // members, comes from another program (a QMP greeting, HMP's
        // banner), which will never end the reply.
        let foreign = matches!(&e, Error::Json(j) if !j.is_too_large()) || frame::is_foreign(&e);
        if foreign && !self.spoken && matches!(self.state, State::Command | State::Suggest) {
            self.close();
            return Outcome::Malformed(Error::NotMinimega);
        }
        self.spoken |= !foreign;
        if self.state == State::Command {
            self.summary.malformed = self.summary.malformed.saturating_add(1);
        }
        Outcome::Malformed(e)
    }

    /// A message that is not valid JSON or is over a limit. Frames after it
    /// are read as usual, except after an oversized frame of a pending
    /// reply: its `More` is unknown, so the reply is failed and the session
    /// ends.
    fn malformed_json(&mut self, e: json::Error) -> Outcome {
        match e.kind {
            json::ErrorKind::TooLarge { limit } if matches!(self.state, State::Command | State::Suggest) => {
                let outcome = self.malformed(Error::FrameTooLarge { limit });
                self.close();
                outcome
            }
            _ => self.malformed(Error::Json(e)),
        }
    }

    fn close(&mut self) {
        if matches!(self.state, State::Command | State::Suggest) {
            self.failed_pending = true;
        }
        self.state = State::Closed;
    }

    /// After the session closed: `Failed` for a pending reply, then `Closed`.
    fn wind_down(&mut self) -> Option<Event<'static>> {
        if core::mem::take(&mut self.failed_pending) {
            return Some(Event::Failed(self.summary));
        }
        (!core::mem::replace(&mut self.closed_reported, true)).then_some(Event::Closed)
    }
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = ();

    fn recv_buf(&mut self) -> &mut [u8] {
        self.framer.recv_buf_dropping(self.core.state == State::Closed)
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        // A closed machine still takes bytes, and drops them: nothing is listening.
        crate::commit_or_eof(self, n, |m, n| m.framer.commit(n, m.core.state == State::Closed), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        let core = &mut self.core;
        if core.end_pending {
            core.end_pending = false;
            return Ok(Some(Event::End(core.summary)));
        }
        if core.state != State::Closed {
            let (outcome, raw) = match self.framer.take(core.eof) {
                Found::Message(msg) => (core.classify(msg), msg.raw()),
                Found::Error { error, .. } => (core.malformed_json(error), &[][..]),
                Found::More if core.eof => {
                    core.close();
                    return Ok(core.wind_down());
                }
                Found::More => return Ok(None),
            };
            let spans = self.core.spans.as_slice();
            let frame = |fields| Frame::new(raw, fields, spans);
            return Ok(Some(match outcome {
                Outcome::Frame(fields) => Event::Frame(frame(fields)),
                Outcome::Status(fields) => Event::Status(frame(fields).rendered()),
                Outcome::Suggestions(fields) => Event::Suggestions(frame(fields).suggestions()),
                Outcome::Unsolicited(fields) => Event::Unsolicited(frame(fields)),
                Outcome::Pipe => Event::Pipe(Value::trusted(raw).as_str().unwrap_or_default()),
                Outcome::Malformed(e) => Event::Malformed(e),
            }));
        }
        Ok(core.wind_down())
    }

    fn transmit(&self) -> &[u8] {
        self.core.tx.pending()
    }

    fn transmitted(&mut self, n: usize) {
        self.core.tx.drained(n);
    }

    fn recv_eof(&mut self) {
        self.core.eof = true;
    }

    fn close(&mut self) {
        Client::close(self);
    }

    /// Closes: minimega's replies carry no id, so a late one would pass for
    /// the next command's.
    fn expire(&mut self, _command: &()) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Fixed;

    #[test]
    fn requests_are_compact_lines() {
        let mut mm = Client::<Fixed<256, 256, 4>>::new(Config::default());
        let ns = Namespace::new("exp-1").unwrap();
        mm.command_in(&ns, "echo \"a b\"").unwrap();
        assert_eq!(mm.transmit(), b"{\"Command\":\"namespace \\\"exp-1\\\" echo \\\"a b\\\"\"}\n");
        assert_eq!(mm.suggest("vm i"), Err(Error::Busy { state: State::Command }));
    }

    #[test]
    fn empty_requests_are_refused() {
        let mut mm = Client::<Fixed<256, 256, 4>>::new(Config::default());
        assert_eq!(mm.command(""), Err(Error::Empty { what: "command" }));
        assert_eq!(mm.suggest(""), Err(Error::Empty { what: "suggestion prefix" }));
        assert_eq!(mm.plumb_pipe(""), Err(Error::Empty { what: "pipe name" }));
        assert!(mm.transmit().is_empty());
    }
}
