//! Building command lines the way minimega's lexer reads them.
//!
//! minimega splits a command line into words on white space (Go's
//! `unicode.IsSpace`, the same set as [`char::is_whitespace`]); `"…"` and
//! `'…'` quote; a backslash escapes `r n t \ " ' #` (inside quotes or out);
//! `#` outside quotes starts a comment; `""` is an empty word. So an argument
//! that holds white space, a quote, a backslash or a `#` (or is empty) must be
//! quoted to stay one word. [`write_word`] quotes exactly those, in double
//! quotes with backslash escapes; every other word is written as it is.

use core::fmt;

use super::Error;
use crate::buf::Full;

/// Where a [`CommandLine`] is built: `String` (with `alloc`) or
/// `heapless::String<N>` (no allocator).
pub trait LineBuf {
    /// Appends `s`, or returns [`Full`] (the buffer may then hold part of it).
    fn push_str(&mut self, s: &str) -> Result<(), Full>;
    /// The text so far.
    fn as_str(&self) -> &str;
}

impl<const N: usize> LineBuf for heapless::String<N> {
    fn push_str(&mut self, s: &str) -> Result<(), Full> {
        heapless::String::push_str(self, s).map_err(|_| Full { limit: N })
    }
    fn as_str(&self) -> &str {
        self
    }
}

#[cfg(feature = "alloc")]
impl LineBuf for alloc::string::String {
    fn push_str(&mut self, s: &str) -> Result<(), Full> {
        alloc::string::String::push_str(self, s);
        Ok(())
    }
    fn as_str(&self) -> &str {
        self
    }
}

/// Whether minimega's lexer would not read `word` back as the one word it is
/// unless it is quoted: it is empty, or holds white space, a quote, a
/// backslash or `#`.
pub fn needs_quotes(word: &str) -> bool {
    word.is_empty() || word.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '#'))
}

/// Writes `word` so that minimega reads it back as exactly one word: as it is
/// when that is safe, otherwise in double quotes with `\\`, `\"`, `\n`, `\r`
/// and `\t` escaped.
///
/// ```
/// use vmwire_proto::minimega::write_word;
/// let mut line = heapless::String::<64>::new();
/// write_word(&mut line, "/images/my disk.qcow2").unwrap();
/// line.push(' ');
/// write_word(&mut line, "say \"hi\" # not a comment").unwrap();
/// assert_eq!(line, r#""/images/my disk.qcow2" "say \"hi\" # not a comment""#);
/// ```
pub fn write_word<B: LineBuf + ?Sized>(out: &mut B, word: &str) -> Result<(), Full> {
    if !needs_quotes(word) {
        return out.push_str(word);
    }
    out.push_str("\"")?;
    let mut run = 0;
    for (i, c) in word.char_indices() {
        let escaped = match c {
            '\\' => "\\\\",
            '"' => "\\\"",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            _ => continue,
        };
        out.push_str(word.get(run..i).unwrap_or_default())?;
        out.push_str(escaped)?;
        run = i + 1;
    }
    out.push_str(word.get(run..).unwrap_or_default())?;
    out.push_str("\"")
}

/// `word`, quoted if minimega needs it quoted (see [`write_word`]).
#[cfg(feature = "alloc")]
pub fn quote(word: &str) -> alloc::borrow::Cow<'_, str> {
    if !needs_quotes(word) {
        return alloc::borrow::Cow::Borrowed(word);
    }
    let mut out = alloc::string::String::with_capacity(word.len() + 2);
    let _ = write_word(&mut out, word);
    alloc::borrow::Cow::Owned(out)
}

/// A namespace name that minimega accepts: letters, digits, `-`, `_` and
/// `.` (the daemon's `^[a-zA-Z0-9-_.]+$`).
///
/// ```
/// use vmwire_proto::minimega::Namespace;
/// assert!(Namespace::new("exp-1.a_b").is_ok());
/// assert!(Namespace::new("bad/name").is_err());
/// assert!(Namespace::new("").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace<'a>(&'a str);

impl<'a> Namespace<'a> {
    /// Checks `name` against minimega's rule.
    pub fn new(name: &'a str) -> Result<Self, Error> {
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid { Ok(Namespace(name)) } else { Err(Error::InvalidNamespace) }
    }

