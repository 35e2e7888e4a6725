//! What QMP and the guest agent share.
//!
//! QEMU answers commands on its QMP monitors and in qemu-ga with one
//! dispatcher (`qapi/qmp-dispatch.c`): a command is `{"execute": name,
//! "arguments": {…}, "id": …}`, its reply `{"return": …, "id": …}` or
//! `{"error": {"class": …, "desc": …}, "id": …}`, with the id echoed as QEMU
//! re-serialised it. This module holds that common ground once — ids, the
//! peer's error reply, the command builder, the table of commands in flight
//! and how a reply is matched to one of them — and [`qmp`](crate::qmp) and
//! [`qga`](crate::qga) build their machines on it.

use core::fmt;

use crate::buf::{Buf, Full, Sink, TxBuf};
use crate::json::{self, JsonStr, Kind, Object, ObjectWriter, Value};

/// Longest caller-chosen string id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A command's id, as sent and as echoed back in its reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A number; the ids the machine assigns itself are numbers.
    Number(u64),
    /// A string chosen by the caller (at most [`MAX_ID_LEN`] bytes).
    String(heapless::String<MAX_ID_LEN>),
}

impl Id {
    /// A string id; `None` if longer than [`MAX_ID_LEN`] bytes.
    pub fn string(s: &str) -> Option<Self> {
        heapless::String::try_from(s).ok().map(Id::String)
    }

    /// Whether the reply id `v` is this id. QEMU echoes an id as JSON it
    /// re-serialised itself (`"é"` comes back as `"\u00E9"`), so strings are
    /// compared after decoding.
    pub fn matches(&self, v: Value<'_>) -> bool {
        match self {
            Id::Number(n) => v.as_u64() == Some(*n),
            Id::String(s) => v.as_str().is_some_and(|j| j == s.as_str()),
        }
    }

    fn write<S: Sink + ?Sized>(&self, obj: &mut ObjectWriter<'_, S>) -> Result<(), Full> {
        match self {
            Id::Number(n) => obj.u64("id", *n)?,
            Id::String(s) => obj.str("id", s)?,
        };
        Ok(())
    }
}

/// An event's id (borrowed from the client) against one the caller holds.
impl PartialEq<Id> for &Id {
    fn eq(&self, other: &Id) -> bool {
        **self == *other
    }
}

/// The id the caller holds against an event's (borrowed from the client).
impl PartialEq<&Id> for Id {
    fn eq(&self, other: &&Id) -> bool {
        *self == **other
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The peer's own error reply: `{"class": …, "desc": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// Error class, such as `GenericError` or `CommandNotFound`.
    pub class: JsonStr<'a>,
    /// Human-readable description.
    pub desc: JsonStr<'a>,
}

impl ErrorReply<'_> {
    fn parse(v: Value<'_>) -> Option<ErrorReply<'_>> {
        let (class, desc) = v.pair("class", "desc", JsonStr::read)?;
        Some(ErrorReply { class, desc })
    }
}

impl fmt::Display for ErrorReply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}

/// A command's outcome: its `return` value, or the peer's error.
pub type Reply<'a> = Result<Value<'a>, ErrorReply<'a>>;

/// A command to send, for when `execute` is not enough.
///
/// ```
/// use vmwire_proto::{json::Value, qmp::{Command, Id}};
/// let args = Value::parse(br#"{"fdname": "disk0"}"#)?;
/// let cmd = Command::new("getfd").arguments(args).id(Id::string("fd-1").unwrap());
/// # Ok::<(), vmwire_proto::json::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Command<'c> {
    pub(crate) name: &'c str,
    pub(crate) arguments: Option<Value<'c>>,
    pub(crate) id: Option<Id>,
    pub(crate) oob: bool,
}

impl<'c> Command<'c> {
    /// A command named `name`, without arguments.
    pub fn new(name: &'c str) -> Self {
        Command { name, arguments: None, id: None, oob: false }
    }

