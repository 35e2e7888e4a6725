//! The incremental framer: finds complete, valid top-level JSON values in a
//! byte stream fed in any chunking.
//!
//! Two scans share the token scanners below. A value that is all in the
//! data, as nearly every one is, is framed in one pass that keeps nothing for
//! resuming ([`Scanner::whole`]). Anything else (a value cut by the end of
//! the data, invalid input, deep nesting) goes to the resumable scan
//! ([`Scanner::run`]), which starts over at the value's first byte once and
//! from then on never looks at a byte twice except for the few bytes of a
//! token cut by the end of the data (at most the 12 bytes of a
//! `\uXXXX\uXXXX` pair or the 5 of `false`): resuming is O(new bytes), so a
//! peer trickling a large message one byte at a time costs linear time. The
//! framer never copies.

use super::error::{Error, ErrorKind};
use super::skip_ws as ws;

/// Size and nesting limits for one JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest value accepted, in bytes (capped at `u32::MAX`, and by the
    /// receive buffer's capacity). A longer value is skipped and reported as
    /// [`ErrorKind::TooLarge`].
    pub max_message: usize,
    /// The deepest nesting of objects and arrays accepted (at most [`MAX_DEPTH`]).
    pub max_depth: usize,
}

/// The deepest nesting the framer can track; QEMU's own parser stops at 1024 too.
pub const MAX_DEPTH: usize = 1024;

impl Default for Limits {
    /// 1 MiB and depth 128.
    fn default() -> Self {
        Limits { max_message: 1 << 20, max_depth: 128 }
    }
}

/// What a scan found (and what [`Framer::take`](super::Framer::take) hands on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A complete valid value at `data[start..end]`.
    Message(Span),
    /// Nothing complete yet.
    More,
    /// Invalid or oversized input. The framer has already moved on: it skips
    /// the rest of an oversized value, and after invalid input it resumes at
    /// the next value that begins a line.
    Error(Error),
}

/// Where a framed value lies in the data scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Framing values.
    Normal,
    /// Inside a value that is over the size limit: scanning it to its end
    /// without keeping it.
    Skip,
    /// After invalid input: looking for a `{` or `[` that begins a line.
    Resync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Between top-level values.
    Top,
    /// A value (after `:`, or after `,` in an array).
    Value,
    /// A value or `]` (after `[`).
    ValueOrClose,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (after `{`).
    KeyOrClose,
    /// `:` after a key.
    Colon,
    /// `,` or the container's closing bracket, after a value.
    CommaOrClose,
}

/// A token cut by the end of the data, to be resumed when more arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    None,
    Str,
    Num(Num),
}

/// Where a number's scan stands (RFC 8259 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    fn is_complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }
}

/// Spans of a top-level object's members, recorded while framing so that
/// looking one up afterwards costs nothing. Offsets are relative to the value's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Index {
    /// Complete members recorded.
    pub(crate) len: u8,
    /// More members than fit: lookups past the recorded ones scan.
    pub(crate) overflow: bool,
    /// `[key_start, key_end, value_start, value_end]`; the key span excludes the quotes.
    pub(crate) spans: [[u32; 4]; MEMBERS],
}

/// Index indexed per message: QMP, QGA and minimega messages have at most 6.
pub(crate) const MEMBERS: usize = 8;

type Bad = (ErrorKind, usize);

/// The incremental framer.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    limits: Limits,
    mode: Mode,
    expect: Expect,
    partial: Partial,
    /// Where scanning resumes.
    pos: usize,
    /// Start of the current top-level value.
    start: usize,
    depth: usize,
    /// One bit per open container: set for an object.
    stack: [u64; MAX_DEPTH / 64],
    members: Index,
    /// Stream offset of `data[0]`.
    offset: u64,
    /// A byte that ends whatever is in progress (see [`Scanner::set_delimiter`]).
    delimiter: Option<u8>,
    /// A syntax error found past the size limit: reported by the next scan,
    /// after the `TooLarge` this scan reported.
    pending: Option<Bad>,
}

