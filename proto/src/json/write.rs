//! Writing JSON into a [`Sink`]: strings escaped correctly for every code
//! point, objects and arrays built member by member, no allocation.

use super::value::Value;
use crate::buf::{Full, Sink};

/// How strings are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escape {
    /// Escape only what JSON requires (`"`, `\`, control characters); other
    /// text is written as UTF-8.
    #[default]
    Minimal,
    /// Also escape every non-ASCII code point as `\uXXXX` (a surrogate pair
    /// beyond the BMP), so that the output is pure ASCII. Peers that count a
    /// message's length in characters (negotiator's Python code) need this.
    Ascii,
}

/// How members and elements are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Separators {
    /// `,` and `:`: the shortest text.
    #[default]
    Compact,
    /// `, ` and `: `: what Python's `json.dumps` writes by default, so that a
    /// message can be byte for byte the one a Python peer would send.
    Python,
}

impl Separators {
    fn comma(self) -> &'static [u8] {
        match self {
            Separators::Compact => b",",
            Separators::Python => b", ",
        }
    }

    fn colon(self) -> &'static [u8] {
        match self {
            Separators::Compact => b":",
            Separators::Python => b": ",
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a quoted JSON string.
///
/// ```
/// use vmwire_proto::json::{write_str, Escape};
/// let mut out = heapless::Vec::<u8, 64>::new();
/// write_str(&mut out, "tab\t é 😀", Escape::Ascii).unwrap();
/// assert_eq!(&out[..], br#""tab\t \u00e9 \ud83d\ude00""#);
/// ```
pub fn write_str<S: Sink + ?Sized>(out: &mut S, s: &str, escape: Escape) -> Result<(), Full> {
    out.put(b"\"")?;
    write_str_contents(out, s, escape)?;
    out.put(b"\"")
}

/// Writes `s` escaped as inside a JSON string, without the quotes: for
/// building one JSON string out of several pieces.
///
/// ```
/// use vmwire_proto::json::{write_str_contents, Escape};
/// let mut out = heapless::Vec::<u8, 64>::new();
/// out.extend_from_slice(b"\"a ").unwrap();
/// write_str_contents(&mut out, "\"b\"", Escape::Minimal).unwrap();
/// out.push(b'"').unwrap();
/// assert_eq!(&out[..], br#""a \"b\"""#);
/// ```
pub fn write_str_contents<S: Sink + ?Sized>(out: &mut S, s: &str, escape: Escape) -> Result<(), Full> {
    let bytes = s.as_bytes();
    let ascii = escape == Escape::Ascii;
    let mut run = 0;
    let mut i = 0;
    loop {
        // Eight bytes at a time while there is nothing to escape.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let special = super::framer::escape_bytes(u64::from_le_bytes(chunk.try_into().unwrap_or_default()), ascii);
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else { break };
        let needs = b < 0x20 || b == b'"' || b == b'\\' || (b >= 0x80 && ascii);
        if !needs {
            i += 1;
            continue;
        }
        out.put(bytes.get(run..i).unwrap_or_default())?;
        if b >= 0x80 {
            let c = s.get(i..).and_then(|rest| rest.chars().next()).unwrap_or('\u{FFFD}');
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                put_u_escape(out, *unit)?;
            }
            i += c.len_utf8();
        } else {
            match b {
                b'"' => out.put(b"\\\"")?,
                b'\\' => out.put(b"\\\\")?,
                b'\n' => out.put(b"\\n")?,
                b'\r' => out.put(b"\\r")?,
                b'\t' => out.put(b"\\t")?,
                0x08 => out.put(b"\\b")?,
                0x0c => out.put(b"\\f")?,
                _ => put_u_escape(out, u16::from(b))?,
            }
            i += 1;
        }
        run = i;
    }
    out.put(bytes.get(run..).unwrap_or_default())
}

fn put_u_escape<S: Sink + ?Sized>(out: &mut S, unit: u16) -> Result<(), Full> {
    let h = |shift: u16| HEX[usize::from(unit >> shift & 0xF)];
    out.put(&[b'\\', b'u', h(12), h(8), h(4), h(0)])
}

/// Writes an unsigned integer in decimal.
pub fn write_u64<S: Sink + ?Sized>(out: &mut S, mut n: u64) -> Result<(), Full> {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(digits.get(at..).unwrap_or_default())
}

/// Writes a signed integer in decimal.
pub fn write_i64<S: Sink + ?Sized>(out: &mut S, n: i64) -> Result<(), Full> {
    if n < 0 {
        out.put(b"-")?;
    }
    write_u64(out, n.unsigned_abs())
}

