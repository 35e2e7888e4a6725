//! The transcript reader on arbitrary bytes: never panics, every record it
//! returns lies inside the input, errors point inside the input, and every
//! record read, written back, reads again to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::transcript::{Reader, write_record};

fuzz_target!(|data: &[u8]| {
    let mut written = Vec::new();
    let mut records = Vec::new();
    for record in Reader::new(data) {
        match record {
            Ok(record) => {
                assert!(record.bytes.len() <= data.len());
                write_record(&mut written, &record).unwrap();
                records.push(record);
            }
            Err(e) => {
                assert!(e.offset < data.len());
                assert!(e.line >= 1);
            }
        }
    }
    let again: Vec<_> = Reader::new(&written).map(Result::unwrap).collect();
    assert_eq!(again, records);
});
