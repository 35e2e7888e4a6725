//! Encoding Rust values as XML-RPC with serde (feature `serde`), straight
//! into a [`Sink`]: no tree, no allocation.
//!
//! Integers become `<int>` (or `<i8>` past 32 bits), floats `<double>`,
//! strings `<string>`, bytes `<base64>`, `None` and `()` `<nil/>`, sequences
//! and tuples `<array>`, maps and structs `<struct>` (map keys must be
//! strings or numbers), a unit enum variant its name, and a variant with data
//! `{variant: data}`. [`Iso8601`] becomes `<dateTime.iso8601>`.
//!
//! ```
//! use serde::Serialize;
//! use vmwire_proto::xmlrpc::{self, Options, ser};
//!
//! #[derive(Serialize)]
//! struct Args<'a> { name: &'a str, vcpus: u32, tags: &'a [&'a str] }
//!
//! let mut out = Vec::new();
//! xmlrpc::write_call(&mut out, "VM.create", Options::default(), |p| {
//!     ser::to_params(p, &("OpaqueRef:1", Args { name: "web", vcpus: 2, tags: &["prod"] }))
//! })?;
//! let call = xmlrpc::parse_call(&out).unwrap();
//! assert_eq!(call.params.len(), 2);
//! let args = call.params.get(1).unwrap();
//! assert_eq!(args.get("vcpus").and_then(|v| v.as_i64()), Some(2));
//! # Ok::<(), xmlrpc::WriteError>(())
//! ```

use core::fmt;

use serde::ser::{self, Serialize};

use super::error::{WriteError, message};
use super::value::Iso8601;
use super::write::{
    ARRAY_CLOSE, ARRAY_OPEN, MEMBER_CLOSE, MEMBER_NAMED, MEMBER_OPEN, Options, PARAM_CLOSE, PARAM_OPEN, ParamsWriter,
    STRUCT_CLOSE, STRUCT_OPEN, ValueWriter, write_display, write_text,
};
use crate::buf::Sink;
use crate::json::{write_i64, write_u64};

/// The newtype name that marks an [`Iso8601`] for this serializer.
const DATETIME: &str = "$vmwire::xmlrpc::DateTime";

impl ser::Error for WriteError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WriteError::Custom(message(msg))
    }
}

impl Serialize for Iso8601 {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = heapless::String::<48>::new();
        fmt::write(&mut text, format_args!("{self}")).map_err(|_| ser::Error::custom("date too long"))?;
        serializer.serialize_newtype_struct(DATETIME, text.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Iso8601 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Iso8601;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 8601 date and time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Iso8601, E> {
                Iso8601::parse(s).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Writes `value` as one `<value>`.
pub fn to_value<S: Sink + ?Sized, T: Serialize + ?Sized>(
    out: &mut S,
    value: &T,
    options: Options,
) -> Result<(), WriteError> {
    value.serialize(ValueSerializer { out, options })
}

/// Writes `value` as a call's params: each element of a tuple or sequence
/// is one param, `()` is none, anything else (a struct, a string, …) is one param.
pub fn to_params<S: Sink + ?Sized, T: Serialize + ?Sized>(
    params: &mut ParamsWriter<'_, S>,
    value: &T,
) -> Result<(), WriteError> {
    let options = params.options();
    value.serialize(ParamsSerializer { out: params.sink(), options })
}

/// Serializes one value.
pub struct ValueSerializer<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    options: Options,
}

impl<'a, S: Sink + ?Sized> ValueSerializer<'a, S> {
    /// A serializer of one value into `out`.
    pub fn new(out: &'a mut S, options: Options) -> Self {
        ValueSerializer { out, options }
    }

    fn writer(self) -> ValueWriter<'a, S> {
        ValueWriter::new(self.out, self.options)
    }

    /// Opens `{variant: …}`.
    fn variant(self, variant: &str) -> Result<&'a mut S, WriteError> {
        self.out.put(STRUCT_OPEN)?;
        self.out.put(MEMBER_OPEN)?;
        write_text(self.out, variant)?;
        self.out.put(MEMBER_NAMED)?;
        Ok(self.out)
    }
}

