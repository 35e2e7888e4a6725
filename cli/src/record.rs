//! `vmwire record`: a transparent proxy that writes a transcript.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vmwire_std::record::{Address, Proxy};
use vmwire_std::replay::Protocol;

/// Proxy a client to the real peer, recording every byte (`.txn`).
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// qmp, qga, hmp, negotiator, minimega or xmlrpc.
    protocol: Protocol,
    /// Where clients connect: a UNIX socket path (not in use: a socket left by a
    /// listener that is gone is replaced) or HOST:PORT.
    #[arg(long, value_name = "ADDRESS")]
    listen: Address,
    /// The real peer: a UNIX socket path or HOST:PORT.
    #[arg(long, value_name = "ADDRESS")]
    connect: Address,
    /// The transcript to write (see docs/transcript.md).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write one line per message here (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Stop after this many client connections (default: run until interrupted).
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
}

/// Exit status 0 after `--connections` clients, 2 for a usage error (a
/// socket or file that cannot be created), 3 when the peer cannot be
/// reached or a socket fails.
pub fn run(args: RecordArgs) -> ExitCode {
    // A peer's socket that is not there is said now, not when a client comes.
    if let Address::Unix(path) = &args.connect
        && let Err(e) = std::fs::metadata(path)
    {
        return crate::fail(&format!("{}: {e}", path.display()));
    }
    let out = match File::create(&args.out) {
        Ok(f) => f,
        Err(e) => return crate::usage(&format!("{}: {e}", args.out.display())),
    };
    let mut summary: Option<Box<dyn Write>> = match &args.summary {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(path) => match File::create(path) {
            Ok(f) => Some(Box::new(BufWriter::new(f))),
            Err(e) => return crate::usage(&format!("{}: {e}", path.display())),
        },
    };
    let proxy = match Proxy::bind(args.protocol, args.listen, args.connect.clone()) {
        Ok(p) => p,
        Err(e) => return crate::usage(&e),
    };
    crate::remove_on_signal(&proxy.local_address());
    eprintln!("vmwire: recording {} on {} -> {}", args.protocol, proxy.local_address(), args.connect);
    let mut out = out;
    match proxy.run(args.connections, &mut out, summary.as_deref_mut().map(|s| s as &mut dyn Write)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}