    /// With these arguments (a JSON object).
    pub fn arguments(mut self, arguments: Value<'c>) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// With this id instead of one the machine assigns.
    pub fn id(mut self, id: Id) -> Self {
        self.id = Some(id);
        self
    }

    /// Out of band (`exec-oob`; QMP only).
    pub fn oob(mut self) -> Self {
        self.oob = true;
        self
    }

    /// The command's name.
    pub fn name(&self) -> &'c str {
        self.name
    }

    /// Its arguments, if it has any.
    pub fn args(&self) -> Option<Value<'c>> {
        self.arguments
    }
}

/// Writes `{"<verb>": name, <arguments>, "id": id}` and `end`. `arguments`
/// writes the `arguments` member (or nothing).
pub(crate) fn write_command<S: Sink + ?Sized>(
    out: &mut S,
    verb: &str,
    name: &str,
    arguments: impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full>,
    id: Option<&Id>,
    end: &[u8],
) -> Result<(), Full> {
    let mut obj = ObjectWriter::new(out)?;
    obj.str(verb, name)?;
    arguments(&mut obj)?;
    if let Some(id) = id {
        id.write(&mut obj)?;
    }
    obj.finish()?;
    out.put(end)
}

/// Where a command in the table stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Waiting for its reply.
    Waiting,
    /// The caller gave up on it: its reply, if it comes, is stale.
    Forgotten,
    /// Its reply will never come (the session was resynchronised): to be
    /// reported as failed.
    Abandoned,
    /// It sends no reply on success, and a later command's reply came
    /// first: it succeeded. To be reported.
    Accepted,
}

/// A command in flight.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: Id,
    pub(crate) slot: Slot,
    /// The machine sent it itself (QMP's `qmp_capabilities`): its reply is
    /// the machine's business.
    pub(crate) own: bool,
    /// The peer sends no reply when it succeeds (`'success-response': false`
    /// in the schema, such as the guest agent's `guest-shutdown`).
    pub(crate) quiet: bool,
    /// Sent out of band (QMP's `exec-oob`): its reply may overtake others.
    pub(crate) oob: bool,
}

impl Pending {
    pub(crate) fn new(id: Id) -> Self {
        Pending { id, slot: Slot::Waiting, own: false, quiet: false, oob: false }
    }
}

