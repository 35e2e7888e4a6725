//! `vmwire`: talk to the programs that drive virtual machines, by hand.
//!
//! Exit status: 0 on success, 1 when the peer answered with an error, 2 on a
//! usage error, 3 when the connection or the protocol failed.

mod hmp;
mod minimega;
mod negotiator;
mod qga;
mod qmp;
// The QMP shell's completion and help from the live schema; the shell wires them in.
#[allow(dead_code)]
mod schema;
mod shell;
mod xmlrpc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vmwire", version, about = "Speak the wire protocols that drive virtual machines")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// QEMU Machine Protocol: one command, `--events`, or an interactive shell.
    Qmp(qmp::QmpArgs),
    /// QEMU's human monitor: one command, or a shell.
    Hmp(hmp::HmpArgs),
    /// The QEMU guest agent: a command, `exec`, `cat`, `put`, or a shell.
    Qga(qga::QgaArgs),
    /// minimega's command socket: one command like `minimega -e`, or a shell like `-attach`.
    Minimega(minimega::MinimegaArgs),
    /// negotiator, host side: list guests, call a guest, or answer them all (the host daemon).
    #[command(name = "negotiator-host", disable_help_flag = true)]
    NegotiatorHost(negotiator::Raw),
    /// negotiator, guest side: call the host, or answer it (the guest daemon).
    #[command(name = "negotiator-guest", disable_help_flag = true)]
    NegotiatorGuest(negotiator::Raw),
    /// XML-RPC: call one method on any server, print the reply as JSON.
    Xmlrpc(xmlrpc::XmlrpcArgs),
    /// XenAPI (xapi): log in, make one call, print the Value as JSON.
    Xenapi(xmlrpc::XenapiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Qmp(args) => qmp::run(args),
        Commands::Hmp(args) => hmp::run(args),
        Commands::Qga(args) => qga::run(args),
        Commands::Minimega(args) => minimega::run(args),
        Commands::NegotiatorHost(args) => negotiator::host(args),
        Commands::NegotiatorGuest(args) => negotiator::guest(args),
        Commands::Xmlrpc(args) => xmlrpc::run_xmlrpc(args),
        Commands::Xenapi(args) => xmlrpc::run_xenapi(args),
    }
}

/// Reports a connection or protocol failure; exit status 3.
pub fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vmwire: {error}");
    ExitCode::from(3)
}

/// Reports a usage error; exit status 2.
pub fn usage(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vmwire: {error}");
    ExitCode::from(2)
}
