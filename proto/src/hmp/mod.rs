//! HMP, QEMU's human monitor: a sans-IO client for the readline monitor
//! (`-monitor unix:…`, `-mon chardev=…,mode=readline`), and HMP over QMP.
//!
//! The monitor is a terminal: QEMU prints a banner and the `(qemu) ` prompt,
//! echoes every byte typed (redrawing the whole line each time, in VT100
//! control sequences), runs the line at `\r` or `\n`, prints its output and
//! the prompt again. The [`Client`] machine sends one command at a time
//! (the rest queue), checks and drops the echo whatever its length and
//! however it is chunked, and hands out the bytes between the echo and the
//! next prompt as the command's output, exactly as QEMU wrote them (with
//! `\r\n` turned into `\n` only if [`Config::lf_newlines`] asks).
//!
//! ```
//! use vmwire_proto::{Machine, buf::Fixed, hmp::{Client, Config, Event}};
//!
//! let mut hmp = Client::<Fixed<4096>>::new(Config::default());
//! let id = hmp.command("info status")?; // queued until the prompt shows
//! hmp.receive(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ")?;
//! assert!(matches!(hmp.poll()?, Some(Event::Banner(b)) if b.version() == Some((7, 2, 22))));
//! assert_eq!(hmp.transmit(), b"info status\n");
//! let n = hmp.transmit().len();
//! hmp.transmitted(n);
//!
//! // The echo: the line redrawn after every character, then the output.
//! let mut echo = Vec::new();
//! for k in 1..=11 {
//!     echo.extend(b"\x1b[D".repeat(k - 1));
//!     echo.extend(&b"info status"[..k]);
//!     echo.extend(b"\x1b[K");
//! }
//! hmp.receive(&echo)?;
//! hmp.receive(b"\r\nVM status: paused (prelaunch)\r\n(qemu) ")?;
//! match hmp.poll()? {
//!     Some(Event::Output { id: got, text }) => {
//!         assert_eq!(got, id);
//!         assert_eq!(text, b"VM status: paused (prelaunch)\r\n");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), vmwire_proto::hmp::Error>(())
//! ```
//!
//! Where the output ends is the prompt at the start of a line: output that
//! itself contains a line beginning with `(qemu) ` would end early (the
//! echo check of the next command then reports it as [`Event::Malformed`]).

mod echo;
mod op;

use core::fmt;

use crate::Machine;
use crate::buf::{Buf, Full, RxBuf, Storage};
use crate::json::{JsonStr, Value};
use crate::qmp;
use echo::Echo;
pub use op::{Answer, Opened, Opening, ReplyTo};

/// The monitor's prompt.
pub const PROMPT: &[u8] = b"(qemu) ";

/// The longest line QEMU's readline takes; it drops what is typed beyond.
pub const MAX_LINE: usize = 4095;

/// Most bytes of the stream's start that [`Event::BadBanner`] shows.
pub const BAD_BANNER_TEXT: usize = 256;

/// How much of a stream's opening to show when it is another protocol's:
/// its first line (with the line end) if that ends within `cap` bytes, else
/// the first `cap` bytes, else, at the end of the stream, all of it; `None`
/// while none of these has arrived. What is shown depends on the bytes,
/// never on how they were chunked.
pub(crate) fn opening_text(data: &[u8], cap: usize, eof: bool) -> Option<usize> {
    let head = data.get(..cap).unwrap_or(data);
    match memchr::memchr(b'\n', head) {
        Some(k) => Some(k + 1),
        None if head.len() == cap || eof => Some(head.len()),
        None => None,
    }
}

/// Bytes of receive buffer always kept free to read into.
const MIN_SPARE: usize = 64;

/// Settings for a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The longest output of one command, in bytes (with [`Heap`](crate::buf::Heap)
    /// storage; fixed storage is bounded by its receive buffer too). Longer
    /// output is dropped as it arrives and reported as [`Event::TooLarge`].
    pub max_output: usize,
    /// Most bytes of command lines waiting their turn (with `Heap` storage).
    pub max_queue: usize,
    /// Turn QEMU's `\r\n` line ends into `\n` in the output handed out.
    pub lf_newlines: bool,
    /// The longest text before the first prompt, in bytes (QEMU's banner is
    /// one line of about 60). More is [`Error::BannerTooLong`].
    pub max_banner: usize,
}

