//! `Content-Encoding: gzip` (RFC 1952): the member header, raw deflate
//! (miniz_oxide), and the CRC-32 and length trailer, checked.

use alloc::vec::Vec;

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::Error;

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

fn bad(what: &'static str) -> Error {
    Error::BadGzip { what }
}

/// Decodes every gzip member of `input` into `out` (cleared first), at most
/// `limit` bytes.
pub(crate) fn gunzip(mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Error> {
    out.clear();
    let mut decompressor = DecompressorOxide::new();
    while !input.is_empty() {
        let data = skip_header(input)?;
        let start = out.len();
        let used = inflate(&mut decompressor, data, out, limit)?;
        let trailer = data.get(used..used + 8).ok_or(bad("truncated trailer"))?;
        let (crc, size) = trailer.split_at(4);
        let member = out.get(start..).unwrap_or_default();
        if crc32fast::hash(member).to_le_bytes() != crc {
            return Err(bad("CRC-32 mismatch"));
        }
        if (member.len() as u32).to_le_bytes() != size {
            return Err(bad("length mismatch"));
        }
        input = data.get(used + 8..).unwrap_or_default();
    }
    Ok(())
}

/// The deflate data after a member header.
fn skip_header(input: &[u8]) -> Result<&[u8], Error> {
    let [0x1f, 0x8b, 8, flags, _, _, _, _, _, _, rest @ ..] = input else {
        return Err(bad("not a gzip member"));
    };
    if flags & 0xe0 != 0 {
        return Err(bad("reserved flag set"));
    }
    let mut rest = rest;
    if flags & FEXTRA != 0 {
        let [lo, hi, tail @ ..] = rest else { return Err(bad("truncated header")) };
        let n = usize::from(u16::from_le_bytes([*lo, *hi]));
        rest = tail.get(n..).ok_or(bad("truncated header"))?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = memchr::memchr(0, rest).ok_or(bad("truncated header"))?;
            rest = rest.get(nul + 1..).unwrap_or_default();
        }
    }
    if flags & FHCRC != 0 {
        rest = rest.get(2..).ok_or(bad("truncated header"))?;
    }
    Ok(rest)
}

/// Inflates one raw deflate stream, appending to `out`; returns the input used.
fn inflate(d: &mut DecompressorOxide, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, Error> {
    d.init();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let start = out.len();
    let mut pos = start;
    let mut used = 0;
    // The whole output so far stays in the window: matches may reach back into it.
    out.resize(limit.min(start + input.len().saturating_mul(4).max(4096)), 0);
    loop {
        let (status, read, written) = decompress(d, input.get(used..).unwrap_or_default(), out, pos, flags);
        used += read;
        pos += written;
        match status {
            TINFLStatus::Done => {
                out.truncate(pos);
                return Ok(used);
            }
            TINFLStatus::HasMoreOutput => {
                if out.len() >= limit {
                    out.truncate(pos);
                    return Err(Error::BodyTooLarge { limit });
                }
                let grown = out.len().saturating_mul(2).min(limit);
                out.resize(grown, 0);
            }
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                out.truncate(start);
                return Err(bad("truncated deflate data"));
            }
            _ => {
                out.truncate(start);
                return Err(bad("invalid deflate data"));
            }
        }
    }
}