/// What a reply turned out to be.
#[derive(Debug)]
pub(crate) enum Settled<'a> {
    /// A caller's command succeeded.
    Return { id: Id, value: Value<'a> },
    /// A caller's command failed.
    Error { id: Id, error: ErrorReply<'a> },
    /// The reply to a forgotten command.
    Stale { id: Id, reply: Reply<'a> },
    /// The reply to one of the machine's own commands.
    Own(Reply<'a>),
    /// An error without an id.
    Untagged(ErrorReply<'a>),
    /// A return without an id, or a reply to no command in the table.
    Unmatched,
}

/// How a command ended without a reply of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its reply will never come.
    Failed,
    /// It succeeded silently, as it does.
    Accepted,
}

/// Why a command could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    ArgumentsNotObject,
    IdInUse,
    TooManyPending { limit: usize },
    TransmitFull(Full),
}

/// The commands in flight, in the order they were sent.
#[derive(Debug)]
pub(crate) struct Table<T> {
    slots: T,
    next_id: u64,
    /// The id of the command the last event was about, taken out of the
    /// table: events borrow it (an [`Id`] is 80 bytes; an event that carried
    /// one would be twice the size, moved on every poll).
    last: Id,
    /// A forgotten command was dropped to make room before its reply came.
    dropped: bool,
}

impl<T: Buf<Pending>> Table<T> {
    pub(crate) fn new(slots: T) -> Self {
        Table { slots, next_id: 0, last: Id::Number(0), dropped: false }
    }

    /// Keeps `id`, taken out of the table, for an event to borrow.
    pub(crate) fn keep(&mut self, id: Id) -> &Id {
        self.last = id;
        &self.last
    }

    fn position(&self, f: impl Fn(&Pending) -> bool) -> Option<usize> {
        self.slots.as_slice().iter().position(f)
    }

    /// Entries of any kind (also forgotten ones).
    pub(crate) fn len(&self) -> usize {
        self.slots.as_slice().len()
    }

    /// Commands still waiting for their reply.
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.as_slice().iter().filter(|p| p.slot == Slot::Waiting).count()
    }

    /// Whether `id` is in the table (waiting, or forgotten and unanswered).
    pub(crate) fn contains(&self, id: &Id) -> bool {
        self.position(|p| p.id == *id).is_some()
    }

    /// A number id not in the table.
    pub(crate) fn fresh_id(&mut self) -> Id {
        loop {
            let id = Id::Number(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if !self.contains(&id) {
                return id;
            }
        }
    }

    /// The id `command` goes out under: its own, if not in use, or a fresh
    /// one. Its arguments must be an object.
    pub(crate) fn admit(&mut self, command: &Command<'_>) -> Result<Id, SendError> {
        if command.arguments.is_some_and(|a| a.kind() != Kind::Object) {
            return Err(SendError::ArgumentsNotObject);
        }
        match &command.id {
            Some(id) if self.contains(id) => Err(SendError::IdInUse),
            Some(id) => Ok(id.clone()),
            None => Ok(self.fresh_id()),
        }
    }

    /// Marks waiting command `id` forgotten; whether it was waiting.
    pub(crate) fn forget(&mut self, id: &Id) -> bool {
        match self.slots.as_mut_slice().iter_mut().find(|p| p.id == *id && p.slot == Slot::Waiting) {
            Some(p) => {
                p.slot = Slot::Forgotten;
                true
            }
            None => false,
        }
    }

    /// Encodes a command with `write` into `tx` and records it, all or
    /// nothing. A full table makes room by dropping its oldest forgotten command.
    pub(crate) fn send<B: Buf<u8>>(
        &mut self,
        tx: &mut TxBuf<B>,
        pending: Pending,
        write: impl FnOnce(&mut B) -> Result<(), Full>,
    ) -> Result<(), SendError> {
        let limit = self.slots.limit();
        if self.len() >= limit {
            let i = self.position(|p| p.slot == Slot::Forgotten).ok_or(SendError::TooManyPending { limit })?;
            self.slots.remove_at(i);
            self.dropped = true;
        }
        tx.encode(write).map_err(SendError::TransmitFull)?;
        self.slots.try_push(pending).map_err(|full| SendError::TooManyPending { limit: full.limit })
    }

    /// Matches a reply (its `id` member, if any) to the command it answers
    /// and takes that command out of the table. Quiet commands sent before it
    /// have succeeded (the peer answers in order).
    #[inline]
    pub(crate) fn settle<'a>(&mut self, id: Option<Value<'a>>, reply: Reply<'a>) -> Settled<'a> {
        let Some(id_value) = id else {
            return match reply {
                Err(error) => Settled::Untagged(error),
                Ok(_) => Settled::Unmatched,
            };
        };
        let Some(pending) = self.answered(id_value) else {
            return Settled::Unmatched;
        };
        match (pending.own, pending.slot, reply) {
            (true, _, reply) => Settled::Own(reply),
            (false, Slot::Forgotten, reply) => Settled::Stale { id: pending.id, reply },
            (false, _, Ok(value)) => Settled::Return { id: pending.id, value },
            (false, _, Err(error)) => Settled::Error { id: pending.id, error },
        }
    }

    /// Takes out the command that a reply no one can read (skipped as over
    /// the size limit) answers, where that is certain: the oldest, if every
    /// command in flight went in band (the peer answers those in the order
    /// they came; an out-of-band one may overtake them), none is quiet (it
    /// answers only when it fails, so the reply may be its or the next
    /// one's) and no forgotten command was ever dropped to make room (its
    /// reply may still be on its way, ahead of the others).
    pub(crate) fn take_oldest(&mut self) -> Option<Pending> {
        if self.dropped || self.slots.as_slice().iter().any(|p| p.oob || p.quiet) {
            return None;
        }
        self.slots.remove_at(0)
    }

    /// The command a message skipped unread (`error`, after `head`, its
    /// first bytes) answers, taken out of the table: one over the size
    /// limit that begins as a reply can be the oldest's ([`Table::take_oldest`]).
    pub(crate) fn take_skipped(&mut self, head: &[u8], error: &json::Error) -> Option<Pending> {
        if error.is_too_large() && begins_reply(head) { self.take_oldest() } else { None }
    }

    /// The command a malformed or unreadable reply failed: `answered`, if
    /// a caller waits for it (a forgotten one ends silently).
    pub(crate) fn failed(&mut self, answered: Option<Pending>) -> Option<&Id> {
        match answered {
            Some(p) if p.slot == Slot::Waiting => Some(self.keep(p.id)),
            _ => None,
        }
    }

    /// Takes out the command (waiting or forgotten) that a reply with id
    /// `id_value` answers, if any. Quiet commands sent before it have
    /// succeeded (the peer answers in order).
    #[inline]
    pub(crate) fn answered(&mut self, id_value: Value<'_>) -> Option<Pending> {
        if self.slots.as_slice().is_empty() { None } else { self.take_answered(id_value) }
    }

    /// [`Table::answered`] with commands pending.
    #[inline(never)]
    fn take_answered(&mut self, id_value: Value<'_>) -> Option<Pending> {
        // Read the reply's id once, as the kind it is, then compare it with
        // each pending one.
        let (number, string) = match id_value.kind() {
            Kind::Number => (id_value.as_u64(), None),
            Kind::String => (None, id_value.as_str()),
            _ => return None,
        };
        let answers = |p: &Pending| {
            matches!(p.slot, Slot::Waiting | Slot::Forgotten)
                && match &p.id {
                    Id::Number(n) => number == Some(*n),
                    Id::String(s) => string.is_some_and(|j| j == s.as_str()),
                }
        };
        let k = self.position(answers)?;
        let pending = self.slots.remove_at(k)?;
        for earlier in self.slots.as_mut_slice().iter_mut().take(k) {
            if earlier.quiet && earlier.slot == Slot::Waiting {
                earlier.slot = Slot::Accepted;
            }
        }
        Some(pending)
    }

    /// No reply sent so far will come: waiting commands are abandoned,
    /// forgotten ones dropped.
    pub(crate) fn abandon_all(&mut self) {
        for p in self.slots.as_mut_slice() {
            if p.slot == Slot::Waiting {
                p.slot = Slot::Abandoned;
            }
        }
        while let Some(i) = self.position(|p| p.slot == Slot::Forgotten || p.own) {
            self.slots.remove_at(i);
        }
    }

    /// Takes out the first command that ended without a reply while the
    /// session goes on (abandoned, or quietly accepted).
    pub(crate) fn next_ended(&mut self) -> Option<(Id, Ending)> {
        let i = self.position(|p| matches!(p.slot, Slot::Abandoned | Slot::Accepted))?;
        let p = self.slots.remove_at(i)?;
        Some((p.id, if p.slot == Slot::Accepted { Ending::Accepted } else { Ending::Failed }))
    }

    /// The session closed: takes out the commands one by one and says how
    /// each ended. When the peer closed it (`peer_gone`), a quiet command
    /// still waiting is taken to have succeeded: the peer goes away after
    /// `guest-shutdown`. Forgotten and the machine's own commands end silently.
    pub(crate) fn close_next(&mut self, peer_gone: bool) -> Option<(Id, Ending)> {
        while let Some(p) = self.slots.remove_at(0) {
            match p.slot {
                _ if p.own => {}
                Slot::Forgotten => {}
                Slot::Waiting if p.quiet && peer_gone => return Some((p.id, Ending::Accepted)),
                Slot::Waiting | Slot::Abandoned => return Some((p.id, Ending::Failed)),
                Slot::Accepted => return Some((p.id, Ending::Accepted)),
            }
        }
        None
    }
}

/// The commands whose arguments carry a password, and which argument.
const SECRET_ARGUMENTS: [(&str, &str); 4] = [
    ("set_password", "password"),
    ("change-vnc-password", "password"),
    ("block_passwd", "password"),
    ("guest-set-user-password", "password"),
];

/// Where, in `command` (one command as sent to QEMU or to its guest agent),
/// the text of each argument that carries a password or a key stands,
/// between its quotes: the byte ranges a recorder blanks out. These are
/// the `password` of `set_password`, `change-vnc-password`, `block_passwd`
/// and the agent's `guest-set-user-password`, the `data` of a `secret`
/// that `object-add` makes (`props.data` before QEMU 6.0), and the password
/// in a `human-monitor-command`'s `command-line` ([`hmp::secret_span`](crate::hmp::secret_span)).
///
/// ```
/// # use vmwire_proto::qmp::secret_spans;
/// let command = br#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "s3cret"}}"#;
/// let spans: Vec<_> = secret_spans(command).collect();
/// assert_eq!(&command[spans[0].clone()], b"s3cret");
/// assert_eq!(secret_spans(br#"{"execute": "query-status"}"#).count(), 0);
/// ```
pub fn secret_spans(command: &[u8]) -> impl Iterator<Item = core::ops::Range<usize>> + '_ {
    // The secrets' texts as written, parts of `command`.
    let texts = || {
        let message = Value::parse(command).ok()?;
        let name = message.get("execute").or_else(|| message.get("exec-oob"))?.as_str()?;
        let arguments = message.get("arguments")?;
        fn text(value: Option<Value<'_>>) -> Option<&[u8]> {
            Some(value?.as_str()?.raw())
        }
        if let Some((_, argument)) = SECRET_ARGUMENTS.iter().find(|(command, _)| name == *command) {
            return Some([text(arguments.get(argument)), None]);
        }
        if name == "human-monitor-command" {
            let line = text(arguments.get("command-line"))?;
            return Some([line.get(crate::hmp::secret_span(line)?), None]);
        }
        let secret = name == "object-add" && arguments.get("qom-type")?.as_str()? == "secret";
        secret.then(|| [text(arguments.get("data")), text(arguments.get("props").and_then(|props| props.get("data")))])
    };
    texts().unwrap_or_default().into_iter().flatten().filter_map(move |text| crate::span_in(command, text))
}

/// Writes each password or key `command` carries ([`secret_spans`]) as
/// `*`s, byte for byte: `command` stays JSON, as long as it was, for a log
/// or a recording.
///
/// ```
/// # use vmwire_proto::qmp::blank_secrets;
/// let mut command = br#"{"execute": "change-vnc-password", "arguments": {"password": "pw"}}"#.to_vec();
/// blank_secrets(&mut command);
/// assert_eq!(command, br#"{"execute": "change-vnc-password", "arguments": {"password": "**"}}"#);
/// ```
pub fn blank_secrets(command: &mut [u8]) {
    // At most two: a secret's `data` and `props.data`.
    let mut spans = [None, None];
    for (slot, span) in spans.iter_mut().zip(secret_spans(command)) {
        *slot = Some(span);
    }
    for span in spans.into_iter().flatten() {
        if let Some(secret) = command.get_mut(span) {
            secret.fill(b'*');
        }
    }
}

/// Whether a message that began with `head` is a reply: its first member
/// `return`, `error` or `id`, as QEMU and its agent write them (a QMP event
/// begins with `timestamp`).
fn begins_reply(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"{") else { return false };
    let rest = rest.trim_ascii_start();
    [&b"\"return\""[..], b"\"error\"", b"\"id\""].iter().any(|key| rest.starts_with(key))
}