impl Default for Config {
    /// 16 MiB of output, 64 KiB of queued lines, output as QEMU wrote it,
    /// 64 KiB of banner.
    fn default() -> Self {
        Config { max_output: 16 << 20, max_queue: 64 << 10, lf_newlines: false, max_banner: 64 << 10 }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the banner and the first prompt.
    AwaitingPrompt,
    /// The prompt is showing and nothing is running.
    Ready,
    /// A command is running (or being typed).
    Busy,
    /// The stream ended.
    Closed,
}

/// The text before the first prompt: `QEMU 7.2.22 monitor - type 'help' for more information\r\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banner<'a> {
    /// The text as QEMU wrote it (empty if the monitor showed only the prompt).
    pub text: &'a [u8],
}

impl Banner<'_> {
    /// QEMU's version as `(major, minor, micro)`, from `QEMU x.y.z monitor`.
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        let at = memchr::memmem::find(self.text, b"QEMU ")? + 5;
        let rest = self.text.get(at..)?;
        let end = rest.iter().position(|&b| b == b' ')?;
        let mut parts = rest.get(..end)?.split(|&b| b == b'.').map(decimal);
        let version = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(version)
    }
}

/// What `data` (the start of the stream) opens as, if it is another
/// protocol's: a JSON object (`{`, then after any white space a `"`: QMP's
/// greeting is `{"QMP": …`), or a VNC server's greeting. A monitor opens
/// with its banner (`QEMU …`) or its prompt.
fn other_opening(data: &[u8]) -> Option<&'static str> {
    let ws = |b: &&u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut bytes = data.iter().skip_while(ws);
    if bytes.next() == Some(&b'{') && bytes.find(|b| !ws(b)) == Some(&b'"') {
        return Some("JSON (a QMP or guest agent socket?)");
    }
    let (prefix, found) = VNC_GREETING;
    data.starts_with(prefix).then_some(found)
}

/// How a VNC server opens (`RFB 003.008\n`), and what to call it: QEMU's
/// `-vnc unix:…` socket sits beside its monitors, and a client of any of
/// them given it by mistake can say so.
pub const VNC_GREETING: (&[u8], &str) = (b"RFB ", "a VNC server's greeting");

