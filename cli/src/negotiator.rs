//! `vmwire negotiator-host` and `vmwire negotiator-guest`: the command-line
//! tools of negotiator, with the original's options and exit statuses (0 on
//! success and for help, 1 on any failure, a bad command line included).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser};
use vmwire_std::negotiator::{
    Channel, Commands, Error, GUEST_TO_HOST_CHANNEL, GuestAgent, GuestChannel, HOST_TO_GUEST_CHANNEL, HostDaemon,
    Options, USER_COMMANDS_DIRECTORY, find_character_device, find_supported_guests,
};
use vmwire_std::text::escape;

/// The words after the subcommand, parsed here rather than by the outer
/// parser: the original exits 1 on a bad command line, not 2.
#[derive(Debug, Args)]
pub struct Raw {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "OPTIONS")]
    args: Vec<OsString>,
}

/// Options both tools share.
#[derive(Debug, Args)]
struct Common {
    /// Seconds before a remote call without a response times out; 0 waits forever.
    #[arg(short = 't', long, default_value = "10", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// Standard input for the command run with --execute: a file, or `-` for
    /// this program's own standard input.
    #[arg(long, value_name = "FILE", requires = "execute")]
    input: Option<PathBuf>,
    /// With --daemon: a directory of commands offered to the other side
    /// (repeatable; the first that has a command wins).
    #[arg(long = "commands-dir", value_name = "DIR", default_value = USER_COMMANDS_DIRECTORY)]
    commands_dirs: Vec<PathBuf>,
    /// With --daemon: seconds a command may run before it is killed; 0 for no limit.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    command_timeout: crate::Seconds,
    /// Increase logging verbosity (can be repeated).
    #[arg(short = 'v', long, action = ArgAction::Count)]
    verbose: u8,
    /// Decrease logging verbosity (can be repeated).
    #[arg(short = 'q', long, action = ArgAction::Count)]
    quiet: u8,
}

/// Communicate from a KVM/QEMU host with running guests, through the
/// negotiator agent running inside them.
#[derive(Debug, Parser)]
#[command(
    name = "vmwire negotiator-host",
    version,
    override_usage = "vmwire negotiator-host [OPTIONS] GUEST_NAME|--socket PATH",
    after_help = "Without --socket, a guest's channels are found with virsh (libvirt). \
                  Exit status: 0 on success, 1 on any failure (as negotiator-host)."
)]
struct HostArgs {
    /// List the names of the guests that have the appropriate channel.
    #[arg(short = 'g', long)]
    list_guests: bool,
    /// List the commands that the guest exposes to its host.
    #[arg(short = 'c', long)]
    list_commands: bool,
    /// Execute COMMAND (split like a shell line) inside the guest and print
    /// its output; a failing command makes this program fail too.
    #[arg(short = 'e', long, value_name = "COMMAND")]
    execute: Option<String>,
    /// Start the host daemon that answers the guests' calls: for GUEST_NAME
    /// or --socket if given, else for every running guest.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// The UNIX socket of the guest's channel (host-to-guest for -c/-e,
    /// guest-to-host for -d), instead of finding it with virsh.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// The guest to talk to.
    guest_name: Option<String>,
}

