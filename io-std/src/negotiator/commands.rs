//! The commands an agent offers the other side: executables in the commands
//! directories, run by base name, never through a shell, never by path.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::transport::wait_ready;

/// Where negotiator looks for the commands it offers, unless told otherwise.
pub const USER_COMMANDS_DIRECTORY: &str = "/usr/lib/negotiator/commands";

/// The commands this side offers: `list_commands()` and `execute(…)`.
///
/// ```no_run
/// use vmwire_std::negotiator::Commands;
/// let commands = Commands::in_directory("/etc/negotiator/commands");
/// println!("{:?}", commands.list());
/// let output = commands.execute(&["find-ip-addresses".into()], None, &[]);
/// ```
#[derive(Debug, Clone)]
pub struct Commands {
    /// Directories searched in order; the first executable of the name wins.
    pub directories: Vec<PathBuf>,
    /// How long a command may run before it (and its process group) is
    /// killed; `None` for no limit.
    pub time_limit: Option<Duration>,
    /// The most bytes of output a command may write; past this it is killed.
    pub max_output: usize,
}

impl Default for Commands {
    /// [`USER_COMMANDS_DIRECTORY`], 60 seconds, 16 MiB.
    fn default() -> Self {
        Commands {
            directories: vec![PathBuf::from(USER_COMMANDS_DIRECTORY)],
            time_limit: Some(Duration::from_secs(60)),
            max_output: 16 << 20,
        }
    }
}