fn decimal(digits: &[u8]) -> Option<u64> {
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// What the [`Client`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The monitor showed its prompt for the first time; commands go out from here.
    Banner(Banner<'a>),
    /// Command `id` finished: `text` is everything QEMU printed between the
    /// end of the echo and the next prompt (often nothing).
    Output {
        /// The command's id, as [`Client::command`] returned it.
        id: u64,
        /// The output.
        text: &'a [u8],
    },
    /// Command `id` finished, but its output was longer than the limit and was dropped.
    TooLarge {
        /// The command's id.
        id: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// What came before the first prompt is not a monitor's banner: the
    /// stream opened with JSON (`{"QMP": …`, another protocol's socket), or
    /// ran past [`Config::max_banner`] with no prompt. `error` says which,
    /// `text` is the start of what arrived (its first line, at most
    /// [`BAD_BANNER_TEXT`] bytes). The session is over: queued commands are reported
    /// [`Event::Failed`], then [`Event::Closed`].
    BadBanner {
        /// [`Error::NotHmp`] or [`Error::BannerTooLong`].
        error: Error,
        /// The first bytes received.
        text: &'a [u8],
    },
    /// Text that came while no command was running: up to a prompt, up to
    /// where a command went out, or the stream's end; in pieces of the
    /// output limit if it runs on longer with no prompt.
    Unsolicited(&'a [u8]),
    /// The echo of the command now running was not that command: something
    /// else was printed between the prompt and the command's output, or the
    /// last output ended early. Its output is still reported.
    Malformed(Error),
    /// The session closed before command `id` finished. `output` is `Some`
    /// (what QEMU printed, possibly nothing; nothing if it was over the
    /// limit) when QEMU had read the whole line and so ran it, as `quit`
    /// does; `None` when it may not have run.
    Failed {
        /// The command's id.
        id: u64,
        /// What it printed before the end, if it ran.
        output: Option<&'a [u8]>,
    },
    /// The session is closed; nothing more will come. Reported once, last.
    Closed,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The command has a CR or LF at `offset`: readline would run the text
    /// after it as a second command.
    LineBreak {
        /// Where in the command.
        offset: usize,
    },
    /// The command has a byte readline takes as an editing key or an escape
    /// (a control character, DEL, or the 8-bit CSI `0x9B`).
    ControlCharacter {
        /// The byte.
        byte: u8,
        /// Where in the command.
        offset: usize,
    },
    /// The command is longer than readline's line.
    LineTooLong {
        /// Its length.
        len: usize,
        /// [`MAX_LINE`].
        limit: usize,
    },
    /// No room to queue another command line.
    QueueFull(Full),
    /// The echo did not show the command; `offset` is the stream offset of
    /// the first byte that did not fit.
    EchoMismatch {
        /// Stream offset.
        offset: u64,
    },
    /// A method called in a state that does not allow it.
    WrongState {
        /// The state the machine was in.
        state: State,
        /// The method.
        operation: &'static str,
    },
    /// `recv_commit` was told of more bytes than `recv_buf` offered.
    CommitTooLarge(crate::buf::CommitTooLarge),
    /// The stream opened as another protocol's does, not with a monitor's
    /// banner and prompt: with a JSON object (QMP's greeting `{"QMP": …`, or
    /// another JSON protocol's message), or a VNC server's `RFB 003.008`.
    NotHmp {
        /// What it opened with.
        found: &'static str,
    },
    /// More text than the limit came before the first prompt.
    BannerTooLong {
        /// The limit, in bytes ([`Config::max_banner`], within the buffer).
        limit: usize,
    },
    /// `change vnc password` without the password: on the readline monitor
    /// QEMU would ask for it with a `Password:` prompt of its own and wait
    /// there, for this connection and the next ones.
    PasswordPrompt,
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Error::LineBreak { .. }
            | Error::ControlCharacter { .. }
            | Error::LineTooLong { .. }
            | Error::PasswordPrompt => K::InvalidInput,
            Error::QueueFull(_) => K::Busy,
            Error::EchoMismatch { .. } | Error::NotHmp { .. } => K::InvalidData,
            Error::BannerTooLong { .. } => K::TooLarge,
            Error::WrongState { .. } => K::WrongState,
            Error::CommitTooLarge(_) => K::Misuse,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LineBreak { offset } => {
                write!(f, "HMP: line break at byte {offset} of the command (it would run a second command)")
            }
            Error::ControlCharacter { byte, offset } => {
                write!(f, "HMP: control character 0x{byte:02x} at byte {offset} of the command")
            }
            Error::LineTooLong { len, limit } => {
                write!(f, "HMP: the command is {len} bytes long; QEMU's line takes {limit}")
            }
            Error::QueueFull(full) => write!(f, "HMP: command queue {full}"),
            Error::EchoMismatch { offset } => write!(f, "HMP: the echo at byte {offset} is not the command sent"),
            Error::WrongState { state, operation } => write!(f, "HMP: {operation} is not allowed in state {state:?}"),
            Error::CommitTooLarge(e) => write!(f, "HMP: {e}"),
            Error::NotHmp { found } => {
                write!(f, "HMP: expected the monitor's banner and `(qemu) ` prompt, got {found}")
            }
            Error::BannerTooLong { limit } => {
                write!(f, "HMP: more than {limit} bytes came before the first `(qemu) ` prompt")
            }
            Error::PasswordPrompt => f.write_str(
                "HMP: QEMU would ask for the password on a prompt of its own and wait there; \
                 give it on the line: change vnc password PASSWORD",
            ),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::QueueFull(e) => Some(e),
            _ => None,
        }
    }
}

/// Where the password stands in an HMP command line, if it carries one:
/// `set_password vnc PASSWORD …` and `change vnc password PASSWORD`. For a
/// recorder or a log, which blank it out (as `human-monitor-command`'s
/// `command-line`, [`qmp::secret_spans`] finds it too).
///
/// ```
/// use vmwire_proto::hmp::secret_span;
/// let line = b"set_password vnc s3cret keep";
/// assert_eq!(&line[secret_span(line).unwrap()], b"s3cret");
/// assert_eq!(secret_span(b"change vnc password pw"), Some(20..22));
/// assert_eq!(secret_span(b"info status"), None);
/// ```
pub fn secret_span(line: &[u8]) -> Option<core::ops::Range<usize>> {
    crate::span_in(line, password_word(line)??)
}

/// The password word of a line that sets one (`set_password PROTOCOL PW …`,
/// `change vnc password PW`); `Some(None)` for `change vnc password` without
/// it, which QEMU asks for on a prompt of its own.
fn password_word(line: &[u8]) -> Option<Option<&[u8]>> {
    let mut words = line.split(|&b| b == b' ').filter(|word| !word.is_empty());
    match (words.next()?, words.next()?, words.next()?) {
        (b"set_password", _, password) => Some(Some(password)),
        (b"change", b"vnc", b"password" | b"passwd") => Some(words.next()),
        _ => None,
    }
}

/// Checks that `line` is one line readline will take as it is, and that
/// QEMU will run it without a prompt of its own ([`Error::PasswordPrompt`]).
pub fn check_line(line: &[u8]) -> Result<(), Error> {
    if line.len() > MAX_LINE {
        return Err(Error::LineTooLong { len: line.len(), limit: MAX_LINE });
    }
    if password_word(line) == Some(None) {
        return Err(Error::PasswordPrompt);
    }
    check_text(line)
}

/// Checks that `line` holds no line break and no byte readline takes as an
/// editing key: the guard for every way of running a command, the readline
/// monitor ([`check_line`] adds its length limit) and `human-monitor-command`
/// ([`via_qmp`]), where a line break would still be refused or misread.
pub fn check_text(line: &[u8]) -> Result<(), Error> {
    match line.iter().position(|&b| b < 0x20 || b == 0x7f || b == 0x9b) {
        None => Ok(()),
        Some(offset) => match line.get(offset) {
            Some(b'\r' | b'\n') => Err(Error::LineBreak { offset }),
            Some(&byte) => Err(Error::ControlCharacter { byte, offset }),
            None => Ok(()),
        },
    }
}

/// How received bytes are read, at the point the stream has reached.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Before the first prompt: the banner.
    Banner,
    /// The prompt is showing; nothing is queued.
    Idle,
    /// The front command goes out: its echo comes back.
    Echo(Echo),
    /// The echo ended: output, until the prompt.
    Output,
    /// The stream ended; what was pending is being reported.
    Closing,
    /// Everything was reported.
    Closed,
}

