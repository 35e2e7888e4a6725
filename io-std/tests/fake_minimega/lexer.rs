//! minimega's command-line lexer, written from its documented rules
//! (`docs/reference/minimega-protocol.md`, minicli's `input.go`), not from
//! vmwire's builder:
//!
//! - words are split on white space (Go's `unicode.IsSpace`, which is
//!   Rust's `char::is_whitespace`);
//! - `"…"` and `'…'` quote; a quote can start or end in the middle of a word
//!   (`a"b c"d` is one word), and `""` is an empty word;
//! - a backslash escapes `r`, `n`, `t`, `\`, `"`, `'` and `#`, inside quotes
//!   or out; any other escaped character is an error;
//! - `#` outside quotes ends the line (a comment).

/// Why a line does not lex, in minimega's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    /// A quote without its closing quote: `missing terminal "`.
    MissingTerminal(char),
    /// A backslash at the end of the line.
    ExpectedEscape,
    /// A backslash before a character that has no escape.
    UnexpectedEscape(char),
}

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LexError::MissingTerminal(q) => write!(f, "missing terminal {q}"),
            LexError::ExpectedEscape => f.write_str("expected escape character"),
            LexError::UnexpectedEscape(c) => write!(f, "unexpected escaped character: {c}"),
        }
    }
}

/// Splits `line` into words as minimega does.
pub fn lex(line: &str) -> Result<Vec<String>, LexError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A quote was closed in this word: emit it even if empty.
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let escaped = chars.next().ok_or(LexError::ExpectedEscape)?;
                word.push(match escaped {
                    'r' => '\r',
                    'n' => '\n',
                    't' => '\t',
                    '\\' | '"' | '\'' | '#' => escaped,
                    other => return Err(LexError::UnexpectedEscape(other)),
                });
            }
            (Some(q), c) if c == q => {
                quote = None;
                quoted = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() || quoted {
                    words.push(std::mem::take(&mut word));
                    quoted = false;
                }
            }
            (None, c) => word.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(LexError::MissingTerminal(q));
    }
    if !word.is_empty() || quoted {
        words.push(word);
    }
    Ok(words)
}

#[test]
fn lexes_as_the_captures_show() {
    assert_eq!(lex("echo \"a b\" c\\td 'e f'").unwrap(), ["echo", "a b", "c\td", "e f"]);
    assert_eq!(lex("echo a\\\"b").unwrap(), ["echo", "a\"b"]);
    assert_eq!(lex("echo é\u{2028}").unwrap(), ["echo", "é"]);
    assert_eq!(lex("echo \"oops").unwrap_err().to_string(), "missing terminal \"");
    assert_eq!(lex("   ").unwrap(), Vec::<String>::new());
    assert_eq!(lex("# only a comment").unwrap(), Vec::<String>::new());
    assert_eq!(lex("a\"b c\"d '' x#y").unwrap(), ["ab cd", "", "x"]);
    assert_eq!(lex("a\\#b \"#\"").unwrap(), ["a#b", "#"]);
    assert_eq!(lex("a\\x").unwrap_err(), LexError::UnexpectedEscape('x'));
    assert_eq!(lex("a\\").unwrap_err(), LexError::ExpectedEscape);
}
