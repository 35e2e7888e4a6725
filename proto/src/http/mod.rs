//! HTTP/1.x framing, sans-IO: what XML-RPC (and so the XenAPI) travels in.
//!
//! - [`Client`]: one connection's worth of request/response exchanges. A
//!   request is encoded into the transmit buffer; the response's status line
//!   and headers are parsed with [`httparse`], its body framed by
//!   `Content-Length`, chunked transfer coding, or the end of the stream
//!   (HTTP/1.0), and handed out in one piece, borrowed from the receive buffer
//!   (chunked bodies are joined in place). Keep-alive is used when the server
//!   allows it; when it does not, the machine says so
//!   ([`Client::needs_connection`]) and the adapter opens a new connection.
//! - [`Server`]: the other direction, for a server: requests in, responses
//!   out, with keep-alive, pipelining kept in order, `Expect: 100-continue`,
//!   and the right error status (400, 413, 431, 501) for requests it cannot read.
//! - [`write_request_head`] and [`encode_with_length`] for callers that frame
//!   requests themselves.
//!
//! Every size is bounded by [`Limits`]: the head (status line and headers),
//! the number of headers, and the body. With the `gzip` feature a
//! `Content-Encoding: gzip` body is decoded (and the client offers
//! `Accept-Encoding: gzip`); without it the client never offers it, and a
//! gzip body is an error ([`Error::UnsupportedContentEncoding`]).
//!
//! ```
//! use vmwire_proto::{Machine, buf::{Buf, Fixed}, http::{Client, Config, Endpoint, Error, Event}};
//!
//! let endpoint = Endpoint { target: "/RPC2", host: "xapi.example", headers: &[("originator", "docs")] };
//! let mut http = Client::<Fixed<4096, 1024>>::new(Config::default(), &endpoint)?;
//! http.post(&[], |body| Ok::<_, Error>(body.try_extend(b"<methodCall/>")?))?;
//! assert!(http.needs_connection()); // the adapter connects, then:
//! http.connected();
//! assert!(http.transmit().starts_with(b"POST /RPC2 HTTP/1.1\r\nHost: xapi.example\r\n"));
//! let n = http.transmit().len();
//! http.transmitted(n);
//!
//! http.receive(b"HTTP/1.0 200 OK\r\nContent-type: text/xml\r\nContent-length: 5\r\n\r\nhello")?;
//! match http.poll()? {
//!     Some(Event::Response(r)) => {
//!         assert_eq!((r.status, r.body), (200, &b"hello"[..]));
//!         assert_eq!(r.headers.get("content-type"), Some(&b"text/xml"[..]));
//!         assert!(!r.keep_alive); // HTTP/1.0 without keep-alive: the next request needs a new connection
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), vmwire_proto::http::Error>(())
//! ```

mod body;
pub(crate) mod client;
#[cfg(feature = "gzip")]
mod gzip;
mod head;
mod server;
mod write;

use core::fmt;

pub use client::{Client, Config, Endpoint, Event, Response, State};
pub use head::{Headers, Version, credential_spans, head_len};
pub use server::{Event as ServerEvent, Request, Server, ServerConfig, State as ServerState};
pub use write::{FRAMING_FIELDS, RequestHead, check_field, encode_with_length, write_request_head};

use crate::buf::{Full, Sink};

/// Writes the value of a `Host` field: `host` (in brackets if it is an
/// IPv6 address), then `:port` unless `port` is the scheme's `default`.
pub fn write_host<S: Sink + ?Sized>(out: &mut S, host: &str, port: u16, default: u16) -> Result<(), Full> {
    if host.contains(':') {
        out.put(b"[")?;
        out.put(host.as_bytes())?;
        out.put(b"]")?;
    } else {
        out.put(host.as_bytes())?;
    }
    if port != default {
        out.put(b":")?;
        crate::json::write_u64(out, u64::from(port))?;
    }
    Ok(())
}

/// Writes the value of an `Authorization` field for basic authentication
/// (RFC 7617): `Basic ` and the base64 of `user:password`.
///
/// ```
/// let mut field = Vec::new();
/// vmwire_proto::http::write_basic_authorization(&mut field, "root", "secret")?;
/// assert_eq!(field, b"Basic cm9vdDpzZWNyZXQ=");
/// let mut host = Vec::new();
/// vmwire_proto::http::write_host(&mut host, "::1", 8080, 80)?;
/// assert_eq!(host, b"[::1]:8080");
/// # Ok::<(), vmwire_proto::buf::Full>(())
/// ```
pub fn write_basic_authorization<S: Sink + ?Sized>(out: &mut S, user: &str, password: &str) -> Result<(), Full> {
    out.put(b"Basic ")?;
    // `user:password` in pieces of whole three-byte groups, so that no joined copy is needed.
    let mut pending = [0u8; 3];
    let mut len = 0;
    for &b in user.as_bytes().iter().chain(b":").chain(password.as_bytes()) {
        if let Some(slot) = pending.get_mut(len) {
            *slot = b;
        }
        len += 1;
        if len == 3 {
            crate::base64::encode(out, &pending)?;
            len = 0;
        }
    }
    crate::base64::encode(out, pending.get(..len).unwrap_or_default())
}