impl Scanner {
    pub(crate) fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_message: limits.max_message.min(u32::MAX as usize),
            max_depth: limits.max_depth.min(MAX_DEPTH),
        };
        Scanner {
            limits,
            mode: Mode::Normal,
            expect: Expect::Top,
            partial: Partial::None,
            pos: 0,
            start: 0,
            depth: 0,
            stack: [0; MAX_DEPTH / 64],
            members: Index::default(),
            offset: 0,
            delimiter: None,
            pending: None,
        }
    }

    /// Makes `byte` (one that cannot appear in JSON text, such as QGA's
    /// `0xFF`) a delimiter: between values it is skipped like white space,
    /// and after invalid input framing resumes right after the next one (or
    /// at the next value that begins a line, whichever comes first).
    pub(crate) fn set_delimiter(&mut self, byte: u8) {
        self.delimiter = Some(byte);
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Forgets any value in progress; scanning starts afresh at `data[at]`.
    pub(crate) fn reset(&mut self, at: usize) {
        self.pos = at;
        self.mode = Mode::Normal;
        self.expect = Expect::Top;
        self.partial = Partial::None;
        self.depth = 0;
        self.pending = None;
    }

    /// Whether a value is in progress (or being skipped).
    pub(crate) fn in_value(&self) -> bool {
        self.expect != Expect::Top || self.mode == Mode::Skip
    }

    /// The member index of the value last returned by [`Scanner::scan`].
    pub(crate) fn index(&self) -> &Index {
        &self.members
    }

    /// Stream offset of the byte at `data[at]`.
    pub(crate) fn offset_of(&self, at: usize) -> u64 {
        self.offset + at as u64
    }

    /// Where the value in progress (or the last one framed) begins in the data.
    pub(crate) fn value_start(&self) -> usize {
        self.start
    }

    /// How many bytes at the front of the data are no longer needed.
    pub(crate) fn droppable(&self) -> usize {
        if self.mode == Mode::Normal && self.expect != Expect::Top { self.start } else { self.pos }
    }

    /// The caller dropped `n` (at most [`Scanner::droppable`]) bytes from the
    /// front of the data.
    pub(crate) fn shift(&mut self, n: usize) {
        self.pos = self.pos.saturating_sub(n);
        self.start = self.start.saturating_sub(n);
        if let Some((_, at)) = &mut self.pending {
            *at = at.saturating_sub(n);
        }
        self.offset += n as u64;
    }

    /// Scans `data` (everything not yet dropped, the same bytes as last time
    /// plus any new ones) for the next complete value.
    #[inline]
    pub(crate) fn scan(&mut self, data: &[u8]) -> Step {
        match self.scan_whole(data) {
            Some(span) => Step::Message(span),
            None => self.scan_resumable(data),
        }
    }

    /// A value that begins next, is all in `data` and is within the size
    /// limit, framed by [`Scanner::whole`]: where it lies (in registers, not
    /// a [`Step`] in memory: this is every message's path). `None`: the
    /// resumable scan decides.
    #[inline(always)]
    fn scan_whole(&mut self, data: &[u8]) -> Option<Span> {
        if self.pending.is_some() || self.mode != Mode::Normal || self.expect != Expect::Top {
            return None;
        }
        let at = self.next_value(data, self.pos);
        (self.pos, self.start) = (at, at);
        let end = self.whole(data, at)?;
        // At the limit, `framed` decides, after a resumable scan from `at`.
        if end - at >= self.limits.max_message {
            return None;
        }
        self.pos = end;
        Some(Span { start: at, end })
    }

    /// [`Scanner::scan`] where [`Scanner::scan_whole`] cannot say.
    #[inline(never)]
    fn scan_resumable(&mut self, data: &[u8]) -> Step {
        if let Some((kind, at)) = self.pending.take() {
            return self.fail(kind, at);
        }
        loop {
            if self.mode == Mode::Resync {
                if !self.resync(data) {
                    return Step::More;
                }
                self.mode = Mode::Normal;
                self.expect = Expect::Top;
                if let Some(span) = self.scan_whole(data) {
                    return Step::Message(span);
                }
            }
            let skipping = self.mode == Mode::Skip;
            match self.run(data) {
                Ok(None) => {
                    // Everything from `start` on belongs to this value.
                    let len = data.len().saturating_sub(self.start);
                    if self.mode == Mode::Normal && self.expect != Expect::Top && len >= self.limits.max_message {
                        self.mode = Mode::Skip;
                        return self.too_large();
                    }
                    return Step::More;
                }
                Ok(Some(end)) => {
                    self.pos = end;
                    if skipping {
                        self.mode = Mode::Normal;
                        continue;
                    }
                    return self.framed(data, end);
                }
                Err((kind, at))
                    if self.mode == Mode::Normal && at.saturating_sub(self.start) >= self.limits.max_message =>
                {
                    // The value (begun at `start`) passed its limit before
                    // the bad byte: the limit comes first, then the bad byte,
                    // as when the bytes trickle in.
                    self.pending = Some((kind, at));
                    return self.too_large();
                }
                Err((kind, at)) => return self.fail(kind, at),
            }
        }
    }

    /// The value at `data[start..end]` is complete: it, or `TooLarge`.
    #[inline(always)]
    fn framed(&self, data: &[u8], end: usize) -> Step {
        if end - self.start >= self.limits.max_message && self.over_limit(data, end) {
            return self.too_large();
        }
        Step::Message(Span { start: self.start, end })
    }

    /// Index of the first byte from `d[i]` on that is neither white space nor the delimiter.
    #[inline(always)]
    fn next_value(&self, d: &[u8], mut i: usize) -> usize {
        // QMP and QGA end each message with CRLF, minimega with LF.
        if starts(d, i, b"\r\n") {
            i += 2;
        }
        loop {
            i = ws(d, i);
            match d.get(i) {
                Some(&b) if Some(b) == self.delimiter => i += 1,
                _ => return i,
            }
        }
    }

    /// Whether the value at `data[start..end]`, at least `max_message` long,
    /// is over the limit. A top-level number ends only where the byte after
    /// it says so; bytes arriving one at a time reach the limit before that
    /// byte, so a number as long as the limit is over it too, whatever the
    /// chunking.
    #[cold]
    fn over_limit(&self, data: &[u8], end: usize) -> bool {
        let number = matches!(data.get(self.start), Some(b'-' | b'0'..=b'9'));
        end - self.start > self.limits.max_message || number
    }

    /// The value begun at `start` is over the size limit.
    fn too_large(&self) -> Step {
        self.error(ErrorKind::TooLarge { limit: self.limits.max_message }, self.start + self.limits.max_message)
    }

    /// A syntax error at `at`: reported, then framing resyncs from there.
    fn fail(&mut self, kind: ErrorKind, at: usize) -> Step {
        self.mode = Mode::Resync;
        self.expect = Expect::Top;
        self.partial = Partial::None;
        self.depth = 0;
        self.pos = at;
        self.error(kind, at)
    }

    fn error(&self, kind: ErrorKind, at: usize) -> Step {
        Step::Error(Error { kind, offset: self.offset_of(at) })
    }

    /// The input ended (`data` is all there is): completes a top-level number,
    /// or reports a value cut short. Leaves the framer ready for a new stream.
    pub(crate) fn finish(&mut self, data: &[u8]) -> Option<Step> {
        let outcome = match (self.mode, self.expect, self.partial) {
            (Mode::Normal, Expect::Top, _) | (Mode::Resync, _, _) => None,
            (Mode::Normal, _, Partial::Num(n)) if self.depth == 0 && n.is_complete() => {
                Some(Step::Message(Span { start: self.start, end: data.len() }))
            }
            _ => Some(self.error(ErrorKind::Truncated, data.len())),
        };
        self.reset(data.len());
        outcome
    }

    /// Looks for a `{` or `[` right after a `\n` (or for the delimiter);
    /// leaves `pos` where framing resumes if found.
    fn resync(&mut self, data: &[u8]) -> bool {
        let mut from = self.pos;
        let delimiter = self.delimiter;
        let next = |rest: &[u8]| match delimiter {
            None => memchr::memchr(b'\n', rest),
            Some(d) => memchr::memchr2(b'\n', d, rest),
        };
        while let Some(found) = data.get(from..).and_then(next) {
            let newline = from + found;
            if data.get(newline) != Some(&b'\n') {
                // The delimiter: what follows it is a fresh start.
                self.pos = newline + 1;
                return true;
            }
            match data.get(newline + 1) {
                Some(b'{' | b'[') => {
                    self.pos = newline + 1;
                    return true;
                }
                Some(_) => from = newline + 1,
                None => {
                    // Keep the newline: what follows it decides.
                    self.pos = newline;
                    return false;
                }
            }
        }
        self.pos = data.len();
        false
    }

    /// Whether the container at nesting `level` (0 = outermost) is an object.
    fn is_object(&self, level: usize) -> bool {
        self.stack.get(level / 64).is_some_and(|w| w >> (level % 64) & 1 == 1)
    }

    /// Records field `field` of the current top-level member at `at`.
    #[inline]
    fn record(&mut self, field: usize, at: usize) {
        let n = usize::from(self.members.len);
        let rel = at.saturating_sub(self.start) as u32;
        if let Some(span) = self.members.spans.get_mut(n) {
            span[field] = rel;
        }
    }

    /// A top-level member's value ended at `end`.
    #[inline]
    fn member_done(&mut self, end: usize) {
        self.record(3, end);
        if usize::from(self.members.len) < MEMBERS {
            self.members.len += 1;
        } else {
            self.members.overflow = true;
        }
    }

    /// Frames the value at `d[start]` in one pass when it is all in `d`,
    /// valid and at most 64 deep, as it nearly always is: nothing is kept
    /// for resuming, a top-level object's members are recorded once each,
    /// and the nesting below lives in one register. `None` for anything else
    /// (the data ending inside it, invalid input, deeper nesting, a top-level
    /// number, whose end only the next byte tells): [`Scanner::run`] then
    /// decides it from `start`, resumably. Both record the same member index;
    /// the JSON framer fuzz target checks that every chunking (whole, or cut
    /// anywhere) frames alike.
    #[inline(never)]
    fn whole(&mut self, d: &[u8], start: usize) -> Option<usize> {
        let v = d.get(start..)?;
        if v.first() != Some(&b'{') {
            return value(v, 0, 0, self.limits.max_depth).map(|end| start + end);
        }
        let max_depth = self.limits.max_depth;
        if max_depth == 0 {
            return None;
        }
        let mut n = 0;
        // `{"`, as it nearly always comes: the first key, with no white space
        // or close to look for.
        let mut i = 1;
        if v.get(1) != Some(&b'"') {
            i = ws(v, 1);
            if v.get(i) == Some(&b'}') {
                self.members = Index::default();
                return Some(start + i + 1);
            }
        }
        loop {
            let (key, key_end) = key(v, i)?;
            let at = ws(v, colon(v, key_end)?);
            i = value(v, at, 1, max_depth)?;
            if let Some(span) = self.members.spans.get_mut(n) {
                *span = [key as u32, key_end as u32 - 1, at as u32, i as u32];
            }
            n += 1;
            if starts(v, i, b", \"") {
                i += 2;
                continue;
            }
            i = ws(v, i);
            match v.get(i) {
                Some(b',') => i = ws(v, i + 1),
                Some(b'}') => break,
                _ => return None,
            }
        }
        self.members.len = n.min(MEMBERS) as u8;
        self.members.overflow = n > MEMBERS;
        Some(start + i + 1)
    }

    /// Scans from `pos`. `Ok(Some(end))`: a top-level value ended at `end`.
    /// `Ok(None)`: out of data, state saved in `self`.
    ///
    /// This is the hot path. The state lives in locals (registers), and the
    /// grammar's common transitions (key, `:`, value, `,`) are straight-line
    /// code rather than a dispatch on a state variable: `expect` is only
    /// written when the data runs out, to say where to resume.
    fn run(&mut self, d: &[u8]) -> Result<Option<usize>, Bad> {
        let mut i = self.pos;
        let mut depth = self.depth;
        // Whether the innermost open container is an object.
        let mut obj = depth > 0 && self.is_object(depth - 1);
        // Inside the top-level object (its members are being recorded).
        let mut top = depth == 1 && obj;

        // Out of data: save the state, resume later at `$at` expecting `$expect`.
        macro_rules! suspend {
            ($at:expr, $expect:expr, $partial:expr) => {{
                self.pos = $at;
                self.partial = $partial;
                self.expect = $expect;
                self.depth = depth;
                return Ok(None);
            }};
        }
        macro_rules! unexpected {
            ($b:expr, $expected:expr) => {
                return Err((ErrorKind::Unexpected { found: $b, expected: $expected }, i))
            };
        }
        // The next byte that is not white space.
        macro_rules! skip_ws {
            ($expect:expr) => {
                loop {
                    match d.get(i) {
                        Some(&b) if b > b' ' => break b,
                        Some(b' ' | b'\n' | b'\r' | b'\t') => i += 1,
                        Some(&b) => break b,
                        None => suspend!(i, $expect, Partial::None),
                    }
                }
            };
        }
        // A value ended at `i`: done if it was the top-level one.
        macro_rules! value_done {
            () => {{
                if depth == 0 {
                    self.expect = Expect::Top;
                    self.depth = 0;
                    self.pos = i;
                    return Ok(Some(i));
                }
                if top {
                    self.member_done(i);
                }
            }};
        }
        // The innermost container closed at `i`.
        macro_rules! close {
            () => {{
                depth -= 1;
                obj = depth > 0 && self.is_object(depth - 1);
                top = depth == 1 && obj;
                value_done!();
            }};
        }
        // A key string ended at `i`: then `:`.
        macro_rules! after_key {
            () => {{
                if top {
                    self.record(1, i - 1);
                }
                // `": "` is how nearly every encoder separates a key from its value.
                if starts(d, i, b": ") {
                    i += 2;
                } else {
                    if skip_ws!(Expect::Colon) != b':' {
                        unexpected!(d.get(i).copied().unwrap_or(0), "':'");
                    }
                    i += 1;
                }
            }};
        }
        // The end of a token scan: on to the next token, or suspend, or fail.
        // `$partial` says how to resume a token cut short (strings where they
        // stopped, literals from their first byte).
        macro_rules! token {
            ($scan:expr, $expect:expr, $partial:expr) => {
                match $scan {
                    (j, End::Done) => i = j,
                    (j, End::More) => suspend!(j, $expect, $partial),
                    (j, End::MoreNum(state)) => suspend!(j, $expect, Partial::Num(state)),
                    (j, End::Bad(invalid)) => return Err((invalid.into(), j)),
                }
            };
        }
        // A key, given its first byte `$b`, then `:`.
        macro_rules! key {
            ($b:expr, $expect:expr) => {{
                if $b != b'"' {
                    unexpected!($b, if $expect == Expect::Key { "'\"'" } else { "'\"' or '}'" });
                }
                if top {
                    self.record(0, i + 1);
                }
                token!(scan_str(d, i + 1), $expect, Partial::Str);
                after_key!();
            }};
        }

        // Where to begin: finish a token the previous data cut short, or go
        // to the place the grammar was at. `in_value`: expecting a value
        // (else: a value just ended). `may_close`: right after `[`.
        let (mut in_value, mut may_close) = (true, false);
        match (self.partial, self.expect) {
            (Partial::Str, expect @ (Expect::Key | Expect::KeyOrClose)) => {
                token!(scan_str(d, i), expect, Partial::Str);
                self.partial = Partial::None;
                after_key!();
            }
            (Partial::Str, expect) => {
                token!(scan_str(d, i), expect, Partial::Str);
                self.partial = Partial::None;
                value_done!();
                in_value = false;
            }
            (Partial::Num(state), expect) => {
                token!(scan_num(d, i, state), expect, Partial::None);
                self.partial = Partial::None;
                value_done!();
                in_value = false;
            }
            (Partial::None, Expect::Top) => {
                i = self.next_value(d, i);
                if i >= d.len() {
                    suspend!(i, Expect::Top, Partial::None);
                }
                self.start = i;
                self.members.len = 0;
                self.members.overflow = false;
            }
            (Partial::None, Expect::Value) => {}
            (Partial::None, Expect::ValueOrClose) => may_close = true,
            (Partial::None, Expect::Key) => {
                let b = skip_ws!(Expect::Key);
                key!(b, Expect::Key);
            }
            (Partial::None, Expect::KeyOrClose) => {
                let b = skip_ws!(Expect::KeyOrClose);
                if b == b'}' {
                    i += 1;
                    close!();
                    in_value = false;
                } else {
                    key!(b, Expect::KeyOrClose);
                }
            }
            (Partial::None, Expect::Colon) => {
                if skip_ws!(Expect::Colon) != b':' {
                    unexpected!(d.get(i).copied().unwrap_or(0), "':'");
                }
                i += 1;
            }
            (Partial::None, Expect::CommaOrClose) => in_value = false,
        }

        loop {
            if in_value {
                let expect = if may_close { Expect::ValueOrClose } else { Expect::Value };
                let b = skip_ws!(expect);
                if top {
                    self.record(2, i);
                }
                match b {
                    b'"' => token!(scan_str(d, i + 1), expect, Partial::Str),
                    b'{' | b'[' => {
                        if depth >= self.limits.max_depth {
                            return Err((ErrorKind::TooDeep { limit: self.limits.max_depth }, i));
                        }
                        obj = b == b'{';
                        if let Some(w) = self.stack.get_mut(depth / 64) {
                            let bit = 1 << (depth % 64);
                            *w = if obj { *w | bit } else { *w & !bit };
                        }
                        depth += 1;
                        top = depth == 1 && obj;
                        i += 1;
                        if !obj {
                            may_close = true;
                            continue;
                        }
                        let b = skip_ws!(Expect::KeyOrClose);
                        if b != b'}' {
                            key!(b, Expect::KeyOrClose);
                            may_close = false;
                            continue;
                        }
                        i += 1;
                        close!();
                    }
                    b']' if may_close => {
                        i += 1;
                        close!();
                    }
                    b'-' | b'0'..=b'9' => {
                        let state = match b {
                            b'-' => Num::Minus,
                            b'0' => Num::Zero,
                            _ => Num::Int,
                        };
                        token!(scan_num(d, i + 1, state), expect, Partial::None);
                    }
                    // A literal cut short resumes from its first byte.
                    b't' | b'f' | b'n' => token!(scan_literal(d, i), expect, Partial::None),
                    _ => unexpected!(b, "a value"),
                }
                if !matches!(b, b'{' | b']') {
                    value_done!();
                }
            }
            // A value just ended (and it was not the top-level one).
            in_value = true;
            may_close = false;
            loop {
                // `, "` is how nearly every encoder goes on to the next member.
                if obj && starts(d, i, b", \"") {
                    i += 2;
                    key!(b'"', Expect::Key);
                    break;
                }
                let b = skip_ws!(Expect::CommaOrClose);
                if b == b',' {
                    i += 1;
                    if obj {
                        let b = skip_ws!(Expect::Key);
                        key!(b, Expect::Key);
                    }
                    break;
                } else if b == if obj { b'}' } else { b']' } {
                    i += 1;
                    close!();
                } else {
                    unexpected!(b, if obj { "',' or '}'" } else { "',' or ']'" });
                }
            }
        }
    }
}

