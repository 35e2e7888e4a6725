//! Writing calls, responses and values, laid out as Python's `xmlrpc.client`
//! lays them out (the official XenAPI SDK's bytes), with text escaped for
//! XML: `<`, `&`, `>` as entities, a carriage return as a character reference;
//! text XML 1.0 cannot carry at all is refused ([`WriteError::NotXmlText`]).

use core::fmt::Write as _;

use super::error::WriteError;
use super::text::{Chunk, XmlStr};
use super::value::{Iso8601, Value};
use crate::buf::{Full, Sink};
use crate::json::write_i64;

/// What the writer may use beyond the XML-RPC specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Write nil (`None`, `()`) as `<nil/>`. Off: writing one is an error
    /// ([`WriteError::NilNotAllowed`]), for peers that do not know `<nil/>`.
    pub nil: bool,
    /// Write integers outside 32 bits as `<i8>`. Off: they are an error
    /// ([`WriteError::IntegerOutOfRange`]), for peers that know only `<int>`.
    pub i8: bool,
}

impl Default for Options {
    /// Both extensions on (Python, the XenAPI SDK and Apache XML-RPC read them).
    fn default() -> Self {
        Options { nil: true, i8: true }
    }
}

/// Writes `s` as XML character data: `&`, `<`, `>` as entities, a carriage
/// return (which XML would turn into a line feed) as a character reference;
/// a character XML 1.0 cannot carry at all (a control character other than
/// tab, line feed and carriage return, U+FFFE, U+FFFF) is
/// [`WriteError::NotXmlText`], written neither raw nor as a reference,
/// which every peer's parser refuses.
///
/// ```
/// use vmwire_proto::xmlrpc::{WriteError, write_text};
/// let mut out = Vec::new();
/// write_text(&mut out, "a<b & c>\r\t")?;
/// assert_eq!(out, b"a&lt;b &amp; c&gt;&#13;\t");
/// assert_eq!(write_text(&mut out, "x\u{1}"), Err(WriteError::NotXmlText { character: '\u{1}' }));
/// # Ok::<(), WriteError>(())
/// ```
pub fn write_text<S: Sink + ?Sized>(out: &mut S, s: &str) -> Result<(), WriteError> {
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#13;",
            b'\t' | b'\n' => continue,
            0..=0x1f => return Err(WriteError::NotXmlText { character: char::from(b) }),
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF): no XML character either.
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                let character = if bytes.get(i + 2) == Some(&0xBE) { '\u{FFFE}' } else { '\u{FFFF}' };
                return Err(WriteError::NotXmlText { character });
            }
            _ => continue,
        };
        out.put(bytes.get(run..i).unwrap_or_default())?;
        out.put(escaped)?;
        run = i + 1;
    }
    Ok(out.put(bytes.get(run..).unwrap_or_default())?)
}

/// Writes one value. Get one from a [`ParamsWriter`], a [`StructWriter`] or
/// an [`ArrayWriter`], or with [`ValueWriter::new`].
#[derive(Debug)]
pub struct ValueWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    options: Options,
}

impl<'s, S: Sink + ?Sized> ValueWriter<'s, S> {
    /// A writer of one value into `out`.
    pub fn new(out: &'s mut S, options: Options) -> Self {
        ValueWriter { out, options }
    }

    fn scalar(self, ty: &str, body: impl FnOnce(&mut S) -> Result<(), WriteError>) -> Result<(), WriteError> {
        let out = self.out;
        out.put(b"<value><")?;
        out.put(ty.as_bytes())?;
        out.put(b">")?;
        body(out)?;
        out.put(b"</")?;
        out.put(ty.as_bytes())?;
        out.put(b"></value>\n")?;
        Ok(())
    }

