//! The frame codec: an ASCII decimal length, `\n`, then exactly that many
//! bytes of JSON, and nothing after.
//!
//! What the decoder accepts, and why (negotiator-common 0.12.2 reads a line
//! with a text-mode file's `readline()` (universal newlines), `strip()`s it,
//! requires `str.isdigit()`, then `int(line, 10)`):
//!
//! | length line | Python peer | here |
//! | --- | --- | --- |
//! | `49\n` | yes | yes |
//! | `  0049\r\n`, `49 \t\n` (spaces, tabs, leading zeros, one `\r` before `\n`) | yes | yes |
//! | `\n`, `   \n` (no digits) | no | no |
//! | `+49`, `-1`, `4_9`, `4 9`, `0x31` | no (`isdigit()` is false) | no |
//! | `²` (superscript two) | no (`isdigit()` is true, `int()` raises) | no |
//! | `٤٩` (Arabic-Indic digits), `49\x0b`, `49\xa0` | yes (`int()` takes any Unicode decimal digit; `strip()` any white space) | no: no real peer writes them, and accepting them buys nothing |
//! | `49\r{…` (a bare `\r` ends the line) | yes (universal newlines) | no: `\r` only right before `\n`, so that both sides agree where the line ends |
//! | a line of 25 or more bytes | yes (any length) | no: [`MAX_LENGTH_LINE`] bytes at most, checked before anything is buffered |
//!
//! The peer counts the body in characters (`read(n)` on a text file); every
//! frame written here is pure ASCII (non-ASCII escaped as `\uXXXX`), so that
//! characters and bytes agree. A received body must be ASCII too
//! ([`Error::NonAscii`]): a peer that sends raw UTF-8 has counted characters
//! or bytes, and there is no telling which.

use super::Error;
use crate::buf::{Buf, Full, RxBuf};
use crate::json::{self, Index, Message};

/// The longest length line accepted, in bytes before its `\n`: room for any
/// `u64` with a little padding. A longer line is [`Error::LengthLineTooLong`].
pub const MAX_LENGTH_LINE: usize = 24;

/// Size and depth limits for received frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest frame body accepted, in bytes. A longer one is reported as
    /// [`Error::TooLarge`] as soon as its length line arrives, and its body
    /// is skipped without being buffered.
    pub max_frame: usize,
    /// The deepest nesting of JSON arrays and objects accepted (at most
    /// [`json::MAX_DEPTH`]).
    pub max_depth: usize,
}

impl Default for Limits {
    /// 16 MiB and depth 128.
    fn default() -> Self {
        Limits { max_frame: 16 << 20, max_depth: 128 }
    }
}

/// Where the decoder stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a length line.
    Line,
    /// Reading a body of this many bytes.
    Body(usize),
    /// Skipping the rest of an oversized body of `length` bytes.
    Skip { length: u64, left: u64 },
    /// The framing was lost (a bad length line): nothing more can be framed.
    Broken,
}

/// What [`Decoder::step`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// A valid frame whose JSON value lies at `data[start..end]`.
    Frame { start: usize, end: usize },
    /// A bad frame ([`Error::breaks_framing`] says whether decoding can go on).
    Error(Error),
    /// Nothing complete yet.
    More,
}

/// Splits a byte stream into frames and validates their JSON, in a buffer
/// the caller chooses; bytes go in in any chunking.
///
/// ```
/// use vmwire_proto::negotiator::{Decoder, Limits};
///
/// let mut decoder = Decoder::new(heapless::Vec::<u8, 256>::new(), Limits::default());
/// decoder.receive(b"  0017\r\n{\"success\": tr");
/// assert!(decoder.next().is_none());
/// decoder.receive(b"ue}2\n[]");
/// let frame = decoder.next().unwrap()?;
/// assert_eq!(frame.get("success").and_then(|s| s.as_bool()), Some(true));
/// assert_eq!(decoder.next().unwrap()?.raw(), b"[]");
/// # Ok::<(), vmwire_proto::negotiator::Error>(())
/// ```
#[derive(Debug)]
pub struct Decoder<B> {
    rx: RxBuf<B>,
    phase: Phase,
    limits: Limits,
    /// Stream offset of the first byte in `rx.data()`.
    offset: u64,
    /// Bytes of the last frame handed out, dropped at the next call.
    later: usize,
    /// The top-level members of the last frame's value.
    index: Index,
}