/// Validates the whole value at `v[i]` (white space skipped) nested `depth`
/// deep, to just past its end, with the nesting below in one register; `None`
/// where [`Scanner::whole`] gives up (deeper than `max_depth`, or than 63
/// levels below `depth`). A top-level number is left to the resumable scan.
#[inline(always)]
fn value(v: &[u8], mut i: usize, depth: usize, max_depth: usize) -> Option<usize> {
    // The containers opened here, one bit each above a sentinel 1: bit 0
    // whether the innermost is an object, bit 1 the one around it, …; the
    // nesting is the sentinel's place, so no count is kept. `full`: no room
    // for one more level.
    let mut stack = 1u64;
    let full = 1u64 << max_depth.saturating_sub(depth).min(63);
    loop {
        // A value begins at `v[i]` (or white space before it).
        match *v.get(i)? {
            b'"' => i = done(scan_str(v, i + 1))?,
            b @ (b'{' | b'[') => {
                if stack >= full {
                    return None;
                }
                let obj = b == b'{';
                stack = stack << 1 | u64::from(obj);
                i += 1;
                // `{"`, as it nearly always comes: the first key, with no white
                // space or close to look for.
                let first_key = obj && v.get(i) == Some(&b'"');
                if !first_key {
                    i = ws(v, i);
                }
                if first_key || v.get(i) != Some(if obj { &b'}' } else { &b']' }) {
                    if obj {
                        i = colon(v, key(v, i)?.1)?;
                    }
                    continue;
                }
                i += 1;
                stack >>= 1;
            }
            b'-' | b'0'..=b'9' if depth > 0 || stack > 1 => i = number(v, i)?,
            b't' => i = literal(v, i, b"true")?,
            b'f' => i = literal(v, i, b"false")?,
            b'n' => i = literal(v, i, b"null")?,
            b' ' | b'\n' | b'\r' | b'\t' => {
                i += 1;
                continue;
            }
            _ => return None,
        }
        // A value ended at `i`: close what it closes, then on to the next one.
        loop {
            if stack == 1 {
                return Some(i);
            }
            let obj = stack & 1 == 1;
            match *v.get(i)? {
                b',' => {
                    if obj {
                        // `, "` is how nearly every encoder goes on to the next member.
                        let at = if starts(v, i + 1, b" \"") { i + 2 } else { ws(v, i + 1) };
                        i = colon(v, key(v, at)?.1)?;
                    } else {
                        i += 1;
                    }
                    break;
                }
                b'}' if obj => {}
                b']' if !obj => {}
                b' ' | b'\n' | b'\r' | b'\t' => {
                    i += 1;
                    continue;
                }
                _ => return None,
            }
            i += 1;
            stack >>= 1;
        }
    }
}

