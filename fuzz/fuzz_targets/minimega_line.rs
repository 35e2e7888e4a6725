//! The minimega command-line builder on arbitrary words: whatever line it
//! emits, minimega's lexer reads back as exactly the words it was given.
//!
//! The lexer here is written from minimega's own rules (`minicli`'s input
//! lexer, `pkg/minicli/input.go`), independently of the crate's: the line is
//! trimmed of white space (Go's `unicode.IsSpace`); white space separates
//! words; `"` or `'` opens a quote that runs to the same character; a
//! backslash, inside a quote or out, takes the next character, which must be
//! one of `r n t \ " ' #` (`\r`, `\n`, `\t` stand for control characters);
//! `#` outside a quote ends the line; a closed quote makes a word even when
//! it is empty.
//!
//! Input: the first byte's low bit says whether the line is namespaced (the
//! first field is then the namespace); the rest is fields separated by NUL:
//! the command words, then one argument per field. With the first byte's
//! second bit set, the rest is a whole line as a user writes it instead:
//! `check_line`'s verdict on it must be its verdict on the same words
//! written back canonically (so `check_line` reads words as minimega
//! does), and a line minimega cannot lex is let through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::minimega::{CommandLine, Error, Namespace, check_line, write_word};

/// Go's `unicode.IsSpace`: the Latin-1 spaces, then Unicode's White_Space.
fn go_is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Why minimega's lexer refuses a line.
#[derive(Debug, PartialEq)]
enum LexError {
    MissingTerminal,
    ExpectedEscape,
    UnexpectedEscape(char),
}

/// minimega's reading of a command line, as words.
fn minimega_lex(input: &str) -> Result<Vec<String>, LexError> {
    let input = input.trim_matches(go_is_space);
    let (mut words, mut content, mut emit) = (Vec::new(), String::new(), false);
    let mut quote: Option<char> = None;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            content.push(match chars.next().ok_or(LexError::ExpectedEscape)? {
                'r' => '\r',
                'n' => '\n',
                't' => '\t',
                e @ ('\\' | '"' | '\'' | '#') => e,
                e => return Err(LexError::UnexpectedEscape(e)),
            });
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                emit = true;
            }
            Some(_) => content.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => break,
            None if go_is_space(c) => {
                if !content.is_empty() || emit {
                    words.push(std::mem::take(&mut content));
                    emit = false;
                }
            }
            None => content.push(c),
        }
    }
    if quote.is_some() {
        return Err(LexError::MissingTerminal);
    }
    if !content.is_empty() || emit {
        words.push(content);
    }
    Ok(words)
}

/// `check_line` on a line written by hand.
fn check_raw_line(line: &str) {
    let verdict = check_line(line);
    match minimega_lex(line) {
        Err(_) => assert_eq!(verdict, Ok(()), "a line minimega refuses whole is let through: {line:?}"),
        Ok(words) => {
            let mut canonical = String::new();
            for word in &words {
                if !canonical.is_empty() {
                    canonical.push(' ');
                }
                write_word(&mut canonical, word).unwrap();
            }
            assert_eq!(minimega_lex(&canonical), Ok(words.clone()));
            assert_eq!(verdict, check_line(&canonical), "{line:?} reads as {words:?}, written back {canonical:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    if flags & 2 == 2 {
        check_raw_line(&text);
        return;
    }
    let mut fields = text.split('\0');
    let ns_name = if flags & 1 == 1 { fields.next() } else { None };
    let command = fields.next().unwrap_or_default();
    let args: Vec<&str> = fields.collect();

    let namespace = ns_name.map(Namespace::new);
    let build = |line: CommandLine<String>| line.args(&args).finish();
    let built = match &namespace {
        Some(Ok(ns)) => build(CommandLine::namespaced(ns, command)),
        Some(Err(e)) => {
            assert_eq!(*e, Error::InvalidNamespace);
            assert!(ns_name.is_some_and(
                |n| n.is_empty() || n.contains(|c: char| !c.is_ascii_alphanumeric() && !"-_.".contains(c))
            ));
            return;
        }
        None => build(CommandLine::new(command)),
    };

    // The words minimega must read.
    let mut want: Vec<String> = Vec::new();
    if let Some(name) = ns_name {
        want.extend(["namespace".to_string(), name.to_string()]);
    }
    want.extend(command.split(go_is_space).filter(|w| !w.is_empty()).map(String::from));
    want.extend(args.iter().map(|a| a.to_string()));

    // The same line, put together here: prefix, command words, quoted arguments.
    let mut by_hand = String::new();
    if let Some(name) = ns_name {
        by_hand.push_str(&format!("namespace \"{name}\" "));
    }
    by_hand.push_str(&command.split(go_is_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "));
    for arg in &args {
        if !by_hand.is_empty() && !by_hand.ends_with(' ') {
            by_hand.push(' ');
        }
        write_word(&mut by_hand, arg).unwrap();
    }

    match built {
        Ok(line) => {
            assert_eq!(minimega_lex(&line), Ok(want), "minimega reads other words in {line:?}");
            assert_eq!(line, by_hand);
            assert_eq!(check_line(&line), Ok(()), "check_line refuses what the builder made: {line:?}");
            // The same line in fixed storage: the same text, or LineFull.
            let fixed = match &namespace {
                Some(Ok(ns)) => CommandLine::namespaced_in(heapless::String::<48>::new(), ns, command),
                _ => CommandLine::new_in(heapless::String::<48>::new(), command),
            };
            match fixed.args(&args).finish() {
                Ok(f) => assert_eq!(f.as_str(), line),
                Err(Error::LineFull(_)) => assert!(line.len() > 48),
                Err(e) => panic!("fixed storage: {e:?}"),
            }
        }
        Err(Error::NotPlain) => assert!(command.contains(['"', '\'', '\\', '#'])),
        Err(
            e @ (Error::Empty { .. } | Error::BareNamespace | Error::BareOutputMode { .. } | Error::DaemonWide { .. }),
        ) => {
            // Refused for what the line would do: the hand-made line reads
            // as the same words, and check_line refuses it the same way.
            assert!(!command.contains(['"', '\'', '\\', '#']));
            assert_eq!(minimega_lex(&by_hand), Ok(want), "minimega reads other words in {by_hand:?}");
            assert_eq!(check_line(&by_hand), Err(e), "check_line and the builder disagree on {by_hand:?}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
