//! Transcripts: the bytes of one session between a client and a server, in
//! time order, in a line-oriented text file (`.txn`) that every protocol
//! shares. `vmwire record` writes them, `vmwire replay` serves them, and
//! `fixtures/` holds the ones captured from the real peers.
//!
//! A transcript is a sequence of records. Each is a header line, its
//! payload, and a newline:
//!
//! ```text
//! > 33 +0.512ms
//! {"execute": "qmp_capabilities"}
//!
//! < 16 +0.730ms
//! {"return": {}}
//!
//! ```
//!
//! - `> LEN` client to server, `< LEN` server to client, `# LEN` a note
//!   (not on the wire). LEN is the payload's length in bytes, in decimal;
//!   the payload is any bytes, then one `\n` that is not part of it.
//!   `< 0` is the server closing its end, `> 0` the client closing its end.
//! - After LEN, optional fields separated by one space, each at most once:
//!   `+MS` (`+12.345ms`) the time since the session began, in milliseconds
//!   with up to three decimals (microseconds); `fds=N` the number of file
//!   descriptors passed with the bytes (`SCM_RIGHTS`; the descriptors
//!   themselves cannot be written down).
//! - A note whose payload starts with `protocol: ` names the protocol
//!   (`protocol: qmp`); see [`protocol`].
//!
//! Files without the optional fields (the fixtures) are the same format.
//! The full description is `docs/transcript.md`.
//!
//! [`Reader`] reads a transcript from a byte slice without copying (records
//! borrow the input); it never panics, bounds every number, and reports a
//! typed [`Error`] with the line and byte offset where the input went wrong.
//! [`write_record`] writes one record into any [`Sink`].
//!
//! ```
//! use vmwire_proto::transcript::{write_record, Direction, Reader, Record};
//!
//! let mut text = Vec::new();
//! let record = Record { direction: Direction::ServerToClient, bytes: b"{\"return\": {}}\r\n", micros: Some(730), fds: 0 };
//! write_record(&mut text, &record).unwrap();
//! assert_eq!(text, b"< 16 +0.730ms\n{\"return\": {}}\r\n\n");
//! let mut reader = Reader::new(&text);
//! assert_eq!(reader.next(), Some(Ok(record)));
//! assert_eq!(reader.next(), None);
//! ```

use core::fmt;

use crate::buf::{Full, Sink};

/// Who sent a record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `>`: the client wrote these bytes to the server.
    ClientToServer,
    /// `<`: the server wrote these bytes to the client.
    ServerToClient,
    /// `#`: a note, not on the wire.
    Note,
}

impl Direction {
    /// The record's marker: `>`, `<` or `#`.
    pub fn marker(self) -> u8 {
        match self {
            Direction::ClientToServer => b'>',
            Direction::ServerToClient => b'<',
            Direction::Note => b'#',
        }
    }

    fn from_marker(byte: u8) -> Option<Self> {
        match byte {
            b'>' => Some(Direction::ClientToServer),
            b'<' => Some(Direction::ServerToClient),
            b'#' => Some(Direction::Note),
            _ => None,
        }
    }
}

/// One record of a transcript: what one side wrote (or read) at once, or a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Who sent it.
    pub direction: Direction,
    /// The payload; empty on the wire means the sender closed its end.
    pub bytes: &'a [u8],
    /// Microseconds since the session began, if recorded (`+MS`).
    pub micros: Option<u64>,
    /// How many file descriptors came with the bytes (`fds=N`).
    pub fds: u32,
}

impl<'a> Record<'a> {
    /// A record with no time offset and no file descriptors.
    pub fn new(direction: Direction, bytes: &'a [u8]) -> Self {
        Record { direction, bytes, micros: None, fds: 0 }
    }

    /// Whether this is a side closing its end (`< 0`, `> 0`).
    pub fn is_close(&self) -> bool {
        self.direction != Direction::Note && self.bytes.is_empty()
    }
}

