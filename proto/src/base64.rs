//! Base64 (RFC 4648 §4: the standard alphabet, `=` padding), streamed into
//! any [`Sink`]: how the guest agent carries bytes inside JSON strings
//! (`buf-b64`, `input-data`, `out-data`).
//!
//! ```
//! use vmwire_proto::base64;
//! let mut text = heapless::Vec::<u8, 16>::new();
//! base64::encode(&mut text, b"caf\xc3\xa9\n")?;
//! assert_eq!(&text[..], b"Y2Fmw6kK");
//! let mut bytes = heapless::Vec::<u8, 16>::new();
//! base64::decode(&mut bytes, &text).unwrap();
//! assert_eq!(&bytes[..], b"caf\xc3\xa9\n");
//! # Ok::<(), vmwire_proto::buf::Full>(())
//! ```

use core::fmt;

use crate::buf::{Full, Sink};
use crate::json::{Chunk, JsonStr};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Not in the alphabet.
const INVALID: u8 = 0xFF;
/// `=`.
const PAD: u8 = 0xFE;

/// Each byte's 6-bit value, or [`INVALID`] / [`PAD`].
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = PAD;
    table
};

/// How many characters [`encode`] writes for `n` bytes (saturating).
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// The most bytes `n` characters of base64 decode to.
pub const fn decoded_len(n: usize) -> usize {
    n / 4 * 3 + n % 4 * 3 / 4
}

/// Writes `bytes` as base64 (no quotes, no line breaks).
pub fn encode<S: Sink + ?Sized>(out: &mut S, bytes: &[u8]) -> Result<(), Full> {
    // 48 bytes make 64 characters: encode a block on the stack, then put it.
    let mut block = [0u8; 64];
    let mut chunks = bytes.chunks_exact(48);
    for chunk in &mut chunks {
        for (three, four) in chunk.chunks_exact(3).zip(block.chunks_exact_mut(4)) {
            let n = u32::from(three[0]) << 16 | u32::from(three[1]) << 8 | u32::from(three[2]);
            four.copy_from_slice(&quad(n));
        }
        out.put(&block)?;
    }
    let rest = chunks.remainder();
    let mut len = 0;
    let mut threes = rest.chunks_exact(3);
    for three in &mut threes {
        let n = u32::from(three[0]) << 16 | u32::from(three[1]) << 8 | u32::from(three[2]);
        block[len..len + 4].copy_from_slice(&quad(n));
        len += 4;
    }
    match *threes.remainder() {
        [a] => {
            let q = quad(u32::from(a) << 16);
            block[len..len + 4].copy_from_slice(&[q[0], q[1], b'=', b'=']);
            len += 4;
        }
        [a, b] => {
            let q = quad(u32::from(a) << 16 | u32::from(b) << 8);
            block[len..len + 4].copy_from_slice(&[q[0], q[1], q[2], b'=']);
            len += 4;
        }
        _ => {}
    }
    out.put(&block[..len])
}

/// Writes `bytes` as base64, a line break after every 76 characters and
/// after the last line (Python's `base64.encodebytes`, as XML-RPC's
/// `<base64>` carries it).
pub fn encode_lines<S: Sink + ?Sized>(out: &mut S, bytes: &[u8]) -> Result<(), Full> {
    // 57 input bytes make one 76-character line.
    for line in bytes.chunks(57) {
        encode(out, line)?;
        out.put(b"\n")?;
    }
    Ok(())
}

#[inline(always)]
fn quad(n: u32) -> [u8; 4] {
    let c = |shift: u32| ALPHABET[(n >> shift & 0x3F) as usize];
    [c(18), c(12), c(6), c(0)]
}

/// What was wrong with base64 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A byte that is not in the alphabet, or `=` where padding cannot be.
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its offset in the text.
        offset: u64,
    },
    /// The text ended inside a group of four characters.
    Truncated,
    /// The sink is full.
    Full(Full),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidByte { byte, offset } => write!(f, "base64: invalid byte 0x{byte:02x} at offset {offset}"),
            Error::Truncated => f.write_str("base64: the text ends inside a group of four characters"),
            Error::Full(full) => write!(f, "base64: {full}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<Full> for Error {
    fn from(full: Full) -> Self {
        Error::Full(full)
    }
}

/// Decodes base64 fed in pieces of any size.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// Sextets of the group in progress.
    group: u32,
    /// How many characters of the group in progress were seen.
    have: u8,
    /// `=` seen: only more `=` may follow, up to the end of the group, then nothing.
    padding: u8,
    /// The group with padding is complete: the text must end.
    done: bool,
    offset: u64,
    /// White space skipped, the last group's padding optional ([`Decoder::lenient`]).
    lenient: bool,
}

