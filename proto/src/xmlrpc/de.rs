//! Decoding XML-RPC values into Rust types with serde (feature `serde`).
//!
//! Structs become maps (or Rust structs), arrays sequences, `<nil/>` unit or
//! `None`, `<base64>` bytes, `<dateTime.iso8601>` its text (or an
//! [`Iso8601`](super::Iso8601)). Strings are borrowed when they need no
//! decoding. Where a Rust integer or float is asked for, a string holding one
//! is read as one: that is how the XenAPI sends 64-bit integers. Where unit is
//! asked for, any string is taken (XenAPI's void results are `""`).
//!
//! A document is read once: containers are walked as serde asks for their
//! members, never skipped over first.
//!
//! ```
//! use serde::Deserialize;
//! use vmwire_proto::xmlrpc;
//!
//! #[derive(Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "PascalCase")]
//! struct Result<'a> { status: &'a str, value: Vm<'a> }
//! #[derive(Deserialize, Debug, PartialEq)]
//! struct Vm<'a> { name_label: &'a str, memory_static_max: i64, is_a_template: bool }
//!
//! let doc = br#"<methodResponse><params><param><value><struct>
//! <member><name>Status</name><value>Success</value></member>
//! <member><name>Value</name><value><struct>
//!   <member><name>name_label</name><value><string>vm-1</string></value></member>
//!   <member><name>memory_static_max</name><value><string>4294967296</string></value></member>
//!   <member><name>is_a_template</name><value><boolean>0</boolean></value></member>
//! </struct></value></member>
//! </struct></value></param></params></methodResponse>"#;
//! let response = xmlrpc::parse_response(doc)?;
//! let r: Result = response.params().unwrap().deserialize_first()?;
//! assert_eq!(r.value, Vm { name_label: "vm-1", memory_static_max: 4294967296, is_a_template: false });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IntoDeserializer, Visitor};

use super::error::{Message, message};
use super::value::{self as nav, Head, Value};
use super::{Params, XmlStr, grammar};

/// Why a value did not decode into the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: Message,
}

impl Error {
    pub(crate) fn missing_param() -> Self {
        de::Error::custom("no param to decode")
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XML-RPC decoding: {}", self.message)
    }
}

impl core::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error { message: message(msg) }
    }
}

fn malformed() -> Error {
    de::Error::custom("malformed value")
}

/// Decodes `T` from the `<value>` at the front of `text` (in a validated document).
pub(crate) fn from_value_text<'de, T: de::Deserialize<'de>>(text: &'de str, markup: bool) -> Result<T, Error> {
    T::deserialize(&mut Reader { rest: text, markup })
}

/// Reads values from a validated document as serde asks for them.
struct Reader<'de> {
    rest: &'de str,
    /// The document may hold comments, CDATA or processing instructions.
    markup: bool,
}

impl<'de> Reader<'de> {
    fn head(&self) -> Result<Head<'de>, Error> {
        nav::head(self.rest).ok_or_else(malformed)
    }

    /// After a struct's visitor: skips members it did not read, then the end tags.
    fn end_struct(&mut self) -> Result<(), Error> {
        while nav::next_member(&mut self.rest).is_some() {
            self.rest = nav::end_member(nav::skip_value(self.rest, self.markup).ok_or_else(malformed)?);
        }
        self.rest = nav::close_value(self.rest);
        Ok(())
    }

    /// After an array's visitor: no element may be left.
    fn end_array(&mut self) -> Result<(), Error> {
        if nav::next_element(&mut self.rest) {
            return Err(de::Error::custom("array has more elements than expected"));
        }
        self.rest = nav::close_value(self.rest);
        Ok(())
    }

    /// Hands a scalar to `scalar`, a container to the visitor.
    fn dispatch<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        scalar: impl FnOnce(ValueDeserializer<'de>, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(v, rest) => {
                self.rest = rest;
                scalar(ValueDeserializer(v), visitor)
            }
            Head::Struct(cur) => {
                self.rest = cur;
                let out = visitor.visit_map(StructAccess { r: self })?;
                self.end_struct()?;
                Ok(out)
            }
            Head::Array(cur) => {
                self.rest = cur;
                let out = visitor.visit_seq(ArrayAccess { r: self })?;
                self.end_array()?;
                Ok(out)
            }
        }
    }
}