/// Builds a JSON object member by member.
///
/// ```
/// use vmwire_proto::json::{ObjectWriter, Value};
/// let mut out = heapless::Vec::<u8, 128>::new();
/// let mut obj = ObjectWriter::new(&mut out)?;
/// obj.str("execute", "query-status")?.u64("id", 7)?;
/// obj.object("arguments", |args| { args.bool("enable", true)?; Ok(()) })?;
/// obj.finish()?;
/// assert_eq!(&out[..], br#"{"execute":"query-status","id":7,"arguments":{"enable":true}}"#);
/// # Ok::<(), vmwire_proto::buf::Full>(())
/// ```
#[derive(Debug)]
pub struct ObjectWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    escape: Escape,
    sep: Separators,
    first: bool,
}

impl<'s, S: Sink + ?Sized> ObjectWriter<'s, S> {
    /// Opens an object (writes `{`), escaping minimally.
    pub fn new(out: &'s mut S) -> Result<Self, Full> {
        Self::with_escape(out, Escape::Minimal)
    }

    /// Opens an object (writes `{`), escaping strings as `escape` says.
    pub fn with_escape(out: &'s mut S, escape: Escape) -> Result<Self, Full> {
        out.put(b"{")?;
        Ok(ObjectWriter { out, escape, sep: Separators::Compact, first: true })
    }

    /// Separates members (and those of nested objects and arrays) as `sep` says.
    ///
    /// ```
    /// use vmwire_proto::json::{Escape, ObjectWriter, Separators};
    /// let mut out = heapless::Vec::<u8, 64>::new();
    /// let mut obj = ObjectWriter::with_escape(&mut out, Escape::Ascii)?.separators(Separators::Python);
    /// obj.str("method", "caf\u{e9}")?.array("args", |_| Ok(()))?;
    /// obj.finish()?;
    /// assert_eq!(&out[..], br#"{"method": "caf\u00e9", "args": []}"#);
    /// # Ok::<(), vmwire_proto::buf::Full>(())
    /// ```
    pub fn separators(mut self, sep: Separators) -> Self {
        self.sep = sep;
        self
    }

    fn key(&mut self, key: &str) -> Result<&mut S, Full> {
        if !core::mem::take(&mut self.first) {
            self.out.put(self.sep.comma())?;
        }
        write_str(self.out, key, self.escape)?;
        self.out.put(self.sep.colon())?;
        Ok(self.out)
    }

    /// A string member.
    pub fn str(&mut self, key: &str, value: &str) -> Result<&mut Self, Full> {
        let escape = self.escape;
        write_str(self.key(key)?, value, escape)?;
        Ok(self)
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, key: &str, value: u64) -> Result<&mut Self, Full> {
        write_u64(self.key(key)?, value)?;
        Ok(self)
    }

    /// A signed integer member.
    pub fn i64(&mut self, key: &str, value: i64) -> Result<&mut Self, Full> {
        write_i64(self.key(key)?, value)?;
        Ok(self)
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &str, value: bool) -> Result<&mut Self, Full> {
        self.key(key)?.put(if value { b"true" } else { b"false" })?;
        Ok(self)
    }

    /// A `null` member.
    pub fn null(&mut self, key: &str) -> Result<&mut Self, Full> {
        self.key(key)?.put(b"null")?;
        Ok(self)
    }

    /// A string member holding `bytes` in [base64](crate::base64), as the
    /// guest agent takes file contents and process input.
    pub fn base64(&mut self, key: &str, bytes: &[u8]) -> Result<&mut Self, Full> {
        let out = self.key(key)?;
        out.put(b"\"")?;
        crate::base64::encode(out, bytes)?;
        out.put(b"\"")?;
        Ok(self)
    }

    /// A member whose value is already-validated JSON, written as it is
    /// (in [`Escape::Ascii`] mode, its strings are re-escaped to ASCII).
    pub fn value(&mut self, key: &str, value: Value<'_>) -> Result<&mut Self, Full> {
        let escape = self.escape;
        write_value(self.key(key)?, value, escape)?;
        Ok(self)
    }

    /// A nested object, filled in by `build`.
    pub fn object(
        &mut self,
        key: &str,
        build: impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full>,
    ) -> Result<&mut Self, Full> {
        let (escape, sep) = (self.escape, self.sep);
        let mut inner = ObjectWriter::with_escape(self.key(key)?, escape)?.separators(sep);
        build(&mut inner)?;
        inner.finish()?;
        Ok(self)
    }

    /// A nested array, filled in by `build`.
    pub fn array(
        &mut self,
        key: &str,
        build: impl FnOnce(&mut ArrayWriter<'_, S>) -> Result<(), Full>,
    ) -> Result<&mut Self, Full> {
        let (escape, sep) = (self.escape, self.sep);
        let mut inner = ArrayWriter::with_escape(self.key(key)?, escape)?.separators(sep);
        build(&mut inner)?;
        inner.finish()?;
        Ok(self)
    }

    /// Closes the object (writes `}`).
    pub fn finish(self) -> Result<(), Full> {
        self.out.put(b"}")
    }
}

/// Builds a JSON array element by element.
#[derive(Debug)]
pub struct ArrayWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    escape: Escape,
    sep: Separators,
    first: bool,
}