    /// The name.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The prefix that runs one command in this namespace, trailing space
    /// included: `namespace "NAME" ` (quoted as minimega's own `-attach` does;
    /// a valid name never needs escapes).
    pub(crate) fn write_prefix<B: LineBuf + ?Sized>(&self, out: &mut B) -> Result<(), Full> {
        out.push_str("namespace \"")?;
        out.push_str(self.0)?;
        out.push_str("\" ")
    }
}

impl fmt::Display for Namespace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Where a line stands with respect to commands that change daemon-wide state.
///
/// minimega has commands whose effect reaches every client: a bare
/// `namespace NAME` switches the active namespace, and a bare output-mode
/// command (`.json true`, `.csv true`, `.headers false`, …) or alias change
/// is sticky for everyone. With a command after them they apply to that one
/// command only. The builder follows the words as they are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Expecting a command.
    Start,
    /// After an output-mode word: its argument comes next.
    Mode(&'static str),
    /// After an output mode and its argument: the command it applies to comes next.
    ModeArgument(&'static str),
    /// After `namespace`: alone it lists the namespaces.
    Namespace,
    /// After `namespace NAME`: alone it switches the active namespace.
    NamespaceName,
    /// After `.alias` or `.unalias`: alone it lists the aliases.
    Alias(&'static str),
    /// `.alias X=Y` or `.unalias X`: changes every client's aliases.
    AliasChange(&'static str),
    /// An ordinary command.
    Body,
}

/// The output modes and flags of minimega's CLI; each takes one argument and
/// then, optionally, the command it applies to.
const MODES: [&str; 9] =
    [".json", ".csv", ".headers", ".annotate", ".sort", ".compress", ".record", ".filter", ".columns"];

/// The longest word [`Scan`] tells apart (`.annotate`, `namespace`, …);
/// longer words are handed to it as `""`, which names nothing either.
const KEYWORD_MAX: usize = 16;

/// A line that minimega's lexer refuses (an open quote, a bad escape).
struct LexError;

/// Splits `line` into words as minimega's lexer does, handing each to
/// `word`: white space (Go's `unicode.IsSpace`) separates words; `"…"` and
/// `'…'` quote, also in the middle of a word; a backslash escapes `r n t \ "
/// ' #`, inside quotes or out; `#` outside quotes starts a comment. Words
/// longer than [`KEYWORD_MAX`] bytes come out as `""`.
fn lex(line: &str, mut word: impl FnMut(&str)) -> Result<(), LexError> {
    let mut current = heapless::String::<KEYWORD_MAX>::new();
    let mut long = false;
    // A quote was closed in this word: it is a word even if empty.
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut emit = |current: &mut heapless::String<KEYWORD_MAX>, long: &mut bool| {
        word(if *long { "" } else { current.as_str() });
        current.clear();
        *long = false;
    };
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let push = match (quote, c) {
            (_, '\\') => match chars.next().ok_or(LexError)? {
                'r' => '\r',
                'n' => '\n',
                't' => '\t',
                e @ ('\\' | '"' | '\'' | '#') => e,
                _ => return Err(LexError),
            },
            (Some(q), c) if c == q => {
                quote = None;
                quoted = true;
                continue;
            }
            (Some(_), c) => c,
            (None, '"' | '\'') => {
                quote = Some(c);
                continue;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if !current.is_empty() || long || quoted {
                    emit(&mut current, &mut long);
                    quoted = false;
                }
                continue;
            }
            (None, c) => c,
        };
        if current.push(push).is_err() {
            long = true;
        }
    }
    if quote.is_some() {
        return Err(LexError);
    }
    if !current.is_empty() || long || quoted {
        emit(&mut current, &mut long);
    }
    Ok(())
}

impl Scan {
    fn next(self, word: &str) -> Scan {
        match self {
            Scan::Start => {
                if let Some(mode) = MODES.iter().find(|m| m.eq_ignore_ascii_case(word)) {
                    Scan::Mode(mode)
                } else if word.eq_ignore_ascii_case("namespace") {
                    Scan::Namespace
                } else if word.eq_ignore_ascii_case(".alias") {
                    Scan::Alias(".alias")
                } else if word.eq_ignore_ascii_case(".unalias") {
                    Scan::Alias(".unalias")
                } else {
                    Scan::Body
                }
            }
            Scan::Mode(mode) => Scan::ModeArgument(mode),
            Scan::ModeArgument(_) | Scan::NamespaceName => Scan::Start.next(word),
            Scan::Namespace => Scan::NamespaceName,
            Scan::Alias(command) | Scan::AliasChange(command) => Scan::AliasChange(command),
            Scan::Body => Scan::Body,
        }
    }

    fn finish(self) -> Result<(), Error> {
        match self {
            Scan::Start => Err(Error::Empty { what: "command line" }),
            // Alone, a mode only shows its setting (`.annotate` says `true`).
            Scan::Mode(_) => Ok(()),
            Scan::ModeArgument(mode) => Err(Error::BareOutputMode { mode }),
            Scan::NamespaceName => Err(Error::BareNamespace),
            Scan::AliasChange(command) => Err(Error::DaemonWide { command }),
            Scan::Namespace | Scan::Alias(_) | Scan::Body => Ok(()),
        }
    }
}

/// Builds one command line: command words as written, then arguments quoted
/// so that each stays one word. It never produces a line that changes
/// daemon-wide state (a bare `namespace NAME`, a bare output mode such as
/// `.json true`, an alias change): [`CommandLine::finish`] refuses them.
///
/// ```
/// use vmwire_proto::minimega::{CommandLine, Error, Namespace};
///
/// let line = CommandLine::new("vm config disk").arg("/images/my disk.qcow2").finish()?;
/// assert_eq!(line, r#"vm config disk "/images/my disk.qcow2""#);
///
/// let ns = Namespace::new("exp1")?;
/// let line = CommandLine::namespaced(&ns, "vm launch kvm").arg("web[1-3]").finish()?;
/// assert_eq!(line, r#"namespace "exp1" vm launch kvm web[1-3]"#);
///
/// // One-shot modes are fine; bare ones would change what every client sees.
/// assert!(CommandLine::new(".json true vm info").finish().is_ok());
/// assert_eq!(CommandLine::new(".json true").finish(), Err(Error::BareOutputMode { mode: ".json" }));
/// assert_eq!(CommandLine::new("namespace").arg("other").finish(), Err(Error::BareNamespace));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CommandLine<B> {
    buf: B,
    scan: Scan,
    error: Option<Error>,
}

#[cfg(feature = "alloc")]
impl CommandLine<alloc::string::String> {
    /// A line in a `String`, starting with `command`: words such as
    /// `vm config disk`, written as they are (see [`CommandLine::new_in`]).
    pub fn new(command: &str) -> Self {
        Self::new_in(alloc::string::String::new(), command)
    }

    /// A line that runs `command` in namespace `ns` (`namespace "NAME" …`).
    pub fn namespaced(ns: &Namespace<'_>, command: &str) -> Self {
        Self::namespaced_in(alloc::string::String::new(), ns, command)
    }
}

impl<B: LineBuf> CommandLine<B> {
    /// A line in `buf` (which should be empty), starting with `command`.
    ///
    /// `command` is the command's own words, such as `vm config disk`,
    /// separated by white space and written as they are; it must not hold
    /// quotes, backslashes or `#` ([`Error::NotPlain`]): anything that needs
    /// quoting goes in through [`CommandLine::arg`].
    pub fn new_in(buf: B, command: &str) -> Self {
        let mut line = CommandLine { buf, scan: Scan::Start, error: None };
        line.push_command(command);
        line
    }

    /// Like [`CommandLine::new_in`], in namespace `ns`.
    pub fn namespaced_in(buf: B, ns: &Namespace<'_>, command: &str) -> Self {
        let mut line = CommandLine { buf, scan: Scan::NamespaceName, error: None };
        if let Err(full) = ns.write_prefix(&mut line.buf) {
            line.error = Some(Error::LineFull(full));
        }
        line.push_command(command);
        line
    }

    fn push_command(&mut self, command: &str) {
        if command.contains(['"', '\'', '\\', '#']) {
            self.error.get_or_insert(Error::NotPlain);
            return;
        }
        for word in command.split_whitespace() {
            self.push(word, false);
        }
    }

    fn push(&mut self, word: &str, quoted: bool) {
        if self.error.is_some() {
            return;
        }
        let separator = if self.buf.as_str().is_empty() || self.buf.as_str().ends_with(' ') { "" } else { " " };
        let written = self
            .buf
            .push_str(separator)
            .and_then(|()| if quoted { write_word(&mut self.buf, word) } else { self.buf.push_str(word) });
        match written {
            Ok(()) => self.scan = self.scan.next(word),
            Err(full) => self.error = Some(Error::LineFull(full)),
        }
    }

    /// Appends one argument, quoted if it needs to be to stay one word.
    #[must_use]
    pub fn arg(mut self, word: impl AsRef<str>) -> Self {
        self.push(word.as_ref(), true);
        self
    }

    /// Appends each of `words` as one argument.
    #[must_use]
    pub fn args<I>(mut self, words: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for word in words {
            self.push(word.as_ref(), true);
        }
        self
    }

    /// The finished line; an error if a buffer filled up, if the command
    /// words were not plain, or if the line would change daemon-wide state.
    pub fn finish(self) -> Result<B, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.scan.finish()?;
        Ok(self.buf)
    }
}