/// Looking for the prompt at the start of a line.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Where the search resumes: no prompt at a line start begins before it.
    scanned: usize,
    /// Whether the region's first byte begins a line.
    line_start: bool,
}

impl Scan {
    /// A region that begins at the start of a line.
    fn line_start() -> Self {
        Scan { scanned: 0, line_start: true }
    }

    /// Where the prompt starts in `d`, looking only at bytes not yet seen.
    fn find(&mut self, d: &[u8]) -> Option<usize> {
        let mut from = self.scanned;
        while let Some(k) = memchr::memmem::find(d.get(from..).unwrap_or_default(), PROMPT) {
            let at = from + k;
            let starts_line = match at.checked_sub(1) {
                None => self.line_start,
                Some(before) => matches!(d.get(before), Some(b'\n' | b'\r')),
            };
            if starts_line {
                return Some(at);
            }
            from = at + 1;
        }
        // A prompt may still begin in the last bytes, cut short.
        self.scanned = from.max(d.len().saturating_sub(PROMPT.len() - 1));
        None
    }

    /// How many bytes at the front can go without losing a prompt (the
    /// byte before one tells whether it begins a line).
    fn droppable(&self) -> usize {
        self.scanned.saturating_sub(1)
    }

    /// `n` bytes were dropped from the front.
    fn shift(&mut self, n: usize) {
        self.scanned -= n.min(self.scanned);
        self.line_start &= n == 0;
    }
}