/// The longest header line accepted, in bytes (without its `\n`).
pub const MAX_HEADER: usize = 80;

/// The most file descriptors one record may claim (the kernel's own
/// `SCM_MAX_FD` is 253).
pub const MAX_FDS: u32 = 253;

/// What was wrong with a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A header line does not start with `>`, `<` or `#` and a space.
    BadMarker,
    /// A header line has no `\n` within [`MAX_HEADER`] bytes.
    HeaderTooLong,
    /// The length is not a decimal number, or does not fit.
    BadLength,
    /// A field after the length is not `+MS` or `fds=N`, is repeated, or
    /// is out of range.
    BadField,
    /// The payload is shorter than its length says.
    Truncated,
    /// The payload is not followed by `\n`.
    MissingNewline,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::BadMarker => "a record must start with '> ', '< ' or '# '",
            ErrorKind::HeaderTooLong => "header line too long",
            ErrorKind::BadLength => "bad length (expected a decimal byte count)",
            ErrorKind::BadField => "bad field after the length (expected +MS such as +1.250ms, or fds=N)",
            ErrorKind::Truncated => "payload shorter than its length",
            ErrorKind::MissingNewline => "payload not followed by a newline",
        })
    }
}

/// A transcript that could not be read, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What was wrong.
    pub kind: ErrorKind,
    /// The line (from 1) of the record's header.
    pub line: usize,
    /// The byte offset (from 0) of the record's header.
    pub offset: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transcript line {} (byte {}): {}", self.line, self.offset, self.kind)
    }
}

impl core::error::Error for Error {}

/// Reads the records of a transcript from a byte slice, in order; each
/// borrows the slice. After an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    /// A reader over the whole transcript `text`.
    pub fn new(text: &'a [u8]) -> Self {
        Reader { text, pos: 0, line: 1, failed: false }
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn record(&mut self) -> Result<Record<'a>, ErrorKind> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let window = rest.get(..MAX_HEADER + 1).unwrap_or(rest);
        let Some(eol) = window.iter().position(|&b| b == b'\n') else {
            return Err(if window.len() > MAX_HEADER { ErrorKind::HeaderTooLong } else { ErrorKind::BadMarker });
        };
        let header = window.get(..eol).unwrap_or_default();
        let (direction, fields) = match header {
            [marker, b' ', fields @ ..] => (Direction::from_marker(*marker).ok_or(ErrorKind::BadMarker)?, fields),
            _ => return Err(ErrorKind::BadMarker),
        };
        let mut fields = fields.split(|&b| b == b' ');
        let len = fields.next().and_then(decimal).ok_or(ErrorKind::BadLength)?;
        let len = usize::try_from(len).map_err(|_| ErrorKind::BadLength)?;
        let (mut micros, mut fds) = (None, None);
        for field in fields {
            if let Some(ms) = field.strip_prefix(b"+") {
                if micros.replace(millis(ms).ok_or(ErrorKind::BadField)?).is_some() {
                    return Err(ErrorKind::BadField);
                }
            } else if let Some(n) = field.strip_prefix(b"fds=") {
                let n = decimal(n).and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= MAX_FDS);
                if fds.replace(n.ok_or(ErrorKind::BadField)?).is_some() {
                    return Err(ErrorKind::BadField);
                }
            } else {
                return Err(ErrorKind::BadField);
            }
        }
        let body = rest.get(eol + 1..).unwrap_or_default();
        let bytes = body.get(..len).ok_or(ErrorKind::Truncated)?;
        if body.get(len) != Some(&b'\n') {
            return Err(ErrorKind::MissingNewline);
        }
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
        self.pos += eol + 1 + len + 1;
        self.line += newlines + 2;
        Ok(Record { direction, bytes, micros, fds: fds.unwrap_or(0) })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Record<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.text.len() {
            return None;
        }
        let (line, offset) = (self.line, self.pos);
        match self.record() {
            Ok(record) => Some(Ok(record)),
            Err(kind) => {
                self.failed = true;
                Some(Err(Error { kind, line, offset }))
            }
        }
    }
}

