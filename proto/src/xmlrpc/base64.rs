//! Base64 (RFC 4648, standard alphabet, padded) for `<base64>` values:
//! decoding skips white space, as the line-wrapped text peers send needs;
//! encoding wraps at 76 characters as Python's `encodebytes` does, with
//! the crate's one encoder ([`crate::base64::encode`]).

use core::fmt;

use crate::buf::{Full, Sink};

/// Why base64 text did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the alphabet (and not white space), at this offset.
    InvalidByte {
        /// Offset in the text.
        offset: usize,
    },
    /// Padding in the wrong place, or a length that is not a whole number of bytes.
    InvalidPadding,
    /// The output buffer is too small.
    Full(Full),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidByte { offset } => write!(f, "base64: invalid byte at offset {offset}"),
            DecodeError::InvalidPadding => f.write_str("base64: invalid padding"),
            DecodeError::Full(e) => write!(f, "base64: {e}"),
        }
    }
}

impl core::error::Error for DecodeError {}

fn sextet(b: u8) -> Option<u32> {
    Some(u32::from(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes `text` into `out`; returns how many bytes were written.
pub fn decode(text: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let limit = out.len();
    let mut written = 0;
    let mut put = |byte: u8, written: &mut usize| -> Result<(), DecodeError> {
        let slot = out.get_mut(*written).ok_or(DecodeError::Full(Full { limit }))?;
        *slot = byte;
        *written += 1;
        Ok(())
    };
    let (mut acc, mut n, mut padding) = (0u32, 0u8, 0u8);
    for (offset, &b) in text.iter().enumerate() {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if b == b'=' {
            padding += 1;
            if n + padding > 4 || n < 2 {
                return Err(DecodeError::InvalidPadding);
            }
            continue;
        }
        if padding > 0 {
            return Err(DecodeError::InvalidPadding);
        }
        acc = acc << 6 | sextet(b).ok_or(DecodeError::InvalidByte { offset })?;
        n += 1;
        if n == 4 {
            for byte in acc.to_be_bytes().get(1..).unwrap_or_default() {
                put(*byte, &mut written)?;
            }
            (acc, n) = (0, 0);
        }
    }
    match (n, padding) {
        (0, 0) => {}
        (2, 2) | (2, 0) => put((acc >> 4) as u8, &mut written)?,
        (3, 1) | (3, 0) => {
            put((acc >> 10) as u8, &mut written)?;
            put((acc >> 2) as u8, &mut written)?;
        }
        _ => return Err(DecodeError::InvalidPadding),
    }
    Ok(written)
}

/// Writes `bytes` as base64, a line break after every 76 characters and
/// after the last line (Python's `base64.encodebytes`).
pub fn encode_lines<S: Sink + ?Sized>(out: &mut S, bytes: &[u8]) -> Result<(), Full> {
    // 57 input bytes make one 76-character line.
    for line in bytes.chunks(57) {
        crate::base64::encode(out, line)?;
        out.put(b"\n")?;
    }
    Ok(())
}

/// Writes `bytes` as base64 on one line (for `Authorization: Basic`): the
/// crate's one encoder, [`crate::base64::encode`].
pub fn encode<S: Sink + ?Sized>(out: &mut S, bytes: &[u8]) -> Result<(), Full> {
    crate::base64::encode(out, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for len in 0..data.len() {
            let mut text = Vec::new();
            encode_lines(&mut text, &data[..len]).unwrap();
            assert!(text.split(|&b| b == b'\n').all(|l| l.len() <= 76));
            let mut out = [0u8; 300];
            let n = decode(&text, &mut out).unwrap();
            assert_eq!(&out[..n], &data[..len]);
        }
    }

    #[test]
    fn known_values_and_errors() {
        let mut out = [0u8; 64];
        let n = decode(b"\nAAECYmluYXJ5//4w\n", &mut out).unwrap();
        assert_eq!(&out[..n], b"\x00\x01\x02binary\xff\xfe0");
        let mut one = Vec::new();
        encode(&mut one, b"root:secret").unwrap();
        assert_eq!(one, b"cm9vdDpzZWNyZXQ=");
        assert_eq!(decode(b"QQ=", &mut out), Err(DecodeError::InvalidPadding));
        assert_eq!(decode(b"Q===", &mut out), Err(DecodeError::InvalidPadding));
        assert_eq!(decode(b"QQ==QQ==", &mut out), Err(DecodeError::InvalidPadding));
        assert_eq!(decode(b"Q!==", &mut out), Err(DecodeError::InvalidByte { offset: 1 }));
        assert_eq!(decode(b"QUJD", &mut [0u8; 2]), Err(DecodeError::Full(Full { limit: 2 })));
        assert_eq!(decode(b"QQ", &mut out), Ok(1));
    }
}
