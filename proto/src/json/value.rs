//! Zero-copy reading of validated JSON.

use core::fmt;

use super::error::Error;
use super::framer::{self, Index, MAX_DEPTH};
use crate::buf::Full;

/// A validated JSON value, borrowed from the bytes it was framed from.
///
/// Nothing is decoded until asked for: members are looked up as spans,
/// strings are unescaped on request, and the whole value can be handed to
/// serde ([`Value::decode`], [`Value::deserialize`]).
///
/// ```
/// use vmwire_proto::json::{Kind, Value};
/// let v = Value::parse(br#"{"status": "running", "singlestep": false}"#)?;
/// assert_eq!(v.kind(), Kind::Object);
/// let status = v.get("status").and_then(|s| s.as_str()).unwrap();
/// assert!(status == "running");
/// # Ok::<(), vmwire_proto::json::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value<'a> {
    raw: &'a [u8],
}

/// The six kinds of JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `{…}`
    Object,
    /// `[…]`
    Array,
    /// `"…"`
    String,
    /// `-1.5e3`
    Number,
    /// `true` or `false`
    Bool,
    /// `null`
    Null,
}

impl<'a> Value<'a> {
    /// Validates `text` as exactly one JSON value (white space around it
    /// allowed, nesting up to 1024) and returns it.
    pub fn parse(text: &'a [u8]) -> Result<Self, Error> {
        let (start, end, _) = framer::validate(text, MAX_DEPTH)?;
        Ok(Value::trusted(text.get(start..end).unwrap_or_default()))
    }

    /// Like [`Value::parse`], with nesting limited to `max_depth` (at most
    /// [`MAX_DEPTH`](super::MAX_DEPTH)): for text from a peer that is not trusted.
    ///
    /// ```
    /// use vmwire_proto::json::{ErrorKind, Value};
    /// assert!(Value::parse_limited(b"[[1]]", 2).is_ok());
    /// assert_eq!(Value::parse_limited(b"[[[1]]]", 2).unwrap_err().kind, ErrorKind::TooDeep { limit: 2 });
    /// ```
    pub fn parse_limited(text: &'a [u8], max_depth: usize) -> Result<Self, Error> {
        let (start, end, _) = framer::validate(text, max_depth.min(MAX_DEPTH))?;
        Ok(Value::trusted(text.get(start..end).unwrap_or_default()))
    }

    /// Wraps bytes the framer has already validated.
    pub(crate) fn trusted(raw: &'a [u8]) -> Self {
        Value { raw }
    }

