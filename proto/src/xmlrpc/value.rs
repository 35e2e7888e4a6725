//! Zero-copy values, and the readers that walk a validated document.

use core::fmt;

use super::grammar::{
    self, Ty, cdata, close, comment, end_tag, is_name_start, misc, open, processing_instruction, start_tag, text,
    type_tag,
};
use super::text::XmlStr;

/// An XML-RPC value, borrowed from the document it was parsed from.
///
/// Scalars are decoded (integers, booleans, doubles); strings, dates and
/// base64 stay as borrowed text until asked for; structs and arrays are read
/// member by member as they are iterated.
///
/// ```
/// use vmwire_proto::xmlrpc::{self, Value};
/// let doc = br#"<?xml version='1.0'?>
/// <methodResponse><params><param><value><struct>
///   <member><name>Status</name><value><string>Success</string></value></member>
///   <member><name>Value</name><value><array><data>
///     <value><i4>42</i4></value><value>untyped text</value><value><nil/></value>
///   </data></array></value></member>
/// </struct></value></param></params></methodResponse>"#;
/// let response = xmlrpc::parse_response(doc)?;
/// let result = response.params().and_then(|p| p.first()).unwrap();
/// assert!(result.get("Status").and_then(|s| s.as_str()).unwrap() == "Success");
/// let items: Vec<Value> = result.get("Value").and_then(|v| v.as_array()).unwrap().iter().collect();
/// assert_eq!(items[0], Value::Int(42));
/// assert!(items[1].as_str().unwrap() == "untyped text");
/// assert!(items[2].is_nil());
/// # Ok::<(), vmwire_proto::xmlrpc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// `<int>`, `<i4>`, `<i8>` (and Apache's `<i1>`, `<i2>`, `<biginteger>`).
    Int(i64),
    /// `<boolean>`: `0` or `1`.
    Boolean(bool),
    /// `<string>`, or text in a `<value>` with no type element.
    String(XmlStr<'a>),
    /// `<double>`.
    Double(f64),
    /// `<dateTime.iso8601>`.
    DateTime(DateTime<'a>),
    /// `<base64>`, decoded on request.
    Base64(Base64<'a>),
    /// `<struct>`: named members.
    Struct(Struct<'a>),
    /// `<array>`: values in order.
    Array(Array<'a>),
    /// `<nil/>` (an extension most peers know; Python's `None`).
    Nil,
}

impl<'a> Value<'a> {
    /// The name of the value's type element: `int`, `string`, `struct`, …
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Boolean(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Base64(_) => "base64",
            Value::Struct(_) => "struct",
            Value::Array(_) => "array",
            Value::Nil => "nil",
        }
    }

    /// The integer: an integer value, or a string holding one (the XenAPI
    /// sends 64-bit integers as strings).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::String(s) => with_text(*s, grammar::parse_int),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as a double: a double, an integer, or a string holding one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Int(n) => Some(*n as f64),
            Value::String(s) => with_text(*s, grammar::parse_double),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<XmlStr<'a>> {
        match self {
            Value::String(s) => Some(*s),
            _ => None,
        }
    }

    /// The struct, if this is one.
    pub fn as_struct(&self) -> Option<Struct<'a>> {
        match self {
            Value::Struct(s) => Some(*s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<Array<'a>> {
        match self {
            Value::Array(a) => Some(*a),
            _ => None,
        }
    }

    /// The date and time, if this is one.
    pub fn as_datetime(&self) -> Option<DateTime<'a>> {
        match self {
            Value::DateTime(d) => Some(*d),
            _ => None,
        }
    }

    /// The base64 data, if this is some.
    pub fn as_base64(&self) -> Option<Base64<'a>> {
        match self {
            Value::Base64(b) => Some(*b),
            _ => None,
        }
    }

    /// `true` for `<nil/>`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Shorthand for `as_struct()?.get(name)`.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.as_struct()?.get(name)
    }

    /// Decodes the value into `T` with serde.
    #[cfg(feature = "serde")]
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, super::de::Error> {
        T::deserialize(super::de::ValueDeserializer::new(*self))
    }
}