fn close_variant<S: Sink + ?Sized>(out: &mut S) -> Result<(), WriteError> {
    out.put(MEMBER_CLOSE)?;
    out.put(STRUCT_CLOSE)?;
    Ok(())
}

impl<'a, S: Sink + ?Sized> ser::Serializer for ValueSerializer<'a, S> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Seq<'a, S>;
    type SerializeTuple = Seq<'a, S>;
    type SerializeTupleStruct = Seq<'a, S>;
    type SerializeTupleVariant = Seq<'a, S>;
    type SerializeMap = Map<'a, S>;
    type SerializeStruct = Map<'a, S>;
    type SerializeStructVariant = Map<'a, S>;

    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.writer().boolean(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        self.writer().int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), WriteError> {
        self.writer().int(i64::try_from(v).map_err(|_| WriteError::IntegerOutOfRange)?)
    }
    fn serialize_u8(self, v: u8) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.writer().int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        self.writer().uint(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), WriteError> {
        self.writer().int(i64::try_from(v).map_err(|_| WriteError::IntegerOutOfRange)?)
    }
    fn serialize_f32(self, v: f32) -> Result<(), WriteError> {
        self.writer().double(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), WriteError> {
        self.writer().double(v)
    }
    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        self.writer().string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        self.writer().string(v)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        self.writer().display(&DisplayRef(value))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), WriteError> {
        self.writer().base64(v)
    }
    fn serialize_none(self) -> Result<(), WriteError> {
        self.writer().nil()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WriteError> {
        self.writer().nil()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WriteError> {
        self.writer().nil()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), WriteError> {
        self.writer().string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), WriteError> {
        if name == DATETIME {
            return value.serialize(DateTimeText(self.writer()));
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        let options = self.options;
        let out = self.variant(variant)?;
        value.serialize(ValueSerializer { out: &mut *out, options })?;
        close_variant(out)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a, S>, WriteError> {
        self.out.put(ARRAY_OPEN)?;
        Ok(Seq { out: self.out, options: self.options, variant: false, param: false })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a, S>, WriteError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a, S>, WriteError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a, S>, WriteError> {
        let options = self.options;
        let out = self.variant(variant)?;
        out.put(ARRAY_OPEN)?;
        Ok(Seq { out, options, variant: true, param: false })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a, S>, WriteError> {
        self.out.put(STRUCT_OPEN)?;
        Ok(Map { out: self.out, options: self.options, variant: false, param: false })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Map<'a, S>, WriteError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Map<'a, S>, WriteError> {
        let options = self.options;
        let out = self.variant(variant)?;
        out.put(STRUCT_OPEN)?;
        Ok(Map { out, options, variant: true, param: false })
    }
}

/// An array being written (or a tuple variant's).
pub struct Seq<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    options: Options,
    variant: bool,
    /// It is a whole param: close the `<param>` too.
    param: bool,
}

impl<S: Sink + ?Sized> Seq<'_, S> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        value.serialize(ValueSerializer { out: &mut *self.out, options: self.options })
    }

    fn close(self) -> Result<(), WriteError> {
        self.out.put(ARRAY_CLOSE)?;
        if self.variant {
            close_variant(self.out)?;
        }
        if self.param {
            self.out.put(PARAM_CLOSE)?;
        }
        Ok(())
    }
}

/// The serde traits a sequence of values answers to, all alike.
macro_rules! sequence {
    ($ty:ident: $($trait:ident::$method:ident)*) => {$(
        impl<S: Sink + ?Sized> ser::$trait for $ty<'_, S> {
            type Ok = ();
            type Error = WriteError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
                self.element(value)
            }
            fn end(self) -> Result<(), WriteError> {
                self.close()
            }
        }
    )*};
}

sequence!(Seq: SerializeSeq::serialize_element SerializeTuple::serialize_element
    SerializeTupleStruct::serialize_field SerializeTupleVariant::serialize_field);

/// A struct being written (or a struct variant's).
pub struct Map<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    options: Options,
    variant: bool,
    /// It is a whole param: close the `<param>` too.
    param: bool,
}

