//! Shared by the integration tests: reading the captured transcripts in
//! `fixtures/` and feeding machines in arbitrary chunkings.
#![allow(dead_code)]

use vmwire_proto::Machine;

/// One record of a `.txn` transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes the client sent, in one write.
    ClientToServer(Vec<u8>),
    /// Bytes the server sent, as one `recv()` returned them (empty: it closed).
    ServerToClient(Vec<u8>),
    /// A note, not on the wire.
    Note(Vec<u8>),
}

/// Parses a `.txn` transcript: `> LEN\n` / `< LEN\n` / `# LEN\n`, then LEN bytes and `\n`.
pub fn transcript(txn: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut rest = txn;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').expect("header line");
        let header = std::str::from_utf8(&rest[..nl]).expect("ASCII header");
        let (kind, len) = header.split_once(' ').expect("kind and length");
        let len: usize = len.parse().expect("length");
        let body = rest[nl + 1..nl + 1 + len].to_vec();
        assert_eq!(rest[nl + 1 + len], b'\n', "record terminator");
        rest = &rest[nl + 2 + len..];
        records.push(match kind {
            ">" => Record::ClientToServer(body),
            "<" => Record::ServerToClient(body),
            "#" => Record::Note(body),
            other => panic!("unknown record kind {other:?}"),
        });
    }
    records
}

/// Feeds `bytes` to `machine` in pieces of the given sizes (cycled), calling
/// `on_event` for every event; `bytes` empty means end of stream.
pub fn feed<M: Machine>(machine: &mut M, bytes: &[u8], sizes: &[usize], on_event: impl FnMut(M::Event<'_>)) {
    feed_with(machine, bytes, sizes, false, on_event);
}

/// [`feed`], writing out (to nowhere) what the machine queues after each
/// event, as an adapter does: for machines that send one command at a time.
pub fn feed_flushing<M: Machine>(machine: &mut M, bytes: &[u8], sizes: &[usize], on_event: impl FnMut(M::Event<'_>)) {
    feed_with(machine, bytes, sizes, true, on_event);
}

fn feed_with<M: Machine>(
    machine: &mut M,
    bytes: &[u8],
    sizes: &[usize],
    flush: bool,
    mut on_event: impl FnMut(M::Event<'_>),
) {
    let mut drain = |m: &mut M| loop {
        if flush {
            let n = m.transmit().len();
            m.transmitted(n);
        }
        match m.poll().expect("poll") {
            Some(event) => on_event(event),
            None => break,
        }
    };
    if bytes.is_empty() {
        machine.recv_eof();
        drain(machine);
        return;
    }
    let mut fed = 0;
    let mut k = 0;
    while fed < bytes.len() {
        let want = sizes[k % sizes.len()].max(1).min(bytes.len() - fed);
        k += 1;
        let mut taken = 0;
        while taken < want {
            let n = machine.receive(&bytes[fed + taken..fed + want]).expect("receive");
            taken += n;
            drain(machine);
            assert!(n > 0 || taken == want, "machine took nothing after being drained");
        }
        fed += want;
    }
}
