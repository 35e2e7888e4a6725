//! QGA, the QEMU guest agent: a sans-IO client.
//!
//! The agent speaks QMP's JSON (`{"execute": …, "arguments": …, "id": …}`,
//! replies `{"return": …, "id": …}` or `{"error": {"class", "desc"}, "id": …}`,
//! each ending in `\n`) with no greeting, no negotiation and no events. Its
//! JSON parser outlives a connection: a request half written by an earlier
//! client swallows the next client's first request. So a session opens by
//! sending a raw `0xFF` (which resets the agent's parser) and
//! `guest-sync-delimited` with a random id; the agent answers `0xFF` and
//! `{"return": id}`, and everything before that `0xFF` is stale.
//!
//! The [`Client`] machine does that on open and again on demand
//! ([`Client::resync`], after a timeout), rejecting sync replies with another
//! id (a late answer to an earlier sync). It has no random numbers of its
//! own: the caller supplies each sync id (the `vmwire-std` adapter draws one
//! from the OS's randomly seeded hasher). Commands are matched to replies by
//! id as in [`qmp`](crate::qmp); `0xFF` bytes anywhere in the stream are
//! taken as the delimiters they are.
//!
//! ```
//! use vmwire_proto::{Machine, buf::Fixed, qga::{Client, Config, Event, State}};
//!
//! let mut qga = Client::<Fixed<4096>>::new(Config::default(), 5678);
//! assert_eq!(qga.transmit(), b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":5678}}\n");
//! let ping = qga.execute("guest-ping", None)?; // may queue behind the sync
//! let n = qga.transmit().len();
//! qga.transmitted(n);
//!
//! // What an earlier client left behind, the agent's complaint about the
//! // 0xFF, then the sync reply and the ping's.
//! qga.receive(b"{\"return\": {}, \"id\": \"old\"}\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n")?;
//! qga.receive(b"\xff{\"return\": 5678}\n{\"return\": {}, \"id\": 0}\n")?;
//! assert!(matches!(qga.poll()?, Some(Event::Synced)));
//! assert_eq!(qga.state(), State::Ready);
//! assert!(matches!(qga.poll()?, Some(Event::Return { id, .. }) if id == ping));
//! # Ok::<(), vmwire_proto::qga::Error>(())
//! ```

use core::fmt;

use crate::Machine;
use crate::buf::{Full, Sink, Storage, TxBuf};
use crate::json::{self, Found, Framer, JsonStr, Limits, Message, ObjectWriter, Value};
use crate::qapi::{self, Ending, Members, Pending, Settled, Table};

pub use crate::qapi::{Command, ErrorReply, Id, MAX_ID_LEN, Reply, blank_secrets, secret_spans};
pub use op::{
    Answer, Chunked, Direction, EXEC_POLL_FIRST, EXEC_POLL_MAX, Exec, Next, Ran, Reading, ReplyTo, Source, Synchronise,
    Synchronised, Transfer, Transferred, Writing,
};

mod op;

/// The byte that resets the agent's parser, and that it sends before a
/// `guest-sync-delimited` reply. It never occurs in UTF-8 (so in JSON).
pub const DELIMITER: u8 = 0xFF;

/// Most bytes of the stream's start that [`Event::WrongProtocol`] shows.
pub const WRONG_PROTOCOL_TEXT: usize = 256;

/// How the other protocols of a QEMU socket open; the agent never speaks first.
const OTHER_OPENINGS: [(&[u8], &str); 4] = [
    (b"{\"QMP\":", "QMP's greeting"),
    (b"QEMU ", "the human monitor's banner"),
    (b"(qemu) ", "the human monitor's prompt"),
    crate::hmp::VNC_GREETING,
];

/// What a stream that opens with `data` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Too few bytes to tell.
    Undecided,
    /// Another protocol's (what it opened with).
    Other(&'static str),
    /// Not another protocol's: the agent's (or a stale reply of it).
    Agent,
}

fn opening(data: &[u8]) -> Opening {
    let mut verdict = Opening::Agent;
    for (prefix, found) in OTHER_OPENINGS {
        if data.starts_with(prefix) {
            return Opening::Other(found);
        }
        if prefix.starts_with(data) {
            verdict = Opening::Undecided;
        }
    }
    verdict
}