impl<S: Sink + ?Sized> Map<'_, S> {
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        value.serialize(ValueSerializer { out: &mut *self.out, options: self.options })?;
        self.out.put(MEMBER_CLOSE)?;
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), WriteError> {
        self.out.put(MEMBER_OPEN)?;
        write_text(self.out, key)?;
        self.out.put(MEMBER_NAMED)?;
        self.value(value)
    }

    fn close(self) -> Result<(), WriteError> {
        self.out.put(STRUCT_CLOSE)?;
        if self.variant {
            close_variant(self.out)?;
        }
        if self.param {
            self.out.put(PARAM_CLOSE)?;
        }
        Ok(())
    }
}

impl<S: Sink + ?Sized> ser::SerializeMap for Map<'_, S> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        self.out.put(MEMBER_OPEN)?;
        key.serialize(KeySerializer { out: &mut *self.out })?;
        self.out.put(MEMBER_NAMED)?;
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.value(value)
    }
    fn end(self) -> Result<(), WriteError> {
        self.close()
    }
}

impl<S: Sink + ?Sized> ser::SerializeStruct for Map<'_, S> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        self.close()
    }
}

impl<S: Sink + ?Sized> ser::SerializeStructVariant for Map<'_, S> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        self.close()
    }
}

/// Rejects what cannot be a member name.
macro_rules! not_a_name {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ret, WriteError> {
            Err(WriteError::KeyNotString)
        }
    )*};
}

/// Writes a map key as a member name: strings, characters, numbers, booleans.
struct KeySerializer<'a, S: Sink + ?Sized> {
    out: &'a mut S,
}

impl<S: Sink + ?Sized> ser::Serializer for KeySerializer<'_, S> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = ser::Impossible<(), WriteError>;
    type SerializeTuple = ser::Impossible<(), WriteError>;
    type SerializeTupleStruct = ser::Impossible<(), WriteError>;
    type SerializeTupleVariant = ser::Impossible<(), WriteError>;
    type SerializeMap = ser::Impossible<(), WriteError>;
    type SerializeStruct = ser::Impossible<(), WriteError>;
    type SerializeStructVariant = ser::Impossible<(), WriteError>;

    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        write_text(self.out, v)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        write_display(self.out, &DisplayRef(value))
    }
    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.serialize_str(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        Ok(write_i64(self.out, v)?)
    }
    fn serialize_u8(self, v: u8) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        Ok(write_u64(self.out, v)?)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), WriteError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), WriteError> {
        Err(WriteError::KeyNotString)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), WriteError> {
        Err(WriteError::KeyNotString)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(WriteError::KeyNotString)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(WriteError::KeyNotString)
    }
    not_a_name! {
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }
}

/// The text inside an [`Iso8601`]'s marker newtype.
struct DateTimeText<'a, S: Sink + ?Sized>(ValueWriter<'a, S>);

