//! The JSON core shared by QMP, QGA, minimega and negotiator.
//!
//! - [`Framer`] finds complete top-level values in a byte stream fed in any
//!   chunking (back to back, one per line, or pretty-printed over many lines),
//!   validating them as it goes (strings, escapes, UTF-8, numbers, literals)
//!   within [`Limits`] on size and depth. After invalid input it reports a
//!   typed [`Error`] and resumes at the next value that begins a line.
//! - [`Message`], [`Value`], [`Object`] and [`JsonStr`] read a framed value
//!   without copying: members are looked up as borrowed spans, strings are
//!   unescaped only on request, and a span can be decoded into a Rust type
//!   with `serde-json-core` ([`Value::decode`]) or, with `std`, `serde_json`
//!   ([`Value::deserialize`]).
//! - [`ObjectWriter`], [`write_str`] and friends write JSON into any [`Sink`](crate::buf::Sink).
//!
//! ```
//! use vmwire_proto::json::{Framer, Limits};
//!
//! let mut framer = Framer::new(heapless::Vec::<u8, 256>::new(), Limits::default());
//! framer.receive(b"{\"return\": {}, \"id\": 1}\r\n{\"timestamp\": {\"seconds\": 1, \"micro");
//! let msg = framer.next().unwrap()?;
//! assert_eq!(msg.get("id").and_then(|id| id.as_u64()), Some(1));
//! assert!(framer.next().is_none()); // the event is not complete yet
//! framer.receive(b"seconds\": 2}, \"event\": \"STOP\"}\r\n");
//! let msg = framer.next().unwrap()?;
//! assert!(msg.get("event").unwrap().as_str().unwrap() == "STOP");
//! # Ok::<(), vmwire_proto::json::Error>(())
//! ```

mod error;
mod framer;
mod value;
mod write;

pub use error::{Error, ErrorKind};
pub use framer::{Limits, MAX_DEPTH};
pub use value::{Chunk, Chunks, Elements, Formatted, JsonStr, Kind, Members, Object, Value};
pub(crate) use value::{chunks_eq, chunks_fmt, chunks_into, read_i64, skip_string, skip_value, skip_ws};
pub use write::{
    ArrayWriter, Escape, ObjectWriter, Separators, write_i64, write_str, write_str_contents, write_u64, write_value,
};

use crate::buf::{Buf, RxBuf};
pub(crate) use framer::Index;
use framer::Scanner;
use framer::Step;

/// A framed top-level value, borrowed from the framer's buffer until the next
/// call to the framer.
///
/// For an object, the framer has already recorded where its members are, so
/// [`Message::get`] costs no scanning.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    index: &'a Index,
}

impl<'a> Message<'a> {
    /// A message over `raw`, whose top-level members `index` records.
    pub(crate) fn indexed(raw: &'a [u8], index: &'a Index) -> Self {
        Message { raw, index }
    }

    /// The whole value.
    pub fn value(&self) -> Value<'a> {
        Value::trusted(self.raw)
    }

    /// The value as an object, if it is one.
    pub fn object(&self) -> Option<Object<'a>> {
        (self.raw.first() == Some(&b'{')).then_some(Object::indexed(self.raw, self.index))
    }

    /// The member named `key`, if the value is an object that has one.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.object()?.get(key)
    }

    /// The value's JSON text, exactly as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// Validates `text` as exactly one JSON value (white space around it
/// allowed) nested at most `max_depth` deep, recording the top-level
/// members as the framer does: for protocols that frame by length and only
/// need the value checked. Returns the value's span and its member index.
pub(crate) fn validate_indexed(text: &[u8], max_depth: usize) -> Result<(usize, usize, Index), Error> {
    framer::validate(text, max_depth.min(MAX_DEPTH))
}

/// Finds complete JSON values in a byte stream, in a buffer the caller chooses.
///
/// Bytes go in through [`Framer::recv_buf`] + [`Framer::recv_commit`] (read
/// straight into the buffer) or [`Framer::receive`] (copy); complete values
/// come out of [`Framer::next`], borrowing the buffer.
#[derive(Debug)]
pub struct Framer<B> {
    rx: RxBuf<B>,
    scan: Scanner,
    /// Bytes the last scan passed (up to the end of the message it handed
    /// out, or all it could drop): dropped before more bytes come in, not
    /// at once, so that framing a read's messages moves nothing and what
    /// [`Framer::take`] returns can borrow the buffer.
    later: usize,
    /// How the last value skipped as too large began.
    skipped: heapless::Vec<u8, SKIPPED_HEAD>,
}

/// How many of a skipped value's first bytes [`Framer::skipped`] keeps.
pub const SKIPPED_HEAD: usize = 16;

