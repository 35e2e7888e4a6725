//! Body framing: `Content-Length`, chunked transfer coding (joined in place,
//! so the body ends up contiguous in the receive buffer), read-to-close.

use core::ops::Range;

use super::{Error, Limits};

/// How the end of a body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes.
    Length(usize),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the peer closes (HTTP/1.0 style).
    Close,
    /// No body at all (HEAD, 1xx, 204, 304, or a request without length).
    Empty,
}

/// Where a chunked body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
}

/// A body being framed, in a message that starts at offset 0 of the data.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    framing: Framing,
    /// Where the body starts (the head's length).
    start: usize,
    /// End of the body bytes joined so far (chunked).
    end: usize,
    /// Next byte not yet framed (chunked).
    cursor: usize,
    chunk: Chunk,
    trailer_bytes: usize,
}

/// A complete message: its body, and where the message ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Framed {
    pub body: Range<usize>,
    pub end: usize,
}

/// Longest chunk-size line (with extensions and line end) accepted.
const MAX_CHUNK_LINE: usize = 1024;

impl Body {
    pub(crate) fn new(framing: Framing, start: usize) -> Self {
        Body { framing, start, end: start, cursor: start, chunk: Chunk::Size, trailer_bytes: 0 }
    }

    /// Frames what has arrived of the message at the front of `data`
    /// (chunked bodies are joined in place). `eof`: the stream has ended.
    /// `Ok(None)`: more bytes are needed (or, at `eof`, the body was cut short).
    pub(crate) fn advance(&mut self, data: &mut [u8], eof: bool, limits: &Limits) -> Result<Option<Framed>, Error> {
        let start = self.start;
        match self.framing {
            Framing::Empty => Ok(Some(Framed { body: start..start, end: start })),
            Framing::Length(n) => {
                let end = start.saturating_add(n);
                Ok((data.len() >= end).then_some(Framed { body: start..end, end }))
            }
            Framing::Close => {
                let len = data.len().saturating_sub(start);
                if len > limits.max_body {
                    return Err(Error::BodyTooLarge { limit: limits.max_body });
                }
                Ok(eof.then_some(Framed { body: start..data.len(), end: data.len() }))
            }
            Framing::Chunked => self.chunked(data, limits),
        }
    }

    fn chunked(&mut self, data: &mut [u8], limits: &Limits) -> Result<Option<Framed>, Error> {
        loop {
            let bad = Error::BadChunk { offset: self.cursor };
            let rest = data.get(self.cursor..).unwrap_or_default();
            match self.chunk {
                // The size line (extensions and line end included) is at
                // most MAX_CHUNK_LINE bytes, however its bytes arrive.
                Chunk::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_LINE => return Err(bad),
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.cursor += used;
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        if size == 0 {
                            self.chunk = Chunk::Trailers;
                        } else if size > limits.max_body.saturating_sub(self.end - self.start) {
                            return Err(Error::BodyTooLarge { limit: limits.max_body });
                        } else {
                            self.chunk = Chunk::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) if rest.len() < MAX_CHUNK_LINE => return Ok(None),
                    _ => return Err(bad),
                },
                Chunk::Data(left) => {
                    let n = left.min(rest.len());
                    if n == 0 {
                        return Ok(None);
                    }
                    data.copy_within(self.cursor..self.cursor + n, self.end);
                    self.end += n;
                    self.cursor += n;
                    self.chunk = if n == left { Chunk::DataEnd } else { Chunk::Data(left - n) };
                }
                Chunk::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.cursor += 2;
                        self.chunk = Chunk::Size;
                    }
                    [b'\n', ..] => {
                        self.cursor += 1;
                        self.chunk = Chunk::Size;
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(bad),
                },
                Chunk::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', rest) else {
                        if self.trailer_bytes + rest.len() > limits.max_head {
                            return Err(Error::HeadTooLarge { limit: limits.max_head });
                        }
                        return Ok(None);
                    };
                    let line = rest.get(..nl).unwrap_or_default();
                    self.cursor += nl + 1;
                    if line.is_empty() || line == b"\r" {
                        return Ok(Some(Framed { body: self.start..self.end, end: self.cursor }));
                    }
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > limits.max_head {
                        return Err(Error::HeadTooLarge { limit: limits.max_head });
                    }
                    if memchr::memchr(b':', line).is_none() {
                        return Err(bad);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn frame(msg: &[u8], framing: Framing, eof: bool) -> Result<Option<(Vec<u8>, usize)>, Error> {
        let mut data = msg.to_vec();
        let mut body = Body::new(framing, 0);
        let framed = body.advance(&mut data, eof, &Limits::default())?;
        Ok(framed.map(|f| (data[f.body].to_vec(), f.end)))
    }

    #[test]
    fn chunked_is_joined_in_place_in_any_split() {
        let msg = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let want = b"Wikipedia in \r\n\r\nchunks.".to_vec();
        assert_eq!(frame(msg, Framing::Chunked, false).unwrap(), Some((want.clone(), msg.len() - 4)));
        for cut in 0..msg.len() {
            let mut data = msg[..cut].to_vec();
            let mut body = Body::new(Framing::Chunked, 0);
            let limits = Limits::default();
            let early = body.advance(&mut data, false, &limits).unwrap();
            data.extend_from_slice(&msg[cut..]);
            let framed = early.or_else(|| body.advance(&mut data, false, &limits).unwrap()).unwrap();
            assert_eq!(data[framed.body].to_vec(), want, "cut at {cut}");
        }
    }

    #[test]
    fn chunked_errors_and_limits() {
        assert_eq!(frame(b"zz\r\n", Framing::Chunked, false), Err(Error::BadChunk { offset: 0 }));
        assert_eq!(frame(b"2\r\nabX", Framing::Chunked, false), Err(Error::BadChunk { offset: 5 }));
        let mut data = b"ffffffff\r\n".to_vec();
        let mut body = Body::new(Framing::Chunked, 0);
        let small = Limits { max_body: 100, ..Limits::default() };
        assert_eq!(body.advance(&mut data, false, &small), Err(Error::BodyTooLarge { limit: 100 }));
    }

    #[test]
    fn length_and_close() {
        assert_eq!(frame(b"abcdef", Framing::Length(4), false).unwrap(), Some((b"abcd".to_vec(), 4)));
        assert_eq!(frame(b"abc", Framing::Length(4), false).unwrap(), None);
        assert_eq!(frame(b"abc", Framing::Close, false).unwrap(), None);
        assert_eq!(frame(b"abc", Framing::Close, true).unwrap(), Some((b"abc".to_vec(), 3)));
    }
}
