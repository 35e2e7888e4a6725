//! A fake peer that serves a recorded transcript, for async tests: the
//! peer of `vmwire_std::replay` (the same transcripts, comparisons and
//! [`Fault`]s), with the waits a test makes at its end as futures.
//!
//! The peer serves from a thread of its own, so the client under test, on
//! whatever executor, never shares a thread with it: a client that blocks
//! its executor cannot stall the peer and hide the bug.
//!
//! ```
//! use vmwire_smol::qmp::{Options, Qmp};
//! use vmwire_smol::replay::{Fault, Peer, Protocol};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # smol::block_on(async {
//! let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/qmp/01_greeting_caps_noid.txn");
//! let peer = Peer::start_file(Protocol::Qmp, file, &[Fault::Split(1)])?;
//!
//! // The code under test connects to `peer.path()` instead of QEMU's socket.
//! let mut qmp = Qmp::connect_unix(peer.path(), Options::default()).await?;
//! let status: serde_json::Value = qmp.execute("query-status", ()).await?;
//! assert_eq!(status["status"], "prelaunch");
//! let version: serde_json::Value = qmp.execute("query-version", ()).await?;
//! assert_eq!(version["qemu"]["major"], 7);
//! qmp.close();
//!
//! // Did the code send everything the recorded client sent, and nothing else?
//! peer.finish().await?;
//! # Ok(())
//! # })
//! # }
//! ```

use std::path::Path;

use vmwire_std::replay as blocking_replay;

pub use vmwire_std::record::Address;
pub use vmwire_std::replay::{Error, Fault, Protocol};

/// A fake peer serving one transcript; see the [module documentation](self).
#[derive(Debug)]
pub struct Peer {
    inner: Option<blocking_replay::Peer>,
}

impl Peer {
    /// Serves `transcript` (the text of a `.txn` file) for one client on a
    /// socket in a new temporary directory ([`Peer::path`]).
    pub fn start(protocol: Protocol, transcript: &[u8], faults: &[Fault]) -> Result<Peer, Error> {
        blocking_replay::Peer::start(protocol, transcript, faults).map(Peer::of)
    }

    /// Serves the transcript in the file at `file`; see [`Peer::start`].
    pub fn start_file(protocol: Protocol, file: impl AsRef<Path>, faults: &[Fault]) -> Result<Peer, Error> {
        blocking_replay::Peer::start_file(protocol, file, faults).map(Peer::of)
    }

    /// Serves `transcript` for one client on `address`: a UNIX socket (which
    /// must not exist; removed when the peer is dropped) or `HOST:PORT`.
    pub fn listen_at(
        protocol: Protocol,
        transcript: &[u8],
        faults: &[Fault],
        address: &Address,
    ) -> Result<Peer, Error> {
        blocking_replay::Peer::listen_at(protocol, transcript, faults, address).map(Peer::of)
    }

    fn of(inner: blocking_replay::Peer) -> Peer {
        Peer { inner: Some(inner) }
    }

    fn inner(&self) -> &blocking_replay::Peer {
        // Taken only by the methods that consume the peer.
        self.inner.as_ref().unwrap_or_else(|| unreachable!("a peer is whole until it is consumed"))
    }

    /// The socket to connect to (empty for a TCP peer: see [`Peer::address`]).
    pub fn path(&self) -> &Path {
        self.inner().path()
    }

    /// The address to connect to.
    pub fn address(&self) -> &Address {
        self.inner().address()
    }

    /// Stops the peer once it has nothing left to send on its own and says
    /// whether the client replayed the whole transcript.
    pub async fn finish(mut self) -> Result<(), Error> {
        let inner = self.inner.take();
        blocking::unblock(move || inner.map_or(Ok(()), blocking_replay::Peer::finish)).await
    }

    /// Waits until the session ends by itself: the transcript is done and
    /// the client has closed its end, or something went wrong.
    pub async fn wait(mut self) -> Result<(), Error> {
        let inner = self.inner.take();
        blocking::unblock(move || inner.map_or(Ok(()), blocking_replay::Peer::wait)).await
    }
}

/// Dropped, the peer stops, on a thread of the blocking pool (stopping waits
/// for its thread), never on the executor's.
impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            blocking::unblock(move || drop(inner)).detach();
        }
    }
}
