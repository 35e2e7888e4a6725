//! `vmwire qga`: guest agent commands, programs run in the guest, files in
//! and out, or a shell.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_std::qga::{Agent, Error, Options};

use crate::qmp::{arguments, reply_json, split_words};
use crate::shell::{self, Session};

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
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    timeout: f64,
    /// For `exec`: seconds to wait for the program to end (0: forever).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    exec_timeout: f64,
    /// For `exec`: an environment entry `NAME=VALUE` (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
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
    /// passes for 0, and 128 + n for signal n, at most 255); for `cat` and `put`, the guest path
    /// (`cat` writes the file to standard output, `put` fills it from
    /// standard input).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn seconds(s: f64) -> Option<Duration> {
    (s > 0.0).then(|| Duration::from_secs_f64(s))
}

pub fn run(args: QgaArgs) -> ExitCode {
    let options =
        Options { timeout: seconds(args.timeout), exec_timeout: seconds(args.exec_timeout), ..Options::default() };
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
        return match shell::interactive("qga", "(QGA) ", QgaShell::new(agent, args.pretty)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => crate::fail(&e),
        };
    };
    let code = match command.as_str() {
        "exec" => exec(&mut agent, &args),
        "cat" | "put" => {
            let [path] = &args.args[..] else {
                return crate::usage(&format!("{command} takes one guest path"));
            };
            let done = if command == "cat" {
                agent.read_file_to(path, &mut std::io::stdout().lock()).map(drop)
            } else {
                agent.write_file_from(path, &mut std::io::stdin().lock()).map(drop)
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
    let Some((program, rest)) = args.args.split_first() else {
        return crate::usage(&"exec takes -- PROGRAM ARGS…");
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
            let _ = std::io::stdout().lock().write_all(&out.stdout);
            let _ = std::io::stderr().lock().write_all(&out.stderr);
            if out.stdout_truncated || out.stderr_truncated {
                eprintln!("vmwire: the guest agent cut the program's output short");
            }
            ExitCode::from(out.status.exit_status())
        }
        Err(e) => outcome(Err(e)),
    }
}

struct QgaShell {
    agent: Agent,
    commands: Vec<String>,
    pretty: bool,
    ended: bool,
}

impl QgaShell {
    fn new(mut agent: Agent, pretty: bool) -> Self {
        let mut commands: Vec<String> = agent
            .info()
            .map(|i| i.supported_commands.into_iter().filter(|c| c.enabled).map(|c| c.name).collect())
            .unwrap_or_default();
        commands.sort();
        QgaShell { agent, commands, pretty, ended: false }
    }
}

impl Session for QgaShell {
    fn run(&mut self, line: &str) -> Result<String, String> {
        let words = split_words(line.trim())?;
        let Some((name, rest)) = words.split_first() else { return Ok(String::new()) };
        let result = self.agent.execute_raw(name, arguments(rest)?.as_deref());
        match result {
            Ok(value) => Ok(reply_json(Ok(&value), self.pretty)),
            Err(Error::Agent(e)) => Ok(reply_json(Err(&e), self.pretty)),
            Err(e @ (Error::Closed | Error::Io(_))) => {
                self.ended = true;
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        shell::complete_command(line, &self.commands)
    }

    fn ended(&self) -> bool {
        self.ended
    }
}
