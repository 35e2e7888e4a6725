//! The interactive shell every subcommand shares: line editing and history
//! (rustyline), tab completion asked of the session, and output that the
//! session produces on its own (QMP events) printed as it arrives, even
//! while a line is being typed.
//!
//! On a terminal: the session's banner, a prompt, history appended to
//! `~/.vmwire_NAME_history` as each line is entered (but a line that
//! carries a password), Ctrl-C at the prompt
//! drops the line (as bash does), Ctrl-C while a reply is pending abandons
//! that command and returns to the prompt (its late reply is discarded),
//! keys typed while a reply is pending are kept for the next prompt, Ctrl-D
//! ends the shell (status 0).
//!
//! Fed from a pipe: no banner, no prompt, no history; each line is run in
//! turn, and the exit status is 1 if any command failed.
//!
//! Either way, when the peer goes away the shell says so and ends with
//! status 3 (0 when the user asked for it: QMP `quit`, minimega `quit`,
//! `disconnect`) and never prompts again on a dead connection.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustix::termios::{self, OptionalActions, Termios};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, ExternalPrinter, Helper, Highlighter, Hinter, Validator};
use vmwire_std::text::{escape, escape_bytes};

/// Longest line the shell reads from a pipe, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// What a protocol plugs into the shell. It runs on a thread of its own.
pub trait Session: Send + 'static {
    /// Runs one line. `interrupt` is raised when the user presses Ctrl-C
    /// while the reply is pending: a session that can give up on its command
    /// checks it while it waits (the shell discards whatever it returns).
    fn run(&mut self, line: &str, interrupt: &Interrupt) -> Printed;
    /// Completions for `line` (the text before the cursor): the candidate
    /// replacements for its last word, and where that word starts.
    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        let _ = line;
        (0, Vec::new())
    }
    /// Called about ten times a second while nothing else happens: what to
    /// print (asynchronous events on `out`, one a line).
    fn idle(&mut self) -> Printed {
        Printed::default()
    }
    /// Whether the session has ended, and how: the shell then exits.
    fn ended(&self) -> Option<Ended> {
        None
    }
    /// The prompt for the next line when it is not the shell's usual one
    /// (QMP's `transaction(` … `)`).
    fn prompt(&self) -> Option<String> {
        None
    }
    /// Shown once when the shell starts on a terminal.
    fn banner(&self) -> Option<String> {
        None
    }
    /// Whether `line` carries a password (QMP's `set_password`, a secret
    /// object's key, HMP's `set_password vnc PW`): it is run, but not kept
    /// in the history.
    fn carries_secret(line: &str) -> bool
    where
        Self: Sized,
    {
        let _ = line;
        false
    }
}

/// What one line produced.
#[derive(Debug, Default)]
pub struct Printed {
    /// For standard output (peer text is escaped there when it is a terminal).
    pub out: Vec<u8>,
    /// For standard error.
    pub err: String,
    /// Whether the command failed (the peer's error, or ours): a shell fed
    /// from a pipe then exits with status 1.
    pub failed: bool,
    /// `out` is data (a guest file, a guest program's output), not a reply:
    /// into a pipe it goes byte for byte, no line end added.
    pub data: bool,
}

impl Printed {
    /// Output of a command that succeeded.
    pub fn ok(out: impl Into<Vec<u8>>) -> Self {
        Printed { out: out.into(), ..Printed::default() }
    }

    /// Output (on standard output) of a command the peer refused.
    pub fn refused(out: impl Into<Vec<u8>>) -> Self {
        Printed { out: out.into(), failed: true, ..Printed::default() }
    }

