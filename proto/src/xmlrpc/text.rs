//! XML character data, borrowed and decoded on request: entity and
//! character references, CDATA sections, comments, and line ends.

use core::fmt;

use crate::buf::Full;

/// The text of a string (or a member name, or a method name) as it stands in
/// the document: references undecoded, CDATA sections and comments in place.
///
/// Compare it with `==` against a `&str` (decoded on the fly), print it with
/// `Display` (decoded), borrow it with [`XmlStr::as_str`] when there is
/// nothing to decode, or decode it into a buffer or a `String`.
///
/// ```
/// use vmwire_proto::xmlrpc::{self, Value};
/// let doc = b"<methodResponse><params><param><value>caf\xc3\xa9 &lt;&amp;&gt; &#x2603;</value></param></params></methodResponse>";
/// let response = xmlrpc::parse_response(doc)?;
/// let Some(Value::String(s)) = response.params().and_then(|p| p.first()) else { panic!() };
/// assert!(s == "café <&> ☃");
/// assert_eq!(s.as_str(), None); // it has references: borrow impossible, decode instead
/// let mut buf = [0u8; 32];
/// assert_eq!(s.unescape_into(&mut buf)?, "café <&> ☃");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct XmlStr<'a> {
    raw: &'a str,
}

impl<'a> XmlStr<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        XmlStr { raw }
    }

    /// The text exactly as it stands in the document.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether decoding changes anything (a reference, a CDATA section, a
    /// comment, or a carriage return).
    pub fn needs_decoding(&self) -> bool {
        super::grammar::find_any(self.raw.as_bytes(), [b'&', b'<', b'\r']).is_some()
    }

    /// The text itself, borrowed, when there is nothing to decode.
    pub fn as_str(&self) -> Option<&'a str> {
        (!self.needs_decoding()).then_some(self.raw)
    }

    /// The decoded text in pieces: borrowed runs and single decoded characters.
    pub fn chunks(&self) -> Chunks<'a> {
        Chunks { rest: self.raw, cdata: None }
    }

    /// Decodes into `buf`; [`Full`] if it does not fit.
    pub fn unescape_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, Full> {
        crate::json::chunks_into(self.chunks(), buf)
    }

    /// Decodes into a `String` (borrowing when there is nothing to decode).
    #[cfg(feature = "alloc")]
    pub fn to_cow(&self) -> alloc::borrow::Cow<'a, str> {
        match self.as_str() {
            Some(s) => alloc::borrow::Cow::Borrowed(s),
            None => alloc::borrow::Cow::Owned(alloc::string::ToString::to_string(self)),
        }
    }
}

impl PartialEq<str> for XmlStr<'_> {
    fn eq(&self, other: &str) -> bool {
        match self.as_str() {
            Some(s) => s == other,
            None => crate::json::chunks_eq(self.chunks(), other),
        }
    }
}

impl PartialEq<&str> for XmlStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl fmt::Display for XmlStr<'_> {
    /// The decoded text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::json::chunks_fmt(self.chunks(), f)
    }
}

impl fmt::Debug for XmlStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw)
    }
}

pub use crate::json::Chunk;