    /// An integer: `<int>` within 32 bits, `<i8>` beyond (if allowed).
    pub fn int(self, n: i64) -> Result<(), WriteError> {
        let ty = if i32::try_from(n).is_ok() {
            "int"
        } else if self.options.i8 {
            "i8"
        } else {
            return Err(WriteError::IntegerOutOfRange);
        };
        self.scalar(ty, |out| Ok(write_i64(out, n)?))
    }

    /// An unsigned integer (within `i64`).
    pub fn uint(self, n: u64) -> Result<(), WriteError> {
        self.int(i64::try_from(n).map_err(|_| WriteError::IntegerOutOfRange)?)
    }

    /// `<boolean>`.
    pub fn boolean(self, b: bool) -> Result<(), WriteError> {
        self.scalar("boolean", |out| Ok(out.put(if b { b"1" } else { b"0" })?))
    }

    /// `<string>`, escaped.
    pub fn string(self, s: &str) -> Result<(), WriteError> {
        self.scalar("string", |out| write_text(out, s))
    }

    /// `<double>`, in decimal notation (no exponent, as the specification
    /// asks), the shortest that reads back as the same number.
    pub fn double(self, d: f64) -> Result<(), WriteError> {
        if !d.is_finite() {
            return Err(WriteError::NonFiniteDouble);
        }
        // The longest decimal form of an f64 (5e-324) is 326 characters.
        let mut text = heapless::String::<336>::new();
        let _ = write!(text, "{d}");
        self.scalar("double", |out| {
            out.put(text.as_bytes())?;
            if !text.contains('.') {
                out.put(b".0")?;
            }
            Ok(())
        })
    }

    /// `<dateTime.iso8601>`.
    pub fn datetime(self, t: &Iso8601) -> Result<(), WriteError> {
        self.scalar("dateTime.iso8601", |out| {
            let mut w = SinkWrite { out, full: None };
            let _ = write!(w, "{t}");
            w.full.map_or(Ok(()), |full| Err(full.into()))
        })
    }

    /// `<string>` with the text `text` displays (escaped).
    pub fn display(self, text: &dyn core::fmt::Display) -> Result<(), WriteError> {
        self.scalar("string", |out| write_display(out, text))
    }

    /// `<dateTime.iso8601>` with the text `text` displays (escaped).
    pub fn datetime_display(self, text: &dyn core::fmt::Display) -> Result<(), WriteError> {
        self.scalar("dateTime.iso8601", |out| write_display(out, text))
    }

    /// `<dateTime.iso8601>` with the text given (escaped).
    pub fn datetime_text(self, text: &str) -> Result<(), WriteError> {
        self.scalar("dateTime.iso8601", |out| write_text(out, text))
    }

    /// `<base64>`, in lines of 76 characters as Python writes it.
    pub fn base64(self, bytes: &[u8]) -> Result<(), WriteError> {
        let out = self.out;
        out.put(b"<value><base64>\n")?;
        crate::base64::encode_lines(out, bytes)?;
        out.put(b"</base64></value>\n")?;
        Ok(())
    }

    /// `<nil/>` (if allowed).
    pub fn nil(self) -> Result<(), WriteError> {
        if !self.options.nil {
            return Err(WriteError::NilNotAllowed);
        }
        // Python writes no line break after this one; neither do we.
        self.out.put(b"<value><nil/></value>")?;
        Ok(())
    }

    /// A `<struct>`, its members written by `build`.
    pub fn structure(
        self,
        build: impl FnOnce(&mut StructWriter<'_, S>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let mut members = self.begin_struct()?;
        build(&mut members)?;
        members.finish()
    }

    /// Opens a `<struct>`: add members, then [`StructWriter::finish`].
    pub fn begin_struct(self) -> Result<StructWriter<'s, S>, WriteError> {
        self.out.put(STRUCT_OPEN)?;
        Ok(StructWriter { out: self.out, options: self.options })
    }

