//! With fixed storage the machines do not touch the heap: a counting global
//! allocator sees zero allocations per message in steady state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::qmp::{Client, Config, Event};

struct Counting;

thread_local! {
    /// Allocations made by this thread (the test harness has threads of its own).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn qmp_with_fixed_storage_never_allocates() {
    let transcript: &[u8] = include_bytes!("../../fixtures/qmp/10_cont_stop.s2c");
    // Everything after the greeting, fed again and again.
    let start = transcript.iter().position(|&b| b == b'\n').unwrap() + 1;
    let traffic = &transcript[start..];
    let mut client = Box::new(Client::<Fixed<8192, 1024, 16>>::new(Config::default()));
    client.receive(&transcript[..start]).unwrap();
    while client.poll().unwrap().is_some() {}

    let before = allocations();
    let mut messages = 0;
    for round in 0..100 {
        // Commands in flight, as a real session would have.
        for _ in 0..4 {
            client.execute("query-status", None).unwrap();
        }
        let n = client.transmit().len();
        client.transmitted(n);
        let mut fed = 0;
        while fed < traffic.len() {
            fed += client.receive(&traffic[fed..]).unwrap();
            while let Some(event) = client.poll().unwrap() {
                messages += 1;
                std::hint::black_box(&event);
                if let Event::Malformed(e) = event {
                    panic!("round {round}: {e}");
                }
            }
        }
        // Make room for the next round's commands.
        for k in 0..4 {
            let _ = client.forget(&vmwire_proto::qmp::Id::Number(1 + round * 4 + k));
        }
    }
    let after = allocations();
    assert!(messages >= 1000, "{messages}");
    assert_eq!(after - before, 0, "{} allocations for {messages} messages", after - before);
}