impl<B: Buf<u8>> Framer<B> {
    /// A framer over `buffer`. The size limit is the smaller of
    /// `limits.max_message` and the buffer's own limit.
    pub fn new(buffer: B, limits: Limits) -> Self {
        let max_message = limits.max_message.min(buffer.limit());
        let scan = Scanner::new(Limits { max_message, ..limits });
        Framer { rx: RxBuf::new(buffer), scan, later: 0, skipped: heapless::Vec::new() }
    }

    /// Makes `byte`, which cannot appear in JSON text, a delimiter: skipped
    /// between values, and a point to resume framing at after invalid input
    /// (the value it cuts short is reported as invalid). The guest agent
    /// sends `0xFF` before a `guest-sync-delimited` reply for this; RFC 7464
    /// JSON text sequences use `0x1E`.
    ///
    /// ```
    /// use vmwire_proto::json::{Framer, Limits};
    /// let mut framer = Framer::new(heapless::Vec::<u8, 128>::new(), Limits::default()).with_delimiter(0xFF);
    /// framer.receive(b"{\"return\": {\"cut sh\xff{\"return\": 7}\n");
    /// assert!(framer.next().unwrap().is_err()); // the value the 0xFF cut short
    /// assert_eq!(framer.next().unwrap()?.get("return").and_then(|v| v.as_u64()), Some(7));
    /// # Ok::<(), vmwire_proto::json::Error>(())
    /// ```
    pub fn with_delimiter(mut self, byte: u8) -> Self {
        self.scan.set_delimiter(byte);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.scan.limits()
    }

    fn settle(&mut self) {
        let n = core::mem::take(&mut self.later);
        if n > 0 {
            self.rx.consume(n);
            self.scan.shift(n);
        }
    }

    /// Room to read into. Never empty after [`Framer::next`] has returned `None`.
    pub fn recv_buf(&mut self) -> &mut [u8] {
        self.settle();
        self.rx.spare()
    }

    /// Marks `n` bytes of [`Framer::recv_buf`] as received. Returns `false`
    /// (and takes nothing) if `n` is more than it offered.
    pub fn recv_commit(&mut self, n: usize) -> bool {
        self.rx.commit(n)
    }

    /// Copies in as much of `bytes` as fits and returns how many were taken.
    /// Fewer than all means: call [`Framer::next`] until `None`, then offer the rest.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        self.settle();
        self.rx.fill(bytes)
    }

    /// The next complete value, an error for invalid input (after which
    /// framing goes on), or `None` until more bytes arrive.
    #[allow(clippy::should_implement_trait)] // a lending iterator: `Iterator` cannot express it
    pub fn next(&mut self) -> Option<Result<Message<'_>, Error>> {
        self.take(false).into_result()
    }

    /// The stream ended: returns a top-level number still waiting for a
    /// delimiter, or [`ErrorKind::Truncated`] for a value cut short. Call
    /// after [`Framer::next`] has returned `None`. The framer is then empty
    /// and ready for a new stream.
    pub fn finish(&mut self) -> Option<Result<Message<'_>, Error>> {
        self.take(true).into_result()
    }

    /// The next complete value, invalid input, or nothing yet; at the end of
    /// the stream (`eof`), also what [`Framer::finish`] makes of the rest.
    /// The buffer is looked at once: what the scan passed is dropped when
    /// bytes next come in, so the message (or the bytes an error names)
    /// borrows it as it stands.
    #[inline]
    pub(crate) fn take(&mut self, eof: bool) -> Found<'_> {
        let data = self.rx.data();
        let step = match self.scan.scan(data) {
            Step::More if eof => self.scan.finish(data).unwrap_or(Step::More),
            step => step,
        };
        match step {
            Step::Message(span) => {
                self.later = span.end;
                let raw = data.get(span.start..span.end).unwrap_or_default();
                Found::Message(Message { raw, index: self.scan.index() })
            }
            // Two arms, as the machines' own matches have: a third, for
            // errors, made the message path reckon the step's kind twice
            // (16 instructions a message on the QMP burst).
            Step::More | Step::Error(_) => {
                self.later = self.scan.droppable();
                let Step::Error(error) = step else { return Found::More };
                if error.is_too_large() {
                    keep_skipped(&mut self.skipped, data.get(self.scan.value_start()..), self.scan.limits());
                }
                let buffered = data.get(self.later..).unwrap_or_default();
                Found::Error { error, skipped: &self.skipped, buffered }
            }
        }
    }

    /// The first bytes (at most [`SKIPPED_HEAD`]) of the last value that
    /// was skipped as too large, from its first byte: enough to tell what
    /// it was (a QMP reply begins `{"return"`, an event `{"timestamp"`).
    pub fn skipped(&self) -> &[u8] {
        &self.skipped
    }

    /// [`Framer::recv_buf`] for a machine that may be closed: with `drop`,
    /// what is buffered goes first (nothing will read it), so a closed
    /// machine always has room for the bytes that still come, which
    /// [`Framer::commit`] drops in turn.
    pub(crate) fn recv_buf_dropping(&mut self, drop: bool) -> &mut [u8] {
        if drop {
            let all = self.buffered().len();
            self.discard(all);
        }
        self.recv_buf()
    }

    /// Commits `n` received bytes like [`Framer::recv_commit`]; with
    /// `drop`, for a machine that is closed, drops everything buffered.
    pub(crate) fn commit(&mut self, n: usize, drop: bool) -> bool {
        if !self.rx.commit(n) {
            return false;
        }
        if drop {
            let all = self.buffered().len();
            self.discard(all);
        }
        true
    }

    /// Drops the value in progress and any bytes buffered; the stream goes on
    /// from the next byte received.
    pub fn reset(&mut self) {
        self.settle();
        let n = self.rx.data().len();
        self.rx.consume(n);
        self.scan.reset(n);
        self.scan.shift(n);
    }

    /// Whether a value has begun and not yet ended.
    pub fn in_value(&self) -> bool {
        self.scan.in_value()
    }

    /// Bytes received and not yet framed or dropped.
    pub fn buffered(&self) -> &[u8] {
        self.rx.data().get(self.later..).unwrap_or_default()
    }

    /// Drops `n` bytes from the front of [`Framer::buffered`] without framing
    /// them (a protocol's own resynchronisation, such as QGA's `0xFF`), and
    /// forgets any value in progress.
    pub fn discard(&mut self, n: usize) {
        self.settle();
        let n = n.min(self.rx.data().len());
        self.rx.consume(n);
        self.scan.reset(n);
        self.scan.shift(n);
    }
}