impl<S: Sink + ?Sized> ser::Serializer for DateTimeText<'_, S> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = ser::Impossible<(), WriteError>;
    type SerializeTuple = ser::Impossible<(), WriteError>;
    type SerializeTupleStruct = ser::Impossible<(), WriteError>;
    type SerializeTupleVariant = ser::Impossible<(), WriteError>;
    type SerializeMap = ser::Impossible<(), WriteError>;
    type SerializeStruct = ser::Impossible<(), WriteError>;
    type SerializeStructVariant = ser::Impossible<(), WriteError>;

    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        self.0.datetime_text(v)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        self.0.datetime_display(&DisplayRef(value))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), WriteError> {
        Err(ser::Error::custom("a date must be text"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<(), WriteError> {
        Err(ser::Error::custom("a date must be text"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), WriteError> {
        Err(ser::Error::custom("a date must be text"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(ser::Error::custom("a date must be text"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(ser::Error::custom("a date must be text"))
    }
    not_a_name! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_char(char) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }
}

/// Writes the top level of a call's params.
struct ParamsSerializer<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    options: Options,
}

impl<'a, S: Sink + ?Sized> ParamsSerializer<'a, S> {
    /// Anything that is not a sequence: one param.
    fn one<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        self.out.put(PARAM_OPEN)?;
        value.serialize(ValueSerializer { out: &mut *self.out, options: self.options })?;
        self.out.put(PARAM_CLOSE)?;
        Ok(())
    }

    fn each(self) -> EachParam<'a, S> {
        EachParam { out: self.out, options: self.options }
    }
}

macro_rules! one_param {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<(), WriteError> {
            let options = self.options;
            self.out.put(PARAM_OPEN)?;
            ser::Serializer::$method(ValueSerializer { out: &mut *self.out, options }, $($arg),*)?;
            self.out.put(PARAM_CLOSE)?;
            Ok(())
        }
    )*};
}

impl<'a, S: Sink + ?Sized> ser::Serializer for ParamsSerializer<'a, S> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = EachParam<'a, S>;
    type SerializeTuple = EachParam<'a, S>;
    type SerializeTupleStruct = EachParam<'a, S>;
    type SerializeTupleVariant = Seq<'a, S>;
    type SerializeMap = Map<'a, S>;
    type SerializeStruct = Map<'a, S>;
    type SerializeStructVariant = Map<'a, S>;

    one_param! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_unit(self) -> Result<(), WriteError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        self.one(value)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        let options = self.options;
        self.out.put(PARAM_OPEN)?;
        ValueWriter::new(&mut *self.out, options).display(&DisplayRef(value))?;
        self.out.put(PARAM_CLOSE)?;
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), WriteError> {
        if name == DATETIME {
            return self.one(&Iso8601Text(value));
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        let options = self.options;
        self.out.put(PARAM_OPEN)?;
        ser::Serializer::serialize_newtype_variant(
            ValueSerializer { out: &mut *self.out, options },
            name,
            index,
            variant,
            value,
        )?;
        self.out.put(PARAM_CLOSE)?;
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<EachParam<'a, S>, WriteError> {
        Ok(self.each())
    }
    fn serialize_tuple(self, _: usize) -> Result<EachParam<'a, S>, WriteError> {
        Ok(self.each())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<EachParam<'a, S>, WriteError> {
        Ok(self.each())
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a, S>, WriteError> {
        self.out.put(PARAM_OPEN)?;
        let value = ValueSerializer { out: self.out, options: self.options };
        let seq = ser::Serializer::serialize_tuple_variant(value, name, index, variant, len)?;
        Ok(Seq { param: true, ..seq })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a, S>, WriteError> {
        self.out.put(PARAM_OPEN)?;
        let map = ser::Serializer::serialize_map(ValueSerializer { out: self.out, options: self.options }, len)?;
        Ok(Map { param: true, ..map })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map<'a, S>, WriteError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Map<'a, S>, WriteError> {
        self.out.put(PARAM_OPEN)?;
        let value = ValueSerializer { out: self.out, options: self.options };
        let map = ser::Serializer::serialize_struct_variant(value, name, index, variant, len)?;
        Ok(Map { param: true, ..map })
    }
}

/// A sized handle on an unsized `Display`.
struct DisplayRef<'t, T: ?Sized>(&'t T);

impl<T: fmt::Display + ?Sized> fmt::Display for DisplayRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Re-marks a date's text for the value serializer.
struct Iso8601Text<'t, T: ?Sized>(&'t T);

impl<T: Serialize + ?Sized> Serialize for Iso8601Text<'_, T> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(DATETIME, self.0)
    }
}

/// Each element of a top-level sequence, one param each.
pub struct EachParam<'a, S: Sink + ?Sized> {
    out: &'a mut S,
    options: Options,
}

impl<S: Sink + ?Sized> EachParam<'_, S> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.out.put(PARAM_OPEN)?;
        value.serialize(ValueSerializer { out: &mut *self.out, options: self.options })?;
        self.out.put(PARAM_CLOSE)?;
        Ok(())
    }

    fn close(self) -> Result<(), WriteError> {
        Ok(())
    }
}

sequence!(EachParam: SerializeSeq::serialize_element SerializeTuple::serialize_element
    SerializeTupleStruct::serialize_field);
