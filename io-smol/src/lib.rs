//! Async adapters for [`vmwire_proto`]'s machines, over `futures-io`.
//!
//! Every client here is a [`conn::Conn`] (a machine and any `AsyncRead +
//! AsyncWrite` stream) and the operations of [`vmwire_proto::op`] it runs:
//! the same operations, errors and names as the blocking clients of
//! `vmwire-std`. Nothing here starts a runtime: sockets and timers come
//! from `async-io`, whose reactor runs under smol, and under any other
//! executor on a thread of its own; streams from another runtime plug in
//! through its compat layer (tokio-util's `compat()`).
//!
//! QMP's [`qmp::Handle`] shares one connection among many tasks: commands
//! pipelined and matched by id, events to any number of subscribers, a
//! driver future the embedder spawns on its own executor.
//!
//! negotiator's [`negotiator::Channel`] calls the other side of a channel,
//! and [`negotiator::serve_session`] answers it: an async daemon is a loop
//! that accepts a connection and serves it. minimega's
//! [`minimega::Minimega`] runs commands, streams their replies frame by
//! frame, and completes command lines.
//!
//! [`qmp::mux`] serves many clients on one QEMU monitor (`vmwire
//! qmp-mux`), and [`replay::Peer`] serves a recorded transcript to a client
//! under test.
//!
//! | protocol | one task drives it | |
//! | --- | --- | --- |
//! | QMP | [`qmp::Qmp`] | many tasks: [`qmp::Handle`] ([`qmp::Qmp::share`]) |
//! | guest agent | [`qga::Agent`] | |
//! | human monitor | [`hmp::Monitor`] | over a shared QMP handle: [`hmp::Monitor::via_qmp`] |
//! | negotiator | [`negotiator::Channel`], [`negotiator::GuestChannel`] | serving: [`negotiator::GuestAgent`], [`negotiator::serve_session`] |
//! | minimega | [`minimega::Minimega`] | |
//! | XML-RPC, XenAPI | [`xmlrpc::Client`], [`xenapi::Session`] | |

pub mod conn;
pub mod hmp;
pub mod http;
pub mod minimega;
pub mod negotiator;
pub mod qga;
pub mod qmp;
pub mod replay;
pub mod xenapi;
pub mod xmlrpc;

pub use conn::{Conn, Stream};
pub use vmwire_proto as proto;