/// Why a stream's opening is no monitor's banner.
#[derive(Debug, Clone, Copy)]
enum NotBanner {
    /// Another protocol's opening ([`other_opening`]).
    Other(&'static str),
    /// No prompt within the limit.
    TooLong(usize),
}

/// What [`Client::step`] found, before it is lent out as an [`Event`].
#[derive(Debug, Clone, Copy)]
enum Found {
    Banner(usize),
    /// Not a banner, with the text's length.
    BadBanner {
        why: NotBanner,
        len: usize,
    },
    Output {
        id: u64,
        len: usize,
    },
    TooLarge {
        id: u64,
    },
    Unsolicited(usize),
    Mismatch(u64),
    Failed {
        id: u64,
        output: Option<usize>,
    },
    Closed,
}

/// The HMP client machine. See the [module documentation](self).
pub struct Client<S: Storage> {
    config: Config,
    rx: RxBuf<S::Rx>,
    /// Command lines, each with its `\n`; the front one is running.
    queue: S::Tx,
    /// How many lines are queued.
    lines: u64,
    /// The front line's id.
    front_id: u64,
    /// Bytes of the front line (with its `\n`) written.
    sent: usize,
    phase: Phase,
    scan: Scan,
    /// The front command's output went over the limit: bytes are being dropped.
    overflow: bool,
    /// Bytes at the front of the buffer that came before the running command went out.
    unsolicited: usize,
    /// Bytes of the last event, dropped at the next call.
    later: usize,
    /// Stream offset of the first byte in the buffer.
    offset: u64,
    eof: bool,
    /// [`Client::close`] was called: nothing more goes out or is read.
    shut: bool,
}

impl<S: Storage> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("queued", &self.lines)
            .field("buffered", &self.rx.data().len())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Client<S> {
    /// A client waiting for the banner and the first prompt.
    pub fn new(config: Config) -> Self {
        let rx_limit = config.max_output.saturating_add(PROMPT.len() + MIN_SPARE);
        Client {
            config,
            rx: RxBuf::new(S::rx(rx_limit)),
            queue: S::tx(config.max_queue),
            lines: 0,
            front_id: 0,
            sent: 0,
            phase: Phase::Banner,
            scan: Scan::line_start(),
            overflow: false,
            unsolicited: 0,
            later: 0,
            offset: 0,
            eof: false,
            shut: false,
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Banner => State::AwaitingPrompt,
            Phase::Idle => State::Ready,
            Phase::Echo(_) | Phase::Output => State::Busy,
            Phase::Closing | Phase::Closed => State::Closed,
        }
    }

    /// Bytes received and not yet handed out in an event (before the first
    /// prompt: the banner so far), to say what came when the prompt does not.
    pub fn buffered(&self) -> &[u8] {
        self.rx.data().get(self.later..).unwrap_or_default()
    }

    /// Commands not yet finished (the running one included).
    pub fn queued(&self) -> usize {
        usize::try_from(self.lines).unwrap_or(usize::MAX)
    }

    /// Queues `line` (no line break: the machine ends it) and returns its
    /// id. It goes out when the prompt shows and the commands before it
    /// have finished.
    pub fn command(&mut self, line: impl AsRef<[u8]>) -> Result<u64, Error> {
        let line = line.as_ref();
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            return Err(Error::WrongState { state: State::Closed, operation: "command" });
        }
        check_line(line)?;
        let limit = self.queue.limit();
        if limit - self.queue.as_slice().len() < line.len() + 1 {
            return Err(Error::QueueFull(Full { limit }));
        }
        self.queue.try_extend(line).map_err(Error::QueueFull)?;
        self.queue.try_push(b'\n').map_err(Error::QueueFull)?;
        let id = self.front_id + self.lines;
        self.lines += 1;
        if matches!(self.phase, Phase::Idle) {
            // Whatever came while nothing ran is not this command's echo.
            self.settle();
            self.unsolicited = self.rx.data().len();
            self.phase = Phase::Echo(Echo::default());
        }
        Ok(id)
    }

    /// Ends the session from this side: nothing more goes out, what is
    /// still buffered is dropped, commands not finished are reported failed,
    /// then [`Event::Closed`].
    pub fn close(&mut self) {
        self.shut = true;
    }

    /// The front line's length with its `\n` (0 if none).
    fn front_len(&self) -> usize {
        memchr::memchr(b'\n', self.queue.as_slice()).map_or(0, |k| k + 1)
    }

    fn settle(&mut self) {
        let n = core::mem::take(&mut self.later);
        if n > 0 {
            self.consume(n);
        }
    }

    fn consume(&mut self, n: usize) {
        self.rx.consume(n);
        self.offset += n as u64;
    }

    /// Output limit in force: the configured one, within the buffer (which
    /// must hold it, a prompt, and room to read).
    fn max_output(&self) -> usize {
        self.config.max_output.min(self.rx.limit().saturating_sub(PROMPT.len() + MIN_SPARE))
    }

    /// Banner limit in force: the configured one, within the buffer.
    fn max_banner(&self) -> usize {
        self.config.max_banner.min(self.max_output())
    }

    /// The stream is not a monitor's: report it with its first bytes, and
    /// end the session (everything buffered goes with the event).
    /// The text shown is `len` bytes: the same whatever the chunking.
    fn bad_banner(&mut self, why: NotBanner, len: usize) -> Found {
        let buffered = self.rx.data().len();
        self.phase = Phase::Closing;
        self.later = buffered;
        Found::BadBanner { why, len }
    }

    /// `None` if the stream does not open as another protocol's; else what
    /// it is, and how much of it to show once that is known ([`opening_text`]).
    fn other_opening(&self) -> Option<(&'static str, Option<usize>)> {
        let (data, cap) = (self.rx.data(), self.opening_cap());
        other_opening(data.get(..cap).unwrap_or(data)).map(|found| (found, opening_text(data, cap, self.eof)))
    }

    /// Bytes of the stream's opening shown if it is another protocol's:
    /// within the banner limit, so that it is decided before that is.
    fn opening_cap(&self) -> usize {
        BAD_BANNER_TEXT.min(self.max_banner()).max(1)
    }

    /// The front command finished: drop its line, arm the next.
    fn next_command(&mut self) {
        let len = self.front_len();
        let queue = self.queue.as_mut_slice();
        let total = queue.len();
        queue.copy_within(len..total, 0);
        self.queue.truncate(total - len);
        self.lines = self.lines.saturating_sub(1);
        self.front_id += 1;
        self.sent = 0;
        self.phase = if self.lines > 0 { Phase::Echo(Echo::default()) } else { Phase::Idle };
        self.scan = Scan::line_start();
        self.overflow = false;
    }