impl<B: Buf<u8>> Decoder<B> {
    /// A decoder over `buffer`. The frame limit is the smaller of
    /// `limits.max_frame` and the buffer's own limit.
    pub fn new(buffer: B, limits: Limits) -> Self {
        let max_frame = limits.max_frame.min(buffer.limit());
        let max_depth = limits.max_depth.min(json::MAX_DEPTH);
        Decoder {
            rx: RxBuf::new(buffer),
            phase: Phase::Line,
            limits: Limits { max_frame, max_depth },
            offset: 0,
            later: 0,
            index: Index::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a bad length line has ended framing: nothing more will be decoded.
    pub fn is_broken(&self) -> bool {
        self.phase == Phase::Broken
    }

    /// The bytes of memory the receive buffer has taken (never more than its limit).
    pub fn capacity(&self) -> usize {
        self.rx.capacity()
    }

    fn settle(&mut self) {
        let n = core::mem::take(&mut self.later);
        self.consume(n);
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.rx.data().len());
        self.rx.consume(n);
        self.offset += n as u64;
    }

    /// Room to read into. Never empty after [`Decoder::next`] has returned `None`.
    pub fn recv_buf(&mut self) -> &mut [u8] {
        self.settle();
        let want = match self.phase {
            // Ask for the whole rest of the body at once, so that a large
            // frame is read with few calls and grows the buffer once.
            Phase::Body(len) => len.saturating_sub(self.rx.data().len()).max(1),
            _ => 1,
        };
        self.rx.spare_for(want)
    }

    /// Marks `n` bytes of [`Decoder::recv_buf`] as received. Returns `false`
    /// (and takes nothing) if `n` is more than it offered.
    pub fn recv_commit(&mut self, n: usize) -> bool {
        if !self.rx.commit(n) {
            return false;
        }
        self.drop_skipped();
        true
    }

    /// Copies in as much of `bytes` as fits and returns how many were taken.
    /// Fewer than all means: call [`Decoder::next`] until `None`, then offer the rest.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let spare = self.recv_buf();
            let n = spare.len().min(bytes.len() - taken);
            if n == 0 {
                break;
            }
            spare[..n].copy_from_slice(&bytes[taken..taken + n]);
            self.recv_commit(n);
            taken += n;
        }
        taken
    }

    /// Bytes of a skipped body, or of a broken stream, are dropped as they arrive.
    fn drop_skipped(&mut self) {
        match self.phase {
            Phase::Skip { length, left } => {
                self.settle();
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.rx.data().len());
                self.consume(n);
                let left = left - n as u64;
                self.phase = if left == 0 { Phase::Line } else { Phase::Skip { length, left } };
            }
            Phase::Broken => {
                self.settle();
                let all = self.rx.data().len();
                self.consume(all);
            }
            Phase::Line | Phase::Body(_) => {}
        }
    }

    /// The next frame's JSON value, an error for a bad frame, or `None` until
    /// more bytes arrive. After an error that [breaks framing](Error::breaks_framing)
    /// nothing more comes out.
    #[allow(clippy::should_implement_trait)] // a lending iterator: `Iterator` cannot express it
    pub fn next(&mut self) -> Option<Result<Message<'_>, Error>> {
        match self.step() {
            Step::Frame { start, end } => Some(Ok(self.message(start, end))),
            Step::Error(e) => Some(Err(e)),
            Step::More => None,
        }
    }

    /// The stream ended: an error if it ended inside a frame, else `None`.
    /// Call after [`Decoder::next`] has returned `None`.
    pub fn finish(&mut self) -> Option<Error> {
        self.settle();
        let pending = self.rx.data().len();
        let error = match self.phase {
            Phase::Line if pending == 0 => None,
            Phase::Line => Some(Error::TruncatedLength { offset: self.offset + pending as u64 }),
            Phase::Body(len) => Some(Error::TruncatedBody { length: len as u64, received: pending as u64 }),
            Phase::Skip { length, left } => Some(Error::TruncatedBody { length, received: length - left }),
            Phase::Broken => None,
        };
        self.phase = Phase::Broken;
        self.consume(pending);
        error
    }

    /// Stops decoding: whatever was buffered, and whatever arrives, is dropped.
    pub(crate) fn stop(&mut self) {
        self.phase = Phase::Broken;
        self.drop_skipped();
    }

    /// The value at `data[start..end]`, as returned by the last [`Decoder::step`].
    pub(crate) fn message(&self, start: usize, end: usize) -> Message<'_> {
        Message::indexed(self.rx.data().get(start..end).unwrap_or_default(), &self.index)
    }

    /// [`Decoder::next`] without the borrow.
    pub(crate) fn step(&mut self) -> Step {
        self.settle();
        loop {
            match self.phase {
                Phase::Line => match self.length_line() {
                    Ok(Some(len)) => {
                        if len > self.limits.max_frame as u64 {
                            self.phase = Phase::Skip { length: len, left: len };
                            self.drop_skipped();
                            return Step::Error(Error::TooLarge { length: len, limit: self.limits.max_frame });
                        }
                        self.phase = Phase::Body(len as usize);
                    }
                    Ok(None) => return Step::More,
                    Err(e) => {
                        self.phase = Phase::Broken;
                        self.drop_skipped();
                        return Step::Error(e);
                    }
                },
                Phase::Body(len) => {
                    let Some(body) = self.rx.data().get(..len) else {
                        return Step::More;
                    };
                    self.phase = Phase::Line;
                    self.later = len;
                    return match validate(body, self.limits.max_depth, self.offset) {
                        Ok((start, end, index)) => {
                            self.index = index;
                            Step::Frame { start, end }
                        }
                        Err(e) => Step::Error(e),
                    };
                }
                Phase::Skip { .. } => {
                    self.drop_skipped();
                    if matches!(self.phase, Phase::Skip { .. }) {
                        return Step::More;
                    }
                }
                Phase::Broken => {
                    self.drop_skipped();
                    return Step::More;
                }
            }
        }
    }

    /// Reads a length line if a whole one is buffered: `Ok(None)` until then.
    /// Fails as soon as a byte that cannot be part of one arrives.
    fn length_line(&mut self) -> Result<Option<u64>, Error> {
        let data = self.rx.data();
        // The line may not fill the whole buffer: a tiny fixed buffer must
        // still say the line is too long rather than wait for room forever.
        let limit = MAX_LENGTH_LINE.min(self.rx.limit().saturating_sub(1));
        let window = data.get(..data.len().min(limit + 1)).unwrap_or_default();
        let newline = window.iter().position(|&b| b == b'\n');
        let line = window.get(..newline.unwrap_or(window.len())).unwrap_or_default();
        let parsed = parse_length_line(line, self.offset, newline.is_some())?;
        match (newline, parsed) {
            (Some(n), Some(len)) => {
                self.consume(n + 1);
                Ok(Some(len))
            }
            (Some(_), None) => Err(Error::MissingLength { offset: self.offset }),
            (None, _) if line.len() > limit => Err(Error::LengthLineTooLong { limit, offset: self.offset }),
            (None, _) => Ok(None),
        }
    }
}

