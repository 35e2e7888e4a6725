//! The base64 decoder's two modes on arbitrary text, against a reference
//! decoder written here from RFC 4648 §4 and each mode's documented rules:
//!
//! - strict (`base64::decode`, the guest agent's `buf-b64`, `out-data`):
//!   padded, no white space; fed in pieces of any size it gives the same
//!   bytes, or the same error, as fed whole.
//! - lenient (`base64::decode_lenient`, XML-RPC's `<base64>` values):
//!   white space skipped, padding optional.
//!
//! What the strict decoder accepts, the lenient one accepts as the same
//! bytes; and what either encoder writes, both decoders read back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::base64 as strict;
use vmwire_proto::base64::{Filling, decode_lenient};

/// A character's 6-bit value, if it is in the standard alphabet.
fn sextet(c: u8) -> Option<u32> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    alphabet.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes alphabet characters (no padding) bit by bit: the whole bytes
/// they hold, the trailing bits dropped (RFC 4648 lets a decoder accept them).
fn bits(chars: &[u8]) -> Option<Vec<u8>> {
    let (mut acc, mut n, mut out) = (0u32, 0u32, Vec::new());
    for &c in chars {
        acc = (acc << 6 | sextet(c)?) & 0xFFFF;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    Some(out)
}

/// The strict reading: groups of four; `=` only to pad the last group
/// (`xx==`, `xxx=`); nothing else.
fn reference_strict(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    let padding = text.len() - body.len();
    if padding > 0 && body.len() % 4 != 4 - padding {
        return None;
    }
    bits(body)
}

/// The lenient reading: white space (space, tab, CR, LF) ignored anywhere;
/// then alphabet characters, and at the end either no padding or the
/// padding that completes the last group; a last group of one character
/// is never valid.
fn reference_lenient(text: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = text.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(&text);
    let padding = text.len() - body.len();
    match (body.len() % 4, padding) {
        (0, 0) | (2, 0 | 2) | (3, 0 | 1) => bits(body),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, text)) = data.split_first() else { return };
    let piece = usize::from(piece % 7) + 1;

    // The strict decoder, whole and in pieces.
    let mut whole = Vec::new();
    let whole = strict::decode(&mut whole, text).map(|()| whole);
    let mut pieces = Vec::new();
    let mut decoder = strict::Decoder::new();
    let pieces = text
        .chunks(piece)
        .try_for_each(|p| decoder.feed(&mut pieces, p))
        .and_then(|()| decoder.finish())
        .map(|()| pieces);
    assert_eq!(whole, pieces, "the pieces changed the outcome");
    assert_eq!(whole.as_ref().ok(), reference_strict(text).as_ref(), "strict decoder and reference disagree");
    match whole {
        Ok(bytes) => assert!(bytes.len() <= strict::decoded_len(text.len())),
        Err(strict::Error::InvalidByte { byte, offset }) => {
            assert_eq!(usize::try_from(offset).ok().and_then(|o| text.get(o)), Some(&byte), "the error names the byte")
        }
        Err(_) => {}
    }

    // The lenient decoder, into a buffer just large enough, and one too small.
    let mut out = vec![0u8; text.len()];
    let mut filling = Filling::new(&mut out);
    let lenient_bytes = decode_lenient(&mut filling, text).map(|()| filling.filled().to_vec());
    assert_eq!(lenient_bytes.as_ref().ok(), reference_lenient(text).as_ref(), "lenient decoder and reference disagree");
    if let Ok(bytes) = &lenient_bytes
        && let Some(short) = bytes.len().checked_sub(1)
    {
        let mut small = vec![0u8; short];
        assert!(matches!(decode_lenient(&mut Filling::new(&mut small), text), Err(strict::Error::Full(_))));
    }
    if let Some(bytes) = reference_strict(text) {
        assert_eq!(lenient_bytes.as_ref().ok(), Some(&bytes), "the lenient decoder refuses strict base64");
    }
    if let Err(strict::Error::InvalidByte { byte, offset }) = lenient_bytes {
        // The byte at that offset: out of the alphabet, or misplaced (after padding).
        let at = usize::try_from(offset).ok().and_then(|o| text.get(o));
        assert_eq!(at, Some(&byte), "the error names the byte");
    }

    // Writers to readers: the input as bytes, encoded on one line and in
    // 76-character lines, decoded each way.
    let mut one_line = Vec::new();
    strict::encode(&mut one_line, text).unwrap();
    assert_eq!(one_line.len(), strict::encoded_len(text.len()));
    let mut lines = Vec::new();
    strict::encode_lines(&mut lines, text).unwrap();
    assert!(lines.split(|&b| b == b'\n').all(|l| l.len() <= 76));
    let joined: Vec<u8> = lines.iter().copied().filter(|&b| b != b'\n').collect();
    assert_eq!(joined, one_line, "line breaks aside, the two encodings disagree");
    let mut back = Vec::new();
    strict::decode(&mut back, &one_line).unwrap();
    assert_eq!(back, text);
    let mut back = Vec::new();
    decode_lenient(&mut back, &lines).unwrap();
    assert_eq!(back, text);
});
