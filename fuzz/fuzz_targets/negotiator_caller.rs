//! The negotiator caller fed arbitrary responses while it makes calls (a
//! new one whenever it is idle; every fifth forgotten once sent): never
//! panics, stays within its fixed storage, writes only ASCII, answers each
//! call at most once and every call it keeps exactly once, reports Closed
//! exactly once at the end, and gives the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::negotiator::{Caller, CallerEvent, Config, State};

type Negotiator = Caller<Fixed<512, 512, 1>>;

#[derive(Default)]
struct Count {
    calls: u32,
    answers: u32,
    closed: u32,
}

/// Makes a call if the caller is idle: `execute` with non-ASCII arguments
/// every third, `list_commands` otherwise; every fifth is forgotten once
/// sent, and the next made at once.
fn call(caller: &mut Negotiator, count: &mut Count, made: &mut u32) {
    while caller.state() == State::Idle {
        let call = if *made % 3 == 2 {
            caller.call_with("execute", |a| a.str("find-\u{e9}").map(drop), |kw| kw.str("input", "\u{1F600}").map(drop))
        } else {
            caller.call_with("list_commands", |_| Ok(()), |_| Ok(()))
        };
        if call.is_err() {
            return;
        }
        *made += 1;
        count.calls += 1;
        assert!(caller.transmit().is_ascii());
        let n = caller.transmit().len();
        caller.transmitted(n);
        if *made % 5 == 4 && caller.forget() {
            count.calls -= 1;
        }
    }
}

/// Feeds `data` in pieces of `chunk` bytes, then the end; one line per event.
fn run(data: &[u8], chunk: usize) -> Vec<String> {
    let mut caller = Negotiator::new(Config::default());
    let mut count = Count::default();
    let mut made = 0;
    let mut log = Vec::new();
    let drain = |caller: &mut Negotiator, count: &mut Count, made: &mut u32, log: &mut Vec<String>| {
        call(caller, count, made);
        while let Some(event) = caller.poll().expect("poll") {
            match event {
                CallerEvent::Result(_) | CallerEvent::Error(_) | CallerEvent::Invalid(_) | CallerEvent::Failed => {
                    count.answers += 1
                }
                CallerEvent::Closed => count.closed += 1,
                _ => {}
            }
            log.push(format!("{event:?}"));
            call(caller, count, made);
        }
    };
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            let n = caller.receive(&piece[fed..]).expect("receive");
            fed += n;
            drain(&mut caller, &mut count, &mut made, &mut log);
            assert!(n > 0 || fed == piece.len(), "no room after polling");
        }
    }
    caller.recv_eof();
    drain(&mut caller, &mut count, &mut made, &mut log);
    assert_eq!(count.closed, 1, "Closed is reported exactly once");
    assert_eq!(count.answers, count.calls, "every call is answered exactly once");
    assert_eq!(caller.state(), State::Closed);
    log
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(chunk % 61) + 1);
    assert_eq!(whole, chunked, "the chunking changed the events");
});
