//! `vmwire minimega`: one command like `minimega -e`, or a shell like
//! `minimega -attach` (with tab completion from the daemon).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_proto::minimega::{Config, check_line};
use vmwire_std::minimega::{DEFAULT_SOCKET, Error, Frame, Minimega, Options, quote};
use vmwire_std::text::{escape, push_escaped};

use crate::shell::{self, Ended, Interrupt, Printed, Session};

/// Talk to minimega over its command socket.
#[derive(Debug, Args)]
pub struct MinimegaArgs {
    /// The daemon's command socket (`<-base>/minimega`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Run every command in this namespace (`namespace "NAME" …`; the
    /// daemon's active namespace is left alone).
    #[arg(long, value_name = "NAME")]
    namespace: Option<String>,
    /// Print each frame's responses as JSON (the daemon's own shape) instead
    /// of its rendering.
    #[arg(long)]
    json: bool,
    /// Send commands that change state every client of the daemon shares (a
    /// bare `namespace NAME`, a bare output mode such as `.annotate false`,
    /// `.alias X=Y`), which are refused otherwise.
    #[arg(long)]
    allow_daemon_state: bool,
    /// The largest frame accepted, in bytes (a frame holds one batch of a
    /// reply, rendered text included: `vm info` for 10,000 VMs is tens of
    /// megabytes). A larger one fails the command at once and closes the
    /// connection.
    #[arg(long, value_name = "BYTES", default_value_t = default_max_frame())]
    max_frame: NonZeroUsize,
    /// Seconds to wait for each frame of a reply (0: forever).
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// The command. Its first word is taken as written (it may be a whole
    /// command line, read by minimega's lexer); each further word is one
    /// argument, quoted as minimega needs. A line that would change
    /// daemon-wide state is refused (see --allow-daemon-state). Without a
    /// command, an interactive shell starts.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn default_max_frame() -> NonZeroUsize {
    NonZeroUsize::new(Config::default().limits.max_message).unwrap_or(NonZeroUsize::MIN)
}

/// The command line for `words`: the first as written, the rest quoted.
fn command_line(words: &[String]) -> String {
    let mut line = String::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            line.push(' ');
            line.push_str(&quote(word));
        } else {
            line.push_str(word);
        }
    }
    line
}

/// Refuses `line` if it would change daemon-wide state, unless `allowed`.
fn guard(line: &str, allowed: bool) -> Result<(), String> {
    match check_line(line) {
        Err(e) if !allowed => Err(match e {
            vmwire_proto::minimega::Error::Empty { .. } => e.to_string(),
            _ => format!("{e} (--allow-daemon-state sends it anyway)"),
        }),
        _ => Ok(()),
    }
}

pub fn run(args: MinimegaArgs) -> ExitCode {
    let line = command_line(&args.command);
    // Without a command, the shell guards each line it reads.
    if !args.command.is_empty() {
        if let Err(e) = guard(&line, args.allow_daemon_state) {
            return crate::usage(&e);
        }
    }
    let timeout = args.timeout.0;
    let mut config = Config::default();
    config.limits.max_message = args.max_frame.get();
    let options =
        Options { timeout, raise_errors: false, namespace: args.namespace.clone(), config, ..Options::default() };
    let mut mm = match Minimega::connect_with(&args.socket, options) {
        Ok(mm) => mm,
        Err(e @ Error::Protocol(_)) => return crate::usage(&e),
        Err(e) => return crate::fail(&e),
    };
    if args.command.is_empty() {
        let prompt = match &args.namespace {
            Some(ns) => format!("minimega:{}[{ns}]$ ", args.socket.display()),
            None => format!("minimega:{}$ ", args.socket.display()),
        };
        let shell = MinimegaShell {
            mm,
            json: args.json,
            allow_daemon_state: args.allow_daemon_state,
            quit_armed: false,
            ended: None,
        };
        return shell::interactive("minimega", &prompt, shell);
    }
    match stream(&mut mm, &line, args.json) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e @ Error::Protocol(vmwire_proto::minimega::Error::Empty { .. })) => crate::usage(&e),
        // `quit` gets no reply: the daemon exits.
        Err(Error::Closed { frames: 0, .. }) if is_quit(&line) => ExitCode::SUCCESS,
        Err(e @ Error::Protocol(vmwire_proto::minimega::Error::FrameTooLarge { .. })) => {
            crate::fail(&format!("{e} (--max-frame raises the limit)"))
        }
        Err(e) => crate::fail(&e),
    }
}

/// Whether the connection is gone after `e` (the peer left, or the machine
/// closed it).
fn ends_session(e: &Error) -> bool {
    match e {
        Error::Closed { .. } | Error::Io(_) | Error::Timeout => true,
        Error::Protocol(e) => e.closes(),
        _ => false,
    }
}

fn is_quit(line: &str) -> bool {
    line.split_whitespace().next() == Some("quit")
}

/// Runs `line`, printing each frame as it arrives: the daemon's rendering
/// (or JSON) on stdout, errors on stderr as minimega prints them. Returns
/// whether no response carried an error.
fn stream(mm: &mut Minimega, line: &str, json: bool) -> Result<bool, Error> {
    let mut ok = true;
    for frame in mm.stream(line)? {
        match frame {
            Ok(frame) => ok &= print_frame(&frame, json),
            // The connection is closed: nothing more of the reply will come.
            Err(Error::Protocol(e)) if e.closes() => return Err(Error::Protocol(e)),
            Err(Error::Protocol(e)) => {
                eprintln!("{e}");
                ok = false;
            }
            Err(e) => return Err(e),
        }
    }
    for status in mm.take_status() {
        eprintln!("{}", escape(&status));
    }
    Ok(ok)
}

