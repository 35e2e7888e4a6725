//! The negotiator caller fed arbitrary responses while it makes calls:
//! never panics, stays within its fixed storage, answers each call at most
//! once, and reports Closed exactly once at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::negotiator::{Caller, CallerEvent, Config, State};

fuzz_target!(|data: &[u8]| {
    let mut caller = Caller::<Fixed<512, 512, 1>>::new(Config::default());
    let (mut calls, mut answers, mut closed) = (0u32, 0u32, 0u32);
    for (k, piece) in data.chunks(61).enumerate() {
        if caller.state() == State::Idle {
            let call = if k % 3 == 2 {
                caller.call_with(
                    "execute",
                    |a| a.str("find-\u{e9}").map(drop),
                    |kw| kw.str("input", "\u{1F600}").map(drop),
                )
            } else {
                caller.call_with("list_commands", |_| Ok(()), |_| Ok(()))
            };
            if call.is_ok() {
                calls += 1;
            }
            assert!(caller.transmit().is_ascii());
        } else if k % 5 == 4 && caller.forget() {
            calls -= 1;
        }
        let mut fed = 0;
        while fed < piece.len() {
            let n = caller.receive(&piece[fed..]).expect("receive");
            fed += n;
            while let Some(event) = caller.poll().expect("poll") {
                match event {
                    CallerEvent::Result(_) | CallerEvent::Error(_) | CallerEvent::Invalid(_) | CallerEvent::Failed => {
                        answers += 1
                    }
                    CallerEvent::Closed => closed += 1,
                    _ => {}
                }
            }
        }
        let n = caller.transmit().len();
        caller.transmitted(n);
    }
    caller.recv_eof();
    while let Some(event) = caller.poll().expect("poll") {
        match event {
            CallerEvent::Result(_) | CallerEvent::Error(_) | CallerEvent::Invalid(_) | CallerEvent::Failed => {
                answers += 1
            }
            CallerEvent::Closed => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 1, "Closed is reported exactly once");
    assert_eq!(answers, calls, "every call is answered exactly once");
    assert_eq!(caller.state(), State::Closed);
});