/// Commands that send no reply when they succeed (`'success-response':
/// false` in the agent's schema). Their success shows as [`Event::Accepted`].
pub const QUIET_COMMANDS: &[&str] =
    &["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"];

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Size and depth limits for one reply. The default, 64 MiB, holds a
    /// `guest-exec-status` with both streams at the agent's 16 MiB cap in base64.
    pub limits: Limits,
    /// Most commands in flight (with [`Heap`](crate::buf::Heap) storage).
    pub max_pending: usize,
    /// Most bytes of encoded commands waiting to be written (with `Heap` storage).
    pub max_transmit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { limits: Limits { max_message: 64 << 20, max_depth: 128 }, max_pending: 1024, max_transmit: 4 << 20 }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `0xFF` and `guest-sync-delimited` sent; waiting for the matching
    /// reply. Commands may already be queued behind it.
    Syncing,
    /// In step with the agent.
    Ready,
    /// The stream ended.
    Closed,
}

/// What the [`Client`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// The agent answered the sync with the right id: replies from here on
    /// are to this session's commands.
    Synced,
    /// A command succeeded.
    Return {
        /// The command's id.
        id: &'a Id,
        /// Its `return` value.
        value: Value<'a>,
    },
    /// A command failed: the agent said no.
    Error {
        /// The command's id.
        id: &'a Id,
        /// The agent's error.
        error: ErrorReply<'a>,
    },
    /// A command that sends no reply on success (see [`QUIET_COMMANDS`])
    /// succeeded: the agent answered a later command, or went away after it.
    Accepted {
        /// The command's id.
        id: &'a Id,
    },
    /// An error reply with no id: the agent's answer to input it could not parse.
    UntaggedError(ErrorReply<'a>),
    /// The reply to a command the caller [forgot](Client::forget).
    Stale {
        /// The forgotten command's id.
        id: &'a Id,
        /// What it came back with.
        reply: Reply<'a>,
    },
    /// A message that answers nothing sent on this session: a reply with an
    /// unknown id (or none), or, while syncing, a sync reply with another
    /// id, which the machine rejects (it keeps waiting for its own).
    Unmatched(Message<'a>),
    /// A message with the id of command `id` that is not a valid reply (both
    /// `return` and `error`, an `error` without `class` or `desc`, neither),
    /// or a reply over the size limit (skipped unread) that can only be this
    /// command's: the oldest in flight, when none in flight is quiet (the
    /// agent answers in order). The command failed, and `error` says how its
    /// reply was malformed ([`Error::BadMessage`], or [`Error::Json`] too
    /// large). The session goes on.
    MalformedReply {
        /// The command's id.
        id: &'a Id,
        /// What was wrong with the reply ([`Error::BadMessage`], or
        /// [`Error::Json`] for one over the size limit).
        error: Error,
    },
    /// A message that could not be understood, and was skipped.
    Malformed(Error),
    /// The peer spoke first, as QMP (`{"QMP": …` greeting) or the human
    /// monitor (`QEMU … monitor` banner, `(qemu) ` prompt) do and the agent
    /// never does: this is another protocol's socket. `text` is the start
    /// of what arrived (its first line, at most [`WRONG_PROTOCOL_TEXT`] bytes). The session
    /// is over: commands are reported [`Event::Failed`], then [`Event::Closed`].
    WrongProtocol {
        /// [`Error::NotAgent`].
        error: Error,
        /// The first bytes received.
        text: &'a [u8],
    },
    /// This command's reply will not come: the session was resynchronised
    /// or closed first. Reported once for every such command.
    Failed {
        /// The command's id.
        id: &'a Id,
    },
    /// The session is closed; nothing more will come. Reported once, last.
    Closed,
}

/// What went wrong in the [`Client`] itself (not the agent's error replies, which are events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A message that is not valid JSON, or too large or too deep.
    Json(json::Error),
    /// Valid JSON, but not a reply (`what` says how).
    BadMessage {
        /// What was wrong.
        what: &'static str,
    },
    /// A method called in a state that does not allow it.
    WrongState {
        /// The state the machine was in.
        state: State,
        /// The method.
        operation: &'static str,
    },
    /// The agent has no out-of-band execution.
    OobNotSupported,
    /// A caller-supplied id is already pending (or forgotten and unanswered).
    IdInUse,
    /// Command arguments must be a JSON object.
    ArgumentsNotObject,
    /// The table of commands in flight is full.
    TooManyPending {
        /// Its limit.
        limit: usize,
    },
    /// The transmit buffer is full: write out what is queued first.
    TransmitFull(Full),
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
    /// The peer is not a guest agent: it opened with another protocol's words.
    NotAgent {
        /// What it opened with: `QMP's greeting`, `the human monitor's banner`, ….
        found: &'static str,
    },
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::Json(e) if e.is_too_large() => K::TooLarge,
            Error::Json(_) | Error::BadMessage { .. } | Error::NotAgent { .. } => K::InvalidData,
            Error::WrongState { .. } => K::WrongState,
            Error::OobNotSupported => K::Unsupported,
            Error::IdInUse | Error::ArgumentsNotObject => K::InvalidInput,
            Error::TooManyPending { .. } => K::Busy,
            Error::TransmitFull(_) => K::TransmitFull,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json(e) => write!(f, "QGA: {e}"),
            Error::BadMessage { what } => write!(f, "QGA: bad message: {what}"),
            Error::WrongState { state, operation } => write!(f, "QGA: {operation} is not allowed in state {state:?}"),
            Error::OobNotSupported => f.write_str("QGA: the guest agent has no out-of-band execution"),
            Error::IdInUse => {
                f.write_str("QGA: the command's id is already in use (a command sent under it is unanswered)")
            }
            Error::ArgumentsNotObject => f.write_str("QGA: command arguments must be a JSON object"),
            Error::TooManyPending { limit } => write!(f, "QGA: {limit} commands already in flight"),
            Error::TransmitFull(e) => write!(f, "QGA: transmit {e}"),
            Error::CommitTooLarge(e) => write!(f, "QGA: {e}"),
            Error::NotAgent { found } => {
                write!(f, "QGA: expected the guest agent's answer to guest-sync-delimited, got {found}")
            }
        }
    }
}