/// Keeps the beginning of the value the scan just found too large (`value`,
/// from its first byte): as many bytes as are there in any chunking (the
/// limit's worth are).
#[cold]
#[inline(never)]
fn keep_skipped(skipped: &mut heapless::Vec<u8, SKIPPED_HEAD>, value: Option<&[u8]>, limits: Limits) {
    let value = value.unwrap_or_default();
    let n = value.len().min(SKIPPED_HEAD).min(limits.max_message);
    skipped.clear();
    let _fits = skipped.extend_from_slice(&value[..n]);
}

/// What [`Framer::take`] found, borrowing the framer's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'a> {
    /// A complete value.
    Message(Message<'a>),
    /// Invalid or oversized input; framing has moved on.
    Error {
        /// What was wrong.
        error: Error,
        /// [`Framer::skipped`].
        skipped: &'a [u8],
        /// [`Framer::buffered`]: the bytes from where framing resumes.
        buffered: &'a [u8],
    },
    /// Nothing complete yet.
    More,
}

impl<'a> Found<'a> {
    fn into_result(self) -> Option<Result<Message<'a>, Error>> {
        match self {
            Found::Message(message) => Some(Ok(message)),
            Found::Error { error, .. } => Some(Err(error)),
            Found::More => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_value_is_skipped_not_buffered() {
        let mut f = Framer::new(heapless::Vec::<u8, 64>::new(), Limits { max_message: 32, max_depth: 8 });
        let mut big = heapless::Vec::<u8, 400>::new();
        big.extend_from_slice(b"{\"return\": \"").unwrap();
        big.extend_from_slice(&[b'x'; 300]).unwrap();
        big.extend_from_slice(b"\"}\r\n{\"id\": 2}\r\n").unwrap();
        let (mut values, mut errors, mut fed) = (0, 0, 0);
        while fed < big.len() {
            fed += f.receive(&big[fed..]);
            while let Some(m) = f.next() {
                match m {
                    Ok(m) => {
                        assert_eq!(m.get("id").unwrap().as_u64(), Some(2));
                        values += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind, ErrorKind::TooLarge { limit: 32 });
                        assert_eq!(e.offset, 32);
                        errors += 1;
                    }
                }
            }
        }
        assert_eq!((values, errors), (1, 1));
    }

    #[test]
    fn finish_reports_truncation_and_top_level_numbers() {
        let mut f = Framer::new(heapless::Vec::<u8, 64>::new(), Limits::default());
        f.receive(b"{\"a\": 1");
        assert!(f.next().is_none());
        assert_eq!(f.finish().unwrap().unwrap_err().kind, ErrorKind::Truncated);
        f.receive(b" 42");
        assert!(f.next().is_none());
        assert_eq!(f.finish().unwrap().unwrap().value().as_u64(), Some(42));
        assert!(f.finish().is_none());
    }
}