    /// An `<array>`, its values written by `build`.
    pub fn array(
        self,
        build: impl FnOnce(&mut ArrayWriter<'_, S>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let mut values = self.begin_array()?;
        build(&mut values)?;
        values.finish()
    }

    /// Opens an `<array>`: add values, then [`ArrayWriter::finish`].
    pub fn begin_array(self) -> Result<ArrayWriter<'s, S>, WriteError> {
        self.out.put(ARRAY_OPEN)?;
        Ok(ArrayWriter { out: self.out, options: self.options })
    }

    /// A `<value>` already encoded (by another [`ValueWriter`]), copied as it is.
    pub fn raw(self, xml: &[u8]) -> Result<(), WriteError> {
        self.out.put(xml)?;
        Ok(())
    }

    /// A value read from another document, written anew.
    pub fn value(self, v: &Value<'_>) -> Result<(), WriteError> {
        match v {
            Value::Int(n) => self.int(*n),
            Value::Boolean(b) => self.boolean(*b),
            Value::Double(d) => self.double(*d),
            Value::Nil => self.nil(),
            Value::String(s) => self.scalar("string", |out| write_xml_str(out, s)),
            // Decoded, then escaped again: the raw text holds references.
            Value::DateTime(t) => self.scalar("dateTime.iso8601", |out| write_xml_str(out, &t.text())),
            Value::Base64(b) => self.scalar("base64", |out| Ok(out.put(b.text().as_bytes())?)),
            Value::Struct(s) => self.structure(|w| {
                for (name, value) in s.members() {
                    let mut buf = [0u8; 256];
                    match name.unescape_into(&mut buf) {
                        Ok(name) => {
                            w.member(name, |v| v.value(&value))?;
                        }
                        Err(_) => {
                            // A long name: write it piece by piece.
                            w.out.put(MEMBER_OPEN)?;
                            write_xml_str(w.out, &name)?;
                            w.out.put(MEMBER_NAMED)?;
                            ValueWriter::new(&mut *w.out, w.options).value(&value)?;
                            w.out.put(MEMBER_CLOSE)?;
                        }
                    }
                }
                Ok(())
            }),
            Value::Array(a) => self.array(|w| {
                for value in a.iter() {
                    w.value()?.value(&value)?;
                }
                Ok(())
            }),
        }
    }
}

/// Writes text read from another document (decoded, then escaped anew).
fn write_xml_str<S: Sink + ?Sized>(out: &mut S, text: &XmlStr<'_>) -> Result<(), WriteError> {
    for chunk in text.chunks() {
        match chunk {
            Chunk::Str(run) => write_text(out, run)?,
            Chunk::Char(c) => write_text(out, c.encode_utf8(&mut [0; 4]))?,
        }
    }
    Ok(())
}

/// Writes what `text` displays as XML character data, escaped.
pub(crate) fn write_display<S: Sink + ?Sized>(out: &mut S, text: &dyn core::fmt::Display) -> Result<(), WriteError> {
    struct Escaping<'a, S: Sink + ?Sized>(&'a mut S, Option<WriteError>);
    impl<S: Sink + ?Sized> core::fmt::Write for Escaping<'_, S> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            write_text(self.0, s).map_err(|e| {
                self.1 = Some(e);
                core::fmt::Error
            })
        }
    }
    let mut w = Escaping(out, None);
    let _ = write!(w, "{text}");
    w.1.map_or(Ok(()), Err)
}

/// `fmt::Write` into a [`Sink`], remembering a [`Full`].
struct SinkWrite<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    full: Option<Full>,
}

impl<S: Sink + ?Sized> core::fmt::Write for SinkWrite<'_, S> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.out.put(s.as_bytes()).map_err(|e| {
            self.full = Some(e);
            core::fmt::Error
        })
    }
}

