//! The negotiator frame decoder on arbitrary bytes in arbitrary chunks:
//! never panics, never holds more than its buffer, gives the same frames
//! whatever the chunking, and agrees with the encoder: every valid frame,
//! encoded again, decodes to the very same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::buf::Bounded;
use vmwire_proto::negotiator::{Decoder, Error, Limits, encode};

const LIMITS: Limits = Limits { max_frame: 300, max_depth: 16 };

/// Every outcome, feeding `data` in pieces of `chunk` bytes.
fn decode(data: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, Error>> {
    let mut decoder = Decoder::new(heapless::Vec::<u8, 320>::new(), LIMITS);
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = decoder.receive(&piece[fed..]);
            fed += n;
            while let Some(frame) = decoder.next() {
                out.push(frame.map(|v| v.raw().to_vec()));
            }
            assert!(n > 0 || fed == piece.len(), "decoder took nothing after being drained");
        }
        assert!(decoder.capacity() <= 320);
    }
    if let Some(e) = decoder.finish() {
        out.push(Err(e));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let outcomes = decode(rest, usize::from(chunk % 31) + 1);
    assert_eq!(outcomes, decode(rest, rest.len().max(1)), "chunking changed the frames");
    // Nothing after an error that breaks framing.
    if let Some(i) = outcomes.iter().position(|o| matches!(o, Err(e) if e.breaks_framing())) {
        assert_eq!(i + 1, outcomes.len());
    }
    // Round trip: a decoded value, encoded, is one ASCII frame of the same value.
    for raw in outcomes.iter().filter_map(|o| o.as_ref().ok()) {
        let value = vmwire_proto::json::Value::parse(raw).unwrap();
        let mut frame = Bounded::new(usize::MAX);
        encode(&mut frame, value).unwrap();
        let frame = vmwire_proto::buf::Buf::as_slice(&frame);
        assert!(frame.is_ascii());
        let again = decode(frame, frame.len());
        assert_eq!(again.len(), 1);
        // A received body is ASCII already: re-escaping leaves it as it was.
        assert_eq!(again[0].as_ref().unwrap(), raw);
    }
});