    /// The value's JSON text, exactly as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value's JSON text as a `str` (it is valid UTF-8: the framer checked).
    pub fn raw_str(&self) -> &'a str {
        core::str::from_utf8(self.raw).unwrap_or_default()
    }

    /// What kind of value this is.
    pub fn kind(&self) -> Kind {
        match self.raw.first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// `true` for `null`.
    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// The string, still escaped, if this is one.
    pub fn as_str(&self) -> Option<JsonStr<'a>> {
        match self.raw {
            [b'"', inner @ .., b'"'] => Some(JsonStr { raw: inner }),
            _ => None,
        }
    }

    /// The number, if it is an integer in `u64`'s range.
    pub fn as_u64(&self) -> Option<u64> {
        whole(self.raw, digits(self.raw, 0))
    }

    /// The number, if it is an integer in `i64`'s range.
    pub fn as_i64(&self) -> Option<i64> {
        whole(self.raw, read_i64(self.raw, 0))
    }

    /// The number as the nearest `f64` (±infinity past its range).
    pub fn as_f64(&self) -> Option<f64> {
        self.number()?.parse().ok()
    }

    fn number(&self) -> Option<&'a str> {
        // Only `as_f64` needs the text; the integers are read from the bytes.
        (self.kind() == Kind::Number).then(|| self.raw_str())
    }

    /// The values of this object's members named `first` and `second` (the
    /// last of each, if repeated), each read with `read` (such as
    /// [`Value::read`], [`JsonStr::read`] or [`read_i64`]); `None` if it is not
    /// an object, or either member is missing or not what `read` takes. An
    /// object written exactly `{"first": …, "second": …}`, as QEMU writes its
    /// timestamps and errors, is read straight, in one pass.
    #[inline]
    pub(crate) fn pair<T>(
        &self,
        first: &str,
        second: &str,
        read: impl Fn(&'a [u8], usize) -> Reading<T>,
    ) -> Option<(T, T)> {
        let raw = self.raw;
        // `{"first": A, "second": B}`, as it nearly always comes.
        let member = |at: usize, key: &[u8], lead: &[u8]| {
            let rest = raw.get(at..)?.strip_prefix(lead)?.strip_prefix(key)?.strip_prefix(b"\": ")?;
            read(raw, raw.len() - rest.len())
        };
        let exact = member(0, first.as_bytes(), b"{\"").and_then(|(a, end)| {
            let (b, end) = member(end, second.as_bytes(), b", \"")?;
            (raw.get(end..)? == b"}").then_some((a, b))
        });
        if exact.is_some() {
            return exact;
        }
        let (mut a, mut b) = (None, None);
        for (key, value) in self.as_object()?.members() {
            if key == first {
                a = Some(value);
            } else if key == second {
                b = Some(value);
            }
        }
        let read_whole = |v: Value<'a>| whole(v.raw, read(v.raw, 0));
        Some((read_whole(a?)?, read_whole(b?)?))
    }

    /// Reads the value that begins at `raw[i]` in validated JSON: it, and
    /// the index just past it.
    #[inline]
    pub(crate) fn read(raw: &'a [u8], i: usize) -> Reading<Value<'a>> {
        let end = skip_value(raw, i);
        Some((Value::trusted(raw.get(i..end)?), end))
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<Object<'a>> {
        (self.kind() == Kind::Object).then_some(Object { raw: self.raw, index: None })
    }

    /// The array's elements, if this is one.
    pub fn as_array(&self) -> Option<Elements<'a>> {
        (self.kind() == Kind::Array).then_some(Elements { raw: self.raw, pos: 1 })
    }

    /// Shorthand for `as_object()?.get(key)`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.as_object()?.get(key)
    }

    /// Decodes the value into `T` with `serde-json-core` (no allocation;
    /// borrowed `&str` fields must not contain escapes).
    pub fn decode<T: serde::Deserialize<'a>>(&self) -> Result<T, serde_json_core::de::Error> {
        serde_json_core::from_slice(self.raw).map(|(value, _)| value)
    }

    /// Decodes the value into `T` with `serde_json`.
    #[cfg(feature = "std")]
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.raw)
    }
}

impl<'a> Value<'a> {
    /// Displays the value without white space, member order and string
    /// escapes as received (QEMU's `pretty=on` output, made compact).
    pub fn compact(&self) -> Formatted<'a> {
        Formatted { value: *self, indent: None }
    }

    /// Displays the value indented by `indent` spaces per level, member order
    /// and string escapes as received.
    ///
    /// ```
    /// use vmwire_proto::json::Value;
    /// let v = Value::parse(br#"{"b": [1, {}], "a": "x"}"#)?;
    /// assert_eq!(v.pretty(2).to_string(), "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": \"x\"\n}");
    /// assert_eq!(v.compact().to_string(), r#"{"b":[1,{}],"a":"x"}"#);
    /// # Ok::<(), vmwire_proto::json::Error>(())
    /// ```
    pub fn pretty(&self, indent: usize) -> Formatted<'a> {
        Formatted { value: *self, indent: Some(indent) }
    }
}

/// A [`Value`] re-laid-out for display: see [`Value::compact`] and [`Value::pretty`].
#[derive(Debug, Clone, Copy)]
pub struct Formatted<'a> {
    value: Value<'a>,
    indent: Option<usize>,
}

impl fmt::Display for Formatted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_formatted(f, self.value, self.indent, 0)
    }
}