/// Most headers a message may have, whatever [`Limits::max_headers`] says
/// (the parser's header table lives on the stack).
pub const MAX_HEADERS: usize = 128;

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in the status or request line plus headers (and, for a
    /// chunked body, its trailers).
    pub max_head: usize,
    /// Most header fields (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// Most bytes of body, after gzip decoding where that applies.
    pub max_body: usize,
}

impl Default for Limits {
    /// 16 KiB of head, 64 headers, 128 MiB of body (`VM.get_all_records`
    /// for 1,000 VMs is 2.3 MB).
    fn default() -> Self {
        Limits { max_head: 16 << 10, max_headers: 64, max_body: 128 << 20 }
    }
}

/// What went wrong in an HTTP exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The status line, request line or a header field is malformed.
    BadHead {
        /// What was wrong (httparse's words).
        what: &'static str,
    },
    /// The head is longer than [`Limits::max_head`].
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More header fields than [`Limits::max_headers`].
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// The body is longer than [`Limits::max_body`].
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A `Content-Length` that is not a number, or several that disagree.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: a smuggling risk, refused.
    LengthAndTransferEncoding,
    /// A transfer coding other than `chunked`.
    UnsupportedTransferEncoding,
    /// A malformed chunk in a chunked body, at `offset` bytes into the message.
    BadChunk {
        /// Offset of the offending byte from the start of the message.
        offset: usize,
    },
    /// A `Content-Encoding` this build cannot decode.
    UnsupportedContentEncoding,
    /// A gzip body that does not decode.
    BadGzip {
        /// What was wrong.
        what: &'static str,
    },
    /// The peer sent a response while no request was outstanding.
    UnexpectedResponse,
    /// The caller asked to send a header name or value that HTTP cannot
    /// carry (a control character such as CR, LF or NUL in it, or an empty
    /// or invalid name).
    InvalidHeader,
    /// The caller asked to send a field that the machine owns: one that
    /// frames the message or manages the connection ([`FRAMING_FIELDS`]).
    /// Sent as well, it would duplicate or contradict the machine's own
    /// (two `Content-Length`s, `Transfer-Encoding: chunked` over a body
    /// that is not): the shapes of request smuggling.
    FramingField {
        /// The field, as [`FRAMING_FIELDS`] spells it.
        name: &'static str,
    },
    /// A method called in a state that does not allow it.
    WrongState {
        /// The method.
        operation: &'static str,
    },
    /// The transmit buffer is full.
    TransmitFull(Full),
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::HeadTooLarge { .. } | Error::TooManyHeaders { .. } | Error::BodyTooLarge { .. } => K::TooLarge,
            Error::BadHead { .. }
            | Error::BadContentLength
            | Error::LengthAndTransferEncoding
            | Error::BadChunk { .. }
            | Error::BadGzip { .. }
            | Error::UnexpectedResponse => K::InvalidData,
            Error::UnsupportedTransferEncoding | Error::UnsupportedContentEncoding => K::Unsupported,
            Error::InvalidHeader | Error::FramingField { .. } => K::InvalidInput,
            Error::WrongState { .. } => K::WrongState,
            Error::TransmitFull(_) => K::TransmitFull,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadHead { what } => write!(f, "HTTP: malformed head: {what}"),
            Error::HeadTooLarge { limit } => write!(f, "HTTP: head larger than the limit of {limit} bytes"),
            Error::TooManyHeaders { limit } => write!(f, "HTTP: more than {limit} header fields"),
            Error::BodyTooLarge { limit } => write!(f, "HTTP: body larger than the limit of {limit} bytes"),
            Error::BadContentLength => f.write_str("HTTP: invalid Content-Length"),
            Error::LengthAndTransferEncoding => f.write_str("HTTP: both Content-Length and Transfer-Encoding"),
            Error::UnsupportedTransferEncoding => f.write_str("HTTP: unsupported Transfer-Encoding"),
            Error::BadChunk { offset } => write!(f, "HTTP: malformed chunk at byte {offset}"),
            Error::UnsupportedContentEncoding => f.write_str("HTTP: unsupported Content-Encoding"),
            Error::BadGzip { what } => write!(f, "HTTP: gzip body: {what}"),
            Error::UnexpectedResponse => f.write_str("HTTP: response with no request outstanding"),
            Error::InvalidHeader => f.write_str("HTTP: header name or value cannot be sent"),
            Error::FramingField { name } => {
                write!(f, "HTTP: the {name} field is the framing's own and cannot be given")
            }
            Error::WrongState { operation } => write!(f, "HTTP: {operation} is not allowed now"),
            Error::TransmitFull(e) => write!(f, "HTTP: transmit {e}"),
            Error::CommitTooLarge(e) => write!(f, "HTTP: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::TransmitFull(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Full> for Error {
    fn from(e: Full) -> Self {
        Error::TransmitFull(e)
    }
}
