//! vmwire-proto: sans-IO state machines for the wire protocols that drive
//! virtual machines.
//!
//! Every protocol here is a [`Machine`]: bytes in, events out, commands
//! encoded into a transmit buffer. No I/O, no clock, no threads, and no
//! allocation unless the `alloc` feature is on and the embedder picks
//! [`buf::Heap`] storage. Adapters (`vmwire-std`, `vmwire-smol`) own the
//! sockets and the timeouts; the machines own every byte of the protocol.
//!
//! | module | protocol |
//! | --- | --- |
//! | [`qmp`] | QEMU Machine Protocol (client); [`qmp::schema`]: the live QAPI schema, path queries, checking arguments |
//! | [`json`] | the shared JSON framer, zero-copy reader and writer |
//! | [`hmp`] | QEMU's human monitor (readline monitor client), and HMP over QMP |
//! | [`qga`] | the QEMU guest agent (client) |
//! | [`base64`] | base64 in and out of JSON strings (the guest agent's payloads) |
//! | [`negotiator`] | negotiator's host/guest channel (caller and responder) |
//! | [`minimega`] | minimega's command socket (client) |
//! | [`http`] | HTTP/1.x framing (client and server) for XML-RPC |
//! | [`xmlrpc`] | XML-RPC: zero-copy parser, writer, serde, client and server machines |
//! | [`xenapi`] | the XenAPI (xapi) over XML-RPC: results, failures, tasks, a session machine |
//! | [`transcript`] | the `.txn` transcript format of `vmwire record` / `vmwire replay`: reader and writer |
//!
//! # Features
//! - `alloc`: growable, bounded buffers ([`buf::Heap`]) and owned conversions.
//! - `std`: `alloc`, plus typed decoding with `serde_json`.
//! - `serde`: XML-RPC values to and from Rust types.
//! - `gzip`: decoding gzip-encoded HTTP bodies (needs `alloc`).
//!
//! With no features the crate needs neither `std` nor an allocator.
#![no_std]
#![forbid(unsafe_code)]
// Links to `alloc`-only items (`buf::Heap`, …) resolve in the documented
// build (all features, as docs.rs builds it); without `alloc` they cannot.
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod base64;
pub mod buf;
pub mod hmp;
pub mod http;
pub mod json;
pub mod minimega;
pub mod negotiator;
mod qapi;
pub mod qga;
pub mod qmp;
pub mod transcript;
pub mod xenapi;
pub mod xmlrpc;

/// The face every protocol machine shows its adapter.
///
/// An adapter's whole job, for any protocol:
///
/// ```no_run
/// # use std::io::{Read, Write};
/// use vmwire_proto::{Machine, buf::Fixed, qmp};
///
/// # fn run(socket: &mut std::os::unix::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
/// let mut machine = qmp::Client::<Fixed<65536>>::new(qmp::Config::default());
/// loop {
///     while let Some(event) = machine.poll()? {      // 1. events out
///         println!("{event:?}");
///     }
///     while !machine.transmit().is_empty() {         // 2. bytes the machine queued
///         let n = socket.write(machine.transmit())?;
///         machine.transmitted(n);
///     }
///     let n = socket.read(machine.recv_buf())?;      // 3. bytes in, straight into its buffer
///     machine.recv_commit(n)?;                       //    (0 = end of stream)
///     if n == 0 { break; }
/// }
/// # Ok(()) }
/// ```
pub trait Machine {
    /// What [`Machine::poll`] hands out; borrows the machine's receive buffer.
    type Event<'a>
    where
        Self: 'a;
    /// What goes wrong with the machine itself (not the peer's own errors,
    /// which are events).
    type Error: core::error::Error;

    /// Room to read into. Not empty once [`Machine::poll`] has returned `Ok(None)`.
    fn recv_buf(&mut self) -> &mut [u8];

    /// `n` bytes of [`Machine::recv_buf`] were filled; `0` means the stream
    /// ended (the machine fails whatever is pending, through events).
    fn recv_commit(&mut self, n: usize) -> Result<(), Self::Error>;

    /// The next event, or `None` until more bytes arrive.
    fn poll(&mut self) -> Result<Option<Self::Event<'_>>, Self::Error>;

    /// Bytes waiting to be written to the peer.
    fn transmit(&self) -> &[u8];

    /// `n` bytes of [`Machine::transmit`] were written.
    fn transmitted(&mut self, n: usize);

    /// Copies in as much of `bytes` as fits and returns how many were taken
    /// (fewer than all: poll, then offer the rest). Never signals end of stream.
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, Self::Error> {
        let buf = self.recv_buf();
        let n = buf.len().min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&bytes[..n]);
        self.recv_commit(n)?;
        Ok(n)
    }
}