fn write_formatted(f: &mut fmt::Formatter<'_>, value: Value<'_>, indent: Option<usize>, level: usize) -> fmt::Result {
    let newline = |f: &mut fmt::Formatter<'_>, level: usize| match indent {
        Some(width) => write!(f, "\n{:1$}", "", width * level),
        None => Ok(()),
    };
    let (open, close) = match value.kind() {
        Kind::Object => ('{', '}'),
        Kind::Array => ('[', ']'),
        _ => return f.write_str(value.raw_str()),
    };
    write!(f, "{open}")?;
    let mut empty = true;
    let mut item = |f: &mut fmt::Formatter<'_>, key: Option<JsonStr<'_>>, v: Value<'_>| -> fmt::Result {
        if !core::mem::take(&mut empty) {
            f.write_str(",")?;
        }
        newline(f, level + 1)?;
        if let Some(key) = key {
            write!(
                f,
                "\"{}\":{}",
                core::str::from_utf8(key.raw()).unwrap_or_default(),
                if indent.is_some() { " " } else { "" }
            )?;
        }
        write_formatted(f, v, indent, level + 1)
    };
    match value.as_object() {
        Some(object) => object.members().try_for_each(|(k, v)| item(f, Some(k), v))?,
        None => value.as_array().into_iter().flatten().try_for_each(|v| item(f, None, v))?,
    }
    if !empty {
        newline(f, level)?;
    }
    write!(f, "{close}")
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({})", self.raw_str())
    }
}

impl fmt::Display for Value<'_> {
    /// The JSON text as received.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw_str())
    }
}

/// A JSON object: members looked up as spans.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Object<'a> {
    raw: &'a [u8],
    /// Spans recorded by the framer, when this object was a framed message.
    index: Option<&'a Index>,
}

impl<'a> Object<'a> {
    pub(crate) fn indexed(raw: &'a [u8], index: &'a Index) -> Self {
        Object { raw, index: Some(index) }
    }

    /// The members' raw key bytes and values, straight from the framer's
    /// index when the object has a complete one (the common case for a
    /// framed message); `None` otherwise. Keys are as received (escapes kept).
    #[inline]
    pub(crate) fn indexed_members(&self) -> Option<impl Iterator<Item = (&'a [u8], Value<'a>)> + use<'a>> {
        let index = self.index.filter(|i| !i.overflow)?;
        let raw = self.raw;
        Some(index.spans.iter().take(usize::from(index.len)).map(move |&[ks, ke, vs, ve]| {
            let key = raw.get(ks as usize..ke as usize).unwrap_or_default();
            (key, Value::trusted(raw.get(vs as usize..ve as usize).unwrap_or_default()))
        }))
    }

    /// The object as a [`Value`].
    pub fn value(&self) -> Value<'a> {
        Value::trusted(self.raw)
    }

    /// The value of the first member named `key` (compared after unescaping).
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The members in order, as `(key, value)`.
    pub fn members(&self) -> Members<'a> {
        Members { raw: self.raw, pos: 1, index: self.index, next: 0 }
    }
}

impl fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.members()).finish()
    }
}

/// Iterator over an [`Object`]'s members.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    raw: &'a [u8],
    pos: usize,
    index: Option<&'a Index>,
    next: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (JsonStr<'a>, Value<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(index) = self.index {
            if let Some(&[ks, ke, vs, ve]) = index.spans.get(self.next).filter(|_| self.next < usize::from(index.len)) {
                self.next += 1;
                self.pos = ve as usize;
                let key = self.raw.get(ks as usize..ke as usize)?;
                let value = self.raw.get(vs as usize..ve as usize)?;
                return Some((JsonStr { raw: key }, Value::trusted(value)));
            }
            if !index.overflow {
                return None;
            }
            self.index = None;
        }
        let raw = self.raw;
        let mut i = skip_ws(raw, self.pos);
        if raw.get(i) == Some(&b',') {
            i = skip_ws(raw, i + 1);
        }
        if raw.get(i) != Some(&b'"') {
            self.pos = raw.len();
            return None;
        }
        let key_end = skip_string(raw, i);
        let key = raw.get(i + 1..key_end.saturating_sub(1))?;
        let colon = skip_ws(raw, key_end);
        let (value, end) = Value::read(raw, skip_ws(raw, colon + 1))?;
        self.pos = end;
        Some((JsonStr { raw: key }, value))
    }
}

/// Iterator over an array's elements.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        let raw = self.raw;
        let mut i = skip_ws(raw, self.pos);
        if raw.get(i) == Some(&b',') {
            i = skip_ws(raw, i + 1);
        }
        if matches!(raw.get(i), Some(b']') | None) {
            self.pos = raw.len();
            return None;
        }
        let (value, end) = Value::read(raw, i)?;
        self.pos = end;
        Some(value)
    }
}

/// What a reader of validated JSON found at an index: the thing read, and
/// the index just past it (`None`: not the kind of value it reads).
pub(crate) type Reading<T> = Option<(T, usize)>;

