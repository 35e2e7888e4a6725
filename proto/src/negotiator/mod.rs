//! negotiator: the host/guest channel of KVM/QEMU, byte-compatible with
//! negotiator-common 0.12.2.
//!
//! Two virtio-serial channels join a host and each of its guests:
//! [`HOST_TO_GUEST_CHANNEL`] (the host calls, the guest answers) and
//! [`GUEST_TO_HOST_CHANNEL`] (the guest calls, the host answers). On each, one
//! side is a [`Caller`] and the other a [`Responder`], strictly one call at a
//! time. A message is a frame: its length in ASCII decimal, `\n`, then that
//! many bytes of JSON ([`Decoder`], [`encode`]).
//!
//! A request is `{"method": NAME, "args": [...], "kw": {...}}` (the code's
//! keys, not the documented `command`/`arguments`/`keyword-arguments`); a
//! response is `{"success": true, "result": VALUE}` or
//! `{"success": false, "error": "TEXT"}`. Both machines write exactly what
//! the Python peer writes for the same call: `"%d\n%s"`, Python's
//! separators, every non-ASCII character escaped.
//!
//! The original documentation is `docs/reference/negotiator-api.txt`; where
//! it and negotiator-common's code disagree (the request keys, the length
//! counted in characters), the code wins, and the captures in
//! `fixtures/negotiator/` show it.
//!
//! The Python peer calls any public method it is sent (even `raw_write`,
//! which writes raw bytes to the channel). The [`Responder`] hands out only
//! the methods in its [`Config::methods`] and answers anything else itself.
//!
//! ```
//! use vmwire_proto::{Machine, buf::Fixed, json::Value, negotiator::{Caller, CallerEvent, Config, Responder, Request}};
//!
//! let mut caller = Caller::<Fixed<1024>>::new(Config::default());
//! let mut responder = Responder::<Fixed<1024>>::new(Config::default());
//! caller.call("list_commands", Value::parse(b"[]")?, Value::parse(b"{}")?)?;
//! assert_eq!(caller.transmit(), b"49\n{\"method\": \"list_commands\", \"args\": [], \"kw\": {}}");
//!
//! responder.receive(caller.transmit())?;
//! let n = caller.transmit().len();
//! caller.transmitted(n);
//! let Some(Request { method, .. }) = responder.poll()?.and_then(|e| e.into_request()) else { panic!() };
//! assert_eq!(method, "list_commands");
//! responder.respond_array(|commands| {
//!     commands.str("find-ip-addresses")?;
//!     Ok(())
//! })?;
//! assert_eq!(responder.transmit(), b"50\n{\"success\": true, \"result\": [\"find-ip-addresses\"]}");
//!
//! caller.receive(responder.transmit())?;
//! match caller.poll()? {
//!     Some(CallerEvent::Result(value)) => assert_eq!(value.raw(), b"[\"find-ip-addresses\"]"),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod caller;
mod codec;
mod responder;

use core::fmt;

pub use caller::{Answer, Caller, CallerEvent, Reply, Response};
pub use codec::{Decoder, Limits, MAX_LENGTH_LINE, encode, write_frame};
pub use responder::{Request, Responder, ResponderEvent};

use crate::buf::Full;
use crate::json::{self, JsonStr, Object, Value};

/// The channel on which the host calls and the guest answers.
pub const HOST_TO_GUEST_CHANNEL: &str = "negotiator-host-to-guest.0";

/// The channel on which the guest calls and the host answers.
pub const GUEST_TO_HOST_CHANNEL: &str = "negotiator-guest-to-host.0";

/// The methods a negotiator agent offers the other side: `list_commands()`
/// and `execute(*command, input=None)`.
pub const BUILTIN_METHODS: &[&str] = &["list_commands", "execute"];

/// Settings for a [`Caller`] or a [`Responder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Limits on frames received.
    pub limits: Limits,
    /// Most bytes of encoded frames waiting to be written (with
    /// [`Heap`](crate::buf::Heap) storage; fixed storage has its own size).
    /// Escaping to ASCII can make a string up to six times longer.
    pub max_transmit: usize,
    /// The methods a [`Responder`] hands out as requests; it answers any
    /// other itself, as not supported.
    pub methods: &'static [&'static str],
}