/// Communicate from a KVM/QEMU guest with its host, or start the guest
/// daemon that lets the host run commands in the guest.
#[derive(Debug, Parser)]
#[command(
    name = "vmwire negotiator-guest",
    version,
    after_help = "Exit status: 0 on success, 1 on any failure (as negotiator-guest)."
)]
struct GuestArgs {
    /// List the commands that the host exposes to its guests.
    #[arg(short = 'l', long)]
    list_commands: bool,
    /// Execute COMMAND (split like a shell line) on the host and print its
    /// output; a failing command makes this program fail too.
    #[arg(short = 'e', long, value_name = "COMMAND")]
    execute: Option<String>,
    /// Start the guest daemon: on a character device it never returns
    /// unless something fails; on a socket (-c) it ends, status 0, when the
    /// host closes it.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// The channel's character device (or a UNIX socket); by default found
    /// through /sys/class/virtio-ports/*/name.
    #[arg(short = 'c', long, value_name = "PATH")]
    character_device: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// A tool's whole run, as the original's: parse `raw` as `P` (help to
/// standard output with status 0, any other mistake status 1); with no
/// action asked for, print the usage (status 0); else `run` it (status 1 on
/// any failure).
fn tool<P: Parser + clap::CommandFactory>(
    tool: &str,
    raw: Raw,
    common: impl FnOnce(&P) -> &Common,
    has_action: impl FnOnce(&P) -> bool,
    run: impl FnOnce(&P) -> Result<(), Error>,
) -> ExitCode {
    let args = match P::try_parse_from(std::iter::once(OsString::from(format!("vmwire {tool}"))).chain(raw.args)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let levels = common(&args);
    crate::init_logging(levels.verbose, levels.quiet);
    if !has_action(&args) {
        let _ = P::command().print_help();
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(tool, &e),
    }
}

/// Reports a failure the way the original does: a message, status 1.
fn fail(tool: &str, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vmwire {tool}: {}", escape(&error.to_string()));
    ExitCode::from(1)
}

impl Common {
    fn options(&self) -> Options {
        Options { timeout: self.timeout.0, ..Options::default() }
    }

    /// The commands a daemon offers; a directory it cannot read is warned
    /// of (every call of a command there would fail).
    fn commands(&self) -> Commands {
        for dir in &self.commands_dirs {
            if let Err(e) = std::fs::read_dir(dir) {
                log::warn!("commands directory {}: {e}; it offers nothing", dir.display());
            }
        }
        Commands { directories: self.commands_dirs.clone(), time_limit: self.command_timeout.0, ..Commands::default() }
    }

    fn input(&self) -> Result<Option<String>, String> {
        let read = |path: &Path| -> std::io::Result<String> {
            if path == Path::new("-") {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                Ok(s)
            } else {
                std::fs::read_to_string(path)
            }
        };
        self.input.as_deref().map(|p| read(p).map_err(|e| format!("{}: {e}", p.display()))).transpose()
    }
}

/// Runs `command_line` on the other side and prints its output as the
/// original does (without trailing white space).
fn execute(channel: &mut Channel, command_line: &str, input: Option<&str>) -> Result<(), Error> {
    let words = shlex::split(command_line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| Error::Discovery(format!("cannot split {command_line:?} into a command and its arguments")))?;
    let (command, args) = words.split_first().ok_or_else(|| Error::Discovery("empty command".into()))?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = channel.execute(command, &args, input)?;
    println!("{}", output.trim_end());
    Ok(())
}

fn list_commands(channel: &mut Channel) -> Result<(), Error> {
    let mut commands = channel.list_commands()?;
    commands.sort();
    for command in commands {
        println!("{}", escape(&command));
    }
    Ok(())
}

/// `vmwire negotiator-host`.
pub fn host(raw: Raw) -> ExitCode {
    tool(
        "negotiator-host",
        raw,
        |a: &HostArgs| &a.common,
        |a| a.list_guests || a.list_commands || a.execute.is_some() || a.daemon,
        run_host,
    )
}

fn run_host(args: &HostArgs) -> Result<(), Error> {
    let options = args.common.options();
    let input = args.common.input().map_err(Error::Discovery)?;
    if args.list_guests {
        for guest in find_supported_guests(HOST_TO_GUEST_CHANNEL)? {
            println!("{guest}");
        }
    }
    if args.list_commands || args.execute.is_some() {
        let mut channel = match (&args.socket, &args.guest_name) {
            (Some(path), name) => GuestChannel::connect_with(path, name.as_deref(), options.clone())?,
            (None, Some(name)) => GuestChannel::connect_guest(name, options.clone())?,
            (None, None) => {
                return Err(Error::Discovery(
                    "please name the guest (GUEST_NAME), or its channel (--socket PATH)".into(),
                ));
            }
        };
        if args.list_commands {
            list_commands(&mut channel)?;
        }
        if let Some(command_line) = &args.execute {
            execute(&mut channel, command_line, input.as_deref())?;
        }
    }
    if args.daemon {
        let daemon = HostDaemon::new(args.common.commands()).options(options);
        let daemon = match (&args.socket, &args.guest_name) {
            (Some(path), name) => {
                let name = name.clone().or_else(|| path.file_name().map(|f| f.to_string_lossy().into_owned()));
                daemon.socket(&name.unwrap_or_default(), path)
            }
            (None, Some(name)) => daemon.guest(name),
            (None, None) => daemon,
        };
        daemon.run()?;
    }
    Ok(())
}

/// `vmwire negotiator-guest`.
pub fn guest(raw: Raw) -> ExitCode {
    tool(
        "negotiator-guest",
        raw,
        |a: &GuestArgs| &a.common,
        |a| a.list_commands || a.execute.is_some() || a.daemon,
        run_guest,
    )
}

fn run_guest(args: &GuestArgs) -> Result<(), Error> {
    let options = args.common.options();
    let input = args.common.input().map_err(Error::Discovery)?;
    let device = |channel: &str| match &args.character_device {
        Some(path) => Ok(path.clone()),
        None => find_character_device(channel),
    };
    if args.daemon {
        let agent = GuestAgent::open_with(device(HOST_TO_GUEST_CHANNEL)?, options)?;
        // It returns only when the channel closes: a socket's host left (a
        // character device is waited on forever).
        agent.serve(&args.common.commands())?;
        log::info!("the host closed the channel; the daemon ends");
        return Ok(());
    }
    let mut agent = GuestAgent::open_with(device(GUEST_TO_HOST_CHANNEL)?, options)?;
    if args.list_commands {
        list_commands(&mut agent)?;
    }
    if let Some(command_line) = &args.execute {
        execute(&mut agent, command_line, input.as_deref())?;
    }
    Ok(())
}
