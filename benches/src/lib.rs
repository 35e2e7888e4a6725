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
