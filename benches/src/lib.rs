//! Inputs shared by the benchmarks: captured traffic from `fixtures/`.

/// The server-to-client bytes of a captured session.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/");
    std::fs::read(format!("{full}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The longest line of `bytes` (with its line ending): the big reply in a transcript.
pub fn longest_line(bytes: &[u8]) -> Vec<u8> {
    bytes.split_inclusive(|&b| b == b'\n').max_by_key(|l| l.len()).unwrap_or_default().to_vec()
}

/// The QMP benchmark's inputs and runners, shared by `benches/qmp.rs` and
/// the instruction-count example `examples/qmp_count.rs`.
pub mod qmp {
    use std::hint::black_box;

    use vmwire_proto::Machine;
    use vmwire_proto::buf::{Bounded, Heap};
    use vmwire_proto::json::{Framer, Limits};
    use vmwire_proto::qmp::{Client, Config, Event};

    use super::{fixture, longest_line};

    const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";

    /// The 207 KB `query-qmp-schema` reply.
    pub fn schema() -> Vec<u8> {
        longest_line(&fixture("qmp/06_query_qmp_schema.s2c"))
    }

    /// A burst of small replies and events: every message QEMU sent in the
    /// captured sessions after its greeting, back to back; and how many.
    pub fn burst() -> (Vec<u8>, usize) {
        let mut burst = Vec::new();
        for name in [
            "08_pipelined",
            "09_pipelined_oob",
            "10_cont_stop",
            "12_quit",
            "03_caps_oob",
            "02_caps_with_id",
            "16_two_qmp_sockets_A",
        ] {
            let s2c = fixture(&format!("qmp/{name}.s2c"));
            burst.extend(s2c.split_inclusive(|&b| b == b'\n').skip(1).flatten());
        }
        let messages = burst.split_inclusive(|&b| b == b'\n').count();
        (burst, messages)
    }

    /// A negotiated client with nothing pending.
    pub fn ready() -> Client<Heap> {
        let mut c = Client::<Heap>::new(Config::default());
        c.receive(GREETING).unwrap();
        while c.poll().unwrap().is_some() {}
        c.receive(b"{\"return\": {}, \"id\": 0}\r\n").unwrap();
        while c.poll().unwrap().is_some() {}
        let n = c.transmit().len();
        c.transmitted(n);
        c
    }

    /// Feeds `bytes` through the machine; counts the events.
    pub fn run_machine(c: &mut Client<Heap>, bytes: &[u8]) -> usize {
        let mut fed = 0;
        let mut events = 0;
        while fed < bytes.len() {
            let n = copy_in(c.recv_buf(), &bytes[fed..]);
            c.recv_commit(n).unwrap();
            fed += n;
            // The event is looked at where `poll` put it (moved out of the
            // `Result`, it would be copied twice on the way).
            loop {
                match &c.poll() {
                    Ok(Some(e)) => {
                        black_box(e);
                        events += usize::from(!matches!(e, Event::Malformed(_)));
                    }
                    Ok(None) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        events
    }

    /// Copies as much of `rest` into a receive buffer as it offers, as a
    /// program reading a socket would; returns how much.
    fn copy_in(buf: &mut [u8], rest: &[u8]) -> usize {
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        n
    }

    /// The bare JSON framer, with room for the schema reply.
    pub fn framer() -> Framer<Bounded<u8>> {
        Framer::new(Bounded::new(1 << 24), Limits { max_message: 1 << 24, max_depth: 128 })
    }

    /// Frames and validates `bytes` with the bare JSON framer (no
    /// classification); counts the values. The bytes go in as
    /// [`run_machine`] gives them to the client: copied into the framer's
    /// buffer as much as it offers at a time (`receive` would copy the whole
    /// input at once, and callgrind counts so large a copy a byte at a time:
    /// glibc makes it with `rep movsb`).
    pub fn run_framer(f: &mut Framer<Bounded<u8>>, bytes: &[u8]) -> usize {
        let (mut fed, mut values) = (0, 0);
        while fed < bytes.len() {
            let n = copy_in(f.recv_buf(), &bytes[fed..]);
            assert!(f.recv_commit(n));
            fed += n;
            while let Some(m) = f.next() {
                black_box(&m);
                values += 1;
            }
        }
        values
    }

    /// qapi-rs (`qapi` with its `qmp` feature), what a Rust user would
    /// otherwise pick: each message parsed into `QmpMessageAny` (an event or
    /// a response with its `return` kept as a `serde_json::Value`); counts them.
    pub fn run_qapi(bytes: &[u8]) -> usize {
        serde_stream::<qapi::qmp::QmpMessageAny>(bytes)
    }

    /// serde_json over the same bytes, one `T` per value; counts them.
    pub fn serde_stream<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
        let mut n = 0;
        for value in serde_json::Deserializer::from_slice(bytes).into_iter::<T>() {
            black_box(value.unwrap());
            n += 1;
        }
        n
    }
}