// The markup around containers, shared with the serde serializer.
pub(crate) const STRUCT_OPEN: &[u8] = b"<value><struct>\n";
pub(crate) const STRUCT_CLOSE: &[u8] = b"</struct></value>\n";
pub(crate) const MEMBER_OPEN: &[u8] = b"<member>\n<name>";
pub(crate) const MEMBER_NAMED: &[u8] = b"</name>\n";
pub(crate) const MEMBER_CLOSE: &[u8] = b"</member>\n";
pub(crate) const ARRAY_OPEN: &[u8] = b"<value><array><data>\n";
pub(crate) const ARRAY_CLOSE: &[u8] = b"</data></array></value>\n";
pub(crate) const PARAM_OPEN: &[u8] = b"<param>\n";
pub(crate) const PARAM_CLOSE: &[u8] = b"</param>\n";

/// Writes a struct's members.
#[derive(Debug)]
pub struct StructWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    options: Options,
}

impl<S: Sink + ?Sized> StructWriter<'_, S> {
    /// A member named `name`, its value written by `value`.
    pub fn member(
        &mut self,
        name: &str,
        value: impl FnOnce(ValueWriter<'_, S>) -> Result<(), WriteError>,
    ) -> Result<&mut Self, WriteError> {
        self.out.put(MEMBER_OPEN)?;
        write_text(self.out, name)?;
        self.out.put(MEMBER_NAMED)?;
        value(ValueWriter { out: &mut *self.out, options: self.options })?;
        self.out.put(MEMBER_CLOSE)?;
        Ok(self)
    }

    /// Opens a member: write its value with the writer this returns, then
    /// call [`StructWriter::end_member`].
    pub fn begin_member(&mut self, name: &str) -> Result<ValueWriter<'_, S>, WriteError> {
        self.out.put(MEMBER_OPEN)?;
        write_text(self.out, name)?;
        self.out.put(MEMBER_NAMED)?;
        Ok(ValueWriter { out: &mut *self.out, options: self.options })
    }

    /// Closes the member opened by [`StructWriter::begin_member`].
    pub fn end_member(&mut self) -> Result<(), WriteError> {
        self.out.put(MEMBER_CLOSE)?;
        Ok(())
    }

    /// A string member.
    pub fn string(&mut self, name: &str, value: &str) -> Result<&mut Self, WriteError> {
        self.member(name, |v| v.string(value))
    }

    /// An integer member.
    pub fn int(&mut self, name: &str, value: i64) -> Result<&mut Self, WriteError> {
        self.member(name, |v| v.int(value))
    }

    /// A boolean member.
    pub fn boolean(&mut self, name: &str, value: bool) -> Result<&mut Self, WriteError> {
        self.member(name, |v| v.boolean(value))
    }

    /// Closes the struct.
    pub fn finish(self) -> Result<(), WriteError> {
        self.out.put(STRUCT_CLOSE)?;
        Ok(())
    }
}

/// Writes an array's values.
#[derive(Debug)]
pub struct ArrayWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    options: Options,
}

impl<S: Sink + ?Sized> ArrayWriter<'_, S> {
    /// The next value.
    pub fn value(&mut self) -> Result<ValueWriter<'_, S>, WriteError> {
        Ok(ValueWriter { out: &mut *self.out, options: self.options })
    }

    /// A string value.
    pub fn string(&mut self, value: &str) -> Result<&mut Self, WriteError> {
        self.value()?.string(value)?;
        Ok(self)
    }

    /// Closes the array.
    pub fn finish(self) -> Result<(), WriteError> {
        self.out.put(ARRAY_CLOSE)?;
        Ok(())
    }
}

/// Writes a call's params.
#[derive(Debug)]
pub struct ParamsWriter<'s, S: Sink + ?Sized> {
    out: &'s mut S,
    options: Options,
}

impl<'s, S: Sink + ?Sized> ParamsWriter<'s, S> {
    /// A writer of `<param>` elements into `out` (for params kept to be sent later).
    pub fn new(out: &'s mut S, options: Options) -> Self {
        ParamsWriter { out, options }
    }

