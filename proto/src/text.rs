//! Text from a peer, made safe for a terminal or a log.
//!
//! A guest, a monitor or a remote daemon chooses the bytes of every string it
//! sends: a method name, an error description, a table cell. Written as it
//! is, such a string can forge a log line (`"x\nERROR host: …"`), move the
//! cursor, clear the screen or retitle the terminal (`ESC [2J`, `ESC ]0;…`),
//! or reorder what a reader sees (Unicode bidirectional overrides).
//! [`escape`] shows every such character as a Rust-style escape and leaves
//! all other text, non-ASCII letters included, as it is. (`vmwire-std`
//! re-exports it as `vmwire_std::text::escape`.)
//!
//! ```
//! use vmwire_proto::text::escape;
//!
//! assert_eq!(format!("{}", escape("x\nERROR host: \u{1b}[2J")), r"x\nERROR host: \u{1b}[2J");
//! assert_eq!(format!("{}", escape("Grüße, 世界")), "Grüße, 世界");
//! ```

use core::fmt::{self, Display};

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
            let (plain, tail) = rest.split_at_checked(at).unwrap_or((rest, ""));
            f.write_str(plain)?;
            let mut chars = tail.chars();
            let c = chars.next().unwrap_or_default();
            match c {
                '\n' => f.write_str(r"\n")?,
                '\r' => f.write_str(r"\r")?,
                '\t' => f.write_str(r"\t")?,
                _ => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = chars.as_str();
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