/// Prints a frame: its responses as JSON with `json`, else the daemon's
/// rendering, each line escaped (the daemon and its hosts' guests choose
/// that text; the rendering is for people, and `--json` gives scripts the
/// exact text), in one piece (a million-line `shell seq` is a few writes,
/// not a million). Its errors go on stderr as minimega prints them,
/// escaped too. Returns whether no response carried an error.
fn print_frame(frame: &Frame, json: bool) -> bool {
    if json || (!frame.responses.is_empty() && !lines_are_rows(frame)) {
        // JSON escapes everything; it also shows a cell that holds a line
        // break, which the rendering would split into a forged row.
        if !frame.responses.is_empty() {
            println!("{}", frame.to_json());
        }
    } else if !frame.rendered.is_empty() {
        let mut text = String::with_capacity(frame.rendered.len() + 1);
        for line in frame.rendered.split('\n') {
            push_escaped(&mut text, line);
            text.push('\n');
        }
        print!("{text}");
    }
    let mut ok = true;
    for r in frame.errors() {
        eprintln!("Error ({}): {}", escape(&r.host), escape(r.error.as_deref().unwrap_or_default()));
        ok = false;
    }
    ok
}

/// Whether each line of the frame's rendering is one row of its tables: no
/// host name, column name or cell holds a line break.
fn lines_are_rows(frame: &Frame) -> bool {
    let breaks = |s: &String| s.contains('\n');
    frame.responses.iter().all(|r| {
        !breaks(&r.host) && !r.header.iter().flatten().any(breaks) && !r.tabular.iter().flatten().flatten().any(breaks)
    })
}

struct MinimegaShell {
    mm: Minimega,
    json: bool,
    allow_daemon_state: bool,
    quit_armed: bool,
    ended: Option<Ended>,
}

impl Session for MinimegaShell {
    fn run(&mut self, line: &str, _: &Interrupt) -> Printed {
        let line = line.trim();
        match line {
            "disconnect" => {
                self.ended = Some(Ended::Asked);
                return Printed::default();
            }
            "quit" if !std::mem::replace(&mut self.quit_armed, true) => {
                return Printed::ok(
                    "CAUTION: calling 'quit' will cause the minimega daemon to exit\n\
                     If you really want to stop the minimega daemon, enter 'quit' again",
                );
            }
            _ => self.quit_armed = false,
        }
        if let Err(refused) = guard(line, self.allow_daemon_state) {
            return Printed::error(refused);
        }
        // Frames are printed as they arrive; a long `read` shows progress.
        match stream(&mut self.mm, line, self.json) {
            Ok(ok) => Printed { failed: !ok, ..Printed::default() },
            // `quit` gets no reply: the daemon exits, as asked.
            Err(Error::Closed { frames: 0, .. }) if is_quit(line) => {
                self.ended = Some(Ended::Asked);
                Printed::default()
            }
            Err(e) if ends_session(&e) => {
                self.ended = Some(Ended::PeerGone);
                Printed::error(format!("{e}; the shell ends"))
            }
            Err(e) => Printed::error(e),
        }
    }

    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        let (start, _) = shell::last_word(line);
        let Ok(lines) = self.mm.suggest(line) else { return (start, Vec::new()) };
        // The daemon completes whole lines; offer the last word's part.
        let before = &line[..start];
        (start, lines.iter().filter_map(|l| l.strip_prefix(before)).map(str::to_string).collect())
    }

    fn idle(&mut self) -> Printed {
        let mm = &mut self.mm;
        let (printed, failed) =
            shell::drain(|| mm.next_status(Some(Duration::ZERO)), |status| escape(&status).to_string());
        if failed {
            self.ended = Some(Ended::PeerGone);
        }
        printed
    }

    fn ended(&self) -> Option<Ended> {
        self.ended
    }
}

#[cfg(test)]
#[path = "../../io-std/tests/fake_minimega/mod.rs"]
mod fake_minimega;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_word_is_taken_as_written_the_rest_quoted() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&words(&["vm info"])), "vm info");
        assert_eq!(command_line(&words(&["vm", "config", "disk", "/a b.qcow2"])), "vm config disk \"/a b.qcow2\"");
        assert_eq!(command_line(&words(&["echo \"a b\" c"])), "echo \"a b\" c");
    }

    #[test]
    fn completion_asks_the_daemon() {
        let fake = fake_minimega::Fake::start();
        let mm = Minimega::connect(fake.path()).unwrap();
        let mut shell = MinimegaShell { mm, json: false, allow_daemon_state: false, quit_armed: false, ended: None };
        assert_eq!(shell.complete("vm i"), (3, vec!["info ".to_string()]));
        assert_eq!(shell.complete("nam"), (0, vec!["namespace ".to_string()]));
        assert_eq!(shell.complete("zzz").1, Vec::<String>::new());
        assert_eq!(shell.complete("").1, Vec::<String>::new());
        // Status messages show while idle.
        let interrupt = Interrupt::default();
        assert!(!shell.run("echo x", &interrupt).failed);
        assert!(fake.status("VM 3 started"));
        assert_eq!(shell.idle().out, b"VM 3 started\n");
        // `quit` needs saying twice, as with minimega -attach.
        assert!(shell.run("quit", &interrupt).out.starts_with(b"CAUTION"));
        assert!(!fake.stopped());
        assert!(!shell.run("disconnect", &interrupt).failed);
        assert_eq!(shell.ended(), Some(Ended::Asked));
    }
}
