//! The interactive shell every subcommand shares: line editing and history
//! (rustyline), tab completion asked of the session, and output that the
//! session produces on its own (QMP events) printed as it arrives, even
//! while a line is being typed.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, ExternalPrinter, Helper, Highlighter, Hinter, Validator};

/// What a protocol plugs into the shell. It runs on a thread of its own.
pub trait Session: Send + 'static {
    /// Runs one line; the text to print, or an error to print on stderr.
    fn run(&mut self, line: &str) -> Result<String, String>;
    /// Completions for `line` (the text before the cursor): the candidate
    /// replacements for its last word, and where that word starts.
    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        let _ = line;
        (0, Vec::new())
    }
    /// Called about ten times a second while nothing else happens: lines to
    /// print (asynchronous events).
    fn idle(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the session has ended (the peer closed): the shell then exits.
    fn ended(&self) -> bool {
        false
    }
}

enum Request {
    Line(String),
    Complete(String),
}

enum Reply {
    Output(Result<String, String>, bool),
    Candidates(usize, Vec<String>),
}

#[derive(Helper, Hinter, Highlighter, Validator)]
struct Asker {
    requests: mpsc::Sender<Request>,
    replies: std::sync::Mutex<mpsc::Receiver<Reply>>,
}

impl Completer for Asker {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let Ok(replies) = self.replies.lock() else { return Ok((0, Vec::new())) };
        if self.requests.send(Request::Complete(line[..pos].to_string())).is_err() {
            return Ok((0, Vec::new()));
        }
        match replies.recv_timeout(Duration::from_secs(5)) {
            Ok(Reply::Candidates(start, words)) => {
                Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
            }
            _ => Ok((0, Vec::new())),
        }
    }
}

fn history_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(format!(".vmwire_{name}_history")))
}

/// Runs the shell until end of input (Ctrl-D) or the session ends.
pub fn interactive<S: Session>(name: &str, prompt: &str, mut session: S) -> Result<(), String> {
    let (request_tx, request_rx) = mpsc::channel::<Request>();
    let (reply_tx, reply_rx) = mpsc::channel::<Reply>();
    // Bash-like: Tab completes the common prefix, a second Tab lists the candidates.
    let config =
        rustyline::Config::builder().completion_type(rustyline::CompletionType::List).auto_add_history(false).build();
    let mut editor: Editor<Asker, DefaultHistory> = Editor::with_config(config).map_err(|e| e.to_string())?;
    editor.set_helper(Some(Asker { requests: request_tx.clone(), replies: std::sync::Mutex::new(reply_rx) }));
    let history = history_file(name);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut printer: Option<Box<dyn ExternalPrinter + Send>> =
        editor.create_external_printer().ok().map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
    let worker = thread::spawn(move || {
        loop {
            match request_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Request::Line(line)) => {
                    let out = session.run(&line);
                    let _ = reply_tx.send(Reply::Output(out, session.ended()));
                }
                Ok(Request::Complete(line)) => {
                    let (start, words) = session.complete(&line);
                    let _ = reply_tx.send(Reply::Candidates(start, words));
                }
                Err(RecvTimeoutError::Timeout) => {
                    for line in session.idle() {
                        match printer.as_mut() {
                            Some(p) => {
                                let _ = p.print(format!("{line}\n"));
                            }
                            None => println!("{line}"),
                        }
                    }
                    if session.ended() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    loop {
        match editor.readline(prompt) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if request_tx.send(Request::Line(line)).is_err() {
                    break;
                }
                let helper = editor.helper().ok_or("shell helper missing")?;
                let replies = helper.replies.lock().map_err(|_| "shell poisoned")?;
                let reply = loop {
                    match replies.recv() {
                        Ok(Reply::Output(out, ended)) => break Some((out, ended)),
                        Ok(Reply::Candidates(..)) => continue,
                        Err(_) => break None,
                    }
                };
                let Some((out, ended)) = reply else { break };
                match out {
                    Ok(text) if text.is_empty() => {}
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("{e}"),
                }
                if ended {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    drop(editor);
    drop(request_tx);
    let _ = worker.join();
    Ok(())
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

/// Lines for [`Session::idle`]: what `next` has without waiting, one line
/// each (made by `line`), and whether it failed (its error is then the last
/// line).
pub fn drain<T, E: std::fmt::Display>(
    mut next: impl FnMut() -> Result<Option<T>, E>,
    mut line: impl FnMut(T) -> String,
) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    loop {
        match next() {
            Ok(Some(item)) => lines.push(line(item)),
            Ok(None) => return (lines, false),
            Err(e) => {
                lines.push(e.to_string());
                return (lines, true);
            }
        }
    }
}
