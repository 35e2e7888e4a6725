//! JSON as Go's `encoding/json` reads and writes it: the daemon's request
//! decoder and its frame encoder. Written from Go's documented behaviour,
//! independently of vmwire's own JSON code, so that the fake is an oracle
//! rather than a mirror.
//!
//! Decoding (`json.Decoder`): values come one after another with optional
//! white space between them and no other framing; the grammar is strict
//! RFC 8259; invalid UTF-8 inside a string becomes U+FFFD (one per bad
//! byte), as does a lone surrogate escape.
//!
//! Encoding (`json.Encoder`): compact; `<`, `>`, `&` as `\u003c`, `\u003e`,
//! `\u0026`; U+2028 and U+2029 escaped; `\n \r \t \b \f` and `\" \\` short,
//! other control characters `\u00XX`; every other character raw; a `\n`
//! after each value.

/// A decoded JSON value; object members keep their order and duplicates.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Null,
    Bool(bool),
    /// The number's text.
    Number(String),
    String(String),
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>),
}

/// What [`decode`] found at the start of its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A value, and how many bytes it took (leading white space included).
    Value(GoValue, usize),
    /// Only white space so far (or nothing).
    Empty,
    /// A value has begun and not ended.
    Incomplete,
    /// Not JSON: Go's decoder fails here.
    Invalid(String),
}

struct Parser<'a> {
    d: &'a [u8],
    i: usize,
}

enum Fail {
    Incomplete,
    Invalid(String),
}

type R<T> = Result<T, Fail>;

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.d.get(self.i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn byte(&self) -> R<u8> {
        self.d.get(self.i).copied().ok_or(Fail::Incomplete)
    }

    fn invalid<T>(&self, what: &str) -> R<T> {
        Err(Fail::Invalid(format!("invalid character at offset {}: {what}", self.i)))
    }

    fn value(&mut self) -> R<GoValue> {
        self.ws();
        match self.byte()? {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.byte()? == b'}' {
                    self.i += 1;
                    return Ok(GoValue::Object(members));
                }
                loop {
                    self.ws();
                    if self.byte()? != b'"' {
                        return self.invalid("looking for beginning of object key string");
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.byte()? != b':' {
                        return self.invalid("after object key");
                    }
                    self.i += 1;
                    let value = self.value()?;
                    members.push((key, value));
                    self.ws();
                    match self.byte()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Ok(GoValue::Object(members));
                        }
                        _ => return self.invalid("after object key:value pair"),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.byte()? == b']' {
                    self.i += 1;
                    return Ok(GoValue::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.byte()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(GoValue::Array(items));
                        }
                        _ => return self.invalid("after array element"),
                    }
                }
            }
            b'"' => self.string().map(GoValue::String),
            b't' => self.literal(b"true", GoValue::Bool(true)),
            b'f' => self.literal(b"false", GoValue::Bool(false)),
            b'n' => self.literal(b"null", GoValue::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.invalid("looking for beginning of value"),
        }
    }

    fn literal(&mut self, text: &[u8], value: GoValue) -> R<GoValue> {
        for &want in text {
            match self.d.get(self.i) {
                None => return Err(Fail::Incomplete),
                Some(&b) if b == want => self.i += 1,
                Some(_) => return self.invalid("in literal"),
            }
        }
        Ok(value)
    }

    fn number(&mut self) -> R<GoValue> {
        let start = self.i;
        let digits = |p: &mut Self| -> R<usize> {
            let from = p.i;
            while matches!(p.d.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            Ok(p.i - from)
        };
        if self.byte()? == b'-' {
            self.i += 1;
        }
        match self.byte()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self)?;
            }
            _ => return self.invalid("in numeric literal"),
        }
        if self.d.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self)? == 0 {
                return if self.i == self.d.len() {
                    Err(Fail::Incomplete)
                } else {
                    self.invalid("after decimal point")
                };
            }
        }
        if matches!(self.d.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.d.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self)? == 0 {
                return if self.i == self.d.len() { Err(Fail::Incomplete) } else { self.invalid("in exponent") };
            }
        }
        // A number at the very end of the input may go on in the next read.
        if self.i == self.d.len() {
            return Err(Fail::Incomplete);
        }
        Ok(GoValue::Number(String::from_utf8_lossy(&self.d[start..self.i]).into_owned()))
    }

    fn hex4(&mut self) -> R<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let b = self.byte()?;
            let d = (b as char).to_digit(16).ok_or(()).or_else(|()| self.invalid("in \\u hexadecimal escape"))?;
            v = v * 16 + d;
            self.i += 1;
        }
        Ok(v)
    }

    /// A string at `"`; invalid UTF-8 and lone surrogates become U+FFFD.
    fn string(&mut self) -> R<String> {
        self.i += 1;
        let mut raw: Vec<u8> = Vec::new();
        loop {
            let b = self.byte()?;
            match b {
                b'"' => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy_per_byte(&raw));
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.byte()?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let unit = self.hex4()?;
                            if (0xD800..0xDC00).contains(&unit) && self.d.get(self.i..self.i + 2) == Some(b"\\u") {
                                let save = self.i;
                                self.i += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                                        .unwrap_or('\u{FFFD}')
                                } else {
                                    self.i = save;
                                    '\u{FFFD}'
                                }
                            } else if (0xD800..0xDC00).contains(&unit) && self.i + 2 > self.d.len() {
                                // The low half may still come.
                                return Err(Fail::Incomplete);
                            } else {
                                char::from_u32(unit).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return self.invalid("in string escape code"),
                    };
                    raw.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..=0x1f => return self.invalid("in string literal"),
                _ => {
                    raw.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

trait LossyPerByte {
    fn from_utf8_lossy_per_byte(bytes: &[u8]) -> String;
}

impl LossyPerByte for String {
    /// Go's `utf8.DecodeRune` replaces each byte of an invalid sequence
    /// with U+FFFD (Rust's `from_utf8_lossy` can fold a truncated sequence
    /// into one).
    fn from_utf8_lossy_per_byte(mut bytes: &[u8]) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    out.push_str(s);
                    return out;
                }
                Err(e) => {
                    let (good, rest) = bytes.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    out.push('\u{FFFD}');
                    bytes = &rest[1..];
                }
            }
        }
    }
}

