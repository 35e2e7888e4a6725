//! Text from a peer, made safe for a terminal or a log.
//!
//! A guest, a monitor or a remote daemon chooses the bytes of every string it
//! sends: a method name, an error description, a table cell. Written as it
//! is, such a string can forge a log line (`"x\nERROR host: …"`), move the
//! cursor, clear the screen or retitle the terminal (`ESC [2J`, `ESC ]0;…`),
//! or reorder what a reader sees (Unicode bidirectional overrides).
//! [`escape`] shows every such character as a Rust-style escape and leaves
//! all other text, non-ASCII letters included, as it is.
//!
//! ```
//! use vmwire_std::text::escape;
//!
//! assert_eq!(escape("x\nERROR host: \u{1b}[2J").to_string(), r"x\nERROR host: \u{1b}[2J");
//! assert_eq!(escape("Grüße, 世界").to_string(), "Grüße, 世界");
//! ```

use core::fmt::Write;

pub use vmwire_proto::text::{Escaped, escape};

/// Appends `text` to `out`, escaped as [`escape`] displays it.
pub fn push_escaped(out: &mut String, text: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", escape(text));
}

/// `bytes` from a peer as [`escape`] shows text, each byte that is not
/// part of UTF-8 as `\xNN`: nothing is lost, and a bad byte is not taken
/// for U+FFFD (which a peer may send as it is).
///
/// ```
/// use vmwire_std::text::escape_bytes;
///
/// assert_eq!(escape_bytes(b"a\xff\xfe\0b\xc3("), r"a\xff\xfe\u{0}b\xc3(");
/// assert_eq!(escape_bytes("caf\u{e9} \u{fffd}".as_bytes()), "caf\u{e9} \u{fffd}");
/// ```
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The start of `bytes` from a peer, for an error message: decoded as
/// UTF-8 (lossily), cut at `max_chars` characters with `…` when longer, and
/// escaped as [`escape`] displays it.
///
/// ```
/// use vmwire_std::text::excerpt;
///
/// assert_eq!(excerpt(b"{\"QMP\": {\"version\"\r\n", 9), r#"{"QMP": {…"#);
/// assert_eq!(excerpt(b"ok\r\n", 9), r"ok\r\n");
/// ```
pub fn excerpt(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => {
            push_escaped(&mut out, &text[..at]);
            out.push('…');
        }
        None => push_escaped(&mut out, &text),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides_are_escaped() {
        let hostile = "a\u{7}b\u{7f}c\u{9b}d\u{202e}e\r\n\t";
        assert_eq!(escape(hostile).to_string(), r"a\u{7}b\u{7f}c\u{9b}d\u{202e}e\r\n\t");
        assert!(escape(hostile).is_changed());
    }

    #[test]
    fn plain_text_is_untouched() {
        for s in ["", "plain", "quotes \" ' \\ stay", "naïve Ελληνικά 日本語 🙂"] {
            assert_eq!(escape(s).to_string(), s);
            assert!(!escape(s).is_changed());
        }
    }
}