/// Runs `f` on the decoded text (short texts only: numbers).
fn with_text<T>(s: XmlStr<'_>, f: impl Fn(&str) -> Option<T>) -> Option<T> {
    match s.as_str() {
        Some(plain) => f(plain),
        None => {
            let mut buf = [0u8; 64];
            f(s.unescape_into(&mut buf).ok()?)
        }
    }
}

/// A struct's members, read as they are iterated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Struct<'a> {
    /// From just after `<struct>` to the `</value>` that closes it.
    body: &'a str,
    /// The document may hold comments, CDATA or processing instructions.
    markup: bool,
}

impl<'a> Struct<'a> {
    /// The members in order, as `(name, value)`.
    pub fn members(&self) -> Members<'a> {
        Members { cur: self.body, markup: self.markup }
    }

    /// The value of the first member named `name` (compared after decoding).
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.members().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether the struct has no members.
    pub fn is_empty(&self) -> bool {
        self.members().next().is_none()
    }

    /// The struct's markup as it stands in the document (from its first member).
    pub fn raw(&self) -> &'a str {
        self.body
    }

    #[cfg(feature = "serde")]
    pub(crate) fn markup(&self) -> bool {
        self.markup
    }
}

impl fmt::Debug for Struct<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.members()).finish()
    }
}

/// Iterator over a [`Struct`]'s members.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    cur: &'a str,
    markup: bool,
}

impl<'a> Iterator for Members<'a> {
    type Item = (XmlStr<'a>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let name = next_member(&mut self.cur)?;
        let (value, rest) = read_value(self.cur, self.markup)?;
        self.cur = end_member(rest);
        Some((name, value))
    }
}

/// An array's values, read as they are iterated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Array<'a> {
    /// From just inside `<data>` to the `</value>` that closes the array.
    body: &'a str,
    /// The document may hold comments, CDATA or processing instructions.
    markup: bool,
}

impl<'a> Array<'a> {
    /// The values in order.
    pub fn iter(&self) -> Elements<'a> {
        Elements { cur: self.body, markup: self.markup }
    }

    /// How many values (counted by walking them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The array's markup as it stands in the document (from its first value).
    pub fn raw(&self) -> &'a str {
        self.body
    }

    #[cfg(feature = "serde")]
    pub(crate) fn markup(&self) -> bool {
        self.markup
    }
}

impl<'a> IntoIterator for Array<'a> {
    type Item = Value<'a>;
    type IntoIter = Elements<'a>;
    fn into_iter(self) -> Elements<'a> {
        self.iter()
    }
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over an [`Array`]'s values.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    cur: &'a str,
    markup: bool,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if !next_element(&mut self.cur) {
            return None;
        }
        let (value, rest) = read_value(self.cur, self.markup)?;
        self.cur = rest;
        Some(value)
    }
}

/// A `<dateTime.iso8601>` value as it stands; [`DateTime::parse`] reads it.
///
/// XML-RPC's dates are ISO 8601 in its basic form, `20240102T03:04:05`,
/// often with a `Z` (xapi) and sometimes with dashes, a fraction or an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime<'a> {
    text: XmlStr<'a>,
}

impl<'a> DateTime<'a> {
    pub(crate) fn new(text: XmlStr<'a>) -> Self {
        DateTime { text }
    }

    /// The text as sent.
    pub fn text(&self) -> XmlStr<'a> {
        self.text
    }

    /// The date and time, if the text is one of the ISO 8601 forms.
    pub fn parse(&self) -> Option<Iso8601> {
        match self.text.as_str() {
            Some(s) => Iso8601::parse(s),
            None => {
                let mut buf = [0u8; 64];
                Iso8601::parse(self.text.unescape_into(&mut buf).ok()?)
            }
        }
    }
}

