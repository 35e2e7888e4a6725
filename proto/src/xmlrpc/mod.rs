//! XML-RPC: a zero-copy parser and a writer, and client and server machines
//! over [`http`](crate::http).
//!
//! - [`parse_response`] and [`parse_call`] validate a whole document in one
//!   pass (nom, no DOM, no recursion: nesting is a counted stack) and hand out
//!   [`Value`]s that borrow from it. Integers, booleans and doubles are
//!   decoded; strings ([`XmlStr`]), dates ([`DateTime`]) and [`Base64`] stay as
//!   borrowed text until asked for; structs and arrays are read as they are
//!   iterated. Limits on size and depth; errors name the byte offset.
//! - [`write_call`], [`write_response`], [`write_fault`] and [`ValueWriter`]
//!   write documents laid out as Python's `xmlrpc.client` does, into any
//!   [`Sink`](crate::buf::Sink), without allocating. [`Options`] turn `<nil/>`
//!   and `<i8>` off for peers that do not know them.
//! - With the `serde` feature, [`Value::deserialize`] and [`Params::deserialize`]
//!   decode into Rust types ([`de`]); [`ser::to_value`] and [`ser::to_params`]
//!   encode from them.
//! - [`Client`] and [`Server`] are sans-IO machines: calls in, responses out,
//!   over HTTP/1.x.
//!
//! What XML allows is read: the XML declaration (UTF-8 only), comments and
//! processing instructions between elements, white space, attributes,
//! self-closing tags, CDATA, the five entities and character references
//! (decoded on request), a namespace prefix on type names (`<ex:nil/>`), and
//! a `<value>` with no type element (a string). A `<!DOCTYPE>` is refused.
//!
//! ```
//! use vmwire_proto::xmlrpc::{self, MethodResponse};
//! let doc = b"<?xml version='1.0'?>
//! <methodResponse>
//! <fault>
//! <value><struct>
//! <member><name>faultCode</name><value><int>-32500</int></value></member>
//! <member><name>faultString</name><value><string>explicit fault</string></value></member>
//! </struct></value>
//! </fault>
//! </methodResponse>";
//! match xmlrpc::parse_response(doc)? {
//!     MethodResponse::Fault(f) => assert_eq!((f.code, f.string.as_str()), (-32500, Some("explicit fault"))),
//!     MethodResponse::Params(_) => unreachable!(),
//! }
//! let err = xmlrpc::parse_response(b"<methodResponse><params><param><value><int>x</int>").unwrap_err();
//! assert_eq!((err.kind, err.offset), (xmlrpc::ErrorKind::InvalidScalar { ty: "int" }, 43));
//! # Ok::<(), xmlrpc::Error>(())
//! ```

pub(crate) mod client;
#[cfg(feature = "serde")]
pub mod de;
mod error;
pub(crate) mod grammar;
#[cfg(feature = "serde")]
pub mod ser;
mod server;
mod text;
mod value;
mod write;

pub use client::{Client, Config, Event, Response, SendError};
pub use error::{Error, ErrorKind, Message, WriteError};
pub use server::{Call, INTERNAL_ERROR, Incoming, NextCall, Server, ServerConfig, ServerEvent};
pub use text::{Chunk, Chunks, XmlStr};
pub use value::{Array, Base64, DateTime, Elements, Iso8601, Members, Struct, Value};
pub use write::{
    ArrayWriter, Options, ParamsWriter, StructWriter, ValueWriter, write_call, write_fault, write_response, write_text,
};

use grammar::PErr;

/// Bounds on a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most structs and arrays nested in one another (at most 1024).
    pub max_depth: usize,
    /// Most bytes in a document.
    pub max_size: usize,
}

impl Default for Limits {
    /// Depth 128, 128 MiB.
    fn default() -> Self {
        Limits { max_depth: 128, max_size: 128 << 20 }
    }
}

/// The most nesting [`Limits::max_depth`] can allow.
pub const MAX_DEPTH: usize = grammar::MAX_DEPTH;

/// A parsed `<methodResponse>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MethodResponse<'a> {
    /// The method's result (one param, by the specification; Python allows any number).
    Params(Params<'a>),
    /// The call failed at the XML-RPC level.
    Fault(Fault<'a>),
}

impl<'a> MethodResponse<'a> {
    /// The params, unless this is a fault.
    pub fn params(&self) -> Option<Params<'a>> {
        match self {
            MethodResponse::Params(p) => Some(*p),
            MethodResponse::Fault(_) => None,
        }
    }

    /// The fault, if this is one.
    pub fn fault(&self) -> Option<Fault<'a>> {
        match self {
            MethodResponse::Fault(f) => Some(*f),
            MethodResponse::Params(_) => None,
        }
    }

    /// The result (the first param; `<nil/>` if there is none) or the fault.
    pub fn result(&self) -> Result<Value<'a>, Fault<'a>> {
        match self {
            MethodResponse::Params(p) => Ok(p.first().unwrap_or(Value::Nil)),
            MethodResponse::Fault(f) => Err(*f),
        }
    }
}

/// A `<fault>`: `faultCode` and `faultString`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault<'a> {
    /// `faultCode`.
    pub code: i64,
    /// `faultString`.
    pub string: XmlStr<'a>,
    /// The whole fault struct (servers sometimes add members).
    pub value: Value<'a>,
}

impl core::fmt::Display for Fault<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "fault {}: {}", self.code, self.string)
    }
}

impl core::error::Error for Fault<'_> {}

/// The params of a call or a response, read as they are iterated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Params<'a> {
    body: &'a str,
    len: usize,
    /// The document may hold comments, CDATA or processing instructions.
    markup: bool,
}

