//! Heads: finding where one ends, parsing it with httparse, and reading the
//! header fields that decide how the body is framed.

use core::fmt;
use core::ops::Range;

use super::{Error, Limits, MAX_HEADERS};

/// The HTTP version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: one exchange per connection unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Self {
        if minor == 0 { Version::Http10 } else { Version::Http11 }
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A message's header fields, borrowed from the receive buffer (already
/// validated by httparse). Names compare case-insensitively.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    raw: &'a [u8],
}

impl<'a> Headers<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Headers { raw }
    }

    /// The fields in order, as `(name, value)`; values are trimmed of
    /// surrounding white space.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.raw }
    }

    /// The value of the first field named `name` (any case).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// [`Headers::get`] as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The head's raw header lines.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(n, v)| (n, core::str::from_utf8(v).unwrap_or("<binary>")))).finish()
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let end = memchr::memchr(b'\n', self.rest).unwrap_or(self.rest.len());
            let (line, rest) = self.rest.split_at(end);
            self.rest = rest.get(1..).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if self.rest.is_empty() {
                    return None;
                }
                continue;
            }
            let colon = memchr::memchr(b':', line)?;
            let (name, value) = line.split_at(colon);
            let name = core::str::from_utf8(name).ok()?;
            return Some((name, trim(value.get(1..).unwrap_or_default())));
        }
    }
}

/// The header fields that carry credentials: what a recording or a log
/// must not keep.
const CREDENTIAL_FIELDS: [&str; 2] = ["Authorization", "Proxy-Authorization"];

/// Where, in `head` (a message's head, up to its empty line), the values of
/// its `Authorization` and `Proxy-Authorization` fields stand: the byte
/// ranges a recorder blanks out.
///
/// ```
/// use vmwire_proto::http::credential_spans;
/// let head = b"POST / HTTP/1.1\r\nHost: x\r\nauthorization:  Basic cm9vdDpzZWNyZXQ=\r\n\r\n";
/// let spans: Vec<_> = credential_spans(head).collect();
/// assert_eq!(&head[spans[0].clone()], b"Basic cm9vdDpzZWNyZXQ=");
/// ```
pub fn credential_spans(head: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    head.split(|&b| b == b'\n').filter_map(move |line| {
        let colon = memchr::memchr(b':', line)?;
        let name = line.get(..colon)?;
        if !CREDENTIAL_FIELDS.iter().any(|field| field.as_bytes().eq_ignore_ascii_case(name)) {
            return None;
        }
        crate::span_in(head, trim(line.get(colon + 1..)?.trim_ascii_end()))
    })
}

/// The length of the head `message` begins with, to just past its empty
/// line (CRLF or a bare LF, as this crate's machines take either); `None`
/// if the empty line has not arrived.
///
/// ```
/// use vmwire_proto::http::head_len;
/// assert_eq!(head_len(b"POST / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(28));
/// assert_eq!(head_len(b"POST / HTTP/1.1\nHost: x\n\nbody"), Some(25));
/// assert_eq!(head_len(b"POST / HTTP/1.1\r\nHost: x\r\n"), None);
/// ```
pub fn head_len(message: &[u8]) -> Option<usize> {
    head_end(message, &mut 0)
}

/// Trims HTTP's optional white space (spaces and tabs).
pub(crate) fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether `data`, what has arrived of a response, can begin one: a
/// status line begins `HTTP/`. Anything else is another protocol (a guest
/// agent answering each stray byte with a line of JSON, a QMP greeting),
/// which would never end a head: told from its first byte, not the time limit.
pub(crate) fn may_begin_response(data: &[u8]) -> bool {
    b"HTTP/".starts_with(data.get(..5).unwrap_or(data))
}

/// Where the head that starts `data` ends (just past the empty line), or
/// `None` if it has not all arrived. `scanned` remembers how far previous
/// calls looked, so that a head arriving byte by byte costs linear time.
pub(crate) fn head_end(data: &[u8], scanned: &mut usize) -> Option<usize> {
    let mut i = *scanned;
    while let Some(k) = data.get(i..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let nl = i + k;
        match (data.get(nl + 1), data.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            (None, _) | (Some(b'\r'), None) => {
                *scanned = nl;
                return None;
            }
            _ => i = nl + 1,
        }
    }
    *scanned = data.len();
    None
}

/// What the header fields say about the body and the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` was present.
    pub transfer_encoding: bool,
    /// …and its last coding is `chunked`.
    pub chunked: bool,
    /// …and it names a coding other than `chunked`.
    pub other_coding: bool,
    pub close: bool,
    pub keep_alive: bool,
    pub gzip: bool,
    pub unknown_encoding: bool,
    pub expect_continue: bool,
}

