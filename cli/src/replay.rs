//! `vmwire replay`: serve a transcript as a fake peer on a UNIX socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_std::record::Address;
use vmwire_std::replay::{Fault, Peer, Protocol};

/// Serve a recorded transcript (`.txn`) to one client, as the server did.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The transcript (written by `vmwire record`, or a file from `fixtures/`).
    file: PathBuf,
    /// Where the client connects: a UNIX socket path (not in use: a socket
    /// left by a listener that is gone is replaced; removed at the end) or HOST:PORT (port 0: any; the address is printed).
    #[arg(long, value_name = "ADDRESS")]
    listen: Address,
    /// qmp, qga, hmp, negotiator, minimega or xmlrpc (default: the
    /// transcript's `protocol:` note).
    #[arg(long, value_name = "NAME")]
    protocol: Option<Protocol>,
    /// Write every server message in pieces of N bytes (1: a byte at a
    /// time), 200 µs apart so that the client reads them apart: a byte at a
    /// time, the 207 KB schema a checked `vmwire qmp` fetches takes 40 s.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    split: Option<u64>,
    /// Wait this many milliseconds before every server message.
    #[arg(long, value_name = "MS")]
    delay: Option<u64>,
    /// Close the connection after the K-th server message (from 1).
    #[arg(long, value_name = "K")]
    close_after: Option<usize>,
    /// Send half of the K-th server message (from 1), then close.
    #[arg(long, value_name = "K")]
    close_mid: Option<usize>,
    /// QMP: an event before the greeting.
    #[arg(long)]
    event_before_greeting: bool,
    /// QMP, QGA: an event before every reply (QMP: every reply after the
    /// one to qmp_capabilities, as QEMU sends no event before it).
    #[arg(long)]
    event_before_return: bool,
    /// QMP, QGA: every reply sent twice.
    #[arg(long)]
    duplicate_id: bool,
    /// QMP, QGA: a reply with an id the client never used before every reply.
    #[arg(long)]
    unknown_id: bool,
    /// QGA: a JSON value cut short before every 0xFF the agent sends.
    #[arg(long)]
    garbage_before_resync: bool,
    /// QMP, QGA: the first reply to a command is replaced by one of N bytes.
    #[arg(long, value_name = "BYTES")]
    oversized: Option<usize>,
}

impl ReplayArgs {
    /// The faults the flags name.
    fn faults(&self) -> Vec<Fault> {
        let flags = [
            (self.event_before_greeting, Fault::EventBeforeGreeting),
            (self.event_before_return, Fault::EventBeforeReturn),
            (self.duplicate_id, Fault::DuplicateId),
            (self.unknown_id, Fault::UnknownId),
            (self.garbage_before_resync, Fault::GarbageBeforeResync),
        ];
        let mut faults: Vec<Fault> = flags.into_iter().filter_map(|(on, f)| on.then_some(f)).collect();
        faults.extend(self.split.map(|n| Fault::Split(usize::try_from(n).unwrap_or(usize::MAX))));
        faults.extend(self.delay.map(|ms| Fault::Delay(Duration::from_millis(ms))));
        faults.extend(self.close_after.map(Fault::CloseAfter));
        faults.extend(self.close_mid.map(Fault::CloseMid));
        faults.extend(self.oversized.map(Fault::Oversized));
        faults
    }
}

/// Exit status 0 when the client replayed the whole transcript, 2 for a
/// usage error (unreadable file, no protocol, a fault that does not apply),
/// 3 when the client sent something else or stopped early.
pub fn run(args: ReplayArgs) -> ExitCode {
    let text = match std::fs::read(&args.file) {
        Ok(text) => text,
        Err(e) => return crate::usage(&format!("{}: {e}", args.file.display())),
    };
    let Some(protocol) = args.protocol.or_else(|| Protocol::of_transcript(&text)) else {
        return crate::usage(&"the transcript names no protocol: give --protocol");
    };
    let peer = match Peer::listen_at(protocol, &text, &args.faults(), &args.listen) {
        Ok(peer) => peer,
        Err(e @ (vmwire_std::replay::Error::Transcript(_) | vmwire_std::replay::Error::Fault(..))) => {
            return crate::usage(&e);
        }
        // A path in use is the command line's to change, as for `record`.
        Err(vmwire_std::replay::Error::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AlreadyExists) =>
        {
            return crate::usage(&e);
        }
        Err(e) => return crate::fail(&e),
    };
    crate::remove_on_signal(peer.address());
    eprintln!("vmwire: replaying {} ({protocol}) on {}", args.file.display(), peer.address());
    match peer.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}