    /// Advances through the buffered bytes to the next event.
    fn step(&mut self) -> Option<Found> {
        if self.shut && !matches!(self.phase, Phase::Closing | Phase::Closed) {
            self.unsolicited = 0;
            return self.begin_closing();
        }
        if self.unsolicited > 0 {
            let n = core::mem::take(&mut self.unsolicited);
            self.later = n;
            return Some(Found::Unsolicited(n));
        }
        loop {
            match self.phase {
                Phase::Echo(mut echo) => {
                    let len = self.front_len().saturating_sub(1);
                    let command = self.queue.as_slice().get(..len).unwrap_or_default();
                    let (used, done) = echo.run(self.rx.data(), command, self.offset);
                    self.consume(used);
                    if !done {
                        self.phase = Phase::Echo(echo);
                        break;
                    }
                    self.phase = Phase::Output;
                    self.scan = Scan::line_start();
                    if let Some(offset) = echo.mismatch {
                        return Some(Found::Mismatch(offset));
                    }
                }
                Phase::Banner if self.offset == 0 && self.other_opening().is_some() => {
                    match self.other_opening() {
                        Some((found, Some(len))) => return Some(self.bad_banner(NotBanner::Other(found), len)),
                        _ => break, // the rest of its first line
                    }
                }
                Phase::Banner | Phase::Idle | Phase::Output => {
                    let data = self.rx.data();
                    let max = match self.phase {
                        Phase::Banner => self.max_banner(),
                        _ => self.max_output(),
                    };
                    let found = self.scan.find(data);
                    // Decided on what the bytes are, never on how they were
                    // chunked: with no prompt yet, the next one can begin no
                    // earlier than PROMPT.len() - 1 bytes from the end.
                    let over = found.map_or(data.len() >= max + PROMPT.len(), |at| at > max);
                    if over && matches!(self.phase, Phase::Banner) {
                        let len = self.opening_cap();
                        return Some(self.bad_banner(NotBanner::TooLong(max), len));
                    }
                    if over && !matches!(self.phase, Phase::Output) {
                        // Text with no prompt in sight, handed out in pieces of the limit.
                        let piece = max.max(1);
                        let line_start = matches!(data.get(piece - 1), Some(b'\n' | b'\r'));
                        self.scan = Scan { scanned: 0, line_start };
                        self.later = piece;
                        return Some(Found::Unsolicited(piece));
                    }
                    let Some(at) = found else {
                        if over {
                            // The output is over the limit: keep only what
                            // may begin the prompt.
                            self.overflow = true;
                            let n = self.scan.droppable();
                            self.consume(n);
                            self.scan.shift(n);
                        }
                        break;
                    };
                    self.later = at + PROMPT.len();
                    return Some(match self.phase {
                        Phase::Banner => {
                            self.phase = if self.lines > 0 { Phase::Echo(Echo::default()) } else { Phase::Idle };
                            self.scan = Scan::line_start();
                            Found::Banner(at)
                        }
                        Phase::Output => {
                            let id = self.front_id;
                            let overflow = self.overflow || at > max;
                            self.next_command();
                            if overflow {
                                Found::TooLarge { id }
                            } else {
                                Found::Output { id, len: self.normalise(at) }
                            }
                        }
                        _ => {
                            self.scan = Scan::line_start();
                            Found::Unsolicited(at)
                        }
                    });
                }
                Phase::Closing => return self.wind_down(),
                Phase::Closed => return None,
            }
        }
        if self.eof {
            return self.begin_closing();
        }
        None
    }

    /// The stream ended with nothing more to read: reports what is left.
    fn begin_closing(&mut self) -> Option<Found> {
        let buffered = self.rx.data().len();
        let phase = core::mem::replace(&mut self.phase, Phase::Closing);
        self.later = buffered;
        match phase {
            Phase::Output if self.lines > 0 => {
                let id = self.front_id;
                self.drop_front();
                // Output over the limit was dropped as it came: none of it.
                let output = if self.overflow { 0 } else { buffered };
                Some(Found::Failed { id, output: Some(output) })
            }
            Phase::Banner | Phase::Idle if buffered > 0 => Some(Found::Unsolicited(buffered)),
            _ => self.wind_down(),
        }
    }

    fn drop_front(&mut self) {
        self.lines = self.lines.saturating_sub(1);
        self.front_id += 1;
    }