macro_rules! forward_to_scalar {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.dispatch(visitor, |v, visitor| v.$method(visitor))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    forward_to_scalar! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map deserialize_identifier
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Value::Nil, rest) => {
                self.rest = rest;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Struct(cur) => {
                // `{variant: value}`, as serde writes a variant with data.
                self.rest = cur;
                let variant = nav::next_member(&mut self.rest)
                    .ok_or_else(|| <Error as de::Error>::custom("an enum struct needs one member"))?;
                let out = visitor.visit_enum(EnumAccess { variant, r: &mut *self })?;
                self.rest = nav::end_member(self.rest);
                self.end_struct()?;
                Ok(out)
            }
            _ => self.dispatch(visitor, |v, visitor| v.deserialize_enum(name, variants, visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.rest = nav::skip_value(self.rest, self.markup).ok_or_else(malformed)?;
        visitor.visit_unit()
    }
}

struct StructAccess<'a, 'de> {
    r: &'a mut Reader<'de>,
}

impl<'de> de::MapAccess<'de> for StructAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match nav::next_member(&mut self.r.rest) {
            Some(name) => seed.deserialize(ValueDeserializer(Value::String(name))).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = seed.deserialize(&mut *self.r)?;
        self.r.rest = nav::end_member(self.r.rest);
        Ok(value)
    }
}

struct ArrayAccess<'a, 'de> {
    r: &'a mut Reader<'de>,
}

impl<'de> de::SeqAccess<'de> for ArrayAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !nav::next_element(&mut self.r.rest) {
            return Ok(None);
        }
        seed.deserialize(&mut *self.r).map(Some)
    }
}

struct EnumAccess<'a, 'de> {
    variant: XmlStr<'de>,
    r: &'a mut Reader<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    type Variant = &'a mut Reader<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), Error> {
        let v = seed.deserialize(ValueDeserializer(Value::String(self.variant)))?;
        Ok((v, self.r))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

/// Decodes one [`Value`] (as [`Value::deserialize`] does).
#[derive(Debug, Clone, Copy)]
pub struct ValueDeserializer<'de>(Value<'de>);

impl<'de> ValueDeserializer<'de> {
    /// A deserializer of `value`.
    pub fn new(value: Value<'de>) -> Self {
        ValueDeserializer(value)
    }

    /// The string's text, decoded.
    fn visit_text<V: Visitor<'de>>(s: XmlStr<'de>, visitor: V) -> Result<V::Value, Error> {
        if let Some(plain) = s.as_str() {
            return visitor.visit_borrowed_str(plain);
        }
        #[cfg(feature = "alloc")]
        {
            visitor.visit_string(alloc::string::ToString::to_string(&s))
        }
        #[cfg(not(feature = "alloc"))]
        {
            let mut buf = [0u8; 512];
            let decoded = s
                .unescape_into(&mut buf)
                .map_err(|_| <Error as de::Error>::custom("string too long to decode without `alloc`"))?;
            visitor.visit_str(decoded)
        }
    }

    /// A number asked for: the value's own, or one read from a string.
    fn integer<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => {
                let mut buf = [0u8; 64];
                let text = s.as_str().or_else(|| s.unescape_into(&mut buf).ok()).unwrap_or_default();
                if let Some(n) = grammar::parse_int(text) {
                    return visitor.visit_i64(n);
                }
                match text.trim().parse::<u64>() {
                    Ok(n) => visitor.visit_u64(n),
                    Err(_) => Self::visit_text(s, visitor),
                }
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn float<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => match self.0.as_f64() {
                Some(d) => visitor.visit_f64(d),
                None => Self::visit_text(s, visitor),
            },
            _ => self.deserialize_any(visitor),
        }
    }
}

