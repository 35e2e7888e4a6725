use core::fmt;

/// What was wrong with a JSON text, and where.
///
/// `offset` counts bytes from the start of the stream the framer has seen
/// (or from the start of the text, for one-shot validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Byte offset of the offending byte.
    pub offset: u64,
}

impl Error {
    /// Whether the value was over the size or depth limit (rather than not JSON).
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, ErrorKind::TooLarge { .. } | ErrorKind::TooDeep { .. })
    }
}

/// The ways a JSON text can be wrong or too big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A byte that cannot appear here.
    Unexpected {
        /// The byte found.
        found: u8,
        /// What the grammar allows here, in words.
        expected: &'static str,
    },
    /// A raw control character (below U+0020) inside a string.
    ControlInString,
    /// A backslash escape that JSON does not define, or bad `\u` hex digits.
    InvalidEscape,
    /// A `\uD800`–`\uDFFF` escape that is not half of a surrogate pair.
    LoneSurrogate,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A number that does not follow JSON's grammar (`01`, `1.`, `-`, `1e`).
    InvalidNumber,
    /// A misspelt `true`, `false` or `null`.
    InvalidLiteral,
    /// Containers nested deeper than the limit.
    TooDeep {
        /// The configured nesting limit.
        limit: usize,
    },
    /// A value longer than the limit; it is skipped, not buffered.
    TooLarge {
        /// The configured size limit, in bytes.
        limit: usize,
    },
    /// The input ended inside a value.
    Truncated,
    /// Something other than white space after the value (one-shot validation).
    TrailingCharacters,
    /// No value at all (one-shot validation).
    Empty,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Unexpected { found, expected } => {
                if found.is_ascii_graphic() {
                    write!(f, "expected {expected}, found '{}'", found as char)
                } else {
                    write!(f, "expected {expected}, found byte 0x{found:02x}")
                }
            }
            ErrorKind::ControlInString => f.write_str("raw control character in string"),
            ErrorKind::InvalidEscape => f.write_str("invalid escape in string"),
            ErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate escape"),
            ErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ErrorKind::InvalidNumber => f.write_str("invalid number"),
            ErrorKind::InvalidLiteral => f.write_str("invalid literal (not true, false or null)"),
            ErrorKind::TooDeep { limit } => write!(f, "nesting deeper than the limit of {limit}"),
            ErrorKind::TooLarge { limit } => {
                write!(f, "value larger than the limit of {limit} bytes")
            }
            ErrorKind::Truncated => f.write_str("input ended inside a value"),
            ErrorKind::TrailingCharacters => f.write_str("characters after the value"),
            ErrorKind::Empty => f.write_str("no value"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A value over a limit may be valid JSON: only the limit refused it.
        let what = if self.is_too_large() { "JSON" } else { "invalid JSON" };
        write!(f, "{what} at byte {}: {}", self.offset, self.kind)
    }
}

impl core::error::Error for Error {}
