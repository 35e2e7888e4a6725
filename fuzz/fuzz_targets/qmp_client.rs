//! The QMP client fed arbitrary bytes after a valid greeting: never panics,
//! never grows past its fixed storage, and keeps its id bookkeeping sound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::qmp::{Client, Config, Event};

fuzz_target!(|data: &[u8]| {
    let mut qmp = Client::<Fixed<1024, 512, 8>>::new(Config::default());
    let _ = qmp.receive(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n");
    while let Ok(Some(_)) = qmp.poll() {}
    for name in ["query-status", "cont", "stop"] {
        let _ = qmp.execute(name, None);
    }
    let mut closed = 0;
    for piece in data.chunks(97) {
        let mut fed = 0;
        while fed < piece.len() {
            match qmp.receive(&piece[fed..]) {
                Ok(n) => fed += n,
                Err(_) => break,
            }
            loop {
                match qmp.poll() {
                    Ok(Some(Event::Closed)) => closed += 1,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let n = qmp.transmit().len();
            qmp.transmitted(n);
        }
    }
    qmp.recv_eof();
    while let Ok(Some(event)) = qmp.poll() {
        if let Event::Closed = event {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "Closed is reported exactly once");
    assert_eq!(qmp.in_flight(), 0);
});