/// Checks a length line (without its `\n`; `complete` says whether the `\n`
/// has been seen) and returns its value once complete: `[ \t]* DIGIT+ [ \t]* \r?`.
/// The value saturates at `u64::MAX` (it is too large whatever the limit).
/// `offset` is the stream offset of the line's first byte.
fn parse_length_line(line: &[u8], offset: u64, complete: bool) -> Result<Option<u64>, Error> {
    // Where the line stands: 0 leading blanks, 1 digits, 2 trailing blanks, 3 after `\r`.
    let mut part = 0;
    let mut value: u64 = 0;
    for (i, &b) in line.iter().enumerate() {
        let next = match (part, b) {
            (0 | 2, b' ' | b'\t') => part,
            (0 | 1, b'0'..=b'9') => {
                value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                1
            }
            (1, b' ' | b'\t') => 2,
            (_, b'\r') if part != 3 => 3,
            _ => return Err(Error::InvalidLength { found: b, offset: offset + i as u64 }),
        };
        part = next;
    }
    if !complete {
        return Ok(None);
    }
    let digits = line.iter().any(u8::is_ascii_digit);
    Ok(digits.then_some(value))
}

/// Validates a frame body: ASCII, then exactly one JSON value. Returns the
/// value's span within `body` and its member index. `offset` is the body's
/// stream offset.
fn validate(body: &[u8], max_depth: usize, offset: u64) -> Result<(usize, usize, Index), Error> {
    if !body.is_ascii() {
        let i = body.iter().position(|b| !b.is_ascii()).unwrap_or_default();
        return Err(Error::NonAscii { offset: offset + i as u64 });
    }
    json::validate_indexed(body, max_depth).map_err(|e| Error::Json(json::Error { offset: offset + e.offset, ..e }))
}