/// What `reading` read, if it took all of `raw`.
#[inline(always)]
fn whole<T>(raw: &[u8], reading: Reading<T>) -> Option<T> {
    reading.filter(|&(_, end)| end == raw.len()).map(|(t, _)| t)
}

/// Reads the integer in `i64`'s range that begins at `raw[i]` in validated
/// JSON (a fraction or an exponent is not one). QMP timestamps go through here.
#[inline]
pub(crate) fn read_i64(raw: &[u8], i: usize) -> Reading<i64> {
    let negative = raw.get(i) == Some(&b'-');
    let (magnitude, end) = digits(raw, i + usize::from(negative))?;
    if matches!(raw.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let n = if negative { 0i64.checked_sub_unsigned(magnitude)? } else { i64::try_from(magnitude).ok()? };
    Some((n, end))
}

/// Reads the run of decimal digits at `raw[i]` as a `u64` (`None` if there
/// is none, or it overflows). QMP ids go through here.
#[inline(always)]
fn digits(raw: &[u8], i: usize) -> Reading<u64> {
    let run = raw.get(i..)?;
    let (mut n, mut len) = (0u64, 0);
    while let Some(digit) = run.get(len).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
        len += 1;
    }
    // Nineteen digits always fit in a `u64`; only a twentieth can overflow it.
    match len {
        1..20 => Some((n, i + len)),
        20 => run[..20]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .map(|n| (n, i + 20)),
        _ => None,
    }
}

/// Index of the first byte from `raw[i]` on that is not white space.
#[inline(always)]
pub(crate) fn skip_ws(raw: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = raw.get(i) {
        i += 1;
    }
    i
}

/// Index past the string whose opening quote is at `i` (input already validated).
/// Sixteen bytes at a time ([`framer::find_quote_or_backslash`]): keys and
/// most values are short, and a call into `memchr` costs more than the whole scan.
pub(crate) fn skip_string(raw: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    loop {
        j = framer::find_quote_or_backslash(raw, j);
        match raw.get(j) {
            Some(b'"') => return j + 1,
            Some(b'\\') => j += 2,
            Some(_) => j += 1,
            None => return raw.len(),
        }
    }
}

/// Index past the value starting at `i` (input already validated).
pub(crate) fn skip_value(raw: &[u8], i: usize) -> usize {
    match raw.get(i) {
        Some(b'"') => skip_string(raw, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&b) = raw.get(j) {
                match b {
                    b'"' => {
                        j = skip_string(raw, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            raw.len()
        }
        _ => {
            let rest = raw.get(i..).unwrap_or_default();
            i + rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(rest.len())
        }
    }
}

/// The contents of a JSON string, still escaped, borrowed from the input.
///
/// Compare it with `==` against a `&str` (escapes are decoded on the fly),
/// print it with `Display` (decoded), borrow it with [`JsonStr::as_str`] when
/// it has no escapes, or decode it into a buffer or a `String`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonStr<'a> {
    raw: &'a [u8],
}

impl<'a> JsonStr<'a> {
    /// The contents of a string already validated (between its quotes).
    pub(crate) fn from_raw(raw: &'a [u8]) -> Self {
        JsonStr { raw }
    }

    /// Reads the string that begins at `raw[i]` in validated JSON: it, and
    /// the index just past its closing quote. A reader for [`Value::pair`].
    #[inline]
    pub(crate) fn read(raw: &'a [u8], i: usize) -> Reading<JsonStr<'a>> {
        if raw.get(i) != Some(&b'"') {
            return None;
        }
        let end = skip_string(raw, i);
        Some((JsonStr { raw: raw.get(i + 1..end.checked_sub(1)?)? }, end))
    }

    /// The contents between the quotes, escapes and all.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether decoding changes anything (the string has a backslash).
    #[allow(clippy::manual_contains)] // `contains` calls memchr: see below
    pub fn has_escapes(&self) -> bool {
        // Keys and short values are the common case: a call into memchr
        // (which `<[u8]>::contains` is) costs more than looking at a few bytes.
        if self.raw.len() < 32 {
            return self.raw.iter().any(|&b| b == b'\\');
        }
        memchr::memchr(b'\\', self.raw).is_some()
    }

    /// The string itself, borrowed, when it has no escapes.
    pub fn as_str(&self) -> Option<&'a str> {
        if self.has_escapes() { None } else { core::str::from_utf8(self.raw).ok() }
    }

    /// The decoded string in pieces: borrowed runs and single escaped characters.
    pub fn chunks(&self) -> Chunks<'a> {
        Chunks { raw: self.raw }
    }

    /// Decodes into `buf`; [`Full`] if it does not fit.
    pub fn unescape_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, Full> {
        chunks_into(self.chunks(), buf)
    }

    /// Decodes into a `String` (borrowing when there is nothing to decode).
    #[cfg(feature = "alloc")]
    pub fn to_cow(&self) -> alloc::borrow::Cow<'a, str> {
        match self.as_str() {
            Some(s) => alloc::borrow::Cow::Borrowed(s),
            None => alloc::borrow::Cow::Owned(alloc::string::ToString::to_string(self)),
        }
    }
}