/// Why a command gave no output. Its `Display` is the error text sent to the
/// other side.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError {
    /// `execute` without a command name.
    NoCommand,
    /// A name that is a path, or `.`/`..`, or empty: only plain file names are run.
    NotAName(String),
    /// No executable of this name in the commands directories.
    NotFound(String),
    /// An argument that is not a string.
    BadArgument(usize),
    /// A keyword argument `execute` does not take.
    UnexpectedKeyword(String),
    /// The command exited with a status other than 0.
    Failed {
        /// The command's name.
        command: String,
        /// Its exit status.
        status: i32,
    },
    /// The command was killed by a signal.
    Killed {
        /// The command's name.
        command: String,
        /// The signal.
        signal: i32,
    },
    /// The command ran past the time limit and was killed.
    TimedOut {
        /// The command's name.
        command: String,
        /// The limit.
        limit: Duration,
    },
    /// The command wrote more output than allowed and was killed.
    OutputTooLarge {
        /// The command's name.
        command: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The command could not be started or waited for.
    Io {
        /// The command's name.
        command: String,
        /// What failed.
        error: io::Error,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NoCommand => f.write_str("execute() needs a command name"),
            CommandError::NotAName(name) => {
                write!(f, "Command name {name:?} is not a plain file name (paths are not run)")
            }
            CommandError::NotFound(name) => write!(f, "No command named {name:?} is available"),
            CommandError::BadArgument(i) => write!(f, "execute() argument {i} is not a string"),
            CommandError::UnexpectedKeyword(k) => write!(f, "execute() got an unexpected keyword argument '{k}'"),
            CommandError::Failed { command, status } => {
                write!(f, "External command {command:?} failed with exit code {status}!")
            }
            CommandError::Killed { command, signal } => {
                write!(f, "External command {command:?} was killed by signal {signal}!")
            }
            CommandError::TimedOut { command, limit } => {
                write!(f, "External command {command:?} ran longer than {} s and was killed!", limit.as_secs_f64())
            }
            CommandError::OutputTooLarge { command, limit } => {
                write!(f, "External command {command:?} wrote more than {limit} bytes and was killed!")
            }
            CommandError::Io { command, error } => write!(f, "External command {command:?} could not run: {error}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Whether `name` may name a command: a plain file name, nothing that walks
/// the file system.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A regular file (after symbolic links) that this process may execute.
fn executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file()) && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// What `executor` (the Python peer's runner) makes of a command's output:
/// without leading and trailing white space if what is left is one line,
/// else as it was.
fn output_text(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let stripped = text.trim();
    if stripped.contains('\n') { text.into_owned() } else { stripped.to_owned() }
}

impl Commands {
    /// The commands in `directory` only, with the default limits.
    pub fn in_directory(directory: impl Into<PathBuf>) -> Self {
        Commands { directories: vec![directory.into()], ..Commands::default() }
    }

    /// The names of the commands offered, sorted, each once. Names that are
    /// not UTF-8 are left out (they could not be named in JSON).
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .directories
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter(|entry| executable(&entry.path()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The executable `name` stands for: the first in the directories.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, CommandError> {
        if !plain_name(name) {
            return Err(CommandError::NotAName(name.into()));
        }
        self.directories
            .iter()
            .map(|dir| dir.join(name))
            .find(|path| executable(path))
            .ok_or_else(|| CommandError::NotFound(name.into()))
    }

    /// Runs `argv[0]` (a name in the commands directories) with the rest as
    /// its arguments and `input` on its standard input (none: `/dev/null`),
    /// with `env` added to the environment. Returns its output as the Python
    /// peer does (one line: trimmed). No shell is involved.
    pub fn execute(&self, argv: &[String], input: Option<&str>, env: &[(&str, &str)]) -> Result<String, CommandError> {
        let (name, args) = argv.split_first().ok_or(CommandError::NoCommand)?;
        let path = self.resolve(name)?;
        let mut command = std::process::Command::new(&path);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            // Its own process group, so that a time limit kills what it started too.
            .process_group(0);
        let io = |error| CommandError::Io { command: name.clone(), error };
        let mut child = command.spawn().map_err(io)?;
        let outcome = self.supervise(&mut child, input);
        let (stdout, status, ending) = outcome.map_err(io)?;
        match ending {
            Ending::TimedOut => {
                Err(CommandError::TimedOut { command: name.clone(), limit: self.time_limit.unwrap_or_default() })
            }
            Ending::TooLarge => Err(CommandError::OutputTooLarge { command: name.clone(), limit: self.max_output }),
            Ending::Exited => match (status.code(), status.signal()) {
                (Some(0), _) => Ok(output_text(&stdout)),
                (Some(status), _) => Err(CommandError::Failed { command: name.clone(), status }),
                (None, signal) => Err(CommandError::Killed { command: name.clone(), signal: signal.unwrap_or(0) }),
            },
        }
    }

    /// Feeds the child its input, collects its output and waits for it,
    /// killing its process group when it runs past the time limit or writes
    /// too much.
    fn supervise(&self, child: &mut Child, input: Option<&str>) -> io::Result<(Vec<u8>, ExitStatus, Ending)> {
        let pid = Pid::from_child(child);
        let kill = move || {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        };
        let deadline = self.time_limit.map(|limit| Instant::now() + limit);
        if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
            let input = input.to_owned();
            // A command that does not read its input must not block us: a
            // thread writes it, and ends when the pipe closes.
            thread::spawn(move || {
                let _ = stdin.write_all(input.as_bytes());
            });
        }
        let mut stdout = child.stdout.take().ok_or_else(|| io::Error::other("no pipe to the command's output"))?;
        let max = self.max_output;
        let (done, output) = mpsc::channel();
        thread::spawn(move || {
            let mut out = Vec::new();
            let read = (&mut stdout).take(max as u64 + 1).read_to_end(&mut out);
            let too_large = out.len() > max;
            if too_large {
                kill();
            }
            let _ = done.send(read.map(|_| (out, too_large)));
        });
        let mut ending = Ending::Exited;
        // Output ends when every process holding the pipe has ended or closed it.
        let received = match deadline {
            Some(d) => output.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => output.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let (out, too_large) = match received {
            Ok(result) => result?,
            Err(_) => {
                kill();
                ending = Ending::TimedOut;
                output.recv().map_err(|_| io::Error::other("output reader vanished"))??
            }
        };
        if too_large {
            ending = Ending::TooLarge;
        }
        if ending == Ending::Exited && !wait_exit(child, deadline)? {
            kill();
            ending = Ending::TimedOut;
        }
        let status = child.wait()?;
        Ok((out, status, ending))
    }
}

/// How a supervised command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    TooLarge,
}

/// Waits until `child` has exited (true) or the deadline passed (false),
/// without reaping it.
fn wait_exit(child: &mut Child, deadline: Option<Instant>) -> io::Result<bool> {
    if deadline.is_none() {
        return Ok(true); // `wait` will block as long as it takes
    }
    match rustix::process::pidfd_open(Pid::from_child(child), PidfdFlags::empty()) {
        Ok(pidfd) => wait_ready(pidfd.as_fd(), PollFlags::IN, deadline),
        // No pidfd (a kernel before 5.3): look now and then.
        Err(_) => loop {
            if child.try_wait()?.is_some() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(10));
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_walk_the_file_system_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/bin/sh", "x\0y"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        for good in ["find-ip-addresses", "..x", ".hidden", "a b", "é"] {
            assert!(plain_name(good), "{good:?}");
        }
    }

    #[test]
    fn output_is_trimmed_as_executor_does() {
        assert_eq!(output_text(b"  Debian\n"), "Debian");
        assert_eq!(output_text(b"a\nb\n"), "a\nb\n");
        assert_eq!(output_text(b"\n\n one \n\n"), "one");
        assert_eq!(output_text(b"caf\xc3\xa9 \xff\n"), "café \u{fffd}");
    }
}