impl<'s, S: Sink + ?Sized> ArrayWriter<'s, S> {
    /// Opens an array (writes `[`), escaping minimally.
    pub fn new(out: &'s mut S) -> Result<Self, Full> {
        Self::with_escape(out, Escape::Minimal)
    }

    /// Opens an array (writes `[`), escaping strings as `escape` says.
    pub fn with_escape(out: &'s mut S, escape: Escape) -> Result<Self, Full> {
        out.put(b"[")?;
        Ok(ArrayWriter { out, escape, sep: Separators::Compact, first: true })
    }

    /// Separates elements (and the members of nested objects) as `sep` says.
    pub fn separators(mut self, sep: Separators) -> Self {
        self.sep = sep;
        self
    }

    fn comma(&mut self) -> Result<&mut S, Full> {
        if !core::mem::take(&mut self.first) {
            self.out.put(self.sep.comma())?;
        }
        Ok(self.out)
    }

    /// A string element.
    pub fn str(&mut self, value: &str) -> Result<&mut Self, Full> {
        let escape = self.escape;
        write_str(self.comma()?, value, escape)?;
        Ok(self)
    }

    /// An unsigned integer element.
    pub fn u64(&mut self, value: u64) -> Result<&mut Self, Full> {
        write_u64(self.comma()?, value)?;
        Ok(self)
    }

    /// An already-validated JSON element (re-escaped to ASCII in [`Escape::Ascii`] mode).
    pub fn value(&mut self, value: Value<'_>) -> Result<&mut Self, Full> {
        let escape = self.escape;
        write_value(self.comma()?, value, escape)?;
        Ok(self)
    }

    /// A nested object element, filled in by `build`.
    pub fn object(
        &mut self,
        build: impl FnOnce(&mut ObjectWriter<'_, S>) -> Result<(), Full>,
    ) -> Result<&mut Self, Full> {
        let (escape, sep) = (self.escape, self.sep);
        let mut inner = ObjectWriter::with_escape(self.comma()?, escape)?.separators(sep);
        build(&mut inner)?;
        inner.finish()?;
        Ok(self)
    }

    /// Closes the array (writes `]`).
    pub fn finish(self) -> Result<(), Full> {
        self.out.put(b"]")
    }
}

/// Writes a validated value. With [`Escape::Minimal`] its text is copied as
/// it is; with [`Escape::Ascii`] raw non-ASCII text inside its strings is
/// escaped (JSON text outside strings is always ASCII).
pub fn write_value<S: Sink + ?Sized>(out: &mut S, value: Value<'_>, escape: Escape) -> Result<(), Full> {
    let raw = value.raw();
    if escape == Escape::Minimal || raw.is_ascii() {
        return out.put(raw);
    }
    let text = value.raw_str();
    let mut run = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii() {
            continue;
        }
        out.put(text.get(run..i).unwrap_or_default().as_bytes())?;
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            put_u_escape(out, *unit)?;
        }
        run = i + c.len_utf8();
    }
    out.put(text.get(run..).unwrap_or_default().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str, escape: Escape) {
        let mut out = heapless::Vec::<u8, 512>::new();
        write_str(&mut out, s, escape).unwrap();
        if escape == Escape::Ascii {
            assert!(out.is_ascii());
        }
        let v = Value::parse(&out).unwrap();
        assert!(v.as_str().unwrap() == s, "{s:?} -> {:?}", core::str::from_utf8(&out));
    }

    #[test]
    fn every_kind_of_character_round_trips() {
        for s in ["", "plain", "\"\\/", "\u{0}\u{1}\u{1f}\u{7f}", "\u{8}\u{c}\n\r\t", "é€😀\u{10FFFF}\u{2028}"] {
            round_trip(s, Escape::Minimal);
            round_trip(s, Escape::Ascii);
        }
    }

    #[test]
    fn ascii_value_reescape() {
        let v = Value::parse("{\"k\": \"é😀\"}".as_bytes()).unwrap();
        let mut out = heapless::Vec::<u8, 64>::new();
        write_value(&mut out, v, Escape::Ascii).unwrap();
        assert_eq!(&out[..], br#"{"k": "\u00e9\ud83d\ude00"}"#);
    }

    #[test]
    fn full_is_reported() {
        let mut out = heapless::Vec::<u8, 4>::new();
        assert_eq!(write_str(&mut out, "hello", Escape::Minimal), Err(Full { limit: 4 }));
    }
}
