//! QMP's messages as owned values (with `std`): what a client keeps past the
//! moment the bytes are in the machine's buffer (the greeting, events, the
//! messages that belonged to no command). Every adapter hands these to its
//! callers, so they are made here once.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::{AsyncEvent, Error, ErrorReply, Event as MachineEvent, Greeting as Borrowed, Timestamp};

/// QEMU's own error reply: the command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuError {
    /// Error class, such as `GenericError` or `CommandNotFound`.
    pub class: String,
    /// Description.
    pub desc: String,
}

impl From<ErrorReply<'_>> for QemuError {
    fn from(e: ErrorReply<'_>) -> Self {
        QemuError { class: e.class.to_string(), desc: e.desc.to_string() }
    }
}

/// Escaped (see [`crate::text::escape`]): the text is QEMU's (or a guest's).
impl fmt::Display for QemuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", crate::text::escape(&self.class), crate::text::escape(&self.desc))
    }
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Greeting {
    /// QEMU's version as `(major, minor, micro)`.
    pub version: (u64, u64, u64),
    /// The distribution's package string.
    pub package: String,
    /// Capabilities offered (such as `oob`).
    pub capabilities: Vec<String>,
}

impl From<&Borrowed<'_>> for Greeting {
    fn from(g: &Borrowed<'_>) -> Self {
        Greeting {
            version: g.version().unwrap_or_default(),
            package: g.package().map(|p| p.to_string()).unwrap_or_default(),
            capabilities: g.capabilities().map(|c| c.to_string()).collect(),
        }
    }
}

/// An asynchronous event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its name, such as `STOP`.
    pub name: String,
    /// When QEMU says it happened.
    pub timestamp: Timestamp,
    /// Its `data` member (`null` if none).
    pub data: serde_json::Value,
}

impl Event {
    /// The event, owned; or, when its data cannot be decoded (`serde_json`
    /// refuses a number out of its range, say), a [`Stray::Malformed`]: one
    /// message lost, the session goes on.
    pub fn of(e: AsyncEvent<'_>) -> Result<Event, Stray> {
        match e.data.map_or(Ok(serde_json::Value::Null), |d| d.deserialize()) {
            Ok(data) => Ok(Event { name: e.name.to_string(), timestamp: e.timestamp, data }),
            Err(error) => Err(Stray::Malformed(alloc::format!("event {}: data: {error}", e.name))),
        }
    }
}

/// A message that belonged to no command the client is waiting for. None
/// of these stop the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stray {
    /// An error reply without an id.
    UntaggedError(QemuError),
    /// A reply to no command sent on this connection (raw JSON).
    Unmatched(String),
    /// A reply to a command that timed out.
    Stale {
        /// The command's id.
        id: String,
        /// The reply (raw JSON of `return` or of `error`).
        reply: String,
    },
    /// A message that could not be understood, and was skipped.
    Malformed(String),
}

/// What an inbox keeps of an event no operation took.
#[derive(Debug)]
pub enum Kept {
    /// An asynchronous event.
    Event(Event),
    /// A message that belonged to no command.
    Stray(Stray),
    /// A message skipped as unreadable: the stray, and the machine's error
    /// (to say why a reply never came).
    Skipped(Stray, Error),
    /// The session is over.
    Closed,
    /// Nothing to keep (an answer of the opening, or a command's reply that
    /// its operation did not wait for).
    Nothing,
}

impl Kept {
    /// What to keep of `event`.
    pub fn of(event: MachineEvent<'_>) -> Kept {
        use MachineEvent as E;
        match event {
            E::Event(e) => match Event::of(e) {
                Ok(event) => Kept::Event(event),
                Err(stray) => Kept::Stray(stray),
            },
            E::UntaggedError(e) => Kept::Stray(Stray::UntaggedError(e.into())),
            E::Unmatched(m) => Kept::Stray(Stray::Unmatched(m.value().raw_str().into())),
            E::Stale { id, reply } => {
                let reply = match reply {
                    Ok(v) => v.raw_str().into(),
                    Err(e) => serde_json::json!({ "class": e.class.to_cow(), "desc": e.desc.to_cow() }).to_string(),
                };
                Kept::Stray(Stray::Stale { id: id.to_string(), reply })
            }
            E::Malformed(e) => Kept::Skipped(Stray::Malformed(e.to_string()), e),
            E::MalformedReply { id, error } => {
                Kept::Stray(Stray::Malformed(alloc::format!("the reply to command {id}: {error}")))
            }
            E::Closed => Kept::Closed,
            E::Greeting(_)
            | E::Ready { .. }
            | E::NegotiationFailed(_)
            | E::NotGreeting { .. }
            | E::Return { .. }
            | E::Error { .. }
            | E::Failed { .. } => Kept::Nothing,
        }
    }
}