impl Fields {
    fn read(headers: &[httparse::Header<'_>]) -> Result<Self, Error> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                for part in tokens(h.value) {
                    let n = parse_decimal(part).ok_or(Error::BadContentLength)?;
                    if f.content_length.is_some_and(|m| m != n) {
                        return Err(Error::BadContentLength);
                    }
                    f.content_length = Some(n);
                }
                if f.content_length.is_none() {
                    return Err(Error::BadContentLength);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in tokens(h.value) {
                    f.transfer_encoding = true;
                    let coding = coding.split(|&b| b == b';').next().map(trim).unwrap_or_default();
                    f.chunked = coding.eq_ignore_ascii_case(b"chunked");
                    if !f.chunked {
                        f.other_coding = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in tokens(h.value) {
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("content-encoding") {
                for coding in tokens(h.value) {
                    if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                        // Two layers of gzip is not something a server does.
                        f.unknown_encoding |= f.gzip;
                        f.gzip = true;
                    } else if !coding.eq_ignore_ascii_case(b"identity") {
                        f.unknown_encoding = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("expect") {
                f.expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        if f.transfer_encoding && f.content_length.is_some() {
            return Err(Error::LengthAndTransferEncoding);
        }
        Ok(f)
    }
}

/// The non-empty comma-separated elements of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// A decimal number of at most 19 digits, nothing else.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A parsed response head; spans are offsets into the message.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: Range<usize>,
    pub headers: Range<usize>,
    pub fields: Fields,
}

/// A parsed request head; spans are offsets into the message.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    pub version: Version,
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub headers: Range<usize>,
    pub fields: Fields,
}

fn head_error(e: httparse::Error, limits: &Limits) -> Error {
    let what = match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => return Error::TooManyHeaders { limit: max_headers(limits) },
    };
    Error::BadHead { what }
}

fn max_headers(limits: &Limits) -> usize {
    limits.max_headers.min(MAX_HEADERS)
}

/// Where the first line ends and the header lines begin.
fn first_line(head: &[u8]) -> (usize, usize) {
    let nl = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let end = if nl > 0 && head.get(nl - 1) == Some(&b'\r') { nl - 1 } else { nl };
    (end, (nl + 1).min(head.len()))
}

/// Parses a complete response head (`head` ends with the empty line).
pub(crate) fn parse_response(head: &[u8], limits: &Limits) -> Result<ResponseHead, Error> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let table = storage.get_mut(..max_headers(limits)).unwrap_or_default();
    let mut parsed = httparse::Response::new(table);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::BadHead { what: "incomplete head" }),
        Err(e) => return Err(head_error(e, limits)),
    }
    let (line_end, headers_start) = first_line(head);
    // "HTTP/1.x NNN reason": the reason starts after the 12 bytes and a space.
    let reason = 13.min(line_end)..line_end;
    Ok(ResponseHead {
        version: Version::from_minor(parsed.version.unwrap_or(1)),
        status: parsed.code.unwrap_or(0),
        reason,
        headers: headers_start..head.len(),
        fields: Fields::read(parsed.headers)?,
    })
}

/// Parses a complete request head (`head` ends with the empty line).
pub(crate) fn parse_request(head: &[u8], limits: &Limits) -> Result<RequestHead, Error> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let table = storage.get_mut(..max_headers(limits)).unwrap_or_default();
    let mut parsed = httparse::Request::new(table);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::BadHead { what: "incomplete head" }),
        Err(e) => return Err(head_error(e, limits)),
    }
    let span = |s: &str| crate::span_in(head, s.as_bytes()).unwrap_or_default();
    let method = span(parsed.method.unwrap_or_default());
    let target = span(parsed.path.unwrap_or_default());
    let (_, headers_start) = first_line(head);
    Ok(RequestHead {
        version: Version::from_minor(parsed.version.unwrap_or(1)),
        method,
        target,
        headers: headers_start..head.len(),
        fields: Fields::read(parsed.headers)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_survives_any_split() {
        let msg = b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody";
        for cut in 0..msg.len() {
            let mut scanned = 0;
            let first = head_end(&msg[..cut], &mut scanned);
            let second = head_end(msg, &mut scanned);
            assert_eq!(first.or(second), Some(25), "cut at {cut}");
        }
        let mut scanned = 0;
        assert_eq!(head_end(b"HTTP/1.0 200 OK\nA: b\n\nx", &mut scanned), Some(22));
    }

    #[test]
    fn fields_decide_framing() {
        let limits = Limits::default();
        let h = parse_response(b"HTTP/1.1 200 OK\r\nContent-length: 5, 5\r\nConnection: Keep-Alive\r\n\r\n", &limits)
            .unwrap();
        assert_eq!(h.fields.content_length, Some(5));
        assert!(h.fields.keep_alive && !h.fields.close);
        let bad = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &limits);
        assert_eq!(bad.unwrap_err(), Error::BadContentLength);
        let both =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &limits);
        assert_eq!(both.unwrap_err(), Error::LengthAndTransferEncoding);
        let te = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &limits).unwrap();
        assert!(te.fields.chunked && te.fields.other_coding);
        let few = Limits { max_headers: 1, ..limits };
        let many = parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", &few);
        assert_eq!(many.unwrap_err(), Error::TooManyHeaders { limit: 1 });
    }

    #[test]
    fn request_spans() {
        let head = b"POST /RPC2 HTTP/1.0\r\nHost: x\r\n\r\n";
        let r = parse_request(head, &Limits::default()).unwrap();
        assert_eq!(&head[r.method], b"POST");
        assert_eq!(&head[r.target], b"/RPC2");
        assert_eq!(r.version, Version::Http10);
        let headers = Headers::new(&head[r.headers]);
        assert_eq!(headers.get("HOST"), Some(&b"x"[..]));
    }
}