/// A date and time as XML-RPC carries it.
///
/// ```
/// use vmwire_proto::xmlrpc::Iso8601;
/// let t = Iso8601::parse("20240102T03:04:05Z").unwrap();
/// assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second, t.offset_minutes), (2024, 1, 2, 3, 4, 5, Some(0)));
/// assert_eq!(t.to_string(), "20240102T03:04:05Z");
/// assert_eq!(Iso8601::parse("2024-01-02T03:04:05.25+01:30").unwrap().to_string(), "20240102T03:04:05.250000000+01:30");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Iso8601 {
    /// Year, 0 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 60 (a leap second).
    pub second: u8,
    /// Nanoseconds within the second.
    pub nanosecond: u32,
    /// Offset from UTC in minutes (`Some(0)` for `Z`); `None` when the text
    /// names no zone (XML-RPC's default: the zone is whatever the peers agree).
    pub offset_minutes: Option<i16>,
}

impl Iso8601 {
    /// Reads `YYYYMMDDTHH:MM:SS` and its variants: dashes in the date,
    /// colons optional in the time, a fraction, `Z` or `±HH[:MM]`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace()).as_bytes();
        let digits = |b: &[u8]| -> Option<u32> {
            if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
        };
        let t = s.iter().position(|&b| b == b'T' || b == b't')?;
        let (date, rest) = s.split_at(t);
        let rest = rest.get(1..)?;
        let (year, month, day) = match date {
            [y @ .., b'-', m1, m2, b'-', d1, d2] if y.len() == 4 => {
                (digits(y)?, digits(&[*m1, *m2])?, digits(&[*d1, *d2])?)
            }
            [y0, y1, y2, y3, m1, m2, d1, d2] => {
                (digits(&[*y0, *y1, *y2, *y3])?, digits(&[*m1, *m2])?, digits(&[*d1, *d2])?)
            }
            _ => return None,
        };
        let zone_at = rest.iter().position(|&b| matches!(b, b'Z' | b'z' | b'+' | b'-')).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(zone_at);
        let frac_at = time.iter().position(|&b| b == b'.' || b == b',').unwrap_or(time.len());
        let (hms, frac) = time.split_at(frac_at);
        let (hour, minute, second) = match hms {
            [h1, h2, b':', m1, m2, b':', s1, s2] | [h1, h2, m1, m2, s1, s2] => {
                (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?, digits(&[*s1, *s2])?)
            }
            _ => return None,
        };
        let nanosecond = match frac {
            [] => 0,
            [_, f @ ..] if !f.is_empty() && f.len() <= 9 => digits(f)? * 10u32.pow(9 - f.len() as u32),
            _ => return None,
        };
        let offset_minutes = match zone {
            [] => None,
            [b'Z' | b'z'] => Some(0),
            [sign @ (b'+' | b'-'), h1, h2, tail @ ..] => {
                let m = match tail {
                    [] => 0,
                    [b':', m1, m2] | [m1, m2] => digits(&[*m1, *m2])?,
                    _ => return None,
                };
                let total = (digits(&[*h1, *h2])? * 60 + m) as i16;
                Some(if *sign == b'-' { -total } else { total })
            }
            _ => return None,
        };
        let ok = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second <= 60;
        ok.then_some(Iso8601 {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanosecond,
            offset_minutes,
        })
    }
}

impl fmt::Display for Iso8601 {
    /// The basic form XML-RPC peers expect: `20240102T03:04:05`, then a
    /// fraction if there is one, then `Z` or `±HH:MM` if a zone is known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        if self.nanosecond > 0 {
            write!(f, ".{:09}", self.nanosecond)?;
        }
        match self.offset_minutes {
            None => Ok(()),
            Some(0) => f.write_str("Z"),
            Some(m) => {
                let sign = if m < 0 { '-' } else { '+' };
                let m = m.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
            }
        }
    }
}

/// A `<base64>` value as it stands (white space and all); decoded on request.
///
/// ```
/// use vmwire_proto::xmlrpc::{self, Value};
/// let doc = b"<methodResponse><params><param><value><base64>\nAAEC/w==\n</base64></value></param></params></methodResponse>";
/// let response = xmlrpc::parse_response(doc)?;
/// let Some(Value::Base64(b)) = response.params().and_then(|p| p.first()) else { panic!() };
/// let mut buf = [0u8; 8];
/// assert_eq!(b.decode_into(&mut buf).unwrap(), &[0, 1, 2, 255]);
/// # Ok::<(), vmwire_proto::xmlrpc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base64<'a> {
    text: &'a str,
}