impl Default for JsonStr<'_> {
    /// The empty string.
    fn default() -> Self {
        JsonStr { raw: b"" }
    }
}

impl PartialEq<str> for JsonStr<'_> {
    fn eq(&self, other: &str) -> bool {
        if !self.has_escapes() {
            return self.raw == other.as_bytes();
        }
        chunks_eq(self.chunks(), other)
    }
}

impl PartialEq<&str> for JsonStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl fmt::Display for JsonStr<'_> {
    /// The decoded string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        chunks_fmt(self.chunks(), f)
    }
}

/// Decoded text in pieces (JSON's here, XML-RPC's too) decoded into `buf`.
pub(crate) fn chunks_into<'a, 'b>(chunks: impl Iterator<Item = Chunk<'a>>, buf: &'b mut [u8]) -> Result<&'b str, Full> {
    let (mut len, limit) = (0, buf.len());
    for chunk in chunks {
        let mut utf8 = [0; 4];
        let piece = match chunk {
            Chunk::Str(s) => s,
            Chunk::Char(c) => c.encode_utf8(&mut utf8),
        };
        let dest = buf.get_mut(len..len + piece.len()).ok_or(Full { limit })?;
        dest.copy_from_slice(piece.as_bytes());
        len += piece.len();
    }
    Ok(core::str::from_utf8(buf.get(..len).unwrap_or_default()).unwrap_or_default())
}

/// Whether decoded text in pieces equals `other`, decoding nothing ahead.
pub(crate) fn chunks_eq<'a>(chunks: impl Iterator<Item = Chunk<'a>>, other: &str) -> bool {
    let mut rest = other.as_bytes();
    for chunk in chunks {
        let mut utf8 = [0; 4];
        let piece = match chunk {
            Chunk::Str(s) => s.as_bytes(),
            Chunk::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
        };
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Writes decoded text in pieces.
pub(crate) fn chunks_fmt<'a>(chunks: impl Iterator<Item = Chunk<'a>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use fmt::Write;
    for chunk in chunks {
        match chunk {
            Chunk::Str(s) => f.write_str(s)?,
            Chunk::Char(c) => f.write_char(c)?,
        }
    }
    Ok(())
}

impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", core::str::from_utf8(self.raw).unwrap_or_default())
    }
}

/// A piece of a decoded string (JSON's, and XML-RPC's text too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// A run with no escapes, borrowed.
    Str(&'a str),
    /// One character that was escaped (or, in XML, a line end made `\n`).
    Char(char),
}

/// Iterator over a [`JsonStr`]'s decoded pieces.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    raw: &'a [u8],
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let raw = self.raw;
        match raw.first()? {
            b'\\' => {
                let (c, len) = decode_escape(raw);
                self.raw = raw.get(len..).unwrap_or_default();
                Some(Chunk::Char(c))
            }
            _ => {
                let end = memchr::memchr(b'\\', raw).unwrap_or(raw.len());
                let (run, rest) = raw.split_at(end);
                self.raw = rest;
                Some(Chunk::Str(core::str::from_utf8(run).unwrap_or_default()))
            }
        }
    }
}

