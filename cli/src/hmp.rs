//! `vmwire hmp`: one human monitor command, or a shell like QEMU's monitor.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_proto::hmp::Config;
use vmwire_std::hmp::{Error, Monitor, Options};
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::Qmp;

use crate::shell::{self, Ended, Interrupt, Printed, Session};

/// Talk to QEMU's human monitor (HMP).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true))]
pub struct HmpArgs {
    /// Readline monitor UNIX socket (`-monitor unix:PATH,server=on`, or `-mon chardev=…,mode=readline`).
    #[arg(long, group = "target", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Readline monitor on TCP (`-monitor tcp:HOST:PORT,server=on`).
    #[arg(long, group = "target", value_name = "HOST:PORT", value_parser = crate::tcp_address)]
    tcp: Option<String>,
    /// Start a throwaway QEMU (`-machine none -S`), use it, and shut it down.
    #[arg(long, group = "target")]
    launch: bool,
    /// Run the commands over QMP (`human-monitor-command`) on this QMP UNIX socket.
    #[arg(long, group = "target", value_name = "PATH")]
    via_qmp: Option<PathBuf>,
    /// Seconds to wait for each command (0: forever).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// Print QEMU's `\r\n` line ends as they are (by default they become `\n`).
    #[arg(long)]
    crlf: bool,
    /// The command line (its words are joined with spaces); without one, an
    /// interactive shell starts. HMP has no error status: the output is
    /// printed and the exit status is 0; 2 for a line the monitor cannot take
    /// (a line break, a control character or ESC); 3 when the echo is not
    /// the line sent, or the socket is not a monitor's.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    line: Vec<String>,
}

pub fn run(args: HmpArgs) -> ExitCode {
    let timeout = args.timeout.0;
    let options = Options { timeout, config: Config { lf_newlines: !args.crlf, ..Config::default() } };
    let launched = if args.launch {
        match crate::Launched::start(Qemu::builder().hmp()) {
            Ok(l) => Some(l),
            Err(code) => return code,
        }
    } else {
        None
    };
    let connected = match (&args.socket, &args.tcp, &args.via_qmp, &launched) {
        (Some(path), ..) => Monitor::connect_unix(path, options.clone()),
        (_, Some(addr), ..) => Monitor::connect_tcp(addr.as_str(), options.clone()),
        (_, _, Some(path), _) => {
            match Qmp::connect_unix(path, vmwire_std::qmp::Options { timeout, ..Default::default() }) {
                Ok(qmp) => Ok(Monitor::via_qmp(qmp, options.clone())),
                Err(e) => Err(e.into()),
            }
        }
        (.., Some(launched)) => {
            Monitor::connect_unix(launched.qemu.hmp_path().unwrap_or(std::path::Path::new("")), options.clone())
        }
        _ => unreachable!("clap requires a target"),
    };
    let mut hmp = match connected {
        Ok(m) => m,
        Err(e) => return crate::fail(&e),
    };
    let code = if args.line.is_empty() {
        shell::interactive("hmp", "(qemu) ", HmpShell::new(hmp))
    } else {
        let line = args.line.join(" ");
        let code = match hmp.command(&line) {
            Ok(text) => {
                shell::print_peer_text(text.as_bytes(), std::io::stdout().is_terminal());
                ExitCode::SUCCESS
            }
            // The monitor closing is what `quit` asked for.
            Err(Error::Closed) if is_quit(&line) => ExitCode::SUCCESS,
            Err(e @ Error::BadLine(_)) => crate::usage(&e),
            Err(e) => crate::fail(&e),
        };
        hmp.close();
        code
    };
    if let Some(launched) = launched {
        // The session's monitor is closed by now: `quit` goes through a fresh one.
        launched.finish(None);
    }
    code
}

struct HmpShell {
    hmp: Monitor,
    commands: Vec<String>,
    infos: Vec<String>,
    ended: Option<Ended>,
}

impl HmpShell {
    fn new(mut hmp: Monitor) -> Self {
        // Completion from QEMU's own lists: `help` (`cont|c  -- …`) and `info`.
        let words = |text: String, skip: usize| -> Vec<String> {
            let mut words: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with(char::is_whitespace))
                .filter_map(|l| l.split_whitespace().nth(skip))
                .flat_map(|w| w.split('|').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            words.sort();
            words.dedup();
            words
        };
        let commands = hmp.command("help").map(|t| words(t, 0)).unwrap_or_default();
        let infos = hmp.command("info").map(|t| words(t, 1)).unwrap_or_default();
        HmpShell { hmp, commands, infos, ended: None }
    }
}

/// Whether `line` is `quit` (or `q`), which ends QEMU: the monitor closes,
/// as the user asked.
fn is_quit(line: &str) -> bool {
    matches!(line.split_whitespace().next(), Some("quit" | "q"))
}

impl HmpShell {
    /// A command (or the wait between them) failed: if the monitor is gone,
    /// the shell ends.
    fn failure(&mut self, e: Error) -> Printed {
        match e {
            Error::Closed | Error::Io(_) => {
                self.ended = Some(Ended::PeerGone);
                Printed::error(format!("{e}; the shell ends"))
            }
            e => Printed::error(e),
        }
    }
}

impl Session for HmpShell {
    /// `set_password PROTOCOL PW`, `change vnc password PW`.
    fn carries_secret(line: &str) -> bool {
        vmwire_proto::hmp::secret_span(line.as_bytes()).is_some()
    }

    fn run(&mut self, line: &str, _: &Interrupt) -> Printed {
        let quit = is_quit(line);
        match self.hmp.command(line) {
            Ok(text) if quit => {
                self.ended = Some(Ended::Asked);
                Printed::ok(text)
            }
            Ok(text) => Printed::ok(text.strip_suffix('\n').unwrap_or(&text)),
            Err(Error::Closed) if quit => {
                self.ended = Some(Ended::Asked);
                Printed::default()
            }
            Err(e) => self.failure(e),
        }
    }

    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        let (start, word) = shell::last_word(line);
        match line[..start].split_whitespace().collect::<Vec<_>>()[..] {
            ["info" | "i"] => (start, shell::starting_with(&self.infos, word)),
            _ => shell::complete_command(line, &self.commands),
        }
    }

    /// What QEMU printed on its own; and whether it has gone, said at once.
    fn idle(&mut self) -> Printed {
        let waited = self.hmp.wait_unsolicited(Some(Duration::ZERO));
        let printed = Printed::ok(shell::lines(self.hmp.take_unsolicited()));
        match waited {
            Ok(()) => printed,
            Err(e) => Printed { out: printed.out, ..self.failure(e) },
        }
    }

    fn ended(&self) -> Option<Ended> {
        self.ended
    }

    fn banner(&self) -> Option<String> {
        let banner = self.hmp.banner().trim();
        match self.hmp.version() {
            _ if !banner.is_empty() => Some(banner.to_owned()),
            Some((major, minor, micro)) => Some(format!("QEMU {major}.{minor}.{micro} monitor (over QMP)")),
            None => None,
        }
    }
}