/// Writes one frame around the JSON text `body` writes: its length in
/// decimal, `\n`, then the text. All or nothing: on [`Full`], `out` is left as it was.
///
/// `body` must write ASCII only (the writers in [`json`] do, with
/// [`Escape::Ascii`](json::Escape::Ascii)), so that the length holds in
/// characters as well as bytes.
pub fn write_frame<B: Buf<u8>>(out: &mut B, body: impl FnOnce(&mut B) -> Result<(), Full>) -> Result<(), Full> {
    let mark = out.as_slice().len();
    let written = body(out).and_then(|()| {
        let len = out.as_slice().len() - mark;
        let mut prefix = heapless::Vec::<u8, 24>::new();
        json::write_u64(&mut prefix, len as u64)?;
        prefix.push(b'\n').map_err(|_| Full { limit: 24 })?;
        // Append room for the prefix, slide the body up, put the prefix in front.
        out.try_extend(&prefix)?;
        let buf = out.as_mut_slice();
        buf.copy_within(mark..mark + len, mark + prefix.len());
        if let Some(head) = buf.get_mut(mark..mark + prefix.len()) {
            head.copy_from_slice(&prefix);
        }
        Ok(())
    });
    if written.is_err() {
        out.truncate(mark);
    }
    written
}

/// Writes `value` as one frame, its strings re-escaped to ASCII. All or nothing.
///
/// ```
/// use vmwire_proto::{json::Value, negotiator::encode};
/// let mut out = heapless::Vec::<u8, 64>::new();
/// encode(&mut out, Value::parse("{\"result\": \"caf\u{e9}\"}".as_bytes()).unwrap())?;
/// assert_eq!(&out[..], b"23\n{\"result\": \"caf\\u00e9\"}");
/// # Ok::<(), vmwire_proto::buf::Full>(())
/// ```
pub fn encode<B: Buf<u8>>(out: &mut B, value: json::Value<'_>) -> Result<(), Full> {
    write_frame(out, |out| json::write_value(out, value, json::Escape::Ascii))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &[u8]) -> Result<Option<u64>, Error> {
        parse_length_line(s, 0, true)
    }

    #[test]
    fn length_lines_the_peer_accepts() {
        assert_eq!(line(b"49"), Ok(Some(49)));
        assert_eq!(line(b"  0049\r"), Ok(Some(49)));
        assert_eq!(line(b"\t49 \t\r"), Ok(Some(49)));
        assert_eq!(line(b"0"), Ok(Some(0)));
        assert_eq!(line(b"99999999999999999999999"), Ok(Some(u64::MAX)));
    }

    #[test]
    fn length_lines_refused() {
        assert_eq!(line(b""), Ok(None));
        assert_eq!(line(b"  \r"), Ok(None));
        for (bad, at) in [
            (&b"+49"[..], 0),
            (b"-1", 0),
            (b"4_9", 1),
            (b"4 9", 2),
            (b"0x31", 1),
            (b"\xc2\xb2", 0),
            (b"49\x0b", 2),
            (b"49\r\r", 3),
            (b"\r49", 1),
            (b"abc", 0),
        ] {
            assert_eq!(line(bad), Err(Error::InvalidLength { found: bad[at], offset: at as u64 }), "{bad:?}");
        }
        // Refused before the newline arrives.
        assert!(parse_length_line(b"4x", 0, false).is_err());
        assert_eq!(parse_length_line(b"  4", 0, false), Ok(None));
    }

    #[test]
    fn frame_prefix_is_written_in_front() {
        let mut out = heapless::Vec::<u8, 32>::new();
        out.extend_from_slice(b"xy").unwrap();
        write_frame(&mut out, |o| crate::buf::Sink::put(o, b"{\"a\": 1}")).unwrap();
        assert_eq!(&out[..], b"xy8\n{\"a\": 1}");
        // All or nothing.
        let mut small = heapless::Vec::<u8, 9>::new();
        assert!(write_frame(&mut small, |o| crate::buf::Sink::put(o, b"{\"a\": 1}")).is_err());
        assert!(small.is_empty());
    }
}