impl Default for Config {
    /// Frames up to 16 MiB in and 64 MiB out; the [`BUILTIN_METHODS`].
    fn default() -> Self {
        Config { limits: Limits::default(), max_transmit: 64 << 20, methods: BUILTIN_METHODS }
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Between calls.
    Idle,
    /// A call is in progress: the caller waits for its response, or the
    /// responder has handed out a request and waits to be given the response.
    Busy,
    /// The stream ended, or its framing was lost.
    Closed,
}

/// What went wrong: a bad frame from the peer, or a machine used wrongly.
///
/// The peer's own error response is not one of these: it is an event
/// ([`CallerEvent::Error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A byte that cannot be part of a length line. Breaks framing.
    InvalidLength {
        /// The byte.
        found: u8,
        /// Its stream offset.
        offset: u64,
    },
    /// A length line with no digits (an empty line). Breaks framing.
    MissingLength {
        /// The line's stream offset.
        offset: u64,
    },
    /// No `\n` within [`MAX_LENGTH_LINE`] bytes. Breaks framing.
    LengthLineTooLong {
        /// The longest line accepted, in bytes.
        limit: usize,
        /// The line's stream offset.
        offset: u64,
    },
    /// A frame longer than the limit: its body is skipped, not buffered, and
    /// the stream goes on after it.
    TooLarge {
        /// The length the peer announced.
        length: u64,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// A byte outside ASCII in a frame body: the peer counts lengths in
    /// characters, so raw non-ASCII text makes the length ambiguous.
    NonAscii {
        /// The byte's stream offset.
        offset: u64,
    },
    /// A frame body that is not exactly one JSON value (invalid, empty, or
    /// nested too deep); offsets count from the start of the stream.
    Json(json::Error),
    /// The stream ended inside a length line.
    TruncatedLength {
        /// Stream offset where it ended.
        offset: u64,
    },
    /// The stream ended inside a frame body.
    TruncatedBody {
        /// The length announced.
        length: u64,
        /// The bytes of it that arrived.
        received: u64,
    },
    /// Valid JSON, but not the request or response expected; `what` says how.
    BadMessage {
        /// What was wrong.
        what: &'static str,
    },
    /// A method called in a state that does not allow it (such as a second
    /// call before the first one's response).
    WrongState {
        /// The state the machine was in.
        state: State,
        /// The method.
        operation: &'static str,
    },
    /// A call's `args` must be a JSON array.
    ArgsNotArray,
    /// A call's `kw` must be a JSON object.
    KwNotObject,
    /// The transmit buffer is full: write out what is queued first, or the
    /// message is larger than the transmit limit.
    TransmitFull(Full),
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::LengthLineTooLong { .. } | Error::TooLarge { .. } => K::TooLarge,
            Error::Json(e) if e.is_too_large() => K::TooLarge,
            Error::InvalidLength { .. }
            | Error::MissingLength { .. }
            | Error::NonAscii { .. }
            | Error::Json(_)
            | Error::TruncatedLength { .. }
            | Error::TruncatedBody { .. }
            | Error::BadMessage { .. } => K::InvalidData,
            Error::WrongState { .. } => K::WrongState,
            Error::ArgsNotArray | Error::KwNotObject => K::InvalidInput,
            Error::TransmitFull(_) => K::TransmitFull,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl Error {
    /// Whether the error lost the framing of the stream: nothing after it can
    /// be read, and the session is over (the Python peer's read loop ends on
    /// every framing error too).
    pub fn breaks_framing(&self) -> bool {
        matches!(
            self,
            Error::InvalidLength { .. }
                | Error::MissingLength { .. }
                | Error::LengthLineTooLong { .. }
                | Error::TruncatedLength { .. }
                | Error::TruncatedBody { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidLength { found, offset } => {
                f.write_str("negotiator: expected a length in decimal digits, found ")?;
                if found.is_ascii_graphic() {
                    write!(f, "'{}'", *found as char)?;
                } else {
                    write!(f, "byte 0x{found:02x}")?;
                }
                write!(f, " at byte {offset}")
            }
            Error::MissingLength { offset } => write!(f, "negotiator: empty length line at byte {offset}"),
            Error::LengthLineTooLong { limit, offset } => {
                write!(f, "negotiator: length line at byte {offset} is longer than {limit} bytes")
            }
            Error::TooLarge { length, limit } => {
                write!(f, "negotiator: a frame of {length} bytes is over the limit of {limit} bytes")
            }
            Error::NonAscii { offset } => write!(
                f,
                "negotiator: non-ASCII byte at byte {offset} (frames are ASCII: the peer counts characters, not bytes)"
            ),
            Error::Json(e) => write!(f, "negotiator: frame body: {e}"),
            Error::TruncatedLength { offset } => {
                write!(f, "negotiator: the stream ended inside a length line at byte {offset}")
            }
            Error::TruncatedBody { length, received } => {
                write!(f, "negotiator: the stream ended {received} bytes into a frame of {length} bytes")
            }
            Error::BadMessage { what } => write!(f, "negotiator: {what}"),
            Error::WrongState { state, operation } => {
                write!(f, "negotiator: {operation} is not allowed in state {state:?}")
            }
            Error::ArgsNotArray => f.write_str("negotiator: args must be a JSON array"),
            Error::KwNotObject => f.write_str("negotiator: kw must be a JSON object"),
            Error::TransmitFull(e) => write!(f, "negotiator: transmit {e}"),
            Error::CommitTooLarge(e) => write!(f, "negotiator: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Json(e) => Some(e),
            Error::TransmitFull(e) => Some(e),
            _ => None,
        }
    }
}

impl From<json::Error> for Error {
    fn from(e: json::Error) -> Self {
        Error::Json(e)
    }
}

/// The value of the last member named `key`: Python's `json.loads` keeps the
/// last of duplicate keys, and so must we, or a request could mean one thing
/// here and another to the peer.
fn member<'a>(obj: Object<'a>, key: &str) -> Option<Value<'a>> {
    obj.members().filter(|(k, _)| *k == key).last().map(|(_, v)| v)
}

/// A string member's value, last of its name.
fn str_member<'a>(obj: Object<'a>, key: &str) -> Option<JsonStr<'a>> {
    member(obj, key)?.as_str()
}