/// Decodes the (validated) escape at the start of `raw`: the character and
/// how many bytes it took.
fn decode_escape(raw: &[u8]) -> (char, usize) {
    let hex = |at: usize| -> u32 {
        raw.get(at..at + 4)
            .and_then(|h| core::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0xFFFD)
    };
    let simple = match raw.get(1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let unit = hex(2);
            if (0xD800..0xDC00).contains(&unit) {
                let low = hex(8);
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                return (char::from_u32(c).unwrap_or('\u{FFFD}'), 12);
            }
            return (char::from_u32(unit).unwrap_or('\u{FFFD}'), 6);
        }
        _ => '\u{FFFD}',
    };
    (simple, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_numbers() {
        let v =
            Value::parse(br#" {"a": 1, "b": [true, null, "x"], "c": {"d": -2.5e1}, "e\u0041": 18446744073709551615} "#)
                .unwrap();
        assert_eq!(v.get("a").unwrap().as_u64(), Some(1));
        assert_eq!(v.get("eA").unwrap().as_u64(), Some(u64::MAX));
        assert_eq!(v.get("c").unwrap().get("d").unwrap().as_f64(), Some(-25.0));
        let b: heapless::Vec<Kind, 4> = v.get("b").unwrap().as_array().unwrap().map(|e| e.kind()).collect();
        assert_eq!(&b[..], &[Kind::Bool, Kind::Null, Kind::String]);
        assert!(v.get("zz").is_none());
        assert_eq!(Value::parse(b"-1").unwrap().as_u64(), None);
        assert_eq!(Value::parse(b"1.0").unwrap().as_i64(), None);
    }

    #[test]
    fn integers_of_every_length_read_exactly() {
        // Every length from 1 to 20 digits (20: where overflow is possible),
        // each digit in each place.
        let mut text = [0u8; 21];
        for len in 1..=20 {
            for digit in b'0'..=b'9' {
                for place in 0..len {
                    text[..len].fill(b'7');
                    text[place] = digit;
                    let digits = &text[..len];
                    if digits.len() > 1 && digits[0] == b'0' {
                        continue; // not JSON
                    }
                    let want: Option<u64> = core::str::from_utf8(digits).unwrap().parse().ok();
                    let got = Value::trusted(digits).as_u64();
                    assert_eq!(got, want, "{}", core::str::from_utf8(digits).unwrap());
                    text[len] = b'}';
                    let read = read_i64(&text[..=len], 0);
                    assert_eq!(read, want.and_then(|n| i64::try_from(n).ok()).map(|n| (n, len)));
                }
            }
        }
        for (text, want) in
            [(&b"18446744073709551616"[..], None), (b"99999999999999999999", None), (b"123456789012345678901", None)]
        {
            assert_eq!(Value::trusted(text).as_u64(), want);
        }
        assert_eq!(Value::trusted(b"-9223372036854775808").as_i64(), Some(i64::MIN));
        assert_eq!(Value::trusted(b"-9223372036854775809").as_i64(), None);
        assert_eq!(Value::trusted(b"9223372036854775807").as_i64(), Some(i64::MAX));
        assert_eq!(Value::trusted(b"9223372036854775808").as_i64(), None);
        assert_eq!(Value::trusted(b"-0").as_i64(), Some(0));
        assert_eq!(read_i64(b"12345678e5", 0), None);
        assert_eq!(read_i64(b"12345678.5", 0), None);
        assert_eq!(read_i64(b"1234567890, ", 0), Some((1_234_567_890, 10)));
    }

    #[test]
    fn strings_decode_on_request() {
        let v = Value::parse(br#""caf\u00E9 \uD83D\uDE00 \"q\" \\ \/ \t""#).unwrap();
        let s = v.as_str().unwrap();
        assert!(s.has_escapes());
        assert!(s == "café 😀 \"q\" \\ / \t");
        assert!(s != "café");
        let mut buf = [0u8; 64];
        assert_eq!(s.unescape_into(&mut buf).unwrap(), "café 😀 \"q\" \\ / \t");
        assert_eq!(s.unescape_into(&mut [0u8; 4]), Err(Full { limit: 4 }));
        let plain = Value::parse(b"\"plain\"").unwrap().as_str().unwrap();
        assert_eq!(plain.as_str(), Some("plain"));
    }

    #[test]
    fn decode_with_serde_json_core() {
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Status<'a> {
            status: &'a str,
            running: bool,
        }
        let v = Value::parse(br#"{"status": "prelaunch", "singlestep": false, "running": false}"#).unwrap();
        assert_eq!(v.decode::<Status>().unwrap(), Status { status: "prelaunch", running: false });
    }
}
