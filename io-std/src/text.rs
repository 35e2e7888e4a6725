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

use core::fmt::{self, Display, Write};

/// `text`, displayed with control and bidirectional-formatting characters
/// escaped; see the [module documentation](self).
pub fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// A string displayed with its unsafe characters escaped; made by [`escape`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str(r"\n")?,
                '\r' => f.write_str(r"\r")?,
                '\t' => f.write_str(r"\t")?,
                _ => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl Escaped<'_> {
    /// Whether displaying this string changes it (it holds a character that
    /// needs escaping).
    pub fn is_changed(&self) -> bool {
        self.0.contains(needs_escape)
    }
}

/// C0 and C1 controls, DEL, and the characters that reorder or hide text:
/// bidirectional embeddings, overrides and isolates, and the line and
/// paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Appends `text` to `out`, escaped as [`escape`] displays it.
pub fn push_escaped(out: &mut String, text: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", escape(text));
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