impl<'a> Base64<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Base64 { text }
    }

    /// The encoded text as sent.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// At most how many bytes decoding gives.
    pub fn decoded_len(&self) -> usize {
        self.text.len() / 4 * 3 + 3
    }

    /// Decodes into `buf`, returning the bytes written (white space
    /// skipped, the last group's padding optional:
    /// [`crate::base64::Decoder::lenient`]).
    pub fn decode_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], crate::base64::Error> {
        let mut out = crate::base64::Filling::new(buf);
        crate::base64::decode_lenient(&mut out, self.text.as_bytes())?;
        Ok(out.filled())
    }

    /// Decodes into a new `Vec`.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, crate::base64::Error> {
        let mut out = alloc::vec::Vec::with_capacity(self.decoded_len());
        crate::base64::decode_lenient(&mut out, self.text.as_bytes())?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Readers over a validated document. They use the validating grammar's
// lexical functions, but trust the structure: on input that did not pass
// validation they stop early (returning `None`), never panic.

/// The suffix of `base` that `rest` (a suffix of its bytes) is.
#[inline]
pub(crate) fn suffix<'a>(base: &'a str, rest: &[u8]) -> &'a str {
    base.get(base.len().saturating_sub(rest.len())..).unwrap_or_default()
}

/// The part of `base` that `part` (a sub-slice of its bytes) is.
#[inline]
fn part<'a>(base: &'a str, part: &[u8]) -> &'a str {
    crate::span_in(base.as_bytes(), part).and_then(|span| base.get(span)).unwrap_or_default()
}

/// How a value begins: a complete scalar (and what follows its
/// `</value>`), or a container and where its first member or element is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Head<'a> {
    Scalar(Value<'a>, &'a str),
    Struct(&'a str),
    Array(&'a str),
}

/// Reads the start of the `<value>` at the front of `s` (after white space).
pub(crate) fn head(s: &str) -> Option<Head<'_>> {
    let (b, ()) = misc(s.as_bytes()).ok()?;
    let (j, closed) = open(b, b"value", "").ok()?;
    if closed {
        return Some(Head::Scalar(Value::String(XmlStr::default()), suffix(s, j)));
    }
    let (k, ()) = misc(j).ok()?;
    match k {
        [b'<', b'/', ..] => {
            let raw = part(s, j.get(..j.len() - k.len()).unwrap_or_default());
            let (rest, ()) = close(k, b"value", "").ok()?;
            Some(Head::Scalar(Value::String(XmlStr::new(raw)), suffix(s, rest)))
        }
        [b'<', c, ..] if is_name_start(*c) => {
            let (after, (ty, tag_name, closed)) = type_tag(k).ok()?;
            let ty = ty?;
            match ty {
                Ty::Struct => Some(Head::Struct(suffix(s, after))),
                Ty::Array if closed => Some(Head::Array(suffix(s, after))),
                Ty::Array => {
                    let (j, ()) = misc(after).ok()?;
                    let (j, _) = open(j, b"data", "").ok()?;
                    Some(Head::Array(suffix(s, j)))
                }
                _ => {
                    let (j, raw) = if closed {
                        (after, after.get(..0).unwrap_or_default())
                    } else {
                        let (j, raw) = text(after).ok()?;
                        (close(j, tag_name, "").ok()?.0, raw)
                    };
                    let rest = close_value(suffix(s, j));
                    Some(Head::Scalar(scalar(ty, part(s, raw)), rest))
                }
            }
        }
        _ => {
            let (k, raw) = text(j).ok()?;
            let (rest, ()) = close(k, b"value", "").ok()?;
            Some(Head::Scalar(Value::String(XmlStr::new(part(s, raw))), suffix(s, rest)))
        }
    }
}