    /// One param, its value written by `value`.
    pub fn param(
        &mut self,
        value: impl FnOnce(ValueWriter<'_, S>) -> Result<(), WriteError>,
    ) -> Result<&mut Self, WriteError> {
        self.out.put(PARAM_OPEN)?;
        value(ValueWriter { out: &mut *self.out, options: self.options })?;
        self.out.put(PARAM_CLOSE)?;
        Ok(self)
    }

    /// A string param.
    pub fn string(&mut self, value: &str) -> Result<&mut Self, WriteError> {
        self.param(|v| v.string(value))
    }

    /// Params already written as XML-RPC (`<param>…</param>` elements), copied as they are.
    pub fn raw(&mut self, xml: &[u8]) -> Result<&mut Self, WriteError> {
        self.out.put(xml)?;
        Ok(self)
    }

    /// The sink, for writers that make their own params.
    #[cfg(feature = "serde")]
    pub(crate) fn sink(&mut self) -> &mut S {
        self.out
    }

    /// The options in force.
    pub fn options(&self) -> Options {
        self.options
    }
}

/// Writes a whole `<methodCall>`; `params` writes the params.
///
/// ```
/// use vmwire_proto::xmlrpc::{Options, write_call};
/// let mut out = Vec::new();
/// write_call(&mut out, "VM.get_all", Options::default(), |p| {
///     p.string("OpaqueRef:00000000-0000-0000-0000-00005e550001")?;
///     Ok(())
/// })?;
/// assert_eq!(out, &b"<?xml version='1.0'?>\n<methodCall>\n<methodName>VM.get_all</methodName>\n<params>\n<param>\n\
/// <value><string>OpaqueRef:00000000-0000-0000-0000-00005e550001</string></value>\n</param>\n</params>\n</methodCall>\n"[..]);
/// # Ok::<(), vmwire_proto::xmlrpc::WriteError>(())
/// ```
pub fn write_call<S: Sink + ?Sized>(
    out: &mut S,
    method: &str,
    options: Options,
    params: impl FnOnce(&mut ParamsWriter<'_, S>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    out.put(b"<?xml version='1.0'?>\n<methodCall>\n<methodName>")?;
    write_text(out, method)?;
    out.put(b"</methodName>\n<params>\n")?;
    params(&mut ParamsWriter { out: &mut *out, options })?;
    out.put(b"</params>\n</methodCall>\n")?;
    Ok(())
}

/// Writes a `<methodResponse>` with one param, written by `value`.
pub fn write_response<S: Sink + ?Sized>(
    out: &mut S,
    options: Options,
    value: impl FnOnce(ValueWriter<'_, S>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    out.put(b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n")?;
    value(ValueWriter { out: &mut *out, options })?;
    out.put(b"</param>\n</params>\n</methodResponse>\n")?;
    Ok(())
}

/// Writes a `<methodResponse>` holding a `<fault>`.
///
/// ```
/// use vmwire_proto::xmlrpc::{self, write_fault};
/// let mut out = Vec::new();
/// write_fault(&mut out, -32500, "explicit fault from VM.crash")?;
/// let fault = xmlrpc::parse_response(&out).unwrap().fault().unwrap();
/// assert_eq!(fault.code, -32500);
/// assert!(fault.string == "explicit fault from VM.crash");
/// # Ok::<(), vmwire_proto::xmlrpc::WriteError>(())
/// ```
pub fn write_fault<S: Sink + ?Sized>(out: &mut S, code: i64, string: &str) -> Result<(), WriteError> {
    out.put(b"<?xml version='1.0'?>\n<methodResponse>\n<fault>\n")?;
    ValueWriter { out: &mut *out, options: Options::default() }.structure(|s| {
        s.int("faultCode", code)?.string("faultString", string)?;
        Ok(())
    })?;
    out.put(b"</fault>\n</methodResponse>\n")?;
    Ok(())
}