    /// One `Failed` per command not finished, then `Closed`.
    fn wind_down(&mut self) -> Option<Found> {
        if self.lines > 0 {
            let id = self.front_id;
            self.drop_front();
            return Some(Found::Failed { id, output: None });
        }
        self.queue.truncate(0);
        self.phase = Phase::Closed;
        Some(Found::Closed)
    }

    /// Turns `\r\n` into `\n` in the first `len` bytes if asked; the new length.
    fn normalise(&mut self, len: usize) -> usize {
        match self.rx.data_mut().get_mut(..len) {
            Some(text) if self.config.lf_newlines => lf_newlines(text),
            _ => len,
        }
    }

    fn event(&self, found: Found) -> Event<'_> {
        let data = self.rx.data();
        let text = |n: usize| data.get(..n).unwrap_or_default();
        match found {
            Found::Banner(n) => Event::Banner(Banner { text: text(n) }),
            Found::BadBanner { why, len } => Event::BadBanner {
                error: match why {
                    NotBanner::Other(found) => Error::NotHmp { found },
                    NotBanner::TooLong(limit) => Error::BannerTooLong { limit },
                },
                text: text(len),
            },
            Found::Output { id, len } => Event::Output { id, text: text(len) },
            Found::TooLarge { id } => Event::TooLarge { id, limit: self.max_output() },
            Found::Unsolicited(n) => Event::Unsolicited(text(n)),
            Found::Mismatch(offset) => Event::Malformed(Error::EchoMismatch { offset }),
            Found::Failed { id, output } => Event::Failed { id, output: output.map(text) },
            Found::Closed => Event::Closed,
        }
    }
}

impl<S: Storage> Client<S> {
    /// Takes `n` committed bytes (`false`: more than [`Machine::recv_buf`]
    /// offered); once nothing is listening any more, whatever still
    /// arrives is dropped.
    fn take_committed(&mut self, n: usize) -> bool {
        if !self.rx.commit(n) {
            return false;
        }
        if self.shut || matches!(self.phase, Phase::Closing | Phase::Closed) {
            self.settle();
            let all = self.rx.data().len();
            self.consume(all);
        }
        true
    }
}

impl<S: Storage> Machine for Client<S> {
    type Event<'a>
        = Event<'a>
    where
        Self: 'a;
    type Error = Error;
    type Request = u64;

    fn recv_buf(&mut self) -> &mut [u8] {
        self.settle();
        self.rx.spare()
    }

    fn recv_commit(&mut self, n: usize) -> Result<(), Error> {
        crate::commit_or_eof(self, n, Self::take_committed, Error::CommitTooLarge)
    }

    fn poll(&mut self) -> Result<Option<Event<'_>>, Error> {
        self.settle();
        Ok(self.step().map(|found| self.event(found)))
    }

    fn transmit(&self) -> &[u8] {
        match self.phase {
            _ if self.shut => &[],
            Phase::Echo(_) | Phase::Output => {
                self.queue.as_slice().get(self.sent..self.front_len()).unwrap_or_default()
            }
            _ => &[],
        }
    }

    fn transmitted(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.front_len());
    }

    fn recv_eof(&mut self) {
        self.eof = true;
    }

    fn close(&mut self) {
        Client::close(self);
    }

    /// Nothing: the monitor runs lines in turn, so the line's output still
    /// comes, under its number, and waits for nobody; the lines behind it
    /// are answered after it.
    fn expire(&mut self, _line: &u64) {}
}

/// What `info status` says: `VM status: running`, `VM status: paused (prelaunch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status<'a> {
    /// Whether the guest's CPUs are running.
    pub running: bool,
    /// QEMU's run state: `running`, `paused`, or the reason it is not running
    /// (`prelaunch`, `inmigrate`, `postmigrate`, `shutdown`, `guest-panicked`, …).
    pub state: &'a str,
    /// `(single step mode)`.
    pub single_step: bool,
}

impl<'a> Status<'a> {
    /// Reads the output of `info status`.
    ///
    /// ```
    /// use vmwire_proto::hmp::Status;
    /// let s = Status::parse(b"VM status: paused (prelaunch)\r\n").unwrap();
    /// assert_eq!((s.running, s.state), (false, "prelaunch"));
    /// ```
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let at = memchr::memmem::find(text, b"VM status: ")? + 11;
        let rest = text.get(at..)?;
        let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        let mut line = core::str::from_utf8(rest.get(..end)?).ok()?;
        let running = if let Some(r) = line.strip_prefix("running") {
            line = r;
            true
        } else {
            line = line.strip_prefix("paused")?;
            false
        };
        let single_step = match line.strip_prefix(" (single step mode)") {
            Some(r) => {
                line = r;
                true
            }
            None => false,
        };
        let state = match line.strip_prefix(" (").and_then(|r| r.strip_suffix(')')) {
            Some(reason) => reason,
            None if line.is_empty() => {
                if running {
                    "running"
                } else {
                    "paused"
                }
            }
            None => return None,
        };
        Some(Status { running, state, single_step })
    }
}

