//! The XML-RPC grammar, with nom: the lexical pieces of XML that XML-RPC
//! uses (tags with attributes, character data with references and CDATA,
//! comments, processing instructions, the XML declaration), and one
//! validating pass over a whole document.
//!
//! Values nest through an explicit stack, not recursion, so the depth limit
//! is a number and not the size of the thread's stack. The same lexical
//! functions serve the readers in `nav` once a document has passed.

use nom::bytes::complete::{tag, take_till, take_until, take_while, take_while1};
use nom::error::ParseError;
use nom::{IResult, Parser};

use super::error::ErrorKind;
use super::text;

pub(crate) type In<'a> = &'a [u8];
pub(crate) type Res<'a, T> = IResult<In<'a>, T, PErr>;

/// A parse error: what, and how many bytes of input were left where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PErr {
    pub kind: ErrorKind,
    pub rest: usize,
}

impl PErr {
    fn at(input: In<'_>, expected: &'static str) -> Self {
        let kind = if input.is_empty() { ErrorKind::Truncated } else { ErrorKind::Syntax { expected } };
        PErr { kind, rest: input.len() }
    }
}

impl<'a> ParseError<In<'a>> for PErr {
    fn from_error_kind(input: In<'a>, kind: nom::error::ErrorKind) -> Self {
        let expected = match kind {
            nom::error::ErrorKind::TakeUntil => "the end of the markup",
            nom::error::ErrorKind::TakeWhile1 => "a name",
            _ => "well-formed XML",
        };
        PErr::at(input, expected)
    }

    fn append(_: In<'a>, _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) fn fail<'a, T>(input: In<'a>, expected: &'static str) -> Res<'a, T> {
    Err(nom::Err::Error(PErr::at(input, expected)))
}

pub(crate) fn fail_kind<T>(input: In<'_>, kind: ErrorKind) -> Res<'_, T> {
    Err(nom::Err::Error(PErr { kind, rest: input.len() }))
}

/// Relabels an error raised right at `input` (a deeper one keeps its own words).
fn expecting<'a, T>(input: In<'a>, what: &'static str, r: Res<'a, T>) -> Res<'a, T> {
    r.map_err(|e| {
        e.map(|p| match p.kind {
            ErrorKind::Syntax { .. } if p.rest == input.len() => PErr::at(input, what),
            _ => p,
        })
    })
}

#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline]
pub(crate) fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

