//! The echo of a command line, read as the terminal would show it.
//!
//! QEMU's readline redraws the whole line after every byte it receives:
//! `ESC[D` once per character already shown (back to the start of the
//! line), the line so far, `ESC[K` (erase to the end of the line). Typing
//! `info` comes back as `i ESC[K ESC[D in ESC[K ESC[D ESC[D inf ESC[K …`,
//! so a line of n characters echoes about 2n² bytes, and `\r\n` once QEMU
//! has the whole line.
//!
//! [`Echo`] does not match that byte pattern; it plays the bytes on a model
//! of one terminal line — text overwrites at the cursor, `ESC[nD`/`ESC[nC`
//! move it, `ESC[K` erases to the end, `\r` and backspace move it back —
//! and checks that the line written is exactly the command sent. Any way
//! of redrawing that ends in the right line is accepted; anything else
//! (bytes that are not the command, a gap, a control sequence that edits
//! the line some other way) is recorded as a mismatch at its stream offset.
//! Every byte is handled once, in O(1), with no buffer: the line being
//! checked is the command itself.

/// Where the terminal parser is inside a control sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Seq {
    #[default]
    None,
    /// After `ESC`.
    Escape,
    /// After `ESC [` (CSI), reading parameters.
    Csi,
    /// After `ESC O` (SS3): one more byte.
    Ss3,
}

/// The echo of one command, in progress.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Echo {
    seq: Seq,
    /// The first CSI parameter.
    param: u32,
    cursor: usize,
    /// Characters written so far (positions `0..extent` hold the command's bytes).
    extent: usize,
    /// Stream offset of the first byte that does not fit the command.
    pub(super) mismatch: Option<u64>,
}

const CURSOR_LEFT: &[u8; 3] = b"\x1b[D";

/// Eight of them: long lines echo runs of hundreds.
const CURSOR_LEFT_8: [u8; 24] = {
    let mut eight = [0; 24];
    let mut i = 0;
    while i < 24 {
        eight[i] = CURSOR_LEFT[i % 3];
        i += 1;
    }
    eight
};