impl Decoder {
    /// A decoder at the start of the text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for base64 as XML-RPC's `<base64>` carries it: white space
    /// (the line breaks of wrapped text) skipped, and the last group's
    /// padding optional (see [`Decoder::end`]).
    pub fn lenient() -> Self {
        Decoder { lenient: true, ..Self::default() }
    }

    /// Decodes `text` (the next piece), writing whole bytes to `out`.
    pub fn feed<S: Sink + ?Sized>(&mut self, out: &mut S, text: &[u8]) -> Result<(), Error> {
        let mut bytes = [0u8; 96];
        let mut len = 0;
        let mut i = 0;
        while i < text.len() {
            // Fast path: whole groups of four alphabet characters.
            if self.have == 0 && !self.done {
                while let Some(four) = text.get(i..i + 4) {
                    let (a, b, c, d) = (
                        DECODE[four[0] as usize],
                        DECODE[four[1] as usize],
                        DECODE[four[2] as usize],
                        DECODE[four[3] as usize],
                    );
                    if (a | b | c | d) & 0xC0 != 0 {
                        break;
                    }
                    let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
                    bytes[len..len + 3].copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
                    len += 3;
                    i += 4;
                    if len + 3 > bytes.len() {
                        out.put(&bytes[..len])?;
                        len = 0;
                    }
                }
            }
            let Some(&byte) = text.get(i) else { break };
            if self.lenient && matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
                continue;
            }
            let offset = self.offset + i as u64;
            let v = DECODE[byte as usize];
            let invalid = Error::InvalidByte { byte, offset };
            if self.done {
                return Err(invalid);
            }
            match v {
                PAD => {
                    // `xx==` or `xxx=`: padding after at least two characters.
                    if self.have + self.padding < 2 {
                        return Err(invalid);
                    }
                    self.padding += 1;
                }
                INVALID => return Err(invalid),
                _ if self.padding > 0 => return Err(invalid),
                _ => {
                    self.group = self.group << 6 | u32::from(v);
                    self.have += 1;
                }
            }
            i += 1;
            if self.have + self.padding == 4 {
                let n = self.group << (6 * u32::from(self.padding));
                let whole = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                let keep = usize::from(self.have - 1);
                bytes[len..len + keep].copy_from_slice(&whole[..keep]);
                len += keep;
                self.done = self.padding > 0;
                (self.group, self.have, self.padding) = (0, 0, 0);
                if len + 3 > bytes.len() {
                    out.put(&bytes[..len])?;
                    len = 0;
                }
            }
        }
        self.offset += text.len() as u64;
        out.put(&bytes[..len])?;
        Ok(())
    }

    /// The text ended: checks that it ended on a group boundary.
    pub fn finish(self) -> Result<(), Error> {
        if self.have + self.padding == 0 { Ok(()) } else { Err(Error::Truncated) }
    }

    /// The text ended: as [`Decoder::finish`], but a [lenient](Decoder::lenient)
    /// decoder takes a last group of two or three characters without its
    /// padding, and writes its bytes to `out`.
    pub fn end<S: Sink + ?Sized>(self, out: &mut S) -> Result<(), Error> {
        match (self.lenient, self.have, self.padding) {
            (true, have @ (2 | 3), 0) => {
                let n = self.group << (6 * (4 - u32::from(have)));
                let whole = [(n >> 16) as u8, (n >> 8) as u8];
                out.put(whole.get(..usize::from(have - 1)).unwrap_or_default())?;
                Ok(())
            }
            _ => self.finish(),
        }
    }
}

/// Decodes all of `text` leniently (see [`Decoder::lenient`]).
pub fn decode_lenient<S: Sink + ?Sized>(out: &mut S, text: &[u8]) -> Result<(), Error> {
    let mut decoder = Decoder::lenient();
    decoder.feed(out, text)?;
    decoder.end(out)
}

/// A slice filled from its start, as a [`Sink`].
#[derive(Debug)]
pub struct Filling<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Filling<'b> {
    /// Fills `buf` from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Filling { buf, len: 0 }
    }

    /// The filled part.
    pub fn filled(self) -> &'b [u8] {
        let Filling { buf, len } = self;
        buf.get(..len).unwrap_or_default()
    }
}

impl Sink for Filling<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let limit = self.buf.len();
        let end = self.len.checked_add(bytes.len()).filter(|&end| end <= limit).ok_or(Full { limit })?;
        self.buf.get_mut(self.len..end).ok_or(Full { limit })?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Decodes all of `text`.
pub fn decode<S: Sink + ?Sized>(out: &mut S, text: &[u8]) -> Result<(), Error> {
    let mut decoder = Decoder::new();
    decoder.feed(out, text)?;
    decoder.finish()
}