/// Decodes the first JSON value of `input`, as one call to Go's
/// `Decoder.Decode` would; `at_eof` says no more input will come.
pub fn decode(input: &[u8], at_eof: bool) -> Decoded {
    let mut p = Parser { d: input, i: 0 };
    p.ws();
    if p.i == input.len() {
        return Decoded::Empty;
    }
    match p.value() {
        Ok(v) => Decoded::Value(v, p.i),
        // A number that ends the input is complete once the input has ended.
        Err(Fail::Incomplete) if at_eof && input[p.i.min(input.len() - 1)].is_ascii_digit() => {
            let mut q = Parser { d: &[input, b" "].concat(), i: 0 };
            match q.value() {
                Ok(v) => Decoded::Value(v, input.len()),
                Err(_) => Decoded::Invalid("unexpected EOF".into()),
            }
        }
        Err(Fail::Incomplete) if at_eof => Decoded::Invalid("unexpected EOF".into()),
        Err(Fail::Incomplete) => Decoded::Incomplete,
        Err(Fail::Invalid(e)) => Decoded::Invalid(e),
    }
}

/// Appends `s` as Go's encoder writes a string (HTML-safe).
pub fn string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\0'..='\u{1f}' => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xF)] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a Go-encoded JSON string.
pub fn quoted(s: &str) -> String {
    let mut out = String::new();
    string(&mut out, s);
    out
}

/// Appends `v` as Go's encoder writes it (compact).
pub fn value(out: &mut String, v: &GoValue) {
    match v {
        GoValue::Null => out.push_str("null"),
        GoValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        GoValue::Number(n) => out.push_str(n),
        GoValue::String(s) => string(out, s),
        GoValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, item);
            }
            out.push(']');
        }
        GoValue::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                value(out, item);
            }
            out.push('}');
        }
    }
}

/// Go's folding of a member name for case-insensitive matching: ASCII
/// letters to upper case, and every other character to the smallest of its
/// Unicode fold set (of which only `ſ` → `S` and `K` (Kelvin) → `K` reach
/// ASCII).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{17F}' => 'S',
            '\u{212A}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

#[test]
fn decodes_as_go_does() {
    let Decoded::Value(v, n) = decode(b" {\"a\":[1,true,null,\"x\\u00e9\"]}{", false) else { panic!() };
    assert_eq!(n, 30);
    assert_eq!(
        v,
        GoValue::Object(vec![(
            "a".into(),
            GoValue::Array(vec![
                GoValue::Number("1".into()),
                GoValue::Bool(true),
                GoValue::Null,
                GoValue::String("xé".into())
            ])
        )])
    );
    assert_eq!(decode(b"{\"a\":", false), Decoded::Incomplete);
    assert!(matches!(decode(b"{\"a\":", true), Decoded::Invalid(_)));
    assert!(matches!(decode(b"{\"Command\": version}", false), Decoded::Invalid(_)));
    assert_eq!(decode(b"  \n", false), Decoded::Empty);
    let Decoded::Value(GoValue::String(s), _) = decode(b"\"\xff\xfe \\ud800x\"", false) else { panic!() };
    assert_eq!(s, "\u{FFFD}\u{FFFD} \u{FFFD}x");
    assert!(matches!(decode(b"12", true), Decoded::Value(GoValue::Number(_), 2)));
    assert_eq!(decode(b"12", false), Decoded::Incomplete);
}

#[test]
fn encodes_as_go_does() {
    assert_eq!(quoted("<b>&\"\\\n\t\u{1}\u{2028}é"), "\"\\u003cb\\u003e\\u0026\\\"\\\\\\n\\t\\u0001\\u2028é\"");
    assert_eq!(fold("ſuggest"), fold("Suggest"));
}