#[inline]
fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// Skips white space.
#[inline(always)]
pub(crate) fn ws(i: In<'_>) -> In<'_> {
    match i.first() {
        Some(&b) if is_ws(b) => take_while::<_, _, PErr>(is_ws).parse(i).map_or(i, |(rest, _)| rest),
        _ => i,
    }
}

/// An XML name.
pub(crate) fn name(i: In<'_>) -> Res<'_, In<'_>> {
    if !i.first().is_some_and(|&b| is_name_start(b)) {
        return fail(i, "a name");
    }
    take_while1(is_name_char).parse(i)
}

/// `<!-- … -->` (no `--` inside).
pub(crate) fn comment(i: In<'_>) -> Res<'_, ()> {
    let (i, _) = tag(&b"<!--"[..]).parse(i)?;
    let (i, _) = take_until::<_, _, PErr>(&b"--"[..]).parse(i).map_err(|_| nom::Err::Error(PErr::at(&[], "")))?;
    let (i, _) = expecting(i, "`-->` (comments cannot hold `--`)", tag(&b"-->"[..]).parse(i))?;
    Ok((i, ()))
}

/// `<?target …?>`, any target but `xml` (only the declaration may use that).
pub(crate) fn processing_instruction(i: In<'_>) -> Res<'_, ()> {
    let (j, _) = tag(&b"<?"[..]).parse(i)?;
    let (j, target) = name(j)?;
    if target.eq_ignore_ascii_case(b"xml") {
        return fail(i, "no XML declaration after the start of the document");
    }
    let (j, _) = take_until::<_, _, PErr>(&b"?>"[..]).parse(j).map_err(|_| nom::Err::Error(PErr::at(&[], "")))?;
    Ok((j.get(2..).unwrap_or_default(), ()))
}

/// `<![CDATA[ … ]]>`: the section's content.
pub(crate) fn cdata(i: In<'_>) -> Res<'_, In<'_>> {
    let (i, _) = tag(&b"<![CDATA["[..]).parse(i)?;
    let (i, inner) = take_until::<_, _, PErr>(&b"]]>"[..]).parse(i).map_err(|_| nom::Err::Error(PErr::at(&[], "")))?;
    Ok((i.get(3..).unwrap_or_default(), inner))
}

/// White space, comments and processing instructions.
#[inline(always)]
pub(crate) fn misc(mut i: In<'_>) -> Res<'_, ()> {
    // Between two tags there is usually one line break, or nothing.
    match i {
        [b'<', b'!' | b'?', ..] => {}
        [b'<', ..] => return Ok((i, ())),
        [b'\n', rest @ ..] if rest.first() == Some(&b'<') && !matches!(rest.get(1), Some(b'!' | b'?')) => {
            return Ok((rest, ()));
        }
        _ => {}
    }
    loop {
        i = ws(i);
        match i {
            [b'<', b'!', b'-', b'-', ..] => i = comment(i)?.0,
            [b'<', b'?', ..] => i = processing_instruction(i)?.0,
            _ => return Ok((i, ())),
        }
    }
}

/// An attribute: ` name = "value"` (the value may not hold `<`).
fn attribute(i: In<'_>) -> Res<'_, ()> {
    let (i, _) = name(i)?;
    let i = ws(i);
    let (i, _) = expecting(i, "`=`", tag(&b"="[..]).parse(i))?;
    let i = ws(i);
    let Some(&quote) = i.first().filter(|&&q| q == b'"' || q == b'\'') else {
        return fail(i, "a quoted attribute value");
    };
    let (j, value) = take_till(|b| b == quote || b == b'<').parse(i.get(1..).unwrap_or_default())?;
    if j.first() != Some(&quote) {
        return fail(j, "the end of the attribute value");
    }
    check_references(value)?;
    Ok((j.get(1..).unwrap_or_default(), ()))
}

/// A start tag: its name, and whether it closes itself (`<nil/>`).
pub(crate) fn start_tag(i: In<'_>) -> Res<'_, (In<'_>, bool)> {
    let (j, _) = expecting(i, "a start tag", tag(&b"<"[..]).parse(i))?;
    let (mut j, tag_name) = name(j)?;
    loop {
        let k = ws(j);
        match k {
            [b'>', rest @ ..] => return Ok((rest, (tag_name, false))),
            [b'/', b'>', rest @ ..] => return Ok((rest, (tag_name, true))),
            _ if k.len() == j.len() => return fail(k, "`>`"),
            _ => j = attribute(k)?.0,
        }
    }
}

/// The start tag `<expected …>`: whether it closes itself.
#[inline(always)]
pub(crate) fn open<'a>(i: In<'a>, expected: &'static [u8], what: &'static str) -> Res<'a, bool> {
    // The common case, `<value>`, costs one comparison.
    if let Some([b'>', rest @ ..]) = i.strip_prefix(b"<").and_then(|r| r.strip_prefix(expected)) {
        return Ok((rest, false));
    }
    let (rest, (got, closed)) = expecting(i, what, start_tag(i))?;
    if got != expected {
        return fail(i, what);
    }
    Ok((rest, closed))
}

/// The end tag `</expected>`.
#[inline(always)]
pub(crate) fn close<'a>(i: In<'a>, expected: &[u8], what: &'static str) -> Res<'a, ()> {
    if let Some([b'>', rest @ ..]) = i.strip_prefix(b"</").and_then(|r| r.strip_prefix(expected)) {
        return Ok((rest, ()));
    }
    let (j, _) = expecting(i, what, tag(&b"</"[..]).parse(i))?;
    let (j, got) = expecting(i, what, name(j))?;
    if got != expected {
        return fail(i, what);
    }
    let j = ws(j);
    let (j, _) = expecting(j, "`>`", tag(&b">"[..]).parse(j))?;
    Ok((j, ()))
}

/// Any end tag: its name.
#[inline]
pub(crate) fn end_tag(i: In<'_>) -> Res<'_, In<'_>> {
    for name in [&b"value"[..], b"struct", b"data", b"array", b"member", b"param"] {
        if let Some([b'>', rest @ ..]) = i.strip_prefix(b"</").and_then(|r| r.strip_prefix(name)) {
            return Ok((rest, name));
        }
    }
    let (j, _) = tag(&b"</"[..]).parse(i)?;
    let (j, got) = name(j)?;
    let j = ws(j);
    let (j, _) = expecting(j, "`>`", tag(&b">"[..]).parse(j))?;
    Ok((j, got))
}

/// A reference, checked.
fn reference(i: In<'_>) -> Res<'_, char> {
    match text::reference(i) {
        Some((c, used)) => Ok((i.get(used..).unwrap_or_default(), c)),
        None => fail_kind(i, ErrorKind::InvalidReference),
    }
}

fn check_references(mut value: In<'_>) -> Res<'_, ()> {
    while let Some(at) = memchr::memchr(b'&', value) {
        value = reference(value.get(at..).unwrap_or_default())?.0;
    }
    Ok((value, ()))
}

/// Character data up to the next end tag (references checked; CDATA,
/// comments and processing instructions allowed): the raw text.
#[inline]
pub(crate) fn text(i: In<'_>) -> Res<'_, In<'_>> {
    let mut pos = 0;
    loop {
        let Some(k) = i.get(pos..).and_then(markup_or_reference) else {
            return fail_kind(&[], ErrorKind::Truncated);
        };
        pos += k;
        let here = i.get(pos..).unwrap_or_default();
        let rest = match here {
            [b'&', ..] => reference(here)?.0,
            [b'<', b'/', ..] => return Ok((here, i.get(..pos).unwrap_or_default())),
            [b'<', b'!', b'-', b'-', ..] => comment(here)?.0,
            [b'<', b'!', b'[', ..] => expecting(here, "a CDATA section", cdata(here))?.0,
            [b'<', b'?', ..] => processing_instruction(here)?.0,
            _ => return fail(here, "text, not an element"),
        };
        pos = i.len() - rest.len();
    }
}

/// Where the next `<` or `&` is. Most texts in XML-RPC are a few dozen
/// bytes long: eight bytes at a time (SWAR) finds their end sooner than a
/// call into memchr, which takes over for long texts.
#[inline(always)]
fn markup_or_reference(hay: &[u8]) -> Option<usize> {
    find_any(hay, [b'<', b'&', b'<'])
}

/// The first of three bytes in `hay`: a word at a time for 64 bytes, then memchr.
#[inline(always)]
pub(crate) fn find_any(hay: &[u8], [a, b, c]: [u8; 3]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let (wa, wb, wc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    let mut i = 0;
    while i < 64 {
        let Some(Ok(word)) = hay.get(i..i + 8).map(<[u8; 8]>::try_from) else { break };
        let w = u64::from_le_bytes(word);
        // The lowest flagged byte is exact (borrows only flag bytes above a match).
        let hits = zero(w ^ wa) | zero(w ^ wb) | zero(w ^ wc);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = hay.get(i..)?;
    let found = if rest.len() < 8 {
        rest.iter().position(|&x| x == a || x == b || x == c)
    } else {
        memchr::memchr3(a, b, c, rest)
    };
    found.map(|k| k + i)
}

/// The value types, by element name (a namespace prefix such as Apache's
/// `ex:` is ignored, as Python does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Int,
    Boolean,
    String,
    Double,
    DateTime,
    Base64,
    Struct,
    Array,
    Nil,
}

impl Ty {
    pub(crate) fn of(tag_name: &[u8]) -> Option<Ty> {
        let local = match memchr::memrchr(b':', tag_name) {
            Some(colon) => tag_name.get(colon + 1..).unwrap_or_default(),
            None => tag_name,
        };
        Some(match local {
            b"string" => Ty::String,
            b"int" | b"i4" | b"i8" | b"i1" | b"i2" | b"biginteger" => Ty::Int,
            b"boolean" => Ty::Boolean,
            b"double" | b"float" | b"bigdecimal" => Ty::Double,
            b"dateTime.iso8601" => Ty::DateTime,
            b"base64" => Ty::Base64,
            b"struct" => Ty::Struct,
            b"array" => Ty::Array,
            b"nil" => Ty::Nil,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Boolean => "boolean",
            Ty::String => "string",
            Ty::Double => "double",
            Ty::DateTime => "dateTime.iso8601",
            Ty::Base64 => "base64",
            Ty::Struct => "struct",
            Ty::Array => "array",
            Ty::Nil => "nil",
        }
    }
}

/// The start tags of the common value types, recognised without parsing:
/// the type, its name, and what follows the tag. `None`: parse it properly.
#[inline(always)]
pub(crate) fn known_type(k: In<'_>) -> Option<(Ty, &'static [u8], bool, In<'_>)> {
    let rest = k.strip_prefix(b"<")?;
    let (ty, tag, closed): (Ty, &'static [u8], bool) = match rest.first()? {
        b's' if rest.starts_with(b"string>") => (Ty::String, b"string>", false),
        b's' if rest.starts_with(b"struct>") => (Ty::Struct, b"struct>", false),
        b'i' if rest.starts_with(b"int>") => (Ty::Int, b"int>", false),
        b'i' if rest.starts_with(b"i4>") => (Ty::Int, b"i4>", false),
        b'i' if rest.starts_with(b"i8>") => (Ty::Int, b"i8>", false),
        b'b' if rest.starts_with(b"boolean>") => (Ty::Boolean, b"boolean>", false),
        b'b' if rest.starts_with(b"base64>") => (Ty::Base64, b"base64>", false),
        b'd' if rest.starts_with(b"double>") => (Ty::Double, b"double>", false),
        b'd' if rest.starts_with(b"dateTime.iso8601>") => (Ty::DateTime, b"dateTime.iso8601>", false),
        b'a' if rest.starts_with(b"array>") => (Ty::Array, b"array>", false),
        b'n' if rest.starts_with(b"nil/>") => (Ty::Nil, b"nil/>", true),
        _ => return None,
    };
    let name = tag.get(..tag.len() - if closed { 2 } else { 1 }).unwrap_or_default();
    Some((ty, name, closed, rest.get(tag.len()..).unwrap_or_default()))
}

/// A value's type tag: known ones quickly, others parsed.
#[inline(always)]
pub(crate) fn type_tag(k: In<'_>) -> Res<'_, (Option<Ty>, In<'_>, bool)> {
    if let Some((ty, name, closed, rest)) = known_type(k) {
        return Ok((rest, (Some(ty), name, closed)));
    }
    let (rest, (name, closed)) = start_tag(k)?;
    Ok((rest, (Ty::of(name), name, closed)))
}

/// Parses an integer's text (white space around it allowed).
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    s.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8)).parse().ok()
}

/// Parses a boolean's text: `0` or `1`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8)) {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Parses a double's text.
pub(crate) fn parse_double(s: &str) -> Option<f64> {
    s.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8)).parse().ok()
}

/// The text of a scalar, decoded if it has references or markup (into
/// `buf`; scalars are short).
pub(crate) fn scalar_text<'b>(raw: &'b [u8], buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let s = core::str::from_utf8(raw).ok()?;
    let t = text::XmlStr::new(s);
    match t.as_str() {
        Some(plain) => Some(plain),
        None => t.unescape_into(buf).ok(),
    }
}

fn check_scalar(ty: Ty, raw: In<'_>) -> bool {
    let check: fn(&str) -> bool = match ty {
        Ty::Int => |s| parse_int(s).is_some(),
        Ty::Boolean => |s| parse_bool(s).is_some(),
        Ty::Double => |s| parse_double(s).is_some(),
        Ty::Nil => |s| s.bytes().all(is_ws),
        // Text of any length: decoded on request, never here.
        Ty::String | Ty::DateTime | Ty::Base64 | Ty::Struct | Ty::Array => return true,
    };
    let mut buf = [0u8; 64];
    scalar_text(raw, &mut buf).is_some_and(check)
}

/// Most nesting the validator can track.
pub(crate) const MAX_DEPTH: usize = 1024;

/// Open containers, one bit each (set: struct, clear: array).
struct Stack {
    bits: [u64; MAX_DEPTH / 64],
    depth: usize,
    limit: usize,
}

impl Stack {
    fn push<'a>(&mut self, i: In<'a>, is_struct: bool) -> Res<'a, ()> {
        if self.depth >= self.limit {
            return fail_kind(i, ErrorKind::TooDeep { limit: self.limit });
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if let Some(w) = self.bits.get_mut(word) {
            if is_struct {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
        self.depth += 1;
        Ok((i, ()))
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `Some(true)` in a struct, `Some(false)` in an array, `None` at the top.
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(self.bits.get(d / 64).is_some_and(|w| w >> (d % 64) & 1 == 1))
    }
}

/// What to read next in [`value`].
enum Next {
    Value,
    AfterValue,
    Members,
    Elements,
}

/// Validates one `<value>` (white space and comments before it already
/// skipped), nested values and all, with containers at most `max_depth` deep.
pub(crate) fn value(input: In<'_>, max_depth: usize) -> Res<'_, ()> {
    let mut stack = Stack { bits: [0; MAX_DEPTH / 64], depth: 0, limit: max_depth.min(MAX_DEPTH) };
    let mut i = input;
    let mut next = Next::Value;
    loop {
        match next {
            Next::Value => {
                let (j, closed) = open(i, b"value", "`<value>`")?;
                if closed {
                    i = j;
                    next = Next::AfterValue;
                    continue;
                }
                let (k, ()) = misc(j)?;
                match k {
                    [b'<', b'/', ..] => {
                        // Only white space (or comments): an empty untyped string.
                        i = close(k, b"value", "`</value>`")?.0;
                        next = Next::AfterValue;
                    }
                    [b'<', c, ..] if is_name_start(*c) => {
                        let (after, (ty, tag_name, closed)) = type_tag(k)?;
                        let Some(ty) = ty else {
                            return fail_kind(k, ErrorKind::UnknownType);
                        };
                        match ty {
                            Ty::Struct if !closed => {
                                stack.push(k, true)?;
                                i = after;
                                next = Next::Members;
                            }
                            Ty::Array if !closed => {
                                let (j, ()) = misc(after)?;
                                let (j, closed) = open(j, b"data", "`<data>`")?;
                                if closed {
                                    i = close_array(j)?.0;
                                    next = Next::AfterValue;
                                } else {
                                    stack.push(k, false)?;
                                    i = j;
                                    next = Next::Elements;
                                }
                            }
                            Ty::Struct | Ty::Array => {
                                i = close_value(after)?.0;
                                next = Next::AfterValue;
                            }
                            _ if closed => {
                                if matches!(ty, Ty::Int | Ty::Boolean | Ty::Double) {
                                    return fail_kind(k, ErrorKind::InvalidScalar { ty: ty.name() });
                                }
                                i = close_value(after)?.0;
                                next = Next::AfterValue;
                            }
                            _ => {
                                let (j, raw) = text(after)?;
                                if !check_scalar(ty, raw) {
                                    let kind = if ty == Ty::Nil {
                                        ErrorKind::Syntax { expected: "an empty `<nil>`" }
                                    } else {
                                        ErrorKind::InvalidScalar { ty: ty.name() }
                                    };
                                    return fail_kind(after, kind);
                                }
                                let (j, ()) = close(j, tag_name, "the end tag of the value's type")?;
                                i = close_value(j)?.0;
                                next = Next::AfterValue;
                            }
                        }
                    }
                    _ => {
                        // Untyped: the text is a string.
                        let (k, _) = text(j)?;
                        i = close(k, b"value", "`</value>`")?.0;
                        next = Next::AfterValue;
                    }
                }
            }
            Next::AfterValue => match stack.top() {
                None => return Ok((i, ())),
                Some(true) => {
                    let (j, ()) = misc(i)?;
                    i = close(j, b"member", "`</member>`")?.0;
                    next = Next::Members;
                }
                Some(false) => next = Next::Elements,
            },
            Next::Members => {
                let (j, ()) = misc(i)?;
                if j.starts_with(b"</") {
                    let (j, ()) = close(j, b"struct", "`</struct>` or `<member>`")?;
                    i = close_value(j)?.0;
                    stack.pop();
                    next = Next::AfterValue;
                    continue;
                }
                let (j, closed) = open(j, b"member", "`<member>` or `</struct>`")?;
                if closed {
                    return fail(j, "a member with a name and a value");
                }
                let (j, ()) = misc(j)?;
                let (j, closed) = open(j, b"name", "`<name>`")?;
                let j = if closed { j } else { close(text(j)?.0, b"name", "`</name>`")?.0 };
                i = misc(j)?.0;
                next = Next::Value;
            }
            Next::Elements => {
                let (j, ()) = misc(i)?;
                if j.starts_with(b"</") {
                    let (j, ()) = close(j, b"data", "`</data>` or `<value>`")?;
                    i = close_array(j)?.0;
                    stack.pop();
                    next = Next::AfterValue;
                } else {
                    i = j;
                    next = Next::Value;
                }
            }
        }
    }
}

/// After `</data>` (or `<data/>`): `</array>`, then `</value>`.
fn close_array(i: In<'_>) -> Res<'_, ()> {
    let (i, ()) = misc(i)?;
    let (i, ()) = close(i, b"array", "`</array>`")?;
    close_value(i)
}

/// After a value's content: `</value>`.
#[inline(always)]
fn close_value(i: In<'_>) -> Res<'_, ()> {
    if let Some(rest) = i.strip_prefix(b"</value>") {
        return Ok((rest, ()));
    }
    let (i, ()) = misc(i)?;
    close(i, b"value", "`</value>`")
}

/// The start of a document: a byte-order mark, the XML declaration (which
/// must name UTF-8 if it names an encoding), comments; no DOCTYPE.
pub(crate) fn prolog(i: In<'_>) -> Res<'_, ()> {
    let i = i.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(i);
    let i = if i.starts_with(b"<?xml") && i.get(5).is_some_and(|&b| is_ws(b)) { xml_declaration(i)?.0 } else { i };
    let (i, ()) = misc(i)?;
    if i.starts_with(b"<!DOCTYPE") {
        return fail_kind(i, ErrorKind::Doctype);
    }
    Ok((i, ()))
}

/// `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`.
fn xml_declaration(i: In<'_>) -> Res<'_, ()> {
    let (mut i, _) = tag(&b"<?xml"[..]).parse(i)?;
    loop {
        let j = ws(i);
        if let Some(rest) = j.strip_prefix(b"?>") {
            return Ok((rest, ()));
        }
        if j.len() == i.len() {
            return fail(j, "`?>`");
        }
        let (k, key) = name(j)?;
        let k = ws(k);
        let (k, _) = expecting(k, "`=`", tag(&b"="[..]).parse(k))?;
        let k = ws(k);
        let Some(&quote) = k.first().filter(|&&q| q == b'"' || q == b'\'') else {
            return fail(k, "a quoted value");
        };
        let (rest, value) = take_till(|b| b == quote || b == b'<').parse(k.get(1..).unwrap_or_default())?;
        if rest.first() != Some(&quote) {
            return fail(rest, "the end of the quoted value");
        }
        if key == b"encoding"
            && !(value.eq_ignore_ascii_case(b"utf-8")
                || value.eq_ignore_ascii_case(b"utf8")
                || value.eq_ignore_ascii_case(b"us-ascii")
                || value.eq_ignore_ascii_case(b"ascii"))
        {
            return fail_kind(k.get(1..).unwrap_or_default(), ErrorKind::UnsupportedEncoding);
        }
        i = rest.get(1..).unwrap_or_default();
    }
}

/// The end of a document: white space and comments only.
pub(crate) fn epilog(i: In<'_>) -> Res<'_, ()> {
    let (i, ()) = misc(i)?;
    if !i.is_empty() {
        return fail(i, "the end of the document");
    }
    Ok((i, ()))
}

/// `<params>` … `</params>` (or `<params/>`): the span of its content as
/// (start, end) byte counts left, and how many `<param>`s it holds.
pub(crate) fn params(i: In<'_>, max_depth: usize) -> Res<'_, (usize, usize, usize)> {
    let (i, closed) = open(i, b"params", "`<params>`")?;
    let start = i.len();
    if closed {
        return Ok((i, (start, start, 0)));
    }
    let mut i = i;
    let mut count = 0;
    loop {
        let (j, ()) = misc(i)?;
        if j.starts_with(b"</") {
            let end = j.len();
            let (j, ()) = close(j, b"params", "`</params>` or `<param>`")?;
            return Ok((j, (start, end, count)));
        }
        let (j, closed) = open(j, b"param", "`<param>` or `</params>`")?;
        if closed {
            return fail(j, "a param with a value");
        }
        let (j, ()) = misc(j)?;
        let (j, ()) = value(j, max_depth)?;
        let (j, ()) = misc(j)?;
        i = close(j, b"param", "`</param>`")?.0;
        count += 1;
    }
}

/// The shape of a valid `<methodResponse>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Offsets of the params' content, and how many there are.
    Params { start: usize, end: usize, count: usize },
    /// Offset of the fault's `<value>`.
    Fault { at: usize },
}

/// Validates a whole `<methodResponse>` document.
pub(crate) fn method_response(doc: In<'_>, max_depth: usize) -> Result<Shape, PErr> {
    let total = doc.len();
    let run = |i| -> Res<'_, Shape> {
        let (i, ()) = prolog(i)?;
        let (i, closed) = open(i, b"methodResponse", "`<methodResponse>`")?;
        if closed {
            return fail(i, "`<params>` or `<fault>`");
        }
        let (i, ()) = misc(i)?;
        let (i, shape) = if i.starts_with(b"<fault") {
            let (j, closed) = open(i, b"fault", "`<fault>`")?;
            if closed {
                return fail(j, "a fault value");
            }
            let (j, ()) = misc(j)?;
            let at = total - j.len();
            let (j, ()) = value(j, max_depth)?;
            let (j, ()) = misc(j)?;
            let (j, ()) = close(j, b"fault", "`</fault>`")?;
            (j, Shape::Fault { at })
        } else {
            let (j, (start, end, count)) = expecting(i, "`<params>` or `<fault>`", params(i, max_depth))?;
            (j, Shape::Params { start: total - start, end: total - end, count })
        };
        let (i, ()) = misc(i)?;
        let (i, ()) = close(i, b"methodResponse", "`</methodResponse>`")?;
        let (i, ()) = epilog(i)?;
        Ok((i, shape))
    };
    finish(run(doc))
}

/// The shape of a valid `<methodCall>`: where the method name is, and the params.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallShape {
    pub name: (usize, usize),
    pub params: (usize, usize, usize),
}

/// Validates a whole `<methodCall>` document.
pub(crate) fn method_call(doc: In<'_>, max_depth: usize) -> Result<CallShape, PErr> {
    let total = doc.len();
    let run = |i| -> Res<'_, CallShape> {
        let (i, ()) = prolog(i)?;
        let (i, closed) = open(i, b"methodCall", "`<methodCall>`")?;
        if closed {
            return fail(i, "`<methodName>`");
        }
        let (i, ()) = misc(i)?;
        let (i, closed) = open(i, b"methodName", "`<methodName>`")?;
        if closed {
            return fail(i, "a method name");
        }
        let (i, raw) = text(i)?;
        let name = (total - i.len() - raw.len(), total - i.len());
        let (i, ()) = close(i, b"methodName", "`</methodName>`")?;
        let (i, ()) = misc(i)?;
        let (i, params) = if i.starts_with(b"<params") {
            let (j, (start, end, count)) = params(i, max_depth)?;
            (j, (total - start, total - end, count))
        } else {
            let at = total - i.len();
            (i, (at, at, 0))
        };
        let (i, ()) = misc(i)?;
        let (i, ()) = close(i, b"methodCall", "`</methodCall>`")?;
        let (i, ()) = epilog(i)?;
        Ok((i, CallShape { name, params }))
    };
    finish(run(doc))
}

/// Validates a lone `<value>` (as XenAPI task results carry one).
pub(crate) fn lone_value(doc: In<'_>, max_depth: usize) -> Result<usize, PErr> {
    let total = doc.len();
    let run = |i| -> Res<'_, usize> {
        let (i, ()) = prolog(i)?;
        let at = total - i.len();
        let (i, ()) = value(i, max_depth)?;
        let (i, ()) = epilog(i)?;
        Ok((i, at))
    };
    finish(run(doc))
}

fn finish<T>(r: Res<'_, T>) -> Result<T, PErr> {
    match r {
        Ok((_, t)) => Ok(t),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(PErr { kind: ErrorKind::Truncated, rest: 0 }),
    }
}