/// Iterator over an [`XmlStr`]'s decoded pieces.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    rest: &'a str,
    /// The rest of a CDATA section being read (no references inside).
    cdata: Option<&'a str>,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        loop {
            if let Some(cdata) = self.cdata {
                if cdata.is_empty() {
                    self.cdata = None;
                    continue;
                }
                let (chunk, rest) = line_ends(cdata, memchr::memchr(b'\r', cdata.as_bytes()));
                self.cdata = Some(rest);
                return Some(chunk);
            }
            let raw = self.rest;
            let bytes = raw.as_bytes();
            let first = *bytes.first()?;
            match first {
                b'&' => {
                    let (c, used) = reference(bytes).unwrap_or(('\u{FFFD}', 1));
                    self.rest = raw.get(used..).unwrap_or_default();
                    return Some(Chunk::Char(c));
                }
                b'<' => {
                    // Markup inside text: a CDATA section, a comment or a
                    // processing instruction (anything else ends the text).
                    if let Some(inner) = raw.strip_prefix("<![CDATA[") {
                        let end = memchr::memmem::find(inner.as_bytes(), b"]]>").unwrap_or(inner.len());
                        self.cdata = Some(inner.get(..end).unwrap_or_default());
                        self.rest = inner.get(end + 3..).unwrap_or_default();
                    } else if let Some(inner) = raw.strip_prefix("<!--") {
                        let end = memchr::memmem::find(inner.as_bytes(), b"-->").map_or(inner.len(), |e| e + 3);
                        self.rest = inner.get(end..).unwrap_or_default();
                    } else if let Some(inner) = raw.strip_prefix("<?") {
                        let end = memchr::memmem::find(inner.as_bytes(), b"?>").map_or(inner.len(), |e| e + 2);
                        self.rest = inner.get(end..).unwrap_or_default();
                    } else {
                        self.rest = "";
                        return None;
                    }
                }
                _ => {
                    let stop = memchr::memchr3(b'&', b'<', b'\r', bytes);
                    let (chunk, rest) = line_ends(raw, stop);
                    self.rest = rest;
                    return Some(chunk);
                }
            }
        }
    }
}

/// The run of `s` before `stop`, or, when `s` starts with a carriage return,
/// the `\n` it stands for (a CR LF pair and a lone CR are both one line end).
fn line_ends(s: &str, stop: Option<usize>) -> (Chunk<'_>, &str) {
    match stop {
        Some(0) if s.starts_with('\r') => {
            let used = if s.as_bytes().get(1) == Some(&b'\n') { 2 } else { 1 };
            (Chunk::Char('\n'), s.get(used..).unwrap_or_default())
        }
        Some(n) => (Chunk::Str(s.get(..n).unwrap_or_default()), s.get(n..).unwrap_or_default()),
        None => (Chunk::Str(s), ""),
    }
}

/// Decodes the reference at the start of `bytes` (`&lt;`, `&#233;`,
/// `&#xE9;`, …): the character and how many bytes it took. `None` if it is
/// not a valid reference.
pub(crate) fn reference(bytes: &[u8]) -> Option<(char, usize)> {
    let body = bytes.get(1..)?;
    let semi = body.iter().take(12).position(|&b| b == b';')?;
    let name = body.get(..semi)?;
    let c = match name {
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        [b'#', b'x', hex @ ..] => char::from_u32(number(hex, 16)?)?,
        [b'#', dec @ ..] => char::from_u32(number(dec, 10)?)?,
        _ => return None,
    };
    Some((c, semi + 2))
}

fn number(digits: &[u8], radix: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| Some(n * radix + char::from(d).to_digit(radix)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn decodes_references_cdata_comments_and_line_ends() {
        let s = XmlStr::new("a&lt;b&#65;&#x1F600;\r\nc\rd<!-- no -->e<![CDATA[<&>\r\n]]>f<?pi x?>g");
        assert_eq!(s.to_string(), "a<bA😀\nc\nde<&>\nfg");
        assert!(s == "a<bA😀\nc\nde<&>\nfg");
        assert!(s != "a<bA😀\nc\nde<&>\nf");
        assert_eq!(XmlStr::new("plain").as_str(), Some("plain"));
        assert_eq!(XmlStr::new("x&amp;").as_str(), None);
    }

    #[test]
    fn references() {
        assert_eq!(reference(b"&amp;rest"), Some(('&', 5)));
        assert_eq!(reference(b"&#0;"), Some(('\0', 4)));
        assert_eq!(reference(b"&#xD800;"), None);
        assert_eq!(reference(b"&#x110000;"), None);
        assert_eq!(reference(b"&nbsp;"), None);
        assert_eq!(reference(b"&#;"), None);
        assert_eq!(reference(b"&lt"), None);
    }
}