/// Numbers asked for: read from the value, or from a string holding one.
macro_rules! numbers {
    ($($how:ident: $($method:ident)*;)*) => {$($(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.$how(visitor)
        }
    )*)*};
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Int(n) => visitor.visit_i64(n),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Double(d) => visitor.visit_f64(d),
            Value::Nil => visitor.visit_unit(),
            Value::String(s) => Self::visit_text(s, visitor),
            Value::DateTime(t) => Self::visit_text(t.text(), visitor),
            Value::Base64(b) => {
                #[cfg(feature = "alloc")]
                {
                    visitor.visit_byte_buf(b.to_vec().map_err(de::Error::custom)?)
                }
                #[cfg(not(feature = "alloc"))]
                {
                    let mut buf = [0u8; 512];
                    visitor.visit_bytes(b.decode_into(&mut buf).map_err(de::Error::custom)?)
                }
            }
            Value::Struct(s) => {
                let mut r = Reader { rest: s.raw(), markup: s.markup() };
                visitor.visit_map(StructAccess { r: &mut r })
            }
            Value::Array(a) => {
                let mut r = Reader { rest: a.raw(), markup: a.markup() };
                let out = visitor.visit_seq(ArrayAccess { r: &mut r })?;
                r.end_array()?;
                Ok(out)
            }
        }
    }

    numbers! {
        integer: deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128;
        float: deserialize_f32 deserialize_f64;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Nil => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            // XenAPI methods that return nothing return "".
            Value::Nil | Value::String(_) => visitor.visit_unit(),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) if s.as_str().is_some() => visitor.visit_borrowed_bytes(s.raw().as_bytes()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => match s.as_str() {
                Some(plain) => visitor.visit_enum(plain.into_deserializer()),
                None => {
                    #[cfg(feature = "alloc")]
                    {
                        visitor.visit_enum(alloc::string::ToString::to_string(&s).into_deserializer())
                    }
                    #[cfg(not(feature = "alloc"))]
                    {
                        let mut buf = [0u8; 128];
                        let decoded = s.unescape_into(&mut buf).map_err(de::Error::custom)?;
                        visitor.visit_enum(decoded.into_deserializer())
                    }
                }
            },
            Value::Struct(s) => {
                let mut r = Reader { rest: s.raw(), markup: s.markup() };
                de::Deserializer::deserialize_enum(&mut r, name, variants, visitor)
            }
            _ => Err(de::Error::invalid_type(unexpected(&self.0), &"a string or a one-member struct")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool char str string seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected<'a>(v: &Value<'a>) -> de::Unexpected<'a> {
    match v {
        Value::Int(n) => de::Unexpected::Signed(*n),
        Value::Boolean(b) => de::Unexpected::Bool(*b),
        Value::Double(d) => de::Unexpected::Float(*d),
        Value::Nil => de::Unexpected::Unit,
        Value::Array(_) => de::Unexpected::Seq,
        Value::Struct(_) => de::Unexpected::Map,
        _ => de::Unexpected::Other(v.type_name()),
    }
}

impl<'de> IntoDeserializer<'de, Error> for Value<'de> {
    type Deserializer = ValueDeserializer<'de>;
    fn into_deserializer(self) -> ValueDeserializer<'de> {
        ValueDeserializer(self)
    }
}

/// Decodes [`Params`] as a sequence (as [`Params::deserialize`] does).
#[derive(Debug, Clone, Copy)]
pub struct ParamsDeserializer<'de>(Params<'de>);

impl<'de> ParamsDeserializer<'de> {
    /// A deserializer of `params`.
    pub fn new(params: Params<'de>) -> Self {
        ParamsDeserializer(params)
    }
}

struct ParamsAccess<'de> {
    rest: &'de str,
    markup: bool,
}

impl<'de> de::SeqAccess<'de> for ParamsAccess<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !nav::next_param(&mut self.rest) {
            return Ok(None);
        }
        let mut r = Reader { rest: self.rest, markup: self.markup };
        let value = seed.deserialize(&mut r)?;
        self.rest = nav::end_param(r.rest);
        Ok(Some(value))
    }
}

impl<'de> de::Deserializer<'de> for ParamsDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut access = ParamsAccess { rest: self.0.body(), markup: self.0.markup() };
        let out = visitor.visit_seq(&mut access)?;
        if nav::next_param(&mut access.rest) {
            return Err(de::Error::invalid_length(self.0.len(), &"fewer params"));
        }
        Ok(out)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_empty() {
            visitor.visit_unit()
        } else {
            Err(de::Error::invalid_length(self.0.len(), &"no params"))
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