    /// An error of the shell's own or of the connection (on standard
    /// error, `vmwire: ` before it as before every error of the tool's).
    pub fn error(err: impl std::fmt::Display) -> Self {
        Printed { err: format!("vmwire: {err}"), failed: true, ..Printed::default() }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// As the user asked (`quit`, `disconnect`): status 0.
    Asked,
    /// The peer went away: status 3.
    PeerGone,
}

impl Ended {
    fn code(self) -> u8 {
        match self {
            Ended::Asked => 0,
            Ended::PeerGone => 3,
        }
    }
}

/// Raised by Ctrl-C while a command's reply is pending. Lines are numbered
/// from 1; the user gives up on one by its number.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<Lines>);

#[derive(Debug, Default)]
struct Lines {
    /// The line the session is running.
    running: AtomicU64,
    /// The last line the user gave up on.
    abandoned: AtomicU64,
}

impl Interrupt {
    /// Whether the user gave up on the command being run.
    pub fn raised(&self) -> bool {
        self.0.abandoned.load(Ordering::SeqCst) >= self.0.running.load(Ordering::SeqCst)
    }

    fn abandon(&self, line: u64) {
        self.0.abandoned.store(line, Ordering::SeqCst);
    }

    fn run(&self, line: u64) {
        self.0.running.store(line, Ordering::SeqCst);
    }
}

enum Request {
    /// A line to run, and its number.
    Line(u64, String),
    Complete(String),
}

/// A line's outcome, the session's state after it, and the next prompt.
struct Outcome {
    printed: Printed,
    ended: Option<Ended>,
    prompt: Option<String>,
}

enum Reply {
    /// The outcome of the line numbered so.
    Output(u64, Outcome),
    Candidates(usize, Vec<String>),
}

#[derive(Helper, Hinter, Highlighter, Validator)]
struct Asker {
    requests: mpsc::Sender<Request>,
    replies: Mutex<mpsc::Receiver<Reply>>,
}

impl Completer for Asker {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let Ok(replies) = self.replies.lock() else { return Ok((0, Vec::new())) };
        if self.requests.send(Request::Complete(line[..pos].to_string())).is_err() {
            return Ok((0, Vec::new()));
        }
        loop {
            match replies.recv_timeout(Duration::from_secs(5)) {
                Ok(Reply::Candidates(start, words)) => {
                    let pairs = words.into_iter().map(|w| Pair { display: w.clone(), replacement: w });
                    return Ok((start, pairs.collect()));
                }
                // At the prompt, any outcome is an abandoned line's: discarded.
                Ok(Reply::Output(..)) => {}
                Err(_) => return Ok((0, Vec::new())),
            }
        }
    }
}

fn history_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(format!(".vmwire_{name}_history")))
}

/// The terminal and the process's end, shared by the reading thread and the
/// session's: whoever ends the process holds `console` for good, so the
/// other cannot print half a line or end it a second time.
struct Console {
    console: Mutex<()>,
    /// The terminal's settings before the shell began (restored on exit).
    saved: Option<Termios>,
    stdout_is_terminal: bool,
}

impl Console {
    /// Prints what a line produced: peer text escaped on a terminal.
    fn print(&self, printed: &Printed) {
        let _guard = self.console.lock();
        if printed.data && !self.stdout_is_terminal {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&printed.out).and_then(|()| stdout.flush());
        } else {
            print_peer_text(&printed.out, self.stdout_is_terminal);
        }
        if !printed.err.is_empty() {
            eprintln!("{}", escape_lines(&printed.err));
        }
    }

    /// Ends the process from the session's thread (the reading thread may be
    /// inside rustyline, which cannot be woken): the terminal as it was, the
    /// last words printed, status by `ended`.
    fn end(&self, last: &Printed, ended: Ended) -> ! {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
            // Off the line being typed.
            println!();
        }
        // QEMU went because a signal is ending vmwire (`--launch`): its guard
        // ends the program, as the signal would have.
        while vmwire_std::qemu::ending_by_signal() {
            std::thread::park();
        }
        self.print(last);
        // Held for good: nobody prints after this, nor ends the process again.
        std::mem::forget(self.console.lock());
        std::process::exit(i32::from(ended.code()))
    }
}