fn scalar(ty: Ty, raw: &str) -> Value<'_> {
    let text = XmlStr::new(raw);
    match ty {
        Ty::Int => Value::Int(with_text(text, grammar::parse_int).unwrap_or_default()),
        Ty::Boolean => Value::Boolean(with_text(text, grammar::parse_bool).unwrap_or_default()),
        Ty::Double => Value::Double(with_text(text, grammar::parse_double).unwrap_or_default()),
        Ty::DateTime => Value::DateTime(DateTime::new(text)),
        Ty::Base64 => Value::Base64(Base64::new(raw)),
        Ty::Nil => Value::Nil,
        Ty::String | Ty::Struct | Ty::Array => Value::String(text),
    }
}

/// Consumes the end tags up to and including this value's `</value>`.
#[inline]
pub(crate) fn close_value(s: &str) -> &str {
    let mut b = s.as_bytes();
    if let Some(rest) = b.strip_prefix(b"</value>") {
        return suffix(s, rest);
    }
    loop {
        b = misc(b).map_or(b, |(rest, ())| rest);
        match end_tag(b) {
            Ok((rest, name)) => {
                b = rest;
                if name == b"value" {
                    return suffix(s, b);
                }
            }
            Err(_) => return suffix(s, b),
        }
    }
}

/// Reads up to the next member's value: its name (and `cur` moves to the
/// `<value>`), or `None` at the end of the struct.
pub(crate) fn next_member<'a>(cur: &mut &'a str) -> Option<XmlStr<'a>> {
    let s = *cur;
    let (b, ()) = misc(s.as_bytes()).ok()?;
    if b.is_empty() || b.starts_with(b"</") {
        *cur = suffix(s, b);
        return None;
    }
    let (b, _) = open(b, b"member", "").ok()?;
    let (b, ()) = misc(b).ok()?;
    let (b, closed) = open(b, b"name", "").ok()?;
    let (b, name) = if closed {
        (b, "")
    } else {
        let (b, raw) = text(b).ok()?;
        (close(b, b"name", "").ok()?.0, part(s, raw))
    };
    *cur = suffix(s, b);
    Some(XmlStr::new(name))
}

/// After a member's value: past `</member>`.
pub(crate) fn end_member(s: &str) -> &str {
    let b = s.as_bytes();
    let b = misc(b).map_or(b, |(rest, ())| rest);
    suffix(s, close(b, b"member", "").map_or(b, |(rest, ())| rest))
}

/// Whether another element follows (and `cur` moves to it).
pub(crate) fn next_element(cur: &mut &str) -> bool {
    let s = *cur;
    let b = misc(s.as_bytes()).map_or(s.as_bytes(), |(rest, ())| rest);
    *cur = suffix(s, b);
    !b.is_empty() && !b.starts_with(b"</")
}

