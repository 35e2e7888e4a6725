use core::fmt;

use crate::buf::Full;

/// What was wrong with an XML-RPC document, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Byte offset of the offending byte from the start of the document.
    pub offset: usize,
}

/// The ways an XML-RPC document can be wrong or too big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not what the grammar allows here.
    Syntax {
        /// What was expected, in words.
        expected: &'static str,
    },
    /// The document ended early.
    Truncated,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// An XML declaration naming an encoding other than UTF-8 (or ASCII).
    UnsupportedEncoding,
    /// A `<!DOCTYPE>`: refused (no entity declarations, no external entities).
    Doctype,
    /// An `&…;` reference that is not one of XML's five entities or a valid
    /// character reference.
    InvalidReference,
    /// A value element XML-RPC does not define (or this parser does not support).
    UnknownType,
    /// The text of an `<int>`, `<boolean>` or `<double>` that does not parse.
    InvalidScalar {
        /// The value's type element.
        ty: &'static str,
    },
    /// A `<fault>` whose value is not a struct with an integer `faultCode`
    /// and a string `faultString`.
    BadFault,
    /// Values nested deeper than the limit.
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// A document longer than the limit.
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Syntax { expected } => write!(f, "expected {expected}"),
            ErrorKind::Truncated => f.write_str("the document ended early"),
            ErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ErrorKind::UnsupportedEncoding => f.write_str("encoding other than UTF-8"),
            ErrorKind::Doctype => f.write_str("DOCTYPE declarations are not accepted"),
            ErrorKind::InvalidReference => f.write_str("invalid entity or character reference"),
            ErrorKind::UnknownType => f.write_str("unknown value type"),
            ErrorKind::InvalidScalar { ty } => write!(f, "invalid <{ty}> value"),
            ErrorKind::BadFault => f.write_str("fault without an integer faultCode and a string faultString"),
            ErrorKind::TooDeep { limit } => write!(f, "values nested deeper than the limit of {limit}"),
            ErrorKind::TooLarge { limit } => write!(f, "document larger than the limit of {limit} bytes"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid XML-RPC at byte {}: {}", self.offset, self.kind)
    }
}

impl core::error::Error for Error {}

/// Why a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The output is full.
    Full(Full),
    /// A nil (`None`, `()`) with [`Options::nil`](super::Options::nil) off.
    NilNotAllowed,
    /// An integer outside `<int>`'s 32 bits with [`Options::i8`](super::Options::i8)
    /// off, or outside 64 bits at all.
    IntegerOutOfRange,
    /// A NaN or infinite double: XML-RPC has no way to write one.
    NonFiniteDouble,
    /// A struct member name that is not a string or a number.
    KeyNotString,
    /// Text holding a character XML 1.0 cannot carry, even as a reference
    /// (a control character other than tab, line feed and carriage return,
    /// U+FFFE, U+FFFF): every XML parser of a peer refuses the document.
    NotXmlText {
        /// The character.
        character: char,
    },
    /// The caller's own error (from serde).
    Custom(Message),
}

/// An error message from serde: on the heap with `alloc`, else cut to 64 bytes.
#[cfg(feature = "alloc")]
pub type Message = alloc::boxed::Box<str>;
/// An error message from serde: on the heap with `alloc`, else cut to 64 bytes.
#[cfg(not(feature = "alloc"))]
pub type Message = heapless::String<64>;

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Full(e) => write!(f, "XML-RPC: {e}"),
            WriteError::NilNotAllowed => f.write_str("XML-RPC: nil is turned off"),
            WriteError::IntegerOutOfRange => f.write_str("XML-RPC: integer out of range"),
            WriteError::NonFiniteDouble => f.write_str("XML-RPC: NaN or infinite double"),
            WriteError::KeyNotString => f.write_str("XML-RPC: struct member names must be strings"),
            WriteError::NotXmlText { character } => {
                write!(f, "XML-RPC: U+{:04X} cannot be written in XML 1.0 text", u32::from(*character))
            }
            WriteError::Custom(s) => write!(f, "XML-RPC: {s}"),
        }
    }
}

impl core::error::Error for WriteError {}

impl From<Full> for WriteError {
    fn from(e: Full) -> Self {
        WriteError::Full(e)
    }
}

/// Formats `msg` as a [`Message`].
#[cfg(all(feature = "serde", feature = "alloc"))]
pub(crate) fn message(msg: impl fmt::Display) -> Message {
    alloc::string::ToString::to_string(&msg).into_boxed_str()
}

/// Formats `msg` as a [`Message`], cut short if it is long.
#[cfg(all(feature = "serde", not(feature = "alloc")))]
pub(crate) fn message(msg: impl fmt::Display) -> Message {
    bounded_message(msg)
}

/// Formats `msg` into a bounded string, cut short if it is long.
#[cfg(all(feature = "serde", not(feature = "alloc")))]
pub(crate) fn bounded_message<const N: usize>(msg: impl fmt::Display) -> heapless::String<N> {
    struct Cut<'a, const N: usize>(&'a mut heapless::String<N>);
    impl<const N: usize> fmt::Write for Cut<'_, N> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.0.push(c).is_err() {
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut out = heapless::String::new();
    let _ = fmt::write(&mut Cut(&mut out), format_args!("{msg}"));
    out
}
