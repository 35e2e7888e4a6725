//! `vmwire qga`: guest agent commands, programs run in the guest, files in
//! and out, or a shell.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_std::qga::{Agent, Error, ExitStatus, Options, Output};

use crate::qmp::{arguments, reply_json, split_words, unquote};
use crate::shell::{self, Ended, Interrupt, Printed, Session};

/// Talk to the QEMU guest agent.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true))]
pub struct QgaArgs {
    /// The agent's UNIX socket (the host end of the guest's `org.qemu.guest_agent.0`
    /// port, or `qemu-ga --method unix-listen`).
    #[arg(long, group = "target", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// A character device leading to the agent (a serial line or pty).
    #[arg(long, group = "target", value_name = "PATH")]
    device: Option<PathBuf>,
    /// Seconds to wait for each reply (0: forever).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// For `exec`: seconds to wait for the program to end (0: forever); past them it goes on in the guest, and its pid is printed.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    exec_timeout: crate::Seconds,
    /// For `exec`: an environment entry `NAME=VALUE` (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = env_entry)]
    env: Vec<String>,
    /// For `exec`: pass this program's standard input to the guest program.
    #[arg(long)]
    stdin: bool,
    /// Indent JSON output.
    #[arg(long)]
    pretty: bool,
    /// An agent command (`guest-info`, `guest-get-fsinfo`, …), or `exec`,
    /// `cat`, `put`; without one, an interactive shell starts.
    command: Option<String>,
    /// The command's arguments: one JSON object or `key=value` pairs; for
    /// `exec`, `-- PROGRAM ARGS…` (`exec` exits as the program did: its exit
    /// code if 0..=255, 255 for any other code, so that a failure never
    /// passes for 0, and 128 + n for signal n, at most 255); for `cat` and
    /// `put`, `GUEST_PATH [LOCAL_PATH]` (`cat` writes the guest's file to
    /// LOCAL_PATH or standard output, `put` fills it from LOCAL_PATH or
    /// standard input).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: QgaArgs) -> ExitCode {
    let options = Options { timeout: args.timeout.0, exec_timeout: args.exec_timeout.0, ..Options::default() };
    let connected = match (&args.socket, &args.device) {
        (Some(path), _) => Agent::connect_unix(path, options),
        (_, Some(path)) => Agent::open_device(path, options),
        _ => unreachable!("clap requires a target"),
    };
    let mut agent = match connected {
        Ok(a) => a,
        Err(e) => return crate::fail(&e),
    };
    let Some(command) = &args.command else {
        return shell::interactive("qga", "(QGA) ", QgaShell::new(agent, args.pretty, args.env.clone()));
    };
    let code = match command.as_str() {
        "exec" => exec(&mut agent, &args),
        "cat" | "put" => {
            let (path, local) = match &args.args[..] {
                [path] => (path, None),
                [path, local] => (path, Some(local)),
                _ => return crate::usage(&format!("{command} takes GUEST_PATH [LOCAL_PATH]")),
            };
            let done = match (command == "cat", local) {
                (true, None) => agent.read_file_to(path, &mut std::io::stdout().lock()).map(drop),
                (false, None) => agent.write_file_from(path, &mut std::io::stdin().lock()).map(drop),
                (_, Some(local)) => match with_local_file(&mut agent, command, path, local) {
                    Ok(done) => done,
                    Err(message) => return crate::usage(&message),
                },
            };
            outcome(done)
        }
        name => match arguments(&args.args) {
            Err(e) => crate::usage(&e),
            Ok(json) => match agent.execute_raw(name, json.as_deref()) {
                Ok(value) => {
                    println!("{}", reply_json(Ok(&value), args.pretty));
                    ExitCode::SUCCESS
                }
                Err(Error::Agent(e)) => {
                    println!("{}", reply_json(Err(&e), args.pretty));
                    ExitCode::from(1)
                }
                Err(e) => crate::fail(&e),
            },
        },
    };
    agent.close();
    code
}

/// An `--env` entry: `NAME=VALUE` with a name (the guest would drop one without `=`).
fn env_entry(entry: &str) -> Result<String, String> {
    match entry.split_once('=') {
        Some((name, _)) if !name.is_empty() => Ok(entry.to_owned()),
        _ => Err(format!("{entry:?} is not NAME=VALUE")),
    }
}