/// Turns every `\r\n` in `text` into `\n`, in place; returns the new
/// length (a lone `\r` stays: it is text, such as a progress line's).
///
/// ```
/// let mut text = *b"a\r\nb\rc\r\n";
/// let n = vmwire_proto::hmp::lf_newlines(&mut text);
/// assert_eq!(&text[..n], b"a\nb\rc\n");
/// ```
pub fn lf_newlines(text: &mut [u8]) -> usize {
    let len = text.len();
    let (mut read, mut write) = (0, 0);
    while let Some(k) = memchr::memchr(b'\n', text.get(read..).unwrap_or_default()) {
        let newline = read + k;
        // Keep everything up to the `\n`, less a `\r` right before it.
        let end = if k > 0 && text.get(newline - 1) == Some(&b'\r') { newline - 1 } else { newline };
        text.copy_within(read..end, write);
        write += end - read;
        if let Some(b) = text.get_mut(write) {
            *b = b'\n';
        }
        write += 1;
        read = newline + 1;
    }
    text.copy_within(read..len, write);
    write + (len - read)
}

/// Runs `line` through QMP's `human-monitor-command`: the same commands
/// without a terminal (no echo, no prompt, no line limit). The return value
/// is the output as a JSON string; [`qmp_output`] reads it. Check `line`
/// with [`check_text`] first, as `vmwire_std::hmp::Monitor` does: a line
/// break or an escape in it would otherwise reach QEMU's parser as it is.
pub fn via_qmp<S: Storage>(qmp: &mut qmp::Client<S>, line: &str) -> Result<qmp::Id, qmp::Error> {
    qmp.execute_with("human-monitor-command", |args| {
        args.str("command-line", line)?;
        Ok(())
    })
}

/// The output in a `human-monitor-command` return value.
pub fn qmp_output(value: Value<'_>) -> Option<JsonStr<'_>> {
    value.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_readline_cannot_take_are_refused() {
        assert_eq!(check_line(b"info status"), Ok(()));
        assert_eq!(check_line("info café \u{ff}".as_bytes()), Ok(()));
        assert_eq!(check_line(b"stop\ncont"), Err(Error::LineBreak { offset: 4 }));
        assert_eq!(check_line(b"stop\r"), Err(Error::LineBreak { offset: 4 }));
        assert_eq!(check_line(b"inf\to"), Err(Error::ControlCharacter { byte: b'\t', offset: 3 }));
        assert_eq!(check_line(b"\x1b[A"), Err(Error::ControlCharacter { byte: 0x1b, offset: 0 }));
        assert_eq!(check_line("info \u{db}".as_bytes()), Err(Error::ControlCharacter { byte: 0x9b, offset: 6 }));
        assert_eq!(check_line(&[b'x'; MAX_LINE]), Ok(()));
        assert_eq!(check_line(b"change vnc  password "), Err(Error::PasswordPrompt));
        assert_eq!(check_line(b"change vnc passwd"), Err(Error::PasswordPrompt));
        assert_eq!(check_line(b"change vnc password pw"), Ok(()));
        assert_eq!(check_line(&[b'x'; MAX_LINE + 1]), Err(Error::LineTooLong { len: MAX_LINE + 1, limit: MAX_LINE }));
    }

    #[test]
    fn status_lines() {
        let s = |t: &'static [u8]| Status::parse(t).map(|s| (s.running, s.state, s.single_step));
        assert_eq!(s(b"VM status: running\r\n"), Some((true, "running", false)));
        assert_eq!(s(b"VM status: paused\r\n"), Some((false, "paused", false)));
        assert_eq!(s(b"VM status: paused (inmigrate)\n"), Some((false, "inmigrate", false)));
        assert_eq!(s(b"VM status: running (single step mode)\r\n"), Some((true, "running", true)));
        assert_eq!(s(b"unknown command: 'info stat'\r\n"), None);
        assert_eq!(s(b"VM status: sideways\r\n"), None);
    }

    #[test]
    fn banner_versions() {
        let v = |t: &'static [u8]| Banner { text: t }.version();
        assert_eq!(v(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n"), Some((7, 2, 22)));
        assert_eq!(v(b"QEMU 10.0.0 monitor - type 'help' for more information\r\n"), Some((10, 0, 0)));
        assert_eq!(v(b""), None);
        assert_eq!(v(b"QEMU 7.2 monitor"), None);
    }
}