/// The key at `v[i]` (its `"`): where its text begins, and the index just
/// past its closing quote.
#[inline(always)]
fn key(v: &[u8], i: usize) -> Option<(usize, usize)> {
    if v.get(i) != Some(&b'"') {
        return None;
    }
    Some((i + 1, done(scan_str(v, i + 1))?))
}

/// Past the `:` after a key that ended at `v[i]`.
#[inline(always)]
fn colon(v: &[u8], i: usize) -> Option<usize> {
    // `": "` is how nearly every encoder separates a key from its value.
    if starts(v, i, b": ") {
        return Some(i + 2);
    }
    let i = ws(v, i);
    (v.get(i) == Some(&b':')).then_some(i + 1)
}

/// The number at `v[i]`, to just past it, if the data goes on after it.
#[inline(always)]
fn number(v: &[u8], i: usize) -> Option<usize> {
    // Nearly always an integer: its digits, then a byte that ends it.
    let digits = i + usize::from(v.get(i) == Some(&b'-'));
    let end = skip_digits(v, digits);
    let lone_zero_or_none = v.get(digits) == Some(&b'0') || end == digits;
    match v.get(end) {
        Some(b'.' | b'e' | b'E') => {}
        Some(_) if end - digits == 1 || !lone_zero_or_none => return Some(end),
        Some(_) => {}
        None => return None,
    }
    let state = match v.get(i) {
        Some(b'-') => Num::Minus,
        Some(b'0') => Num::Zero,
        _ => Num::Int,
    };
    done(scan_num(v, i + 1, state))
}