/// `cat` (`command`) the guest's file at `path` into the local file `local`,
/// or `put` it from there; `Err` if the local file cannot be opened.
fn with_local_file(agent: &mut Agent, command: &str, path: &str, local: &str) -> Result<Result<(), Error>, String> {
    let opened = if command == "cat" { std::fs::File::create(local) } else { std::fs::File::open(local) };
    let mut file = opened.map_err(|e| format!("{local}: {e}"))?;
    // Opening a directory works; reading it fails, after the guest file is
    // made: said first, with its path.
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("{local}: {}", std::io::Error::from(std::io::ErrorKind::IsADirectory)));
    }
    Ok(if command == "cat" {
        agent.read_file_to(path, &mut file).map(drop)
    } else {
        agent.write_file_from(path, &mut file).map(drop)
    })
}

/// Exit status for a done-or-failed operation: 1 when the agent said no.
fn outcome(done: Result<(), Error>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Agent(e)) => {
            eprintln!("vmwire: the guest agent says: {e}");
            ExitCode::from(1)
        }
        Err(e) => crate::fail(&e),
    }
}

/// Runs a guest program, prints what it printed, exits as it did.
fn exec(agent: &mut Agent, args: &QgaArgs) -> ExitCode {
    let Some((program, rest)) = program_and_args(&args.args) else {
        return crate::usage(&EXEC_USAGE);
    };
    let mut input = Vec::new();
    if args.stdin {
        if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
            return crate::fail(&e);
        }
    }
    let argv: Vec<&str> = rest.iter().map(String::as_str).collect();
    let env: Vec<&str> = args.env.iter().map(String::as_str).collect();
    match agent.exec(program, &argv, &env, args.stdin.then_some(&input[..])) {
        Ok(out) => {
            program_output(&out, &mut std::io::stdout().lock(), &mut std::io::stderr().lock());
            ExitCode::from(out.status.exit_status())
        }
        Err(e) => outcome(Err(e)),
    }
}

const EXEC_USAGE: &str = "exec takes -- PROGRAM ARGS…";

/// The program and its arguments from `exec`'s words (a leading `--` dropped).
fn program_and_args(words: &[String]) -> Option<(&String, &[String])> {
    match words {
        [dashes, rest @ ..] if dashes == "--" => rest.split_first(),
        _ => words.split_first(),
    }
}

/// Writes what a guest program printed (and a note if the agent cut it
/// short); returns its status as a shell reports it: the code, or 128 +
/// the signal.
fn program_output(out: &Output, stdout: &mut dyn Write, stderr: &mut dyn Write) {
    let _ = stdout.write_all(&out.stdout);
    let _ = stderr.write_all(&out.stderr);
    if out.stdout_truncated || out.stderr_truncated {
        let _ = writeln!(stderr, "vmwire: the guest agent cut the program's output short");
    }
}

/// What the shell's `help` says.
const SHELL_HELP: &str = r#"Lines are the agent's commands (Tab completes their names), with arguments
as key=value words or one JSON object (see `vmwire qmp` `help` for values), and:
  exec [--] PROGRAM [ARGS...]   run a program in the guest (--env applies), print its output
  cat GUEST_PATH [LOCAL_PATH]   print a guest file, or copy it to a local file
  put GUEST_PATH LOCAL_PATH     copy a local file into the guest
  help                          this text
Words of exec, cat and put are quoted as in a POSIX shell."#;

struct QgaShell {
    agent: Agent,
    commands: Vec<String>,
    /// The agent's version (`guest-info`).
    version: String,
    pretty: bool,
    /// `--env` entries for `exec`.
    env: Vec<String>,
    ended: Option<Ended>,
}

impl QgaShell {
    fn new(mut agent: Agent, pretty: bool, env: Vec<String>) -> Self {
        let (version, mut commands) = match agent.info() {
            Ok(i) => (i.version, i.supported_commands.into_iter().filter(|c| c.enabled).map(|c| c.name).collect()),
            Err(_) => (String::new(), Vec::new()),
        };
        commands.extend(["exec", "cat", "put", "help"].map(String::from));
        commands.sort();
        QgaShell { agent, commands, version, pretty, env, ended: None }
    }