/// A decimal number of 1 to 19 digits (no sign, no spaces).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `12.345ms` (up to three decimals) as microseconds.
fn millis(text: &[u8]) -> Option<u64> {
    let number = text.strip_suffix(b"ms")?;
    let (whole, frac) = match number.iter().position(|&b| b == b'.') {
        Some(dot) => (number.get(..dot)?, number.get(dot + 1..)?),
        None => (number, &b""[..]),
    };
    if frac.len() > 3 || (number.contains(&b'.') && frac.is_empty()) {
        return None;
    }
    let mut micros = decimal(whole)?.checked_mul(1000)?;
    let mut scale = 100;
    for d in frac {
        if !d.is_ascii_digit() {
            return None;
        }
        micros = micros.checked_add(u64::from(d - b'0') * scale)?;
        scale /= 10;
    }
    Some(micros)
}

/// Writes `record` (header, payload, newline) into `out`.
pub fn write_record<S: Sink + ?Sized>(out: &mut S, record: &Record<'_>) -> Result<(), Full> {
    out.put(&[record.direction.marker(), b' '])?;
    put_decimal(out, record.bytes.len() as u64)?;
    if let Some(micros) = record.micros {
        out.put(b" +")?;
        put_decimal(out, micros / 1000)?;
        let frac = micros % 1000;
        out.put(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8])?;
        out.put(b"ms")?;
    }
    if record.fds > 0 {
        out.put(b" fds=")?;
        put_decimal(out, u64::from(record.fds))?;
    }
    out.put(b"\n")?;
    out.put(record.bytes)?;
    out.put(b"\n")
}

fn put_decimal<S: Sink + ?Sized>(out: &mut S, mut n: u64) -> Result<(), Full> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(digits.get(i..).unwrap_or_default())
}