/// Decodes a JSON string's contents (escapes and all, as QEMU may write
/// `\/` for `/`).
pub fn decode_json<S: Sink + ?Sized>(out: &mut S, text: JsonStr<'_>) -> Result<(), Error> {
    let mut decoder = Decoder::new();
    for chunk in text.chunks() {
        let mut utf8 = [0; 4];
        let piece = match chunk {
            Chunk::Str(s) => s,
            Chunk::Char(c) => c.encode_utf8(&mut utf8),
        };
        decoder.feed(out, piece.as_bytes())?;
    }
    decoder.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lenient_decoding_round_trips_wrapped_lines_of_every_length() {
        let data: std::vec::Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for len in 0..data.len() {
            let mut text = std::vec::Vec::new();
            super::encode_lines(&mut text, &data[..len]).unwrap();
            assert!(text.split(|&b| b == b'\n').all(|l| l.len() <= 76));
            let mut out = [0u8; 300];
            let mut sink = super::Filling::new(&mut out);
            super::decode_lenient(&mut sink, &text).unwrap();
            assert_eq!(sink.filled(), &data[..len]);
        }
    }

    #[test]
    fn lenient_decoding_known_values_and_errors() {
        use super::{Error, Filling, decode_lenient};
        use crate::buf::Full;
        let decode = |text: &[u8], out: &mut [u8]| {
            let mut sink = Filling::new(out);
            decode_lenient(&mut sink, text).map(|()| sink.filled().len())
        };
        let mut out = [0u8; 64];
        let n = decode(b"\nAAECYmluYXJ5//4w\n", &mut out).unwrap();
        assert_eq!(&out[..n], b"\x00\x01\x02binary\xff\xfe0");
        assert_eq!(decode(b"QQ=", &mut out), Err(Error::Truncated));
        assert_eq!(decode(b"Q===", &mut out), Err(Error::InvalidByte { byte: b'=', offset: 1 }));
        assert_eq!(decode(b"QQ==QQ==", &mut out), Err(Error::InvalidByte { byte: b'Q', offset: 4 }));
        assert_eq!(decode(b"Q!==", &mut out), Err(Error::InvalidByte { byte: b'!', offset: 1 }));
        assert_eq!(decode(b"QUJD", &mut [0u8; 2]), Err(Error::Full(Full { limit: 2 })));
        assert_eq!(decode(b"QQ", &mut out), Ok(1));
        assert_eq!(decode(b"QUI", &mut out), Ok(2));
        assert_eq!(&out[..2], b"AB");
    }

    use super::*;
    use crate::json::Value;

    fn enc(bytes: &[u8]) -> heapless::Vec<u8, 512> {
        let mut out = heapless::Vec::new();
        encode(&mut out, bytes).unwrap();
        out
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            (&b""[..], &b""[..]),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
        ] {
            assert_eq!(&enc(plain)[..], coded);
            let mut out = heapless::Vec::<u8, 16>::new();
            decode(&mut out, coded).unwrap();
            assert_eq!(&out[..], plain);
            assert_eq!(encoded_len(plain.len()), coded.len());
            assert!(decoded_len(coded.len()) >= plain.len());
        }
    }

    #[test]
    fn round_trips_in_any_piece_size() {
        let data: heapless::Vec<u8, 300> = (0..300u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for len in [0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 300] {
            let text = enc(&data[..len]);
            assert_eq!(text.len(), encoded_len(len));
            for piece in 1..9 {
                let mut out = heapless::Vec::<u8, 300>::new();
                let mut d = Decoder::new();
                for p in text.chunks(piece) {
                    d.feed(&mut out, p).unwrap();
                }
                d.finish().unwrap();
                assert_eq!(&out[..], &data[..len], "len {len} piece {piece}");
            }
        }
    }

    #[test]
    fn rejects_what_is_not_base64() {
        let bad = |text: &[u8]| {
            let mut out = heapless::Vec::<u8, 64>::new();
            decode(&mut out, text).unwrap_err()
        };
        assert_eq!(bad(b"not base64!"), Error::InvalidByte { byte: b' ', offset: 3 });
        assert_eq!(bad(b"Zm9"), Error::Truncated);
        assert_eq!(bad(b"Z==="), Error::InvalidByte { byte: b'=', offset: 1 });
        assert_eq!(bad(b"Zg==Zg=="), Error::InvalidByte { byte: b'Z', offset: 4 });
        assert_eq!(bad(b"Zg=a"), Error::InvalidByte { byte: b'a', offset: 3 });
        assert_eq!(bad(b"Zm9v\n"), Error::InvalidByte { byte: b'\n', offset: 4 });
        let mut small = heapless::Vec::<u8, 2>::new();
        assert_eq!(decode(&mut small, b"Zm9v"), Err(Error::Full(Full { limit: 2 })));
    }

    #[test]
    fn json_escapes_are_decoded_first() {
        let v = Value::parse(br#""Y2Fm6QoA\/w==""#).unwrap();
        let mut out = heapless::Vec::<u8, 16>::new();
        decode_json(&mut out, v.as_str().unwrap()).unwrap();
        assert_eq!(&out[..], b"caf\xe9\n\0\xff");
    }
}