crate::qapi::client_error!(Error);

/// The guest agent client machine. See the [module documentation](self).
pub struct Client<S: Storage> {
    framer: Framer<S::Rx>,
    core: Core<S>,
}

/// Everything but the receive side, so that events can borrow the framer
/// while the rest of the machine changes.
struct Core<S: Storage> {
    state: State,
    tx: TxBuf<S::Tx>,
    table: Table<S::Table<Pending>>,
    /// The id of the sync in progress (or the last one).
    sync: u64,
    /// Syncing, and the `0xFF` before the reply is not here yet.
    seeking: bool,
    /// Nothing received yet has been looked at: the stream's opening tells
    /// another protocol's socket.
    opening: bool,
    eof: bool,
    closed_reported: bool,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.core.state)
            .field("sync", &self.core.sync)
            .field("pending", &self.core.table.len())
            .field("transmit", &self.core.tx.pending().len())
            .finish_non_exhaustive()
    }
}

/// Takes the low 63 bits: the agent reads the id as a signed 64-bit integer.
fn sync_id(id: u64) -> u64 {
    id & i64::MAX as u64
}

impl<S: Storage> Client<S> {
    /// A client that opens the session: `0xFF` and `guest-sync-delimited`
    /// with `sync_id` are queued to be written. Pick the id at random (only
    /// its low 63 bits are used), so that a reply to some earlier client's
    /// sync cannot pass for this one.
    pub fn new(config: Config, sync_id: u64) -> Self {
        let framer = Framer::new(S::rx(config.limits.max_message), config.limits).with_delimiter(DELIMITER);
        let mut core = Core {
            state: State::Syncing,
            tx: TxBuf::new(S::tx(config.max_transmit)),
            table: Table::new(S::table(config.max_pending)),
            sync: 0,
            seeking: true,
            opening: true,
            eof: false,
            closed_reported: false,
        };
        if core.queue_sync(sync_id).is_err() {
            // Not even the sync fits the transmit buffer: nothing can be said.
            core.state = State::Closed;
        }
        Client { framer, core }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The id of the sync in progress, or of the last one.
    pub fn sync_id(&self) -> u64 {
        self.core.sync
    }

    /// How many commands are waiting for a reply (forgotten ones excluded).
    pub fn in_flight(&self) -> usize {
        self.core.table.in_flight()
    }

    /// The id the next resynchronisation after a timeout uses: the last
    /// one stirred (splitmix64), so that it is as unguessable as the id the
    /// session was opened with, and never the same twice in a row.
    pub fn next_sync_id(&self) -> u64 {
        let mut z = self.core.sync.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Resynchronises (after a timeout, or whenever the stream is in doubt):
    /// drops what is not yet written, queues `0xFF` and `guest-sync-delimited`
    /// with `sync_id`, and discards everything received up to the agent's
    /// `0xFF`. Commands still waiting are reported [`Event::Failed`]; new
    /// ones may be sent at once (they queue behind the sync).
    pub fn resync(&mut self, sync_id: u64) -> Result<(), Error> {
        let core = &mut self.core;
        if core.state == State::Closed {
            return Err(Error::WrongState { state: State::Closed, operation: "resync" });
        }
        core.table.abandon_all();
        core.tx.clear();
        core.queue_sync(sync_id)
    }

    /// Sends `name` with `arguments` (a JSON object), under an id the machine
    /// assigns and returns.
    pub fn execute(&mut self, name: &str, arguments: Option<Value<'_>>) -> Result<Id, Error> {
        self.send(Command { name, arguments, id: None, oob: false })
    }

    /// Like [`Client::execute`], with the arguments written by `arguments`
    /// straight into the transmit buffer (file contents go in as base64
    /// with [`ObjectWriter::base64`], without a copy).
    pub fn execute_with(
        &mut self,
        name: &str,
        arguments: impl FnOnce(&mut ObjectWriter<'_, S::Tx>) -> Result<(), Full>,
    ) -> Result<Id, Error> {
        self.core.open("execute")?;
        let id = self.core.table.fresh_id();
        self.core.encode(id.clone(), name, |obj| obj.object("arguments", arguments).map(drop))?;
        Ok(id)
    }

    /// Sends `command`.
    pub fn send(&mut self, command: Command<'_>) -> Result<Id, Error> {
        let core = &mut self.core;
        core.open("execute")?;
        if command.oob {
            return Err(Error::OobNotSupported);
        }
        let id = core.table.admit(&command)?;
        let args = command.arguments;
        core.encode(id.clone(), command.name, |obj| match args {
            Some(args) => obj.value("arguments", args).map(drop),
            None => Ok(()),
        })?;
        Ok(id)
    }

    /// Gives up on command `id` (its timeout ran out). Its reply, if it
    /// comes, is reported as [`Event::Stale`]. Returns whether `id` was pending.
    pub fn forget(&mut self, id: &Id) -> bool {
        self.core.table.forget(id)
    }

    /// Ends the session from this side: pending commands are reported
    /// failed, then [`Event::Closed`].
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.core.tx.clear();
    }
}

impl<S: Storage> Core<S> {
    fn open(&self, operation: &'static str) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::WrongState { state: State::Closed, operation }),
            _ => Ok(()),
        }
    }

    fn queue_sync(&mut self, id: u64) -> Result<(), Error> {
        let id = sync_id(id);
        self.tx
            .encode(|out| {
                out.put(&[DELIMITER])?;
                let arguments = |obj: &mut ObjectWriter<'_, S::Tx>| {
                    obj.object("arguments", |args| args.u64("id", id).map(drop)).map(drop)
                };
                qapi::write_command(out, "execute", "guest-sync-delimited", arguments, None, b"\n")
            })
            .map_err(Error::TransmitFull)?;
        self.sync = id;
        self.state = State::Syncing;
        self.seeking = true;
        Ok(())
    }

