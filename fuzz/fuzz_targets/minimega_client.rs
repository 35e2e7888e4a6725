//! The minimega client machine fed arbitrary bytes (the first byte picks
//! what it asked: a command, a suggestion, a pipe): never panics, never
//! grows past its fixed storage, reports `Closed` exactly once, reads
//! every frame it accepts as serde_json reads it, and gives the same events
//! whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::minimega::{Client, Config, Event, Frame, State};

/// The frame's responses agree with serde_json's reading of the same text
/// (when its keys are spelt exactly: serde_json matches them case-sensitively).
fn cross_check(frame: &Frame<'_>) {
    let mut count = 0;
    for r in frame.responses() {
        count += 1;
        let _ = (r.host(), r.response(), r.error(), r.data(), r.column("id"));
        for row in r.rows() {
            for (k, v) in row.fields() {
                let _ = (k.raw(), v.raw());
            }
        }
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(frame.raw()) else { return };
    let Some(obj) = v.as_object() else { return };
    if obj.keys().any(|k| k != "Resp" && k.eq_ignore_ascii_case("resp")) {
        return;
    }
    if let Some(serde_json::Value::Array(resps)) = obj.get("Resp") {
        assert_eq!(resps.len(), count);
        for (r, want) in frame.responses().zip(resps) {
            if let Some(serde_json::Value::String(host)) = want.get("Host")
                && want.as_object().is_some_and(|o| o.keys().filter(|k| k.eq_ignore_ascii_case("host")).count() == 1)
            {
                assert_eq!(r.host().to_string(), *host);
            }
        }
    }
}

/// Feeds `data` in pieces of `chunk` bytes, then the end; one line per event.
fn run(mode: u8, data: &[u8], chunk: usize) -> Vec<String> {
    let mut log = Vec::new();
    let mut mm = Client::<Fixed<1024, 256, 4>>::new(Config::default());
    let ask = |mm: &mut Client<Fixed<1024, 256, 4>>| {
        let _ = match mode % 3 {
            0 => mm.command("read script.mm"),
            1 => mm.suggest("vm "),
            _ => mm.plumb_pipe("p"),
        };
        let n = mm.transmit().len();
        mm.transmitted(n);
    };
    ask(&mut mm);
    let mut closed = 0;
    let drain = |mm: &mut Client<Fixed<1024, 256, 4>>, closed: &mut usize, log: &mut Vec<String>| {
        loop {
            let event = mm.poll();
            if !matches!(event, Ok(None)) {
                log.push(format!("{event:?}"));
            }
            let again = match event {
                Ok(Some(Event::Frame(f) | Event::Unsolicited(f))) => {
                    cross_check(&f);
                    false
                }
                Ok(Some(Event::Suggestions(s))) => {
                    let _ = s.count();
                    true
                }
                Ok(Some(Event::End(summary))) => {
                    assert!(summary.errors <= summary.responses);
                    true
                }
                Ok(Some(Event::Closed)) => {
                    *closed += 1;
                    false
                }
                Ok(Some(_)) => false,
                Ok(None) | Err(_) => break,
            };
            if again && mm.state() == State::Idle {
                ask(mm);
            }
        }
    };
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            match mm.receive(&piece[fed..]) {
                Ok(n) => fed += n,
                Err(_) => break,
            }
            drain(&mut mm, &mut closed, &mut log);
            assert!(mm.recv_buf().len() <= 1024);
        }
    }
    mm.recv_eof();
    drain(&mut mm, &mut closed, &mut log);
    assert_eq!(closed, 1, "Closed is reported exactly once");
    assert_eq!(mm.state(), State::Closed);
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    let whole = run(mode, data, data.len().max(1));
    let chunked = run(mode, data, usize::from(mode / 3 % 61) + 1);
    assert_eq!(whole, chunked, "the chunking changed the events");
});