/// The protocol a transcript names in a `protocol: NAME` note (the first
/// such note), if any: `qmp`, `qga`, `hmp`, `negotiator`, `minimega`,
/// `xmlrpc`. Stops at the first malformed record.
pub fn protocol(text: &[u8]) -> Option<&[u8]> {
    Reader::new(text).map_while(Result::ok).find_map(|r| {
        let name = r.bytes.strip_prefix(b"protocol: ").filter(|_| r.direction == Direction::Note)?;
        Some(name.split(|&b| b == b'\n' || b == b' ').next().unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Every `.txn` in `fixtures/` reads to its end, and its records put
    /// back together give the `.c2s` and `.s2c` files byte for byte.
    #[test]
    fn every_fixture_reads() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let mut count = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_none_or(|e| e != "txn") {
                    continue;
                }
                let text = std::fs::read(&path).unwrap();
                let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
                for record in Reader::new(&text) {
                    let record = record.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    match record.direction {
                        Direction::ClientToServer => c2s.extend_from_slice(record.bytes),
                        Direction::ServerToClient => s2c.extend_from_slice(record.bytes),
                        Direction::Note => {}
                    }
                }
                assert_eq!(c2s, std::fs::read(path.with_extension("c2s")).unwrap(), "{}", path.display());
                assert_eq!(s2c, std::fs::read(path.with_extension("s2c")).unwrap(), "{}", path.display());
                // Written back, the records are the file again.
                let mut again = Vec::new();
                for record in Reader::new(&text) {
                    write_record(&mut again, &record.unwrap()).unwrap();
                }
                assert_eq!(again, text, "{}", path.display());
                count += 1;
            }
        }
        assert!(count > 50, "only {count} fixtures");
    }

    #[test]
    fn fields_round_trip() {
        let records = [
            Record { direction: Direction::Note, bytes: b"protocol: qmp", micros: None, fds: 0 },
            Record {
                direction: Direction::ClientToServer,
                bytes: b"{\"execute\": \"getfd\"}\n",
                micros: Some(0),
                fds: 1,
            },
            Record { direction: Direction::ServerToClient, bytes: b"\xff\n\n", micros: Some(12_345_678), fds: 0 },
            Record { direction: Direction::ServerToClient, bytes: b"", micros: Some(999), fds: 0 },
        ];
        let mut text = Vec::new();
        for r in &records {
            write_record(&mut text, r).unwrap();
        }
        let back: Vec<_> = Reader::new(&text).map(Result::unwrap).collect();
        assert_eq!(back, records);
        assert!(text.starts_with(b"# 13\nprotocol: qmp\n> 21 +0.000ms fds=1\n"));
        assert_eq!(protocol(&text), Some(&b"qmp"[..]));
        assert!(back[3].is_close());
    }

    proptest::proptest! {
        /// Any records, written, read back the same; any bytes never panic
        /// the reader, and an error points inside the input.
        #[test]
        fn writer_and_reader_agree(
            records in proptest::collection::vec(
                (0..3u8, proptest::collection::vec(proptest::num::u8::ANY, 0..64), proptest::option::of(proptest::num::u64::ANY), 0..=MAX_FDS),
                0..8,
            ),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let direction = |d: u8| [Direction::ClientToServer, Direction::ServerToClient, Direction::Note][usize::from(d)];
            let records: Vec<_> = records
                .iter()
                .map(|(d, bytes, micros, fds)| Record { direction: direction(*d), bytes, micros: *micros, fds: *fds })
                .collect();
            let mut text = Vec::new();
            for r in &records {
                write_record(&mut text, r).unwrap();
            }
            let back: Vec<_> = Reader::new(&text).map(Result::unwrap).collect();
            proptest::prop_assert_eq!(back, records);
            text.extend_from_slice(&junk);
            for r in Reader::new(&text) {
                if let Err(e) = r {
                    proptest::prop_assert!(e.offset < text.len());
                }
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let cases: &[(&[u8], ErrorKind, usize, usize)] = &[
            (b"> 2\nab\n* 1\nx\n", ErrorKind::BadMarker, 3, 7),
            (b"> 2\nab\n<1\nx\n", ErrorKind::BadMarker, 3, 7),
            (b"> x\n", ErrorKind::BadLength, 1, 0),
            (b"> 99999999999999999999\n", ErrorKind::BadLength, 1, 0),
            (b"> -1\n", ErrorKind::BadLength, 1, 0),
            (b"> 1 +1.2345ms\nx\n", ErrorKind::BadField, 1, 0),
            (b"> 1 +1.ms\nx\n", ErrorKind::BadField, 1, 0),
            (b"> 1 +1ms +2ms\nx\n", ErrorKind::BadField, 1, 0),
            (b"> 1 fds=254\nx\n", ErrorKind::BadField, 1, 0),
            (b"> 1 extra\nx\n", ErrorKind::BadField, 1, 0),
            (b"> 5\nab\n", ErrorKind::Truncated, 1, 0),
            (b"> 1\nab\n", ErrorKind::MissingNewline, 1, 0),
            (b"> 1\na", ErrorKind::MissingNewline, 1, 0),
            (b"# 0\n\n> 1", ErrorKind::BadMarker, 3, 5),
        ];
        for &(text, kind, line, offset) in cases {
            let mut reader = Reader::new(text);
            let error = reader.find_map(Result::err);
            assert_eq!(error, Some(Error { kind, line, offset }), "{}", text.escape_ascii());
            assert_eq!(reader.next(), None);
        }
        let long = [b'>'; MAX_HEADER + 10];
        assert_eq!(Reader::new(&long).next().unwrap().unwrap_err().kind, ErrorKind::HeaderTooLong);
        assert_eq!(Reader::new(b"").next(), None);
        assert_eq!(millis(b"1.5ms"), Some(1500));
        assert_eq!(millis(b"999999999999999.999ms"), Some(999_999_999_999_999_999));
        assert_eq!(millis(b"18446744073709551.615ms"), Some(u64::MAX));
        assert_eq!(millis(b"18446744073709551.616ms"), None);
    }
}