/// The members of a QMP-shaped message that tell what it is.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Members<'a> {
    pub(crate) ret: Option<Value<'a>>,
    pub(crate) err: Option<Value<'a>>,
    pub(crate) event: Option<Value<'a>>,
    pub(crate) id: Option<Value<'a>>,
    pub(crate) timestamp: Option<Value<'a>>,
    pub(crate) data: Option<Value<'a>>,
    /// It has a `QMP` member (a greeting).
    pub(crate) greeting: bool,
}

impl<'a> Members<'a> {
    /// One pass over the members finds everything classification needs;
    /// for a framed message, straight over the framer's index.
    #[inline(always)]
    pub(crate) fn of(obj: Object<'a>) -> Self {
        let mut m = Members::default();
        match obj.indexed_members() {
            Some(members) => members.for_each(|(key, value)| m.take(key, value)),
            None => obj.members().for_each(|(key, value)| m.take(key.raw(), value)),
        }
        m
    }

    /// Keeps `value` if `key` (raw bytes) names a member classification needs.
    /// QEMU never escapes its keys; only a key that matches nothing as it
    /// stands is worth decoding.
    #[inline]
    fn take(&mut self, key: &[u8], value: Value<'a>) {
        if !self.take_named(key, value) && key.contains(&b'\\') {
            self.take_escaped(key, value);
        }
    }