    /// The shell's form of the error: the agent's refusal, or the end of the
    /// connection (the shell then ends).
    fn failure(&mut self, e: Error) -> Printed {
        match e {
            Error::Agent(e) => Printed::error(format!("the guest agent says: {e}")),
            e @ (Error::Closed | Error::Io(_)) => {
                self.ended = Some(Ended::PeerGone);
                Printed::error(format!("{e}; the shell ends"))
            }
            e => Printed::error(e),
        }
    }

    /// `exec`, `cat`, `put`: `words` as a POSIX shell splits the line.
    fn builtin(&mut self, words: &[String], interrupt: &Interrupt) -> Printed {
        let (out, err) = (&mut Vec::new(), &mut Vec::new());
        let done = match words {
            [exec, rest @ ..] if exec == "exec" => {
                let Some((program, args)) = program_and_args(rest) else { return Printed::error(EXEC_USAGE) };
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let env: Vec<&str> = self.env.iter().map(String::as_str).collect();
                // Ctrl-C gives the program up (it goes on in the guest),
                // so that the next line runs at once.
                match self.agent.exec_or_stop(program, &argv, &env, None, &|| interrupt.raised()) {
                    Ok(output) => {
                        program_output(&output, out, err);
                        match output.status {
                            ExitStatus::Code(0) => Ok(false),
                            ExitStatus::Code(code) => {
                                let _ = writeln!(err, "vmwire: {program} exited with status {code}");
                                Ok(true)
                            }
                            ExitStatus::Signal(signal) => {
                                let _ = writeln!(err, "vmwire: {program} was killed by signal {signal}");
                                Ok(true)
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            [cat, path] if cat == "cat" => self.agent.read_file_to(path, out).map(|_| false),
            [command, path, local] => match with_local_file(&mut self.agent, command, path, local) {
                Ok(done) => done.map(|()| false),
                Err(message) => return Printed::error(message),
            },
            _ => return Printed::error("usage: cat GUEST_PATH [LOCAL_PATH], put GUEST_PATH LOCAL_PATH"),
        };
        match done {
            Ok(failed) => {
                let err = String::from_utf8_lossy(err).trim_end().to_owned();
                Printed { out: std::mem::take(out), err, failed, data: true }
            }
            Err(e) => self.failure(e),
        }
    }
}

impl Session for QgaShell {
    /// `guest-set-user-password`'s password, as for QMP.
    fn carries_secret(line: &str) -> bool {
        crate::qmp::carries_secret(line)
    }

    fn run(&mut self, line: &str, interrupt: &Interrupt) -> Printed {
        let first = line.split_whitespace().next().unwrap_or_default();
        if matches!(first, "exec" | "cat" | "put") {
            return match shlex::split(line) {
                Some(words) => self.builtin(&words, interrupt),
                None => Printed::error("unterminated quote"),
            };
        }
        if first == "help" {
            return Printed::ok(SHELL_HELP);
        }
        let words = match split_words(line.trim()) {
            Ok(w) => w,
            Err(e) => return Printed::error(e),
        };
        let Some((name, rest)) = words.split_first() else { return Printed::default() };
        let args = match arguments(rest) {
            Ok(a) => a,
            Err(e) => return Printed::error(e),
        };
        match self.agent.execute_raw(&unquote(name), args.as_deref()) {
            Ok(value) => Printed::ok(reply_json(Ok(&value), self.pretty)),
            Err(Error::Agent(e)) => Printed::refused(reply_json(Err(&e), self.pretty)),
            Err(e) => self.failure(e),
        }
    }

    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        shell::complete_command(line, &self.commands)
    }

    /// Whether the agent's socket has closed (QEMU has gone), said at once.
    fn idle(&mut self) -> Printed {
        match self.agent.wait_strays(Some(Duration::ZERO)) {
            Ok(()) => Printed::default(),
            Err(e) => self.failure(e),
        }
    }

    fn ended(&self) -> Option<Ended> {
        self.ended
    }

    fn banner(&self) -> Option<String> {
        Some(format!("QEMU guest agent {}; type `help` for exec, cat and put.", self.version))
    }
}