impl Echo {
    /// Plays `data` (stream offset `offset`) against the line `command`.
    /// Returns how many bytes belong to the echo and whether it ended (at
    /// the `\n` QEMU prints when it has the line).
    pub(super) fn run(&mut self, data: &[u8], command: &[u8], offset: u64) -> (usize, bool) {
        let mut i = 0;
        while i < data.len() {
            if self.seq == Seq::None {
                // The common case first: runs of `ESC[D`, and runs of text
                // that are the command's own bytes.
                while data.get(i..i + CURSOR_LEFT_8.len()) == Some(&CURSOR_LEFT_8[..]) {
                    self.cursor = self.cursor.saturating_sub(8);
                    i += CURSOR_LEFT_8.len();
                }
                while data.get(i..i + 3) == Some(CURSOR_LEFT) {
                    self.cursor = self.cursor.saturating_sub(1);
                    i += 3;
                }
                let rest = data.get(i..).unwrap_or_default();
                let run = memchr::memchr3(0x1b, b'\r', b'\n', rest).unwrap_or(rest.len());
                if run > 0 {
                    let text = rest.get(..run).unwrap_or_default();
                    let at = self.cursor;
                    if at <= self.extent && command.get(at..at + run) == Some(text) {
                        self.cursor += run;
                        self.extent = self.extent.max(self.cursor);
                    } else {
                        // Not the command: byte by byte, to find where.
                        for (k, &b) in text.iter().enumerate() {
                            self.byte(b, offset + (i + k) as u64, command);
                        }
                    }
                    i += run;
                    continue;
                }
            }
            let Some(&b) = data.get(i) else { break };
            i += 1;
            if self.byte(b, offset + (i - 1) as u64, command) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// One byte at stream offset `at`; whether it ended the echo.
    fn byte(&mut self, b: u8, at: u64, command: &[u8]) -> bool {
        match self.seq {
            Seq::Escape => {
                self.param = 0;
                self.seq = match b {
                    b'[' => Seq::Csi,
                    b'O' => Seq::Ss3,
                    _ => Seq::None,
                };
            }
            Seq::Ss3 => self.seq = Seq::None,
            Seq::Csi => match b {
                b'0'..=b'9' => self.param = self.param.saturating_mul(10).saturating_add(u32::from(b - b'0')),
                // Further parameters, private markers, intermediates: nothing to do.
                b';' | b'<'..=b'?' | 0x20..=0x2f => {}
                0x40..=0x7e => {
                    self.seq = Seq::None;
                    self.csi(b, at);
                }
                _ => {
                    self.seq = Seq::None;
                    self.fail(at);
                }
            },
            Seq::None => match b {
                0x1b => self.seq = Seq::Escape,
                b'\n' => {
                    if self.extent != command.len() {
                        self.fail(at);
                    }
                    return true;
                }
                b'\r' => self.cursor = 0,
                0x08 => self.cursor = self.cursor.saturating_sub(1),
                0x07 => {}
                0..=0x1f | 0x7f => self.fail(at),
                _ => {
                    if self.cursor > self.extent || command.get(self.cursor) != Some(&b) {
                        self.fail(at);
                    }
                    self.cursor += 1;
                    self.extent = self.extent.max(self.cursor);
                }
            },
        }
        false
    }

    /// A complete CSI sequence with final byte `b`.
    fn csi(&mut self, b: u8, at: u64) {
        let n = usize::try_from(self.param.max(1)).unwrap_or(usize::MAX);
        match b {
            b'D' => self.cursor = self.cursor.saturating_sub(n),
            b'C' => self.cursor = self.cursor.saturating_add(n),
            // Erase to the end of the line.
            b'K' if self.param == 0 => self.extent = self.extent.min(self.cursor),
            // Colours and modes change nothing on the line.
            b'm' | b'h' | b'l' => {}
            _ => self.fail(at),
        }
    }

    fn fail(&mut self, at: u64) {
        self.mismatch.get_or_insert(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2's readline prints while `line` is typed and entered.
    fn readline_echo(line: &[u8]) -> heapless::Vec<u8, 8192> {
        let mut out = heapless::Vec::new();
        for k in 1..=line.len() {
            for _ in 1..k {
                out.extend_from_slice(CURSOR_LEFT).unwrap();
            }
            out.extend_from_slice(&line[..k]).unwrap();
            out.extend_from_slice(b"\x1b[K").unwrap();
        }
        out.extend_from_slice(b"\r\n").unwrap();
        out
    }

    fn play(echo: &[u8], line: &[u8], piece: usize) -> (usize, Option<u64>) {
        let mut e = Echo::default();
        let mut used = 0;
        for chunk in echo.chunks(piece) {
            let (n, done) = e.run(chunk, line, used as u64);
            used += n;
            if done {
                break;
            }
        }
        (used, e.mismatch)
    }

    #[test]
    fn readline_echo_is_the_command() {
        for line in [&b""[..], b"c", b"info status", b"   ", b"caf\xc3\xa9 \xff\xfe"] {
            let echo = readline_echo(line);
            for piece in [1, 2, 3, 7, echo.len()] {
                assert_eq!(play(&echo, line, piece), (echo.len(), None), "{line:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn other_redraws_that_end_in_the_line_are_accepted() {
        // Only the new character each time, then the cursor moving about.
        for piece in [1, 2, 5, 20] {
            assert_eq!(play(b"inf\x1b[Ko\x1b[2D\x1b[2C\x1b[K\r\n", b"info", piece), (20, None));
            // Backspace, and the tail written again; a bell; colours.
            assert_eq!(play(b"info\x08\x08fo\x07\x1b[1;32m\x1b[K\r\n", b"info", piece), (21, None));
        }
    }

    #[test]
    fn anything_else_is_a_mismatch_at_its_offset() {
        assert_eq!(play(b"inff\r\n", b"info", 1).1, Some(3));
        assert_eq!(play(b"inf\r\n", b"info", 4).1, Some(4)); // too short at the newline
        assert_eq!(play(b"info\x1b[1D\x1b[K\r\n", b"info", 2).1, Some(12)); // erased a character
        assert_eq!(play(b"in\x1b[3Cfo\r\n", b"info", 3).1, Some(6)); // a gap
        assert_eq!(play(b"info\x1b[2J\r\n", b"info", 1).1, Some(7)); // clear screen
        assert_eq!(play(b"in\x01fo\r\n", b"info", 1).1, Some(2));
    }
}
