//! Writing heads: request lines, status lines, header fields (checked, so
//! that nothing a caller passes can split a message), and `Content-Length`.

use super::Error;
use crate::buf::{Buf, Full, Sink};
use crate::json::write_u64;

/// A request's head, for [`write_request_head`].
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `POST`, `GET`, …
    pub method: &'a str,
    /// The request target, such as `/` or `/RPC2`.
    pub target: &'a str,
    /// The `Host` field: `host`, `host:port` or `[v6]:port`.
    pub host: &'a str,
    /// Further fields, in order.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Writes a request line, `Host`, the given fields and (if given)
/// `Content-Length`, then the empty line that ends the head.
///
/// ```
/// use vmwire_proto::http::{RequestHead, write_request_head};
/// let mut out = Vec::new();
/// let head = RequestHead { method: "POST", target: "/", host: "127.0.0.1:8080", headers: &[("Content-Type", "text/xml")] };
/// write_request_head(&mut out, &head, Some(12))?;
/// assert_eq!(out, b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: text/xml\r\nContent-Length: 12\r\n\r\n");
/// # Ok::<(), vmwire_proto::http::Error>(())
/// ```
pub fn write_request_head<S: Sink + ?Sized>(
    out: &mut S,
    head: &RequestHead<'_>,
    content_length: Option<usize>,
) -> Result<(), Error> {
    write_request_line(out, head.method, head.target, head.host)?;
    for (name, value) in head.headers {
        check_field(name, value.as_bytes())?;
        write_header(out, name, value.as_bytes())?;
    }
    if let Some(n) = content_length {
        write_content_length(out, n)?;
    }
    out.put(b"\r\n")?;
    Ok(())
}

/// The fields a request's writer owns: `Host`, the body's framing, and the
/// connection's management. A caller's own ([`RequestHead::headers`],
/// [`Endpoint::headers`](super::Endpoint::headers)) is refused with
/// [`Error::FramingField`].
pub const FRAMING_FIELDS: &[&str] =
    &["Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Expect"];

/// Checks a field a caller asks to send with a request: a token for a name
/// ([`Error::InvalidHeader`] otherwise), a value with no control character
/// but tab ([`Error::InvalidHeader`]), and not one of [`FRAMING_FIELDS`]
/// ([`Error::FramingField`]).
///
/// ```
/// use vmwire_proto::http::{Error, check_field};
/// assert_eq!(check_field("traceparent", b"00-4bf9-00f0-01"), Ok(()));
/// assert_eq!(check_field("content-length", b"0"), Err(Error::FramingField { name: "Content-Length" }));
/// assert_eq!(check_field("X-Evil", b"a\r\nHost: b"), Err(Error::InvalidHeader));
/// ```
pub fn check_field(name: &str, value: &[u8]) -> Result<(), Error> {
    if !is_token(name) || !is_field_value(value) {
        return Err(Error::InvalidHeader);
    }
    match FRAMING_FIELDS.iter().find(|owned| owned.eq_ignore_ascii_case(name)) {
        Some(&name) => Err(Error::FramingField { name }),
        None => Ok(()),
    }
}

/// `METHOD target HTTP/1.1` and `Host`.
pub(crate) fn write_request_line<S: Sink + ?Sized>(
    out: &mut S,
    method: &str,
    target: &str,
    host: &str,
) -> Result<(), Error> {
    if !is_token(method)
        || target.is_empty()
        || target.bytes().any(|b| b <= b' ' || b == 0x7f)
        || host.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(Error::InvalidHeader);
    }
    out.put(method.as_bytes())?;
    out.put(b" ")?;
    out.put(target.as_bytes())?;
    out.put(b" HTTP/1.1\r\n")?;
    write_header(out, "Host", host.as_bytes())
}

/// `HTTP/1.1 status reason`.
pub(crate) fn write_status_line<S: Sink + ?Sized>(out: &mut S, status: u16, reason: &str) -> Result<(), Error> {
    if !(100..1000).contains(&status) || !is_field_value(reason.as_bytes()) {
        return Err(Error::InvalidHeader);
    }
    out.put(b"HTTP/1.1 ")?;
    write_u64(out, u64::from(status))?;
    out.put(b" ")?;
    out.put(reason.as_bytes())?;
    out.put(b"\r\n")?;
    Ok(())
}

/// One header field; refuses names that are not tokens and values that
/// hold a control character other than tab (CR or LF would split the message).
pub(crate) fn write_header<S: Sink + ?Sized>(out: &mut S, name: &str, value: &[u8]) -> Result<(), Error> {
    if !is_token(name) || !is_field_value(value) {
        return Err(Error::InvalidHeader);
    }
    out.put(name.as_bytes())?;
    out.put(b": ")?;
    out.put(value)?;
    out.put(b"\r\n")?;
    Ok(())
}

pub(crate) fn write_content_length<S: Sink + ?Sized>(out: &mut S, n: usize) -> Result<(), Full> {
    out.put(b"Content-Length: ")?;
    write_u64(out, n as u64)?;
    out.put(b"\r\n")
}

/// Whether `s` is an HTTP token (a method or a field name).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `v` may be a field value: visible characters, spaces and tabs,
/// and bytes of 0x80 and up (RFC 9110's `obs-text`); no other control.
fn is_field_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Writes a message whose head must carry the body's length, in one pass
/// over the body: `body` is written first, then `head` (which must end with
/// the fields before `Content-Length`), then `Content-Length` and the empty
/// line; the head is then rotated in front of the body.
///
/// ```
/// use vmwire_proto::http::{Error, encode_with_length};
/// use vmwire_proto::buf::Buf;
/// let mut out = heapless::Vec::<u8, 128>::new();
/// encode_with_length(&mut out, |o| o.try_extend(b"POST / HTTP/1.1\r\n").map_err(Error::from), |o| o.try_extend(b"hello").map_err(Error::from))?;
/// assert_eq!(&out[..], b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
/// # Ok::<(), Error>(())
/// ```
pub fn encode_with_length<B: Buf<u8>, E: From<Full>>(
    out: &mut B,
    head: impl FnOnce(&mut B) -> Result<(), E>,
    body: impl FnOnce(&mut B) -> Result<(), E>,
) -> Result<(), E> {
    let mark = out.as_slice().len();
    body(out)?;
    let body_len = out.as_slice().len() - mark;
    head(out)?;
    write_content_length(out, body_len)?;
    out.put(b"\r\n")?;
    let head_len = out.as_slice().len() - mark - body_len;
    if let Some(message) = out.as_mut_slice().get_mut(mark..) {
        message.rotate_right(head_len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn injection_is_refused() {
        let mut out = Vec::new();
        assert_eq!(write_header(&mut out, "X-Evil", b"a\r\nHost: b"), Err(Error::InvalidHeader));
        assert_eq!(write_header(&mut out, "Bad Name", b"v"), Err(Error::InvalidHeader));
        assert_eq!(write_request_line(&mut out, "POST", "/a b", "h"), Err(Error::InvalidHeader));
        assert_eq!(write_request_line(&mut out, "POST", "/", "h\r\nX: y"), Err(Error::InvalidHeader));
        assert!(out.is_empty());
    }
}