    #[inline(always)]
    fn take_named(&mut self, name: &[u8], value: Value<'a>) -> bool {
        // By length first, then the bytes as one integer comparison (a match
        // on byte strings compares them byte by byte or calls `bcmp`).
        fn is<const N: usize>(name: &[u8], want: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(name).is_ok_and(|name| name == want)
        }
        let slot = match name.len() {
            2 if is(name, b"id") => &mut self.id,
            3 if is(name, b"QMP") => {
                self.greeting = true;
                return true;
            }
            4 if is(name, b"data") => &mut self.data,
            5 if is(name, b"error") => &mut self.err,
            5 if is(name, b"event") => &mut self.event,
            6 if is(name, b"return") => &mut self.ret,
            9 if is(name, b"timestamp") => &mut self.timestamp,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    #[cold]
    fn take_escaped(&mut self, key: &[u8], value: Value<'a>) {
        let mut unescaped = [0u8; 16];
        if let Ok(name) = JsonStr::from_raw(key).unescape_into(&mut unescaped) {
            self.take_named(name.as_bytes(), value);
        }
    }

    /// The reply this message carries, or what is wrong with it as a reply.
    #[inline]
    pub(crate) fn reply(&self) -> Result<Reply<'a>, &'static str> {
        match (self.ret, self.err) {
            (Some(value), None) => Ok(Ok(value)),
            (None, Some(error)) => ErrorReply::parse(error).map(Err).ok_or("error without class and desc"),
            (Some(_), Some(_)) => Err("both return and error"),
            (None, None) => Err("neither return nor error"),
        }
    }
}

/// The `source`, `From<json::Error>` and `From<SendError>` of a QAPI
/// client's `Error` (QMP's and QGA's, alike in these): its `Json`,
/// `TransmitFull`, `ArgumentsNotObject`, `IdInUse` and `TooManyPending`
/// variants.
macro_rules! client_error {
    ($error:ident) => {
        impl core::error::Error for $error {
            fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
                match self {
                    $error::Json(e) => Some(e),
                    $error::TransmitFull(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl From<crate::json::Error> for $error {
            fn from(e: crate::json::Error) -> Self {
                $error::Json(e)
            }
        }

        impl From<crate::qapi::SendError> for $error {
            fn from(e: crate::qapi::SendError) -> Self {
                use crate::qapi::SendError;
                match e {
                    SendError::ArgumentsNotObject => $error::ArgumentsNotObject,
                    SendError::IdInUse => $error::IdInUse,
                    SendError::TooManyPending { limit } => $error::TooManyPending { limit },
                    SendError::TransmitFull(full) => $error::TransmitFull(full),
                }
            }
        }
    };
}
pub(crate) use client_error;