impl<'a> Params<'a> {
    /// How many params there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The params' values in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { cur: self.body, markup: self.markup }
    }

    /// The first param's value.
    pub fn first(&self) -> Option<Value<'a>> {
        self.iter().next()
    }

    /// The `n`th param's value.
    pub fn get(&self, n: usize) -> Option<Value<'a>> {
        self.iter().nth(n)
    }

    /// Decodes the params with serde, as a sequence (a tuple or a `Vec`; a
    /// struct takes them in field order).
    #[cfg(feature = "serde")]
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, de::Error> {
        T::deserialize(de::ParamsDeserializer::new(*self))
    }

    /// Decodes the first param with serde, reading the document once (no
    /// separate pass to find where a struct or an array ends).
    #[cfg(feature = "serde")]
    pub fn deserialize_first<T: serde::Deserialize<'a>>(&self) -> Result<T, de::Error> {
        let mut cur = self.body;
        if !value::next_param(&mut cur) {
            return Err(de::Error::missing_param());
        }
        de::from_value_text(cur, self.markup)
    }

    #[cfg(feature = "serde")]
    pub(crate) fn body(&self) -> &'a str {
        self.body
    }

    #[cfg(feature = "serde")]
    pub(crate) fn markup(&self) -> bool {
        self.markup
    }
}

impl core::fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Value<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    cur: &'a str,
    markup: bool,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if !value::next_param(&mut self.cur) {
            return None;
        }
        let (v, rest) = value::read_value(self.cur, self.markup)?;
        self.cur = value::end_param(rest);
        Some(v)
    }
}

/// A parsed `<methodCall>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodCall<'a> {
    /// `methodName`.
    pub name: XmlStr<'a>,
    /// The params.
    pub params: Params<'a>,
}

/// Checks size and UTF-8: the document as text.
fn text_of<'a>(doc: &'a [u8], limits: &Limits) -> Result<&'a str, Error> {
    if doc.len() > limits.max_size {
        return Err(Error { kind: ErrorKind::TooLarge { limit: limits.max_size }, offset: limits.max_size });
    }
    core::str::from_utf8(doc).map_err(|e| Error { kind: ErrorKind::InvalidUtf8, offset: e.valid_up_to() })
}

fn located(doc: &[u8], e: PErr) -> Error {
    Error { kind: e.kind, offset: doc.len().saturating_sub(e.rest) }
}

/// Parses a `<methodResponse>` with the default [`Limits`].
pub fn parse_response(doc: &[u8]) -> Result<MethodResponse<'_>, Error> {
    parse_response_with(doc, &Limits::default())
}

/// Parses a `<methodResponse>`.
pub fn parse_response_with<'a>(doc: &'a [u8], limits: &Limits) -> Result<MethodResponse<'a>, Error> {
    let shape = validate_response(doc, limits)?;
    response_from_shape(doc, shape)
}

/// Validates a `<methodResponse>` without handing out anything borrowed
/// (the machines decide what to do before they borrow).
pub(crate) fn validate_response(doc: &[u8], limits: &Limits) -> Result<grammar::Shape, Error> {
    text_of(doc, limits)?;
    let shape = grammar::method_response(doc, limits.max_depth).map_err(|e| located(doc, e))?;
    response_from_shape(doc, shape)?;
    Ok(shape)
}

/// The response a validated document holds.
pub(crate) fn response_from_shape(doc: &[u8], shape: grammar::Shape) -> Result<MethodResponse<'_>, Error> {
    let text = core::str::from_utf8(doc).unwrap_or_default();
    match shape {
        grammar::Shape::Params { start, end, count } => {
            let body = text.get(start..end).unwrap_or_default();
            Ok(MethodResponse::Params(Params { body, len: count, markup: value::has_markup(text) }))
        }
        grammar::Shape::Fault { at } => {
            let bad = Error { kind: ErrorKind::BadFault, offset: at };
            let (value, _) = value::read_value(text.get(at..).unwrap_or_default(), true).ok_or(bad)?;
            let code = value.get("faultCode").and_then(|c| c.as_i64()).ok_or(bad)?;
            let string = value.get("faultString").and_then(|s| s.as_str()).ok_or(bad)?;
            Ok(MethodResponse::Fault(Fault { code, string, value }))
        }
    }
}

/// Parses a `<methodCall>` with the default [`Limits`].
pub fn parse_call(doc: &[u8]) -> Result<MethodCall<'_>, Error> {
    parse_call_with(doc, &Limits::default())
}

/// Parses a `<methodCall>`.
pub fn parse_call_with<'a>(doc: &'a [u8], limits: &Limits) -> Result<MethodCall<'a>, Error> {
    let text = text_of(doc, limits)?;
    let shape = grammar::method_call(doc, limits.max_depth).map_err(|e| located(doc, e))?;
    let (start, end, len) = shape.params;
    Ok(MethodCall {
        name: XmlStr::new(text.get(shape.name.0..shape.name.1).unwrap_or_default()),
        params: Params { body: text.get(start..end).unwrap_or_default(), len, markup: value::has_markup(text) },
    })
}

/// Parses a document that is one `<value>` (an XML declaration and comments
/// around it allowed): what xapi puts in a task's `result`.
pub fn parse_value(doc: &[u8]) -> Result<Value<'_>, Error> {
    let limits = Limits::default();
    let text = text_of(doc, &limits)?;
    let at = grammar::lone_value(doc, limits.max_depth).map_err(|e| located(doc, e))?;
    let bad = Error { kind: ErrorKind::Syntax { expected: "a value" }, offset: at };
    value::read_value(text.get(at..).unwrap_or_default(), value::has_markup(text)).map(|(v, _)| v).ok_or(bad)
}