/// Checks a whole command line, written by hand and read as minimega's
/// lexer reads it (quotes, backslash escapes, `#` comments), against the
/// rule [`CommandLine::finish`] applies (the same guard, for a line not built
/// with [`CommandLine`]): an error for a line that would
/// change daemon-wide state (a bare `namespace NAME`, a bare output mode,
/// an alias change), or that holds no command at all. A line that does
/// not lex is let through: the daemon refuses it whole, with its reason.
///
/// ```
/// use vmwire_proto::minimega::{Error, check_line};
///
/// assert!(check_line(r#"echo "namespace x" # namespace y"#).is_ok());
/// assert!(check_line(".annotate false vm info").is_ok());
/// assert_eq!(check_line(".annotate false"), Err(Error::BareOutputMode { mode: ".annotate" }));
/// assert_eq!(check_line("  NameSpace 'exp2'"), Err(Error::BareNamespace));
/// assert_eq!(check_line(".alias v=vm"), Err(Error::DaemonWide { command: ".alias" }));
/// ```
pub fn check_line(line: &str) -> Result<(), Error> {
    let mut scan = Scan::Start;
    if lex(line, |word| scan = scan.next(word)).is_err() {
        return Ok(());
    }
    scan.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reads_a_line_as_minimegas_lexer_does() {
        let refused = check_line;
        for line in [
            "namespace exp2",
            "namespace \"exp2\"",
            "nam\"espace\" exp2",
            "namespace exp2 # comment",
            "namespace 'ex p'",
        ] {
            assert_eq!(refused(line), Err(Error::BareNamespace), "{line}");
        }
        for line in [".annotate false", ".json true", ".JSON TRUE", ".csv\ttrue", ".headers false # x"] {
            assert!(matches!(refused(line), Err(Error::BareOutputMode { .. })), "{line}");
        }
        assert_eq!(refused(".alias v=vm"), Err(Error::DaemonWide { command: ".alias" }));
        assert_eq!(refused(".unalias v"), Err(Error::DaemonWide { command: ".unalias" }));
        assert_eq!(refused("# namespace exp2"), Err(Error::Empty { what: "command line" }));
        assert_eq!(refused("  "), Err(Error::Empty { what: "command line" }));
        // Fine: one-shot modes, namespaced commands, listings, quoted words
        // that only look like commands, and lines the daemon refuses anyway.
        for line in [
            "vm info",
            ".annotate false vm info",
            "namespace exp2 vm info",
            "namespace",
            ".annotate",
            ".JSON # what is it?",
            ".alias",
            "echo namespace exp2",
            "\"namespace exp2\"",
            "namespaceeeeeeeeeeeeeeeeeeee exp2",
            "namespace \"exp2",
            "namespace exp2 \\x",
        ] {
            assert_eq!(refused(line), Ok(()), "{line}");
        }
    }
}