    fn encode(
        &mut self,
        id: Id,
        name: &str,
        arguments: impl FnOnce(&mut ObjectWriter<'_, S::Tx>) -> Result<(), Full>,
    ) -> Result<(), Error> {
        let quiet = QUIET_COMMANDS.contains(&name);
        let pending = Pending { quiet, ..Pending::new(id.clone()) };
        let write = |out: &mut S::Tx| qapi::write_command(out, "execute", name, arguments, Some(&id), b"\n");
        Ok(self.table.send(&mut self.tx, pending, write)?)
    }

    /// Whether `msg` is `{"return": <our sync id>}`.
    fn is_sync_reply(&self, msg: &Message<'_>) -> bool {
        msg.get("return").and_then(|v| v.as_u64()) == Some(self.sync)
    }

    /// Turns one framed reply into an event.
    fn classify<'a>(&'a mut self, msg: Message<'a>) -> Event<'a> {
        let Some(obj) = msg.object() else {
            return Event::Malformed(Error::BadMessage { what: "not a JSON object" });
        };
        let m = Members::of(obj);
        let reply = match m.reply() {
            Ok(reply) => reply,
            Err(what) => {
                let answered = m.id.and_then(|id| self.table.answered(id));
                return self.malformed_reply(answered, Error::BadMessage { what });
            }
        };
        match self.table.settle(m.id, reply) {
            Settled::Return { id, value } => Event::Return { id: self.table.keep(id), value },
            Settled::Error { id, error } => Event::Error { id: self.table.keep(id), error },
            Settled::Stale { id, reply } => Event::Stale { id: self.table.keep(id), reply },
            Settled::Untagged(error) => Event::UntaggedError(error),
            Settled::Own(_) | Settled::Unmatched => Event::Unmatched(msg),
        }
    }

    /// A message that is not JSON (`error`) was skipped. One over the size
    /// limit that can only be the reply to the oldest command in flight
    /// ([`Table::take_skipped`]) fails that command; otherwise the message is
    /// reported and the session goes on.
    #[cold]
    #[inline(never)]
    fn skipped(&mut self, head: &[u8], error: json::Error) -> Event<'_> {
        let answered = self.table.take_skipped(head, &error);
        self.malformed_reply(answered, Error::Json(error))
    }