/// The literal `text` at `v[i]`, to just past it.
#[inline(always)]
fn literal<const N: usize>(v: &[u8], i: usize, text: &[u8; N]) -> Option<usize> {
    starts(v, i, text).then_some(i + N)
}

/// Whether `d[i..]` begins with `text` (a comparison as one integer).
#[inline(always)]
fn starts<const N: usize>(d: &[u8], i: usize, text: &[u8; N]) -> bool {
    d.get(i..i + N) == Some(text)
}

/// The index past a token that ended; `None` if it did not.
#[inline(always)]
fn done((i, end): (usize, End)) -> Option<usize> {
    (end == End::Done).then_some(i)
}

/// How a token scan ended, returned with an index in two registers (a
/// `Result` carrying an `ErrorKind` would go through memory on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The token ended; the index is just past it.
    Done,
    /// The data ended inside the token; the index is where to resume.
    More,
    /// A number cut short in this state; the index is where to resume.
    MoreNum(Num),
    /// Invalid; the index is the offending byte.
    Bad(Invalid),
}

/// What was invalid inside a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Control,
    Escape,
    Surrogate,
    Utf8,
    Number,
    Literal,
}

impl From<Invalid> for ErrorKind {
    fn from(invalid: Invalid) -> Self {
        match invalid {
            Invalid::Control => ErrorKind::ControlInString,
            Invalid::Escape => ErrorKind::InvalidEscape,
            Invalid::Surrogate => ErrorKind::LoneSurrogate,
            Invalid::Utf8 => ErrorKind::InvalidUtf8,
            Invalid::Number => ErrorKind::InvalidNumber,
            Invalid::Literal => ErrorKind::InvalidLiteral,
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `w` that cannot be copied through a string
/// as it is: `"`, `\`, a control character, or a non-ASCII byte. Exact for the
/// lowest such byte (higher ones may be false positives, which is all a scan
/// for the first one needs).
///
/// `w ^ 0x02…` maps `"` (0x22) to 0x20 and every control character to
/// 0x00–0x1F, so "below 0x21" finds both at once; `w ^ 0x5C…` maps `\` to
/// zero. A byte subtraction borrows (sets its high bit) only for bytes below
/// the subtrahend, and bytes with their own high bit set are special anyway.
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    let quote_or_control = (w ^ (ONES * 0x02)).wrapping_sub(ONES * 0x21);
    let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    (quote_or_control | backslash | w) & HIGHS
}

/// High bit set in every byte of `w` that a writer must escape: `"`, `\\`, a
/// control character and, if `ascii`, a non-ASCII byte (exact for the lowest
/// such byte, as in [`special_bytes`]; `!w` keeps non-ASCII bytes out when they
/// may pass, and they never borrow).
#[inline(always)]
pub(crate) fn escape_bytes(w: u64, ascii: bool) -> u64 {
    let quote_or_control = (w ^ (ONES * 0x02)).wrapping_sub(ONES * 0x21);
    let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    let mask = if ascii { w } else { 0 };
    (((quote_or_control | backslash) & !w) | mask) & HIGHS
}

/// High bit set in every byte of `w` that is `"` or `\\` (exact for the
/// lowest such byte): for skipping strings that are already validated.
#[inline(always)]
fn quote_or_backslash(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGHS
}

/// Scans string contents from `i` (just past the opening quote, or a resume
/// point) to just past the closing quote, validating escapes and UTF-8.
#[inline(always)]
fn scan_str(d: &[u8], mut i: usize) -> (usize, End) {
    loop {
        let quote;
        (i, quote) = skip_plain(d, i);
        if quote {
            return (i + 1, End::Done);
        }
        let Some(&b) = d.get(i) else { return (i, End::More) };
        let step = match b {
            b'"' => return (i + 1, End::Done),
            b'\\' => escape(d, i),
            0..=0x1f => Err(Invalid::Control),
            0x80.. => utf8_char(d, i).map_err(|()| Invalid::Utf8),
            _ => Ok(Some(i + 1)),
        };
        match step {
            Ok(Some(next)) => i = next,
            Ok(None) => return (i, End::More),
            Err(Invalid::Control) => return (i, End::Bad(Invalid::Control)),
            Err(invalid) => return (deciding_byte(d, i, invalid), End::Bad(invalid)),
        }
    }
}

/// Index of the first byte from `d[i]` on that [`special_bytes`] picks out,
/// sixteen bytes at a time (SSE2, through `safe_arch`), and whether it is
/// known to be a `"` (then the caller need not look); or where fewer than
/// eight bytes are left, for the caller to go on byte by byte.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn skip_plain(d: &[u8], mut i: usize) -> (usize, bool) {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    while let Some(block) = d.get(i..i + 16) {
        let v = load_unaligned_m128i(block.try_into().unwrap_or(&[0; 16]));
        // A signed comparison with 0x20 catches the control characters and,
        // as negative numbers, every byte with its high bit set.
        let quote = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'"' as i8));
        let special = quote
            | cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8))
            | cmp_lt_mask_i8_m128i(v, set_splat_i8_m128i(0x20));
        let mask = move_mask_i8_m128i(special);
        if mask != 0 {
            let at = mask.trailing_zeros();
            return (i + at as usize, move_mask_i8_m128i(quote) >> at & 1 == 1);
        }
        i += 16;
    }
    (skip_plain_tail(d, i), false)
}