/// Writes text a peer produced to standard output, ending in a line end:
/// on a `terminal` each line escaped ([`escape`]: a monitor's output can
/// carry escape sequences), elsewhere (a script reading it) as it came.
/// Nothing for no text.
pub fn print_peer_text(text: &[u8], terminal: bool) {
    if text.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if terminal {
        // Line by line as `str::lines` splits (a `\r` before each `\n` dropped).
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let _ = writeln!(stdout, "{}", escape_bytes(line));
        }
    } else {
        let _ = stdout.write_all(text);
        if !text.ends_with(b"\n") {
            let _ = stdout.write_all(b"\n");
        }
    }
    let _ = stdout.flush();
}

fn escape_lines(text: &str) -> String {
    text.lines().map(|l| escape(l).to_string()).collect::<Vec<_>>().join("\n")
}

/// Runs the shell until end of input (Ctrl-D) or the session ends; the
/// exit status as the module documentation says.
pub fn interactive<S: Session>(name: &str, prompt: &str, session: S) -> ExitCode {
    let terminal = std::io::stdin().is_terminal();
    let console = Arc::new(Console {
        console: Mutex::new(()),
        saved: if terminal { termios::tcgetattr(std::io::stdin().as_fd()).ok() } else { None },
        stdout_is_terminal: std::io::stdout().is_terminal(),
    });
    if terminal {
        if let Some(banner) = session.banner() {
            println!("{}", escape_lines(&banner));
        }
    }
    let (request_tx, request_rx) = mpsc::channel::<Request>();
    let (reply_tx, reply_rx) = mpsc::channel::<Reply>();
    let interrupt = Interrupt::default();
    let mut editor = if terminal {
        match line_editor(request_tx.clone(), reply_rx) {
            Ok(e) => Input::Terminal(Box::new(e)),
            Err(e) => return crate::fail(&e),
        }
    } else {
        Input::Pipe(Mutex::new(reply_rx))
    };
    let printer = match &mut editor {
        Input::Terminal(e) => e.create_external_printer().ok(),
        Input::Pipe(_) => None,
    };
    let worker = spawn_session(session, request_rx, reply_tx, interrupt.clone(), console.clone(), printer);
    let history = if terminal { history_file(name) } else { None };
    if let (Input::Terminal(e), Some(h)) = (&mut editor, &history) {
        let _ = e.load_history(h);
    }
    let mut prompt = prompt.to_owned();
    let mut failed = false;
    let mut number = 0;
    // Ctrl-C while a reply is pending: the terminal is as the line editor
    // leaves it between prompts, so the key is a SIGINT, caught here. (At
    // the prompt the line editor takes it as a key.) Keys typed meanwhile
    // stay unread for the line editor, in order; Ctrl-C drops them, as the
    // terminal does for any program.
    let ctrl_c = Arc::new(AtomicBool::new(false));
    if terminal {
        if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&ctrl_c)) {
            return crate::fail(&format!("catching Ctrl-C: {e}"));
        }
    }
    let end = loop {
        ctrl_c.store(false, Ordering::SeqCst);
        let line = match read_line(&mut editor, &prompt) {
            Ok(Some(line)) => line,
            Ok(None) => break None,
            Err(Unread::Skipped(e)) => {
                eprintln!("vmwire: {e}");
                failed = true;
                continue;
            }
            Err(Unread::Failed(e)) => {
                drop(editor);
                return crate::fail(&format!("reading the input: {e}"));
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if let (Input::Terminal(e), Some(h)) = (&mut editor, &history) {
            if !S::carries_secret(&line) {
                let _ = e.add_history_entry(line.as_str());
                // Appended as it goes, so that no way of ending loses it.
                let _ = e.append_history(h);
            }
        }
        number += 1;
        if request_tx.send(Request::Line(number, line)).is_err() {
            break None;
        }
        let replies = match &editor {
            Input::Terminal(e) => e.helper().map(|h| &h.replies),
            Input::Pipe(r) => Some(r),
        };
        let Some(Ok(replies)) = replies.map(|r| r.lock()) else { break None };
        match await_output(&replies, number, terminal.then_some((&interrupt, &*ctrl_c))) {
            Waited::Output(outcome) => {
                console.print(&outcome.printed);
                failed |= outcome.printed.failed;
                if let Some(p) = outcome.prompt {
                    prompt = p;
                }
                if let Some(ended) = outcome.ended {
                    break Some(ended);
                }
            }
            Waited::Abandoned => {
                eprintln!("vmwire: interrupted; the command's reply, if it comes, is discarded");
            }
            Waited::Gone => break None,
        }
    };
    let guard = console.console.lock();
    drop(editor);
    drop(request_tx);
    drop(guard);
    if end.is_none() {
        let _ = worker.join();
    }
    match end {
        Some(Ended::PeerGone) => ExitCode::from(Ended::PeerGone.code()),
        _ if failed && !terminal => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// Where lines come from: rustyline on a terminal, else the pipe as it is.
enum Input {
    Terminal(Box<Editor<Asker, DefaultHistory>>),
    Pipe(Mutex<mpsc::Receiver<Reply>>),
}

fn line_editor(
    requests: mpsc::Sender<Request>,
    replies: mpsc::Receiver<Reply>,
) -> Result<Editor<Asker, DefaultHistory>, String> {
    // Bash-like: Tab completes the common prefix, a second Tab lists the candidates.
    let config =
        rustyline::Config::builder().completion_type(rustyline::CompletionType::List).auto_add_history(false).build();
    let mut editor: Editor<Asker, DefaultHistory> = Editor::with_config(config).map_err(|e| e.to_string())?;
    editor.set_helper(Some(Asker { requests, replies: Mutex::new(replies) }));
    Ok(editor)
}

/// Why [`read_line`] has no line.
enum Unread {
    /// This line was unreadable; the next may be fine.
    Skipped(String),
    /// The input failed.
    Failed(String),
}

/// The next line; `None` at the end of input.
fn read_line(input: &mut Input, prompt: &str) -> Result<Option<String>, Unread> {
    match input {
        Input::Terminal(editor) => loop {
            match editor.readline(prompt) {
                Ok(line) => return Ok(Some(line)),
                // As in bash: the line is dropped, a new prompt.
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return Ok(None),
                Err(e) => return Err(Unread::Failed(e.to_string())),
            }
        },
        Input::Pipe(_) => {
            let mut line = Vec::new();
            let mut stdin = std::io::stdin().lock();
            let failed = |e: std::io::Error| Unread::Failed(e.to_string());
            let n = (&mut stdin).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).map_err(failed)?;
            if n == 0 {
                return Ok(None);
            }
            if line.len() > MAX_LINE {
                // Skip the rest of the line, a buffer at a time.
                loop {
                    let buf = stdin.fill_buf().map_err(failed)?;
                    match buf.iter().position(|&b| b == b'\n') {
                        Some(at) => break stdin.consume(at + 1),
                        None if buf.is_empty() => break,
                        None => {
                            let n = buf.len();
                            stdin.consume(n);
                        }
                    }
                }
                return Err(Unread::Skipped(format!("line longer than {MAX_LINE} bytes, skipped")));
            }
            if line.ends_with(b"\n") {
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
            }
            String::from_utf8(line).map(Some).map_err(|_| Unread::Skipped("line is not UTF-8, skipped".into()))
        }
    }
}

enum Waited {
    Output(Outcome),
    /// Ctrl-C: the user gave up on the command.
    Abandoned,
    /// The session's thread is gone.
    Gone,
}

/// Waits for the outcome of line `number`, discarding those of lines
/// abandoned before. With `interrupt` (on a terminal, with the flag Ctrl-C
/// raises), Ctrl-C abandons the line and gives up waiting.
fn await_output(replies: &mpsc::Receiver<Reply>, number: u64, interrupt: Option<(&Interrupt, &AtomicBool)>) -> Waited {
    loop {
        let reply = match interrupt {
            None => replies.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(_) => replies.recv_timeout(Duration::from_millis(100)),
        };
        match reply {
            Ok(Reply::Output(n, outcome)) if n == number => return Waited::Output(outcome),
            Ok(Reply::Output(..) | Reply::Candidates(..)) => {}
            Err(RecvTimeoutError::Disconnected) => return Waited::Gone,
            Err(RecvTimeoutError::Timeout) => {
                let Some((interrupt, _)) = interrupt.filter(|(_, ctrl_c)| ctrl_c.swap(false, Ordering::SeqCst)) else {
                    continue;
                };
                interrupt.abandon(number);
                // An outcome sent just before is still shown if the
                // session ended with it (the session's thread ends the
                // process for one sent after).
                return match replies.try_recv() {
                    Ok(Reply::Output(n, outcome)) if n == number && outcome.ended.is_some() => Waited::Output(outcome),
                    _ => Waited::Abandoned,
                };
            }
        }
    }
}

/// The session's thread: runs lines and completions as asked, prints what
/// the session says while idle, and ends the process if the session ends
/// while the user is at the prompt.
fn spawn_session<S: Session>(
    mut session: S,
    requests: mpsc::Receiver<Request>,
    replies: mpsc::Sender<Reply>,
    interrupt: Interrupt,
    console: Arc<Console>,
    mut printer: Option<impl ExternalPrinter + Send + 'static>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        loop {
            match requests.recv_timeout(Duration::from_millis(100)) {
                Ok(Request::Line(number, line)) => {
                    interrupt.run(number);
                    let printed = session.run(&line, &interrupt);
                    let ended = session.ended();
                    let outcome = Outcome { printed, ended, prompt: session.prompt() };
                    let _ = replies.send(Reply::Output(number, outcome));
                    // Checked after sending: see `await_output`.
                    if let (Some(ended), true) = (ended, interrupt.raised()) {
                        // Nobody waits for this reply: the user is at the prompt.
                        console.end(&Printed::default(), ended);
                    }
                    if ended.is_some() {
                        return;
                    }
                }
                Ok(Request::Complete(line)) => {
                    let (start, words) = session.complete(&line);
                    let _ = replies.send(Reply::Candidates(start, words));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let printed = session.idle();
                    if let Some(ended) = session.ended() {
                        console.end(&printed, ended);
                    }
                    match printer.as_mut() {
                        // Above the line being typed.
                        Some(p) => {
                            let out = String::from_utf8_lossy(&printed.out);
                            for line in out.lines().chain(printed.err.lines()) {
                                let _ = p.print(format!("{}\n", escape(line)));
                            }
                        }
                        None => console.print(&printed),
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    })
}

/// The start of the word the cursor is in, and that word.
pub fn last_word(line: &str) -> (usize, &str) {
    let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    (start, &line[start..])
}

/// The `words` that begin with `prefix`.
pub fn starting_with(words: &[String], prefix: &str) -> Vec<String> {
    words.iter().filter(|w| w.starts_with(prefix)).cloned().collect()
}

/// Completions for a shell whose lines begin with a command name: the
/// names in `commands` for the first word, nothing after it.
pub fn complete_command(line: &str, commands: &[String]) -> (usize, Vec<String>) {
    match last_word(line) {
        (0, word) => (0, starting_with(commands, word)),
        (start, _) => (start, Vec::new()),
    }
}

/// What [`Session::idle`] prints: what `next` has without waiting, one line
/// each (made by `line`), and whether it failed (its error is then on `err`).
pub fn drain<T, E: std::fmt::Display>(
    mut next: impl FnMut() -> Result<Option<T>, E>,
    mut line: impl FnMut(T) -> String,
) -> (Printed, bool) {
    let mut printed = Printed::default();
    loop {
        match next() {
            Ok(Some(item)) => {
                printed.out.extend_from_slice(line(item).as_bytes());
                printed.out.push(b'\n');
            }
            Ok(None) => return (printed, false),
            Err(e) => {
                printed.err = format!("vmwire: {e}; the shell ends");
                return (printed, true);
            }
        }
    }
}

/// Lines joined for [`Printed::out`].
pub fn lines(lines: Vec<String>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}
