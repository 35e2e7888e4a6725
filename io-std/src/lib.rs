//! vmwire-std: blocking adapters for the `vmwire-proto` machines, over std
//! UNIX sockets, TCP and character devices, with timeouts.
//!
//! Each protocol has one client type named in the protocol's own vocabulary
//! ([`qmp::Qmp::execute`]). The clients own their sockets and their
//! deadlines; every byte of the protocol is handled by the machine in
//! `vmwire-proto`, driven through the one loop in [`transport`].

pub mod hmp;
pub mod http;
pub mod minimega;
pub mod negotiator;
pub mod qemu;
pub mod qga;
pub mod qmp;
pub mod record;
pub mod replay;
pub mod text;
pub mod transport;
pub mod xenapi;
pub mod xmlrpc;