/// Skips the rest of a container whose first member or element is at
/// `cur`: the container's markup, and what follows its `</value>`.
///
/// Only `<value>` tags count: every value in a validated document is closed
/// by its own `</value>`. In a document without comments, CDATA sections or
/// processing instructions (`markup` false) every `value` after a `<` or
/// `</` is a tag, so a substring search finds them all; otherwise the scan
/// goes tag by tag and skips those whole (they can hold `<`). Attribute
/// values cannot hold `<` (validation saw to that).
pub(crate) fn skip_container(cur: &str, markup: bool) -> Option<(&str, &str)> {
    let b = cur.as_bytes();
    let mut depth = 1usize;
    if !markup {
        for at in memchr::memmem::find_iter(b, b"value") {
            let after = b.get(at + 5).copied().unwrap_or(b'>');
            let before = |n: usize| at.checked_sub(n).and_then(|i| b.get(i)).copied();
            match (before(2), before(1)) {
                (Some(b'<'), Some(b'/')) if after == b'>' || grammar::is_ws(after) => {
                    depth -= 1;
                    if depth == 0 {
                        let (rest, _) = end_tag(b.get(at - 2..)?).ok()?;
                        return Some((cur.get(..at - 2)?, suffix(cur, rest)));
                    }
                }
                (_, Some(b'<')) if after == b'>' => depth += 1,
                (_, Some(b'<')) if after == b'/' || grammar::is_ws(after) => {
                    let (_, (_, closed)) = start_tag(b.get(at - 1..)?).ok()?;
                    depth += usize::from(!closed);
                }
                _ => {}
            }
        }
        return None;
    }
    let mut pos = 0;
    loop {
        pos += memchr::memchr(b'<', b.get(pos..)?)?;
        let here = b.get(pos..)?;
        let rest = match here {
            [b'<', b'/', b'v', b'a', b'l', b'u', b'e', after, ..] if *after == b'>' || grammar::is_ws(*after) => {
                depth -= 1;
                if depth == 0 {
                    let (rest, _) = end_tag(here).ok()?;
                    return Some((cur.get(..pos)?, suffix(cur, rest)));
                }
                here.get(7..)?
            }
            [b'<', b'v', b'a', b'l', b'u', b'e', after, ..]
                if *after == b'>' || *after == b'/' || grammar::is_ws(*after) =>
            {
                let (rest, (_, closed)) = start_tag(here).ok()?;
                depth += usize::from(!closed);
                rest
            }
            [b'<', b'!', b'-', b'-', ..] => comment(here).ok()?.0,
            [b'<', b'!', b'[', ..] => cdata(here).ok()?.0,
            [b'<', b'?', ..] => processing_instruction(here).ok()?.0,
            _ => here.get(1..)?,
        };
        pos = b.len() - rest.len();
    }
}

/// Reads the whole `<value>` at the front of `s`: the value, and what follows it.
pub(crate) fn read_value(s: &str, markup: bool) -> Option<(Value<'_>, &str)> {
    match head(s)? {
        Head::Scalar(v, rest) => Some((v, rest)),
        Head::Struct(cur) => {
            let (body, rest) = skip_container(cur, markup)?;
            Some((Value::Struct(Struct { body, markup }), rest))
        }
        Head::Array(cur) => {
            let (body, rest) = skip_container(cur, markup)?;
            Some((Value::Array(Array { body, markup }), rest))
        }
    }
}

/// Skips the whole `<value>` at the front of `s`.
#[cfg(feature = "serde")]
pub(crate) fn skip_value(s: &str, markup: bool) -> Option<&str> {
    match head(s)? {
        Head::Scalar(_, rest) => Some(rest),
        Head::Struct(cur) | Head::Array(cur) => Some(skip_container(cur, markup)?.1),
    }
}

/// Whether a document may hold comments, CDATA sections or processing
/// instructions after its start (which decides how containers are skipped).
pub(crate) fn has_markup(text: &str) -> bool {
    let b = text.as_bytes();
    // The XML declaration is a processing instruction; it does not count.
    let body = match b.strip_prefix(b"<?xml") {
        Some(rest) => memchr::memmem::find(rest, b"?>").and_then(|e| rest.get(e + 2..)).unwrap_or_default(),
        None => b,
    };
    // `!` and `?` are rare in XML-RPC: look at what precedes each.
    memchr::memchr2_iter(b'!', b'?', body).any(|at| at > 0 && body.get(at - 1) == Some(&b'<'))
}

/// Reads up to the next `<param>`'s value (and `cur` moves to the
/// `<value>`): `false` at the end of the params.
pub(crate) fn next_param(cur: &mut &str) -> bool {
    let s = *cur;
    let Ok((b, ())) = misc(s.as_bytes()) else { return false };
    if b.is_empty() || b.starts_with(b"</") {
        *cur = suffix(s, b);
        return false;
    }
    let Ok((b, _)) = open(b, b"param", "") else { return false };
    *cur = suffix(s, b);
    true
}

/// After a param's value: past `</param>`.
pub(crate) fn end_param(s: &str) -> &str {
    let b = s.as_bytes();
    let b = misc(b).map_or(b, |(rest, ())| rest);
    suffix(s, close(b, b"param", "").map_or(b, |(rest, ())| rest))
}