    /// A message that is not a valid reply, to the command `answered` (taken
    /// out of the table), if any: if a caller waits for that command, it
    /// failed; otherwise the message is skipped.
    fn malformed_reply(&mut self, answered: Option<Pending>, error: Error) -> Event<'_> {
        match self.table.failed(answered) {
            Some(id) => Event::MalformedReply { id, error },
            None => Event::Malformed(error),
        }
    }

    fn ended(&mut self, id: Id, ending: Ending) -> Event<'_> {
        let id = self.table.keep(id);
        match ending {
            Ending::Failed => Event::Failed { id },
            Ending::Accepted => Event::Accepted { id },
        }
    }

    /// After the session closed: how each command ended, then `Closed`.
    fn wind_down(&mut self) -> Option<Event<'_>> {
        if let Some((id, ending)) = self.table.close_next(self.eof) {
            return Some(self.ended(id, ending));
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
    type Request = Id;

    fn recv_buf(&mut self) -> &mut [u8] {
        self.framer.recv_buf_dropping(self.core.state == State::Closed)
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        // A closed machine still takes bytes, and drops them: nothing is listening.
        crate::commit_or_eof(self, n, |m, n| m.framer.commit(n, m.core.state == State::Closed), Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        let core = &mut self.core;
        if core.state == State::Closed {
            return Ok(core.wind_down());
        }
        if let Some((id, ending)) = core.table.next_ended() {
            return Ok(Some(core.ended(id, ending)));
        }
        if core.opening {
            match opening(self.framer.buffered()) {
                Opening::Undecided if !core.eof => return Ok(None),
                Opening::Other(found) => {
                    // Shown: its first line, the same whatever the chunking.
                    let cap = WRONG_PROTOCOL_TEXT.min(self.framer.limits().max_message).max(1);
                    let buffered = self.framer.buffered();
                    let Some(len) = crate::hmp::opening_text(buffered, cap, core.eof) else {
                        return Ok(None);
                    };
                    core.state = State::Closed;
                    let text = buffered.get(..len).unwrap_or(buffered);
                    return Ok(Some(Event::WrongProtocol { error: Error::NotAgent { found }, text }));
                }
                _ => core.opening = false,
            }
        }
        if core.seeking {
            // Everything before the agent's 0xFF is stale.
            let buffered = self.framer.buffered();
            let stale = memchr::memchr(DELIMITER, buffered).map_or(buffered.len(), |k| k + 1);
            let found = stale > 0 && buffered.get(stale - 1) == Some(&DELIMITER);
            self.framer.discard(stale);
            core.seeking = !found;
            if core.seeking {
                if core.eof {
                    core.state = State::Closed;
                    return Ok(core.wind_down());
                }
                return Ok(None);
            }
        }
        match self.framer.take(core.eof) {
            Found::Message(msg) => {
                if core.state == State::Syncing {
                    if core.is_sync_reply(&msg) {
                        core.state = State::Ready;
                        return Ok(Some(Event::Synced));
                    }
                    // Not our sync's reply: wait for the next 0xFF.
                    core.seeking = true;
                    return Ok(Some(Event::Unmatched(msg)));
                }
                Ok(Some(core.classify(msg)))
            }
            Found::Error { error, .. } if core.state == State::Syncing => {
                core.seeking = true;
                Ok(Some(Event::Malformed(Error::Json(error))))
            }
            Found::Error { error, skipped, .. } => Ok(Some(core.skipped(skipped, error))),
            Found::More if core.eof => {
                core.state = State::Closed;
                Ok(core.wind_down())
            }
            Found::More => Ok(None),
        }
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

    /// Resynchronises under the next sync id (see [`Client::next_sync_id`]),
    /// so that whatever is late cannot pass for a later command's reply:
    /// every command still waiting fails ([`Event::Failed`]).
    fn expire(&mut self, _id: &Id) {
        if self.core.state != State::Closed && self.resync(self.next_sync_id()).is_err() {
            self.close();
        }
    }
}

/// A `guest-exec-status` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecStatus<'a> {
    /// Whether the process has ended (and been reaped: the agent forgets it now).
    pub exited: bool,
    /// Its exit code, if it exited normally.
    pub exit_code: Option<i64>,
    /// The signal that killed it, if one did.
    pub signal: Option<i64>,
    /// Its standard output so far, in base64 (with `capture-output`).
    pub out_data: Option<JsonStr<'a>>,
    /// Its standard error so far, in base64.
    pub err_data: Option<JsonStr<'a>>,
    /// The agent dropped output past its limit (16 MiB).
    pub out_truncated: bool,
    /// The agent dropped error output past its limit.
    pub err_truncated: bool,
}

impl<'a> ExecStatus<'a> {
    /// Reads a `guest-exec-status` return value.
    pub fn parse(value: Value<'a>) -> Option<Self> {
        let flag = |key| value.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        let text = |key| value.get(key).and_then(|v| v.as_str());
        Some(ExecStatus {
            exited: value.get("exited")?.as_bool()?,
            exit_code: value.get("exitcode").and_then(|v| v.as_i64()),
            signal: value.get("signal").and_then(|v| v.as_i64()),
            out_data: text("out-data"),
            err_data: text("err-data"),
            out_truncated: flag("out-truncated"),
            err_truncated: flag("err-truncated"),
        })
    }
}

/// A `guest-file-read` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRead<'a> {
    /// Bytes read.
    pub count: u64,
    /// The bytes, in base64.
    pub data: JsonStr<'a>,
    /// The end of the file was reached.
    pub eof: bool,
}

impl<'a> FileRead<'a> {
    /// Reads a `guest-file-read` return value.
    pub fn parse(value: Value<'a>) -> Option<Self> {
        Some(FileRead {
            count: value.get("count")?.as_u64()?,
            data: value.get("buf-b64")?.as_str()?,
            eof: value.get("eof")?.as_bool()?,
        })
    }
}