/// [`skip_plain`] over the last bytes of the data, fewer than sixteen (rare:
/// out of line, so that the hot loops keep their registers).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cold]
#[inline(never)]
fn skip_plain_tail(d: &[u8], i: usize) -> usize {
    skip_plain_swar(d, i)
}

/// [`skip_plain`] without SIMD: eight bytes at a time (SWAR).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn skip_plain(d: &[u8], i: usize) -> (usize, bool) {
    (skip_plain_swar(d, i), false)
}

/// Index of the first `"` or `\\` from `d[i]` on, sixteen bytes at a time
/// (SSE2): for skipping strings that are already validated. `d.len()` if
/// there is none; where the data is shorter than sixteen bytes and fewer
/// than eight are left, the caller goes on byte by byte.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn find_quote_or_backslash(d: &[u8], mut i: usize) -> usize {
    use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i};
    let found = |block: &[u8]| {
        let v = load_unaligned_m128i(block.try_into().unwrap_or(&[0; 16]));
        let found = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'"' as i8))
            | cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8));
        move_mask_i8_m128i(found) as u32
    };
    while let Some(block) = d.get(i..i + 16) {
        let mask = found(block);
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    // Fewer than sixteen left: the data's last sixteen, without those before `i`.
    let Some(last) = d.len().checked_sub(16) else { return find_quote_or_backslash_swar(d, i) };
    let mask = found(&d[last..]).checked_shr((i - last) as u32).unwrap_or(0);
    if mask != 0 { i + mask.trailing_zeros() as usize } else { d.len() }
}

/// [`find_quote_or_backslash`] without SIMD.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn find_quote_or_backslash(d: &[u8], i: usize) -> usize {
    find_quote_or_backslash_swar(d, i)
}

/// [`find_quote_or_backslash`] eight bytes at a time in a `u64` (SWAR).
#[inline(always)]
fn find_quote_or_backslash_swar(d: &[u8], i: usize) -> usize {
    first_marked(d, i, quote_or_backslash)
}

/// [`skip_plain`] eight bytes at a time in a `u64` (SWAR).
#[inline(always)]
fn skip_plain_swar(d: &[u8], i: usize) -> usize {
    first_marked(d, i, special_bytes)
}

