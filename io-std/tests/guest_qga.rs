//! The guest agent client against qemu-ga running in a real Linux guest,
//! reached through QEMU's virtio-serial port (see `tests/guest/mod.rs`).

mod common;
mod guest;

use guest::{Guest, Shared, shared};

fn main() {
    let vm = Shared::default();
    let trials = vec![shared("ping", &vm, ping)];
    guest::run(vm, trials);
}

/// The agent answers over the virtio-serial port.
fn ping(guest: &Guest) {
    let mut agent = guest.qga();
    agent.ping().unwrap();
    agent.close();
}