/// Index of the first byte from `d[i]` on that `mark` sets the high bit of,
/// eight bytes at a time; where fewer than eight are left if none is.
#[inline(always)]
fn first_marked(d: &[u8], mut i: usize, mark: impl Fn(u64) -> u64) -> usize {
    while let Some(chunk) = d.get(i..i + 8) {
        let marked = mark(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if marked != 0 {
            return i + (marked.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// Where the invalid escape or UTF-8 sequence at `d[i]` became invalid:
/// the error is placed there, so that it is the same byte whatever the
/// chunking (a value that passes its size limit before that byte is
/// `TooLarge` first, as when the bytes trickle in).
#[cold]
#[inline(never)]
fn deciding_byte(d: &[u8], i: usize, invalid: Invalid) -> usize {
    let invalid_up_to = |end: &usize| match d.get(..=*end) {
        Some(cut) if invalid == Invalid::Utf8 => utf8_char(cut, i).is_err(),
        Some(cut) => escape(cut, i).is_err(),
        None => true,
    };
    (i..d.len()).find(invalid_up_to).unwrap_or(i)
}

/// Validates the escape at `d[i]` (a backslash); returns the index past it,
/// or `None` if the data ends inside it.
fn escape(d: &[u8], i: usize) -> Result<Option<usize>, Invalid> {
    let Some(&e) = d.get(i + 1) else {
        return Ok(None);
    };
    match e {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(Some(i + 2)),
        b'u' => {
            let Some(unit) = hex4(d, i + 2)? else {
                return Ok(None);
            };
            match unit {
                0xD800..=0xDBFF => {
                    // A high surrogate must be followed by `\u` and a low one.
                    let prefix = d.get(i + 6..).unwrap_or(&[]);
                    let seen = prefix.len().min(2);
                    if prefix[..seen] != b"\\u"[..seen] {
                        return Err(Invalid::Surrogate);
                    }
                    if seen < 2 {
                        return Ok(None);
                    }
                    match hex4(d, i + 8)? {
                        None => Ok(None),
                        Some(0xDC00..=0xDFFF) => Ok(Some(i + 12)),
                        Some(_) => Err(Invalid::Surrogate),
                    }
                }
                0xDC00..=0xDFFF => Err(Invalid::Surrogate),
                _ => Ok(Some(i + 6)),
            }
        }
        _ => Err(Invalid::Escape),
    }
}

/// The four hex digits at `d[i..i + 4]`, or `None` if the data ends first.
fn hex4(d: &[u8], i: usize) -> Result<Option<u16>, Invalid> {
    let digits = d.get(i..).unwrap_or(&[]);
    let mut unit = 0u16;
    for k in 0..4 {
        let Some(&c) = digits.get(k) else {
            return Ok(None);
        };
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(Invalid::Escape),
        };
        unit = unit << 4 | u16::from(v);
    }
    Ok(Some(unit))
}

/// Validates the UTF-8 sequence led by `d[i]` (≥ 0x80): returns the index
/// past it, or `None` if the data ends inside it. Rejects overlong forms,
/// surrogates and code points past U+10FFFF, as `core::str::from_utf8` does.
fn utf8_char(d: &[u8], i: usize) -> Result<Option<usize>, ()> {
    let Some(&lead) = d.get(i) else {
        return Ok(None);
    };
    let (len, lo, hi) = match lead {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return Err(()),
    };
    for k in 1..len {
        let Some(&c) = d.get(i + k) else {
            return Ok(None);
        };
        let (lo, hi) = if k == 1 { (lo, hi) } else { (0x80, 0xBF) };
        if !(lo..=hi).contains(&c) {
            return Err(());
        }
    }
    Ok(Some(i + len))
}

/// Continues a number from `d[i]` in `state`, to just past its end.
fn scan_num(d: &[u8], mut i: usize, mut state: Num) -> (usize, End) {
    loop {
        if matches!(state, Num::Int | Num::Frac | Num::Exp) {
            i = skip_digits(d, i);
        }
        let Some(&b) = d.get(i) else { return (i, End::MoreNum(state)) };
        state = match (state, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') | (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::E,
            (Num::E, b'+' | b'-') => Num::ESign,
            (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Num::Exp,
            (Num::Zero, b'0'..=b'9') => return (i, End::Bad(Invalid::Number)),
            (state, _) if state.is_complete() => return (i, End::Done),
            _ => return (i, End::Bad(Invalid::Number)),
        };
        i += 1;
    }
}

/// Index of the first byte from `d[i]` on that is not a decimal digit.
#[inline(always)]
fn skip_digits(d: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = d.get(i) {
        i += 1;
    }
    i
}

/// Matches `true`, `false` or `null` at `d[i]`, to just past it; `More`
/// (resume at `i`) if the data ends inside it.
fn scan_literal(d: &[u8], i: usize) -> (usize, End) {
    // Whole, as it nearly always is: one comparison of constant length.
    let (literal, whole): (&[u8], _) = match d.get(i) {
        Some(b't') => (b"true", starts(d, i, b"true")),
        Some(b'f') => (b"false", starts(d, i, b"false")),
        _ => (b"null", starts(d, i, b"null")),
    };
    if whole {
        return (i + literal.len(), End::Done);
    }
    let seen = d.get(i..).unwrap_or(&[]);
    for (k, &want) in literal.iter().enumerate() {
        match seen.get(k) {
            None => return (i, End::More),
            Some(&c) if c != want => return (i + k, End::Bad(Invalid::Literal)),
            Some(_) => {}
        }
    }
    (i + literal.len(), End::Done)
}

/// Validates that `text` is exactly one JSON value, with only white space
/// around it; returns the value's span.
pub(crate) fn validate(text: &[u8], max_depth: usize) -> Result<(usize, usize, Index), Error> {
    let mut framer = Scanner::new(Limits { max_message: usize::MAX, max_depth });
    let (start, end) = match framer.scan(text) {
        Step::Message(Span { start, end }) => (start, end),
        Step::Error(e) => return Err(e),
        Step::More => match framer.finish(text) {
            Some(Step::Message(Span { start, end })) => (start, end),
            Some(Step::Error(e)) => return Err(e),
            _ => {
                return Err(Error { kind: ErrorKind::Empty, offset: text.len() as u64 });
            }
        },
    };
    let members = *framer.index();
    let rest = text.get(end..).unwrap_or(&[]);
    if let Some(k) = rest.iter().position(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        return Err(Error { kind: ErrorKind::TrailingCharacters, offset: (end + k) as u64 });
    }
    Ok((start, end, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], chunk: usize) -> ([u8; 64], usize, usize) {
        // Feed `input` in `chunk`-byte pieces; count values and errors.
        let mut f = Scanner::new(Limits::default());
        let mut buf = [0u8; 4096];
        let (mut len, mut fed) = (0, 0);
        let (mut values, mut errors) = (0, 0);
        let mut kinds = [0u8; 64];
        while fed < input.len() {
            let n = chunk.min(input.len() - fed);
            buf[len..len + n].copy_from_slice(&input[fed..fed + n]);
            len += n;
            fed += n;
            loop {
                match f.scan(&buf[..len]) {
                    Step::Message(Span { end, .. }) => {
                        values += 1;
                        buf.copy_within(end..len, 0);
                        len -= end;
                        f.shift(end);
                    }
                    Step::Error(_) => {
                        kinds[errors] = 1;
                        errors += 1;
                    }
                    Step::More => break,
                }
            }
            let drop = f.droppable();
            buf.copy_within(drop..len, 0);
            len -= drop;
            f.shift(drop);
        }
        (kinds, values, errors)
    }

    #[test]
    fn frames_back_to_back_and_split() {
        let input = "{\"a\": [1, 2.5e-3, -0, true, false, null, \"x\\\"\\u00e9\\ud83d\\ude00\"]}{\"b\":{}}\n  [] \"s\" {\"c\": \"café 😀\"}\n".as_bytes();
        for chunk in 1..input.len() {
            let (_, values, errors) = frames(input, chunk);
            assert_eq!((values, errors), (5, 0), "chunk {chunk}");
        }
    }

    #[test]
    fn errors_then_resyncs_at_next_line() {
        let input = b"{\"id\": inf}\r\n{\"ok\": 1}\r\n{\"a\" 1}\r\n[1]\r\n";
        for chunk in 1..input.len() {
            let (_, values, errors) = frames(input, chunk);
            assert_eq!((values, errors), (2, 2), "chunk {chunk}");
        }
    }

    #[test]
    fn validate_rejects_what_json_rejects() {
        for bad in [
            &b"01"[..],
            b"1.",
            b"-",
            b"1e",
            b"[1,]",
            b"{\"a\":1,}",
            b"\"\\x\"",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\x01\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"tru",
            b"nul1",
            b"{\"a\" 1}",
            b"[}",
            b"",
            b"  ",
            b"1 2",
            b"'a'",
        ] {
            assert!(validate(bad, 128).is_err(), "{:?}", core::str::from_utf8(bad));
        }
        for good in [
            &b"0"[..],
            b"-0.5e+10",
            b" {\"a\" : [ ] , \"b\":{}} ",
            b"\"\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"",
            b"\"\xf0\x9f\x98\x80\"",
            b"null",
        ] {
            assert!(validate(good, 128).is_ok(), "{:?}", core::str::from_utf8(good));
        }
    }

    #[test]
    fn depth_limit() {
        let deep = [b'['; 200];
        let e = validate(&deep, 128).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep { limit: 128 });
        assert_eq!(e.offset, 128);
    }

    #[test]
    fn swar_masks_find_exactly_the_first_special_byte() {
        let first = |mask: u64| (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize);
        for filler in [b'a', b' ', 0xC3, 0x7F, b'#'] {
            for b in 0..=255u8 {
                for k in 0..8 {
                    let mut word = [filler; 8];
                    word[k] = b;
                    let w = u64::from_le_bytes(word);
                    let is = |x: u8, ascii: bool| x < 0x20 || x == b'"' || x == b'\\' || (ascii && x >= 0x80);
                    let naive = |ascii: bool| word.iter().position(|&x| is(x, ascii));
                    assert_eq!(first(special_bytes(w)), naive(true), "{filler:#x} {b:#x} {k}");
                    assert_eq!(first(escape_bytes(w, true)), naive(true), "{filler:#x} {b:#x} {k}");
                    assert_eq!(first(escape_bytes(w, false)), naive(false), "{filler:#x} {b:#x} {k}");
                    let quote = word.iter().position(|&x| x == b'"' || x == b'\\');
                    assert_eq!(first(quote_or_backslash(w)), quote, "{filler:#x} {b:#x} {k}");
                }
            }
        }
    }

    #[test]
    fn skip_plain_finds_the_first_special_byte() {
        let is = |x: u8| x < 0x20 || x == b'"' || x == b'\\' || x >= 0x80;
        for len in 0..40 {
            for at in 0..=len {
                for b in 0..=255u8 {
                    let mut d = [b'a'; 40];
                    if at < len {
                        d[at] = b;
                    }
                    let d = &d[..len];
                    for (from, swar) in (0..len.min(3)).flat_map(|f| [(f, false), (f, true)]) {
                        let (got, quote) = if swar { (skip_plain_swar(d, from), false) } else { skip_plain(d, from) };
                        // A quote said to be found is one.
                        assert!(!quote || d.get(got) == Some(&b'"'), "{len} {at} {b:#x} {from}");
                        let want = d[from..].iter().position(|&x| is(x)).map(|k| from + k);
                        match want {
                            // Found exactly, unless fewer than eight bytes were left to look at.
                            Some(w) => assert!(got == w || (got < w && d.len() - got < 8), "{len} {at} {b:#x} {from}"),
                            None => assert!(d.len() - got < 8 && got >= from, "{len} {at} {b:#x} {from}"),
                        }
                        assert!(d[from..got].iter().all(|&x| !is(x)), "{len} {at} {b:#x} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn find_quote_or_backslash_finds_the_first_one() {
        for len in 0..40 {
            for at in 0..=len {
                for b in [b'"', b'\\', b'a', 0x00, 0x22 ^ 0x80, 0x5C ^ 0x80, 0xFF] {
                    let mut d = [b'a'; 40];
                    if at < len {
                        d[at] = b;
                    }
                    let d = &d[..len];
                    for from in 0..len.min(3) {
                        let got = find_quote_or_backslash(d, from);
                        let want = d[from..].iter().position(|&x| x == b'"' || x == b'\\').map(|k| from + k);
                        // Found exactly, unless the data is shorter than
                        // sixteen bytes and fewer than eight were left.
                        let short = len < 16 && d.len() - got < 8 && got >= from;
                        match want {
                            Some(w) => assert!(got == w || (got < w && short), "{len} {at} {b:#x} {from}"),
                            None => assert!(got == len || short, "{len} {at} {b:#x} {from}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn records_top_level_members() {
        let text = br#"{"return": {"a": [1]}, "id": 7, "k\"": "v"}"#;
        let (start, _, m) = validate(text, 8).unwrap();
        assert_eq!(start, 0);
        assert_eq!(m.len, 3);
        let span = |i: usize, f: usize| m.spans[i][f] as usize;
        assert_eq!(&text[span(0, 0)..span(0, 1)], b"return");
        assert_eq!(&text[span(0, 2)..span(0, 3)], br#"{"a": [1]}"#);
        assert_eq!(&text[span(1, 2)..span(1, 3)], b"7");
        assert_eq!(&text[span(2, 0)..span(2, 1)], br#"k\""#);
    }
}
